/*
 * produce.c: the producer's loop.  Reads pgoutput from the slot, publishes
 * one event per row change, and confirms to the slot only what Kafka has
 * acknowledged (see tracker.h).
 */
#include "producer/produce.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "common/avro_codec.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/lsn.h"
#include "common/mem.h"
#include "common/metrics.h"
#include "common/schema_registry.h"
#include "producer/backfill.h"
#include "producer/encoder.h"
#include "producer/pgoutput.h"
#include "producer/publisher.h"
#include "producer/relcache.h"
#include "producer/stamp.h"
#include "producer/stream.h"
#include "producer/tracker.h"
#include "producer/txend.h"

/* How a session ended. */
typedef enum {
	END_STOP = 0,     /* asked to stop */
	END_RETRY,        /* lost something that may come back: retry */
	END_FATAL,        /* retrying cannot help */
	END_RENEW         /* the Kafka producer is broken: a new one, then retry */
} session_end_t;

typedef struct session_s {
	const xr_config_t *conf;
	xr_metrics_t     *metrics;   /* may be NULL */
	atomic_int *stop;
	xr_publisher_t   *pub;
	xr_sr_t          *sr;        /* kafka.schema_registry, or NULL */
	xr_stream_t      *stream;
	PGconn           *catalog;   /* plain connection (catalog, row reads) */
	PGresult         *moved_res; /* values read back for the change at hand */
	/*
	 * A delete of a partitioned table, held until the next message: when
	 * that is an insert of the same key into the same table, the row moved
	 * between partitions, and the two are published as one update.
	 */
	bool              move_held;
	uint32_t          move_relid;
	xr_lsn_t          move_lsn;
	xr_pgo_tuple_t    move_old;   /* cols point into move_data */
	size_t            move_cap;
	xr_buf_t          move_data;
	uint64_t          visible_txn; /* txn_id seen visible by fill_unchanged */
	xr_stamper_t     *stamper;   /* versions of local writes (stamp.h) */
	xr_backfill_t    *backfill;  /* chunks of backfill jobs (backfill.h) */
	/*
	 * The transactions decoded since the last backfill chunk was read (the
	 * last SEEN_XIDS of them): the next chunk's snapshot must see them all.
	 */
	uint32_t          seen_xids[64];
	size_t            nseen;
	bool              chunk_at_commit; /* the watermark came: publish the
	                                      chunk at this Commit */
	/*
	 * Transactions whose stamps are not yet written: their Commit goes to
	 * the tracker once they are, so the slot never passes an unstamped
	 * write.
	 */
	struct { uint64_t id; xr_lsn_t end; } *held;
	size_t            nheld, capheld;
	int64_t           stamp_due_us; /* flush by then (0: nothing pending) */
	int64_t           stamp_retry_us; /* after a failure, not before then */
	int               stamp_backoff_ms;
	xr_pgo_parser_t  *parser;
	xr_relcache_t    *rels;
	xr_tracker_t     *tracker;
	xr_buf_t          key, value;
	/* The transaction's end record (txend.h). */
	xr_txend_t       *tx;
	xr_buf_t          txbuf;     /* an end record's bytes */
	bool              tx_schema_published;
	int32_t           tx_sr_id;

	/* The transaction being decoded. */
	bool              in_txn;
	bool              skip_txn;  /* carries a replication origin */
	uint64_t          txn_id;
	uint32_t          xid;
	xr_lsn_t          final_lsn;
	int64_t           commit_ts_us;
	uint64_t          change_no; /* changes of the transaction so far */
	json_t           *vclock;    /* the last vclock message, not yet used */
	json_t           *clock;     /* the last clock message, not yet used */

	xr_lsn_t          received;  /* highest LSN seen from the server */
	xr_lsn_t          idle_lsn;  /* keepalive position between transactions */
	/* Progress records (consumer/progress.h): a reading of the server's
	 * flushed WAL end and clock, and what was published last. */
	xr_lsn_t          through_lsn;
	int64_t           through_clock_us, through_sent_us, through_at_us;
	int64_t           through_sending;  /* T of the record in flight, 0 */
	xr_lsn_t          reported;  /* last flush LSN sent */
	int64_t           last_status_us;
	int               status_ms;  /* status_interval_ms, within the server's
	                               * wal_sender_timeout */
	bool              fatal;     /* a wait callback saw an unfixable error */

	/* Progress. */
	uint64_t          events;
	uint64_t          txns;
	uint64_t          origin_txns;
	int64_t           last_progress_us;
	uint64_t          progress_events;
} session_t;

/* Sends status when due, or now with force. */
static int
send_status(session_t *s, bool force, char *errstr, size_t errstr_size)
{
	int64_t  now = xr_mono_us();
	xr_lsn_t safe = xr_tracker_safe_lsn(s->tracker);

	xr_publisher_poll(s->pub, 0);
	if (!force && now - s->last_status_us < (int64_t)s->status_ms * 1000 &&
	    !(safe > s->reported && now - s->last_status_us >= 1000000))
		return 0;
	if (xr_stream_send_status(s->stream, s->received > safe ? s->received : safe,
	                          safe, errstr, errstr_size))
		return -1;
	if (safe != s->reported) {
		char lsn[XR_LSN_STRLEN];

		xr_debug("confirmed %s to slot %s", xr_lsn_format(safe, lsn),
		         s->conf->slot);
	}
	s->reported = safe;
	s->last_status_us = now;
	return 0;
}

static void
progress(session_t *s, bool force)
{
	if (s->metrics) {
		atomic_store(&s->metrics->confirmed_lsn,
		             xr_tracker_safe_lsn(s->tracker));
		atomic_store(&s->metrics->in_flight, xr_tracker_in_flight(s->tracker));
	}

	int64_t now = xr_mono_us();
	char    lsn[XR_LSN_STRLEN];
	double  secs = (double)(now - s->last_progress_us) / 1e6;

	if (!force && secs < 30.0)
		return;
	if (s->events != s->progress_events || force)
		xr_info("produced %" PRIu64 " events in %" PRIu64 " transactions "
		        "(%.0f events/s), %" PRIu64 " in flight, confirmed %s",
		        s->events, s->txns,
		        secs > 0 ? (double)(s->events - s->progress_events) / secs : 0,
		        xr_tracker_in_flight(s->tracker),
		        xr_lsn_format(xr_tracker_safe_lsn(s->tracker), lsn));
	s->last_progress_us = now;
	s->progress_events = s->events;
}

/* Keeps the replication connection alive while Kafka's queue is full. */
static int
wait_cb(void *ctx)
{
	session_t *s = ctx;
	char       err[512];

	if (*s->stop)
		return 1;
	if (send_status(s, false, err, sizeof(err))) {
		xr_warn("%s", err);
		return 1;
	}
	return 0;
}

/*
 * The plain connection (catalog look-ups, rows read back), made on first
 * use with the stream's text settings.  Returns 0, or -1 with errstr.
 */
static int
catalog_conn(session_t *s, char *errstr, size_t errstr_size)
{
	const char *keys[] = { "dbname", "options", "application_name",
	                       "connect_timeout", NULL };
	const char *vals[] = { s->conf->pg_dsn, xr_stream_session_options,
	                       "xregion-producer-catalog", "10", NULL };

	if (s->catalog && PQstatus(s->catalog) == CONNECTION_OK)
		return 0;
	PQfinish(s->catalog);
	s->catalog = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(s->catalog) != CONNECTION_OK) {
		snprintf(errstr, errstr_size, "catalog connection: %s",
		         PQerrorMessage(s->catalog));
		PQfinish(s->catalog);
		s->catalog = NULL;
		return -1;
	}
	return 0;
}

/*
 * The interval of status messages: status_interval_ms, but at most a third
 * of the server's wal_sender_timeout, or the server ends an idle stream
 * ("otherwise wal_sender_timeout will kill us").  When the setting cannot
 * be read, the configured interval.
 */
static int
status_interval(session_t *s)
{
	char      err[512];
	PGresult *res;
	int       ms = s->conf->status_interval_ms, timeout = 0;

	if (catalog_conn(s, err, sizeof(err))) {
		xr_warn("%s; wal_sender_timeout not checked", err);
		return ms;
	}
	res = PQexec(s->catalog, "SELECT setting::int FROM pg_catalog.pg_settings "
	                         "WHERE name = 'wal_sender_timeout'");
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		timeout = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (timeout > 0 && ms > timeout / 3) {
		xr_warn("producer.status_interval_ms %d is too close to the server's "
		        "wal_sender_timeout %d ms: status goes every %d ms instead",
		        ms, timeout, timeout / 3 > 100 ? timeout / 3 : 100);
		ms = timeout / 3 > 100 ? timeout / 3 : 100;
	}
	return ms;
}

/*
 * The primary-key columns of relid, read from the catalog: the key of an
 * event is the primary key whatever the table's replica identity is.
 * Returns a NULL-terminated list (free each and the list), NULL if none.
 */
static char **
primary_key(session_t *s, uint32_t relid, char *errstr, size_t errstr_size,
            int *failed)
{
	char        oid[16];
	const char *params[1] = { oid };
	PGresult   *res;
	char      **cols = NULL;
	int         i, n;

	*failed = 0;
	if (catalog_conn(s, errstr, errstr_size)) {
		*failed = 1;
		return NULL;
	}
	snprintf(oid, sizeof(oid), "%" PRIu32, relid);
	res = PQexecParams(s->catalog,
	                   "SELECT a.attname FROM pg_catalog.pg_index i "
	                   "JOIN pg_catalog.pg_attribute a "
	                   "  ON a.attrelid = i.indrelid "
	                   " AND a.attnum = ANY (i.indkey) "
	                   "WHERE i.indrelid = $1::oid AND i.indisprimary",
	                   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "reading primary key: %s",
		         PQerrorMessage(s->catalog));
		PQclear(res);
		*failed = 1;
		return NULL;
	}
	n = PQntuples(res);
	if (n > 0) {
		cols = calloc((size_t)n + 1, sizeof(*cols));
		for (i = 0; cols && i < n; i++)
			cols[i] = strdup(PQgetvalue(res, i, 0));
	}
	PQclear(res);
	return cols;
}

