/*
 * test_event.c: unit tests for consumer/event.c, decoding change events,
 * as a producer -> consumer round trip without Kafka.
 *
 * A Relation message (filled in by hand) goes into the producer's relcache;
 * pgoutput tuples holding PostgreSQL text values are encoded with
 * xr_encode_change; the relation's value schema JSON is added to a consumer
 * registry under the id the producer publishes it with (value_schema_id)
 * and the event is decoded with xr_event_decode, given that id as the
 * xr-schema header would.  The registry's Kafka handle points at
 * 127.0.0.1:1, where nothing listens: only the test of an unknown schema
 * makes it try to read the schemas topic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "consumer/event.h"
#include "consumer/registry.h"
#include "producer/encoder.h"
#include "producer/pgoutput.h"
#include "producer/relcache.h"
#include "tests/common/test_file.h"

#define NUMTM(p, s) ((int32_t)((((p) << 16) | ((s) & 0x7ff)) + 4))
#define OID_TEXT_ARRAY 1009

static char         tmpdir[] = "/tmp/xr_test_event.XXXXXX";
static char         yaml_path[512];
static xr_config_t *conf;

static const char yaml[] =
	"region: us\n"
	"regions: [us, eu]\n"
	"postgres:\n"
	"  dsn: \"host=127.0.0.1 port=1 dbname=app\"\n"
	"kafka:\n"
	"  brokers: 127.0.0.1:1\n"
	"  properties:\n"
	"    socket.connection.setup.timeout.ms: 1000\n"
	"    reconnect.backoff.max.ms: 100\n"
	"    log_level: 0\n"
	"tables:\n"
	"  - name: public.orders\n"
	"    pii: false\n"
	"    exclude_columns: [secret]\n"
	"  - name: public.scalars\n"
	"    pii: false\n";

/* ---- the table: public.orders ----------------------------------------- */

#define RELID 16384

enum {
	C_ID = 0,   /* int8, primary key */
	C_NOTE,     /* text */
	C_AMOUNT,   /* numeric(12,2) */
	C_CREATED,  /* timestamptz */
	C_TAGS,     /* text[] */
	C_BLOB,     /* bytea */
	C_SECRET,   /* text, excluded: not in the event */
	C_BODY,     /* text "the body": TOASTed, a mangled Avro name */
	C_ODD,      /* int4 named "odd name": a mangled Avro name */
	NCOLS
};

/* The fields of xregion.Row: every column but secret, in order. */
enum {
	F_ID = 0, F_NOTE, F_AMOUNT, F_CREATED, F_TAGS, F_BLOB, F_BODY, F_ODD,
	NFIELDS
};

static xr_pgo_relcol_t relcols[NCOLS] = {
	{ true,  "id",       20,                   -1 },
	{ false, "note",     25,                   -1 },
	{ false, "amount",   1700,                 NUMTM(12, 2) },
	{ false, "created",  1184,                 -1 },
	{ false, "tags",     OID_TEXT_ARRAY,       -1 },
	{ false, "blob",     17,                   -1 },
	{ false, "secret",   25,                   -1 },
	{ false, "the body", 25,                   -1 },
	{ false, "odd name", 23,                   -1 },
};

/* Text forms as pgoutput sends them (DateStyle ISO, TimeZone UTC, hex). */
#define V_ID      "9223372036854775807"
#define V_NOTE    "h\xc3\xa9llo, world"
#define V_AMOUNT  "-1234567890.50"
#define V_CREATED "2024-01-02 03:04:05.123456+00"
#define V_TAGS    "{plain,\"with space\",\"q\\\"uote\",NULL,\"\",\"a,b\"}"
#define V_BLOB    "\\xdeadbeef00"
#define V_SECRET  "do not publish"
#define V_BODY    "a long value PostgreSQL keeps out of line"
#define V_ODD     "-42"

/* Source of the changes. */
#define SRC_LSN        UINT64_C(0x00000001000000A8)
#define SRC_COMMIT_LSN UINT64_C(0x0000000100000F00)
#define SRC_COMMIT_TS  INT64_C(1704164645123456)  /* 2024-01-02 03:04:05.123456 */

static const xr_source_t src = {
	.region = "us",
	.database = "app",
	.lsn = SRC_LSN,
	.commit_lsn = SRC_COMMIT_LSN,
	.xid = 777,
	.commit_ts_us = SRC_COMMIT_TS,
	.origin = NULL,
	.change_index = 3,
	.tx_index = 5,
};

#define T(s)  { XR_PGO_COL_TEXT, (s), sizeof(s) - 1 }
#define NUL_  { XR_PGO_COL_NULL, NULL, 0 }
#define UNCH  { XR_PGO_COL_UNCHANGED, NULL, 0 }

static xr_pgo_datum_t full_row[NCOLS] = {
	T(V_ID), T(V_NOTE), T(V_AMOUNT), T(V_CREATED), T(V_TAGS), T(V_BLOB),
	T(V_SECRET), T(V_BODY), T(V_ODD),
};

/* ---- fixture ----------------------------------------------------------- */

typedef struct fx_s {
	xr_relcache_t *rc;
	xr_rel_t      *rel;
	xr_registry_t *reg;
	xr_event_t     ev;
	xr_buf_t       key, value;
	char           event_id[XR_EVENT_ID_LEN + 1];
	char           err[1024];
} fx_t;

/* Removes every XREGION_* variable: the caller's shell must not leak in. */
static void
clear_env(void)
{
	char  *names[64];
	size_t n = 0, i;
	char **e;

	for (e = environ; *e && n < 64; e++) {
		const char *eq = strchr(*e, '=');

		if (strncmp(*e, "XREGION_", 8) == 0 && eq)
			names[n++] = strndup(*e, (size_t)(eq - *e));
	}
	for (i = 0; i < n; i++) {
		assert_non_null(names[i]);
		assert_int_equal(unsetenv(names[i]), 0);
		free(names[i]);
	}
}

