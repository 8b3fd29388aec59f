/*
 * feed.c: `xregion feed` (feed.h): Kafka change events to flat rows, in
 * Avro container files written exactly once (feed_sink.c) or as JSON lines.
 *
 * Per message: the envelope is read in place (xr_avro_env_view), and the
 * flat row's datum is the Row's bytes as they stand followed by the
 * metadata's, so that a row costs no per-field decoding unless a value
 * sits in a text branch (numeric NaN, arrays Avro cannot hold).
 */
#include "consumer/feed.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "common/buf.h"
#include "common/kafka_conf.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/lsn.h"
#include "consumer/event.h"
#include "consumer/feed_int.h"
#include "consumer/feed_sink.h"
#include "consumer/registry.h"

#define KAFKA_TIMEOUT_MS 10000

const char *const xr_feed_meta_names[XR_FM_N] = {
	"__op", "__deleted", "__region", "__commit_ts", "__commit_lsn", "__lsn",
	"__txid", "__tx_index", "__event_id", "__version", "__unchanged", "__text"
};

/* The metadata fields of the flat schema, in XR_FM_* order. */
static const char meta_json[] =
	"[{\"name\":\"__op\",\"type\":\"string\",\"doc\":\"insert, update, "
	"delete, truncate or snapshot_read\"},"
	"{\"name\":\"__deleted\",\"type\":\"boolean\",\"doc\":\"The key has no "
	"row after this change (delete, truncate, the old key of an update "
	"that changed it)\"},"
	"{\"name\":\"__region\",\"type\":\"string\",\"doc\":\"The region of the "
	"write\"},"
	"{\"name\":\"__commit_ts\",\"type\":{\"type\":\"long\",\"logicalType\":"
	"\"timestamp-micros\"},\"doc\":\"Commit time of the write's transaction "
	"in its region\"},"
	"{\"name\":\"__commit_lsn\",\"type\":\"long\",\"doc\":\"WAL position of "
	"that commit\"},"
	"{\"name\":\"__lsn\",\"type\":\"long\",\"doc\":\"WAL position of the "
	"change\"},"
	"{\"name\":\"__txid\",\"type\":\"long\",\"doc\":\"Transaction id\"},"
	"{\"name\":\"__tx_index\",\"type\":[\"null\",\"long\"],\"default\":null,"
	"\"doc\":\"The change's place in its transaction, from 0 (its end record "
	"on the transactions topic counts them); null for a backfill's rows\"},"
	"{\"name\":\"__event_id\",\"type\":{\"type\":\"string\",\"logicalType\":"
	"\"uuid\"},\"doc\":\"The change event's id\"},"
	"{\"name\":\"__version\",\"type\":\"long\",\"doc\":\"The version the "
	"regions compare (µs): the latest (__version, __region, __lsn) of a key "
	"is its state\"},"
	"{\"name\":\"__unchanged\",\"type\":{\"type\":\"array\",\"items\":"
	"\"string\"},\"doc\":\"Columns whose unchanged TOASTed value was not "
	"sent: null here, not made up\"},"
	"{\"name\":\"__text\",\"type\":{\"type\":\"map\",\"values\":\"string\"},"
	"\"doc\":\"Values the column's type cannot hold (numeric NaN and "
	"Infinity, arrays of several dimensions): null in the column, the "
	"PostgreSQL text here\"}]";

/* ---- options ----------------------------------------------------------- */

void
xr_feed_opts_init(xr_feed_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->rotate_bytes = 128ull << 20;
	o->rotate_s = 900;
	o->idle_s = 60;
	o->max_open = 64;
}

void
xr_feed_opts_term(xr_feed_opts_t *o)
{
	free(o->out);
	free(o->format);
	free(o->codec);
	free(o->ddl);
	free(o->dialect);
	xr_list_free(o->tables, o->n_tables);
	xr_list_free(o->regions, o->n_regions);
	memset(o, 0, sizeof(*o));
}

static int
parse_size(const char *arg, uint64_t *out)
{
	char              *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno || end == arg)
		return -1;
	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'M')
		v <<= 20, end++;
	else if (*end == 'G')
		v <<= 30, end++;
	if (*end == 'B' || *end == 'i')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end || v == 0)
		return -1;
	*out = v;
	return 0;
}

