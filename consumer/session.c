/*
 * session.c: the apply session: the connection and its settings, the
 * replication origin, stored offsets, and the pipeline's reads (see
 * apply_int.h).
 */
#include "common/pqbuf.h"
#include "consumer/apply_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "consumer/meta.h"

void
xr_apply_copy_err(PGconn *conn, const char *what, char *errstr,
                  size_t errstr_size)
{
	const char *m = PQerrorMessage(conn);
	size_t      n = strlen(m);

	while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
		n--;
	snprintf(errstr, errstr_size, "%s: %.*s", what, (int)n, m);
}

int
xr_apply_exec(xr_applier_t *a, const char *sql, char *errstr,
              size_t errstr_size)
{
	PGresult *res = PQexec(a->conn, sql);
	int       ok = PQresultStatus(res) == PGRES_COMMAND_OK ||
	               PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		xr_apply_copy_err(a->conn, sql, errstr, errstr_size);
	PQclear(res);
	return ok ? 0 : -1;
}

xr_applier_t *
xr_applier_new(const xr_config_t *conf)
{
	xr_applier_t *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->conf = conf;
	xr_buf_init(&a->sql);
	xr_buf_init(&a->scratch);
	return a;
}

void
xr_applier_set_replay(xr_applier_t *a, bool dry_run, bool store_offsets)
{
	a->replay = true;
	a->dry_run = dry_run;
	a->no_offsets = !store_offsets;
}

int
xr_applier_hold_origin(xr_applier_t *a, char *errstr, size_t errstr_size)
{
	if (!a->conn && xr_applier_connect(a, errstr, errstr_size))
		return -1;
	return xr_session_origin(a, "", errstr, errstr_size);
}

void
xr_applier_destroy(xr_applier_t *a)
{
	size_t i;

	if (!a)
		return;
	for (i = 0; i < a->ntargets; i++)
		xr_target_free(a->targets[i]);
	free(a->targets);
	xr_lease_forget(a);
	free(a->pos);
	PQfinish(a->conn);
	xr_buf_term(&a->sql);
	xr_buf_term(&a->scratch);
	free(a);
}

int
xr_applier_connect(xr_applier_t *a, char *errstr, size_t errstr_size)
{
	const char *keys[] = { "dbname", "application_name", "options",
	                       "connect_timeout", "keepalives", "keepalives_idle",
	                       "keepalives_interval", "keepalives_count", NULL };
	char        app[64], opts[512];
	const char *vals[] = { a->conf->pg_dsn, app, opts, "10", "1", "30", "10",
	                       "3", NULL };
	size_t i;

	snprintf(app, sizeof(app), "xregion-consumer-%s", a->conf->region);
	/*
	 * The text forms pgtype.c writes; applies skip ordinary triggers; no
	 * wait without an end: a row lock a local transaction holds fails the
	 * batch after lock_timeout_ms (it is retried), and a statement after
	 * statement_timeout_ms.  No JIT: a batch's set-based statements cost
	 * enough to be compiled, again at every execution, which took 36% of
	 * this session's CPU in a 500,000-row update (and gained nothing).
	 */
	snprintf(opts, sizeof(opts),
	         "-c session_replication_role=replica -c timezone=UTC "
	         "-c datestyle=ISO,YMD -c intervalstyle=postgres "
	         "-c bytea_output=hex -c extra_float_digits=3 -c jit=off "
	         "-c lock_timeout=%d -c statement_timeout=%d",
	         a->conf->lock_timeout_ms, a->conf->statement_timeout_ms);
	PQfinish(a->conn);
	a->origin[0] = '\0';
	/* Its advisory locks (leases) and prepared statements died with it. */
	xr_lease_forget(a);
	for (i = 0; i < a->ntargets; i++)
		xr_target_reset(a->targets[i]);
	a->conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(a->conn) != CONNECTION_OK) {
		xr_apply_copy_err(a->conn, "cannot connect to PostgreSQL", errstr, errstr_size);
		PQfinish(a->conn);
		a->conn = NULL;
		return -1;
	}
	a->session++;
	{
		PGresult *res = PQexec(a->conn,
		                       "SELECT to_regproc('xregion.version_of') "
		                       "IS NOT NULL");
		int ok = PQresultStatus(res) == PGRES_TUPLES_OK &&
		         strcmp(PQgetvalue(res, 0, 0), "t") == 0;

		PQclear(res);
		if (!ok) {
			snprintf(errstr, errstr_size,
			         "database %s has no xregion schema: run xregion setup",
			         PQdb(a->conn));
			return -1;
		}
	}
	return 0;
}

