/* registry.c: schemas by fingerprint from the schemas topic. */
#include "consumer/registry.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "common/kafka_conf.h"
#include "common/log.h"
#include "common/schema_registry.h"

struct xr_registry_s {
	const xr_config_t *conf;
	rd_kafka_t   *rk;        /* a consumer without a group: assign only */
	xr_schema_t **schemas;
	char        **ids;       /* each schema's topic key, "" if it had none */
	size_t        n, cap;
	int64_t      *next;      /* next offset to read, per partition */
	int           nparts;
	xr_sr_t      *sr;        /* kafka.schema_registry, made when needed */
};

xr_registry_t *
xr_registry_new(const xr_config_t *conf, char *errstr, size_t errstr_size)
{
	static const char *const defaults[] = {
		"client.id", "xregion-schemas",
		"group.id", "xregion-schemas-unused",  /* required; never joined */
		"enable.auto.commit", "false",
		"enable.partition.eof", "true",
		NULL
	};
	xr_registry_t   *r = calloc(1, sizeof(*r));
	rd_kafka_conf_t *kc;

	if (!r) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	r->conf = conf;
	kc = xr_kafka_conf_new(conf, defaults, NULL, errstr, errstr_size);
	if (!kc) {
		free(r);
		return NULL;
	}
	r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, errstr_size);
	if (!r->rk) {
		rd_kafka_conf_destroy(kc);
		free(r);
		return NULL;
	}
	return r;
}

void
xr_registry_destroy(xr_registry_t *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->n; i++) {
		xr_schema_destroy(r->schemas[i]);
		free(r->ids[i]);
	}
	free(r->schemas);
	free(r->ids);
	free(r->next);
	xr_sr_destroy(r->sr);
	rd_kafka_destroy(r->rk);
	free(r);
}

size_t
xr_registry_size(const xr_registry_t *r)
{
	return r->n;
}

/*
 * The schema with this id (the key it was published under) or, without an
 * id, the first with this fingerprint.  Schemas that differ only in what
 * the canonical form leaves out (logical types) share a fingerprint: the
 * id tells them apart.
 */
static const xr_schema_t *
find(const xr_registry_t *r, uint64_t fp, const char *id)
{
	size_t i;

	for (i = 0; i < r->n; i++) {
		if (r->schemas[i]->fingerprint != fp)
			continue;
		if (!id || strcmp(r->ids[i], id) == 0)
			return r->schemas[i];
	}
	return NULL;
}

/*
 * Keeps s under key id[0..idlen) unless a schema with that key is known
 * already (then the first one stays, as compaction keeps one per key).
 * Takes ownership of s in every case.  Returns 0, or -1 when out of memory
 * (s is then dropped).
 */
static int
put(xr_registry_t *r, const char *id_bytes, size_t idlen, xr_schema_t *s)
{
	char  *id;
	size_t i;

	id = strndup(id_bytes ? id_bytes : "", id_bytes ? idlen : 0);
	if (!id) {
		xr_schema_destroy(s);
		return -1;
	}
	for (i = 0; i < r->n; i++) {
		if (strcmp(r->ids[i], id) == 0) {
			xr_schema_destroy(s);
			free(id);
			return 0;
		}
	}
	if (r->n == r->cap) {
		size_t        ncap = r->cap ? r->cap * 2 : 32;
		xr_schema_t **ns = realloc(r->schemas, ncap * sizeof(*ns));
		char        **ni;

		if (!ns) {
			xr_schema_destroy(s);
			free(id);
			return -1;
		}
		r->schemas = ns;
		ni = realloc(r->ids, ncap * sizeof(*ni));
		if (!ni) {
			xr_schema_destroy(s);
			free(id);
			return -1;
		}
		r->ids = ni;
		r->cap = ncap;
	}
	r->ids[r->n] = id;
	r->schemas[r->n++] = s;
	return 0;
}

static void
add(xr_registry_t *r, const rd_kafka_message_t *m)
{
	xr_schema_t *s;
	char         err[512];

	if (!m->payload || m->len == 0)
		return;   /* a compaction tombstone */
	if (xr_schema_from_json(m->payload, m->len, &s, err, sizeof(err))) {
		xr_warn("schemas topic %s offset %" PRId64 ": not a schema (%s); "
		        "skipped", r->conf->schemas_topic, m->offset, err);
		return;
	}
	(void)put(r, m->key, m->key ? m->key_len : 0, s);   /* OOM: skipped */
}

int
xr_registry_add_json(xr_registry_t *r, const char *id, const char *json,
                     size_t len, char *errstr, size_t errstr_size)
{
	xr_schema_t *s;

	if (!json || len == 0)
		return 0;   /* a compaction tombstone */
	if (xr_schema_from_json(json, len, &s, errstr, errstr_size))
		return -1;
	if (put(r, id, id ? strlen(id) : 0, s)) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	return 0;
}