static int
group_setup(void **state)
{
	char  err[1024];
	FILE *f;

	(void)state;
	clear_env();
	if (!mkdtemp(tmpdir))
		return -1;
	if (snprintf(yaml_path, sizeof(yaml_path), "%s/xregion.yaml", tmpdir) >=
	    (int)sizeof(yaml_path))
		return -1;
	f = fopen(yaml_path, "w");
	if (!f)
		return -1;
	if (fputs(yaml, f) < 0) {
		(void)fclose(f);
		return -1;
	}
	if (fclose(f) != 0)
		return -1;
	conf = xr_config_load(yaml_path, err, sizeof(err));
	if (!conf) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	xr_config_destroy(conf);
	conf = NULL;
	if (unlink(yaml_path) != 0)
		return -1;
	return rmdir(tmpdir);
}

/* Describes public.<relname> (a Relation message) to fx's relcache. */
static xr_rel_t *
describe(fx_t *fx, uint32_t relid, const char *relname, xr_pgo_relcol_t *cols,
         int ncols)
{
	xr_pgo_msg_t m;
	xr_rel_t    *rel = NULL;

	memset(&m, 0, sizeof(m));
	m.kind = XR_PGO_RELATION;
	m.u.relation.relid = relid;
	m.u.relation.nspname = "public";
	m.u.relation.relname = relname;
	m.u.relation.replident = 'd';
	m.u.relation.ncols = ncols;
	m.u.relation.cols = cols;
	assert_int_equal(xr_relcache_update(fx->rc, &m, NULL, &rel, fx->err,
	                                    sizeof(fx->err)), 0);
	return rel;
}

/* Describes public.orders to a new relcache; makes an empty registry. */
static int
setup(void **state)
{
	fx_t *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	fx->rc = xr_relcache_new(conf);
	assert_non_null(fx->rc);
	fx->rel = describe(fx, RELID, "orders", relcols, NCOLS);
	assert_true(fx->rel->published);
	fx->reg = xr_registry_new(conf, fx->err, sizeof(fx->err));
	assert_non_null(fx->reg);
	xr_event_init(&fx->ev);
	xr_buf_init(&fx->key);
	xr_buf_init(&fx->value);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	fx_t *fx = *state;

	xr_buf_term(&fx->key);
	xr_buf_term(&fx->value);
	xr_event_term(&fx->ev);
	xr_registry_destroy(fx->reg);
	xr_relcache_destroy(fx->rc);
	free(fx);
	return 0;
}

/* Adds the relation's value schema as the producer publishes it. */
static void
register_value_schema(fx_t *fx)
{
	assert_int_equal(xr_registry_add_json(fx->reg, fx->rel->value_schema_id,
	                                      fx->rel->value_schema->json.data,
	                                      fx->rel->value_schema->json.len,
	                                      fx->err, sizeof(fx->err)), 0);
}

/*
 * Two encodings of one event are the same bytes but for produced_at, the
 * clock read while encoding: it follows the header, the event id (its
 * length in one byte, 36 characters) and the op (one byte).
 */
static void
assert_same_event(const xr_buf_t *x, const xr_buf_t *y)
{
	size_t off = XR_AVRO_SO_HEADER_LEN + 1 + XR_EVENT_ID_LEN + 1;
	size_t ix = off, iy = off;

	assert_true(x->len > off && y->len > off);
	assert_memory_equal(x->data, y->data, off);
	while (ix < x->len && ((unsigned char)x->data[ix++] & 0x80))
		;
	while (iy < y->len && ((unsigned char)y->data[iy++] & 0x80))
		;
	assert_int_equal(x->len - ix, y->len - iy);
	assert_memory_equal(x->data + ix, y->data + iy, x->len - ix);
}

/*
 * Encodes a change as the producer does (into fx->key and fx->value), and
 * again through avro-c's values: the bytes written directly must be
 * avro-c's.
 */
static void
encode_rel(fx_t *fx, xr_rel_t *rel, xr_op_t op, const xr_pgo_tuple_t *b,
           const xr_pgo_tuple_t *a, const xr_source_t *s)
{
	xr_buf_t k, v;
	char     id[XR_EVENT_ID_LEN + 1];

	if (xr_encode_change(rel, op, b, a, s, &fx->key, &fx->value, fx->event_id,
	                     fx->err, sizeof(fx->err)))
		fail_msg("encode: %s", fx->err);
	xr_buf_init(&k);
	xr_buf_init(&v);
	if (xr_encode_change_avro(rel, op, b, a, s, &k, &v, id, fx->err,
	                          sizeof(fx->err)))
		fail_msg("encode with avro-c: %s", fx->err);
	assert_string_equal(id, fx->event_id);
	assert_same_event(&fx->value, &v);
	assert_int_equal(k.len, fx->key.len);
	if (k.len)
		assert_memory_equal(k.data, fx->key.data, k.len);
	xr_buf_term(&k);
	xr_buf_term(&v);
}

static void
encode(fx_t *fx, xr_op_t op, xr_pgo_datum_t *before, xr_pgo_datum_t *after)
{
	xr_pgo_tuple_t b = { NCOLS, before }, a = { NCOLS, after };

	encode_rel(fx, fx->rel, op, before ? &b : NULL, after ? &a : NULL, &src);
}

/* The two images' fields of a and b are the same. */
static void
assert_same_image(const xr_event_t *a, const xr_eval_t *va,
                  const xr_event_t *b, const xr_eval_t *vb)
{
	int i;

	for (i = 0; i < a->nfields; i++) {
		const char *ta = xr_event_text(a, &va[i]), *tb = xr_event_text(b, &vb[i]);

		assert_int_equal(va[i].present, vb[i].present);
		assert_int_equal(va[i].is_null, vb[i].is_null);
		assert_int_equal(va[i].unchanged, vb[i].unchanged);
		assert_true((ta == NULL) == (tb == NULL));
		if (ta)
			assert_string_equal(ta, tb);
	}
}

