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

/*
 * What the client does with an answer's body, apart from the HTTP so that
 * the unit tests and tests/fuzz/fuzz_schema_registry.c can throw bytes at
 * it.  body is borrowed, len bytes, need not be NUL-terminated (the body
 * is whatever the server sent); what names the request in errstr.
 */

/*
 * The id of an answer to POST /subjects/<subject>/versions ({"id": N},
 * 0 <= N <= INT32_MAX).  Returns 0, or -1 with errstr (quoting the start
 * of the body).
 */
int xr_sr_parse_id(const char *what, const char *body, size_t len,
                   int32_t *id, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * The schema of an answer to GET /schemas/ids/<id> ({"schema": "<json>"}):
 * returns a new NUL-terminated copy (free with free()), or NULL with
 * errstr.
 */
char *xr_sr_parse_schema(const char *what, const char *body, size_t len,
                         char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Writes the error for an answer with HTTP status status to errstr: the
 * answer's "message" when it is a JSON object with one, else the start of
 * the body.
 */
void xr_sr_answer_error(const char *what, long status, const char *body,
                        size_t len, char *errstr, size_t errstr_size);

#endif
