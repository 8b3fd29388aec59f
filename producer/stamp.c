/* stamp.c: durable versions of this region's own writes (see stamp.h). */
#include "producer/stamp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/mem.h"
#include "common/pqbuf.h"

/*
 * What is pending for one table: the writes (rows to give an entry) and the
 * local tombstones (entries to give a time), as PostgreSQL array literals,
 * one per key column, plus the writers' xids and commit times.
 */
typedef struct group_s {
	xr_buf_t *keys;       /* nkeys array literals being built */
	xr_buf_t  xids, ts;
	size_t    n;
} group_t;

typedef struct table_s {
	char    *nspname, *relname;
	int      nkeys;
	int     *keycol;      /* the relation's column of each key column */
	bool     vclock;      /* versions kept by its trigger: truncates only */
	group_t  writes, tombs;     /* pending: committed, to flush */
	group_t  swrites, stombs;   /* staged: the transaction being read */
	size_t   ntruncs;     /* truncations pending: (xid, ts) pairs */
	uint32_t *trunc_xid;
	int64_t  *trunc_ts;
} table_t;

struct xr_stamper_s {
	const xr_config_t *conf;
	table_t          **tables;
	size_t             ntables;
	size_t             pending;
	size_t             staged;      /* row stamps of the open transaction */
	bool               whole;       /* it is recorded whole instead */
	bool               truncated;   /* it truncated a table */
	xr_buf_t           xact_xids, xact_ts;   /* whole transactions pending */
	size_t             nxacts;
	xr_buf_t           sql;
};

static void
group_init(group_t *g, int nkeys)
{
	int k;

	g->keys = xr_calloc((size_t)nkeys + 1, sizeof(*g->keys));
	for (k = 0; k < nkeys; k++)
		xr_buf_init(&g->keys[k]);
	xr_buf_init(&g->xids);
	xr_buf_init(&g->ts);
	g->n = 0;
}

static void
group_reset(group_t *g, int nkeys)
{
	int k;

	for (k = 0; k < nkeys; k++)
		xr_buf_reset(&g->keys[k]);
	xr_buf_reset(&g->xids);
	xr_buf_reset(&g->ts);
	g->n = 0;
}

static void
group_term(group_t *g, int nkeys)
{
	int k;

	for (k = 0; g->keys && k < nkeys; k++)
		xr_buf_term(&g->keys[k]);
	free(g->keys);
	xr_buf_term(&g->xids);
	xr_buf_term(&g->ts);
}

static void
table_free(table_t *t)
{
	if (!t)
		return;
	group_term(&t->writes, t->nkeys);
	group_term(&t->tombs, t->nkeys);
	group_term(&t->swrites, t->nkeys);
	group_term(&t->stombs, t->nkeys);
	free(t->keycol);
	free(t->trunc_xid);
	free(t->trunc_ts);
	free(t->nspname);
	free(t->relname);
	free(t);
}

xr_stamper_t *
xr_stamper_new(const xr_config_t *conf)
{
	xr_stamper_t *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	st->conf = conf;
	xr_buf_init(&st->sql);
	xr_buf_init(&st->xact_xids);
	xr_buf_init(&st->xact_ts);
	return st;
}

void
xr_stamper_destroy(xr_stamper_t *st)
{
	size_t i;

	if (!st)
		return;
	for (i = 0; i < st->ntables; i++)
		table_free(st->tables[i]);
	free(st->tables);
	xr_buf_term(&st->sql);
	xr_buf_term(&st->xact_xids);
	xr_buf_term(&st->xact_ts);
	free(st);
}

size_t
xr_stamper_pending(const xr_stamper_t *st)
{
	return st->pending;
}

