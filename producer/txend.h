/*
 * txend.h: the end record of a transaction (kafka.transactions_topic).
 *
 * For every transaction that published at least one change, the producer
 * publishes, after the transaction's events, one record on the region's
 * transactions topic (<prefix>.<region>._tx) with the transaction's id,
 * commit LSN and time, and how many events it put on each topic and
 * partition: a reader that counts a transaction's events (by commit LSN)
 * on those partitions knows when it has all of them.  Each event carries
 * its change's index in the transaction (the envelope's tx_index).
 * docs/event-format.md, "Transactions".
 */
#ifndef XR_TXEND_H
#define XR_TXEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/avro_codec.h"
#include "common/buf.h"
#include "common/lsn.h"

typedef struct xr_txend_s xr_txend_t;

/* The counter of one transaction's events, with the record's schema. */
xr_txend_t *xr_txend_new(char *errstr, size_t errstr_size);
void        xr_txend_destroy(xr_txend_t *t);   /* NULL ok */

/* The record's schema (xregion.TransactionEnd) and its schema id. */
const xr_schema_t *xr_txend_schema(const xr_txend_t *t);
const char        *xr_txend_schema_id(const xr_txend_t *t);

/* Starts counting a transaction. */
void xr_txend_begin(xr_txend_t *t);

/* The index of the transaction's next published change (then counts it). */
int64_t xr_txend_next_change(xr_txend_t *t);

/* Counts one event (message) on topic's partition. */
void xr_txend_count(xr_txend_t *t, const char *topic, int32_t partition);

/* The changes published since begin. */
int64_t xr_txend_changes(const xr_txend_t *t);

/*
 * Encodes the end record of the transaction counted since begin
 * (single-object framing) into out.  Returns 0, or -1 with errstr.
 */
int xr_txend_encode(xr_txend_t *t, const char *region, const char *database,
                    const char *system_id, uint32_t xid, xr_lsn_t commit_lsn, int64_t commit_ts_us,
                    xr_buf_t *out, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

#endif
