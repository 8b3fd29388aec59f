/* backfill.c: the producer's side of a backfill (see backfill.h). */
#include "producer/backfill.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/pqbuf.h"

typedef enum {
	BF_IDLE = 0,  /* no chunk: the next read is due at next_us */
	BF_OPEN,      /* read, waiting for its watermark in the stream */
	BF_READY      /* at its watermark: to publish */
} bf_state_t;

/*
 * Chunks handed to Kafka, up to this many at once: the next is read while
 * the ones before are on their way.  Their progress is stored in order,
 * each once its watermark is safe.
 */
#define MAX_PENDING 8

typedef struct pending_s {
	xr_lsn_t mark_lsn;
	char    *key;        /* the chunk's last key (JSON), NULL if none */
	size_t   sent, skipped;
	int      phase;
	bool     last;       /* a short chunk: the end of its phase */
} pending_t;

/* Columns of a chunk's result after the relation's own. */
enum { V_TS = 0, V_REGION, V_CLSN, V_LSN, V_VECTOR, V_N };

/*
 * A job publishes the table's rows, then its rows hidden by a unique key
 * conflict (xregion.hidden: they come back here when the winner goes, and
 * must then come back in the new region too), then its tombstones (deleted
 * keys with the delete's version) and its truncation marker: a region that
 * starts after the deletes must not take an older write of a deleted key
 * from another region's topic.
 */
enum { PHASE_ROWS = 0, PHASE_HIDDEN, PHASE_TOMBS };
static const char *const phase_names[] = { "rows", "hidden", "tombstones" };

struct xr_backfill_s {
	const xr_config_t *conf;
	xr_relcache_t     *rels;      /* relations as the catalog has them */
	bf_state_t         state;
	int64_t            next_us;   /* no read before then */
	uint64_t           reads;     /* chunks read by this session */

	/* The job at hand (job 0: none). */
	int64_t            job;
	char              *nspname, *relname, *for_region;
	int                chunk_size, rate;
	xr_rel_t          *rel;       /* in rels */
	int                npk;
	char             **pk;        /* primary-key columns, index order */
	int               *pkcol;     /* their column in rel */
	int                phase;     /* PHASE_ROWS, PHASE_HIDDEN, PHASE_TOMBS */
	const char        *from;      /* "FROM ONLY " or, partitioned, "FROM " */
	json_t            *cursor;    /* the next chunk starts after this key
	                                 (NULL: at the phase's start) */
	bool               finished;  /* every chunk is published */
	bool               done_unrecorded; /* finished by an empty read: no
	                                       chunk records the job done */
	pending_t          pend[MAX_PENDING];
	size_t             npend;
	xr_buf_t           sql_first, sql_next;       /* rows */
	xr_buf_t           tomb_first, tomb_next;     /* tombstones */
	xr_buf_t           hid_first, hid_next;       /* hidden rows */
	int64_t            logged_us;
	uint64_t           job_rows;  /* rows this session published */
	int64_t            job_start_us;

	/* The chunk at hand. */
	PGresult          *res;
	int                nrows;
	bool              *dropped;
	size_t             ndropped;
	uint32_t          *slots;     /* hash of the keys: row + 1, 0 empty */
	size_t             nslots;
	char               mark[96];
	int64_t            read_us;
	bool               has_trunc; /* it carries the table's truncation */
	int64_t            trunc_ts;
	char               trunc_region[64];
	xr_lsn_t           trunc_clsn, trunc_lsn;

	long               pause_ms;  /* test hook: sleep between read and mark */

	/* Scratch. */
	xr_pgo_datum_t    *datums;
	json_t            *vector;
	xr_buf_t           key;
	xr_buf_t           ckey;      /* the key of a change (drop_key) */
};

static int64_t
clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

xr_backfill_t *
xr_backfill_new(const xr_config_t *conf)
{
	xr_backfill_t *b = xr_calloc(1, sizeof(*b));

	const char    *pause = getenv("XREGION_BACKFILL_PAUSE_MS");

	b->conf = conf;
	b->pause_ms = pause ? strtol(pause, NULL, 10) : 0;
	b->rels = xr_relcache_new(conf);
	if (!b->rels) {
		free(b);
		return NULL;
	}
	xr_buf_init(&b->sql_first);
	xr_buf_init(&b->sql_next);
	xr_buf_init(&b->tomb_first);
	xr_buf_init(&b->tomb_next);
	xr_buf_init(&b->hid_first);
	xr_buf_init(&b->hid_next);
	xr_buf_init(&b->key);
	xr_buf_init(&b->ckey);
	return b;
}

static void
chunk_clear(xr_backfill_t *b)
{
	PQclear(b->res);
	b->res = NULL;
	b->nrows = 0;
	free(b->dropped);
	b->dropped = NULL;
	b->ndropped = 0;
	free(b->slots);
	b->slots = NULL;
	b->nslots = 0;
	b->mark[0] = '\0';
	b->has_trunc = false;
	b->state = BF_IDLE;
}

/* Drops what was derived from the table's definition (load_job). */
static void
job_unload(xr_backfill_t *b)
{
	int k;

	for (k = 0; k < b->npk; k++)
		free(b->pk[k]);
	free(b->pk);
	free(b->pkcol);
	b->pk = NULL;
	b->pkcol = NULL;
	b->npk = 0;
	b->rel = NULL;
	free(b->datums);
	b->datums = NULL;
}

static void
job_clear(xr_backfill_t *b)
{
	size_t i;

	chunk_clear(b);
	job_unload(b);
	for (i = 0; i < b->npend; i++)
		free(b->pend[i].key);
	b->npend = 0;
	json_decref(b->cursor);
	b->cursor = NULL;
	b->finished = b->done_unrecorded = false;
	free(b->nspname);
	free(b->relname);
	free(b->for_region);
	b->nspname = b->relname = b->for_region = NULL;
	b->job = 0;
	b->job_rows = 0;
}

void
xr_backfill_destroy(xr_backfill_t *b)
{
	if (!b)
		return;
	job_clear(b);
	json_decref(b->vector);
	xr_relcache_destroy(b->rels);
	xr_buf_term(&b->sql_first);
	xr_buf_term(&b->sql_next);
	xr_buf_term(&b->tomb_first);
	xr_buf_term(&b->tomb_next);
	xr_buf_term(&b->hid_first);
	xr_buf_term(&b->hid_next);
	xr_buf_term(&b->key);
	xr_buf_term(&b->ckey);
	free(b);
}

