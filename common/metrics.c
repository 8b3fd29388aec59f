/* metrics.c: counters and their Prometheus endpoint (see metrics.h). */
#include "common/metrics.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/lsn.h"

struct xr_metrics_server_s {
	struct MHD_Daemon *daemon;
	xr_metrics_t      *m;
};

const int64_t xr_latency_bounds_us[XR_LATENCY_BUCKETS] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 30000000, 60000000
};

void
xr_latency_observe(uint64_t *buckets, int64_t us)
{
	int i;

	for (i = 0; i < XR_LATENCY_BUCKETS; i++)
		if (us <= xr_latency_bounds_us[i])
			break;
	buckets[i]++;
}

void
xr_metrics_init(xr_metrics_t *m, const char *region)
{
	struct timeval tv;

	memset(m, 0, sizeof(*m));
	m->region = region;
	pthread_mutex_init(&m->lock, NULL);
	gettimeofday(&tv, NULL);
	m->started_us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

void
xr_metrics_term(xr_metrics_t *m)
{
	free(m->paused);
	m->paused = NULL;
	pthread_mutex_destroy(&m->lock);
}

void
xr_metrics_set_paused(xr_metrics_t *m, char *json)
{
	char *old;

	pthread_mutex_lock(&m->lock);
	old = m->paused;
	m->paused = json;
	pthread_mutex_unlock(&m->lock);
	free(old);
}

/* The latency histogram, cumulative as Prometheus has it. */
static void
latency(xr_buf_t *b, const xr_metrics_t *m)
{
	static const char name[] = "xregion_apply_latency_seconds";
	uint64_t          cum = 0;
	int               i;

	xr_buf_printf(b, "# HELP %s Time from a source transaction's commit in "
	              "its region to its commit here (consumer).\n"
	              "# TYPE %s histogram\n", name, name);
	for (i = 0; i <= XR_LATENCY_BUCKETS; i++) {
		cum += atomic_load(&m->apply_latency[i]);
		if (i < XR_LATENCY_BUCKETS)
			xr_buf_printf(b, "%s_bucket{region=\"%s\",le=\"%g\"} %" PRIu64
			              "\n", name, m->region,
			              (double)xr_latency_bounds_us[i] / 1e6, cum);
		else
			xr_buf_printf(b, "%s_bucket{region=\"%s\",le=\"+Inf\"} %" PRIu64
			              "\n", name, m->region, cum);
	}
	xr_buf_printf(b, "%s_sum{region=\"%s\"} %.6f\n%s_count{region=\"%s\"} %"
	              PRIu64 "\n", name, m->region,
	              (double)atomic_load(&m->apply_latency_sum_us) / 1e6, name,
	              m->region, cum);
}

static void
counter(xr_buf_t *b, const xr_metrics_t *m, const char *name, const char *help,
        const char *type, uint64_t v)
{
	xr_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s{region=\"%s\"} %" PRIu64
	              "\n", name, help, name, type, name, m->region, v);
}

char *
xr_metrics_render(const xr_metrics_t *m)
{
	xr_buf_t b;
	int      k, r;
	char    *out;

	xr_buf_init(&b);
	counter(&b, m, "xregion_produced_events_total",
	        "Change events published to Kafka.", "counter",
	        atomic_load(&m->produced_events));
	counter(&b, m, "xregion_produced_transactions_total",
	        "Transactions decoded from the slot.", "counter",
	        atomic_load(&m->produced_txns));
	counter(&b, m, "xregion_origin_transactions_skipped_total",
	        "Transactions not published because they carry a replication "
	        "origin (applied by a consumer).", "counter",
	        atomic_load(&m->origin_txns_skipped));
	counter(&b, m, "xregion_confirmed_lsn",
	        "The WAL position confirmed to the slot (as a number).", "gauge",
	        atomic_load(&m->confirmed_lsn));
	counter(&b, m, "xregion_producer_in_flight",
	        "Events handed to Kafka and not yet acknowledged.", "gauge",
	        atomic_load(&m->in_flight));
	counter(&b, m, "xregion_producer_restarts_total",
	        "Replication sessions restarted after an error.", "counter",
	        atomic_load(&m->producer_restarts));
	counter(&b, m, "xregion_consumed_events_total",
	        "Events read from other regions' topics.", "counter",
	        atomic_load(&m->consumed_events));
	counter(&b, m, "xregion_applied_events_total",
	        "Events that changed this region's database.", "counter",
	        atomic_load(&m->applied_events));
	counter(&b, m, "xregion_skipped_events_total",
	        "Events older than the row here (or repeats): not applied.",
	        "counter", atomic_load(&m->skipped_events));
	counter(&b, m, "xregion_dead_lettered_events_total",
	        "Events sent to the dead-letter topic.", "counter",
	        atomic_load(&m->dead_lettered));
	counter(&b, m, "xregion_paused_partitions",
	        "Partitions paused until a missing column exists.", "gauge",
	        atomic_load(&m->paused_partitions));
	counter(&b, m, "xregion_apply_batches_total",
	        "Transactions committed by the consumer.", "counter",
	        atomic_load(&m->batches));
	counter(&b, m, "xregion_tombstones",
	        "Tombstones in the versions tables (checked each minute).",
	        "gauge", atomic_load(&m->tombstones));
	counter(&b, m, "xregion_versions_bytes",
	        "Size of the versions tables, tombstones included, in bytes.",
	        "gauge", atomic_load(&m->versions_bytes));
	counter(&b, m, "xregion_tombstones_purged_total",
	        "Tombstones purged once every region had applied past them.",
	        "counter", atomic_load(&m->tombstones_purged));
	counter(&b, m, "xregion_tombstone_purge_horizon_seconds",
	        "Unix time before which every region has applied every other "
	        "region's changes (0: not known yet).", "gauge",
	        atomic_load(&m->purge_horizon_us) / 1000000);
	counter(&b, m, "xregion_feed_events_total",
	        "Change events read by xregion feed.", "counter",
	        atomic_load(&m->feed_events));
	counter(&b, m, "xregion_feed_rows_total",
	        "Flat rows written by xregion feed.", "counter",
	        atomic_load(&m->feed_rows));
	counter(&b, m, "xregion_feed_files_total",
	        "Files xregion feed committed.", "counter",
	        atomic_load(&m->feed_files));
	counter(&b, m, "xregion_feed_dead_lettered_total",
	        "Messages xregion feed sent to its dead-letter topic.", "counter",
	        atomic_load(&m->feed_dead_lettered));
	counter(&b, m, "xregion_feed_lag_messages",
	        "Messages on the fed partitions not fed yet (as of the last "
	        "fetch).", "gauge", atomic_load(&m->feed_lag));
	counter(&b, m, "xregion_feed_last_commit_seconds",
	        "Unix time of xregion feed's last commit (0: none yet).", "gauge",
	        atomic_load(&m->feed_commit_us) / 1000000);
	xr_buf_puts(&b, "# HELP xregion_conflicts_total Conflicts by kind and "
	                "resolution (also in xregion.conflicts).\n"
	                "# TYPE xregion_conflicts_total counter\n");
	for (k = 1; k < m->nkinds && k < XR_METRICS_KINDS; k++)
		for (r = 0; r < m->nresolutions && r < XR_METRICS_RESOLUTIONS; r++)
			xr_buf_printf(&b, "xregion_conflicts_total{region=\"%s\","
			              "kind=\"%s\",resolution=\"%s\"} %" PRIu64 "\n",
			              m->region, m->kind_names[k], m->resolution_names[r],
			              (uint64_t)atomic_load(&m->conflicts[k][r]));
	latency(&b, m);
	out = b.data;   /* handed over: the caller frees it */
	return out;
}

/* µs since the Unix epoch as an ISO 8601 UTC text. */
static json_t *
iso_json(int64_t us)
{
	char      buf[40];
	time_t    t = (time_t)(us / 1000000);
	struct tm tm;

	if (!gmtime_r(&t, &tm))
		return json_null();
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), ".%03dZ",
	         (int)(us % 1000000 / 1000));
	return json_string(buf);
}