/* Whether relid is a partitioned table.  Returns 0, or -1 with errstr. */
static int
relkind_of(session_t *s, uint32_t relid, bool *partitioned, char *errstr,
           size_t errstr_size)
{
	char        oid[16];
	const char *params[1] = { oid };
	PGresult   *res;

	*partitioned = false;
	if (catalog_conn(s, errstr, errstr_size))
		return -1;
	snprintf(oid, sizeof(oid), "%" PRIu32, relid);
	res = PQexecParams(s->catalog,
	                   "SELECT relkind = 'p' FROM pg_catalog.pg_class "
	                   "WHERE oid = $1::oid", 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "reading relkind: %s",
		         PQerrorMessage(s->catalog));
		PQclear(res);
		return -1;
	}
	*partitioned = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
	PQclear(res);
	return 0;
}

static void
free_list(char **l)
{
	char **p;

	for (p = l; p && *p; p++)
		free(*p);
	free(l);
}

/* The relation a change names, if it is to be published. */
static xr_rel_t *
change_rel(session_t *s, uint32_t relid, int *err, char *errstr,
           size_t errstr_size)
{
	xr_rel_t *rel = xr_relcache_get(s->rels, relid);

	*err = 0;
	if (!rel) {
		snprintf(errstr, errstr_size,
		         "change for relation %" PRIu32 " before its Relation message",
		         relid);
		*err = 1;
		return NULL;
	}
	if (!rel->published) {
		if (!rel->warned)
			xr_warn("table %s.%s is in publication %s but not marked "
			        "pii: false in %s: its changes are not published",
			        rel->nspname, rel->relname, s->conf->publication,
			        s->conf->path);
		rel->warned = true;
		return NULL;
	}
	return rel;
}

/*
 * Rewrites errstr, a publisher error of XR_PUB_FATAL for an event or schema
 * of rel (NULL if unknown), into the ERROR line that says what to do.
 */
static void
kafka_fatal(session_t *s, const xr_rel_t *rel, char *errstr,
            size_t errstr_size)
{
	char reason[768], table[256] = "";

	snprintf(reason, sizeof(reason), "%s", errstr);
	if (rel)
		snprintf(table, sizeof(table), "table %s.%s: ", rel->nspname,
		         rel->relname);
	if (xr_publisher_fatal(s->pub, errstr, errstr_size)) {
		/* Whatever the message met, this is the cause now. */
		snprintf(reason, sizeof(reason), "%s", errstr);
		snprintf(errstr, errstr_size,
		         "%s%s; this Kafka producer cannot publish any more%s",
		         table, reason, xr_publisher_renewable(s->pub)
		                            ? "" : ": restart xregion");
	} else {
		snprintf(errstr, errstr_size,
		         "%s%s; raise kafka.max_message_bytes and the max.message."
		         "bytes of the table's topic (setup does not alter an "
		         "existing topic), or list the large column in "
		         "exclude_columns, then restart", table, reason);
	}
}

/*
 * Appends to errstr, the reason a change of the open transaction cannot be
 * published, that xregion stops and where the slot stays.
 */
static void
fatal_change(session_t *s, char *errstr, size_t errstr_size)
{
	char reason[900], lsn[XR_LSN_STRLEN];

	snprintf(reason, sizeof(reason), "%s", errstr);
	snprintf(errstr, errstr_size,
	         "%s (%s, and slot %s stays before this transaction, xid %" PRIu32
	         ", commit LSN %s)", reason,
	         xr_publisher_renewable(s->pub)
	             ? "a new Kafka producer replaces this one" :
	               "retrying cannot help: xregion stops",
	         s->conf->slot, s->xid, xr_lsn_format(s->final_lsn, lsn));
}

/*
 * Publishes a relation's key and value schemas to the schemas topic, keyed
 * by their ids (fingerprint.json-crc, see relcache.h): two schemas with the
 * same canonical form but other logical types have other keys, so the
 * compacted topic keeps both.  Returns 0 or a publisher result code.
 */
static int
publish_schemas(session_t *s, xr_rel_t *rel, char *errstr, size_t errstr_size)
{
	const xr_schema_t *schemas[2] = { rel->key_schema, rel->value_schema };
	const char        *ids[2] = { rel->key_schema_id, rel->value_schema_id };
	int                i, rc;

	for (i = 0; i < 2; i++) {
		rc = xr_publisher_produce_sync(s->pub, s->conf->schemas_topic,
		                               RD_KAFKA_PARTITION_UA,
		                               ids[i], strlen(ids[i]),
		                               schemas[i]->json.data,
		                               schemas[i]->json.len,
		                               s->conf->flush_timeout_ms, errstr,
		                               errstr_size);
		if (rc == XR_PUB_FATAL &&
		    xr_publisher_fatal(s->pub, errstr, errstr_size)) {
			kafka_fatal(s, rel, errstr, errstr_size);
		} else if (rc == XR_PUB_FATAL) {
			char reason[700];

			/* Too large: the schema must fit like any event. */
			snprintf(reason, sizeof(reason), "%s", errstr);
			snprintf(errstr, errstr_size,
			         "table %s.%s: its %s schema %s cannot be published: "
			         "%s; raise kafka.max_message_bytes (and the schemas "
			         "topic's max.message.bytes, if set lower) above the "
			         "schema's size, then restart", rel->nspname,
			         rel->relname, i ? "value" : "key", ids[i], reason);
		}
		if (rc)
			return rc;
	}
	xr_info("table %s.%s: schemas %s (value) and %s (key) published to %s",
	        rel->nspname, rel->relname, rel->value_schema_id,
	        rel->key_schema_id, s->conf->schemas_topic);
	if (s->sr && !rel->sr_registered) {
		/* Confluent framing: the registry's ids, per subject. */
		for (i = 0; i < 2; i++) {
			xr_buf_t subject;
			bool     transient;
			int32_t *id = i ? &rel->sr_value_id : &rel->sr_key_id;

			xr_buf_init(&subject);
			xr_buf_printf(&subject, "%s-%s", rel->topic, i ? "value" : "key");
			rc = xr_sr_register(s->sr, subject.data, schemas[i]->json.data, id,
			                    &transient, errstr, errstr_size);
			if (rc == 0)
				xr_info("table %s.%s: schema registry subject %s: id %" PRId32,
				        rel->nspname, rel->relname, subject.data, *id);
			xr_buf_term(&subject);
			if (rc)
				return transient ? XR_PUB_RETRY : XR_PUB_FATAL;
		}
		rel->sr_registered = true;
	}
	rel->schemas_published = true;
	return 0;
}

/*
 * The headers of an event: its region, id and LSN, the writer schemas,
 * for an lww write the hybrid clock moved past its commit time
 * (version_ts not 0), that version time, and for a change of a
 * transaction (src->tx_index >= 0) xr-tx, "<commit LSN>:<tx_index>" in
 * decimal, and on its first change xr-prev, the commit LSN of the
 * transaction this session published before it: what a reader assembling
 * transactions needs without decoding.
 */
static rd_kafka_headers_t *
headers(session_t *s, const xr_rel_t *rel, const char *event_id, xr_lsn_t lsn,
        bool has_key, int64_t version_ts, const char *for_region,
        const xr_source_t *src)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(8);
	char                buf[XR_LSN_STRLEN];
	char                ts[48];

	xr_lsn_format(lsn, buf);
	(void)rd_kafka_header_add(h, "xr-region", -1, s->conf->region, -1);
	(void)rd_kafka_header_add(h, "xr-event-id", -1, event_id, -1);
	(void)rd_kafka_header_add(h, "xr-lsn", -1, buf, -1);
	/* The exact writer schemas: the fingerprint alone misses logical types. */
	(void)rd_kafka_header_add(h, "xr-schema", -1, rel->value_schema_id, -1);
	if (has_key)
		(void)rd_kafka_header_add(h, "xr-key-schema", -1, rel->key_schema_id,
		                          -1);
	if (version_ts) {
		snprintf(ts, sizeof(ts), "%" PRId64, version_ts);
		(void)rd_kafka_header_add(h, "xr-version-ts", -1, ts, -1);
	}
	if (for_region)
		(void)rd_kafka_header_add(h, "xr-for", -1, for_region, -1);
	if (src->tx_index >= 0) {
		size_t n = xr_u64_digits(ts, (uint64_t)src->commit_lsn);

		ts[n++] = ':';
		n += xr_u64_digits(ts + n, (uint64_t)src->tx_index);
		(void)rd_kafka_header_add(h, "xr-tx", -1, ts, (ssize_t)n);
		/*
		 * The first event names the transaction published before this
		 * one: a consumer that has taken it may apply this one as it
		 * arrives, before its end record (consumer/txq.h).
		 */
		if (src->tx_index == 0 && xr_txend_prev(s->tx) != 0) {
			n = xr_u64_digits(ts, (uint64_t)xr_txend_prev(s->tx));
			(void)rd_kafka_header_add(h, "xr-prev", -1, ts, (ssize_t)n);
		}
		/* A second producer of the region (consumer/txq.h). */
		if (s->conf->stream)
			(void)rd_kafka_header_add(h, "xr-stream", -1, s->conf->stream,
			                          -1);
	}
	return h;
}

/*
 * Encodes and publishes one event of rel, described by src, as a message of
 * tracker transaction txn; a truncate goes to every partition, with one
 * event id.  lsn is the xr-lsn header; for_region, if not NULL, the xr-for
 * header.  Returns 0, or XR_PUB_RETRY or XR_PUB_FATAL with errstr set: an
 * encoder failure is fatal, since the same change fails the same way every
 * time.
 */
