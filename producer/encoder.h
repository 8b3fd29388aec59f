/*
 * encoder.h: turns one decoded row change into a Kafka key and an Avro
 * change event (both single-object encoded), following schemas/envelope.avsc.
 */
#ifndef XR_ENCODER_H
#define XR_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "common/avro_codec.h"
#include "common/buf.h"
#include "common/lsn.h"
#include "producer/pgoutput.h"
#include "producer/relcache.h"

#define XR_EVENT_ID_LEN 36

/* Where a change comes from: the envelope's source record. */
typedef struct xr_source_s {
	const char *region;
	const char *database;
	xr_lsn_t    lsn;          /* of the change */
	xr_lsn_t    commit_lsn;
	uint32_t    xid;
	int64_t     commit_ts_us; /* µs since the Unix epoch */
	const char *origin;       /* replication origin, or NULL */
} xr_source_t;

/*
 * Encodes a change of rel, a published relation.
 *   insert:   after = new tuple, before = NULL
 *   update:   after = new tuple, before = old tuple or NULL (old_kind 'K'
 *             means only the key columns of before are set)
 *   delete:   before = old tuple, after = NULL
 *   truncate: both NULL; no key is written (key->len is 0)
 * Unchanged TOASTed columns of after are written as null and listed in the
 * envelope's "unchanged" array: never as a made-up value.
 * The key is built from after (or before for a delete).  On success key
 * and value hold the encoded messages (reset first) and event_id the UUID
 * given to the event, NUL-terminated.  Returns 0, or -1 with errstr naming
 * the table and column when a value does not convert.
 */
int xr_encode_change(xr_rel_t *rel, xr_op_t op,
                     const xr_pgo_tuple_t *before, const xr_pgo_tuple_t *after,
                     const xr_source_t *src, xr_buf_t *key, xr_buf_t *value,
                     char event_id[XR_EVENT_ID_LEN + 1],
                     char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

#endif
