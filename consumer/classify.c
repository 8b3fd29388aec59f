/*
 * classify.c: conflict classification of an applied event from its
 * statement's result, and the conflict log (see apply_int.h).
 */
#include "consumer/apply_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

const char *const xr_conflict_names[] = {
	"none", "insert_exists", "insert_deleted", "update_missing",
	"update_deleted", "update_origin_differs", "delete_missing",
	"delete_origin_differs", "delete_after_update", "insert_concurrent",
	"update_concurrent", "delete_concurrent", "unique_conflict"
};

const char *const xr_resolution_names[] = {
	"remote_applied", "local_kept", "dead_lettered"
};

/*
 * An update of a missing row that could not be inserted because its event
 * left unchanged TOASTed values out: a dead letter, with its reason.
 */
static void
dead_letter_if_incomplete(xr_apply_item_t *it, bool applied, bool may_insert)
{
	if (applied || may_insert)
		return;
	it->resolution = XR_RES_DEAD_LETTER;
	snprintf(it->reason, sizeof(it->reason),
	         "update of a row missing in this region whose unchanged "
	         "TOASTed columns were not sent");
}

/*
 * Classifies an item from its decisive result row r: applied, whether a
 * row was there and its version's region, the tombstone if any.
 */
void
xr_classify_lww(xr_apply_item_t *it, PGresult *r, int row, bool may_insert)
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
		} else if (had_tomb) {
			/* Older: it loses; newer: the row comes back, the delete lost. */
			it->conflict = XR_CONFLICT_UPDATE_DELETED;
			dead_letter_if_incomplete(it, applied || !beats_tomb,
			                          may_insert);
		} else {
			it->conflict = XR_CONFLICT_UPDATE_MISSING;
			dead_letter_if_incomplete(it, applied, may_insert);
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
void
xr_classify_vc(xr_apply_item_t *it, PGresult *r, int row, bool may_insert)
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
			dead_letter_if_incomplete(it, applied, may_insert);
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

int
xr_conflict_log(xr_applier_t *a, const xr_apply_item_t *it, const target_t *t,
             const fmap_t *m, PGresult *res, int rrow, char *errstr,
             size_t errstr_size)
{
	const xr_event_t *ev = it->ev;
	const xr_eval_t  *img = ev->has_after ? ev->after : ev->before;
	xr_buf_t          key, row;
	char              rts[32], part[16], off[32];
	const char       *vals[14];
	const char       *vvs[2] = { NULL, NULL };
	bool              vc = xr_target_vclock(t);
	PGresult         *r;
	int               ok, lc;

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
	/*
	 * The local side: the row's version, or where there is no row (lww),
	 * the tombstone's, so that a losing local delete is named too.
	 */
	lc = res && !vc && PQgetisnull(res, rrow, 2) ? 4 : 2;
	vals[5] = res && !PQgetisnull(res, rrow, lc) ? PQgetvalue(res, rrow, lc)
	                                             : NULL;
	vals[6] = res && !PQgetisnull(res, rrow, lc + 1)
	          ? PQgetvalue(res, rrow, lc + 1) : NULL;
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
		xr_apply_copy_err(a->conn, "logging a conflict", errstr, errstr_size);
	PQclear(r);
	xr_buf_term(&key);
	xr_buf_term(&row);
	return ok ? 0 : -1;
}