static int
publish_event(session_t *s, xr_rel_t *rel, xr_op_t op,
              const xr_pgo_tuple_t *before, const xr_pgo_tuple_t *after,
              const xr_source_t *src, xr_lsn_t lsn, uint64_t txn,
              int64_t version_ts, const char *for_region, char *errstr,
              size_t errstr_size)
{
	char    event_id[XR_EVENT_ID_LEN + 1];
	int     nparts = 1, p, rc;
	int32_t part = RD_KAFKA_PARTITION_UA;

	if (!rel->schemas_published &&
	    (rc = publish_schemas(s, rel, errstr, errstr_size)) != 0)
		return rc;
	if (xr_encode_change(rel, op, before, after, src, &s->key, &s->value,
	                     event_id, errstr, errstr_size))
		return XR_PUB_FATAL;
	/*
	 * The partition is chosen here, not by librdkafka, so that the
	 * transaction's end record can count the events of each partition.
	 * It is the murmur2 of the key's single-object bytes, as librdkafka's
	 * partitioner would choose it: with the registry too, so that a key
	 * keeps its partition when a region switches framing.
	 */
	if (s->key.len && op != XR_OP_TRUNCATE) {
		int n = xr_publisher_partitions(s->pub, rel->topic, errstr,
		                                errstr_size);

		if (n < 0)
			return XR_PUB_RETRY;
		part = rd_kafka_msg_partitioner_murmur2(NULL, s->key.data, s->key.len,
		                                        n, NULL, NULL);
	}
	if (s->sr) {
		xr_avro_confluent_reframe(&s->value, rel->sr_value_id);
		if (s->key.len)
			xr_avro_confluent_reframe(&s->key, rel->sr_key_id);
	}
	if (op == XR_OP_TRUNCATE) {
		nparts = xr_publisher_partitions(s->pub, rel->topic, errstr,
		                                 errstr_size);
		if (nparts < 0)
			return XR_PUB_RETRY;
	}
	/* Every event of a transaction goes to a partition we name. */
	if (src->tx_index >= 0 && part == RD_KAFKA_PARTITION_UA)
		part = 0;
	for (p = 0; p < nparts; p++) {
		/*
		 * Counted before it is queued, like the tracker's count: a poll
		 * inside produce may serve this message's own delivery report.
		 */
		if (src->tx_index >= 0)
			xr_txend_count(s->tx, rel->topic,
			               op == XR_OP_TRUNCATE ? p : part);
		rc = xr_publisher_produce(s->pub, rel->topic,
		                          op == XR_OP_TRUNCATE ? p : part,
		                          s->key.len ? s->key.data : NULL, s->key.len,
		                          s->value.data, s->value.len,
		                          headers(s, rel, event_id, lsn, s->key.len > 0,
		                                  version_ts, for_region, src),
		                          txn, errstr, errstr_size);
		if (rc == XR_PUB_FATAL)
			kafka_fatal(s, rel, errstr, errstr_size);
		if (rc)
			return rc;
	}
	s->events++;
	if (s->metrics)
		atomic_fetch_add(&s->metrics->produced_events, 1);
	return 0;
}

/*
 * Publishes one change of the transaction being decoded, the index-th of
 * it.  Returns as publish_event.
 */
static int
publish_change(session_t *s, xr_rel_t *rel, xr_op_t op,
               const xr_pgo_tuple_t *before, const xr_pgo_tuple_t *after,
               xr_lsn_t lsn, uint64_t index, const xr_vclock_t *vclock,
               int64_t version_ts, char *errstr, size_t errstr_size)
{
	xr_source_t src = {
		.region = s->conf->region,
		.database = xr_stream_database(s->stream),
		.lsn = lsn,
		.commit_lsn = s->final_lsn,
		.xid = s->xid,
		.commit_ts_us = s->commit_ts_us,
		.origin = NULL,
		.change_index = index,
		.vclock = vclock,
		.tx_index = xr_txend_changes(s->tx),
	};
	int rc = publish_event(s, rel, op, before, after, &src, lsn, s->txn_id,
	                       version_ts, NULL, errstr, errstr_size);

	if (rc == 0)
		(void)xr_txend_next_change(s->tx);
	return rc;
}

/*
 * Publishes the schema of the end records, the first time a transaction
 * needs one.  Returns 0 or a publisher result code.
 */
static int
publish_tx_schema(session_t *s, char *errstr, size_t errstr_size)
{
	const xr_schema_t *sch = xr_txend_schema(s->tx);
	const char        *id = xr_txend_schema_id(s->tx);
	int                rc;

	if (s->tx_schema_published)
		return 0;
	rc = xr_publisher_produce_sync(s->pub, s->conf->schemas_topic,
	                               RD_KAFKA_PARTITION_UA, id,
	                               strlen(id), sch->json.data, sch->json.len,
	                               s->conf->flush_timeout_ms, errstr,
	                               errstr_size);
	if (rc)
		return rc;
	if (s->sr) {
		xr_buf_t subject;
		bool     transient;

		xr_buf_init(&subject);
		xr_buf_printf(&subject, "%s-value", s->conf->transactions_topic);
		rc = xr_sr_register(s->sr, subject.data, sch->json.data,
		                    &s->tx_sr_id, &transient, errstr, errstr_size);
		xr_buf_term(&subject);
		if (rc)
			return transient ? XR_PUB_RETRY : XR_PUB_FATAL;
	}
	s->tx_schema_published = true;
	return 0;
}

/*
 * Closes the end record of the transaction being committed, if it
 * published a change: one more message of its tracker transaction, so the
 * slot passes the commit only once Kafka has the record too.  The record
 * is produced by flush_tx_ends once its events are acknowledged.  Returns
 * 0 or a publisher result code.
 */
static int
close_tx_end(session_t *s, char *errstr, size_t errstr_size)
{
	int rc;

	if (xr_txend_changes(s->tx) > 0 &&
	    (rc = publish_tx_schema(s, errstr, errstr_size)) != 0)
		return rc;
	if (xr_txend_commit(s->tx, s->conf->region, xr_stream_database(s->stream),
	                    xr_stream_system_id(s->stream), s->xid, s->final_lsn,
	                    s->commit_ts_us))
		xr_tracker_add(s->tracker, s->txn_id);
	return 0;
}

/*
 * Produces the end records whose events Kafka has all acknowledged, in
 * commit order.  Returns 0, or -1 with errstr (the session ends; the
 * transactions not recorded stay unconfirmed and are sent again).
 */
static int
flush_tx_ends(session_t *s, char *errstr, size_t errstr_size)
{
	const char *id = xr_txend_schema_id(s->tx);
	uint64_t    txn;
	xr_lsn_t    clsn;
	int         r;

	while ((r = xr_txend_ready(s->tx, &s->txbuf, &txn, &clsn, errstr,
	                           errstr_size)) == 1) {
		rd_kafka_headers_t *h = rd_kafka_headers_new(4);
		char                lsn[XR_LSN_STRLEN];

		if (s->sr)
			xr_avro_confluent_reframe(&s->txbuf, s->tx_sr_id);
		xr_lsn_format(clsn, lsn);
		(void)rd_kafka_header_add(h, "xr-region", -1, s->conf->region, -1);
		(void)rd_kafka_header_add(h, "xr-lsn", -1, lsn, -1);
		(void)rd_kafka_header_add(h, "xr-schema", -1, id, -1);
		/* A second producer of the region: its own applied position. */
		if (s->conf->stream)
			(void)rd_kafka_header_add(h, "xr-stream", -1, s->conf->stream,
			                          -1);
		if (xr_publisher_produce_counted(s->pub, s->conf->transactions_topic,
		                                 0, s->txbuf.data, s->txbuf.len, h,
		                                 txn, errstr, errstr_size))
			return -1;
		xr_txend_pop(s->tx);
	}
	return r;
}

/* The publisher's delivery callback: where the events landed. */
static void
on_delivered(void *ctx, uint64_t txn, const char *topic, int32_t partition,
             int64_t offset)
{
	session_t *s = ctx;

	xr_txend_delivered(s->tx, txn, topic, partition, offset);
}

static int wait_all_visible(PGconn *conn, const uint32_t *xids, size_t n,
                            char *errstr, size_t errstr_size);

/*
 * At the watermark mark_lsn of the open backfill chunk: publishes its rows
 * left (snapshot_read events, each with its row's own version; for a chunk
 * of tombstones, deletes with the delete's version), then the table's
 * truncation marker if the chunk carries it, as messages of tracker
 * transaction txn, which the caller commits at mark_lsn once they are all
 * queued.  The chunk's progress is recorded once the safe LSN reaches
 * mark_lsn: that must wait for these messages, so txn is the watermark's
 * own transaction (or one opened for a watermark outside a transaction),
 * never one committed before them.  Returns 0, or -1 with errstr and
 * *fatal as handle_change.
 */
static int
publish_chunk(session_t *s, uint64_t txn, xr_lsn_t mark_lsn, char *errstr,
              size_t errstr_size, bool *fatal)
{
	xr_rel_t   *rel = xr_backfill_rel(s->backfill);
	size_t      i, n = xr_backfill_rows(s->backfill);
	int         rc = 0;

	/* Index n: the truncation marker (rows take 0 .. n-1). */
	for (i = 0; i <= n && rc == 0; i++) {
		xr_pgo_tuple_t        tup;
		xr_backfill_version_t ver;
		xr_vclock_t           vc;
		xr_source_t           src;
		xr_op_t               op = xr_backfill_op(s->backfill);

		if (i == n) {
			if (!xr_backfill_truncation(s->backfill, &ver))
				break;
			op = XR_OP_TRUNCATE;
		} else if (!xr_backfill_row(s->backfill, i, &tup, &ver)) {
			continue;
		}
		memset(&src, 0, sizeof(src));
		src.region = s->conf->region;
		src.database = xr_stream_database(s->stream);
		src.lsn = ver.lsn;
		src.commit_lsn = ver.clsn;
		src.commit_ts_us = ver.ts;
		src.origin = ver.region;
		src.change_index = i;
		src.read_lsn = mark_lsn;
		src.tx_index = -1;   /* no transaction: no end record counts it */
		if (ver.vector) {
			memset(&vc, 0, sizeof(vc));
			vc.hlc = ver.ts;
			vc.vector = ver.vector;
			src.vclock = &vc;
		}
		rc = publish_event(s, rel, op,
		                   op == XR_OP_DELETE ? &tup : NULL,
		                   op == XR_OP_SNAPSHOT_READ ? &tup : NULL, &src,
		                   mark_lsn, txn, 0, xr_backfill_for(s->backfill),
		                   errstr, errstr_size);
	}
	if (rc) {
		xr_backfill_abandon(s->backfill);
		if (rc == XR_PUB_FATAL) {
			fatal_change(s, errstr, errstr_size);
			*fatal = true;
		}
		return -1;
	}
	xr_backfill_published(s->backfill, mark_lsn);
	return 0;
}

