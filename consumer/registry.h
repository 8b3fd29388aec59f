/*
 * registry.h: the schemas of every region, read from the compacted schemas
 * topic, by fingerprint.  A fingerprint not yet known is looked up by
 * reading the topic up to its end: fetched, never guessed.
 *
 * Not thread-safe: one registry per consumer thread.
 */
#ifndef XR_REGISTRY_H
#define XR_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/avro_codec.h"
#include "common/config.h"

typedef struct xr_registry_s xr_registry_t;

/* Returns a new registry (free with xr_registry_destroy), NULL + errstr. */
xr_registry_t *xr_registry_new(const xr_config_t *conf, char *errstr,
                               size_t errstr_size);
void           xr_registry_destroy(xr_registry_t *r);   /* NULL ok */

/*
 * The schema with this fingerprint and, when id is not NULL, this id (the
 * event's xr-schema header: the key the schema was published under).
 * Borrowed: valid until the registry is destroyed.  Reads new schemas from the topic when it is not cached.
 * Returns NULL with errstr set when the topic does not have it either, or
 * cannot be read; *transient then says whether it was the latter (worth a
 * retry) rather than a schema that is not there.
 */
const xr_schema_t *xr_registry_get(xr_registry_t *r, uint64_t fingerprint,
                                   const char *id, bool *transient,
                                   char *errstr, size_t errstr_size);

/* Schemas known. */
size_t xr_registry_size(const xr_registry_t *r);

#endif
