/*
 * status.c: `xregion status`: a region's health (database and slot, the
 * running process's state, consumer lag, dead letters, conflicts), for a
 * probe (exit status) or a person; with details, its tombstones and hidden
 * rows per table and every region's progress with the purge horizon.
 */
#include "consumer/status.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "common/buf.h"
#include "common/kafka_conf.h"
#include "common/log.h"
#include "common/lsn.h"
#include "consumer/progress.h"

/* µs since the Unix epoch as 2026-11-30T16:40:10Z. */
static const char *
iso(int64_t us, char *buf, size_t size)
{
	time_t    t = (time_t)(us / 1000000);
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, size, "%" PRId64 " us", us);
	return buf;
}

/* One line per replicated table.  Returns 0, or -1 with errstr. */
static int
tables(PGconn *conn, const xr_config_t *conf, FILE *out, char *errstr,
       size_t errstr_size)
{
	size_t i;

	fprintf(out, "tables (tombstones, live entries, versions table size, "
	             "hidden rows, oldest tombstone):\n");
	for (i = 0; i < conf->n_tables; i++) {
		const xr_table_conf_t *t = &conf->tables[i];
		char        vt[300], oldest[40], *id;
		const char *params[2] = { t->schema, t->name };
		xr_buf_t    sql;
		PGresult   *res;

		if (t->pii)
			continue;
		if (xr_config_versions_name(t->schema, t->name, vt, sizeof(vt)) ||
		    !(id = PQescapeIdentifier(conn, vt, strlen(vt))))
			continue;
		xr_buf_init(&sql);
		xr_buf_printf(&sql,
		    "SELECT count(*) FILTER (WHERE v.deleted), "
		    "count(*) FILTER (WHERE NOT v.deleted), "
		    "pg_catalog.pg_size_pretty(pg_catalog.pg_total_relation_size("
		    "'xregion.%s'::regclass)), "
		    "(SELECT count(*) FROM xregion.hidden h "
		    "  WHERE h.table_schema = $1 AND h.table_name = $2), "
		    "min((xregion.tomb_version(v.ts, v.region, v.xid, v.clsn, "
		    "  v.lsn)).ts) FILTER (WHERE v.deleted) "
		    "FROM xregion.%s v", id, id);
		PQfreemem(id);
		res = PQexecParams(conn, sql.data, 2, NULL, params, NULL, NULL, 0);
		xr_buf_term(&sql);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			snprintf(errstr, errstr_size, "table %s.%s: %s", t->schema,
			         t->name, PQerrorMessage(conn));
			PQclear(res);
			return -1;
		}
		fprintf(out, "  %s.%s: %s tombstones, %s live entries, %s, %s hidden, "
		        "oldest tombstone %s\n", t->schema, t->name,
		        PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
		        PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
		        PQgetisnull(res, 0, 4) ? "-"
		            : iso(strtoll(PQgetvalue(res, 0, 4), NULL, 10), oldest,
		                  sizeof(oldest)));
		PQclear(res);
	}
	return 0;
}

/* Every region's progress records and the purge horizon. */
static void
progress(const xr_config_t *conf, FILE *out)
{
	char           err[512], buf[40];
	xr_progress_t *p = xr_progress_new(conf, err, sizeof(err));
	const char    *missing = NULL;
	int64_t        h;
	size_t         r, s;

	if (!p) {
		fprintf(out, "progress: %s\n", err);
		return;
	}
	/* The first poll waits for the assignment and the first records. */
	if (xr_progress_poll(p, 5000) > 0)
		while (xr_progress_poll(p, 500) > 0)
			;
	fprintf(out, "progress (topics %s.<region>._progress):\n",
	        conf->topic_prefix);
	for (r = 0; r < conf->n_regions; r++) {
		const char *rg = conf->regions[r];
		int64_t     t = xr_progress_through(p, rg);

		fprintf(out, "  %s: published through %s; applied", rg,
		        t == XR_PROGRESS_NONE ? "(no record)" : iso(t, buf, sizeof(buf)));
		for (s = 0; s < conf->n_regions; s++) {
			int64_t a = xr_progress_applied(p, rg, conf->regions[s]);

			if (s == r)
				continue;
			fprintf(out, " %s through %s", conf->regions[s],
			        a == XR_PROGRESS_NONE ? "(no record)"
			                              : iso(a, buf, sizeof(buf)));
		}
		fputc('\n', out);
	}
	h = xr_progress_horizon(p, &missing);
	if (h == XR_PROGRESS_NONE)
		fprintf(out, "purge horizon: unknown (no progress from region %s "
		        "yet): no tombstone is purged\n", missing ? missing : "?");
	else
		fprintf(out, "purge horizon: %s (tombstones older than this and than "
		        "consumer.tombstone_retention_hours = %d are purged)\n",
		        iso(h, buf, sizeof(buf)), conf->tombstone_retention_hours);
	xr_progress_destroy(p);
}

