/* apply.c: last-write-wins apply of change events (see apply.h). */
#include "consumer/apply.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "consumer/meta.h"
#include "consumer/plan.h"

/* Statements per pipeline sync: keeps both sides' buffers from filling. */
#define PIPELINE_CHUNK 256

/*
 * The version of the event a row statement applies: $1 commit timestamp
 * (or hybrid clock), $2 region, $3 commit LSN, $4 change LSN (see meta.c).
 * In set-based statements, the same from the unnested arrays.
 */
#define EV_VERSION "ROW($1::bigint, $2::text, $3::bigint, $4::bigint)::xregion.version"
#define BULK_VERSION "ROW(e.ts, e.region, e.clsn, e.lsn)::xregion.version"

const char *const xr_conflict_names[] = {
	"none", "insert_exists", "insert_deleted", "update_missing",
	"update_deleted", "update_origin_differs", "delete_missing",
	"delete_origin_differs", "delete_after_update", "insert_concurrent",
	"update_concurrent", "delete_concurrent"
};

const char *const xr_resolution_names[] = {
	"remote_applied", "local_kept", "dead_lettered"
};

typedef struct tcol_s {
	char *name;
	char *qname;     /* quoted identifier */
	char *type;      /* format_type() */
	bool  is_key;
} tcol_t;

/* A prepared statement for one shape of change. */
typedef struct stmt_s {
	char *sig;       /* op + per column: '1' set, '2' from the old key's
	                  * row (a key change's unchanged value), '0' not set */
	char  name[32];
	int   ncols;     /* value parameters after the fixed ones */
	int  *cols;      /* target column of each value parameter */
	int   nold;      /* of which the last nold are the old key's columns */
} stmt_t;

/* How the fields of one writer schema map onto the target's columns. */
typedef struct fmap_s {
	const xr_schema_t *schema;
	int               *col;      /* per field: target column, -1 if missing */
	int               *field_of; /* per target column: field, -1 if none */
} fmap_t;

typedef struct target_s {
	char    *nspname, *relname;
	char    *qual;       /* "schema"."table" */
	char    *vt;         /* xregion."schema.table" */
	char    *lit_nsp, *lit_rel;
	const xr_table_conf_t *tconf;   /* this region's entry (NULL: none) */
	bool     exists;
	int      ncols;
	tcol_t  *cols;
	int      nkeys;
	stmt_t **stmts;      /* each allocated alone: plans keep pointers */
	size_t   nstmts;
	fmap_t  *maps;
	size_t   nmaps;
} target_t;

struct xr_applier_s {
	const xr_config_t *conf;
	PGconn    *conn;
	char       origin[128];   /* origin set up in this session, "" if none */
	char       origin_id[16]; /* its roident, as text */
	target_t **targets;
	size_t     ntargets;
	unsigned   stmt_seq;
	char       sqlstate[6];   /* of the last failed statement, "" if none */
	xr_apply_stats_t stats;
	xr_buf_t   sql;
	xr_buf_t   scratch;
};

static void
copy_err(PGconn *conn, const char *what, char *errstr, size_t errstr_size)
{
	const char *m = PQerrorMessage(conn);
	size_t      n = strlen(m);

	while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
		n--;
	snprintf(errstr, errstr_size, "%s: %.*s", what, (int)n, m);
}

static void
target_reset(target_t *t)
{
	size_t i;
	int    c;

	for (c = 0; c < t->ncols; c++) {
		free(t->cols[c].name);
		free(t->cols[c].qname);
		free(t->cols[c].type);
	}
	free(t->cols);
	t->cols = NULL;
	t->ncols = t->nkeys = 0;
	for (i = 0; i < t->nstmts; i++) {
		free(t->stmts[i]->sig);
		free(t->stmts[i]->cols);
		free(t->stmts[i]);
	}
	free(t->stmts);
	t->stmts = NULL;
	t->nstmts = 0;
	for (i = 0; i < t->nmaps; i++) {
		free(t->maps[i].col);
		free(t->maps[i].field_of);
	}
	free(t->maps);
	t->maps = NULL;
	t->nmaps = 0;
}