static table_t *
table_get(xr_stamper_t *st, const xr_rel_t *rel)
{
	table_t *t;
	size_t   i;
	int      c;

	for (i = 0; i < st->ntables; i++)
		if (strcmp(st->tables[i]->nspname, rel->nspname) == 0 &&
		    strcmp(st->tables[i]->relname, rel->relname) == 0)
			return st->tables[i];
	t = xr_calloc(1, sizeof(*t));
	t->nspname = xr_strdup(rel->nspname);
	t->relname = xr_strdup(rel->relname);
	t->vclock = rel->tconf && rel->tconf->conflict == XR_CONFLICT_VCLOCK;
	t->keycol = xr_calloc((size_t)rel->ncols + 1, sizeof(int));
	for (c = 0; c < rel->ncols; c++)
		if (rel->cols[c].is_key)
			t->keycol[t->nkeys++] = c;
	group_init(&t->writes, t->nkeys);
	group_init(&t->tombs, t->nkeys);
	group_init(&t->swrites, t->nkeys);
	group_init(&t->stombs, t->nkeys);
	st->tables = xr_reallocarray(st->tables, st->ntables + 1,
	                             sizeof(*st->tables));
	st->tables[st->ntables++] = t;
	return t;
}

/* Appends a text value as an element of an array literal. */
static void
array_text(xr_buf_t *b, const char *v, size_t len)
{
	size_t i;

	xr_buf_putc(b, b->len ? ',' : '{');
	xr_buf_putc(b, '"');
	for (i = 0; i < len; i++) {
		if (v[i] == '"' || v[i] == '\\')
			xr_buf_putc(b, '\\');
		xr_buf_putc(b, v[i]);
	}
	xr_buf_putc(b, '"');
}

/* Forgets the open transaction's row stamps. */
static void
drop_staged(xr_stamper_t *st)
{
	size_t i;

	for (i = 0; i < st->ntables; i++) {
		group_reset(&st->tables[i]->swrites, st->tables[i]->nkeys);
		group_reset(&st->tables[i]->stombs, st->tables[i]->nkeys);
	}
	st->staged = 0;
}

/* Adds the key of tup to g; false (nothing added) when a key is not text. */
static bool
group_add(group_t *g, const table_t *t, const xr_pgo_tuple_t *tup,
          uint32_t xid, int64_t ts)
{
	int k;

	for (k = 0; k < t->nkeys; k++)
		if (t->keycol[k] >= tup->ncols ||
		    tup->cols[t->keycol[k]].kind != XR_PGO_COL_TEXT)
			return false;
	for (k = 0; k < t->nkeys; k++) {
		const xr_pgo_datum_t *d = &tup->cols[t->keycol[k]];

		array_text(&g->keys[k], d->data, d->len);
	}
	xr_buf_printf(&g->xids, "%c%" PRIu32, g->n ? ',' : '{', xid);
	xr_buf_printf(&g->ts, "%c%" PRId64, g->n ? ',' : '{', ts);
	g->n++;
	return true;
}

void
xr_stamper_add(xr_stamper_t *st, const xr_rel_t *rel, xr_op_t op,
               const xr_pgo_tuple_t *before, const xr_pgo_tuple_t *after,
               uint32_t xid, int64_t commit_ts_us)
{
	table_t *t = table_get(st, rel);

	if (op == XR_OP_TRUNCATE) {
		t->trunc_xid = xr_reallocarray(t->trunc_xid, t->ntruncs + 1,
		                               sizeof(*t->trunc_xid));
		t->trunc_ts = xr_reallocarray(t->trunc_ts, t->ntruncs + 1,
		                              sizeof(*t->trunc_ts));
		t->trunc_xid[t->ntruncs] = xid;
		t->trunc_ts[t->ntruncs++] = commit_ts_us;
		st->pending++;
		st->truncated = true;
		return;
	}
	if (t->vclock || t->nkeys == 0 || st->whole)
		return;
	/* The old key of a delete or key change: its tombstone's time. */
	if (before && (op == XR_OP_DELETE || op == XR_OP_UPDATE) &&
	    group_add(&t->stombs, t, before, xid, commit_ts_us))
		st->staged++;
	if (after && op != XR_OP_DELETE &&
	    group_add(&t->swrites, t, after, xid, commit_ts_us))
		st->staged++;
	if (st->staged > XR_STAMP_WHOLE_TXN) {
		/* Large: one row for the transaction instead (see stamp.h). */
		drop_staged(st);
		st->whole = true;
	}
}

