/* progress.c: the regions' progress records (see progress.h). */
#include "consumer/progress.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "common/kafka_conf.h"
#include "common/log.h"
#include "common/buf.h"
#include "common/mem.h"

/* One producer of a region (key producer/<R> or producer/<R>/<stream>). */
typedef struct pstream_s {
	char    name[40];
	int64_t through;
} pstream_t;

struct xr_progress_s {
	const xr_config_t *conf;
	rd_kafka_t        *rk;
	rd_kafka_t        *prod;     /* for publish, made on first use */
	size_t             n;        /* conf->n_regions */
	pstream_t        **streams;  /* per region: its producers' "through" */
	size_t            *nstreams;
	int64_t           *applied;  /* [reader * n + source] */
};

static int
region_index(const xr_progress_t *p, const char *region)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		if (strcmp(p->conf->regions[i], region) == 0)
			return (int)i;
	return -1;
}

/* Broker errors: the main clients report them; here they only wait. */
static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	(void)opaque;
	xr_debug("progress topic client: %s: %s",
	         rd_kafka_err2str((rd_kafka_resp_err_t)err), reason);
}

/* librdkafka's own log lines, at debug: the main clients log theirs. */
static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	(void)level;
	xr_debug("progress topic client: %s: %s", fac, buf);
}

xr_progress_t *
xr_progress_new(const xr_config_t *conf, char *errstr, size_t errstr_size)
{
	static const char *const locked[] = {
		"enable.auto.commit", "false",
		NULL
	};
	const char *defaults[] = {
		"client.id", "xregion-progress",
		"group.id", "xregion-progress",   /* never joins: assign() only */
		"enable.partition.eof", "false",
		NULL
	};
	xr_progress_t *p = xr_calloc(1, sizeof(*p));
	rd_kafka_conf_t *kc;
	rd_kafka_topic_partition_list_t *tp;
	rd_kafka_resp_err_t err;
	size_t i;

	p->conf = conf;
	p->n = conf->n_regions;
	p->streams = xr_calloc(p->n ? p->n : 1, sizeof(*p->streams));
	p->nstreams = xr_calloc(p->n ? p->n : 1, sizeof(*p->nstreams));
	p->applied = xr_calloc(p->n ? p->n * p->n : 1, sizeof(int64_t));
	for (i = 0; i < p->n * p->n; i++)
		p->applied[i] = XR_PROGRESS_NONE;
	kc = xr_kafka_conf_new(conf, defaults, locked, errstr, errstr_size);
	if (!kc)
		goto fail;
	rd_kafka_conf_set_error_cb(kc, error_cb);
	rd_kafka_conf_set_log_cb(kc, log_cb);
	p->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, errstr_size);
	if (!p->rk) {
		rd_kafka_conf_destroy(kc);
		goto fail;
	}
	rd_kafka_poll_set_consumer(p->rk);
	tp = rd_kafka_topic_partition_list_new((int)p->n);
	for (i = 0; i < p->n; i++)
		rd_kafka_topic_partition_list_add(tp, conf->progress_topics[i], 0)
			->offset = RD_KAFKA_OFFSET_BEGINNING;
	err = rd_kafka_assign(p->rk, tp);
	rd_kafka_topic_partition_list_destroy(tp);
	if (err) {
		snprintf(errstr, errstr_size, "progress topics: %s",
		         rd_kafka_err2str(err));
		goto fail;
	}
	return p;
fail:
	xr_progress_destroy(p);
	return NULL;
}

void
xr_progress_destroy(xr_progress_t *p)
{
	size_t i;

	if (!p)
		return;
	if (p->rk) {
		(void)rd_kafka_assign(p->rk, NULL);
		rd_kafka_destroy(p->rk);
	}
	if (p->prod) {
		(void)rd_kafka_flush(p->prod, 1000);
		rd_kafka_destroy(p->prod);
	}
	for (i = 0; p->streams && i < p->n; i++)
		free(p->streams[i]);
	free(p->streams);
	free(p->nstreams);
	free(p->applied);
	free(p);
}

