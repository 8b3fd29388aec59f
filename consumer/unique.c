/*
 * unique.c: conflicts on unique keys other than the primary key.
 *
 * A remote write whose apply breaks such a key (SQLSTATE 23505) is decided
 * by version, in xregion.unique_resolve (consumer/meta.c): the row with
 * the greater version keeps the value, the other is hidden (a tombstone of
 * its key at its own version, its image kept in xregion.hidden), and the
 * conflict is logged.  Every region decides the same way whatever order
 * the writes arrive in; xregion.unique_unhide brings a hidden row back
 * once nothing newer holds its values (docs/consumer.md, "Unique keys
 * other than the primary key").  For a vclock table the version is the
 * row's hybrid clock and region (xregion.vc_version), and a hidden write
 * leaves its vector in its key's tombstone.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"
#include "common/pqbuf.h"
#include "consumer/apply_int.h"

/*
 * Appends jsonb_build_object('col', $n::type, ...) for the columns the
 * event carries (those it left out are filled from the row at its key),
 * and their values to vals from index *nv.  Returns 0, or -1 (quoting).
 */
static int
image_expr(xr_applier_t *a, const target_t *t, const fmap_t *m,
           const xr_event_t *ev, xr_buf_t *b, const char **vals, int *nv)
{
	int c, n = 0;

	xr_buf_puts(b, "jsonb_build_object(");
	for (c = 0; c < t->ncols; c++) {
		int f = m->field_of[c];

		if (f < 0 || !ev->after[f].present || ev->after[f].unchanged)
			continue;
		if (n++)
			xr_buf_puts(b, ", ");
		if (xr_pqbuf_literal(a->conn, b, t->cols[c].name))
			return -1;
		vals[*nv] = xr_event_text(ev, &ev->after[f]);
		xr_buf_printf(b, ", $%d::%s", ++*nv, t->cols[c].type);
	}
	xr_buf_putc(b, ')');
	return 0;
}

int
xr_applier_resolve_unique(xr_applier_t *a, const char *src,
                          const xr_apply_item_t *it, const xr_offset_t *off,
                          char *errstr, size_t errstr_size)
{
	const xr_event_t *ev = it->ev;
	target_t         *t;
	fmap_t           *m;
	const char      **vals;
	char              ts[24], clsn[24], lsn[24], part[16], koff[24];
	int               nv = 8, rc = -1;
	bool              vc;
	PGresult         *res;

	if (!a->conn || (ev->op != XR_OP_INSERT && ev->op != XR_OP_UPDATE &&
	                 ev->op != XR_OP_SNAPSHOT_READ))
		return 0;
	if (xr_lease_fence(a, src, off, off ? 1 : 0, errstr, errstr_size))
		return -1;
	t = xr_target_of(a, ev);
	if (!t || !t->exists || !(m = xr_target_fmap(t, ev->schema)))
		return 0;
	vc = xr_target_vclock(t);
	vals = xr_calloc((size_t)t->ncols + 10, sizeof(char *));
	/*
	 * The version a row holds a unique value with: lww, the event's; a
	 * vclock table, its hybrid clock and region (xregion.vc_version), its
	 * vector ($9) and rank deciding only against its own key.
	 */
	if (vc) {
		snprintf(ts, sizeof(ts), "%" PRId64,
		         ev->has_vclock ? ev->vc_hlc : ev->commit_ts);
		strcpy(clsn, "0");
		strcpy(lsn, "0");
		vals[8] = ev->has_vclock ? ev->vc_vector.data : "{}";
		nv = 9;
	} else {
		snprintf(ts, sizeof(ts), "%" PRId64, ev->commit_ts);
		snprintf(clsn, sizeof(clsn), "%" PRIu64, (uint64_t)ev->commit_lsn);
		snprintf(lsn, sizeof(lsn), "%" PRIu64, (uint64_t)ev->lsn);
	}
	snprintf(part, sizeof(part), "%d", (int)it->partition);
	snprintf(koff, sizeof(koff), "%" PRId64, it->offset);
	vals[0] = ts;
	vals[1] = ev->region;
	vals[2] = clsn;
	vals[3] = lsn;
	vals[4] = ev->event_id;
	vals[5] = it->topic;
	vals[6] = part;
	vals[7] = koff;
	xr_buf_reset(&a->sql);
	xr_buf_puts(&a->sql, "SELECT xregion.unique_resolve(");
	if (xr_pqbuf_literal(a->conn, &a->sql, t->qual) ||
	    (xr_buf_puts(&a->sql, "::regclass, "), 0) ||
	    xr_pqbuf_literal(a->conn, &a->sql, t->vt)) {
		xr_apply_copy_err(a->conn, "quoting", errstr, errstr_size);
		goto out;
	}
	xr_buf_puts(&a->sql, ", ");
	if (image_expr(a, t, m, ev, &a->sql, vals, &nv)) {
		xr_apply_copy_err(a->conn, "quoting", errstr, errstr_size);
		goto out;
	}
	xr_buf_printf(&a->sql, ", ROW($1::bigint, $2::text, $3::bigint, "
	                       "$4::bigint)::xregion.version, $5::uuid, $6, "
	                       "$7::int, $8::bigint, '%c'",
	              ev->op == XR_OP_UPDATE ? 'u' : 'i');
	if (vc) {
		xr_buf_puts(&a->sql, ", true, $9::jsonb, ");
		xr_sql_vc_rank(a->conn, &a->sql, t, 9);
		xr_buf_printf(&a->sql, ", %s", xr_target_keep_local(t) ? "true"
		                                                       : "false");
	}
	xr_buf_putc(&a->sql, ')');
	if (xr_session_origin(a, src, errstr, errstr_size) ||
	    xr_apply_exec(a, "BEGIN", errstr, errstr_size))
		goto out;
	res = PQexecParams(a->conn, a->sql.data, nv, NULL, vals, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		xr_apply_copy_err(a->conn, "resolving a unique key conflict", errstr,
		                  errstr_size);
		PQclear(res);
		PQclear(PQexec(a->conn, "ROLLBACK"));
		goto out;
	}
	rc = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	/*
	 * Hidden itself: nothing is left to apply, and the offset moves with
	 * it; but a key change still deletes its old key: applied again, its
	 * new key meets the hidden row's tombstone and is skipped.
	 */
	if (rc == -2 && xr_target_key_changed(ev, t, m))
		rc = -4;
	if ((rc == -2 && xr_session_store_offsets(a, off, 1, errstr, errstr_size)) ||
	    xr_apply_exec(a, "COMMIT", errstr, errstr_size)) {
		PQclear(PQexec(a->conn, "ROLLBACK"));
		rc = -1;
		goto out;
	}
	if (rc == -2 || rc == -4) {
		a->stats.conflicts[XR_CONFLICT_UNIQUE][XR_RES_SKIPPED]++;
		xr_debug("%s.%s: a write from %s lost a unique key to a newer row "
		        "and is hidden (xregion.hidden, conflict unique_conflict)",
		        ev->nspname, ev->relname, ev->region);
	} else if (rc > 0) {
		a->stats.conflicts[XR_CONFLICT_UNIQUE][XR_RES_APPLIED] += (uint64_t)rc;
		xr_debug("%s.%s: a write from %s took a unique key from %d older "
		        "row(s), now hidden (xregion.hidden, conflict "
		        "unique_conflict)", ev->nspname, ev->relname, ev->region, rc);
	}
out:
	free(vals);
	return rc;
}

