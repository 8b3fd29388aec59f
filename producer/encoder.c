/* encoder.c: one row change to a single-object encoded Avro event. */
#include "producer/encoder.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uuid/uuid.h>

#include "common/buf.h"
#include "common/mem.h"

#define CHECK_AVRO(expr, what)                                             \
	do {                                                                   \
		if ((expr) != 0) {                                                 \
			snprintf(errstr, errstr_size, "avro: %s: %s", (what),          \
			         avro_strerror());                                     \
			return -1;                                                     \
		}                                                                  \
	} while (0)

/* XR_EVENT_ID_NS as bytes, parsed once. */
static uuid_t event_id_ns;

static void
parse_ns(void)
{
	/* A constant that parses: a failure here is a broken build. */
	if (uuid_parse(XR_EVENT_ID_NS, event_id_ns) != 0)
		abort();
}

/*
 * Rewords errstr, a value's conversion error, to name the table and the
 * column and say what to do.  Returns -1.
 */
static int
column_error(const xr_rel_t *rel, const xr_relcol_t *col, bool key,
             char *errstr, size_t errstr_size)
{
	char inner[384];

	snprintf(inner, sizeof(inner), "%s", errstr);
	if (key)
		snprintf(errstr, errstr_size, "table %s.%s key column %s: %s",
		         rel->nspname, rel->relname, col->name, inner);
	else
		snprintf(errstr, errstr_size,
		         "table %s.%s column %s: %s; the value has no form in "
		         "the event schema: %s and restart",
		         rel->nspname, rel->relname, col->name, inner,
		         col->is_key
		             ? "mark the table pii: true (a key column "
		               "cannot be excluded)"
		             : "list the column in exclude_columns (or mark "
		               "the table pii: true)");
	return -1;
}

static int
tuple_mismatch(const xr_rel_t *rel, const xr_pgo_tuple_t *tup, char *errstr,
               size_t errstr_size)
{
	snprintf(errstr, errstr_size,
	         "table %s.%s: tuple has %d columns, relation has %d",
	         rel->nspname, rel->relname, tup->ncols, rel->ncols);
	return -1;
}

static int
not_text(const xr_rel_t *rel, const xr_relcol_t *col, char *errstr,
         size_t errstr_size)
{
	snprintf(errstr, errstr_size,
	         "table %s.%s column %s: binary column values are "
	         "not expected (the stream is in text mode)",
	         rel->nspname, rel->relname, col->name);
	return -1;
}

static int
key_missing(const xr_rel_t *rel, const xr_relcol_t *col, char *errstr,
            size_t errstr_size)
{
	snprintf(errstr, errstr_size,
	         "table %s.%s: key column %s has no value in the "
	         "change: the table's replica identity does not cover "
	         "its primary key; set ALTER TABLE %s.%s REPLICA "
	         "IDENTITY DEFAULT (or FULL) for later changes",
	         rel->nspname, rel->relname, col->name, rel->nspname,
	         rel->relname);
	return -1;
}

/* Fills the Row record of a union field (branch 1) from a tuple. */
static int
set_row(xr_rel_t *rel, avro_value_t *field, const xr_pgo_tuple_t *tup,
        avro_value_t *unchanged, char *errstr, size_t errstr_size)
{
	avro_value_t row;
	int          i;

	if (tup->ncols != rel->ncols)
		return tuple_mismatch(rel, tup, errstr, errstr_size);
	CHECK_AVRO(avro_value_set_branch(field, 1, &row), "row branch");
	for (i = 0; i < rel->ncols; i++) {
		const xr_relcol_t    *col = &rel->cols[i];
		const xr_pgo_datum_t *d = &tup->cols[i];
		avro_value_t          f;

		if (col->field < 0)
			continue;
		CHECK_AVRO(avro_value_get_by_index(&row, (size_t)col->field, &f,
		                                   NULL), col->name);
		switch (d->kind) {
		case XR_PGO_COL_NULL:
			CHECK_AVRO(xr_pgtype_set_null(&f), col->name);
			break;
		case XR_PGO_COL_UNCHANGED:
			CHECK_AVRO(xr_pgtype_set_null(&f), col->name);
			if (unchanged) {
				avro_value_t elem;

				CHECK_AVRO(avro_value_append(unchanged, &elem, NULL),
				           "unchanged");
				CHECK_AVRO(avro_value_set_string(&elem, col->name),
				           "unchanged");
			}
			break;
		case XR_PGO_COL_TEXT:
			if (xr_pgtype_text_to_avro(&col->type, d->data, d->len, true,
			                           &f, errstr, errstr_size))
				return column_error(rel, col, false, errstr, errstr_size);
			break;
		default:
			return not_text(rel, col, errstr, errstr_size);
		}
	}
	return 0;
}