static void
target_free(target_t *t)
{
	if (!t)
		return;
	target_reset(t);
	free(t->nspname);
	free(t->relname);
	free(t->qual);
	free(t->vt);
	PQfreemem(t->lit_nsp);
	PQfreemem(t->lit_rel);
	free(t);
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
xr_applier_destroy(xr_applier_t *a)
{
	size_t i;

	if (!a)
		return;
	for (i = 0; i < a->ntargets; i++)
		target_free(a->targets[i]);
	free(a->targets);
	PQfinish(a->conn);
	xr_buf_term(&a->sql);
	xr_buf_term(&a->scratch);
	free(a);
}

static int
exec_ok(xr_applier_t *a, const char *sql, char *errstr, size_t errstr_size)
{
	PGresult *res = PQexec(a->conn, sql);
	int       ok = PQresultStatus(res) == PGRES_COMMAND_OK ||
	               PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		copy_err(a->conn, sql, errstr, errstr_size);
	PQclear(res);
	return ok ? 0 : -1;
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
	 * statement_timeout_ms.
	 */
	snprintf(opts, sizeof(opts),
	         "-c session_replication_role=replica -c timezone=UTC "
	         "-c datestyle=ISO,YMD -c intervalstyle=postgres "
	         "-c bytea_output=hex -c extra_float_digits=3 "
	         "-c lock_timeout=%d -c statement_timeout=%d",
	         a->conf->lock_timeout_ms, a->conf->statement_timeout_ms);
	PQfinish(a->conn);
	a->origin[0] = '\0';
	/* Prepared statements died with the old session. */
	for (i = 0; i < a->ntargets; i++)
		target_reset(a->targets[i]);
	a->conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(a->conn) != CONNECTION_OK) {
		copy_err(a->conn, "cannot connect to PostgreSQL", errstr, errstr_size);
		PQfinish(a->conn);
		a->conn = NULL;
		return -1;
	}
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

static target_t *
target_get(xr_applier_t *a, const char *nsp, const char *rel)
{
	target_t *t;
	char      vtname[300];
	char     *q1, *q2, *q3;
	size_t    i;

	for (i = 0; i < a->ntargets; i++)
		if (strcmp(a->targets[i]->nspname, nsp) == 0 &&
		    strcmp(a->targets[i]->relname, rel) == 0)
			return a->targets[i];
	t = xr_calloc(1, sizeof(*t));
	t->nspname = xr_strdup(nsp);
	t->relname = xr_strdup(rel);
	t->tconf = xr_config_table(a->conf, nsp, rel);
	q1 = PQescapeIdentifier(a->conn, nsp, strlen(nsp));
	q2 = PQescapeIdentifier(a->conn, rel, strlen(rel));
	if (xr_config_versions_name(nsp, rel, vtname, sizeof(vtname)))
		snprintf(vtname, sizeof(vtname), "%s.%s", nsp, rel);  /* none: setup
		                                                        * refused it */
	q3 = PQescapeIdentifier(a->conn, vtname, strlen(vtname));
	t->lit_nsp = PQescapeLiteral(a->conn, nsp, strlen(nsp));
	t->lit_rel = PQescapeLiteral(a->conn, rel, strlen(rel));
	if (!q1 || !q2 || !q3 || !t->lit_nsp || !t->lit_rel) {
		PQfreemem(q1);
		PQfreemem(q2);
		PQfreemem(q3);
		target_free(t);
		return NULL;
	}
	xr_buf_reset(&a->scratch);
	xr_buf_printf(&a->scratch, "%s.%s", q1, q2);
	t->qual = xr_strdup(a->scratch.data);
	xr_buf_reset(&a->scratch);
	xr_buf_printf(&a->scratch, "xregion.%s", q3);
	t->vt = xr_strdup(a->scratch.data);
	PQfreemem(q1);
	PQfreemem(q2);
	PQfreemem(q3);
	a->targets = xr_reallocarray(a->targets, a->ntargets + 1, sizeof(*a->targets));
	a->targets[a->ntargets++] = t;
	return t;
}

/* Loads the table's columns; t->exists says whether it is there. */
static int
target_load(xr_applier_t *a, target_t *t, char *errstr, size_t errstr_size)
{
	const char *params[2] = { t->nspname, t->relname };
	PGresult   *res;
	int         i;

	target_reset(t);
	res = PQexecParams(a->conn,
	                   "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
	                   "       coalesce(a.attnum = ANY (i.indkey), false) "
	                   "FROM pg_catalog.pg_class c "
	                   "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	                   "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
	                   "LEFT JOIN pg_catalog.pg_index i "
	                   "  ON i.indrelid = c.oid AND i.indisprimary "
	                   "WHERE n.nspname = $1 AND c.relname = $2 "
	                   "  AND c.relkind IN ('r', 'p') "
	                   "  AND a.attnum > 0 AND NOT a.attisdropped "
	                   "ORDER BY a.attnum", 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		copy_err(a->conn, "reading the catalog", errstr, errstr_size);
		PQclear(res);
		return -1;
	}
	t->ncols = PQntuples(res);
	t->exists = t->ncols > 0;
	t->cols = xr_calloc((size_t)t->ncols, sizeof(*t->cols));
	for (i = 0; i < t->ncols; i++) {
		const char *name = PQgetvalue(res, i, 0);
		char       *q = PQescapeIdentifier(a->conn, name, strlen(name));

		if (!q) {
			copy_err(a->conn, "quoting", errstr, errstr_size);
			PQclear(res);
			return -1;
		}
		t->cols[i].name = xr_strdup(name);
		t->cols[i].qname = xr_strdup(q);
		PQfreemem(q);
		t->cols[i].type = xr_strdup(PQgetvalue(res, i, 1));
		t->cols[i].is_key = PQgetvalue(res, i, 2)[0] == 't';
		if (t->cols[i].is_key)
			t->nkeys++;
	}
	PQclear(res);
	return 0;
}

/* The field map of t for schema s, made on first use. */
static fmap_t *
fmap_get(target_t *t, const xr_schema_t *s)
{
	fmap_t *m;
	size_t  i;
	int     f, c;

	for (i = 0; i < t->nmaps; i++)
		if (t->maps[i].schema == s)
			return &t->maps[i];
	t->maps = xr_reallocarray(t->maps, t->nmaps + 1, sizeof(*t->maps));
	m = &t->maps[t->nmaps++];
	m->schema = s;
	m->col = xr_calloc((size_t)s->n_row_fields, sizeof(int));
	m->field_of = xr_calloc((size_t)t->ncols, sizeof(int));
	for (c = 0; c < t->ncols; c++)
		m->field_of[c] = -1;
	for (f = 0; f < s->n_row_fields; f++) {
		m->col[f] = -1;
		for (c = 0; c < t->ncols; c++) {
			if (strcmp(t->cols[c].name, s->row_fields[f].column) == 0) {
				m->col[f] = c;
				m->field_of[c] = f;
				break;
			}
		}
	}
	return m;
}

xr_check_t
xr_applier_check(xr_applier_t *a, const xr_event_t *ev, char *errstr,
                 size_t errstr_size)
{
	target_t *t = target_get(a, ev->nspname, ev->relname);
	fmap_t   *m;
	int       f, c;

	if (!t) {
		copy_err(a->conn, "quoting", errstr, errstr_size);
		return XR_CHECK_ERROR;
	}
	/* A missing table is looked for again each time: it may be created. */
	if ((!t->cols || !t->exists) && target_load(a, t, errstr, errstr_size))
		return XR_CHECK_ERROR;
	if (!t->exists) {
		snprintf(errstr, errstr_size, "table %s.%s does not exist in region %s",
		         ev->nspname, ev->relname, a->conf->region);
		return XR_CHECK_NO_TABLE;
	}
	if (t->nkeys == 0) {
		snprintf(errstr, errstr_size, "table %s.%s has no primary key in "
		         "region %s", ev->nspname, ev->relname, a->conf->region);
		return XR_CHECK_NO_TABLE;
	}
	if (ev->op == XR_OP_TRUNCATE)
		return XR_CHECK_OK;
	m = fmap_get(t, ev->schema);
	for (f = 0; f < ev->nfields; f++) {
		if (m->col[f] < 0) {
			snprintf(errstr, errstr_size,
			         "table %s.%s: column \"%s\" of region %s's schema is "
			         "missing in region %s", ev->nspname, ev->relname,
			         ev->schema->row_fields[f].column, ev->region,
			         a->conf->region);
			return XR_CHECK_DRIFT;
		}
	}
	for (c = 0; c < t->ncols; c++) {
		if (t->cols[c].is_key && m->field_of[c] < 0) {
			snprintf(errstr, errstr_size,
			         "table %s.%s: key column \"%s\" is not in region %s's "
			         "events", ev->nspname, ev->relname, t->cols[c].name,
			         ev->region);
			return XR_CHECK_NO_TABLE;
		}
	}
	return XR_CHECK_OK;
}

void
xr_applier_forget(xr_applier_t *a, const char *nspname, const char *relname)
{
	size_t i;

	for (i = 0; i < a->ntargets; i++) {
		target_t *t = a->targets[i];

		if (strcmp(t->nspname, nspname) == 0 &&
		    strcmp(t->relname, relname) == 0) {
			if (t->stmts && a->conn) {
				size_t k;

				for (k = 0; k < t->nstmts; k++) {
					char sql[64];

					snprintf(sql, sizeof(sql), "DEALLOCATE %s",
					         t->stmts[k]->name);
					PQclear(PQexec(a->conn, sql));
				}
			}
			target_reset(t);
		}
	}
}

/* Appends "t.k1 = $i::type AND ..." for the key columns, from first. */
static void
key_match(xr_buf_t *b, const target_t *t, const char *alias, const int *pnum)
{
	int c, n = 0;

	for (c = 0; c < t->ncols; c++) {
		if (!t->cols[c].is_key)
			continue;
		xr_buf_printf(b, "%s%s.%s = $%d::%s", n++ ? " AND " : "", alias,
		              t->cols[c].qname, pnum[c], t->cols[c].type);
	}
}

/* Appends "a.k1 = b.k1 AND ...". */
static void
key_join(xr_buf_t *b, const target_t *t, const char *x, const char *y)
{
	int c, n = 0;

	for (c = 0; c < t->ncols; c++)
		if (t->cols[c].is_key)
			xr_buf_printf(b, "%s%s.%s = %s.%s", n++ ? " AND " : "", x,
			              t->cols[c].qname, y, t->cols[c].qname);
}

static void
key_list(xr_buf_t *b, const target_t *t)
{
	int c, n = 0;

	for (c = 0; c < t->ncols; c++)
		if (t->cols[c].is_key)
			xr_buf_printf(b, "%s%s", n++ ? ", " : "", t->cols[c].qname);
}

/* The version of the live row t, read inside a statement. */
static void
row_version(xr_buf_t *b, const target_t *t)
{
	xr_buf_printf(b, "coalesce((SELECT xregion.version_of(t.xmin, v.ts, "
	              "v.region, v.clsn, v.lsn, v.xid) FROM %s v WHERE ", t->vt);
	key_join(b, t, "v", "t");
	xr_buf_puts(b, "), xregion.version_of(t.xmin, NULL, NULL))");
}

/*
 * The CTEs prior (the row now, locked: a concurrent local write is waited
 * for), tomb (its tombstone or the table's truncation, for the report) and
 * trunc (the truncation alone).
 */
static void
prior_ctes(xr_buf_t *b, const target_t *t, const int *pnum)
{
	xr_buf_printf(b,
	              "WITH prior AS MATERIALIZED (\n"
	              "  SELECT x.ver, CASE WHEN (x.ver).region IS DISTINCT FROM $2 "
	              "THEN to_jsonb(t.*) END AS img\n"
	              "  FROM %s t LEFT JOIN %s v ON ", t->qual, t->vt);
	key_join(b, t, "v", "t");
	xr_buf_puts(b, "\n  CROSS JOIN LATERAL (SELECT xregion.version_of(t.xmin, "
	               "v.ts, v.region, v.clsn, v.lsn, v.xid) AS ver) x");
	xr_buf_puts(b, "\n  WHERE ");
	key_match(b, t, "t", pnum);
	xr_buf_printf(b,
	              "\n  FOR UPDATE OF t\n"
	              "), trunc AS MATERIALIZED (\n"
	              "  SELECT xregion.tomb_version(x.ts, x.region, x.xid, x.clsn, x.lsn) AS ver "
	              "FROM xregion.truncations x WHERE x.table_schema = %s "
	              "AND x.table_name = %s\n"
	              "), tomb AS MATERIALIZED (\n"
	              "  SELECT GREATEST(\n"
	              "    (SELECT xregion.tomb_version(v.ts, v.region, v.xid, v.clsn, "
	              "v.lsn) FROM %s v WHERE ", t->lit_nsp, t->lit_rel, t->vt);
	key_match(b, t, "v", pnum);
	xr_buf_puts(b, " AND v.deleted), (SELECT ver FROM trunc)) AS ver\n)");
}

/*
 * The result of a row statement, as of set-based ones: applied, had_row,
 * the row's version (ts, region), the tombstone's, the row's image, race
 * (always 0 here), and whether the event is newer than the tombstone.
 */
static const char result_cols[] =
	"  (SELECT count(*) FROM prior)::int,\n"
	"  (SELECT (ver).ts FROM prior), (SELECT (ver).region FROM prior),\n"
	"  (SELECT (ver).ts FROM tomb), (SELECT (ver).region FROM tomb),\n"
	"  (SELECT img FROM prior), 0,\n"
	"  (SELECT " EV_VERSION " > ver FROM tomb)";

/*
 * The versions row of the key, written first and only when the event wins:
 * against the locked row when there is one, else against the newest
 * tombstone or applied version recorded for the key.  That comparison sits
 * in ON CONFLICT ... WHERE, which PostgreSQL evaluates on the latest
 * committed versions row, waiting for a concurrent local delete's tombstone
 * if need be: so a delete committing while this statement runs is not
 * overtaken by an older remote write.  where_new says when a missing row
 * may get one at all.
 */
static void
versions_gate(xr_buf_t *b, const target_t *t, const int *pnum, bool deleted,
              const char *where_new)
{
	int c, n;

	xr_buf_printf(b, ", vs AS (\n  INSERT INTO %s AS v (", t->vt);
	key_list(b, t);
	xr_buf_puts(b, ", ts, region, xid, deleted, clsn, lsn)\n  SELECT ");
	for (c = 0, n = 0; c < t->ncols; c++)
		if (t->cols[c].is_key)
			xr_buf_printf(b, "%s$%d::%s", n++ ? ", " : "", pnum[c],
			              t->cols[c].type);
	xr_buf_printf(b,
	              ", $1, $2, pg_catalog.pg_current_xact_id(), %s, $3, $4\n"
	              "  WHERE CASE WHEN EXISTS (SELECT 1 FROM prior)\n"
	              "    THEN " EV_VERSION " > (SELECT ver FROM prior)\n"
	              "    ELSE %s END\n"
	              "  ON CONFLICT (", deleted ? "true" : "false", where_new);
	key_list(b, t);
	xr_buf_printf(b,
	              ") DO UPDATE SET ts = EXCLUDED.ts, region = EXCLUDED.region, "
	              "xid = EXCLUDED.xid, deleted = %s, clsn = EXCLUDED.clsn, "
	              "lsn = EXCLUDED.lsn\n"
	              "  WHERE EXISTS (SELECT 1 FROM prior) OR " EV_VERSION " > "
	              "xregion.tomb_version(v.ts, v.region, v.xid, v.clsn, v.lsn)\n"
	              "  RETURNING 1\n", deleted ? "true" : "false");
}

/*
 * The CTE w: inserts or updates the row with the set columns when the CTE
 * gate returned a row (the event won its versions entry).
 */
static void
write_row(xr_buf_t *b, const target_t *t, const bool *set, const int *pnum,
          const int *okp, const char *gate)
{
	int c, n;

	xr_buf_printf(b, ", w AS (\n  INSERT INTO %s AS t (", t->qual);
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, "%s%s", n++ ? ", " : "", t->cols[c].qname);
	xr_buf_puts(b, ")\n  SELECT ");
	for (c = 0, n = 0; c < t->ncols; c++) {
		if (!set[c])
			continue;
		if (n++)
			xr_buf_puts(b, ", ");
		if (pnum[c] > 0) {
			xr_buf_printf(b, "$%d::%s", pnum[c], t->cols[c].type);
			continue;
		}
		/* A key change's unchanged value: the old key's row has it. */
		xr_buf_printf(b, "(SELECT o.%s FROM %s o WHERE ", t->cols[c].qname,
		              t->qual);
		key_match(b, t, "o", okp);
		xr_buf_putc(b, ')');
	}
	xr_buf_printf(b, "\n  WHERE EXISTS (SELECT 1 FROM %s)\n  ON CONFLICT (",
	              gate);
	key_list(b, t);
	xr_buf_puts(b, ") DO UPDATE SET ");
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c] && !t->cols[c].is_key)
			xr_buf_printf(b, "%s%s = EXCLUDED.%s", n++ ? ", " : "",
			              t->cols[c].qname, t->cols[c].qname);
	/* Only key columns: a no-op assignment keeps the syntax. */
	for (c = 0; c < t->ncols && n == 0; c++)
		if (t->cols[c].is_key)
			xr_buf_printf(b, "%s = EXCLUDED.%s", t->cols[c].qname,
			              t->cols[c].qname), n++;
}

/*
 * "$5", whether a missing row may be inserted: not when unchanged TOASTed
 * values were left out, unless (a key change) the old key's row has them.
 */
static void
may_insert_cond(xr_buf_t *b, const target_t *t, const int *okp)
{
	if (!okp) {
		xr_buf_puts(b, "$5");
		return;
	}
	xr_buf_printf(b, "($5 OR EXISTS (SELECT 1 FROM %s o WHERE ", t->qual);
	key_match(b, t, "o", okp);
	xr_buf_puts(b, "))");
}

/*
 * An upsert: $1-$4 the version, $5 whether a missing row may be inserted,
 * then the set columns (and, okp, the old key of a key change).
 */
static void
sql_upsert(xr_buf_t *b, const target_t *t, const bool *set, const int *pnum,
           const int *okp)
{
	xr_buf_t cond;

	xr_buf_init(&cond);
	may_insert_cond(&cond, t, okp);
	xr_buf_puts(&cond, " AND ((SELECT ver FROM trunc) IS NULL OR "
	                   EV_VERSION " > (SELECT ver FROM trunc))");
	prior_ctes(b, t, pnum);
	versions_gate(b, t, pnum, false, cond.data);
	xr_buf_term(&cond);
	xr_buf_putc(b, ')');
	write_row(b, t, set, pnum, okp, "vs");
	/* Checked again on the row as it is now (a local insert may race). */
	xr_buf_puts(b, "\n  WHERE " EV_VERSION " > ");
	row_version(b, t);
	xr_buf_printf(b, "\n  RETURNING 1\n)\nSELECT (SELECT count(*) FROM w)::int,"
	              "\n%s", result_cols);
}

/* A delete: $1-$4 the version, then the key columns. */
static void
sql_delete(xr_buf_t *b, const target_t *t, const int *pnum)
{
	prior_ctes(b, t, pnum);
	versions_gate(b, t, pnum, true, "true");
	xr_buf_printf(b, "), d AS (\n  DELETE FROM %s t WHERE ", t->qual);
	key_match(b, t, "t", pnum);
	xr_buf_puts(b, " AND EXISTS (SELECT 1 FROM vs) AND " EV_VERSION " > ");
	row_version(b, t);
	xr_buf_printf(b, "\n  RETURNING 1\n)\nSELECT (SELECT count(*) FROM d)::int,"
	              "\n%s", result_cols);
}

/*
 * A truncate: $1-$4 its version.  Deletes the rows older than the truncate,
 * and records it, so that older changes arriving later stay out.
 */
static void
sql_truncate(xr_buf_t *b, const target_t *t)
{
	xr_buf_printf(b,
	              "WITH d AS (\n  DELETE FROM %s t WHERE " EV_VERSION " > ",
	              t->qual);
	row_version(b, t);
	xr_buf_printf(b,
	              "\n  RETURNING 1\n), tr AS (\n"
	              "  INSERT INTO xregion.truncations AS x (table_schema, "
	              "table_name, ts, region, xid, clsn, lsn) VALUES (%s, %s, $1, "
	              "$2, NULL, $3, $4)\n"
	              "  ON CONFLICT (table_schema, table_name) DO UPDATE SET "
	              "ts = EXCLUDED.ts, region = EXCLUDED.region, xid = NULL, "
	              "clsn = EXCLUDED.clsn, lsn = EXCLUDED.lsn\n"
	              "  WHERE " EV_VERSION " > xregion.tomb_version(x.ts, x.region, "
	              "x.xid, x.clsn, x.lsn)\n  RETURNING 1\n)\n"
	              "SELECT (SELECT count(*) FROM d)::int, 0, NULL::bigint, "
	              "NULL::text, NULL::bigint, NULL::text, NULL::jsonb, 0, "
	              "NULL::bool", t->lit_nsp, t->lit_rel);
}


