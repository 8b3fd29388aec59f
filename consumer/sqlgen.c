/*
 * sqlgen.c: the SQL of the apply statements, built from a target
 * table's catalog: row statements (upsert, delete, truncate, their vclock
 * forms), set-based forms and the fast paths.  No I/O but quoting (see
 * apply_int.h and docs/consumer.md, "The statements").
 */
#include "consumer/apply_int.h"

#include <stdio.h>
#include <string.h>

#include "common/mem.h"

/*
 * The version of the event a row statement applies: $1 commit timestamp
 * (or hybrid clock), $2 region, $3 commit LSN, $4 change LSN (see meta.c).
 * In set-based statements, the same from the unnested arrays.
 */
#define EV_VERSION "ROW($1::bigint, $2::text, $3::bigint, $4::bigint)::xregion.version"
#define BULK_VERSION "ROW(e.ts, e.region, e.clsn, e.lsn)::xregion.version"

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
 * Number of fixed parameters ahead of the column values, by op: every row
 * statement starts with the version (ts or hlc, region, commit LSN, LSN).
 */
int
xr_sql_nfixed(char op)
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

/* The rank of the incoming write, from its vector ($vvp). */
void
xr_sql_vc_rank(PGconn *conn, xr_buf_t *b, const target_t *t, int vvp)
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
	xr_sql_vc_rank(conn, b, t, vvp);
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
	              w, xr_target_keep_local(t) ? "true" : "false",
	              w, xr_target_keep_local(t) ? "true" : "false",
	              w, xr_target_keep_local(t) ? "true" : "false",
	              w, xr_target_keep_local(t) ? "true" : "false",
	              deleted ? "true" : "false");
	/* Won: the entry names this write now, and did not before. */
	xr_buf_puts(b, ", won AS MATERIALIZED (\n  SELECT 1 FROM vs WHERE vs.ts = $1 "
	               "AND vs.region = $2 AND vs.rnk = ");
	xr_sql_vc_rank(conn, b, t, vvp);
	xr_buf_puts(b, "\n    AND NOT EXISTS (SELECT 1 FROM cur WHERE cur.ts = $1 "
	               "AND cur.region = $2 AND cur.rnk IS NOT DISTINCT FROM ");
	xr_sql_vc_rank(conn, b, t, vvp);
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
	int c, p = xr_sql_nfixed('U');

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
	/*
	 * No row in this statement's snapshot either: a row a local delete is
	 * removing is still seen here, so the insert does not wait for that
	 * delete and then slip in under its tombstone, which the snapshot
	 * cannot see.  Such keys take the general path.
	 */
	xr_buf_printf(b, "\n  WHERE NOT EXISTS (SELECT 1 FROM %s v WHERE ", t->vt);
	bulk_key_match(b, t, "v");
	xr_buf_printf(b, ")\n    AND NOT EXISTS (SELECT 1 FROM %s r WHERE ", t->qual);
	bulk_key_match(b, t, "r");
	/*
	 * No ON CONFLICT: a key inserted here meanwhile (or twice in the
	 * batch) fails the statement with unique_violation, and the caller
	 * hands all its rows to the general path, as for a row the snapshot
	 * saw.  A speculative insertion would cost every row a second WAL
	 * record (the confirmation) and a second index probe: the statement
	 * took about 30% longer with it.
	 */
	xr_buf_puts(b, ")\n    AND ((SELECT ver FROM trunc) IS NULL OR "
	               "ROW($1::bigint, $2::text, 0::bigint, 0::bigint)::xregion.version > "
	               "(SELECT ver FROM trunc))\n  RETURNING 1\n)\n"
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

void
xr_sql_build(xr_buf_t *b, PGconn *conn, const target_t *t, char op,
             const bool *set, const int *pnum, const int *okp)
{
	switch (op) {
	case 'u': sql_upsert(b, t, set, pnum, okp); break;
	case 'd': sql_delete(b, t, pnum); break;
	case 'U': bulk_upsert(b, t, set); break;
	case 'D': bulk_delete(b, t, set); break;
	case 'F': sql_fast_insert(b, t, set); break;
	case 'G': sql_fast_update(b, t, set); break;
	case 'v': sql_vc_upsert(conn, b, t, set, pnum, okp); break;
	case 'x': sql_vc_delete(conn, b, t, pnum); break;
	default:  sql_truncate(b, t); break;
	}
}
