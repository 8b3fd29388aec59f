/*
 * metrics.h: counters of one xregion process and an optional HTTP endpoint
 * (libmicrohttpd) that serves them in Prometheus text format at /metrics,
 * the process's state as JSON at /status (what `xregion status` reads),
 * and "ok" at /healthz.
 *
 * Counters are C11 atomics: the producer and consumer threads add to them,
 * the server's thread reads them.
 */
#ifndef XR_METRICS_H
#define XR_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Room for the consumer's conflict kinds and resolutions. */
#define XR_METRICS_KINDS 16
#define XR_METRICS_RESOLUTIONS 4

/*
 * The commit-to-applied latency histogram: the upper bounds of its
 * buckets, in µs (xr_latency_bounds_us), then one for everything above.
 */
#define XR_LATENCY_BUCKETS 15
extern const int64_t xr_latency_bounds_us[XR_LATENCY_BUCKETS];

/* Counts latency us in buckets[XR_LATENCY_BUCKETS + 1] (not cumulative). */
void xr_latency_observe(uint64_t *buckets, int64_t us);

typedef struct xr_metrics_s {
	const char *region;                 /* borrowed */
	/* Producer. */
	atomic_uint_fast64_t produced_events;
	atomic_uint_fast64_t produced_txns;
	atomic_uint_fast64_t origin_txns_skipped;
	atomic_uint_fast64_t confirmed_lsn;
	atomic_uint_fast64_t in_flight;
	atomic_uint_fast64_t producer_restarts;
	/* Consumer. */
	atomic_uint_fast64_t consumed_events;
	atomic_uint_fast64_t applied_events;
	atomic_uint_fast64_t skipped_events;
	atomic_uint_fast64_t dead_lettered;
	atomic_uint_fast64_t paused_partitions;
	atomic_uint_fast64_t batches;
	atomic_uint_fast64_t tombstones;        /* in the versions tables */
	atomic_uint_fast64_t versions_bytes;    /* their size on disk */
	atomic_uint_fast64_t tombstones_purged;
	atomic_uint_fast64_t purge_horizon_us;  /* 0: not known yet */
	atomic_uint_fast64_t conflicts[XR_METRICS_KINDS][XR_METRICS_RESOLUTIONS];
	/*
	 * Source transactions applied, by the time from their commit in the
	 * source region to the commit here (not cumulative; the last bucket
	 * is everything above the last bound), and the sum of those times.
	 */
	atomic_uint_fast64_t apply_latency[XR_LATENCY_BUCKETS + 1];
	atomic_uint_fast64_t apply_latency_sum_us;
	/* Feeder (xregion feed). */
	atomic_uint_fast64_t feed_events;
	atomic_uint_fast64_t feed_rows;
	atomic_uint_fast64_t feed_files;
	atomic_uint_fast64_t feed_dead_lettered;
	atomic_uint_fast64_t feed_lag;          /* messages not fed yet */
	atomic_uint_fast64_t feed_commit_us;    /* Unix µs of the last commit */
	/* Names for the conflict labels (borrowed, static strings). */
	const char *const *kind_names;
	int                nkinds;
	const char *const *resolution_names;
	int                nresolutions;
	/* What /status shows besides the counters; under lock. */
	pthread_mutex_t    lock;
	char              *paused;     /* JSON array of the paused partitions */
	int64_t            started_us; /* Unix µs the process started */
} xr_metrics_t;

/* Zeroes m; region is borrowed and must outlive m.  Free with term. */
void xr_metrics_init(xr_metrics_t *m, const char *region);
void xr_metrics_term(xr_metrics_t *m);

/*
 * Replaces the consumer's list of paused partitions that /status shows:
 * json is a JSON array of objects (topic, partition, offset, table,
 * reason), taken over (freed by m).
 */
void xr_metrics_set_paused(xr_metrics_t *m, char *json);

/*
 * The /status document (a JSON object, free()): the region, pid, start
 * time, the producer's and consumer's counters, the paused partitions and
 * the last ERROR line logged (log.h).  NULL when memory runs out.
 */
char *xr_metrics_status_json(xr_metrics_t *m);

/* Appends the Prometheus text exposition of m to a new string (free()). */
char *xr_metrics_render(const xr_metrics_t *m);

typedef struct xr_metrics_server_s xr_metrics_server_t;

/*
 * Serves m on listen ("host:port", e.g. "127.0.0.1:9187").  Returns a new
 * server (stop with xr_metrics_server_stop), or NULL with errstr set.
 */
xr_metrics_server_t *xr_metrics_server_start(const char *listen,
                                             xr_metrics_t *m, char *errstr,
                                             size_t errstr_size);
void xr_metrics_server_stop(xr_metrics_server_t *s);   /* NULL ok */

#endif
