/*
 * tracker.h: which WAL position is safe to confirm to PostgreSQL.
 *
 * The producer publishes a transaction's changes as they are decoded and
 * learns of their delivery later, in librdkafka's delivery reports.  The
 * flush LSN it reports to the slot may only pass a transaction once every
 * message of it, and of every transaction before it, has been acknowledged
 * by Kafka.  The tracker keeps one small entry per transaction still in
 * flight (never the messages themselves), so memory does not grow with the
 * size of a transaction.
 *
 * Not thread-safe: the producer calls everything, delivery reports
 * included, from its one main thread (they are served by rd_kafka_poll()).
 */
#ifndef XR_TRACKER_H
#define XR_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/lsn.h"

typedef struct xr_tracker_s xr_tracker_t;

/*
 * Returns a new tracker (free with xr_tracker_destroy) whose safe LSN
 * starts at start_lsn, the slot's confirmed_flush_lsn: the flush position
 * reported must never move backwards.
 */
xr_tracker_t *xr_tracker_new(xr_lsn_t start_lsn);
void          xr_tracker_destroy(xr_tracker_t *t);   /* NULL ok */

/* Opens a transaction (a Begin); returns its id.  One may be open at once. */
uint64_t xr_tracker_begin(xr_tracker_t *t);
/*
 * Counts one more message of transaction txn in flight.  Call it before the
 * message is handed to librdkafka: its report may come at the next poll.
 */
void     xr_tracker_add(xr_tracker_t *t, uint64_t txn);
/* Closes transaction txn (its Commit) ending at end_lsn. */
void     xr_tracker_commit(xr_tracker_t *t, uint64_t txn, xr_lsn_t end_lsn);
/* A message of txn was delivered: one fewer in flight. */
void     xr_tracker_delivered(xr_tracker_t *t, uint64_t txn);

/*
 * Whether a call named a transaction the tracker does not have, or a
 * delivery it was not waiting for: a bug, after which the safe LSN no
 * longer moves and the producer must stop.
 */
bool     xr_tracker_broken(const xr_tracker_t *t);

/* The highest LSN whose changes, and all before them, are on Kafka. */
xr_lsn_t xr_tracker_safe_lsn(const xr_tracker_t *t);

/*
 * The server says it has sent everything up to lsn (a keepalive's walEnd).
 * If nothing is open or in flight, everything up to lsn is safe: this is
 * what lets the slot advance on an idle database.  Otherwise ignored.
 */
void     xr_tracker_server_lsn(xr_tracker_t *t, xr_lsn_t lsn);

/* Messages published and not yet acknowledged. */
uint64_t xr_tracker_in_flight(const xr_tracker_t *t);
/* Transactions begun and not yet safe. */
size_t   xr_tracker_open_txns(const xr_tracker_t *t);

#endif