static int
parse_seconds(const char *arg, int64_t *out)
{
	char     *end;
	long long v;

	errno = 0;
	v = strtoll(arg, &end, 10);
	if (errno || end == arg || v <= 0)
		return -1;
	if (*end == 'm')
		v *= 60, end++;
	else if (*end == 'h')
		v *= 3600, end++;
	else if (*end == 's')
		end++;
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static int
set_str(char **dst, const char *arg)
{
	free(*dst);
	*dst = strdup(arg);
	return *dst ? 0 : -1;
}

int
xr_feed_opts_set(xr_feed_opts_t *o, const char *name, const char *arg,
                 char *errstr, size_t errstr_size)
{
	if (strcmp(name, "out") == 0) {
		if (set_str(&o->out, arg))
			goto nomem;
	} else if (strcmp(name, "format") == 0) {
		if (strcmp(arg, "avro") != 0 && strcmp(arg, "jsonl") != 0) {
			snprintf(errstr, errstr_size, "--format: expected avro or jsonl, "
			         "got \"%s\"", arg);
			return -1;
		}
		if (set_str(&o->format, arg))
			goto nomem;
	} else if (strcmp(name, "codec") == 0) {
		if (strcmp(arg, "deflate") != 0 && strcmp(arg, "snappy") != 0 &&
		    strcmp(arg, "null") != 0) {
			snprintf(errstr, errstr_size, "--codec: expected deflate, snappy "
			         "or null, got \"%s\"", arg);
			return -1;
		}
		if (set_str(&o->codec, arg))
			goto nomem;
	} else if (strcmp(name, "rotate-bytes") == 0) {
		if (parse_size(arg, &o->rotate_bytes)) {
			snprintf(errstr, errstr_size, "--rotate-bytes: expected a size "
			         "such as 134217728 or 128M, got \"%s\"", arg);
			return -1;
		}
	} else if (strcmp(name, "rotate-seconds") == 0 ||
	           strcmp(name, "idle-flush") == 0) {
		int64_t *dst = name[0] == 'r' ? &o->rotate_s : &o->idle_s;

		if (parse_seconds(arg, dst)) {
			snprintf(errstr, errstr_size, "--%s: expected seconds (or 5m, "
			         "1h), got \"%s\"", name, arg);
			return -1;
		}
	} else if (strcmp(name, "max-open") == 0) {
		char *end;
		long  v = strtol(arg, &end, 10);

		if (*end || end == arg || v < 1 || v > 4096) {
			snprintf(errstr, errstr_size, "--max-open: expected 1 to 4096, "
			         "got \"%s\"", arg);
			return -1;
		}
		o->max_open = (int)v;
	} else if (strcmp(name, "table") == 0 || strcmp(name, "tables") == 0) {
		return xr_list_add_csv(&o->tables, &o->n_tables, arg, 1, name, errstr,
		                       errstr_size);
	} else if (strcmp(name, "regions") == 0 ||
	           strcmp(name, "source-regions") == 0) {
		return xr_list_add_csv(&o->regions, &o->n_regions, arg, 0, name,
		                       errstr, errstr_size);
	} else if (strcmp(name, "start") == 0) {
		if (strcmp(arg, "beginning") != 0 && strcmp(arg, "end") != 0) {
			snprintf(errstr, errstr_size, "--start: expected beginning or "
			         "end, got \"%s\"", arg);
			return -1;
		}
		o->from_end = strcmp(arg, "end") == 0;
	} else if (strcmp(name, "once") == 0) {
		o->once = true;
	} else if (strcmp(name, "ddl") == 0) {
		if (set_str(&o->ddl, arg))
			goto nomem;
	} else if (strcmp(name, "dialect") == 0) {
		if (strcmp(arg, "postgres") != 0 && strcmp(arg, "duckdb") != 0 &&
		    strcmp(arg, "clickhouse") != 0) {
			snprintf(errstr, errstr_size, "--dialect: expected postgres, "
			         "duckdb or clickhouse, got \"%s\"", arg);
			return -1;
		}
		if (set_str(&o->dialect, arg))
			goto nomem;
	} else {
		snprintf(errstr, errstr_size, "--%s is not an option of xregion feed",
		         name);
		return -1;
	}
	return 0;
nomem:
	snprintf(errstr, errstr_size, "out of memory");
	return -1;
}

/* ---- plans ------------------------------------------------------------- */

void
xr_feed_plan_free(xr_feed_plan_t *p)
{
	if (!p)
		return;
	free(p->id);
	free(p->key_idx);
	xr_schema_destroy(p->flat);
	free(p->table);
	free(p->dir);
	free(p->source_id);
	free(p->error);
	free(p);
}

/* An Avro name from any text: [A-Za-z0-9_], not starting with a digit. */
static void
avro_name(xr_buf_t *b, const char *s)
{
	if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
		xr_buf_putc(b, '_');
	for (; *s; s++)
		xr_buf_putc(b, ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		                (*s >= '0' && *s <= '9')) ? *s : '_');
}

/* The table's directory: schema.table, '/' and '%' escaped, no leading dot. */
static char *
table_dir(const char *table)
{
	xr_buf_t b;

	xr_buf_init(&b);
	for (; *table; table++) {
		if (*table == '/' || *table == '%' || (b.len == 0 && *table == '.'))
			xr_buf_printf(&b, "%%%02X", (unsigned char)*table);
		else
			xr_buf_putc(&b, *table);
	}
	return b.data;
}

static char *
plan_error(const char *fmt, const char *a, const char *b)
{
	xr_buf_t e;

	xr_buf_init(&e);
	xr_buf_printf(&e, fmt, a, b);
	return e.data;
}

/* The flat schema's JSON: Row's fields, narrowed, then the metadata. */
static int
flat_json(xr_feed_plan_t *p, const char *schema, const char *table,
          xr_buf_t *out, char *errstr, size_t errstr_size)
{
	json_error_t je;
	json_t      *env, *row, *fields, *meta = NULL, *rec = NULL;
	size_t       i, j;
	xr_buf_t     name, ns;
	char        *js;
	int          rc = -1;

	xr_buf_init(&name);
	xr_buf_init(&ns);
	env = json_loadb(p->vs->json.data, p->vs->json.len, 0, &je);
	row = env ? json_array_get(json_object_get(json_array_get(
	              json_object_get(env, "fields"), XR_ENV_BEFORE), "type"), 1)
	          : NULL;
	if (!row || !json_is_array(json_object_get(row, "fields"))) {
		snprintf(errstr, errstr_size, "writer schema %s: no xregion.Row",
		         p->source_id);
		goto out;
	}
	fields = json_deep_copy(json_object_get(row, "fields"));
	meta = json_loads(meta_json, 0, &je);
	if (!fields || !meta)
		abort();
	for (i = 0; i < json_array_size(fields); i++) {
		json_t     *f = json_array_get(fields, i);
		json_t     *t = json_object_get(f, "type");
		const char *fn = json_string_value(json_object_get(f, "name"));

		for (j = 0; fn && j < XR_FM_N; j++)
			if (strcmp(fn, xr_feed_meta_names[j]) == 0 && !p->error)
				p->error = plan_error("column %s of %s has the name of a "
				                      "metadata column of the feed", fn,
				                      p->table);
		if (json_is_array(t) && json_array_size(t) == 3 &&
		    json_is_string(json_array_get(t, 2)) &&
		    strcmp(json_string_value(json_array_get(t, 2)), "string") == 0) {
			json_array_remove(t, 2);
			p->narrow = true;
		}
	}
	json_array_extend(fields, meta);
	avro_name(&name, table);
	xr_buf_puts(&ns, "xregion.feed.");
	avro_name(&ns, schema);
	rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "type", "record",
	                "name", name.data, "namespace", ns.data,
	                "doc", "A change of the table, flattened by xregion feed",
	                "xr.table", p->table, "fields", fields);
	if (!rec)
		abort();
	js = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!js)
		abort();
	xr_buf_puts(out, js);
	free(js);
	rc = 0;
out:
	json_decref(env);
	json_decref(meta);
	json_decref(rec);
	xr_buf_term(&name);
	xr_buf_term(&ns);
	return rc;
}

