/*
 * test_pgtype.c: common/pgtype.c: type classification, the Avro type JSON
 * of a column, every type's text-form conversion with its edge cases and
 * errors, and the conversion of Avro values back to text.
 *
 * Expected day and microsecond counts for dates and timestamps were
 * computed with Python's datetime (shifted by whole 400-year Gregorian
 * cycles for years outside 1..9999), not with the code under test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pgtype.h"

/* Numeric typmod as PostgreSQL makes it: ((p << 16) | (s & 0x7ff)) + 4. */
#define NUMTM(p, s) ((int32_t)((((p) << 16) | ((s) & 0x7ff)) + 4))

/*
 * A one-field record whose field has the column's Avro type, nullable
 * (xr_pgtype_schema_json) or not (xr_pgtype_key_schema_json).
 */
typedef struct fx_s {
	xr_coltype_t        t;
	bool                nullable;
	avro_schema_t       schema;
	avro_value_iface_t *iface;
	avro_value_t        rec;
	avro_value_t        field;   /* child of rec: no reference of its own */
	char                err[256];
} fx_t;

static void
fx_init(fx_t *f, uint32_t oid, int32_t typmod, bool nullable)
{
	xr_buf_t b;

	memset(f, 0, sizeof(*f));
	f->nullable = nullable;
	xr_pgtype_classify(oid, typmod, NULL, &f->t);
	xr_buf_init(&b);
	xr_buf_puts(&b, "{\"type\":\"record\",\"name\":\"T\",\"fields\":"
	                "[{\"name\":\"f\",\"type\":");
	if (nullable)
		xr_pgtype_schema_json(&f->t, false, &b);
	else
		xr_pgtype_key_schema_json(&f->t, false, &b);
	xr_buf_puts(&b, "}]}");
	assert_int_equal(avro_schema_from_json_length(b.data, b.len, &f->schema), 0);
	xr_buf_term(&b);
	f->iface = avro_generic_class_from_schema(f->schema);
	assert_non_null(f->iface);
	assert_int_equal(avro_generic_value_new(f->iface, &f->rec), 0);
	assert_int_equal(avro_value_get_by_index(&f->rec, 0, &f->field, NULL), 0);
}

static void
fx_term(fx_t *f)
{
	avro_value_decref(&f->rec);
	avro_value_iface_decref(f->iface);
	avro_schema_decref(f->schema);
}

static int
fx_conv(fx_t *f, const char *text)
{
	f->err[0] = '\0';
	return xr_pgtype_text_to_avro(&f->t, text, strlen(text), f->nullable,
	                              &f->field, f->err, sizeof(f->err));
}

/* The union's current branch; returns its index. */
static int
branch_of(avro_value_t *u, avro_value_t *b)
{
	int d = -1;

	assert_int_equal(avro_value_get_discriminant(u, &d), 0);
	assert_int_equal(avro_value_get_current_branch(u, b), 0);
	return d;
}

/* Converts text as a nullable column and returns the non-null branch. */
static void
conv_ok(fx_t *f, uint32_t oid, int32_t typmod, const char *text,
        int want_branch, avro_value_t *b)
{
	fx_init(f, oid, typmod, true);
	if (fx_conv(f, text) != 0)
		fail_msg("conversion of \"%s\" failed: %s", text, f->err);
	assert_int_equal(branch_of(&f->field, b), want_branch);
}

static int32_t
conv_int(uint32_t oid, int32_t typmod, const char *text)
{
	fx_t         f;
	avro_value_t b;
	int32_t      v = 0;

	conv_ok(&f, oid, typmod, text, 1, &b);
	assert_int_equal(avro_value_get_int(&b, &v), 0);
	fx_term(&f);
	return v;
}

static int64_t
conv_long(uint32_t oid, int32_t typmod, const char *text)
{
	fx_t         f;
	avro_value_t b;
	int64_t      v = 0;

	conv_ok(&f, oid, typmod, text, 1, &b);
	assert_int_equal(avro_value_get_long(&b, &v), 0);
	fx_term(&f);
	return v;
}

static double
conv_double(uint32_t oid, const char *text)
{
	fx_t         f;
	avro_value_t b;
	double       d = 0;
	float        fl = 0;

	conv_ok(&f, oid, -1, text, 1, &b);
	if (oid == XR_OID_FLOAT4) {
		assert_int_equal(avro_value_get_float(&b, &fl), 0);
		d = fl;
	} else {
		assert_int_equal(avro_value_get_double(&b, &d), 0);
	}
	fx_term(&f);
	return d;
}

static void
want_bytes(uint32_t oid, int32_t typmod, const char *text,
             const void *want, size_t want_len)
{
	fx_t         f;
	avro_value_t b;
	const void  *p = NULL;
	size_t       n = 0;

	conv_ok(&f, oid, typmod, text, 1, &b);
	assert_int_equal(avro_value_get_bytes(&b, &p, &n), 0);
	assert_int_equal(n, want_len);
	if (n)
		assert_memory_equal(p, want, n);
	fx_term(&f);
}

static void
want_string(uint32_t oid, int32_t typmod, const char *text,
              int want_branch, const char *want)
{
	fx_t         f;
	avro_value_t b;
	const char  *p = NULL;
	size_t       n = 0;

	conv_ok(&f, oid, typmod, text, want_branch, &b);
	assert_int_equal(avro_value_get_string(&b, &p, &n), 0);
	assert_int_equal(n, strlen(want) + 1);   /* avro-c counts the NUL */
	assert_string_equal(p, want);
	fx_term(&f);
}

/* The conversion fails, and the message contains each of the needles. */
static void
want_error(uint32_t oid, int32_t typmod, const char *text,
             const char *needle1, const char *needle2)
{
	fx_t f;

	fx_init(&f, oid, typmod, true);
	if (fx_conv(&f, text) == 0)
		fail_msg("\"%s\" was accepted", text);
	if (needle1 && !strstr(f.err, needle1))
		fail_msg("message \"%s\" lacks \"%s\"", f.err, needle1);
	if (needle2 && !strstr(f.err, needle2))
		fail_msg("message \"%s\" lacks \"%s\"", f.err, needle2);
	fx_term(&f);
}

static void
want_json(const xr_coltype_t *t, bool key, bool canonical, const char *want)
{
	xr_buf_t b;

	xr_buf_init(&b);
	if (key)
		xr_pgtype_key_schema_json(t, canonical, &b);
	else
		xr_pgtype_schema_json(t, canonical, &b);
	assert_string_equal(b.data, want);
	xr_buf_term(&b);
}

/* ---- classification ---------------------------------------------------- */