static int
set_key(xr_rel_t *rel, const xr_pgo_tuple_t *tup, char *errstr,
        size_t errstr_size)
{
	int i;

	for (i = 0; i < rel->ncols; i++) {
		const xr_relcol_t    *col = &rel->cols[i];
		const xr_pgo_datum_t *d = &tup->cols[i];
		avro_value_t          f;

		if (col->key_field < 0)
			continue;
		if (d->kind != XR_PGO_COL_TEXT)
			return key_missing(rel, col, errstr, errstr_size);
		CHECK_AVRO(avro_value_get_by_index(&rel->key, (size_t)col->key_field,
		                                   &f, NULL), col->name);
		if (xr_pgtype_text_to_avro(&col->type, d->data, d->len, false, &f,
		                           errstr, errstr_size))
			return column_error(rel, col, true, errstr, errstr_size);
	}
	return 0;
}

/* ---- Avro binary written directly ----------------------------------- */

/*
 * What avro-c's generic values cost per event (a value tree set field by
 * field, strings copied, then walked twice to size and write it) is most
 * of the producer's encoding time; the envelope's layout is fixed, so the
 * bytes are written here directly, the same bytes: the unit tests encode
 * every event both ways and compare.  Events with a vector clock still go
 * through avro-c (encode_avro).
 */

/* The single-object header of schema s. */
static void
raw_header(xr_buf_t *b, const xr_schema_t *s)
{
	char h[XR_AVRO_SO_HEADER_LEN];
	int  i;

	h[0] = (char)XR_AVRO_SO_MAGIC0;
	h[1] = (char)XR_AVRO_SO_MAGIC1;
	for (i = 0; i < 8; i++)
		h[2 + i] = (char)((s->fingerprint >> (8 * i)) & 0xff);
	xr_buf_append(b, h, sizeof(h));
}

static void
raw_string(xr_buf_t *b, const char *s)
{
	xr_avro_put_bytes(b, s, strlen(s));
}

/* The Row record of a tuple (without the union's index). */
static int
raw_row(const xr_rel_t *rel, const xr_pgo_tuple_t *tup, xr_buf_t *b,
        char *errstr, size_t errstr_size)
{
	int i;

	if (tup->ncols != rel->ncols)
		return tuple_mismatch(rel, tup, errstr, errstr_size);
	for (i = 0; i < rel->ncols; i++) {
		const xr_relcol_t    *col = &rel->cols[i];
		const xr_pgo_datum_t *d = &tup->cols[i];

		if (col->field < 0)
			continue;
		switch (d->kind) {
		case XR_PGO_COL_NULL:
		case XR_PGO_COL_UNCHANGED:
			xr_avro_put_long(b, 0);
			break;
		case XR_PGO_COL_TEXT:
			if (xr_pgtype_text_to_raw(&col->type, d->data, d->len, true, b,
			                          errstr, errstr_size))
				return column_error(rel, col, false, errstr, errstr_size);
			break;
		default:
			return not_text(rel, col, errstr, errstr_size);
		}
	}
	return 0;
}

/* The "unchanged" array: the names of after's unchanged columns. */
static void
raw_unchanged(const xr_rel_t *rel, const xr_pgo_tuple_t *after, xr_buf_t *b)
{
	int64_t n = 0;
	int     i;

	for (i = 0; after && i < rel->ncols; i++)
		if (rel->cols[i].field >= 0 &&
		    after->cols[i].kind == XR_PGO_COL_UNCHANGED)
			n++;
	if (n) {
		xr_avro_put_long(b, n);
		for (i = 0; i < rel->ncols; i++)
			if (rel->cols[i].field >= 0 &&
			    after->cols[i].kind == XR_PGO_COL_UNCHANGED)
				raw_string(b, rel->cols[i].name);
	}
	xr_avro_put_long(b, 0);
}