void
xr_status_opts_init(xr_status_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->details = true;
	o->max_slot_lag_bytes = (int64_t)256 << 20;
	o->max_lag_events = 10000;
	o->max_lag_seconds = 120;
	o->error_window_s = 300;
}

void
xr_status_opts_term(xr_status_opts_t *o)
{
	free(o->extra);
	o->extra = NULL;
	o->nextra = 0;
}

static int
positive(const char *name, const char *value, long long max, long long *out,
         char *errstr, size_t errstr_size)
{
	char     *end;
	long long v;

	errno = 0;
	v = strtoll(value, &end, 10);
	if (errno || *end || end == value || v < 1 || v > max) {
		snprintf(errstr, errstr_size, "--%s: expected a whole number from 1 "
		         "to %lld, got \"%s\"", name, max, value);
		return -1;
	}
	*out = v;
	return 0;
}

int
xr_status_opts_set(xr_status_opts_t *o, const char *name, const char *value,
                   char *errstr, size_t errstr_size)
{
	long long v;

	if (strcmp(name, "json") == 0) {
		o->json = true;
		return 0;
	}
	if (strcmp(name, "brief") == 0) {
		o->details = false;
		return 0;
	}
	if (strcmp(name, "max-slot-lag-mb") == 0) {
		if (positive(name, value, 1 << 20, &v, errstr, errstr_size))
			return -1;
		o->max_slot_lag_bytes = (int64_t)v << 20;
		return 0;
	}
	if (strcmp(name, "max-lag-events") == 0) {
		if (positive(name, value, INT64_MAX / 2, &v, errstr, errstr_size))
			return -1;
		o->max_lag_events = (int64_t)v;
		return 0;
	}
	if (strcmp(name, "max-lag-seconds") == 0) {
		if (positive(name, value, 86400 * 30, &v, errstr, errstr_size))
			return -1;
		o->max_lag_seconds = (int)v;
		return 0;
	}
	snprintf(errstr, errstr_size, "unknown option --%s", name);
	return -1;
}

/* A JSON string's value, or "?" (for printing). */
static const char *
str(const json_t *v)
{
	const char *s = json_string_value(v);

	return s ? s : "?";
}

/* A region's findings as they are gathered. */
typedef struct check_s {
	json_t     *r;        /* the region's object */
	json_t     *reasons;  /* its array of reasons */
	xr_health_t health;
	bool        process_up; /* its /status answered */
} check_t;

