/*
 * test_pgoutput.c: unit tests for producer/pgoutput.c, the pgoutput
 * protocol version 1 parser.
 *
 * Fixtures are built byte by byte with a small big-endian writer, laid out
 * as PostgreSQL's proto.c writes them.  Every parse goes through an
 * exact-size heap copy of the input so that ASan reports any read past the
 * end of the message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer/pgoutput.h"

/* ---------------------------------------------------------------------- */
/* Test-side writer                                                        */
/* ---------------------------------------------------------------------- */

typedef struct {
	unsigned char b[16384];
	size_t        len;
} wr_t;

static void
w_mem(wr_t *w, const void *p, size_t n)
{
	assert_true(n <= sizeof(w->b) - w->len);
	if (n)
		memcpy(w->b + w->len, p, n);
	w->len += n;
}

static void
w_u8(wr_t *w, unsigned v)
{
	unsigned char c = (unsigned char)(v & 0xff);

	w_mem(w, &c, 1);
}

static void
w_u16(wr_t *w, unsigned v)
{
	w_u8(w, v >> 8);
	w_u8(w, v);
}

static void
w_u32(wr_t *w, uint32_t v)
{
	w_u16(w, (unsigned)(v >> 16));
	w_u16(w, (unsigned)(v & 0xffff));
}

static void
w_u64(wr_t *w, uint64_t v)
{
	w_u32(w, (uint32_t)(v >> 32));
	w_u32(w, (uint32_t)(v & 0xffffffffu));
}

/* A String: the bytes and their NUL. */
static void
w_str(wr_t *w, const char *s)
{
	w_mem(w, s, strlen(s) + 1);
}

/* TupleData columns. */
static void
w_col_text(wr_t *w, const char *s)
{
	w_u8(w, 't');
	w_u32(w, (uint32_t)strlen(s));
	w_mem(w, s, strlen(s));
}

static void
w_col_bin(wr_t *w, const void *p, size_t n)
{
	w_u8(w, 'b');
	w_u32(w, (uint32_t)n);
	w_mem(w, p, n);
}

static void
w_col_null(wr_t *w)
{
	w_u8(w, 'n');
}

static void
w_col_unchanged(wr_t *w)
{
	w_u8(w, 'u');
}

/* ---------------------------------------------------------------------- */
/* Fixtures: one valid message each                                        */
/* ---------------------------------------------------------------------- */

#define BEGIN_LSN   UINT64_C(0x0000000116B2F3A8)
#define BEGIN_TS    INT64_C(0x7FEDCBA987654321)
#define BEGIN_XID   UINT32_C(0xFFFFFFFE)
#define COMMIT_LSN  UINT64_C(0x0000000116B2F3A8)
#define COMMIT_END  UINT64_C(0x0000000116B2F400)
#define COMMIT_TS   INT64_C(-1234567)  /* before 2000: exercises the sign */
#define ORIGIN_LSN  UINT64_C(0xDEADBEEF00000001)
#define MSG_LSN     UINT64_C(0x8000000000000010)

static const unsigned char bin3[] = { 0x00, 0x01, 0xff };
static const unsigned char bin4[] = { 0x00, 0x01, 0xff, 0x00 };
static const char msg_content[] = { 'a', '\0', 'b', '\xff', 'c' };

static void
fx_begin(wr_t *w)
{
	w_u8(w, 'B');
	w_u64(w, BEGIN_LSN);
	w_u64(w, (uint64_t)BEGIN_TS);
	w_u32(w, BEGIN_XID);
}

static void
fx_commit(wr_t *w)
{
	w_u8(w, 'C');
	w_u8(w, 0);
	w_u64(w, COMMIT_LSN);
	w_u64(w, COMMIT_END);
	w_u64(w, (uint64_t)COMMIT_TS);
}

static void
fx_origin(wr_t *w)
{
	w_u8(w, 'O');
	w_u64(w, ORIGIN_LSN);
	w_str(w, "pg_remote_1");
}

/* A table with a two-column primary key, the key first and last. */
static void
fx_relation(wr_t *w)
{
	w_u8(w, 'R');
	w_u32(w, 16385);
	w_str(w, "public");
	w_str(w, "order_items");
	w_u8(w, 'i');
	w_u16(w, 4);
	w_u8(w, 1); w_str(w, "order_id"); w_u32(w, 20);   w_u32(w, 0xffffffff);
	w_u8(w, 0); w_str(w, "note");     w_u32(w, 1043); w_u32(w, 104);
	w_u8(w, 0); w_str(w, "qty");      w_u32(w, 23);   w_u32(w, 0xffffffff);
	w_u8(w, 1); w_str(w, "line_no");  w_u32(w, 23);   w_u32(w, 0xffffffff);
}

/* pg_catalog shows as an empty namespace; a table can have no columns. */
static void
fx_relation_empty(wr_t *w)
{
	w_u8(w, 'R');
	w_u32(w, 0xFFFFFF00);
	w_str(w, "");
	w_str(w, "nocols");
	w_u8(w, 'f');
	w_u16(w, 0);
}

static void
fx_type(wr_t *w)
{
	w_u8(w, 'Y');
	w_u32(w, 16390);
	w_str(w, "public");
	w_str(w, "mood");
}

static void
fx_insert(wr_t *w)
{
	w_u8(w, 'I');
	w_u32(w, 16385);
	w_u8(w, 'N');
	w_u16(w, 5);
	w_col_text(w, "42");
	w_col_null(w);
	w_col_bin(w, bin4, sizeof(bin4));
	w_col_unchanged(w);
	w_col_text(w, "");
}