/*
 * Vector-clock tables.  The row's state is its versions entry: vv (the
 * pointwise maximum of every vector applied or written here), clk (the
 * largest clock seen) and the current winner's (rnk, ts, region), where ts
 * is the winner's hybrid clock and rnk its prefer-region rank.  A write
 * replaces the winner when its (rnk, hlc, region) is larger
 * (xregion.vc_wins): an order that every region computes alike and that a
 * write made after seeing another always follows, so that the state is the
 * maximum of the writes seen whatever their order of arrival.
 */
static bool
is_vclock(const target_t *t)
{
	return t->tconf && t->tconf->conflict == XR_CONFLICT_VCLOCK;
}

/*
 * Number of fixed parameters ahead of the column values, by op: every row
 * statement starts with the version (ts or hlc, region, commit LSN, LSN).
 */
static int
nfixed(char op)
{
	switch (op) {
	case 'u': return 5;   /* version, may-insert */
	case 'v': return 6;   /* version, may-insert, vv */
	case 'x': return 5;   /* version, vv */
	case 'U':
	case 'D': return 5;   /* arrays: ts, region, may-insert, clsn, lsn */
	case 'F':
	case 'G': return 2;   /* ts, region (or origin id) */
	default:  return 4;   /* 'd', 't': version */
	}
}

static bool
keep_local(const target_t *t)
{
	return t->tconf && t->tconf->tiebreak == XR_TIEBREAK_KEEP_LOCAL;
}

/* The rank of the incoming write, from its vector ($vvp). */
static void
vc_rank(PGconn *conn, xr_buf_t *b, const target_t *t, int vvp)
{
	char *lit;

	if (!t->tconf || t->tconf->tiebreak != XR_TIEBREAK_PREFER_REGION) {
		xr_buf_puts(b, "0::bigint");
		return;
	}
	lit = PQescapeLiteral(conn, t->tconf->prefer_region,
	                      strlen(t->tconf->prefer_region));
	xr_buf_printf(b, "coalesce(($%d::jsonb->>%s)::bigint, 0)", vvp,
	              lit ? lit : "''");
	PQfreemem(lit);
}

/*
 * prior (the row, locked first, as a local write locks it before its
 * trigger runs), cur (its versions entry, locked) and trunc.
 */
static void
vc_ctes(xr_buf_t *b, const target_t *t, const int *pnum)
{
	xr_buf_printf(b,
	              "WITH prior AS MATERIALIZED (\n"
	              "  SELECT to_jsonb(t.*) AS img FROM %s t WHERE ", t->qual);
	key_match(b, t, "t", pnum);
	xr_buf_printf(b,
	              " FOR UPDATE OF t\n"
	              "), cur AS MATERIALIZED (\n"
	              "  SELECT v.ts, v.region, v.deleted, v.vv, v.rnk FROM %s v "
	              "WHERE ", t->vt);
	key_match(b, t, "v", pnum);
	xr_buf_printf(b,
	              " AND (SELECT count(*) FROM prior) >= 0 FOR UPDATE\n"
	              "), trunc AS MATERIALIZED (\n"
	              "  SELECT xregion.tomb_version(x.ts, x.region, x.xid, x.clsn, x.lsn) AS ver "
	              "FROM xregion.truncations x WHERE x.table_schema = %s "
	              "AND x.table_name = %s\n)", t->lit_nsp, t->lit_rel);
}

/*
 * The versions entry: inserted when the key has none, else updated with
 * the decision made on the entry as it is now (a local write that took it
 * first has been waited for).  Returns the winner after the statement.
 */
static void
vc_versions(PGconn *conn, xr_buf_t *b, const target_t *t, const int *pnum,
            bool deleted, int vvp, const char *where)
{
	const char *w = "xregion.vc_wins(EXCLUDED.rnk, EXCLUDED.ts, "
	                "EXCLUDED.region, EXCLUDED.vv, v.rnk, v.ts, v.region, v.vv, ";
	int c, n;

	xr_buf_printf(b, ", vs AS (\n  INSERT INTO %s AS v (", t->vt);
	key_list(b, t);
	xr_buf_puts(b, ", ts, region, xid, deleted, vv, rnk, clk)\n  SELECT ");
	for (c = 0, n = 0; c < t->ncols; c++)
		if (t->cols[c].is_key)
			xr_buf_printf(b, "%s$%d::%s", n++ ? ", " : "", pnum[c],
			              t->cols[c].type);
	xr_buf_printf(b, ", $1, $2, NULL, %s, $%d::jsonb, ",
	              deleted ? "true" : "false", vvp);
	vc_rank(conn, b, t, vvp);
	xr_buf_printf(b, ", $1\n  WHERE (SELECT count(*) FROM cur) >= 0 AND "
	              "((SELECT ver FROM trunc) IS NULL OR "
	              EV_VERSION " > (SELECT ver FROM trunc))%s\n"
	              "  ON CONFLICT (", where);
	key_list(b, t);
	xr_buf_printf(b,
	              ") DO UPDATE SET\n"
	              "    ts = CASE WHEN %s%s) THEN EXCLUDED.ts ELSE v.ts END,\n"
	              "    region = CASE WHEN %s%s) THEN EXCLUDED.region "
	              "ELSE v.region END,\n"
	              "    rnk = CASE WHEN %s%s) THEN EXCLUDED.rnk ELSE v.rnk END,\n"
	              "    deleted = CASE WHEN %s%s) THEN %s ELSE v.deleted END,\n"
	              "    xid = NULL, vv = xregion.vv_merge(v.vv, EXCLUDED.vv),\n"
	              "    clk = GREATEST(coalesce(v.clk, v.ts), EXCLUDED.clk)\n"
	              "  RETURNING v.ts, v.region, v.rnk\n)",
	              w, keep_local(t) ? "true" : "false",
	              w, keep_local(t) ? "true" : "false",
	              w, keep_local(t) ? "true" : "false",
	              w, keep_local(t) ? "true" : "false",
	              deleted ? "true" : "false");
	/* Won: the entry names this write now, and did not before. */
	xr_buf_puts(b, ", won AS MATERIALIZED (\n  SELECT 1 FROM vs WHERE vs.ts = $1 "
	               "AND vs.region = $2 AND vs.rnk = ");
	vc_rank(conn, b, t, vvp);
	xr_buf_puts(b, "\n    AND NOT EXISTS (SELECT 1 FROM cur WHERE cur.ts = $1 "
	               "AND cur.region = $2 AND cur.rnk IS NOT DISTINCT FROM ");
	vc_rank(conn, b, t, vvp);
	xr_buf_puts(b, ")\n)");
}

static const char vc_result_cols[] =
	"  (SELECT count(*) FROM prior)::int,\n"
	"  (SELECT ts FROM cur), (SELECT region FROM cur),\n"
	"  (SELECT deleted FROM cur)::int, (SELECT count(*) FROM won)::int,\n"
	"  (SELECT img FROM prior), (SELECT vv FROM cur)::text,\n";

/*
 * A vclock upsert: $1 hlc, $2 region, $3-$4 the position, $5 may-insert,
 * $6 vector, then the
 * set columns.  Result: applied, had_row, the entry's ts and region,
 * deleted, won, the row's image, the entry's vector, and how the event's
 * vector compares with it (xregion.vv_cmp).
 */
static void
sql_vc_upsert(PGconn *conn, xr_buf_t *b, const target_t *t, const bool *set,
              const int *pnum, const int *okp)
{
	xr_buf_t cond;

	xr_buf_init(&cond);
	xr_buf_puts(&cond, " AND (EXISTS (SELECT 1 FROM prior) OR ");
	may_insert_cond(&cond, t, okp);
	xr_buf_putc(&cond, ')');
	vc_ctes(b, t, pnum);
	vc_versions(conn, b, t, pnum, false, 6, cond.data);
	xr_buf_term(&cond);
	write_row(b, t, set, pnum, okp, "won");
	xr_buf_printf(b, "\n  RETURNING 1\n)\nSELECT (SELECT count(*) FROM w)::int,"
	              "\n%s  xregion.vv_cmp($6::jsonb, (SELECT vv FROM cur))",
	              vc_result_cols);
}

/*
 * A vclock delete: $1 hlc, $2 region, $3-$4 the position, $5 vector, then
 * the key columns.
 */
static void
sql_vc_delete(PGconn *conn, xr_buf_t *b, const target_t *t, const int *pnum)
{
	vc_ctes(b, t, pnum);
	vc_versions(conn, b, t, pnum, true, 5, "");
	xr_buf_printf(b, ", d AS (\n  DELETE FROM %s t WHERE ", t->qual);
	key_match(b, t, "t", pnum);
	xr_buf_printf(b, " AND EXISTS (SELECT 1 FROM won)\n  RETURNING 1\n)\n"
	              "SELECT (SELECT count(*) FROM d)::int,\n%s"
	              "  xregion.vv_cmp($5::jsonb, (SELECT vv FROM cur))",
	              vc_result_cols);
}

/*
 * Set-based forms of the upsert and delete, for many events of one table
 * and one shape at once (keys distinct): the same decisions as the
 * statements above, row by row, in one statement.  Parameters are arrays:
 * $1 ts, $2 region, $3 may-insert, $4 commit LSN, $5 LSN, then one text[]
 * per set column.  One result row per event, in order: applied, had_row,
 * the row's version, the tombstone's, the row's image, "race" (a missing
 * row that a local insert took first: the caller retries that one with the
 * single-row statement), and whether the event beats the tombstone.
 */
static void
bulk_ev(xr_buf_t *b, const target_t *t, const bool *set)
{
	int c, p = nfixed('U');

	xr_buf_puts(b, "WITH ev AS MATERIALIZED (\n  SELECT * FROM unnest("
	               "$1::bigint[], $2::text[], $3::bool[], $4::bigint[], "
	               "$5::bigint[]");
	for (c = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, ", $%d::text[]", ++p);
	xr_buf_puts(b, ") WITH ORDINALITY AS e(ts, region, ins, clsn, lsn");
	for (c = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, ", c%d", c);
	xr_buf_puts(b, ", n)\n)");
}

/* Appends "x.k1 = e.c0::type AND ..." for the key columns. */
static void
bulk_key_match(xr_buf_t *b, const target_t *t, const char *x)
{
	int c, n = 0;

	for (c = 0; c < t->ncols; c++)
		if (t->cols[c].is_key)
			xr_buf_printf(b, "%s%s.%s = e.c%d::%s", n++ ? " AND " : "", x,
			              t->cols[c].qname, c, t->cols[c].type);
}

static void
bulk_key_values(xr_buf_t *b, const target_t *t)
{
	int c, n = 0;

	for (c = 0; c < t->ncols; c++)
		if (t->cols[c].is_key)
			xr_buf_printf(b, "%se.c%d::%s", n++ ? ", " : "", c,
			              t->cols[c].type);
}

static void
bulk_prior(xr_buf_t *b, const target_t *t)
{
	xr_buf_printf(b,
	              ", prior AS MATERIALIZED (\n"
	              "  SELECT e.n, x.ver, CASE WHEN (x.ver).region IS DISTINCT FROM "
	              "e.region THEN to_jsonb(t.*) END AS img\n"
	              "  FROM ev e JOIN %s t ON ", t->qual);
	bulk_key_match(b, t, "t");
	xr_buf_printf(b, "\n  LEFT JOIN %s v ON ", t->vt);
	key_join(b, t, "v", "t");
	xr_buf_printf(b,
	              "\n  CROSS JOIN LATERAL (SELECT xregion.version_of(t.xmin, v.ts, "
	              "v.region, v.clsn, v.lsn, v.xid) AS ver) x\n  FOR UPDATE OF t\n"
	              "), trunc AS MATERIALIZED (\n"
	              "  SELECT xregion.tomb_version(x.ts, x.region, x.xid, x.clsn, x.lsn) AS ver "
	              "FROM xregion.truncations x WHERE x.table_schema = %s "
	              "AND x.table_name = %s\n"
	              "), tomb AS MATERIALIZED (\n"
	              "  SELECT e.n, GREATEST(xregion.tomb_version(v.ts, v.region, "
	              "v.xid, v.clsn, v.lsn), (SELECT ver FROM trunc)) AS ver\n"
	              "  FROM ev e LEFT JOIN %s v ON ",
	              t->lit_nsp, t->lit_rel, t->vt);
	bulk_key_match(b, t, "v");
	xr_buf_puts(b, " AND v.deleted\n)");
}