/*
 * Between the turns of the stream: records the progress of a backfill
 * chunk that Kafka has acknowledged, and reads the next chunk when due.
 * Failures are logged and tried again later: the stream goes on.
 */
static void
backfill_step(session_t *s)
{
	char     err[1024];
	int64_t  now = xr_mono_us();
	xr_lsn_t safe = xr_tracker_safe_lsn(s->tracker);

	if (!xr_backfill_due(s->backfill, now) &&
	    !xr_backfill_safe(s->backfill, safe))
		return;
	if (catalog_conn(s, err, sizeof(err))) {
		xr_warn("backfill: %s", err);
		return;
	}
	if (xr_backfill_acked(s->backfill, s->catalog, safe, err, sizeof(err)))
		xr_warn("%s", err);
	if (!xr_backfill_due(s->backfill, now))
		return;
	/*
	 * What was published already must be in the chunk's snapshot: every
	 * transaction decoded since the last chunk, whatever order they left
	 * the proc array in.
	 */
	if (wait_all_visible(s->catalog, s->seen_xids,
	                     s->nseen < 64 ? s->nseen : 64, err, sizeof(err))) {
		xr_warn("backfill: %s", err);
		return;
	}
	if (xr_backfill_read(s->backfill, s->catalog, now, err, sizeof(err)))
		xr_warn("%s (tried again in 5 s)", err);
	else
		s->nseen = 0;
}

/* The prefix of the messages the vclock triggers emit (see meta.c). */
#define VCLOCK_PREFIX "xregion.vclock"

/* The prefix of the messages the lww clock triggers emit (see meta.c). */
#define CLOCK_PREFIX "xregion.clock"

/*
 * Keeps a vclock or clock message (transactional, of a transaction being
 * published) for the change that follows it.
 */
static void
trigger_message(session_t *s, const xr_pgo_msg_t *m)
{
	json_error_t jerr;
	json_t     **slot;

	if (!(m->u.message.flags & 1) || s->skip_txn)
		return;
	if (strcmp(m->u.message.prefix, VCLOCK_PREFIX) == 0)
		slot = &s->vclock;
	else if (strcmp(m->u.message.prefix, CLOCK_PREFIX) == 0)
		slot = &s->clock;
	else
		return;
	json_decref(*slot);
	*slot = json_loadb(m->u.message.content, m->u.message.len, 0, &jerr);
	if (!*slot || !json_is_object(*slot)) {
		xr_warn("%s message at %X/%X unreadable: %s", m->u.message.prefix,
		        (unsigned)(m->u.message.lsn >> 32),
		        (unsigned)m->u.message.lsn,
		        *slot ? "not an object" : jerr.text);
		json_decref(*slot);
		*slot = NULL;
	}
}

/*
 * Whether msg, a kept trigger message, is the one of this change: the
 * triggers emit it just before the row is written, naming the table and
 * the key as text (the same output functions pgoutput uses).
 */
static bool
message_match(const json_t *msg, const xr_rel_t *rel, const xr_pgo_tuple_t *tup)
{
	json_t *k = json_object_get(msg, "k");
	json_t *sch = json_object_get(msg, "s"), *tab = json_object_get(msg, "t");
	int     i;

	if (!tup || !json_is_object(k) || !json_is_string(sch) ||
	    !json_is_string(tab) ||
	    strcmp(json_string_value(sch), rel->nspname) != 0 ||
	    strcmp(json_string_value(tab), rel->relname) != 0)
		return false;
	for (i = 0; i < rel->ncols && i < tup->ncols; i++) {
		const xr_pgo_datum_t *d = &tup->cols[i];
		json_t               *v;

		if (!rel->cols[i].is_key)
			continue;
		v = json_object_get(k, rel->cols[i].name);
		if (d->kind != XR_PGO_COL_TEXT || !json_is_string(v) ||
		    json_string_length(v) != d->len ||
		    memcmp(json_string_value(v), d->data, d->len) != 0)
			return false;
	}
	return true;
}

/* Whether the kept vclock message is the one of this change. */
static bool
vclock_match(const session_t *s, const xr_rel_t *rel, const xr_pgo_tuple_t *tup)
{
	return message_match(s->vclock, rel, tup) &&
	       json_is_integer(json_object_get(s->vclock, "h")) &&
	       json_is_object(json_object_get(s->vclock, "v"));
}

/*
 * The version time the clock trigger gave this change of an lww table,
 * or 0 (none: the commit time is its version time).  The message names
 * the operation too: an insert that became an update (ON CONFLICT) must
 * not take the insert's time.
 */
static int64_t
clock_for(const session_t *s, const xr_rel_t *rel, xr_op_t op,
          const xr_pgo_tuple_t *before, const xr_pgo_tuple_t *after)
{
	const char *want = op == XR_OP_INSERT ? "i" : op == XR_OP_UPDATE ? "u"
	                 : op == XR_OP_DELETE ? "d" : NULL;
	json_t     *o = json_object_get(s->clock, "o");
	json_t     *h = json_object_get(s->clock, "h");

	if (!s->clock || !want || !rel->tconf ||
	    rel->tconf->conflict != XR_CONFLICT_LWW || !json_is_string(o) ||
	    strcmp(json_string_value(o), want) != 0 || !json_is_integer(h) ||
	    !message_match(s->clock, rel, op == XR_OP_DELETE ? before : after))
		return 0;
	return (int64_t)json_integer_value(h);
}

/* Fills vc from the kept message if it belongs to this change. */
static const xr_vclock_t *
vclock_for(session_t *s, xr_rel_t *rel, xr_op_t op,
           const xr_pgo_tuple_t *before, const xr_pgo_tuple_t *after,
           xr_vclock_t *vc)
{
	const xr_pgo_tuple_t *tup = op == XR_OP_DELETE ? before : after;
	json_t               *ov;

	if (!rel->tconf || rel->tconf->conflict != XR_CONFLICT_VCLOCK ||
	    op == XR_OP_TRUNCATE)
		return NULL;
	if (!s->vclock || !vclock_match(s, rel, tup)) {
		if (!rel->vclock_warned)
			xr_warn("table %s.%s is in conflict mode vclock but a change "
			        "came without its version vector (was xregion setup "
			        "run, and is trigger xregion_vclock enabled?); such "
			        "changes are published without one", rel->nspname,
			        rel->relname);
		rel->vclock_warned = true;
		return NULL;
	}
	vc->hlc = (int64_t)json_integer_value(json_object_get(s->vclock, "h"));
	vc->vector = json_object_get(s->vclock, "v");
	ov = json_object_get(s->vclock, "ov");
	vc->before_vector = json_is_object(ov) ? ov : NULL;
	vc->before_hlc = (int64_t)json_integer_value(json_object_get(s->vclock,
	                                                             "oh"));
	return vc;
}

/*
 * Waits until transaction xid is no longer in progress for other
 * sessions.  The server streams a transaction once its commit record is
 * flushed, a moment before it leaves the proc array; until then, a new
 * snapshot does not see its rows.  Gives up after 2 s (the caller then
 * reads what is visible).  Returns 0, or -1 with errstr.
 */
static int
wait_visible(PGconn *conn, uint32_t xid, char *errstr, size_t errstr_size)
{
	return wait_all_visible(conn, &xid, 1, errstr, errstr_size);
}

/*
 * wait_visible for each of xids[0..n), in one query a turn.
 */
static int
wait_all_visible(PGconn *conn, const uint32_t *xids, size_t n, char *errstr,
                 size_t errstr_size)
{
	xr_buf_t    arr;
	const char *params[1];
	size_t      i;
	int         t;

	if (n == 0)
		return 0;
	xr_buf_init(&arr);
	xr_buf_putc(&arr, '{');
	for (i = 0; i < n; i++)
		xr_buf_printf(&arr, "%s%" PRIu32, i ? "," : "", xids[i]);
	xr_buf_putc(&arr, '}');
	params[0] = arr.data;
	for (t = 0; t < 2000; t++) {
		PGresult *res = PQexecParams(
			conn,
			"SELECT coalesce(bool_or(pg_catalog.pg_xact_status(((n / "
			"4294967296 - CASE WHEN x >= n % 4294967296 AND n >= 4294967296 "
			"THEN 1 ELSE 0 END) * 4294967296 + x)::text::xid8) = "
			"'in progress'), false) "
			"FROM unnest($1::bigint[]) x, (SELECT pg_catalog.pg_snapshot_xmax("
			"pg_catalog.pg_current_snapshot())::text::bigint AS n) s",
			1, NULL, params, NULL, NULL, 0);
		bool busy;

		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			snprintf(errstr, errstr_size, "transaction status: %s",
			         PQerrorMessage(conn));
			PQclear(res);
			xr_buf_term(&arr);
			return -1;
		}
		busy = PQgetvalue(res, 0, 0)[0] == 't';
		PQclear(res);
		if (!busy)
			break;
		usleep(1000);
	}
	xr_buf_term(&arr);
	return 0;
}