/*
 * Decodes fx->value with the id of the xr-schema header; must succeed.
 * Every event is decoded twice, through avro-c's values and (where it
 * applies) in place from its bytes: both must give the same event.
 */
static void
decode(fx_t *fx)
{
	xr_event_t g;
	int        rc;

	xr_event_init(&g);
	xr_event_generic_only = true;
	rc = xr_event_decode(&g, fx->reg, fx->value.data, fx->value.len,
	                     fx->rel->value_schema_id, fx->err, sizeof(fx->err));
	xr_event_generic_only = false;
	if (rc != 0)
		fail_msg("decode through avro-c returned %d: %s", rc, fx->err);
	rc = xr_event_decode(&fx->ev, fx->reg, fx->value.data, fx->value.len,
	                     fx->rel->value_schema_id, fx->err, sizeof(fx->err));
	if (rc != 0)
		fail_msg("decode returned %d: %s", rc, fx->err);
	assert_int_equal(g.op, fx->ev.op);
	assert_string_equal(g.region, fx->ev.region);
	assert_string_equal(g.source_region, fx->ev.source_region);
	assert_string_equal(g.nspname, fx->ev.nspname);
	assert_string_equal(g.relname, fx->ev.relname);
	assert_string_equal(g.event_id, fx->ev.event_id);
	assert_int_equal(g.commit_ts, fx->ev.commit_ts);
	assert_int_equal(g.source_commit_ts, fx->ev.source_commit_ts);
	assert_int_equal(g.lsn, fx->ev.lsn);
	assert_int_equal(g.commit_lsn, fx->ev.commit_lsn);
	assert_int_equal(g.has_before, fx->ev.has_before);
	assert_int_equal(g.has_after, fx->ev.has_after);
	assert_int_equal(g.has_vclock, fx->ev.has_vclock);
	assert_int_equal(g.nfields, fx->ev.nfields);
	if (g.has_before)
		assert_same_image(&g, g.before, &fx->ev, fx->ev.before);
	if (g.has_after)
		assert_same_image(&g, g.after, &fx->ev, fx->ev.after);
	xr_event_term(&g);
}

static void
assert_text(const fx_t *fx, const xr_eval_t *v, const char *want)
{
	const char *got = xr_event_text(&fx->ev, v);

	assert_true(v->present);
	assert_false(v->is_null);
	assert_false(v->unchanged);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(v->len, strlen(want));
}

static void
assert_null_value(const fx_t *fx, const xr_eval_t *v)
{
	assert_true(v->present);
	assert_true(v->is_null);
	assert_null(xr_event_text(&fx->ev, v));
}

/* ---- round trips ------------------------------------------------------- */

static void
test_insert_metadata(void **state)
{
	fx_t *fx = *state;

	register_value_schema(fx);
	encode(fx, XR_OP_INSERT, NULL, full_row);
	decode(fx);
	assert_int_equal(fx->ev.op, XR_OP_INSERT);
	assert_ptr_equal(fx->ev.schema,
	                 xr_registry_get(fx->reg, fx->rel->value_schema->fingerprint,
	                                 fx->rel->value_schema_id,
	                                 &(bool){ false }, fx->err,
	                                 sizeof(fx->err)));
	assert_string_equal(fx->ev.region, "us");
	assert_string_equal(fx->ev.nspname, "public");
	assert_string_equal(fx->ev.relname, "orders");
	assert_int_equal(fx->ev.commit_ts, SRC_COMMIT_TS);
	assert_int_equal(fx->ev.lsn, SRC_LSN);
	assert_int_equal(fx->ev.commit_lsn, SRC_COMMIT_LSN);
	assert_int_equal(strlen(fx->ev.event_id), XR_EVENT_ID_LEN);
	assert_string_equal(fx->ev.event_id, fx->event_id);
	assert_false(fx->ev.has_before);
	assert_true(fx->ev.has_after);
}

/* The vector-clock version travels whole; a key change adds the old key's. */
static void
test_vclock_round_trip(void **state)
{
	fx_t        *fx = *state;
	json_t      *vec = json_pack("{s:I,s:I}", "us", (json_int_t)3,
	                             "eu", (json_int_t)12);
	json_t      *old = json_pack("{s:I}", "us", (json_int_t)2);
	xr_vclock_t  vc = { .hlc = INT64_C(1795781380963108), .vector = vec };
	xr_source_t  s2 = src;
	xr_pgo_tuple_t a = { NCOLS, full_row };
	json_t      *got;

	register_value_schema(fx);
	assert_non_null(vec);
	assert_non_null(old);
	s2.vclock = &vc;
	assert_int_equal(xr_encode_change(fx->rel, XR_OP_INSERT, NULL, &a, &s2,
	                                  &fx->key, &fx->value, fx->event_id,
	                                  fx->err, sizeof(fx->err)), 0);
	decode(fx);
	assert_true(fx->ev.has_vclock);
	assert_false(fx->ev.has_vc_before);
	assert_true(fx->ev.vc_hlc == INT64_C(1795781380963108));
	got = json_loads(fx->ev.vc_vector.data, 0, NULL);
	assert_non_null(got);
	assert_true(json_equal(got, vec));
	json_decref(got);

	vc.before_vector = old;
	vc.before_hlc = 77;
	assert_int_equal(xr_encode_change(fx->rel, XR_OP_UPDATE, NULL, &a, &s2,
	                                  &fx->key, &fx->value, fx->event_id,
	                                  fx->err, sizeof(fx->err)), 0);
	decode(fx);
	assert_true(fx->ev.has_vc_before);
	assert_true(fx->ev.vc_before_hlc == 77);
	assert_string_equal(fx->ev.vc_before_vector.data, "{\"us\":2}");

	/* Without one, the next event has none. */
	encode(fx, XR_OP_INSERT, NULL, full_row);
	decode(fx);
	assert_false(fx->ev.has_vclock);
	json_decref(vec);
	json_decref(old);
}