static void
fx_insert_nocols(wr_t *w)
{
	w_u8(w, 'I');
	w_u32(w, 16400);
	w_u8(w, 'N');
	w_u16(w, 0);
}

static void
fx_update(wr_t *w)
{
	w_u8(w, 'U');
	w_u32(w, 16385);
	w_u8(w, 'N');
	w_u16(w, 2);
	w_col_text(w, "1");
	w_col_text(w, "new");
}

/* Key changed: the old key, non-key columns as NULL, then the new row. */
static void
fx_update_key(wr_t *w)
{
	w_u8(w, 'U');
	w_u32(w, 16385);
	w_u8(w, 'K');
	w_u16(w, 3);
	w_col_text(w, "1");
	w_col_null(w);
	w_col_null(w);
	w_u8(w, 'N');
	w_u16(w, 3);
	w_col_text(w, "2");
	w_col_text(w, "x");
	w_col_unchanged(w);
}

/* REPLICA IDENTITY FULL: the whole old row. */
static void
fx_update_old(wr_t *w)
{
	w_u8(w, 'U');
	w_u32(w, 16386);
	w_u8(w, 'O');
	w_u16(w, 2);
	w_col_text(w, "1");
	w_col_text(w, "old");
	w_u8(w, 'N');
	w_u16(w, 2);
	w_col_text(w, "1");
	w_col_unchanged(w);
}

static void
fx_update_nocols(wr_t *w)
{
	w_u8(w, 'U');
	w_u32(w, 16400);
	w_u8(w, 'O');
	w_u16(w, 0);
	w_u8(w, 'N');
	w_u16(w, 0);
}

static void
fx_delete_key(wr_t *w)
{
	w_u8(w, 'D');
	w_u32(w, 16385);
	w_u8(w, 'K');
	w_u16(w, 1);
	w_col_text(w, "7");
}

static void
fx_delete_old(wr_t *w)
{
	w_u8(w, 'D');
	w_u32(w, 16386);
	w_u8(w, 'O');
	w_u16(w, 3);
	w_col_text(w, "7");
	w_col_bin(w, bin3, sizeof(bin3));
	w_col_null(w);
}

static void
fx_truncate(wr_t *w)
{
	w_u8(w, 'T');
	w_u32(w, 3);
	w_u8(w, XR_PGO_TRUNCATE_CASCADE | XR_PGO_TRUNCATE_RESTART_IDENTITY);
	w_u32(w, 16385);
	w_u32(w, 16390);
	w_u32(w, 0xFFFFFFF0);
}

static void
fx_truncate_one(wr_t *w)
{
	w_u8(w, 'T');
	w_u32(w, 1);
	w_u8(w, 0);
	w_u32(w, 16385);
}

static void
fx_message(wr_t *w)
{
	w_u8(w, 'M');
	w_u8(w, 1);
	w_u64(w, MSG_LSN);
	w_str(w, "xregion.marker");
	w_u32(w, sizeof(msg_content));
	w_mem(w, msg_content, sizeof(msg_content));
}

static void
fx_message_empty(wr_t *w)
{
	w_u8(w, 'M');
	w_u8(w, 0);
	w_u64(w, 1);
	w_str(w, "");
	w_u32(w, 0);
}

typedef struct {
	const char *name;
	void      (*build)(wr_t *w);
} fixture_t;

static const fixture_t fixtures[] = {
	{ "begin",          fx_begin },
	{ "commit",         fx_commit },
	{ "origin",         fx_origin },
	{ "relation",       fx_relation },
	{ "relation_empty", fx_relation_empty },
	{ "type",           fx_type },
	{ "insert",         fx_insert },
	{ "insert_nocols",  fx_insert_nocols },
	{ "update",         fx_update },
	{ "update_key",     fx_update_key },
	{ "update_old",     fx_update_old },
	{ "update_nocols",  fx_update_nocols },
	{ "delete_key",     fx_delete_key },
	{ "delete_old",     fx_delete_old },
	{ "truncate",       fx_truncate },
	{ "truncate_one",   fx_truncate_one },
	{ "message",        fx_message },
	{ "message_empty",  fx_message_empty },
};
#define NFIXTURES (sizeof(fixtures) / sizeof(fixtures[0]))

static void
build(const fixture_t *fx, wr_t *w)
{
	w->len = 0;
	fx->build(w);
}

/* ---------------------------------------------------------------------- */
/* Parsing harness                                                         */
/* ---------------------------------------------------------------------- */

typedef struct {
	xr_pgo_parser_t *p;
	char            *alloc;  /* exact-size copy of the last input */
	const char      *buf;    /* what was passed to xr_pgo_parse */
	size_t           len;
	xr_pgo_msg_t     m;
	char             errstr[512];
} tctx_t;

static int
setup(void **state)
{
	tctx_t *t = calloc(1, sizeof(*t));

	if (!t)
		return -1;
	t->p = xr_pgo_parser_new();
	if (!t->p) {
		free(t);
		return -1;
	}
	*state = t;
	return 0;
}

static int
teardown(void **state)
{
	tctx_t *t = *state;

	free(t->alloc);
	xr_pgo_parser_destroy(t->p);
	free(t);
	return 0;
}

static int
in_buf(const tctx_t *t, const void *ptr, size_t n)
{
	uintptr_t b = (uintptr_t)t->buf, q = (uintptr_t)ptr;

	return q >= b && q <= b + t->len && n <= b + t->len - q;
}

static void
check_str(const tctx_t *t, const char *s)
{
	assert_non_null(s);
	assert_true(in_buf(t, s, 1));
	assert_true(in_buf(t, s, strlen(s) + 1));
}

