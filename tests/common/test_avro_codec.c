/*
 * test_avro_codec.c: common/avro_codec.c: schema building and parsing,
 * Parsing Canonical Form, CRC-64-AVRO fingerprints, single-object encoding
 * and decoding, reading any table's events with schemas/envelope.avsc, and
 * the row fields read back from a schema's JSON (with their values turned
 * back into text, as the consumer does).
 *
 * Golden canonical forms and fingerprints come from an independent
 * implementation, fastavro 1.13.1 (Python):
 *   python3 -m venv /tmp/fa && /tmp/fa/bin/pip install fastavro
 *   canon = fastavro.schema.to_parsing_canonical_form(json.loads(schema))
 *   fp    = fastavro.schema.fingerprint(canon, "CRC-64-AVRO")
 * fastavro prints the fingerprint as the hex of its 8 little-endian bytes
 * (the order of the single-object header); the constants below are those
 * bytes read as a little-endian uint64.  The schema text given to fastavro
 * was the JSON this code builds (written out with XR_WRITE_FIXTURES=<dir>, see
 * tests/common/data/README.md) and schemas/envelope.avsc.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/avro_codec.h"
#include "common/schema_registry.h"
#include "tests/common/test_file.h"

#define NUMTM(p, s) ((int32_t)((((p) << 16) | ((s) & 0x7ff)) + 4))
#define DATA_DIR XR_SOURCE_DIR "/tests/common/data/"

/* ---- fixtures ---------------------------------------------------------- */

typedef struct tcol_s {
	const char *name;
	uint32_t    oid;
	int32_t     typmod;
	const char *custom;
	bool        key;
	const char *text;     /* NULL: SQL NULL */
} tcol_t;

/* A small table: golden canonical forms are checked against it. */
static const tcol_t small_cols[] = {
	{ "id", XR_OID_INT8, -1, NULL, true, "42" },
	{ "owner name", XR_OID_TEXT, -1, NULL, false, "Ann" },
	{ "balance", XR_OID_NUMERIC, NUMTM(12, 2), NULL, false, "-10.50" },
	{ "tags", 1009, -1, NULL, false, "{a,b}" },
	{ "created", XR_OID_TIMESTAMPTZ, -1, NULL, false,
	  "2024-01-02 03:04:05.123456+00" },
};

/* Every mapped type, arrays, fallbacks, NULL and mangled names. */
static const tcol_t all_cols[] = {
	{ "id", XR_OID_INT8, -1, NULL, true, "9223372036854775807" },
	{ "region", XR_OID_TEXT, -1, NULL, true, "eu-west-1" },
	{ "flag", XR_OID_BOOL, -1, NULL, false, "t" },
	{ "small", XR_OID_INT2, -1, NULL, false, "-32768" },
	{ "n", XR_OID_INT4, -1, NULL, false, "2147483647" },
	{ "f4", XR_OID_FLOAT4, -1, NULL, false, "1.5" },
	{ "f8", XR_OID_FLOAT8, -1, NULL, false, "-2.5e-300" },
	{ "f8nan", XR_OID_FLOAT8, -1, NULL, false, "NaN" },
	{ "amount", XR_OID_NUMERIC, NUMTM(12, 2), NULL, false, "-1234567890.12" },
	{ "ratio", XR_OID_NUMERIC, NUMTM(5, 2), NULL, false, "NaN" },
	{ "big", XR_OID_NUMERIC, -1, NULL, false,
	  "3.14159265358979323846264338327950288" },
	{ "label", XR_OID_VARCHAR, 14, NULL, false, "h\xc3\xa9llo" },
	{ "code", XR_OID_BPCHAR, 7, NULL, false, "abc" },
	{ "nm", XR_OID_NAME, -1, NULL, false, "pg_class" },
	{ "ch", XR_OID_CHAR, -1, NULL, false, "x" },
	{ "blob", XR_OID_BYTEA, -1, NULL, false, "\\xdeadbeef00" },
	{ "uid", XR_OID_UUID, -1, NULL, false,
	  "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" },
	{ "born", XR_OID_DATE, -1, NULL, false, "0044-03-15 BC" },
	{ "at", XR_OID_TIME, -1, NULL, false, "24:00:00" },
	{ "local ts", XR_OID_TIMESTAMP, -1, NULL, false,
	  "2000-01-01 00:00:00.000001" },
	{ "ts", XR_OID_TIMESTAMPTZ, -1, NULL, false,
	  "2020-06-15 13:45:30.123456+05:30" },
	{ "doc", XR_OID_JSON, -1, NULL, false, "{\"a\":1}" },
	{ "docb", XR_OID_JSONB, -1, NULL, false, "{\"a\": [1, \"x\"]}" },
	{ "ints", 1007, -1, NULL, false, "{1,NULL,3}" },
	{ "smalls", 1005, -1, NULL, false, "{}" },
	{ "longs", 1016, -1, NULL, false, "{-9223372036854775808}" },
	{ "texts", 1009, -1, NULL, false, "{a,\"b c\",NULL,\"\",\"q\\\"\"}" },
	{ "grid", 1007, -1, NULL, false, "{{1,2},{3,4}}" },
	{ "prices", 1231, NUMTM(5, 2), NULL, false, "{1.50,NaN,NULL}" },
	{ "days", 1182, -1, NULL, false, "{1970-01-01,infinity}" },
	{ "times", 1183, -1, NULL, false, "{12:00:00.5}" },
	{ "stamps", 1115, -1, NULL, false, "[2:2]={\"2000-01-01 00:00:00\"}" },
	{ "tstamps", 1185, -1, NULL, false, "{\"2000-01-01 00:00:00+00\"}" },
	{ "uuids", 2951, -1, NULL, false,
	  "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}" },
	{ "bools", 1000, -1, NULL, false, "{t,f}" },
	{ "blobs", 1001, -1, NULL, false, "{\"\\\\x01\"}" },
	{ "reals", 1021, -1, NULL, false, "{Infinity,-0}" },
	{ "doubles", 1022, -1, NULL, false, "{1e+300}" },
	{ "names", 1003, -1, NULL, false, "{x}" },
	{ "chars", 1002, -1, NULL, false, "{y}" },
	{ "bpchars", 1014, -1, NULL, false, "{\"z  \"}" },
	{ "varchars", 1015, -1, NULL, false, "{v}" },
	{ "jsons", 199, -1, NULL, false, "{\"{}\"}" },
	{ "jsonbs", 3807, -1, NULL, false, "{\"[]\"}" },
	{ "mood", 16385, -1, "public.mood", false, "happy" },
	{ "iv", 1186, -1, NULL, false, "1 day 02:00:00" },
	{ "nothing", XR_OID_INT4, -1, NULL, false, NULL },
	{ "1st col", XR_OID_TEXT, -1, NULL, false, "mangled" },
	{ "Gr\xc3\xb6\xc3\x9f" "e", XR_OID_INT4, -1, NULL, false, "3" },
};

#define NSMALL (int)(sizeof(small_cols) / sizeof(small_cols[0]))
#define NALL   (int)(sizeof(all_cols) / sizeof(all_cols[0]))

typedef struct table_s {
	int              ncols;
	const tcol_t    *src;
	xr_coltype_t    *types;
	xr_schema_col_t *cols;
} table_t;

static void
table_init(table_t *t, const tcol_t *src, int n)
{
	int i;

	t->ncols = n;
	t->src = src;
	t->types = calloc((size_t)n, sizeof(*t->types));
	t->cols = calloc((size_t)n, sizeof(*t->cols));
	assert_non_null(t->types);
	assert_non_null(t->cols);
	for (i = 0; i < n; i++) {
		xr_pgtype_classify(src[i].oid, src[i].typmod, src[i].custom,
		                   &t->types[i]);
		t->cols[i].name = src[i].name;
		t->cols[i].type = &t->types[i];
		t->cols[i].is_key = src[i].key;
	}
}

static void
table_term(table_t *t)
{
	free(t->types);
	free(t->cols);
}

static xr_schema_t *
build(const table_t *t, bool key)
{
	xr_schema_t *s = NULL;
	char         err[256] = "";

	if (xr_schema_build(t->cols, t->ncols, key, &s, err, sizeof(err)) != 0)
		fail_msg("xr_schema_build: %s", err);
	return s;
}

static xr_schema_t *
from_json(const char *json, size_t len)
{
	xr_schema_t *s = NULL;
	char         err[256] = "";

	if (xr_schema_from_json(json, len, &s, err, sizeof(err)) != 0)
		fail_msg("xr_schema_from_json: %s", err);
	return s;
}

static void
write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	if (!fp)
		fail_msg("cannot write %s", path);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static void
set_str(avro_value_t *v, const char *s)
{
	assert_int_equal(avro_value_set_string(v, s), 0);
}

static void
fill_row(const table_t *t, avro_value_t *row, bool key)
{
	size_t idx = 0;
	int    i;

	for (i = 0; i < t->ncols; i++) {
		avro_value_t f;
		char         err[256] = "";

		if (key && !t->src[i].key)
			continue;
		assert_int_equal(avro_value_get_by_index(row, idx++, &f, NULL), 0);
		if (!t->src[i].text) {
			assert_int_equal(xr_pgtype_set_null(&f), 0);
			continue;
		}
		if (xr_pgtype_text_to_avro(&t->types[i], t->src[i].text,
		                           strlen(t->src[i].text), !key, &f, err,
		                           sizeof(err)) != 0)
			fail_msg("column %s: %s", t->src[i].name, err);
	}
}