/* The event's fields are the table's published columns, named as in PG. */
static void
test_fields_are_published_columns(void **state)
{
	static const char *const names[NFIELDS] = {
		"id", "note", "amount", "created", "tags", "blob", "the body",
		"odd name"
	};
	fx_t *fx = *state;
	int   i;

	register_value_schema(fx);
	encode(fx, XR_OP_INSERT, NULL, full_row);
	decode(fx);
	assert_int_equal(fx->ev.nfields, NFIELDS);
	for (i = 0; i < NFIELDS; i++)
		assert_string_equal(fx->ev.schema->row_fields[i].column, names[i]);
	assert_string_not_equal(fx->ev.schema->row_fields[F_ODD].name, "odd name");
	assert_string_not_equal(fx->ev.schema->row_fields[F_BODY].name, "the body");
}

static void
test_insert_values(void **state)
{
	fx_t             *fx = *state;
	const xr_eval_t *a;
	int               i;

	register_value_schema(fx);
	encode(fx, XR_OP_INSERT, NULL, full_row);
	decode(fx);
	a = fx->ev.after;
	assert_text(fx, &a[F_ID], V_ID);
	assert_text(fx, &a[F_NOTE], V_NOTE);
	assert_text(fx, &a[F_AMOUNT], V_AMOUNT);
	assert_text(fx, &a[F_CREATED], V_CREATED);
	assert_text(fx, &a[F_TAGS], V_TAGS);
	assert_text(fx, &a[F_BLOB], V_BLOB);
	assert_text(fx, &a[F_BODY], V_BODY);
	assert_text(fx, &a[F_ODD], V_ODD);
	for (i = 0; i < NFIELDS; i++)
		assert_false(fx->ev.before[i].present);
}

/* Edge values come back as PostgreSQL printed them. */
static void
test_edge_values(void **state)
{
	fx_t          *fx = *state;
	xr_pgo_datum_t row[NCOLS];

	memcpy(row, full_row, sizeof(row));
	row[C_ID] = (xr_pgo_datum_t)T("-9223372036854775808");
	row[C_AMOUNT] = (xr_pgo_datum_t)T("-0.01");
	row[C_CREATED] = (xr_pgo_datum_t)T("infinity");
	row[C_TAGS] = (xr_pgo_datum_t)T("{}");
	row[C_BLOB] = (xr_pgo_datum_t)T("\\x");
	register_value_schema(fx);
	encode(fx, XR_OP_INSERT, NULL, row);
	decode(fx);
	assert_text(fx, &fx->ev.after[F_ID], "-9223372036854775808");
	assert_text(fx, &fx->ev.after[F_AMOUNT], "-0.01");
	assert_text(fx, &fx->ev.after[F_CREATED], "infinity");
	assert_text(fx, &fx->ev.after[F_TAGS], "{}");
	assert_text(fx, &fx->ev.after[F_BLOB], "\\x");
}

/*
 * The branches the other round trips leave out, written directly as avro-c
 * would write them (encode_rel compares): an origin, no tx_index, a
 * decimal's string branch, an array's string branch (two dimensions, or a
 * lower bound other than 1) and an array of NULL elements.
 */
static void
test_direct_encoding_branches(void **state)
{
	fx_t          *fx = *state;
	xr_pgo_datum_t row[NCOLS];
	xr_pgo_tuple_t a = { NCOLS, row };
	xr_source_t    s = src;
	static const char *const tags[] = {
		"{{a,b},{c,d}}", "[0:1]={x,y}", "{NULL,NULL}", "{\"\"}",
	};
	size_t         i;

	s.origin = "eu";
	s.tx_index = -1;
	register_value_schema(fx);
	memcpy(row, full_row, sizeof(row));
	row[C_AMOUNT] = (xr_pgo_datum_t)T("NaN");
	for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		row[C_TAGS] = (xr_pgo_datum_t){ XR_PGO_COL_TEXT, tags[i],
		                                strlen(tags[i]) };
		encode_rel(fx, fx->rel, XR_OP_UPDATE, NULL, &a, &s);
		decode(fx);
		assert_string_equal(fx->ev.region, "eu");
		assert_string_equal(fx->ev.source_region, "us");
		assert_text(fx, &fx->ev.after[F_TAGS], tags[i]);
		assert_text(fx, &fx->ev.after[F_AMOUNT], "NaN");
	}
}

/* A timestamptz before the year 1: the " BC" suffix survives. */
static void
test_timestamptz_bc(void **state)
{
	fx_t          *fx = *state;
	xr_pgo_datum_t row[NCOLS];

	memcpy(row, full_row, sizeof(row));
	row[C_CREATED] = (xr_pgo_datum_t)T("0044-03-15 12:00:00.5+00 BC");
	register_value_schema(fx);
	encode(fx, XR_OP_INSERT, NULL, row);
	decode(fx);
	assert_text(fx, &fx->ev.after[F_CREATED], "0044-03-15 12:00:00.5+00 BC");
}

static void
test_insert_nulls(void **state)
{
	fx_t          *fx = *state;
	xr_pgo_datum_t row[NCOLS] = {
		T(V_ID), NUL_, NUL_, NUL_, NUL_, NUL_, NUL_, NUL_, NUL_,
	};
	int            i;

	register_value_schema(fx);
	encode(fx, XR_OP_INSERT, NULL, row);
	decode(fx);
	assert_text(fx, &fx->ev.after[F_ID], V_ID);
	for (i = F_ID + 1; i < NFIELDS; i++) {
		assert_null_value(fx, &fx->ev.after[i]);
		assert_false(fx->ev.after[i].unchanged);
	}
}

/* An empty string is a value, not NULL. */
static void
test_empty_string_is_not_null(void **state)
{
	fx_t          *fx = *state;
	xr_pgo_datum_t row[NCOLS];

	memcpy(row, full_row, sizeof(row));
	row[C_NOTE] = (xr_pgo_datum_t)T("");
	register_value_schema(fx);
	encode(fx, XR_OP_INSERT, NULL, row);
	decode(fx);
	assert_text(fx, &fx->ev.after[F_NOTE], "");
}

