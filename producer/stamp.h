/*
 * stamp.h: durable versions of this region's own writes.
 *
 * The version of a local write is its commit timestamp, which the events
 * carry and which PostgreSQL keeps (track_commit_timestamp) only until
 * vacuum freezes past the transaction: then pg_xact_commit_timestamp()
 * returns NULL, and a consumer comparing a late remote change with the row
 * would not know the row's version.  The producer sees every local write
 * with its commit timestamp, so it records them, set-based and after the
 * fact, in the region's versions tables (schema xregion, see
 * consumer/meta.c): for a row still holding the write (its xmin is the
 * writer's xid, checked under a KEY SHARE lock), an entry naming the xid;
 * for a local tombstone or truncation (written by the triggers with the
 * deleting xid and no time), its time.  A transaction of more than
 * XR_STAMP_WHOLE_TXN rows is recorded whole instead: one row (xid, commit
 * time) in xregion.xact_versions, which the consumer looks up by a row's
 * xmin or a tombstone's xid.  The producer confirms a transaction
 * to the slot only after its stamps are committed, so none is ever lost:
 * a restart streams the transaction again.
 *
 * Tables in conflict mode vclock keep their versions in their own trigger;
 * only their truncations are stamped.
 */
#ifndef XR_STAMP_H
#define XR_STAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/config.h"
#include "producer/pgoutput.h"
#include "producer/relcache.h"

typedef struct xr_stamper_s xr_stamper_t;

/* Returns a new stamper for conf's region (free with destroy). */
xr_stamper_t *xr_stamper_new(const xr_config_t *conf);
void          xr_stamper_destroy(xr_stamper_t *st);   /* NULL ok */

/*
 * A transaction that writes more rows than this is recorded whole: one row
 * (xid, commit time) in xregion.xact_versions, where the consumer finds
 * the version of its rows and tombstones by their xid, instead of one
 * entry per row.
 */
#define XR_STAMP_WHOLE_TXN 1000

/*
 * Records a local change of rel (published: pii false) made by the
 * transaction being read (xid, committed at commit_ts_us): op insert,
 * update, delete or truncate, with the pgoutput tuples (before: the old
 * key of a delete or key change).  Tuples are copied.
 */
void xr_stamper_add(xr_stamper_t *st, const xr_rel_t *rel, xr_op_t op,
                    const xr_pgo_tuple_t *before, const xr_pgo_tuple_t *after,
                    uint32_t xid, int64_t commit_ts_us);

/*
 * Ends the transaction being read: its stamps become pending.  Returns
 * whether it has any (its Commit must then wait for the flush).
 */
bool xr_stamper_commit(xr_stamper_t *st, uint32_t xid, int64_t commit_ts_us);

/* Stamps pending (committed transactions' ones, not yet flushed). */
size_t xr_stamper_pending(const xr_stamper_t *st);

/*
 * Writes every recorded stamp in one transaction on conn (a plain
 * connection to the region's database).  Returns 0 (nothing is pending
 * then), or -1 with errstr (everything stays pending: call again).
 */
int xr_stamper_flush(xr_stamper_t *st, PGconn *conn, char *errstr,
                     size_t errstr_size) __attribute__((warn_unused_result));

#endif
