/* dlq.c: `xregion dlq list|show|replay` (see dlq.h). */
#include "consumer/dlq.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "common/kafka_conf.h"
#include "common/mem.h"
#include "common/pgconn.h"
#include "consumer/consume.h"
#include "consumer/event.h"
#include "consumer/registry.h"
#include "consumer/replay.h"

#define KAFKA_TIMEOUT_MS 10000
#define DEFAULT_MAX_REPLAYS 3

void
xr_dlq_opts_init(xr_dlq_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->max_replays = DEFAULT_MAX_REPLAYS;
	o->offset = -1;
}

int
xr_dlq_opts_args(xr_dlq_opts_t *o, int argc, char *const *argv,
                 char *errstr, size_t errstr_size)
{
	char *end;

	if (argc < 1) {
		snprintf(errstr, errstr_size, "an action is required: list, show "
		         "PARTITION:OFFSET or replay");
		return -1;
	}
	if (strcmp(argv[0], "list") == 0)
		o->action = XR_DLQ_LIST;
	else if (strcmp(argv[0], "show") == 0)
		o->action = XR_DLQ_SHOW;
	else if (strcmp(argv[0], "replay") == 0)
		o->action = XR_DLQ_REPLAY;
	else {
		snprintf(errstr, errstr_size, "unknown action \"%.32s\": expected "
		         "list, show or replay", argv[0]);
		return -1;
	}
	if (o->action != XR_DLQ_SHOW) {
		if (argc > 1) {
			snprintf(errstr, errstr_size, "%s takes no argument (got "
			         "\"%.32s\")", argv[0], argv[1]);
			return -1;
		}
		return 0;
	}
	if (argc != 2) {
		snprintf(errstr, errstr_size, "show needs one PARTITION:OFFSET (as "
		         "list prints them)");
		return -1;
	}
	errno = 0;
	if (strchr(argv[1], ':')) {
		o->partition = (int)strtol(argv[1], &end, 10);
		if (*end != ':' || o->partition < 0)
			goto bad;
		o->offset = strtoll(end + 1, &end, 10);
	} else {
		o->partition = 0;
		o->offset = strtoll(argv[1], &end, 10);
	}
	if (*end || errno || o->offset < 0)
		goto bad;
	return 0;
bad:
	snprintf(errstr, errstr_size, "show: \"%.32s\" is not PARTITION:OFFSET",
	         argv[1]);
	return -1;
}

int
xr_dlq_opts_set(xr_dlq_opts_t *o, const char *name, const char *arg,
                char *errstr, size_t errstr_size)
{
	char *end;
	long  v;

	if (strcmp(name, "dry-run") == 0) {
		o->dry_run = true;
		return 0;
	}
	if (strcmp(name, "max-replays") == 0 && arg) {
		errno = 0;
		v = strtol(arg, &end, 10);
		if (errno || *end || end == arg || v < 1 || v > 1000) {
			snprintf(errstr, errstr_size, "--max-replays: expected a whole "
			         "number from 1 to 1000, got \"%.32s\"", arg);
			return -1;
		}
		o->max_replays = (int)v;
		return 0;
	}
	snprintf(errstr, errstr_size, "--%s: not an option of xregion dlq", name);
	return -1;
}

/* Header name of m as a string into buf ("" if absent). */
static const char *
header(const rd_kafka_message_t *m, const char *name, char *buf, size_t size)
{
	rd_kafka_headers_t *h;
	const void         *v;
	size_t              n;

	buf[0] = '\0';
	if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    rd_kafka_header_get_last(h, name, &v, &n) ==
	        RD_KAFKA_RESP_ERR_NO_ERROR && v) {
		if (n >= size)
			n = size - 1;
		memcpy(buf, v, n);
		buf[n] = '\0';
	}
	return buf;
}

/* The dead-letter topic's partitions: [lo, hi) of each. */
typedef struct dpart_s {
	int32_t partition;
	int64_t lo, hi, redriven;   /* redriven: the stored position, or lo */
} dpart_t;