bool
xr_backfill_due(const xr_backfill_t *b, int64_t now_us)
{
	return b->state == BF_IDLE && now_us >= b->next_us && !b->finished &&
	       b->npend < MAX_PENDING;
}

/* FNV-1a of the key text. */
static uint64_t
key_hash(const char *p, size_t n)
{
	uint64_t h = UINT64_C(14695981039346656037);
	size_t   i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= UINT64_C(1099511628211);
	}
	return h;
}

/* The key text of chunk row r into b->key: its key values, NUL-ended. */
static void
row_key(xr_backfill_t *b, int r)
{
	int k;

	xr_buf_reset(&b->key);
	for (k = 0; k < b->npk; k++) {
		xr_buf_append(&b->key, PQgetvalue(b->res, r, b->pkcol[k]),
		              (size_t)PQgetlength(b->res, r, b->pkcol[k]));
		xr_buf_putc(&b->key, '\0');
	}
}

static void
index_rows(xr_backfill_t *b)
{
	int r;

	b->nslots = 16;
	while (b->nslots < (size_t)b->nrows * 2)
		b->nslots *= 2;
	b->slots = xr_calloc(b->nslots, sizeof(*b->slots));
	for (r = 0; r < b->nrows; r++) {
		size_t i;

		row_key(b, r);
		i = key_hash(b->key.data, b->key.len) & (b->nslots - 1);
		while (b->slots[i])
			i = (i + 1) & (b->nslots - 1);
		b->slots[i] = (uint32_t)r + 1;
	}
}

/*
 * Marks the chunk's row with the key of tup (a tuple of the stream's
 * relation rel) dropped.  A key that cannot be read (a value not sent)
 * drops the whole chunk: it is read again.
 */
static void
drop_key(xr_backfill_t *b, const xr_rel_t *rel, const xr_pgo_tuple_t *tup)
{
	xr_buf_t *k = &b->ckey;
	size_t    i;
	int       p, c;

	xr_buf_reset(k);
	for (p = 0; p < b->npk; p++) {
		for (c = 0; c < rel->ncols && c < tup->ncols; c++)
			if (strcmp(rel->cols[c].name, b->pk[p]) == 0)
				break;
		if (c == rel->ncols || c == tup->ncols ||
		    tup->cols[c].kind != XR_PGO_COL_TEXT) {
			xr_debug("backfill: a change of %s.%s without its key "
			         "values: the chunk is read again", b->nspname,
			         b->relname);
			chunk_clear(b);
			return;
		}
		xr_buf_append(k, tup->cols[c].data, tup->cols[c].len);
		xr_buf_putc(k, '\0');
	}
	i = key_hash(k->data, k->len) & (b->nslots - 1);
	for (; b->slots[i]; i = (i + 1) & (b->nslots - 1)) {
		int r = (int)b->slots[i] - 1;

		row_key(b, r);
		if (b->key.len == k->len && memcmp(b->key.data, k->data, k->len) == 0) {
			if (!b->dropped[r]) {
				b->dropped[r] = true;
				b->ndropped++;
			}
			break;
		}
	}
}

bool
xr_backfill_watching(const xr_backfill_t *b)
{
	return b->state == BF_OPEN;
}

void
xr_backfill_change(xr_backfill_t *b, const xr_rel_t *rel, xr_op_t op,
                   const xr_pgo_tuple_t *before, const xr_pgo_tuple_t *after)
{
	if (b->state != BF_OPEN || !rel || rel->relid != b->rel->relid)
		return;
	if (op == XR_OP_TRUNCATE) {
		xr_debug("backfill: %s.%s truncated while a chunk was read: the "
		         "chunk is read again", b->nspname, b->relname);
		chunk_clear(b);
		return;
	}
	if (before && before->ncols > 0)
		drop_key(b, rel, before);
	if (b->state == BF_OPEN && after)
		drop_key(b, rel, after);
}

bool
xr_backfill_mark(xr_backfill_t *b, const char *content, size_t len)
{
	if (b->state != BF_OPEN || len != strlen(b->mark) ||
	    memcmp(content, b->mark, len) != 0)
		return false;
	b->state = BF_READY;
	return true;
}

xr_rel_t *
xr_backfill_rel(xr_backfill_t *b)
{
	return b->rel;
}

const char *
xr_backfill_for(const xr_backfill_t *b)
{
	return b->for_region;
}

size_t
xr_backfill_rows(const xr_backfill_t *b)
{
	return b->state == BF_READY ? (size_t)b->nrows : 0;
}

xr_op_t
xr_backfill_op(const xr_backfill_t *b)
{
	return b->phase == PHASE_TOMBS ? XR_OP_DELETE : XR_OP_SNAPSHOT_READ;
}

bool
xr_backfill_truncation(const xr_backfill_t *b, xr_backfill_version_t *ver)
{
	if (b->state != BF_READY || !b->has_trunc)
		return false;
	memset(ver, 0, sizeof(*ver));
	ver->ts = b->trunc_ts;
	ver->region = b->trunc_region;
	ver->clsn = b->trunc_clsn;
	ver->lsn = b->trunc_lsn;
	return true;
}