/* The versions entries of the missing rows the events may create. */
static void
bulk_gate(xr_buf_t *b, const target_t *t, bool deleted, const char *cond)
{
	xr_buf_printf(b, ", gate AS (\n  INSERT INTO %s AS v (", t->vt);
	key_list(b, t);
	xr_buf_puts(b, ", ts, region, xid, deleted, clsn, lsn)\n  SELECT ");
	bulk_key_values(b, t);
	xr_buf_printf(b, ", e.ts, e.region, pg_catalog.pg_current_xact_id(), %s, "
	              "e.clsn, e.lsn FROM ev e\n"
	              "  WHERE %s\n  ON CONFLICT (", deleted ? "true" : "false",
	              cond);
	key_list(b, t);
	xr_buf_printf(b,
	              ") DO UPDATE SET ts = EXCLUDED.ts, region = EXCLUDED.region, "
	              "xid = EXCLUDED.xid, deleted = %s, clsn = EXCLUDED.clsn, "
	              "lsn = EXCLUDED.lsn\n"
	              "  WHERE ROW(EXCLUDED.ts, EXCLUDED.region, EXCLUDED.clsn, "
	              "EXCLUDED.lsn)::xregion.version > xregion.tomb_version(v.ts, "
	              "v.region, v.xid, v.clsn, v.lsn)\n  RETURNING ",
	              deleted ? "true" : "false");
	key_list(b, t);
	xr_buf_puts(b, "\n)");
}

static void
bulk_upsert(xr_buf_t *b, const target_t *t, const bool *set)
{
	int c, n;

	bulk_ev(b, t, set);
	bulk_prior(b, t);
	xr_buf_printf(b, ", up AS (\n  UPDATE %s t SET ", t->qual);
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c] && !t->cols[c].is_key)
			xr_buf_printf(b, "%s%s = e.c%d::%s", n++ ? ", " : "",
			              t->cols[c].qname, c, t->cols[c].type);
	if (n == 0)
		for (c = 0; c < t->ncols && n == 0; c++)
			if (t->cols[c].is_key)
				xr_buf_printf(b, "%s = t.%s", t->cols[c].qname,
				              t->cols[c].qname), n++;
	xr_buf_puts(b, "\n  FROM prior p JOIN ev e ON e.n = p.n\n  WHERE ");
	bulk_key_match(b, t, "t");
	xr_buf_puts(b, " AND " BULK_VERSION " > p.ver\n  RETURNING e.n\n)");
	bulk_gate(b, t, false,
	          "NOT EXISTS (SELECT 1 FROM prior p WHERE p.n = e.n) AND e.ins "
	          "AND ((SELECT ver FROM trunc) IS NULL OR " BULK_VERSION
	          " > (SELECT ver FROM trunc))");
	xr_buf_printf(b, ", ins AS (\n  INSERT INTO %s AS t (", t->qual);
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, "%s%s", n++ ? ", " : "", t->cols[c].qname);
	xr_buf_puts(b, ")\n  SELECT ");
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, "%se.c%d::%s", n++ ? ", " : "", c,
			              t->cols[c].type);
	xr_buf_puts(b, " FROM ev e JOIN gate g ON ");
	bulk_key_match(b, t, "g");
	xr_buf_puts(b, "\n  ON CONFLICT (");
	key_list(b, t);
	xr_buf_puts(b, ") DO NOTHING\n  RETURNING ");
	key_list(b, t);
	xr_buf_printf(b, "\n), vup AS (\n  INSERT INTO %s AS v (", t->vt);
	key_list(b, t);
	xr_buf_puts(b, ", ts, region, xid, deleted, clsn, lsn)\n  SELECT ");
	bulk_key_values(b, t);
	xr_buf_puts(b, ", e.ts, e.region, pg_catalog.pg_current_xact_id(), false, "
	               "e.clsn, e.lsn FROM ev e JOIN up u ON u.n = e.n\n"
	               "  ON CONFLICT (");
	key_list(b, t);
	xr_buf_puts(b, ") DO UPDATE SET ts = EXCLUDED.ts, region = EXCLUDED.region, "
	               "xid = EXCLUDED.xid, deleted = false, clsn = EXCLUDED.clsn, "
	               "lsn = EXCLUDED.lsn\n)\n");
	/* Plain joins on the key (distinct in a group): hash joins, not loops. */
	for (c = 0; c < t->ncols && !t->cols[c].is_key; c++)
		;
	xr_buf_printf(b,
	              "SELECT (u.n IS NOT NULL OR i.%s IS NOT NULL)::int, "
	              "(p.n IS NOT NULL)::int, (p.ver).ts, (p.ver).region, "
	              "(tb.ver).ts, (tb.ver).region, p.img, "
	              "(g.%s IS NOT NULL AND i.%s IS NULL)::int, "
	              BULK_VERSION " > tb.ver\n"
	              "FROM ev e LEFT JOIN prior p ON p.n = e.n "
	              "LEFT JOIN up u ON u.n = e.n LEFT JOIN tomb tb ON tb.n = e.n\n"
	              "LEFT JOIN gate g ON ", t->cols[c].qname, t->cols[c].qname,
	              t->cols[c].qname);
	bulk_key_match(b, t, "g");
	xr_buf_puts(b, "\nLEFT JOIN ins i ON ");
	bulk_key_match(b, t, "i");
	xr_buf_puts(b, "\nORDER BY e.n");
}

static void
bulk_delete(xr_buf_t *b, const target_t *t, const bool *set)
{
	bulk_ev(b, t, set);
	bulk_prior(b, t);
	bulk_gate(b, t, true, "NOT EXISTS (SELECT 1 FROM prior p WHERE p.n = e.n) "
	                      "OR " BULK_VERSION " > "
	                      "(SELECT p.ver FROM prior p WHERE p.n = e.n)");
	xr_buf_printf(b, ", d AS (\n  DELETE FROM %s t USING prior p JOIN ev e ON "
	              "e.n = p.n\n  WHERE ", t->qual);
	bulk_key_match(b, t, "t");
	xr_buf_puts(b, " AND " BULK_VERSION " > p.ver\n"
	               "  RETURNING e.n\n)\n"
	               "SELECT (d.n IS NOT NULL)::int, (p.n IS NOT NULL)::int, "
	               "(p.ver).ts, (p.ver).region, (tb.ver).ts, (tb.ver).region, "
	               "p.img, 0, " BULK_VERSION " > tb.ver\n"
	               "FROM ev e LEFT JOIN prior p ON p.n = e.n "
	               "LEFT JOIN d ON d.n = e.n LEFT JOIN tomb tb ON tb.n = e.n\n"
	               "ORDER BY e.n");
}

/* "unnest($first::text[], ...) AS e(c<i>, ...)" for the set columns. */
static void
unnest_set(xr_buf_t *b, const target_t *t, const bool *set, int first)
{
	int c, n;

	xr_buf_puts(b, "unnest(");
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, "%s$%d::text[]", n++ ? ", " : "", first++);
	xr_buf_puts(b, ") AS e(");
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, "%sc%d", n++ ? ", " : "", c);
	xr_buf_putc(b, ')');
}

/*
 * The fast insert: rows of one shape that are new here (no row, no
 * versions entry, not older than the table's truncation), all from the
 * source transaction whose commit timestamp this apply transaction carries
 * as its origin timestamp.  They need no versions entry: their version is
 * in their commit data (see version_of in meta.c).  $1 ts, $2 region, then
 * one text[] per set column.  Returns how many rows it inserted; the
 * caller keeps them only if that is all of them.
 */
static void
sql_fast_insert(xr_buf_t *b, const target_t *t, const bool *set)
{
	int c, n;

	xr_buf_printf(b,
	              "WITH trunc AS MATERIALIZED (\n"
	              "  SELECT xregion.tomb_version(x.ts, x.region, x.xid, x.clsn, x.lsn) AS ver "
	              "FROM xregion.truncations x WHERE x.table_schema = %s "
	              "AND x.table_name = %s\n"
	              "), ins AS (\n  INSERT INTO %s AS t (",
	              t->lit_nsp, t->lit_rel, t->qual);
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, "%s%s", n++ ? ", " : "", t->cols[c].qname);
	xr_buf_puts(b, ")\n  SELECT ");
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, "%se.c%d::%s", n++ ? ", " : "", c,
			              t->cols[c].type);
	xr_buf_puts(b, "\n  FROM ");
	unnest_set(b, t, set, 3);
	xr_buf_printf(b, "\n  WHERE NOT EXISTS (SELECT 1 FROM %s v WHERE ", t->vt);
	bulk_key_match(b, t, "v");
	xr_buf_puts(b, ")\n    AND ((SELECT ver FROM trunc) IS NULL OR "
	               "ROW($1::bigint, $2::text, 0::bigint, 0::bigint)::xregion.version > "
	               "(SELECT ver FROM trunc))\n  ON CONFLICT (");
	key_list(b, t);
	xr_buf_puts(b, ") DO NOTHING\n  RETURNING 1\n)\n"
	               "SELECT count(*)::int FROM ins");
}

/*
 * The fast update: updates of rows whose last write is an earlier fast
 * insert or fast update from the same source region (no versions entry,
 * committed under this origin, before this transaction's source commit
 * time), so that the update neither conflicts nor needs an entry.  $1 ts,
 * $2 the origin's id, then one text[] per set column.  Returns how many
 * rows it updated; the caller keeps them only if that is all of them.
 */
static void
sql_fast_update(xr_buf_t *b, const target_t *t, const bool *set)
{
	int c, n;

	xr_buf_printf(b,
	              "WITH p AS MATERIALIZED (\n"
	              "  SELECT 'epoch'::timestamptz + $1::bigint * "
	              "interval '1 microsecond' AS ts, $2::oid AS ro\n"
	              "), up AS (\n  UPDATE %s t SET ", t->qual);
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c] && !t->cols[c].is_key)
			xr_buf_printf(b, "%s%s = e.c%d::%s", n++ ? ", " : "",
			              t->cols[c].qname, c, t->cols[c].type);
	for (c = 0; c < t->ncols && n == 0; c++)
		if (t->cols[c].is_key)
			xr_buf_printf(b, "%s = t.%s", t->cols[c].qname,
			              t->cols[c].qname), n++;
	xr_buf_puts(b, "\n  FROM p, ");
	unnest_set(b, t, set, 3);
	xr_buf_puts(b, "\n  WHERE ");
	bulk_key_match(b, t, "t");
	xr_buf_puts(b, "\n    AND (pg_catalog.pg_xact_commit_timestamp_origin(t.xmin))"
	               ".roident = p.ro\n"
	               "    AND (pg_catalog.pg_xact_commit_timestamp_origin(t.xmin))"
	               ".\"timestamp\" < p.ts\n");
	xr_buf_printf(b, "    AND NOT EXISTS (SELECT 1 FROM %s v WHERE ", t->vt);
	key_join(b, t, "v", "t");
	xr_buf_puts(b, ")\n  RETURNING 1\n)\nSELECT count(*)::int FROM up");
}

/*
 * The prepared statement for op on t setting the columns in set (for a
 * delete: the keys).  Prepares it on first use.
 */
static stmt_t *
stmt_get(xr_applier_t *a, target_t *t, char op, const bool *set,
         const bool *from_old, char *errstr, size_t errstr_size)
{
	stmt_t   *s;
	char     *sig = xr_calloc((size_t)t->ncols + 2, 1);
	int      *pnum = xr_calloc((size_t)t->ncols, sizeof(int));
	int      *okp = NULL;
	bool     *all = xr_calloc((size_t)t->ncols + 1, sizeof(bool));
	int       c, np = nfixed(op);
	size_t    i;
	PGresult *res;

	sig[0] = op;
	for (c = 0; c < t->ncols; c++) {
		sig[c + 1] = from_old && from_old[c] ? '2' : set[c] ? '1' : '0';
		all[c] = sig[c + 1] != '0';
	}
	for (i = 0; i < t->nstmts; i++) {
		if (strcmp(t->stmts[i]->sig, sig) == 0) {
			free(sig);
			free(pnum);
			free(all);
			return t->stmts[i];
		}
	}
	t->stmts = xr_reallocarray(t->stmts, t->nstmts + 1, sizeof(*t->stmts));
	s = xr_calloc(1, sizeof(*s));
	s->sig = sig;
	snprintf(s->name, sizeof(s->name), "xr_apply_%u", ++a->stmt_seq);
	s->cols = xr_calloc((size_t)t->ncols * 2 + 1, sizeof(int));
	if (op != 't') {
		for (c = 0; c < t->ncols; c++) {
			pnum[c] = sig[c + 1] == '1' ? ++np : -1;
			if (sig[c + 1] == '1')
				s->cols[s->ncols++] = c;
		}
	}
	if (strchr(sig + 1, '2')) {
		/* The old key, to read the unchanged values from its row. */
		okp = xr_calloc((size_t)t->ncols, sizeof(int));
		for (c = 0; c < t->ncols; c++) {
			if (!t->cols[c].is_key)
				continue;
			okp[c] = ++np;
			s->cols[s->ncols++] = c;
			s->nold++;
		}
	}
	xr_buf_reset(&a->sql);
	if (op == 'u')
		sql_upsert(&a->sql, t, all, pnum, okp);
	else if (op == 'd')
		sql_delete(&a->sql, t, pnum);
	else if (op == 'U')
		bulk_upsert(&a->sql, t, set);
	else if (op == 'D')
		bulk_delete(&a->sql, t, set);
	else if (op == 'F')
		sql_fast_insert(&a->sql, t, set);
	else if (op == 'G')
		sql_fast_update(&a->sql, t, set);
	else if (op == 'v')
		sql_vc_upsert(a->conn, &a->sql, t, all, pnum, okp);
	else if (op == 'x')
		sql_vc_delete(a->conn, &a->sql, t, pnum);
	else
		sql_truncate(&a->sql, t);
	free(pnum);
	free(okp);
	free(all);
	res = PQprepare(a->conn, s->name, a->sql.data, 0, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		copy_err(a->conn, "preparing the apply statement", errstr,
		         errstr_size);
		xr_debug("statement was:\n%s", a->sql.data);
		PQclear(res);
		free(s->sig);
		free(s->cols);
		free(s);
		return NULL;
	}
	PQclear(res);
	xr_debug("prepared %s for %s.%s:\n%s", s->name, t->nspname, t->relname,
	         a->sql.data);
	t->stmts[t->nstmts++] = s;
	return s;
}