static void
check_tuple(const tctx_t *t, const xr_pgo_tuple_t *tup)
{
	int i;

	assert_true(tup->ncols >= 0);
	assert_true(tup->ncols == 0 || tup->cols != NULL);
	for (i = 0; i < tup->ncols; i++) {
		const xr_pgo_datum_t *d = &tup->cols[i];

		switch (d->kind) {
		case XR_PGO_COL_NULL:
		case XR_PGO_COL_UNCHANGED:
			assert_null(d->data);
			assert_int_equal(d->len, 0);
			break;
		case XR_PGO_COL_TEXT:
		case XR_PGO_COL_BINARY:
			assert_non_null(d->data);
			assert_true(in_buf(t, d->data, d->len));
			break;
		default:
			fail_msg("column %d: kind 0x%02x", i, (unsigned)d->kind);
		}
	}
}

/*
 * After a successful parse, everything the message borrows must lie inside
 * the input: that is the header's promise, and what a fuzzer can check.
 */
static void
check_borrowed(const tctx_t *t)
{
	const xr_pgo_msg_t *m = &t->m;
	int i;

	switch (m->kind) {
	case XR_PGO_BEGIN:
	case XR_PGO_COMMIT:
		break;
	case XR_PGO_ORIGIN:
		check_str(t, m->u.origin.name);
		break;
	case XR_PGO_RELATION:
		check_str(t, m->u.relation.nspname);
		check_str(t, m->u.relation.relname);
		assert_true(m->u.relation.ncols >= 0);
		for (i = 0; i < m->u.relation.ncols; i++)
			check_str(t, m->u.relation.cols[i].name);
		break;
	case XR_PGO_TYPE:
		check_str(t, m->u.type.nspname);
		check_str(t, m->u.type.typname);
		break;
	case XR_PGO_INSERT:
		check_tuple(t, &m->u.insert.newtup);
		break;
	case XR_PGO_UPDATE:
		if (m->u.update.oldkind == 0)
			assert_int_equal(m->u.update.oldtup.ncols, 0);
		else
			assert_true(m->u.update.oldkind == 'K' ||
			            m->u.update.oldkind == 'O');
		check_tuple(t, &m->u.update.oldtup);
		check_tuple(t, &m->u.update.newtup);
		break;
	case XR_PGO_DELETE:
		assert_true(m->u.delete.oldkind == 'K' ||
		            m->u.delete.oldkind == 'O');
		check_tuple(t, &m->u.delete.oldtup);
		break;
	case XR_PGO_TRUNCATE:
		assert_true(m->u.truncate.nrelids == 0 ||
		            m->u.truncate.relids != NULL);
		assert_true((size_t)m->u.truncate.nrelids * 4 <= t->len);
		break;
	case XR_PGO_MESSAGE:
		check_str(t, m->u.message.prefix);
		assert_true(in_buf(t, m->u.message.content, m->u.message.len));
		break;
	default:
		fail_msg("parsed an unknown kind 0x%02x", (unsigned)m->kind);
	}
}

/*
 * Parses len bytes through an exact-size heap copy.  An empty input is
 * passed as a pointer one past a 1-byte allocation, so even reading the
 * type byte would be an ASan error.  Returns what xr_pgo_parse returned,
 * after checking that it is 0 or -1 and, on -1, that errstr says something.
 */
static int
parse(tctx_t *t, const void *bytes, size_t len)
{
	int rc;

	free(t->alloc);
	t->alloc = malloc(len ? len : 1);
	assert_non_null(t->alloc);
	if (len) {
		memcpy(t->alloc, bytes, len);
		t->buf = t->alloc;
	} else {
		t->buf = t->alloc + 1;
	}
	t->len = len;
	strcpy(t->errstr, "(unset)");

	rc = xr_pgo_parse(t->p, t->buf, len, &t->m, t->errstr,
	                  sizeof(t->errstr));
	if (rc == 0)
		check_borrowed(t);
	else if (rc == -1)
		assert_int_equal(strncmp(t->errstr, "pgoutput: ", 10), 0);
	else
		fail_msg("xr_pgo_parse returned %d", rc);
	return rc;
}

static void
parse_ok(tctx_t *t, const wr_t *w)
{
	if (parse(t, w->b, w->len) != 0)
		fail_msg("unexpected parse error: %s", t->errstr);
}

/* Expects -1 with an errstr containing want. */
static void
parse_err(tctx_t *t, const wr_t *w, const char *want)
{
	if (parse(t, w->b, w->len) != -1)
		fail_msg("parsed a malformed message (expected \"%s\")", want);
	if (!strstr(t->errstr, want))
		fail_msg("errstr \"%s\" lacks \"%s\"", t->errstr, want);
}

static void
assert_datum(const xr_pgo_datum_t *d, xr_pgo_colkind_t kind,
             const void *data, size_t len)
{
	assert_int_equal(d->kind, kind);
	if (kind == XR_PGO_COL_TEXT || kind == XR_PGO_COL_BINARY) {
		assert_non_null(d->data);
		assert_int_equal(d->len, len);
		if (len)
			assert_memory_equal(d->data, data, len);
	} else {
		assert_null(d->data);
		assert_int_equal(d->len, 0);
	}
}

#define TXT(s) (s), strlen(s)

/* ---------------------------------------------------------------------- */
/* Valid messages: every field                                             */
/* ---------------------------------------------------------------------- */