/* Appends the elements of array literal src ("{a,b") to dst's. */
static void
array_merge(xr_buf_t *dst, const xr_buf_t *src)
{
	if (src->len == 0)
		return;
	if (dst->len == 0) {
		xr_buf_append(dst, src->data, src->len);
		return;
	}
	xr_buf_putc(dst, ',');
	xr_buf_append(dst, src->data + 1, src->len - 1);
}

static void
group_merge(group_t *dst, const group_t *src, int nkeys)
{
	int k;

	for (k = 0; k < nkeys; k++)
		array_merge(&dst->keys[k], &src->keys[k]);
	array_merge(&dst->xids, &src->xids);
	array_merge(&dst->ts, &src->ts);
	dst->n += src->n;
}

bool
xr_stamper_commit(xr_stamper_t *st, uint32_t xid, int64_t commit_ts_us)
{
	size_t i;
	bool   any = st->staged > 0 || st->whole || st->truncated;

	if (st->whole) {
		xr_buf_printf(&st->xact_xids, "%c%" PRIu32, st->nxacts ? ',' : '{',
		              xid);
		xr_buf_printf(&st->xact_ts, "%c%" PRId64, st->nxacts ? ',' : '{',
		              commit_ts_us);
		st->nxacts++;
		st->pending++;
	}
	for (i = 0; i < st->ntables && st->staged > 0; i++) {
		table_t *t = st->tables[i];

		group_merge(&t->writes, &t->swrites, t->nkeys);
		group_merge(&t->tombs, &t->stombs, t->nkeys);
	}
	st->pending += st->staged;
	drop_staged(st);
	st->whole = st->truncated = false;
	return any;
}

/*
 * The full transaction id of xid, a transaction that committed lately:
 * within 2^31 of next, the next full id to be assigned.
 */
static uint64_t
full_xid(uint32_t xid, uint64_t next)
{
	uint64_t epoch = next >> 32;

	if (xid >= (uint32_t)next && epoch > 0)
		epoch--;
	return (epoch << 32) | xid;
}

/* Rewrites an array literal of 32-bit xids as one of full ones. */
static void
full_xids(const xr_buf_t *in, uint64_t next, xr_buf_t *out)
{
	const char *p = in->data;

	xr_buf_reset(out);
	while (p && *p) {
		char    *end;
		uint64_t x;

		p++;   /* '{' or ',' */
		x = strtoull(p, &end, 10);
		xr_buf_printf(out, "%c%" PRIu64, out->len ? ',' : '{',
		              full_xid((uint32_t)x, next));
		p = end;
		if (*p == '}')
			break;
	}
	xr_buf_putc(out, '}');
}

/* The key columns of t (name and type), from the catalog. */
static PGresult *
key_columns(PGconn *conn, const table_t *t, char *errstr, size_t errstr_size)
{
	const char *params[2] = { t->nspname, t->relname };
	PGresult   *res;
	char        vt[300];
	char       *lit;
	xr_buf_t    sql;

	if (xr_config_versions_name(t->nspname, t->relname, vt, sizeof(vt))) {
		snprintf(errstr, errstr_size, "stamping %s.%s: name too long",
		         t->nspname, t->relname);
		return NULL;
	}
	/* Third column: NULL unless the versions table is missing. */
	xr_buf_init(&sql);
	xr_buf_puts(&sql, "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
	                  "CASE WHEN to_regclass('xregion.' || quote_ident(");
	lit = PQescapeLiteral(conn, vt, strlen(vt));
	xr_buf_puts(&sql, lit ? lit : "''");
	PQfreemem(lit);
	xr_buf_puts(&sql, ")) IS NULL THEN 'missing' END "
	                  "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a "
	                  "  ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) "
	                  "WHERE i.indrelid = (quote_ident($1) || '.' || "
	                  "                    quote_ident($2))::regclass "
	                  "  AND i.indisprimary ORDER BY a.attnum");
	res = PQexecParams(conn, sql.data, 2, NULL, params, NULL, NULL, 0);
	xr_buf_term(&sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "stamping %s.%s: %s", t->nspname,
		         t->relname, PQerrorMessage(conn));
		PQclear(res);
		return NULL;
	}
	return res;
}

