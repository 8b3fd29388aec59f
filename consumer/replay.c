/* replay.c: `xregion replay` (see replay.h). */
#include "consumer/replay.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "common/kafka_conf.h"
#include "common/mem.h"
#include "consumer/conflicts.h"
#include "consumer/consume.h"

#define KAFKA_TIMEOUT_MS 10000

xr_replay_table_t *
xr_replay_tally_get(xr_replay_tally_t *tally, const char *name)
{
	size_t i;

	for (i = 0; i < tally->n; i++)
		if (strcmp(tally->t[i].name, name) == 0)
			return &tally->t[i];
	tally->t = xr_reallocarray(tally->t, tally->n + 1, sizeof(*tally->t));
	memset(&tally->t[tally->n], 0, sizeof(tally->t[0]));
	tally->t[tally->n].name = xr_strdup(name);
	return &tally->t[tally->n++];
}

void
xr_replay_tally_term(xr_replay_tally_t *tally)
{
	size_t i;

	for (i = 0; i < tally->n; i++)
		free(tally->t[i].name);
	free(tally->t);
	tally->t = NULL;
	tally->n = 0;
}

void
xr_replay_tally_print(const xr_replay_tally_t *tally, bool dry_run,
                      bool redrive, FILE *out)
{
	size_t i;

	fprintf(out, "%-40s %9s %9s %9s %9s %9s %9s\n", "table", "events",
	        dry_run ? "would" : "applied", "skipped", "conflicts",
	        redrive ? "failed" : "refused", redrive ? "gave up" : "other");
	for (i = 0; i < tally->n; i++) {
		const xr_replay_table_t *t = &tally->t[i];

		fprintf(out, "%-40s %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9" PRIu64
		        " %9" PRIu64 " %9" PRIu64 "\n", t->name, t->events, t->applied,
		        t->skipped, t->conflicts, t->refused,
		        redrive ? t->gave_up : t->other);
	}
}

void
xr_replay_opts_init(xr_replay_opts_t *o)
{
	memset(o, 0, sizeof(*o));
}

void
xr_replay_opts_term(xr_replay_opts_t *o)
{
	xr_list_free(o->tables, o->n_tables);
	xr_list_free(o->regions, o->n_regions);
	free(o->from);
	free(o->until);
	memset(o, 0, sizeof(*o));
}

int
xr_replay_opts_set(xr_replay_opts_t *o, const char *name, const char *arg,
                   char *errstr, size_t errstr_size)
{
	if (strcmp(name, "dry-run") == 0) {
		o->dry_run = true;
		return 0;
	}
	if (!arg) {
		snprintf(errstr, errstr_size, "--%s needs a value", name);
		return -1;
	}
	if (strcmp(name, "from") == 0 || strcmp(name, "until") == 0) {
		char **dst = name[0] == 'f' ? &o->from : &o->until;

		free(*dst);
		*dst = xr_strdup(arg);
		return 0;
	}
	if (strcmp(name, "table") == 0 || strcmp(name, "tables") == 0)
		return xr_list_add_csv(&o->tables, &o->n_tables, arg, true, name, errstr,
		                 errstr_size);
	if (strcmp(name, "source-regions") == 0)
		return xr_list_add_csv(&o->regions, &o->n_regions, arg, false, name,
		                 errstr, errstr_size);
	snprintf(errstr, errstr_size, "--%s: not an option of xregion replay",
	         name);
	return -1;
}

/* A --from or --until: an offset in every partition, or a time (ms). */
typedef struct bound_s {
	bool    is_offset;
	int64_t value;
} bound_t;

static int
parse_bound(const char *name, const char *s, bound_t *b, char *errstr,
            size_t errstr_size)
{
	xr_when_t w;
	char      err[256], *end;

	if (strcmp(s, "beginning") == 0 || strcmp(s, "earliest") == 0) {
		b->is_offset = true;
		b->value = 0;
		return 0;
	}
	errno = 0;
	b->value = strtoll(s, &end, 10);
	if (*s >= '0' && *s <= '9' && *end == '\0' && errno == 0) {
		b->is_offset = true;
		return 0;
	}
	if (xr_conflicts_parse_when(s, &w, err, sizeof(err))) {
		snprintf(errstr, errstr_size, "--%s: \"%.64s\" is neither an offset, "
		         "\"beginning\", a time nor a duration: %s", name, s, err);
		return -1;
	}
	b->is_offset = false;
	if (w.relative) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		b->value = ((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 -
		            w.us) / 1000;
	} else {
		b->value = w.us / 1000;
	}
	return 0;
}