static void
test_begin(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_begin(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_BEGIN);
	assert_true(t->m.u.begin.final_lsn == BEGIN_LSN);
	assert_true(t->m.u.begin.commit_ts == BEGIN_TS);
	assert_true(t->m.u.begin.xid == BEGIN_XID);
}

static void
test_commit(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_commit(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_COMMIT);
	assert_int_equal(t->m.u.commit.flags, 0);
	assert_true(t->m.u.commit.commit_lsn == COMMIT_LSN);
	assert_true(t->m.u.commit.end_lsn == COMMIT_END);
	assert_true(t->m.u.commit.commit_ts == COMMIT_TS);
}

static void
test_origin(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_origin(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_ORIGIN);
	assert_true(t->m.u.origin.commit_lsn == ORIGIN_LSN);
	assert_string_equal(t->m.u.origin.name, "pg_remote_1");
}

static void
test_relation_composite_key(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };
	const xr_pgo_relcol_t *c;

	fx_relation(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_RELATION);
	assert_int_equal(t->m.u.relation.relid, 16385);
	assert_string_equal(t->m.u.relation.nspname, "public");
	assert_string_equal(t->m.u.relation.relname, "order_items");
	assert_int_equal(t->m.u.relation.replident, 'i');
	assert_int_equal(t->m.u.relation.ncols, 4);
	c = t->m.u.relation.cols;
	assert_true(c[0].is_key);
	assert_string_equal(c[0].name, "order_id");
	assert_int_equal(c[0].typid, 20);
	assert_int_equal(c[0].typmod, -1);
	assert_false(c[1].is_key);
	assert_string_equal(c[1].name, "note");
	assert_int_equal(c[1].typid, 1043);
	assert_int_equal(c[1].typmod, 104);
	assert_false(c[2].is_key);
	assert_string_equal(c[2].name, "qty");
	assert_int_equal(c[2].typid, 23);
	assert_int_equal(c[2].typmod, -1);
	assert_true(c[3].is_key);
	assert_string_equal(c[3].name, "line_no");
	assert_int_equal(c[3].typid, 23);
	assert_int_equal(c[3].typmod, -1);
}

static void
test_relation_empty(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_relation_empty(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_RELATION);
	assert_true(t->m.u.relation.relid == UINT32_C(0xFFFFFF00));
	assert_string_equal(t->m.u.relation.nspname, "");
	assert_string_equal(t->m.u.relation.relname, "nocols");
	assert_int_equal(t->m.u.relation.replident, 'f');
	assert_int_equal(t->m.u.relation.ncols, 0);
}

static void
test_type(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_type(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_TYPE);
	assert_int_equal(t->m.u.type.typid, 16390);
	assert_string_equal(t->m.u.type.nspname, "public");
	assert_string_equal(t->m.u.type.typname, "mood");
}

static void
test_insert_all_column_kinds(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };
	const xr_pgo_datum_t *c;

	fx_insert(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_INSERT);
	assert_int_equal(t->m.u.insert.relid, 16385);
	assert_int_equal(t->m.u.insert.newtup.ncols, 5);
	c = t->m.u.insert.newtup.cols;
	assert_datum(&c[0], XR_PGO_COL_TEXT, TXT("42"));
	assert_datum(&c[1], XR_PGO_COL_NULL, NULL, 0);
	assert_datum(&c[2], XR_PGO_COL_BINARY, bin4, sizeof(bin4));
	assert_datum(&c[3], XR_PGO_COL_UNCHANGED, NULL, 0);
	/* An empty text value is not NULL: data is set, len is 0. */
	assert_datum(&c[4], XR_PGO_COL_TEXT, "", 0);
}

static void
test_insert_zero_columns(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_insert_nocols(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_INSERT);
	assert_int_equal(t->m.u.insert.relid, 16400);
	assert_int_equal(t->m.u.insert.newtup.ncols, 0);
}

static void
test_update_without_old(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };
	const xr_pgo_datum_t *c;

	/* Leave an old tuple behind first: it must not leak into this one. */
	fx_update_old(&w);
	parse_ok(t, &w);

	w.len = 0;
	fx_update(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_UPDATE);
	assert_int_equal(t->m.u.update.relid, 16385);
	assert_int_equal(t->m.u.update.oldkind, 0);
	assert_int_equal(t->m.u.update.oldtup.ncols, 0);
	assert_int_equal(t->m.u.update.newtup.ncols, 2);
	c = t->m.u.update.newtup.cols;
	assert_datum(&c[0], XR_PGO_COL_TEXT, TXT("1"));
	assert_datum(&c[1], XR_PGO_COL_TEXT, TXT("new"));
}

static void
test_update_with_key(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };
	const xr_pgo_datum_t *o, *n;

	fx_update_key(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_UPDATE);
	assert_int_equal(t->m.u.update.relid, 16385);
	assert_int_equal(t->m.u.update.oldkind, 'K');
	assert_int_equal(t->m.u.update.oldtup.ncols, 3);
	assert_int_equal(t->m.u.update.newtup.ncols, 3);
	o = t->m.u.update.oldtup.cols;
	n = t->m.u.update.newtup.cols;
	assert_ptr_not_equal(o, n);
	assert_datum(&o[0], XR_PGO_COL_TEXT, TXT("1"));
	assert_datum(&o[1], XR_PGO_COL_NULL, NULL, 0);
	assert_datum(&o[2], XR_PGO_COL_NULL, NULL, 0);
	assert_datum(&n[0], XR_PGO_COL_TEXT, TXT("2"));
	assert_datum(&n[1], XR_PGO_COL_TEXT, TXT("x"));
	assert_datum(&n[2], XR_PGO_COL_UNCHANGED, NULL, 0);
}

