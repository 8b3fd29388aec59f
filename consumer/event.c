/* event.c: decoding change events for the consumer (see event.h). */
#include "consumer/event.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/kafka_conf.h"
#include "common/pgtype.h"

const char *const xr_op_names[] = {
	"insert", "update", "delete", "truncate", "snapshot_read"
};

void
xr_event_init(xr_event_t *ev)
{
	memset(ev, 0, sizeof(*ev));
	xr_buf_init(&ev->text);
	xr_buf_init(&ev->vc_vector);
	xr_buf_init(&ev->vc_before_vector);
}

void
xr_event_term(xr_event_t *ev)
{
	free(ev->before);
	free(ev->after);
	xr_buf_term(&ev->text);
	xr_buf_term(&ev->vc_vector);
	xr_buf_term(&ev->vc_before_vector);
	memset(ev, 0, sizeof(*ev));
}

atomic_bool   xr_event_generic_only = false;
atomic_ulong  xr_event_in_place_count;

#define AVRO_TRY(expr, what)                                               \
	do {                                                                   \
		if ((expr) != 0) {                                                 \
			snprintf(errstr, errstr_size, "event: %s: %s", (what),         \
			         avro_strerror());                                     \
			goto out;                                                      \
		}                                                                  \
	} while (0)

static int
get_string(avro_value_t *rec, size_t idx, char *dst, size_t dstsize,
           const char *what, char *errstr, size_t errstr_size)
{
	avro_value_t f;
	const char  *s;
	size_t       n;

	if (avro_value_get_by_index(rec, idx, &f, NULL) ||
	    avro_value_get_string(&f, &s, &n)) {
		snprintf(errstr, errstr_size, "event: %s: %s", what, avro_strerror());
		return -1;
	}
	if (n == 0 || n > dstsize) {   /* n counts avro-c's NUL */
		snprintf(errstr, errstr_size, "event: %s: length %zu out of range",
		         what, n);
		return -1;
	}
	memcpy(dst, s, n);
	dst[n - 1] = '\0';
	return 0;
}

/* Reads a nullable Row union into vals; returns 1 if it held a row. */
static int
read_image(xr_event_t *ev, avro_value_t *u, xr_eval_t *vals, char *errstr,
           size_t errstr_size)
{
	avro_value_t row;
	int          branch, i;

	if (avro_value_get_discriminant(u, &branch) ||
	    avro_value_get_current_branch(u, &row)) {
		snprintf(errstr, errstr_size, "event: row: %s", avro_strerror());
		return -1;
	}
	if (branch == 0)
		return 0;
	for (i = 0; i < ev->nfields; i++) {
		const xr_field_t *fd = &ev->schema->row_fields[i];
		avro_value_t      f;
		bool              is_null;
		size_t            start = ev->text.len;

		if (avro_value_get_by_index(&row, (size_t)i, &f, NULL)) {
			snprintf(errstr, errstr_size, "event: field %s: %s", fd->column,
			         avro_strerror());
			return -1;
		}
		if (xr_pgtype_avro_to_text(&fd->type, &f, fd->nullable, &ev->text,
		                           &is_null, errstr, errstr_size))
			return -1;
		vals[i].present = true;
		vals[i].is_null = is_null;
		vals[i].off = start;
		vals[i].len = ev->text.len - start;
		xr_buf_putc(&ev->text, '\0');
	}
	return 1;
}

/* Writes map m (region -> counter) as a JSON object into b. */
static int
read_vector(avro_value_t *m, xr_buf_t *b, char *errstr, size_t errstr_size)
{
	size_t i, n;

	xr_buf_reset(b);
	AVRO_TRY(avro_value_get_size(m, &n), "vclock vector");
	xr_buf_putc(b, '{');
	for (i = 0; i < n; i++) {
		avro_value_t e;
		const char  *region;
		int64_t      c;

		AVRO_TRY(avro_value_get_by_index(m, i, &e, &region), "vclock vector");
		AVRO_TRY(avro_value_get_long(&e, &c), "vclock vector");
		if (c < 0) {
			snprintf(errstr, errstr_size, "event: vclock counter of %s is "
			         "negative", region);
			return -1;
		}
		if (i)
			xr_buf_putc(b, ',');
		xr_buf_json_str(b, region, strlen(region));
		xr_buf_printf(b, ":%" PRId64, c);
	}
	xr_buf_putc(b, '}');
	return 0;
out:
	return -1;
}

/*
 * Reads the envelope's vclock field, when the writer schema has one (events
 * of earlier releases do not).  Returns 0 or -1.
 */