/* What one item sends: up to two statements (old key delete + upsert). */
typedef struct plan_s {
	stmt_t        *stmt[2];
	int            nstmt;
	int            first_result; /* index of the result that decides */
	bool           fast;         /* applied by a fast path */
	PGresult      *bulk;         /* decided by a set-based statement (borrowed) */
	int            bulk_row;
	xr_plan_out_t *merge;        /* superseded, follows_insert, fills */
} plan_t;

/* Groups smaller than this go row by row: not worth a statement of their own. */
#define BULK_MIN 8

/*
 * The text of the value of target column c in ev's image for statement
 * op ('d' and 'x' read the before image, the rest the after image, with
 * the values the batch's merge filled in); NULL for SQL NULL or a column
 * the event does not have.
 */
static const char *
value_of(const xr_event_t *ev, const fmap_t *m, const xr_plan_out_t *merge,
         char op, int c)
{
	int  f = c >= 0 ? m->field_of[c] : -1;
	bool known;

	if (f < 0)
		return NULL;
	if (op == 'd' || op == 'x' || op == 'D')
		return xr_event_text(ev, &ev->before[f]);
	return xr_plan_after_text(ev, merge, f, &known);
}

/*
 * Fills the parameters of row statement s for event ev: ts (the commit
 * time, or the hybrid clock of a vclock statement) and pos (its commit
 * LSN and LSN as text) give the version.
 */
static void
params_of(const stmt_t *s, const xr_event_t *ev, const fmap_t *m,
          const xr_plan_out_t *merge, const char *ts, char pos[2][24],
          const char *allow, const char *vv, const char **vals)
{
	int i, k = nfixed(s->sig[0]);

	vals[0] = ts;
	vals[1] = ev->region;
	vals[2] = pos[0];
	vals[3] = pos[1];
	if (s->sig[0] == 'u' || s->sig[0] == 'v')
		vals[4] = allow;
	if (s->sig[0] == 'v' || s->sig[0] == 'x')
		vals[k - 1] = vv;
	for (i = 0; i < s->ncols - s->nold; i++)
		vals[k + i] = value_of(ev, m, merge, s->sig[0], s->cols[i]);
	for (; i < s->ncols; i++)
		vals[k + i] = value_of(ev, m, NULL, 'd', s->cols[i]);
}

/*
 * The clock and vector an item's vclock statement s sends: the old key's
 * tombstone takes the event's before_* when the key changed.  An event
 * without a vector (from a table not in vclock mode at its source) counts
 * as an empty vector at its commit time.
 */
static const char *
vc_params(const stmt_t *s, const xr_event_t *ev, char *hlc, size_t hlc_size)
{
	bool old_key = s->sig[0] == 'x' && ev->op != XR_OP_DELETE &&
	               ev->has_vc_before;

	if (!ev->has_vclock) {
		snprintf(hlc, hlc_size, "%" PRId64, ev->commit_ts);
		return "{}";
	}
	snprintf(hlc, hlc_size, "%" PRId64, old_key ? ev->vc_before_hlc
	                                              : ev->vc_hlc);
	return old_key ? ev->vc_before_vector.data : ev->vc_vector.data;
}

/* Whether the key columns of before differ from after's. */
static bool
key_changed(const xr_event_t *ev, const target_t *t, const fmap_t *m)
{
	int c;

	if (!ev->has_before || !ev->has_after)
		return false;
	for (c = 0; c < t->ncols; c++) {
		int         f = m->field_of[c];
		const char *x, *y;

		if (!t->cols[c].is_key || f < 0)
			continue;
		x = xr_event_text(ev, &ev->before[f]);
		y = xr_event_text(ev, &ev->after[f]);
		if (!x || !y || strcmp(x, y) != 0)
			return true;
	}
	return false;
}

/*
 * Classifies an item from its decisive result row r: applied, whether a
 * row was there and its version's region, the tombstone if any.
 */
static void
classify(xr_apply_item_t *it, PGresult *r, int row, bool may_insert)
{
	const xr_event_t *ev = it->ev;
	bool        applied = atoi(PQgetvalue(r, row, 0)) > 0;
	bool        had_row = atoi(PQgetvalue(r, row, 1)) > 0;
	const char *row_region = PQgetisnull(r, row, 3) ? NULL
	                                                : PQgetvalue(r, row, 3);
	bool        had_tomb = !PQgetisnull(r, row, 4) && !PQgetisnull(r, row, 5);
	bool        beats_tomb = !had_tomb || PQgetisnull(r, row, 8) ||
	                         PQgetvalue(r, row, 8)[0] == 't';
	bool        other = had_row && row_region &&
	                    strcmp(row_region, ev->region) != 0;

	it->conflict = XR_CONFLICT_NONE;
	it->resolution = applied ? XR_RES_APPLIED : XR_RES_SKIPPED;
	switch (ev->op) {
	case XR_OP_INSERT:
	case XR_OP_SNAPSHOT_READ:
		if (had_row && other)
			it->conflict = XR_CONFLICT_INSERT_EXISTS;
		else if (!had_row && !beats_tomb)
			it->conflict = XR_CONFLICT_INSERT_DELETED;
		break;
	case XR_OP_UPDATE:
		if (had_row) {
			if (other)
				it->conflict = XR_CONFLICT_UPDATE_ORIGIN_DIFFERS;
		} else if (!beats_tomb) {
			it->conflict = XR_CONFLICT_UPDATE_DELETED;
		} else {
			it->conflict = XR_CONFLICT_UPDATE_MISSING;
			if (!applied && !may_insert) {
				it->resolution = XR_RES_DEAD_LETTER;
				snprintf(it->reason, sizeof(it->reason),
				         "update of a row missing in this region whose "
				         "unchanged TOASTed columns were not sent");
			}
		}
		break;
	case XR_OP_DELETE:
		if (had_row && other)
			it->conflict = applied ? XR_CONFLICT_DELETE_ORIGIN_DIFFERS
			                       : XR_CONFLICT_DELETE_AFTER_UPDATE;
		else if (!had_row) {
			/* Nothing to delete: the tombstone is what counts. */
			it->resolution = beats_tomb ? XR_RES_APPLIED : XR_RES_SKIPPED;
			if (!had_tomb)
				it->conflict = XR_CONFLICT_DELETE_MISSING;
		}
		break;
	default:
		break;
	}
}

/*
 * Classifies an item of a vclock table from its decisive result row (see
 * sql_vc_upsert): a conflict is a write whose vector is concurrent with the
 * row's, or one that finds nothing it could apply to.
 */
static void
classify_vc(xr_apply_item_t *it, PGresult *r, int row, bool may_insert)
{
	const xr_event_t *ev = it->ev;
	bool applied = atoi(PQgetvalue(r, row, 0)) > 0;
	bool had_row = atoi(PQgetvalue(r, row, 1)) > 0;
	bool had_entry = !PQgetisnull(r, row, 2);
	bool tomb = !PQgetisnull(r, row, 4) && atoi(PQgetvalue(r, row, 4)) > 0;
	bool won = atoi(PQgetvalue(r, row, 5)) > 0;
	int  cmp = PQgetisnull(r, row, 8) ? 1 : atoi(PQgetvalue(r, row, 8));
	bool concurrent = had_entry && cmp == 2;

	it->conflict = XR_CONFLICT_NONE;
	it->resolution = applied || (ev->op == XR_OP_DELETE && won)
	                 ? XR_RES_APPLIED : XR_RES_SKIPPED;
	switch (ev->op) {
	case XR_OP_INSERT:
	case XR_OP_SNAPSHOT_READ:
		if (concurrent)
			it->conflict = had_row || !tomb ? XR_CONFLICT_INSERT_CONCURRENT
			                                : XR_CONFLICT_INSERT_DELETED;
		break;
	case XR_OP_UPDATE:
		if (concurrent) {
			it->conflict = had_row || !tomb ? XR_CONFLICT_UPDATE_CONCURRENT
			                                : XR_CONFLICT_UPDATE_DELETED;
		} else if (!had_row && !tomb) {
			it->conflict = XR_CONFLICT_UPDATE_MISSING;
			if (!applied && !may_insert) {
				it->resolution = XR_RES_DEAD_LETTER;
				snprintf(it->reason, sizeof(it->reason),
				         "update of a row missing in this region whose "
				         "unchanged TOASTed columns were not sent");
			}
		}
		break;
	case XR_OP_DELETE:
		if (concurrent)
			it->conflict = XR_CONFLICT_DELETE_CONCURRENT;
		else if (!had_row && !had_entry)
			it->conflict = XR_CONFLICT_DELETE_MISSING;
		break;
	default:
		break;
	}
}

/* Appends a JSON object of the image's values (as text) for the log. */
static void
image_json(xr_buf_t *b, const xr_event_t *ev, const xr_eval_t *img, bool keys,
           const target_t *t, const fmap_t *m)
{
	int f, n = 0;

	xr_buf_putc(b, '{');
	for (f = 0; f < ev->nfields; f++) {
		const char *name = ev->schema->row_fields[f].column;
		const char *v;

		if (!img[f].present || img[f].unchanged)
			continue;
		if (keys && (m->col[f] < 0 || !t->cols[m->col[f]].is_key))
			continue;
		if (n++)
			xr_buf_putc(b, ',');
		xr_buf_json_str(b, name, strlen(name));
		xr_buf_putc(b, ':');
		v = xr_event_text(ev, &img[f]);
		if (v)
			xr_buf_json_str(b, v, img[f].len);
		else
			xr_buf_puts(b, "null");
	}
	xr_buf_putc(b, '}');
}