static void
test_update_with_old_row_and_toast(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };
	const xr_pgo_datum_t *o, *n;

	fx_update_old(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_UPDATE);
	assert_int_equal(t->m.u.update.relid, 16386);
	assert_int_equal(t->m.u.update.oldkind, 'O');
	assert_int_equal(t->m.u.update.oldtup.ncols, 2);
	assert_int_equal(t->m.u.update.newtup.ncols, 2);
	o = t->m.u.update.oldtup.cols;
	n = t->m.u.update.newtup.cols;
	assert_datum(&o[0], XR_PGO_COL_TEXT, TXT("1"));
	assert_datum(&o[1], XR_PGO_COL_TEXT, TXT("old"));
	assert_datum(&n[0], XR_PGO_COL_TEXT, TXT("1"));
	assert_datum(&n[1], XR_PGO_COL_UNCHANGED, NULL, 0);
}

static void
test_update_zero_columns(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_update_nocols(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_UPDATE);
	assert_int_equal(t->m.u.update.relid, 16400);
	assert_int_equal(t->m.u.update.oldkind, 'O');
	assert_int_equal(t->m.u.update.oldtup.ncols, 0);
	assert_int_equal(t->m.u.update.newtup.ncols, 0);
}

static void
test_delete_with_key(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_delete_key(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_DELETE);
	assert_int_equal(t->m.u.delete.relid, 16385);
	assert_int_equal(t->m.u.delete.oldkind, 'K');
	assert_int_equal(t->m.u.delete.oldtup.ncols, 1);
	assert_datum(&t->m.u.delete.oldtup.cols[0], XR_PGO_COL_TEXT, TXT("7"));
}

static void
test_delete_with_old_row(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };
	const xr_pgo_datum_t *o;

	fx_delete_old(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_DELETE);
	assert_int_equal(t->m.u.delete.relid, 16386);
	assert_int_equal(t->m.u.delete.oldkind, 'O');
	assert_int_equal(t->m.u.delete.oldtup.ncols, 3);
	o = t->m.u.delete.oldtup.cols;
	assert_datum(&o[0], XR_PGO_COL_TEXT, TXT("7"));
	assert_datum(&o[1], XR_PGO_COL_BINARY, bin3, sizeof(bin3));
	assert_datum(&o[2], XR_PGO_COL_NULL, NULL, 0);
}

static void
test_truncate_several(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_truncate(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_TRUNCATE);
	assert_int_equal(t->m.u.truncate.options,
	                 XR_PGO_TRUNCATE_CASCADE |
	                 XR_PGO_TRUNCATE_RESTART_IDENTITY);
	assert_int_equal(t->m.u.truncate.nrelids, 3);
	assert_int_equal(t->m.u.truncate.relids[0], 16385);
	assert_int_equal(t->m.u.truncate.relids[1], 16390);
	assert_true(t->m.u.truncate.relids[2] == UINT32_C(0xFFFFFFF0));
}

static void
test_truncate_one_no_options(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_truncate_one(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_TRUNCATE);
	assert_int_equal(t->m.u.truncate.options, 0);
	assert_int_equal(t->m.u.truncate.nrelids, 1);
	assert_int_equal(t->m.u.truncate.relids[0], 16385);
}

static void
test_message(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_message(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_MESSAGE);
	assert_int_equal(t->m.u.message.flags, 1);
	assert_true(t->m.u.message.lsn == MSG_LSN);
	assert_string_equal(t->m.u.message.prefix, "xregion.marker");
	assert_int_equal(t->m.u.message.len, sizeof(msg_content));
	assert_memory_equal(t->m.u.message.content, msg_content,
	                    sizeof(msg_content));
}

static void
test_message_empty(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	fx_message_empty(&w);
	parse_ok(t, &w);
	assert_int_equal(t->m.kind, XR_PGO_MESSAGE);
	assert_int_equal(t->m.u.message.flags, 0);
	assert_true(t->m.u.message.lsn == 1);
	assert_string_equal(t->m.u.message.prefix, "");
	assert_int_equal(t->m.u.message.len, 0);
	assert_non_null(t->m.u.message.content);
}

/* Builds an Insert of ncols text columns "c<i>". */
static void
build_wide_insert(wr_t *w, int ncols)
{
	char v[16];
	int i;

	w->len = 0;
	w_u8(w, 'I');
	w_u32(w, 1);
	w_u8(w, 'N');
	w_u16(w, (unsigned)ncols);
	for (i = 0; i < ncols; i++) {
		snprintf(v, sizeof(v), "c%d", i);
		w_col_text(w, v);
	}
}

static void
check_wide_insert(const tctx_t *t, int ncols)
{
	char v[16];
	int i;

	assert_int_equal(t->m.u.insert.newtup.ncols, ncols);
	for (i = 0; i < ncols; i++) {
		snprintf(v, sizeof(v), "c%d", i);
		assert_datum(&t->m.u.insert.newtup.cols[i], XR_PGO_COL_TEXT,
		             TXT(v));
	}
}

/*
 * The scratch arrays grow to the widest message seen and stay there: after
 * that, narrower and equally wide messages reuse the same memory.
 */
static void
test_scratch_grows_and_is_reused(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };
	const xr_pgo_datum_t *wide;

	build_wide_insert(&w, 2);
	parse_ok(t, &w);
	check_wide_insert(t, 2);

	build_wide_insert(&w, 1000);
	parse_ok(t, &w);
	check_wide_insert(t, 1000);
	wide = t->m.u.insert.newtup.cols;

	build_wide_insert(&w, 3);
	parse_ok(t, &w);
	check_wide_insert(t, 3);
	assert_ptr_equal(t->m.u.insert.newtup.cols, wide);

	build_wide_insert(&w, 1000);
	parse_ok(t, &w);
	check_wide_insert(t, 1000);
	assert_ptr_equal(t->m.u.insert.newtup.cols, wide);
}