/*
 * The statement for one table's pending group: writes give the rows that
 * still hold them (their xmin is the writer's, under a KEY SHARE lock so
 * that no apply changes them meanwhile) an entry naming the writer;
 * tombstones written by the local trigger for that writer get its time.
 * Parameters: one text[] per key column, then xid8[], then bigint[], then
 * (writes) this region.  Keys come in the catalog's order, which the
 * relation's is too (both by attnum).
 */
static int
group_sql(PGconn *conn, const table_t *t, PGresult *keys, bool writes,
          xr_buf_t *b)
{
	char vt[300];
	int  k, n = PQntuples(keys);

	if (xr_config_versions_name(t->nspname, t->relname, vt, sizeof(vt)))
		return -1;
	xr_buf_reset(b);
	xr_buf_puts(b, writes ? "WITH e AS (SELECT DISTINCT ON (" : "UPDATE ");
	if (!writes) {
		xr_buf_puts(b, "xregion.");
		if (xr_pqbuf_ident(conn, b, vt))
			return -1;
		xr_buf_puts(b, " v SET ts = e.ts FROM unnest(");
	} else {
		for (k = 0; k < n; k++)
			xr_buf_printf(b, "%sk%d", k ? ", " : "", k);
		xr_buf_puts(b, ") * FROM unnest(");
	}
	for (k = 0; k < n; k++)
		xr_buf_printf(b, "$%d::text[], ", k + 1);
	xr_buf_printf(b, "$%d::xid8[], $%d::bigint[]) WITH ORDINALITY AS e(", n + 1,
	              n + 2);
	for (k = 0; k < n; k++)
		xr_buf_printf(b, "k%d, ", k);
	xr_buf_puts(b, "x, ts, o)");
	if (!writes) {
		xr_buf_puts(b, " WHERE ");
		for (k = 0; k < n; k++) {
			xr_buf_puts(b, "v.");
			if (xr_pqbuf_ident(conn, b, PQgetvalue(keys, k, 0)))
				return -1;
			xr_buf_printf(b, " = e.k%d::%s AND ", k, PQgetvalue(keys, k, 1));
		}
		xr_buf_puts(b, "v.xid = e.x AND v.ts IS NULL AND v.deleted");
		return 0;
	}
	xr_buf_puts(b, " ORDER BY ");
	for (k = 0; k < n; k++)
		xr_buf_printf(b, "k%d, ", k);
	xr_buf_puts(b, "o DESC), ok AS (SELECT ");
	for (k = 0; k < n; k++) {
		xr_buf_puts(b, k ? ", t." : "t.");
		if (xr_pqbuf_ident(conn, b, PQgetvalue(keys, k, 0)))
			return -1;
	}
	xr_buf_puts(b, ", e.x, e.ts FROM e JOIN ONLY ");
	if (xr_pqbuf_ident(conn, b, t->nspname))
		return -1;
	xr_buf_putc(b, '.');
	if (xr_pqbuf_ident(conn, b, t->relname))
		return -1;
	xr_buf_puts(b, " t ON ");
	for (k = 0; k < n; k++) {
		xr_buf_puts(b, "t.");
		if (xr_pqbuf_ident(conn, b, PQgetvalue(keys, k, 0)))
			return -1;
		xr_buf_printf(b, " = e.k%d::%s AND ", k, PQgetvalue(keys, k, 1));
	}
	xr_buf_puts(b, "t.xmin = xid(e.x) FOR KEY SHARE OF t) INSERT INTO xregion.");
	if (xr_pqbuf_ident(conn, b, vt))
		return -1;
	xr_buf_puts(b, " AS v (");
	for (k = 0; k < n; k++) {
		if (xr_pqbuf_ident(conn, b, PQgetvalue(keys, k, 0)))
			return -1;
		xr_buf_puts(b, ", ");
	}
	xr_buf_puts(b, "ts, region, xid, deleted, clsn, lsn) SELECT ");
	for (k = 0; k < n; k++) {
		xr_buf_puts(b, "ok.");
		if (xr_pqbuf_ident(conn, b, PQgetvalue(keys, k, 0)))
			return -1;
		xr_buf_puts(b, ", ");
	}
	xr_buf_printf(b, "ok.ts, $%d, ok.x, false, 0, 0 FROM ok ON CONFLICT (",
	              n + 3);
	for (k = 0; k < n; k++) {
		if (k)
			xr_buf_puts(b, ", ");
		if (xr_pqbuf_ident(conn, b, PQgetvalue(keys, k, 0)))
			return -1;
	}
	xr_buf_puts(b, ") DO UPDATE SET ts = EXCLUDED.ts, region = EXCLUDED.region, "
	               "xid = EXCLUDED.xid, deleted = false, clsn = 0, lsn = 0");
	return 0;
}

