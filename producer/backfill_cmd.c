/* backfill_cmd.c: `xregion backfill` (see backfill_cmd.h). */
#include "producer/backfill_cmd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "common/buf.h"
#include "common/lsn.h"
#include "common/manifest.h"
#include "common/mem.h"
#include "common/pgconn.h"

#define DEFAULT_CHUNK 2000
#define MAX_CHUNK     100000

void
xr_backfill_opts_init(xr_backfill_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->rate = -1;
	o->chunk_size = DEFAULT_CHUNK;
	o->wait = true;
}

void
xr_backfill_opts_term(xr_backfill_opts_t *o)
{
	size_t i;

	for (i = 0; i < o->n_tables; i++)
		free(o->tables[i]);
	free(o->tables);
	free(o->for_region);
	free(o->manifest);
	memset(o, 0, sizeof(*o));
}

static int
add_tables(xr_backfill_opts_t *o, const char *arg, char *errstr,
           size_t errstr_size)
{
	const char *p = arg;

	while (*p) {
		const char *end = strchr(p, ',');
		size_t      n = end ? (size_t)(end - p) : strlen(p);
		char       *t;

		if (n == 0) {
			snprintf(errstr, errstr_size, "--table: empty table name in "
			         "\"%.64s\"", arg);
			return -1;
		}
		if (memchr(p, '.', n)) {
			t = xr_calloc(n + 1, 1);
			memcpy(t, p, n);
		} else {
			t = xr_calloc(n + 8, 1);
			memcpy(t, "public.", 7);
			memcpy(t + 7, p, n);
		}
		o->tables = xr_reallocarray(o->tables, o->n_tables + 1,
		                            sizeof(char *));
		o->tables[o->n_tables++] = t;
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

static int
parse_long(const char *name, const char *arg, long lo, long hi, long *out,
           char *errstr, size_t errstr_size)
{
	char *end;
	long  v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < lo || v > hi) {
		snprintf(errstr, errstr_size, "--%s: expected a whole number from "
		         "%ld to %ld, got \"%.64s\"", name, lo, hi, arg);
		return -1;
	}
	*out = v;
	return 0;
}

static int
set_mode(xr_backfill_opts_t *o, xr_backfill_mode_t m, const char *name,
         char *errstr, size_t errstr_size)
{
	if (o->mode != XR_BACKFILL_RUN && o->mode != m) {
		snprintf(errstr, errstr_size, "--%s: only one of --dry-run, --status "
		         "and --cancel at a time", name);
		return -1;
	}
	o->mode = m;
	return 0;
}

int
xr_backfill_opts_set(xr_backfill_opts_t *o, const char *name,
                     const char *arg, char *errstr, size_t errstr_size)
{
	if (strcmp(name, "dry-run") == 0)
		return set_mode(o, XR_BACKFILL_DRY_RUN, name, errstr, errstr_size);
	if (strcmp(name, "status") == 0)
		return set_mode(o, XR_BACKFILL_STATUS, name, errstr, errstr_size);
	if (strcmp(name, "cancel") == 0)
		return set_mode(o, XR_BACKFILL_CANCEL, name, errstr, errstr_size);
	if (strcmp(name, "no-wait") == 0) {
		o->wait = false;
		return 0;
	}
	if (strcmp(name, "again") == 0) {
		o->again = true;
		return 0;
	}
	if (!arg) {
		snprintf(errstr, errstr_size, "--%s needs a value", name);
		return -1;
	}
	if (strcmp(name, "table") == 0 || strcmp(name, "tables") == 0)
		return add_tables(o, arg, errstr, errstr_size);
	if (strcmp(name, "for") == 0) {
		free(o->for_region);
		o->for_region = xr_strdup(arg);
		return 0;
	}
	if (strcmp(name, "manifest") == 0) {
		free(o->manifest);
		o->manifest = xr_strdup(arg);
		return 0;
	}
	if (strcmp(name, "rate") == 0)
		return parse_long(name, arg, 0, 100000000, &o->rate, errstr,
		                  errstr_size);
	if (strcmp(name, "chunk-size") == 0)
		return parse_long(name, arg, 1, MAX_CHUNK, &o->chunk_size, errstr,
		                  errstr_size);
	snprintf(errstr, errstr_size, "--%s: not an option of xregion backfill",
	         name);
	return -1;
}

/* One table asked for, as the database describes it. */
typedef struct job_s {
	char    *schema, *name;
	int64_t  rows;        /* estimate */
	char    *pk;          /* "a, b" */
	int64_t  id;          /* its job, 0 if none */
	char     state[16];
	int64_t  sent, skipped, total;
	int64_t  first_sent;  /* rows_sent when following started */
	int64_t  ok_us;       /* when it last moved */
	bool     follow;
} job_t;

static void
jobs_free(job_t *j, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(j[i].schema);
		free(j[i].name);
		free(j[i].pk);
	}
	free(j);
}