static void
finding(check_t *c, xr_health_t h, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Records a reason for health h (at least). */
static void
finding(check_t *c, xr_health_t h, const char *fmt, ...)
{
	char    buf[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	json_array_append_new(c->reasons, json_string(buf));
	if (h > c->health)
		c->health = h;
}

/* One row, one column query; NULL (with errstr) on failure. */
static PGresult *
query(PGconn *conn, const char *sql, int nparams, const char *const *params,
      const char *what, check_t *c)
{
	PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL,
	                             NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		finding(c, XR_DOWN, "database: %s: %s", what, PQerrorMessage(conn));
		PQclear(res);
		return NULL;
	}
	return res;
}

/* The slot: whether a producer streams it, how far it is confirmed. */
static void
check_slot(PGconn *conn, const xr_config_t *conf,
           const xr_status_opts_t *opts, check_t *c)
{
	const char *p[1] = { conf->slot };
	PGresult   *res = query(conn,
	    "SELECT active, confirmed_flush_lsn::text, "
	    "pg_catalog.pg_wal_lsn_diff(CASE WHEN pg_catalog.pg_is_in_recovery() "
	    "  THEN pg_catalog.pg_last_wal_replay_lsn() "
	    "  ELSE pg_catalog.pg_current_wal_lsn() END, "
	    "  confirmed_flush_lsn)::bigint, wal_status "
	    "FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
	    1, p, "reading the slot", c);
	json_t     *o;
	long long   lag;

	if (!res)
		return;
	if (PQntuples(res) != 1) {
		finding(c, XR_DOWN, "slot %s does not exist (run xregion setup)",
		        conf->slot);
		PQclear(res);
		return;
	}
	lag = PQgetisnull(res, 0, 2) ? 0 : strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	o = json_pack("{s:s,s:b,s:s?,s:I,s:s?}", "name", conf->slot,
	              "active", PQgetvalue(res, 0, 0)[0] == 't',
	              "confirmed_lsn",
	              PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1),
	              "lag_bytes", (json_int_t)lag,
	              "wal_status",
	              PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3));
	json_object_set_new(c->r, "slot", o);
	/*
	 * Not streamed: down, unless the process answers (a producer between
	 * two sessions, reconnecting with backoff).
	 */
	if (PQgetvalue(res, 0, 0)[0] != 't' && c->process_up)
		finding(c, XR_DEGRADED, "slot %s is not streamed right now (the "
		        "process runs: its producer reconnects?)", conf->slot);
	else if (PQgetvalue(res, 0, 0)[0] != 't')
		finding(c, XR_DOWN, "slot %s is not streamed: no producer is running",
		        conf->slot);
	if (!PQgetisnull(res, 0, 3) &&
	    strcmp(PQgetvalue(res, 0, 3), "lost") == 0)
		finding(c, XR_DOWN, "slot %s lost WAL it needed (wal_status lost)",
		        conf->slot);
	else if (!PQgetisnull(res, 0, 3) &&
	         strcmp(PQgetvalue(res, 0, 3), "unreserved") == 0)
		finding(c, XR_DEGRADED, "slot %s holds more WAL than "
		        "max_slot_wal_keep_size (wal_status unreserved): it is lost "
		        "at the next checkpoint unless it catches up", conf->slot);
	if (lag > opts->max_slot_lag_bytes)
		finding(c, XR_DEGRADED, "slot %s is %lld MB behind the WAL (more "
		        "than %lld MB)", conf->slot, lag >> 20,
		        (long long)(opts->max_slot_lag_bytes >> 20));
	PQclear(res);
}

/* The last hour's conflicts by kind. */
static void
check_conflicts(PGconn *conn, check_t *c)
{
	PGresult *res = query(conn,
	    "SELECT kind, count(*) FROM xregion.conflicts "
	    "WHERE logged_at > now() - interval '1 hour' GROUP BY kind "
	    "ORDER BY kind", 0, NULL, "reading xregion.conflicts", c);
	json_t   *o = json_object();
	int       i;

	if (!res) {
		json_decref(o);
		return;
	}
	for (i = 0; i < PQntuples(res); i++)
		json_object_set_new(o, PQgetvalue(res, i, 0),
		                    json_integer(strtoll(PQgetvalue(res, i, 1),
		                                         NULL, 10)));
	json_object_set_new(c->r, "conflicts_last_hour", o);
	PQclear(res);
}

/* The paused partitions, and the source regions waiting, as reasons. */
static void
paused_findings(const json_t *paused, check_t *c)
{
	const json_t *x, *part = NULL, *wait = NULL;
	size_t        i, nparts = 0, nwait = 0;

	json_array_foreach(paused, i, x) {
		if (json_object_get(x, "topic")) {
			nparts++;
			part = part ? part : x;
		} else {
			nwait++;
			wait = wait ? wait : x;
		}
	}
	if (nparts)
		finding(c, XR_DEGRADED, "%zu partition(s) paused, first %s [%d]: %s",
		        nparts, str(json_object_get(part, "topic")),
		        (int)json_integer_value(json_object_get(part, "partition")),
		        str(json_object_get(part, "reason")));
	if (nwait)
		finding(c, XR_DEGRADED, "the changes of %zu region(s) wait, first "
		        "%s: %s", nwait, str(json_object_get(wait, "region")),
		        str(json_object_get(wait, "reason")));
}

static size_t
on_body(char *p, size_t size, size_t n, void *opaque)
{
	xr_buf_append(opaque, p, size * n);
	return size * n;
}