static int
read_vclock(xr_event_t *ev, avro_value_t *v, char *errstr, size_t errstr_size)
{
	avro_value_t u, r, f, b;
	size_t       n;
	int          branch;

	ev->has_vclock = ev->has_vc_before = false;
	AVRO_TRY(avro_value_get_size(v, &n), "envelope");
	if (n <= XR_ENV_VCLOCK)
		return 0;
	AVRO_TRY(avro_value_get_by_index(v, XR_ENV_VCLOCK, &u, NULL), "vclock");
	AVRO_TRY(avro_value_get_discriminant(&u, &branch), "vclock");
	if (branch == 0)
		return 0;
	AVRO_TRY(avro_value_get_current_branch(&u, &r), "vclock");
	AVRO_TRY(avro_value_get_by_index(&r, 0, &f, NULL), "vclock hlc");
	AVRO_TRY(avro_value_get_long(&f, &ev->vc_hlc), "vclock hlc");
	AVRO_TRY(avro_value_get_by_index(&r, 1, &f, NULL), "vclock vector");
	if (read_vector(&f, &ev->vc_vector, errstr, errstr_size))
		return -1;
	AVRO_TRY(avro_value_get_by_index(&r, 2, &f, NULL), "vclock before_hlc");
	AVRO_TRY(avro_value_get_discriminant(&f, &branch), "vclock before_hlc");
	if (branch == 1) {
		AVRO_TRY(avro_value_get_current_branch(&f, &b), "vclock before_hlc");
		AVRO_TRY(avro_value_get_long(&b, &ev->vc_before_hlc),
		         "vclock before_hlc");
		AVRO_TRY(avro_value_get_by_index(&r, 3, &f, NULL),
		         "vclock before_vector");
		AVRO_TRY(avro_value_get_discriminant(&f, &branch),
		         "vclock before_vector");
		if (branch == 1) {
			AVRO_TRY(avro_value_get_current_branch(&f, &b),
			         "vclock before_vector");
			if (read_vector(&b, &ev->vc_before_vector, errstr, errstr_size))
				return -1;
			ev->has_vc_before = true;
		}
	}
	ev->has_vclock = true;
	return 0;
out:
	return -1;
}

/* No images and no text: what a decode starts from. */
static void
clear_images(xr_event_t *ev)
{
	xr_buf_reset(&ev->text);
	ev->has_before = ev->has_after = false;
	ev->has_vclock = ev->has_vc_before = false;
	/* A Row without fields (every column excluded) has no arrays yet. */
	if (ev->nfields > 0) {
		memset(ev->before, 0, (size_t)ev->nfields * sizeof(*ev->before));
		memset(ev->after, 0, (size_t)ev->nfields * sizeof(*ev->after));
	}
}

/* Copies a span's string into dst (size bytes with its NUL); false when it
 * is empty, too long or holds a NUL (the avro-c path words the error). */
static bool
span_string(const xr_env_view_t *v, xr_span_t sp, char *dst, size_t size)
{
	const unsigned char *p = v->body + sp.off;

	if (sp.len == 0 || sp.len >= size || memchr(p, '\0', sp.len))
		return false;
	memcpy(dst, p, sp.len);
	dst[sp.len] = '\0';
	return true;
}

/* One image read in place into vals; false to leave it to avro-c. */
static bool
image_in_place(xr_event_t *ev, avro_schema_t row, const xr_env_view_t *v,
               xr_span_t img, xr_eval_t *vals)
{
	const unsigned char *base = v->body + img.off;
	xr_span_t spans[XR_EVENT_IN_PLACE_MAX];
	int       branches[XR_EVENT_IN_PLACE_MAX], i;

	if (xr_avro_row_fields(row, base, img.len, spans, branches, ev->nfields))
		return false;
	for (i = 0; i < ev->nfields; i++) {
		size_t start = ev->text.len;
		bool   is_null;

		if (xr_pgtype_raw_to_text(&ev->schema->row_fields[i].type,
		                          ev->schema->row_fields[i].nullable,
		                          base + spans[i].off, spans[i].len,
		                          branches[i], &ev->text, &is_null) != 1)
			return false;
		vals[i].present = true;
		vals[i].is_null = is_null;
		vals[i].off = start;
		vals[i].len = ev->text.len - start;
		xr_buf_putc(&ev->text, '\0');
	}
	return true;
}

/*
 * The usual event read in place from its bytes (xr_avro_env_view), without
 * avro-c's values: no vector clock, no unchanged TOASTed columns, fields of
 * the types xr_pgtype_raw_to_text reads.  Returns false, having set
 * nothing that the avro-c path does not set again, for any other event and
 * for anything malformed, which the avro-c path then reads or refuses
 * with its own words.
 */
