/*
 * conflicts.h: `xregion conflicts`, a read-only report of the conflict log
 * (xregion.conflicts) for operators: which rows conflicted, how, and which
 * write won.  docs/consumer.md shows its output.
 */
#ifndef XR_CONFLICTS_H
#define XR_CONFLICTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/config.h"

typedef enum {
	XR_CONFLICTS_TEXT = 0,   /* one line per conflict, then a summary */
	XR_CONFLICTS_JSON        /* one JSON object per line, nothing else */
} xr_conflicts_format_t;

/* A bound of the time window, as --since and --until give it. */
typedef struct xr_when_s {
	bool    set;
	bool    relative;  /* us before the database's now() */
	int64_t us;        /* relative: a duration; else µs since the epoch */
} xr_when_t;

/*
 * The options of one run: an embedded object, xr_conflicts_opts_init() it,
 * xr_conflicts_opts_term() it.
 */
typedef struct xr_conflicts_opts_s {
	char  **schemas;      /* --table, split at the dot; owned, n_tables */
	char  **tables;
	size_t  n_tables;     /* 0: every table */
	char  **kinds;        /* --kind; owned */
	size_t  n_kinds;      /* 0: every kind */
	xr_when_t since;      /* logged_at >= since */
	xr_when_t until;      /* logged_at < until */
	long    limit;        /* 50; 0: no limit */
	bool    rows;         /* also print both row images */
	xr_conflicts_format_t format;
} xr_conflicts_opts_t;

void xr_conflicts_opts_init(xr_conflicts_opts_t *o);
void xr_conflicts_opts_term(xr_conflicts_opts_t *o);

/*
 * Applies one command-line option: name is its long name without the
 * dashes ("table", "since", "until", "kind", "limit", "rows", "format"),
 * arg its value (NULL for "rows").  Returns 0, or -1 with errstr naming
 * the option, e.g. "--since: \"yesterday\" is neither ...".
 */
int xr_conflicts_opts_set(xr_conflicts_opts_t *o, const char *name,
                          const char *arg, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Parses a --since/--until value into *out:
 *  - a duration ago: one or more <digits><unit>, unit s, m, h, d or w,
 *    e.g. "30m", "2h", "7d", "1h30m" (relative: measured back from the
 *    database's now() when the query runs);
 *  - an ISO 8601 time: YYYY-MM-DD, optionally followed by T or a space and
 *    HH:MM[:SS[.ffffff]], optionally followed by Z, +HH, +HH:MM or +HHMM
 *    (or -...).  Without an offset the time is local time of this process
 *    (TZ); a date alone is its local midnight.
 * Returns 0, or -1 with errstr saying what is wrong (not naming an option).
 */
int xr_conflicts_parse_when(const char *s, xr_when_t *out, char *errstr,
                            size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Connects to conf's postgres.dsn, reads the conflicts that o selects and
 * writes them to out (newest last), in o's format; in text format a
 * summary line follows (counts by kind and resolution of every conflict
 * the filters select, not only the --limit shown).  Rows and summary come
 * from one snapshot.  Returns 0, or -1 with errstr set: the database is
 * unreachable, has no schema xregion (not set up), a query failed, or out
 * could not be written.
 */
int xr_conflicts_run(const xr_config_t *conf, const xr_conflicts_opts_t *o,
                     FILE *out, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

#endif
