/*
 * apply.h: writes other regions' change events into this region's
 * database with last-write-wins, in batches: one transaction per batch and
 * source region, under that region's replication origin, with
 * session_replication_role = replica, statements prepared per table and
 * sent in libpq pipeline mode, and the consumed Kafka offsets stored in the
 * same transaction (exactly once in effect).
 *
 * The decision is made in SQL, row by row, against the row's version (see
 * meta.h and docs/consumer.md), so concurrent local writes are compared on
 * the locked, current row.
 */
#ifndef XR_APPLY_H
#define XR_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/metrics.h"
#include "consumer/event.h"

/* Conflict kinds, as stored in xregion.conflicts.kind. */
typedef enum {
	XR_CONFLICT_NONE = 0,
	XR_CONFLICT_INSERT_EXISTS,        /* insert for a row that exists */
	XR_CONFLICT_INSERT_DELETED,       /* insert older than a later delete */
	XR_CONFLICT_UPDATE_MISSING,       /* update for a row never seen here */
	XR_CONFLICT_UPDATE_DELETED,       /* update older than a later delete */
	XR_CONFLICT_UPDATE_ORIGIN_DIFFERS,/* update of a row another region wrote */
	XR_CONFLICT_DELETE_MISSING,       /* delete of a row not here */
	XR_CONFLICT_DELETE_ORIGIN_DIFFERS,/* delete of a row another region wrote */
	XR_CONFLICT_DELETE_AFTER_UPDATE,  /* delete older than a later update */
	/* vclock tables: neither version vector includes the other. */
	XR_CONFLICT_INSERT_CONCURRENT,    /* insert concurrent with the row */
	XR_CONFLICT_UPDATE_CONCURRENT,    /* update concurrent with the row */
	XR_CONFLICT_DELETE_CONCURRENT,    /* delete concurrent with the row */
	XR_CONFLICT_UNIQUE,               /* two rows, one unique value (unique.c) */
	XR_CONFLICT_NKINDS
} xr_conflict_kind_t;

typedef enum {
	XR_RES_APPLIED = 0,   /* the remote change won and was applied */
	XR_RES_SKIPPED,       /* the local version won (or it was a repeat) */
	XR_RES_DEAD_LETTER,   /* could not be applied; sent to the DLQ */
	XR_RES_N
} xr_resolution_t;

extern const char *const xr_conflict_names[];
extern const char *const xr_resolution_names[];

/* One event of a batch, with its position in Kafka and its outcome. */
typedef struct xr_apply_item_s {
	xr_event_t     *ev;
	const char     *topic;
	int32_t         partition;
	int64_t         offset;
	void           *opaque;      /* the caller's; left alone */
	/* Set by xr_applier_apply: */
	xr_resolution_t resolution;
	xr_conflict_kind_t conflict;
	char            reason[256];   /* for XR_RES_DEAD_LETTER */
} xr_apply_item_t;

/* A Kafka position to store: the next offset to consume. */
typedef struct xr_offset_s {
	const char *topic;
	int32_t     partition;
	int64_t     next_offset;
} xr_offset_t;

typedef struct xr_apply_stats_s {
	uint64_t applied;
	uint64_t skipped;
	uint64_t dead_lettered;
	uint64_t conflicts[XR_CONFLICT_NKINDS][XR_RES_N];
	uint64_t batches;
	/*
	 * Source transactions committed here by the time since their commit
	 * in their region (metrics.h's buckets; not replays), and its sum.
	 */
	uint64_t latency[XR_LATENCY_BUCKETS + 1];
	uint64_t latency_sum_us;
} xr_apply_stats_t;

/*
 * Produces the dead letters among items (resolution XR_RES_DEAD_LETTER)
 * and waits until Kafka has them.  Called inside the batch's transaction,
 * before COMMIT: a failure rolls the batch back.  Returns 0 or -1.
 */
typedef int (xr_dead_letter_cb_t)(void *ctx, xr_apply_item_t *items, size_t n);

typedef struct xr_applier_s xr_applier_t;

/* Returns a new applier, not yet connected (NULL on OOM). */
xr_applier_t *xr_applier_new(const xr_config_t *conf);
void          xr_applier_destroy(xr_applier_t *a);   /* NULL ok */

/*
 * Makes a apply a replay's or a redrive's events (replay.h, dlq.h): under
 * the origin xr_meta_replay_origin_name() names whatever the source region
 * (the consumer may hold the region's own origin meanwhile), never on the
 * fast paths (their rows take the version of the origin's region), storing
 * offsets only with store_offsets (a redrive's places on the dead-letter
 * topic; a replay must not move the consumer's), and with dry_run rolling
 * every batch back after its outcomes are known.  Call it before the first
 * apply.
 */
void xr_applier_set_replay(xr_applier_t *a, bool dry_run, bool store_offsets);

/*
 * A replay's applier: sets up the replay origin now (it is held until the
 * session ends), so that one already held elsewhere is an error at once.
 * Returns 0, or -1 with errstr.
 */
