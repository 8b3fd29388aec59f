/* consume.h: `xregion consume`, the consumer's long-running loop. */
#ifndef XR_CONSUME_H
#define XR_CONSUME_H

#include <signal.h>
#include <stdatomic.h>

#include "common/config.h"
#include "common/metrics.h"

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

#endif