static bool
decode_in_place(xr_event_t *ev, const xr_schema_t *s, const void *body,
                size_t len)
{
	xr_env_view_t v;
	avro_schema_t row;
	char          err[8];

	if (ev->nfields > XR_EVENT_IN_PLACE_MAX ||
	    xr_avro_env_view(s, body, len, &v, err, sizeof(err)) ||
	    v.has_vclock || v.unchanged.len != 1 ||
	    !(row = xr_avro_row_schema(s)))
		return false;
	if (!span_string(&v, v.event_id, ev->event_id, sizeof(ev->event_id)) ||
	    !span_string(&v, v.region, ev->source_region,
	                 sizeof(ev->source_region)) ||
	    !span_string(&v, v.schema, ev->nspname, sizeof(ev->nspname)) ||
	    !span_string(&v, v.table, ev->relname, sizeof(ev->relname)))
		return false;
	if (v.has_origin) {
		if (!span_string(&v, v.origin, ev->region, sizeof(ev->region)))
			return false;
	} else {
		memcpy(ev->region, ev->source_region, sizeof(ev->region));
	}
	ev->op = v.op;
	ev->commit_ts = ev->source_commit_ts = v.commit_ts;
	ev->lsn = (xr_lsn_t)v.lsn;
	ev->commit_lsn = (xr_lsn_t)v.commit_lsn;
	if ((v.has_before && !image_in_place(ev, row, &v, v.before, ev->before)) ||
	    (v.has_after && !image_in_place(ev, row, &v, v.after, ev->after)))
		return false;
	ev->has_before = v.has_before;
	ev->has_after = v.has_after;
	ev->has_vclock = ev->has_vc_before = false;
	if ((ev->op == XR_OP_INSERT || ev->op == XR_OP_UPDATE ||
	     ev->op == XR_OP_SNAPSHOT_READ) && !ev->has_after)
		return false;
	if (ev->op == XR_OP_DELETE && !ev->has_before)
		return false;
	return true;
}

