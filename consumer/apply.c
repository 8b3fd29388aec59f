/*
 * apply.c: applying a batch of change events (see apply.h): planning it
 * (plan.c), the set-based statements and fast paths for large groups, the
 * row-by-row pipeline for the rest, outcomes, dead letters and offsets in
 * one transaction.  The catalog (target.c), the SQL (sqlgen.c), prepared
 * statements (stmtcache.c), conflict classification and log (classify.c)
 * and the session (session.c) are files of their own.
 */
#include "consumer/apply_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "consumer/plan.h"

/* Statements per pipeline sync: keeps both sides' buffers from filling. */
#define PIPELINE_CHUNK 256

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
	int i, k = xr_sql_nfixed(s->sig[0]);

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
 * Whether ev, a snapshot_read, may take the fast insert path: that path
 * gives its rows the version (commit time, the origin's region, no
 * position), which is the read's own only for a row its source region
 * wrote with no position recorded (a local write there).
 */
static bool
fast_read(const xr_event_t *ev)
{
	return ev->op == XR_OP_SNAPSHOT_READ && ev->commit_lsn == 0 &&
	       ev->lsn == 0 && strcmp(ev->region, ev->source_region) == 0;
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
	bool ins = ev->op == XR_OP_INSERT || fast_read(ev);

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

		if ((ev->op == XR_OP_INSERT || ev->op == XR_OP_UPDATE ||
		     fast_read(ev)) && b->plans[idx[i]].nstmt == 1)
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
	fmap_t           *fm = xr_target_fmap(t, ev->schema);
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

/* Runs set-based statement st, planned for these values (stmt_t.sql). */
static PGresult *
exec_set(xr_applier_t *a, const stmt_t *st, int n, const char *const *vals)
{
	if (st->sql)
		return PQexecParams(a->conn, st->sql, n, NULL, vals, NULL, NULL, 0);
	return PQexecPrepared(a->conn, st->name, n, vals, NULL, NULL, 0);
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
	const char *state;
	int       rc = -1;

	for (k = 0; k < nmem; k++)
		if (fast_candidate(b, mem[k], ts, op))
			cand[nc++] = mem[k];
	if (nc < BULK_MIN) {
		rc = 0;
		goto out;
	}
	if (!(st = xr_stmt_get(a, t, op, set, NULL, errstr, errstr_size)))
		goto out;
	snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ts);
	if (!*setup) {
		if (xr_session_origin_xact(a, lsn, tsbuf, b->items[cand[0]].ev->region,
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
	if (xr_apply_exec(a, "SAVEPOINT xr_fast", errstr, errstr_size))
		goto out;
	res = exec_set(a, st, x.n, x.vals);
	if (PQresultStatus(res) != PGRES_TUPLES_OK && op == 'F' &&
	    (state = PQresultErrorField(res, PG_DIAG_SQLSTATE)) &&
	    strcmp(state, "23505") == 0) {
		/* A key there after all (inserted here meanwhile, or twice in
		 * the batch): the regular statements decide them all. */
		if (xr_apply_exec(a, "ROLLBACK TO SAVEPOINT xr_fast", errstr,
		                  errstr_size) == 0 &&
		    xr_apply_exec(a, "RELEASE SAVEPOINT xr_fast", errstr,
		                  errstr_size) == 0)
			rc = 0;
		goto out;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		bulk_error(a, res, op == 'F' ? "inserting" : "updating", nc, t,
		           errstr, errstr_size);
		goto out;
	}
	if ((size_t)atoi(PQgetvalue(res, 0, 0)) != nc) {
		/* Some were there: the regular statements decide them all. */
		if (xr_apply_exec(a, "ROLLBACK TO SAVEPOINT xr_fast", errstr, errstr_size))
			goto out;
	} else {
		for (k = 0; k < nc; k++) {
			b->plans[cand[k]].fast = true;
			b->plans[cand[k]].nstmt = 0;
		}
	}
	if (xr_apply_exec(a, "RELEASE SAVEPOINT xr_fast", errstr, errstr_size))
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
	stmt_t   *bulk = xr_stmt_get(a, t, op, set, NULL, errstr, errstr_size);
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
	arrays_init(&x, bulk->ncols + xr_sql_nfixed(op));
	for (k = 0; k < g; k++) {
		const xr_event_t *ev = b->items[grp[k]].ev;
		const char       *sep = k > 0 ? "," : "";

		xr_buf_printf(&x.arr[0], "%s%" PRId64, sep, ev->commit_ts);
		array_elem(&x.arr[1], ev->region, k == 0);
		xr_buf_printf(&x.arr[2], "%s%s", sep,
		              xr_plan_complete(ev, b->plans[grp[k]].merge) ? "t" : "f");
		xr_buf_printf(&x.arr[3], "%s%" PRId64, sep, (int64_t)ev->commit_lsn);
		xr_buf_printf(&x.arr[4], "%s%" PRId64, sep, (int64_t)ev->lsn);
		arrays_add_cols(&x, xr_sql_nfixed(op), t, bulk, op, b, grp[k], k == 0);
	}
	arrays_close(&x);
	res = exec_set(a, bulk, x.n, x.vals);
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
	fast_ts = a->replay ? INT64_MIN : fast_commit_ts(b, idx, m, &fast_lsn);
	for (i = 0; i < m; i = j) {
		stmt_t   *one = b->plans[idx[i]].stmt[0];
		target_t *t;
		bool     *set;
		int       c, err;

		for (j = i + 1; j < m && b->plans[idx[j]].stmt[0] == one; j++)
			;
		if (j - i < BULK_MIN || (one->sig[0] != 'u' && one->sig[0] != 'd'))
			continue;
		t = xr_target_of(a, b->items[idx[i]].ev);
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

	if (ev->op == XR_OP_TRUNCATE || xr_target_key_changed(ev, t, fm))
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
		pl->stmt[pl->nstmt++] = xr_stmt_get(a, t, 't', set, NULL, errstr,
		                                 errstr_size);
		return pl->stmt[0] ? 0 : -1;
	}
	m = xr_target_fmap(t, ev->schema);
	keys_changed = xr_target_key_changed(ev, t, m);
	if (ev->op == XR_OP_DELETE || keys_changed) {
		for (c = 0; c < t->ncols; c++)
			set[c] = t->cols[c].is_key;
		if (!(del = xr_stmt_get(a, t, xr_target_vclock(t) ? 'x' : 'd', set, NULL,
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
		if (!(up = xr_stmt_get(a, t, xr_target_vclock(t) ? 'v' : 'u', set, from_old,
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
		target_t   *t = xr_target_of(a, ev);

		xr_buf_init(&keys[i]);
		b->items[i].conflict = XR_CONFLICT_NONE;
		b->items[i].resolution = XR_RES_APPLIED;
		b->items[i].reason[0] = '\0';
		if (!t || (!t->cols && xr_target_load(a, t, errstr, errstr_size)))
			goto out;
		in[i].ev = ev;
		in[i].vclock = xr_target_vclock(t);
		if (ev->op != XR_OP_TRUNCATE &&
		    merge_key(&keys[i], t, xr_target_fmap(t, ev->schema), ev))
			in[i].key = keys[i].data;
	}
	b->in_order = xr_plan_merge(in, b->n, b->merge) == XR_PLAN_IN_ORDER;
	for (i = 0; i < b->n; i++) {
		target_t *t = xr_target_of(a, b->items[i].ev);

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
 * Orders by position in the source region's stream (commit LSN, then the
 * change's LSN), then by place in the batch: the order the source made the
 * writes in, whatever partitions they came through.
 */
static int
cmp_position(const void *x, const void *y, void *arg)
{
	const xr_apply_item_t *items = arg;
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	int    c = xr_plan_cmp_position(items[i].ev, items[j].ev);

	return c ? c : (i < j ? -1 : (i > j));
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
		target_t   *t = xr_target_of(a, ev);
		fmap_t     *m = ev->op == XR_OP_TRUNCATE ? NULL
		                                         : xr_target_fmap(t, ev->schema);
		const char *vals[6 + 1600];
		const char *allow = xr_plan_complete(ev, b->plans[i].merge) ? "t"
		                                                            : "f";
		char        tsbuf[32], pos[2][24];
		int         k;

		(void)xr_i64_text(tsbuf, ev->commit_ts);
		(void)xr_i64_text(pos[0], (int64_t)ev->commit_lsn);
		(void)xr_i64_text(pos[1], (int64_t)ev->lsn);
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
			if (xr_session_send(a, s, vals, errstr, errstr_size))
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
		xr_apply_copy_err(a->conn, "pipeline mode", errstr, errstr_size);
		return -1;
	}
	for (start = 0; start < b->n; start += PIPELINE_CHUNK) {
		size_t    end = start + PIPELINE_CHUNK < b->n ? start + PIPELINE_CHUNK
		                                              : b->n;
		PGresult *sync;

		if (send_chunk(a, b, start, end, errstr, errstr_size))
			goto fail;
		if (!PQpipelineSync(a->conn)) {
			xr_apply_copy_err(a->conn, "pipeline sync", errstr, errstr_size);
			goto fail;
		}
		for (p = start; p < end; p++) {
			const xr_apply_item_t *it = &b->items[b->order[p]];
			int k;

			i = b->order[p];
			for (k = 0; k < b->plans[i].nstmt; k++) {
				char ctx_err[1024];

				if ((b->res[i * 2 + (size_t)k] = xr_session_result(a, errstr,
				                                             errstr_size)))
					continue;
				snprintf(ctx_err, sizeof(ctx_err),
				         "%s (table %s.%s, %s at %s [%d] offset %" PRId64 ")",
				         errstr, it->ev->nspname, it->ev->relname,
				         xr_op_names[it->ev->op], it->topic,
				         (int)it->partition, it->offset);
				snprintf(errstr, errstr_size, "%s", ctx_err);
				xr_session_drain(a);
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
		xr_apply_copy_err(a->conn, "leaving pipeline mode", errstr, errstr_size);
		goto fail;
	}
	return 0;
fail:
	xr_session_pipeline_abort(a);
	return -1;
}

/* The result of item i's delete of its old key, if it is a key change. */
static PGresult *
old_key_result(const batch_t *b, size_t i)
{
	const plan_t *pl = &b->plans[i];
	int           k;

	if (pl->nstmt != 2 || b->items[i].ev->op != XR_OP_UPDATE)
		return NULL;
	for (k = 0; k < 2; k++) {
		char      op = pl->stmt[k]->sig[0];
		PGresult *r = b->res[i * 2 + (size_t)k];

		if ((op == 'd' || op == 'x') && r && PQntuples(r) == 1)
			return r;
	}
	return NULL;
}

/*
 * Whether item i is a key change whose old key's row was here (its delete
 * found it), so that its new key being missing is no conflict.
 */
static bool
moved_row(const batch_t *b, size_t i)
{
	PGresult *r = old_key_result(b, i);

	return r && atoi(PQgetvalue(r, 0, 1)) > 0;
}

/*
 * A key change removes its old key's row like a delete, and that row may
 * be a write it never saw (another region's, or a concurrent one): the
 * delete of the old key is classified and logged as a delete of its own
 * (kind delete_*, key and row of the old key), so that the loser is named.
 */
static int
log_old_key(xr_applier_t *a, batch_t *b, size_t i, target_t *t,
            char *errstr, size_t errstr_size)
{
	PGresult       *r = old_key_result(b, i);
	xr_event_t      old;
	xr_apply_item_t oi;

	if (!r)
		return 0;
	old = *b->items[i].ev;
	old.op = XR_OP_DELETE;
	old.has_after = false;
	oi = b->items[i];
	oi.ev = &old;
	if (xr_target_vclock(t))
		xr_classify_vc(&oi, r, 0, true);
	else
		xr_classify_lww(&oi, r, 0, true);
	if (oi.conflict == XR_CONFLICT_NONE ||
	    oi.conflict == XR_CONFLICT_DELETE_MISSING)
		return 0;
	b->stats.conflicts[oi.conflict][oi.resolution]++;
	return xr_conflict_log(a, &oi, t, xr_target_fmap(t, old.schema), r, 0,
	                       errstr, errstr_size);
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
		target_t        *t = xr_target_of(a, it->ev);
		bool             may_insert = xr_plan_complete(it->ev, pl->merge);

		it->conflict = XR_CONFLICT_NONE;
		if (pl->merge->superseded) {
			/* A later write of the key in this batch decides. */
			it->resolution = XR_RES_SKIPPED;
		} else if (pl->fast || it->ev->op == XR_OP_TRUNCATE) {
			it->resolution = XR_RES_APPLIED;
		} else {
			if (xr_target_vclock(t))
				xr_classify_vc(it, r, row, may_insert);
			else
				xr_classify_lww(it, r, row, may_insert);
			/*
			 * Not missing: the row the batch's own superseded insert
			 * made, or the old key's row a key change moved.
			 */
			if ((it->conflict == XR_CONFLICT_UPDATE_MISSING ||
			     (it->conflict == XR_CONFLICT_UPDATE_DELETED &&
			      !xr_target_vclock(t)) ||
			     it->conflict == XR_CONFLICT_DELETE_MISSING) &&
			    it->resolution == XR_RES_APPLIED &&
			    (pl->merge->follows_insert || moved_row(b, i)))
				it->conflict = XR_CONFLICT_NONE;
		}
		count_outcome(b, it);
		if (it->resolution == XR_RES_DEAD_LETTER)
			ndl++;
		if (it->conflict != XR_CONFLICT_NONE &&
		    xr_conflict_log(a, it, t, xr_target_fmap(t, it->ev->schema), r, row, errstr,
		                 errstr_size))
			return -1;
		if (!pl->merge->superseded && !pl->fast && !pl->bulk &&
		    log_old_key(a, b, i, t, errstr, errstr_size))
			return -1;
	}
	return ndl;
}

/* Adds batches' counts to others. */
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
	to->batches += from->batches;
}

/*
 * Counts the source transactions of items just committed in the latency
 * histogram, once each (a transaction's events are consecutive), by the
 * time since their commit in their region.  Backfill reads carry their
 * row's version time, not a commit's: left out.
 */
static void
observe_latency(xr_apply_stats_t *st, const xr_apply_item_t *items, size_t n)
{
	int64_t           now = xr_unix_now_us(), us;
	const xr_event_t *prev = NULL;
	size_t            i;

	for (i = 0; i < n; i++) {
		const xr_event_t *ev = items[i].ev;

		if (ev->op == XR_OP_SNAPSHOT_READ || ev->source_commit_ts <= 0)
			continue;
		if (prev && prev->commit_lsn == ev->commit_lsn &&
		    strcmp(prev->source_region, ev->source_region) == 0)
			continue;
		prev = ev;
		us = now - ev->source_commit_ts;
		if (us < 0)
			us = 0;   /* the clocks of two hosts */
		xr_latency_observe(st->latency, us);
		st->latency_sum_us += (uint64_t)us;
	}
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
	if ((!a->conn && xr_applier_connect(a, errstr, errstr_size)) ||
	    xr_lease_fence(a, src, offsets, noffsets, errstr, errstr_size))
		goto out;
	/* (An open transaction keeps its origin: one source region.) */
	if ((!a->in_open && xr_session_origin(a, src, errstr, errstr_size)) ||
	    plan_batch(a, &b, errstr, errstr_size))
		goto out;
	if (!a->in_open && xr_apply_exec(a, "BEGIN", errstr, errstr_size))
		goto out;
	in_txn = true;
	a->in_open = false;
	/* Set-based statements need one write per key: a merged batch. */
	if ((n >= BULK_MIN && !b.in_order &&
	     bulk_phase(a, &b, errstr, errstr_size)) ||
	    run_pipeline(a, &b, errstr, errstr_size))
		goto out;
	/* Outcomes, conflict log, dead letters, offsets: then COMMIT. */
	if ((ndl = settle(a, &b, errstr, errstr_size)) < 0 ||
	    (!a->hold_open &&
	     (xr_session_store_offsets(a, offsets, noffsets, errstr,
	                               errstr_size) ||
	      xr_session_store_position(a, errstr, errstr_size))))
		goto out;
	if (ndl > 0 && (!dead_letter || dead_letter(ctx, items, n))) {
		snprintf(errstr, errstr_size, "dead-lettering failed");
		goto out;
	}
	if (a->hold_open) {
		/* Goes on in the next apply (xr_applier_hold_open). */
		a->in_open = true;
		in_txn = false;
	} else {
		if (xr_apply_exec(a, a->dry_run ? "ROLLBACK" : "COMMIT", errstr,
		                  errstr_size))
			goto out;
		in_txn = false;
		a->npos = 0;
		if (!a->replay)
			observe_latency(&a->stats, items, n);
	}
	/* A piece of an open transaction counts once that commits. */
	b.stats.batches = 1;
	if (a->hold_open) {
		stats_add(&a->held, &b.stats);
	} else {
		stats_add(&a->stats, &a->held);
		stats_add(&a->stats, &b.stats);
		memset(&a->held, 0, sizeof(a->held));
	}
	rc = 0;
out:
	if (in_txn && a->conn && PQstatus(a->conn) == CONNECTION_OK)
		PQclear(PQexec(a->conn, "ROLLBACK"));
	if (rc) {
		a->npos = 0;
		a->hold_open = false;
		memset(&a->held, 0, sizeof(a->held));
	}
	if (rc && a->conn && PQstatus(a->conn) != CONNECTION_OK) {
		PQfinish(a->conn);
		a->conn = NULL;
	}
	if (!a->conn) {
		a->origin[0] = '\0';
		for (i = 0; i < a->ntargets; i++)
			xr_target_reset(a->targets[i]);
	}
	batch_term(&b);
	return rc;
}