char *
xr_metrics_status_json(xr_metrics_t *m)
{
	json_t *o = json_object(), *prod, *cons, *paused = NULL;
	char    line[512], lsn[XR_LSN_STRLEN];
	int64_t at;
	char   *out;

	if (!o)
		return NULL;
	xr_lsn_format(atomic_load(&m->confirmed_lsn), lsn);
	json_object_set_new(o, "region", json_string(m->region));
	json_object_set_new(o, "pid", json_integer((json_int_t)getpid()));
	json_object_set_new(o, "started_at", iso_json(m->started_us));
	prod = json_pack("{s:I,s:I,s:s,s:I,s:I}",
	                 "events", (json_int_t)atomic_load(&m->produced_events),
	                 "transactions", (json_int_t)atomic_load(&m->produced_txns),
	                 "confirmed_lsn", lsn,
	                 "in_flight", (json_int_t)atomic_load(&m->in_flight),
	                 "restarts",
	                 (json_int_t)atomic_load(&m->producer_restarts));
	cons = json_pack("{s:I,s:I,s:I,s:I,s:I}",
	                 "consumed", (json_int_t)atomic_load(&m->consumed_events),
	                 "applied", (json_int_t)atomic_load(&m->applied_events),
	                 "skipped", (json_int_t)atomic_load(&m->skipped_events),
	                 "dead_lettered",
	                 (json_int_t)atomic_load(&m->dead_lettered),
	                 "transactions", (json_int_t)atomic_load(&m->batches));
	pthread_mutex_lock(&m->lock);
	if (m->paused)
		paused = json_loads(m->paused, 0, NULL);
	pthread_mutex_unlock(&m->lock);
	if (cons)
		json_object_set_new(cons, "paused", paused ? paused : json_array());
	else
		json_decref(paused);
	json_object_set_new(o, "producer", prod ? prod : json_null());
	json_object_set_new(o, "consumer", cons ? cons : json_null());
	if (xr_log_last_error(line, sizeof(line), &at)) {
		struct timeval tv;
		json_t        *msg = json_string(line);

		gettimeofday(&tv, NULL);
		/* (Not UTF-8: said so rather than left out.) */
		json_object_set_new(o, "last_error", json_pack(
		    "{s:o,s:I,s:o}", "at", iso_json(at), "age_s",
		    (json_int_t)(tv.tv_sec - at / 1000000),
		    "message", msg ? msg : json_string("(not UTF-8: see the log)")));
	} else {
		json_object_set_new(o, "last_error", json_null());
	}
	out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return out;
}

