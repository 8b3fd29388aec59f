/* txq.c: transactions assembled from the topics (see txq.h). */
#include "consumer/txq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/avro_codec.h"
#include "common/kafka_conf.h"
#include "common/log.h"
#include "common/mem.h"

/* One queued message of a change topic. */
typedef struct qmsg_s {
	rd_kafka_message_t *m;
	xr_lsn_t            clsn;   /* header xr-tx; 0: no transaction */
	int64_t             txi;
	xr_lsn_t            prev;   /* header xr-prev (first event only), 0 */
	size_t              stream; /* header xr-stream, in its region's */
} qmsg_t;

/* Where an end record says its events are on one partition. */
typedef struct range_s {
	int64_t first, last;
} range_t;

typedef struct qpart_s {
	char    *topic;
	int32_t  partition;
	size_t   region;
	bool     is_tx;         /* the region's transactions topic */
	qmsg_t  *ring;          /* change topics: queued messages */
	size_t   head, len, cap;
	range_t *ranges;        /* of the queued end records naming it, in order */
	size_t   rhead, rlen, rcap;
	int64_t  received;      /* offset after the last message queued, -1 */
	int64_t  taken;         /* ... after the last handed out, -1 */
	int64_t  committed;     /* ... after the last stored, -1: from start */
	int64_t  skip_through;  /* events at or below: copies skipped, -1 */
	int64_t  early_first;   /* the first event taken early from it, -1 */
	bool     paused;        /* full: the caller paused it */
} qpart_t;

typedef struct qend_part_s {
	size_t  part;
	int64_t first, last, events;
} qend_part_t;

/* One end record. */
typedef struct qend_s {
	rd_kafka_message_t *m;
	bool                bad;     /* undecodable: its region waits */
	xr_lsn_t            clsn;
	int64_t             commit_ts;
	int64_t             events;
	char                sysid[32];
	size_t              stream;  /* index in its region's streams */
	qend_part_t        *p;
	size_t              np;
} qend_t;

/*
 * One producer of a region (its end records carry header xr-stream; ""
 * is the main one): its own applied position, since two producers'
 * transactions interleave on the transactions topic in no LSN order.
 */
typedef struct qstream_s {
	char     name[40];
	xr_lsn_t applied;        /* committed */
	char     sysid[32];
	xr_lsn_t taking;         /* applied, or the last one taken since */
	bool     taken_pos;      /* a transaction was taken since the commit */
	xr_lsn_t taken_lsn;
	char     taken_sysid[32];
	int64_t  taken_ts;
} qstream_t;

typedef struct qregion_s {
	char     name[64];
	size_t   tx_part;        /* its transactions partition, SIZE_MAX */
	qend_t  *ends;           /* ring of end records */
	size_t   ehead, elen, ecap;
	bool     loaded;         /* its streams' positions are read */
	qstream_t *streams;
	size_t   nstreams;
	bool     piece;          /* the head transaction goes in pieces */
	int64_t  piece_events;   /* its events handed out so far */
	/*
	 * Early: the big transaction being handed out before its end record
	 * came (0: none), strictly in tx_index order; early_next is the
	 * tx_index it hands out next, and stays (the events before it are
	 * out) once the record came.  big_clsn: the last transaction seen
	 * with an event at tx_index >= batch_size.  early_off: one whose early
	 * start went wrong (xr_txq_piece_broken), waited for whole.
	 */
	xr_lsn_t early;
	int64_t  early_next;
	bool     broken;
	xr_lsn_t big_clsn;
	xr_lsn_t early_off;
} qregion_t;

struct xr_txq_s {
	const xr_config_t *conf;
	size_t     cap;
	qpart_t   *parts;
	size_t     nparts, partcap;
	qregion_t *regions;
	size_t     nregions, regcap;
};

xr_txq_t *
xr_txq_new(const xr_config_t *conf, size_t cap)
{
	xr_txq_t *q = xr_calloc(1, sizeof(*q));

	q->conf = conf;
	q->cap = cap < 16 ? 16 : cap;
	return q;
}

static void
part_drop(qpart_t *p)
{
	size_t i;

	for (i = 0; i < p->len; i++)
		rd_kafka_message_destroy(p->ring[(p->head + i) % p->cap].m);
	p->head = p->len = 0;
	p->rhead = p->rlen = 0;
}

static void
end_free(qend_t *e)
{
	if (e->m)
		rd_kafka_message_destroy(e->m);
	free(e->p);
	memset(e, 0, sizeof(*e));
}

static void
region_drop_ends(qregion_t *g)
{
	size_t i;

	for (i = 0; i < g->elen; i++)
		end_free(&g->ends[(g->ehead + i) % g->ecap]);
	g->ehead = g->elen = 0;
	g->piece = false;
	g->piece_events = 0;
	g->early = 0;
	g->early_next = 0;
	g->broken = false;
	g->big_clsn = 0;
}

void
xr_txq_clear(xr_txq_t *q)
{
	size_t i;

	for (i = 0; i < q->nparts; i++) {
		part_drop(&q->parts[i]);
		free(q->parts[i].ring);
		free(q->parts[i].ranges);
		free(q->parts[i].topic);
	}
	for (i = 0; i < q->nregions; i++) {
		region_drop_ends(&q->regions[i]);
		free(q->regions[i].ends);
		free(q->regions[i].streams);
	}
	free(q->parts);
	free(q->regions);
	q->parts = NULL;
	q->regions = NULL;
	q->nparts = q->partcap = q->nregions = q->regcap = 0;
}

void
xr_txq_destroy(xr_txq_t *q)
{
	if (!q)
		return;
	xr_txq_clear(q);
	free(q);
}

