/* txend.c: transaction end records (txend.h). */
#include "producer/txend.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "producer/relcache.h"

/* The record; docs/event-format.md shows it. */
static const char txend_json[] =
	"{\"type\":\"record\",\"name\":\"xregion.TransactionEnd\","
	"\"doc\":\"The end of a transaction xregion published: where its events are.\","
	"\"fields\":["
	"{\"name\":\"region\",\"type\":\"string\",\"doc\":\"Region of the producer.\"},"
	"{\"name\":\"database\",\"type\":\"string\",\"doc\":\"Name of the source database.\"},"
	"{\"name\":\"system_id\",\"type\":\"string\",\"doc\":\"The source cluster's system identifier: LSNs are comparable only within one.\"},"
	"{\"name\":\"txid\",\"type\":\"long\",\"doc\":\"The transaction's id (source.txid of its events).\"},"
	"{\"name\":\"commit_lsn\",\"type\":\"long\",\"doc\":\"WAL position of its commit (source.commit_lsn of its events).\"},"
	"{\"name\":\"commit_ts\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"},"
	"\"doc\":\"Its commit time.\"},"
	"{\"name\":\"changes\",\"type\":\"long\",\"doc\":\"Changes it published: its events' tx_index run from 0 to changes - 1.\"},"
	"{\"name\":\"events\",\"type\":\"long\",\"doc\":\"Messages it published: the sum of partitions[].events (a truncate is one per partition).\"},"
	"{\"name\":\"partitions\",\"type\":{\"type\":\"array\",\"items\":{\"type\":\"record\","
	"\"name\":\"xregion.TransactionPartition\",\"fields\":["
	"{\"name\":\"topic\",\"type\":\"string\"},"
	"{\"name\":\"partition\",\"type\":\"int\"},"
	"{\"name\":\"events\",\"type\":\"long\"},"
	"{\"name\":\"first_offset\",\"type\":\"long\"},"
	"{\"name\":\"last_offset\",\"type\":\"long\"}]}},"
	"\"doc\":\"Its events on each topic and partition.\"}"
	"]}";

typedef struct tpart_s {
	char   *topic;      /* kept for the next record in this slot */
	int32_t partition;
	int64_t events;
	int64_t acked;
	int64_t first, last; /* offsets acknowledged, -1 before the first */
} tpart_t;

typedef struct rec_s {
	uint64_t    txn;
	bool        closed;      /* committed: its fields are set */
	const char *region, *database, *system_id;   /* borrowed */
	uint32_t    xid;
	xr_lsn_t    commit_lsn;
	int64_t     commit_ts;
	int64_t     changes;
	int64_t     events, acked;
	tpart_t    *parts;
	size_t      nparts, cap;
	size_t      last;        /* the part counted last */
} rec_t;

struct xr_txend_s {
	xr_schema_t *schema;
	char         schema_id[XR_SCHEMA_ID_LEN + 1];
	avro_value_t value;
	rec_t       *ring;       /* queued records, oldest at head */
	size_t       head, len, cap;
	bool         open;       /* the tail record is being counted */
	xr_lsn_t     prev;       /* commit LSN of the last record closed */
};

static void *
xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		abort();
	return p;
}

xr_txend_t *
xr_txend_new(char *errstr, size_t errstr_size)
{
	xr_txend_t *t = calloc(1, sizeof(*t));

	if (!t)
		abort();
	if (xr_schema_from_json(txend_json, strlen(txend_json), &t->schema,
	                        errstr, errstr_size)) {
		free(t);
		return NULL;
	}
	xr_relcache_schema_id(t->schema, t->schema_id);
	if (avro_generic_value_new(t->schema->iface, &t->value)) {
		snprintf(errstr, errstr_size, "transaction end record: %s",
		         avro_strerror());
		xr_schema_destroy(t->schema);
		free(t);
		return NULL;
	}
	return t;
}

void
xr_txend_destroy(xr_txend_t *t)
{
	size_t i, k;

	if (!t)
		return;
	for (i = 0; i < t->cap; i++) {
		for (k = 0; k < t->ring[i].cap; k++)
			free(t->ring[i].parts[k].topic);
		free(t->ring[i].parts);
	}
	free(t->ring);
	avro_value_decref(&t->value);
	xr_schema_destroy(t->schema);
	free(t);
}

