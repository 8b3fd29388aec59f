/*
 * test_schema_registry.c: unit tests for what common/schema_registry.c
 * makes of a registry's answers, without HTTP (the bodies are fixtures, as
 * Confluent Schema Registry and Apicurio send them).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "common/schema_registry.h"

/* A body of exactly len bytes on the heap: ASan sees a read past it. */
static char *
body(const char *text, size_t *len)
{
	char *b;

	*len = strlen(text);
	b = malloc(*len ? *len : 1);
	assert_non_null(b);
	memcpy(b, text, *len);
	return b;
}

static void
test_parse_id(void **state)
{
	static const char *const bad[] = {
		"", "{}", "{\"id\":-1}", "{\"id\":2147483648}", "{\"id\":\"7\"}",
		"[7]", "{\"id\":7", "{\"id\":7.0}",
	};
	char    err[256], *b;
	int32_t id = 0;
	size_t  len, i;
	(void)state;

	b = body("{\"id\":2147483647}", &len);
	assert_int_equal(xr_sr_parse_id("/s", b, len, &id, err, sizeof(err)), 0);
	assert_int_equal(id, INT32_MAX);
	free(b);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b = body(bad[i], &len);
		err[0] = '\0';
		assert_int_equal(xr_sr_parse_id("/s", b, len, &id, err, sizeof(err)),
		                 -1);
		assert_non_null(strstr(err, "schema registry: /s: no id in the "
		                       "answer"));
		free(b);
	}
}

static void
test_parse_schema(void **state)
{
	char  err[256], *b, *js;
	size_t len;
	(void)state;

	b = body("{\"schema\":\"{\\\"type\\\":\\\"string\\\"}\",\"schemaType\":"
	         "\"AVRO\"}", &len);
	js = xr_sr_parse_schema("/schemas/ids/3", b, len, err, sizeof(err));
	assert_non_null(js);
	assert_string_equal(js, "{\"type\":\"string\"}");
	free(js);
	free(b);

	/* A NUL inside the string is refused by jansson (no JSON_ALLOW_NUL). */
	b = body("{\"schema\":\"a\\u0000b\"}", &len);
	assert_null(xr_sr_parse_schema("/schemas/ids/3", b, len, err,
	                               sizeof(err)));
	assert_string_equal(err, "schema registry: /schemas/ids/3: no schema in "
	                    "the answer");
	free(b);

	b = body("{\"schema\":7}", &len);
	assert_null(xr_sr_parse_schema("/x", b, len, err, sizeof(err)));
	free(b);
}

static void
test_answer_error(void **state)
{
	char   err[512], *b;
	size_t len;
	(void)state;

	b = body("{\"error_code\":40403,\"message\":\"Schema 7 not found\"}", &len);
	xr_sr_answer_error("/schemas/ids/7", 404, b, len, err, sizeof(err));
	assert_string_equal(err, "schema registry: /schemas/ids/7: HTTP 404: "
	                    "Schema 7 not found");
	free(b);

	/* Not JSON: the body's start, never past its end (no NUL here). */
	b = body("<html>bad gateway</html>", &len);
	xr_sr_answer_error("/x", 502, b, len, err, sizeof(err));
	assert_string_equal(err, "schema registry: /x: HTTP 502: "
	                    "<html>bad gateway</html>");
	free(b);

	xr_sr_answer_error("/x", 500, NULL, 0, err, sizeof(err));
	assert_string_equal(err, "schema registry: /x: HTTP 500: (no message)");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_id),
		cmocka_unit_test(test_parse_schema),
		cmocka_unit_test(test_answer_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