/*
 * An update leaves the TOASTed values it did not change out of its new
 * image.  A region that holds the row as this one did could keep them,
 * but another may hold another write's value (a conflicting write it
 * kept, then lost to this one), and a key change's new key has no row
 * there at all (its events may even come before the old key's: another
 * partition).  So they are read back from the row at its key: the value
 * the change left, or a later one, which the key's later events carry
 * anyway.  A row gone since (deleted, or moved again) leaves them out, as
 * before.  On success *out is after with the values filled in; its text
 * lives in *store (the caller terms both).  Returns 0, or -1 with errstr
 * (database error).
 */
static int
fill_unchanged(session_t *s, const xr_rel_t *rel, const xr_pgo_tuple_t *after,
               xr_pgo_tuple_t *out, xr_buf_t *store, char *errstr,
               size_t errstr_size)
{
	xr_buf_t     sql;
	const char **params = calloc((size_t)rel->ncols + 1, sizeof(char *));
	size_t      *offs = calloc((size_t)rel->ncols + 1, sizeof(size_t));
	int          i, np = 0, nout = 0, rc = -1;
	PGresult    *res = NULL;
	char        *q;

	xr_buf_init(&sql);
	out->ncols = after->ncols;
	out->cols = calloc((size_t)after->ncols + 1, sizeof(*out->cols));
	if (!params || !offs || !out->cols) {
		snprintf(errstr, errstr_size, "out of memory");
		goto done;
	}
	memcpy(out->cols, after->cols, (size_t)after->ncols * sizeof(*out->cols));
	/* Once per transaction: its later updates need no second wait. */
	if (catalog_conn(s, errstr, errstr_size) ||
	    (s->visible_txn != s->txn_id &&
	     wait_visible(s->catalog, s->xid, errstr, errstr_size)))
		goto done;
	s->visible_txn = s->txn_id;
	/* Key values, NUL-terminated, one after the other in store. */
	for (i = 0; i < rel->ncols && i < after->ncols; i++) {
		if (!rel->cols[i].is_key)
			continue;
		offs[np++] = store->len;
		xr_buf_append(store, after->cols[i].data, after->cols[i].len);
		xr_buf_putc(store, '\0');
	}
	xr_buf_puts(&sql, "SELECT ");
	for (i = 0; i < rel->ncols && i < after->ncols; i++) {
		if (after->cols[i].kind != XR_PGO_COL_UNCHANGED)
			continue;
		if (!(q = PQescapeIdentifier(s->catalog, rel->cols[i].name,
		                             strlen(rel->cols[i].name))))
			goto quote;
		xr_buf_printf(&sql, "%s%s", nout++ ? ", " : "", q);
		PQfreemem(q);
	}
	if (!(q = PQescapeIdentifier(s->catalog, rel->nspname,
	                             strlen(rel->nspname))))
		goto quote;
	xr_buf_printf(&sql, " FROM ONLY %s.", q);
	PQfreemem(q);
	if (!(q = PQescapeIdentifier(s->catalog, rel->relname,
	                             strlen(rel->relname))))
		goto quote;
	xr_buf_printf(&sql, "%s WHERE ", q);
	PQfreemem(q);
	for (i = 0, np = 0; i < rel->ncols && i < after->ncols; i++) {
		if (!rel->cols[i].is_key)
			continue;
		if (!(q = PQescapeIdentifier(s->catalog, rel->cols[i].name,
		                             strlen(rel->cols[i].name))))
			goto quote;
		xr_buf_printf(&sql, "%s%s = $%d", np ? " AND " : "", q, np + 1);
		PQfreemem(q);
		np++;
	}
	for (i = 0; i < np; i++)
		params[i] = store->data + offs[i];
	res = PQexecParams(s->catalog, sql.data, np, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "reading back unchanged values of %s.%s: %s",
		         rel->nspname, rel->relname, PQerrorMessage(s->catalog));
		goto done;
	}
	if (PQntuples(res) == 1) {
		int k = 0;

		for (i = 0; i < after->ncols; i++) {
			if (after->cols[i].kind != XR_PGO_COL_UNCHANGED)
				continue;
			if (PQgetisnull(res, 0, k)) {
				out->cols[i].kind = XR_PGO_COL_NULL;
			} else {
				out->cols[i].kind = XR_PGO_COL_TEXT;
				out->cols[i].data = PQgetvalue(res, 0, k);
				out->cols[i].len = (size_t)PQgetlength(res, 0, k);
			}
			k++;
		}
		s->moved_res = res;   /* the values live until the change is out */
		res = NULL;
	}
	rc = 0;
	goto done;
quote:
	snprintf(errstr, errstr_size, "quoting: %s", PQerrorMessage(s->catalog));
done:
	PQclear(res);
	xr_buf_term(&sql);
	free(params);
	free(offs);
	return rc;
}

/* Whether after has an unchanged TOASTed value. */
static bool
has_unchanged(const xr_pgo_tuple_t *after)
{
	int i;

	for (i = 0; after && i < after->ncols; i++)
		if (after->cols[i].kind == XR_PGO_COL_UNCHANGED)
			return true;
	return false;
}

/*
 * Stamps are written in batches: when this many are pending, or this long
 * after the first, or when the session ends.  The slot waits for them.
 */
#define STAMP_BATCH     20000
#define STAMP_DELAY_US  INT64_C(200000)

static void
hold_commit(session_t *s, uint64_t id, xr_lsn_t end)
{
	if (s->nheld == s->capheld) {
		s->capheld = s->capheld ? s->capheld * 2 : 64;
		s->held = xr_reallocarray(s->held, s->capheld, sizeof(*s->held));
	}
	s->held[s->nheld].id = id;
	s->held[s->nheld++].end = end;
	if (!s->stamp_due_us)
		s->stamp_due_us = xr_mono_us() + STAMP_DELAY_US;
}

/*
 * Writes the pending stamps when due (or now, with force), then hands the
 * Commits that waited for them to the tracker.  A failure is logged and
 * retried with backoff: meanwhile the slot does not move past them.
 * Returns 0 (written, or not due), -1 when they could not be written (a
 * lock timeout: the stamps yield to the application), or -2 when the
 * catalog connection is gone and a new one is refused or lost too (the
 * server shuts down, or cannot be reached).
 */
static int
flush_stamps(session_t *s, bool force)
{
	char   err[1024];
	size_t i;

	if (!s->stamp_due_us)
		return 0;
	if (!force && (xr_mono_us() < s->stamp_retry_us ||
	               (xr_mono_us() < s->stamp_due_us &&
	                xr_stamper_pending(s->stamper) < STAMP_BATCH)))
		return 0;
	if (catalog_conn(s, err, sizeof(err)) ||
	    xr_stamper_flush(s->stamper, s->catalog, err, sizeof(err))) {
		bool gone = !s->catalog || PQstatus(s->catalog) != CONNECTION_OK;

		xr_warn("%s; versions of local writes not recorded yet, retrying "
		        "in %d ms (the slot waits for them)", err,
		        s->stamp_backoff_ms);
		s->stamp_retry_us = xr_mono_us() + (int64_t)s->stamp_backoff_ms * 1000;
		s->stamp_backoff_ms = s->stamp_backoff_ms * 2 >
		                      s->conf->reconnect_backoff_max_ms
		                      ? s->conf->reconnect_backoff_max_ms
		                      : s->stamp_backoff_ms * 2;
		return gone ? -2 : -1;
	}
	s->stamp_backoff_ms = 500;
	s->stamp_due_us = s->stamp_retry_us = 0;
	for (i = 0; i < s->nheld; i++)
		xr_tracker_commit(s->tracker, s->held[i].id, s->held[i].end);
	s->nheld = 0;
	return 0;
}

/*
 * Every 10 s: publishes how far this region's changes are in Kafka, as a
 * time T such that every change committed before T is
 * (consumer/progress.h).  The reading (flushed WAL end L, server clock t)
 * taken 10 s earlier counts once every transaction up to L is delivered
 * and confirmable: T = t - 1 s (a commit takes its time a moment before
 * its record is flushed).  The record is not waited for (the stream would
 * wait with it: a second, the first time, for the topic's metadata); how
 * it went is looked at the next time.  Failures are logged and retried
 * next time.
 */
static void
publish_progress(session_t *s)
{
	char      err[512], key[192], val[160];
	PGresult *res;
	int64_t   now = xr_mono_us();
	int       r;

	if (now - s->through_at_us < INT64_C(10000000))
		return;
	s->through_at_us = now;
	if (s->through_sending) {
		if ((r = xr_publisher_side_result(s->pub, err, sizeof(err))) == 0)
			s->through_sent_us = s->through_sending;
		else if (r < 0)
			xr_warn("progress: %s", err);
		if (r <= 0)
			s->through_sending = 0;
	}
	if (s->through_lsn && xr_tracker_safe_lsn(s->tracker) >= s->through_lsn &&
	    s->through_clock_us - 1000000 > s->through_sent_us &&
	    !s->through_sending) {
		int64_t t = s->through_clock_us - 1000000;
		char    who[160];

		xr_config_stream_key(s->conf, who, sizeof(who));
		snprintf(key, sizeof(key), "producer/%s", who);
		snprintf(val, sizeof(val),
		         "{\"region\": \"%s\", \"through\": %" PRId64 "}",
		         s->conf->region, t);
		/* partition 0: the one the readers read (progress.c) */
		if (xr_publisher_produce_side(s->pub, s->conf->progress_topic, 0, key,
		                              strlen(key), val, strlen(val), err,
		                              sizeof(err)))
			xr_warn("progress: %s", err);
		else
			s->through_sending = t;
	}
	if (catalog_conn(s, err, sizeof(err))) {
		xr_warn("progress: %s", err);
		return;
	}
	res = PQexec(s->catalog,
	             "SELECT pg_catalog.pg_current_wal_flush_lsn()::text, "
	             "(extract(epoch FROM pg_catalog.clock_timestamp()) "
	             "* 1000000)::bigint");
	if (PQresultStatus(res) == PGRES_TUPLES_OK &&
	    xr_lsn_parse(PQgetvalue(res, 0, 0), &s->through_lsn) == 0)
		s->through_clock_us = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	else
		xr_warn("progress: reading the WAL end: %s",
		        PQerrorMessage(s->catalog));
	PQclear(res);
}

