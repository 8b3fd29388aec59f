/*
 * feed.h: `xregion feed`, the change stream as flat rows for analytics.
 *
 * Reads the change topics of every region (or those chosen) and writes one
 * flat row per change: the table's columns plus __op, __deleted, __region,
 * __commit_ts, __commit_lsn, __lsn, __txid, __tx_index, __event_id, __version,
 * __unchanged and __text (docs/feed.md).  Into Avro object container files
 * under <out>/<schema>.<table>/dt=YYYY-MM-DD/hr=HH/, exactly once
 * (feed_sink.h), or as JSON lines to stdout.  --ddl prints a landing table
 * and the statement that merges it into a current-state table.
 */
#ifndef XR_FEED_H
#define XR_FEED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/config.h"
#include "common/metrics.h"

typedef struct xr_feed_opts_s {
	char    *out;           /* a directory, or "-" for stdout */
	char    *format;        /* "avro" (files) or "jsonl" (stdout) */
	char    *codec;         /* "snappy" (default), "deflate" or "null" */
	uint64_t rotate_bytes;  /* default 128 MiB */
	int64_t  rotate_s;      /* default 900 */
	int64_t  idle_s;        /* default 60 */
	int      max_open;      /* default 64: open files per Kafka partition */
	char   **tables;        /* schema.table; owned; 0: every pii: false one */
	size_t   n_tables;
	char   **regions;       /* owned; 0: every region of the config */
	size_t   n_regions;
	bool     from_end;      /* --start end: partitions never fed start at
	                           their end (default: the beginning) */
	bool     once;          /* stop at the end offsets of the start */
	char    *ddl;           /* print the DDL of this table and exit */
	char    *dialect;       /* postgres (default), duckdb or clickhouse */
} xr_feed_opts_t;

void xr_feed_opts_init(xr_feed_opts_t *o);
void xr_feed_opts_term(xr_feed_opts_t *o);

/*
 * Applies one command-line option by its long name ("out", "format",
 * "codec", "rotate-bytes", "rotate-seconds", "idle-flush", "max-open",
 * "table", "tables", "regions", "start", "once", "ddl", "dialect"; arg
 * NULL for a flag).  Returns 0, or -1 with errstr naming the option.
 */
int xr_feed_opts_set(xr_feed_opts_t *o, const char *name, const char *arg,
                     char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Runs the feeder until *stop (then commits what it has and returns 0) or,
 * with once, until it has fed everything there was at its start.  Returns
 * 0, 1 on a runtime failure, 2 on bad options.  metrics (may be NULL)
 * gets the feed's counters.
 */
int xr_feed_command(const xr_config_t *conf, const xr_feed_opts_t *o,
                    xr_metrics_t *metrics, atomic_int *stop, FILE *out,
                    FILE *err_out);

#endif