bool
xr_backfill_row(xr_backfill_t *b, size_t i, xr_pgo_tuple_t *tup,
                xr_backfill_version_t *ver)
{
	int r = (int)i, c, n = b->rel->ncols;

	if (b->state != BF_READY || r >= b->nrows || b->dropped[r])
		return false;
	for (c = 0; c < n; c++) {
		if (PQgetisnull(b->res, r, c)) {
			b->datums[c].kind = XR_PGO_COL_NULL;
			b->datums[c].data = NULL;
			b->datums[c].len = 0;
		} else {
			b->datums[c].kind = XR_PGO_COL_TEXT;
			b->datums[c].data = PQgetvalue(b->res, r, c);
			b->datums[c].len = (size_t)PQgetlength(b->res, r, c);
		}
	}
	tup->ncols = n;
	tup->cols = b->datums;
	ver->ts = strtoll(PQgetvalue(b->res, r, n + V_TS), NULL, 10);
	ver->region = PQgetvalue(b->res, r, n + V_REGION);
	ver->clsn = (xr_lsn_t)strtoll(PQgetvalue(b->res, r, n + V_CLSN), NULL, 10);
	ver->lsn = (xr_lsn_t)strtoll(PQgetvalue(b->res, r, n + V_LSN), NULL, 10);
	json_decref(b->vector);
	b->vector = NULL;
	if (!PQgetisnull(b->res, r, n + V_VECTOR)) {
		b->vector = json_loads(PQgetvalue(b->res, r, n + V_VECTOR), 0, NULL);
		if (!json_is_object(b->vector)) {
			json_decref(b->vector);
			b->vector = NULL;
		}
	}
	ver->vector = b->vector;
	return true;
}

void
xr_backfill_published(xr_backfill_t *b, xr_lsn_t mark_lsn)
{
	pending_t *pe = &b->pend[b->npend++];
	int        last = b->nrows - 1, k;

	pe->mark_lsn = mark_lsn;
	pe->sent = (size_t)b->nrows - b->ndropped;
	pe->skipped = b->ndropped;
	pe->phase = b->phase;
	pe->last = b->nrows < b->chunk_size;
	pe->key = NULL;
	if (last >= 0) {
		/* The last key read, dropped or not: the next page starts after it. */
		json_t *key = json_array();

		for (k = 0; k < b->npk; k++)
			json_array_append_new(key, json_stringn(
				PQgetvalue(b->res, last, b->pkcol[k]),
				(size_t)PQgetlength(b->res, last, b->pkcol[k])));
		pe->key = json_dumps(key, JSON_COMPACT);
		json_decref(b->cursor);
		b->cursor = key;
	}
	if (pe->last && b->phase != PHASE_TOMBS) {
		b->phase++;
		json_decref(b->cursor);
		b->cursor = NULL;
	} else if (pe->last) {
		b->finished = true;
	}
	b->next_us = b->rate > 0 ? b->read_us + (int64_t)b->nrows * 1000000 /
	                                            b->rate
	                         : 0;
	chunk_clear(b);
}

void
xr_backfill_abandon(xr_backfill_t *b)
{
	chunk_clear(b);
}

/* Sets job b->job failed with reason (logged). */
static int
job_fail(xr_backfill_t *b, PGconn *conn, const char *reason, char *errstr,
         size_t errstr_size)
{
	char        id[24];
	const char *params[2] = { id, reason };
	PGresult   *res;
	int         rc = 0;

	xr_error("backfill %" PRId64 " of %s.%s failed: %s", b->job,
	         b->nspname ? b->nspname : "?", b->relname ? b->relname : "?",
	         reason);
	snprintf(id, sizeof(id), "%" PRId64, b->job);
	res = PQexecParams(conn,
	                   "UPDATE xregion.backfills SET state = 'failed', "
	                   "error = $2, updated_at = now(), finished_at = now() "
	                   "WHERE id = $1",
	                   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(errstr, errstr_size, "backfill: marking job failed: %s",
		         PQerrorMessage(conn));
		rc = -1;
	}
	PQclear(res);
	job_clear(b);
	return rc;
}

/*
 * Appends the version of row t, whose versions entry is v, as the columns
 * of ver: version_of, with its first case (an entry of the row's own
 * writer: most rows) inline, so that the function is called only for the
 * others.
 */
static void
lateral_version(xr_buf_t *sql)
{
	xr_buf_puts(sql,
	            "\nCROSS JOIN LATERAL (\n"
	            "  SELECT v.ts, v.region, coalesce(v.clsn, 0) AS clsn,\n"
	            "         coalesce(v.lsn, 0) AS lsn\n"
	            "  WHERE v.ts IS NOT NULL AND v.xid IS NOT NULL\n"
	            "    AND xid(v.xid) = t.xmin\n"
	            "  UNION ALL\n"
	            "  SELECT * FROM xregion.version_of(t.xmin, v.ts, v.region,\n"
	            "      v.clsn, v.lsn, v.xid)\n"
	            "  WHERE NOT (v.ts IS NOT NULL AND v.xid IS NOT NULL\n"
	            "             AND xid(v.xid) = t.xmin)) ver\n");
}

/*
 * The tombstone queries: the deleted keys of versions table vt that have no
 * row, in key order, each with the delete's version, laid out as a chunk
 * of rows (the key columns set, every other column null).  Uses scratch
 * buffer tmp.  Returns 0, or -1 when a name could not be quoted.
 */
