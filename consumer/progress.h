/*
 * progress.h: how far every region has published its changes and applied
 * the other regions' ones, shared through one compacted Kafka topic per
 * region ("<prefix>.<region>._progress", written by that region only), so
 * that a tombstone is purged only once no older change of its key can
 * still arrive anywhere.
 *
 * Records (key, then a JSON value), in R's topic only (a record in
 * another region's topic, or naming another region, is skipped):
 *   producer/<R>  {"region": R, "through": T, "at": now}
 *       every change R committed before T (µs since the Unix epoch) is
 *       in Kafka; producer/<R>/<stream> the same for a second producer of
 *       R (producer.stream), and R's time is the least of its producers'
 *       (a deleted record, written by that producer's teardown, retires
 *       it);
 *   consumer/<R>  {"region": R, "applied": {"S": T, ...}, "at": now}
 *       R has applied every change of region S committed before T.
 * The purge horizon is the least "applied" time over every region and
 * every other region it reads; tombstones older than it are safe to drop.
 */
#ifndef XR_PROGRESS_H
#define XR_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "common/config.h"

#define XR_PROGRESS_NONE INT64_MIN   /* no record (yet) */

typedef struct xr_progress_s xr_progress_t;

/*
 * A reader of every region's progress topic from its beginning.  Returns NULL with
 * errstr.
 */
xr_progress_t *xr_progress_new(const xr_config_t *conf, char *errstr,
                               size_t errstr_size);
void xr_progress_destroy(xr_progress_t *p);      /* NULL ok */

/*
 * Reads the records that have arrived, waiting up to timeout_ms for the
 * first.  Returns how many it read.
 */
int xr_progress_poll(xr_progress_t *p, int timeout_ms);

/* The "through" time of region's producer, or XR_PROGRESS_NONE. */
int64_t xr_progress_through(const xr_progress_t *p, const char *region);

/* What reader has applied of source, or XR_PROGRESS_NONE. */
int64_t xr_progress_applied(const xr_progress_t *p, const char *reader,
                            const char *source);

/*
 * The purge horizon: the least applied time over every pair of regions
 * (reader, source), or XR_PROGRESS_NONE when a pair has no record yet
 * (then *missing names the reader, if not NULL).
 */
int64_t xr_progress_horizon(const xr_progress_t *p, const char **missing);

/*
 * Publishes a record (key, JSON value; NULL: delete the key's record) and
 * waits up to timeout_ms for Kafka to have it.  Returns 0, or -1 with
 * errstr.
 */
int xr_progress_publish(xr_progress_t *p, const char *key, const char *value,
                        int timeout_ms, char *errstr, size_t errstr_size);

/*
 * The consumer's side, on a thread of its own so that Kafka and database
 * round trips never hold the apply up: every 10 s it reads the records,
 * moves what this region has applied of each other region to that
 * region's "through" time once this region's stored offsets (its own
 * database connection) are at the end of every partition of that
 * region's topics (checked after the time was read), publishes it, and
 * recomputes the purge horizon.
 */
typedef struct xr_sharer_s xr_sharer_t;

/* Starts the thread.  Returns NULL with errstr. */
xr_sharer_t *xr_sharer_start(const xr_config_t *conf, char *errstr,
                             size_t errstr_size);

/*
 * The purge horizon as last computed, or XR_PROGRESS_NONE (then *missing,
 * if not NULL, names the region waited for, in buf).
 */
int64_t xr_sharer_horizon(xr_sharer_t *s, char *missing, size_t missing_size);

void xr_sharer_stop(xr_sharer_t *s);     /* joins the thread; NULL ok */

#endif
