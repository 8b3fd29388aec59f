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

/* Statements per pipeline sync: keeps both sides' buffers from filling. */
#define PIPELINE_CHUNK 256

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
	char *sig;       /* op + which columns are set */
	char  name[32];
	int   ncols;     /* value parameters after the fixed ones */
	int  *cols;      /* target column of each value parameter */
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
	const char *keys[] = { "dbname", "application_name", "options", NULL };
	char        app[64];
	const char *vals[] = {
		a->conf->pg_dsn, app,
		/* The text forms pgtype.c writes; applies skip ordinary triggers. */
		"-c session_replication_role=replica -c timezone=UTC "
		"-c datestyle=ISO,YMD -c intervalstyle=postgres "
		"-c bytea_output=hex -c extra_float_digits=3",
		NULL
	};
	size_t i;

	snprintf(app, sizeof(app), "xregion-consumer-%s", a->conf->region);
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
	snprintf(vtname, sizeof(vtname), "%s.%s", nsp, rel);
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
	xr_buf_printf(b, "xregion.version_of(t.xmin, (SELECT v.ts FROM %s v WHERE ",
	              t->vt);
	key_join(b, t, "v", "t");
	xr_buf_printf(b, "), (SELECT v.region FROM %s v WHERE ", t->vt);
	key_join(b, t, "v", "t");
	xr_buf_puts(b, "))");
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
	               "v.ts, v.region) AS ver) x");
	xr_buf_puts(b, "\n  WHERE ");
	key_match(b, t, "t", pnum);
	xr_buf_printf(b,
	              "\n  FOR UPDATE OF t\n"
	              "), trunc AS MATERIALIZED (\n"
	              "  SELECT xregion.tomb_version(x.ts, x.region, x.xid) AS ver "
	              "FROM xregion.truncations x WHERE x.table_schema = %s "
	              "AND x.table_name = %s\n"
	              "), tomb AS MATERIALIZED (\n"
	              "  SELECT GREATEST(\n"
	              "    (SELECT xregion.tomb_version(v.ts, v.region, v.xid) "
	              "FROM %s v WHERE ", t->lit_nsp, t->lit_rel, t->vt);
	key_match(b, t, "v", pnum);
	xr_buf_puts(b, " AND v.deleted), (SELECT ver FROM trunc)) AS ver\n)");
}

static const char result_cols[] =
	"  (SELECT count(*) FROM prior)::int,\n"
	"  (SELECT (ver).ts FROM prior), (SELECT (ver).region FROM prior),\n"
	"  (SELECT (ver).ts FROM tomb), (SELECT (ver).region FROM tomb),\n"
	"  (SELECT img FROM prior)";

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
	xr_buf_puts(b, ", ts, region, xid, deleted)\n  SELECT ");
	for (c = 0, n = 0; c < t->ncols; c++)
		if (t->cols[c].is_key)
			xr_buf_printf(b, "%s$%d::%s", n++ ? ", " : "", pnum[c],
			              t->cols[c].type);
	xr_buf_printf(b,
	              ", $1, $2, NULL, %s\n"
	              "  WHERE CASE WHEN EXISTS (SELECT 1 FROM prior)\n"
	              "    THEN ROW($1, $2)::xregion.version > (SELECT ver FROM prior)\n"
	              "    ELSE %s END\n"
	              "  ON CONFLICT (", deleted ? "true" : "false", where_new);
	key_list(b, t);
	xr_buf_printf(b,
	              ") DO UPDATE SET ts = EXCLUDED.ts, region = EXCLUDED.region, "
	              "xid = NULL, deleted = %s\n"
	              "  WHERE EXISTS (SELECT 1 FROM prior) OR ROW($1, $2)::"
	              "xregion.version > xregion.tomb_version(v.ts, v.region, v.xid)\n"
	              "  RETURNING 1\n", deleted ? "true" : "false");
}

/*
 * The CTE w: inserts or updates the row with the set columns when the CTE
 * gate returned a row (the event won its versions entry).
 */
static void
write_row(xr_buf_t *b, const target_t *t, const bool *set, const int *pnum,
          const char *gate)
{
	int c, n;

	xr_buf_printf(b, ", w AS (\n  INSERT INTO %s AS t (", t->qual);
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, "%s%s", n++ ? ", " : "", t->cols[c].qname);
	xr_buf_puts(b, ")\n  SELECT ");
	for (c = 0, n = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, "%s$%d::%s", n++ ? ", " : "", pnum[c],
			              t->cols[c].type);
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
 * An upsert: $1 ts, $2 region, $3 whether a missing row may be inserted
 * (not when unchanged TOASTed values were left out), then the set columns.
 */
static void
sql_upsert(xr_buf_t *b, const target_t *t, const bool *set, const int *pnum)
{
	prior_ctes(b, t, pnum);
	versions_gate(b, t, pnum, false,
	              "$3 AND ((SELECT ver FROM trunc) IS NULL OR "
	              "ROW($1, $2)::xregion.version > (SELECT ver FROM trunc))");
	xr_buf_putc(b, ')');
	write_row(b, t, set, pnum, "vs");
	/* Checked again on the row as it is now (a local insert may race). */
	xr_buf_puts(b, "\n  WHERE ROW($1, $2)::xregion.version > ");
	row_version(b, t);
	xr_buf_printf(b, "\n  RETURNING 1\n)\nSELECT (SELECT count(*) FROM w)::int,"
	              "\n%s", result_cols);
}

