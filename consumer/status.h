/* status.h: `xregion status` (see status.c). */
#ifndef XR_STATUS_H
#define XR_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/config.h"

/* A region's health, worst last: also `xregion status`'s exit status. */
typedef enum {
	XR_HEALTHY = 0,
	XR_DEGRADED = 1,
	XR_DOWN = 2
} xr_health_t;

/* When a region counts as degraded. */
typedef struct xr_status_opts_s {
	bool    json;               /* --json */
	bool    details;            /* tables and progress too (not --brief) */
	int64_t max_slot_lag_bytes; /* --max-slot-lag-mb: 256 MiB */
	int64_t max_lag_events;     /* --max-lag-events: 10000 per partition */
	int     max_lag_seconds;    /* --max-lag-seconds: 120 */
	int     error_window_s;     /* an ERROR logged this recently: 300 */
	const char **extra;         /* further -c files: their regions too */
	size_t  nextra;
} xr_status_opts_t;

void xr_status_opts_init(xr_status_opts_t *o);
void xr_status_opts_term(xr_status_opts_t *o);
/* One --name value of `xregion status`: 0, or -1 with errstr. */
int  xr_status_opts_set(xr_status_opts_t *o, const char *name,
                        const char *value, char *errstr, size_t errstr_size);

/*
 * Checks region conf's health, and that of every further config in
 * opts->extra: its database and slot (active, lag in bytes and age),
 * the running process's /status (metrics_listen: in flight, paused
 * partitions, last error), the consumer's lag per topic-partition, the
 * dead letters not redriven and the last hour's conflicts by kind.  With
 * opts->details, also the tables' tombstones and hidden rows and every
 * region's progress.  Prints a table, or JSON, to out; returns the worst
 * health found.
 */
xr_health_t xr_status_run(const xr_config_t *conf,
                          const xr_status_opts_t *opts, FILE *out);

#endif
