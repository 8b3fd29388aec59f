/*
 * backfill.h: the producer's side of a backfill, which publishes a table's
 * existing rows as snapshot_read events next to its live changes.
 *
 * `xregion backfill` (backfill_cmd.h) records a job in the donor's table
 * xregion.backfills; the producer of that database runs it, chunk after
 * chunk, between the turns of its streaming loop:
 *
 *   1. it reads the next chunk of rows in primary-key order (keyset
 *      pagination, LIMIT chunk_size, one short REPEATABLE READ
 *      transaction), with each row's own version (the one the consumers
 *      compare: for lww its versions entry or commit timestamp, for vclock
 *      its vector and clock);
 *   2. it writes a watermark message into the WAL
 *      (pg_logical_emit_message, prefix XR_BACKFILL_PREFIX, in a
 *      transaction of its own, whose commit flushes it);
 *   3. every change of the table that it decodes from then until the
 *      watermark (applied ones included) drops its keys from the chunk: the
 *      stream carries that key's newer state itself;
 *   4. at the watermark it publishes what is left of the chunk, so each
 *      read event stands in the topic where the row had the value it
 *      carries;
 *   then the same for the table's tombstones (its deleted keys, as deletes
 *   with the delete's version) and its truncation marker: a region that
 *   starts after a delete must not take an older write of that key from
 *   another region's topic;
 *   5. once Kafka has acknowledged them all (the watermark's LSN is safe),
 *      it records the chunk's last key in xregion.backfills: after a
 *      restart the job goes on from there.
 *
 * Step 1 happens before the producer decodes anything more, so the window
 * of step 3 opens no later than the chunk's snapshot; the producer first
 * waits until the last transaction it decoded is visible, so nothing it
 * has already published is missing from the chunk.
 *
 * One object per replication session (a new session starts the chunk at
 * hand again).  Not thread-safe: the producer's thread calls everything.
 */
#ifndef XR_BACKFILL_H
#define XR_BACKFILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "common/config.h"
#include "common/lsn.h"
#include "producer/pgoutput.h"
#include "producer/relcache.h"

/* The prefix of the watermark messages. */
#define XR_BACKFILL_PREFIX "xregion.backfill"

typedef struct xr_backfill_s xr_backfill_t;

/* The version of a row read, as the consumers compare it. */
typedef struct xr_backfill_version_s {
	int64_t     ts;          /* µs since the Unix epoch (vclock: hlc) */
	const char *region;      /* borrowed: valid until the next row */
	xr_lsn_t    clsn, lsn;   /* its position in its region's stream */
	json_t     *vector;      /* vclock: the row's vector (borrowed), or NULL */
} xr_backfill_version_t;

/* Returns a new runner for conf's region (free with destroy). */
xr_backfill_t *xr_backfill_new(const xr_config_t *conf);
void           xr_backfill_destroy(xr_backfill_t *b);   /* NULL ok */

/*
 * Whether a chunk is due now: no chunk is open and, when the last look
 * found no job, at least 2 s have passed; with a rate, the last chunk's
 * rows have had their time.
 */
bool xr_backfill_due(const xr_backfill_t *b, int64_t now_us);

/*
 * Finds the first unfinished job and reads its next chunk on conn (a plain
 * connection with the stream's text settings), then writes the chunk's
 * watermark.  From this call on, the caller reports every change it
 * decodes (xr_backfill_change).  A finished table is marked done; a job
 * that cannot run (its table not published here, no primary key) is marked
 * failed with the reason, logged.  Returns 0, or -1 with errstr (a
 * database error: try again later).
 */
int xr_backfill_read(xr_backfill_t *b, PGconn *conn, int64_t now_us,
                     char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/* Whether a chunk is open: changes are to be reported (xr_backfill_change). */
bool xr_backfill_watching(const xr_backfill_t *b);

/*
 * A change the stream decoded: rel (the stream's relation), op and its
 * tuples.  Drops from the open chunk each key the change names (a
 * truncate of the table drops the whole chunk, read again later).
 */
void xr_backfill_change(xr_backfill_t *b, const xr_rel_t *rel, xr_op_t op,
                        const xr_pgo_tuple_t *before,
                        const xr_pgo_tuple_t *after);

/*
 * A message with prefix XR_BACKFILL_PREFIX: whether it is the open chunk's
 * watermark.  If so, the caller publishes the chunk (xr_backfill_rel,
 * xr_backfill_row) at the commit of the watermark's transaction, as
 * messages of that transaction's tracker entry (so the safe LSN passes the
 * watermark only once they are acknowledged), and then calls
 * xr_backfill_published.
 */
bool xr_backfill_mark(xr_backfill_t *b, const char *content, size_t len);

/* The open chunk's relation (published; valid until the session ends). */
xr_rel_t *xr_backfill_rel(xr_backfill_t *b);

/* Region the open chunk is for, or NULL (every region). */
const char *xr_backfill_for(const xr_backfill_t *b);

/*
 * How the open chunk's rows are published: snapshot_read (rows), or
 * delete (tombstones: the key columns set, the version the delete's).
 */
xr_op_t xr_backfill_op(const xr_backfill_t *b);

/*
 * Whether the open chunk carries the table's truncation marker (the first
 * chunk of tombstones does, if the table was ever truncated): published as
 * a truncate with its version *ver, before the rows.
 */
bool xr_backfill_truncation(const xr_backfill_t *b,
                            xr_backfill_version_t *ver);

/* Rows in the open chunk, dropped ones included. */
size_t xr_backfill_rows(const xr_backfill_t *b);

/*
 * Row i of the open chunk: false when a change dropped it; else *tup (its
 * values, valid until the next call) and *ver.
 */
bool xr_backfill_row(xr_backfill_t *b, size_t i, xr_pgo_tuple_t *tup,
                     xr_backfill_version_t *ver);

/*
 * The open chunk's rows are handed to Kafka, up to the watermark at
 * mark_lsn; its progress is stored once that LSN is safe
 * (xr_backfill_acked).
 */
void xr_backfill_published(xr_backfill_t *b, xr_lsn_t mark_lsn);

/* Drops the open chunk (it is read again): it could not be published. */
void xr_backfill_abandon(xr_backfill_t *b);

/* Whether the published chunk is all on Kafka (safe_lsn: the tracker's). */
bool xr_backfill_safe(const xr_backfill_t *b, xr_lsn_t safe_lsn);

/*
 * With safe_lsn the tracker's safe LSN: once the published chunk is all on
 * Kafka, records the job's progress on conn.  Returns 0 (also when nothing
 * was due), or -1 with errstr (tried again on the next call).
 */
int xr_backfill_acked(xr_backfill_t *b, PGconn *conn, xr_lsn_t safe_lsn,
                      char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

#endif
