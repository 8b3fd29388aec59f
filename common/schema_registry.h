/*
 * schema_registry.h: a client of a Confluent-compatible schema registry
 * (Confluent Schema Registry, Apicurio's /apis/ccompat/v7, Karapace), over
 * libcurl, for kafka.schema_registry.
 *
 * The producer registers each key and value schema under the subjects
 * <topic>-key and <topic>-value and frames its events with the ids the
 * registry gives (Confluent wire format: 0x00, the id as a 4-byte
 * big-endian int, the Avro binary datum).  Readers look a framed message's
 * writer schema up by that id.  Answers are cached: a schema id never
 * changes its schema.
 */
#ifndef XR_SCHEMA_REGISTRY_H
#define XR_SCHEMA_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

#define XR_CONFLUENT_MAGIC      0x00
#define XR_CONFLUENT_HEADER_LEN 5

typedef struct xr_sr_s xr_sr_t;

/* A client for conf's kafka.schema_registry (which must be set). */
xr_sr_t *xr_sr_new(const xr_config_t *conf, char *errstr, size_t errstr_size);
void     xr_sr_destroy(xr_sr_t *sr);   /* NULL ok */

/*
 * Registers schema json (an Avro schema's JSON text) under subject and sets
 * *id to the id the registry gives it (the same id when it has it
 * already).  Returns 0; -1 with errstr and *transient true when the
 * registry could not be reached or answered 5xx (try again later); -1 with
 * *transient false when it refused the schema (an incompatible change, an
 * invalid schema, no permission): the answer's message is in errstr.
 */
int xr_sr_register(xr_sr_t *sr, const char *subject, const char *json,
                   int32_t *id, bool *transient, char *errstr,
                   size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * The JSON of the schema with this id (owned by the client, valid until
 * destroy), or NULL with errstr and *transient as xr_sr_register().
 */
const char *xr_sr_schema(xr_sr_t *sr, int32_t id, bool *transient,
                         char *errstr, size_t errstr_size);

/*
 * Reads the Confluent header of msg: on success returns 0 with *id and the
 * datum after it; -1 if msg is not Confluent-framed.
 */
int xr_confluent_header(const void *msg, size_t len, int32_t *id,
                        const void **body, size_t *body_len);

#endif