int
xr_session_origin(xr_applier_t *a, const char *src, char *errstr,
                  size_t errstr_size)
{
	char        name[128];
	const char *params[1] = { name };
	PGresult   *res;

	if (a->replay)
		xr_meta_replay_origin_name(a->conf, name, sizeof(name));
	else
		xr_meta_origin_name(a->conf, src, name, sizeof(name));
	if (strcmp(a->origin, name) == 0)
		return 0;
	if (a->origin[0] &&
	    xr_apply_exec(a, "SELECT pg_catalog.pg_replication_origin_session_reset()",
	            errstr, errstr_size))
		return -1;
	a->origin[0] = '\0';
	res = PQexecParams(a->conn,
	                   "SELECT pg_catalog.pg_replication_origin_session_setup($1), "
	                   "pg_catalog.pg_replication_origin_oid($1)",
	                   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		xr_apply_copy_err(a->conn, "replication origin (run xregion setup?)", errstr,
		         errstr_size);
		PQclear(res);
		return -1;
	}
	snprintf(a->origin_id, sizeof(a->origin_id), "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	snprintf(a->origin, sizeof(a->origin), "%s", name);
	return 0;
}

int
xr_session_store_offsets(xr_applier_t *a, const xr_offset_t *o, size_t n,
                         char *errstr, size_t errstr_size)
{
	size_t i;

	/* A replay never moves the consumer's positions. */
	if (a->no_offsets)
		return 0;
	for (i = 0; i < n; i++) {
		char        part[16], off[32];
		const char *vals[3] = { o[i].topic, part, off };
		PGresult   *res;

		snprintf(part, sizeof(part), "%d", (int)o[i].partition);
		snprintf(off, sizeof(off), "%" PRId64, o[i].next_offset);
		res = PQexecParams(a->conn,
		                   "INSERT INTO xregion.offsets AS o (topic, partition, "
		                   "next_offset) VALUES ($1, $2::int, $3::bigint) "
		                   "ON CONFLICT (topic, partition) DO UPDATE SET "
		                   "next_offset = EXCLUDED.next_offset, updated_at = now() "
		                   /* Never backwards: a stale batch cannot rewind. */
		                   "WHERE o.next_offset <= EXCLUDED.next_offset",
		                   3, NULL, vals, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			xr_apply_copy_err(a->conn, "storing offsets", errstr, errstr_size);
			PQclear(res);
			return -1;
		}
		PQclear(res);
	}
	return 0;
}

/* Stores the positions added with xr_applier_add_position, if any. */
int
xr_session_store_position(xr_applier_t *a, char *errstr, size_t errstr_size)
{
	size_t i;

	if (a->no_offsets)
		return 0;
	for (i = 0; i < a->npos; i++) {
		const apos_t *p = &a->pos[i];
		char          lsn[24], ts[24];
		const char   *vals[4] = { p->key, lsn, p->sysid, ts };
		PGresult     *res;

		snprintf(lsn, sizeof(lsn), "%" PRIu64, (uint64_t)p->lsn);
		snprintf(ts, sizeof(ts), "%" PRId64, p->ts);
		res = PQexecParams(a->conn,
		                   "INSERT INTO xregion.applied AS p (region, commit_lsn, "
		                   "system_id, commit_ts) VALUES ($1, $2::numeric::bigint, "
		                   "$3, 'epoch'::timestamptz + $4::bigint * "
		                   "interval '1 microsecond') "
		                   "ON CONFLICT (region) DO UPDATE SET commit_lsn = "
		                   "EXCLUDED.commit_lsn, system_id = EXCLUDED.system_id, "
		                   "commit_ts = EXCLUDED.commit_ts, updated_at = now()",
		                   4, NULL, vals, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			xr_apply_copy_err(a->conn, "storing the applied position", errstr,
			                  errstr_size);
			PQclear(res);
			return -1;
		}
		PQclear(res);
	}
	return 0;
}

void
xr_applier_add_position(xr_applier_t *a, const char *region,
                        const char *stream, xr_lsn_t lsn, const char *sysid,
                        int64_t commit_ts)
{
	apos_t *p;
	char    key[sizeof(p->key)];
	size_t  i;

	if (stream && *stream)
		snprintf(key, sizeof(key), "%s/%s", region, stream);
	else
		snprintf(key, sizeof(key), "%s", region);
	for (i = 0; i < a->npos; i++)
		if (strcmp(a->pos[i].key, key) == 0)
			break;
	if (i == a->npos) {
		if (a->npos == a->poscap) {
			a->poscap = a->poscap ? 2 * a->poscap : 4;
			a->pos = xr_reallocarray(a->pos, a->poscap, sizeof(*a->pos));
		}
		a->npos++;
	}
	p = &a->pos[i];
	snprintf(p->region, sizeof(p->region), "%s", region);
	snprintf(p->key, sizeof(p->key), "%s", key);
	snprintf(p->sysid, sizeof(p->sysid), "%s", sysid ? sysid : "");
	p->lsn = lsn;
	p->ts = commit_ts;
}

void
xr_applier_clear_positions(xr_applier_t *a)
{
	a->npos = 0;
}

int
xr_applier_load_positions(xr_applier_t *a, const char *region,
                          xr_position_t **out, size_t *n, char *errstr,
                          size_t errstr_size)
{
	const char *vals[1] = { region };
	PGresult   *res;
	size_t      rlen = strlen(region);
	int         i;

	*out = NULL;
	*n = 0;
	if (!a->conn && xr_applier_connect(a, errstr, errstr_size))
		return -1;
	/* (Not LIKE: a region's name may hold an underscore.) */
	res = PQexecParams(a->conn,
	                   "SELECT region, commit_lsn, system_id FROM xregion.applied "
	                   "WHERE region = $1 OR left(region, length($1) + 1) = "
	                   "$1 || '/'", 1, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		xr_apply_copy_err(a->conn, st && strcmp(st, "42P01") == 0
		                  ? "reading the applied position (this release "
		                    "adds xregion.applied: run xregion setup)"
		                  : "reading the applied position", errstr,
		                  errstr_size);
		PQclear(res);
		return -1;
	}
	*out = xr_calloc((size_t)PQntuples(res) + 1, sizeof(**out));
	for (i = 0; i < PQntuples(res); i++) {
		const char    *key = PQgetvalue(res, i, 0);
		xr_position_t *p = &(*out)[*n];

		if (strlen(key) > rlen &&
		    strlen(key + rlen + 1) >= sizeof(p->stream))
			continue;      /* not a stream name setup accepts */
		snprintf(p->stream, sizeof(p->stream), "%s",
		         strlen(key) > rlen ? key + rlen + 1 : "");
		p->lsn = (xr_lsn_t)strtoull(PQgetvalue(res, i, 1), NULL, 10);
		snprintf(p->sysid, sizeof(p->sysid), "%s", PQgetvalue(res, i, 2));
		(*n)++;
	}
	PQclear(res);
	return 0;
}

void
xr_applier_hold_open(xr_applier_t *a, bool hold)
{
	a->hold_open = hold;
}

bool
xr_applier_in_open(const xr_applier_t *a)
{
	return a->in_open;
}

void
xr_applier_rollback(xr_applier_t *a)
{
	if (a->in_open && a->conn && PQstatus(a->conn) == CONNECTION_OK)
		PQclear(PQexec(a->conn, "ROLLBACK"));
	a->in_open = false;
	a->hold_open = false;
	a->npos = 0;
	memset(&a->held, 0, sizeof(a->held));
}

int
xr_applier_store_offsets(xr_applier_t *a, const xr_offset_t *offsets,
                         size_t n, char *errstr, size_t errstr_size)
{
	if (xr_lease_fence(a, NULL, offsets, n, errstr, errstr_size) ||
	    xr_apply_exec(a, "BEGIN", errstr, errstr_size))
		return -1;
	if (xr_session_store_offsets(a, offsets, n, errstr, errstr_size) ||
	    xr_session_store_position(a, errstr, errstr_size) ||
	    xr_apply_exec(a, "COMMIT", errstr, errstr_size)) {
		PQclear(PQexec(a->conn, "ROLLBACK"));
		return -1;
	}
	a->npos = 0;
	return 0;
}

int
xr_applier_load_offsets(xr_applier_t *a, const char *const *topics,
                        const int32_t *partitions, size_t n, int64_t *out,
                        char *errstr, size_t errstr_size)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char        part[16];
		const char *vals[2] = { topics[i], part };
		PGresult   *res;

		snprintf(part, sizeof(part), "%d", (int)partitions[i]);
		res = PQexecParams(a->conn,
		                   "SELECT next_offset FROM xregion.offsets "
		                   "WHERE topic = $1 AND partition = $2::int",
		                   2, NULL, vals, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			xr_apply_copy_err(a->conn, "reading offsets", errstr, errstr_size);
			PQclear(res);
			return -1;
		}
		out[i] = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
		                        : -1;
		PQclear(res);
	}
	return 0;
}

