/*
 * txq.h: assembles the other regions' transactions from their change
 * topics and their transactions topics, for the consumer's atomic apply
 * (consumer.apply_mode atomic; docs/consumer.md, "Atomic apply").
 *
 * Messages go into one queue per partition, in offset order; each end
 * record (<prefix>.<region>._tx, docs/event-format.md "Transactions") says
 * at which offsets of which partitions its transaction's events are.  A
 * take hands out, for one source region, what can be applied next:
 *
 *   - at the head of a partition, events of no transaction (a backfill's,
 *     or an older producer's) as they come;
 *   - copies that no end record names (a producer stopped in the middle of
 *     a transaction, then sent it again whole) and transactions at or
 *     before the region's applied commit LSN (sent again after a restart),
 *     to skip: their offsets are stored, nothing is applied;
 *   - whole transactions, in commit order, once every event the record
 *     names has arrived, up to a batch; a transaction larger than a batch
 *     is handed out in pieces in tx_index order, to be applied in one
 *     target transaction (xr_txq_take_piece);
 *   - early, a transaction larger than a batch that is next before its end
 *     record came: its first event names (header xr-prev) the transaction
 *     the stream took last.  Its events go out strictly in tx_index order
 *     as they reach the heads of the partitions, an index out already (a
 *     copy from a restarted producer) to skip; its record ends it.
 *
 * Streams: a region may have several producers (producer.stream), whose
 * events and end records carry header xr-stream (none: the main one).
 * Each stream has its own applied position, and an event is compared
 * only with its own stream's records: two streams' records interleave on
 * the transactions topic in no LSN order.
 *
 * Positions: each partition remembers the offset after the last message
 * handed out (taken) and after the last one stored with an applied batch
 * (committed).  A failed batch rewinds its region to the committed
 * positions: its queues are dropped and the partitions read again.
 *
 * Memory: a partition's queue holds at most cap messages; beyond that the
 * caller pauses the partition (xr_txq_add says so) and resumes it when the
 * queue has drained (xr_txq_resumable).  End records are small and kept
 * up to XR_TXQ_MAX_ENDS per region, the same way.
 *
 * Not thread-safe: the consumer's thread calls everything.
 */
#ifndef XR_TXQ_H
#define XR_TXQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "common/config.h"
#include "common/lsn.h"
#include "consumer/registry.h"

#define XR_TXQ_MAX_ENDS 100000

typedef struct xr_txq_s xr_txq_t;

/* One message handed out by a take. */
typedef struct xr_txq_out_s {
	rd_kafka_message_t *m;      /* owned by the caller from now on */
	bool                skip;   /* store its offset, apply nothing */
	bool                in_tx;  /* an event of a transaction */
} xr_txq_out_t;

/* A partition to pause or resume, or a position to store. */
typedef struct xr_txq_pos_s {
	const char *topic;          /* borrowed from the queue */
	int32_t     partition;
	int64_t     offset;
} xr_txq_pos_t;

/* Returns a new assembler for conf (queues of cap messages). */
xr_txq_t *xr_txq_new(const xr_config_t *conf, size_t cap);
void      xr_txq_destroy(xr_txq_t *q);     /* NULL ok */

/*
 * Takes message m (of a change topic or a transactions topic of another
 * region).  Returns 1 when m's partition is now full (pause it), 0
 * otherwise.  A message at an offset already taken (fetched again after a
 * rewind or a resume) is destroyed.  An end record that does not decode is
 * kept (its region waits at it: xr_txq_bad_end), with the reason in bad
 * (bad_size 0: not wanted).
 */
int xr_txq_add(xr_txq_t *q, xr_registry_t *reg, rd_kafka_message_t *m,
               char *bad, size_t bad_size);

/*
 * A partition was assigned from offset start (-1: its beginning), or a
 * region's queues are to start over.  Forgets everything queued for it.
 */
void xr_txq_assign(xr_txq_t *q, const char *topic, int32_t partition,
                   int64_t start);

/* Forgets every partition and region (all revoked). */
void xr_txq_clear(xr_txq_t *q);

/* The source regions seen, by index (names live as long as q). */
size_t      xr_txq_regions(const xr_txq_t *q);
const char *xr_txq_region_name(const xr_txq_t *q, size_t r);

/*
 * Whether region r's applied positions are known: set each stream's
 * (stream "" is the region's main producer; header xr-stream of its end
 * records names another) with xr_txq_set_applied, read from
 * xregion.applied; stream NULL only marks them known (a stream without a
 * position starts at 0: all of it is applied).
 */
