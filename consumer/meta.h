/*
 * meta.h: the consumer's objects in a region's database, in schema
 * "xregion": applied offsets, row versions and tombstones per replicated
 * table, the conflict log, truncation markers, the tombstone triggers on
 * local deletes, and one replication origin per source region.
 *
 * docs/consumer.md explains how they make last-write-wins converge.
 */
#ifndef XR_META_H
#define XR_META_H

#include <stddef.h>

#include <libpq-fe.h>

#include "common/config.h"

/* Longest "schema.table" for which a versions table can be named. */
#define XR_META_MAX_QUALNAME XR_CONFIG_MAX_VTNAME

/*
 * Installs or updates the objects (idempotent) for every table conf marks
 * pii: false.  Returns 0, or -1 with errstr set.
 */
int xr_meta_install(PGconn *conn, const xr_config_t *conf, char *errstr,
                    size_t errstr_size) __attribute__((warn_unused_result));

/* Drops schema xregion and the triggers and origins it made. */
int xr_meta_remove(PGconn *conn, const xr_config_t *conf, char *errstr,
                   size_t errstr_size) __attribute__((warn_unused_result));

/* Connects and installs, logging what was done.  Returns 0 or 1. */
int xr_meta_setup(const xr_config_t *conf);
/*
 * After this region's database was restored from a logical dump: gives the
 * restored rows back the versions they had when dumped (see meta.c,
 * mark_restored).  Connects and logs.  Returns 0 or 1.
 */
int xr_meta_restored(const xr_config_t *conf);
/* Connects and removes, logging what was done.  Returns 0 or 1. */
int xr_meta_teardown(const xr_config_t *conf);

/* The name of the replication origin for source region src into buf. */
void xr_meta_origin_name(const xr_config_t *conf, const char *src, char *buf,
                         size_t size);

/*
 * The name of the replication origin of replays (consumer/replay.h), whose
 * transactions the producer does not publish either, into buf.
 */
void xr_meta_replay_origin_name(const xr_config_t *conf, char *buf,
                                size_t size);

#endif