static int
dlq_partitions(const xr_config_t *conf, dpart_t **out, int *nout,
               char *errstr, size_t errstr_size)
{
	rd_kafka_t      *rk;
	rd_kafka_topic_t *rkt;
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t e;
	dpart_t *p = NULL;
	int      i, n, rc = -1;

	rk = xr_kafka_query_new(conf, errstr, errstr_size);
	if (!rk)
		return -1;
	rkt = rd_kafka_topic_new(rk, conf->dead_letter_topic, NULL);
	e = rkt ? rd_kafka_metadata(rk, 0, rkt, &md, KAFKA_TIMEOUT_MS)
	        : rd_kafka_last_error();
	if (rkt)
		rd_kafka_topic_destroy(rkt);
	if (e || md->topic_cnt != 1 || md->topics[0].err) {
		snprintf(errstr, errstr_size, "kafka: dead-letter topic %s: %s (was "
		         "xregion setup run?)", conf->dead_letter_topic,
		         rd_kafka_err2str(e ? e : md->topic_cnt == 1
		                                    ? md->topics[0].err
		                                    : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
		goto out;
	}
	n = md->topics[0].partition_cnt;
	p = xr_calloc((size_t)n + 1, sizeof(*p));
	for (i = 0; i < n; i++) {
		p[i].partition = md->topics[0].partitions[i].id;
		e = rd_kafka_query_watermark_offsets(rk, conf->dead_letter_topic,
		                                     p[i].partition, &p[i].lo,
		                                     &p[i].hi, KAFKA_TIMEOUT_MS);
		if (e) {
			snprintf(errstr, errstr_size, "kafka: offsets of %s [%d]: %s",
			         conf->dead_letter_topic, (int)p[i].partition,
			         rd_kafka_err2str(e));
			goto out;
		}
		p[i].redriven = p[i].lo;
	}
	*out = p;
	*nout = n;
	p = NULL;
	rc = 0;
out:
	if (md)
		rd_kafka_metadata_destroy(md);
	free(p);
	rd_kafka_destroy(rk);
	return rc;
}

/* The redrive positions stored in the database (xregion.offsets). */
static int
redriven(const xr_config_t *conf, dpart_t *p, int n, char *errstr,
         size_t errstr_size)
{
	const char *params[1] = { conf->dead_letter_topic };
	PGconn     *conn = xr_pg_connect(conf->pg_dsn, "xregion-dlq", errstr,
	                                 errstr_size);
	PGresult   *res;
	int         r, i;

	if (!conn)
		return -1;
	res = PQexecParams(conn, "SELECT partition, next_offset FROM "
	                   "xregion.offsets WHERE topic = $1",
	                   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "reading xregion.offsets: %s (was "
		         "xregion setup run?)", PQerrorMessage(conn));
		PQclear(res);
		PQfinish(conn);
		return -1;
	}
	for (r = 0; r < PQntuples(res); r++)
		for (i = 0; i < n; i++)
			if (p[i].partition == atoi(PQgetvalue(res, r, 0))) {
				int64_t at = strtoll(PQgetvalue(res, r, 1), NULL, 10);

				if (at > p[i].redriven)
					p[i].redriven = at;
			}
	PQclear(res);
	PQfinish(conn);
	return 0;
}

typedef int (visit_t)(void *ctx, const rd_kafka_message_t *m);

/*
 * Reads [from[i], to[i]) of each partition of the dead-letter topic
 * (skipping empty ranges), calling visit on each message.  Gives up after
 * 30 s without a message.  Returns 0, or -1 with errstr.
 */
static int
read_range(const xr_config_t *conf, const dpart_t *p, int n,
           const int64_t *from, const int64_t *to, visit_t *visit, void *ctx,
           char *errstr, size_t errstr_size)
{
	char        group[128];
	const char *defaults[] = { "group.id", group,
	                           "enable.auto.commit", "false",
	                           "enable.partition.eof", "false", NULL };
	rd_kafka_conf_t *kc;
	rd_kafka_t      *rk;
	rd_kafka_topic_partition_list_t *l;
	int64_t *next = xr_calloc((size_t)n + 1, sizeof(int64_t));
	int      i, open = 0, rc = -1;
	time_t   last = time(NULL);
	char     err[512];

	snprintf(group, sizeof(group), "xregion-dlq-%s-%ld", conf->region,
	         (long)getpid());
	kc = xr_kafka_conf_new(conf, defaults, NULL, err, sizeof(err));
	if (!kc) {
		snprintf(errstr, errstr_size, "%s", err);
		free(next);
		return -1;
	}
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
	if (!rk) {
		snprintf(errstr, errstr_size, "kafka: %s", err);
		rd_kafka_conf_destroy(kc);
		free(next);
		return -1;
	}
	rd_kafka_poll_set_consumer(rk);
	l = rd_kafka_topic_partition_list_new(n + 1);
	for (i = 0; i < n; i++) {
		next[i] = from[i];
		if (from[i] >= to[i])
			continue;
		rd_kafka_topic_partition_list_add(l, conf->dead_letter_topic,
		                                  p[i].partition)->offset = from[i];
		open++;
	}
	if (rd_kafka_assign(rk, l)) {
		snprintf(errstr, errstr_size, "kafka: assign failed");
		goto out;
	}
	while (open > 0) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);

		if (!m) {
			if (time(NULL) - last > 30) {
				snprintf(errstr, errstr_size, "kafka: no message from %s "
				         "within 30 s", conf->dead_letter_topic);
				goto out;
			}
			continue;
		}
		last = time(NULL);
		if (m->err) {
			rd_kafka_message_destroy(m);
			continue;
		}
		for (i = 0; i < n; i++)
			if (p[i].partition == m->partition)
				break;
		if (i < n && m->offset >= next[i] && m->offset < to[i]) {
			if (visit(ctx, m)) {
				rd_kafka_message_destroy(m);
				snprintf(errstr, errstr_size, "stopped");
				goto out;
			}
			next[i] = m->offset + 1;
			if (next[i] >= to[i])
				open--;
		}
		rd_kafka_message_destroy(m);
	}
	rc = 0;
