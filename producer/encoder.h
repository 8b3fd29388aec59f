/*
 * encoder.h: turns one decoded row change into a Kafka key and an Avro
 * change event (both single-object encoded), following schemas/envelope.avsc.
 */
#ifndef XR_ENCODER_H
#define XR_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/avro_codec.h"
#include "common/buf.h"
#include "common/lsn.h"
#include "producer/pgoutput.h"
#include "producer/relcache.h"

#define XR_EVENT_ID_LEN 36

/*
 * The namespace of event ids: event_id is the name-based (version 5, SHA-1)
 * UUID of this namespace and the name
 *   region NUL database NUL commit_lsn NUL change_index
 * with commit_lsn and change_index in decimal (Python:
 * uuid.uuid5(XR_EVENT_ID_NS, f"{region}\0{database}\0{commit_lsn}\0{index}")).
 * Documented in docs/event-format.md; changing it changes every id.
 */
#define XR_EVENT_ID_NS "186c3810-3053-4465-95e2-c41965dc6581"

/*
 * The vector-clock version of a write (tables in conflict mode vclock), as
 * the table's trigger reported it: vectors are JSON objects of region to
 * counter (borrowed).
 */
typedef struct xr_vclock_s {
	int64_t       hlc;
	const json_t *vector;
	const json_t *before_vector;   /* NULL unless the key changed */
	int64_t       before_hlc;
} xr_vclock_t;

/* Where a change comes from: the envelope's source record. */
typedef struct xr_source_s {
	const char *region;
	const char *database;
	xr_lsn_t    lsn;          /* of the change */
	xr_lsn_t    commit_lsn;
	uint32_t    xid;
	int64_t     commit_ts_us; /* µs since the Unix epoch */
	const char *origin;       /* replication origin, or NULL */
	uint64_t    change_index; /* the change's place in its transaction,
	                             from 0, counting every change the server
	                             sent (published or not) */
	const xr_vclock_t *vclock; /* NULL: none */
	xr_lsn_t    read_lsn;     /* a snapshot_read event: the watermark it
	                             stands at, which takes commit_lsn's place in
	                             its id; 0 for a change */
	int64_t     tx_index;     /* the change's place among the changes its
	                             transaction published, from 0; -1: none
	                             (what a backfill publishes) */
} xr_source_t;

/*
 * Writes the event id of the change src describes (see XR_EVENT_ID_NS),
 * lowercase and NUL-terminated: the same change always gets the same id,
 * also when it is sent again after a restart.
 */
void xr_event_id(const xr_source_t *src, char event_id[XR_EVENT_ID_LEN + 1]);

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
 * and value hold the encoded messages (reset first) and event_id the
 * event's id (xr_event_id), NUL-terminated.  Returns 0, or -1 with errstr
 * naming the table, the column where there is one, and what to do.  The
 * same change fails the same way every time: a caller should not retry.
 */
int xr_encode_change(xr_rel_t *rel, xr_op_t op,
                     const xr_pgo_tuple_t *before, const xr_pgo_tuple_t *after,
                     const xr_source_t *src, xr_buf_t *key, xr_buf_t *value,
                     char event_id[XR_EVENT_ID_LEN + 1],
                     char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * The same through avro-c's generic values (rel->value and rel->key).
 * xr_encode_change writes the Avro binary itself, and takes this way only
 * for events with a vector clock; the unit tests encode events both ways
 * and compare the bytes (all but produced_at).
 */
int xr_encode_change_avro(xr_rel_t *rel, xr_op_t op,
                          const xr_pgo_tuple_t *before,
                          const xr_pgo_tuple_t *after,
                          const xr_source_t *src, xr_buf_t *key,
                          xr_buf_t *value, char event_id[XR_EVENT_ID_LEN + 1],
                          char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

#endif
