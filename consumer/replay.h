/*
 * replay.h: `xregion replay`, which applies a range of the other regions'
 * history from Kafka to this region's database again, through the normal
 * conflict rules: a replay never moves a row backwards, and where the
 * region already holds a write it is skipped as a repeat.
 *
 * The range is fixed when the replay starts: per partition, from an offset
 * or the first message at or after a time (offsets-for-times), to the end
 * offset of that moment or the first message at or after --until.  The
 * consumer's loop applies it (consume.h, xr_consume_replay) under a
 * replication origin of its own, so it runs next to the region's consumer,
 * and stores no offsets: the consumer's positions do not move.
 */
#ifndef XR_REPLAY_H
#define XR_REPLAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/config.h"

/* One partition to replay: messages with start <= offset < end. */
typedef struct xr_replay_part_s {
	char    *topic;
	int32_t  partition;
	int64_t  start, end;
	bool     done;       /* reached end */
} xr_replay_part_t;

/* What the replay did (or, dry, would do) to one table. */
typedef struct xr_replay_table_s {
	char    *name;       /* schema.table, "?" when undecodable */
	uint64_t events;     /* read */
	uint64_t applied;    /* the event won: applied */
	uint64_t skipped;    /* older than, or the same as, what is here */
	uint64_t conflicts;  /* of applied and skipped: a conflict was logged */
	uint64_t refused;    /* not applicable here (reason logged) */
	uint64_t other;      /* meant for another region (xr-for) */
	uint64_t gave_up;    /* redrive: at --max-replays, left alone */
} xr_replay_table_t;

typedef struct xr_replay_tally_s {
	xr_replay_table_t *t;
	size_t             n;
} xr_replay_tally_t;

/* The entry of table name in tally (added if new). */
xr_replay_table_t *xr_replay_tally_get(xr_replay_tally_t *tally,
                                       const char *name);
void xr_replay_tally_term(xr_replay_tally_t *tally);

/*
 * Prints tally, a line per table: events, applied (with dry_run: "would"),
 * skipped, conflicts, refused, and the last column: a redrive's given up,
 * else a replay's events for another region.
 */
void xr_replay_tally_print(const xr_replay_tally_t *tally, bool dry_run,
                           bool redrive, FILE *out);

/* The options of one run: init it, set options, term it. */
typedef struct xr_replay_opts_s {
	char  **tables;      /* schema.table; owned, n_tables; 0: all pii: false */
	size_t  n_tables;
	char  **regions;     /* source regions; owned; 0: every other region */
	size_t  n_regions;
	char   *from;        /* required: an offset, a time or a duration ago */
	char   *until;       /* a time or a duration ago; NULL: the end now */
	bool    dry_run;
} xr_replay_opts_t;

void xr_replay_opts_init(xr_replay_opts_t *o);
void xr_replay_opts_term(xr_replay_opts_t *o);

/*
 * Applies one command-line option ("from", "until", "source-regions",
 * "table", "tables", "dry-run"; arg NULL for the flag).  Returns 0, or -1
 * with errstr naming the option.
 */
int xr_replay_opts_set(xr_replay_opts_t *o, const char *name, const char *arg,
                       char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Runs `xregion replay`: plans the range, applies it (or with dry_run,
 * applies and rolls back each batch), prints a line per table to out.
 * Returns the exit status: 0 done or nothing to do, 1 a runtime failure,
 * 2 a bad option (message on err_out).
 */
int xr_replay_command(const xr_config_t *conf, const xr_replay_opts_t *o,
                      atomic_int *stop, FILE *out, FILE *err_out);

#endif