out:
	rd_kafka_topic_partition_list_destroy(l);
	(void)rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	free(next);
	return rc;
}

/* list: counts by table and reason. */
typedef struct group_s {
	char    *table, *reason;
	uint64_t count, pending;
	int      max_replays;
	char     first[40];   /* PARTITION:OFFSET of the first */
} group_t;

typedef struct list_ctx_s {
	const xr_config_t *conf;
	const dpart_t     *p;
	int                n;
	group_t           *g;
	size_t             ng;
	uint64_t           total, pending;
} list_ctx_t;

static int
list_visit(void *ctx, const rd_kafka_message_t *m)
{
	list_ctx_t *lc = ctx;
	char        topic[256], reason[512], replays[16];
	const char *table = topic, *dot;
	bool        pending = false;
	size_t      i;
	int         k;

	header(m, "xr-dlq-topic", topic, sizeof(topic));
	header(m, "xr-dlq-reason", reason, sizeof(reason));
	header(m, "xr-dlq-replays", replays, sizeof(replays));
	/* <prefix>.<region>.<schema>.<table>: the table part */
	if ((dot = strchr(topic, '.')) && (dot = strchr(dot + 1, '.')))
		table = dot + 1;
	if (!topic[0])
		table = "?";
	for (k = 0; k < lc->n; k++)
		if (lc->p[k].partition == m->partition &&
		    m->offset >= lc->p[k].redriven)
			pending = true;
	/* Reasons differ in offsets and values: group by their first words. */
	if (strlen(reason) > 72)
		reason[72] = '\0';
	for (i = 0; i < lc->ng; i++)
		if (strcmp(lc->g[i].table, table) == 0 &&
		    strcmp(lc->g[i].reason, reason) == 0)
			break;
	if (i == lc->ng) {
		lc->g = xr_reallocarray(lc->g, lc->ng + 1, sizeof(*lc->g));
		memset(&lc->g[i], 0, sizeof(lc->g[i]));
		lc->g[i].table = xr_strdup(table);
		lc->g[i].reason = xr_strdup(reason);
		snprintf(lc->g[i].first, sizeof(lc->g[i].first), "%d:%" PRId64,
		         (int)m->partition, m->offset);
		lc->ng++;
	}
	lc->g[i].count++;
	lc->g[i].pending += pending;
	if (atoi(replays) > lc->g[i].max_replays)
		lc->g[i].max_replays = atoi(replays);
	lc->total++;
	lc->pending += pending;
	return 0;
}