/* Reads the schemas topic from where it was left to its current end. */
static int
catch_up(xr_registry_t *r, char *errstr, size_t errstr_size)
{
	const char *topic = r->conf->schemas_topic;
	rd_kafka_topic_partition_list_t *parts;
	int64_t    *high;
	int         p, remaining = 0;
	rd_kafka_resp_err_t err;

	if (r->nparts == 0) {
		const struct rd_kafka_metadata *md;
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->rk, topic, NULL);

		err = rd_kafka_metadata(r->rk, 0, rkt, &md, 10000);
		rd_kafka_topic_destroy(rkt);
		if (err) {
			snprintf(errstr, errstr_size, "schemas topic %s: %s", topic,
			         rd_kafka_err2str(err));
			return -1;
		}
		if (md->topic_cnt != 1 || md->topics[0].err ||
		    md->topics[0].partition_cnt < 1) {
			snprintf(errstr, errstr_size, "schemas topic %s: %s", topic,
			         md->topic_cnt == 1 && md->topics[0].err
			             ? rd_kafka_err2str(md->topics[0].err)
			             : "no partitions");
			rd_kafka_metadata_destroy(md);
			return -1;
		}
		r->nparts = md->topics[0].partition_cnt;
		rd_kafka_metadata_destroy(md);
		r->next = calloc((size_t)r->nparts, sizeof(*r->next));
		if (!r->next) {
			r->nparts = 0;
			snprintf(errstr, errstr_size, "out of memory");
			return -1;
		}
	}
	high = calloc((size_t)r->nparts, sizeof(*high));
	parts = rd_kafka_topic_partition_list_new(r->nparts);
	for (p = 0; p < r->nparts; p++) {
		int64_t lo;

		err = rd_kafka_query_watermark_offsets(r->rk, topic, p, &lo, &high[p],
		                                       10000);
		if (err) {
			snprintf(errstr, errstr_size, "schemas topic %s [%d]: %s", topic,
			         p, rd_kafka_err2str(err));
			goto fail;
		}
		if (r->next[p] < lo)
			r->next[p] = lo;
		if (r->next[p] < high[p]) {
			rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
			    r->next[p];
			remaining++;
		}
	}
	if (remaining == 0)
		goto done;
	err = rd_kafka_assign(r->rk, parts);
	if (err) {
		snprintf(errstr, errstr_size, "schemas topic %s: assign: %s", topic,
		         rd_kafka_err2str(err));
		goto fail;
	}
	while (remaining > 0) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 10000);

		if (!m) {
			snprintf(errstr, errstr_size,
			         "schemas topic %s: no data within 10 s", topic);
			(void)rd_kafka_assign(r->rk, NULL);
			goto fail;
		}
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->err) {
			snprintf(errstr, errstr_size, "schemas topic %s: %s", topic,
			         rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			(void)rd_kafka_assign(r->rk, NULL);
			goto fail;
		}
		add(r, m);
		if (m->partition >= 0 && m->partition < r->nparts) {
			r->next[m->partition] = m->offset + 1;
			if (r->next[m->partition] == high[m->partition])
				remaining--;
		}
		rd_kafka_message_destroy(m);
	}
	(void)rd_kafka_assign(r->rk, NULL);
done:
	rd_kafka_topic_partition_list_destroy(parts);
	free(high);
	return 0;
fail:
	rd_kafka_topic_partition_list_destroy(parts);
	free(high);
	return -1;
}

const xr_schema_t *
xr_registry_get(xr_registry_t *r, uint64_t fp, const char *id, bool *transient,
                char *errstr, size_t errstr_size)
{
	const xr_schema_t *s = find(r, fp, id);

	*transient = false;
	if (s)
		return s;
	if (catch_up(r, errstr, errstr_size)) {
		*transient = true;
		return NULL;
	}
	s = find(r, fp, id);
	if (!s)
		snprintf(errstr, errstr_size,
		         "schema %s%s%016" PRIx64 " is not in schemas topic %s",
		         id ? id : "", id ? " (fingerprint " : "", fp,
		         r->conf->schemas_topic);
	return s;
}

/* A schema fetched from the schema registry, keyed "sr:<id>". */
static const xr_schema_t *
from_registry(xr_registry_t *r, int32_t id, bool *transient, char *errstr,
              size_t errstr_size)
{
	char        key[32];
	const char *json;
	size_t      i;

	snprintf(key, sizeof(key), "sr:%" PRId32, id);
	for (i = 0; i < r->n; i++)
		if (strcmp(r->ids[i], key) == 0)
			return r->schemas[i];
	if (!r->conf->registry_url) {
		snprintf(errstr, errstr_size, "Confluent-framed message (schema "
		         "registry id %" PRId32 ") but kafka.schema_registry is not "
		         "configured", id);
		return NULL;
	}
	if (!r->sr && !(r->sr = xr_sr_new(r->conf, errstr, errstr_size)))
		return NULL;
	json = xr_sr_schema(r->sr, id, transient, errstr, errstr_size);
	if (!json)
		return NULL;
	if (xr_registry_add_json(r, key, json, strlen(json), errstr, errstr_size))
		return NULL;
	for (i = 0; i < r->n; i++)
		if (strcmp(r->ids[i], key) == 0)
			return r->schemas[i];
	snprintf(errstr, errstr_size, "schema registry id %" PRId32 ": not kept",
	         id);
	return NULL;
}

const xr_schema_t *
xr_registry_resolve(xr_registry_t *r, const void *msg, size_t len,
                    const char *id, const void **body, size_t *body_len,
                    bool *transient, char *errstr, size_t errstr_size)
{
	uint64_t fp;
	int32_t  sid;

	*transient = false;
	if (xr_confluent_header(msg, len, &sid, body, body_len) == 0)
		return from_registry(r, sid, transient, errstr, errstr_size);
	if (xr_avro_so_header(msg, len, &fp, body, body_len, errstr,
	                      errstr_size))
		return NULL;
	return xr_registry_get(r, fp, id, transient, errstr, errstr_size);
}