/* Drops the kept trigger messages. */
static void
clear_messages(session_t *s)
{
	json_decref(s->vclock);
	json_decref(s->clock);
	s->vclock = s->clock = NULL;
}

/*
 * Publishes the change of relid (when its table is published) as the next
 * change of the transaction.  Returns 0, or -1 with errstr set and *fatal
 * when retrying cannot help.
 */
static int
handle_change(session_t *s, uint32_t relid, xr_op_t op,
              const xr_pgo_tuple_t *before, const xr_pgo_tuple_t *after,
              xr_lsn_t lsn, char *errstr, size_t errstr_size, bool *fatal)
{
	uint64_t    index = s->change_no++;
	xr_rel_t   *rel;
	xr_vclock_t vc;
	int64_t     version_ts;
	int         err, rc;

	/* Applied transactions too: the chunk's row is older than them. */
	if (xr_backfill_watching(s->backfill))
		xr_backfill_change(s->backfill, xr_relcache_get(s->rels, relid), op,
		                   before, after);
	if (s->skip_txn)
		return 0;
	rel = change_rel(s, relid, &err, errstr, errstr_size);
	if (err || !rel) {
		clear_messages(s);
		return err ? -1 : 0;
	}
	version_ts = clock_for(s, rel, op, before, after);
	if (op == XR_OP_UPDATE && has_unchanged(after)) {
		xr_pgo_tuple_t filled = { 0, NULL };
		xr_buf_t       store;

		xr_buf_init(&store);
		if (fill_unchanged(s, rel, after, &filled, &store, errstr,
		                   errstr_size)) {
			free(filled.cols);
			xr_buf_term(&store);
			clear_messages(s);
			return -1;
		}
		rc = publish_change(s, rel, op, before, &filled, lsn, index,
		                    vclock_for(s, rel, op, before, after, &vc),
		                    version_ts, errstr, errstr_size);
		PQclear(s->moved_res);
		s->moved_res = NULL;
		free(filled.cols);
		xr_buf_term(&store);
	} else {
		rc = publish_change(s, rel, op, before, after, lsn, index,
		                    vclock_for(s, rel, op, before, after, &vc),
		                    version_ts, errstr, errstr_size);
	}
	/* A message goes with the change right after it, or with none. */
	clear_messages(s);
	if (rc == 0)
		xr_stamper_add(s->stamper, rel, op, before, after, s->xid,
		               version_ts ? version_ts : s->commit_ts_us);
	if (rc == XR_PUB_FATAL) {
		fatal_change(s, errstr, errstr_size);
		*fatal = true;
	}
	return rc ? -1 : 0;
}

/* Keeps a copy of delete tuple old of relid (its bytes are the parser's). */
static void
hold_move(session_t *s, uint32_t relid, const xr_pgo_tuple_t *old,
          xr_lsn_t lsn)
{
	int i;

	if ((size_t)old->ncols > s->move_cap) {
		s->move_cap = (size_t)old->ncols;
		s->move_old.cols = xr_reallocarray(s->move_old.cols, s->move_cap,
		                                   sizeof(*s->move_old.cols));
	}
	xr_buf_reset(&s->move_data);
	for (i = 0; i < old->ncols; i++) {
		s->move_old.cols[i] = old->cols[i];
		/* data holds the offset until the buffer stops moving */
		s->move_old.cols[i].data = (const char *)(uintptr_t)s->move_data.len;
		if (old->cols[i].data)
			xr_buf_append(&s->move_data, old->cols[i].data, old->cols[i].len);
	}
	for (i = 0; i < old->ncols; i++)
		s->move_old.cols[i].data = old->cols[i].data
		    ? s->move_data.data + (uintptr_t)s->move_old.cols[i].data : NULL;
	s->move_old.ncols = old->ncols;
	s->move_relid = relid;
	s->move_lsn = lsn;
	s->move_held = true;
}

/* Whether insert tuple t has the held delete's primary key. */
static bool
same_key(const session_t *s, const xr_rel_t *rel, const xr_pgo_tuple_t *t)
{
	int i;

	if (t->ncols != s->move_old.ncols || t->ncols != rel->ncols)
		return false;
	for (i = 0; i < t->ncols; i++) {
		const xr_pgo_datum_t *a = &s->move_old.cols[i], *b = &t->cols[i];

		if (!rel->cols[i].is_key)
			continue;
		if (a->kind != b->kind || a->len != b->len ||
		    (a->len && memcmp(a->data, b->data, a->len) != 0))
			return false;
	}
	return true;
}

/* Publishes the held delete, if any, as the delete it is. */
static int
flush_move(session_t *s, char *errstr, size_t errstr_size, bool *fatal)
{
	if (!s->move_held)
		return 0;
	s->move_held = false;
	return handle_change(s, s->move_relid, XR_OP_DELETE, &s->move_old, NULL,
	                     s->move_lsn, errstr, errstr_size, fatal);
}

/*
 * A delete of a published partitioned table (not in vclock mode: its
 * trigger's messages go with each half) is held: the row may be moving to
 * another partition.  Returns true when it was.
 */
static bool
may_move(session_t *s, uint32_t relid)
{
	const xr_rel_t *rel = xr_relcache_get(s->rels, relid);

	return rel && rel->partitioned && rel->published && !s->skip_txn &&
	       !(rel->tconf && rel->tconf->conflict == XR_CONFLICT_VCLOCK);
}

/*
 * Whether message m leaves a held delete held: the insert that may pair
 * with it, or what the server may send between the two halves of a move.
 * That is a Type message, another relation's Relation message, or the
 * table's own sent again (after a relcache invalidation, say an autoanalyze
 * of a partition) with the same columns: a different layout ends the hold,
 * since the held old row is in the old one.
 */
static bool
move_goes_on(session_t *s, const xr_pgo_msg_t *m)
{
	const xr_rel_t *rel;

	switch (m->kind) {
	case XR_PGO_INSERT:
		return m->u.insert.relid == s->move_relid;
	case XR_PGO_TYPE:
		return true;
	case XR_PGO_RELATION:
		if (m->u.relation.relid != s->move_relid)
			return true;
		rel = xr_relcache_get(s->rels, s->move_relid);
		return rel && xr_relcache_same_layout(rel, m);
	default:
		return false;
	}
}