static int
log_conflict(xr_applier_t *a, const xr_apply_item_t *it, const target_t *t,
             const fmap_t *m, PGresult *res, int rrow, char *errstr,
             size_t errstr_size)
{
	const xr_event_t *ev = it->ev;
	const xr_eval_t  *img = ev->has_after ? ev->after : ev->before;
	xr_buf_t          key, row;
	char              rts[32], part[16], off[32];
	const char       *vals[14];
	const char       *vvs[2] = { NULL, NULL };
	bool              vc = is_vclock(t);
	PGresult         *r;
	int               ok;

	xr_buf_init(&key);
	xr_buf_init(&row);
	image_json(&key, ev, img, true, t, m);
	if (ev->has_after)
		image_json(&row, ev, ev->after, false, t, m);
	snprintf(rts, sizeof(rts), "%" PRId64, ev->commit_ts);
	snprintf(part, sizeof(part), "%d", (int)it->partition);
	snprintf(off, sizeof(off), "%" PRId64, it->offset);
	vals[0] = ev->nspname;
	vals[1] = ev->relname;
	vals[2] = key.data;
	vals[3] = xr_conflict_names[it->conflict];
	vals[4] = xr_resolution_names[it->resolution];
	vals[5] = res && !PQgetisnull(res, rrow, 2) ? PQgetvalue(res, rrow, 2) : NULL;
	vals[6] = res && !PQgetisnull(res, rrow, 3) ? PQgetvalue(res, rrow, 3) : NULL;
	vals[7] = rts;
	vals[8] = ev->region;
	vals[9] = res && !PQgetisnull(res, rrow, 6) ? PQgetvalue(res, rrow, 6) : NULL;
	vals[10] = ev->has_after ? row.data : NULL;
	vals[11] = ev->event_id;
	vals[12] = it->topic;
	vals[13] = part;
	if (vc) {
		/* The clocks compared, and both vectors. */
		snprintf(rts, sizeof(rts), "%" PRId64,
		         ev->has_vclock ? ev->vc_hlc : ev->commit_ts);
		vvs[0] = res && !PQgetisnull(res, rrow, 7) ? PQgetvalue(res, rrow, 7)
		                                           : NULL;
		vvs[1] = ev->has_vclock ? ev->vc_vector.data : "{}";
	}
	r = PQexecParams(a->conn,
	                 "INSERT INTO xregion.conflicts (table_schema, table_name, "
	                 "key, kind, resolution, local_ts, local_region, remote_ts, "
	                 "remote_region, local_row, remote_row, event_id, topic, "
	                 "kafka_partition, kafka_offset, local_vclock, "
	                 "remote_vclock) VALUES ($1, $2, $3, $4, $5, "
	                 "xregion.ts_of($6::bigint), $7, "
	                 "xregion.ts_of($8::bigint), $9, $10, $11, "
	                 "$12::uuid, $13, $14::int, $15::bigint, $16::jsonb, "
	                 "$17::jsonb)",
	                 17, NULL,
	                 (const char *const[]){ vals[0], vals[1], vals[2], vals[3],
	                                        vals[4], vals[5], vals[6], vals[7],
	                                        vals[8], vals[9], vals[10],
	                                        vals[11], vals[12], vals[13], off,
	                                        vvs[0], vvs[1] },
	                 NULL, NULL, 0);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		copy_err(a->conn, "logging a conflict", errstr, errstr_size);
	PQclear(r);
	xr_buf_term(&key);
	xr_buf_term(&row);
	return ok ? 0 : -1;
}

static int
set_origin(xr_applier_t *a, const char *src, char *errstr, size_t errstr_size)
{
	char        name[128];
	const char *params[1] = { name };
	PGresult   *res;

	xr_meta_origin_name(a->conf, src, name, sizeof(name));
	if (strcmp(a->origin, name) == 0)
		return 0;
	if (a->origin[0] &&
	    exec_ok(a, "SELECT pg_catalog.pg_replication_origin_session_reset()",
	            errstr, errstr_size))
		return -1;
	a->origin[0] = '\0';
	res = PQexecParams(a->conn,
	                   "SELECT pg_catalog.pg_replication_origin_session_setup($1), "
	                   "pg_catalog.pg_replication_origin_oid($1)",
	                   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		copy_err(a->conn, "replication origin (run xregion setup?)", errstr,
		         errstr_size);
		PQclear(res);
		return -1;
	}
	snprintf(a->origin_id, sizeof(a->origin_id), "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	snprintf(a->origin, sizeof(a->origin), "%s", name);
	return 0;
}

static int
store_offsets(xr_applier_t *a, const xr_offset_t *o, size_t n, char *errstr,
              size_t errstr_size)
{
	size_t i;

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
			copy_err(a->conn, "storing offsets", errstr, errstr_size);
			PQclear(res);
			return -1;
		}
		PQclear(res);
	}
	return 0;
}

int
xr_applier_store_offsets(xr_applier_t *a, const xr_offset_t *offsets,
                         size_t n, char *errstr, size_t errstr_size)
{
	if (exec_ok(a, "BEGIN", errstr, errstr_size))
		return -1;
	if (store_offsets(a, offsets, n, errstr, errstr_size) ||
	    exec_ok(a, "COMMIT", errstr, errstr_size)) {
		PQclear(PQexec(a->conn, "ROLLBACK"));
		return -1;
	}
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
			copy_err(a->conn, "reading offsets", errstr, errstr_size);
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
xr_applier_purge_tombstones(xr_applier_t *a, int retention_hours,
                            char *errstr, size_t errstr_size)
{
	long   total = 0;
	size_t i;

	for (i = 0; i < a->ntargets; i++) {
		target_t   *t = a->targets[i];
		char        hours[16];
		const char *vals[1] = { hours };
		PGresult   *res;

		if (!t->exists)
			continue;
		snprintf(hours, sizeof(hours), "%d", retention_hours);
		xr_buf_reset(&a->sql);
		xr_buf_printf(&a->sql,
		              "DELETE FROM %s v WHERE v.deleted AND "
		              "(xregion.tomb_version(v.ts, v.region, v.xid, v.clsn, v.lsn)).ts < "
		              "(extract(epoch FROM now() - make_interval(hours => "
		              "$1::int)) * 1000000)::bigint", t->vt);
		res = PQexecParams(a->conn, a->sql.data, 1, NULL, vals, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			copy_err(a->conn, "purging tombstones", errstr, errstr_size);
			PQclear(res);
			return -1;
		}
		total += strtol(PQcmdTuples(res), NULL, 10);
		PQclear(res);
	}
	return total;
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
xr_applier_connected(const xr_applier_t *a)
{
	return a->conn && PQstatus(a->conn) == CONNECTION_OK;
}

const xr_apply_stats_t *
xr_applier_stats(const xr_applier_t *a)
{
	return &a->stats;
}

/* Sends one prepared statement into the pipeline. */
static int
send_stmt(xr_applier_t *a, const stmt_t *s, const char **vals, char *errstr,
          size_t errstr_size)
{
	int nparams = nfixed(s->sig[0]) + s->ncols;

	if (!PQsendQueryPrepared(a->conn, s->name, nparams, vals, NULL, NULL, 0)) {
		copy_err(a->conn, "sending a change", errstr, errstr_size);
		return -1;
	}
	return 0;
}

/* Reads one statement's result in the pipeline; returns it or NULL. */
static PGresult *
read_result(xr_applier_t *a, char *errstr, size_t errstr_size)
{
	PGresult *res = PQgetResult(a->conn), *extra;

	if (!res) {
		copy_err(a->conn, "reading a result", errstr, errstr_size);
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
static void
drain_to_sync(xr_applier_t *a)
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


/* Appends v as an element of a PostgreSQL array literal. */
static void
array_elem(xr_buf_t *b, const char *v, bool first)
{
	if (!first)
		xr_buf_putc(b, ',');
	if (!v) {
		xr_buf_puts(b, "NULL");
		return;
	}
	xr_buf_putc(b, '"');
	for (; *v; v++) {
		if (*v == '"' || *v == '\\')
			xr_buf_putc(b, '\\');
		xr_buf_putc(b, *v);
	}
	xr_buf_putc(b, '"');
}

/* A batch being applied: its items, their plans and results. */
typedef struct batch_s {
	xr_apply_item_t  *items;
	size_t            n;
	plan_t           *plans;
	xr_plan_out_t    *merge;     /* n entries: the planner's output */
	bool              in_order;  /* not merged: every event, in order */
	size_t           *order;     /* the items by position in the source */
	PGresult        **res;       /* n * 2: row statements' results */
	PGresult        **bulk_res;  /* set-based statements' results */
	size_t            nbulk;
	xr_apply_stats_t  stats;     /* added to the applier's after COMMIT */
} batch_t;

/* Orders by statement, then by position in the batch. */
static int
cmp_stmt(const void *x, const void *y, void *arg)
{
	const plan_t *plans = arg;
	size_t      i = *(const size_t *)x, j = *(const size_t *)y;
	const char *a = plans[i].stmt[plans[i].first_result]->name;
	const char *b = plans[j].stmt[plans[j].first_result]->name;
	int         c = strcmp(a, b);

	return c ? c : (i < j ? -1 : (i > j));
}

/*
 * Whether item i may take the fast path op ('F': insert, 'G': update) at
 * commit time ts.
 */
static bool
fast_candidate(const batch_t *b, size_t i, int64_t ts, char op)
{
	const xr_event_t *ev = b->items[i].ev;
	const plan_t     *pl = &b->plans[i];
	bool ins = ev->op == XR_OP_INSERT || ev->op == XR_OP_SNAPSHOT_READ;

	if (pl->nstmt != 1 || pl->stmt[0]->sig[0] != 'u' || ev->commit_ts != ts)
		return false;
	return op == 'F' ? ins && xr_plan_complete(ev, pl->merge)
	                 : ev->op == XR_OP_UPDATE;
}

static int
cmp_i64(const void *x, const void *y)
{
	int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;

	return a < b ? -1 : (a > b);
}

/*
 * The commit timestamp most inserts and updates of the batch share (one
 * source transaction), if at least BULK_MIN do; else INT64_MIN.  Sets *lsn to
 * that transaction's commit LSN.
 */
static int64_t
fast_commit_ts(const batch_t *b, const size_t *idx, size_t m, xr_lsn_t *lsn)
{
	int64_t *ts = xr_calloc(m ? m : 1, sizeof(int64_t));
	int64_t  best = INT64_MIN;
	size_t   i, j, n = 0, best_n = 0;

	for (i = 0; i < m; i++) {
		const xr_event_t *ev = b->items[idx[i]].ev;

		if ((ev->op == XR_OP_INSERT || ev->op == XR_OP_SNAPSHOT_READ ||
		     ev->op == XR_OP_UPDATE) && b->plans[idx[i]].nstmt == 1)
			ts[n++] = ev->commit_ts;
	}
	qsort(ts, n, sizeof(int64_t), cmp_i64);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && ts[j] == ts[i]; j++)
			;
		if (j - i > best_n) {
			best_n = j - i;
			best = ts[i];
		}
	}
	free(ts);
	if (best_n < BULK_MIN)
		return INT64_MIN;
	for (i = 0; i < m; i++)
		if (b->items[idx[i]].ev->commit_ts == best)
			*lsn = b->items[idx[i]].ev->commit_lsn;
	return best;
}

/*
 * The arrays of a set-based statement: nfixed leading ones (filled by
 * the caller), then one per set column of s, each "{...}" once closed.
 */
typedef struct arrays_s {
	xr_buf_t    *arr;
	const char **vals;
	int          n;
} arrays_t;

static void
arrays_init(arrays_t *x, int n)
{
	int p;

	x->n = n;
	x->arr = xr_calloc((size_t)n, sizeof(xr_buf_t));
	x->vals = xr_calloc((size_t)n, sizeof(char *));
	for (p = 0; p < n; p++) {
		xr_buf_init(&x->arr[p]);
		xr_buf_putc(&x->arr[p], '{');
	}
}

/* Appends the column values of item i to the arrays from first on. */
static void
arrays_add_cols(arrays_t *x, int first, target_t *t, const stmt_t *s, char op,
                const batch_t *b, size_t i, bool at_start)
{
	const xr_event_t *ev = b->items[i].ev;
	fmap_t           *fm = fmap_get(t, ev->schema);
	int               p;

	for (p = 0; p < s->ncols; p++)
		array_elem(&x->arr[first + p],
		           value_of(ev, fm, b->plans[i].merge, op, s->cols[p]),
		           at_start);
}

static void
arrays_close(arrays_t *x)
{
	int p;

	for (p = 0; p < x->n; p++) {
		xr_buf_putc(&x->arr[p], '}');
		x->vals[p] = x->arr[p].data;
	}
}

static void
arrays_term(arrays_t *x)
{
	int p;

	for (p = 0; p < x->n && x->arr; p++)
		xr_buf_term(&x->arr[p]);
	free(x->arr);
	free(x->vals);
	x->arr = NULL;
	x->vals = NULL;
}

/*
 * Makes this transaction carry the source transaction's commit time, the
 * version of the rows the fast paths write without versions entries, and
 * records that version in xregion.applied_xacts, where version_of finds it
 * once PostgreSQL has truncated the commit timestamps.
 */
static int
origin_xact_setup(xr_applier_t *a, xr_lsn_t lsn, const char *ts,
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
	                   "xregion.applied_xacts (xid, ts, region) VALUES "
	                   "(pg_catalog.pg_current_xact_id(), $2::bigint, $3) "
	                   "ON CONFLICT (xid) DO NOTHING) SELECT * FROM s",
	                   3, NULL, v, NULL, NULL, 0);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!ok)
		copy_err(a->conn, "setting the origin timestamp", errstr, errstr_size);
	PQclear(res);
	return ok ? 0 : -1;
}

/* Records the sqlstate and message of a failed set-based statement. */
static void
bulk_error(xr_applier_t *a, PGresult *res, const char *what, size_t n,
           const target_t *t, char *errstr, size_t errstr_size)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	snprintf(a->sqlstate, sizeof(a->sqlstate), "%s", state ? state : "");
	snprintf(errstr, errstr_size, "%s %zu rows of %s.%s: %s", what, n,
	         t->nspname, t->relname, PQresultErrorMessage(res));
}

