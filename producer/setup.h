/*
 * setup.h: `xregion setup` and `xregion teardown`: the publication, the
 * logical replication slot and the Kafka topics of a region.
 */
#ifndef XR_SETUP_H
#define XR_SETUP_H

#include "common/config.h"

/*
 * Idempotent.  Checks that every table marked pii: false exists and has a
 * primary key (a table without one is refused, by name), makes the
 * publication cover exactly those tables, creates the pgoutput slot if it
 * is missing, and creates the Kafka topics (one per published table, the
 * compacted schemas topic, the dead-letter topic) if they are missing.
 * Returns 0, 1 on a runtime failure, with the reason logged.
 */
int xr_setup_run(const xr_config_t *conf);

/* Drops the slot and the publication (topics are left: they hold history). */
int xr_teardown_run(const xr_config_t *conf);

#endif