static int
handle_message(session_t *s, const xr_stream_msg_t *wm, char *errstr,
               size_t errstr_size, bool *fatal)
{
	xr_pgo_msg_t m;
	xr_rel_t    *rel;
	int          err, chunk_rc = 0;
	uint32_t     i;

	*fatal = false;
	if (xr_pgo_parse(s->parser, wm->data, wm->len, &m, errstr, errstr_size)) {
		*fatal = true;
		return -1;
	}
	if (s->move_held && !move_goes_on(s, &m) &&
	    flush_move(s, errstr, errstr_size, fatal))
		return -1;
	switch (m.kind) {
	case XR_PGO_BEGIN:
		s->in_txn = true;
		s->skip_txn = false;
		s->txn_id = xr_tracker_begin(s->tracker);
		s->xid = m.u.begin.xid;
		s->final_lsn = m.u.begin.final_lsn;
		s->commit_ts_us = m.u.begin.commit_ts + XR_PG_EPOCH_OFFSET_US;
		s->change_no = 0;
		xr_txend_begin(s->tx, s->txn_id);
		clear_messages(s);
		break;
	case XR_PGO_ORIGIN:
		/* Applied by a consumer: publishing it again would loop. */
		s->skip_txn = true;
		s->origin_txns++;
		if (s->metrics)
			atomic_fetch_add(&s->metrics->origin_txns_skipped, 1);
		break;
	case XR_PGO_COMMIT:
		if (!s->in_txn) {
			snprintf(errstr, errstr_size, "Commit outside a transaction");
			*fatal = true;
			return -1;
		}
		/*
		 * The chunk read at this watermark goes in the watermark's own
		 * tracker transaction: the safe LSN reaches end_lsn, and the
		 * chunk's progress is recorded, only once Kafka has all of it.
		 * The watermark's transaction publishes nothing else (backfill.c
		 * writes it alone); if it ever did, the chunk's acks would count
		 * towards its end record: the chunk is read again instead.
		 */
		if (s->chunk_at_commit && xr_txend_changes(s->tx) > 0) {
			xr_warn("backfill: a watermark in a transaction with changes "
			        "(xid %u): its chunk is read again", s->xid);
			xr_backfill_abandon(s->backfill);
			s->chunk_at_commit = false;
		}
		if ((err = close_tx_end(s, errstr, errstr_size)) != 0) {
			if (err == XR_PUB_FATAL) {
				fatal_change(s, errstr, errstr_size);
				*fatal = true;
			}
			return -1;
		}
		if (s->chunk_at_commit) {
			s->chunk_at_commit = false;
			chunk_rc = publish_chunk(s, s->txn_id, m.u.commit.end_lsn,
			                         errstr, errstr_size, fatal);
		}
		if (xr_stamper_commit(s->stamper, s->xid, s->commit_ts_us))
			hold_commit(s, s->txn_id, m.u.commit.end_lsn);
		else
			xr_tracker_commit(s->tracker, s->txn_id, m.u.commit.end_lsn);
		if (xr_tracker_broken(s->tracker)) {
			snprintf(errstr, errstr_size, "LSN tracker out of step at the "
			         "commit of xid %u (a bug): stopping without confirming",
			         s->xid);
			*fatal = true;
			return -1;
		}
		s->in_txn = false;
		s->seen_xids[s->nseen++ % 64] = s->xid;
		s->txns++;
		if (s->metrics)
			atomic_fetch_add(&s->metrics->produced_txns, 1);
		return chunk_rc;
	case XR_PGO_RELATION: {
		char **pk = primary_key(s, m.u.relation.relid, errstr, errstr_size,
		                        &err);

		if (err)
			return -1;
		err = xr_relcache_update(s->rels, &m, (const char *const *)pk, &rel,
		                         errstr, errstr_size);
		free_list(pk);
		if (err) {
			*fatal = true;
			return -1;
		}
		if (rel) {
			rel->replident = m.u.relation.replident;
			if (relkind_of(s, m.u.relation.relid, &rel->partitioned, errstr,
			               errstr_size))
				return -1;
		}
		break;
	}
	case XR_PGO_TYPE:
		xr_relcache_type(s->rels, m.u.type.typid, m.u.type.nspname,
		                 m.u.type.typname);
		break;
	/*
	 * Every change the server sends takes the next index of its
	 * transaction, published or not: the index, and so the event id, does
	 * not depend on this producer's config.  A truncate of several tables
	 * gives each its own index.
	 */
	case XR_PGO_INSERT:
		if (s->move_held) {
			xr_rel_t *mr = xr_relcache_get(s->rels, s->move_relid);
			bool      same = mr && same_key(s, mr, &m.u.insert.newtup);

			/*
			 * A row moved between partitions: one update.  The partition
			 * key is part of the primary key, so it changed the key, and
			 * before has the old key (the old row under REPLICA IDENTITY
			 * FULL).  The same key: a delete and insert made one update.
			 */
			s->move_held = false;
			return handle_change(s, m.u.insert.relid, XR_OP_UPDATE,
			                     !same || (mr && mr->replident == 'f')
			                         ? &s->move_old : NULL,
			                     &m.u.insert.newtup, wm->data_start,
			                     errstr, errstr_size, fatal);
		}
		return handle_change(s, m.u.insert.relid, XR_OP_INSERT, NULL,
		                     &m.u.insert.newtup, wm->data_start, errstr,
		                     errstr_size, fatal);
	case XR_PGO_UPDATE:
		return handle_change(s, m.u.update.relid, XR_OP_UPDATE,
		                     m.u.update.oldkind ? &m.u.update.oldtup : NULL,
		                     &m.u.update.newtup, wm->data_start, errstr,
		                     errstr_size, fatal);
	case XR_PGO_DELETE:
		if (may_move(s, m.u.delete.relid)) {
			hold_move(s, m.u.delete.relid, &m.u.delete.oldtup,
			          wm->data_start);
			return 0;
		}
		return handle_change(s, m.u.delete.relid, XR_OP_DELETE,
		                     &m.u.delete.oldtup, NULL, wm->data_start, errstr,
		                     errstr_size, fatal);
	case XR_PGO_TRUNCATE:
		for (i = 0; i < m.u.truncate.nrelids; i++)
			if (handle_change(s, m.u.truncate.relids[i], XR_OP_TRUNCATE,
			                  NULL, NULL, wm->data_start, errstr,
			                  errstr_size, fatal))
				return -1;
		break;
	case XR_PGO_MESSAGE:
		if (strcmp(m.u.message.prefix, XR_BACKFILL_PREFIX) == 0) {
			/* The chunk goes in the watermark's transaction, at its
			 * commit (or in one of its own outside a transaction). */
			if (xr_backfill_mark(s->backfill, m.u.message.content,
			                     m.u.message.len)) {
				if (!s->in_txn) {
					uint64_t txn = xr_tracker_begin(s->tracker);

					err = publish_chunk(s, txn, m.u.message.lsn, errstr,
					                    errstr_size, fatal);
					xr_tracker_commit(s->tracker, txn, m.u.message.lsn);
					return err;
				}
				s->chunk_at_commit = true;
			}
			break;
		}
		trigger_message(s, &m);
		break;
	}
	return 0;
}

/*
 * Whether Kafka refused something that sending again cannot mend: a
 * delivery refused for its size, or a fatal librdkafka error.  If so,
 * errstr gets the one ERROR line that says what to do.
 */
static bool
kafka_gone(session_t *s, char *errstr, size_t errstr_size)
{
	char reason[900];

	if (xr_publisher_failure_fatal(s->pub)) {
		snprintf(errstr, errstr_size, "%s", xr_publisher_failure(s->pub));
		kafka_fatal(s, s->rels ? xr_relcache_by_topic(
		                             s->rels, xr_publisher_failure_topic(s->pub))
		                       : NULL,
		            errstr, errstr_size);
	} else if (xr_publisher_fatal(s->pub, errstr, errstr_size)) {
		kafka_fatal(s, NULL, errstr, errstr_size);
	} else {
		return false;
	}
	snprintf(reason, sizeof(reason), "%s", errstr);
	snprintf(errstr, errstr_size,
	         "%s (%s, and slot %s keeps every change Kafka has not "
	         "acknowledged)", reason,
	         xr_publisher_renewable(s->pub)
	             ? "a new Kafka producer replaces this one" :
	               "retrying cannot help: xregion stops",
	         s->conf->slot);
	return true;
}

static void
session_term(session_t *s)
{
	xr_stream_close(s->stream);
	json_decref(s->vclock);
	json_decref(s->clock);
	s->vclock = s->clock = NULL;
	PQfinish(s->catalog);
	xr_stamper_destroy(s->stamper);
	xr_backfill_destroy(s->backfill);
	s->backfill = NULL;
	free(s->held);
	xr_pgo_parser_destroy(s->parser);
	xr_relcache_destroy(s->rels);
	xr_publisher_set_tracker(s->pub, NULL);
	xr_publisher_set_wait_cb(s->pub, NULL, NULL);
	xr_publisher_set_dr_cb(s->pub, NULL, NULL);
	xr_buf_term(&s->txbuf);
	xr_buf_term(&s->move_data);
	free(s->move_old.cols);
	s->move_old.cols = NULL;
	s->move_cap = 0;
	s->move_held = false;
	xr_tracker_destroy(s->tracker);
	xr_txend_destroy(s->tx);
	s->tx = NULL;
	xr_buf_term(&s->key);
	xr_buf_term(&s->value);
}

/*
 * Connects the replication stream, reads the slot's position into *start
 * and starts streaming from it, the publisher reporting to this session's
 * tracker.  Returns 0, or -1 (logged) with *end saying whether a retry may
 * help; the caller then ends the session without draining.
 */
static int
session_start(session_t *s, xr_lsn_t *start, session_end_t *end)
{
	const xr_config_t *conf = s->conf;
	char               err[1024], lsn[XR_LSN_STRLEN], appname[64];

	snprintf(appname, sizeof(appname), "xregion-producer-%s", conf->region);
	s->stream = xr_stream_connect(conf->pg_dsn, appname, err, sizeof(err));
	if (!s->stream) {
		xr_error("%s", err);
		*end = END_RETRY;
		return -1;
	}
	if (xr_stream_slot_position(s->stream, conf->slot, start, err,
	                            sizeof(err))) {
		xr_error("%s", err);
		*end = strstr(err, "does not exist") || strstr(err, "is not a")
		           ? END_FATAL : END_RETRY;
		return -1;
	}
	s->parser = xr_pgo_parser_new();
	s->rels = xr_relcache_new(conf);
	s->tracker = xr_tracker_new(*start);
	s->stamper = xr_stamper_new(conf);
	s->backfill = xr_backfill_new(conf);
	s->tx = xr_txend_new(err, sizeof(err));
	s->stamp_backoff_ms = 500;
	if (!s->parser || !s->rels || !s->tracker || !s->stamper ||
	    !s->backfill || !s->tx) {
		xr_error("out of memory");
		*end = END_FATAL;
		return -1;
	}
	xr_publisher_set_tracker(s->pub, s->tracker);
	xr_publisher_set_wait_cb(s->pub, wait_cb, s);
	xr_publisher_set_dr_cb(s->pub, on_delivered, s);
	xr_buf_init(&s->txbuf);
	xr_buf_init(&s->move_data);
	if (xr_stream_start(s->stream, conf->slot, conf->publication, err,
	                    sizeof(err))) {
		xr_error("%s", err);
		*end = END_RETRY;
		return -1;
	}
	s->reported = *start;
	s->received = *start;
	s->status_ms = status_interval(s);
	s->last_status_us = s->last_progress_us = xr_mono_us();
	xr_info("streaming slot %s of database %s from %s (publication %s; "
	        "applied transactions %s)", conf->slot,
	        xr_stream_database(s->stream), xr_lsn_format(*start, lsn),
	        conf->publication, xr_stream_filters_origin(s->stream)
	                               ? "left out by the server (origin none)"
	                               : "decoded, then dropped");
	return 0;
}

/* How long the stream is quiet before Kafka's queue is sent at once. */
#define KICK_IDLE_US 300

/*
 * Reads what the server sends within 100 ms, if anything: a keepalive
 * moves the idle position (and is answered at once when the server asks),
 * any other message is decoded and published.  A delivery report ends the
 * wait (end records wait for their events' reports).  When nothing has come
 * for KICK_IDLE_US after a transaction, what Kafka's queue holds is sent
 * at once instead of after linger.ms (xr_publisher_kick): at a low rate a
 * transaction does not wait for linger.ms, at a high one its events go in
 * batches.
 * Returns 0, or -1 (logged) with *end saying whether a retry may help.
 */