/* An update event with the row as both before and after. */
static void
make_event(const xr_schema_t *s, const table_t *t, avro_value_t *ev)
{
	avro_value_t f, src, u, row, item;

	assert_int_equal(avro_generic_value_new(s->iface, ev), 0);
	assert_int_equal(avro_value_get_by_index(ev, XR_ENV_EVENT_ID, &f, NULL), 0);
	set_str(&f, "1b4e28ba-2fa1-11d2-883f-0016541e3d29");
	assert_int_equal(avro_value_get_by_index(ev, XR_ENV_OP, &f, NULL), 0);
	assert_int_equal(avro_value_set_enum(&f, XR_OP_UPDATE), 0);
	assert_int_equal(avro_value_get_by_index(ev, XR_ENV_PRODUCED_AT, &f, NULL), 0);
	assert_int_equal(avro_value_set_long(&f, INT64_C(1718000000123456)), 0);

	assert_int_equal(avro_value_get_by_index(ev, XR_ENV_SOURCE, &src, NULL), 0);
	assert_int_equal(avro_value_get_by_index(&src, XR_SRC_REGION, &f, NULL), 0);
	set_str(&f, "eu-west-1");
	assert_int_equal(avro_value_get_by_index(&src, XR_SRC_DATABASE, &f, NULL), 0);
	set_str(&f, "shop");
	assert_int_equal(avro_value_get_by_index(&src, XR_SRC_SCHEMA, &f, NULL), 0);
	set_str(&f, "public");
	assert_int_equal(avro_value_get_by_index(&src, XR_SRC_TABLE, &f, NULL), 0);
	set_str(&f, "all_types");
	assert_int_equal(avro_value_get_by_index(&src, XR_SRC_LSN, &f, NULL), 0);
	assert_int_equal(avro_value_set_long(&f, INT64_C(0x16B3748)), 0);
	assert_int_equal(avro_value_get_by_index(&src, XR_SRC_COMMIT_LSN, &f, NULL), 0);
	assert_int_equal(avro_value_set_long(&f, INT64_C(0x16B3800)), 0);
	assert_int_equal(avro_value_get_by_index(&src, XR_SRC_TXID, &f, NULL), 0);
	assert_int_equal(avro_value_set_long(&f, 7777), 0);
	assert_int_equal(avro_value_get_by_index(&src, XR_SRC_COMMIT_TS, &f, NULL), 0);
	assert_int_equal(avro_value_set_long(&f, INT64_C(1717999999000000)), 0);
	assert_int_equal(avro_value_get_by_index(&src, XR_SRC_ORIGIN, &u, NULL), 0);
	assert_int_equal(avro_value_set_branch(&u, 1, &f), 0);
	set_str(&f, "us-east-1");

	assert_int_equal(avro_value_get_by_index(ev, XR_ENV_BEFORE, &u, NULL), 0);
	assert_int_equal(avro_value_set_branch(&u, 1, &row), 0);
	fill_row(t, &row, false);
	assert_int_equal(avro_value_get_by_index(ev, XR_ENV_AFTER, &u, NULL), 0);
	assert_int_equal(avro_value_set_branch(&u, 1, &row), 0);
	fill_row(t, &row, false);
	assert_int_equal(avro_value_get_by_index(ev, XR_ENV_UNCHANGED, &f, NULL), 0);
	assert_int_equal(avro_value_append(&f, &item, NULL), 0);
	set_str(&item, "nothing");
	assert_int_equal(avro_value_get_by_index(ev, XR_ENV_VCLOCK, &u, NULL), 0);
	assert_int_equal(avro_value_set_branch(&u, 1, &row), 0);
	assert_int_equal(avro_value_get_by_index(&row, 0, &f, NULL), 0);
	assert_int_equal(avro_value_set_long(&f, INT64_C(1717999999000123)), 0);
	assert_int_equal(avro_value_get_by_index(&row, 1, &f, NULL), 0);
	assert_int_equal(avro_value_add(&f, "eu-west-1", &item, NULL, NULL), 0);
	assert_int_equal(avro_value_set_long(&item, 3), 0);
	assert_int_equal(avro_value_add(&f, "us-east-1", &item, NULL, NULL), 0);
	assert_int_equal(avro_value_set_long(&item, 1), 0);
	assert_int_equal(avro_value_get_by_index(&row, 2, &f, NULL), 0);
	assert_int_equal(xr_pgtype_set_null(&f), 0);
	assert_int_equal(avro_value_get_by_index(&row, 3, &f, NULL), 0);
	assert_int_equal(xr_pgtype_set_null(&f), 0);
	assert_int_equal(avro_value_get_by_index(ev, XR_ENV_TX_INDEX, &u, NULL), 0);
	assert_int_equal(avro_value_set_branch(&u, 1, &f), 0);
	assert_int_equal(avro_value_set_long(&f, 3), 0);
}

static void
encode(const xr_schema_t *s, avro_value_t *v, xr_buf_t *out)
{
	char err[256] = "";

	if (xr_avro_encode(s, v, out, err, sizeof(err)) != 0)
		fail_msg("xr_avro_encode: %s", err);
}

/* Name of field i of the Row record (value schema) or Key record. */
static const char *
field_name(const xr_schema_t *s, bool key, int i)
{
	avro_schema_t rec = s->schema;

	if (!key) {
		avro_schema_t before = avro_schema_record_field_get(rec, "before");

		rec = avro_schema_union_branch(before, 1);
	}
	return avro_schema_record_field_name(rec, i);
}

/* ---- CRC-64-AVRO -------------------------------------------------------- */

static void
test_crc64_of_nothing_is_empty_constant(void **state)
{
	(void)state;
	assert_true(xr_avro_crc64("", 0) == UINT64_C(0xc15d213aa4d7a795));
}

static void
test_crc64_known_vectors(void **state)
{
	static const char fixed[] = "{\"name\":\"foo\",\"type\":\"fixed\",\"size\":15}";
	static const char rec[] = "{\"name\":\"x.Y\",\"type\":\"record\",\"fields\":"
	                          "[{\"name\":\"a\",\"type\":\"long\"}]}";

	(void)state;
	/* "null": also the example value of the Avro specification's test
	 * data (7195948357588979594). */
	assert_true(xr_avro_crc64("\"null\"", 6) == UINT64_C(0x63dd24e7cc258f8a));
	/* fastavro: 8f5c393f1ad57572, 04a531edc32e6018, 5b5fe277caeca3d6 */
	assert_true(xr_avro_crc64("\"int\"", 5) == UINT64_C(0x7275d51a3f395c8f));
	assert_true(xr_avro_crc64(fixed, strlen(fixed)) ==
	            UINT64_C(0x18602ec3ed31a504));
	assert_true(xr_avro_crc64(rec, strlen(rec)) == UINT64_C(0xd6a3ecca77e25f5b));
}

/*
 * Every byte value reaches a different table entry on its own, so this
 * checks all 256 entries against the bit-at-a-time definition.
 */
static void
test_crc64_table_matches_bitwise_definition(void **state)
{
	const uint64_t empty = UINT64_C(0xc15d213aa4d7a795);
	unsigned       b, k;

	(void)state;
	for (b = 0; b < 256; b++) {
		unsigned char byte = (unsigned char)b;
		uint64_t      fp = empty ^ byte;

		for (k = 0; k < 8; k++)
			fp = (fp >> 1) ^ (empty & (0 - (fp & 1)));
		assert_true(xr_avro_crc64(&byte, 1) == fp);
	}
}

/* ---- building ------------------------------------------------------------ */

static const char small_value_canonical[] =
	"{\"name\":\"xregion.ChangeEvent\",\"type\":\"record\",\"fields\":[{\""
	"name\":\"event_id\",\"type\":\"string\"},{\"name\":\"op\",\"type\":{\"na"
	"me\":\"xregion.Op\",\"type\":\"enum\",\"symbols\":[\"insert\",\"update"
	"\",\"delete\",\"truncate\",\"snapshot_read\"]}},{\"name\":\"produced"
	"_at\",\"type\":\"long\"},{\"name\":\"source\",\"type\":{\"name\":\"xregi"
	"on.Source\",\"type\":\"record\",\"fields\":[{\"name\":\"region\",\"typ"
	"e\":\"string\"},{\"name\":\"database\",\"type\":\"string\"},{\"name\":\""
	"schema\",\"type\":\"string\"},{\"name\":\"table\",\"type\":\"string\"},"
	"{\"name\":\"lsn\",\"type\":\"long\"},{\"name\":\"commit_lsn\",\"type\":\""
	"long\"},{\"name\":\"txid\",\"type\":\"long\"},{\"name\":\"commit_ts\",\""
	"type\":\"long\"},{\"name\":\"origin\",\"type\":[\"null\",\"string\"]}]}"
	"},{\"name\":\"before\",\"type\":[\"null\",{\"name\":\"xregion.Row\",\"t"
	"ype\":\"record\",\"fields\":[{\"name\":\"id\",\"type\":[\"null\",\"long\""
	"]},{\"name\":\"owner_name\",\"type\":[\"null\",\"string\"]},{\"name\":"
	"\"balance\",\"type\":[\"null\",\"bytes\",\"string\"]},{\"name\":\"tags\""
	",\"type\":[\"null\",{\"type\":\"array\",\"items\":[\"null\",\"string\"]}"
	",\"string\"]},{\"name\":\"created\",\"type\":[\"null\",\"long\"]}]}]},"
	"{\"name\":\"after\",\"type\":[\"null\",\"xregion.Row\"]},{\"name\":\"un"
	"changed\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},{\"name\""
	":\"vclock\",\"type\":[\"null\",{\"name\":\"xregion.VClock\",\"type\":\""
	"record\",\"fields\":[{\"name\":\"hlc\",\"type\":\"long\"},{\"name\":\"ve"
	"ctor\",\"type\":{\"type\":\"map\",\"values\":\"long\"}},{\"name\":\"befo"
	"re_hlc\",\"type\":[\"null\",\"long\"]},{\"name\":\"before_vector\",\"t"
	"ype\":[\"null\",{\"type\":\"map\",\"values\":\"long\"}]}]}]},{\"name\":"
	"\"tx_index\",\"type\":[\"null\",\"long\"]}]}";