static void
test_update_without_old_tuple(void **state)
{
	fx_t          *fx = *state;
	xr_pgo_datum_t row[NCOLS];

	memcpy(row, full_row, sizeof(row));
	row[C_NOTE] = (xr_pgo_datum_t)T("changed");
	register_value_schema(fx);
	encode(fx, XR_OP_UPDATE, NULL, row);
	decode(fx);
	assert_int_equal(fx->ev.op, XR_OP_UPDATE);
	assert_false(fx->ev.has_before);
	assert_true(fx->ev.has_after);
	assert_false(fx->ev.before[F_ID].present);
	assert_text(fx, &fx->ev.after[F_ID], V_ID);
	assert_text(fx, &fx->ev.after[F_NOTE], "changed");
	assert_text(fx, &fx->ev.after[F_AMOUNT], V_AMOUNT);
}

/* A key change: the old tuple ('K') holds the old key, other columns null. */
static void
test_update_with_old_key(void **state)
{
	fx_t          *fx = *state;
	xr_pgo_datum_t old[NCOLS] = {
		T("41"), NUL_, NUL_, NUL_, NUL_, NUL_, NUL_, NUL_, NUL_,
	};
	int            i;

	register_value_schema(fx);
	encode(fx, XR_OP_UPDATE, old, full_row);
	decode(fx);
	assert_int_equal(fx->ev.op, XR_OP_UPDATE);
	assert_true(fx->ev.has_before);
	assert_true(fx->ev.has_after);
	assert_text(fx, &fx->ev.before[F_ID], "41");
	for (i = F_ID + 1; i < NFIELDS; i++)
		assert_null_value(fx, &fx->ev.before[i]);
	assert_text(fx, &fx->ev.after[F_ID], V_ID);
	assert_text(fx, &fx->ev.after[F_TAGS], V_TAGS);
}

/*
 * An unchanged TOASTed column ('u') is flagged, with no made-up value; the
 * flag finds its field by PostgreSQL name ("the body" is mangled in Avro).
 */
static void
test_update_unchanged_toast(void **state)
{
	fx_t          *fx = *state;
	xr_pgo_datum_t row[NCOLS];
	int            i;

	memcpy(row, full_row, sizeof(row));
	row[C_BODY] = (xr_pgo_datum_t)UNCH;
	row[C_TAGS] = (xr_pgo_datum_t)UNCH;
	register_value_schema(fx);
	encode(fx, XR_OP_UPDATE, NULL, row);
	decode(fx);
	for (i = 0; i < NFIELDS; i++) {
		bool unch = i == F_BODY || i == F_TAGS;

		assert_int_equal(fx->ev.after[i].unchanged, unch);
		assert_false(fx->ev.before[i].unchanged);
		if (unch)
			assert_null_value(fx, &fx->ev.after[i]);
	}
	assert_text(fx, &fx->ev.after[F_NOTE], V_NOTE);
}

static void
test_delete(void **state)
{
	fx_t *fx = *state;
	int   i;

	register_value_schema(fx);
	encode(fx, XR_OP_DELETE, full_row, NULL);
	decode(fx);
	assert_int_equal(fx->ev.op, XR_OP_DELETE);
	assert_true(fx->ev.has_before);
	assert_false(fx->ev.has_after);
	assert_text(fx, &fx->ev.before[F_ID], V_ID);
	assert_text(fx, &fx->ev.before[F_AMOUNT], V_AMOUNT);
	assert_text(fx, &fx->ev.before[F_BLOB], V_BLOB);
	for (i = 0; i < NFIELDS; i++)
		assert_false(fx->ev.after[i].present);
}

static void
test_truncate(void **state)
{
	fx_t *fx = *state;
	int   i;

	register_value_schema(fx);
	encode(fx, XR_OP_TRUNCATE, NULL, NULL);
	assert_int_equal(fx->key.len, 0);
	decode(fx);
	assert_int_equal(fx->ev.op, XR_OP_TRUNCATE);
	assert_false(fx->ev.has_before);
	assert_false(fx->ev.has_after);
	assert_string_equal(fx->ev.relname, "orders");
	assert_string_equal(fx->ev.event_id, fx->event_id);
	assert_int_equal(fx->ev.nfields, NFIELDS);
	for (i = 0; i < NFIELDS; i++) {
		assert_false(fx->ev.before[i].present);
		assert_false(fx->ev.after[i].present);
	}
}

/* One xr_event_t decodes many events: nothing of the last one stays. */
static void
test_event_reused(void **state)
{
	fx_t *fx = *state;
	int   i;

	register_value_schema(fx);
	encode(fx, XR_OP_INSERT, NULL, full_row);
	decode(fx);
	encode(fx, XR_OP_DELETE, full_row, NULL);
	decode(fx);
	assert_int_equal(fx->ev.op, XR_OP_DELETE);
	assert_false(fx->ev.has_after);
	for (i = 0; i < NFIELDS; i++)
		assert_false(fx->ev.after[i].present);
	assert_text(fx, &fx->ev.before[F_NOTE], V_NOTE);
}

/* Without an xr-schema header the fingerprint alone finds the schema. */
static void
test_decode_by_fingerprint_alone(void **state)
{
	fx_t *fx = *state;

	register_value_schema(fx);
	encode(fx, XR_OP_INSERT, NULL, full_row);
	assert_int_equal(xr_event_decode(&fx->ev, fx->reg, fx->value.data,
	                                 fx->value.len, NULL, fx->err,
	                                 sizeof(fx->err)), 0);
	assert_text(fx, &fx->ev.after[F_AMOUNT], V_AMOUNT);
}

/*
 * numeric(12,2) and numeric(12,4) share a fingerprint; the xr-schema id
 * picks the writer schema, hence the scale the digits are read with.
 */