static int
tomb_sql(xr_backfill_t *b, PGconn *conn, const char *vt, xr_buf_t *tmp)
{
	bool     vclock = b->rel->tconf &&
	                  b->rel->tconf->conflict == XR_CONFLICT_VCLOCK;
	xr_buf_t sel, keys, match, params;
	int      i, k, rc = -1;

	xr_buf_init(&sel);
	xr_buf_init(&keys);
	xr_buf_init(&match);
	xr_buf_init(&params);
	xr_buf_puts(&sel, "SELECT ");
	for (i = 0; i < b->rel->ncols; i++) {
		xr_buf_puts(&sel, i ? ", " : "");
		for (k = 0; k < b->npk; k++)
			if (b->pkcol[k] == i)
				break;
		if (k == b->npk) {
			xr_buf_puts(&sel, "NULL");
			continue;
		}
		xr_buf_puts(&sel, "v.");
		if (xr_pqbuf_ident(conn, &sel, b->pk[k]))
			goto out;
	}
	xr_buf_puts(&sel, vclock ? ", v.ts, v.region, 0, 0, v.vv::text"
	                         : ", ver.ts, ver.region, ver.clsn, ver.lsn, "
	                           "NULL");
	xr_buf_puts(&sel, "\nFROM xregion.");
	if (xr_pqbuf_ident(conn, &sel, vt))
		goto out;
	xr_buf_puts(&sel, " v CROSS JOIN LATERAL xregion.tomb_version(v.ts, "
	                  "v.region, v.xid, v.clsn, v.lsn) ver\n"
	                  "WHERE v.deleted AND ver.ts IS NOT NULL\n");
	/*
	 * Not the key of a row hidden by a unique key conflict (its entry is
	 * deleted, with the hidden row's version): the hidden phase sent it.
	 */
	xr_buf_puts(&sel, "  AND NOT EXISTS (SELECT 1 FROM xregion.hidden h "
	                  "WHERE h.table_schema = ");
	if (xr_pqbuf_literal(conn, &sel, b->nspname))
		goto out;
	xr_buf_puts(&sel, " AND h.table_name = ");
	if (xr_pqbuf_literal(conn, &sel, b->relname))
		goto out;
	xr_buf_puts(&sel, " AND h.key = xregion.key_of(");
	xr_buf_reset(tmp);
	if (xr_pqbuf_ident(conn, tmp, b->nspname) ||
	    (xr_buf_putc(tmp, '.'), 0) ||
	    xr_pqbuf_ident(conn, tmp, b->relname) ||
	    xr_pqbuf_literal(conn, &sel, tmp->data))
		goto out;
	xr_buf_puts(&sel, "::regclass, to_jsonb(v)) AND ROW(h.ts, h.region, "
	                  "h.clsn, h.lsn) = ROW(v.ts, v.region, "
	                  "coalesce(v.clsn, 0), coalesce(v.lsn, 0)))\n"
	                  "  AND NOT EXISTS (SELECT 1 ");
	xr_buf_puts(&sel, b->from);
	if (xr_pqbuf_ident(conn, &sel, b->nspname))
		goto out;
	xr_buf_putc(&sel, '.');
	if (xr_pqbuf_ident(conn, &sel, b->relname))
		goto out;
	xr_buf_puts(&sel, " t WHERE ");
	for (k = 0; k < b->npk; k++) {
		xr_buf_reset(tmp);
		if (xr_pqbuf_ident(conn, tmp, b->pk[k]))
			goto out;
		xr_buf_printf(&sel, "%st.%s = v.%s", k ? " AND " : "", tmp->data,
		              tmp->data);
		xr_buf_printf(&keys, "%sv.%s", k ? ", " : "", tmp->data);
		xr_buf_printf(&params, "%s$%d", k ? ", " : "", k + 1);
	}
	xr_buf_puts(&sel, ")\n");
	xr_buf_reset(&b->tomb_first);
	xr_buf_reset(&b->tomb_next);
	xr_buf_printf(&b->tomb_first, "%sORDER BY %s LIMIT %d", sel.data,
	              keys.data, b->chunk_size);
	xr_buf_printf(&b->tomb_next, "%sAND (%s) > (%s)\nORDER BY %s LIMIT %d",
	              sel.data, keys.data, params.data, keys.data, b->chunk_size);
	rc = 0;
out:
	xr_buf_term(&sel);
	xr_buf_term(&keys);
	xr_buf_term(&match);
	xr_buf_term(&params);
	return rc;
}

/*
 * The queries of the rows hidden by a unique key conflict: each hidden
 * row's image as the table's columns, with the version it was hidden with
 * (for vclock, its key's vector), in key order.  Returns 0, or -1 when a
 * name could not be quoted.
 */
static int
hidden_sql(xr_backfill_t *b, PGconn *conn, const char *vt)
{
	bool     vclock = b->rel->tconf &&
	                  b->rel->tconf->conflict == XR_CONFLICT_VCLOCK;
	xr_buf_t sel, keys, params, id;
	int      i, k, rc = -1;

	xr_buf_init(&sel);
	xr_buf_init(&keys);
	xr_buf_init(&params);
	xr_buf_init(&id);
	xr_buf_puts(&sel, "SELECT ");
	for (i = 0; i < b->rel->ncols; i++) {
		xr_buf_puts(&sel, i ? ", r." : "r.");
		if (xr_pqbuf_ident(conn, &sel, b->rel->cols[i].name))
			goto out;
	}
	xr_buf_printf(&sel, ", h.ts, h.region, h.clsn, h.lsn, %s\n"
	              "FROM xregion.hidden h CROSS JOIN LATERAL "
	              "jsonb_populate_record(NULL::", vclock ? "v.vv::text" : "NULL");
	if (xr_pqbuf_ident(conn, &sel, b->nspname))
		goto out;
	xr_buf_putc(&sel, '.');
	if (xr_pqbuf_ident(conn, &sel, b->relname))
		goto out;
	xr_buf_puts(&sel, ", h.image) r\n");
	for (k = 0; k < b->npk; k++) {
		xr_buf_reset(&id);
		if (xr_pqbuf_ident(conn, &id, b->pk[k]))
			goto out;
		xr_buf_printf(&keys, "%sr.%s", k ? ", " : "", id.data);
		xr_buf_printf(&params, "%s$%d", k ? ", " : "", k + 1);
	}
	if (vclock) {
		xr_buf_puts(&sel, "LEFT JOIN xregion.");
		if (xr_pqbuf_ident(conn, &sel, vt))
			goto out;
		xr_buf_puts(&sel, " v ON ");
		for (k = 0; k < b->npk; k++) {
			xr_buf_reset(&id);
			if (xr_pqbuf_ident(conn, &id, b->pk[k]))
				goto out;
			xr_buf_printf(&sel, "%sv.%s = r.%s", k ? " AND " : "", id.data,
			              id.data);
		}
		xr_buf_putc(&sel, '\n');
	}
	xr_buf_puts(&sel, "WHERE h.table_schema = ");
	if (xr_pqbuf_literal(conn, &sel, b->nspname))
		goto out;
	xr_buf_puts(&sel, " AND h.table_name = ");
	if (xr_pqbuf_literal(conn, &sel, b->relname))
		goto out;
	xr_buf_putc(&sel, '\n');
	xr_buf_reset(&b->hid_first);
	xr_buf_reset(&b->hid_next);
	xr_buf_printf(&b->hid_first, "%sORDER BY %s LIMIT %d", sel.data,
	              keys.data, b->chunk_size);
	xr_buf_printf(&b->hid_next, "%sAND (%s) > (%s)\nORDER BY %s LIMIT %d",
	              sel.data, keys.data, params.data, keys.data, b->chunk_size);
	rc = 0;
out:
	xr_buf_term(&sel);
	xr_buf_term(&keys);
	xr_buf_term(&params);
	xr_buf_term(&id);
	return rc;
}