int xr_applier_hold_origin(xr_applier_t *a, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/* (Re)connects and sets up the session.  Returns 0, or -1 with errstr. */
int xr_applier_connect(xr_applier_t *a, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/* Result of checking an event against this region's table. */
typedef enum {
	XR_CHECK_OK = 0,
	XR_CHECK_NO_TABLE,    /* the table does not exist here: poison */
	XR_CHECK_DRIFT,       /* a column of the event is missing here: pause */
	XR_CHECK_ERROR        /* the database could not be asked: retry */
} xr_check_t;

/*
 * Checks that ev's table exists here with every column the event carries.
 * errstr says what is missing.  Catalog facts are cached; see
 * xr_applier_forget().
 */
xr_check_t xr_applier_check(xr_applier_t *a, const xr_event_t *ev,
                            char *errstr, size_t errstr_size);

/* Drops cached catalog facts of a table (after it changed). */
void xr_applier_forget(xr_applier_t *a, const char *nspname,
                       const char *relname);

/*
 * Applies items, all from source region src and all checked OK, in one
 * transaction that also stores offsets.  Sets each item's resolution and
 * conflict, logs conflicts in xregion.conflicts, calls dead_letter before
 * COMMIT.  Returns 0 when committed; -1 with errstr when anything failed
 * (nothing committed: the caller may retry the items one by one to find a
 * poison message).
 */
int xr_applier_apply(xr_applier_t *a, const char *src, xr_apply_item_t *items,
                     size_t n, const xr_offset_t *offsets, size_t noffsets,
                     xr_dead_letter_cb_t *dead_letter, void *ctx,
                     char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Atomic apply (consumer.apply_mode atomic).  The next commit (of
 * xr_applier_apply or xr_applier_store_offsets) also stores, in
 * xregion.applied, that the transactions of source region's stream (NULL
 * or "": its main producer's) up to commit LSN lsn (of cluster sysid,
 * committed at commit_ts) are applied, one row per stream (key "region" or
 * "region/stream").  Clear forgets them; a commit, failed or not, too.
 */
void xr_applier_add_position(xr_applier_t *a, const char *region,
                             const char *stream, xr_lsn_t lsn,
                             const char *sysid, int64_t commit_ts);
void xr_applier_clear_positions(xr_applier_t *a);

/* A stored position of a source region's stream ("": its main one). */
typedef struct xr_position_s {
	char     stream[40];
	xr_lsn_t lsn;
	char     sysid[32];
} xr_position_t;

/*
 * Reads the positions of every stream of region into *out (new: free()),
 * *n of them (0 when none is stored).  Returns 0, or -1 with errstr.
 */
int xr_applier_load_positions(xr_applier_t *a, const char *region,
                              xr_position_t **out, size_t *n, char *errstr,
                              size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * With hold set, xr_applier_apply leaves its transaction open (storing no
 * offsets), and the next apply goes on in it: one source transaction
 * larger than a batch is applied in one target transaction.  The apply
 * after hold is cleared commits it.  xr_applier_rollback ends it.
 */
void xr_applier_hold_open(xr_applier_t *a, bool hold);
void xr_applier_rollback(xr_applier_t *a);
/* Whether an apply left its transaction open. */
bool xr_applier_in_open(const xr_applier_t *a);

/* Stores offsets alone (after dead-lettering a poison message). */
int xr_applier_store_offsets(xr_applier_t *a, const xr_offset_t *offsets,
                             size_t n, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Reads stored offsets: for each (topics[i], partitions[i]) sets out[i] to
 * the next offset to consume, or -1 if none is stored.  Returns 0 or -1.
 */
int xr_applier_load_offsets(xr_applier_t *a, const char *const *topics,
                            const int32_t *partitions, size_t n, int64_t *out,
                            char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Deletes the tombstones whose version time is before cutoff_us (µs since
 * the Unix epoch), except those of hidden rows.  Returns rows or -1.
 */
long xr_applier_purge_tombstones(xr_applier_t *a, int64_t cutoff_us,
                                 char *errstr, size_t errstr_size);

/*
 * The tombstones of every table applied to so far, and the size of the
 * versions tables (bytes), into *tombs and *bytes.  Returns 0 or -1.
 */
int xr_applier_tombstone_stats(xr_applier_t *a, int64_t *tombs,
                               int64_t *bytes, char *errstr,
                               size_t errstr_size);

const xr_apply_stats_t *xr_applier_stats(const xr_applier_t *a);

/*
 * Whether the last failure of xr_applier_apply was the data's fault (a
 * value or constraint the database refused): only then is an event poison.
 */
bool xr_applier_error_is_data(const xr_applier_t *a);

/* Whether the last failed statement broke a unique key (23505). */
bool xr_applier_error_is_unique(const xr_applier_t *a);

/*
 * The apply of item it (from region src, next offset off) broke a unique
 * key other than the primary key: decides it by version in its own
 * transaction (unique.c).  Returns the number of rows hidden so that the
 * event can be applied (apply it again), -2 when the event lost and was
 * hidden itself (its offset is stored: done), -4 when it lost and was
 * hidden but is a key change (apply it again: its old key's delete is
 * still due), -3 when it no longer beats its own key (apply it again: the
 * rules skip it), 0 when no other row holds its unique values now (apply
 * it again), or -1 with errstr.
 */
int xr_applier_resolve_unique(xr_applier_t *a, const char *src,
                              const xr_apply_item_t *it,
                              const xr_offset_t *off, char *errstr,
                              size_t errstr_size);

/*
 * Brings back the hidden rows whose unique values nothing newer holds any
 * longer (a winner deleted or changed, here or elsewhere).  Returns how
 * many, or -1 with errstr.
 */
long xr_applier_unhide(xr_applier_t *a, char *errstr, size_t errstr_size);

/* Whether the database connection is up (a failed apply may drop it). */
bool xr_applier_connected(const xr_applier_t *a);

#endif