static PGresult *
exec(PGconn *conn, const char *sql, int n, const char *const *params,
     ExecStatusType want, FILE *err_out)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) != want) {
		fprintf(err_out, "xregion backfill: %s", PQerrorMessage(conn));
		PQclear(res);
		return NULL;
	}
	return res;
}

/*
 * The tables given, as a text[] literal into names (initialized here; the
 * caller terms it): {} when none are.
 */
static void
tables_literal(const xr_backfill_opts_t *o, xr_buf_t *names)
{
	size_t i;

	xr_buf_init(names);
	xr_buf_putc(names, '{');
	for (i = 0; i < o->n_tables; i++) {
		if (i)
			xr_buf_putc(names, ',');
		xr_buf_json_str(names, o->tables[i], strlen(o->tables[i]));
	}
	xr_buf_putc(names, '}');
}

/* Prints the jobs of the tables (all when none are given). */
static int
show_status(PGconn *conn, const xr_backfill_opts_t *o, FILE *out,
            FILE *err_out)
{
	xr_buf_t    names;
	const char *p[1];
	PGresult   *res;
	int         r;

	tables_literal(o, &names);
	p[0] = names.data;
	res = exec(conn,
	           "SELECT id, table_schema || '.' || table_name, "
	           "coalesce(for_region, '*'), "
	           "CASE WHEN state = 'running' THEN state || ' (' || phase || ')' "
	           "ELSE state END, rows_sent || '+' || tombstones_sent, "
	           "coalesce(rows_total::text, '?'), rows_skipped, chunks, "
	           "coalesce(to_char(started_at, 'YYYY-MM-DD HH24:MI:SS'), '-'), "
	           "coalesce(to_char(finished_at, 'YYYY-MM-DD HH24:MI:SS'), '-'), "
	           "coalesce(error, '') FROM xregion.backfills "
	           "WHERE cardinality($1::text[]) = 0 "
	           "   OR table_schema || '.' || table_name = ANY ($1::text[]) "
	           "ORDER BY id",
	           1, p, PGRES_TUPLES_OK, err_out);
	xr_buf_term(&names);
	if (!res)
		return 1;
	if (PQntuples(res) == 0)
		fprintf(out, "no backfills\n");
	else
		fprintf(out, "%-5s %-32s %-6s %-20s %12s %12s %9s %7s  %-19s  %-19s\n",
		        "id", "table", "for", "state", "sent+tombs", "rows (est.)",
		        "skipped", "chunks", "started", "finished");
	for (r = 0; r < PQntuples(res); r++) {
		fprintf(out, "%-5s %-32s %-6s %-20s %12s %12s %9s %7s  %-19s  %-19s\n",
		        PQgetvalue(res, r, 0), PQgetvalue(res, r, 1),
		        PQgetvalue(res, r, 2), PQgetvalue(res, r, 3),
		        PQgetvalue(res, r, 4), PQgetvalue(res, r, 5),
		        PQgetvalue(res, r, 6), PQgetvalue(res, r, 7),
		        PQgetvalue(res, r, 8), PQgetvalue(res, r, 9));
		if (PQgetvalue(res, r, 10)[0])
			fprintf(out, "      error: %s\n", PQgetvalue(res, r, 10));
	}
	PQclear(res);
	return 0;
}

/*
 * Checks every table asked for (all pii: false tables when none) against
 * the config and the database, filling *jobs.  Prints each refusal.
 * Returns 0, 1 (database error) or 2 (refused).
 */