/*
 * Reads the relation of the job from the catalog into b->rels and builds
 * the chunk queries.  Returns 0, 1 with reason set when the job cannot run,
 * or -1 with errstr (database error).
 */
static int
load_job(xr_backfill_t *b, PGconn *conn, char *reason, size_t reason_size,
         char *errstr, size_t errstr_size)
{
	const char *params[3] = { b->nspname, b->relname, b->conf->publication };
	PGresult   *res = NULL;
	xr_pgo_msg_t m;
	xr_pgo_relcol_t *cols = NULL;
	char      **keys = NULL;
	char        vt[XR_CONFIG_MAX_VTNAME + 1];
	xr_buf_t    sel, pk_list, pk_row, params_row;
	int         i, k, n, rc = -1;

	memset(&m, 0, sizeof(m));
	job_unload(b);
	xr_buf_init(&sel);
	xr_buf_init(&pk_list);
	xr_buf_init(&pk_row);
	xr_buf_init(&params_row);
	if (!xr_config_publishes(b->conf, b->nspname, b->relname)) {
		snprintf(reason, reason_size, "table %s.%s is not marked pii: false "
		         "in %s: a backfill never ships it", b->nspname, b->relname,
		         b->conf->path);
		rc = 1;
		goto out;
	}
	/* The columns pgoutput sends: the publication's column list. */
	res = PQexecParams(
		conn,
		"SELECT c.oid, c.relreplident, a.attname, a.atttypid, a.atttypmod, "
		"       tn.nspname, ty.typname, c.relkind "
		"FROM pg_catalog.pg_class c "
		"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
		"JOIN pg_catalog.pg_publication_tables p ON p.pubname = $3 "
		"  AND p.schemaname = n.nspname AND p.tablename = c.relname "
		"JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
		"  AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' "
		"  AND a.attname = ANY (p.attnames) "
		"JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid "
		"JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace "
		"WHERE n.nspname = $1 AND c.relname = $2 ORDER BY a.attnum",
		3, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "backfill: reading the columns of "
		         "%s.%s: %s", b->nspname, b->relname, PQerrorMessage(conn));
		goto out;
	}
	n = PQntuples(res);
	if (n == 0) {
		snprintf(reason, reason_size, "table %s.%s is not in publication %s "
		         "(was xregion setup run with it in the config?)",
		         b->nspname, b->relname, b->conf->publication);
		rc = 1;
		goto out;
	}
	cols = xr_calloc((size_t)n, sizeof(*cols));
	for (i = 0; i < n; i++) {
		uint32_t typid = (uint32_t)strtoul(PQgetvalue(res, i, 3), NULL, 10);

		cols[i].name = PQgetvalue(res, i, 2);
		cols[i].typid = typid;
		cols[i].typmod = (int32_t)strtol(PQgetvalue(res, i, 4), NULL, 10);
		/* pgoutput describes the types it does not know as built in. */
		if (typid >= 10000)
			xr_relcache_type(b->rels, typid, PQgetvalue(res, i, 5),
			                 PQgetvalue(res, i, 6));
	}
	m.kind = XR_PGO_RELATION;
	m.u.relation.relid = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
	m.u.relation.nspname = b->nspname;
	m.u.relation.relname = b->relname;
	m.u.relation.replident = PQgetvalue(res, 0, 1)[0];
	/* A partitioned table's rows are its partitions'; a table's own are
	 * its alone (not an inheritance child's, published on its own). */
	b->from = PQgetvalue(res, 0, 7)[0] == 'p' ? "FROM " : "FROM ONLY ";
	m.u.relation.ncols = n;
	m.u.relation.cols = cols;

	/* The primary key, in the index's order (the order of the pages). */
	{
		char        oid[16];
		const char *p1[1] = { oid };
		PGresult   *kr;

		snprintf(oid, sizeof(oid), "%" PRIu32, m.u.relation.relid);
		kr = PQexecParams(conn,
		                  "SELECT a.attname FROM pg_catalog.pg_index i, "
		                  "unnest(i.indkey) WITH ORDINALITY k(attnum, ord) "
		                  "JOIN pg_catalog.pg_attribute a ON a.attnum = k.attnum "
		                  "WHERE i.indrelid = $1::oid AND i.indisprimary "
		                  "AND a.attrelid = i.indrelid ORDER BY k.ord",
		                  1, NULL, p1, NULL, NULL, 0);
		if (PQresultStatus(kr) != PGRES_TUPLES_OK) {
			snprintf(errstr, errstr_size, "backfill: reading the primary key "
			         "of %s.%s: %s", b->nspname, b->relname,
			         PQerrorMessage(conn));
			PQclear(kr);
			goto out;
		}
		b->npk = PQntuples(kr);
		if (b->npk == 0) {
			PQclear(kr);
			snprintf(reason, reason_size, "table %s.%s has no primary key: a "
			         "backfill pages by it (add one)", b->nspname,
			         b->relname);
			rc = 1;
			goto out;
		}
		b->pk = xr_calloc((size_t)b->npk, sizeof(char *));
		keys = xr_calloc((size_t)b->npk + 1, sizeof(char *));
		for (k = 0; k < b->npk; k++) {
			b->pk[k] = xr_strdup(PQgetvalue(kr, k, 0));
			keys[k] = b->pk[k];
		}
		PQclear(kr);
	}
	if (xr_relcache_update(b->rels, &m, (const char *const *)keys, &b->rel,
	                       reason, reason_size)) {
		rc = 1;
		goto out;
	}
	b->pkcol = xr_calloc((size_t)b->npk, sizeof(int));
	for (k = 0; k < b->npk; k++) {
		for (i = 0; i < b->rel->ncols; i++)
			if (strcmp(b->rel->cols[i].name, b->pk[k]) == 0)
				break;
		if (i == b->rel->ncols) {
			snprintf(reason, reason_size, "primary-key column %s of %s.%s is "
			         "not in publication %s's column list", b->pk[k],
			         b->nspname, b->relname, b->conf->publication);
			rc = 1;
			goto out;
		}
		b->pkcol[k] = i;
	}
	if (xr_config_versions_name(b->nspname, b->relname, vt, sizeof(vt))) {
		snprintf(reason, reason_size, "the versions table name of %s.%s is "
		         "too long", b->nspname, b->relname);
		rc = 1;
		goto out;
	}

	/* SELECT t.<cols>, <version> FROM ONLY t LEFT JOIN versions v ... */
	xr_buf_puts(&sel, "SELECT ");
	for (i = 0; i < b->rel->ncols; i++) {
		xr_buf_puts(&sel, i ? ", t." : "t.");
		if (xr_pqbuf_ident(conn, &sel, b->rel->cols[i].name))
			goto quote;
	}
	if (b->rel->tconf && b->rel->tconf->conflict == XR_CONFLICT_VCLOCK)
		xr_buf_puts(&sel,
		            ", CASE WHEN v.vv IS NOT NULL THEN v.ts ELSE ver.ts END, "
		            "CASE WHEN v.vv IS NOT NULL THEN v.region "
		            "ELSE ver.region END, "
		            "CASE WHEN v.vv IS NOT NULL THEN 0 ELSE ver.clsn END, "
		            "CASE WHEN v.vv IS NOT NULL THEN 0 ELSE ver.lsn END, "
		            "v.vv::text");
	else
		xr_buf_puts(&sel, ", ver.ts, ver.region, ver.clsn, ver.lsn, NULL");
	xr_buf_putc(&sel, '\n');
	xr_buf_puts(&sel, b->from);
	if (xr_pqbuf_ident(conn, &sel, b->nspname))
		goto quote;
	xr_buf_putc(&sel, '.');
	if (xr_pqbuf_ident(conn, &sel, b->relname))
		goto quote;
	xr_buf_puts(&sel, " t LEFT JOIN xregion.");
	if (xr_pqbuf_ident(conn, &sel, vt))
		goto quote;
	xr_buf_puts(&sel, " v ON ");
	for (k = 0; k < b->npk; k++) {
		xr_buf_t id;

		xr_buf_init(&id);
		if (xr_pqbuf_ident(conn, &id, b->pk[k])) {
			xr_buf_term(&id);
			goto quote;
		}
		xr_buf_printf(&sel, "%sv.%s = t.%s", k ? " AND " : "", id.data,
		              id.data);
		xr_buf_printf(&pk_list, "%st.%s", k ? ", " : "", id.data);
		xr_buf_printf(&pk_row, "%sv.%s", k ? ", " : "", id.data);
		xr_buf_printf(&params_row, "%s$%d", k ? ", " : "", k + 1);
		xr_buf_term(&id);
	}
	/*
	 * The next page's join condition bounds the versions table too: a
	 * merge join would otherwise scan it from its start every chunk.
	 */
	{
		xr_buf_t next;

		xr_buf_init(&next);
		xr_buf_printf(&next, "%s AND (%s) > (%s)", sel.data, pk_row.data,
		              params_row.data);
		lateral_version(&sel);
		lateral_version(&next);
		xr_buf_reset(&b->sql_next);
		xr_buf_printf(&b->sql_next, "%sWHERE (%s) > (%s)\nORDER BY %s LIMIT %d",
		              next.data, pk_list.data, params_row.data, pk_list.data,
		              b->chunk_size);
		xr_buf_term(&next);
	}
	xr_buf_reset(&b->sql_first);
	xr_buf_printf(&b->sql_first, "%sORDER BY %s LIMIT %d", sel.data,
	              pk_list.data, b->chunk_size);
	if (tomb_sql(b, conn, vt, &pk_row) || hidden_sql(b, conn, vt))
		goto quote;
	b->datums = xr_calloc((size_t)b->rel->ncols + 1, sizeof(*b->datums));
	rc = 0;
	goto out;
