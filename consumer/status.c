/*
 * status.c: `xregion status`: this region's tombstones and hidden rows per
 * table, and every region's progress with the tombstone purge horizon.
 */
#include "consumer/status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "common/buf.h"
#include "common/log.h"
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
	fprintf(out, "progress (topic %s):\n", conf->progress_topic);
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

int
xr_status_run(const xr_config_t *conf, FILE *out, char *errstr,
              size_t errstr_size)
{
	const char *keys[] = { "dbname", "connect_timeout", "application_name",
	                       NULL };
	const char *vals[] = { conf->pg_dsn, "10", "xregion-status", NULL };
	PGconn     *conn = PQconnectdbParams(keys, vals, 1);
	PGresult   *res;
	int         rc = -1;

	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(errstr, errstr_size, "%s", PQerrorMessage(conn));
		goto out;
	}
	res = PQexec(conn, "SELECT to_regclass('xregion.hidden') IS NOT NULL");
	if (PQresultStatus(res) != PGRES_TUPLES_OK ||
	    PQgetvalue(res, 0, 0)[0] != 't') {
		snprintf(errstr, errstr_size, "database %s has no schema xregion "
		         "(run xregion setup)", PQdb(conn));
		PQclear(res);
		goto out;
	}
	PQclear(res);
	fprintf(out, "region %s, database %s\n", conf->region, PQdb(conn));
	if (tables(conn, conf, out, errstr, errstr_size))
		goto out;
	progress(conf, out);
	rc = 0;
out:
	PQfinish(conn);
	return rc;
}