/* ---------------------------------------------------------------------- */
/* Malformed messages                                                      */
/* ---------------------------------------------------------------------- */

static void
test_every_truncation_fails(void **state)
{
	tctx_t *t = *state;
	wr_t w;
	size_t f, l;

	for (f = 0; f < NFIXTURES; f++) {
		build(&fixtures[f], &w);
		for (l = 0; l < w.len; l++) {
			if (parse(t, w.b, l) != -1)
				fail_msg("%s: prefix of %zu of %zu bytes parsed",
				         fixtures[f].name, l, w.len);
		}
		/* And the whole fixture still parses. */
		parse_ok(t, &w);
	}
}

static void
test_trailing_bytes_fail(void **state)
{
	tctx_t *t = *state;
	wr_t w;
	size_t f;

	for (f = 0; f < NFIXTURES; f++) {
		build(&fixtures[f], &w);
		w_u8(&w, 0);
		parse_err(t, &w, "1 trailing bytes");
		w_mem(&w, "NNNN", 4);
		parse_err(t, &w, "5 trailing bytes");
	}
}

static void
test_wrong_tuple_markers(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	/* Insert carries only a new tuple. */
	w_u8(&w, 'I'); w_u32(&w, 1); w_u8(&w, 'K');
	w_u16(&w, 1); w_col_null(&w);
	parse_err(t, &w, "pgoutput: Insert: expected new tuple marker 'N'");

	w.len = 0;
	w_u8(&w, 'U'); w_u32(&w, 1); w_u8(&w, 'X');
	w_u16(&w, 1); w_col_null(&w);
	parse_err(t, &w, "pgoutput: Update: expected tuple marker 'K', 'O' "
	          "or 'N', got 0x58");

	/* After the old tuple, only 'N' may follow. */
	w.len = 0;
	w_u8(&w, 'U'); w_u32(&w, 1);
	w_u8(&w, 'K'); w_u16(&w, 1); w_col_null(&w);
	w_u8(&w, 'O'); w_u16(&w, 1); w_col_null(&w);
	parse_err(t, &w, "expected new tuple marker 'N' after old tuple");

	/* Delete has no new tuple. */
	w.len = 0;
	w_u8(&w, 'D'); w_u32(&w, 1); w_u8(&w, 'N');
	w_u16(&w, 1); w_col_null(&w);
	parse_err(t, &w, "pgoutput: Delete: expected tuple marker 'K' or 'O'");
}

static void
test_unknown_column_kind(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	w_u8(&w, 'I'); w_u32(&w, 1); w_u8(&w, 'N');
	w_u16(&w, 2); w_col_text(&w, "a"); w_u8(&w, 'x');
	parse_err(t, &w, "pgoutput: Insert: new tuple: column 2: unknown "
	          "column kind 0x78");

	w.len = 0;
	w_u8(&w, 'D'); w_u32(&w, 1); w_u8(&w, 'O');
	w_u16(&w, 1); w_u8(&w, 0);
	parse_err(t, &w, "pgoutput: Delete: old tuple: column 1: unknown "
	          "column kind 0x00");
}

static void
test_string_without_nul(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	w_u8(&w, 'O'); w_u64(&w, 1); w_mem(&w, "abc", 3);
	parse_err(t, &w, "pgoutput: Origin: name: no string terminator in the "
	          "remaining 3 bytes");

	w.len = 0;
	w_u8(&w, 'R'); w_u32(&w, 1); w_str(&w, "public");
	w_mem(&w, "order_items", 11);
	parse_err(t, &w, "pgoutput: Relation: relname: no string terminator");

	w.len = 0;
	w_u8(&w, 'Y'); w_u32(&w, 1); w_mem(&w, "public", 6);
	parse_err(t, &w, "pgoutput: Type: nspname: no string terminator");

	w.len = 0;
	w_u8(&w, 'M'); w_u8(&w, 0); w_u64(&w, 1); w_mem(&w, "pfx", 3);
	parse_err(t, &w, "pgoutput: Message: prefix: no string terminator");

	/* Column name running into the end of the message. */
	w.len = 0;
	w_u8(&w, 'R'); w_u32(&w, 1); w_str(&w, "s"); w_str(&w, "t");
	w_u8(&w, 'd'); w_u16(&w, 1); w_u8(&w, 0); w_mem(&w, "abcdefghij", 10);
	parse_err(t, &w, "pgoutput: Relation: column 1: no string terminator");
}