static void
test_schema_id_picks_writer_schema(void **state)
{
	fx_t           *fx = *state;
	xr_pgo_relcol_t cols[NCOLS];
	xr_rel_t       *rel4;
	xr_pgo_datum_t  row[NCOLS];
	char            id2[XR_SCHEMA_ID_LEN + 1];  /* numeric(12,2)'s */
	uint64_t        fp2;

	register_value_schema(fx);            /* numeric(12,2), first */
	strcpy(id2, fx->rel->value_schema_id);
	fp2 = fx->rel->value_schema->fingerprint;
	memcpy(cols, relcols, sizeof(cols));
	cols[C_AMOUNT].typmod = NUMTM(12, 4);
	rel4 = describe(fx, RELID, "orders", cols, NCOLS);
	fx->rel = rel4;
	assert_int_equal(rel4->value_schema->fingerprint, fp2);
	assert_string_not_equal(rel4->value_schema_id, id2);
	register_value_schema(fx);            /* numeric(12,4) */
	assert_int_equal(xr_registry_size(fx->reg), 2);

	memcpy(row, full_row, sizeof(row));
	row[C_AMOUNT] = (xr_pgo_datum_t)T("1.2345");
	encode(fx, XR_OP_INSERT, NULL, row);
	decode(fx);
	assert_text(fx, &fx->ev.after[F_AMOUNT], "1.2345");
}

/* ---- errors ------------------------------------------------------------ */

static void
test_not_single_object_encoded(void **state)
{
	fx_t                *fx = *state;
	static const char    json[] = "{\"op\":\"insert\"}";
	static const uint8_t short_msg[] = { 0xC3, 0x01, 0, 0, 0 };

	register_value_schema(fx);
	fx->err[0] = '\0';
	assert_int_equal(xr_event_decode(&fx->ev, fx->reg, json, sizeof(json) - 1,
	                                 NULL, fx->err, sizeof(fx->err)), -1);
	assert_true(fx->err[0] != '\0');
	fx->err[0] = '\0';
	assert_int_equal(xr_event_decode(&fx->ev, fx->reg, short_msg,
	                                 sizeof(short_msg), NULL, fx->err,
	                                 sizeof(fx->err)), -1);
	assert_true(fx->err[0] != '\0');
}