xr_feed_plan_t *
xr_feed_plan_new(const char *id, const xr_schema_t *vs, const xr_schema_t *ks,
                 const char *schema, const char *table, char *errstr,
                 size_t errstr_size)
{
	xr_feed_plan_t *p = calloc(1, sizeof(*p));
	xr_buf_t        js, t;
	int             i, k;

	if (!p)
		abort();
	xr_buf_init(&js);
	xr_buf_init(&t);
	xr_buf_printf(&t, "%s.%s", schema, table);
	p->id = strdup(id);
	p->vs = vs;
	p->table = t.data;
	p->dir = table_dir(t.data);
	p->source_id = strndup(id, strcspn(id, "|"));
	p->row = xr_avro_row_schema(vs);
	p->nrow = vs->n_row_fields;
	if (!p->id || !p->source_id)
		abort();
	if (!p->row || (int)avro_schema_record_size(p->row) != p->nrow) {
		snprintf(errstr, errstr_size, "writer schema %s is not an xregion "
		         "change event", p->source_id);
		goto fail;
	}
	if (ks) {
		p->key_idx = calloc((size_t)ks->n_row_fields + 1, sizeof(int));
		if (!p->key_idx)
			abort();
		for (k = 0; k < ks->n_row_fields; k++) {
			for (i = 0; i < p->nrow; i++)
				if (strcmp(vs->row_fields[i].name, ks->row_fields[k].name) == 0)
					break;
			if (i == p->nrow) {
				p->error = plan_error("key column %s of %s is not a column "
				                      "of its value schema",
				                      ks->row_fields[k].column, p->table);
				break;
			}
			p->key_idx[p->nkey++] = i;
		}
	}
	if (flat_json(p, schema, table, &js, errstr, errstr_size))
		goto fail;
	if (xr_schema_from_json(js.data, js.len, &p->flat, errstr, errstr_size))
		goto fail;
	xr_buf_term(&js);
	return p;
fail:
	xr_buf_term(&js);
	xr_feed_plan_free(p);
	return NULL;
}

/* ---- the feeder -------------------------------------------------------- */

/* One Kafka partition fed. */
typedef struct fpart_s {
	char    *topic;
	int32_t  partition;
	int64_t  start;      /* where it starts (an offset or a logical one) */
	int64_t  end;        /* --once: the end offset at the start */
	int64_t  next;       /* the next offset to feed (-1: not known) */
	bool     done;
} fpart_t;

typedef struct feed_s {
	const xr_config_t    *conf;
	const xr_feed_opts_t *o;
	xr_metrics_t         *metrics;    /* may be NULL */
	atomic_int           *stop;
	FILE                 *out;        /* jsonl */
	bool                  jsonl;
	rd_kafka_t           *rk;
	rd_kafka_t           *dlq;
	xr_registry_t        *reg;
	xr_sink_t            *sink;
	xr_feed_plan_t      **plans;
	size_t                nplans;
	xr_feed_plan_t       *last_plan;
	fpart_t              *parts;
	size_t                nparts, ndone;
	fpart_t              *last_part;
	xr_buf_t              datum, text, dir, id, line;  /* reused per row */
	xr_span_t            *spans;
	int                  *branches;
	int                   cap;
	xr_event_t            ev;
	uint64_t              events, rows, dead, skipped;
	int                   dlq_failed;
} feed_t;

static void
dlq_report(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	if (m->err) {
		xr_error("feed: dead-letter topic: %s", rd_kafka_err2str(m->err));
		((feed_t *)opaque)->dlq_failed = 1;
	}
}

/* Creates f->dlq, the dead-letter producer.  Returns 0, or -1 with errstr. */
static int
dlq_new(feed_t *f, char *errstr, size_t errstr_size)
{
	f->dlq = xr_kafka_dlq_new(f->conf, "xregion-feed-dlq", dlq_report, NULL,
	                          f, errstr, errstr_size);
	return f->dlq ? 0 : -1;
}

/*
 * Replaces the dead-letter producer if it has a fatal error that a new
 * handle mends (xr_kafka_fatal_renewable).  Returns true when it did.
 */
static bool
dlq_renew(feed_t *f)
{
	char err[512];

	if (!xr_kafka_fatal_renewable(f->dlq))
		return false;
	xr_warn("feed: replacing the dead-letter producer after its fatal error");
	xr_kafka_drop(f->dlq);
	f->dlq = NULL;
	f->dlq_failed = 0;
	if (dlq_new(f, err, sizeof(err))) {
		xr_error("feed: %s", err);
		return false;
	}
	return true;
}