static const char small_key_canonical[] =
	"{\"name\":\"xregion.Key\",\"type\":\"record\",\"fields\":[{\"n"
	"ame\":\"id\",\"type\":\"long\"}]}";

static void
test_build_value_schema_canonical_golden(void **state)
{
	table_t      t;
	xr_schema_t *s;

	(void)state;
	table_init(&t, small_cols, NSMALL);
	s = build(&t, false);
	assert_string_equal(s->canonical.data, small_value_canonical);
	assert_true(s->fingerprint == UINT64_C(0xef48b9db902f794d) /* 4d792f90dbb948ef */);
	xr_schema_destroy(s);
	table_term(&t);
}

static void
test_build_key_schema_canonical_golden(void **state)
{
	table_t      t;
	xr_schema_t *s;

	(void)state;
	table_init(&t, small_cols, NSMALL);
	s = build(&t, true);
	assert_string_equal(s->canonical.data, small_key_canonical);
	assert_true(s->fingerprint == UINT64_C(0x2dd7381a5c5d2bf1) /* f12b5d5c1a38d72d */);
	xr_schema_destroy(s);
	table_term(&t);
}

static void
test_build_all_types_fingerprint_golden(void **state)
{
	table_t      t;
	xr_schema_t *s;

	(void)state;
	table_init(&t, all_cols, NALL);
	s = build(&t, false);
	assert_true(s->fingerprint == UINT64_C(0xc28e965c878f88d8) /* d8888f875c968ec2 */);
	xr_schema_destroy(s);
	s = build(&t, true);
	assert_true(s->fingerprint == UINT64_C(0xdd08780c3bd05510) /* 1055d03b0c7808dd */);
	xr_schema_destroy(s);
	table_term(&t);
}

/* The published JSON keeps what the canonical form drops. */
static void
test_build_json_keeps_logical_types_and_attributes(void **state)
{
	table_t      t;
	xr_schema_t *s;

	(void)state;
	table_init(&t, small_cols, NSMALL);
	s = build(&t, false);
	assert_non_null(strstr(s->json.data,
	    "{\"name\":\"balance\",\"type\":[\"null\",{\"type\":\"bytes\","
	    "\"logicalType\":\"decimal\",\"precision\":12,\"scale\":2},"
	    "\"string\"],\"default\":null,\"xr.pg_type\":\"numeric(12,2)\"}"));
	assert_non_null(strstr(s->json.data,
	    "{\"name\":\"owner_name\",\"type\":[\"null\",\"string\"],"
	    "\"default\":null,\"xr.column\":\"owner name\","
	    "\"xr.pg_type\":\"text\"}"));
	assert_non_null(strstr(s->json.data,
	    "\"logicalType\":\"timestamp-micros\"}],\"default\":null,"
	    "\"xr.pg_type\":\"timestamptz\"}"));
	assert_non_null(strstr(s->json.data, "\"default\":[]"));
	assert_non_null(strstr(s->json.data, "\"doc\":"));
	xr_schema_destroy(s);
	table_term(&t);
}

/* schemas/envelope.avsc is the envelope of a table without columns. */
static void
test_envelope_avsc_is_the_empty_envelope(void **state)
{
	xr_schema_t *built, *file;
	char        *json;
	size_t       len;

	(void)state;
	json = xr_test_read_file(XR_SOURCE_DIR "/schemas/envelope.avsc", &len);
	file = from_json(json, len);
	assert_int_equal(xr_schema_build(NULL, 0, false, &built, NULL, 0), 0);
	assert_string_equal(file->canonical.data, built->canonical.data);
	assert_true(file->fingerprint == built->fingerprint);
	/* fastavro on schemas/envelope.avsc: 37a36e3ecb0f7c76 */
	assert_true(file->fingerprint == UINT64_C(0x767c0fcb3e6ea337));
	xr_schema_destroy(built);
	xr_schema_destroy(file);
	free(json);
}

static void
test_from_json_reproduces_built_schema(void **state)
{
	table_t      t;
	xr_schema_t *s, *p;

	(void)state;
	table_init(&t, all_cols, NALL);
	s = build(&t, false);
	p = from_json(s->json.data, s->json.len);
	assert_string_equal(p->canonical.data, s->canonical.data);
	assert_true(p->fingerprint == s->fingerprint);
	assert_string_equal(p->json.data, s->json.data);
	xr_schema_destroy(p);
	xr_schema_destroy(s);
	table_term(&t);
}

/*
 * A schema from another writer: inherited and explicit namespaces, a null
 * namespace, references by short and full name, fixed, map, enum, and
 * attributes the canonical form drops.
 */
static void
test_from_json_canonical_of_foreign_schema(void **state)
{
	static const char json[] =
		"{\"type\":\"record\",\"name\":\"R\",\"namespace\":\"a.b\","
		"\"doc\":\"d\",\"aliases\":[\"Q\"],\"fields\":["
		"{\"name\":\"f\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":4}},"
		"{\"name\":\"g\",\"type\":\"F\",\"default\":\"abcd\"},"
		"{\"name\":\"h\",\"type\":\"a.b.F\"},"
		"{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":[\"null\",\"long\"]}},"
		"{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\","
		"\"namespace\":\"x\",\"symbols\":[\"A\",\"B\"]}},"
		"{\"name\":\"n\",\"type\":{\"type\":\"record\",\"name\":\"N\","
		"\"namespace\":\"\",\"fields\":[{\"name\":\"z\",\"type\":"
		"{\"type\":\"int\",\"logicalType\":\"date\"}}]}},"
		"{\"name\":\"r\",\"type\":[\"null\",\"R\"]},"
		"{\"name\":\"l\",\"type\":{\"type\":\"array\",\"items\":\"x.E\"}}]}";
	xr_schema_t *s;

	(void)state;
	s = from_json(json, strlen(json));
	assert_string_equal(s->canonical.data,
	    "{\"name\":\"a.b.R\",\"type\":\"record\",\"fields\":[{\"name\":"
	    "\"f\",\"type\":{\"name\":\"a.b.F\",\"type\":\"fixed\",\"size\""
	    ":4}},{\"name\":\"g\",\"type\":\"a.b.F\"},{\"name\":\"h\",\"typ"
	    "e\":\"a.b.F\"},{\"name\":\"m\",\"type\":{\"type\":\"map\",\"va"
	    "lues\":[\"null\",\"long\"]}},{\"name\":\"e\",\"type\":{\"name\""
	    ":\"x.E\",\"type\":\"enum\",\"symbols\":[\"A\",\"B\"]}},{\"name"
	    "\":\"n\",\"type\":{\"name\":\"N\",\"type\":\"record\",\"fields"
	    "\":[{\"name\":\"z\",\"type\":\"int\"}]}},{\"name\":\"r\",\"typ"
	    "e\":[\"null\",\"a.b.R\"]},{\"name\":\"l\",\"type\":{\"type\":\""
	    "array\",\"items\":\"x.E\"}}]}");
	assert_true(s->fingerprint == UINT64_C(0xb072226a0bb9b2c7) /* c7b2b90b6a2272b0 */);
	xr_schema_destroy(s);
}

static void
test_from_json_rejects_invalid(void **state)
{
	xr_schema_t *s = (xr_schema_t *)&s;
	char         err[256] = "";

	(void)state;
	assert_int_equal(xr_schema_from_json("{\"type\":\"nope\"}", 15, &s, err,
	                                     sizeof(err)), -1);
	assert_null(s);
	assert_true(strlen(err) > 0);
	err[0] = '\0';
	assert_int_equal(xr_schema_from_json("{\"type\":", 8, &s, err,
	                                     sizeof(err)), -1);
	assert_true(strlen(err) > 0);
	assert_int_equal(xr_schema_from_json("", 0, &s, err, sizeof(err)), -1);
}

static void
test_names_are_mangled_and_deduplicated(void **state)
{
	static const tcol_t cols[] = {
		{ "id", XR_OID_INT4, -1, NULL, true, NULL },
		{ "order id", XR_OID_INT4, -1, NULL, false, NULL },
		{ "order_id", XR_OID_INT4, -1, NULL, false, NULL },
		{ "1st", XR_OID_INT4, -1, NULL, false, NULL },
		{ "a-b", XR_OID_INT4, -1, NULL, false, NULL },
		{ "a+b", XR_OID_INT4, -1, NULL, false, NULL },
		{ "na\xc3\xafve", XR_OID_INT4, -1, NULL, false, NULL },
		{ "", XR_OID_INT4, -1, NULL, false, NULL },
		{ "a_b_2", XR_OID_INT4, -1, NULL, false, NULL },
	};
	static const char *want[] = {
		"id", "order_id_2", "order_id", "_1st", "a_b", "a_b_3", "na_ve",
		"_", "a_b_2"
	};
	table_t      t;
	xr_schema_t *s;
	int          i;

	(void)state;
	table_init(&t, cols, 9);
	s = build(&t, false);
	for (i = 0; i < 9; i++)
		assert_string_equal(field_name(s, false, i), want[i]);
	assert_non_null(strstr(s->json.data,
	    "\"name\":\"order_id_2\",\"type\":[\"null\",\"int\"],\"default\":null,"
	    "\"xr.column\":\"order id\""));
	assert_non_null(strstr(s->json.data, "\"xr.column\":\"na\xc3\xafve\""));
	/* A valid name carries no xr.column. */
	assert_non_null(strstr(s->json.data,
	    "\"name\":\"order_id\",\"type\":[\"null\",\"int\"],\"default\":null,"
	    "\"xr.pg_type\""));
	xr_schema_destroy(s);
	table_term(&t);
}