static int
do_list(const xr_config_t *conf, dpart_t *p, int n, FILE *out, FILE *err_out)
{
	list_ctx_t lc = { conf, p, n, NULL, 0, 0, 0 };
	int64_t   *from = xr_calloc((size_t)n + 1, sizeof(int64_t));
	int64_t   *to = xr_calloc((size_t)n + 1, sizeof(int64_t));
	char       err[1024];
	size_t     i;
	int        k, rc = 0;

	for (k = 0; k < n; k++) {
		from[k] = p[k].lo;
		to[k] = p[k].hi;
	}
	if (read_range(conf, p, n, from, to, list_visit, &lc, err, sizeof(err))) {
		fprintf(err_out, "xregion dlq: %s\n", err);
		rc = 1;
	} else {
		fprintf(out, "dead-letter topic %s: %" PRIu64 " dead letter(s), %"
		        PRIu64 " not redriven yet\n", conf->dead_letter_topic,
		        lc.total, lc.pending);
		if (lc.ng)
			fprintf(out, "%7s %8s %8s  %-10s %-28s %s\n", "count", "pending",
			        "replays", "first", "table", "reason");
		for (i = 0; i < lc.ng; i++)
			fprintf(out, "%7" PRIu64 " %8" PRIu64 " %8d  %-10s %-28s %s\n",
			        lc.g[i].count, lc.g[i].pending, lc.g[i].max_replays,
			        lc.g[i].first, lc.g[i].table, lc.g[i].reason);
	}
	for (i = 0; i < lc.ng; i++) {
		free(lc.g[i].table);
		free(lc.g[i].reason);
	}
	free(lc.g);
	free(from);
	free(to);
	return rc;
}

/* show: one message, decoded. */
typedef struct show_ctx_s {
	const xr_config_t *conf;
	FILE              *out;
	bool               seen;
} show_ctx_t;

static void
print_image(FILE *out, const char *what, const xr_event_t *ev,
            const xr_eval_t *vals)
{
	int  k;
	bool any = false;

	fprintf(out, "%s:", what);
	for (k = 0; k < ev->nfields; k++) {
		const char *v;

		if (!vals[k].present)
			continue;
		any = true;
		v = xr_event_text(ev, &vals[k]);
		if (vals[k].unchanged)
			fprintf(out, "\n  %s = (unchanged TOASTed value, not sent)",
			        ev->schema->row_fields[k].column);
		else if (!v)
			fprintf(out, "\n  %s = NULL", ev->schema->row_fields[k].column);
		else
			fprintf(out, "\n  %s = %s", ev->schema->row_fields[k].column, v);
	}
	fprintf(out, "%s\n", any ? "" : " (none)");
}

static int
show_visit(void *ctx, const rd_kafka_message_t *m)
{
	show_ctx_t    *sc = ctx;
	char           b[512], err[1024];
	xr_registry_t *reg;
	xr_event_t     ev;
	int            rc;

	sc->seen = true;
	fprintf(sc->out, "dead letter %d:%" PRId64 " of %s\n", (int)m->partition,
	        m->offset, sc->conf->dead_letter_topic);
	fprintf(sc->out, "  from:     %s", header(m, "xr-dlq-topic", b, sizeof(b)));
	fprintf(sc->out, " [%s]", header(m, "xr-dlq-partition", b, sizeof(b)));
	fprintf(sc->out, " offset %s\n", header(m, "xr-dlq-offset", b, sizeof(b)));
	fprintf(sc->out, "  reason:   %s\n",
	        header(m, "xr-dlq-reason", b, sizeof(b)));
	header(m, "xr-dlq-replays", b, sizeof(b));
	fprintf(sc->out, "  replays:  %s\n", b[0] ? b : "0");
	fprintf(sc->out, "  event id: %s\n",
	        header(m, "xr-event-id", b, sizeof(b)));
	reg = xr_registry_new(sc->conf, err, sizeof(err));
	if (!reg) {
		fprintf(sc->out, "  (not decoded: %s)\n", err);
		return 0;
	}
	xr_event_init(&ev);
	header(m, "xr-schema", b, sizeof(b));
	rc = xr_event_decode(&ev, reg, m->payload, m->len, b[0] ? b : NULL, err,
	                     sizeof(err));
	if (rc) {
		fprintf(sc->out, "  (not decoded: %s; %zu bytes)\n", err, m->len);
	} else {
		fprintf(sc->out, "  event:    %s of %s.%s from region %s, commit "
		        "time %" PRId64 " us, commit LSN %" PRIX64 "\n",
		        xr_op_names[ev.op], ev.nspname, ev.relname,
		        ev.source_region, ev.source_commit_ts,
		        (uint64_t)ev.commit_lsn);
		if (ev.has_before)
			print_image(sc->out, "before", &ev, ev.before);
		if (ev.has_after)
			print_image(sc->out, "after", &ev, ev.after);
	}
	xr_event_term(&ev);
	xr_registry_destroy(reg);
	return 0;
}

