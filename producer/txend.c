/* txend.c: transaction end records (txend.h). */
#include "producer/txend.h"

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
	"{\"name\":\"events\",\"type\":\"long\"}]}},"
	"\"doc\":\"Its events on each topic and partition.\"}"
	"]}";

typedef struct tpart_s {
	char   *topic;
	int32_t partition;
	int64_t events;
} tpart_t;

struct xr_txend_s {
	xr_schema_t        *schema;
	char                schema_id[XR_SCHEMA_ID_LEN + 1];
	avro_value_t        value;
	int64_t             changes;
	tpart_t            *parts;
	size_t              nparts, cap;
	size_t              last;      /* the part counted last */
};

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
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->cap; i++)
		free(t->parts[i].topic);
	free(t->parts);
	avro_value_decref(&t->value);
	xr_schema_destroy(t->schema);
	free(t);
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

void
xr_txend_begin(xr_txend_t *t)
{
	t->changes = 0;
	t->nparts = 0;
	t->last = 0;
}

int64_t
xr_txend_next_change(xr_txend_t *t)
{
	return t->changes++;
}

int64_t
xr_txend_changes(const xr_txend_t *t)
{
	return t->changes;
}

void
xr_txend_count(xr_txend_t *t, const char *topic, int32_t partition)
{
	size_t i;

	if (t->last < t->nparts && t->parts[t->last].partition == partition &&
	    strcmp(t->parts[t->last].topic, topic) == 0) {
		t->parts[t->last].events++;
		return;
	}
	for (i = 0; i < t->nparts; i++)
		if (t->parts[i].partition == partition &&
		    strcmp(t->parts[i].topic, topic) == 0) {
			t->parts[i].events++;
			t->last = i;
			return;
		}
	if (t->nparts == t->cap) {
		size_t n = t->cap ? 2 * t->cap : 8;

		t->parts = realloc(t->parts, n * sizeof(*t->parts));
		if (!t->parts)
			abort();
		memset(t->parts + t->cap, 0, (n - t->cap) * sizeof(*t->parts));
		t->cap = n;
	}
	/* Slots keep their topic string between transactions. */
	if (!t->parts[t->nparts].topic ||
	    strcmp(t->parts[t->nparts].topic, topic) != 0) {
		free(t->parts[t->nparts].topic);
		t->parts[t->nparts].topic = strdup(topic);
		if (!t->parts[t->nparts].topic)
			abort();
	}
	t->parts[t->nparts].partition = partition;
	t->parts[t->nparts].events = 1;
	t->last = t->nparts++;
}

#define TRY(expr)                                                           \
	do {                                                                    \
		if ((expr) != 0)                                                    \
			goto fail;                                                      \
	} while (0)

int
xr_txend_encode(xr_txend_t *t, const char *region, const char *database,
                const char *system_id, uint32_t xid, xr_lsn_t commit_lsn, int64_t commit_ts_us,
                xr_buf_t *out, char *errstr, size_t errstr_size)
{
	avro_value_t f, item, pf;
	int64_t      events = 0;
	size_t       i;

	xr_buf_reset(out);
	TRY(avro_value_reset(&t->value));
	TRY(avro_value_get_by_name(&t->value, "region", &f, NULL));
	TRY(avro_value_set_string(&f, region));
	TRY(avro_value_get_by_name(&t->value, "database", &f, NULL));
	TRY(avro_value_set_string(&f, database));
	TRY(avro_value_get_by_name(&t->value, "system_id", &f, NULL));
	TRY(avro_value_set_string(&f, system_id));
	TRY(avro_value_get_by_name(&t->value, "txid", &f, NULL));
	TRY(avro_value_set_long(&f, (int64_t)xid));
	TRY(avro_value_get_by_name(&t->value, "commit_lsn", &f, NULL));
	TRY(avro_value_set_long(&f, (int64_t)commit_lsn));
	TRY(avro_value_get_by_name(&t->value, "commit_ts", &f, NULL));
	TRY(avro_value_set_long(&f, commit_ts_us));
	TRY(avro_value_get_by_name(&t->value, "changes", &f, NULL));
	TRY(avro_value_set_long(&f, t->changes));
	TRY(avro_value_get_by_name(&t->value, "partitions", &f, NULL));
	for (i = 0; i < t->nparts; i++) {
		TRY(avro_value_append(&f, &item, NULL));
		TRY(avro_value_get_by_name(&item, "topic", &pf, NULL));
		TRY(avro_value_set_string(&pf, t->parts[i].topic));
		TRY(avro_value_get_by_name(&item, "partition", &pf, NULL));
		TRY(avro_value_set_int(&pf, t->parts[i].partition));
		TRY(avro_value_get_by_name(&item, "events", &pf, NULL));
		TRY(avro_value_set_long(&pf, t->parts[i].events));
		events += t->parts[i].events;
	}
	TRY(avro_value_get_by_name(&t->value, "events", &f, NULL));
	TRY(avro_value_set_long(&f, events));
	return xr_avro_encode(t->schema, &t->value, out, errstr, errstr_size);
fail:
	snprintf(errstr, errstr_size, "transaction end record: %s",
	         avro_strerror());
	return -1;
}
