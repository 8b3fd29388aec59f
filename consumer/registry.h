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

/*
 * Adds the schema json[0..len) as if it had been read from the schemas
 * topic under key id (NULL: a message without a key), for callers that
 * get schemas some other way (tests, tools).  As on the topic, an empty
 * json is a tombstone and is ignored, and a key already known keeps its
 * first schema.  json and id are borrowed (copied).  Returns 0, or -1 with
 * errstr set when json is not a schema or memory runs out.
 */
int xr_registry_add_json(xr_registry_t *r, const char *id, const char *json,
                         size_t len, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/* Schemas known. */
size_t xr_registry_size(const xr_registry_t *r);

/*
 * The writer schema of a message in either framing, and its datum in
 * *body: single-object (C3 01 and the fingerprint; id, the xr-schema
 * header, picks among schemas of one fingerprint) or Confluent's (00 and
 * a schema registry id, fetched from kafka.schema_registry).  Returns NULL
 * with errstr, and *transient when trying again later may help.
 */
const xr_schema_t *xr_registry_resolve(xr_registry_t *r, const void *msg,
                                       size_t len, const char *id,
                                       const void **body, size_t *body_len,
                                       bool *transient, char *errstr,
                                       size_t errstr_size);

#endif