/* The region of "<prefix>.<region>.*", by index (added if new), or -1. */
static long
region_of(xr_txq_t *q, const char *topic)
{
	size_t      plen = strlen(q->conf->topic_prefix), i;
	const char *r, *dot;
	qregion_t  *g;

	if (strncmp(topic, q->conf->topic_prefix, plen) != 0 || topic[plen] != '.')
		return -1;
	r = topic + plen + 1;
	dot = strchr(r, '.');
	if (!dot || dot == r || (size_t)(dot - r) >= sizeof(g->name))
		return -1;
	for (i = 0; i < q->nregions; i++)
		if (strlen(q->regions[i].name) == (size_t)(dot - r) &&
		    memcmp(q->regions[i].name, r, (size_t)(dot - r)) == 0)
			return (long)i;
	if (q->nregions == q->regcap) {
		q->regcap = q->regcap ? 2 * q->regcap : 4;
		q->regions = xr_reallocarray(q->regions, q->regcap, sizeof(*g));
	}
	g = &q->regions[q->nregions];
	memset(g, 0, sizeof(*g));
	memcpy(g->name, r, (size_t)(dot - r));
	g->tx_part = SIZE_MAX;
	return (long)q->nregions++;
}

/* The partition's state (added if new), or NULL: not a topic of a region. */
static qpart_t *
part_of(xr_txq_t *q, const char *topic, int32_t partition)
{
	size_t   i, plen = strlen(q->conf->topic_prefix);
	long     r;
	qpart_t *p;

	for (i = 0; i < q->nparts; i++)
		if (q->parts[i].partition == partition &&
		    strcmp(q->parts[i].topic, topic) == 0)
			return &q->parts[i];
	if ((r = region_of(q, topic)) < 0)
		return NULL;
	if (q->nparts == q->partcap) {
		q->partcap = q->partcap ? 2 * q->partcap : 16;
		q->parts = xr_reallocarray(q->parts, q->partcap, sizeof(*p));
	}
	p = &q->parts[q->nparts];
	memset(p, 0, sizeof(*p));
	p->topic = xr_strdup(topic);
	p->partition = partition;
	p->region = (size_t)r;
	p->received = p->taken = p->committed = p->skip_through = -1;
	p->early_first = -1;
	/* <prefix>.<region>._tx */
	p->is_tx = strcmp(topic + plen + 1 + strlen(q->regions[r].name),
	                  "._tx") == 0;
	if (p->is_tx)
		q->regions[r].tx_part = q->nparts;
	q->nparts++;
	return p;
}

void
xr_txq_assign(xr_txq_t *q, const char *topic, int32_t partition,
              int64_t start)
{
	qpart_t *p = part_of(q, topic, partition);

	if (!p)
		return;
	part_drop(p);
	if (p->is_tx) {
		size_t i;

		region_drop_ends(&q->regions[p->region]);
		for (i = 0; i < q->nparts; i++)
			if (q->parts[i].region == p->region)
				q->parts[i].rhead = q->parts[i].rlen = 0;
	}
	p->received = p->taken = p->committed = start >= 0 ? start : -1;
	p->skip_through = -1;
	p->paused = false;
}

size_t
xr_txq_regions(const xr_txq_t *q)
{
	return q->nregions;
}

const char *
xr_txq_region_name(const xr_txq_t *q, size_t r)
{
	return q->regions[r].name;
}

/* Region g's stream name (added if new, at position 0). */
static size_t
stream_of(qregion_t *g, const char *name)
{
	size_t i;

	for (i = 0; i < g->nstreams; i++)
		if (strcmp(g->streams[i].name, name) == 0)
			return i;
	g->streams = xr_reallocarray(g->streams, g->nstreams + 1,
	                             sizeof(*g->streams));
	memset(&g->streams[g->nstreams], 0, sizeof(*g->streams));
	snprintf(g->streams[g->nstreams].name, sizeof(g->streams->name), "%s",
	         name);
	return g->nstreams++;
}

bool
xr_txq_has_applied(const xr_txq_t *q, size_t r)
{
	return q->regions[r].loaded;
}

void
xr_txq_set_applied(xr_txq_t *q, size_t r, const char *stream, xr_lsn_t lsn,
                   const char *sysid)
{
	qregion_t *g = &q->regions[r];
	qstream_t *s;
	size_t     i;

	g->loaded = true;
	if (!stream)
		return;
	i = stream_of(g, stream);    /* (may move g->streams) */
	s = &g->streams[i];
	s->applied = s->taking = lsn;
	snprintf(s->sysid, sizeof(s->sysid), "%s", sysid ? sysid : "");
}

/* "<commit lsn>:<tx_index>" (decimal) into *clsn, *txi; false if not. */
static bool
parse_xr_tx(const char *s, xr_lsn_t *clsn, int64_t *txi)
{
	char              *end;
	unsigned long long l;
	long long          i;

	l = strtoull(s, &end, 10);
	if (end == s || *end != ':' || l == 0)
		return false;
	s = end + 1;
	i = strtoll(s, &end, 10);
	if (end == s || *end || i < 0)
		return false;
	*clsn = (xr_lsn_t)l;
	*txi = (int64_t)i;
	return true;
}

/* A commit LSN in decimal (header xr-prev), 0 if not one. */
static xr_lsn_t
parse_lsn(const char *s)
{
	char              *end;
	unsigned long long l = strtoull(s, &end, 10);

	return end == s || *end ? 0 : (xr_lsn_t)l;
}