bool xr_txq_has_applied(const xr_txq_t *q, size_t r);
void xr_txq_set_applied(xr_txq_t *q, size_t r, const char *stream,
                        xr_lsn_t lsn, const char *sysid);

/*
 * Hands out into out (room for max) the next messages of region r, as the
 * header says.  Returns how many; sets *big when the next transaction is
 * larger than max, its end record here or not (early): take it with
 * xr_txq_take_piece, alone.
 */
size_t xr_txq_take(xr_txq_t *q, size_t r, xr_txq_out_t *out, size_t max,
                   bool *big);

/*
 * Hands out the next piece (at most max) of region r's big transaction,
 * in tx_index order.  Sets *done when the piece ends it (its end record is
 * in it, to skip).  Returns how many; 0 (not done) means its next event
 * has not arrived yet.
 */
size_t xr_txq_take_piece(xr_txq_t *q, size_t r, xr_txq_out_t *out,
                         size_t max, bool *done);

/*
 * Whether region r's big transaction, taken before its end record, turned
 * out not to be the next one (xr_txq_take_piece then hands out nothing):
 * roll back what was applied of it and rewind r; it is then taken again
 * only once its end record is here.
 */
bool xr_txq_piece_broken(const xr_txq_t *q, size_t r);

/*
 * Whether region r's big transaction is being taken before its end
 * record; xr_txq_early_give_up: it is taken again (after a rewind) only
 * once its end record is here.
 */
bool xr_txq_early(const xr_txq_t *q, size_t r);
/* Whether a region other than r has messages or end records queued. */
bool xr_txq_others_waiting(const xr_txq_t *q, size_t r);
void xr_txq_early_give_up(xr_txq_t *q, size_t r);

/*
 * The messages queued for region r's next piece of a large transaction, as
 * far as they are here, up to max, in no particular order: what the next
 * xr_txq_take_piece will likely hand out (for decoding ahead).  Changes
 * nothing.
 */
size_t xr_txq_peek_piece(const xr_txq_t *q, size_t r, rd_kafka_message_t **out,
                         size_t max);

/* The position of a stream's last transaction taken. */
typedef struct xr_txq_taken_s {
	const char *stream;         /* borrowed: "" for the main producer */
	xr_lsn_t    lsn;            /* its commit LSN */
	const char *sysid;          /* borrowed */
	int64_t     commit_ts;
} xr_txq_taken_t;

/* How many streams region r's transactions came from so far. */
size_t xr_txq_nstreams(const xr_txq_t *q, size_t r);

/*
 * The positions of the last transaction taken for r since the last commit,
 * one per stream that had one, into out (room for max, at most
 * xr_txq_nstreams).  Returns how many (the strings are valid until the
 * region is cleared).
 */
size_t xr_txq_taken_positions(const xr_txq_t *q, size_t r,
                              xr_txq_taken_t *out, size_t max);

/*
 * The offsets to store for what was taken of region r since the last
 * commit, into out (room for xr_txq_npositions(q, r)).  Returns how many.
 */
size_t xr_txq_npositions(const xr_txq_t *q, size_t r);
size_t xr_txq_offsets(const xr_txq_t *q, size_t r, xr_txq_pos_t *out);

/* What was taken of r is stored: it is the new committed position. */
void xr_txq_commit(xr_txq_t *q, size_t r);

/*
 * What was taken of r since the last commit was not applied: forgets r's
 * queues and end records and writes into out (room for
 * xr_txq_npositions(q, r)) where each of its partitions is to be read
 * again (offset -1: from its beginning).  Returns how many.
 */
size_t xr_txq_rewind(xr_txq_t *q, size_t r, xr_txq_pos_t *out);

/*
 * Whether region r's next end record did not decode: the region waits
 * (the caller rewinds it and reads it again later: a schema may have been
 * missing for a while).
 */
bool xr_txq_bad_end(const xr_txq_t *q, size_t r);

/*
 * Partitions paused because their queue was full that have room again
 * (resume them): into out (room for xr_txq_npaused(q)).  Returns how
 * many; they count as resumed.
 */
size_t xr_txq_npaused(const xr_txq_t *q);
size_t xr_txq_resumable(xr_txq_t *q, xr_txq_pos_t *out);

/* Messages queued, all regions. */
size_t xr_txq_queued(const xr_txq_t *q);

/*
 * Why region r's next transaction is not handed out, into buf (for the
 * log when it waits long): "" when nothing waits.
 */
void xr_txq_waiting(const xr_txq_t *q, size_t r, char *buf, size_t size);

#endif