static void
test_key_schema_has_key_columns_with_value_names(void **state)
{
	static const tcol_t cols[] = {
		{ "x y", XR_OID_INT4, -1, NULL, false, NULL },
		{ "x_y", XR_OID_TEXT, -1, NULL, false, NULL },
		{ "x-y", XR_OID_INT8, -1, NULL, true, NULL },
		{ "k", XR_OID_UUID, -1, NULL, true, NULL },
	};
	table_t      t;
	xr_schema_t *v, *k;

	(void)state;
	table_init(&t, cols, 4);
	v = build(&t, false);
	k = build(&t, true);
	assert_string_equal(field_name(v, false, 2), "x_y_3");
	assert_string_equal(k->canonical.data,
	    "{\"name\":\"xregion.Key\",\"type\":\"record\",\"fields\":["
	    "{\"name\":\"x_y_3\",\"type\":\"long\"},"
	    "{\"name\":\"k\",\"type\":\"string\"}]}");
	assert_non_null(strstr(k->json.data,
	    "{\"name\":\"x_y_3\",\"type\":\"long\",\"xr.column\":\"x-y\","
	    "\"xr.pg_type\":\"int8\"}"));
	assert_non_null(strstr(k->json.data,
	    "{\"name\":\"k\",\"type\":{\"type\":\"string\",\"logicalType\":\"uuid\"},"
	    "\"xr.pg_type\":\"uuid\"}"));
	xr_schema_destroy(v);
	xr_schema_destroy(k);
	table_term(&t);
}

static void
test_build_rejects_column_without_name(void **state)
{
	xr_coltype_t    ty;
	xr_schema_col_t col = { NULL, &ty, false };
	xr_schema_t    *s = (xr_schema_t *)&s;
	char            err[256] = "";

	(void)state;
	xr_pgtype_classify(XR_OID_INT4, -1, NULL, &ty);
	assert_int_equal(xr_schema_build(&col, 1, false, &s, err, sizeof(err)), -1);
	assert_null(s);
	assert_non_null(strstr(err, "column 1"));
}

/* ---- single-object encoding -------------------------------------------- */

static void
test_encode_writes_header_then_datum(void **state)
{
	table_t      t;
	xr_schema_t *s;
	avro_value_t key, f;
	xr_buf_t     out;
	size_t       i;

	(void)state;
	table_init(&t, small_cols, NSMALL);
	s = build(&t, true);
	assert_int_equal(avro_generic_value_new(s->iface, &key), 0);
	assert_int_equal(avro_value_get_by_index(&key, 0, &f, NULL), 0);
	assert_int_equal(avro_value_set_long(&f, -1), 0);
	xr_buf_init(&out);
	xr_buf_puts(&out, "prefix");
	encode(s, &key, &out);
	assert_int_equal(out.len, 6 + 10 + 1);
	assert_memory_equal(out.data, "prefix\xc3\x01", 8);
	for (i = 0; i < 8; i++)
		assert_int_equal((unsigned char)out.data[8 + i],
		                 (s->fingerprint >> (8 * i)) & 0xff);
	assert_int_equal((unsigned char)out.data[16], 0x01);   /* zigzag(-1) */
	xr_buf_term(&out);
	avro_value_decref(&key);
	xr_schema_destroy(s);
	table_term(&t);
}

static void
test_encode_rejects_value_of_other_schema(void **state)
{
	table_t      t;
	xr_schema_t *v, *k;
	avro_value_t key;
	xr_buf_t     out;
	char         err[256] = "";

	(void)state;
	table_init(&t, small_cols, NSMALL);
	v = build(&t, false);
	k = build(&t, true);
	assert_int_equal(avro_generic_value_new(k->iface, &key), 0);
	xr_buf_init(&out);
	assert_int_equal(xr_avro_encode(v, &key, &out, err, sizeof(err)), -1);
	assert_int_equal(out.len, 0);
	assert_true(strlen(err) > 0);
	xr_buf_term(&out);
	avro_value_decref(&key);
	xr_schema_destroy(v);
	xr_schema_destroy(k);
	table_term(&t);
}

static void
test_so_header_reads_fingerprint_and_body(void **state)
{
	static const unsigned char msg[] = {
		0xC3, 0x01, 0x8a, 0x8f, 0x25, 0xcc, 0xe7, 0x24, 0xdd, 0x63, 0x07
	};
	uint64_t    fp = 0;
	const void *body = NULL;
	size_t      n = 0;

	(void)state;
	assert_int_equal(xr_avro_so_header(msg, sizeof(msg), &fp, &body, &n,
	                                   NULL, 0), 0);
	assert_true(fp == UINT64_C(0x63dd24e7cc258f8a));
	assert_ptr_equal(body, msg + 10);
	assert_int_equal(n, 1);
}

static void
test_so_header_rejects_short_message(void **state)
{
	static const unsigned char msg[] = { 0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7 };
	uint64_t    fp;
	const void *body;
	size_t      n;
	char        err[256] = "";

	(void)state;
	assert_int_equal(xr_avro_so_header(msg, sizeof(msg), &fp, &body, &n,
	                                   err, sizeof(err)), -1);
	assert_non_null(strstr(err, "shorter"));
}

static void
test_so_header_rejects_bad_magic(void **state)
{
	static const unsigned char msg[] = { 0xC3, 0x02, 1, 2, 3, 4, 5, 6, 7, 8 };
	static const unsigned char msg2[] = { 0x4F, 0x62, 0x6A, 1, 2, 3, 4, 5, 6, 7 };
	uint64_t    fp;
	const void *body;
	size_t      n;
	char        err[256] = "";

	(void)state;
	assert_int_equal(xr_avro_so_header(msg, sizeof(msg), &fp, &body, &n,
	                                   err, sizeof(err)), -1);
	assert_non_null(strstr(err, "single-object"));
	assert_int_equal(xr_avro_so_header(msg2, sizeof(msg2), &fp, &body, &n,
	                                   err, sizeof(err)), -1);
}

/*
 * Encode, decode, encode again: the same bytes.  (avro_value_equal would
 * call the row unequal to itself: it holds a NaN.)
 */
static void
test_round_trip_every_type(void **state)
{
	table_t      t;
	xr_schema_t *s;
	avro_value_t ev, back, f, u, row, col;
	xr_buf_t     out, again;
	uint64_t     fp = 0;
	const void  *body, *p;
	size_t       n;
	char         err[256] = "";

	(void)state;
	table_init(&t, all_cols, NALL);
	s = build(&t, false);
	make_event(s, &t, &ev);
	xr_buf_init(&out);
	xr_buf_init(&again);
	encode(s, &ev, &out);
	assert_int_equal(xr_avro_so_header(out.data, out.len, &fp, &body, &n,
	                                   err, sizeof(err)), 0);
	assert_true(fp == s->fingerprint);
	if (xr_avro_decode(s, body, n, &back, err, sizeof(err)) != 0)
		fail_msg("xr_avro_decode: %s", err);
	encode(s, &back, &again);
	assert_int_equal(again.len, out.len);
	assert_memory_equal(again.data, out.data, out.len);

	/* And one value read back: amount, -1234567890.12 at scale 2. */
	assert_int_equal(avro_value_get_by_index(&back, XR_ENV_AFTER, &u, NULL), 0);
	assert_int_equal(avro_value_get_current_branch(&u, &row), 0);
	assert_int_equal(avro_value_get_by_name(&row, "amount", &f, NULL), 0);
	assert_int_equal(avro_value_get_current_branch(&f, &col), 0);
	assert_int_equal(avro_value_get_bytes(&col, &p, &n), 0);
	assert_int_equal(n, 5);
	assert_memory_equal(p, "\xe3\x41\x66\xe5\xec", 5);

	avro_value_decref(&back);
	avro_value_decref(&ev);
	xr_buf_term(&out);
	xr_buf_term(&again);
	xr_schema_destroy(s);
	table_term(&t);
}

static void
test_round_trip_key(void **state)
{
	table_t      t;
	xr_schema_t *s;
	avro_value_t key, back;
	xr_buf_t     out;
	char         err[256] = "";

	(void)state;
	table_init(&t, all_cols, NALL);
	s = build(&t, true);
	assert_int_equal(avro_generic_value_new(s->iface, &key), 0);
	fill_row(&t, &key, true);
	xr_buf_init(&out);
	encode(s, &key, &out);
	assert_int_equal(xr_avro_decode(s, out.data + 10, out.len - 10, &back,
	                                err, sizeof(err)), 0);
	assert_true(avro_value_equal(&key, &back));
	avro_value_decref(&back);
	avro_value_decref(&key);
	xr_buf_term(&out);
	xr_schema_destroy(s);
	table_term(&t);
}

/* Writes the golden files (and the small table's schemas) to dir. */
static void
write_fixtures(const char *dir, const xr_schema_t *s, const table_t *t,
               const xr_buf_t *msg)
{
	table_t      st;
	xr_schema_t *k, *sv, *sk;
	xr_buf_t     path;
	static const char *names[] = {
		"all_types.value.avsc", "all_types.value.bin", "all_types.key.avsc",
		"small.value.avsc", "small.key.avsc"
	};
	const xr_buf_t *data[5];
	int i;

	k = build(t, true);
	table_init(&st, small_cols, NSMALL);
	sv = build(&st, false);
	sk = build(&st, true);
	data[0] = &s->json;
	data[1] = msg;
	data[2] = &k->json;
	data[3] = &sv->json;
	data[4] = &sk->json;
	xr_buf_init(&path);
	for (i = 0; i < 5; i++) {
		xr_buf_reset(&path);
		xr_buf_printf(&path, "%s/%s", dir, names[i]);
		write_file(path.data, data[i]->data, data[i]->len);
	}
	xr_buf_term(&path);
	xr_schema_destroy(k);
	xr_schema_destroy(sv);
	xr_schema_destroy(sk);
	table_term(&st);
}