long
xr_applier_purge_tombstones(xr_applier_t *a, int64_t cutoff_us,
                            char *errstr, size_t errstr_size)
{
	long   total = 0;
	size_t i;
	int    c, k;

	for (i = 0; i < a->ntargets; i++) {
		target_t   *t = a->targets[i];
		char        cutoff[24];
		const char *vals[1] = { cutoff };
		PGresult   *res;

		if (!t->exists)
			continue;
		snprintf(cutoff, sizeof(cutoff), "%" PRId64, cutoff_us);
		xr_buf_reset(&a->sql);
		xr_buf_printf(&a->sql,
		              "DELETE FROM %s v WHERE v.deleted AND "
		              "(xregion.tomb_version(v.ts, v.region, v.xid, v.clsn, v.lsn)).ts < "
		              "$1::bigint", t->vt);
		/* A hidden row's tombstone is its key's latest write: kept. */
		xr_buf_printf(&a->sql,
		              " AND NOT EXISTS (SELECT 1 FROM xregion.hidden h "
		              "WHERE h.table_schema = %s AND h.table_name = %s "
		              "AND h.key = jsonb_build_object(", t->lit_nsp, t->lit_rel);
		for (c = 0, k = 0; c < t->ncols; c++) {
			if (!t->cols[c].is_key)
				continue;
			if (k++)
				xr_buf_puts(&a->sql, ", ");
			if (xr_pqbuf_literal(a->conn, &a->sql, t->cols[c].name)) {
				xr_apply_copy_err(a->conn, "quoting", errstr, errstr_size);
				return -1;
			}
			xr_buf_printf(&a->sql, ", to_jsonb(v.%s) #>> '{}'",
			              t->cols[c].qname);
		}
		xr_buf_puts(&a->sql, "))");
		res = PQexecParams(a->conn, a->sql.data, 1, NULL, vals, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			xr_apply_copy_err(a->conn, "purging tombstones", errstr, errstr_size);
			PQclear(res);
			return -1;
		}
		total += strtol(PQcmdTuples(res), NULL, 10);
		PQclear(res);
	}
	return total;
}