static int
check_tables(PGconn *conn, const xr_config_t *conf,
             const xr_backfill_opts_t *o, job_t **jobs, size_t *njobs,
             FILE *err_out)
{
	size_t  i, n = 0, want = o->n_tables ? o->n_tables : conf->n_tables;
	job_t  *j = xr_calloc(want + 1, sizeof(*j));
	int     rc = 0;

	for (i = 0; i < want; i++) {
		const xr_table_conf_t *t = NULL;
		char        schema[256], name[256];
		const char *p[3] = { schema, name, conf->publication };
		PGresult   *res;
		size_t      k;

		if (o->n_tables) {
			const char *dot = strchr(o->tables[i], '.');

			snprintf(schema, sizeof(schema), "%.*s",
			         (int)(dot - o->tables[i]), o->tables[i]);
			snprintf(name, sizeof(name), "%s", dot + 1);
			for (k = 0; k < conf->n_tables; k++)
				if (strcmp(conf->tables[k].schema, schema) == 0 &&
				    strcmp(conf->tables[k].name, name) == 0)
					t = &conf->tables[k];
			if (!t) {
				fprintf(err_out, "xregion backfill: table %s.%s is not in "
				        "%s: only replicated tables are backfilled\n",
				        schema, name, conf->path);
				rc = 2;
				continue;
			}
		} else {
			t = &conf->tables[i];
			snprintf(schema, sizeof(schema), "%s", t->schema);
			snprintf(name, sizeof(name), "%s", t->name);
		}
		if (t->pii) {
			if (o->n_tables) {
				fprintf(err_out, "xregion backfill: table %s.%s is not "
				        "marked pii: false in %s: personal data never leaves "
				        "its region, so it is never backfilled\n", schema,
				        name, conf->path);
				rc = 2;
			}
			continue;
		}
		res = exec(conn,
		           "SELECT "
		           "  (SELECT string_agg(quote_ident(a.attname), ', ' "
		           "          ORDER BY k.ord) "
		           "   FROM pg_catalog.pg_index i, "
		           "        unnest(i.indkey) WITH ORDINALITY k(attnum, ord) "
		           "   JOIN pg_catalog.pg_attribute a ON a.attnum = k.attnum "
		           "   WHERE i.indrelid = c.oid AND i.indisprimary "
		           "     AND a.attrelid = c.oid), "
		           "  EXISTS (SELECT 1 FROM pg_catalog.pg_publication_tables p "
		           "          WHERE p.pubname = $3 AND p.schemaname = $1 "
		           "            AND p.tablename = $2), "
		           "  CASE WHEN c.reltuples >= 100000 THEN c.reltuples::bigint "
		           "  END "
		           "FROM pg_catalog.pg_class c "
		           "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
		           "WHERE n.nspname = $1 AND c.relname = $2 "
		           "  AND c.relkind IN ('r', 'p')",
		           3, p, PGRES_TUPLES_OK, err_out);
		if (!res) {
			jobs_free(j, n);
			return 1;
		}
		if (PQntuples(res) == 0) {
			fprintf(err_out, "xregion backfill: table %s.%s does not exist in "
			        "database %s\n", schema, name, PQdb(conn));
			rc = 2;
		} else if (PQgetisnull(res, 0, 0)) {
			fprintf(err_out, "xregion backfill: table %s.%s has no primary "
			        "key: a backfill reads and publishes rows by their key "
			        "(add a primary key first)\n", schema, name);
			rc = 2;
		} else if (PQgetvalue(res, 0, 1)[0] != 't') {
			fprintf(err_out, "xregion backfill: table %s.%s is not in "
			        "publication %s: run xregion setup with it in %s\n",
			        schema, name, conf->publication, conf->path);
			rc = 2;
		} else {
			j[n].schema = xr_strdup(schema);
			j[n].name = xr_strdup(name);
			j[n].pk = xr_strdup(PQgetvalue(res, 0, 0));
			j[n].rows = PQgetisnull(res, 0, 2)
			            ? -1 : strtoll(PQgetvalue(res, 0, 2), NULL, 10);
			n++;
		}
		PQclear(res);
	}
	if (rc == 0 && n == 0) {
		fprintf(err_out, "xregion backfill: no table of %s is marked pii: "
		        "false: nothing to backfill\n", conf->path);
		rc = 2;
	}
	if (rc) {
		jobs_free(j, n);
		return rc;
	}
	/* Small tables are counted; large ones keep the planner's estimate. */
	for (i = 0; i < n; i++) {
		xr_buf_t  sql;
		PGresult *res;
		char     *qs, *qn;

		if (j[i].rows >= 0)
			continue;
		qs = PQescapeIdentifier(conn, j[i].schema, strlen(j[i].schema));
		qn = PQescapeIdentifier(conn, j[i].name, strlen(j[i].name));
		xr_buf_init(&sql);
		/* (Not ONLY: a partitioned table's rows are its partitions'.) */
		xr_buf_printf(&sql, "SELECT count(*) FROM %s.%s", qs ? qs : "",
		              qn ? qn : "");
		PQfreemem(qs);
		PQfreemem(qn);
		res = exec(conn, sql.data, 0, NULL, PGRES_TUPLES_OK, err_out);
		xr_buf_term(&sql);
		if (!res) {
			jobs_free(j, n);
			return 1;
		}
		j[i].rows = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
	}
	*jobs = j;
	*njobs = n;
	return 0;
}

