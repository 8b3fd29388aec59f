/*
 * dlq.h: `xregion dlq`, this region's dead letters: the events its consumer
 * could not apply, each on the dead-letter topic with its original key,
 * value and headers plus xr-dlq-reason, -topic, -partition, -offset and
 * -region (consume.c).
 *
 *   list     counts them by table and reason, and says how many are left
 *            to redrive;
 *   show     prints one, decoded;
 *   replay   redrives them once the cause is fixed (a table created, a
 *            column added or widened): each is applied through the normal
 *            conflict rules (consume.h, xr_consume_redrive) and its place
 *            on the dead-letter topic stored in xregion.offsets in the same
 *            transaction, so a redrive resumes where it stopped and applies
 *            each event once.  One that fails again goes back to the
 *            dead-letter topic, bytes and headers as they were, with the new
 *            reason and header xr-dlq-replays one higher; at
 *            --max-replays it is left alone and reported.
 */
#ifndef XR_DLQ_H
#define XR_DLQ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "common/config.h"

typedef enum {
	XR_DLQ_LIST = 0,
	XR_DLQ_SHOW,
	XR_DLQ_REPLAY
} xr_dlq_action_t;

typedef struct xr_dlq_opts_s {
	xr_dlq_action_t action;
	int      partition;     /* show: the message, as PARTITION:OFFSET */
	long long offset;
	bool     dry_run;       /* replay: apply and roll back */
	int      max_replays;   /* replay: leave one redriven this often (3) */
} xr_dlq_opts_t;

void xr_dlq_opts_init(xr_dlq_opts_t *o);

/*
 * Takes the positional arguments after `xregion dlq`: the action and, for
 * show, PARTITION:OFFSET (or OFFSET, in partition 0).  Returns 0, or -1
 * with errstr.
 */
int xr_dlq_opts_args(xr_dlq_opts_t *o, int argc, char *const *argv,
                     char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/* Applies an option ("dry-run", "max-replays").  Returns 0 or -1. */
int xr_dlq_opts_set(xr_dlq_opts_t *o, const char *name, const char *arg,
                    char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Runs `xregion dlq`.  Returns the exit status: 0 done, 1 a runtime
 * failure (or, for replay, stopped before the end), 2 bad usage.
 */
int xr_dlq_command(const xr_config_t *conf, const xr_dlq_opts_t *o,
                   atomic_int *stop, FILE *out, FILE *err_out);

#endif