static int
raw_key(const xr_rel_t *rel, const xr_pgo_tuple_t *tup, xr_buf_t *b,
        char *errstr, size_t errstr_size)
{
	int i;

	raw_header(b, rel->key_schema);
	for (i = 0; i < rel->ncols; i++) {
		const xr_relcol_t    *col = &rel->cols[i];
		const xr_pgo_datum_t *d = &tup->cols[i];

		if (col->key_field < 0)
			continue;
		if (d->kind != XR_PGO_COL_TEXT)
			return key_missing(rel, col, errstr, errstr_size);
		if (xr_pgtype_text_to_raw(&col->type, d->data, d->len, false, b,
		                          errstr, errstr_size))
			return column_error(rel, col, true, errstr, errstr_size);
	}
	return 0;
}

static int
encode_raw(xr_rel_t *rel, xr_op_t op, const xr_pgo_tuple_t *before,
           const xr_pgo_tuple_t *after, const xr_source_t *src,
           xr_buf_t *key, xr_buf_t *value, const char *event_id,
           char *errstr, size_t errstr_size)
{
	xr_buf_t *b = value;

	raw_header(b, rel->value_schema);
	xr_avro_put_bytes(b, event_id, XR_EVENT_ID_LEN);
	xr_avro_put_long(b, (int64_t)op);
	xr_avro_put_long(b, xr_unix_now_us());
	/* source */
	raw_string(b, src->region);
	raw_string(b, src->database);
	raw_string(b, rel->nspname);
	raw_string(b, rel->relname);
	xr_avro_put_long(b, (int64_t)src->lsn);
	xr_avro_put_long(b, (int64_t)src->commit_lsn);
	xr_avro_put_long(b, (int64_t)src->xid);
	xr_avro_put_long(b, src->commit_ts_us);
	xr_avro_put_long(b, src->origin ? 1 : 0);
	if (src->origin)
		raw_string(b, src->origin);
	/* before, after, unchanged, vclock (none here), tx_index */
	xr_avro_put_long(b, before ? 1 : 0);
	if (before && raw_row(rel, before, b, errstr, errstr_size))
		return -1;
	xr_avro_put_long(b, after ? 1 : 0);
	if (after && raw_row(rel, after, b, errstr, errstr_size))
		return -1;
	raw_unchanged(rel, after, b);
	xr_avro_put_long(b, 0);
	xr_avro_put_long(b, src->tx_index >= 0 ? 1 : 0);
	if (src->tx_index >= 0)
		xr_avro_put_long(b, src->tx_index);
	if (op == XR_OP_TRUNCATE)
		return 0;
	return raw_key(rel, after ? after : before, key, errstr, errstr_size);
}

void
xr_event_id(const xr_source_t *src, char event_id[XR_EVENT_ID_LEN + 1])
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	size_t rl = strlen(src->region), dl = strlen(src->database);
	size_t need = rl + dl + 2 * (20 + 1) + 2, n;
	uuid_t uu;
	char   stack[256], *name = stack;

	/* Once per change: no printf, and no allocation for the usual name. */
	(void)pthread_once(&once, parse_ns);
	if (need > sizeof(stack) && !(name = malloc(need)))
		xr_oom();
	memcpy(name, src->region, rl + 1);
	n = rl + 1;
	memcpy(name + n, src->database, dl + 1);
	n += dl + 1;
	n += xr_u64_digits(name + n, (uint64_t)(src->read_lsn ? src->read_lsn
	                                                     : src->commit_lsn));
	name[n++] = '\0';
	n += xr_u64_digits(name + n, src->change_index);
	uuid_generate_sha1(uu, event_id_ns, name, n);
	if (name != stack)
		free(name);
	uuid_unparse_lower(uu, event_id);
}

/* Sets map m from a JSON object of region to counter. */
static int
set_vector(avro_value_t *m, const json_t *vec, char *errstr,
           size_t errstr_size)
{
	const char *region;
	json_t     *n;

	if (!json_is_object(vec)) {
		snprintf(errstr, errstr_size, "vclock: vector is not an object");
		return -1;
	}
	json_object_foreach((json_t *)vec, region, n) {
		avro_value_t e;

		if (!json_is_integer(n)) {
			snprintf(errstr, errstr_size, "vclock: counter of %s is not an "
			         "integer", region);
			return -1;
		}
		CHECK_AVRO(avro_value_add(m, region, &e, NULL, NULL), "vclock vector");
		CHECK_AVRO(avro_value_set_long(&e, (int64_t)json_integer_value(n)),
		           "vclock vector");
	}
	return 0;
}