/* The topics to replay, checked against the config; exit status or 0. */
static int
topics_of(const xr_config_t *conf, const xr_replay_opts_t *o, char ***out,
          size_t *nout, FILE *err_out)
{
	char  **topics = NULL;
	size_t  n = 0, i, r, t;

	for (i = 0; i < o->n_regions; i++) {
		bool known = false;

		for (r = 0; r < conf->n_regions; r++)
			if (strcmp(conf->regions[r], o->regions[i]) == 0)
				known = true;
		if (!known) {
			fprintf(err_out, "xregion replay: --source-regions: %s is not "
			        "in regions\n", o->regions[i]);
			xr_list_free(topics, n);
			return 2;
		}
	}
	for (i = 0; i < o->n_tables; i++) {
		const char *dot = strchr(o->tables[i], '.');
		char        schema[256];

		snprintf(schema, sizeof(schema), "%.*s", (int)(dot - o->tables[i]),
		         o->tables[i]);
		if (!xr_config_publishes(conf, schema, dot + 1)) {
			fprintf(err_out, "xregion replay: table %s is not marked pii: "
			        "false in %s: its events are never applied here\n",
			        o->tables[i], conf->path);
			xr_list_free(topics, n);
			return 2;
		}
	}
	for (r = 0; r < conf->n_regions; r++) {
		const char *region = conf->regions[r];
		/* By default the others; this region's own topics when named (a
		 * region restored from a backup gets back its later writes). */
		bool        chosen = o->n_regions == 0 &&
		                     strcmp(region, conf->region) != 0;

		for (i = 0; i < o->n_regions; i++)
			if (strcmp(o->regions[i], region) == 0)
				chosen = true;
		if (!chosen)
			continue;
		for (t = 0; t < conf->n_tables; t++) {
			const xr_table_conf_t *tc = &conf->tables[t];
			char   name[512];
			bool   want = o->n_tables == 0;

			if (tc->pii)
				continue;
			snprintf(name, sizeof(name), "%s.%s", tc->schema, tc->name);
			for (i = 0; i < o->n_tables; i++)
				if (strcmp(o->tables[i], name) == 0)
					want = true;
			if (!want)
				continue;
			topics = xr_reallocarray(topics, n + 1, sizeof(char *));
			snprintf(name, sizeof(name), "%s.%s.%s.%s", conf->topic_prefix,
			         region, tc->schema, tc->name);
			topics[n++] = xr_strdup(name);
		}
	}
	*out = topics;
	*nout = n;
	return 0;
}

/*
 * Offsets for time ms in every partition of l (offset field set to the
 * first offset at or after it, or -1 past the end).
 */
static int
for_time(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *l, int64_t ms,
         char *errstr, size_t errstr_size)
{
	rd_kafka_resp_err_t e;
	int i;

	for (i = 0; i < l->cnt; i++)
		l->elems[i].offset = ms;
	e = rd_kafka_offsets_for_times(rk, l, KAFKA_TIMEOUT_MS);
	if (e) {
		snprintf(errstr, errstr_size, "kafka: offsets for times: %s",
		         rd_kafka_err2str(e));
		return -1;
	}
	for (i = 0; i < l->cnt; i++)
		if (l->elems[i].err) {
			snprintf(errstr, errstr_size, "kafka: offsets for times of %s "
			         "[%d]: %s", l->elems[i].topic, l->elems[i].partition,
			         rd_kafka_err2str(l->elems[i].err));
			return -1;
		}
	return 0;
}

/*
 * The range of every partition of topics: from..until, within what Kafka
 * holds now.  Topics that do not exist are reported and left out.
 */