long
xr_applier_unhide(xr_applier_t *a, char *errstr, size_t errstr_size)
{
	size_t   i;
	long     total = 0;
	PGresult *res;

	if (!a->conn)
		return 0;
	res = PQexec(a->conn, "SELECT EXISTS (SELECT 1 FROM xregion.hidden)");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		xr_apply_copy_err(a->conn, "reading xregion.hidden", errstr,
		                  errstr_size);
		PQclear(res);
		return -1;
	}
	if (PQgetvalue(res, 0, 0)[0] != 't') {
		PQclear(res);
		return 0;
	}
	PQclear(res);
	/* Any other region's origin: what comes back is not published again. */
	for (i = 0; i < a->conf->n_regions && !a->origin[0]; i++)
		if (strcmp(a->conf->regions[i], a->conf->region) != 0 &&
		    xr_session_origin(a, a->conf->regions[i], errstr, errstr_size))
			return -1;
	if (!a->origin[0])
		return 0;
	for (i = 0; i < a->ntargets; i++) {
		target_t *t = a->targets[i];

		if (!t->exists)
			continue;
		xr_buf_reset(&a->sql);
		xr_buf_puts(&a->sql, "SELECT xregion.unique_unhide(");
		if (xr_pqbuf_literal(a->conn, &a->sql, t->qual) ||
		    (xr_buf_puts(&a->sql, "::regclass, "), 0) ||
		    xr_pqbuf_literal(a->conn, &a->sql, t->vt)) {
			xr_apply_copy_err(a->conn, "quoting", errstr, errstr_size);
			return -1;
		}
		xr_buf_puts(&a->sql, xr_target_vclock(t) ? ", true)" : ")");
		res = PQexec(a->conn, a->sql.data);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			/* One table's failure (a lock wait) does not hold the others. */
			xr_apply_copy_err(a->conn, "bringing back hidden rows", errstr,
			                  errstr_size);
			xr_warn("%s.%s: %s", t->nspname, t->relname, errstr);
			PQclear(res);
			continue;
		}
		total += atol(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	return total;
}