/* The region whose progress topic topic is, or -1. */
static int
topic_region(const xr_progress_t *p, const char *topic)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		if (strcmp(p->conf->progress_topics[i], topic) == 0)
			return (int)i;
	return -1;
}

/*
 * True when m's key is "producer/<region>", "producer/<region>/<stream>"
 * or "consumer/<region>"; *stream gets the stream ("" for none).
 */
static bool
key_names(const rd_kafka_message_t *m, const char *region, char *stream,
          size_t stream_size)
{
	const char *k = m->key;
	size_t      n = strlen(region), len = m->key_len;

	stream[0] = '\0';
	if (len < 9 + n || memcmp(k + 9, region, n) != 0)
		return false;
	if (memcmp(k, "consumer/", 9) == 0)
		return len == 9 + n;
	if (memcmp(k, "producer/", 9) != 0)
		return false;
	if (len == 9 + n)
		return true;
	if (k[9 + n] != '/' || len - 10 - n == 0 || len - 10 - n >= stream_size)
		return false;
	memcpy(stream, k + 10 + n, len - 10 - n);
	stream[len - 10 - n] = '\0';
	return true;
}

/* Forgets region r's producer stream name. */
static void
forget_stream(xr_progress_t *p, size_t r, const char *name)
{
	size_t i;

	for (i = 0; i < p->nstreams[r]; i++)
		if (strcmp(p->streams[r][i].name, name) == 0) {
			p->streams[r][i] = p->streams[r][--p->nstreams[r]];
			return;
		}
}

/* Region r's producer stream name: its "through" (added if new). */
static int64_t *
stream_through(xr_progress_t *p, size_t r, const char *name)
{
	size_t     i;
	pstream_t *s;

	for (i = 0; i < p->nstreams[r]; i++)
		if (strcmp(p->streams[r][i].name, name) == 0)
			return &p->streams[r][i].through;
	p->streams[r] = xr_reallocarray(p->streams[r], p->nstreams[r] + 1,
	                                sizeof(**p->streams));
	s = &p->streams[r][p->nstreams[r]++];
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->through = XR_PROGRESS_NONE;
	return &s->through;
}

/*
 * Takes one record.  A record counts only for the region whose topic it
 * is in: a region may write only its own topic (Kafka ACLs), so it cannot
 * speak for another one.  Others are skipped, with a warning.
 */
static void
take(xr_progress_t *p, const rd_kafka_message_t *m)
{
	json_error_t jerr;
	json_t      *v, *applied, *t, *rv;
	const char  *src, *topic = rd_kafka_topic_name(m->rkt);
	char         stream[40];
	int          r, s;

	if (!m->key)
		return;
	if ((r = topic_region(p, topic)) < 0)
		return;
	if (!m->payload) {
		/* A stream's record deleted: that producer has retired. */
		if (key_names(m, p->conf->regions[r], stream, sizeof(stream)) &&
		    stream[0])
			forget_stream(p, (size_t)r, stream);
		return;
	}
	v = json_loadb(m->payload, m->len, 0, &jerr);
	rv = v ? json_object_get(v, "region") : NULL;
	if (!json_is_string(rv) ||
	    strcmp(json_string_value(rv), p->conf->regions[r]) != 0 ||
	    !key_names(m, p->conf->regions[r], stream, sizeof(stream))) {
		xr_warn("progress topic %s: skipped a record at offset %" PRId64
		        " that does not speak for region %s (its key %.*s)", topic,
		        m->offset, p->conf->regions[r],
		        (int)(m->key_len < 64 ? m->key_len : 64),
		        (const char *)m->key);
		json_decref(v);
		return;
	}
	if (m->key_len > 9 && memcmp(m->key, "producer/", 9) == 0) {
		t = json_object_get(v, "through");
		if (json_is_integer(t)) {
			int64_t *through = stream_through(p, (size_t)r, stream);

			if (json_integer_value(t) > *through)
				*through = json_integer_value(t);
		}
	} else if (m->key_len > 9 && memcmp(m->key, "consumer/", 9) == 0 &&
	           json_is_object(applied = json_object_get(v, "applied"))) {
		json_object_foreach(applied, src, t) {
			s = region_index(p, src);
			if (s >= 0 && json_is_integer(t))
				p->applied[(size_t)r * p->n + (size_t)s] =
					json_integer_value(t);
		}
	}
	json_decref(v);
}