/* The latest job of j's table for o's region into j (id 0: none). */
static int
latest_job(PGconn *conn, const xr_backfill_opts_t *o, job_t *j,
           FILE *err_out)
{
	const char *p[3] = { j->schema, j->name, o->for_region };
	PGresult   *res = exec(conn,
	                       "SELECT id, state, rows_sent, rows_skipped, "
	                       "coalesce(rows_total, -1) FROM xregion.backfills "
	                       "WHERE table_schema = $1 AND table_name = $2 "
	                       "  AND for_region IS NOT DISTINCT FROM $3 "
	                       "ORDER BY id DESC LIMIT 1",
	                       3, p, PGRES_TUPLES_OK, err_out);

	if (!res)
		return -1;
	j->id = 0;
	j->state[0] = '\0';
	if (PQntuples(res) == 1) {
		j->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		snprintf(j->state, sizeof(j->state), "%s", PQgetvalue(res, 0, 1));
		j->sent = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		j->skipped = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		j->total = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
	}
	PQclear(res);
	return 0;
}

static bool
unfinished(const char *state)
{
	return strcmp(state, "pending") == 0 || strcmp(state, "running") == 0;
}

static int
dry_run(PGconn *conn, const xr_config_t *conf, const xr_backfill_opts_t *o,
        job_t *jobs, size_t n, FILE *out, FILE *err_out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		job_t *j = &jobs[i];
		long   chunks = (long)((j->rows + o->chunk_size - 1) / o->chunk_size);

		if (latest_job(conn, o, j, err_out))
			return 1;
		fprintf(out, "%s.%s: about %" PRId64 " rows in %ld chunk(s) of %ld, "
		        "read in order of (%s), for %s%s\n", j->schema, j->name,
		        j->rows, chunks, o->chunk_size, j->pk,
		        o->for_region ? "region " : "every other region",
		        o->for_region ? o->for_region : "");
		fprintf(out, "  each chunk: SELECT <its columns and version> FROM "
		        "ONLY %s.%s WHERE (%s) > (<last key>) ORDER BY %s LIMIT %ld\n",
		        j->schema, j->name, j->pk, j->pk, o->chunk_size);
		if (o->rate > 0)
			fprintf(out, "  at most %ld rows/s: about %ld s\n", o->rate,
			        (long)(j->rows / o->rate));
		if (j->id && unfinished(j->state))
			fprintf(out, "  job %" PRId64 " is %s (%" PRId64 " rows "
			        "published): a run resumes it\n", j->id, j->state,
			        j->sent);
		else if (j->id && strcmp(j->state, "done") == 0 && !o->again)
			fprintf(out, "  job %" PRId64 " is done: a run does nothing "
			        "(--again runs it again)\n", j->id);
	}
	fprintf(out, "dry run: nothing was written; the producer of region %s "
	        "(slot %s) runs the jobs\n", conf->region, conf->slot);
	return 0;
}

static int
cancel(PGconn *conn, const xr_backfill_opts_t *o, FILE *out, FILE *err_out)
{
	xr_buf_t    names;
	const char *p[2];
	PGresult   *res;
	int         r;

	tables_literal(o, &names);
	p[0] = names.data;
	p[1] = o->for_region;
	res = exec(conn,
	           "UPDATE xregion.backfills SET state = 'cancelled', "
	           "updated_at = now(), finished_at = now() "
	           "WHERE state IN ('pending', 'running') "
	           "  AND (cardinality($1::text[]) = 0 "
	           "       OR table_schema || '.' || table_name = ANY ($1::text[])) "
	           "  AND ($2::text IS NULL OR for_region = $2) "
	           "RETURNING id, table_schema || '.' || table_name, rows_sent",
	           2, p, PGRES_TUPLES_OK, err_out);
	xr_buf_term(&names);
	if (!res)
		return 1;
	for (r = 0; r < PQntuples(res); r++)
		fprintf(out, "cancelled backfill %s of %s after %s rows\n",
		        PQgetvalue(res, r, 0), PQgetvalue(res, r, 1),
		        PQgetvalue(res, r, 2));
	if (PQntuples(res) == 0)
		fprintf(out, "no unfinished backfill to cancel\n");
	PQclear(res);
	return 0;
}