static int
set_vclock(avro_value_t *field, const xr_vclock_t *vc, char *errstr,
           size_t errstr_size)
{
	avro_value_t r, f, b;

	CHECK_AVRO(avro_value_set_branch(field, 1, &r), "vclock");
	CHECK_AVRO(avro_value_get_by_index(&r, 0, &f, NULL), "vclock hlc");
	CHECK_AVRO(avro_value_set_long(&f, vc->hlc), "vclock hlc");
	CHECK_AVRO(avro_value_get_by_index(&r, 1, &f, NULL), "vclock vector");
	if (set_vector(&f, vc->vector, errstr, errstr_size))
		return -1;
	CHECK_AVRO(avro_value_get_by_index(&r, 2, &f, NULL), "vclock before_hlc");
	if (vc->before_vector) {
		CHECK_AVRO(avro_value_set_branch(&f, 1, &b), "vclock before_hlc");
		CHECK_AVRO(avro_value_set_long(&b, vc->before_hlc), "vclock before_hlc");
	} else {
		CHECK_AVRO(xr_pgtype_set_null(&f), "vclock before_hlc");
	}
	CHECK_AVRO(avro_value_get_by_index(&r, 3, &f, NULL), "vclock before_vector");
	if (vc->before_vector) {
		CHECK_AVRO(avro_value_set_branch(&f, 1, &b), "vclock before_vector");
		if (set_vector(&b, vc->before_vector, errstr, errstr_size))
			return -1;
	} else {
		CHECK_AVRO(xr_pgtype_set_null(&f), "vclock before_vector");
	}
	return 0;
}

int
xr_encode_change(xr_rel_t *rel, xr_op_t op, const xr_pgo_tuple_t *before,
                 const xr_pgo_tuple_t *after, const xr_source_t *src,
                 xr_buf_t *key, xr_buf_t *value,
                 char event_id[XR_EVENT_ID_LEN + 1], char *errstr,
                 size_t errstr_size)
{
	if (src->vclock)
		return xr_encode_change_avro(rel, op, before, after, src, key, value,
		                             event_id, errstr, errstr_size);
	xr_buf_reset(key);
	xr_buf_reset(value);
	xr_event_id(src, event_id);
	return encode_raw(rel, op, before, after, src, key, value, event_id,
	                  errstr, errstr_size);
}