int
xr_event_decode(xr_event_t *ev, xr_registry_t *reg, const void *msg,
                size_t len, const char *schema_id, char *errstr,
                size_t errstr_size)
{
	const xr_schema_t *s;
	const void        *body;
	size_t             body_len, i, n;
	bool               transient;
	avro_value_t       v, f, src, un;
	bool               have_value = false;
	int                e, r, rc = -1;
	int64_t            l;

	xr_buf_reset(&ev->text);
	ev->has_before = ev->has_after = false;
	ev->target = NULL;
	ev->target_of = NULL;
	s = xr_registry_resolve(reg, msg, len, schema_id, &body, &body_len,
	                        &transient, errstr, errstr_size);
	if (!s)
		return transient ? -2 : -1;
	if (!s->is_envelope) {
		snprintf(errstr, errstr_size,
		         "event: schema %016llx is not an xregion change event",
		         (unsigned long long)s->fingerprint);
		return -1;
	}
	ev->schema = s;
	ev->nfields = s->n_row_fields;
	if ((size_t)ev->nfields > ev->cap) {
		free(ev->before);
		free(ev->after);
		ev->before = calloc((size_t)ev->nfields, sizeof(*ev->before));
		ev->after = calloc((size_t)ev->nfields, sizeof(*ev->after));
		if (!ev->before || !ev->after) {
			ev->cap = 0;
			snprintf(errstr, errstr_size, "out of memory");
			return -1;
		}
		ev->cap = (size_t)ev->nfields;
	}
	clear_images(ev);
	if (!xr_event_generic_only && decode_in_place(ev, s, body, body_len)) {
		atomic_fetch_add_explicit(&xr_event_in_place_count, 1,
		                          memory_order_relaxed);
		return 0;
	}
	/* Not that kind of event: from the start, through avro-c. */
	clear_images(ev);
	if (xr_avro_decode(s, body, body_len, &v, errstr, errstr_size))
		return -1;
	have_value = true;

	if (get_string(&v, XR_ENV_EVENT_ID, ev->event_id, sizeof(ev->event_id),
	               "event_id", errstr, errstr_size))
		goto out;
	AVRO_TRY(avro_value_get_by_index(&v, XR_ENV_OP, &f, NULL), "op");
	AVRO_TRY(avro_value_get_enum(&f, &e), "op");
	if (e < XR_OP_INSERT || e > XR_OP_SNAPSHOT_READ) {
		snprintf(errstr, errstr_size, "event: op %d unknown", e);
		goto out;
	}
	ev->op = (xr_op_t)e;
	AVRO_TRY(avro_value_get_by_index(&v, XR_ENV_SOURCE, &src, NULL), "source");
	if (get_string(&src, XR_SRC_REGION, ev->source_region,
	               sizeof(ev->source_region), "source.region", errstr,
	               errstr_size) ||
	    get_string(&src, XR_SRC_SCHEMA, ev->nspname, sizeof(ev->nspname),
	               "source.schema", errstr, errstr_size) ||
	    get_string(&src, XR_SRC_TABLE, ev->relname, sizeof(ev->relname),
	               "source.table", errstr, errstr_size))
		goto out;
	memcpy(ev->region, ev->source_region, sizeof(ev->region));
	/*
	 * What a backfill publishes (rows, tombstones, a truncation marker)
	 * has the version of whoever wrote it, named by source.origin (null
	 * on changes).
	 */
	{
		avro_value_t o;
		const char  *os;
		size_t       on;
		int          br;

		AVRO_TRY(avro_value_get_by_index(&src, XR_SRC_ORIGIN, &f, NULL),
		         "source.origin");
		AVRO_TRY(avro_value_get_discriminant(&f, &br), "source.origin");
		if (br == 1) {
			AVRO_TRY(avro_value_get_current_branch(&f, &o), "source.origin");
			AVRO_TRY(avro_value_get_string(&o, &os, &on), "source.origin");
			if (on < 2 || on > sizeof(ev->region)) {
				snprintf(errstr, errstr_size, "event: source.origin is "
				         "empty or too long");
				goto out;
			}
			memcpy(ev->region, os, on);
			ev->region[on - 1] = '\0';
		}
	}
	AVRO_TRY(avro_value_get_by_index(&src, XR_SRC_COMMIT_TS, &f, NULL),
	         "source.commit_ts");
	AVRO_TRY(avro_value_get_long(&f, &ev->commit_ts), "source.commit_ts");
	ev->source_commit_ts = ev->commit_ts;
	AVRO_TRY(avro_value_get_by_index(&src, XR_SRC_LSN, &f, NULL), "source.lsn");
	AVRO_TRY(avro_value_get_long(&f, &l), "source.lsn");
	ev->lsn = (xr_lsn_t)l;
	AVRO_TRY(avro_value_get_by_index(&src, XR_SRC_COMMIT_LSN, &f, NULL),
	         "source.commit_lsn");
	AVRO_TRY(avro_value_get_long(&f, &l), "source.commit_lsn");
	ev->commit_lsn = (xr_lsn_t)l;

	AVRO_TRY(avro_value_get_by_index(&v, XR_ENV_BEFORE, &f, NULL), "before");
	if ((r = read_image(ev, &f, ev->before, errstr, errstr_size)) < 0)
		goto out;
	ev->has_before = r == 1;
	AVRO_TRY(avro_value_get_by_index(&v, XR_ENV_AFTER, &f, NULL), "after");
	if ((r = read_image(ev, &f, ev->after, errstr, errstr_size)) < 0)
		goto out;
	ev->has_after = r == 1;

	AVRO_TRY(avro_value_get_by_index(&v, XR_ENV_UNCHANGED, &un, NULL),
	         "unchanged");
	AVRO_TRY(avro_value_get_size(&un, &n), "unchanged");
	for (i = 0; i < n; i++) {
		avro_value_t el;
		const char  *name;
		size_t       nl;
		int          k;

		AVRO_TRY(avro_value_get_by_index(&un, i, &el, NULL), "unchanged");
		AVRO_TRY(avro_value_get_string(&el, &name, &nl), "unchanged");
		for (k = 0; k < ev->nfields; k++)
			if (strcmp(s->row_fields[k].column, name) == 0)
				ev->after[k].unchanged = true;
	}
	if (read_vclock(ev, &v, errstr, errstr_size))
		goto out;
	if ((ev->op == XR_OP_INSERT || ev->op == XR_OP_UPDATE ||
	     ev->op == XR_OP_SNAPSHOT_READ) && !ev->has_after) {
		snprintf(errstr, errstr_size, "event: %s without an after image",
		         xr_op_names[ev->op]);
		goto out;
	}
	if (ev->op == XR_OP_DELETE && !ev->has_before) {
		snprintf(errstr, errstr_size, "event: delete without a before image");
		goto out;
	}
	rc = 0;
out:
	if (have_value)
		avro_value_decref(&v);
	return rc;
}

int
xr_event_decode_message(xr_event_t *ev, xr_registry_t *reg,
                        const rd_kafka_message_t *m, char *errstr,
                        size_t errstr_size)
{
	char schema_id[64];

	return xr_event_decode(ev, reg, m->payload, m->len,
	                       xr_kafka_header(m, "xr-schema", schema_id,
	                                       sizeof(schema_id))
	                           ? schema_id : NULL,
	                       errstr, errstr_size);
}