static double
now_s(void)
{
	struct timespec ts;

	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * A fingerprint the registry does not know makes it read the schemas topic;
 * Kafka is unreachable: -2 (try again later), and within bounded time.
 */
static void
test_unknown_schema_kafka_unreachable_is_transient(void **state)
{
	fx_t  *fx = *state;
	double t0;
	int    rc;

	encode(fx, XR_OP_INSERT, NULL, full_row);
	fx->err[0] = '\0';
	t0 = now_s();
	rc = xr_event_decode(&fx->ev, fx->reg, fx->value.data, fx->value.len,
	                     fx->rel->value_schema_id, fx->err, sizeof(fx->err));
	assert_int_equal(rc, -2);
	assert_true(now_s() - t0 < 30.0);
	assert_non_null(strstr(fx->err, conf->schemas_topic));
}

/*
 * The datum ends inside the after image: the last column ("odd name", an
 * int after its union branch) and the unchanged array are cut off.  The cut
 * avoids strings and bytes: avro-c 1.11.1 leaks the buffer of a string or
 * bytes value that ends early, which LeakSanitizer would report here.
 */
static void
test_truncated_datum(void **state)
{
	fx_t *fx = *state;

	register_value_schema(fx);
	encode(fx, XR_OP_INSERT, NULL, full_row);
	assert_true(fx->value.len > XR_AVRO_SO_HEADER_LEN + 3);
	/*
	 * ... 02 (branch int) 53 (-42) 00 (no unchanged columns) 00 (no vclock)
	 * 02 0a (tx_index 5)
	 */
	assert_memory_equal(fx->value.data + fx->value.len - 6,
	                    "\x02\x53\x00\x00\x02\x0a", 6);
	fx->err[0] = '\0';
	assert_int_equal(xr_event_decode(&fx->ev, fx->reg, fx->value.data,
	                                 fx->value.len - 3,
	                                 fx->rel->value_schema_id, fx->err,
	                                 sizeof(fx->err)), -1);
	assert_true(fx->err[0] != '\0');
}

static void
test_trailing_bytes(void **state)
{
	fx_t *fx = *state;

	register_value_schema(fx);
	encode(fx, XR_OP_DELETE, full_row, NULL);
	xr_buf_putc(&fx->value, '\0');
	fx->err[0] = '\0';
	assert_int_equal(xr_event_decode(&fx->ev, fx->reg, fx->value.data,
	                                 fx->value.len,
	                                 fx->rel->value_schema_id, fx->err,
	                                 sizeof(fx->err)), -1);
	assert_true(fx->err[0] != '\0');
}

/* An event key (xregion.Key) is a schema, but not a change event. */
static void
test_key_schema_is_not_an_envelope(void **state)
{
	fx_t *fx = *state;

	assert_int_equal(xr_registry_add_json(fx->reg, fx->rel->key_schema_id,
	                                      fx->rel->key_schema->json.data,
	                                      fx->rel->key_schema->json.len,
	                                      fx->err, sizeof(fx->err)), 0);
	encode(fx, XR_OP_INSERT, NULL, full_row);
	fx->err[0] = '\0';
	assert_int_equal(xr_event_decode(&fx->ev, fx->reg, fx->key.data,
	                                 fx->key.len, fx->rel->key_schema_id,
	                                 fx->err, sizeof(fx->err)), -1);
	assert_non_null(strstr(fx->err, "not an xregion change event"));
}

/* Any other record on the schemas topic is not a change event either. */
static void
test_foreign_schema_is_not_an_envelope(void **state)
{
	static const char json[] =
		"{\"type\":\"record\",\"name\":\"acme.Other\",\"fields\":"
		"[{\"name\":\"a\",\"type\":\"long\"}]}";
	fx_t        *fx = *state;
	xr_schema_t *s;
	avro_value_t v, f;
	xr_buf_t     msg;

	assert_int_equal(xr_schema_from_json(json, sizeof(json) - 1, &s, fx->err,
	                                     sizeof(fx->err)), 0);
	assert_int_equal(avro_generic_value_new(s->iface, &v), 0);
	assert_int_equal(avro_value_get_by_index(&v, 0, &f, NULL), 0);
	assert_int_equal(avro_value_set_long(&f, 7), 0);
	xr_buf_init(&msg);
	assert_int_equal(xr_avro_encode(s, &v, &msg, fx->err, sizeof(fx->err)), 0);
	avro_value_decref(&v);
	assert_int_equal(xr_registry_add_json(fx->reg, "other", json,
	                                      sizeof(json) - 1, fx->err,
	                                      sizeof(fx->err)), 0);
	fx->err[0] = '\0';
	assert_int_equal(xr_event_decode(&fx->ev, fx->reg, msg.data, msg.len,
	                                 "other", fx->err, sizeof(fx->err)), -1);
	assert_non_null(strstr(fx->err, "not an xregion change event"));
	xr_buf_term(&msg);
	xr_schema_destroy(s);
}

/* ---- xr_registry_add_json ---------------------------------------------- */

static void
test_registry_add_json_rejects_non_schema(void **state)
{
	static const char json[] = "{\"type\":\"nonsense\"}";
	fx_t *fx = *state;

	fx->err[0] = '\0';
	assert_int_equal(xr_registry_add_json(fx->reg, "x", json,
	                                      sizeof(json) - 1, fx->err,
	                                      sizeof(fx->err)), -1);
	assert_true(fx->err[0] != '\0');
	assert_int_equal(xr_registry_size(fx->reg), 0);
}

/* As on the compacted topic, a key already known keeps its first schema. */
static void
test_registry_add_json_keeps_first_of_an_id(void **state)
{
	fx_t *fx = *state;

	register_value_schema(fx);
	assert_int_equal(xr_registry_add_json(fx->reg, fx->rel->value_schema_id,
	                                      fx->rel->key_schema->json.data,
	                                      fx->rel->key_schema->json.len,
	                                      fx->err, sizeof(fx->err)), 0);
	assert_int_equal(xr_registry_size(fx->reg), 1);
	encode(fx, XR_OP_INSERT, NULL, full_row);
	decode(fx);
	assert_true(fx->ev.schema->is_envelope);
}

/* Reads a whole file of the source tree (free it). */
static char *
read_source_file(const char *rel, size_t *len)
{
	char path[1024];

	assert_true(snprintf(path, sizeof(path), "%s/%s", XR_SOURCE_DIR, rel) <
	            (int)sizeof(path));
	return xr_test_read_file(path, len);
}

/*
 * fuzz_event's first finding: an event whose writer schema's Row has no
 * fields (schemas/envelope.avsc; a table with every column excluded) on a
 * fresh xr_event_t, whose arrays were never allocated, passed NULL to
 * memset (undefined, reported by UBSan).  The input is the fuzzer's:
 * framing byte 0x0a (single-object, the second schema), then the datum.
 */
static void
test_fuzz_empty_row_schema(void **state)
{
	fx_t          *fx = *state;
	const uint8_t *in;
	char          *json, *raw;
	xr_schema_t   *s;
	xr_buf_t       msg;
	size_t         jlen, rlen;
	int            i;

	json = read_source_file("schemas/envelope.avsc", &jlen);
	assert_int_equal(xr_schema_from_json(json, jlen, &s, fx->err,
	                                     sizeof(fx->err)), 0);
	assert_int_equal(s->n_row_fields, 0);
	assert_int_equal(xr_registry_add_json(fx->reg, "envelope", json, jlen,
	                                      fx->err, sizeof(fx->err)), 0);
	raw = read_source_file("tests/fuzz/regressions/event/"
	                       "empty-row-memset-null", &rlen);
	in = (const uint8_t *)raw;
	assert_true(rlen > 1);
	assert_int_equal(in[0], 0x0a);

	xr_buf_init(&msg);
	xr_buf_putc(&msg, (char)XR_AVRO_SO_MAGIC0);
	xr_buf_putc(&msg, (char)XR_AVRO_SO_MAGIC1);
	for (i = 0; i < 8; i++)
		xr_buf_putc(&msg, (char)(s->fingerprint >> (8 * i)));
	xr_buf_append(&msg, in + 1, rlen - 1);

	assert_int_equal(xr_event_decode(&fx->ev, fx->reg, msg.data, msg.len,
	                                 NULL, fx->err, sizeof(fx->err)), -1);
	assert_int_equal(fx->ev.nfields, 0);
	assert_non_null(strstr(fx->err, "cannot decode Avro datum"));

	xr_buf_term(&msg);
	free(raw);
	free(json);
	xr_schema_destroy(s);
}

/*
 * fuzz_event's input that made a reused avro-c value leak (arrays and maps
 * read into a value that an earlier datum had filled): a Confluent-framed
 * all_types event, decoded twice through avro-c.  What it checks is the
 * absence of a leak, which the unit tests' ASan/UBSan build reports.
 */
static void
test_fuzz_reused_value_leak(void **state)
{
	fx_t   *fx = *state;
	char   *json, *raw;
	size_t  jlen, rlen;
	int     k;

	json = read_source_file("tests/common/data/all_types.value.avsc", &jlen);
	assert_int_equal(xr_registry_add_json(fx->reg, "sr:1", json, jlen,
	                                      fx->err, sizeof(fx->err)), 0);
	raw = read_source_file("tests/fuzz/regressions/event/reused-value-leak",
	                       &rlen);
	assert_true(rlen > 6);
	assert_int_equal(raw[0], 0);          /* fuzz_event: the bytes as they are */
	xr_event_generic_only = true;
	for (k = 0; k < 2; k++) {
		int rc;

		fx->err[0] = '\0';
		rc = xr_event_decode(&fx->ev, fx->reg, raw + 1, rlen - 1, NULL,
		                     fx->err, sizeof(fx->err));
		assert_true(rc == 0 || (rc == -1 && fx->err[0]));
	}
	xr_event_generic_only = false;
	free(raw);
	free(json);
}

/*
 * Event ids against Python's uuid.uuid5 over the same name (the values
 * below come from it), one name short and one longer than the encoder's
 * stack buffer.
 */
static void
test_event_id_is_uuid5(void **state)
{
	char        id[XR_EVENT_ID_LEN + 1], db[301];
	xr_source_t so = { 0 };

	(void)state;
	so.region = "us";
	so.database = "app";
	so.commit_lsn = 12345;
	so.change_index = 7;
	xr_event_id(&so, id);
	assert_string_equal(id, "3a94f33f-6605-5a84-ab70-c0b3acd53ea2");

	memset(db, 'd', 300);
	db[300] = '\0';
	so.region = "eu";
	so.database = db;
	so.commit_lsn = 1;
	so.read_lsn = UINT64_MAX;      /* a snapshot read: the watermark's */
	so.change_index = 0;
	xr_event_id(&so, id);
	assert_string_equal(id, "32dd6518-5d4c-5053-96f8-7c22470a7b57");
}

/*
 * A table of scalar columns only, whose events are read in place (no
 * avro-c values): every value at its edges, decoded both ways by decode(),
 * which compares them.
 */
static void
test_scalars_read_in_place(void **state)
{
	static xr_pgo_relcol_t cols[] = {
		{ true,  "id", XR_OID_INT8, -1 },   { false, "b", XR_OID_BOOL, -1 },
		{ false, "i2", XR_OID_INT2, -1 },   { false, "i4", XR_OID_INT4, -1 },
		{ false, "f4", XR_OID_FLOAT4, -1 }, { false, "f8", XR_OID_FLOAT8, -1 },
		{ false, "t", XR_OID_TEXT, -1 },    { false, "vc", XR_OID_VARCHAR, -1 },
		{ false, "d", XR_OID_DATE, -1 },    { false, "tm", XR_OID_TIME, -1 },
		{ false, "ts", XR_OID_TIMESTAMP, -1 },
		{ false, "tz", XR_OID_TIMESTAMPTZ, -1 },
		{ false, "u", XR_OID_UUID, -1 },    { false, "j", XR_OID_JSONB, -1 },
		{ false, "by", XR_OID_BYTEA, -1 },
	};
	enum { N = sizeof(cols) / sizeof(cols[0]) };
	static xr_pgo_datum_t rows[][N] = {
		{ T("-9223372036854775808"), T("t"), T("-32768"), T("2147483647"),
		  T("-1.5"), T("1e+300"), T(""), T("caf\xc3\xa9"), T("2024-02-29"),
		  T("24:00:00"), T("1999-12-31 23:59:59.999999"),
		  T("0044-03-15 12:00:00.5+00 BC"),
		  T("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), T("{\"k\": [1, null]}"),
		  T("\\x00ff") },
		{ T("0"), T("f"), T("0"), T("-2147483648"), T("NaN"), T("-Infinity"),
		  T("x"), NUL_, T("infinity"), T("00:00:00.000001"),
		  T("-infinity"), T("2024-01-02 03:04:05+00"), NUL_, NUL_, T("\\x") },
		{ T("1"), NUL_, NUL_, NUL_, NUL_, NUL_, NUL_, NUL_, NUL_, NUL_, NUL_,
		  NUL_, NUL_, NUL_, NUL_ },
	};
	fx_t           *fx = *state;
	xr_rel_t       *rel;
	size_t          r;
	unsigned long   before;

	rel = describe(fx, RELID + 1, "scalars", cols, N);
	fx->rel = rel;
	register_value_schema(fx);
	/* Each row as an insert (after image), then a delete (before image). */
	for (r = 0; r < 2 * sizeof(rows) / sizeof(rows[0]); r++) {
		xr_pgo_tuple_t a = { N, rows[r / 2] };
		bool           del = r % 2;

		encode_rel(fx, rel, del ? XR_OP_DELETE : XR_OP_INSERT,
		           del ? &a : NULL, del ? NULL : &a, &src);
		before = xr_event_in_place_count;
		decode(fx);
		assert_int_equal(xr_event_in_place_count, before + 1);
	}
	assert_string_equal(xr_event_text(&fx->ev, &fx->ev.before[0]), "1");
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_insert_metadata),
		TEST(test_fields_are_published_columns),
		TEST(test_insert_values),
		TEST(test_edge_values),
		TEST(test_direct_encoding_branches),
		TEST(test_timestamptz_bc),
		TEST(test_insert_nulls),
		TEST(test_empty_string_is_not_null),
		TEST(test_update_without_old_tuple),
		TEST(test_update_with_old_key),
		TEST(test_update_unchanged_toast),
		TEST(test_delete),
		TEST(test_truncate),
		TEST(test_event_reused),
		TEST(test_decode_by_fingerprint_alone),
		TEST(test_schema_id_picks_writer_schema),
		TEST(test_not_single_object_encoded),
		TEST(test_unknown_schema_kafka_unreachable_is_transient),
		TEST(test_truncated_datum),
		TEST(test_trailing_bytes),
		TEST(test_vclock_round_trip),
		TEST(test_key_schema_is_not_an_envelope),
		TEST(test_foreign_schema_is_not_an_envelope),
		TEST(test_registry_add_json_rejects_non_schema),
		TEST(test_registry_add_json_keeps_first_of_an_id),
		TEST(test_fuzz_empty_row_schema),
		cmocka_unit_test(test_event_id_is_uuid5),
		TEST(test_scalars_read_in_place),
		TEST(test_fuzz_reused_value_leak),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