/* The running process's /status (metrics_listen), if it has one. */
static void
check_process(const xr_config_t *conf, const xr_status_opts_t *opts,
              check_t *c)
{
	char          url[300], cerr[CURL_ERROR_SIZE] = "";
	xr_buf_t      body;
	CURL         *h;
	CURLcode      rc;
	long          code = 0;
	json_t       *st, *v;
	json_error_t  je;

	if (!conf->metrics_listen) {
		json_object_set_new(c->r, "process", json_null());
		return;
	}
	c->process_up = false;
	snprintf(url, sizeof(url), "http://%s/status", conf->metrics_listen);
	xr_buf_init(&body);
	if (!(h = curl_easy_init())) {
		finding(c, XR_DEGRADED, "process: cannot make an HTTP client");
		return;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(h);
	if (rc != CURLE_OK || code != 200) {
		finding(c, XR_DOWN, "process: %s does not answer (%s): the xregion "
		        "process is not running", url,
		        rc != CURLE_OK ? (cerr[0] ? cerr : curl_easy_strerror(rc))
		                       : "not HTTP 200");
		xr_buf_term(&body);
		return;
	}
	st = json_loadb(body.data ? body.data : "", body.len, 0, &je);
	xr_buf_term(&body);
	if (!json_is_object(st)) {
		finding(c, XR_DEGRADED, "process: %s is not a status document: %s",
		        url, je.text);
		json_decref(st);
		return;
	}
	json_object_set(c->r, "process", st);
	c->process_up = true;
	paused_findings(json_object_get(json_object_get(st, "consumer"),
	                                "paused"), c);
	/* Its age by the process's own clock: no skew between the hosts. */
	v = json_object_get(st, "last_error");
	if (json_is_object(v) &&
	    json_integer_value(json_object_get(v, "age_s")) <=
	        opts->error_window_s)
		finding(c, XR_DEGRADED, "an error was logged at %s: %s",
		        str(json_object_get(v, "at")),
		        str(json_object_get(v, "message")));
	json_decref(st);
}

/* The stored next offset of topic [partition], or -1. */
static int64_t
stored_offset(PGresult *offs, const char *topic, int32_t partition)
{
	int i;

	for (i = 0; i < PQntuples(offs); i++)
		if (strcmp(PQgetvalue(offs, i, 0), topic) == 0 &&
		    atoi(PQgetvalue(offs, i, 1)) == partition)
			return strtoll(PQgetvalue(offs, i, 2), NULL, 10);
	return -1;
}

/*
 * Whether this region's consumer reads topic: another region's table
 * topics, <prefix>.<r>.<schema>.<table>, and in atomic apply its end
 * records, <prefix>.<r>._tx (as consume.c subscribes).
 */
static bool
consumed_topic(const xr_config_t *conf, const char *topic)
{
	size_t      i, lp = strlen(conf->topic_prefix), lr;
	const char *rest;

	if (strncmp(topic, conf->topic_prefix, lp) != 0 || topic[lp] != '.')
		return false;
	for (i = 0; i < conf->n_regions; i++) {
		if (strcmp(conf->regions[i], conf->region) == 0)
			continue;
		lr = strlen(conf->regions[i]);
		if (strncmp(topic + lp + 1, conf->regions[i], lr) != 0 ||
		    topic[lp + 1 + lr] != '.')
			continue;
		rest = topic + lp + 2 + lr;
		if (strcmp(rest, "_tx") == 0)
			return conf->apply_atomic;
		return rest[0] != '_' && strchr(rest, '.') != NULL;
	}
	return false;
}

/*
 * Kafka's side: the consumer's lag per topic-partition of the other
 * regions (the high watermark less the next offset stored in
 * xregion.offsets), and the dead letters not redriven yet.
 */
static void
check_kafka(PGconn *conn, const xr_config_t *conf,
            const xr_status_opts_t *opts, check_t *c)
{
	char                         err[512];
	rd_kafka_t                  *rk = xr_kafka_query_new(conf, err, sizeof(err));
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t          e;
	PGresult                    *offs;
	json_t                      *lag = json_array();
	int64_t                      total = 0, worst = 0, dl_on = 0, dl_left = 0;
	int64_t                      deadline = xr_mono_us() + 20000000;
	const char                  *worst_topic = NULL;
	int32_t                      worst_part = 0;
	int                          t, p, skipped = 0;

	if (!rk) {
		finding(c, XR_DOWN, "kafka: %s", err);
		json_decref(lag);
		return;
	}
	e = rd_kafka_metadata(rk, 1, NULL, &md, 10000);
	if (e) {
		finding(c, XR_DOWN, "kafka %s: no metadata in 10 s: %s",
		        conf->brokers, rd_kafka_err2str(e));
		rd_kafka_destroy(rk);
		json_decref(lag);
		return;
	}
	if (!(offs = query(conn, "SELECT topic, partition, next_offset "
	                   "FROM xregion.offsets", 0, NULL,
	                   "reading xregion.offsets", c)))
		goto out;
	for (t = 0; t < md->topic_cnt; t++) {
		const char *topic = md->topics[t].topic;
		bool        dlq = strcmp(topic, conf->dead_letter_topic) == 0;

		if (!dlq && !consumed_topic(conf, topic))
			continue;
		for (p = 0; p < md->topics[t].partition_cnt; p++) {
			int32_t part = md->topics[t].partitions[p].id;
			int64_t lo, hi, next, n;

			/* The whole of Kafka's side in 20 s at most. */
			if (xr_mono_us() > deadline) {
				skipped++;
				continue;
			}
			e = rd_kafka_query_watermark_offsets(rk, topic, part, &lo, &hi,
			                                     5000);
			if (e) {
				finding(c, XR_DEGRADED, "kafka: %s [%d]: no watermarks in "
				        "5 s: %s", topic, (int)part, rd_kafka_err2str(e));
				continue;
			}
			next = stored_offset(offs, topic, part);
			if (next < lo)
				next = lo;   /* none stored, or before the retention */
			n = hi > next ? hi - next : 0;
			if (dlq) {
				dl_on += hi - lo;
				dl_left += n;
				continue;
			}
			json_array_append_new(lag, json_pack("{s:s,s:i,s:I,s:I,s:I}",
			    "topic", topic, "partition", (int)part, "next_offset",
			    (json_int_t)next, "high_watermark", (json_int_t)hi,
			    "lag", (json_int_t)n));
			total += n;
			if (n > worst) {
				worst = n;
				worst_topic = topic;
				worst_part = part;
			}
		}
	}
	json_object_set_new(c->r, "dead_letters", json_pack(
	    "{s:s,s:I,s:I}", "topic", conf->dead_letter_topic, "on_topic",
	    (json_int_t)dl_on, "not_redriven", (json_int_t)dl_left));
	if (dl_left > 0)
		finding(c, XR_DEGRADED, "%" PRId64 " dead letter(s) on %s not "
		        "redriven (xregion dlq list)", dl_left,
		        conf->dead_letter_topic);
	if (skipped)
		finding(c, XR_DEGRADED, "kafka: %d partition(s) not checked: "
		        "watermarks took more than 20 s", skipped);
	if (worst > opts->max_lag_events)
		finding(c, XR_DEGRADED, "consumer: %s [%d] is %" PRId64 " events "
		        "behind (more than %" PRId64 ")", worst_topic, (int)worst_part,
		        worst, opts->max_lag_events);
	PQclear(offs);
out:
	json_object_set_new(c->r, "consumer_lag", json_pack("{s:I,s:o}",
	                    "total", (json_int_t)total, "partitions", lag));
	rd_kafka_metadata_destroy(md);
	rd_kafka_destroy(rk);
}

/*
 * How long ago the region's changes were last all on Kafka, by its
 * progress records (consumer/progress.h): the age of its slot's position.
 */
static void
check_age(const xr_config_t *conf, const xr_status_opts_t *opts, check_t *c)
{
	char           err[512];
	xr_progress_t *p = xr_progress_new(conf, err, sizeof(err));
	int64_t        t, age;

	if (!p) {
		finding(c, XR_DEGRADED, "progress: %s", err);
		return;
	}
	if (xr_progress_poll(p, 5000) > 0)
		while (xr_progress_poll(p, 500) > 0)
			;
	t = xr_progress_through(p, conf->region);
	xr_progress_destroy(p);
	if (t == XR_PROGRESS_NONE) {
		json_object_set_new(c->r, "published_age_s", json_null());
		finding(c, XR_DEGRADED, "no progress record of region %s on %s yet",
		        conf->region, conf->progress_topic);
		return;
	}
	age = (xr_unix_now_us() - t) / 1000000;
	json_object_set_new(c->r, "published_age_s", json_integer(age));
	if (age > opts->max_lag_seconds)
		finding(c, XR_DEGRADED, "its changes are on Kafka only up to %" PRId64
		        " s ago (more than %d s)", age, opts->max_lag_seconds);
}

/* Checks one region; returns its object (health, reasons, findings). */
static json_t *
check_region(const xr_config_t *conf, const xr_status_opts_t *opts,
             PGconn **connp)
{
	static const char *names[] = { "healthy", "degraded", "down" };
	const char *keys[] = { "dbname", "connect_timeout", "application_name",
	                       "options", NULL };
	/* Every query too: a probe gets its answer in seconds. */
	const char *vals[] = { conf->pg_dsn, "5", "xregion-status",
	                       "-c statement_timeout=5000 -c lock_timeout=2000",
	                       NULL };
	check_t     c = { json_object(), json_array(), XR_HEALTHY, false };
	PGconn     *conn = PQconnectdbParams(keys, vals, 1);
	PGresult   *res;

	json_object_set_new(c.r, "region", json_string(conf->region));
	if (PQstatus(conn) != CONNECTION_OK) {
		finding(&c, XR_DOWN, "database: %s", PQerrorMessage(conn));
		goto done;
	}
	json_object_set_new(c.r, "database", json_string(PQdb(conn)));
	res = PQexec(conn, "SELECT to_regclass('xregion.hidden') IS NOT NULL");
	if (PQresultStatus(res) != PGRES_TUPLES_OK ||
	    PQgetvalue(res, 0, 0)[0] != 't') {
		finding(&c, XR_DOWN, "database %s has no schema xregion (run xregion "
		        "setup)", PQdb(conn));
		PQclear(res);
		goto done;
	}
	PQclear(res);
	check_process(conf, opts, &c);
	check_slot(conn, conf, opts, &c);
	check_kafka(conn, conf, opts, &c);
	check_age(conf, opts, &c);
	check_conflicts(conn, &c);
done:
	json_object_set_new(c.r, "health", json_string(names[c.health]));
	json_object_set_new(c.r, "reasons", c.reasons);
	if (PQstatus(conn) == CONNECTION_OK && connp)
		*connp = conn;
	else
		PQfinish(conn);
	return c.r;
}

static xr_health_t
health_of(const json_t *r)
{
	const char *h = json_string_value(json_object_get(r, "health"));

	return !h || strcmp(h, "down") == 0 ? XR_DOWN
	       : strcmp(h, "degraded") == 0 ? XR_DEGRADED : XR_HEALTHY;
}

/* The human form of a region's object. */
static void
print_region(const json_t *r, FILE *out)
{
	const json_t *v, *pr, *x;
	const char   *key;
	size_t        i;
	char          buf[40];

	fprintf(out, "region %s: %s\n", str(json_object_get(r,
	        "region")), str(json_object_get(r, "health")));
	json_array_foreach(json_object_get(r, "reasons"), i, v)
		fprintf(out, "  ! %s\n", str(v));
	if ((v = json_object_get(r, "slot")))
		fprintf(out, "  slot %s: %s, confirmed %s, %" JSON_INTEGER_FORMAT
		        " bytes behind the WAL\n",
		        str(json_object_get(v, "name")),
		        json_is_true(json_object_get(v, "active")) ? "streamed"
		                                                    : "NOT streamed",
		        str(json_object_get(v, "confirmed_lsn")),
		        json_integer_value(json_object_get(v, "lag_bytes")));
	if ((v = json_object_get(r, "published_age_s")) && json_is_integer(v))
		fprintf(out, "  on Kafka up to %" JSON_INTEGER_FORMAT " s ago\n",
		        json_integer_value(v));
	if ((pr = json_object_get(r, "process")) && json_is_object(pr)) {
		const json_t *p = json_object_get(pr, "producer");
		const json_t *k = json_object_get(pr, "consumer");

		fprintf(out, "  process %" JSON_INTEGER_FORMAT " since %s: produced "
		        "%" JSON_INTEGER_FORMAT " events, %" JSON_INTEGER_FORMAT
		        " in flight; applied %" JSON_INTEGER_FORMAT ", dead-lettered %"
		        JSON_INTEGER_FORMAT ", %zu paused\n",
		        json_integer_value(json_object_get(pr, "pid")),
		        str(json_object_get(pr, "started_at")),
		        json_integer_value(json_object_get(p, "events")),
		        json_integer_value(json_object_get(p, "in_flight")),
		        json_integer_value(json_object_get(k, "applied")),
		        json_integer_value(json_object_get(k, "dead_lettered")),
		        json_array_size(json_object_get(k, "paused")));
		json_array_foreach(json_object_get(k, "paused"), i, x) {
			if (json_object_get(x, "topic"))
				fprintf(out, "    paused %s [%" JSON_INTEGER_FORMAT "] at %"
				        JSON_INTEGER_FORMAT ": %s\n",
				        str(json_object_get(x, "topic")),
				        json_integer_value(json_object_get(x, "partition")),
				        json_integer_value(json_object_get(x, "offset")),
				        str(json_object_get(x, "reason")));
			else
				fprintf(out, "    region %s waits: %s\n",
				        str(json_object_get(x, "region")),
				        str(json_object_get(x, "reason")));
		}
		x = json_object_get(pr, "last_error");
		fprintf(out, "    last error: %s%s%s\n",
		        json_is_object(x) ? str(json_object_get(x, "at")) : "none",
		        json_is_object(x) ? " " : "",
		        json_is_object(x) ? str(json_object_get(x, "message")) : "");
	} else if (json_is_null(pr)) {
		fprintf(out, "  process: not checked (no metrics_listen in the "
		        "config or XREGION_METRICS_LISTEN)\n");
	}
	if ((v = json_object_get(r, "consumer_lag"))) {
		fprintf(out, "  consumer lag: %" JSON_INTEGER_FORMAT " events\n",
		        json_integer_value(json_object_get(v, "total")));
		json_array_foreach(json_object_get(v, "partitions"), i, x)
			if (json_integer_value(json_object_get(x, "lag")) > 0)
				fprintf(out, "    %s [%" JSON_INTEGER_FORMAT "]: %"
				        JSON_INTEGER_FORMAT "\n",
				        str(json_object_get(x, "topic")),
				        json_integer_value(json_object_get(x, "partition")),
				        json_integer_value(json_object_get(x, "lag")));
	}
	if ((v = json_object_get(r, "dead_letters")))
		fprintf(out, "  dead letters on %s: %" JSON_INTEGER_FORMAT ", %"
		        JSON_INTEGER_FORMAT " not redriven\n",
		        str(json_object_get(v, "topic")),
		        json_integer_value(json_object_get(v, "on_topic")),
		        json_integer_value(json_object_get(v, "not_redriven")));
	if ((v = json_object_get(r, "conflicts_last_hour"))) {
		fprintf(out, "  conflicts in the last hour:");
		if (json_object_size(v) == 0)
			fprintf(out, " none");
		json_object_foreach((json_t *)v, key, x) {
			snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT,
			         json_integer_value(x));
			fprintf(out, " %s %s", key, buf);
		}
		fputc('\n', out);
	}
}