int
xr_progress_poll(xr_progress_t *p, int timeout_ms)
{
	rd_kafka_message_t *m;
	int                 n = 0;

	while (n < 10000 &&
	       (m = rd_kafka_consumer_poll(p->rk, n ? 0 : timeout_ms)) != NULL) {
		if (!m->err)
			take(p, m);
		else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			xr_debug("progress topic %s: %s",
			         m->rkt ? rd_kafka_topic_name(m->rkt) : "?",
			         rd_kafka_message_errstr(m));
		rd_kafka_message_destroy(m);
		n++;
	}
	return n;
}

int64_t
xr_progress_through(const xr_progress_t *p, const char *region)
{
	int     r = region_index(p, region);
	int64_t t = INT64_MAX;
	size_t  i;

	if (r < 0 || p->nstreams[r] == 0)
		return XR_PROGRESS_NONE;
	/* Every producer of the region has what was committed before t. */
	for (i = 0; i < p->nstreams[r]; i++) {
		if (p->streams[r][i].through == XR_PROGRESS_NONE)
			return XR_PROGRESS_NONE;
		if (p->streams[r][i].through < t)
			t = p->streams[r][i].through;
	}
	return t;
}

int64_t
xr_progress_applied(const xr_progress_t *p, const char *reader,
                    const char *source)
{
	int r = region_index(p, reader), s = region_index(p, source);

	if (r < 0 || s < 0)
		return XR_PROGRESS_NONE;
	return p->applied[(size_t)r * p->n + (size_t)s];
}

int64_t
xr_progress_horizon(const xr_progress_t *p, const char **missing)
{
	int64_t h = INT64_MAX;
	size_t  r, s;

	for (r = 0; r < p->n; r++)
		for (s = 0; s < p->n; s++) {
			int64_t a = p->applied[r * p->n + s];

			if (r == s)
				continue;
			if (a == XR_PROGRESS_NONE) {
				if (missing)
					*missing = p->conf->regions[r];
				return XR_PROGRESS_NONE;
			}
			if (a < h)
				h = a;
		}
	return h == INT64_MAX ? XR_PROGRESS_NONE : h;
}

/* A delivery that failed: the flush's caller sees it in *opaque. */
static void
dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	if (m->err)
		*(rd_kafka_resp_err_t *)m->_private = m->err;
	(void)opaque;
}