quote:
	snprintf(errstr, errstr_size, "backfill: quoting a name: %s",
	         PQerrorMessage(conn));
out:
	PQclear(res);
	free(cols);
	free(keys);
	xr_buf_term(&sel);
	xr_buf_term(&pk_list);
	xr_buf_term(&pk_row);
	xr_buf_term(&params_row);
	return rc;
}

/*
 * Looks up the first unfinished job.  Returns 1 with the job loaded (a new
 * one is marked running) and *last_key its stored position (new JSON, or
 * NULL at the start), 0 when there is none, -1 with errstr.
 */
static int
next_job(xr_backfill_t *b, PGconn *conn, json_t **last_key, char *errstr,
         size_t errstr_size)
{
	PGresult *res;
	char      reason[1024];
	int64_t   id;
	int       rc;

	*last_key = NULL;
	res = PQexec(conn,
	             "SELECT id, table_schema, table_name, for_region, chunk_size, "
	             "rate, last_key::text, state, phase FROM xregion.backfills "
	             "WHERE state IN ('pending', 'running') ORDER BY id LIMIT 1");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "backfill: reading the jobs: %s",
		         PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		if (b->job)
			job_clear(b);
		return 0;
	}
	id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (!PQgetisnull(res, 0, 6))
		*last_key = json_loads(PQgetvalue(res, 0, 6), 0, NULL);
	if (id == b->job) {
		/*
		 * xregion backfill --rate may change it while the job runs; the
		 * position is this session's (chunks ahead of the stored one).
		 */
		b->rate = atoi(PQgetvalue(res, 0, 5));
		json_decref(*last_key);
		*last_key = json_incref(b->cursor);
		PQclear(res);
		/* The table as it is now: a column added since is read too. */
		reason[0] = '\0';
		rc = load_job(b, conn, reason, sizeof(reason), errstr, errstr_size);
		if (rc == 0)
			return 1;
		json_decref(*last_key);
		*last_key = NULL;
		if (rc < 0)
			return -1;
		return job_fail(b, conn, reason, errstr, errstr_size) ? -1 : 0;
	}
	job_clear(b);
	b->job = id;
	b->nspname = xr_strdup(PQgetvalue(res, 0, 1));
	b->relname = xr_strdup(PQgetvalue(res, 0, 2));
	b->for_region = PQgetisnull(res, 0, 3) ? NULL
	                                       : xr_strdup(PQgetvalue(res, 0, 3));
	b->chunk_size = atoi(PQgetvalue(res, 0, 4));
	if (b->chunk_size < 1)
		b->chunk_size = 1;
	b->rate = atoi(PQgetvalue(res, 0, 5));
	b->phase = strcmp(PQgetvalue(res, 0, 8), "tombstones") == 0 ? PHASE_TOMBS
	           : strcmp(PQgetvalue(res, 0, 8), "hidden") == 0 ? PHASE_HIDDEN
	           : PHASE_ROWS;
	b->cursor = json_incref(*last_key);
	PQclear(res);
	b->job_start_us = b->logged_us = clock_us();
	reason[0] = '\0';
	rc = load_job(b, conn, reason, sizeof(reason), errstr, errstr_size);
	if (rc != 0) {
		json_decref(*last_key);
		*last_key = NULL;
		if (rc < 0) {
			job_clear(b);
			return -1;
		}
		return job_fail(b, conn, reason, errstr, errstr_size) ? -1 : 0;
	}
	{
		char        idb[24];
		const char *p[1] = { idb };

		snprintf(idb, sizeof(idb), "%" PRId64, id);
		res = PQexecParams(conn,
		                   "UPDATE xregion.backfills SET state = 'running', "
		                   "started_at = coalesce(started_at, now()), "
		                   "updated_at = now() WHERE id = $1 "
		                   "AND state = 'pending'",
		                   1, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			snprintf(errstr, errstr_size, "backfill: starting job: %s",
			         PQerrorMessage(conn));
			PQclear(res);
			job_clear(b);
			json_decref(*last_key);
			*last_key = NULL;
			return -1;
		}
		PQclear(res);
	}
	xr_info("backfill %" PRId64 " of %s.%s %s: chunks of %d rows%s%s%s",
	        id, b->nspname, b->relname, *last_key ? "resumes" : "starts",
	        b->chunk_size, b->for_region ? ", for region " : "",
	        b->for_region ? b->for_region : "",
	        b->rate ? ", rate-limited" : "");
	return 1;
}