xr_health_t
xr_status_run(const xr_config_t *conf, const xr_status_opts_t *opts,
              FILE *out)
{
	json_t      *all = json_array();
	xr_health_t  worst = XR_HEALTHY, h;
	char         err[1024];
	size_t       i;

	for (i = 0; i <= opts->nextra; i++) {
		xr_config_t *c = i == 0 ? (xr_config_t *)conf
		                        : xr_config_load(opts->extra[i - 1], err,
		                                         sizeof(err));
		PGconn      *conn = NULL;
		json_t      *r;

		if (!c) {
			r = json_pack("{s:s,s:s,s:[s]}", "config", opts->extra[i - 1],
			              "health", "down", "reasons", err);
			if (!opts->json)
				fprintf(out, "config %s: down\n  ! %s\n",
				        opts->extra[i - 1], err);
		} else {
			r = check_region(c, opts, &conn);
			if (!opts->json) {
				print_region(r, out);
				if (opts->details && conn) {
					if (tables(conn, c, out, err, sizeof(err)))
						fprintf(out, "  tables: %s\n", err);
					if (i == 0)   /* the same from every region */
						progress(c, out);
				}
			}
		}
		PQfinish(conn);
		if ((h = health_of(r)) > worst)
			worst = h;
		json_array_append_new(all, r);
		if (i > 0 && c)
			xr_config_destroy(c);
	}
	if (opts->json) {
		json_t *doc = json_pack("{s:s,s:o}", "health",
		                        worst == XR_DOWN ? "down"
		                        : worst == XR_DEGRADED ? "degraded"
		                                               : "healthy",
		                        "regions", json_incref(all));

		json_dumpf(doc, out, JSON_INDENT(2));
		fputc('\n', out);
		json_decref(doc);
	}
	json_decref(all);
	return worst;
}