int
xr_encode_change_avro(xr_rel_t *rel, xr_op_t op, const xr_pgo_tuple_t *before,
                      const xr_pgo_tuple_t *after, const xr_source_t *src,
                      xr_buf_t *key, xr_buf_t *value,
                      char event_id[XR_EVENT_ID_LEN + 1], char *errstr,
                      size_t errstr_size)
{
	avro_value_t *v = &rel->value;
	avro_value_t  f, s, sf, unchanged;

	xr_buf_reset(key);
	xr_buf_reset(value);
	xr_event_id(src, event_id);

	CHECK_AVRO(avro_value_reset(v), "reset");
	CHECK_AVRO(avro_value_get_by_index(v, XR_ENV_EVENT_ID, &f, NULL), "event_id");
	CHECK_AVRO(avro_value_set_string(&f, event_id), "event_id");
	CHECK_AVRO(avro_value_get_by_index(v, XR_ENV_OP, &f, NULL), "op");
	CHECK_AVRO(avro_value_set_enum(&f, (int)op), "op");
	CHECK_AVRO(avro_value_get_by_index(v, XR_ENV_PRODUCED_AT, &f, NULL),
	           "produced_at");
	CHECK_AVRO(avro_value_set_long(&f, xr_unix_now_us()), "produced_at");

	CHECK_AVRO(avro_value_get_by_index(v, XR_ENV_SOURCE, &s, NULL), "source");
	CHECK_AVRO(avro_value_get_by_index(&s, XR_SRC_REGION, &sf, NULL), "region");
	CHECK_AVRO(avro_value_set_string(&sf, src->region), "region");
	CHECK_AVRO(avro_value_get_by_index(&s, XR_SRC_DATABASE, &sf, NULL), "database");
	CHECK_AVRO(avro_value_set_string(&sf, src->database), "database");
	CHECK_AVRO(avro_value_get_by_index(&s, XR_SRC_SCHEMA, &sf, NULL), "schema");
	CHECK_AVRO(avro_value_set_string(&sf, rel->nspname), "schema");
	CHECK_AVRO(avro_value_get_by_index(&s, XR_SRC_TABLE, &sf, NULL), "table");
	CHECK_AVRO(avro_value_set_string(&sf, rel->relname), "table");
	CHECK_AVRO(avro_value_get_by_index(&s, XR_SRC_LSN, &sf, NULL), "lsn");
	CHECK_AVRO(avro_value_set_long(&sf, (int64_t)src->lsn), "lsn");
	CHECK_AVRO(avro_value_get_by_index(&s, XR_SRC_COMMIT_LSN, &sf, NULL),
	           "commit_lsn");
	CHECK_AVRO(avro_value_set_long(&sf, (int64_t)src->commit_lsn), "commit_lsn");
	CHECK_AVRO(avro_value_get_by_index(&s, XR_SRC_TXID, &sf, NULL), "txid");
	CHECK_AVRO(avro_value_set_long(&sf, (int64_t)src->xid), "txid");
	CHECK_AVRO(avro_value_get_by_index(&s, XR_SRC_COMMIT_TS, &sf, NULL),
	           "commit_ts");
	CHECK_AVRO(avro_value_set_long(&sf, src->commit_ts_us), "commit_ts");
	CHECK_AVRO(avro_value_get_by_index(&s, XR_SRC_ORIGIN, &sf, NULL), "origin");
	if (src->origin) {
		avro_value_t b;

		CHECK_AVRO(avro_value_set_branch(&sf, 1, &b), "origin");
		CHECK_AVRO(avro_value_set_string(&b, src->origin), "origin");
	} else {
		avro_value_t b;

		CHECK_AVRO(avro_value_set_branch(&sf, 0, &b), "origin");
		CHECK_AVRO(avro_value_set_null(&b), "origin");
	}

	CHECK_AVRO(avro_value_get_by_index(v, XR_ENV_UNCHANGED, &unchanged, NULL),
	           "unchanged");
	CHECK_AVRO(avro_value_get_by_index(v, XR_ENV_BEFORE, &f, NULL), "before");
	if (before) {
		if (set_row(rel, &f, before, NULL, errstr, errstr_size))
			return -1;
	} else {
		CHECK_AVRO(xr_pgtype_set_null(&f), "before");
	}
	CHECK_AVRO(avro_value_get_by_index(v, XR_ENV_AFTER, &f, NULL), "after");
	if (after) {
		if (set_row(rel, &f, after, &unchanged, errstr, errstr_size))
			return -1;
	} else {
		CHECK_AVRO(xr_pgtype_set_null(&f), "after");
	}

	CHECK_AVRO(avro_value_get_by_index(v, XR_ENV_VCLOCK, &f, NULL), "vclock");
	if (src->vclock) {
		if (set_vclock(&f, src->vclock, errstr, errstr_size))
			return -1;
	} else {
		CHECK_AVRO(xr_pgtype_set_null(&f), "vclock");
	}

	CHECK_AVRO(avro_value_get_by_index(v, XR_ENV_TX_INDEX, &f, NULL),
	           "tx_index");
	if (src->tx_index >= 0) {
		avro_value_t b;

		CHECK_AVRO(avro_value_set_branch(&f, 1, &b), "tx_index");
		CHECK_AVRO(avro_value_set_long(&b, src->tx_index), "tx_index");
	} else {
		CHECK_AVRO(xr_pgtype_set_null(&f), "tx_index");
	}
	if (xr_avro_encode(rel->value_schema, v, value, errstr, errstr_size))
		return -1;
	if (op == XR_OP_TRUNCATE)
		return 0;
	CHECK_AVRO(avro_value_reset(&rel->key), "key reset");
	if (set_key(rel, after ? after : before, errstr, errstr_size))
		return -1;
	return xr_avro_encode(rel->key_schema, &rel->key, key, errstr, errstr_size);
}