static int
dead_letter_once(feed_t *f, const rd_kafka_message_t *m, const char *reason)
{
	rd_kafka_headers_t *src = NULL, *h;
	rd_kafka_resp_err_t err;
	char                part[16], off[32];

	if (rd_kafka_message_headers(m, &src) == RD_KAFKA_RESP_ERR_NO_ERROR && src)
		h = rd_kafka_headers_copy(src);
	else
		h = rd_kafka_headers_new(5);
	snprintf(part, sizeof(part), "%d", (int)m->partition);
	snprintf(off, sizeof(off), "%" PRId64, m->offset);
	(void)rd_kafka_header_add(h, "xr-dlq-reason", -1, reason, -1);
	(void)rd_kafka_header_add(h, "xr-dlq-topic", -1,
	                          rd_kafka_topic_name(m->rkt), -1);
	(void)rd_kafka_header_add(h, "xr-dlq-partition", -1, part, -1);
	(void)rd_kafka_header_add(h, "xr-dlq-offset", -1, off, -1);
	(void)rd_kafka_header_add(h, "xr-dlq-by", -1, "feed", -1);
	err = rd_kafka_producev(f->dlq,
	                        RD_KAFKA_V_TOPIC(f->conf->feed_dead_letter_topic),
	                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	                        RD_KAFKA_V_KEY(m->key, m->key_len),
	                        RD_KAFKA_V_VALUE(m->payload, m->len),
	                        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
	if (err) {
		rd_kafka_headers_destroy(h);
		xr_error("feed: dead-letter topic %s: %s",
		         f->conf->feed_dead_letter_topic, rd_kafka_err2str(err));
		return -1;
	}
	if (rd_kafka_flush(f->dlq, f->conf->flush_timeout_ms) != 0 ||
	    f->dlq_failed) {
		xr_error("feed: dead-letter topic %s: not acknowledged within %d ms",
		         f->conf->feed_dead_letter_topic, f->conf->flush_timeout_ms);
		return -1;
	}
	f->dead++;
	xr_warn("feed: dead-lettered %s [%d] offset %" PRId64 ": %s",
	        rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset, reason);
	return 0;
}

/*
 * Puts m on the feed's dead-letter topic with its reason and waits for
 * Kafka's acknowledgement: its offset is committed with the files only
 * once it is safe there.  A producer broken by a fatal error that a new
 * one mends is replaced, and the letter sent again once.
 */
static int
dead_letter(feed_t *f, const rd_kafka_message_t *m, const char *reason)
{
	if (!f->dlq)
		return -1;
	(void)dlq_renew(f);
	if (f->dlq && dead_letter_once(f, m, reason) == 0)
		return 0;
	return f->dlq && dlq_renew(f) ? dead_letter_once(f, m, reason) : -1;
}

static bool
selected_table(const feed_t *f, const char *schema, const char *table)
{
	size_t i;
	char   name[300];

	if (!xr_config_publishes(f->conf, schema, table))
		return false;   /* PII, or not configured: never leaves */
	if (f->o->n_tables == 0)
		return true;
	snprintf(name, sizeof(name), "%s.%s", schema, table);
	for (i = 0; i < f->o->n_tables; i++)
		if (strcmp(f->o->tables[i], name) == 0)
			return true;
	return false;
}

static xr_feed_plan_t *
get_plan(feed_t *f, const char *vid, const char *kid, const xr_schema_t *vs,
         const char *schema, const char *table, char *errstr,
         size_t errstr_size, bool *transient)
{
	xr_buf_t        *id = &f->id;
	xr_feed_plan_t  *p, **n;
	const xr_schema_t *ks = NULL;
	size_t           i;

	xr_buf_reset(id);
	xr_buf_printf(id, "%s|%s|%s.%s", vid, kid, schema, table);
	if (f->last_plan && f->last_plan->vs == vs &&
	    strcmp(f->last_plan->id, id->data) == 0)
		return f->last_plan;
	for (i = 0; i < f->nplans; i++)
		if (f->plans[i]->vs == vs && strcmp(f->plans[i]->id, id->data) == 0)
			return f->last_plan = f->plans[i];
	if (kid[0]) {
		uint64_t fp;

		if (xr_schema_id_fingerprint(kid, &fp)) {
			snprintf(errstr, errstr_size, "header xr-key-schema \"%s\" is not "
			         "a schema id", kid);
			return NULL;
		}
		ks = xr_registry_get(f->reg, fp, kid, transient, errstr, errstr_size);
		if (!ks)
			return NULL;
		if (!ks->is_key) {
			snprintf(errstr, errstr_size, "key schema %s is not an xregion "
			         "key", kid);
			return NULL;
		}
	}
	p = xr_feed_plan_new(id->data, vs, ks, schema, table, errstr,
	                     errstr_size);
	if (!p)
		return NULL;
	n = realloc(f->plans, (f->nplans + 1) * sizeof(*n));
	if (!n)
		abort();
	f->plans = n;
	f->plans[f->nplans++] = p;
	if (p->error)
		xr_warn("feed: %s: %s; its events go to %s", p->table, p->error,
		        f->conf->feed_dead_letter_topic);
	return f->last_plan = p;
}

/* Whether the key columns of two Row images differ. */
static int
key_changed(feed_t *f, const xr_feed_plan_t *p, const xr_env_view_t *v,
            bool *changed)
{
	xr_span_t *a, *b;
	int       *ba, *bb, k;

	if (f->cap < p->nrow * 2) {
		f->cap = p->nrow * 2;
		f->spans = realloc(f->spans, (size_t)f->cap * sizeof(*f->spans));
		f->branches = realloc(f->branches, (size_t)f->cap * sizeof(int));
		if (!f->spans || !f->branches)
			abort();
	}
	a = f->spans;
	b = f->spans + p->nrow;
	ba = f->branches;
	bb = f->branches + p->nrow;
	if (xr_avro_row_fields(p->row, v->body + v->before.off, v->before.len, a,
	                       ba, p->nrow) ||
	    xr_avro_row_fields(p->row, v->body + v->after.off, v->after.len, b,
	                       bb, p->nrow))
		return -1;
	*changed = false;
	for (k = 0; k < p->nkey; k++) {
		int i = p->key_idx[k];

		if (a[i].len != b[i].len ||
		    memcmp(v->body + v->before.off + a[i].off,
		           v->body + v->after.off + b[i].off, a[i].len) != 0)
			*changed = true;
	}
	return 0;
}

/*
 * Appends a Row image's bytes to the flat datum: as they stand, or with
 * each value in a text branch replaced by null and put in __text (whose
 * encoding goes to text).
 */
static int
put_row(feed_t *f, const xr_feed_plan_t *p, const xr_env_view_t *v,
        const xr_span_t *img, xr_buf_t *text)
{
	const unsigned char *base = v->body + img->off;
	int                  i, n = 0;
	size_t               ix;

	if (!p->narrow) {
		xr_buf_append(&f->datum, base, img->len);
		xr_avro_put_long(text, 0);
		return 0;
	}
	if (f->cap < p->nrow) {
		f->cap = p->nrow * 2;
		f->spans = realloc(f->spans, (size_t)f->cap * sizeof(*f->spans));
		f->branches = realloc(f->branches, (size_t)f->cap * sizeof(int));
		if (!f->spans || !f->branches)
			abort();
	}
	if (xr_avro_row_fields(p->row, base, img->len, f->spans, f->branches,
	                       p->nrow))
		return -1;
	for (i = 0; i < p->nrow; i++)
		if (f->branches[i] == 2)
			n++;
	if (n)
		xr_avro_put_long(text, n);
	for (i = 0; i < p->nrow; i++) {
		const unsigned char *fv = base + f->spans[i].off;

		if (f->branches[i] != 2) {
			xr_buf_append(&f->datum, fv, f->spans[i].len);
			continue;
		}
		xr_avro_put_long(&f->datum, 0);   /* null */
		xr_avro_put_bytes(text, p->vs->row_fields[i].column,
		                  strlen(p->vs->row_fields[i].column));
		/* The value: a string, after its union index (a varint). */
		for (ix = 0; ix < f->spans[i].len && (fv[ix] & 0x80); ix++)
			;
		ix++;
		if (ix > f->spans[i].len)
			return -1;
		xr_buf_append(text, fv + ix, f->spans[i].len - ix);
	}
	xr_avro_put_long(text, 0);
	return 0;
}

/* What one flat row is made of. */
typedef struct frow_s {
	const char      *op;
	bool             deleted;
	const xr_span_t *img;        /* NULL: every column null (truncate) */
	bool             before;     /* jsonl: the image is ev.before */
	int64_t          version;
	bool             unchanged;  /* carries the event's unchanged list */
} frow_t;

/* Layout directory of a row: <table>/dt=YYYY-MM-DD/hr=HH. */
static void
row_dir(xr_buf_t *b, const xr_feed_plan_t *p, int64_t ts_us)
{
	time_t    secs = (time_t)(ts_us >= 0 ? ts_us / 1000000
	                                     : -((-ts_us + 999999) / 1000000));
	struct tm tm;

	xr_buf_reset(b);
	if (!gmtime_r(&secs, &tm))
		memset(&tm, 0, sizeof(tm));
	xr_buf_printf(b, "%s/dt=%04d-%02d-%02d/hr=%02d", p->dir, tm.tm_year + 1900,
	              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour);
}

static void
put_str(xr_buf_t *b, const unsigned char *base, xr_span_t s)
{
	xr_avro_put_bytes(b, base + s.off, s.len);
}

/* Appends one flat row in Avro to the sink. */
static int
write_avro(feed_t *f, const rd_kafka_message_t *m, const xr_feed_plan_t *p,
           const xr_env_view_t *v, const frow_t *r, const char *dir,
           int64_t layout_ts, char *errstr, size_t errstr_size)
{
	xr_buf_t        *text = &f->text;
	xr_sink_schema_t sch;
	int              i, rc;

	xr_buf_reset(&f->datum);
	xr_buf_reset(text);
	if (!r->img) {
		for (i = 0; i < p->nrow; i++)
			xr_avro_put_long(&f->datum, 0);
		xr_avro_put_long(text, 0);
	} else if (put_row(f, p, v, r->img, text)) {
		snprintf(errstr, errstr_size, "row image does not fit its schema");
		return 1;
	}
	xr_avro_put_bytes(&f->datum, r->op, strlen(r->op));
	xr_buf_putc(&f->datum, r->deleted ? 1 : 0);
	put_str(&f->datum, v->body, v->has_origin ? v->origin : v->region);
	xr_avro_put_long(&f->datum, v->commit_ts);
	xr_avro_put_long(&f->datum, v->commit_lsn);
	xr_avro_put_long(&f->datum, v->lsn);
	xr_avro_put_long(&f->datum, v->txid);
	if (v->has_tx_index) {
		xr_avro_put_long(&f->datum, 1);
		xr_avro_put_long(&f->datum, v->tx_index);
	} else {
		xr_avro_put_long(&f->datum, 0);
	}
	put_str(&f->datum, v->body, v->event_id);
	xr_avro_put_long(&f->datum, r->version);
	if (r->unchanged)
		xr_buf_append(&f->datum, v->body + v->unchanged.off,
		              v->unchanged.len);
	else
		xr_avro_put_long(&f->datum, 0);
	xr_buf_append(&f->datum, text->data, text->len);
	sch.json = p->flat->json.data;
	sch.fingerprint = p->flat->fingerprint;
	sch.table = p->table;
	sch.source_schema = p->source_id;
	rc = xr_sink_append(f->sink, rd_kafka_topic_name(m->rkt), m->partition,
	                    m->offset, dir, &sch, layout_ts, f->datum.data,
	                    f->datum.len, errstr, errstr_size);
	return rc ? -1 : 0;
}

static void
json_time(xr_buf_t *b, int64_t us)
{
	time_t    secs = (time_t)(us >= 0 ? us / 1000000
	                                  : -((-us + 999999) / 1000000));
	int64_t   frac = us - (int64_t)secs * 1000000;
	struct tm tm;

	if (!gmtime_r(&secs, &tm)) {
		xr_buf_printf(b, "%" PRId64, us);
		return;
	}
	xr_buf_printf(b, "\"%04d-%02d-%02dT%02d:%02d:%02d.%06" PRId64 "Z\"",
	              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	              tm.tm_min, tm.tm_sec, frac);
}

static void
json_span(xr_buf_t *b, const unsigned char *base, xr_span_t s)
{
	xr_buf_json_str(b, (const char *)base + s.off, s.len);
}

/* One flat row as a JSON line: values in PostgreSQL's text form. */
static int
write_json(feed_t *f, const xr_feed_plan_t *p, const xr_env_view_t *v,
           const frow_t *r)
{
	xr_buf_t        *b = &f->line;
	const xr_eval_t *vals = r->before ? f->ev.before : f->ev.after;
	bool             first_unch = true;
	int              i;

	xr_buf_reset(b);
	xr_buf_putc(b, '{');
	for (i = 0; i < p->nrow; i++) {
		const xr_field_t *fd = &p->vs->row_fields[i];
		const char       *t = r->img ? xr_event_text(&f->ev, &vals[i]) : NULL;

		xr_buf_json_str(b, fd->column, strlen(fd->column));
		xr_buf_putc(b, ':');
		if (!t || (r->img && vals[i].unchanged)) {
			xr_buf_puts(b, "null");
		} else if (!fd->type.is_array && fd->type.at == XR_AT_BOOLEAN) {
			xr_buf_puts(b, t[0] == 't' ? "true" : "false");
		} else if (!fd->type.is_array &&
		           (fd->type.at == XR_AT_INT || fd->type.at == XR_AT_LONG ||
		            ((fd->type.at == XR_AT_FLOAT ||
		              fd->type.at == XR_AT_DOUBLE) &&
		             strpbrk(t, "NI") == NULL))) {
			xr_buf_puts(b, t);
		} else {
			xr_buf_json_str(b, t, strlen(t));
		}
		xr_buf_putc(b, ',');
	}
	xr_buf_printf(b, "\"__op\":\"%s\",\"__deleted\":%s,\"__region\":", r->op,
	              r->deleted ? "true" : "false");
	json_span(b, v->body, v->has_origin ? v->origin : v->region);
	xr_buf_puts(b, ",\"__commit_ts\":");
	json_time(b, v->commit_ts);
	xr_buf_printf(b, ",\"__commit_lsn\":%" PRId64 ",\"__lsn\":%" PRId64
	              ",\"__txid\":%" PRId64, v->commit_lsn, v->lsn, v->txid);
	if (v->has_tx_index)
		xr_buf_printf(b, ",\"__tx_index\":%" PRId64, v->tx_index);
	else
		xr_buf_puts(b, ",\"__tx_index\":null");
	xr_buf_puts(b, ",\"__event_id\":");
	json_span(b, v->body, v->event_id);
	xr_buf_printf(b, ",\"__version\":%" PRId64 ",\"__unchanged\":[",
	              r->version);
	for (i = 0; r->unchanged && i < p->nrow; i++) {
		if (!f->ev.after[i].unchanged)
			continue;
		if (!first_unch)
			xr_buf_putc(b, ',');
		first_unch = false;
		xr_buf_json_str(b, p->vs->row_fields[i].column,
		                strlen(p->vs->row_fields[i].column));
	}
	xr_buf_puts(b, "]}\n");
	if (fwrite(b->data, 1, b->len, f->out) != b->len) {
		xr_error("feed: stdout: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Feeds one message.  Returns 0 (done: written, skipped or dead-lettered),
 * 1 when the schemas topic cannot be read now (try the message again), or
 * -1 on a failure that stops the feeder.
 */
static int
feed_message(feed_t *f, const rd_kafka_message_t *m)
{
	char               vid[80] = "", kid[80] = "", buf[64], err[512];
	char               nsp[256], rel[256];
	const void        *body;
	size_t             blen;
	const xr_schema_t *vs;
	xr_feed_plan_t    *p;
	xr_env_view_t      v;
	bool               transient = false, changed = false;
	frow_t             rows[2];
	int                nrows = 0, i;
	int64_t            version, layout_ts;

	err[0] = '\0';
	if (xr_kafka_header(m, "xr-for", buf, sizeof(buf))) {
		f->skipped++;   /* a backfill for a joining region only */
		return 0;
	}
	if (!m->payload) {
		snprintf(err, sizeof(err), "no value");
		goto dead;
	}
	(void)xr_kafka_header(m, "xr-schema", vid, sizeof(vid));
	(void)xr_kafka_header(m, "xr-key-schema", kid, sizeof(kid));
	vs = xr_registry_resolve(f->reg, m->payload, m->len, vid[0] ? vid : NULL,
	                         &body, &blen, &transient, err, sizeof(err));
	if (!vs)
		goto retry_or_dead;
	if (!vs->is_envelope) {
		snprintf(err, sizeof(err), "writer schema %s is not an xregion "
		         "change event", vid);
		goto dead;
	}
	if (xr_avro_env_view(vs, body, blen, &v, err, sizeof(err)))
		goto dead;
	if (v.schema.len >= sizeof(nsp) || v.table.len >= sizeof(rel)) {
		snprintf(err, sizeof(err), "table name too long");
		goto dead;
	}
	memcpy(nsp, v.body + v.schema.off, v.schema.len);
	nsp[v.schema.len] = '\0';
	memcpy(rel, v.body + v.table.off, v.table.len);
	rel[v.table.len] = '\0';
	if (!selected_table(f, nsp, rel) ||
	    (v.op == XR_OP_TRUNCATE && m->partition != 0)) {
		/* Not fed; a truncate is fed once, from partition 0. */
		f->skipped++;
		return 0;
	}
	p = get_plan(f, vid[0] ? vid : "-", kid, vs, nsp, rel, err, sizeof(err),
	             &transient);
	if (!p)
		goto retry_or_dead;
	if (p->error) {
		snprintf(err, sizeof(err), "%s", p->error);
		goto dead;
	}
	/* The version the regions compare. */
	version = v.commit_ts;
	if (v.has_vclock)
		version = v.vc_hlc;
	else if (xr_kafka_header(m, "xr-version-ts", buf, sizeof(buf)))
		version = strtoll(buf, NULL, 10);
	switch (v.op) {
	case XR_OP_INSERT:
	case XR_OP_SNAPSHOT_READ:
		if (!v.has_after)
			goto shape;
		rows[nrows++] = (frow_t){ xr_op_names[v.op], false, &v.after, false,
		                          version, false };
		break;
	case XR_OP_UPDATE:
		if (!v.has_after)
			goto shape;
		if (v.has_before && p->nkey > 0) {
			if (key_changed(f, p, &v, &changed))
				goto shape;
			/* The old key goes: a delete row, ahead of the update. */
			if (changed)
				rows[nrows++] = (frow_t){ "delete", true, &v.before, true,
				                          v.has_vc_before ? v.vc_before_hlc
				                                          : version, false };
		}
		rows[nrows++] = (frow_t){ "update", false, &v.after, false, version,
		                          true };
		break;
	case XR_OP_DELETE:
		if (!v.has_before)
			goto shape;
		rows[nrows++] = (frow_t){ "delete", true, &v.before, true, version,
		                          false };
		break;
	case XR_OP_TRUNCATE:
		rows[nrows++] = (frow_t){ "truncate", true, NULL, false, version,
		                          false };
		break;
	}
	f->events++;
	if (f->jsonl) {
		int rc = xr_event_decode(&f->ev, f->reg, m->payload, m->len,
		                         vid[0] ? vid : NULL, err, sizeof(err));

		if (rc == -2)
			return 1;
		if (rc)
			goto dead;
		for (i = 0; i < nrows; i++)
			if (write_json(f, p, &v, &rows[i]))
				return -1;
		f->rows += (uint64_t)nrows;
		return 0;
	}
	/* Changes land by commit time; a backfill's rows by when it read them. */
	layout_ts = v.has_origin ? v.produced_at : v.commit_ts;
	row_dir(&f->dir, p, layout_ts);
	for (i = 0; i < nrows; i++) {
		int rc = write_avro(f, m, p, &v, &rows[i], f->dir.data, layout_ts, err,
		                    sizeof(err));

		if (rc) {
			if (rc > 0)
				goto dead;
			xr_error("feed: %s", err);
			return -1;
		}
	}
	f->rows += (uint64_t)nrows;
	return 0;
shape:
	snprintf(err, sizeof(err), "a %s event without the row image it needs",
	         xr_op_names[v.op]);
	goto dead;
retry_or_dead:
	if (transient) {
		xr_warn("feed: %s; trying again", err);
		return 1;
	}
dead:
	return dead_letter(f, m, err[0] ? err : "undecodable") ? -1 : 0;
}

/* ---- Kafka ------------------------------------------------------------- */

static bool
selected_region(const feed_t *f, const char *region)
{
	size_t i;

	if (f->o->n_regions == 0)
		return true;
	for (i = 0; i < f->o->n_regions; i++)
		if (strcmp(f->o->regions[i], region) == 0)
			return true;
	return false;
}

static void
add_part(feed_t *f, const char *topic, int32_t partition)
{
	fpart_t *n = realloc(f->parts, (f->nparts + 1) * sizeof(*n));

	if (!n)
		abort();
	f->parts = n;
	n = &f->parts[f->nparts++];
	memset(n, 0, sizeof(*n));
	n->topic = strdup(topic);
	if (!n->topic)
		abort();
	n->partition = partition;
	n->end = -1;
	n->next = -1;
}

/*
 * The partitions to feed: every partition of the topic of each selected
 * table in each selected region, as the cluster has them now.
 */
static int
find_parts(feed_t *f, char *errstr, size_t errstr_size)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t             e;
	size_t                          r, t;
	int                             i, j;

	e = rd_kafka_metadata(f->rk, 1, NULL, &md, KAFKA_TIMEOUT_MS);
	if (e) {
		snprintf(errstr, errstr_size, "kafka: metadata of %s: %s",
		         f->conf->brokers, rd_kafka_err2str(e));
		return -1;
	}
	for (r = 0; r < f->conf->n_regions; r++) {
		const char *region = f->conf->regions[r];

		if (!selected_region(f, region))
			continue;
		for (t = 0; t < f->conf->n_tables; t++) {
			const xr_table_conf_t *tc = &f->conf->tables[t];
			char                   name[600];
			bool                   found = false;

			if (!selected_table(f, tc->schema, tc->name))
				continue;
			snprintf(name, sizeof(name), "%s.%s.%s.%s", f->conf->topic_prefix,
			         region, tc->schema, tc->name);
			for (i = 0; i < md->topic_cnt; i++) {
				if (strcmp(md->topics[i].topic, name) != 0 ||
				    md->topics[i].err)
					continue;
				found = true;
				for (j = 0; j < md->topics[i].partition_cnt; j++)
					add_part(f, name, md->topics[i].partitions[j].id);
			}
			if (!found)
				xr_warn("feed: topic %s does not exist (yet): not fed", name);
		}
	}
	rd_kafka_metadata_destroy(md);
	if (f->nparts == 0) {
		snprintf(errstr, errstr_size, "no topic to feed: no table marked "
		         "pii: false%s has a topic in Kafka yet",
		         f->o->n_tables || f->o->n_regions ? " among those selected"
		                                           : "");
		return -1;
	}
	return 0;
}

static int
start_kafka(feed_t *f, char *errstr, size_t errstr_size)
{
	static const char *const defaults[] = {
		"client.id", "xregion-feed",
		"group.id", "xregion-feed-unused",   /* assign only; never joined */
		"enable.auto.commit", "false",
		"enable.auto.offset.store", "false",
		"enable.partition.eof", "true",
		/* A position retention has passed: from the oldest there is. */
		"auto.offset.reset", "earliest",
		"fetch.max.bytes", "67108864",
		/*
		 * librdkafka 2.0 stops fetching a partition for a whole second
		 * once its local queue is full: a queue of about one second of
		 * feeding keeps the feeder from waiting on it (1,000,000 events
		 * took 6.7 s with the defaults, 2.3 s with these).
		 */
		"queued.min.messages", "300000",
		"queued.max.messages.kbytes", "65536",
		NULL
	};
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_conf_t *kc;
	size_t           i;
	char             kerr[512];

	if (dlq_new(f, errstr, errstr_size))
		return -1;
	kc = xr_kafka_conf_new(f->conf, defaults, NULL, errstr, errstr_size);
	if (!kc)
		return -1;
	f->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof(kerr));
	if (!f->rk) {
		rd_kafka_conf_destroy(kc);
		snprintf(errstr, errstr_size, "kafka: %s", kerr);
		return -1;
	}
	rd_kafka_poll_set_consumer(f->rk);
	if (find_parts(f, errstr, errstr_size))
		return -1;
	l = rd_kafka_topic_partition_list_new((int)f->nparts);
	for (i = 0; i < f->nparts; i++) {
		fpart_t *p = &f->parts[i];
		int64_t  pos = f->sink ? xr_sink_position(f->sink, p->topic,
		                                          p->partition) : -1;
		int64_t  lo = 0, hi = 0;
		rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
		    f->rk, p->topic, p->partition, &lo, &hi, KAFKA_TIMEOUT_MS);

		if (e) {
			snprintf(errstr, errstr_size, "kafka: offsets of %s [%d]: %s",
			         p->topic, (int)p->partition, rd_kafka_err2str(e));
			rd_kafka_topic_partition_list_destroy(l);
			return -1;
		}
		if (pos >= 0 && pos < lo)
			xr_warn("feed: %s [%d]: offsets %" PRId64 " to %" PRId64 " are "
			        "gone (retention) before they were fed; going on from "
			        "%" PRId64, p->topic, (int)p->partition, pos, lo - 1, lo);
		p->start = pos >= 0 ? pos : RD_KAFKA_OFFSET_BEGINNING;
		p->next = pos;
		if (pos < 0 && f->o->from_end) {
			/* Remembered at the first commit, even if nothing comes. */
			p->start = p->next = hi;
			if (hi > 0 && f->sink &&
			    xr_sink_advance(f->sink, p->topic, p->partition, hi - 1,
			                    errstr, errstr_size)) {
				rd_kafka_topic_partition_list_destroy(l);
				return -1;
			}
		}
		if (f->o->once) {
			p->end = hi;
			if (p->start == RD_KAFKA_OFFSET_END || hi <= lo ||
			    (p->start >= 0 && p->start >= hi)) {
				p->done = true;
				f->ndone++;
			}
		}
		rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset =
		    p->start;
		xr_debug("feed: %s [%d] from %" PRId64, p->topic, (int)p->partition,
		         p->start);
	}
	if (rd_kafka_assign(f->rk, l)) {
		snprintf(errstr, errstr_size, "kafka: cannot assign the partitions");
		rd_kafka_topic_partition_list_destroy(l);
		return -1;
	}
	rd_kafka_topic_partition_list_destroy(l);
	f->reg = xr_registry_new(f->conf, errstr, errstr_size);
	return f->reg ? 0 : -1;
}

static fpart_t *
part_of(feed_t *f, const rd_kafka_message_t *m)
{
	const char *topic = rd_kafka_topic_name(m->rkt);
	size_t      i;

	if (f->last_part && f->last_part->partition == m->partition &&
	    strcmp(f->last_part->topic, topic) == 0)
		return f->last_part;
	for (i = 0; i < f->nparts; i++)
		if (f->parts[i].partition == m->partition &&
		    strcmp(f->parts[i].topic, topic) == 0)
			return f->last_part = &f->parts[i];
	return NULL;
}

static void
mark_done(feed_t *f, fpart_t *p, int64_t next)
{
	if (!f->o->once || !p || p->done || next < p->end)
		return;
	p->done = true;
	f->ndone++;
}

static void
feed_free(feed_t *f)
{
	size_t i;

	if (f->rk) {
		(void)rd_kafka_consumer_close(f->rk);
		rd_kafka_destroy(f->rk);
	}
	if (f->dlq)
		rd_kafka_destroy(f->dlq);
	xr_registry_destroy(f->reg);
	xr_sink_close(f->sink);
	for (i = 0; i < f->nplans; i++)
		xr_feed_plan_free(f->plans[i]);
	free(f->plans);
	for (i = 0; i < f->nparts; i++)
		free(f->parts[i].topic);
	free(f->parts);
	free(f->spans);
	free(f->branches);
	xr_buf_term(&f->datum);
	xr_buf_term(&f->text);
	xr_buf_term(&f->dir);
	xr_buf_term(&f->id);
	xr_buf_term(&f->line);
	xr_event_term(&f->ev);
}

static void
progress(feed_t *f, double secs, uint64_t rows0)
{
	xr_sink_stats_t st = { 0 };

	if (f->sink)
		xr_sink_stats(f->sink, &st);
	xr_info("feed: %" PRIu64 " events, %" PRIu64 " rows (%.0f rows/s), %"
	        PRIu64 " files committed, %" PRIu64 " skipped, %" PRIu64
	        " dead-lettered", f->events, f->rows,
	        secs > 0 ? (double)(f->rows - rows0) / secs : 0.0, st.files,
	        f->skipped, f->dead);
}

/* The counters of /metrics (metrics_listen). */
static void
publish_metrics(feed_t *f)
{
	xr_sink_stats_t st = { 0 };
	uint64_t        lag = 0;
	size_t          i;

	if (!f->metrics)
		return;
	if (f->sink)
		xr_sink_stats(f->sink, &st);
	for (i = 0; i < f->nparts; i++) {
		int64_t lo, hi;

		if (rd_kafka_get_watermark_offsets(f->rk, f->parts[i].topic,
		                                   f->parts[i].partition, &lo,
		                                   &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
		    hi > 0)
			lag += (uint64_t)(hi - (f->parts[i].next > lo ? f->parts[i].next
			                                               : lo));
	}
	atomic_store(&f->metrics->feed_events, f->events);
	atomic_store(&f->metrics->feed_rows, f->rows);
	atomic_store(&f->metrics->feed_dead_lettered, f->dead);
	atomic_store(&f->metrics->feed_files, st.files);
	atomic_store(&f->metrics->feed_commit_us, (uint64_t)st.last_commit_us);
	atomic_store(&f->metrics->feed_lag, lag);
}

static int
feed_loop(feed_t *f)
{
	char    err[1024];
	int64_t now, start = xr_mono_us(), last_check = start, last_log = start;
	uint64_t rows_at_log = 0;

	while (!atomic_load(f->stop) && !(f->o->once && f->ndone == f->nparts)) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(f->rk, 100);

		if (m) {
			fpart_t *p = part_of(f, m);

			if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
				mark_done(f, p, m->offset);
			} else if (m->err) {
				xr_warn("feed: kafka: %s", rd_kafka_message_errstr(m));
			} else {
				int rc;

				while ((rc = feed_message(f, m)) == 1 &&
				       !atomic_load(f->stop))
					sleep(1);
				if (rc) {
					rd_kafka_message_destroy(m);
					if (rc == 1)
						break;   /* stopping: not fed, read again */
					return 1;
				}
				if (f->sink &&
				    xr_sink_advance(f->sink, rd_kafka_topic_name(m->rkt),
				                    m->partition, m->offset, err,
				                    sizeof(err))) {
					xr_error("feed: %s", err);
					rd_kafka_message_destroy(m);
					return 1;
				}
				mark_done(f, p, m->offset + 1);
				if (p)
					p->next = m->offset + 1;
			}
			rd_kafka_message_destroy(m);
		}
		now = xr_mono_us();
		if (now - last_check >= 200000) {
			last_check = now;
			if (f->jsonl && fflush(f->out) != 0) {
				xr_error("feed: stdout: %s", strerror(errno));
				return 1;
			}
			if (f->sink &&
			    xr_sink_commit_due(f->sink, now, false, err, sizeof(err))) {
				xr_error("feed: %s", err);
				return 1;
			}
			publish_metrics(f);
		}
		if (!f->jsonl && now - last_log >= 10000000) {
			progress(f, (double)(now - last_log) / 1e6, rows_at_log);
			rows_at_log = f->rows;
			last_log = now;
		}
	}
	if (f->sink && xr_sink_commit_due(f->sink, xr_mono_us(), true, err,
	                                  sizeof(err))) {
		xr_error("feed: %s", err);
		return 1;
	}
	if (f->jsonl)
		fflush(f->out);
	else
		progress(f, (double)(xr_mono_us() - start) / 1e6, 0);
	return 0;
}