/*
 * The checked-in golden message: its bytes were decoded with fastavro, with
 * the .avsc next to it as writer schema and with schemas/envelope.avsc as
 * reader schema (tests/common/data/README.md).  XR_WRITE_FIXTURES=<dir>
 * writes fresh files to <dir> for a deliberate change; check them with
 * fastavro again before copying them here.
 */
static void
test_golden_message_fixture(void **state)
{
	table_t      t;
	xr_schema_t *s;
	avro_value_t ev;
	xr_buf_t     out;
	char        *want;
	size_t       len;

	(void)state;
	table_init(&t, all_cols, NALL);
	s = build(&t, false);
	make_event(s, &t, &ev);
	xr_buf_init(&out);
	encode(s, &ev, &out);
	if (getenv("XR_WRITE_FIXTURES"))
		write_fixtures(getenv("XR_WRITE_FIXTURES"), s, &t, &out);
	want = xr_test_read_file(DATA_DIR "all_types.value.avsc", &len);
	assert_int_equal(len, s->json.len);
	assert_memory_equal(want, s->json.data, len);
	free(want);
	want = xr_test_read_file(DATA_DIR "all_types.value.bin", &len);
	assert_int_equal(len, out.len);
	assert_memory_equal(want, out.data, len);
	free(want);
	avro_value_decref(&ev);
	xr_buf_term(&out);
	xr_schema_destroy(s);
	table_term(&t);
}

