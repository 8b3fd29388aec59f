/*
 * manifest.h: where a joining region's consumer starts, so that a backfill
 * from one donor and the topics together hold every write once.
 *
 * Taken in the donor before its backfill reads anything: on the donor's own
 * table topics, their end offsets now (every donor write before them is in
 * the donor's rows, which the backfill reads later); on the other regions'
 * topics, the offsets the donor's consumer has applied (xregion.offsets:
 * every event before them is in the donor's rows too).  A topic the donor
 * has not consumed is left out: the joining region reads it from its
 * beginning.  Seeking stores the offsets in the joining region's
 * xregion.offsets, where its consumer starts on assignment.
 *
 * The file is JSON:
 *   {"version": 1, "for_region": "sa", "donor": "us", "topic_prefix": "xr",
 *    "taken_at": "2026-11-30T21:50:00Z",
 *    "offsets": [{"topic": "xr.us.public.items", "partition": 0,
 *                 "next_offset": 1234}, ...]}
 */
#ifndef XR_MANIFEST_H
#define XR_MANIFEST_H

#include <stddef.h>
#include <stdio.h>

#include "common/config.h"

/*
 * Takes the manifest of donor conf (its database and Kafka) for region
 * for_region and writes it to path (a new file, renamed into place).
 * Prints a one-line summary to out.  Returns 0, or -1 with errstr.
 */
int xr_manifest_take(const xr_config_t *conf, const char *for_region,
                     const char *path, FILE *out, char *errstr,
                     size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Stores the offsets of the manifest at path in conf's database (the
 * joining region), refusing a manifest for another region or topic prefix,
 * and while the region's consumer is connected.  Prints what it stored to
 * out.  Returns 0, or -1 with errstr.
 */
int xr_manifest_seek(const xr_config_t *conf, const char *path, FILE *out,
                     char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

#endif