/* A delete: $1 ts, $2 region, then the key columns. */
static void
sql_delete(xr_buf_t *b, const target_t *t, const int *pnum)
{
	prior_ctes(b, t, pnum);
	versions_gate(b, t, pnum, true, "true");
	xr_buf_printf(b, "), d AS (\n  DELETE FROM %s t WHERE ", t->qual);
	key_match(b, t, "t", pnum);
	xr_buf_puts(b, " AND EXISTS (SELECT 1 FROM vs) AND ROW($1, $2)::"
	               "xregion.version > ");
	row_version(b, t);
	xr_buf_printf(b, "\n  RETURNING 1\n)\nSELECT (SELECT count(*) FROM d)::int,"
	              "\n%s", result_cols);
}

/*
 * A truncate: $1 ts, $2 region.  Deletes the rows older than the truncate,
 * and records it, so that older changes arriving later stay out.
 */
static void
sql_truncate(xr_buf_t *b, const target_t *t)
{
	xr_buf_printf(b,
	              "WITH d AS (\n  DELETE FROM %s t WHERE "
	              "ROW($1, $2)::xregion.version > ", t->qual);
	row_version(b, t);
	xr_buf_printf(b,
	              "\n  RETURNING 1\n), tr AS (\n"
	              "  INSERT INTO xregion.truncations AS x VALUES (%s, %s, $1, $2, "
	              "NULL)\n  ON CONFLICT (table_schema, table_name) DO UPDATE SET "
	              "ts = EXCLUDED.ts, region = EXCLUDED.region, xid = NULL\n"
	              "  WHERE ROW(EXCLUDED.ts, EXCLUDED.region)::xregion.version > "
	              "xregion.tomb_version(x.ts, x.region, x.xid)\n  RETURNING 1\n)\n"
	              "SELECT (SELECT count(*) FROM d)::int, 0, NULL::bigint, "
	              "NULL::text, NULL::bigint, NULL::text, NULL::jsonb",
	              t->lit_nsp, t->lit_rel);
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

/* Number of fixed parameters ahead of the column values, by op. */
static int
nfixed(char op)
{
	switch (op) {
	case 'u': return 3;   /* ts, region, may-insert */
	case 'v': return 4;   /* hlc, region, may-insert, vv */
	case 'x': return 3;   /* hlc, region, vv */
	default:  return 2;   /* 'd', 't': ts, region */
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
	              "  SELECT xregion.tomb_version(x.ts, x.region, x.xid) AS ver "
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
	              "ROW($1, $2)::xregion.version > (SELECT ver FROM trunc))%s\n"
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
 * A vclock upsert: $1 hlc, $2 region, $3 may-insert, $4 vector, then the
 * set columns.  Result: applied, had_row, the entry's ts and region,
 * deleted, won, the row's image, the entry's vector, and how the event's
 * vector compares with it (xregion.vv_cmp).
 */
static void
sql_vc_upsert(PGconn *conn, xr_buf_t *b, const target_t *t, const bool *set,
              const int *pnum)
{
	vc_ctes(b, t, pnum);
	vc_versions(conn, b, t, pnum, false, 4,
	            " AND (EXISTS (SELECT 1 FROM prior) OR $3)");
	write_row(b, t, set, pnum, "won");
	xr_buf_printf(b, "\n  RETURNING 1\n)\nSELECT (SELECT count(*) FROM w)::int,"
	              "\n%s  xregion.vv_cmp($4::jsonb, (SELECT vv FROM cur))",
	              vc_result_cols);
}

/* A vclock delete: $1 hlc, $2 region, $3 vector, then the key columns. */
static void
sql_vc_delete(PGconn *conn, xr_buf_t *b, const target_t *t, const int *pnum)
{
	vc_ctes(b, t, pnum);
	vc_versions(conn, b, t, pnum, true, 3, "");
	xr_buf_printf(b, ", d AS (\n  DELETE FROM %s t WHERE ", t->qual);
	key_match(b, t, "t", pnum);
	xr_buf_printf(b, " AND EXISTS (SELECT 1 FROM won)\n  RETURNING 1\n)\n"
	              "SELECT (SELECT count(*) FROM d)::int,\n%s"
	              "  xregion.vv_cmp($3::jsonb, (SELECT vv FROM cur))",
	              vc_result_cols);
}

/*
 * Set-based forms of the upsert and delete, for many events of one table
 * and one shape at once (keys distinct): the same decisions as the
 * statements above, row by row, in one statement.  Parameters are arrays:
 * $1 ts, $2 region, $3 may-insert, then one text[] per set column.  One
 * result row per event, in order: applied, had_row, the row's version, the
 * tombstone's, the row's image, and "race" (a missing row that a local
 * insert took first: the caller retries that one with the single-row
 * statement).
 */
static void
bulk_ev(xr_buf_t *b, const target_t *t, const bool *set)
{
	int c, p = 3;

	xr_buf_puts(b, "WITH ev AS MATERIALIZED (\n  SELECT * FROM unnest("
	               "$1::bigint[], $2::text[], $3::bool[]");
	for (c = 0; c < t->ncols; c++)
		if (set[c])
			xr_buf_printf(b, ", $%d::text[]", ++p);
	xr_buf_puts(b, ") WITH ORDINALITY AS e(ts, region, ins");
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
	              "v.region) AS ver) x\n  FOR UPDATE OF t\n"
	              "), trunc AS MATERIALIZED (\n"
	              "  SELECT xregion.tomb_version(x.ts, x.region, x.xid) AS ver "
	              "FROM xregion.truncations x WHERE x.table_schema = %s "
	              "AND x.table_name = %s\n"
	              "), tomb AS MATERIALIZED (\n"
	              "  SELECT e.n, GREATEST(xregion.tomb_version(v.ts, v.region, "
	              "v.xid), (SELECT ver FROM trunc)) AS ver\n"
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
	xr_buf_puts(b, ", ts, region, xid, deleted)\n  SELECT ");
	bulk_key_values(b, t);
	xr_buf_printf(b, ", e.ts, e.region, NULL, %s FROM ev e\n  WHERE %s\n"
	              "  ON CONFLICT (", deleted ? "true" : "false", cond);
	key_list(b, t);
	xr_buf_printf(b,
	              ") DO UPDATE SET ts = EXCLUDED.ts, region = EXCLUDED.region, "
	              "xid = NULL, deleted = %s\n"
	              "  WHERE ROW(EXCLUDED.ts, EXCLUDED.region)::xregion.version > "
	              "xregion.tomb_version(v.ts, v.region, v.xid)\n  RETURNING ",
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
	xr_buf_puts(b, " AND ROW(e.ts, e.region)::xregion.version > p.ver\n"
	               "  RETURNING e.n\n)");
	bulk_gate(b, t, false,
	          "NOT EXISTS (SELECT 1 FROM prior p WHERE p.n = e.n) AND e.ins "
	          "AND ((SELECT ver FROM trunc) IS NULL OR ROW(e.ts, e.region)::"
	          "xregion.version > (SELECT ver FROM trunc))");
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
	xr_buf_puts(b, ", ts, region, xid, deleted)\n  SELECT ");
	bulk_key_values(b, t);
	xr_buf_puts(b, ", e.ts, e.region, NULL, false FROM ev e JOIN up u ON "
	               "u.n = e.n\n  ON CONFLICT (");
	key_list(b, t);
	xr_buf_puts(b, ") DO UPDATE SET ts = EXCLUDED.ts, region = EXCLUDED.region, "
	               "xid = NULL, deleted = false\n)\n");
	/* Plain joins on the key (distinct in a group): hash joins, not loops. */
	for (c = 0; c < t->ncols && !t->cols[c].is_key; c++)
		;
	xr_buf_printf(b,
	              "SELECT (u.n IS NOT NULL OR i.%s IS NOT NULL)::int, "
	              "(p.n IS NOT NULL)::int, (p.ver).ts, (p.ver).region, "
	              "(tb.ver).ts, (tb.ver).region, p.img, "
	              "(g.%s IS NOT NULL AND i.%s IS NULL)::int\n"
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
	                      "OR ROW(e.ts, e.region)::xregion.version > "
	                      "(SELECT p.ver FROM prior p WHERE p.n = e.n)");
	xr_buf_printf(b, ", d AS (\n  DELETE FROM %s t USING prior p JOIN ev e ON "
	              "e.n = p.n\n  WHERE ", t->qual);
	bulk_key_match(b, t, "t");
	xr_buf_puts(b, " AND ROW(e.ts, e.region)::xregion.version > p.ver\n"
	               "  RETURNING e.n\n)\n"
	               "SELECT (d.n IS NOT NULL)::int, (p.n IS NOT NULL)::int, "
	               "(p.ver).ts, (p.ver).region, (tb.ver).ts, (tb.ver).region, "
	               "p.img, 0\n"
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
	              "  SELECT xregion.tomb_version(x.ts, x.region, x.xid) AS ver "
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
	               "ROW($1::bigint, $2::text)::xregion.version > "
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
         char *errstr, size_t errstr_size)
{
	stmt_t   *s;
	char     *sig = xr_calloc((size_t)t->ncols + 2, 1);
	int      *pnum = xr_calloc((size_t)t->ncols, sizeof(int));
	int       c, np = 3;
	size_t    i;
	PGresult *res;

	sig[0] = op;
	for (c = 0; c < t->ncols; c++)
		sig[c + 1] = set[c] ? '1' : '0';
	for (i = 0; i < t->nstmts; i++) {
		if (strcmp(t->stmts[i]->sig, sig) == 0) {
			free(sig);
			free(pnum);
			return t->stmts[i];
		}
	}
	t->stmts = xr_reallocarray(t->stmts, t->nstmts + 1, sizeof(*t->stmts));
	s = xr_calloc(1, sizeof(*s));
	s->sig = sig;
	snprintf(s->name, sizeof(s->name), "xr_apply_%u", ++a->stmt_seq);
	s->cols = xr_calloc((size_t)t->ncols, sizeof(int));
	if (op == 'd' || op == 'v' || op == 'x' || op == 'F' || op == 'G')
		np = op == 'F' || op == 'G' ? 2 : nfixed(op);
	if (op != 't') {   /* 'U' and 'D' (set-based) number like 'u' */
		for (c = 0; c < t->ncols; c++) {
			if (set[c]) {
				pnum[c] = ++np;
				s->cols[s->ncols++] = c;
			}
		}
	}
	xr_buf_reset(&a->sql);
	if (op == 'u')
		sql_upsert(&a->sql, t, set, pnum);
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
		sql_vc_upsert(a->conn, &a->sql, t, set, pnum);
	else if (op == 'x')
		sql_vc_delete(a->conn, &a->sql, t, pnum);
	else
		sql_truncate(&a->sql, t);
	free(pnum);
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
	stmt_t   *stmt[2];
	int       nstmt;
	int       first_result; /* index of the result that decides */
	bool      superseded;   /* a newer event of its key is in the batch */
	bool      follows_insert; /* a superseded insert of its key came first */
	bool      fast;         /* inserted by the fast insert path */
	PGresult *bulk;         /* decided by a set-based statement (borrowed) */
	int       bulk_row;
	char     *key;          /* table and key, for finding repeats */
} plan_t;

/* Groups smaller than this go row by row: not worth a statement of their own. */
#define BULK_MIN 8

/* Fills the parameters of statement s for item it (op 'u', 'd' or 't'). */
static void
params_of(const stmt_t *s, const xr_event_t *ev, const fmap_t *m,
          const xr_eval_t *img, const char *ts, const char *allow,
          const char *vv, const char **vals)
{
	int i, k = nfixed(s->sig[0]);

	vals[0] = ts;
	vals[1] = ev->region;
	if (s->sig[0] == 'u' || s->sig[0] == 'v')
		vals[2] = allow;
	if (s->sig[0] == 'v' || s->sig[0] == 'x')
		vals[k - 1] = vv;
	for (i = 0; i < s->ncols; i++) {
		int f = m->field_of[s->cols[i]];

		vals[k + i] = f >= 0 ? xr_event_text(ev, &img[f]) : NULL;
	}
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

/* Whether (ts, region) is newer than (ts2, region2); region by bytes. */
static bool
newer(int64_t ts, const char *region, int64_t ts2, const char *region2)
{
	if (ts != ts2)
		return ts > ts2;
	return strcmp(region, region2) > 0;
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
	bool        beats_tomb = !had_tomb ||
	                         newer(ev->commit_ts, ev->region,
	                               strtoll(PQgetvalue(r, row, 4), NULL, 10),
	                               PQgetvalue(r, row, 5));
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
			if (!may_insert) {
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
		                   "INSERT INTO xregion.offsets (topic, partition, "
		                   "next_offset) VALUES ($1, $2::int, $3::bigint) "
		                   "ON CONFLICT (topic, partition) DO UPDATE SET "
		                   "next_offset = EXCLUDED.next_offset, updated_at = now()",
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
		              "(xregion.tomb_version(v.ts, v.region, v.xid)).ts < "
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

typedef struct sort_ctx_s {
	const xr_apply_item_t *items;
	const plan_t          *plans;
} sort_ctx_t;

/* Orders by key, then by version (newest last). */
static int
cmp_key(const void *x, const void *y, void *arg)
{
	const sort_ctx_t *sc = arg;
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	int    c = strcmp(sc->plans[i].key, sc->plans[j].key);
	const xr_event_t *a = sc->items[i].ev, *b = sc->items[j].ev;

	if (c)
		return c;
	if (a->commit_ts != b->commit_ts)
		return a->commit_ts < b->commit_ts ? -1 : 1;
	c = strcmp(a->region, b->region);
	if (c)
		return c;
	return i < j ? -1 : (i > j);
}

/* Orders by statement, then by position in the batch. */
static int
cmp_stmt(const void *x, const void *y, void *arg)
{
	const sort_ctx_t *sc = arg;
	size_t      i = *(const size_t *)x, j = *(const size_t *)y;
	const char *a = sc->plans[i].stmt[sc->plans[i].first_result]->name;
	const char *b = sc->plans[j].stmt[sc->plans[j].first_result]->name;
	int         c = strcmp(a, b);

	return c ? c : (i < j ? -1 : (i > j));
}

/* Whether ev has every column (no unchanged TOASTed value left out). */
static bool
may_insert_of(const xr_event_t *ev)
{
	int f;

	for (f = 0; f < ev->nfields && ev->has_after; f++)
		if (ev->after[f].unchanged)
			return false;
	return true;
}

/*
 * Whether item i may take the fast path op ('F': insert, 'G': update) at
 * commit time ts.
 */
static bool
fast_candidate(const xr_apply_item_t *it, const plan_t *pl, int64_t ts,
               char op)
{
	bool ins = it->ev->op == XR_OP_INSERT || it->ev->op == XR_OP_SNAPSHOT_READ;

	if (pl->nstmt != 1 || pl->stmt[0]->sig[0] != 'u' || it->ev->commit_ts != ts)
		return false;
	return op == 'F' ? ins && may_insert_of(it->ev)
	                 : it->ev->op == XR_OP_UPDATE;
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
fast_commit_ts(const xr_apply_item_t *items, const plan_t *plans,
               const size_t *idx, size_t m, xr_lsn_t *lsn)
{
	int64_t *ts = xr_calloc(m ? m : 1, sizeof(int64_t));
	int64_t  best = INT64_MIN;
	size_t   i, j, n = 0, best_n = 0;

	for (i = 0; i < m; i++) {
		const xr_event_t *ev = items[idx[i]].ev;

		if ((ev->op == XR_OP_INSERT || ev->op == XR_OP_SNAPSHOT_READ ||
		     ev->op == XR_OP_UPDATE) && plans[idx[i]].nstmt == 1)
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
		if (items[idx[i]].ev->commit_ts == best)
			*lsn = items[idx[i]].ev->commit_lsn;
	return best;
}

/*
 * Tries fast path op (sql_fast_insert 'F', sql_fast_update 'G') for the
 * candidates among the group's members: all of them or none (a savepoint
 * undoes a partial one).  The first use makes the transaction carry ts as
 * its origin timestamp.  Marks the members it applied.  Returns 0, or -1
 * with errstr when the database failed.
 */
static int
fast_apply(xr_applier_t *a, target_t *t, const bool *set, char op,
           xr_apply_item_t *items, plan_t *plans, const size_t *mem,
           size_t nmem, int64_t ts, xr_lsn_t lsn, bool *setup, char *errstr,
           size_t errstr_size)
{
	size_t      *cand = xr_calloc(nmem, sizeof(size_t));
	size_t       k, nc = 0;
	stmt_t      *st;
	xr_buf_t    *arr = NULL;
	const char **vals = NULL;
	char         tsbuf[32], lsnbuf[XR_LSN_STRLEN];
	PGresult    *res = NULL;
	int          p, rc = -1, inserted;

	for (k = 0; k < nmem; k++)
		if (fast_candidate(&items[mem[k]], &plans[mem[k]], ts, op))
			cand[nc++] = mem[k];
	if (nc < BULK_MIN) {
		rc = 0;
		goto out;
	}
	if (!(st = stmt_get(a, t, op, set, errstr, errstr_size)))
		goto out;
	snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ts);
	if (!*setup) {
		const char *v[2] = { xr_lsn_format(lsn, lsnbuf), tsbuf };

		res = PQexecParams(a->conn,
		                   "SELECT pg_catalog.pg_replication_origin_xact_setup("
		                   "$1::pg_lsn, 'epoch'::timestamptz + $2::bigint * "
		                   "interval '1 microsecond')", 2, NULL, v, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			copy_err(a->conn, "setting the origin timestamp", errstr,
			         errstr_size);
			goto out;
		}
		PQclear(res);
		res = NULL;
		*setup = true;
	}
	arr = xr_calloc((size_t)st->ncols, sizeof(xr_buf_t));
	vals = xr_calloc((size_t)st->ncols + 2, sizeof(char *));
	vals[0] = tsbuf;
	vals[1] = op == 'F' ? items[cand[0]].ev->region : a->origin_id;
	for (p = 0; p < st->ncols; p++) {
		xr_buf_init(&arr[p]);
		xr_buf_putc(&arr[p], '{');
	}
	for (k = 0; k < nc; k++) {
		xr_event_t *ev = items[cand[k]].ev;
		fmap_t     *fm = fmap_get(t, ev->schema);

		for (p = 0; p < st->ncols; p++) {
			int fi = fm->field_of[st->cols[p]];

			array_elem(&arr[p], fi >= 0 ? xr_event_text(ev, &ev->after[fi])
			                            : NULL, k == 0);
		}
	}
	for (p = 0; p < st->ncols; p++) {
		xr_buf_putc(&arr[p], '}');
		vals[2 + p] = arr[p].data;
	}
	if (exec_ok(a, "SAVEPOINT xr_fast", errstr, errstr_size))
		goto out;
	res = PQexecPrepared(a->conn, st->name, st->ncols + 2, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		snprintf(a->sqlstate, sizeof(a->sqlstate), "%s", state ? state : "");
		snprintf(errstr, errstr_size, "%s %zu rows of %s.%s: %s",
		         op == 'F' ? "inserting" : "updating", nc, t->nspname,
		         t->relname, PQresultErrorMessage(res));
		goto out;
	}
	inserted = atoi(PQgetvalue(res, 0, 0));
	if ((size_t)inserted != nc) {
		/* Some were there: the regular statements decide them all. */
		if (exec_ok(a, "ROLLBACK TO SAVEPOINT xr_fast", errstr, errstr_size))
			goto out;
	} else {
		for (k = 0; k < nc; k++) {
			plans[cand[k]].fast = true;
			plans[cand[k]].nstmt = 0;
		}
	}
	if (exec_ok(a, "RELEASE SAVEPOINT xr_fast", errstr, errstr_size))
		goto out;
	rc = 0;
out:
	PQclear(res);
	if (arr)
		for (p = 0; p < st->ncols; p++)
			xr_buf_term(&arr[p]);
	free(arr);
	free(vals);
	free(cand);
	return rc;
}

/*
 * Applies what it can of the batch with set-based statements, inside the
 * open transaction: first drops the events a newer event of the same key in
 * the batch overrides (last write wins: the outcome is the same), then
 * runs one statement per table and shape for groups of BULK_MIN or more.
 * The rest, and rows a local insert raced for, stay for the row-by-row
 * pipeline.  Results are kept in *bulk_res (the caller clears them).
 */
static int
bulk_phase(xr_applier_t *a, xr_apply_item_t *items, plan_t *plans, size_t n,
           PGresult ***bulk_res, size_t *nbulk, char *errstr,
           size_t errstr_size)
{
	size_t    *idx = xr_calloc(n, sizeof(size_t)), *grp = NULL;
	size_t     i, j, k, m = 0;
	sort_ctx_t sc = { items, plans };
	int64_t    fast_ts;
	xr_lsn_t   fast_lsn = 0;
	bool       fast_setup = false;
	int        rc = -1;

	for (i = 0; i < n; i++) {
		xr_event_t      *ev = items[i].ev;
		target_t        *t = target_get(a, ev->nspname, ev->relname);
		fmap_t          *fm = fmap_get(t, ev->schema);
		const xr_eval_t *img = ev->op == XR_OP_DELETE ? ev->before : ev->after;
		xr_buf_t         key;
		int              c;

		/* Truncates and key changes keep the batch in order: row by row. */
		if (ev->op == XR_OP_TRUNCATE || plans[i].nstmt != 1) {
			rc = 0;
			goto done;
		}
		xr_buf_init(&key);
		xr_buf_printf(&key, "%p", (void *)t);
		for (c = 0; c < t->ncols; c++) {
			const char *v;

			if (!t->cols[c].is_key)
				continue;
			v = xr_event_text(ev, &img[fm->field_of[c]]);
			xr_buf_putc(&key, '\x1f');
			xr_buf_puts(&key, v ? v : "\x1e");
		}
		plans[i].key = key.data;   /* handed over */
		idx[m++] = i;
	}
	qsort_r(idx, m, sizeof(size_t), cmp_key, &sc);
	for (i = 0; i + 1 < m; i++)
		if (strcmp(plans[idx[i]].key, plans[idx[i + 1]].key) == 0) {
			plans[idx[i]].superseded = true;
			plans[idx[i]].nstmt = 0;
			/* An update or delete after its row's insert is not "missing". */
			if (items[idx[i]].ev->op == XR_OP_INSERT ||
			    (plans[idx[i]].follows_insert &&
			     items[idx[i]].ev->op == XR_OP_UPDATE))
				plans[idx[i + 1]].follows_insert = true;
		}
	for (i = 0, k = 0; i < m; i++)
		if (!plans[idx[i]].superseded)
			idx[k++] = idx[i];
	m = k;
	qsort_r(idx, m, sizeof(size_t), cmp_stmt, &sc);
	fast_ts = fast_commit_ts(items, plans, idx, m, &fast_lsn);
	grp = xr_calloc(m ? m : 1, sizeof(size_t));
	for (i = 0; i < m; i = j) {
		stmt_t   *one = plans[idx[i]].stmt[0], *bulk;
		target_t *t;
		bool     *set;
		xr_buf_t *arr;
		const char **vals;
		int       c, ncol, p;
		size_t    g;
		PGresult *res;

		for (j = i + 1; j < m && plans[idx[j]].stmt[0] == one; j++)
			;
		if (j - i < BULK_MIN || (one->sig[0] != 'u' && one->sig[0] != 'd'))
			continue;
		t = target_get(a, items[idx[i]].ev->nspname, items[idx[i]].ev->relname);
		set = xr_calloc((size_t)t->ncols, sizeof(bool));
		for (c = 0; c < t->ncols; c++)
			set[c] = one->sig[c + 1] == '1';
		if (one->sig[0] == 'u' && fast_ts != INT64_MIN &&
		    (fast_apply(a, t, set, 'F', items, plans, idx + i, j - i, fast_ts,
		                fast_lsn, &fast_setup, errstr, errstr_size) ||
		     fast_apply(a, t, set, 'G', items, plans, idx + i, j - i, fast_ts,
		                fast_lsn, &fast_setup, errstr, errstr_size))) {
			free(set);
			goto done;
		}
		bulk = stmt_get(a, t, one->sig[0] == 'u' ? 'U' : 'D', set, errstr,
		                errstr_size);
		free(set);
		if (!bulk)
			goto done;
		/* What the fast path left. */
		for (k = i, g = 0; k < j; k++)
			if (!plans[idx[k]].fast)
				grp[g++] = idx[k];
		if (g < BULK_MIN)
			continue;
		ncol = bulk->ncols;
		arr = xr_calloc((size_t)ncol + 3, sizeof(xr_buf_t));
		vals = xr_calloc((size_t)ncol + 3, sizeof(char *));
		for (p = 0; p < ncol + 3; p++) {
			xr_buf_init(&arr[p]);
			xr_buf_putc(&arr[p], '{');
		}
		for (k = 0; k < g; k++) {
			xr_event_t      *ev = items[grp[k]].ev;
			fmap_t          *fm = fmap_get(t, ev->schema);
			const xr_eval_t *img = ev->op == XR_OP_DELETE ? ev->before
			                                              : ev->after;
			int              fi;

			xr_buf_printf(&arr[0], "%s%" PRId64, k > 0 ? "," : "",
			              ev->commit_ts);
			array_elem(&arr[1], ev->region, k == 0);
			xr_buf_printf(&arr[2], "%s%s", k > 0 ? "," : "",
			              may_insert_of(ev) ? "t" : "f");
			for (p = 0; p < ncol; p++) {
				fi = fm->field_of[bulk->cols[p]];
				array_elem(&arr[3 + p], fi >= 0 ? xr_event_text(ev, &img[fi])
				                                : NULL, k == 0);
			}
		}
		for (p = 0; p < ncol + 3; p++) {
			xr_buf_putc(&arr[p], '}');
			vals[p] = arr[p].data;
		}
		res = PQexecPrepared(a->conn, bulk->name, ncol + 3, vals, NULL, NULL,
		                     0);
		for (p = 0; p < ncol + 3; p++)
			xr_buf_term(&arr[p]);
		free(arr);
		free(vals);
		if (PQresultStatus(res) != PGRES_TUPLES_OK ||
		    (size_t)PQntuples(res) != g) {
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

			snprintf(a->sqlstate, sizeof(a->sqlstate), "%s",
			         state ? state : "");
			snprintf(errstr, errstr_size, "applying %zu changes to %s.%s: %s",
			         g, t->nspname, t->relname, PQresultErrorMessage(res));
			PQclear(res);
			goto done;
		}
		*bulk_res = xr_reallocarray(*bulk_res, *nbulk + 1, sizeof(PGresult *));
		(*bulk_res)[(*nbulk)++] = res;
		for (k = 0; k < g; k++) {
			plan_t *pl = &plans[grp[k]];

			/* A local insert took the missing row first: row by row. */
			if (atoi(PQgetvalue(res, (int)k, 7)) > 0)
				continue;
			pl->bulk = res;
			pl->bulk_row = (int)k;
			pl->nstmt = 0;
		}
	}
	rc = 0;
done:
	free(idx);
	free(grp);
	return rc;
}

int
xr_applier_apply(xr_applier_t *a, const char *src, xr_apply_item_t *items,
                 size_t n, const xr_offset_t *offsets, size_t noffsets,
                 xr_dead_letter_cb_t *dead_letter, void *ctx, char *errstr,
                 size_t errstr_size)
{
	plan_t    *plans = xr_calloc(n, sizeof(*plans));
	PGresult **res = xr_calloc(n * 2, sizeof(*res));
	PGresult **bulk_res = NULL;
	size_t     nbulk = 0;
	bool      *set = NULL;
	size_t     i, start;
	int        rc = -1, ndl = 0;
	bool       in_pipeline = false, in_txn = false;
	char       tsbuf[32];

	a->sqlstate[0] = '\0';
	if (!a->conn && xr_applier_connect(a, errstr, errstr_size))
		goto out;
	if (set_origin(a, src, errstr, errstr_size))
		goto out;

	/* Plan and prepare everything before the transaction starts. */
	for (i = 0; i < n; i++) {
		xr_event_t *ev = items[i].ev;
		target_t   *t = target_get(a, ev->nspname, ev->relname);
		fmap_t     *m;
		int         c;

		items[i].conflict = XR_CONFLICT_NONE;
		items[i].resolution = XR_RES_APPLIED;
		items[i].reason[0] = '\0';
		if (!t || (!t->cols && target_load(a, t, errstr, errstr_size)))
			goto out;
		free(set);
		set = xr_calloc((size_t)t->ncols, sizeof(bool));
		if (ev->op == XR_OP_TRUNCATE) {
			if (!(plans[i].stmt[0] = stmt_get(a, t, 't', set, errstr,
			                                  errstr_size)))
				goto out;
			plans[i].nstmt = 1;
			continue;
		}
		m = fmap_get(t, ev->schema);
		if (ev->op == XR_OP_DELETE || key_changed(ev, t, m)) {
			for (c = 0; c < t->ncols; c++)
				set[c] = t->cols[c].is_key;
			if (!(plans[i].stmt[plans[i].nstmt++] =
			          stmt_get(a, t, is_vclock(t) ? 'x' : 'd', set, errstr,
			                   errstr_size)))
				goto out;
		}
		if (ev->op != XR_OP_DELETE) {
			for (c = 0; c < t->ncols; c++) {
				int f = m->field_of[c];

				set[c] = f >= 0 && ev->after[f].present &&
				         !ev->after[f].unchanged;
			}
			plans[i].first_result = plans[i].nstmt;
			if (!(plans[i].stmt[plans[i].nstmt++] =
			          stmt_get(a, t, is_vclock(t) ? 'v' : 'u', set, errstr,
			                   errstr_size)))
				goto out;
		}
	}

	if (exec_ok(a, "BEGIN", errstr, errstr_size))
		goto out;
	in_txn = true;
	if (n >= BULK_MIN &&
	    bulk_phase(a, items, plans, n, &bulk_res, &nbulk, errstr, errstr_size))
		goto out;
	if (!PQenterPipelineMode(a->conn)) {
		copy_err(a->conn, "pipeline mode", errstr, errstr_size);
		goto out;
	}
	in_pipeline = true;
	for (start = 0; start < n; start += PIPELINE_CHUNK) {
		size_t end = start + PIPELINE_CHUNK < n ? start + PIPELINE_CHUNK : n;
		PGresult *sync;

		for (i = start; i < end; i++) {
			xr_event_t *ev = items[i].ev;
			target_t   *t = target_get(a, ev->nspname, ev->relname);
			fmap_t     *m = ev->op == XR_OP_TRUNCATE ? NULL
			                                         : fmap_get(t, ev->schema);
			const char *vals[4 + 1600];
			bool        may_insert = true;
			int         k, f;

			snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ev->commit_ts);
			for (f = 0; f < ev->nfields && ev->has_after; f++)
				if (ev->after[f].unchanged)
					may_insert = false;
			for (k = 0; k < plans[i].nstmt; k++) {
				const stmt_t    *s = plans[i].stmt[k];
				const xr_eval_t *img = s->sig[0] == 'd' || s->sig[0] == 'x'
				                       ? ev->before : ev->after;
				char             hlc[32];

				if (s->sig[0] == 't') {
					vals[0] = tsbuf;
					vals[1] = ev->region;
				} else if (s->sig[0] == 'v' || s->sig[0] == 'x') {
					const char *vv = vc_params(s, ev, hlc, sizeof(hlc));

					params_of(s, ev, m, img, hlc, may_insert ? "t" : "f", vv,
					          vals);
				} else {
					params_of(s, ev, m, img, tsbuf, may_insert ? "t" : "f",
					          NULL, vals);
				}
				if (send_stmt(a, s, vals, errstr, errstr_size))
					goto out;
			}
		}
		if (!PQpipelineSync(a->conn)) {
			copy_err(a->conn, "pipeline sync", errstr, errstr_size);
			goto out;
		}
		for (i = start; i < end; i++) {
			int k;

			for (k = 0; k < plans[i].nstmt; k++) {
				res[i * 2 + (size_t)k] = read_result(a, errstr, errstr_size);
				if (!res[i * 2 + (size_t)k]) {
					char ctx_err[1024];

					snprintf(ctx_err, sizeof(ctx_err),
					         "%s (table %s.%s, %s at %s [%d] offset %" PRId64 ")",
					         errstr, items[i].ev->nspname, items[i].ev->relname,
					         xr_op_names[items[i].ev->op], items[i].topic,
					         (int)items[i].partition, items[i].offset);
					snprintf(errstr, errstr_size, "%s", ctx_err);
					drain_to_sync(a);
					goto out;
				}
			}
		}
		sync = PQgetResult(a->conn);
		if (PQresultStatus(sync) != PGRES_PIPELINE_SYNC) {
			snprintf(errstr, errstr_size, "pipeline: expected a sync point");
			PQclear(sync);
			goto out;
		}
		PQclear(sync);
	}
	if (!PQexitPipelineMode(a->conn)) {
		copy_err(a->conn, "leaving pipeline mode", errstr, errstr_size);
		goto out;
	}
	in_pipeline = false;

	/* Outcomes, conflict log, dead letters, offsets: then COMMIT. */
	for (i = 0; i < n; i++) {
		xr_apply_item_t *it = &items[i];
		PGresult        *r = plans[i].bulk ? plans[i].bulk
		                                   : res[i * 2 +
		                                         (size_t)plans[i].first_result];
		int              row = plans[i].bulk ? plans[i].bulk_row : 0;
		target_t        *t = target_get(a, it->ev->nspname, it->ev->relname);
		fmap_t          *m;
		bool             may_insert = true;
		int              f;

		if (plans[i].fast) {
			it->resolution = XR_RES_APPLIED;
			a->stats.applied++;
			continue;
		}
		if (plans[i].superseded) {
			/* A newer write of the key in this batch decides. */
			it->resolution = XR_RES_SKIPPED;
			a->stats.skipped++;
			continue;
		}
		if (it->ev->op == XR_OP_TRUNCATE) {
			it->resolution = XR_RES_APPLIED;
			a->stats.applied++;
			continue;
		}
		m = fmap_get(t, it->ev->schema);
		for (f = 0; f < it->ev->nfields && it->ev->has_after; f++)
			if (it->ev->after[f].unchanged)
				may_insert = false;
		if (is_vclock(t))
			classify_vc(it, r, row, may_insert);
		else
			classify(it, r, row, may_insert);
		/* The row the batch's own superseded insert made was not missing. */
		if ((it->conflict == XR_CONFLICT_UPDATE_MISSING ||
		     it->conflict == XR_CONFLICT_DELETE_MISSING) &&
		    plans[i].follows_insert && it->resolution == XR_RES_APPLIED)
			it->conflict = XR_CONFLICT_NONE;
		if (it->resolution == XR_RES_DEAD_LETTER)
			ndl++;
		else if (it->resolution == XR_RES_APPLIED)
			a->stats.applied++;
		else
			a->stats.skipped++;
		if (it->conflict != XR_CONFLICT_NONE) {
			a->stats.conflicts[it->conflict][it->resolution]++;
			if (log_conflict(a, it, t, m, r, row, errstr, errstr_size))
				goto out;
		}
	}
	if (store_offsets(a, offsets, noffsets, errstr, errstr_size))
		goto out;
	if (ndl > 0) {
		if (!dead_letter || dead_letter(ctx, items, n)) {
			snprintf(errstr, errstr_size, "dead-lettering failed");
			goto out;
		}
		a->stats.dead_lettered += (uint64_t)ndl;
	}
	if (exec_ok(a, "COMMIT", errstr, errstr_size))
		goto out;
	in_txn = false;
	a->stats.batches++;
	rc = 0;
out:
	if (in_pipeline)
		(void)PQexitPipelineMode(a->conn);
	if (in_txn && a->conn) {
		if (PQstatus(a->conn) == CONNECTION_OK)
			PQclear(PQexec(a->conn, "ROLLBACK"));
	}
	if (rc && a->conn && PQstatus(a->conn) != CONNECTION_OK) {
		PQfinish(a->conn);
		a->conn = NULL;
		a->origin[0] = '\0';
		for (i = 0; i < a->ntargets; i++)
			target_reset(a->targets[i]);
	}
	for (i = 0; i < n * 2; i++)
		PQclear(res[i]);
	for (i = 0; i < nbulk; i++)
		PQclear(bulk_res[i]);
	free(bulk_res);
	for (i = 0; i < n; i++)
		free(plans[i].key);
	free(res);
	free(plans);
	free(set);
	return rc;
}