static void
test_classify_builtin_scalars(void **state)
{
	static const struct {
		uint32_t    oid;
		xr_avtype_t at;
		const char *name;
	} cases[] = {
		{ XR_OID_BOOL, XR_AT_BOOLEAN, "bool" },
		{ XR_OID_BYTEA, XR_AT_BYTES, "bytea" },
		{ XR_OID_CHAR, XR_AT_STRING, "char" },
		{ XR_OID_NAME, XR_AT_STRING, "name" },
		{ XR_OID_INT8, XR_AT_LONG, "int8" },
		{ XR_OID_INT2, XR_AT_INT, "int2" },
		{ XR_OID_INT4, XR_AT_INT, "int4" },
		{ XR_OID_TEXT, XR_AT_STRING, "text" },
		{ XR_OID_JSON, XR_AT_JSON, "json" },
		{ XR_OID_FLOAT4, XR_AT_FLOAT, "float4" },
		{ XR_OID_FLOAT8, XR_AT_DOUBLE, "float8" },
		{ XR_OID_BPCHAR, XR_AT_STRING, "bpchar" },
		{ XR_OID_VARCHAR, XR_AT_STRING, "varchar" },
		{ XR_OID_DATE, XR_AT_DATE, "date" },
		{ XR_OID_TIME, XR_AT_TIME_MICROS, "time" },
		{ XR_OID_TIMESTAMP, XR_AT_LOCAL_TIMESTAMP_MICROS, "timestamp" },
		{ XR_OID_TIMESTAMPTZ, XR_AT_TIMESTAMP_MICROS, "timestamptz" },
		{ XR_OID_NUMERIC, XR_AT_STRING, "numeric" },
		{ XR_OID_UUID, XR_AT_UUID, "uuid" },
		{ XR_OID_JSONB, XR_AT_JSON, "jsonb" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		xr_coltype_t t;

		xr_pgtype_classify(cases[i].oid, -1, NULL, &t);
		assert_int_equal(t.typid, cases[i].oid);
		assert_int_equal(t.typmod, -1);
		assert_false(t.is_array);
		assert_int_equal(t.at, cases[i].at);
		assert_string_equal(t.pgname, cases[i].name);
	}
}

static void
test_classify_array_oids(void **state)
{
	static const struct {
		uint32_t    oid;
		xr_avtype_t at;
		const char *name;
	} cases[] = {
		{ 1000, XR_AT_BOOLEAN, "bool[]" },
		{ 1001, XR_AT_BYTES, "bytea[]" },
		{ 1002, XR_AT_STRING, "char[]" },
		{ 1003, XR_AT_STRING, "name[]" },
		{ 1005, XR_AT_INT, "int2[]" },
		{ 1007, XR_AT_INT, "int4[]" },
		{ 1009, XR_AT_STRING, "text[]" },
		{ 1014, XR_AT_STRING, "bpchar[]" },
		{ 1015, XR_AT_STRING, "varchar[]" },
		{ 1016, XR_AT_LONG, "int8[]" },
		{ 1021, XR_AT_FLOAT, "float4[]" },
		{ 1022, XR_AT_DOUBLE, "float8[]" },
		{ 1182, XR_AT_DATE, "date[]" },
		{ 1183, XR_AT_TIME_MICROS, "time[]" },
		{ 1115, XR_AT_LOCAL_TIMESTAMP_MICROS, "timestamp[]" },
		{ 1185, XR_AT_TIMESTAMP_MICROS, "timestamptz[]" },
		{ 1231, XR_AT_STRING, "numeric[]" },
		{ 2951, XR_AT_UUID, "uuid[]" },
		{ 199, XR_AT_JSON, "json[]" },
		{ 3807, XR_AT_JSON, "jsonb[]" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		xr_coltype_t t;

		xr_pgtype_classify(cases[i].oid, -1, NULL, &t);
		assert_true(t.is_array);
		assert_int_equal(t.at, cases[i].at);
		assert_string_equal(t.pgname, cases[i].name);
	}
}

static void
test_classify_numeric_typmod(void **state)
{
	xr_coltype_t t;

	(void)state;
	xr_pgtype_classify(XR_OID_NUMERIC, NUMTM(10, 2), NULL, &t);
	assert_int_equal(t.at, XR_AT_DECIMAL);
	assert_int_equal(t.precision, 10);
	assert_int_equal(t.scale, 2);
	assert_string_equal(t.pgname, "numeric(10,2)");

	xr_pgtype_classify(1231, NUMTM(1000, 1000), NULL, &t);
	assert_true(t.is_array);
	assert_int_equal(t.at, XR_AT_DECIMAL);
	assert_int_equal(t.precision, 1000);
	assert_int_equal(t.scale, 1000);
	assert_string_equal(t.pgname, "numeric(1000,1000)[]");
}

static void
test_classify_numeric_unconstrained_is_string(void **state)
{
	xr_coltype_t t;

	(void)state;
	xr_pgtype_classify(XR_OID_NUMERIC, -1, NULL, &t);
	assert_int_equal(t.at, XR_AT_STRING);
	assert_string_equal(t.pgname, "numeric");
}

static void
test_classify_numeric_negative_scale_is_string(void **state)
{
	xr_coltype_t t;

	(void)state;
	xr_pgtype_classify(XR_OID_NUMERIC, NUMTM(5, -2), NULL, &t);
	assert_int_equal(t.at, XR_AT_STRING);
	assert_string_equal(t.pgname, "numeric(5,-2)");
	xr_pgtype_classify(XR_OID_NUMERIC, NUMTM(1000, -1000), NULL, &t);
	assert_int_equal(t.at, XR_AT_STRING);
	assert_string_equal(t.pgname, "numeric(1000,-1000)");
}

static void
test_classify_numeric_scale_above_precision_is_string(void **state)
{
	xr_coltype_t t;

	(void)state;
	xr_pgtype_classify(XR_OID_NUMERIC, NUMTM(2, 5), NULL, &t);
	assert_int_equal(t.at, XR_AT_STRING);
	assert_string_equal(t.pgname, "numeric(2,5)");
}

static void
test_classify_type_modifiers_in_name(void **state)
{
	xr_coltype_t t;

	(void)state;
	xr_pgtype_classify(XR_OID_VARCHAR, 20 + 4, NULL, &t);
	assert_string_equal(t.pgname, "varchar(20)");
	xr_pgtype_classify(1014, 3 + 4, NULL, &t);
	assert_string_equal(t.pgname, "bpchar(3)[]");
	xr_pgtype_classify(XR_OID_TIMESTAMPTZ, 3, NULL, &t);
	assert_string_equal(t.pgname, "timestamptz(3)");
	xr_pgtype_classify(XR_OID_TIME, 0, NULL, &t);
	assert_string_equal(t.pgname, "time(0)");
}

static void
test_classify_custom_type_is_string(void **state)
{
	xr_coltype_t t;

	(void)state;
	xr_pgtype_classify(16385, -1, "public.mood", &t);
	assert_int_equal(t.at, XR_AT_STRING);
	assert_false(t.is_array);
	assert_string_equal(t.pgname, "public.mood");
}

static void
test_classify_other_builtin_is_string(void **state)
{
	xr_coltype_t t;

	(void)state;
	xr_pgtype_classify(1186, -1, NULL, &t);
	assert_int_equal(t.at, XR_AT_STRING);
	assert_string_equal(t.pgname, "interval");
	xr_pgtype_classify(999999, -1, NULL, &t);
	assert_int_equal(t.at, XR_AT_STRING);
	assert_string_equal(t.pgname, "oid:999999");
}

/* ---- schema JSON ------------------------------------------------------- */

static void
test_schema_json_scalar_logical_types(void **state)
{
	xr_coltype_t t;

	(void)state;
	xr_pgtype_classify(XR_OID_TIMESTAMPTZ, -1, NULL, &t);
	want_json(&t, false, false,
	            "[\"null\",{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}]");
	want_json(&t, false, true, "[\"null\",\"long\"]");
	xr_pgtype_classify(XR_OID_TIMESTAMP, -1, NULL, &t);
	want_json(&t, false, false,
	            "[\"null\",{\"type\":\"long\",\"logicalType\":\"local-timestamp-micros\"}]");
	xr_pgtype_classify(XR_OID_DATE, -1, NULL, &t);
	want_json(&t, false, false,
	            "[\"null\",{\"type\":\"int\",\"logicalType\":\"date\"}]");
	xr_pgtype_classify(XR_OID_TIME, -1, NULL, &t);
	want_json(&t, false, false,
	            "[\"null\",{\"type\":\"long\",\"logicalType\":\"time-micros\"}]");
	xr_pgtype_classify(XR_OID_UUID, -1, NULL, &t);
	want_json(&t, false, false,
	            "[\"null\",{\"type\":\"string\",\"logicalType\":\"uuid\"}]");
	want_json(&t, false, true, "[\"null\",\"string\"]");
	xr_pgtype_classify(XR_OID_JSONB, -1, NULL, &t);
	want_json(&t, false, false, "[\"null\",\"string\"]");
	xr_pgtype_classify(XR_OID_BYTEA, -1, NULL, &t);
	want_json(&t, false, false, "[\"null\",\"bytes\"]");
}

static void
test_schema_json_decimal_has_string_branch(void **state)
{
	xr_coltype_t t;

	(void)state;
	xr_pgtype_classify(XR_OID_NUMERIC, NUMTM(10, 2), NULL, &t);
	want_json(&t, false, false,
	            "[\"null\",{\"type\":\"bytes\",\"logicalType\":\"decimal\","
	            "\"precision\":10,\"scale\":2},\"string\"]");
	want_json(&t, false, true, "[\"null\",\"bytes\",\"string\"]");
}

static void
test_schema_json_array(void **state)
{
	xr_coltype_t t;

	(void)state;
	xr_pgtype_classify(1007, -1, NULL, &t);
	want_json(&t, false, false,
	            "[\"null\",{\"type\":\"array\",\"items\":[\"null\",\"int\"]},"
	            "\"string\"]");
	xr_pgtype_classify(1231, NUMTM(5, 2), NULL, &t);
	want_json(&t, false, true,
	            "[\"null\",{\"type\":\"array\",\"items\":"
	            "[\"null\",\"bytes\",\"string\"]},\"string\"]");
}

static void
test_key_schema_json_has_no_null(void **state)
{
	xr_coltype_t t;

	(void)state;
	xr_pgtype_classify(XR_OID_INT8, -1, NULL, &t);
	want_json(&t, true, false, "\"long\"");
	xr_pgtype_classify(XR_OID_UUID, -1, NULL, &t);
	want_json(&t, true, false,
	            "{\"type\":\"string\",\"logicalType\":\"uuid\"}");
	want_json(&t, true, true, "\"string\"");
	xr_pgtype_classify(XR_OID_NUMERIC, NUMTM(5, 0), NULL, &t);
	want_json(&t, true, false,
	            "[{\"type\":\"bytes\",\"logicalType\":\"decimal\","
	            "\"precision\":5,\"scale\":0},\"string\"]");
	xr_pgtype_classify(1009, -1, NULL, &t);
	want_json(&t, true, true,
	            "[{\"type\":\"array\",\"items\":[\"null\",\"string\"]},"
	            "\"string\"]");
}

/* Every mapped type's JSON, in both forms, is a schema avro-c accepts. */
static void
test_schema_json_parses_for_every_type(void **state)
{
	static const uint32_t oids[] = {
		16, 17, 18, 19, 20, 21, 23, 25, 114, 700, 701, 1042, 1043, 1082,
		1083, 1114, 1184, 1700, 2950, 3802, 1000, 1001, 1002, 1003, 1005,
		1007, 1009, 1014, 1015, 1016, 1021, 1022, 1182, 1183, 1115, 1185,
		1231, 2951, 199, 3807, 1186
	};
	size_t i;
	int    form;

	(void)state;
	for (i = 0; i < sizeof(oids) / sizeof(oids[0]); i++) {
		for (form = 0; form < 4; form++) {
			xr_coltype_t  t;
			xr_buf_t      b;
			avro_schema_t s;

			xr_pgtype_classify(oids[i], NUMTM(12, 3), NULL, &t);
			xr_buf_init(&b);
			if (form & 2)
				xr_pgtype_key_schema_json(&t, form & 1, &b);
			else
				xr_pgtype_schema_json(&t, form & 1, &b);
			if (avro_schema_from_json_length(b.data, b.len, &s) != 0)
				fail_msg("%s: %s: %s", t.pgname, b.data, avro_strerror());
			avro_schema_decref(s);
			xr_buf_term(&b);
		}
	}
}

/* ---- scalars ----------------------------------------------------------- */

static void
test_bool(void **state)
{
	fx_t         f;
	avro_value_t b;
	int          v = -1;

	(void)state;
	conv_ok(&f, XR_OID_BOOL, -1, "t", 1, &b);
	assert_int_equal(avro_value_get_boolean(&b, &v), 0);
	assert_int_equal(v, 1);
	fx_term(&f);
	conv_ok(&f, XR_OID_BOOL, -1, "f", 1, &b);
	assert_int_equal(avro_value_get_boolean(&b, &v), 0);
	assert_int_equal(v, 0);
	fx_term(&f);
}

static void
test_bool_rejects_other_spellings(void **state)
{
	(void)state;
	want_error(XR_OID_BOOL, -1, "true", "bool", "\"true\"");
	want_error(XR_OID_BOOL, -1, "", "bool", NULL);
	want_error(XR_OID_BOOL, -1, "tt", "bool", NULL);
}

static void
test_int2_limits(void **state)
{
	(void)state;
	assert_int_equal(conv_int(XR_OID_INT2, -1, "-32768"), -32768);
	assert_int_equal(conv_int(XR_OID_INT2, -1, "32767"), 32767);
	assert_int_equal(conv_int(XR_OID_INT2, -1, "0"), 0);
}

static void
test_int2_overflow(void **state)
{
	(void)state;
	want_error(XR_OID_INT2, -1, "32768", "int2", "out of range");
	want_error(XR_OID_INT2, -1, "-32769", "int2", "out of range");
}

static void
test_int4_limits(void **state)
{
	(void)state;
	assert_int_equal(conv_int(XR_OID_INT4, -1, "-2147483648"), INT32_MIN);
	assert_int_equal(conv_int(XR_OID_INT4, -1, "2147483647"), INT32_MAX);
	assert_int_equal(conv_int(XR_OID_INT4, -1, "-17"), -17);
}

static void
test_int4_overflow(void **state)
{
	(void)state;
	want_error(XR_OID_INT4, -1, "2147483648", "int4", "out of range");
	want_error(XR_OID_INT4, -1, "-2147483649", "int4", "out of range");
	want_error(XR_OID_INT4, -1, "99999999999999999999999", "int4",
	             "out of range");
}

static void
test_int4_garbage(void **state)
{
	(void)state;
	want_error(XR_OID_INT4, -1, "12a", "int4", "not an integer");
	want_error(XR_OID_INT4, -1, "", "int4", "not an integer");
	want_error(XR_OID_INT4, -1, "-", "int4", "not an integer");
	want_error(XR_OID_INT4, -1, " 1", "int4", "not an integer");
	want_error(XR_OID_INT4, -1, "1.0", "int4", "not an integer");
}

static void
test_int8_limits(void **state)
{
	(void)state;
	assert_true(conv_long(XR_OID_INT8, -1, "-9223372036854775808") == INT64_MIN);
	assert_true(conv_long(XR_OID_INT8, -1, "9223372036854775807") == INT64_MAX);
	assert_true(conv_long(XR_OID_INT8, -1, "-1") == -1);
}

static void
test_int8_overflow(void **state)
{
	(void)state;
	want_error(XR_OID_INT8, -1, "9223372036854775808", "int8", "out of range");
	want_error(XR_OID_INT8, -1, "-9223372036854775809", "int8", "out of range");
	want_error(XR_OID_INT8, -1, "18446744073709551616", "int8", "out of range");
}

static void
test_float4_values(void **state)
{
	(void)state;
	assert_true(conv_double(XR_OID_FLOAT4, "1.5") == 1.5);
	assert_true(conv_double(XR_OID_FLOAT4, "-0.1") == (double)-0.1f);
	assert_true(conv_double(XR_OID_FLOAT4, "3.4028235e+38") == (double)3.4028235e+38f);
	/* The smallest subnormal: strtof reports ERANGE, but it is a value. */
	assert_true(conv_double(XR_OID_FLOAT4, "1e-45") == (double)1e-45f);
	assert_true(conv_double(XR_OID_FLOAT4, "1e-45") > 0);
}

static void
test_float_special_values(void **state)
{
	(void)state;
	assert_true(isnan(conv_double(XR_OID_FLOAT4, "NaN")));
	assert_true(conv_double(XR_OID_FLOAT4, "Infinity") == INFINITY);
	assert_true(conv_double(XR_OID_FLOAT4, "-Infinity") == -INFINITY);
	assert_true(isnan(conv_double(XR_OID_FLOAT8, "NaN")));
	assert_true(conv_double(XR_OID_FLOAT8, "Infinity") == INFINITY);
	assert_true(conv_double(XR_OID_FLOAT8, "-Infinity") == -INFINITY);
}

static void
test_float8_values(void **state)
{
	(void)state;
	assert_true(conv_double(XR_OID_FLOAT8, "-1.7976931348623157e+308") ==
	            -1.7976931348623157e+308);
	assert_true(conv_double(XR_OID_FLOAT8, "5e-324") == 5e-324);
	assert_true(conv_double(XR_OID_FLOAT8, "0.30000000000000004") ==
	            0.30000000000000004);
}

static void
test_float_overflow(void **state)
{
	(void)state;
	want_error(XR_OID_FLOAT4, -1, "1e39", "float4", "out of range");
	want_error(XR_OID_FLOAT8, -1, "1e309", "float8", "out of range");
}

static void
test_float_garbage(void **state)
{
	(void)state;
	want_error(XR_OID_FLOAT8, -1, "abc", "float8", "not a number");
	want_error(XR_OID_FLOAT8, -1, "inf", "float8", "not a number");
	want_error(XR_OID_FLOAT8, -1, "nan", "float8", "not a number");
	want_error(XR_OID_FLOAT8, -1, "0x10", "float8", "not a number");
	want_error(XR_OID_FLOAT8, -1, " 1", "float8", "not a number");
	want_error(XR_OID_FLOAT8, -1, "1e", "float8", "not a number");
	want_error(XR_OID_FLOAT4, -1, "", "float4", "not a number");
}

/* ---- numeric ----------------------------------------------------------- */

static void
test_numeric_small_values(void **state)
{
	(void)state;
	want_bytes(XR_OID_NUMERIC, NUMTM(5, 2), "-0.01", "\xff", 1);
	want_bytes(XR_OID_NUMERIC, NUMTM(5, 2), "999.99", "\x01\x86\x9f", 3);
	want_bytes(XR_OID_NUMERIC, NUMTM(5, 2), "-999.99", "\xfe\x79\x61", 3);
	want_bytes(XR_OID_NUMERIC, NUMTM(5, 2), "0.00", "\x00", 1);
	want_bytes(XR_OID_NUMERIC, NUMTM(5, 2), "0", "\x00", 1);
	want_bytes(XR_OID_NUMERIC, NUMTM(5, 2), "1.5", "\x00\x96", 2);
	want_bytes(XR_OID_NUMERIC, NUMTM(5, 2), "-1.5", "\xff\x6a", 2);
}

/* Two's complement at the byte boundaries: minimal length both ways. */
static void
test_numeric_minimal_twos_complement(void **state)
{
	(void)state;
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 0), "127", "\x7f", 1);
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 0), "128", "\x00\x80", 2);
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 0), "-128", "\x80", 1);
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 0), "-129", "\xff\x7f", 2);
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 0), "255", "\x00\xff", 2);
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 0), "256", "\x01\x00", 2);
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 0), "-256", "\xff\x00", 2);
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 0), "-32768", "\x80\x00", 2);
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 0), "-0", "\x00", 1);
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 0), "0007", "\x07", 1);
}

