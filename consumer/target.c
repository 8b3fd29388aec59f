/*
 * target.c: the target tables' catalog: columns and keys, how a writer
 * schema's fields map onto them, and the checks of an event against them
 * (see apply_int.h).
 */
#include "consumer/apply_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"
#include "consumer/meta.h"

void
xr_target_reset(target_t *t)
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
		free(t->stmts[i]->sql);
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

void
xr_target_free(target_t *t)
{
	if (!t)
		return;
	xr_target_reset(t);
	free(t->nspname);
	free(t->relname);
	free(t->qual);
	free(t->vt);
	PQfreemem(t->lit_nsp);
	PQfreemem(t->lit_rel);
	free(t);
}

target_t *
xr_target_of(xr_applier_t *a, const xr_event_t *ev)
{
	/*
	 * An event is looked up at every step of its apply (planning,
	 * sending, settling): the search by name once is enough.  Targets
	 * live as long as their applier.
	 */
	xr_event_t *e = (xr_event_t *)ev;

	if (e->target_of != a || !e->target) {
		e->target = xr_target_get(a, ev->nspname, ev->relname);
		e->target_of = a;
	}
	return e->target;
}

target_t *
xr_target_get(xr_applier_t *a, const char *nsp, const char *rel)
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
		xr_target_free(t);
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
int
xr_target_load(xr_applier_t *a, target_t *t, char *errstr,
               size_t errstr_size)
{
	const char *params[2] = { t->nspname, t->relname };
	PGresult   *res;
	int         i;

	xr_target_reset(t);
	res = PQexecParams(a->conn,
	                   "SELECT a.attname, "
	                   "       quote_ident(tn.nspname) || '.' || "
	                   "       quote_ident(ty.typname), "
	                   "       coalesce(a.attnum = ANY (i.indkey), false) "
	                   "FROM pg_catalog.pg_class c "
	                   "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	                   "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
	                   "JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid "
	                   "JOIN pg_catalog.pg_namespace tn "
	                   "  ON tn.oid = ty.typnamespace "
	                   "LEFT JOIN pg_catalog.pg_index i "
	                   "  ON i.indrelid = c.oid AND i.indisprimary "
	                   "WHERE n.nspname = $1 AND c.relname = $2 "
	                   "  AND c.relkind IN ('r', 'p') "
	                   "  AND a.attnum > 0 AND NOT a.attisdropped "
	                   "ORDER BY a.attnum", 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		xr_apply_copy_err(a->conn, "reading the catalog", errstr, errstr_size);
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
			xr_apply_copy_err(a->conn, "quoting", errstr, errstr_size);
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
fmap_t *
xr_target_fmap(target_t *t, const xr_schema_t *s)
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
	target_t *t = xr_target_of(a, ev);
	fmap_t   *m;
	int       f, c;

	if (!t) {
		xr_apply_copy_err(a->conn, "quoting", errstr, errstr_size);
		return XR_CHECK_ERROR;
	}
	/* A missing table is looked for again each time: it may be created. */
	if ((!t->cols || !t->exists) && xr_target_load(a, t, errstr, errstr_size))
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
	m = xr_target_fmap(t, ev->schema);
	for (f = 0; f < ev->nfields; f++) {
		if (m->col[f] < 0) {
			snprintf(errstr, errstr_size,
			         "table %s.%s: column \"%s\" of region %s's schema is "
			         "missing in region %s", ev->nspname, ev->relname,
			         ev->schema->row_fields[f].column, ev->source_region,
			         a->conf->region);
			return XR_CHECK_DRIFT;
		}
	}
	for (c = 0; c < t->ncols; c++) {
		if (t->cols[c].is_key && m->field_of[c] < 0) {
			snprintf(errstr, errstr_size,
			         "table %s.%s: key column \"%s\" is not in region %s's "
			         "events", ev->nspname, ev->relname, t->cols[c].name,
			         ev->source_region);
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
			xr_target_reset(t);
		}
	}
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
bool
xr_target_vclock(const target_t *t)
{
	return t->tconf && t->tconf->conflict == XR_CONFLICT_VCLOCK;
}

bool
xr_target_keep_local(const target_t *t)
{
	return t->tconf && t->tconf->tiebreak == XR_TIEBREAK_KEEP_LOCAL;
}

/* Whether the key columns of before differ from after's. */
bool
xr_target_key_changed(const xr_event_t *ev, const target_t *t,
                      const fmap_t *m)
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
