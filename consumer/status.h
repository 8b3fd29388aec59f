/* status.h: `xregion status` (see status.c). */
#ifndef XR_STATUS_H
#define XR_STATUS_H

#include <stddef.h>
#include <stdio.h>

#include "common/config.h"

/*
 * Prints this region's tombstones and hidden rows per replicated table,
 * then every region's progress and the tombstone purge horizon, to out.
 * Returns 0, or -1 with errstr (database unreachable, no schema xregion).
 */
int xr_status_run(const xr_config_t *conf, FILE *out, char *errstr,
                  size_t errstr_size);

#endif
