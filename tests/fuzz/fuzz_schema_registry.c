/*
 * fuzz_schema_registry.c: libFuzzer harness for what a reader of schemas
 * takes from outside: the schema registry's answers (common/
 * schema_registry.c, without the HTTP), the framing headers of a message
 * (Confluent's and Avro single-object) and a schema's JSON as the schemas
 * topic or the registry holds it (xr_schema_from_json, common/
 * avro_codec.c: jansson, then avro-c, then xregion's own walk of the
 * envelope and its Row).
 *
 * Every input goes through all of them:
 *   - xr_sr_parse_id and xr_sr_parse_schema as the body of an answer; a
 *     schema found in an answer goes on to xr_schema_from_json, as
 *     xr_registry_resolve would take it;
 *   - xr_sr_answer_error as the body of an error answer;
 *   - xr_confluent_header and xr_avro_so_header as a message;
 *   - xr_schema_from_json as a schemas topic record.
 * What it checks, beyond ASan/UBSan and LeakSanitizer: no function reads
 * past the input (a heap copy of its exact size, not NUL-terminated);
 * each failure sets errstr; a header's body lies at the end of the input;
 * a schema that loads has a fingerprint of its canonical form and, when it
 * is an envelope, row fields with names.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/avro_codec.h"
#include "common/schema_registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_schema(const char *json, size_t len)
{
	xr_schema_t *s;
	char         err[1024];
	int          i;

	err[0] = '\0';
	if (xr_schema_from_json(json, len, &s, err, sizeof(err)) != 0) {
		if (err[0] == '\0')
			abort();
		return;
	}
	if (s->fingerprint != xr_avro_crc64(s->canonical.data, s->canonical.len))
		abort();
	if ((s->is_envelope || s->is_key) && s->n_row_fields > 0 && !s->row_fields)
		abort();
	for (i = 0; i < s->n_row_fields; i++)
		if (!s->row_fields[i].name || !s->row_fields[i].column)
			abort();
	xr_schema_destroy(s);
}

static void
check_header(const char *buf, size_t size, const void *body, size_t body_len,
             size_t header_len)
{
	if (size < header_len || body_len != size - header_len ||
	    (const char *)body != buf + header_len)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const void *body;
	size_t      body_len;
	uint64_t    fp;
	int32_t     id;
	char        err[1024];
	char       *buf, *json;

	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);

	err[0] = '\0';
	if (xr_sr_parse_id("/subjects/t-value/versions", buf, size, &id, err,
	                   sizeof(err)) == 0) {
		if (id < 0)
			abort();
	} else if (err[0] == '\0') {
		abort();
	}

	err[0] = '\0';
	json = xr_sr_parse_schema("/schemas/ids/1", buf, size, err, sizeof(err));
	if (json) {
		check_schema(json, strlen(json));
		free(json);
	} else if (err[0] == '\0') {
		abort();
	}

	err[0] = '\0';
	xr_sr_answer_error("/schemas/ids/1", 404, buf, size, err, sizeof(err));
	if (err[0] == '\0')
		abort();

	if (xr_confluent_header(buf, size, &id, &body, &body_len) == 0)
		check_header(buf, size, body, body_len, XR_CONFLUENT_HEADER_LEN);
	if (xr_avro_so_header(buf, size, &fp, &body, &body_len, err,
	                      sizeof(err)) == 0)
		check_header(buf, size, body, body_len, XR_AVRO_SO_HEADER_LEN);

	check_schema(buf, size);
	free(buf);
	return 0;
}
