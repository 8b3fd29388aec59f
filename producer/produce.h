/* produce.h: `xregion produce`, the producer's long-running loop. */
#ifndef XR_PRODUCE_H
#define XR_PRODUCE_H

#include <signal.h>
#include <stdatomic.h>

#include "common/config.h"
#include "common/metrics.h"

/*
 * Counts into metrics (may be NULL).
 * Streams the region's committed changes of its published tables to Kafka
 * until *stop becomes non-zero (set by a signal handler), then flushes
 * Kafka, confirms the final safe LSN to the slot and returns 0.
 * A lost PostgreSQL connection, a failed delivery or an unreachable server
 * restarts the stream from the slot after a backoff (doubling up to
 * producer.reconnect_backoff_max_ms).  Returns 1 on errors that a retry
 * cannot mend (a missing slot, a published table without a primary key).
 */
int xr_produce_run(const xr_config_t *conf, xr_metrics_t *metrics,
                   atomic_int *stop);

#endif