void
xr_txend_reset(xr_txend_t *t)
{
	t->head = t->len = 0;
	t->open = false;
	t->prev = 0;
}

const xr_schema_t *
xr_txend_schema(const xr_txend_t *t)
{
	return t->schema;
}

const char *
xr_txend_schema_id(const xr_txend_t *t)
{
	return t->schema_id;
}

static rec_t *
at(const xr_txend_t *t, size_t i)
{
	return &t->ring[(t->head + i) % t->cap];
}

void
xr_txend_begin(xr_txend_t *t, uint64_t txn)
{
	rec_t *r;

	if (t->open) {
		/* The last one published nothing: its slot is reused. */
		t->len--;
		t->open = false;
	}
	if (t->len == t->cap) {
		/* Grow, keeping the order: copy out from head. */
		size_t n = t->cap ? 2 * t->cap : 16, i;
		rec_t *ring = calloc(n, sizeof(*ring));

		if (!ring)
			abort();
		for (i = 0; i < t->cap; i++)
			ring[i] = *at(t, i);
		free(t->ring);
		t->ring = ring;
		t->head = 0;
		t->cap = n;
	}
	r = at(t, t->len++);
	r->txn = txn;
	r->closed = false;
	r->changes = r->events = r->acked = 0;
	r->nparts = 0;
	r->last = 0;
	t->open = true;
}

static rec_t *
open_rec(xr_txend_t *t)
{
	return t->open ? at(t, t->len - 1) : NULL;
}

int64_t
xr_txend_next_change(xr_txend_t *t)
{
	rec_t *r = open_rec(t);

	return r ? r->changes++ : 0;
}

int64_t
xr_txend_changes(const xr_txend_t *t)
{
	const rec_t *r = t->open ? at(t, t->len - 1) : NULL;

	return r ? r->changes : 0;
}

void
xr_txend_count(xr_txend_t *t, const char *topic, int32_t partition)
{
	rec_t   *r = open_rec(t);
	tpart_t *p;
	size_t   i;

	if (!r)
		return;
	r->events++;
	if (r->last < r->nparts && r->parts[r->last].partition == partition &&
	    strcmp(r->parts[r->last].topic, topic) == 0) {
		r->parts[r->last].events++;
		return;
	}
	for (i = 0; i < r->nparts; i++)
		if (r->parts[i].partition == partition &&
		    strcmp(r->parts[i].topic, topic) == 0) {
			r->parts[i].events++;
			r->last = i;
			return;
		}
	if (r->nparts == r->cap) {
		size_t n = r->cap ? 2 * r->cap : 4;

		r->parts = realloc(r->parts, n * sizeof(*r->parts));
		if (!r->parts)
			abort();
		memset(r->parts + r->cap, 0, (n - r->cap) * sizeof(*r->parts));
		r->cap = n;
	}
	p = &r->parts[r->nparts];
	/* Slots keep their topic string between transactions. */
	if (!p->topic || strcmp(p->topic, topic) != 0) {
		size_t n = strlen(topic) + 1;

		free(p->topic);
		p->topic = xmalloc(n);
		memcpy(p->topic, topic, n);
	}
	p->partition = partition;
	p->events = 1;
	p->acked = 0;
	p->first = p->last = -1;
	r->last = r->nparts++;
}