/*
 * Tries fast path op (sql_fast_insert 'F', sql_fast_update 'G') for the
 * candidates among the group's members: all of them or none (a savepoint
 * undoes a partial one).  The first use makes the transaction carry ts as
 * its origin timestamp.  Marks the members it applied.  Returns 0, or -1
 * with errstr when the database failed.
 */
static int
fast_apply(xr_applier_t *a, target_t *t, const bool *set, char op, batch_t *b,
           const size_t *mem, size_t nmem, int64_t ts, xr_lsn_t lsn,
           bool *setup, char *errstr, size_t errstr_size)
{
	size_t   *cand = xr_calloc(nmem ? nmem : 1, sizeof(size_t));
	size_t    k, nc = 0;
	stmt_t   *st;
	arrays_t  x = { 0 };
	char      tsbuf[32];
	PGresult *res = NULL;
	int       rc = -1;

	for (k = 0; k < nmem; k++)
		if (fast_candidate(b, mem[k], ts, op))
			cand[nc++] = mem[k];
	if (nc < BULK_MIN) {
		rc = 0;
		goto out;
	}
	if (!(st = stmt_get(a, t, op, set, NULL, errstr, errstr_size)))
		goto out;
	snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ts);
	if (!*setup) {
		if (origin_xact_setup(a, lsn, tsbuf, b->items[cand[0]].ev->region,
		                      errstr, errstr_size))
			goto out;
		*setup = true;
	}
	arrays_init(&x, st->ncols + 2);
	for (k = 0; k < nc; k++)
		arrays_add_cols(&x, 2, t, st, 'u', b, cand[k], k == 0);
	arrays_close(&x);
	x.vals[0] = tsbuf;
	x.vals[1] = op == 'F' ? b->items[cand[0]].ev->region : a->origin_id;
	if (exec_ok(a, "SAVEPOINT xr_fast", errstr, errstr_size))
		goto out;
	res = PQexecPrepared(a->conn, st->name, x.n, x.vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		bulk_error(a, res, op == 'F' ? "inserting" : "updating", nc, t,
		           errstr, errstr_size);
		goto out;
	}
	if ((size_t)atoi(PQgetvalue(res, 0, 0)) != nc) {
		/* Some were there: the regular statements decide them all. */
		if (exec_ok(a, "ROLLBACK TO SAVEPOINT xr_fast", errstr, errstr_size))
			goto out;
	} else {
		for (k = 0; k < nc; k++) {
			b->plans[cand[k]].fast = true;
			b->plans[cand[k]].nstmt = 0;
		}
	}
	if (exec_ok(a, "RELEASE SAVEPOINT xr_fast", errstr, errstr_size))
		goto out;
	rc = 0;
out:
	PQclear(res);
	arrays_term(&x);
	free(cand);
	return rc;
}

/*
 * Runs the set-based form of one group's statement ('U' or 'D') for the
 * members the fast paths left, if enough are left, and hands each member
 * its result row.  Returns 0, or -1 with errstr.
 */
static int
bulk_group(xr_applier_t *a, target_t *t, const stmt_t *one, const bool *set,
           batch_t *b, const size_t *mem, size_t nmem, char *errstr,
           size_t errstr_size)
{
	char      op = one->sig[0] == 'u' ? 'U' : 'D';
	stmt_t   *bulk = stmt_get(a, t, op, set, NULL, errstr, errstr_size);
	size_t   *grp, k, g = 0;
	arrays_t  x;
	PGresult *res;

	if (!bulk)
		return -1;
	grp = xr_calloc(nmem ? nmem : 1, sizeof(size_t));
	for (k = 0; k < nmem; k++)
		if (!b->plans[mem[k]].fast)
			grp[g++] = mem[k];
	if (g < BULK_MIN) {
		free(grp);
		return 0;
	}
	arrays_init(&x, bulk->ncols + nfixed(op));
	for (k = 0; k < g; k++) {
		const xr_event_t *ev = b->items[grp[k]].ev;
		const char       *sep = k > 0 ? "," : "";

		xr_buf_printf(&x.arr[0], "%s%" PRId64, sep, ev->commit_ts);
		array_elem(&x.arr[1], ev->region, k == 0);
		xr_buf_printf(&x.arr[2], "%s%s", sep,
		              xr_plan_complete(ev, b->plans[grp[k]].merge) ? "t" : "f");
		xr_buf_printf(&x.arr[3], "%s%" PRId64, sep, (int64_t)ev->commit_lsn);
		xr_buf_printf(&x.arr[4], "%s%" PRId64, sep, (int64_t)ev->lsn);
		arrays_add_cols(&x, nfixed(op), t, bulk, op, b, grp[k], k == 0);
	}
	arrays_close(&x);
	res = PQexecPrepared(a->conn, bulk->name, x.n, x.vals, NULL, NULL, 0);
	arrays_term(&x);
	if (PQresultStatus(res) != PGRES_TUPLES_OK ||
	    (size_t)PQntuples(res) != g) {
		bulk_error(a, res, "applying", g, t, errstr, errstr_size);
		PQclear(res);
		free(grp);
		return -1;
	}
	b->bulk_res = xr_reallocarray(b->bulk_res, b->nbulk + 1, sizeof(PGresult *));
	b->bulk_res[b->nbulk++] = res;
	for (k = 0; k < g; k++) {
		plan_t *pl = &b->plans[grp[k]];

		/* A local insert took the missing row first: row by row. */
		if (atoi(PQgetvalue(res, (int)k, 7)) > 0)
			continue;
		pl->bulk = res;
		pl->bulk_row = (int)k;
		pl->nstmt = 0;
	}
	free(grp);
	return 0;
}

/*
 * Applies what it can of the batch with set-based statements, inside the
 * open transaction: one statement per table and shape for groups of
 * BULK_MIN or more of the events the merge kept (at most one per key).
 * The rest, and rows a local insert raced for, stay for the row-by-row
 * pipeline.  Results are kept in b->bulk_res.
 */
static int
bulk_phase(xr_applier_t *a, batch_t *b, char *errstr, size_t errstr_size)
{
	size_t  *idx = xr_calloc(b->n ? b->n : 1, sizeof(size_t));
	size_t   i, j, m = 0;
	int64_t  fast_ts;
	xr_lsn_t fast_lsn = 0;
	bool     fast_setup = false;
	int      rc = -1;

	for (i = 0; i < b->n; i++)
		if (b->plans[i].nstmt == 1)
			idx[m++] = i;
	qsort_r(idx, m, sizeof(size_t), cmp_stmt, b->plans);
	fast_ts = fast_commit_ts(b, idx, m, &fast_lsn);
	for (i = 0; i < m; i = j) {
		stmt_t   *one = b->plans[idx[i]].stmt[0];
		target_t *t;
		bool     *set;
		int       c, err;

		for (j = i + 1; j < m && b->plans[idx[j]].stmt[0] == one; j++)
			;
		if (j - i < BULK_MIN || (one->sig[0] != 'u' && one->sig[0] != 'd'))
			continue;
		t = target_get(a, b->items[idx[i]].ev->nspname,
		               b->items[idx[i]].ev->relname);
		set = xr_calloc((size_t)t->ncols, sizeof(bool));
		for (c = 0; c < t->ncols; c++)
			set[c] = one->sig[c + 1] == '1';
		err = one->sig[0] == 'u' && fast_ts != INT64_MIN &&
		      (fast_apply(a, t, set, 'F', b, idx + i, j - i, fast_ts, fast_lsn,
		                  &fast_setup, errstr, errstr_size) ||
		       fast_apply(a, t, set, 'G', b, idx + i, j - i, fast_ts, fast_lsn,
		                  &fast_setup, errstr, errstr_size));
		if (!err)
			err = bulk_group(a, t, one, set, b, idx + i, j - i, errstr,
			                 errstr_size);
		free(set);
		if (err)
			goto done;
	}
	rc = 0;
done:
	free(idx);
	return rc;
}

/*
 * The merge key of an event: its table and key values, in a buffer the
 * caller terms; NULL for events the merge must leave in place (truncates,
 * key changes).
 */
static bool
merge_key(xr_buf_t *key, const target_t *t, const fmap_t *fm,
          const xr_event_t *ev)
{
	const xr_eval_t *img = ev->op == XR_OP_DELETE ? ev->before : ev->after;
	int              c;

	if (ev->op == XR_OP_TRUNCATE || key_changed(ev, t, fm))
		return false;
	xr_buf_printf(key, "%p", (const void *)t);
	for (c = 0; c < t->ncols; c++) {
		const char *v;

		if (!t->cols[c].is_key || fm->field_of[c] < 0)
			continue;
		v = xr_event_text(ev, &img[fm->field_of[c]]);
		xr_buf_putc(key, '\x1f');
		xr_buf_puts(key, v ? v : "\x1e");
	}
	return true;
}

/*
 * Chooses the statements of one item that the merge kept: the upsert
 * (with the columns its image carries, or the merge filled in) or the
 * delete; for a key change, the delete of the old key and the upsert of
 * the new one.  When a key change left TOASTed values unchanged, the
 * upsert goes first and takes them from the old key's row, which the
 * delete then removes.  set and from_old have room for t's columns.
 */
static int
plan_item(xr_applier_t *a, target_t *t, batch_t *b, size_t i, bool *set,
          bool *from_old, char *errstr, size_t errstr_size)
{
	xr_event_t *ev = b->items[i].ev;
	plan_t     *pl = &b->plans[i];
	fmap_t     *m;
	stmt_t     *del = NULL, *up = NULL;
	bool        moved = false, keys_changed;
	int         c;

	memset(set, 0, (size_t)t->ncols * sizeof(bool));
	memset(from_old, 0, (size_t)t->ncols * sizeof(bool));
	if (ev->op == XR_OP_TRUNCATE) {
		pl->stmt[pl->nstmt++] = stmt_get(a, t, 't', set, NULL, errstr,
		                                 errstr_size);
		return pl->stmt[0] ? 0 : -1;
	}
	m = fmap_get(t, ev->schema);
	keys_changed = key_changed(ev, t, m);
	if (ev->op == XR_OP_DELETE || keys_changed) {
		for (c = 0; c < t->ncols; c++)
			set[c] = t->cols[c].is_key;
		if (!(del = stmt_get(a, t, is_vclock(t) ? 'x' : 'd', set, NULL,
		                     errstr, errstr_size)))
			return -1;
	}
	if (ev->op != XR_OP_DELETE) {
		for (c = 0; c < t->ncols; c++) {
			int  f = m->field_of[c];
			bool known = false;

			if (f >= 0 && ev->after[f].present)
				(void)xr_plan_after_text(ev, pl->merge, f, &known);
			set[c] = known;
			from_old[c] = keys_changed && f >= 0 && ev->after[f].present &&
			              !known;
			moved |= from_old[c];
		}
		if (!(up = stmt_get(a, t, is_vclock(t) ? 'v' : 'u', set, from_old,
		                    errstr, errstr_size)))
			return -1;
	}
	if (moved)
		pl->stmt[pl->nstmt++] = up;
	if (del)
		pl->stmt[pl->nstmt++] = del;
	if (up && !moved) {
		pl->first_result = pl->nstmt;
		pl->stmt[pl->nstmt++] = up;
	}
	return 0;
}

/*
 * Plans the batch before its transaction starts: loads the targets,
 * merges the writes of each key (plan.c), and prepares the statements of
 * the events the merge kept.
 */
static int
plan_batch(xr_applier_t *a, batch_t *b, char *errstr, size_t errstr_size)
{
	xr_plan_in_t *in = xr_calloc(b->n ? b->n : 1, sizeof(*in));
	xr_buf_t     *keys = xr_calloc(b->n ? b->n : 1, sizeof(*keys));
	bool         *set = NULL;
	size_t        i;
	int           rc = -1;

	for (i = 0; i < b->n; i++) {
		xr_event_t *ev = b->items[i].ev;
		target_t   *t = target_get(a, ev->nspname, ev->relname);

		xr_buf_init(&keys[i]);
		b->items[i].conflict = XR_CONFLICT_NONE;
		b->items[i].resolution = XR_RES_APPLIED;
		b->items[i].reason[0] = '\0';
		if (!t || (!t->cols && target_load(a, t, errstr, errstr_size)))
			goto out;
		in[i].ev = ev;
		in[i].vclock = is_vclock(t);
		if (ev->op != XR_OP_TRUNCATE &&
		    merge_key(&keys[i], t, fmap_get(t, ev->schema), ev))
			in[i].key = keys[i].data;
	}
	b->in_order = xr_plan_merge(in, b->n, b->merge) == XR_PLAN_IN_ORDER;
	for (i = 0; i < b->n; i++) {
		target_t *t = target_get(a, b->items[i].ev->nspname,
		                         b->items[i].ev->relname);

		b->plans[i].merge = &b->merge[i];
		if (b->merge[i].superseded)
			continue;
		set = xr_reallocarray(set, (size_t)t->ncols * 2 + 1, sizeof(bool));
		if (plan_item(a, t, b, i, set, set + t->ncols, errstr, errstr_size))
			goto out;
	}
	rc = 0;
out:
	for (i = 0; i < b->n; i++)
		xr_buf_term(&keys[i]);
	free(keys);
	free(in);
	free(set);
	return rc;
}