#define GET(rec, name, type, out)                                            \
	(avro_value_get_by_name((rec), (name), &f, NULL) == 0 &&                 \
	 avro_value_get_##type(&f, (out)) == 0)

/*
 * Decodes end record m into e (ranges resolved to partitions).  Returns 0,
 * or -1 with the reason in errstr.
 */
static int
decode_end(xr_txq_t *q, xr_registry_t *reg, const rd_kafka_message_t *m,
           qend_t *e, char *errstr, size_t errstr_size)
{
	const xr_schema_t *s;
	const void        *body;
	size_t             blen, n, i;
	bool               transient;
	char               id[80];
	avro_value_t       v, f, arr, item;
	int64_t            clsn;
	const char        *str;
	int                rc = -1;

	if (!m->payload || m->len == 0) {
		snprintf(errstr, errstr_size, "empty end record");
		return -1;
	}
	if (!xr_kafka_header(m, "xr-schema", id, sizeof(id)))
		id[0] = '\0';
	s = xr_registry_resolve(reg, m->payload, m->len, id[0] ? id : NULL,
	                        &body, &blen, &transient, errstr, errstr_size);
	if (!s || xr_avro_decode(s, body, blen, &v, errstr, errstr_size))
		return -1;
	if (!GET(&v, "commit_lsn", long, &clsn) || clsn <= 0 ||
	    !GET(&v, "commit_ts", long, &e->commit_ts) ||
	    !GET(&v, "events", long, &e->events) ||
	    avro_value_get_by_name(&v, "partitions", &arr, NULL) != 0 ||
	    avro_value_get_size(&arr, &n) != 0) {
		snprintf(errstr, errstr_size, "not an xregion.TransactionEnd record");
		goto out;
	}
	e->clsn = (xr_lsn_t)clsn;
	e->sysid[0] = '\0';
	if (avro_value_get_by_name(&v, "system_id", &f, NULL) == 0 &&
	    avro_value_get_string(&f, &str, NULL) == 0)
		snprintf(e->sysid, sizeof(e->sysid), "%s", str);
	e->p = xr_calloc(n ? n : 1, sizeof(*e->p));
	e->np = 0;
	for (i = 0; i < n; i++) {
		int32_t  pn;
		qpart_t *p;

		if (avro_value_get_by_index(&arr, i, &item, NULL) != 0 ||
		    avro_value_get_by_name(&item, "topic", &f, NULL) != 0 ||
		    avro_value_get_string(&f, &str, NULL) != 0 ||
		    !GET(&item, "partition", int, &pn) ||
		    !GET(&item, "events", long, &e->p[i].events) ||
		    !GET(&item, "first_offset", long, &e->p[i].first) ||
		    !GET(&item, "last_offset", long, &e->p[i].last) ||
		    e->p[i].first < 0 || e->p[i].last < e->p[i].first) {
			snprintf(errstr, errstr_size, "end record: partition %zu is "
			         "not a topic, partition and offsets", i);
			goto out;
		}
		if (!(p = part_of(q, str, pn)) || p->is_tx) {
			snprintf(errstr, errstr_size, "end record names %s, not a "
			         "change topic", str);
			goto out;
		}
		e->p[e->np++].part = (size_t)(p - q->parts);
	}
	rc = 0;
out:
	avro_value_decref(&v);
	if (rc) {
		free(e->p);
		e->p = NULL;
		e->np = 0;
	}
	return rc;
}

#undef GET

/*
 * Doubles ring (len elements of size from *head, in a buffer of *cap;
 * first: 0 elements, first_cap) and lays them out from 0 again.  Returns
 * the new buffer (the old one is freed).
 */
static void *
ring_grow(void *ring, size_t *head, size_t len, size_t *cap, size_t size,
          size_t first_cap)
{
	size_t n = *cap ? 2 * *cap : first_cap, i;
	char  *to = xr_calloc(n, size);

	for (i = 0; i < len; i++)
		memcpy(to + i * size, (char *)ring + ((*head + i) % *cap) * size,
		       size);
	free(ring);
	*head = 0;
	*cap = n;
	return to;
}

static void
range_push(qpart_t *p, int64_t first, int64_t last)
{
	if (p->rlen == p->rcap)
		p->ranges = ring_grow(p->ranges, &p->rhead, p->rlen, &p->rcap,
		                      sizeof(*p->ranges), 8);
	p->ranges[(p->rhead + p->rlen++) % p->rcap] = (range_t){ first, last };
}

static const range_t *
range_head(const qpart_t *p)
{
	return p->rlen ? &p->ranges[p->rhead] : NULL;
}

static void
range_pop(qpart_t *p)
{
	if (p->rlen) {
		p->rhead = (p->rhead + 1) % p->rcap;
		p->rlen--;
	}
}

int
xr_txq_add(xr_txq_t *q, xr_registry_t *reg, rd_kafka_message_t *m,
           char *bad, size_t bad_size)
{
	qpart_t   *p = part_of(q, rd_kafka_topic_name(m->rkt), m->partition);
	qregion_t *g;
	char       hv[64];
	size_t     pi;

	if (bad_size)
		bad[0] = '\0';
	if (!p) {
		rd_kafka_message_destroy(m);
		return 0;
	}
	pi = (size_t)(p - q->parts);
	if (p->received >= 0 && m->offset < p->received) {
		rd_kafka_message_destroy(m);   /* read again: queued already */
		return 0;
	}
	p->received = m->offset + 1;
	g = &q->regions[p->region];
	if (p->is_tx) {
		qend_t *e;
		char    err[512];
		size_t  i;

		if (g->elen == g->ecap)
			g->ends = ring_grow(g->ends, &g->ehead, g->elen, &g->ecap,
			                    sizeof(*g->ends), 64);
		e = &g->ends[(g->ehead + g->elen++) % g->ecap];
		memset(e, 0, sizeof(*e));
		e->m = m;
		/* (decode_end may grow q->parts and q->regions: look again.) */
		if (decode_end(q, reg, m, e, err, sizeof(err))) {
			e->bad = true;
			if (bad_size)
				snprintf(bad, bad_size, "undecodable end record at %s [%d] "
				         "offset %" PRId64 ": %s", rd_kafka_topic_name(m->rkt),
				         (int)m->partition, m->offset, err);
		} else {
			for (i = 0; i < e->np; i++)
				range_push(&q->parts[e->p[i].part], e->p[i].first,
				           e->p[i].last);
		}
		p = &q->parts[pi];
		g = &q->regions[p->region];
		if (!xr_kafka_header(m, "xr-stream", hv, sizeof(hv)))
			hv[0] = '\0';
		e = &g->ends[(g->ehead + g->elen - 1) % g->ecap];
		e->stream = stream_of(g, hv);
		if (g->elen >= XR_TXQ_MAX_ENDS && !p->paused) {
			p->paused = true;
			return 1;
		}
		return 0;
	}
	if (p->len == p->cap)
		p->ring = ring_grow(p->ring, &p->head, p->len, &p->cap,
		                    sizeof(*p->ring), 64);
	{
		qmsg_t *qm = &p->ring[(p->head + p->len++) % p->cap];

		qm->m = m;
		qm->clsn = 0;
		qm->txi = -1;
		qm->prev = 0;
		if (xr_kafka_header(m, "xr-tx", hv, sizeof(hv)) &&
		    !parse_xr_tx(hv, &qm->clsn, &qm->txi)) {
			qm->clsn = 0;
			qm->txi = -1;
		}
		if (qm->txi == 0 && xr_kafka_header(m, "xr-prev", hv, sizeof(hv)))
			qm->prev = parse_lsn(hv);
		if (qm->txi >= (int64_t)q->conf->batch_size && qm->clsn > g->big_clsn)
			g->big_clsn = qm->clsn;
		if (!xr_kafka_header(m, "xr-stream", hv, sizeof(hv)))
			hv[0] = '\0';
		qm->stream = stream_of(g, hv);
	}
	if (p->len >= q->cap && !p->paused) {
		p->paused = true;
		return 1;
	}
	return 0;
}

static qmsg_t *
head_of(const qpart_t *p)
{
	return p->len ? &p->ring[p->head] : NULL;
}

/* Hands out p's head message into out[*n]. */
static void
pop_to(qpart_t *p, xr_txq_out_t *out, size_t *n, bool skip, bool in_tx)
{
	qmsg_t *h = &p->ring[p->head];

	out[*n].m = h->m;
	out[*n].skip = skip;
	out[*n].in_tx = in_tx;
	(*n)++;
	p->taken = h->m->offset + 1;
	p->head = (p->head + 1) % p->cap;
	p->len--;
}

/* Hands out region g's head end record (to skip) and drops it. */
static void
pop_end(xr_txq_t *q, qregion_t *g, xr_txq_out_t *out, size_t *n)
{
	qend_t *e = &g->ends[g->ehead];
	size_t  i;

	for (i = 0; i < e->np; i++)
		range_pop(&q->parts[e->p[i].part]);
	if (g->tx_part != SIZE_MAX)
		q->parts[g->tx_part].taken = e->m->offset + 1;
	out[*n].m = e->m;
	out[*n].skip = true;
	out[*n].in_tx = false;
	(*n)++;
	e->m = NULL;
	end_free(e);
	g->ehead = (g->ehead + 1) % g->ecap;
	g->elen--;
}

/*
 * Region g's head end record names a transaction taken already (sent
 * again after a producer's restart): its events are copies to skip, and
 * it goes out to skip.
 */
static void
skip_copy_end(xr_txq_t *q, qregion_t *g, xr_txq_out_t *out, size_t *n)
{
	const qend_t *e = &g->ends[g->ehead];
	size_t        i;

	for (i = 0; i < e->np; i++) {
		qpart_t *p = &q->parts[e->p[i].part];

		if (e->p[i].last > p->skip_through)
			p->skip_through = e->p[i].last;
	}
	pop_end(q, g, out, n);
}

/*
 * The next end record of region g of stream s: the head one when the
 * region has one stream; otherwise the first of s (the streams' records
 * interleave in no commit order), or NULL when none is queued.
 */
static const qend_t *
next_end_of(const qregion_t *g, size_t s)
{
	size_t i;

	if (g->elen == 0)
		return NULL;
	if (g->nstreams <= 1)
		return &g->ends[g->ehead];
	for (i = 0; i < g->elen; i++) {
		const qend_t *e = &g->ends[(g->ehead + i) % g->ecap];

		if (e->stream == s)
			return e;
	}
	return NULL;
}

/*
 * Hands out what stands at the heads of region r's partitions before its
 * next transaction: events of none, copies to skip.  Returns false when
 * out is full.
 */
static bool
take_heads(xr_txq_t *q, size_t r, xr_txq_out_t *out, size_t max, size_t *n)
{
	qregion_t *g = &q->regions[r];
	size_t     i;

	for (i = 0; i < q->nparts; i++) {
		qpart_t      *p = &q->parts[i];
		const qend_t *next = NULL;
		size_t        next_s = SIZE_MAX;
		qmsg_t       *h;

		if (p->region != r || p->is_tx)
			continue;
		while ((h = head_of(p))) {
			const range_t *rg = range_head(p);

			if (h->stream != next_s) {
				next_s = h->stream;
				next = next_end_of(g, next_s);
			}

			if (*n == max)
				return false;
			if (h->clsn == 0) {
				pop_to(p, out, n, false, false);  /* no transaction */
			} else if (h->m->offset <= p->skip_through) {
				pop_to(p, out, n, true, true);    /* applied already */
			} else if (rg && h->m->offset < rg->first) {
				pop_to(p, out, n, true, true);    /* a copy no record names */
			} else if (!rg && next && !next->bad && h->clsn < next->clsn) {
				/*
				 * Committed before the next transaction of its stream,
				 * and no record to come names it (a stream's records
				 * come in commit order): a copy of one taken or skipped
				 * already.
				 */
				pop_to(p, out, n, true, true);
			} else {
				break;    /* its transaction's, or its record is to come */
			}
		}
	}
	return true;
}

/*
 * Whether every event end record e names has arrived (or lies behind its
 * partition's position), and how many are queued, into *queued.
 */
static bool
end_complete(const xr_txq_t *q, const qend_t *e, int64_t *queued)
{
	size_t i;

	*queued = 0;
	for (i = 0; i < e->np; i++) {
		const qpart_t     *p = &q->parts[e->p[i].part];
		const qend_part_t *ep = &e->p[i];
		size_t             k;

		if (p->taken > ep->last)
			continue;          /* read before this session's start */
		if (p->received <= ep->last)
			return false;
		for (k = 0; k < p->len; k++) {
			int64_t o = p->ring[(p->head + k) % p->cap].m->offset;

			if (o > ep->last)
				break;
			if (o >= ep->first)
				(*queued)++;
		}
	}
	return true;
}

/* Notes that g's head end record e is taken (to be stored at commit). */
static void
note_taken(qregion_t *g, const qend_t *e)
{
	qstream_t *s = &g->streams[e->stream];

	s->taking = e->clsn;
	s->taken_pos = true;
	s->taken_lsn = e->clsn;
	s->taken_ts = e->commit_ts;
	snprintf(s->taken_sysid, sizeof(s->taken_sysid), "%s", e->sysid);
}

/*
 * Region g's head end record e came from another cluster than the one its
 * stream's applied position is of: a source database made anew starts its
 * LSNs again, so the position no longer says anything.
 */
static void
check_sysid(qregion_t *g, const qend_t *e)
{
	qstream_t *s = &g->streams[e->stream];

	if (!g->loaded || !e->sysid[0] || !s->sysid[0] ||
	    strcmp(s->sysid, e->sysid) == 0)
		return;
	xr_warn("region %s%s%s: transactions now come from database system %s, "
	        "not %s: its applied position (%" PRIu64 ") is reset", g->name,
	        s->name[0] ? " stream " : "", s->name, e->sysid, s->sysid,
	        (uint64_t)s->applied);
	snprintf(s->sysid, sizeof(s->sysid), "%s", e->sysid);
	s->applied = s->taking = 0;
}

/*
 * Whether region r's next transaction goes out before its end record
 * (then it is started in pieces, early): no record is queued, the region
 * has one stream, and a transaction with more events than a batch has its
 * first event at the head of a partition, naming in xr-prev the
 * transaction the stream took last.  A producer publishes its
 * transactions in commit order and names the one before in the next, so
 * no other transaction of the stream comes between: this one is next.
 */
static bool
early_start(xr_txq_t *q, size_t r)
{
	qregion_t *g = &q->regions[r];
	xr_lsn_t   taking;
	size_t     i;

	if (!g->loaded || g->nstreams != 1 || g->elen != 0 || g->big_clsn == 0 ||
	    g->big_clsn == g->early_off)
		return false;
	taking = g->streams[0].taking;
	if (taking == 0 || g->big_clsn <= taking)
		return false;
	for (i = 0; i < q->nparts; i++) {
		const qpart_t *p = &q->parts[i];
		const qmsg_t  *h;

		if (p->region != r || p->is_tx || !(h = head_of(p)) ||
		    h->clsn != g->big_clsn || h->txi != 0 || h->prev != taking)
			continue;
		g->piece = true;
		g->piece_events = 0;
		g->early = h->clsn;
		g->early_next = 0;
		g->broken = false;
		for (i = 0; i < q->nparts; i++)
			if (q->parts[i].region == r)
				q->parts[i].early_first = -1;
		xr_info("region %s: transaction %" PRIu64 " is larger than a batch: "
		        "applied as its events arrive, committed at its end record",
		        g->name, (uint64_t)h->clsn);
		return true;
	}
	return false;
}

size_t
xr_txq_take(xr_txq_t *q, size_t r, xr_txq_out_t *out, size_t max, bool *big)
{
	qregion_t *g = &q->regions[r];
	size_t     n = 0;

	*big = false;
	if (g->piece)
		return 0;
	for (;;) {
		qend_t *e;
		int64_t queued;
		size_t  i;

		if (g->elen)
			check_sysid(g, &g->ends[g->ehead]);
		if (!take_heads(q, r, out, max, &n))
			return n;
		if (g->elen == 0) {
			if (n == 0 && early_start(q, r))
				*big = true;
			return n;
		}
		e = &g->ends[g->ehead];
		if (e->bad)
			return n;     /* the region waits: xr_txq_bad_end */
		if (g->loaded && e->clsn <= g->streams[e->stream].taking) {
			/* Sent again after a producer's restart: applied already. */
			if (n == max)
				return n;
			skip_copy_end(q, g, out, &n);
			continue;
		}
		if (e->events + 1 > (int64_t)max) {
			/* Larger than a batch: in pieces, in one target transaction. */
			if (n == 0) {
				*big = true;
				g->piece = true;
				g->piece_events = 0;
			}
			return n;
		}
		if (!end_complete(q, e, &queued) || (size_t)queued + 1 > max - n)
			return n;
		for (i = 0; i < e->np; i++) {
			qpart_t *p = &q->parts[e->p[i].part];
			qmsg_t  *h;

			while ((h = head_of(p)) && h->m->offset <= e->p[i].last) {
				bool mine = h->m->offset >= e->p[i].first &&
				            h->clsn == e->clsn;

				pop_to(p, out, &n, !mine, mine);
			}
		}
		note_taken(g, e);
		pop_end(q, g, out, &n);
	}
}

/* Messages queued on region r's change topics. */
static size_t
region_queued(const xr_txq_t *q, size_t r)
{
	size_t i, n = 0;

	for (i = 0; i < q->nparts; i++)
		if (q->parts[i].region == r && !q->parts[i].is_tx)
			n += q->parts[i].len;
	return n;
}

/* What early_take does with h, at the head of p, the next index next. */
typedef enum {
	EARLY_WAIT,     /* not yet (or never: another transaction's) */
	EARLY_TAKE,     /* the next index */
	EARLY_NONE,     /* of no transaction: goes out as one */
	EARLY_SKIP,     /* out already, or a copy a record skipped */
	EARLY_RESENT    /* index 0 again: its producer sends it again */
} early_verdict_t;

static early_verdict_t
early_verdict(const qregion_t *g, const qpart_t *p, const qmsg_t *h,
              int64_t next)
{
	if (h->clsn == g->early && h->txi == 0 && next > 0)
		return EARLY_RESENT;
	if (h->clsn == 0)
		return EARLY_NONE;
	if (h->m->offset <= p->skip_through ||
	    (h->clsn == g->early && h->txi < next))
		return EARLY_SKIP;
	if (h->clsn == g->early && h->txi == next)
		return EARLY_TAKE;
	return EARLY_WAIT;
}

/*
 * Early: hands out region r's transaction g->early strictly in tx_index
 * order, as its events reach the heads of the partitions.  At a head, the
 * next index goes out; an index out already (the producer sent the
 * transaction again after a restart: the same change) or a copy an end
 * record skipped goes out to skip; an event of no transaction goes out
 * as one.  Anything else waits.
 */
static void
early_take(xr_txq_t *q, size_t r, xr_txq_out_t *out, size_t max, size_t *n)
{
	qregion_t *g = &q->regions[r];
	bool       moved = true;
	size_t     i;

	while (moved && *n + 1 < max && !g->broken) {
		moved = false;
		for (i = 0; i < q->nparts && *n + 1 < max && !g->broken; i++) {
			qpart_t *p = &q->parts[i];
			qmsg_t  *h;

			if (p->region != r || p->is_tx)
				continue;
			while (*n + 1 < max && (h = head_of(p))) {
				early_verdict_t v = early_verdict(g, p, h, g->early_next);

				if (v == EARLY_WAIT)
					break;
				if (v == EARLY_RESENT) {
					/*
					 * Its producer sends it again from its start (it
					 * stopped in the middle): the record will name that
					 * copy only, whose indexes may count other changes.
					 * Stop here, before taking more of it.
					 */
					xr_warn("region %s: transaction %" PRIu64 " was taken "
					        "before its end record, and its producer sends "
					        "it again from its start: rolled back, taken "
					        "again whole", g->name, (uint64_t)g->early);
					g->early_off = g->early;
					g->broken = true;
					return;
				}
				if (v == EARLY_TAKE) {
					if (p->early_first < 0)
						p->early_first = h->m->offset;
					g->early_next++;
					g->piece_events++;
				}
				pop_to(p, out, n, v == EARLY_SKIP, v != EARLY_NONE);
				moved = true;
			}
		}
	}
}

/*
 * Whether early transaction e's record names every event taken early: its
 * events counted from 0 as the record's are.  Taken from an earlier
 * session of the producer (which stopped in the middle and sent the
 * transaction again), they may not be: which tables it publishes may have
 * changed in between, and with them what a tx_index means.
 */
static bool
early_named(const xr_txq_t *q, const qend_t *e)
{
	size_t i, k;

	for (i = 0; i < q->nparts; i++) {
		const qpart_t *p = &q->parts[i];

		if (p->early_first < 0)
			continue;
		for (k = 0; k < e->np; k++)
			if (e->p[k].part == i && e->p[k].first <= p->early_first)
				break;
		if (k == e->np)
			return false;
	}
	return true;
}

/*
 * Early: first the end records queued: copies of transactions taken
 * already are skipped; the early transaction's own ends the early part
 * (returns true: go on by the record, whose events before early_next are
 * out).  Any other record (another transaction's, another stream's, one
 * that does not decode) means the early start was wrong: the region is
 * marked broken, to be rolled back and taken again, that transaction
 * waited for whole.  Then the events at the heads.
 */
static bool
early_piece(xr_txq_t *q, size_t r, xr_txq_out_t *out, size_t max, size_t *n)
{
	qregion_t *g = &q->regions[r];

	while (g->elen > 0) {
		qend_t     *e = &g->ends[g->ehead];
		const char *why = NULL;

		if (e->bad)
			why = "does not decode";
		else if (e->stream != 0)
			why = "another stream's";
		else if (e->sysid[0] && g->streams[0].sysid[0] &&
		         strcmp(e->sysid, g->streams[0].sysid) != 0)
			why = "of another database system";
		else if (e->clsn == g->early && !early_named(q, e))
			why = "its own, from a later session of its producer";
		else if (e->clsn != g->early && e->clsn > g->streams[0].taking)
			why = "another transaction's";
		if (why) {
			xr_warn("region %s: transaction %" PRIu64 " was taken before its "
			        "end record, but the next record is %s: rolled back, "
			        "taken again whole", g->name, (uint64_t)g->early, why);
			g->early_off = g->early;
			g->broken = true;
			return false;
		}
		if (e->clsn == g->early) {
			g->early = 0;
			return true;
		}
		if (*n + 1 >= max)
			return false;
		skip_copy_end(q, g, out, n);
	}
	/* Whole pieces while the record is to come: fewer, larger statements. */
	if (g->elen == 0 && region_queued(q, r) < max)
		return false;
	early_take(q, r, out, max, n);
	return false;
}

bool
xr_txq_piece_broken(const xr_txq_t *q, size_t r)
{
	return q->regions[r].broken;
}

bool
xr_txq_others_waiting(const xr_txq_t *q, size_t r)
{
	size_t i;

	for (i = 0; i < q->nregions; i++)
		if (i != r && q->regions[i].elen > 0)
			return true;
	for (i = 0; i < q->nparts; i++)
		if (q->parts[i].region != r && q->parts[i].len > 0)
			return true;
	return false;
}

bool
xr_txq_early(const xr_txq_t *q, size_t r)
{
	return q->regions[r].early != 0;
}

void
xr_txq_early_give_up(xr_txq_t *q, size_t r)
{
	qregion_t *g = &q->regions[r];

	if (g->early)
		g->early_off = g->early;
}

size_t
xr_txq_take_piece(xr_txq_t *q, size_t r, xr_txq_out_t *out, size_t max,
                  bool *done)
{
	qregion_t *g = &q->regions[r];
	qend_t    *e;
	size_t     n = 0, i;

	*done = false;
	if (!g->piece || g->broken)
		return 0;
	if (g->early && !early_piece(q, r, out, max, &n))
		return n;
	if (g->elen == 0)
		return n;
	e = &g->ends[g->ehead];
	/* A k-way merge by tx_index of the record's ranges; one slot is kept
	 * for the record itself. */
	while (n + 1 < max) {
		qpart_t *best = NULL;
		int64_t  best_txi = INT64_MAX;
		bool     skipped = false;

		for (i = 0; i < e->np; i++) {
			qpart_t           *p = &q->parts[e->p[i].part];
			const qend_part_t *ep = &e->p[i];
			qmsg_t            *h = head_of(p);

			if (p->taken > ep->last)
				continue;                     /* all of it is out */
			if (!h) {
				if (p->received > ep->last) {
					p->taken = ep->last + 1;  /* the rest is gone */
					continue;
				}
				return n;                     /* its next is to come */
			}
			if (h->m->offset > ep->last) {
				p->taken = ep->last + 1;
				continue;
			}
			if (h->clsn == 0) {
				pop_to(p, out, &n, false, false); /* of no transaction */
				skipped = true;
				break;
			}
			if (h->m->offset < ep->first || h->clsn != e->clsn ||
			    h->txi < g->early_next) {
				/* not one of its own, or out already (early) */
				pop_to(p, out, &n, true, true);
				skipped = true;
				break;
			}
			if (h->txi < best_txi) {
				best_txi = h->txi;
				best = p;
			}
		}
		if (skipped)
			continue;
		if (!best) {
			/* Every range is out: the transaction is whole. */
			if (g->early_next == 0 && e->events > g->piece_events)
				xr_warn("region %s: transaction %" PRIu64 " had %" PRId64
				        " events, %" PRId64 " were read (deleted before "
				        "they were applied?)", g->name, (uint64_t)e->clsn,
				        e->events, g->piece_events);
			note_taken(g, e);
			pop_end(q, g, out, &n);
			g->piece = false;
			g->early_next = 0;
			*done = true;
			return n;
		}
		pop_to(best, out, &n, false, true);
		g->piece_events++;
	}
	return n;
}

/* early_take on cursors: what it would hand out to apply, up to max. */
static size_t
early_peek(const xr_txq_t *q, size_t r, rd_kafka_message_t **out, size_t max)
{
	const qregion_t *g = &q->regions[r];
	size_t          *cur = xr_calloc(q->nparts ? q->nparts : 1, sizeof(*cur));
	size_t           n = 0, i;
	int64_t          next = g->early_next;
	bool             moved = true;

	while (moved && n < max) {
		moved = false;
		for (i = 0; i < q->nparts && n < max; i++) {
			const qpart_t *p = &q->parts[i];

			if (p->region != r || p->is_tx)
				continue;
			while (n < max && cur[i] < p->len) {
				const qmsg_t   *h = &p->ring[(p->head + cur[i]) % p->cap];
				early_verdict_t v = early_verdict(g, p, h, next);

				if (v == EARLY_WAIT || v == EARLY_RESENT)
					break;
				if (v == EARLY_TAKE)
					next++;
				if (v != EARLY_SKIP)
					out[n++] = h->m;
				cur[i]++;
				moved = true;
			}
		}
	}
	free(cur);
	return n;
}

size_t
xr_txq_peek_piece(const xr_txq_t *q, size_t r, rd_kafka_message_t **out,
                  size_t max)
{
	const qregion_t *g = &q->regions[r];
	const qend_t    *e;
	size_t          *cur, n = 0, i;

	if (!g->piece || g->broken)
		return 0;
	if (g->early)
		return early_peek(q, r, out, max);
	if (g->elen == 0)
		return 0;
	e = &g->ends[g->ehead];
	cur = xr_calloc(e->np ? e->np : 1, sizeof(*cur));
	/* xr_txq_take_piece's merge by tx_index, on cursors instead of pops. */
	while (n < max) {
		size_t  best = SIZE_MAX;
		int64_t best_txi = INT64_MAX;
		bool    moved = false;

		for (i = 0; i < e->np; i++) {
			const qpart_t     *p = &q->parts[e->p[i].part];
			const qend_part_t *ep = &e->p[i];
			const qmsg_t      *h;
			int64_t            taken = p->taken;

			if (cur[i] > 0)
				taken = p->ring[(p->head + cur[i] - 1) % p->cap].m->offset + 1;
			if (taken > ep->last)
				continue;
			if (cur[i] >= p->len) {
				if (p->received > ep->last)
					continue;
				goto out;                     /* its next is to come */
			}
			h = &p->ring[(p->head + cur[i]) % p->cap];
			if (h->m->offset > ep->last)
				continue;
			if (h->clsn == 0 || h->m->offset < ep->first ||
			    h->clsn != e->clsn || h->txi < g->early_next) {
				cur[i]++;                     /* handed out to skip */
				moved = true;
				break;
			}
			if (h->txi < best_txi) {
				best_txi = h->txi;
				best = i;
			}
		}
		if (moved)
			continue;
		if (best == SIZE_MAX)
			break;
		{
			const qpart_t *p = &q->parts[e->p[best].part];

			out[n++] = p->ring[(p->head + cur[best]) % p->cap].m;
			cur[best]++;
		}
	}
out:
	free(cur);
	return n;
}

size_t
xr_txq_nstreams(const xr_txq_t *q, size_t r)
{
	return q->regions[r].nstreams;
}

size_t
xr_txq_taken_positions(const xr_txq_t *q, size_t r, xr_txq_taken_t *out,
                       size_t max)
{
	const qregion_t *g = &q->regions[r];
	size_t           i, n = 0;

	for (i = 0; i < g->nstreams && n < max; i++) {
		const qstream_t *s = &g->streams[i];

		if (!s->taken_pos)
			continue;
		out[n].stream = s->name;
		out[n].lsn = s->taken_lsn;
		out[n].sysid = s->taken_sysid;
		out[n++].commit_ts = s->taken_ts;
	}
	return n;
}

size_t
xr_txq_npositions(const xr_txq_t *q, size_t r)
{
	size_t i, n = 0;

	for (i = 0; i < q->nparts; i++)
		if (q->parts[i].region == r)
			n++;
	return n;
}

size_t
xr_txq_offsets(const xr_txq_t *q, size_t r, xr_txq_pos_t *out)
{
	size_t i, n = 0;

	for (i = 0; i < q->nparts; i++) {
		const qpart_t *p = &q->parts[i];

		if (p->region != r || p->taken < 0 || p->taken == p->committed)
			continue;
		out[n].topic = p->topic;
		out[n].partition = p->partition;
		out[n++].offset = p->taken;
	}
	return n;
}

void
xr_txq_commit(xr_txq_t *q, size_t r)
{
	qregion_t *g = &q->regions[r];
	size_t     i;

	for (i = 0; i < q->nparts; i++)
		if (q->parts[i].region == r)
			q->parts[i].committed = q->parts[i].taken;
	for (i = 0; i < g->nstreams; i++) {
		qstream_t *s = &g->streams[i];

		if (s->taken_pos) {
			s->applied = s->taken_lsn;
			snprintf(s->sysid, sizeof(s->sysid), "%s", s->taken_sysid);
			s->taken_pos = false;
		}
		s->taking = s->applied;
	}
}

size_t
xr_txq_rewind(xr_txq_t *q, size_t r, xr_txq_pos_t *out)
{
	qregion_t *g = &q->regions[r];
	size_t     i, n = 0;

	for (i = 0; i < q->nparts; i++) {
		qpart_t *p = &q->parts[i];

		if (p->region != r)
			continue;
		part_drop(p);
		p->taken = p->received = p->committed;
		p->paused = false;
		out[n].topic = p->topic;
		out[n].partition = p->partition;
		out[n++].offset = p->committed;
	}
	region_drop_ends(g);
	for (i = 0; i < g->nstreams; i++) {
		g->streams[i].taken_pos = false;
		g->streams[i].taking = g->streams[i].applied;
	}
	return n;
}

bool
xr_txq_bad_end(const xr_txq_t *q, size_t r)
{
	const qregion_t *g = &q->regions[r];

	return g->elen > 0 && g->ends[g->ehead].bad;
}

size_t
xr_txq_npaused(const xr_txq_t *q)
{
	size_t i, n = 0;

	for (i = 0; i < q->nparts; i++)
		if (q->parts[i].paused)
			n++;
	return n;
}

size_t
xr_txq_resumable(xr_txq_t *q, xr_txq_pos_t *out)
{
	size_t i, n = 0;

	for (i = 0; i < q->nparts; i++) {
		qpart_t *p = &q->parts[i];
		size_t   queued = p->is_tx ? q->regions[p->region].elen : p->len;
		size_t   room = p->is_tx ? XR_TXQ_MAX_ENDS / 2 : q->cap / 2;

		if (!p->paused || queued > room)
			continue;
		p->paused = false;
		out[n].topic = p->topic;
		out[n].partition = p->partition;
		out[n++].offset = p->received;
	}
	return n;
}

size_t
xr_txq_queued(const xr_txq_t *q)
{
	size_t i, n = 0;

	for (i = 0; i < q->nparts; i++)
		n += q->parts[i].len;
	return n;
}

void
xr_txq_waiting(const xr_txq_t *q, size_t r, char *buf, size_t size)
{
	const qregion_t *g = &q->regions[r];
	const qend_t    *e;
	size_t           i;

	buf[0] = '\0';
	if (g->elen == 0)
		return;
	e = &g->ends[g->ehead];
	for (i = 0; i < e->np; i++) {
		const qpart_t *p = &q->parts[e->p[i].part];

		if (p->taken > e->p[i].last || p->received > e->p[i].last)
			continue;
		snprintf(buf, size, "transaction %" PRIu64 " waits for %s [%d] "
		         "offsets %" PRId64 "..%" PRId64 " (read up to %" PRId64 "%s)",
		         (uint64_t)e->clsn, p->topic, (int)p->partition,
		         e->p[i].first, e->p[i].last, p->received,
		         p->paused ? ", paused" : "");
		return;
	}
}