static void
test_bad_lengths(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	/* Column 3 claims 70000 bytes; 12 follow. */
	w_u8(&w, 'I'); w_u32(&w, 1); w_u8(&w, 'N'); w_u16(&w, 3);
	w_col_text(&w, "a"); w_col_null(&w);
	w_u8(&w, 't'); w_u32(&w, 70000); w_mem(&w, "0123456789ab", 12);
	parse_err(t, &w, "pgoutput: Insert: new tuple: column 3: length 70000 "
	          "exceeds remaining 12 bytes");

	w.len = 0;
	w_u8(&w, 'I'); w_u32(&w, 1); w_u8(&w, 'N'); w_u16(&w, 1);
	w_u8(&w, 'b'); w_u32(&w, 0xFFFFFFFF);
	parse_err(t, &w, "pgoutput: Insert: new tuple: column 1: negative "
	          "length -1");

	w.len = 0;
	w_u8(&w, 'I'); w_u32(&w, 1); w_u8(&w, 'N'); w_u16(&w, 1);
	w_u8(&w, 't'); w_u32(&w, 0x80000000);
	parse_err(t, &w, "negative length -2147483648");

	w.len = 0;
	w_u8(&w, 'M'); w_u8(&w, 1); w_u64(&w, 1); w_str(&w, "p");
	w_u32(&w, 0x7FFFFFFF); w_mem(&w, "x", 1);
	parse_err(t, &w, "pgoutput: Message: content: length 2147483647 "
	          "exceeds remaining 1 bytes");

	w.len = 0;
	w_u8(&w, 'M'); w_u8(&w, 1); w_u64(&w, 1); w_str(&w, "p");
	w_u32(&w, 0xFFFFFFF0);
	parse_err(t, &w, "pgoutput: Message: content: negative length -16");
}

/* A garbage count must fail on the byte count, before any allocation. */
static void
test_bad_counts(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	w_u8(&w, 'I'); w_u32(&w, 1); w_u8(&w, 'N'); w_u16(&w, 32767);
	w_col_null(&w); w_col_null(&w); w_col_null(&w);
	parse_err(t, &w, "pgoutput: Insert: new tuple: ncols 32767 needs at "
	          "least 32767 bytes, 3 remain");

	/* Just one short: caught by the count, not by the last column. */
	w.len = 0;
	w_u8(&w, 'I'); w_u32(&w, 1); w_u8(&w, 'N'); w_u16(&w, 4);
	w_col_null(&w); w_col_null(&w); w_col_null(&w);
	parse_err(t, &w, "pgoutput: Insert: new tuple: ncols 4 needs at "
	          "least 4 bytes, 3 remain");

	w.len = 0;
	w_u8(&w, 'U'); w_u32(&w, 1); w_u8(&w, 'O'); w_u16(&w, 0xFFFF);
	parse_err(t, &w, "pgoutput: Update: old tuple: negative ncols -1");

	w.len = 0;
	w_u8(&w, 'R'); w_u32(&w, 1); w_str(&w, "s"); w_str(&w, "t");
	w_u8(&w, 'd'); w_u16(&w, 32767);
	w_u8(&w, 0); w_str(&w, "c"); w_u32(&w, 23); w_u32(&w, 0);
	parse_err(t, &w, "pgoutput: Relation: ncols 32767 needs at least");

	/* Each column needs at least 10 bytes: 2 columns cannot fit in 12. */
	w.len = 0;
	w_u8(&w, 'R'); w_u32(&w, 1); w_str(&w, "s"); w_str(&w, "t");
	w_u8(&w, 'd'); w_u16(&w, 2);
	w_u8(&w, 0); w_str(&w, "c"); w_u32(&w, 23); w_u32(&w, 0); w_u8(&w, 0);
	parse_err(t, &w, "pgoutput: Relation: ncols 2 needs at least 20 bytes, "
	          "12 remain");

	w.len = 0;
	w_u8(&w, 'R'); w_u32(&w, 1); w_str(&w, "s"); w_str(&w, "t");
	w_u8(&w, 'd'); w_u16(&w, 0x8000);
	parse_err(t, &w, "pgoutput: Relation: negative ncols -32768");

	w.len = 0;
	w_u8(&w, 'T'); w_u32(&w, 0xFFFFFFFF); w_u8(&w, 0); w_u32(&w, 16385);
	parse_err(t, &w, "pgoutput: Truncate: nrelids 4294967295 needs "
	          "17179869180 bytes, 4 remain");

	w.len = 0;
	w_u8(&w, 'T'); w_u32(&w, 2); w_u8(&w, 0); w_u32(&w, 16385);
	parse_err(t, &w, "pgoutput: Truncate: nrelids 2 needs 8 bytes");
}

static void
test_bad_replident(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };

	w_u8(&w, 'R'); w_u32(&w, 1); w_str(&w, "s"); w_str(&w, "t");
	w_u8(&w, 'x'); w_u16(&w, 0);
	parse_err(t, &w, "pgoutput: Relation: replident: unknown value 0x78");
}

static void
test_unknown_message_types(void **state)
{
	tctx_t *t = *state;
	static const char known[] = "BCORYIUDTM";
	wr_t w;
	char want[64];
	unsigned c;

	for (c = 0; c < 256; c++) {
		if (c != 0 && strchr(known, (int)c))
			continue;
		snprintf(want, sizeof(want),
		         "pgoutput: unknown message type 0x%02x", c);
		w.len = 0;
		w_u8(&w, c);
		parse_err(t, &w, want);
		/* With a plausible body too: e.g. a Stream Start 'S'. */
		w_u32(&w, 1234);
		w_u8(&w, 1);
		parse_err(t, &w, want);
	}
}

static void
test_empty_buffer(void **state)
{
	tctx_t *t = *state;
	wr_t w = { .len = 0 };
	xr_pgo_msg_t m;
	char errstr[128];

	parse_err(t, &w, "pgoutput: empty message");

	/* A NULL buffer with no bytes is the same empty message. */
	errstr[0] = '\0';
	assert_int_equal(xr_pgo_parse(t->p, NULL, 0, &m, errstr,
	                              sizeof(errstr)), -1);
	assert_string_equal(errstr, "pgoutput: empty message");
}