int
xr_feed_command(const xr_config_t *conf, const xr_feed_opts_t *o,
                xr_metrics_t *metrics, atomic_int *stop, FILE *out,
                FILE *err_out)
{
	feed_t         f;
	char           err[1024];
	int            rc = 1;
	const char    *format = o->format ? o->format : NULL;
	xr_sink_conf_t sc;

	memset(&f, 0, sizeof(f));
	f.conf = conf;
	f.o = o;
	f.metrics = metrics;
	f.stop = stop;
	f.out = out;
	if (o->ddl)
		return xr_feed_ddl_command(conf, o, out, err_out);
	if (!o->out) {
		fprintf(err_out, "xregion feed: --out DIR (or --out - with --format "
		        "jsonl) is required\n");
		return 2;
	}
	if (!format)
		format = strcmp(o->out, "-") == 0 ? "jsonl" : "avro";
	f.jsonl = strcmp(format, "jsonl") == 0;
	if (f.jsonl != (strcmp(o->out, "-") == 0)) {
		fprintf(err_out, "xregion feed: %s\n", f.jsonl
		        ? "--format jsonl writes to stdout only: use --out -"
		        : "--out - needs --format jsonl (Avro files go to a "
		          "directory)");
		return 2;
	}
	xr_buf_init(&f.datum);
	xr_buf_init(&f.text);
	xr_buf_init(&f.dir);
	xr_buf_init(&f.id);
	xr_buf_init(&f.line);
	xr_event_init(&f.ev);
	if (!f.jsonl) {
		sc.out = o->out;
		sc.codec = o->codec ? o->codec : "snappy";
		sc.rotate_bytes = o->rotate_bytes;
		sc.rotate_us = o->rotate_s * 1000000;
		sc.idle_us = o->idle_s * 1000000;
		sc.max_open = o->max_open;
		f.sink = xr_sink_open(&sc, err, sizeof(err));
		if (!f.sink) {
			xr_error("feed: %s", err);
			goto out;
		}
	}
	if (start_kafka(&f, err, sizeof(err))) {
		xr_error("feed: %s", err);
		goto out;
	}
	xr_info("feed: %zu partitions of %s%s into %s (%s)", f.nparts,
	        o->n_regions ? "the chosen regions" : "every region",
	        o->once ? ", up to their end offsets now," : "",
	        f.jsonl ? "stdout" : o->out,
	        f.jsonl ? "jsonl" : sc.codec);
	rc = feed_loop(&f);
out:
	feed_free(&f);
	return rc;
}
