/*
 * feed_sink.h: the files of `xregion feed`, written exactly once.
 *
 * Rows of one Kafka partition go to Avro object container files, one open
 * file per output directory (<schema>.<table>/dt=YYYY-MM-DD/hr=HH) and
 * schema.  All the files a partition has open form a generation; a
 * generation is committed as one: every file closed and fsynced in
 * <out>/_xregion/tmp, then a state record naming them and the next offset
 * to read is written (temporary name, fsync, rename, fsync of the
 * directory): that rename is the commit.  Then the files are renamed to
 * their places and the directories fsynced.  On start, the sink finishes
 * the renames of every committed generation, deletes whatever else is in
 * tmp (rows of no committed generation), and resumes each partition at the
 * next offset of its record: a kill -9 at any moment neither loses nor
 * repeats a row.
 */
#ifndef XR_FEED_SINK_H
#define XR_FEED_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct xr_sink_s xr_sink_t;

typedef struct xr_sink_conf_s {
	const char *out;            /* the output directory */
	const char *codec;          /* "null", "deflate" or "snappy" */
	uint64_t    rotate_bytes;   /* commit a partition's files once one
	                               holds this many encoded bytes */
	int64_t     rotate_us;      /* ... or its rows span this much commit
	                               time, or it has been open this long */
	int64_t     idle_us;        /* ... or no row came for this long */
	int         max_open;       /* ... or it would open more files */
} xr_sink_conf_t;

/* What a file is of, written to its header metadata. */
typedef struct xr_sink_schema_s {
	const char *json;           /* the flat row schema (avro.schema) */
	uint64_t    fingerprint;    /* CRC-64-AVRO of its canonical form */
	const char *table;          /* schema.table */
	const char *source_schema;  /* the change event's writer schema id */
} xr_sink_schema_t;

/*
 * Opens the sink at conf->out (created if missing), finishing what a
 * previous run committed and dropping what it did not.  Returns NULL with
 * errstr set on failure.
 */
xr_sink_t *xr_sink_open(const xr_sink_conf_t *conf, char *errstr,
                        size_t errstr_size);

/* Closes without committing (the rows since the last commit are dropped
 * on the next open). */
void xr_sink_close(xr_sink_t *s);   /* NULL ok */

/* The next offset to read of topic/partition, or -1 if none committed. */
int64_t xr_sink_position(xr_sink_t *s, const char *topic, int32_t partition);

/*
 * Appends one row (an Avro datum of schema sch) at offset of topic and
 * partition, in directory reldir (relative to out), whose commit time is
 * ts (µs).  Several rows may share an offset.  May commit the partition's
 * generation before the first row of an offset (rotation by time, or too
 * many open files).  Returns 0, or -1 with errstr.
 */
int xr_sink_append(xr_sink_t *s, const char *topic, int32_t partition,
                   int64_t offset, const char *reldir,
                   const xr_sink_schema_t *sch, int64_t ts,
                   const void *datum, size_t len, char *errstr,
                   size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Records that offset of topic/partition is done, every row of it
 * appended (or none): call it after each message.  Commits the partition's
 * generation when a file reached rotate_bytes.  Returns 0, or -1 with
 * errstr.
 */
int xr_sink_advance(xr_sink_t *s, const char *topic, int32_t partition,
                    int64_t offset, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Commits the generations whose idle or age limit has passed at now_us
 * (monotonic), or every one with all set.  Returns 0, or -1 with errstr.
 */
int xr_sink_commit_due(xr_sink_t *s, int64_t now_us, bool all,
                       char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/* Totals since open. */
typedef struct xr_sink_stats_s {
	uint64_t rows;              /* appended */
	uint64_t files;             /* committed */
	uint64_t bytes;             /* encoded bytes appended */
	uint64_t commits;           /* generations committed */
	int64_t  last_commit_us;    /* Unix µs of the last, 0: none */
} xr_sink_stats_t;

void xr_sink_stats(const xr_sink_t *s, xr_sink_stats_t *out);

#endif
