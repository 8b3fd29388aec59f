/*
 * backfill_cmd.h: `xregion backfill`, run in a donor region: asks the
 * region's producer to publish the existing rows of tables (jobs in
 * xregion.backfills, see backfill.h) and follows their progress.
 */
#ifndef XR_BACKFILL_CMD_H
#define XR_BACKFILL_CMD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "common/config.h"

/* What a run does. */
typedef enum {
	XR_BACKFILL_RUN = 0,  /* submit (or resume) and follow */
	XR_BACKFILL_DRY_RUN,  /* print what would be read; write nothing */
	XR_BACKFILL_STATUS,   /* print the jobs */
	XR_BACKFILL_CANCEL    /* cancel the unfinished jobs of the tables */
} xr_backfill_mode_t;

/*
 * The options of one run: an embedded object, xr_backfill_opts_init() it,
 * xr_backfill_opts_term() it.
 */
typedef struct xr_backfill_opts_s {
	char  **tables;       /* "schema.table" as given; owned, n_tables */
	size_t  n_tables;     /* 0: every table marked pii: false */
	char   *for_region;   /* --for; NULL: every other region */
	long    rate;         /* rows/s; 0: no cap */
	long    chunk_size;   /* rows per chunk (2000) */
	bool    wait;         /* follow until done (default) */
	bool    again;        /* run a finished backfill again */
	char   *manifest;     /* --manifest: write the joining region's start
	                         offsets there first (common/manifest.h) */
	xr_backfill_mode_t mode;
} xr_backfill_opts_t;

void xr_backfill_opts_init(xr_backfill_opts_t *o);
void xr_backfill_opts_term(xr_backfill_opts_t *o);

/*
 * Applies one command-line option: name is its long name without the
 * dashes ("table", "tables", "for", "rate", "chunk-size", "dry-run",
 * "status", "cancel", "no-wait", "again"), arg its value (NULL for flags).
 * Returns 0, or -1 with errstr naming the option.
 */
int xr_backfill_opts_set(xr_backfill_opts_t *o, const char *name,
                         const char *arg, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Runs `xregion backfill` against conf's database, printing to out
 * (progress to err_out: a bar when it is a terminal, else a line every
 * 10 s).  Following stops when *stop is set (the jobs go on).  Returns the
 * exit status: 0 done (or nothing to do), 1 a runtime failure or a failed
 * job, 2 a refused request (a table not marked pii: false, without a
 * primary key, not in the publication, an unknown region); errors are
 * printed to err_out.
 */
int xr_backfill_command(const xr_config_t *conf, const xr_backfill_opts_t *o,
                        atomic_int *stop, FILE *out, FILE *err_out);

#endif