/* Submits (or resumes) the job of each table; sets follow on those to follow. */
static int
submit(PGconn *conn, const xr_backfill_opts_t *o, job_t *jobs, size_t n,
       FILE *out, FILE *err_out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		job_t     *j = &jobs[i];
		char       chunk[24], rate[24], rows[24];
		const char *p[6];
		PGresult  *res;

		if (latest_job(conn, o, j, err_out))
			return 1;
		snprintf(chunk, sizeof(chunk), "%ld", o->chunk_size);
		snprintf(rate, sizeof(rate), "%ld", o->rate < 0 ? 0 : o->rate);
		snprintf(rows, sizeof(rows), "%" PRId64, j->rows);
		/*
		 * A manifest is where the new region starts reading: every row
		 * must be published after it, so earlier chunks do not count.
		 */
		if (j->id && unfinished(j->state) && o->manifest) {
			snprintf(rows, sizeof(rows), "%" PRId64, j->id);
			p[0] = rows;
			res = exec(conn,
			           "UPDATE xregion.backfills SET state = 'cancelled', "
			           "updated_at = now(), finished_at = now() "
			           "WHERE id = $1",
			           1, p, PGRES_COMMAND_OK, err_out);
			if (!res)
				return 1;
			PQclear(res);
			fprintf(out, "backfill %" PRId64 " of %s.%s cancelled: a new "
			        "manifest needs every row published after it\n", j->id,
			        j->schema, j->name);
			snprintf(rows, sizeof(rows), "%" PRId64, j->rows);
		} else if (j->id && unfinished(j->state)) {
			snprintf(rows, sizeof(rows), "%" PRId64, j->id);
			p[0] = rows;
			p[1] = o->rate >= 0 ? rate : NULL;
			res = exec(conn,
			           "UPDATE xregion.backfills SET rate = "
			           "coalesce($2::int, rate) WHERE id = $1",
			           2, p, PGRES_COMMAND_OK, err_out);
			if (!res)
				return 1;
			PQclear(res);
			fprintf(out, "backfill %" PRId64 " of %s.%s is %s (%" PRId64
			        " rows published so far): following it\n", j->id,
			        j->schema, j->name, j->state, j->sent);
			j->follow = true;
			continue;
		}
		if (j->id && strcmp(j->state, "done") == 0 && !o->again &&
		    !o->manifest) {
			fprintf(out, "%s.%s: already backfilled by job %" PRId64 " (%"
			        PRId64 " rows): nothing to do (--again runs it again)\n",
			        j->schema, j->name, j->id, j->sent);
			continue;
		}
		p[0] = j->schema;
		p[1] = j->name;
		p[2] = o->for_region;
		p[3] = chunk;
		p[4] = rate;
		p[5] = rows;
		res = exec(conn,
		           "INSERT INTO xregion.backfills (table_schema, table_name, "
		           "for_region, chunk_size, rate, rows_total) "
		           "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
		           6, p, PGRES_TUPLES_OK, err_out);
		if (!res)
			return 1;
		j->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
		snprintf(j->state, sizeof(j->state), "pending");
		j->sent = j->skipped = 0;
		j->total = j->rows;
		j->follow = true;
		fprintf(out, "backfill %" PRId64 " of %s.%s submitted: about %" PRId64
		        " rows, chunks of %ld\n", j->id, j->schema, j->name, j->rows,
		        o->chunk_size);
	}
	return 0;
}

/* Whether the producer streams the slot now. */
static int
producer_active(PGconn *conn, const xr_config_t *conf, FILE *err_out)
{
	const char *p[1] = { conf->slot };
	PGresult   *res = exec(conn,
	                       "SELECT active FROM pg_catalog.pg_replication_slots "
	                       "WHERE slot_name = $1",
	                       1, p, PGRES_TUPLES_OK, err_out);
	int         rc;

	if (!res)
		return -1;
	rc = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return rc;
}