static int
plan(const xr_config_t *conf, char **topics, size_t ntopics,
     const bound_t *from, const bound_t *until, xr_replay_part_t **out,
     size_t *nout, FILE *out_f, char *errstr, size_t errstr_size)
{
	rd_kafka_t      *rk;
	rd_kafka_topic_partition_list_t *l;
	xr_replay_part_t *parts = NULL;
	size_t n = 0, i;
	int    p, rc = -1;

	rk = xr_kafka_query_new(conf, errstr, errstr_size);
	if (!rk)
		return -1;
	l = rd_kafka_topic_partition_list_new(16);
	for (i = 0; i < ntopics; i++) {
		const struct rd_kafka_metadata *md = NULL;
		rd_kafka_topic_t   *rkt = rd_kafka_topic_new(rk, topics[i], NULL);
		rd_kafka_resp_err_t e;

		if (!rkt) {
			snprintf(errstr, errstr_size, "kafka: topic %s: %s", topics[i],
			         rd_kafka_err2str(rd_kafka_last_error()));
			goto out;
		}
		e = rd_kafka_metadata(rk, 0, rkt, &md, KAFKA_TIMEOUT_MS);
		rd_kafka_topic_destroy(rkt);
		if (e) {
			snprintf(errstr, errstr_size, "kafka: metadata of %s: %s",
			         topics[i], rd_kafka_err2str(e));
			goto out;
		}
		if (md->topic_cnt != 1 || md->topics[0].err) {
			fprintf(out_f, "  %s: no such topic (nothing published yet)\n",
			        topics[i]);
			rd_kafka_metadata_destroy(md);
			continue;
		}
		for (p = 0; p < md->topics[0].partition_cnt; p++) {
			int64_t lo, hi;

			e = rd_kafka_query_watermark_offsets(rk, topics[i], p, &lo, &hi,
			                                     KAFKA_TIMEOUT_MS);
			if (e) {
				snprintf(errstr, errstr_size, "kafka: offsets of %s [%d]: %s",
				         topics[i], p, rd_kafka_err2str(e));
				rd_kafka_metadata_destroy(md);
				goto out;
			}
			parts = xr_reallocarray(parts, n + 1, sizeof(*parts));
			memset(&parts[n], 0, sizeof(parts[n]));
			parts[n].topic = xr_strdup(topics[i]);
			parts[n].partition = p;
			parts[n].start = from->is_offset
			                 ? (from->value > lo ? from->value : lo) : lo;
			parts[n].end = hi;
			if (until && until->is_offset && until->value < hi)
				parts[n].end = until->value;
			n++;
			rd_kafka_topic_partition_list_add(l, topics[i], p);
		}
		rd_kafka_metadata_destroy(md);
	}
	/* Times: the first offset at or after them; past the end: the end. */
	if (!from->is_offset && l->cnt > 0) {
		if (for_time(rk, l, from->value, errstr, errstr_size))
			goto out;
		for (i = 0; i < n; i++)
			if (l->elems[i].offset >= 0 && l->elems[i].offset > parts[i].start)
				parts[i].start = l->elems[i].offset;
			else if (l->elems[i].offset < 0)
				parts[i].start = parts[i].end;
	}
	if (until && !until->is_offset && l->cnt > 0) {
		if (for_time(rk, l, until->value, errstr, errstr_size))
			goto out;
		for (i = 0; i < n; i++)
			if (l->elems[i].offset >= 0 && l->elems[i].offset < parts[i].end)
				parts[i].end = l->elems[i].offset;
	}
	*out = parts;
	*nout = n;
	parts = NULL;
	rc = 0;
out:
	for (i = 0; parts && i < n; i++)
		free(parts[i].topic);
	free(parts);
	rd_kafka_topic_partition_list_destroy(l);
	rd_kafka_destroy(rk);
	return rc;
}

int
xr_replay_command(const xr_config_t *conf, const xr_replay_opts_t *o,
                  atomic_int *stop, FILE *out, FILE *err_out)
{
	xr_replay_part_t *parts = NULL;
	xr_replay_tally_t tally = { NULL, 0 };
	bound_t  from, until;
	char   **topics = NULL, err[1024];
	size_t   ntopics = 0, nparts = 0, i;
	int64_t  total = 0;
	int      rc;

	if (!o->from) {
		fprintf(err_out, "xregion replay: --from is required (an offset, "
		        "\"beginning\", a time or a duration ago such as 1h)\n");
		return 2;
	}
	if (parse_bound("from", o->from, &from, err, sizeof(err)) ||
	    (o->until && parse_bound("until", o->until, &until, err,
	                             sizeof(err)))) {
		fprintf(err_out, "xregion replay: %s\n", err);
		return 2;
	}
	if ((rc = topics_of(conf, o, &topics, &ntopics, err_out)) != 0)
		return rc;
	if (ntopics == 0) {
		fprintf(err_out, "xregion replay: no table topic to replay (no "
		        "table marked pii: false, or no other region)\n");
		return 2;
	}
	if (plan(conf, topics, ntopics, &from, o->until ? &until : NULL, &parts,
	         &nparts, out, err, sizeof(err))) {
		fprintf(err_out, "xregion replay: %s\n", err);
		rc = 1;
		goto done;
	}
	for (i = 0; i < nparts; i++)
		if (parts[i].end > parts[i].start)
			total += parts[i].end - parts[i].start;
	fprintf(out, "replay%s into region %s: %" PRId64 " event(s) in %zu "
	        "partition(s) of %zu topic(s), from %s to %s\n",
	        o->dry_run ? " (dry run)" : "", conf->region, total, nparts,
	        ntopics, o->from, o->until ? o->until : "the end now");
	if (total == 0) {
		fprintf(out, "nothing to do\n");
		rc = 0;
		goto done;
	}
	fflush(out);
	rc = xr_consume_replay(conf, parts, nparts, o->dry_run, &tally, stop);
	xr_replay_tally_print(&tally, o->dry_run, false, out);
	fprintf(out, "%s\n",
	        rc != 0 ? "replay stopped before the end of its range"
	        : o->dry_run ? "dry run: every batch was rolled back; \"would\" "
	                       "counts the events that would apply (each "
	                       "compared with the rows as they are now)"
	                     : "replay done: skipped events are older than, or "
	                       "the same as, what this region holds");
done:
	for (i = 0; i < nparts; i++)
		free(parts[i].topic);
	free(parts);
	xr_list_free(topics, ntopics);
	xr_replay_tally_term(&tally);
	return rc;
}