static void
test_decode_rejects_leftover_bytes(void **state)
{
	table_t      t;
	xr_schema_t *s;
	avro_value_t ev, back;
	xr_buf_t     out;
	char         err[256] = "";

	(void)state;
	table_init(&t, small_cols, NSMALL);
	s = build(&t, false);
	make_event(s, &t, &ev);
	xr_buf_init(&out);
	encode(s, &ev, &out);
	xr_buf_putc(&out, 0);
	assert_int_equal(xr_avro_decode(s, out.data + 10, out.len - 10, &back,
	                                err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bytes over"));
	avro_value_decref(&ev);
	xr_buf_term(&out);
	xr_schema_destroy(s);
	table_term(&t);
}

static void
test_decode_rejects_truncated_datum(void **state)
{
	table_t      t;
	xr_schema_t *s;
	avro_value_t ev, back;
	xr_buf_t     out;
	char         err[256] = "";

	(void)state;
	table_init(&t, small_cols, NSMALL);
	s = build(&t, false);
	make_event(s, &t, &ev);
	xr_buf_init(&out);
	encode(s, &ev, &out);
	assert_int_equal(xr_avro_decode(s, out.data + 10, out.len - 11, &back,
	                                err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot decode"));
	avro_value_decref(&ev);
	xr_buf_term(&out);
	xr_schema_destroy(s);
	table_term(&t);
}

/*
 * Any table's event decodes with schemas/envelope.avsc as reader schema:
 * every Row is xregion.Row, and resolution skips the writer's columns.
 * Checked here with avro-c's resolving decoder, which reads the whole datum
 * and fills the envelope's fields.  It does not show which branch before
 * and after took: avro-c 1.11 selects a reader union's record branch only
 * when a reader field gets a value, and the envelope's Row has none.  The
 * fastavro check of the golden message covers before and after.
 */
static void
test_envelope_avsc_reads_any_table_event(void **state)
{
	table_t             t;
	xr_schema_t        *w, *r;
	avro_value_iface_t *res;
	avro_value_t        ev, wv, rv, f, b;
	avro_reader_t       rd;
	xr_buf_t            out;
	char               *json;
	size_t              len, n;
	const char         *str;
	int                 d;
	int64_t             l;

	(void)state;
	json = xr_test_read_file(XR_SOURCE_DIR "/schemas/envelope.avsc", &len);
	r = from_json(json, len);
	free(json);
	table_init(&t, all_cols, NALL);
	w = build(&t, false);
	make_event(w, &t, &ev);
	xr_buf_init(&out);
	encode(w, &ev, &out);

	res = avro_resolved_writer_new(w->schema, r->schema);
	if (!res)
		fail_msg("avro_resolved_writer_new: %s", avro_strerror());
	assert_int_equal(avro_resolved_writer_new_value(res, &wv), 0);
	assert_int_equal(avro_generic_value_new(r->iface, &rv), 0);
	avro_resolved_writer_set_dest(&wv, &rv);
	rd = avro_reader_memory(out.data + 10, (int64_t)out.len - 10);
	assert_non_null(rd);
	if (avro_value_read(rd, &wv) != 0)
		fail_msg("resolving read: %s", avro_strerror());
	avro_reader_free(rd);

	assert_int_equal(avro_value_get_by_index(&rv, XR_ENV_OP, &f, NULL), 0);
	assert_int_equal(avro_value_get_enum(&f, &d), 0);
	assert_int_equal(d, XR_OP_UPDATE);
	assert_int_equal(avro_value_get_by_index(&rv, XR_ENV_SOURCE, &b, NULL), 0);
	assert_int_equal(avro_value_get_by_index(&b, XR_SRC_TABLE, &f, NULL), 0);
	assert_int_equal(avro_value_get_string(&f, &str, &n), 0);
	assert_string_equal(str, "all_types");
	assert_int_equal(avro_value_get_by_index(&b, XR_SRC_COMMIT_TS, &f, NULL), 0);
	assert_int_equal(avro_value_get_long(&f, &l), 0);
	assert_true(l == INT64_C(1717999999000000));
	assert_int_equal(avro_value_get_by_index(&rv, XR_ENV_UNCHANGED, &f, NULL), 0);
	assert_int_equal(avro_value_get_by_index(&f, 0, &b, NULL), 0);
	assert_int_equal(avro_value_get_string(&b, &str, &n), 0);
	assert_string_equal(str, "nothing");

	avro_value_decref(&wv);
	avro_value_decref(&rv);
	avro_value_iface_decref(res);
	avro_value_decref(&ev);
	xr_buf_term(&out);
	xr_schema_destroy(w);
	xr_schema_destroy(r);
	table_term(&t);
}

/* ---- row fields read back from the schema JSON -------------------------- */

/* Field f describes column c of t: names, type, union shape. */
static void
assert_field_is_column(const xr_field_t *f, const table_t *t, int c,
                       const char *want_name, bool nullable)
{
	const xr_coltype_t *ct = &t->types[c];

	assert_string_equal(f->name, want_name);
	assert_string_equal(f->column, t->src[c].name);
	assert_int_equal(f->type.typid, 0);
	assert_int_equal(f->type.typmod, -1);
	assert_int_equal(f->type.at, ct->at);
	assert_int_equal(f->type.is_array, ct->is_array);
	assert_int_equal(f->type.precision, ct->precision);
	assert_int_equal(f->type.scale, ct->scale);
	assert_string_equal(f->type.pgname, ct->pgname);
	assert_int_equal(f->nullable, nullable);
	assert_int_equal(f->has_text_branch,
	                 ct->is_array || ct->at == XR_AT_DECIMAL);
}

static void
assert_fields_equal(const xr_schema_t *a, const xr_schema_t *b)
{
	int i;

	assert_int_equal(a->is_envelope, b->is_envelope);
	assert_int_equal(a->is_key, b->is_key);
	assert_int_equal(a->n_row_fields, b->n_row_fields);
	for (i = 0; i < a->n_row_fields; i++) {
		const xr_field_t *x = &a->row_fields[i], *y = &b->row_fields[i];

		assert_string_equal(x->name, y->name);
		assert_string_equal(x->column, y->column);
		assert_int_equal(x->type.typid, y->type.typid);
		assert_int_equal(x->type.typmod, y->type.typmod);
		assert_int_equal(x->type.at, y->type.at);
		assert_int_equal(x->type.is_array, y->type.is_array);
		assert_int_equal(x->type.precision, y->type.precision);
		assert_int_equal(x->type.scale, y->type.scale);
		assert_string_equal(x->type.pgname, y->type.pgname);
		assert_int_equal(x->nullable, y->nullable);
		assert_int_equal(x->has_text_branch, y->has_text_branch);
	}
}

/* Every mapped type, arrays, fallbacks and mangled names (xr.column). */
static void
test_fields_of_built_value_schema(void **state)
{
	table_t      t;
	xr_schema_t *s;
	int          i;

	(void)state;
	table_init(&t, all_cols, NALL);
	s = build(&t, false);
	assert_true(s->is_envelope);
	assert_false(s->is_key);
	assert_int_equal(s->n_row_fields, NALL);
	for (i = 0; i < NALL; i++)
		assert_field_is_column(&s->row_fields[i], &t, i,
		                       field_name(s, false, i), true);
	/* Spot checks that do not lean on classify. */
	assert_string_equal(s->row_fields[8].name, "amount");
	assert_int_equal(s->row_fields[8].type.at, XR_AT_DECIMAL);
	assert_int_equal(s->row_fields[8].type.precision, 12);
	assert_int_equal(s->row_fields[8].type.scale, 2);
	assert_string_equal(s->row_fields[19].name, "local_ts");
	assert_string_equal(s->row_fields[19].column, "local ts");
	assert_int_equal(s->row_fields[19].type.at,
	                 XR_AT_LOCAL_TIMESTAMP_MICROS);
	assert_string_equal(s->row_fields[NALL - 2].name, "_1st_col");
	assert_string_equal(s->row_fields[NALL - 1].column,
	                    "Gr\xc3\xb6\xc3\x9f" "e");
	assert_int_equal(s->row_fields[22].type.at, XR_AT_JSON);   /* docb */
	assert_true(s->row_fields[43].type.is_array);              /* jsonbs */
	assert_int_equal(s->row_fields[43].type.at, XR_AT_JSON);
	assert_int_equal(s->row_fields[44].type.at, XR_AT_STRING); /* mood */
	assert_string_equal(s->row_fields[44].type.pgname, "public.mood");
	xr_schema_destroy(s);
	table_term(&t);
}

/* build -> JSON -> from_json: the same field descriptions. */
static void
test_fields_from_json_equal_built(void **state)
{
	table_t      t;
	xr_schema_t *s, *p;
	int          key;

	(void)state;
	table_init(&t, all_cols, NALL);
	for (key = 0; key < 2; key++) {
		s = build(&t, key);
		p = from_json(s->json.data, s->json.len);
		assert_true(s->n_row_fields > 0);
		assert_fields_equal(s, p);
		xr_schema_destroy(p);
		xr_schema_destroy(s);
	}
	table_term(&t);
}

static void
test_fields_of_key_schema(void **state)
{
	static const tcol_t cols[] = {
		{ "x y", XR_OID_INT4, -1, NULL, false, NULL },
		{ "x-y", XR_OID_INT8, -1, NULL, true, NULL },
		{ "k", XR_OID_UUID, -1, NULL, true, NULL },
		{ "amt", XR_OID_NUMERIC, NUMTM(7, 3), NULL, true, NULL },
		{ "tags", 1009, -1, NULL, true, NULL },
	};
	static const char *want[] = { "x_y_2", "k", "amt", "tags" };
	table_t      t;
	xr_schema_t *k, *p;
	int          i;

	(void)state;
	table_init(&t, cols, 5);
	k = build(&t, true);
	assert_true(k->is_key);
	assert_false(k->is_envelope);
	assert_int_equal(k->n_row_fields, 4);
	for (i = 0; i < 4; i++)
		assert_field_is_column(&k->row_fields[i], &t, i + 1, want[i], false);
	p = from_json(k->json.data, k->json.len);
	assert_fields_equal(k, p);
	xr_schema_destroy(p);
	xr_schema_destroy(k);
	table_term(&t);
}

static void
test_fields_of_envelope_avsc_are_none(void **state)
{
	xr_schema_t *s;
	char        *json;
	size_t       len;

	(void)state;
	json = xr_test_read_file(XR_SOURCE_DIR "/schemas/envelope.avsc", &len);
	s = from_json(json, len);
	assert_true(s->is_envelope);
	assert_int_equal(s->n_row_fields, 0);
	xr_schema_destroy(s);
	free(json);
}

/* A schema of another writer (here with a map) is no error, just no rows. */
static void
test_fields_of_foreign_schema_are_none(void **state)
{
	static const char json[] =
		"{\"type\":\"record\",\"name\":\"Row\",\"namespace\":\"other\","
		"\"fields\":[{\"name\":\"m\",\"type\":{\"type\":\"map\","
		"\"values\":\"long\"}}]}";
	xr_schema_t *s;

	(void)state;
	s = from_json(json, strlen(json));
	assert_false(s->is_envelope);
	assert_false(s->is_key);
	assert_int_equal(s->n_row_fields, 0);
	assert_null(s->row_fields);
	xr_schema_destroy(s);
	s = from_json("\"string\"", 8);
	assert_int_equal(s->n_row_fields, 0);
	xr_schema_destroy(s);
}

/*
 * Another writer's envelope: names by namespace rather than dotted, Row
 * defined in after, no xr.* attributes, a decimal without scale.
 */
static void
test_fields_of_handwritten_envelope(void **state)
{
	static const char json[] =
		"{\"type\":\"record\",\"name\":\"ChangeEvent\",\"namespace\":\"xregion\","
		"\"fields\":[{\"name\":\"after\",\"type\":[\"null\",{\"type\":\"record\","
		"\"name\":\"Row\",\"fields\":["
		"{\"name\":\"d\",\"type\":[\"null\",{\"type\":\"bytes\","
		"\"logicalType\":\"decimal\",\"precision\":4},\"string\"]},"
		"{\"name\":\"j\",\"type\":\"string\",\"xr.pg_type\":\"jsonb\"},"
		"{\"name\":\"t\",\"type\":{\"type\":\"long\","
		"\"logicalType\":\"time-micros\"}}]}]}]}";
	xr_schema_t *s;

	(void)state;
	s = from_json(json, strlen(json));
	assert_true(s->is_envelope);
	assert_int_equal(s->n_row_fields, 3);
	assert_string_equal(s->row_fields[0].column, "d");
	assert_int_equal(s->row_fields[0].type.at, XR_AT_DECIMAL);
	assert_int_equal(s->row_fields[0].type.precision, 4);
	assert_int_equal(s->row_fields[0].type.scale, 0);
	assert_string_equal(s->row_fields[0].type.pgname, "");
	assert_true(s->row_fields[0].nullable);
	assert_true(s->row_fields[0].has_text_branch);
	assert_int_equal(s->row_fields[1].type.at, XR_AT_JSON);
	assert_false(s->row_fields[1].nullable);
	assert_int_equal(s->row_fields[2].type.at, XR_AT_TIME_MICROS);
	assert_false(s->row_fields[2].has_text_branch);
	xr_schema_destroy(s);
}

/* An xregion.Key whose only field has the given type (and attributes). */
static void
want_field_error(const char *field_json, const char *needle)
{
	xr_buf_t     json;
	xr_schema_t *s = (xr_schema_t *)&s;
	char         err[256] = "";

	xr_buf_init(&json);
	xr_buf_printf(&json, "{\"type\":\"record\",\"name\":\"xregion.Key\","
	              "\"fields\":[{\"name\":\"ok\",\"type\":\"int\"},"
	              "{\"name\":\"bad_f\",%s}]}", field_json);
	if (xr_schema_from_json(json.data, json.len, &s, err, sizeof(err)) == 0)
		fail_msg("accepted: %s", json.data);
	assert_null(s);
	if (!strstr(err, "\"bad_f\"") || !strstr(err, needle))
		fail_msg("message \"%s\" lacks the field name or \"%s\"", err,
		         needle);
	xr_buf_term(&json);
}

static void
test_fields_reject_unsupported_types(void **state)
{
	(void)state;
	want_field_error("\"type\":{\"type\":\"map\",\"values\":\"long\"}",
	                 "unsupported type");
	want_field_error("\"type\":{\"type\":\"enum\",\"name\":\"E\","
	                 "\"symbols\":[\"A\"]}", "unsupported type");
	want_field_error("\"type\":{\"type\":\"long\","
	                 "\"logicalType\":\"timestamp-millis\"}",
	                 "unsupported logical type");
	want_field_error("\"type\":{\"type\":\"string\","
	                 "\"logicalType\":\"date\"}", "unsupported logical type");
}

static void
test_fields_reject_unsupported_unions(void **state)
{
	(void)state;
	/* null not first; decimal without its text branch; an extra string
	 * branch on a plain type; three value branches. */
	want_field_error("\"type\":[\"int\",\"null\"]", "unsupported union");
	want_field_error("\"type\":[\"null\",{\"type\":\"bytes\","
	                 "\"logicalType\":\"decimal\",\"precision\":5,"
	                 "\"scale\":2}]", "unsupported union");
	want_field_error("\"type\":[\"null\",\"int\",\"string\"]",
	                 "unsupported union");
	want_field_error("\"type\":[\"null\",\"int\",\"long\",\"string\"]",
	                 "unsupported union");
	/* An array without the text branch, and items without null. */
	want_field_error("\"type\":[\"null\",{\"type\":\"array\","
	                 "\"items\":[\"null\",\"int\"]}]", "unsupported union");
	want_field_error("\"type\":[\"null\",{\"type\":\"array\","
	                 "\"items\":\"int\"},\"string\"]", "array items");
	want_field_error("\"type\":[\"null\",{\"type\":\"array\","
	                 "\"items\":[\"string\",\"int\"]},\"string\"]",
	                 "array items");
	/* Decimal items need their text branch; other items have none. */
	want_field_error("\"type\":[\"null\",{\"type\":\"array\","
	                 "\"items\":[\"null\",{\"type\":\"bytes\","
	                 "\"logicalType\":\"decimal\",\"precision\":5}]},"
	                 "\"string\"]", "unsupported union");
	want_field_error("\"type\":[\"null\",{\"type\":\"array\","
	                 "\"items\":[\"null\",\"int\",\"string\"]},"
	                 "\"string\"]", "unsupported union");
}

static void
test_fields_reject_bad_decimal_and_attributes(void **state)
{
	char field[400];

	(void)state;
	want_field_error("\"type\":[{\"type\":\"bytes\",\"logicalType\":"
	                 "\"decimal\",\"precision\":1001,\"scale\":0},\"string\"]",
	                 "out of range");
	want_field_error("\"type\":[{\"type\":\"bytes\",\"logicalType\":"
	                 "\"decimal\",\"precision\":5,\"scale\":6},\"string\"]",
	                 "out of range");
	want_field_error("\"type\":\"int\",\"xr.column\":7", "not a string");
	(void)snprintf(field, sizeof(field), "\"type\":\"string\","
	               "\"xr.pg_type\":\"%0128d\"", 0);
	want_field_error(field, "longer than 127");
}

static void
test_envelope_without_row_is_error(void **state)
{
	static const char json[] =
		"{\"type\":\"record\",\"name\":\"xregion.ChangeEvent\","
		"\"fields\":[{\"name\":\"op\",\"type\":\"string\"}]}";
	xr_schema_t *s = (xr_schema_t *)&s;
	char         err[256] = "";

	(void)state;
	assert_int_equal(xr_schema_from_json(json, strlen(json), &s, err,
	                                     sizeof(err)), -1);
	assert_null(s);
	assert_non_null(strstr(err, "xregion.Row"));
}

/* What all_cols' values read back as: their own text (NULL for the NULL
 * column), but the timestamptz in UTC and an array element unquoted where
 * PostgreSQL does not quote it. */
static const char *
want_back(int i)
{
	if (strcmp(all_cols[i].name, "ts") == 0)
		return "2020-06-15 08:15:30.123456+00";
	if (strcmp(all_cols[i].name, "jsonbs") == 0)
		return "{[]}";
	return all_cols[i].text;
}

/*
 * The consumer's path: the golden message decoded with the published JSON
 * (tests/common/data), each row field turned back to text with the types
 * read from that JSON.
 */
static void
test_golden_message_reads_back_as_text(void **state)
{
	xr_schema_t *s;
	avro_value_t ev, u, row, f;
	xr_buf_t     out;
	uint64_t     fp = 0;
	const void  *body;
	size_t       n, jlen, mlen;
	char        *json, *msg, err[256] = "";
	int          i, which;

	(void)state;
	json = xr_test_read_file(DATA_DIR "all_types.value.avsc", &jlen);
	msg = xr_test_read_file(DATA_DIR "all_types.value.bin", &mlen);
	s = from_json(json, jlen);
	assert_int_equal(s->n_row_fields, NALL);
	assert_int_equal(xr_avro_so_header(msg, mlen, &fp, &body, &n, err,
	                                   sizeof(err)), 0);
	assert_true(fp == s->fingerprint);
	if (xr_avro_decode(s, body, n, &ev, err, sizeof(err)) != 0)
		fail_msg("xr_avro_decode: %s", err);
	xr_buf_init(&out);
	for (which = XR_ENV_BEFORE; which <= XR_ENV_AFTER; which++) {
		assert_int_equal(avro_value_get_by_index(&ev, which, &u, NULL), 0);
		assert_int_equal(avro_value_get_current_branch(&u, &row), 0);
		for (i = 0; i < NALL; i++) {
			const xr_field_t *rf = &s->row_fields[i];
			bool              is_null = false;

			assert_int_equal(avro_value_get_by_index(&row, (size_t)i, &f,
			                                         NULL), 0);
			xr_buf_reset(&out);
			if (xr_pgtype_avro_to_text(&rf->type, &f, rf->nullable, &out,
			                           &is_null, err, sizeof(err)) != 0)
				fail_msg("column %s: %s", rf->column, err);
			if (!want_back(i)) {
				assert_true(is_null);
				continue;
			}
			assert_false(is_null);
			if (strcmp(out.data, want_back(i)) != 0)
				fail_msg("column %s: \"%s\", want \"%s\"", rf->column,
				         out.data, want_back(i));
		}
	}
	xr_buf_term(&out);
	avro_value_decref(&ev);
	xr_schema_destroy(s);
	free(json);
	free(msg);
}

/* Key fields (no null branch) read back too, with types from the JSON. */
static void
test_key_reads_back_as_text(void **state)
{
	table_t      t;
	xr_schema_t *s, *p;
	avro_value_t key, back, f;
	xr_buf_t     out;
	char         err[256] = "";
	int          i;

	(void)state;
	table_init(&t, all_cols, NALL);
	s = build(&t, true);
	p = from_json(s->json.data, s->json.len);
	assert_int_equal(avro_generic_value_new(s->iface, &key), 0);
	fill_row(&t, &key, true);
	xr_buf_init(&out);
	encode(s, &key, &out);
	assert_int_equal(xr_avro_decode(p, out.data + 10, out.len - 10, &back,
	                                err, sizeof(err)), 0);
	assert_int_equal(p->n_row_fields, 2);
	for (i = 0; i < p->n_row_fields; i++) {
		bool is_null = true;

		assert_int_equal(avro_value_get_by_index(&back, (size_t)i, &f,
		                                         NULL), 0);
		xr_buf_reset(&out);
		assert_false(p->row_fields[i].nullable);
		assert_int_equal(xr_pgtype_avro_to_text(&p->row_fields[i].type, &f,
		                                        false, &out, &is_null, err,
		                                        sizeof(err)), 0);
		assert_false(is_null);
		assert_string_equal(out.data, all_cols[i].text);
	}
	avro_value_decref(&back);
	avro_value_decref(&key);
	xr_buf_term(&out);
	xr_schema_destroy(p);
	xr_schema_destroy(s);
	table_term(&t);
}


/* A record of a string and an array of strings, for the length checks. */
static xr_schema_t *
lengths_schema(void)
{
	static const char json[] =
		"{\"type\":\"record\",\"name\":\"L\",\"fields\":["
		"{\"name\":\"s\",\"type\":\"string\"},"
		"{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"string\"}}]}";
	xr_schema_t *s = NULL;
	char         err[256];

	assert_int_equal(xr_schema_from_json(json, sizeof(json) - 1, &s, err,
	                                     sizeof(err)), 0);
	return s;
}

static void
test_validate_accepts_a_well_formed_datum(void **state)
{
	/* s = "hi", a = ["x"] */
	static const unsigned char ok[] = { 0x04, 'h', 'i', 0x02, 0x02, 'x', 0x00 };
	xr_schema_t *s = lengths_schema();
	char         err[256];

	(void)state;
	assert_int_equal(xr_avro_validate(s, ok, sizeof(ok), err, sizeof(err)), 0);
	xr_schema_destroy(s);
}

/*
 * Six bytes claiming a 1 GiB string: refused before avro-c allocates
 * what they claim (its 1.11 reader allocates first and checks after).
 */
static void
test_decode_refuses_a_length_beyond_the_message(void **state)
{
	static const unsigned char bad[] = { 0x80, 0x80, 0x80, 0x80, 0x08, 'x' };
	xr_schema_t *s = lengths_schema();
	avro_value_t v;
	char         err[256];

	(void)state;
	assert_int_equal(xr_avro_decode(s, bad, sizeof(bad), &v, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "does not fit"));
	xr_schema_destroy(s);
}

static void
test_validate_refuses_an_array_count_beyond_the_message(void **state)
{
	/* s = "", then a block of 2^40 items in 2 bytes */
	static const unsigned char bad[] = { 0x00, 0x80, 0x80, 0x80, 0x80, 0x80,
	                                     0x40, 'x', 'y' };
	xr_schema_t *s = lengths_schema();
	char         err[256];

	(void)state;
	assert_int_equal(xr_avro_validate(s, bad, sizeof(bad), err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "does not fit"));
	xr_schema_destroy(s);
}

static void
test_validate_refuses_an_unterminated_varint(void **state)
{
	static const unsigned char bad[] = { 0xff, 0xff, 0xff };
	xr_schema_t *s = lengths_schema();
	char         err[256];

	(void)state;
	assert_int_equal(xr_avro_validate(s, bad, sizeof(bad), err, sizeof(err)),
	                 -1);
	xr_schema_destroy(s);
}


/* ---- the envelope read in place ----------------------------------------- */

static void
test_env_view_reads_every_field(void **state)
{
	table_t       t;
	xr_schema_t  *s;
	avro_value_t  ev;
	xr_buf_t      out;
	xr_env_view_t v;
	const void   *body;
	size_t        n;
	uint64_t      fp;
	xr_span_t     spans[NALL];
	int           branches[NALL], i;
	size_t        sum = 0;
	char          err[256] = "";

	(void)state;
	table_init(&t, all_cols, NALL);
	s = build(&t, false);
	make_event(s, &t, &ev);
	xr_buf_init(&out);
	encode(s, &ev, &out);
	assert_int_equal(xr_avro_so_header(out.data, out.len, &fp, &body, &n,
	                                   err, sizeof(err)), 0);
	if (xr_avro_env_view(s, body, n, &v, err, sizeof(err)) != 0)
		fail_msg("xr_avro_env_view: %s", err);
	assert_int_equal(v.op, XR_OP_UPDATE);
	assert_true(v.produced_at == INT64_C(1718000000123456));
	assert_int_equal(v.event_id.len, 36);
	assert_memory_equal(v.body + v.event_id.off,
	                    "1b4e28ba-2fa1-11d2-883f-0016541e3d29", 36);
	assert_memory_equal(v.body + v.region.off, "eu-west-1", v.region.len);
	assert_memory_equal(v.body + v.database.off, "shop", v.database.len);
	assert_memory_equal(v.body + v.table.off, "all_types", v.table.len);
	assert_true(v.lsn == INT64_C(0x16B3748));
	assert_true(v.commit_lsn == INT64_C(0x16B3800));
	assert_true(v.txid == 7777);
	assert_true(v.commit_ts == INT64_C(1717999999000000));
	assert_true(v.has_origin);
	assert_memory_equal(v.body + v.origin.off, "us-east-1", v.origin.len);
	assert_true(v.has_before && v.has_after);
	/* The same row twice: the same bytes. */
	assert_int_equal(v.before.len, v.after.len);
	assert_memory_equal(v.body + v.before.off, v.body + v.after.off,
	                    v.after.len);
	/* unchanged: a block of 1 item, "nothing", then the end. */
	assert_int_equal(v.unchanged.len, 1 + 1 + 7 + 1);
	assert_memory_equal(v.body + v.unchanged.off + 2, "nothing", 7);
	assert_true(v.has_vclock);
	assert_true(v.vc_hlc == INT64_C(1717999999000123));
	assert_false(v.has_vc_before);
	/* The Row's fields tile its bytes; NULL columns take branch 0. */
	assert_int_equal(xr_avro_row_fields(xr_avro_row_schema(s),
	                                    v.body + v.after.off, v.after.len,
	                                    spans, branches, NALL), 0);
	for (i = 0; i < NALL; i++) {
		assert_true(spans[i].off == sum);
		sum += spans[i].len;
		if (!all_cols[i].text)
			assert_int_equal(branches[i], 0);
	}
	assert_true(sum == v.after.len);
	/* A Row of another shape is refused. */
	assert_int_equal(xr_avro_row_fields(xr_avro_row_schema(s),
	                                    v.body + v.after.off,
	                                    v.after.len - 1, spans, branches,
	                                    NALL), -1);
	avro_value_decref(&ev);
	xr_buf_term(&out);
	xr_schema_destroy(s);
	table_term(&t);
}

/* Every cut of a well-formed datum is refused, none read past its end. */
static void
test_env_view_refuses_every_truncation(void **state)
{
	table_t       t;
	xr_schema_t  *s;
	avro_value_t  ev;
	xr_buf_t      out;
	xr_env_view_t v;
	const void   *body;
	size_t        n, cut;
	uint64_t      fp;
	char          err[256] = "";

	(void)state;
	table_init(&t, small_cols, (int)(sizeof(small_cols) / sizeof(small_cols[0])));
	s = build(&t, false);
	make_event(s, &t, &ev);
	xr_buf_init(&out);
	encode(s, &ev, &out);
	assert_int_equal(xr_avro_so_header(out.data, out.len, &fp, &body, &n,
	                                   err, sizeof(err)), 0);
	for (cut = 0; cut < n; cut++) {
		unsigned char *copy = malloc(cut ? cut : 1);

		memcpy(copy, body, cut);
		assert_int_equal(xr_avro_env_view(s, copy, cut, &v, err,
		                                  sizeof(err)), -1);
		free(copy);
	}
	assert_int_equal(xr_avro_env_view(s, body, n, &v, err, sizeof(err)), 0);
	avro_value_decref(&ev);
	xr_buf_term(&out);
	xr_schema_destroy(s);
	table_term(&t);
}

static void
test_put_long_is_zigzag_varint(void **state)
{
	xr_buf_t b;
	uint64_t fp;

	(void)state;
	xr_buf_init(&b);
	xr_avro_put_long(&b, 0);
	xr_avro_put_long(&b, -1);
	xr_avro_put_long(&b, 1);
	xr_avro_put_long(&b, -65);
	xr_avro_put_long(&b, INT64_MIN);
	assert_int_equal(b.len, 1 + 1 + 1 + 2 + 10);
	assert_memory_equal(b.data, "\x00\x01\x02\x81\x01", 5);
	assert_memory_equal(b.data + 5, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10);
	xr_buf_term(&b);
	/* A schema id's fingerprint: its bytes little-endian. */
	assert_int_equal(xr_schema_id_fingerprint("0102030405060708.aa", &fp), 0);
	assert_true(fp == UINT64_C(0x0807060504030201));
	assert_int_equal(xr_schema_id_fingerprint("01xx", &fp), -1);
}


/* SO framing to Confluent's: 0x00, the id big-endian, the same datum. */
static void
test_confluent_reframe_and_header(void **state)
{
	static const unsigned char so[] = { 0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8,
	                                    0x02, 0x61, 0x62 };
	static const unsigned char want[] = { 0x00, 0x01, 0x02, 0x03, 0x04,
	                                      0x02, 0x61, 0x62 };
	xr_buf_t    b;
	int32_t     id;
	const void *body;
	size_t      n;

	(void)state;
	xr_buf_init(&b);
	xr_buf_append(&b, so, sizeof(so));
	xr_avro_confluent_reframe(&b, 0x01020304);
	assert_int_equal(b.len, sizeof(want));
	assert_memory_equal(b.data, want, sizeof(want));
	assert_int_equal(xr_confluent_header(b.data, b.len, &id, &body, &n), 0);
	assert_int_equal(id, 0x01020304);
	assert_int_equal(n, 3);
	assert_memory_equal(body, "\x02" "ab", 3);
	/* Not Confluent: single-object, or too short. */
	assert_int_equal(xr_confluent_header(so, sizeof(so), &id, &body, &n), -1);
	assert_int_equal(xr_confluent_header(want, 4, &id, &body, &n), -1);
	xr_buf_term(&b);
}

/*
 * fuzz_schema_registry's first finding: a schema that defines a named
 * type twice (here xregion.Source, from a spliced envelope).  avro-c
 * refuses it but leaks the type it was making (LeakSanitizer);
 * xr_schema_from_json now refuses it before avro-c sees it.
 */
static void
test_fuzz_named_type_defined_twice(void **state)
{
	static const char *const twice[] = {
		"{\"type\":\"record\",\"name\":\"a\",\"fields\":[{\"name\":\"x\","
		"\"type\":{\"type\":\"record\",\"name\":\"a\",\"fields\":[]}}]}",
		/* the inner one's namespace is its parent's: n.e twice */
		"{\"type\":\"record\",\"name\":\"n.r\",\"fields\":["
		"{\"name\":\"x\",\"type\":{\"type\":\"enum\",\"name\":\"e\","
		"\"symbols\":[\"A\"]}},"
		"{\"name\":\"y\",\"type\":[\"null\",{\"type\":\"fixed\","
		"\"name\":\"n.e\",\"size\":1}]}]}",
	};
	/* Same short name, other namespaces: valid. */
	static const char once[] =
		"{\"type\":\"record\",\"name\":\"a\",\"namespace\":\"p\","
		"\"fields\":[{\"name\":\"x\",\"type\":{\"type\":\"record\","
		"\"name\":\"a\",\"namespace\":\"q\",\"fields\":[]}},"
		"{\"name\":\"y\",\"type\":{\"type\":\"array\",\"items\":"
		"{\"type\":\"enum\",\"name\":\"r.a\",\"symbols\":[\"B\"]}}}]}";
	xr_schema_t *s;
	char         err[512];
	char        *json;
	size_t       len, i;
	(void)state;

	json = xr_test_read_file(XR_SOURCE_DIR "/tests/fuzz/regressions/schema_registry/"
	                 "leak-named-type-twice", &len);
	assert_int_equal(xr_schema_from_json(json, len, &s, err, sizeof(err)), -1);
	assert_null(s);
	assert_non_null(strstr(err, "named type xregion.Source is defined twice"));
	free(json);

	for (i = 0; i < sizeof(twice) / sizeof(twice[0]); i++) {
		assert_int_equal(xr_schema_from_json(twice[i], strlen(twice[i]), &s,
		                                     err, sizeof(err)), -1);
		assert_non_null(strstr(err, "is defined twice"));
	}
	assert_int_equal(xr_schema_from_json(once, strlen(once), &s, err,
	                                     sizeof(err)), 0);
	xr_schema_destroy(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc64_of_nothing_is_empty_constant),
		cmocka_unit_test(test_crc64_known_vectors),
		cmocka_unit_test(test_crc64_table_matches_bitwise_definition),
		cmocka_unit_test(test_build_value_schema_canonical_golden),
		cmocka_unit_test(test_build_key_schema_canonical_golden),
		cmocka_unit_test(test_build_all_types_fingerprint_golden),
		cmocka_unit_test(test_build_json_keeps_logical_types_and_attributes),
		cmocka_unit_test(test_envelope_avsc_is_the_empty_envelope),
		cmocka_unit_test(test_from_json_reproduces_built_schema),
		cmocka_unit_test(test_from_json_canonical_of_foreign_schema),
		cmocka_unit_test(test_from_json_rejects_invalid),
		cmocka_unit_test(test_names_are_mangled_and_deduplicated),
		cmocka_unit_test(test_key_schema_has_key_columns_with_value_names),
		cmocka_unit_test(test_build_rejects_column_without_name),
		cmocka_unit_test(test_encode_writes_header_then_datum),
		cmocka_unit_test(test_encode_rejects_value_of_other_schema),
		cmocka_unit_test(test_so_header_reads_fingerprint_and_body),
		cmocka_unit_test(test_so_header_rejects_short_message),
		cmocka_unit_test(test_so_header_rejects_bad_magic),
		cmocka_unit_test(test_round_trip_every_type),
		cmocka_unit_test(test_round_trip_key),
		cmocka_unit_test(test_golden_message_fixture),
		cmocka_unit_test(test_decode_rejects_leftover_bytes),
		cmocka_unit_test(test_decode_rejects_truncated_datum),
		cmocka_unit_test(test_envelope_avsc_reads_any_table_event),
		cmocka_unit_test(test_fields_of_built_value_schema),
		cmocka_unit_test(test_fields_from_json_equal_built),
		cmocka_unit_test(test_fields_of_key_schema),
		cmocka_unit_test(test_fields_of_envelope_avsc_are_none),
		cmocka_unit_test(test_fields_of_foreign_schema_are_none),
		cmocka_unit_test(test_fields_of_handwritten_envelope),
		cmocka_unit_test(test_fields_reject_unsupported_types),
		cmocka_unit_test(test_fields_reject_unsupported_unions),
		cmocka_unit_test(test_fields_reject_bad_decimal_and_attributes),
		cmocka_unit_test(test_envelope_without_row_is_error),
		cmocka_unit_test(test_golden_message_reads_back_as_text),
		cmocka_unit_test(test_key_reads_back_as_text),
		cmocka_unit_test(test_validate_accepts_a_well_formed_datum),
		cmocka_unit_test(test_decode_refuses_a_length_beyond_the_message),
		cmocka_unit_test(test_validate_refuses_an_array_count_beyond_the_message),
		cmocka_unit_test(test_validate_refuses_an_unterminated_varint),
		cmocka_unit_test(test_env_view_reads_every_field),
		cmocka_unit_test(test_env_view_refuses_every_truncation),
		cmocka_unit_test(test_put_long_is_zigzag_varint),
		cmocka_unit_test(test_confluent_reframe_and_header),
		cmocka_unit_test(test_fuzz_named_type_defined_twice),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