static void
fmt_eta(char *buf, size_t size, double secs)
{
	long s = (long)(secs + 0.5);

	if (secs < 0 || secs > 86400.0 * 365)
		snprintf(buf, size, "--:--");
	else if (s >= 3600)
		snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

/* Draws (tty) or logs the progress of the jobs followed. */
static void
draw(job_t *jobs, size_t n, int64_t start_us, bool tty, bool redraw,
     FILE *err_out)
{
	double el = (double)(xr_mono_us() - start_us) / 1e6;
	size_t i, lines = 0;

	for (i = 0; i < n; i++)
		lines += jobs[i].follow;
	if (tty && redraw && lines)
		fprintf(err_out, "\033[%zuA", lines);
	for (i = 0; i < n; i++) {
		job_t *j = &jobs[i];
		double rate = el > 0.5 ? (double)(j->sent - j->first_sent) / el : 0;
		double pct = j->total > 0 ? 100.0 * (double)j->sent /
		                            (double)j->total : 0;
		char   eta[32], name[80];

		if (!j->follow)
			continue;
		if (pct > 100)
			pct = 100;
		if (!unfinished(j->state))
			snprintf(eta, sizeof(eta), "%s", j->state);
		else
			fmt_eta(eta, sizeof(eta),
			        rate > 0 && j->total > j->sent
			            ? (double)(j->total - j->sent) / rate : -1);
		snprintf(name, sizeof(name), "%s.%s", j->schema, j->name);
		if (tty) {
			char bar[31];
			int  k, fill = (int)(pct * 30 / 100);

			for (k = 0; k < 30; k++)
				bar[k] = k < fill ? '#' : '.';
			bar[30] = '\0';
			fprintf(err_out, "\r\033[K%-28.28s [%s] %3.0f%% %12" PRId64
			        "/%-12" PRId64 " %9.0f rows/s  ETA %s\n", name, bar, pct,
			        j->sent, j->total, rate, eta);
		} else {
			fprintf(err_out, "backfill %" PRId64 " %s: %" PRId64 " of ~%"
			        PRId64 " rows (%.0f%%), %.0f rows/s, %" PRId64
			        " changed while read, %s%s\n", j->id, name, j->sent,
			        j->total, pct, rate, j->skipped,
			        unfinished(j->state) ? "ETA " : "", eta);
		}
	}
	fflush(err_out);
}

/* Follows the jobs until each is finished or *stop. */
static int
follow(PGconn *conn, const xr_config_t *conf, job_t *jobs, size_t n,
       atomic_int *stop, FILE *out, FILE *err_out)
{
	bool    tty = isatty(fileno(err_out)), drawn = false, warned = false;
	int64_t start = xr_mono_us(), last_log = 0, idle_since = xr_mono_us();
	size_t  i;
	int     rc = 0;

	for (i = 0; i < n; i++)
		jobs[i].first_sent = jobs[i].sent;
	for (;;) {
		bool open = false;
		int  active;

		for (i = 0; i < n; i++) {
			char        id[24];
			const char *p[1] = { id };
			PGresult   *res;

			if (!jobs[i].follow)
				continue;
			snprintf(id, sizeof(id), "%" PRId64, jobs[i].id);
			res = exec(conn,
			           "SELECT state, rows_sent, rows_skipped, "
			           "coalesce(rows_total, -1), coalesce(error, '') "
			           "FROM xregion.backfills WHERE id = $1",
			           1, p, PGRES_TUPLES_OK, err_out);
			if (!res)
				return 1;
			if (PQntuples(res) == 1) {
				snprintf(jobs[i].state, sizeof(jobs[i].state), "%s",
				         PQgetvalue(res, 0, 0));
				jobs[i].sent = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
				jobs[i].skipped = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
				jobs[i].total = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
				if (strcmp(jobs[i].state, "failed") == 0 && !tty)
					fprintf(err_out, "backfill %" PRId64 " failed: %s\n",
					        jobs[i].id, PQgetvalue(res, 0, 4));
			}
			PQclear(res);
			if (unfinished(jobs[i].state))
				open = true;
			else if (strcmp(jobs[i].state, "done") != 0)
				rc = 1;
		}
		if (tty || !open || xr_mono_us() - last_log >= 10000000) {
			draw(jobs, n, start, tty, drawn, err_out);
			drawn = true;
			last_log = xr_mono_us();
		}
		if (!open)
			break;
		if (*stop) {
			fprintf(out, "stopped following: the backfill goes on in the "
			        "producer of region %s (xregion backfill --status shows "
			        "it, --cancel stops it)\n", conf->region);
			return 0;
		}
		active = producer_active(conn, conf, err_out);
		if (active < 0)
			return 1;
		if (active)
			idle_since = xr_mono_us();
		else if (!warned && xr_mono_us() - idle_since > 10000000) {
			fprintf(err_out, "xregion backfill: warning: the producer of "
			        "region %s is not streaming slot %s: the backfill goes on "
			        "when it runs\n", conf->region, conf->slot);
			warned = true;
		}
		usleep(tty ? 500000 : 1000000);
	}
	for (i = 0; i < n; i++)
		if (jobs[i].follow)
			fprintf(out, "backfill %" PRId64 " of %s.%s %s: %" PRId64
			        " rows published, %" PRId64 " changed while read (the "
			        "stream carries those)\n", jobs[i].id, jobs[i].schema,
			        jobs[i].name, jobs[i].state, jobs[i].sent,
			        jobs[i].skipped);
	return rc;
}

int
xr_backfill_command(const xr_config_t *conf, const xr_backfill_opts_t *o,
                    atomic_int *stop, FILE *out, FILE *err_out)
{
	char        err[1024];
	PGconn     *conn;
	PGresult   *res;
	job_t      *jobs = NULL;
	size_t      n = 0, i;
	int         rc = 1;

	if (o->for_region) {
		bool known = false;

		for (i = 0; i < conf->n_regions; i++)
			if (strcmp(conf->regions[i], o->for_region) == 0)
				known = true;
		if (!known || strcmp(o->for_region, conf->region) == 0) {
			fprintf(err_out, "xregion backfill: --for %s: %s\n",
			        o->for_region,
			        known ? "that is this region: a backfill is for the "
			                "others"
			              : "not in regions of the config (add the region "
			                "there first)");
			return 2;
		}
	}
	conn = xr_pg_connect(conf->pg_dsn, "xregion-backfill", err, sizeof(err));
	if (!conn) {
		fprintf(err_out, "xregion backfill: %s", err);
		return 1;
	}
	res = exec(conn, "SELECT to_regclass('xregion.backfills') IS NOT NULL", 0,
	           NULL, PGRES_TUPLES_OK, err_out);
	if (!res)
		goto out;
	if (PQgetvalue(res, 0, 0)[0] != 't') {
		fprintf(err_out, "xregion backfill: database %s has no table "
		        "xregion.backfills: run xregion setup (of this release)\n",
		        PQdb(conn));
		PQclear(res);
		goto out;
	}
	PQclear(res);
	if (o->mode == XR_BACKFILL_STATUS) {
		rc = show_status(conn, o, out, err_out);
		goto out;
	}
	if (o->mode == XR_BACKFILL_CANCEL) {
		rc = cancel(conn, o, out, err_out);
		goto out;
	}
	if ((rc = check_tables(conn, conf, o, &jobs, &n, err_out)) != 0)
		goto out;
	if (o->mode == XR_BACKFILL_DRY_RUN) {
		rc = dry_run(conn, conf, o, jobs, n, out, err_out);
		goto out;
	}
	if (o->manifest) {
		if (!o->for_region) {
			fprintf(err_out, "xregion backfill: --manifest needs --for: the "
			        "manifest is where that region's consumer starts\n");
			rc = 2;
			goto out;
		}
		if (xr_manifest_take(conf, o->for_region, o->manifest, out, err,
		                     sizeof(err))) {
			fprintf(err_out, "xregion backfill: %s\n", err);
			rc = 1;
			goto out;
		}
	}
	if ((rc = submit(conn, o, jobs, n, out, err_out)) != 0)
		goto out;
	if (producer_active(conn, conf, err_out) == 0)
		fprintf(err_out, "xregion backfill: warning: the producer of region "
		        "%s is not streaming slot %s: the backfill starts when it "
		        "runs\n", conf->region, conf->slot);
	rc = o->wait ? follow(conn, conf, jobs, n, stop, out, err_out) : 0;
out:
	jobs_free(jobs, n);
	PQfinish(conn);
	return rc;
}