/* A short or absent errstr clips the message but never overflows. */
static void
test_small_errstr(void **state)
{
	tctx_t *t = *state;
	char small[32];
	xr_pgo_msg_t m;

	/* Clipped inside the "pgoutput: " prefix. */
	memset(small, 'Z', sizeof(small));
	assert_int_equal(xr_pgo_parse(t->p, "Q", 1, &m, small, 5), -1);
	assert_string_equal(small, "pgou");
	assert_int_equal(small[5], 'Z');

	/* Clipped inside the description that follows the prefix. */
	memset(small, 'Z', sizeof(small));
	assert_int_equal(xr_pgo_parse(t->p, "Q", 1, &m, small, 15), -1);
	assert_string_equal(small, "pgoutput: unkn");
	assert_int_equal(small[15], 'Z');

	assert_int_equal(xr_pgo_parse(t->p, "Q", 1, &m, small, 0), -1);
	assert_int_equal(small[0], 'p');
	assert_int_equal(xr_pgo_parse(t->p, "Q", 1, &m, NULL, 0), -1);
	assert_int_equal(xr_pgo_parse(t->p, "Q", 1, &m, NULL, 100), -1);
}

static void
test_destroy_null(void **state)
{
	(void)state;
	xr_pgo_parser_destroy(NULL);
}

/* ---------------------------------------------------------------------- */
/* Deterministic fuzzing                                                   */
/* ---------------------------------------------------------------------- */

/* xorshift64*: the same sequence on every platform, unlike rand(). */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

#define FUZZ_ITERATIONS 200000

static void
test_random_bytes(void **state)
{
	tctx_t *t = *state;
	static const char kinds[] = "BCORYIUDTM";
	unsigned char b[256];
	uint64_t seed = UINT64_C(0x5EED0000C0FFEE01);
	long ok = 0, bad = 0;
	int i;

	for (i = 0; i < FUZZ_ITERATIONS; i++) {
		size_t len = (size_t)(rnd(&seed) % (sizeof(b) + 1));
		uint64_t mode = rnd(&seed);
		size_t j;

		for (j = 0; j < len; j++) {
			uint64_t r = rnd(&seed);

			/*
			 * Small values and markers half the time, so that counts
			 * and lengths are sometimes plausible and the parser gets
			 * past the first field.
			 */
			if (r & 1)
				b[j] = (unsigned char)(r >> 8);
			else
				b[j] = (unsigned char)"\0\0\0\x01\x02NKOtnub"[(r >> 8) % 12];
		}
		if (len && (mode & 1))
			b[0] = (unsigned char)kinds[(mode >> 1) % 10];

		if (parse(t, b, len) == 0)
			ok++;
		else
			bad++;
	}
	assert_int_equal(ok + bad, FUZZ_ITERATIONS);
	assert_true(bad > 0);
}

static void
test_mutated_fixtures(void **state)
{
	tctx_t *t = *state;
	static const unsigned char special[] = { 0x00, 0x01, 0x7f, 0x80, 0xff };
	uint64_t seed = UINT64_C(0x0DDBA11CAFEF00D5);
	wr_t w;
	long ok = 0, bad = 0;
	int i;

	for (i = 0; i < FUZZ_ITERATIONS; i++) {
		int nmut = 1 + (int)(rnd(&seed) % 4), k;

		build(&fixtures[rnd(&seed) % NFIXTURES], &w);
		for (k = 0; k < nmut; k++) {
			uint64_t r = rnd(&seed);
			size_t pos = w.len ? (size_t)((r >> 8) % w.len) : 0;

			switch (r % 6) {
			case 0:  /* overwrite with a random byte */
				if (w.len)
					w.b[pos] = (unsigned char)(r >> 40);
				break;
			case 1:  /* overwrite with a boundary value */
				if (w.len)
					w.b[pos] = special[(r >> 40) % sizeof(special)];
				break;
			case 2:  /* truncate */
				w.len = pos;
				break;
			case 3:  /* append */
				w_u8(&w, (unsigned)(r >> 40));
				break;
			case 4:  /* insert a byte */
				if (w.len && w.len < sizeof(w.b)) {
					memmove(w.b + pos + 1, w.b + pos, w.len - pos);
					w.b[pos] = (unsigned char)(r >> 40);
					w.len++;
				}
				break;
			case 5:  /* delete a byte */
				if (w.len) {
					memmove(w.b + pos, w.b + pos + 1, w.len - pos - 1);
					w.len--;
				}
				break;
			}
		}

		if (parse(t, w.b, w.len) == 0)
			ok++;
		else
			bad++;
	}
	/* Both outcomes must occur, or the mutations test nothing. */
	assert_true(ok > 0);
	assert_true(bad > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_begin),
		T(test_commit),
		T(test_origin),
		T(test_relation_composite_key),
		T(test_relation_empty),
		T(test_type),
		T(test_insert_all_column_kinds),
		T(test_insert_zero_columns),
		T(test_update_without_old),
		T(test_update_with_key),
		T(test_update_with_old_row_and_toast),
		T(test_update_zero_columns),
		T(test_delete_with_key),
		T(test_delete_with_old_row),
		T(test_truncate_several),
		T(test_truncate_one_no_options),
		T(test_message),
		T(test_message_empty),
		T(test_scratch_grows_and_is_reused),
		T(test_every_truncation_fails),
		T(test_trailing_bytes_fail),
		T(test_wrong_tuple_markers),
		T(test_unknown_column_kind),
		T(test_string_without_nul),
		T(test_bad_lengths),
		T(test_bad_counts),
		T(test_bad_replident),
		T(test_unknown_message_types),
		T(test_empty_buffer),
		T(test_small_errstr),
		T(test_destroy_null),
		T(test_random_bytes),
		T(test_mutated_fixtures),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
