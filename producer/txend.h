/*
 * txend.h: the end record of a transaction (<prefix>.<region>._tx).
 *
 * For every transaction that published at least one change, the producer
 * publishes one record on the region's transactions topic with the
 * transaction's id, commit LSN and time, and, for each topic and
 * partition it put events on, how many and at which offsets (the first
 * and the last).  The record is produced once Kafka has acknowledged all
 * of the transaction's events (their offsets are known only then), in
 * commit order; the slot passes the transaction only once the record is
 * acknowledged too.  Each event carries its change's index in the
 * transaction (the envelope's tx_index).  docs/event-format.md,
 * "Transactions".
 *
 * The records wait in a queue, one entry per transaction (never its
 * events), from the transaction's first event until the record is
 * produced.  Not thread-safe: the producer's thread calls everything,
 * delivery reports included.
 */
#ifndef XR_TXEND_H
#define XR_TXEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/avro_codec.h"
#include "common/buf.h"
#include "common/lsn.h"

typedef struct xr_txend_s xr_txend_t;

/* A queue of end records, with the record's schema. */
xr_txend_t *xr_txend_new(char *errstr, size_t errstr_size);
void        xr_txend_destroy(xr_txend_t *t);   /* NULL ok */

/* Forgets every record not yet handed out (a session ends). */
void        xr_txend_reset(xr_txend_t *t);

/* The record's schema (xregion.TransactionEnd) and its schema id. */
const xr_schema_t *xr_txend_schema(const xr_txend_t *t);
const char        *xr_txend_schema_id(const xr_txend_t *t);

/* Starts counting the transaction of tracker transaction txn. */
void xr_txend_begin(xr_txend_t *t, uint64_t txn);

/* The index of the transaction's next published change (then counts it). */
int64_t xr_txend_next_change(xr_txend_t *t);

/* The changes the open transaction published so far. */
int64_t xr_txend_changes(const xr_txend_t *t);

/* Counts one event (message) of the open transaction on topic's partition. */
void xr_txend_count(xr_txend_t *t, const char *topic, int32_t partition);

/*
 * A message of tracker transaction txn was acknowledged at offset: one
 * fewer to wait for.  Messages of transactions it does not track (the
 * records themselves, backfills) are ignored.
 */
void xr_txend_delivered(xr_txend_t *t, uint64_t txn, const char *topic,
                        int32_t partition, int64_t offset);

/*
 * Closes the open transaction with what its record says.  Returns true
 * when it published a change: its record is queued (reserve one message
 * of txn in the tracker for it); false when it published none.
 */
bool xr_txend_commit(xr_txend_t *t, const char *region, const char *database,
                     const char *system_id, uint32_t xid, xr_lsn_t commit_lsn,
                     int64_t commit_ts_us);

/*
 * The next record ready to be produced: the oldest queued one, once all
 * of its events are acknowledged.  Encodes it (single-object framing)
 * into out and sets *txn and *commit_lsn; returns 1, 0 when none is
 * ready, or -1 with errstr.  Call xr_txend_pop after producing it.
 */
int  xr_txend_ready(xr_txend_t *t, xr_buf_t *out, uint64_t *txn,
                    xr_lsn_t *commit_lsn, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));
void xr_txend_pop(xr_txend_t *t);

/*
 * The commit LSN of the last transaction that published a change since
 * the queue was made or reset (0: none).  Its successor's first event
 * carries it (header xr-prev), so that a consumer that has taken that
 * transaction knows the next one is this one before its end record comes.
 */
xr_lsn_t xr_txend_prev(const xr_txend_t *t);

/* Records queued and not yet produced. */
size_t xr_txend_pending(const xr_txend_t *t);

#endif