/*
 * After a failure inside pipeline mode: reads to a sync point and leaves
 * the mode; when that cannot be done, drops the connection (its
 * transaction dies with it), so that nothing is left half-way.
 */
static void
pipeline_abort(xr_applier_t *a)
{
	if (PQpipelineStatus(a->conn) == PQ_PIPELINE_OFF)
		return;
	if (PQpipelineSync(a->conn))
		drain_to_sync(a);
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

/*
 * Orders by position in the source region's stream (commit LSN, then the
 * change's LSN), then by place in the batch: the order the source made the
 * writes in, whatever partitions they came through.
 */
static int
cmp_position(const void *x, const void *y, void *arg)
{
	const xr_apply_item_t *items = arg;
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	const xr_event_t *a = items[i].ev, *b = items[j].ev;

	if (a->commit_lsn != b->commit_lsn)
		return a->commit_lsn < b->commit_lsn ? -1 : 1;
	if (a->lsn != b->lsn)
		return a->lsn < b->lsn ? -1 : 1;
	return i < j ? -1 : (i > j);
}

/* Sends the row statements of items order[start, end) into the pipeline. */
static int
send_chunk(xr_applier_t *a, batch_t *b, size_t start, size_t end,
           char *errstr, size_t errstr_size)
{
	size_t p;

	for (p = start; p < end; p++) {
		size_t      i = b->order[p];
		xr_event_t *ev = b->items[i].ev;
		target_t   *t = target_get(a, ev->nspname, ev->relname);
		fmap_t     *m = ev->op == XR_OP_TRUNCATE ? NULL
		                                         : fmap_get(t, ev->schema);
		const char *vals[6 + 1600];
		const char *allow = xr_plan_complete(ev, b->plans[i].merge) ? "t"
		                                                            : "f";
		char        tsbuf[32], pos[2][24];
		int         k;

		snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ev->commit_ts);
		snprintf(pos[0], sizeof(pos[0]), "%" PRId64, (int64_t)ev->commit_lsn);
		snprintf(pos[1], sizeof(pos[1]), "%" PRId64, (int64_t)ev->lsn);
		for (k = 0; k < b->plans[i].nstmt; k++) {
			const stmt_t *s = b->plans[i].stmt[k];
			char          hlc[32];

			if (s->sig[0] == 't') {
				vals[0] = tsbuf;
				vals[1] = ev->region;
				vals[2] = pos[0];
				vals[3] = pos[1];
			} else if (s->sig[0] == 'v' || s->sig[0] == 'x') {
				const char *vv = vc_params(s, ev, hlc, sizeof(hlc));

				params_of(s, ev, m, b->plans[i].merge, hlc, pos, allow, vv,
				          vals);
			} else {
				params_of(s, ev, m, b->plans[i].merge, tsbuf, pos, allow,
				          NULL, vals);
			}
			if (send_stmt(a, s, vals, errstr, errstr_size))
				return -1;
		}
	}
	return 0;
}

/*
 * Sends the row statements of the items the set-based phase left, in
 * batch order, a chunk at a time, and keeps their results in b->res.
 */
static int
run_pipeline(xr_applier_t *a, batch_t *b, char *errstr, size_t errstr_size)
{
	size_t start, p, i;

	for (i = 0; i < b->n; i++)
		b->order[i] = i;
	qsort_r(b->order, b->n, sizeof(size_t), cmp_position, b->items);
	if (!PQenterPipelineMode(a->conn)) {
		copy_err(a->conn, "pipeline mode", errstr, errstr_size);
		return -1;
	}
	for (start = 0; start < b->n; start += PIPELINE_CHUNK) {
		size_t    end = start + PIPELINE_CHUNK < b->n ? start + PIPELINE_CHUNK
		                                              : b->n;
		PGresult *sync;

		if (send_chunk(a, b, start, end, errstr, errstr_size))
			goto fail;
		if (!PQpipelineSync(a->conn)) {
			copy_err(a->conn, "pipeline sync", errstr, errstr_size);
			goto fail;
		}
		for (p = start; p < end; p++) {
			const xr_apply_item_t *it = &b->items[b->order[p]];
			int k;

			i = b->order[p];
			for (k = 0; k < b->plans[i].nstmt; k++) {
				char ctx_err[1024];

				if ((b->res[i * 2 + (size_t)k] = read_result(a, errstr,
				                                             errstr_size)))
					continue;
				snprintf(ctx_err, sizeof(ctx_err),
				         "%s (table %s.%s, %s at %s [%d] offset %" PRId64 ")",
				         errstr, it->ev->nspname, it->ev->relname,
				         xr_op_names[it->ev->op], it->topic,
				         (int)it->partition, it->offset);
				snprintf(errstr, errstr_size, "%s", ctx_err);
				drain_to_sync(a);
				goto fail;
			}
		}
		sync = PQgetResult(a->conn);
		if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC) {
			snprintf(errstr, errstr_size, "pipeline: expected a sync point");
			PQclear(sync);
			goto fail;
		}
		PQclear(sync);
	}
	if (!PQexitPipelineMode(a->conn)) {
		copy_err(a->conn, "leaving pipeline mode", errstr, errstr_size);
		goto fail;
	}
	return 0;
fail:
	pipeline_abort(a);
	return -1;
}

/*
 * Whether item i is a key change whose old key's row was here (its delete
 * found it), so that its new key being missing is no conflict.
 */
static bool
moved_row(const batch_t *b, size_t i)
{
	const plan_t *pl = &b->plans[i];
	int           k;

	if (pl->nstmt != 2 || b->items[i].ev->op != XR_OP_UPDATE)
		return false;
	for (k = 0; k < 2; k++) {
		char op = pl->stmt[k]->sig[0];
		PGresult *r = b->res[i * 2 + (size_t)k];

		if ((op == 'd' || op == 'x') && r && PQntuples(r) == 1)
			return atoi(PQgetvalue(r, 0, 1)) > 0;
	}
	return false;
}

/* Counts an outcome in the batch's stats. */
static void
count_outcome(batch_t *b, const xr_apply_item_t *it)
{
	if (it->resolution == XR_RES_DEAD_LETTER)
		b->stats.dead_lettered++;
	else if (it->resolution == XR_RES_APPLIED)
		b->stats.applied++;
	else
		b->stats.skipped++;
	if (it->conflict != XR_CONFLICT_NONE)
		b->stats.conflicts[it->conflict][it->resolution]++;
}

/*
 * Sets each item's outcome from its decisive result and logs conflicts.
 * Returns the number of dead letters, or -1 with errstr.
 */
static int
settle(xr_applier_t *a, batch_t *b, char *errstr, size_t errstr_size)
{
	size_t i;
	int    ndl = 0;

	for (i = 0; i < b->n; i++) {
		xr_apply_item_t *it = &b->items[i];
		plan_t          *pl = &b->plans[i];
		PGresult        *r = pl->bulk ? pl->bulk
		                              : b->res[i * 2 + (size_t)pl->first_result];
		int              row = pl->bulk ? pl->bulk_row : 0;
		target_t        *t = target_get(a, it->ev->nspname, it->ev->relname);
		bool             may_insert = xr_plan_complete(it->ev, pl->merge);

		it->conflict = XR_CONFLICT_NONE;
		if (pl->merge->superseded) {
			/* A later write of the key in this batch decides. */
			it->resolution = XR_RES_SKIPPED;
		} else if (pl->fast || it->ev->op == XR_OP_TRUNCATE) {
			it->resolution = XR_RES_APPLIED;
		} else {
			if (is_vclock(t))
				classify_vc(it, r, row, may_insert);
			else
				classify(it, r, row, may_insert);
			/*
			 * Not missing: the row the batch's own superseded insert
			 * made, or the old key's row a key change moved.
			 */
			if ((it->conflict == XR_CONFLICT_UPDATE_MISSING ||
			     it->conflict == XR_CONFLICT_DELETE_MISSING) &&
			    it->resolution == XR_RES_APPLIED &&
			    (pl->merge->follows_insert || moved_row(b, i)))
				it->conflict = XR_CONFLICT_NONE;
		}
		count_outcome(b, it);
		if (it->resolution == XR_RES_DEAD_LETTER)
			ndl++;
		if (it->conflict != XR_CONFLICT_NONE &&
		    log_conflict(a, it, t, fmap_get(t, it->ev->schema), r, row, errstr,
		                 errstr_size))
			return -1;
	}
	return ndl;
}

/* Adds a committed batch's counts to the applier's. */
static void
stats_add(xr_apply_stats_t *to, const xr_apply_stats_t *from)
{
	int k, r;

	to->applied += from->applied;
	to->skipped += from->skipped;
	to->dead_lettered += from->dead_lettered;
	for (k = 0; k < XR_CONFLICT_NKINDS; k++)
		for (r = 0; r < XR_RES_N; r++)
			to->conflicts[k][r] += from->conflicts[k][r];
	to->batches++;
}

static void
batch_term(batch_t *b)
{
	size_t i;

	for (i = 0; i < b->n * 2; i++)
		PQclear(b->res[i]);
	for (i = 0; i < b->nbulk; i++)
		PQclear(b->bulk_res[i]);
	free(b->bulk_res);
	xr_plan_out_term(b->merge, b->n);
	free(b->merge);
	free(b->res);
	free(b->order);
	free(b->plans);
}

int
xr_applier_apply(xr_applier_t *a, const char *src, xr_apply_item_t *items,
                 size_t n, const xr_offset_t *offsets, size_t noffsets,
                 xr_dead_letter_cb_t *dead_letter, void *ctx, char *errstr,
                 size_t errstr_size)
{
	batch_t b = { .items = items, .n = n };
	int     rc = -1, ndl;
	bool    in_txn = false;
	size_t  i;

	b.plans = xr_calloc(n ? n : 1, sizeof(*b.plans));
	b.merge = xr_calloc(n ? n : 1, sizeof(*b.merge));
	b.res = xr_calloc(n ? n * 2 : 1, sizeof(*b.res));
	b.order = xr_calloc(n ? n : 1, sizeof(*b.order));
	a->sqlstate[0] = '\0';
	if (!a->conn && xr_applier_connect(a, errstr, errstr_size))
		goto out;
	if (set_origin(a, src, errstr, errstr_size) ||
	    plan_batch(a, &b, errstr, errstr_size))
		goto out;
	if (exec_ok(a, "BEGIN", errstr, errstr_size))
		goto out;
	in_txn = true;
	/* Set-based statements need one write per key: a merged batch. */
	if ((n >= BULK_MIN && !b.in_order &&
	     bulk_phase(a, &b, errstr, errstr_size)) ||
	    run_pipeline(a, &b, errstr, errstr_size))
		goto out;
	/* Outcomes, conflict log, dead letters, offsets: then COMMIT. */
	if ((ndl = settle(a, &b, errstr, errstr_size)) < 0 ||
	    store_offsets(a, offsets, noffsets, errstr, errstr_size))
		goto out;
	if (ndl > 0 && (!dead_letter || dead_letter(ctx, items, n))) {
		snprintf(errstr, errstr_size, "dead-lettering failed");
		goto out;
	}
	if (exec_ok(a, "COMMIT", errstr, errstr_size))
		goto out;
	in_txn = false;
	stats_add(&a->stats, &b.stats);
	rc = 0;
out:
	if (in_txn && a->conn && PQstatus(a->conn) == CONNECTION_OK)
		PQclear(PQexec(a->conn, "ROLLBACK"));
	if (rc && a->conn && PQstatus(a->conn) != CONNECTION_OK) {
		PQfinish(a->conn);
		a->conn = NULL;
	}
	if (!a->conn) {
		a->origin[0] = '\0';
		for (i = 0; i < a->ntargets; i++)
			target_reset(a->targets[i]);
	}
	batch_term(&b);
	return rc;
}