int
xr_applier_tombstone_stats(xr_applier_t *a, int64_t *tombs, int64_t *bytes,
                           char *errstr, size_t errstr_size)
{
	size_t i;

	*tombs = *bytes = 0;
	for (i = 0; i < a->ntargets; i++) {
		target_t *t = a->targets[i];
		PGresult *res;

		if (!t->exists)
			continue;
		xr_buf_reset(&a->sql);
		xr_buf_printf(&a->sql, "SELECT count(*) FILTER (WHERE deleted), "
		              "pg_catalog.pg_total_relation_size('%s') FROM %s",
		              t->vt, t->vt);
		res = PQexec(a->conn, a->sql.data);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			xr_apply_copy_err(a->conn, "counting tombstones", errstr,
			                  errstr_size);
			PQclear(res);
			return -1;
		}
		*tombs += strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		*bytes += strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		PQclear(res);
	}
	return 0;
}

bool
xr_applier_error_is_data(const xr_applier_t *a)
{
	/*
	 * Only the data itself can make an event poison: a value the column
	 * refuses (class 22) or a constraint it breaks (class 23).  Anything
	 * else (locks, deadlocks, privileges, missing objects, resources) is
	 * the database's state and is retried.
	 */
	return strncmp(a->sqlstate, "22", 2) == 0 ||
	       strncmp(a->sqlstate, "23", 2) == 0;
}

bool
xr_applier_error_is_unique(const xr_applier_t *a)
{
	return strcmp(a->sqlstate, "23505") == 0;
}

bool
xr_applier_connected(const xr_applier_t *a)
{
	return a->conn && PQstatus(a->conn) == CONNECTION_OK;
}

const xr_apply_stats_t *
xr_applier_stats(const xr_applier_t *a)
{
	return &a->stats;
}