/* Runs one group's statement.  Returns 0, or -1 with errstr. */
static int
group_run(PGconn *conn, const table_t *t, const group_t *g, const char *sql,
          uint64_t next, const char *region, char *errstr, size_t errstr_size)
{
	const char **params = xr_calloc((size_t)t->nkeys + 4, sizeof(char *));
	xr_buf_t     xids, *closed = xr_calloc((size_t)t->nkeys + 2,
	                                       sizeof(xr_buf_t));
	PGresult    *res;
	int          k, ok;

	xr_buf_init(&xids);
	for (k = 0; k < t->nkeys; k++) {
		xr_buf_init(&closed[k]);
		xr_buf_append(&closed[k], g->keys[k].data, g->keys[k].len);
		xr_buf_putc(&closed[k], '}');
		params[k] = closed[k].data;
	}
	full_xids(&g->xids, next, &xids);
	xr_buf_init(&closed[t->nkeys]);
	xr_buf_append(&closed[t->nkeys], g->ts.data, g->ts.len);
	xr_buf_putc(&closed[t->nkeys], '}');
	params[t->nkeys] = xids.data;
	params[t->nkeys + 1] = closed[t->nkeys].data;
	params[t->nkeys + 2] = region;
	res = PQexecParams(conn, sql, t->nkeys + (region ? 3 : 2), NULL, params,
	                   NULL, NULL, 0);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		snprintf(errstr, errstr_size, "stamping %s.%s: %s", t->nspname,
		         t->relname, PQerrorMessage(conn));
	PQclear(res);
	for (k = 0; k <= t->nkeys; k++)
		xr_buf_term(&closed[k]);
	free(closed);
	xr_buf_term(&xids);
	free(params);
	return ok ? 0 : -1;
}

/* The truncations of t: their markers get the truncating transaction's time. */
static int
truncs_run(PGconn *conn, const table_t *t, uint64_t next, char *errstr,
           size_t errstr_size)
{
	size_t i;

	for (i = 0; i < t->ntruncs; i++) {
		char        x[32], ts[32];
		const char *params[4] = { t->nspname, t->relname, x, ts };
		PGresult   *res;
		int         ok;

		snprintf(x, sizeof(x), "%" PRIu64, full_xid(t->trunc_xid[i], next));
		snprintf(ts, sizeof(ts), "%" PRId64, t->trunc_ts[i]);
		res = PQexecParams(conn,
		                   "UPDATE xregion.truncations SET ts = $4::bigint "
		                   "WHERE table_schema = $1 AND table_name = $2 "
		                   "AND xid = $3::xid8 AND ts IS NULL",
		                   4, NULL, params, NULL, NULL, 0);
		ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		if (!ok)
			snprintf(errstr, errstr_size, "stamping a truncate of %s.%s: %s",
			         t->nspname, t->relname, PQerrorMessage(conn));
		PQclear(res);
		if (!ok)
			return -1;
	}
	return 0;
}