static int
do_show(const xr_config_t *conf, const xr_dlq_opts_t *o, dpart_t *p, int n,
        FILE *out, FILE *err_out)
{
	show_ctx_t sc = { conf, out, false };
	int64_t   *from = xr_calloc((size_t)n + 1, sizeof(int64_t));
	int64_t   *to = xr_calloc((size_t)n + 1, sizeof(int64_t));
	char       err[1024];
	int        k, rc = 0;
	bool       known = false;

	for (k = 0; k < n; k++) {
		from[k] = to[k] = 0;
		if (p[k].partition == o->partition && o->offset >= p[k].lo &&
		    o->offset < p[k].hi) {
			from[k] = o->offset;
			to[k] = o->offset + 1;
			known = true;
		}
	}
	if (!known) {
		fprintf(err_out, "xregion dlq: %s has no message %d:%lld (xregion "
		        "dlq list shows what there is)\n", conf->dead_letter_topic,
		        o->partition, o->offset);
		rc = 1;
	} else if (read_range(conf, p, n, from, to, show_visit, &sc, err,
	                      sizeof(err))) {
		fprintf(err_out, "xregion dlq: %s\n", err);
		rc = 1;
	}
	free(from);
	free(to);
	return rc;
}

static int
do_replay(const xr_config_t *conf, const xr_dlq_opts_t *o, dpart_t *p,
          int n, atomic_int *stop, FILE *out)
{
	xr_replay_part_t *parts = xr_calloc((size_t)n + 1, sizeof(*parts));
	xr_replay_tally_t tally = { NULL, 0 };
	int64_t           total = 0;
	int               k, rc;

	for (k = 0; k < n; k++) {
		parts[k].topic = xr_strdup(conf->dead_letter_topic);
		parts[k].partition = p[k].partition;
		parts[k].start = p[k].redriven;
		parts[k].end = p[k].hi;
		if (parts[k].end > parts[k].start)
			total += parts[k].end - parts[k].start;
	}
	fprintf(out, "redrive%s of %s: %" PRId64 " dead letter(s) not redriven "
	        "yet\n", o->dry_run ? " (dry run)" : "", conf->dead_letter_topic,
	        total);
	if (total == 0) {
		fprintf(out, "nothing to do\n");
		for (k = 0; k < n; k++)
			free(parts[k].topic);
		free(parts);
		return 0;
	}
	fflush(out);
	rc = xr_consume_redrive(conf, parts, (size_t)n, o->dry_run,
	                        o->max_replays, &tally, stop);
	xr_replay_tally_print(&tally, o->dry_run, true, out);
	fprintf(out, "%s\n",
	        rc != 0 ? "redrive stopped before the end"
	        : o->dry_run ? "dry run: nothing was applied, stored or produced"
	                     : "redrive done: failed ones are back on the "
	                       "dead-letter topic with xr-dlq-replays one higher");
	xr_replay_tally_term(&tally);
	for (k = 0; k < n; k++)
		free(parts[k].topic);
	free(parts);
	return rc;
}

int
xr_dlq_command(const xr_config_t *conf, const xr_dlq_opts_t *o,
               atomic_int *stop, FILE *out, FILE *err_out)
{
	dpart_t *p = NULL;
	int      n = 0, rc;
	char     err[1024];

	if (dlq_partitions(conf, &p, &n, err, sizeof(err))) {
		fprintf(err_out, "xregion dlq: %s\n", err);
		return 1;
	}
	if (o->action != XR_DLQ_SHOW &&
	    redriven(conf, p, n, err, sizeof(err))) {
		fprintf(err_out, "xregion dlq: %s\n", err);
		free(p);
		return 1;
	}
	switch (o->action) {
	case XR_DLQ_LIST:
		rc = do_list(conf, p, n, out, err_out);
		break;
	case XR_DLQ_SHOW:
		rc = do_show(conf, o, p, n, out, err_out);
		break;
	default:
		rc = do_replay(conf, o, p, n, stop, out);
		break;
	}
	free(p);
	return rc;
}