/* Runs on libmicrohttpd's thread. */
static enum MHD_Result
handle(void *cls, struct MHD_Connection *conn, const char *url,
       const char *method, const char *version, const char *upload_data,
       size_t *upload_size, void **con_cls)
{
	xr_metrics_server_t  *s = cls;
	struct MHD_Response  *resp;
	enum MHD_Result       ret;
	unsigned int          status = MHD_HTTP_OK;
	char                 *body;
	const char           *type = "text/plain; version=0.0.4";

	(void)version;
	(void)upload_data;
	(void)upload_size;
	(void)con_cls;
	if (strcmp(method, "GET") != 0) {
		body = strdup("method not allowed\n");
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (strcmp(url, "/metrics") == 0) {
		body = xr_metrics_render(s->m);
	} else if (strcmp(url, "/status") == 0) {
		body = xr_metrics_status_json(s->m);
		type = "application/json";
	} else if (strcmp(url, "/healthz") == 0) {
		body = strdup("ok\n");
	} else {
		body = strdup("not found: try /metrics, /status or /healthz\n");
		status = MHD_HTTP_NOT_FOUND;
	}
	if (!body)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(body), body,
	                                       MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	(void)MHD_add_response_header(resp, "Content-Type", type);
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

xr_metrics_server_t *
xr_metrics_server_start(const char *listen, xr_metrics_t *m, char *errstr,
                        size_t errstr_size)
{
	xr_metrics_server_t *s;
	struct sockaddr_in   sin;
	const char          *colon = strrchr(listen, ':');
	char                 host[64];
	char                *end;
	long                 port;

	if (!colon || (size_t)(colon - listen) >= sizeof(host)) {
		snprintf(errstr, errstr_size, "metrics_listen: expected host:port, "
		         "got \"%s\"", listen);
		return NULL;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535) {
		snprintf(errstr, errstr_size, "metrics_listen: bad port in \"%s\"",
		         listen);
		return NULL;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
		snprintf(errstr, errstr_size, "metrics_listen: \"%s\" is not an "
		         "IPv4 address", host);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	s->m = m;
	s->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
	                             MHD_USE_ERROR_LOG,
	                             (uint16_t)port, NULL, NULL, handle, s,
	                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin,
	                             MHD_OPTION_CONNECTION_TIMEOUT, 10u,
	                             MHD_OPTION_END);
	if (!s->daemon) {
		snprintf(errstr, errstr_size, "metrics_listen: cannot listen on %s",
		         listen);
		free(s);
		return NULL;
	}
	return s;
}

void
xr_metrics_server_stop(xr_metrics_server_t *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->daemon);
	free(s);
}