static void
test_numeric_pads_fraction_to_scale(void **state)
{
	(void)state;
	/* 1.5 at scale 4 is 15000 = 0x3a98. */
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 4), "1.5", "\x3a\x98", 2);
	/* 12 at scale 4 is 120000 = 0x01d4c0. */
	want_bytes(XR_OID_NUMERIC, NUMTM(10, 4), "12", "\x01\xd4\xc0", 3);
	/* scale = precision: 0.5 at (3,3) is 500. */
	want_bytes(XR_OID_NUMERIC, NUMTM(3, 3), "0.5", "\x01\xf4", 2);
}

static unsigned
hexval(char c)
{
	return (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
}

/* tests/common/data/numeric_wide.txt: 1000-digit values from Python. */
static void
test_numeric_1000_digits(void **state)
{
	FILE *fp;
	char *line = NULL;
	size_t cap = 0;
	int   ncases = 0;

	(void)state;
	fp = fopen(XR_SOURCE_DIR "/tests/common/data/numeric_wide.txt", "r");
	assert_non_null(fp);
	while (getline(&line, &cap, fp) > 0) {
		int   p, s, off;
		char *text, *hex, *nl;
		unsigned char want[512];
		size_t n, i;

		if (line[0] == '#')
			continue;
		if ((nl = strchr(line, '\n')))
			*nl = '\0';
		assert_int_equal(sscanf(line, "%d %d %n", &p, &s, &off), 2);
		text = line + off;
		hex = strchr(text, ' ');
		assert_non_null(hex);
		*hex++ = '\0';
		n = strlen(hex) / 2;
		assert_true(n <= sizeof(want));
		for (i = 0; i < n; i++)
			want[i] = (unsigned char)(hexval(hex[2 * i]) << 4 |
			                          hexval(hex[2 * i + 1]));
		want_bytes(XR_OID_NUMERIC, NUMTM(p, s), text, want, n);
		ncases++;
	}
	free(line);
	fclose(fp);
	assert_int_equal(ncases, 8);
}

static void
test_numeric_nan_goes_to_string_branch(void **state)
{
	(void)state;
	want_string(XR_OID_NUMERIC, NUMTM(5, 2), "NaN", 2, "NaN");
}

static void
test_numeric_unconstrained_is_text(void **state)
{
	(void)state;
	want_string(XR_OID_NUMERIC, -1, "-12345678901234567890.000001", 1,
	              "-12345678901234567890.000001");
	want_string(XR_OID_NUMERIC, -1, "NaN", 1, "NaN");
}

static void
test_numeric_too_many_fraction_digits(void **state)
{
	(void)state;
	want_error(XR_OID_NUMERIC, NUMTM(5, 2), "1.234", "numeric(5,2)",
	             "fraction digits");
	want_error(XR_OID_NUMERIC, NUMTM(5, 0), "1.0", "numeric(5,0)",
	             "fraction digits");
}

static void
test_numeric_exceeds_precision(void **state)
{
	(void)state;
	want_error(XR_OID_NUMERIC, NUMTM(5, 2), "1000.00", "numeric(5,2)",
	             "precision");
	want_error(XR_OID_NUMERIC, NUMTM(5, 2), "-1000", "numeric(5,2)",
	             "precision");
}

static void
test_numeric_garbage(void **state)
{
	(void)state;
	want_error(XR_OID_NUMERIC, NUMTM(5, 2), "abc", "numeric(5,2)", "not a number");
	want_error(XR_OID_NUMERIC, NUMTM(5, 2), "1e2", "numeric(5,2)", "not a number");
	want_error(XR_OID_NUMERIC, NUMTM(5, 2), "", "numeric(5,2)", "not a number");
	want_error(XR_OID_NUMERIC, NUMTM(5, 2), "-", "numeric(5,2)", "not a number");
	want_error(XR_OID_NUMERIC, NUMTM(5, 2), "1.", "numeric(5,2)", "not a number");
	want_error(XR_OID_NUMERIC, NUMTM(5, 2), ".5", "numeric(5,2)", "not a number");
	want_error(XR_OID_NUMERIC, NUMTM(5, 2), "1.2.3", "numeric(5,2)", "not a number");
	want_error(XR_OID_NUMERIC, NUMTM(5, 2), "nan", "numeric(5,2)", "not a number");
}

/* ---- bytea, uuid, strings ---------------------------------------------- */

static void
test_bytea_hex(void **state)
{
	(void)state;
	want_bytes(XR_OID_BYTEA, -1, "\\x00ff10", "\x00\xff\x10", 3);
	want_bytes(XR_OID_BYTEA, -1, "\\xABcd", "\xab\xcd", 2);
	want_bytes(XR_OID_BYTEA, -1, "\\x", "", 0);
}

static void
test_bytea_bad_hex(void **state)
{
	(void)state;
	want_error(XR_OID_BYTEA, -1, "\\x0", "bytea", "odd number");
	want_error(XR_OID_BYTEA, -1, "\\xzz", "bytea", "hex digit");
	want_error(XR_OID_BYTEA, -1, "abc", "bytea", "hex format");
	want_error(XR_OID_BYTEA, -1, "\\000", "bytea", "hex format");
}

static void
test_uuid(void **state)
{
	(void)state;
	want_string(XR_OID_UUID, -1, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 1,
	              "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
}

static void
test_uuid_bad_form(void **state)
{
	(void)state;
	want_error(XR_OID_UUID, -1, "a0eebc999c0b4ef8bb6d6bb9bd380a11", "uuid",
	             "not a UUID");
	want_error(XR_OID_UUID, -1, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1", "uuid",
	             "not a UUID");
	want_error(XR_OID_UUID, -1, "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid",
	             "not a UUID");
	want_error(XR_OID_UUID, -1, "a0eebc99-9c0b4-ef8-bb6d-6bb9bd380a11", "uuid",
	             "not a UUID");
}

static void
test_text_json_and_unknown_as_is(void **state)
{
	(void)state;
	want_string(XR_OID_TEXT, -1, "h\xc3\xa9llo \"w\" \\ {x}", 1,
	              "h\xc3\xa9llo \"w\" \\ {x}");
	want_string(XR_OID_TEXT, -1, "", 1, "");
	want_string(XR_OID_JSONB, -1, "{\"a\": [1, 2]}", 1, "{\"a\": [1, 2]}");
	want_string(XR_OID_JSON, -1, "[1,2 ]", 1, "[1,2 ]");
	want_string(1186, -1, "1 day 02:03:04", 1, "1 day 02:03:04");
	want_string(XR_OID_VARCHAR, 14, "abc", 1, "abc");
}

static void
test_text_must_be_utf8(void **state)
{
	(void)state;
	want_error(XR_OID_TEXT, -1, "ab\xff", "text", "UTF-8");
	want_error(XR_OID_TEXT, -1, "\xc0\xaf", "text", "UTF-8");   /* overlong */
	want_error(XR_OID_TEXT, -1, "\xed\xa0\x80", "text", "UTF-8"); /* surrogate */
	want_error(XR_OID_TEXT, -1, "\xc3", "text", "UTF-8");       /* cut */
}

/* ---- date and time ----------------------------------------------------- */

static void
test_date_epoch_and_common_days(void **state)
{
	(void)state;
	assert_int_equal(conv_int(XR_OID_DATE, -1, "1970-01-01"), 0);
	assert_int_equal(conv_int(XR_OID_DATE, -1, "1969-12-31"), -1);
	assert_int_equal(conv_int(XR_OID_DATE, -1, "2000-02-29"), 11016);
	assert_int_equal(conv_int(XR_OID_DATE, -1, "0001-01-01"), -719162);
}

static void
test_date_bc(void **state)
{
	(void)state;
	assert_int_equal(conv_int(XR_OID_DATE, -1, "0044-03-15 BC"), -735160);
	assert_int_equal(conv_int(XR_OID_DATE, -1, "0001-01-01 BC"), -719528);
	/* PostgreSQL's earliest date, Julian day 0. */
	assert_int_equal(conv_int(XR_OID_DATE, -1, "4714-11-24 BC"), -2440588);
}

static void
test_date_years_above_9999(void **state)
{
	(void)state;
	assert_int_equal(conv_int(XR_OID_DATE, -1, "10000-01-01"), 2932897);
	/* PostgreSQL's latest date. */
	assert_int_equal(conv_int(XR_OID_DATE, -1, "5874897-12-31"), 2145042905);
}

static void
test_date_infinity(void **state)
{
	(void)state;
	assert_int_equal(conv_int(XR_OID_DATE, -1, "infinity"), INT32_MAX);
	assert_int_equal(conv_int(XR_OID_DATE, -1, "-infinity"), INT32_MIN);
}

static void
test_date_invalid(void **state)
{
	(void)state;
	want_error(XR_OID_DATE, -1, "2001-02-29", "date", NULL);
	want_error(XR_OID_DATE, -1, "1900-02-29", "date", NULL);
	want_error(XR_OID_DATE, -1, "2000-04-31", "date", NULL);
	want_error(XR_OID_DATE, -1, "2000-13-01", "date", NULL);
	want_error(XR_OID_DATE, -1, "2000-00-10", "date", NULL);
	want_error(XR_OID_DATE, -1, "0000-01-01", "date", NULL);
	want_error(XR_OID_DATE, -1, "20000101", "date", NULL);
	want_error(XR_OID_DATE, -1, "99-01-01", "date", NULL);
	want_error(XR_OID_DATE, -1, "2000-01-01 AD", "date", NULL);
	want_error(XR_OID_DATE, -1, "2000-1-01", "date", NULL);
	want_error(XR_OID_DATE, -1, "Infinity", "date", NULL);
}

static void
test_date_out_of_int32(void **state)
{
	(void)state;
	want_error(XR_OID_DATE, -1, "6000000-01-01", "date", "out of range");
}

static void
test_time(void **state)
{
	(void)state;
	assert_true(conv_long(XR_OID_TIME, -1, "00:00:00") == 0);
	assert_true(conv_long(XR_OID_TIME, -1, "12:34:56.5") == INT64_C(45296500000));
	assert_true(conv_long(XR_OID_TIME, -1, "23:59:59.999999") ==
	            INT64_C(86399999999));
	assert_true(conv_long(XR_OID_TIME, -1, "00:00:00.000001") == 1);
}

static void
test_time_24_00(void **state)
{
	(void)state;
	assert_true(conv_long(XR_OID_TIME, -1, "24:00:00") == INT64_C(86400000000));
}

static void
test_time_invalid(void **state)
{
	(void)state;
	want_error(XR_OID_TIME, -1, "24:00:01", "time", NULL);
	want_error(XR_OID_TIME, -1, "24:00:00.5", "time", NULL);
	want_error(XR_OID_TIME, -1, "25:00:00", "time", NULL);
	want_error(XR_OID_TIME, -1, "12:60:00", "time", NULL);
	want_error(XR_OID_TIME, -1, "12:00:60", "time", NULL);
	want_error(XR_OID_TIME, -1, "12:00:00.1234567", "time", NULL);
	want_error(XR_OID_TIME, -1, "12:00:00.", "time", NULL);
	want_error(XR_OID_TIME, -1, "12:00", "time", NULL);
	want_error(XR_OID_TIME, -1, "12:00:00+00", "time", NULL);
}

static void
test_timestamp(void **state)
{
	(void)state;
	assert_true(conv_long(XR_OID_TIMESTAMP, -1, "1970-01-01 00:00:00") == 0);
	assert_true(conv_long(XR_OID_TIMESTAMP, -1, "2000-01-01 00:00:00.000001") ==
	            INT64_C(946684800000001));
	assert_true(conv_long(XR_OID_TIMESTAMP, -1, "1969-12-31 23:59:59.999999") == -1);
}

static void
test_timestamp_bc(void **state)
{
	(void)state;
	assert_true(conv_long(XR_OID_TIMESTAMP, -1, "0044-03-15 12:00:00 BC") ==
	            INT64_C(-63517780800000000));
}

static void
test_timestamp_infinity(void **state)
{
	(void)state;
	assert_true(conv_long(XR_OID_TIMESTAMP, -1, "infinity") == INT64_MAX);
	assert_true(conv_long(XR_OID_TIMESTAMP, -1, "-infinity") == INT64_MIN);
	assert_true(conv_long(XR_OID_TIMESTAMPTZ, -1, "infinity") == INT64_MAX);
	assert_true(conv_long(XR_OID_TIMESTAMPTZ, -1, "-infinity") == INT64_MIN);
}

/*
 * PostgreSQL timestamps reach 294276 AD; microseconds since 1970 in an
 * int64 end in 294247.  The last representable microsecond is INT64_MAX,
 * which stands for infinity, so the one before it is the last accepted.
 */
static void
test_timestamp_beyond_int64_is_error(void **state)
{
	(void)state;
	assert_true(conv_long(XR_OID_TIMESTAMP, -1,
	                      "294247-01-10 04:00:54.775806") == INT64_MAX - 1);
	want_error(XR_OID_TIMESTAMP, -1, "294247-01-10 04:00:54.775807",
	             "timestamp", "out of range");
	want_error(XR_OID_TIMESTAMP, -1, "294276-12-31 23:59:59.999999",
	             "timestamp", "out of range");
}

static void
test_timestamp_invalid(void **state)
{
	(void)state;
	want_error(XR_OID_TIMESTAMP, -1, "2000-01-01", "timestamp", NULL);
	want_error(XR_OID_TIMESTAMP, -1, "2000-01-01T00:00:00", "timestamp", NULL);
	want_error(XR_OID_TIMESTAMP, -1, "2000-01-01 00:00:00+00", "timestamp", NULL);
	want_error(XR_OID_TIMESTAMP, -1, "2000-02-30 00:00:00", "timestamp", NULL);
	want_error(XR_OID_TIMESTAMP, -1, "2000-01-01 24:00:00", "timestamp", NULL);
	want_error(XR_OID_TIMESTAMP, -1, "2000-01-01 00:00:00 BC ", "timestamp", NULL);
}

static void
test_timestamptz_utc(void **state)
{
	(void)state;
	assert_true(conv_long(XR_OID_TIMESTAMPTZ, -1, "2000-01-01 00:00:00+00") ==
	            INT64_C(946684800000000));
	assert_true(conv_long(XR_OID_TIMESTAMPTZ, -1,
	                      "2020-06-15 13:45:30.123456+00") ==
	            INT64_C(1592228730123456));
}

static void
test_timestamptz_offsets(void **state)
{
	(void)state;
	assert_true(conv_long(XR_OID_TIMESTAMPTZ, -1, "2000-01-01 00:00:00+05:30") ==
	            INT64_C(946665000000000));
	assert_true(conv_long(XR_OID_TIMESTAMPTZ, -1, "2000-01-01 00:00:00-03:30:15") ==
	            INT64_C(946697415000000));
	assert_true(conv_long(XR_OID_TIMESTAMPTZ, -1, "1970-01-01 01:00:00+01") == 0);
}

static void
test_timestamptz_bc(void **state)
{
	(void)state;
	/* " BC" comes after the offset in PostgreSQL's output. */
	assert_true(conv_long(XR_OID_TIMESTAMPTZ, -1, "0044-03-15 12:00:00+00 BC") ==
	            INT64_C(-63517780800000000));
}

static void
test_timestamptz_needs_offset(void **state)
{
	(void)state;
	want_error(XR_OID_TIMESTAMPTZ, -1, "2000-01-01 00:00:00", "timestamptz", NULL);
	want_error(XR_OID_TIMESTAMPTZ, -1, "2000-01-01 00:00:00+5", "timestamptz", NULL);
	want_error(XR_OID_TIMESTAMPTZ, -1, "2000-01-01 00:00:00+16", "timestamptz", NULL);
	want_error(XR_OID_TIMESTAMPTZ, -1, "2000-01-01 00:00:00+05:60", "timestamptz", NULL);
	want_error(XR_OID_TIMESTAMPTZ, -1, "2000-01-01 00:00:00 UTC", "timestamptz", NULL);
}

/* ---- arrays ------------------------------------------------------------ */

/* The converted array of a nullable array column (branch 1). */
static size_t
array_of(fx_t *f, uint32_t oid, int32_t typmod, const char *text,
         avro_value_t *arr)
{
	size_t n = 0;

	conv_ok(f, oid, typmod, text, 1, arr);
	assert_int_equal(avro_value_get_size(arr, &n), 0);
	return n;
}

static void
test_array_int4_with_null(void **state)
{
	fx_t         f;
	avro_value_t arr, e, b;
	int32_t      v;

	(void)state;
	assert_int_equal(array_of(&f, 1007, -1, "{1,2,NULL,-3}", &arr), 4);
	assert_int_equal(avro_value_get_by_index(&arr, 0, &e, NULL), 0);
	assert_int_equal(branch_of(&e, &b), 1);
	assert_int_equal(avro_value_get_int(&b, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(avro_value_get_by_index(&arr, 2, &e, NULL), 0);
	assert_int_equal(branch_of(&e, &b), 0);
	assert_int_equal(avro_value_get_by_index(&arr, 3, &e, NULL), 0);
	assert_int_equal(branch_of(&e, &b), 1);
	assert_int_equal(avro_value_get_int(&b, &v), 0);
	assert_int_equal(v, -3);
	fx_term(&f);
}

static void
expect_text_elem(avro_value_t *arr, size_t i, const char *want)
{
	avro_value_t e, b;
	const char  *p;
	size_t       n;

	assert_int_equal(avro_value_get_by_index(arr, i, &e, NULL), 0);
	if (!want) {
		assert_int_equal(branch_of(&e, &b), 0);
		return;
	}
	assert_int_equal(branch_of(&e, &b), 1);
	assert_int_equal(avro_value_get_string(&b, &p, &n), 0);
	assert_string_equal(p, want);
	assert_int_equal(n, strlen(want) + 1);
}

static void
test_array_text_quoting_and_escapes(void **state)
{
	fx_t         f;
	avro_value_t arr;

	(void)state;
	assert_int_equal(array_of(&f, 1009, -1,
	                          "{a,\"a \\\"q\\\"\",\"\",NULL,\"NULL\","
	                          "\"b\\\\c\",\"x,y\",\"{}\",nUlL}", &arr), 9);
	expect_text_elem(&arr, 0, "a");
	expect_text_elem(&arr, 1, "a \"q\"");
	expect_text_elem(&arr, 2, "");
	expect_text_elem(&arr, 3, NULL);
	expect_text_elem(&arr, 4, "NULL");      /* quoted: the string */
	expect_text_elem(&arr, 5, "b\\c");
	expect_text_elem(&arr, 6, "x,y");
	expect_text_elem(&arr, 7, "{}");
	expect_text_elem(&arr, 8, NULL);        /* NULL in any case */
	fx_term(&f);
}

static void
test_array_unquoted_escape_and_spaces(void **state)
{
	fx_t         f;
	avro_value_t arr;

	(void)state;
	/* array_in's rules: white space around elements is dropped; an
	 * escaped character is kept, and N\ULL is a string, not NULL. */
	assert_int_equal(array_of(&f, 1009, -1, "{ a b , \"c\" ,d\\ ,N\\ULL}",
	                          &arr), 4);
	expect_text_elem(&arr, 0, "a b");
	expect_text_elem(&arr, 1, "c");
	expect_text_elem(&arr, 2, "d ");
	expect_text_elem(&arr, 3, "NULL");
	fx_term(&f);
}

static void
test_array_empty(void **state)
{
	fx_t         f;
	avro_value_t arr;

	(void)state;
	assert_int_equal(array_of(&f, 1007, -1, "{}", &arr), 0);
	fx_term(&f);
}

static void
test_array_multidim_falls_back_to_string(void **state)
{
	(void)state;
	want_string(1007, -1, "{{1,2},{3,4}}", 2, "{{1,2},{3,4}}");
	want_string(1009, -1, "{{a},{\"b c\"}}", 2, "{{a},{\"b c\"}}");
}

static void
test_array_lower_bound_falls_back_to_string(void **state)
{
	(void)state;
	want_string(1007, -1, "[0:2]={1,2,3}", 2, "[0:2]={1,2,3}");
}

static void
test_array_elements_use_element_rule(void **state)
{
	fx_t         f;
	avro_value_t arr, e, b;
	int64_t      l;
	int32_t      d;

	(void)state;
	assert_int_equal(array_of(&f, 1115, -1,
	                          "{\"2000-01-01 00:00:00.000001\",NULL}", &arr), 2);
	assert_int_equal(avro_value_get_by_index(&arr, 0, &e, NULL), 0);
	assert_int_equal(branch_of(&e, &b), 1);
	assert_int_equal(avro_value_get_long(&b, &l), 0);
	assert_true(l == INT64_C(946684800000001));
	fx_term(&f);

	assert_int_equal(array_of(&f, 1182, -1, "{1970-01-02,infinity}", &arr), 2);
	assert_int_equal(avro_value_get_by_index(&arr, 1, &e, NULL), 0);
	assert_int_equal(branch_of(&e, &b), 1);
	assert_int_equal(avro_value_get_int(&b, &d), 0);
	assert_int_equal(d, INT32_MAX);
	fx_term(&f);
}

static void
test_array_numeric_nan_element(void **state)
{
	fx_t         f;
	avro_value_t arr, e, b;
	const void  *p;
	const char  *s;
	size_t       n;

	(void)state;
	assert_int_equal(array_of(&f, 1231, NUMTM(5, 2), "{1.50,NaN}", &arr), 2);
	assert_int_equal(avro_value_get_by_index(&arr, 0, &e, NULL), 0);
	assert_int_equal(branch_of(&e, &b), 1);
	assert_int_equal(avro_value_get_bytes(&b, &p, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(p, "\x00\x96", 2);   /* 150, with a sign byte */
	assert_int_equal(avro_value_get_by_index(&arr, 1, &e, NULL), 0);
	assert_int_equal(branch_of(&e, &b), 2);
	assert_int_equal(avro_value_get_string(&b, &s, &n), 0);
	assert_string_equal(s, "NaN");
	fx_term(&f);
}

static void
test_array_bad_element_names_element(void **state)
{
	(void)state;
	want_error(1007, -1, "{1,x,3}", "invalid int4 value \"x\" in element 2 "
	             "of int4[]", "not an integer");
	want_error(1005, -1, "{1,40000}", "int2", "out of range");
}

static void
test_array_bad_syntax(void **state)
{
	(void)state;
	want_error(1007, -1, "{1,2", "int4[]", NULL);
	want_error(1007, -1, "1,2", "int4[]", NULL);
	want_error(1007, -1, "{1,,2}", "int4[]", NULL);
	want_error(1009, -1, "{\"a}", "text[]", NULL);
	want_error(1009, -1, "{a\"b}", "text[]", NULL);
	want_error(1009, -1, "{\"a\"b}", "text[]", NULL);
	want_error(1009, -1, "{a}}", "text[]", NULL);
	want_error(1009, -1, "", "text[]", NULL);
	want_error(1009, -1, "[0:1]", "text[]", NULL);
}

/* A record value is reused row after row: a second array replaces the first. */
static void
test_array_reuse_replaces_items(void **state)
{
	fx_t         f;
	avro_value_t arr;
	size_t       n = 0;

	(void)state;
	assert_int_equal(array_of(&f, 1007, -1, "{1,2,3}", &arr), 3);
	assert_int_equal(fx_conv(&f, "{7}"), 0);
	assert_int_equal(branch_of(&f.field, &arr), 1);
	assert_int_equal(avro_value_get_size(&arr, &n), 0);
	assert_int_equal(n, 1);
	fx_term(&f);
}

/* ---- nullability, keys, messages -------------------------------------- */

static void
test_set_null(void **state)
{
	fx_t         f;
	avro_value_t b;

	(void)state;
	conv_ok(&f, XR_OID_INT4, -1, "5", 1, &b);
	assert_int_equal(xr_pgtype_set_null(&f.field), 0);
	assert_int_equal(branch_of(&f.field, &b), 0);
	fx_term(&f);
}

static void
test_key_scalar_is_plain_value(void **state)
{
	fx_t    f;
	int64_t v = 0;

	(void)state;
	fx_init(&f, XR_OID_INT8, -1, false);
	assert_int_equal(fx_conv(&f, "42"), 0);
	assert_int_equal(avro_value_get_long(&f.field, &v), 0);
	assert_true(v == 42);
	fx_term(&f);
}

static void
test_key_decimal_and_array_use_branch_zero(void **state)
{
	fx_t         f;
	avro_value_t b;
	size_t       n = 0;

	(void)state;
	fx_init(&f, XR_OID_NUMERIC, NUMTM(5, 2), false);
	assert_int_equal(fx_conv(&f, "1.00"), 0);
	assert_int_equal(branch_of(&f.field, &b), 0);
	assert_int_equal(fx_conv(&f, "NaN"), 0);
	assert_int_equal(branch_of(&f.field, &b), 1);
	fx_term(&f);

	fx_init(&f, 1007, -1, false);
	assert_int_equal(fx_conv(&f, "{1,2}"), 0);
	assert_int_equal(branch_of(&f.field, &b), 0);
	assert_int_equal(avro_value_get_size(&b, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(fx_conv(&f, "{{1}}"), 0);
	assert_int_equal(branch_of(&f.field, &b), 1);
	fx_term(&f);
}

static void
test_error_quotes_at_most_40_chars(void **state)
{
	fx_t        f;
	char        text[101];
	const char *q;

	(void)state;
	memset(text, '7', 100);
	text[50] = 'x';
	text[100] = '\0';
	fx_init(&f, XR_OID_INT4, -1, true);
	assert_int_equal(fx_conv(&f, text), -1);
	q = strchr(f.err, '"');
	assert_non_null(q);
	/* 40 sevens, then the ellipsis outside the value. */
	assert_int_equal(strspn(q + 1, "7"), 40);
	assert_non_null(strstr(f.err, "\"...: "));
	assert_null(strchr(f.err, 'x'));
	fx_term(&f);
}

static void
test_error_quote_keeps_utf8_whole_and_hides_controls(void **state)
{
	fx_t f;
	char text[64];

	(void)state;
	/* 39 'a' then a 2-byte character across the 40-byte cut. */
	memset(text, 'a', 39);
	memcpy(text + 39, "\xc3\xa9\n-more", 8);
	text[47] = '\0';
	fx_init(&f, XR_OID_DATE, -1, true);
	assert_int_equal(fx_conv(&f, text), -1);
	assert_null(strstr(f.err, "\xc3\""));
	assert_non_null(strstr(f.err, "aaa\"..."));
	fx_term(&f);

	fx_init(&f, XR_OID_DATE, -1, true);
	assert_int_equal(fx_conv(&f, "ab\ncd"), -1);
	assert_non_null(strstr(f.err, "\"ab?cd\""));
	fx_term(&f);
}

/* ---- Avro back to text ------------------------------------------------- */

/*
 * Expected texts are what PostgreSQL 16 prints for the value under the
 * session settings of pgtype.h (checked with psql), except where a test says
 * otherwise.
 */

/* The text of f's field; fails the test when the conversion fails. */
static void
fx_text(fx_t *f, xr_buf_t *out, bool *is_null)
{
	xr_buf_reset(out);
	f->err[0] = '\0';
	if (xr_pgtype_avro_to_text(&f->t, &f->field, f->nullable, out, is_null,
	                           f->err, sizeof(f->err)) != 0)
		fail_msg("%s: to text failed: %s", f->t.pgname, f->err);
}

/* text to Avro and back, as a nullable column and as a key field. */
static void
want_text(uint32_t oid, int32_t typmod, const char *text, const char *want)
{
	int form;

	for (form = 0; form < 2; form++) {
		fx_t     f;
		xr_buf_t out;
		bool     is_null = true;

		fx_init(&f, oid, typmod, form == 0);
		if (fx_conv(&f, text) != 0)
			fail_msg("conversion of \"%s\" failed: %s", text, f.err);
		xr_buf_init(&out);
		fx_text(&f, &out, &is_null);
		assert_false(is_null);
		if (strcmp(out.data, want) != 0)
			fail_msg("%s \"%s\" (%s) came back as \"%s\", want \"%s\"",
			         f.t.pgname, text, form == 0 ? "nullable" : "key",
			         out.data, want);
		xr_buf_term(&out);
		fx_term(&f);
	}
}

/* Canonical text comes back unchanged. */
static void
want_same(uint32_t oid, int32_t typmod, const char *text)
{
	want_text(oid, typmod, text, text);
}

/*
 * A nullable column whose non-null branch (or branch no) is set by set():
 * the conversion back fails, the message has needle, out is unchanged.
 */
static void
want_text_error(uint32_t oid, int32_t typmod, int branch,
                void (*set)(avro_value_t *v), const char *needle)
{
	fx_t         f;
	avro_value_t b;
	xr_buf_t     out;
	bool         is_null = false;

	fx_init(&f, oid, typmod, true);
	assert_int_equal(avro_value_set_branch(&f.field, branch, &b), 0);
	set(&b);
	xr_buf_init(&out);
	xr_buf_puts(&out, "before");
	if (xr_pgtype_avro_to_text(&f.t, &f.field, true, &out, &is_null, f.err,
	                           sizeof(f.err)) == 0)
		fail_msg("%s: accepted, gave \"%s\"", f.t.pgname, out.data);
	assert_string_equal(out.data, "before");
	assert_int_equal(out.len, 6);
	if (!strstr(f.err, needle))
		fail_msg("message \"%s\" lacks \"%s\"", f.err, needle);
	xr_buf_term(&out);
	fx_term(&f);
}

static void
test_to_text_bool(void **state)
{
	(void)state;
	want_same(XR_OID_BOOL, -1, "t");
	want_same(XR_OID_BOOL, -1, "f");
}

static void
test_to_text_integers(void **state)
{
	(void)state;
	want_same(XR_OID_INT2, -1, "-32768");
	want_same(XR_OID_INT2, -1, "32767");
	want_same(XR_OID_INT4, -1, "-2147483648");
	want_same(XR_OID_INT4, -1, "2147483647");
	want_same(XR_OID_INT4, -1, "0");
	want_same(XR_OID_INT8, -1, "-9223372036854775808");
	want_same(XR_OID_INT8, -1, "9223372036854775807");
}

static void
test_to_text_float4_shortest_round_trip(void **state)
{
	(void)state;
	want_same(XR_OID_FLOAT4, -1, "0.1");
	want_same(XR_OID_FLOAT4, -1, "1.5");
	want_same(XR_OID_FLOAT4, -1, "-0");
	want_same(XR_OID_FLOAT4, -1, "3.4028235e+38");
	want_same(XR_OID_FLOAT4, -1, "1e-45");
	want_same(XR_OID_FLOAT4, -1, "0.33333334");
}

static void
test_to_text_float8_shortest_round_trip(void **state)
{
	(void)state;
	want_same(XR_OID_FLOAT8, -1, "0.1");
	want_same(XR_OID_FLOAT8, -1, "0.30000000000000004");
	want_same(XR_OID_FLOAT8, -1, "-2.5e-300");
	want_same(XR_OID_FLOAT8, -1, "1.7976931348623157e+308");
	want_same(XR_OID_FLOAT8, -1, "5e-324");
	want_same(XR_OID_FLOAT8, -1, "1e-05");
	want_same(XR_OID_FLOAT8, -1, "1.2345678901234568e+17");
}

/* %g switches to exponents sooner than PostgreSQL; PostgreSQL reads both. */
static void
test_to_text_float_exponent_notation_differs_from_postgres(void **state)
{
	(void)state;
	/* PostgreSQL prints 10000000000 and 1.6777216e+07. */
	want_text(XR_OID_FLOAT8, -1, "10000000000", "1e+10");
	want_text(XR_OID_FLOAT4, -1, "1.6777216e+07", "16777216");
}

static void
test_to_text_float_special_values(void **state)
{
	(void)state;
	want_same(XR_OID_FLOAT4, -1, "NaN");
	want_same(XR_OID_FLOAT4, -1, "Infinity");
	want_same(XR_OID_FLOAT4, -1, "-Infinity");
	want_same(XR_OID_FLOAT8, -1, "NaN");
	want_same(XR_OID_FLOAT8, -1, "Infinity");
	want_same(XR_OID_FLOAT8, -1, "-Infinity");
}

static void
test_to_text_decimal_at_scale(void **state)
{
	(void)state;
	want_same(XR_OID_NUMERIC, NUMTM(5, 2), "1.50");
	want_same(XR_OID_NUMERIC, NUMTM(5, 2), "0.00");
	want_same(XR_OID_NUMERIC, NUMTM(5, 2), "999.99");
	want_same(XR_OID_NUMERIC, NUMTM(3, 3), "0.500");
	want_same(XR_OID_NUMERIC, NUMTM(10, 0), "0");
	want_same(XR_OID_NUMERIC, NUMTM(10, 4), "12.0000");
	/* pgoutput sends canonical text; other text is padded to the scale. */
	want_text(XR_OID_NUMERIC, NUMTM(5, 2), "1.5", "1.50");
}

static void
test_to_text_decimal_negative(void **state)
{
	(void)state;
	want_same(XR_OID_NUMERIC, NUMTM(5, 2), "-0.01");
	want_same(XR_OID_NUMERIC, NUMTM(5, 2), "-1.50");
	want_same(XR_OID_NUMERIC, NUMTM(5, 2), "-999.99");
	want_same(XR_OID_NUMERIC, NUMTM(3, 3), "-0.001");
	/* Two's complement byte boundaries. */
	want_same(XR_OID_NUMERIC, NUMTM(10, 0), "-128");
	want_same(XR_OID_NUMERIC, NUMTM(10, 0), "-129");
	want_same(XR_OID_NUMERIC, NUMTM(10, 0), "128");
	want_same(XR_OID_NUMERIC, NUMTM(10, 0), "-32768");
	want_text(XR_OID_NUMERIC, NUMTM(10, 0), "-0", "0");
}

/* tests/common/data/numeric_wide.txt: values of up to 1000 digits. */
static void
test_to_text_decimal_1000_digits(void **state)
{
	FILE  *fp;
	char  *line = NULL;
	size_t cap = 0;
	int    ncases = 0;

	(void)state;
	fp = fopen(XR_SOURCE_DIR "/tests/common/data/numeric_wide.txt", "r");
	assert_non_null(fp);
	while (getline(&line, &cap, fp) > 0) {
		int      p, s, off, nfrac;
		char    *text, *sp, *dot;
		xr_buf_t want;

		if (line[0] == '#')
			continue;
		assert_int_equal(sscanf(line, "%d %d %n", &p, &s, &off), 2);
		text = line + off;
		sp = strchr(text, ' ');
		assert_non_null(sp);
		*sp = '\0';
		/* PostgreSQL prints exactly s fraction digits. */
		xr_buf_init(&want);
		xr_buf_puts(&want, text);
		dot = strchr(text, '.');
		nfrac = dot ? (int)strlen(dot + 1) : 0;
		if (s > 0 && !dot)
			xr_buf_putc(&want, '.');
		for (; nfrac < s; nfrac++)
			xr_buf_putc(&want, '0');
		want_text(XR_OID_NUMERIC, NUMTM(p, s), text, want.data);
		assert_true(strlen(want.data) >= 900);
		xr_buf_term(&want);
		ncases++;
	}
	free(line);
	fclose(fp);
	assert_int_equal(ncases, 8);
}

static void
test_to_text_decimal_string_branch(void **state)
{
	(void)state;
	want_same(XR_OID_NUMERIC, NUMTM(5, 2), "NaN");
	want_same(1231, NUMTM(5, 2), "{NaN,NULL}");
}

/* Another writer may sign-extend beyond the minimal length. */
static void
test_to_text_decimal_non_minimal_bytes(void **state)
{
	static const struct {
		const char *bytes;
		size_t      n;
		const char *want;
	} cases[] = {
		{ "\x00\x00\x96", 3, "1.50" },
		{ "\xff\xff\x6a", 3, "-1.50" },
		{ "\x00\x00", 2, "0.00" },
		{ "\xff\xff\xff\xff", 4, "-0.01" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fx_t         f;
		avro_value_t b;
		xr_buf_t     out;
		bool         is_null;

		fx_init(&f, XR_OID_NUMERIC, NUMTM(5, 2), true);
		assert_int_equal(avro_value_set_branch(&f.field, 1, &b), 0);
		assert_int_equal(avro_value_set_bytes(&b, (void *)cases[i].bytes,
		                                      cases[i].n), 0);
		xr_buf_init(&out);
		fx_text(&f, &out, &is_null);
		assert_string_equal(out.data, cases[i].want);
		xr_buf_term(&out);
		fx_term(&f);
	}
}

/* Sign extension beyond the widest minimal decimal is still no error. */
static void
test_to_text_decimal_wide_sign_extension(void **state)
{
	unsigned char bytes[600];
	int           neg;

	(void)state;
	for (neg = 0; neg < 2; neg++) {
		fx_t         f;
		avro_value_t b;
		xr_buf_t     out;
		bool         is_null;

		memset(bytes, neg ? 0xff : 0x00, sizeof(bytes));
		bytes[sizeof(bytes) - 1] = neg ? 0x6a : 0x96;
		fx_init(&f, XR_OID_NUMERIC, NUMTM(5, 2), true);
		assert_int_equal(avro_value_set_branch(&f.field, 1, &b), 0);
		assert_int_equal(avro_value_set_bytes(&b, bytes, sizeof(bytes)), 0);
		xr_buf_init(&out);
		fx_text(&f, &out, &is_null);
		assert_string_equal(out.data, neg ? "-1.50" : "1.50");
		xr_buf_term(&out);
		fx_term(&f);
	}
}

static void
set_bytes_100000(avro_value_t *v)
{
	/* 100000 = 0x0186a0: 1000.00 has six digits. */
	assert_int_equal(avro_value_set_bytes(v, "\x01\x86\xa0", 3), 0);
}

static void
set_bytes_empty(avro_value_t *v)
{
	assert_int_equal(avro_value_set_bytes(v, "", 0), 0);
}

static void
set_bytes_huge(avro_value_t *v)
{
	static unsigned char big[600];

	memset(big, 0x11, sizeof(big));
	assert_int_equal(avro_value_set_bytes(v, big, sizeof(big)), 0);
}

static void
test_to_text_decimal_beyond_precision_is_error(void **state)
{
	(void)state;
	want_text_error(XR_OID_NUMERIC, NUMTM(5, 2), 1, set_bytes_100000,
	                "precision");
	want_text_error(XR_OID_NUMERIC, NUMTM(1000, 0), 1, set_bytes_huge,
	                "precision");
	want_text_error(XR_OID_NUMERIC, NUMTM(5, 2), 1, set_bytes_empty,
	                "empty");
}

static void
test_to_text_bytea_lower_hex(void **state)
{
	(void)state;
	want_same(XR_OID_BYTEA, -1, "\\xdeadbeef00");
	want_same(XR_OID_BYTEA, -1, "\\x");
	want_text(XR_OID_BYTEA, -1, "\\xDEADBEEF", "\\xdeadbeef");
}

static void
test_to_text_strings_as_is(void **state)
{
	(void)state;
	want_same(XR_OID_UUID, -1, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
	want_same(XR_OID_TEXT, -1, "h\xc3\xa9llo, \"world\"\\");
	want_same(XR_OID_TEXT, -1, "");
	want_same(XR_OID_JSONB, -1, "{\"a\": [1, \"x\"]}");
	want_same(XR_OID_NUMERIC, -1, "3.14159265358979323846");
	want_same(1186, -1, "1 day 02:00:00");
}

static void
set_string_with_nul(avro_value_t *v)
{
	assert_int_equal(avro_value_set_string_len(v, "a\0b", 4), 0);
}

static void
test_to_text_string_with_nul_is_error(void **state)
{
	(void)state;
	want_text_error(XR_OID_TEXT, -1, 1, set_string_with_nul, "NUL");
}

static void
test_to_text_date(void **state)
{
	(void)state;
	want_same(XR_OID_DATE, -1, "1970-01-01");
	want_same(XR_OID_DATE, -1, "2024-02-29");
	want_same(XR_OID_DATE, -1, "1969-12-31");
	want_same(XR_OID_DATE, -1, "0001-01-01");
}

static void
test_to_text_date_bc(void **state)
{
	(void)state;
	want_same(XR_OID_DATE, -1, "0001-12-31 BC");
	want_same(XR_OID_DATE, -1, "0044-03-15 BC");
	want_same(XR_OID_DATE, -1, "4714-11-24 BC");
}

static void
test_to_text_date_far_future(void **state)
{
	(void)state;
	want_same(XR_OID_DATE, -1, "9999-12-31");
	want_same(XR_OID_DATE, -1, "10000-01-01");
	want_same(XR_OID_DATE, -1, "5874897-12-31");
}

static void
test_to_text_date_infinity(void **state)
{
	(void)state;
	want_same(XR_OID_DATE, -1, "infinity");
	want_same(XR_OID_DATE, -1, "-infinity");
}

static void
test_to_text_time(void **state)
{
	(void)state;
	want_same(XR_OID_TIME, -1, "00:00:00");
	want_same(XR_OID_TIME, -1, "00:00:00.000001");
	want_same(XR_OID_TIME, -1, "12:34:56.5");
	want_same(XR_OID_TIME, -1, "23:59:59.999999");
	want_same(XR_OID_TIME, -1, "24:00:00");
	want_text(XR_OID_TIME, -1, "12:00:00.500000", "12:00:00.5");
}

static void
set_long_minus_one(avro_value_t *v)
{
	assert_int_equal(avro_value_set_long(v, -1), 0);
}

static void
set_long_day_and_one(avro_value_t *v)
{
	assert_int_equal(avro_value_set_long(v, INT64_C(86400000000) + 1), 0);
}

static void
test_to_text_time_outside_day_is_error(void **state)
{
	(void)state;
	want_text_error(XR_OID_TIME, -1, 1, set_long_minus_one, "within a day");
	want_text_error(XR_OID_TIME, -1, 1, set_long_day_and_one,
	                "within a day");
}

static void
test_to_text_timestamp(void **state)
{
	(void)state;
	/* No fraction when it is zero, no trailing fraction zeros. */
	want_same(XR_OID_TIMESTAMP, -1, "2000-01-01 00:00:00");
	want_same(XR_OID_TIMESTAMP, -1, "2000-01-01 00:00:00.000001");
	want_same(XR_OID_TIMESTAMP, -1, "2024-02-29 23:59:59.25");
	/* Before 1970: negative microseconds. */
	want_same(XR_OID_TIMESTAMP, -1, "1969-12-31 23:59:59.5");
	want_same(XR_OID_TIMESTAMP, -1, "294247-01-10 04:00:54.775806");
}

static void
test_to_text_timestamp_bc(void **state)
{
	(void)state;
	want_same(XR_OID_TIMESTAMP, -1, "0001-01-01 00:00:00 BC");
	want_same(XR_OID_TIMESTAMP, -1, "0044-03-15 12:00:00.25 BC");
	want_same(XR_OID_TIMESTAMP, -1, "4714-11-24 00:00:00 BC");
}

static void
test_to_text_timestamptz_utc(void **state)
{
	(void)state;
	want_same(XR_OID_TIMESTAMPTZ, -1, "2000-01-01 00:00:00+00");
	want_same(XR_OID_TIMESTAMPTZ, -1, "2020-06-15 08:15:30.123456+00");
	want_text(XR_OID_TIMESTAMPTZ, -1, "2020-06-15 13:45:30.123456+05:30",
	          "2020-06-15 08:15:30.123456+00");
}

/* PostgreSQL puts the offset before " BC". */
static void
test_to_text_timestamptz_bc(void **state)
{
	(void)state;
	want_same(XR_OID_TIMESTAMPTZ, -1, "0044-03-15 12:00:00+00 BC");
	want_same(XR_OID_TIMESTAMPTZ, -1, "0044-03-15 12:00:00.25+00 BC");
}

static void
test_to_text_timestamp_infinity(void **state)
{
	(void)state;
	want_same(XR_OID_TIMESTAMP, -1, "infinity");
	want_same(XR_OID_TIMESTAMP, -1, "-infinity");
	want_same(XR_OID_TIMESTAMPTZ, -1, "infinity");
	want_same(XR_OID_TIMESTAMPTZ, -1, "-infinity");
}

static void
test_to_text_array_of_scalars(void **state)
{
	(void)state;
	want_same(1007, -1, "{1,2,NULL,-3}");
	want_same(1007, -1, "{}");
	want_same(1000, -1, "{t,f,NULL}");
	want_same(1021, -1, "{Infinity,-0,NaN}");
	want_same(1231, NUMTM(5, 2), "{1.50,NaN,NULL}");
	want_same(1182, -1, "{1970-01-01,infinity,\"0044-03-15 BC\"}");
	want_same(1183, -1, "{12:00:00.5,24:00:00}");
	want_same(1185, -1, "{\"2000-01-01 00:00:00+00\",NULL}");
	want_same(1001, -1, "{\"\\\\x01\",NULL,\"\\\\x\"}");
	want_same(2951, -1, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}");
	want_same(3807, -1, "{\"{\\\"a\\\": 1}\",[]}");
}

/* array_out's quoting: only where needed, quotes and backslashes escaped. */
static void
test_to_text_array_quoting(void **state)
{
	(void)state;
	want_same(1009, -1,
	          "{a,\"b c\",NULL,\"\",\"q\\\"\",\"back\\\\slash\",\"null\","
	          "\"NULL\",\"{x}\",\"a,b\",\"tab\tx\",\" lead\",\xc3\xa9}");
	want_text(1009, -1, "{ a , \"b\" }", "{a,b}");
}

static void
test_to_text_array_string_branch(void **state)
{
	(void)state;
	want_same(1007, -1, "{{1,2},{3,4}}");
	want_same(1007, -1, "[0:1]={1,2}");
	want_same(1009, -1, "{{\"a b\",NULL},{c,d}}");
}

static void
test_to_text_null(void **state)
{
	fx_t     f;
	xr_buf_t out;
	bool     is_null = false;

	(void)state;
	fx_init(&f, 1231, NUMTM(5, 2), true);
	assert_int_equal(xr_pgtype_set_null(&f.field), 0);
	xr_buf_init(&out);
	xr_buf_puts(&out, "x");
	assert_int_equal(xr_pgtype_avro_to_text(&f.t, &f.field, true, &out,
	                                        &is_null, f.err, sizeof(f.err)), 0);
	assert_true(is_null);
	assert_string_equal(out.data, "x");
	xr_buf_term(&out);
	fx_term(&f);
}

static void
test_to_text_appends(void **state)
{
	fx_t     f;
	xr_buf_t out;
	bool     is_null = true;

	(void)state;
	fx_init(&f, XR_OID_INT4, -1, true);
	assert_int_equal(fx_conv(&f, "42"), 0);
	xr_buf_init(&out);
	xr_buf_puts(&out, "n=");
	assert_int_equal(xr_pgtype_avro_to_text(&f.t, &f.field, true, &out,
	                                        &is_null, f.err, sizeof(f.err)), 0);
	assert_false(is_null);
	assert_string_equal(out.data, "n=42");
	xr_buf_term(&out);
	fx_term(&f);
}

/* A value whose Avro type is not the column's is an error, not a guess. */
static void
test_to_text_wrong_avro_type_is_error(void **state)
{
	fx_t         f;
	xr_coltype_t other;
	xr_buf_t     out;
	bool         is_null;

	(void)state;
	fx_init(&f, XR_OID_INT8, -1, true);
	assert_int_equal(fx_conv(&f, "42"), 0);
	xr_pgtype_classify(XR_OID_INT4, -1, NULL, &other);
	xr_buf_init(&out);
	assert_int_equal(xr_pgtype_avro_to_text(&other, &f.field, true, &out,
	                                        &is_null, f.err, sizeof(f.err)),
	                 -1);
	assert_non_null(strstr(f.err, "int4"));
	assert_int_equal(out.len, 0);
	/* A nullable field read as a key field: the union is not a long. */
	assert_int_equal(xr_pgtype_avro_to_text(&f.t, &f.field, false, &out,
	                                        &is_null, f.err, sizeof(f.err)),
	                 -1);
	assert_int_equal(out.len, 0);
	fx_term(&f);

	/* A decimal's string branch is no branch of an int4 column. */
	fx_init(&f, XR_OID_NUMERIC, NUMTM(5, 2), true);
	assert_int_equal(fx_conv(&f, "NaN"), 0);
	assert_int_equal(xr_pgtype_avro_to_text(&other, &f.field, true, &out,
	                                        &is_null, f.err, sizeof(f.err)),
	                 -1);
	assert_int_equal(out.len, 0);
	xr_buf_term(&out);
	fx_term(&f);
}

/* A bad element leaves nothing of the array behind. */
static void
test_to_text_bad_array_element_is_error(void **state)
{
	fx_t         f;
	avro_value_t arr, item, b;
	xr_buf_t     out;
	bool         is_null;

	(void)state;
	fx_init(&f, 1231, NUMTM(3, 0), true);
	assert_int_equal(fx_conv(&f, "{1,2}"), 0);
	assert_int_equal(branch_of(&f.field, &arr), 1);
	assert_int_equal(avro_value_get_by_index(&arr, 1, &item, NULL), 0);
	assert_int_equal(avro_value_set_branch(&item, 1, &b), 0);
	assert_int_equal(avro_value_set_bytes(&b, "\x01\x86\xa0", 3), 0);
	xr_buf_init(&out);
	xr_buf_puts(&out, "v=");
	assert_int_equal(xr_pgtype_avro_to_text(&f.t, &f.field, true, &out,
	                                        &is_null, f.err, sizeof(f.err)),
	                 -1);
	assert_string_equal(out.data, "v=");
	assert_int_equal(out.len, 2);
	assert_non_null(strstr(f.err, "numeric(3,0)[]"));
	xr_buf_term(&out);
	fx_term(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify_builtin_scalars),
		cmocka_unit_test(test_classify_array_oids),
		cmocka_unit_test(test_classify_numeric_typmod),
		cmocka_unit_test(test_classify_numeric_unconstrained_is_string),
		cmocka_unit_test(test_classify_numeric_negative_scale_is_string),
		cmocka_unit_test(test_classify_numeric_scale_above_precision_is_string),
		cmocka_unit_test(test_classify_type_modifiers_in_name),
		cmocka_unit_test(test_classify_custom_type_is_string),
		cmocka_unit_test(test_classify_other_builtin_is_string),
		cmocka_unit_test(test_schema_json_scalar_logical_types),
		cmocka_unit_test(test_schema_json_decimal_has_string_branch),
		cmocka_unit_test(test_schema_json_array),
		cmocka_unit_test(test_key_schema_json_has_no_null),
		cmocka_unit_test(test_schema_json_parses_for_every_type),
		cmocka_unit_test(test_bool),
		cmocka_unit_test(test_bool_rejects_other_spellings),
		cmocka_unit_test(test_int2_limits),
		cmocka_unit_test(test_int2_overflow),
		cmocka_unit_test(test_int4_limits),
		cmocka_unit_test(test_int4_overflow),
		cmocka_unit_test(test_int4_garbage),
		cmocka_unit_test(test_int8_limits),
		cmocka_unit_test(test_int8_overflow),
		cmocka_unit_test(test_float4_values),
		cmocka_unit_test(test_float_special_values),
		cmocka_unit_test(test_float8_values),
		cmocka_unit_test(test_float_overflow),
		cmocka_unit_test(test_float_garbage),
		cmocka_unit_test(test_numeric_small_values),
		cmocka_unit_test(test_numeric_minimal_twos_complement),
		cmocka_unit_test(test_numeric_pads_fraction_to_scale),
		cmocka_unit_test(test_numeric_1000_digits),
		cmocka_unit_test(test_numeric_nan_goes_to_string_branch),
		cmocka_unit_test(test_numeric_unconstrained_is_text),
		cmocka_unit_test(test_numeric_too_many_fraction_digits),
		cmocka_unit_test(test_numeric_exceeds_precision),
		cmocka_unit_test(test_numeric_garbage),
		cmocka_unit_test(test_bytea_hex),
		cmocka_unit_test(test_bytea_bad_hex),
		cmocka_unit_test(test_uuid),
		cmocka_unit_test(test_uuid_bad_form),
		cmocka_unit_test(test_text_json_and_unknown_as_is),
		cmocka_unit_test(test_text_must_be_utf8),
		cmocka_unit_test(test_date_epoch_and_common_days),
		cmocka_unit_test(test_date_bc),
		cmocka_unit_test(test_date_years_above_9999),
		cmocka_unit_test(test_date_infinity),
		cmocka_unit_test(test_date_invalid),
		cmocka_unit_test(test_date_out_of_int32),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_time_24_00),
		cmocka_unit_test(test_time_invalid),
		cmocka_unit_test(test_timestamp),
		cmocka_unit_test(test_timestamp_bc),
		cmocka_unit_test(test_timestamp_infinity),
		cmocka_unit_test(test_timestamp_beyond_int64_is_error),
		cmocka_unit_test(test_timestamp_invalid),
		cmocka_unit_test(test_timestamptz_utc),
		cmocka_unit_test(test_timestamptz_offsets),
		cmocka_unit_test(test_timestamptz_bc),
		cmocka_unit_test(test_timestamptz_needs_offset),
		cmocka_unit_test(test_array_int4_with_null),
		cmocka_unit_test(test_array_text_quoting_and_escapes),
		cmocka_unit_test(test_array_unquoted_escape_and_spaces),
		cmocka_unit_test(test_array_empty),
		cmocka_unit_test(test_array_multidim_falls_back_to_string),
		cmocka_unit_test(test_array_lower_bound_falls_back_to_string),
		cmocka_unit_test(test_array_elements_use_element_rule),
		cmocka_unit_test(test_array_numeric_nan_element),
		cmocka_unit_test(test_array_bad_element_names_element),
		cmocka_unit_test(test_array_bad_syntax),
		cmocka_unit_test(test_array_reuse_replaces_items),
		cmocka_unit_test(test_set_null),
		cmocka_unit_test(test_key_scalar_is_plain_value),
		cmocka_unit_test(test_key_decimal_and_array_use_branch_zero),
		cmocka_unit_test(test_error_quotes_at_most_40_chars),
		cmocka_unit_test(test_error_quote_keeps_utf8_whole_and_hides_controls),
		cmocka_unit_test(test_to_text_bool),
		cmocka_unit_test(test_to_text_integers),
		cmocka_unit_test(test_to_text_float4_shortest_round_trip),
		cmocka_unit_test(test_to_text_float8_shortest_round_trip),
		cmocka_unit_test(test_to_text_float_exponent_notation_differs_from_postgres),
		cmocka_unit_test(test_to_text_float_special_values),
		cmocka_unit_test(test_to_text_decimal_at_scale),
		cmocka_unit_test(test_to_text_decimal_negative),
		cmocka_unit_test(test_to_text_decimal_1000_digits),
		cmocka_unit_test(test_to_text_decimal_string_branch),
		cmocka_unit_test(test_to_text_decimal_non_minimal_bytes),
		cmocka_unit_test(test_to_text_decimal_wide_sign_extension),
		cmocka_unit_test(test_to_text_decimal_beyond_precision_is_error),
		cmocka_unit_test(test_to_text_bytea_lower_hex),
		cmocka_unit_test(test_to_text_strings_as_is),
		cmocka_unit_test(test_to_text_string_with_nul_is_error),
		cmocka_unit_test(test_to_text_date),
		cmocka_unit_test(test_to_text_date_bc),
		cmocka_unit_test(test_to_text_date_far_future),
		cmocka_unit_test(test_to_text_date_infinity),
		cmocka_unit_test(test_to_text_time),
		cmocka_unit_test(test_to_text_time_outside_day_is_error),
		cmocka_unit_test(test_to_text_timestamp),
		cmocka_unit_test(test_to_text_timestamp_bc),
		cmocka_unit_test(test_to_text_timestamptz_utc),
		cmocka_unit_test(test_to_text_timestamptz_bc),
		cmocka_unit_test(test_to_text_timestamp_infinity),
		cmocka_unit_test(test_to_text_array_of_scalars),
		cmocka_unit_test(test_to_text_array_quoting),
		cmocka_unit_test(test_to_text_array_string_branch),
		cmocka_unit_test(test_to_text_null),
		cmocka_unit_test(test_to_text_appends),
		cmocka_unit_test(test_to_text_wrong_avro_type_is_error),
		cmocka_unit_test(test_to_text_bad_array_element_is_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