/*
 * Waits until every transaction stamped is visible to a new snapshot: the
 * server streams a transaction once its commit record is flushed, a moment
 * before it leaves the proc array, and a stamp matched against rows (or
 * tombstones) it cannot see yet would be lost.  Returns 0, or -1 with
 * errstr (still in progress after 2 s, or the database failed).
 */
static int
wait_visible(xr_stamper_t *st, PGconn *conn, uint64_t next, char *errstr,
             size_t errstr_size)
{
	xr_buf_t    all, full;
	const char *params[1];
	size_t      i;
	int         tries, rc = -1;

	xr_buf_init(&all);
	xr_buf_init(&full);
	for (i = 0; i < st->ntables; i++) {
		table_t *t = st->tables[i];
		size_t   k;

		array_merge(&all, &t->writes.xids);
		array_merge(&all, &t->tombs.xids);
		for (k = 0; k < t->ntruncs; k++)
			xr_buf_printf(&all, "%c%" PRIu32, all.len ? ',' : '{',
			              t->trunc_xid[k]);
	}
	if (all.len == 0) {
		rc = 0;
		goto out;
	}
	full_xids(&all, next, &full);
	params[0] = full.data;
	for (tries = 0; tries < 2000; tries++) {
		PGresult *res = PQexecParams(conn,
		                             "SELECT count(*) FROM unnest($1::xid8[]) x "
		                             "WHERE pg_catalog.pg_xact_status(x) = "
		                             "'in progress'", 1, NULL, params, NULL,
		                             NULL, 0);
		bool      busy;

		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			snprintf(errstr, errstr_size, "stamping: %s", PQerrorMessage(conn));
			PQclear(res);
			goto out;
		}
		busy = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
		PQclear(res);
		if (!busy) {
			rc = 0;
			goto out;
		}
		usleep(1000);
	}
	snprintf(errstr, errstr_size, "stamping: transactions still in progress "
	         "after 2 s");
out:
	xr_buf_term(&all);
	xr_buf_term(&full);
	return rc;
}

/* The transactions recorded whole: one row each in xregion.xact_versions. */
static int
xacts_run(xr_stamper_t *st, PGconn *conn, uint64_t next, char *errstr,
          size_t errstr_size)
{
	xr_buf_t    xids, ts;
	const char *params[3];
	PGresult   *res;
	int         ok;

	xr_buf_init(&xids);
	xr_buf_init(&ts);
	full_xids(&st->xact_xids, next, &xids);
	xr_buf_append(&ts, st->xact_ts.data, st->xact_ts.len);
	xr_buf_putc(&ts, '}');
	params[0] = xids.data;
	params[1] = ts.data;
	params[2] = st->conf->region;
	res = PQexecParams(conn,
	                   "INSERT INTO xregion.xact_versions (xid, ts, region) "
	                   "SELECT * FROM unnest($1::xid8[], $2::bigint[]), "
	                   "LATERAL (SELECT $3::text) r "
	                   "ON CONFLICT (xid) DO NOTHING",
	                   3, NULL, params, NULL, NULL, 0);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		snprintf(errstr, errstr_size, "stamping large transactions: %s",
		         PQerrorMessage(conn));
	PQclear(res);
	xr_buf_term(&xids);
	xr_buf_term(&ts);
	return ok ? 0 : -1;
}