static int
session_receive(session_t *s, session_end_t *end)
{
	xr_stream_msg_t wm;
	char            err[1024];
	bool            fatal;
	int             wake = xr_publisher_wake_fd(s->pub);
	int             r = xr_stream_read(s->stream, 0, wake, &wm, err,
	                                   sizeof(err));

	/* A backfill chunk due to be read does not wait for the stream. */
	if (r == 0 && !xr_backfill_due(s->backfill, xr_mono_us())) {
		/*
		 * Between transactions only: a large one's events go in
		 * batches whatever pauses its decoding makes.
		 */
		int wait_us = 100000;

		if (!s->in_txn &&
		    (r = xr_stream_read(s->stream, KICK_IDLE_US, wake, &wm, err,
		                        sizeof(err))) == 0 &&
		    !xr_publisher_kick(s->pub))
			wait_us = 1000;
		if (r == 0)
			r = xr_stream_read(s->stream, wait_us, wake, &wm, err,
			                   sizeof(err));
	}
	if (r < 0) {
		xr_error("%s", err);
		*end = END_RETRY;
		return -1;
	}
	if (r != 1)
		return 0;
	if (wm.wal_end > s->received)
		s->received = wm.wal_end;
	if (wm.kind == 'k') {
		/*
		 * Everything up to wal_end has been sent: if all of it is on
		 * Kafka, the slot may move there (idle databases).
		 */
		if (!s->in_txn && wm.wal_end > s->idle_lsn)
			s->idle_lsn = wm.wal_end;
		if (wm.reply_requested && send_status(s, true, err, sizeof(err))) {
			xr_error("%s", err);
			*end = END_RETRY;
			return -1;
		}
	} else if (handle_message(s, &wm, err, sizeof(err), &fatal)) {
		xr_error("%s", err);
		*end = fatal ? END_FATAL : END_RETRY;
		return -1;
	}
	return 0;
}

/*
 * One turn of the streaming loop: receive, then check Kafka, write the
 * stamps and send status when due.  Returns 0 to go on, or -1 (logged) to
 * end the session, with *end saying whether a retry may help.
 */
static int
session_step(session_t *s, session_end_t *end)
{
	char err[1024];

	if (session_receive(s, end))
		return -1;
	/*
	 * Applied on every turn, not only when the keepalive comes: the
	 * server pings once, and the last deliveries may still be out
	 * then.  The tracker takes it only once nothing is in flight.
	 */
	xr_tracker_server_lsn(s->tracker, s->idle_lsn);
	if (kafka_gone(s, err, sizeof(err))) {
		xr_error("%s", err);
		*end = END_FATAL;
		return -1;
	}
	if (xr_publisher_failure(s->pub)) {
		xr_error("%s; restarting from the slot", xr_publisher_failure(s->pub));
		*end = END_RETRY;
		return -1;
	}
	/*
	 * Stamps that cannot be written hold their commits back from the
	 * slot, and PostgreSQL's shutdown waits until a walsender's client
	 * has confirmed everything it was sent: a fast shutdown, which ends
	 * our catalog connection and refuses a new one, would wait for ever.
	 * So when the catalog connection is lost (not on a lock timeout,
	 * which is retried here) the session ends, the server goes on, and
	 * the held transactions are decoded again by the next session.
	 */
	if (flush_stamps(s, false) == -2 && s->nheld > 0) {
		xr_warn("ending the replication session: the catalog connection "
		        "is lost while versions of local writes wait to be "
		        "recorded (a server shutting down waits for this stream); "
		        "%zu transaction(s) not confirmed are decoded again",
		        s->nheld);
		*end = END_RETRY;
		return -1;
	}
	backfill_step(s);
	publish_progress(s);
	if (send_status(s, false, err, sizeof(err)) ||
	    flush_tx_ends(s, err, sizeof(err))) {
		xr_error("%s", err);
		*end = END_RETRY;
		return -1;
	}
	progress(s, false);
	return 0;
}

/*
 * Ends a session that streamed, however it ended: waits for what Kafka
 * still holds, writes the pending stamps and confirms what is safe to the
 * slot; once that is sent, and unless the session is to be retried, ends
 * the stream.  Sets *progressed when the slot moved past start.  Returns
 * end, or END_FATAL when a delivery report served meanwhile shows what a
 * retry cannot mend.
 */
static session_end_t
session_drain(session_t *s, session_end_t end, xr_lsn_t start,
              bool *progressed)
{
	const xr_config_t *conf = s->conf;
	char               err[1024], lsn[XR_LSN_STRLEN];

	/*
	 * Whatever ended the session, wait for what Kafka still holds so the
	 * last confirmation covers as much as is safe, and so no delivery
	 * report of this session reaches the next one's tracker.
	 */
	if (xr_publisher_flush(s->pub, conf->flush_timeout_ms) != 0)
		xr_warn("kafka: not every message was acknowledged within %d ms; "
		        "the unacknowledged ones stay unconfirmed and are sent again",
		        conf->flush_timeout_ms);
	/* The end records whose events are now all acknowledged, then them. */
	if (!xr_publisher_failure(s->pub) && end != END_FATAL &&
	    xr_txend_pending(s->tx) > 0) {
		if (flush_tx_ends(s, err, sizeof(err)))
			xr_warn("%s", err);
		else if (xr_publisher_flush(s->pub, conf->flush_timeout_ms) != 0)
			xr_warn("kafka: end records not acknowledged within %d ms; "
			        "their transactions are sent again",
			        conf->flush_timeout_ms);
	}
	/* Stamps not written now keep their transactions unconfirmed. */
	(void)flush_stamps(s, true);
	/* A report served by the flush may show what a retry cannot mend. */
	if (end != END_FATAL && kafka_gone(s, err, sizeof(err))) {
		xr_error("%s", err);
		end = END_FATAL;
	}
	if (send_status(s, true, err, sizeof(err)) == 0) {
		xr_info("confirmed %s to slot %s",
		        xr_lsn_format(xr_tracker_safe_lsn(s->tracker), lsn), conf->slot);
		if (end != END_RETRY && xr_stream_finish(s->stream, err, sizeof(err)))
			xr_warn("%s", err);
	} else if (end != END_RETRY) {
		xr_warn("%s", err);
	}
	progress(s, true);
	/* Only a session that moved the slot resets the retry backoff. */
	*progressed = xr_tracker_safe_lsn(s->tracker) > start;
	return end;
}

/*
 * One replication session: connect, stream until stopped or broken, then
 * drain Kafka and confirm what is safe.
 */
static session_end_t
session_run(const xr_config_t *conf, xr_metrics_t *metrics,
            xr_publisher_t *pub, xr_sr_t *sr, atomic_int *stop,
            bool *progressed)
{
	session_t     s;
	session_end_t end = END_RETRY;
	xr_lsn_t      start;
	char          err[1024];

	memset(&s, 0, sizeof(s));
	s.conf = conf;
	s.metrics = metrics;
	s.stop = stop;
	s.pub = pub;
	s.sr = sr;
	xr_buf_init(&s.key);
	xr_buf_init(&s.value);
	*progressed = false;

	if (session_start(&s, &start, &end) == 0) {
		end = END_STOP;
		while (!*stop && session_step(&s, &end) == 0)
			;
		end = session_drain(&s, end, start, progressed);
	}
	if (end == END_RETRY && xr_publisher_flush(pub, 0) != 0) {
		/*
		 * Messages of this session are still queued (Kafka unreachable).
		 * They must not report into the next session's tracker: wait.
		 */
		while (xr_publisher_flush(pub, 1000) != 0 && !*stop) {
			if (xr_publisher_fatal(pub, err, sizeof(err))) {
				xr_error("%s", err);
				end = END_FATAL;
				break;
			}
			xr_warn("kafka: waiting for %d queued message(s) before "
			        "restarting", rd_kafka_outq_len(xr_publisher_handle(pub)));
		}
	}
	/*
	 * Whatever the session met, a producer in a fatal state can publish
	 * nothing more.  If a new one mends it (the idempotent producer's
	 * sequence numbers out of step after a leader change, librdkafka
	 * before 2.3), it replaces this one: the stream restarts from the
	 * slot, which holds every change Kafka has not acknowledged.
	 */
	if (end == END_FATAL && xr_publisher_renewable(pub))
		end = END_RENEW;
	xr_publisher_clear_failure(pub);
	session_term(&s);
	return end;
}

int
xr_produce_run(const xr_config_t *conf, xr_metrics_t *metrics,
               atomic_int *stop)
{
	xr_publisher_t *pub;
	xr_sr_t        *sr = NULL;
	char            err[1024];
	int             backoff_ms = 500;

	if (conf->registry_url && conf->registry_framing) {
		sr = xr_sr_new(conf, err, sizeof(err));
		if (!sr) {
			xr_error("%s", err);
			return 2;
		}
	}
	pub = xr_publisher_new(conf, err, sizeof(err));
	if (!pub) {
		xr_error("%s", err);
		xr_sr_destroy(sr);
		return 2;
	}
	for (;;) {
		bool          progressed;
		session_end_t end = session_run(conf, metrics, pub, sr, stop,
		                                &progressed);
		int           waited;

		if (end == END_STOP || *stop)
			break;
		if (end == END_FATAL) {
			xr_publisher_destroy(pub);
			xr_sr_destroy(sr);
			xr_info("producer stopped after an error that a retry cannot "
			        "mend (exit 1)");
			return 1;
		}
		if (end == END_RENEW) {
			/*
			 * Acknowledged events the slot has not confirmed yet are
			 * published again: consumers skip what they applied.
			 */
			xr_warn("kafka: replacing the Kafka producer; the stream "
			        "restarts from slot %s", conf->slot);
			xr_publisher_destroy(pub);
			pub = xr_publisher_new(conf, err, sizeof(err));
			if (!pub) {
				xr_error("%s", err);
				xr_sr_destroy(sr);
				return 1;
			}
		}
		if (metrics)
			atomic_fetch_add(&metrics->producer_restarts, 1);
		if (progressed)
			backoff_ms = 500;
		xr_warn("retrying in %d ms", backoff_ms);
		for (waited = 0; waited < backoff_ms && !*stop; waited += 100)
			usleep(100 * 1000);
		backoff_ms *= 2;
		if (backoff_ms > conf->reconnect_backoff_max_ms)
			backoff_ms = conf->reconnect_backoff_max_ms;
	}
	xr_publisher_destroy(pub);
	xr_sr_destroy(sr);
	xr_info("producer stopped");
	return 0;
}