/* The queued record of tracker transaction txn (ids grow), or NULL. */
static rec_t *
find(const xr_txend_t *t, uint64_t txn)
{
	size_t lo = 0, hi = t->len;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		rec_t *r = at(t, mid);

		if (r->txn == txn)
			return r;
		if (r->txn < txn)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void
xr_txend_delivered(xr_txend_t *t, uint64_t txn, const char *topic,
                   int32_t partition, int64_t offset)
{
	rec_t  *r = find(t, txn);
	size_t  i;

	if (!r)
		return;
	for (i = 0; i < r->nparts; i++) {
		tpart_t *p = &r->parts[i];

		if (p->partition != partition || strcmp(p->topic, topic) != 0)
			continue;
		if (p->first < 0 || offset < p->first)
			p->first = offset;
		if (offset > p->last)
			p->last = offset;
		p->acked++;
		r->acked++;
		return;
	}
}

bool
xr_txend_commit(xr_txend_t *t, const char *region, const char *database,
                const char *system_id, uint32_t xid, xr_lsn_t commit_lsn,
                int64_t commit_ts_us)
{
	rec_t *r = open_rec(t);

	if (!r)
		return false;
	t->open = false;
	if (r->changes == 0) {
		t->len--;
		return false;
	}
	r->closed = true;
	r->region = region;
	r->database = database;
	r->system_id = system_id;
	r->xid = xid;
	r->commit_lsn = commit_lsn;
	r->commit_ts = commit_ts_us;
	t->prev = commit_lsn;
	return true;
}

xr_lsn_t
xr_txend_prev(const xr_txend_t *t)
{
	return t->prev;
}

size_t
xr_txend_pending(const xr_txend_t *t)
{
	return t->len - (t->open ? 1 : 0);
}

#define TRY(expr)                                                           \
	do {                                                                    \
		if ((expr) != 0)                                                    \
			goto fail;                                                      \
	} while (0)

static int
encode(xr_txend_t *t, const rec_t *r, xr_buf_t *out, char *errstr,
       size_t errstr_size)
{
	avro_value_t f, item, pf;
	size_t       i;

	xr_buf_reset(out);
	TRY(avro_value_reset(&t->value));
	TRY(avro_value_get_by_name(&t->value, "region", &f, NULL));
	TRY(avro_value_set_string(&f, r->region));
	TRY(avro_value_get_by_name(&t->value, "database", &f, NULL));
	TRY(avro_value_set_string(&f, r->database));
	TRY(avro_value_get_by_name(&t->value, "system_id", &f, NULL));
	TRY(avro_value_set_string(&f, r->system_id));
	TRY(avro_value_get_by_name(&t->value, "txid", &f, NULL));
	TRY(avro_value_set_long(&f, (int64_t)r->xid));
	TRY(avro_value_get_by_name(&t->value, "commit_lsn", &f, NULL));
	TRY(avro_value_set_long(&f, (int64_t)r->commit_lsn));
	TRY(avro_value_get_by_name(&t->value, "commit_ts", &f, NULL));
	TRY(avro_value_set_long(&f, r->commit_ts));
	TRY(avro_value_get_by_name(&t->value, "changes", &f, NULL));
	TRY(avro_value_set_long(&f, r->changes));
	TRY(avro_value_get_by_name(&t->value, "events", &f, NULL));
	TRY(avro_value_set_long(&f, r->events));
	TRY(avro_value_get_by_name(&t->value, "partitions", &f, NULL));
	for (i = 0; i < r->nparts; i++) {
		const tpart_t *p = &r->parts[i];

		TRY(avro_value_append(&f, &item, NULL));
		TRY(avro_value_get_by_name(&item, "topic", &pf, NULL));
		TRY(avro_value_set_string(&pf, p->topic));
		TRY(avro_value_get_by_name(&item, "partition", &pf, NULL));
		TRY(avro_value_set_int(&pf, p->partition));
		TRY(avro_value_get_by_name(&item, "events", &pf, NULL));
		TRY(avro_value_set_long(&pf, p->events));
		TRY(avro_value_get_by_name(&item, "first_offset", &pf, NULL));
		TRY(avro_value_set_long(&pf, p->first));
		TRY(avro_value_get_by_name(&item, "last_offset", &pf, NULL));
		TRY(avro_value_set_long(&pf, p->last));
	}
	return xr_avro_encode(t->schema, &t->value, out, errstr, errstr_size);
fail:
	snprintf(errstr, errstr_size, "transaction end record: %s",
	         avro_strerror());
	return -1;
}

int
xr_txend_ready(xr_txend_t *t, xr_buf_t *out, uint64_t *txn,
               xr_lsn_t *commit_lsn, char *errstr, size_t errstr_size)
{
	const rec_t *r;

	if (t->len == 0)
		return 0;
	r = at(t, 0);
	if (!r->closed || r->acked < r->events)
		return 0;
	if (encode(t, r, out, errstr, errstr_size))
		return -1;
	*txn = r->txn;
	*commit_lsn = r->commit_lsn;
	return 1;
}

void
xr_txend_pop(xr_txend_t *t)
{
	if (t->len == 0 || !at(t, 0)->closed)
		return;
	t->head = (t->head + 1) % t->cap;
	t->len--;
}
