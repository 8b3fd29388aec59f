/* consume.h: `xregion consume`, the consumer's long-running loop. */
#ifndef XR_CONSUME_H
#define XR_CONSUME_H

#include <signal.h>
#include <stdatomic.h>

#include "common/config.h"
#include "common/metrics.h"
#include "consumer/replay.h"

/*
 * Applies the other regions' change events to this region's database until
 * *stop becomes non-zero.  Subscribes to <prefix>.<region>.<schema>.<table>
 * of every region but this one; applies only tables this region's config
 * marks pii: false (counting into metrics, which may be NULL); sends what cannot be applied to the dead-letter topic
 * with the reason; pauses a table's partitions while a column its events
 * carry is missing here.  Offsets live in the database (xregion.offsets),
 * committed with the rows they applied.  Returns 0 when stopped, 1 on an
 * error a retry cannot mend, 2 on a bad setting.
 */
int xr_consume_run(const xr_config_t *conf, xr_metrics_t *metrics,
                   atomic_int *stop);

/*
 * Applies the range parts (replay.h) of the other regions' topics once,
 * with the consumer's rules, under the replay origin and without storing
 * offsets; counts each event into tally by table.  A message that cannot
 * be applied is counted and logged, not dead-lettered (the consumer did
 * that already).  With dry_run each batch is rolled back once its outcome
 * is known.  Returns 0 when every part is done, 1 when it failed or was
 * stopped first, 2 on a bad setting.
 */
int xr_consume_replay(const xr_config_t *conf, xr_replay_part_t *parts,
                      size_t nparts, bool dry_run, xr_replay_tally_t *tally,
                      atomic_int *stop);

/*
 * Redrives dead letters (dlq.h): parts are partitions of this region's
 * dead-letter topic.  Each message is applied as the event it carries (its
 * region and table from header xr-dlq-topic), under the replay origin,
 * with its dead-letter offset stored in the same transaction; one that
 * fails again is dead-lettered again with header xr-dlq-replays one
 * higher, and one already redriven max_replays times is counted as given
 * up.  With dry_run nothing is stored or produced.  Returns as
 * xr_consume_replay.
 */
int xr_consume_redrive(const xr_config_t *conf, xr_replay_part_t *parts,
                       size_t nparts, bool dry_run, int max_replays,
                       xr_replay_tally_t *tally, atomic_int *stop);

#endif