static int
exec_cmd(PGconn *conn, const char *sql, char *errstr, size_t errstr_size)
{
	PGresult *res = PQexec(conn, sql);
	int       ok = PQresultStatus(res) == PGRES_COMMAND_OK ||
	               PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		snprintf(errstr, errstr_size, "stamping: %s: %s", sql,
		         PQerrorMessage(conn));
	PQclear(res);
	return ok ? 0 : -1;
}

/* Stamps what is pending for t, inside the open transaction. */
static int
table_flush(xr_stamper_t *st, PGconn *conn, table_t *t, uint64_t next,
            char *errstr, size_t errstr_size)
{
	PGresult *keys = NULL;
	int       rc = -1;

	if (truncs_run(conn, t, next, errstr, errstr_size))
		return -1;
	if (t->writes.n == 0 && t->tombs.n == 0)
		return 0;
	if (!(keys = key_columns(conn, t, errstr, errstr_size)))
		return -1;
	if (PQntuples(keys) != t->nkeys || !PQgetisnull(keys, 0, 2)) {
		/*
		 * The key changed since (nothing to match the events' keys
		 * with), or no versions table: setup has not run for the table.
		 */
		/* The key changed since: nothing to match the events' keys with. */
		rc = 0;
		goto out;
	}
	if (t->writes.n &&
	    (group_sql(conn, t, keys, true, &st->sql) ||
	     group_run(conn, t, &t->writes, st->sql.data, next, st->conf->region,
	               errstr, errstr_size)))
		goto out;
	if (t->tombs.n &&
	    (group_sql(conn, t, keys, false, &st->sql) ||
	     group_run(conn, t, &t->tombs, st->sql.data, next, NULL, errstr,
	               errstr_size)))
		goto out;
	rc = 0;
out:
	if (rc && !errstr[0])
		snprintf(errstr, errstr_size, "stamping %s.%s: quoting failed",
		         t->nspname, t->relname);
	PQclear(keys);
	return rc;
}

int
xr_stamper_flush(xr_stamper_t *st, PGconn *conn, char *errstr,
                 size_t errstr_size)
{
	PGresult *res;
	uint64_t  next;
	size_t    i;

	if (st->pending == 0)
		return 0;
	errstr[0] = '\0';
	/*
	 * Short lock waits (50 ms): a KEY SHARE lock waits only for a local
	 * delete or key change in flight, or an apply, and the versions entry
	 * for a tombstone its trigger is writing.  Giving up long before the
	 * server's deadlock_timeout (1 s) means that when the stamps and an
	 * application's transaction wait for each other, the stamps yield:
	 * the application never sees a deadlock error because of them.  The
	 * flush is tried again later.
	 */
	if (exec_cmd(conn, "BEGIN", errstr, errstr_size))
		return -1;
	res = PQexec(conn, "SET LOCAL lock_timeout = '50ms'; "
	                   "SELECT pg_catalog.pg_snapshot_xmax("
	                   "pg_catalog.pg_current_snapshot())");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "stamping: %s", PQerrorMessage(conn));
		PQclear(res);
		goto fail;
	}
	next = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (wait_visible(st, conn, next, errstr, errstr_size) ||
	    (st->nxacts && xacts_run(st, conn, next, errstr, errstr_size)))
		goto fail;
	for (i = 0; i < st->ntables; i++)
		if (table_flush(st, conn, st->tables[i], next, errstr, errstr_size))
			goto fail;
	if (exec_cmd(conn, "COMMIT", errstr, errstr_size))
		goto fail;
	for (i = 0; i < st->ntables; i++) {
		table_t *t = st->tables[i];

		group_reset(&t->writes, t->nkeys);
		group_reset(&t->tombs, t->nkeys);
		t->ntruncs = 0;
	}
	xr_buf_reset(&st->xact_xids);
	xr_buf_reset(&st->xact_ts);
	st->nxacts = 0;
	st->pending = 0;
	return 0;
fail:
	PQclear(PQexec(conn, "ROLLBACK"));
	return -1;
}