/* Marks the job done. */
static int
job_done(xr_backfill_t *b, PGconn *conn, char *errstr, size_t errstr_size)
{
	char        id[24];
	const char *p[1] = { id };
	PGresult   *res;

	snprintf(id, sizeof(id), "%" PRId64, b->job);
	res = PQexecParams(conn,
	                   "UPDATE xregion.backfills SET state = 'done', "
	                   "updated_at = now(), finished_at = now() "
	                   "WHERE id = $1 AND state = 'running' "
	                   "RETURNING rows_sent, rows_skipped, tombstones_sent",
	                   1, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "backfill: finishing job: %s",
		         PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	if (PQntuples(res) == 1)
		xr_info("backfill %" PRId64 " of %s.%s done: %s rows and %s "
		        "tombstones published, %s left to the stream (changed while "
		        "read)", b->job, b->nspname, b->relname,
		        PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2),
		        PQgetvalue(res, 0, 1));
	PQclear(res);
	job_clear(b);
	return 0;
}

/* The table's truncation marker with its version, into b->has_trunc... */
static int
read_truncation(xr_backfill_t *b, PGconn *conn, char *errstr,
                size_t errstr_size)
{
	const char *p[2] = { b->nspname, b->relname };
	PGresult   *res = PQexecParams(
		conn,
		"SELECT ver.ts, ver.region, ver.clsn, ver.lsn "
		"FROM xregion.truncations x CROSS JOIN LATERAL "
		"xregion.tomb_version(x.ts, x.region, x.xid, x.clsn, x.lsn) ver "
		"WHERE x.table_schema = $1 AND x.table_name = $2 "
		"AND ver.ts IS NOT NULL",
		2, NULL, p, NULL, NULL, 0);

	b->has_trunc = false;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "backfill: reading the truncation of "
		         "%s.%s: %s", b->nspname, b->relname, PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	if (PQntuples(res) == 1) {
		b->has_trunc = true;
		b->trunc_ts = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		snprintf(b->trunc_region, sizeof(b->trunc_region), "%s",
		         PQgetvalue(res, 0, 1));
		b->trunc_clsn = (xr_lsn_t)strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		b->trunc_lsn = (xr_lsn_t)strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	}
	PQclear(res);
	return 0;
}

/*
 * A phase is all read: on to the next.  Not stored: a restart reads the
 * phase from the stored key on, finds nothing, and comes here again.
 */
static void
next_phase(xr_backfill_t *b)
{
	b->phase++;
	json_decref(b->cursor);
	b->cursor = NULL;
	b->next_us = 0;
}

