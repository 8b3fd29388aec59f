/* plan.c: merging the writes of one key within a batch (see plan.h). */
#include "consumer/plan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

int
xr_plan_cmp_position(const xr_event_t *a, const xr_event_t *b)
{
	if (a->commit_lsn != b->commit_lsn)
		return a->commit_lsn < b->commit_lsn ? -1 : 1;
	if (a->lsn != b->lsn)
		return a->lsn < b->lsn ? -1 : 1;
	return 0;
}

/*
 * The order the conflict rules put two writes of one key from one region
 * in: the hybrid clock for vclock tables (an event without one counts at
 * its commit time), else the commit time, then the position in the
 * source's stream.  Batch order breaks what is left.
 */
static int
cmp_write(const xr_plan_in_t *x, size_t i, const xr_plan_in_t *y, size_t j)
{
	const xr_event_t *a = x->ev, *b = y->ev;
	int64_t ta, tb;
	int     c;

	if (x->vclock) {
		ta = a->has_vclock ? a->vc_hlc : a->commit_ts;
		tb = b->has_vclock ? b->vc_hlc : b->commit_ts;
		if (ta != tb)
			return ta < tb ? -1 : 1;
	} else {
		if (a->commit_ts != b->commit_ts)
			return a->commit_ts < b->commit_ts ? -1 : 1;
		if ((c = xr_plan_cmp_position(a, b)) != 0)
			return c;
	}
	return i < j ? -1 : (i > j);
}

static int
cmp_key_write(const void *x, const void *y, void *arg)
{
	const xr_plan_in_t *in = arg;
	size_t i = *(const size_t *)x, j = *(const size_t *)y;
	int    c = strcmp(in[i].key, in[j].key);

	return c ? c : cmp_write(&in[i], i, &in[j], j);
}

static bool
is_insert(const xr_event_t *ev)
{
	return ev->op == XR_OP_INSERT || ev->op == XR_OP_SNAPSHOT_READ;
}

/*
 * Walks the writes of one key, in order (idx[0..m)): marks all but the
 * last superseded, and fills the last one's unchanged values from the
 * latest earlier write that carried them (none across a delete).  known
 * has room for the schema's fields.  Returns -1 when the writes' schemas
 * differ.
 */
static int
merge_key(const xr_plan_in_t *in, const size_t *idx, size_t m,
          xr_plan_out_t *out, const xr_event_t **known)
{
	const xr_event_t *last = in[idx[m - 1]].ev;
	bool              inserted = false;
	size_t            k;
	int               f, nf = last->nfields;

	for (k = 0; k < m; k++)
		if (in[idx[k]].ev->schema != last->schema)
			return -1;
	memset(known, 0, (size_t)nf * sizeof(*known));
	for (k = 0; k < m; k++) {
		const xr_event_t *ev = in[idx[k]].ev;

		out[idx[k]].follows_insert = inserted;
		if (k + 1 < m)
			out[idx[k]].superseded = true;
		if (ev->op == XR_OP_DELETE || !ev->has_after) {
			/* What came before the delete is gone with the row. */
			memset(known, 0, (size_t)nf * sizeof(*known));
			inserted = false;
			continue;
		}
		if (is_insert(ev))
			inserted = true;
		for (f = 0; f < nf; f++) {
			if (!ev->after[f].present)
				continue;
			if (!ev->after[f].unchanged) {
				known[f] = ev;
			} else if (k + 1 == m && known[f]) {
				if (!out[idx[k]].fill)
					out[idx[k]].fill = xr_calloc((size_t)nf,
					                             sizeof(*out[idx[k]].fill));
				out[idx[k]].fill[f] = known[f];
			}
		}
	}
	return 0;
}

xr_plan_result_t
xr_plan_merge(const xr_plan_in_t *in, size_t n, xr_plan_out_t *out)
{
	size_t            *idx, i, j;
	const xr_event_t **known;
	int                maxf = 0;
	xr_plan_result_t   rc = XR_PLAN_MERGED;

	memset(out, 0, n * sizeof(*out));
	for (i = 0; i < n; i++) {
		if (!in[i].key)
			return XR_PLAN_IN_ORDER;
		if (in[i].ev->nfields > maxf)
			maxf = in[i].ev->nfields;
	}
	idx = xr_calloc(n ? n : 1, sizeof(*idx));
	known = xr_calloc(maxf ? (size_t)maxf : 1, sizeof(*known));
	for (i = 0; i < n; i++)
		idx[i] = i;
	qsort_r(idx, n, sizeof(*idx), cmp_key_write, (void *)in);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && strcmp(in[idx[j]].key, in[idx[i]].key) == 0;
		     j++)
			;
		if (merge_key(in, idx + i, j - i, out, known)) {
			rc = XR_PLAN_IN_ORDER;
			break;
		}
	}
	if (rc == XR_PLAN_IN_ORDER) {
		xr_plan_out_term(out, n);
		memset(out, 0, n * sizeof(*out));
	}
	free(known);
	free(idx);
	return rc;
}

void
xr_plan_out_term(xr_plan_out_t *out, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(out[i].fill);
		out[i].fill = NULL;
	}
}

const char *
xr_plan_after_text(const xr_event_t *ev, const xr_plan_out_t *out, int f,
                   bool *known)
{
	const xr_eval_t *v = &ev->after[f];

	*known = true;
	if (!v->unchanged)
		return xr_event_text(ev, v);
	if (out && out->fill && out->fill[f])
		return xr_event_text(out->fill[f], &out->fill[f]->after[f]);
	*known = false;
	return NULL;
}

bool
xr_plan_complete(const xr_event_t *ev, const xr_plan_out_t *out)
{
	int  f;
	bool known;

	if (!ev->has_after)
		return true;
	for (f = 0; f < ev->nfields; f++) {
		(void)xr_plan_after_text(ev, out, f, &known);
		if (!known)
			return false;
	}
	return true;
}