/*
 * Makes this transaction carry the source transaction's commit time, the
 * version of the rows the fast paths write without versions entries, and
 * records that version in xregion.xact_versions, where version_of finds it
 * once PostgreSQL has truncated the commit timestamps.
 */
int
xr_session_origin_xact(xr_applier_t *a, xr_lsn_t lsn, const char *ts,
                  const char *region, char *errstr, size_t errstr_size)
{
	char        lsnbuf[XR_LSN_STRLEN];
	const char *v[3] = { xr_lsn_format(lsn, lsnbuf), ts, region };
	PGresult   *res;
	int         ok;

	res = PQexecParams(a->conn,
	                   "WITH s AS (SELECT pg_catalog.pg_replication_origin_xact_"
	                   "setup($1::pg_lsn, 'epoch'::timestamptz + $2::bigint * "
	                   "interval '1 microsecond')), r AS (INSERT INTO "
	                   "xregion.xact_versions (xid, ts, region) VALUES "
	                   "(pg_catalog.pg_current_xact_id(), $2::bigint, $3) "
	                   "ON CONFLICT (xid) DO NOTHING) SELECT * FROM s",
	                   3, NULL, v, NULL, NULL, 0);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!ok)
		xr_apply_copy_err(a->conn, "setting the origin timestamp", errstr, errstr_size);
	PQclear(res);
	return ok ? 0 : -1;
}

/* Sends one prepared statement into the pipeline. */
int
xr_session_send(xr_applier_t *a, const stmt_t *s, const char **vals,
                char *errstr, size_t errstr_size)
{
	int nparams = xr_sql_nfixed(s->sig[0]) + s->ncols;

	if (!PQsendQueryPrepared(a->conn, s->name, nparams, vals, NULL, NULL, 0)) {
		xr_apply_copy_err(a->conn, "sending a change", errstr, errstr_size);
		return -1;
	}
	return 0;
}

/* Reads one statement's result in the pipeline; returns it or NULL. */
PGresult *
xr_session_result(xr_applier_t *a, char *errstr, size_t errstr_size)
{
	PGresult *res = PQgetResult(a->conn), *extra;

	if (!res) {
		xr_apply_copy_err(a->conn, "reading a result", errstr, errstr_size);
		return NULL;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		if (PQresultStatus(res) == PGRES_PIPELINE_ABORTED)
			snprintf(errstr, errstr_size, "pipeline aborted");
		else
			snprintf(errstr, errstr_size, "applying a change: %s",
			         PQresultErrorMessage(res));
		snprintf(a->sqlstate, sizeof(a->sqlstate), "%s", state ? state : "");
		PQclear(res);
		/* The NULL that ends this query's results. */
		extra = PQgetResult(a->conn);
		PQclear(extra);
		return NULL;
	}
	extra = PQgetResult(a->conn);   /* NULL: end of this query */
	PQclear(extra);
	return res;
}

/* Reads until the pipeline's sync point after an error. */
void
xr_session_drain(xr_applier_t *a)
{
	for (;;) {
		PGresult *res = PQgetResult(a->conn);

		if (!res) {
			if (PQstatus(a->conn) != CONNECTION_OK)
				return;
			continue;
		}
		if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			return;
		}
		PQclear(res);
	}
}

/*
 * After a failure inside pipeline mode: reads to a sync point and leaves
 * the mode; when that cannot be done, drops the connection (its
 * transaction dies with it), so that nothing is left half-way.
 */
void
xr_session_pipeline_abort(xr_applier_t *a)
{
	if (PQpipelineStatus(a->conn) == PQ_PIPELINE_OFF)
		return;
	if (PQpipelineSync(a->conn))
		xr_session_drain(a);
	while (PQpipelineStatus(a->conn) != PQ_PIPELINE_OFF &&
	       PQstatus(a->conn) == CONNECTION_OK) {
		PGresult *res;

		if (PQexitPipelineMode(a->conn))
			return;
		/* Results still queued (an earlier sync): read them. */
		if (!(res = PQgetResult(a->conn)) && PQisBusy(a->conn) == 0 &&
		    !PQexitPipelineMode(a->conn))
			break;
		PQclear(res);
	}
	if (PQpipelineStatus(a->conn) != PQ_PIPELINE_OFF) {
		xr_warn("apply connection left in pipeline mode: reconnecting");
		PQfinish(a->conn);
		a->conn = NULL;
	}
}