int
xr_progress_publish(xr_progress_t *p, const char *key, const char *value,
                    int timeout_ms, char *errstr, size_t errstr_size)
{
	static const char *const defaults[] = {
		"client.id", "xregion-progress",
		"acks", "all",
		NULL
	};
	rd_kafka_resp_err_t err, dr = RD_KAFKA_RESP_ERR_NO_ERROR;

	if (!p->prod) {
		rd_kafka_conf_t *kc = xr_kafka_conf_new(p->conf, defaults, NULL,
		                                        errstr, errstr_size);

		if (!kc)
			return -1;
		rd_kafka_conf_set_dr_msg_cb(kc, dr_cb);
		rd_kafka_conf_set_error_cb(kc, error_cb);
		rd_kafka_conf_set_log_cb(kc, log_cb);
		p->prod = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, errstr_size);
		if (!p->prod) {
			rd_kafka_conf_destroy(kc);
			return -1;
		}
	}
	err = rd_kafka_producev(p->prod, RD_KAFKA_V_TOPIC(p->conf->progress_topic),
	                        RD_KAFKA_V_PARTITION(0),
	                        RD_KAFKA_V_KEY(key, strlen(key)),
	                        RD_KAFKA_V_VALUE((void *)value,
	                                         value ? strlen(value) : 0),
	                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	                        RD_KAFKA_V_OPAQUE(&dr),
	                        RD_KAFKA_V_END);
	if (!err)
		err = rd_kafka_flush(p->prod, timeout_ms);
	if (!err)
		err = dr;
	if (err) {
		snprintf(errstr, errstr_size, "progress topic %s: %s",
		         p->conf->progress_topic, rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

struct xr_sharer_s {
	const xr_config_t *conf;
	xr_progress_t     *p;
	PGconn            *db;
	int64_t           *applied;   /* per region: this one's, of it */
	pthread_t          th;
	atomic_int         stop;
	pthread_mutex_t    mu;        /* guards horizon and missing */
	int64_t            horizon;
	char               missing[64];
};

/* The next offset stored for (topic, partition), -1 if none, -2 on error. */
static int64_t
stored_offset(xr_sharer_t *s, const char *topic, int partition)
{
	const char *keys[] = { "dbname", "connect_timeout", "application_name",
	                       NULL };
	const char *vals[] = { s->conf->pg_dsn, "10", "xregion-progress", NULL };
	char        part[16];
	const char *params[2] = { topic, part };
	PGresult   *res;
	int64_t     v;

	if (!s->db || PQstatus(s->db) != CONNECTION_OK) {
		PQfinish(s->db);
		s->db = PQconnectdbParams(keys, vals, 1);
		if (PQstatus(s->db) != CONNECTION_OK)
			return -2;
	}
	snprintf(part, sizeof(part), "%d", partition);
	res = PQexecParams(s->db, "SELECT next_offset FROM xregion.offsets "
	                   "WHERE topic = $1 AND partition = $2::int",
	                   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		v = -2;
	else
		v = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
	PQclear(res);
	return v;
}

/*
 * Whether every event Kafka holds now of source's topics is applied here:
 * for each partition, the offset stored with the applied rows is at its
 * end.  A topic that does not exist has no events.
 */
static bool
caught_up(xr_sharer_t *s, const char *source)
{
	const xr_config_t *conf = s->conf;
	size_t i;
	int    part;
	char   topic[512];

	for (i = 0; i < conf->n_tables && !atomic_load(&s->stop); i++) {
		const xr_table_conf_t *t = &conf->tables[i];
		const struct rd_kafka_metadata *md = NULL;
		rd_kafka_topic_t   *rkt;
		rd_kafka_resp_err_t e;
		int                 np;

		if (t->pii)
			continue;
		snprintf(topic, sizeof(topic), "%s.%s.%s.%s", conf->topic_prefix,
		         source, t->schema, t->name);
		rkt = rd_kafka_topic_new(s->p->rk, topic, NULL);
		e = rkt ? rd_kafka_metadata(s->p->rk, 0, rkt, &md, 5000)
		        : RD_KAFKA_RESP_ERR__FAIL;
		if (rkt)
			rd_kafka_topic_destroy(rkt);
		if (e || md->topic_cnt != 1) {
			if (md)
				rd_kafka_metadata_destroy(md);
			return false;
		}
		e = md->topics[0].err;
		np = e ? 0 : md->topics[0].partition_cnt;
		rd_kafka_metadata_destroy(md);
		if (e && e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
			return false;
		for (part = 0; part < np; part++) {
			int64_t lo, hi, st;

			if (rd_kafka_query_watermark_offsets(s->p->rk, topic, part, &lo,
			                                     &hi, 5000))
				return false;
			st = stored_offset(s, topic, part);
			if (st == -2 || (st < 0 ? lo : st) < hi)
				return false;
		}
	}
	return !atomic_load(&s->stop);
}

/* One round (see progress.h). */
static void
share(xr_sharer_t *s)
{
	const xr_config_t *conf = s->conf;
	int64_t   *through = xr_calloc(conf->n_regions, sizeof(int64_t));
	const char *missing = NULL;
	char       err[512], key[96];
	xr_buf_t   val;
	size_t     i, n = 0;
	int64_t    h;

	(void)xr_progress_poll(s->p, 0);
	for (i = 0; i < conf->n_regions; i++)
		through[i] = xr_progress_through(s->p, conf->regions[i]);
	xr_buf_init(&val);
	xr_buf_printf(&val, "{\"region\": \"%s\", \"applied\": {", conf->region);
	for (i = 0; i < conf->n_regions; i++) {
		if (strcmp(conf->regions[i], conf->region) == 0)
			continue;
		if (through[i] != XR_PROGRESS_NONE && through[i] > s->applied[i] &&
		    caught_up(s, conf->regions[i]))
			s->applied[i] = through[i];
		if (s->applied[i] != XR_PROGRESS_NONE)
			xr_buf_printf(&val, "%s\"%s\": %" PRId64, n++ ? ", " : "",
			              conf->regions[i], s->applied[i]);
	}
	xr_buf_puts(&val, "}}");
	snprintf(key, sizeof(key), "consumer/%s", conf->region);
	if (n && xr_progress_publish(s->p, key, val.data, 5000, err, sizeof(err)))
		xr_warn("%s", err);
	(void)xr_progress_poll(s->p, 0);
	h = xr_progress_horizon(s->p, &missing);
	pthread_mutex_lock(&s->mu);
	s->horizon = h;
	snprintf(s->missing, sizeof(s->missing), "%s", missing ? missing : "?");
	pthread_mutex_unlock(&s->mu);
	xr_buf_term(&val);
	free(through);
}

static void *
sharer_main(void *arg)
{
	xr_sharer_t *s = arg;
	int          i;

	while (!atomic_load(&s->stop)) {
		share(s);
		for (i = 0; i < 100 && !atomic_load(&s->stop); i++)
			usleep(100000);
	}
	return NULL;
}

xr_sharer_t *
xr_sharer_start(const xr_config_t *conf, char *errstr, size_t errstr_size)
{
	xr_sharer_t *s = xr_calloc(1, sizeof(*s));
	size_t       i;
	int          rc;

	s->conf = conf;
	s->horizon = XR_PROGRESS_NONE;
	s->applied = xr_calloc(conf->n_regions ? conf->n_regions : 1,
	                       sizeof(int64_t));
	for (i = 0; i < conf->n_regions; i++)
		s->applied[i] = XR_PROGRESS_NONE;
	atomic_init(&s->stop, 0);
	pthread_mutex_init(&s->mu, NULL);
	if (!(s->p = xr_progress_new(conf, errstr, errstr_size)))
		goto fail;
	if ((rc = pthread_create(&s->th, NULL, sharer_main, s)) != 0) {
		snprintf(errstr, errstr_size, "progress thread: %s", strerror(rc));
		goto fail;
	}
	return s;
fail:
	xr_progress_destroy(s->p);
	pthread_mutex_destroy(&s->mu);
	free(s->applied);
	free(s);
	return NULL;
}

int64_t
xr_sharer_horizon(xr_sharer_t *s, char *missing, size_t missing_size)
{
	int64_t h;

	pthread_mutex_lock(&s->mu);
	h = s->horizon;
	if (missing)
		snprintf(missing, missing_size, "%s", s->missing);
	pthread_mutex_unlock(&s->mu);
	return h;
}

void
xr_sharer_stop(xr_sharer_t *s)
{
	if (!s)
		return;
	atomic_store(&s->stop, 1);
	pthread_join(s->th, NULL);
	xr_progress_destroy(s->p);
	PQfinish(s->db);
	pthread_mutex_destroy(&s->mu);
	free(s->applied);
	free(s);
}