int
xr_backfill_read(xr_backfill_t *b, PGconn *conn, int64_t now_us,
                 char *errstr, size_t errstr_size)
{
	json_t     *last = NULL;
	const char **params = NULL;
	PGresult   *res;
	char        mark[96];
	const char *mp[1] = { mark };
	int         rc, k;

	if (b->state != BF_IDLE || b->finished)
		return 0;
	rc = next_job(b, conn, &last, errstr, errstr_size);
	if (rc <= 0) {
		b->next_us = now_us + (rc < 0 ? 5000000 : 2000000);
		return rc;
	}
	if (last && (!json_is_array(last) ||
	             json_array_size(last) != (size_t)b->npk)) {
		json_decref(last);
		return job_fail(b, conn, "its stored position (last_key) does not "
		                "match the table's primary key", errstr, errstr_size);
	}
	if (last) {
		params = xr_calloc((size_t)b->npk, sizeof(char *));
		for (k = 0; k < b->npk; k++)
			params[k] = json_string_value(json_array_get(last, (size_t)k));
	}
	/* The truncation marker goes with the first chunk of tombstones. */
	if (b->phase == PHASE_TOMBS && !last &&
	    read_truncation(b, conn, errstr, errstr_size)) {
		free(params);
		b->next_us = now_us + 5000000;
		return -1;
	}
	if (b->phase == PHASE_TOMBS)
		res = PQexecParams(conn, last ? b->tomb_next.data : b->tomb_first.data,
		                   last ? b->npk : 0, NULL, params, NULL, NULL, 0);
	else if (b->phase == PHASE_HIDDEN)
		res = PQexecParams(conn, last ? b->hid_next.data : b->hid_first.data,
		                   last ? b->npk : 0, NULL, params, NULL, NULL, 0);
	else
		res = PQexecParams(conn, last ? b->sql_next.data : b->sql_first.data,
		                   last ? b->npk : 0, NULL, params, NULL, NULL, 0);
	free(params);
	json_decref(last);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "backfill: reading %s of %s.%s: %s",
		         phase_names[b->phase], b->nspname, b->relname,
		         PQerrorMessage(conn));
		PQclear(res);
		chunk_clear(b);
		b->next_us = now_us + 5000000;
		return -1;
	}
	if (PQntuples(res) == 0 && !b->has_trunc) {
		PQclear(res);
		if (b->phase != PHASE_TOMBS) {
			next_phase(b);
			return 0;
		}
		/* Done once the chunks still on their way are safe. */
		b->finished = true;
		if (b->npend > 0) {
			b->done_unrecorded = true;
			return 0;
		}
		return job_done(b, conn, errstr, errstr_size);
	}
	b->res = res;
	b->nrows = PQntuples(res);
	b->dropped = xr_calloc((size_t)b->nrows, sizeof(bool));
	index_rows(b);
	if (b->pause_ms > 0) {
		/* Test hook: writes committed now fall inside the window. */
		xr_info("backfill %" PRId64 ": chunk of %d %s read; watermark in "
		        "%ld ms (XREGION_BACKFILL_PAUSE_MS)", b->job, b->nrows,
		        phase_names[b->phase], b->pause_ms);
		usleep((useconds_t)b->pause_ms * 1000);
	}
	b->read_us = now_us;
	snprintf(mark, sizeof(mark), "%" PRId64 "/%" PRIu64 "/%" PRId64, b->job,
	         ++b->reads, now_us);
	/*
	 * Transactional, in a transaction of its own: its commit flushes the
	 * WAL, so the stream brings it at once (a message outside a
	 * transaction waits for the next flush, up to wal_writer_delay).
	 */
	res = PQexecParams(conn,
	                   "SELECT pg_catalog.pg_logical_emit_message(true, "
	                   "'" XR_BACKFILL_PREFIX "', $1)",
	                   1, NULL, mp, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "backfill: writing a watermark: %s",
		         PQerrorMessage(conn));
		PQclear(res);
		chunk_clear(b);
		b->next_us = now_us + 5000000;
		return -1;
	}
	PQclear(res);
	memcpy(b->mark, mark, sizeof(mark));
	b->state = BF_OPEN;
	return 0;
}

bool
xr_backfill_safe(const xr_backfill_t *b, xr_lsn_t safe_lsn)
{
	return b->npend > 0 && safe_lsn >= b->pend[0].mark_lsn;
}

/* Stores the progress of pending chunk pe.  Returns 0 or -1. */
static int
store_chunk(xr_backfill_t *b, PGconn *conn, const pending_t *pe,
            char *errstr, size_t errstr_size)
{
	char        id[24], sent[24], skipped[24];
	const char *p[7];
	PGresult   *res;
	bool        finished = pe->last && pe->phase == PHASE_TOMBS;
	int64_t     now;

	snprintf(id, sizeof(id), "%" PRId64, b->job);
	snprintf(sent, sizeof(sent), "%zu", pe->sent);
	snprintf(skipped, sizeof(skipped), "%zu", pe->skipped);
	p[0] = id;
	/* A short chunk ends its phase: the rows, then the tombstones. */
	p[1] = pe->last ? NULL : pe->key;
	p[2] = sent;
	p[3] = skipped;
	p[4] = finished ? "done" : "running";
	p[5] = pe->last && pe->phase != PHASE_TOMBS ? phase_names[pe->phase + 1]
	                                             : phase_names[pe->phase];
	p[6] = phase_names[pe->phase];
	res = PQexecParams(conn,
	                   "UPDATE xregion.backfills SET last_key = $2::jsonb, "
	                   "rows_sent = rows_sent + CASE WHEN $7 <> 'tombstones' "
	                   "  THEN $3::bigint ELSE 0 END, "
	                   "tombstones_sent = tombstones_sent + CASE WHEN $7 = "
	                   "  'tombstones' THEN $3::bigint ELSE 0 END, "
	                   "rows_skipped = rows_skipped + $4, chunks = chunks + 1, "
	                   "state = $5, phase = $6, updated_at = now(), "
	                   "finished_at = CASE WHEN $5 = 'done' THEN now() END "
	                   "WHERE id = $1 AND state = 'running' "
	                   "RETURNING rows_sent, rows_skipped, rows_total, "
	                   "tombstones_sent",
	                   7, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "backfill: recording progress: %s",
		         PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	b->job_rows += pe->sent;
	now = clock_us();
	/* (A cancelled job updates nothing: the next look finds another.) */
	if (PQntuples(res) == 1 && (finished || now - b->logged_us >= 30000000)) {
		double secs = (double)(now - b->job_start_us) / 1e6;

		xr_info("backfill %" PRId64 " of %s.%s %s: %s of ~%s rows and %s "
		        "tombstones published (%.0f/s), %s left to the stream",
		        b->job, b->nspname, b->relname, finished ? "done" : "running",
		        PQgetvalue(res, 0, 0),
		        PQgetisnull(res, 0, 2) ? "?" : PQgetvalue(res, 0, 2),
		        PQgetvalue(res, 0, 3),
		        secs > 0 ? (double)b->job_rows / secs : 0.0,
		        PQgetvalue(res, 0, 1));
		b->logged_us = now;
	}
	PQclear(res);
	return 0;
}

int
xr_backfill_acked(xr_backfill_t *b, PGconn *conn, xr_lsn_t safe_lsn,
                  char *errstr, size_t errstr_size)
{
	while (b->npend > 0 && safe_lsn >= b->pend[0].mark_lsn) {
		if (store_chunk(b, conn, &b->pend[0], errstr, errstr_size))
			return -1;
		free(b->pend[0].key);
		memmove(&b->pend[0], &b->pend[1],
		        (b->npend - 1) * sizeof(b->pend[0]));
		b->npend--;
	}
	if (b->finished && b->npend == 0 && b->job) {
		if (b->done_unrecorded)
			return job_done(b, conn, errstr, errstr_size);
		job_clear(b);
	}
	return 0;
}
