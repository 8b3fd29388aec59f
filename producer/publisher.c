/* publisher.c: idempotent Kafka producer feeding the LSN tracker. */
#include "producer/publisher.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/kafka_conf.h"
#include "common/log.h"

/* Opaque of a message produced by xr_publisher_produce_sync(). */
#define SYNC_OPAQUE ((void *)(uintptr_t)0)
/* Opaque of one produced by xr_publisher_produce_side() (no txn id). */
#define SIDE_OPAQUE ((void *)UINTPTR_MAX)

/*
 * A message outside any transaction (produce_sync's, produce_side's): in
 * flight, and how the last one ended.
 */
typedef struct oob_s {
	bool                busy;
	rd_kafka_resp_err_t err;
} oob_t;

typedef struct part_cache_s {
	char *topic;
	int   partitions;
} part_cache_t;

struct xr_publisher_s {
	rd_kafka_t   *rk;
	rd_kafka_queue_t *mainq;  /* delivery reports; writes to wake[1] */
	int           wake[2];    /* readable when a report is queued */
	uint64_t      kicked;     /* queued count at the last kick */
	xr_tracker_t *tracker;
	xr_publisher_wait_cb_t *wait_cb;
	void         *wait_ctx;
	xr_publisher_dr_cb_t *dr_cb;
	void         *dr_ctx;
	int           flush_timeout_ms;

	int           max_message_bytes;  /* kafka.max_message_bytes */

	oob_t         sync;  /* the one synchronous message */
	oob_t         side;  /* the one side message */

	char          failure[512];  /* first delivery failure, "" if none */
	/* Set once by error_cb: the broker refused our credentials. */
	char          refused_msg[1024];
	atomic_int    refused;
	bool          failure_fatal; /* retrying cannot mend it */
	char          failure_topic[256];
	uint64_t      delivered;
	uint64_t      queued;   /* messages produce() queued */
	uint64_t      fail_after; /* tests: fatal error at this delivery */

	part_cache_t *parts;
	size_t        n_parts;
};

/*
 * Delivery errors that sending the same message again cannot mend: the
 * broker refuses its size (the topic's max.message.bytes), or librdkafka
 * can produce no more (fatal error).
 */
static bool
err_is_fatal(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
	       err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
	       err == RD_KAFKA_RESP_ERR__FATAL;
}

static int publisher_fatal(rd_kafka_t *rk, char *errstr, size_t errstr_size);

/*
 * Tests only: XREGION_TEST_KAFKA_FATAL=N makes the first handle of the
 * process raise the fatal error a leader change raises in librdkafka
 * before 2.3 (sequence numbers out of step) at its Nth delivery.  Returns
 * N for the first handle, 0 (never) for the others.
 */
static uint64_t
test_fatal_after(void)
{
	static atomic_bool used;
	const char        *v = getenv("XREGION_TEST_KAFKA_FATAL");

	if (!v || atomic_exchange(&used, true))
		return 0;
	return strtoull(v, NULL, 10);
}

/*
 * Fills errstr for a message of size bytes that err refused, at produce
 * time or (at_broker) in its delivery report; returns XR_PUB_FATAL when
 * sending it again cannot help, else XR_PUB_RETRY.
 */
static int
refused(xr_publisher_t *p, const char *topic, size_t size,
        rd_kafka_resp_err_t err, bool at_broker, char *errstr,
        size_t errstr_size)
{
	if (publisher_fatal(p->rk, errstr, errstr_size))
		return XR_PUB_FATAL;
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		snprintf(errstr, errstr_size, "kafka: fatal error, the Kafka "
		         "producer cannot go on: %s", rd_kafka_err2str(err));
	else if (err_is_fatal(err) && at_broker)
		snprintf(errstr, errstr_size,
		         "kafka: topic %s refused a message of %zu bytes: %s "
		         "(the topic's max.message.bytes is lower than the message)",
		         topic, size, rd_kafka_err2str(err));
	else if (err_is_fatal(err))
		snprintf(errstr, errstr_size,
		         "kafka: a message of %zu bytes for topic %s is larger than "
		         "kafka.max_message_bytes (%d)", size, topic,
		         p->max_message_bytes);
	else
		snprintf(errstr, errstr_size, "kafka: %s to %s failed: %s",
		         at_broker ? "delivery" : "produce", topic,
		         rd_kafka_err2str(err));
	return err_is_fatal(err) ? XR_PUB_FATAL : XR_PUB_RETRY;
}

/* Runs on the thread calling rd_kafka_poll/flush: ours. */
static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	xr_publisher_t *p = opaque;

	(void)rk;
	if (m->_private == SYNC_OPAQUE || m->_private == SIDE_OPAQUE) {
		oob_t *o = m->_private == SYNC_OPAQUE ? &p->sync : &p->side;

		o->busy = false;
		o->err = m->err;
		return;
	}
	if (m->err) {
		char err[sizeof(p->failure)];
		bool fatal;

		/*
		 * The tracker is not told: the transaction stays pending, so the
		 * flush LSN cannot pass it.  The session ends; a failure that a
		 * retry can mend restarts the stream from the slot.
		 */
		fatal = refused(p, rd_kafka_topic_name(m->rkt),
		                m->len + m->key_len, m->err, true, err,
		                sizeof(err)) == XR_PUB_FATAL;
		if (!p->failure[0] || (fatal && !p->failure_fatal)) {
			snprintf(p->failure, sizeof(p->failure), "%s", err);
			snprintf(p->failure_topic, sizeof(p->failure_topic), "%s",
			         rd_kafka_topic_name(m->rkt));
			p->failure_fatal = fatal;
		}
		return;
	}
	p->delivered++;
	if (p->delivered == p->fail_after)
		rd_kafka_test_fatal_error(rk, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
		                          "XREGION_TEST_KAFKA_FATAL");
	if (p->dr_cb)
		p->dr_cb(p->dr_ctx, (uint64_t)(uintptr_t)m->_private,
		         rd_kafka_topic_name(m->rkt), m->partition, m->offset);
	if (p->tracker)
		xr_tracker_delivered(p->tracker, (uint64_t)(uintptr_t)m->_private);
}

/*
 * Served by rd_kafka_poll()/flush() on the producer's thread: logs, and
 * notes credentials or a certificate the broker refuses
 * (xr_publisher_fatal reports it).
 */
static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	xr_publisher_t *p = opaque;
	char            msg[sizeof(p->refused_msg)];

	(void)rk;
	if (xr_kafka_refused(err, reason, msg, sizeof(msg))) {
		if (atomic_load(&p->refused) == 0) {
			memcpy(p->refused_msg, msg, sizeof(msg));
			atomic_store(&p->refused, 1);
		}
		return;
	}
	/* A fatal one: librdkafka logs it, and the session says what next. */
	if (err != RD_KAFKA_RESP_ERR__FATAL)
		xr_warn("kafka: %s (%s); librdkafka retries with backoff",
		        reason, rd_kafka_err2name((rd_kafka_resp_err_t)err));
}

static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	(void)rk;
	if (level <= 3)
		xr_error("kafka %s: %s", fac, buf);
	else if (level <= 4)
		xr_warn("kafka %s: %s", fac, buf);
	else
		xr_debug("kafka %s: %s", fac, buf);
}

xr_publisher_t *
xr_publisher_new(const xr_config_t *conf, char *errstr, size_t errstr_size)
{
	/*
	 * While Kafka is away, messages wait and are retried for up to five
	 * minutes; one not acknowledged by then fails its session, which
	 * restarts from the slot: a message librdkafka stopped sending is
	 * sent again instead of waited for for ever.
	 */
	static const char *const locked[] = {
		"enable.idempotence", "true",
		"acks", "all",
		NULL
	};
	char              kbytes[32], maxbytes[32];
	const char *const defaults[] = {
		"client.id", "xregion-producer",
		"partitioner", "murmur2_random",   /* same as Java clients */
		"linger.ms", "2",
		"batch.num.messages", "10000",
		"message.timeout.ms", "300000",
		"queue.buffering.max.messages", "1000000",
		"queue.buffering.max.kbytes", kbytes,
		"message.max.bytes", maxbytes,
		"retry.backoff.ms", "200",
		NULL
	};
	xr_publisher_t  *p;
	rd_kafka_conf_t *kc;

	snprintf(kbytes, sizeof(kbytes), "%d", conf->max_inflight_mb * 1024);
	snprintf(maxbytes, sizeof(maxbytes), "%d", conf->max_message_bytes);
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	p->flush_timeout_ms = conf->flush_timeout_ms;
	p->max_message_bytes = conf->max_message_bytes;
	p->fail_after = test_fatal_after();
	kc = xr_kafka_conf_new(conf, defaults, locked, errstr, errstr_size);
	if (!kc) {
		free(p);
		return NULL;
	}
	rd_kafka_conf_set_opaque(kc, p);
	rd_kafka_conf_set_dr_msg_cb(kc, dr_msg_cb);
	rd_kafka_conf_set_error_cb(kc, error_cb);
	rd_kafka_conf_set_log_cb(kc, log_cb);
	p->wake[0] = p->wake[1] = -1;
	p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, errstr_size);
	if (!p->rk) {
		rd_kafka_conf_destroy(kc);
		free(p);
		return NULL;
	}
	/*
	 * A delivery report wakes the streaming loop at once: end records
	 * wait for their events' reports (xr_publisher_wake_fd).
	 */
	if (pipe(p->wake) != 0 ||
	    fcntl(p->wake[0], F_SETFL, O_NONBLOCK) != 0 ||
	    fcntl(p->wake[1], F_SETFL, O_NONBLOCK) != 0 ||
	    fcntl(p->wake[0], F_SETFD, FD_CLOEXEC) != 0 ||
	    fcntl(p->wake[1], F_SETFD, FD_CLOEXEC) != 0) {
		snprintf(errstr, errstr_size, "kafka: wake-up pipe: %s",
		         strerror(errno));
		xr_publisher_destroy(p);
		return NULL;
	}
	p->mainq = rd_kafka_queue_get_main(p->rk);
	rd_kafka_queue_io_event_enable(p->mainq, p->wake[1], "1", 1);
	return p;
}

void
xr_publisher_destroy(xr_publisher_t *p)
{
	size_t i;

	if (!p)
		return;
	if (rd_kafka_fatal_error(p->rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		/* Fails what it holds: their reports are served here. */
		rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE |
		                      RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_poll(p->rk, 0);
	} else if (xr_publisher_flush(p, p->flush_timeout_ms) != 0)
		xr_warn("kafka: %d message(s) not acknowledged at shutdown; "
		        "they are not confirmed to PostgreSQL and will be sent "
		        "again", rd_kafka_outq_len(p->rk));
	if (p->mainq) {
		rd_kafka_queue_io_event_enable(p->mainq, -1, NULL, 0);
		rd_kafka_queue_destroy(p->mainq);
	}
	rd_kafka_destroy(p->rk);
	if (p->wake[0] >= 0)
		close(p->wake[0]);
	if (p->wake[1] >= 0)
		close(p->wake[1]);
	for (i = 0; i < p->n_parts; i++)
		free(p->parts[i].topic);
	free(p->parts);
	free(p);
}

void
xr_publisher_set_tracker(xr_publisher_t *p, xr_tracker_t *t)
{
	p->tracker = t;
}

void
xr_publisher_set_wait_cb(xr_publisher_t *p, xr_publisher_wait_cb_t *cb,
                         void *ctx)
{
	p->wait_cb = cb;
	p->wait_ctx = ctx;
}

/* Returns 0, or XR_PUB_RETRY or XR_PUB_FATAL with errstr set. */
static int
produce(xr_publisher_t *p, const char *topic, int32_t partition,
        const void *key, size_t keylen, const void *value, size_t valuelen,
        rd_kafka_headers_t *headers, void *opaque, char *errstr,
        size_t errstr_size)
{
	for (;;) {
		rd_kafka_resp_err_t err;

		err = rd_kafka_producev(p->rk,
		                        RD_KAFKA_V_TOPIC(topic),
		                        RD_KAFKA_V_PARTITION(partition),
		                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		                        RD_KAFKA_V_KEY(key, keylen),
		                        RD_KAFKA_V_VALUE((void *)value, valuelen),
		                        RD_KAFKA_V_HEADERS(headers),
		                        RD_KAFKA_V_OPAQUE(opaque),
		                        RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			/*
			 * Delivery reports are served by the caller's loop
			 * (xr_publisher_poll); here only every 64 messages, to
			 * bound what a long burst leaves queued.
			 */
			if ((++p->queued & 63) == 0)
				rd_kafka_poll(p->rk, 0);
			return 0;
		}
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			if (headers)
				rd_kafka_headers_destroy(headers);
			return refused(p, topic, keylen + valuelen, err, false, errstr,
			               errstr_size);
		}
		/* Back-pressure: the queue bounds our memory; wait for room. */
		rd_kafka_poll(p->rk, 100);
		if (p->wait_cb && p->wait_cb(p->wait_ctx)) {
			snprintf(errstr, errstr_size,
			         "kafka: produce to %s: interrupted while the queue "
			         "was full", topic);
			if (headers)
				rd_kafka_headers_destroy(headers);
			return XR_PUB_RETRY;
		}
	}
}

int
xr_publisher_produce(xr_publisher_t *p, const char *topic, int32_t partition,
                     const void *key, size_t keylen, const void *value,
                     size_t valuelen, rd_kafka_headers_t *headers,
                     uint64_t txn, char *errstr, size_t errstr_size)
{
	/*
	 * Counted before it is queued: a poll that serves a long backlog of
	 * reports can serve this message's own report before producev's caller
	 * gets control back.  If queueing fails the count stays, so the
	 * transaction can never become safe; the caller ends the session.
	 */
	if (p->tracker)
		xr_tracker_add(p->tracker, txn);
	return produce(p, topic, partition, key, keylen, value, valuelen, headers,
	               (void *)(uintptr_t)txn, errstr, errstr_size);
}

int
xr_publisher_produce_counted(xr_publisher_t *p, const char *topic,
                             int32_t partition, const void *value,
                             size_t valuelen, rd_kafka_headers_t *headers,
                             uint64_t txn, char *errstr, size_t errstr_size)
{
	return produce(p, topic, partition, NULL, 0, value, valuelen, headers,
	               (void *)(uintptr_t)txn, errstr, errstr_size);
}

int
xr_publisher_produce_side(xr_publisher_t *p, const char *topic,
                          int32_t partition, const void *key, size_t keylen,
                          const void *value, size_t valuelen, char *errstr,
                          size_t errstr_size)
{
	int rc;

	if (p->side.busy) {
		snprintf(errstr, errstr_size, "kafka: the previous message to %s "
		         "is not acknowledged yet", topic);
		return XR_PUB_RETRY;
	}
	rc = produce(p, topic, partition, key, keylen, value, valuelen, NULL,
	             SIDE_OPAQUE, errstr, errstr_size);
	if (rc == 0)
		p->side.busy = true;
	return rc;
}

int
xr_publisher_side_result(const xr_publisher_t *p, char *errstr,
                         size_t errstr_size)
{
	if (p->side.busy)
		return 1;
	if (p->side.err) {
		snprintf(errstr, errstr_size, "kafka: %s",
		         rd_kafka_err2str(p->side.err));
		return -1;
	}
	return 0;
}

void
xr_publisher_set_dr_cb(xr_publisher_t *p, xr_publisher_dr_cb_t *cb, void *ctx)
{
	p->dr_cb = cb;
	p->dr_ctx = ctx;
}

int
xr_publisher_produce_sync(xr_publisher_t *p, const char *topic,
                          int32_t partition,
                          const void *key, size_t keylen, const void *value,
                          size_t valuelen, int timeout_ms, char *errstr,
                          size_t errstr_size)
{
	int waited = 0, rc;

	/*
	 * One that timed out may still be in flight: its report must not be
	 * taken for this one's, so it is waited for first, in the same time.
	 */
	while (p->sync.busy && (timeout_ms <= 0 || waited < timeout_ms)) {
		rd_kafka_poll(p->rk, 100);
		waited += 100;
	}
	if (p->sync.busy) {
		snprintf(errstr, errstr_size, "kafka: an earlier message to %s "
		         "is still not acknowledged after %d ms", topic, waited);
		return xr_publisher_fatal(p, errstr, errstr_size)
		           ? XR_PUB_FATAL : XR_PUB_RETRY;
	}
	p->sync.busy = true;
	rc = produce(p, topic, partition, key, keylen, value,
	             valuelen, NULL, SYNC_OPAQUE, errstr, errstr_size);
	if (rc) {
		p->sync.busy = false;
		return rc;
	}
	while (p->sync.busy) {
		if (timeout_ms > 0 && waited >= timeout_ms) {
			snprintf(errstr, errstr_size,
			         "kafka: no acknowledgement from %s within %d ms",
			         topic, timeout_ms);
			return xr_publisher_fatal(p, errstr, errstr_size)
			           ? XR_PUB_FATAL : XR_PUB_RETRY;
		}
		rd_kafka_poll(p->rk, 100);
		waited += 100;
		if (p->sync.busy && p->wait_cb && p->wait_cb(p->wait_ctx)) {
			snprintf(errstr, errstr_size, "kafka: interrupted");
			return XR_PUB_RETRY;
		}
	}
	if (p->sync.err)
		return refused(p, topic, keylen + valuelen, p->sync.err, true,
		               errstr, errstr_size);
	return 0;
}

int
xr_publisher_partitions(xr_publisher_t *p, const char *topic, char *errstr,
                        size_t errstr_size)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t   *rkt;
	rd_kafka_resp_err_t err;
	part_cache_t       *np;
	size_t              i;
	int                 n;

	for (i = 0; i < p->n_parts; i++)
		if (strcmp(p->parts[i].topic, topic) == 0)
			return p->parts[i].partitions;
	rkt = rd_kafka_topic_new(p->rk, topic, NULL);
	if (!rkt) {
		snprintf(errstr, errstr_size, "kafka: topic %s: %s", topic,
		         rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	err = rd_kafka_metadata(p->rk, 0, rkt, &md, 10000);
	rd_kafka_topic_destroy(rkt);
	if (err) {
		snprintf(errstr, errstr_size, "kafka: metadata of %s: %s", topic,
		         rd_kafka_err2str(err));
		return -1;
	}
	if (md->topic_cnt != 1 || md->topics[0].err ||
	    md->topics[0].partition_cnt < 1) {
		snprintf(errstr, errstr_size, "kafka: metadata of %s: %s", topic,
		         md->topic_cnt == 1 && md->topics[0].err
		             ? rd_kafka_err2str(md->topics[0].err)
		             : "no partitions");
		rd_kafka_metadata_destroy(md);
		return -1;
	}
	n = md->topics[0].partition_cnt;
	rd_kafka_metadata_destroy(md);
	np = realloc(p->parts, (p->n_parts + 1) * sizeof(*np));
	if (!np) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	p->parts = np;
	p->parts[p->n_parts].topic = strdup(topic);
	if (!p->parts[p->n_parts].topic) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	p->parts[p->n_parts++].partitions = n;
	return n;
}

void
xr_publisher_poll(xr_publisher_t *p, int timeout_ms)
{
	char buf[64];

	/* Emptied first: a report queued after the poll writes again. */
	while (p->wake[0] >= 0 && read(p->wake[0], buf, sizeof(buf)) > 0)
		;
	rd_kafka_poll(p->rk, timeout_ms);
}

int
xr_publisher_wake_fd(const xr_publisher_t *p)
{
	return p->wake[0];
}

bool
xr_publisher_kick(xr_publisher_t *p)
{
	uint64_t fresh;

	/* Reports not served yet count in the out queue. */
	xr_publisher_poll(p, 0);
	fresh = p->queued - p->kicked;
	/*
	 * Only when everything sent before is acknowledged (Nagle's rule):
	 * while a kick's messages are on their way, the next ones wait for
	 * linger.ms and go together.
	 */
	if (fresh == 0 || (uint64_t)rd_kafka_outq_len(p->rk) > fresh)
		return true;
	/*
	 * linger.ms does not apply while a flush runs.  The broker's thread
	 * may not get to see that within the millisecond (librdkafka: "if
	 * this flush() call finishes before the broker wakes up then no
	 * flushing will be performed"): until the messages are acknowledged
	 * the kick is not done, and the caller tries again soon.
	 */
	if (rd_kafka_flush(p->rk, 1) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return false;
	p->kicked = p->queued;
	return true;
}

int
xr_publisher_flush(xr_publisher_t *p, int timeout_ms)
{
	return rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR
	           ? 0 : -1;
}

const char *
xr_publisher_failure(const xr_publisher_t *p)
{
	return p->failure[0] ? p->failure : NULL;
}

bool
xr_publisher_failure_fatal(const xr_publisher_t *p)
{
	return p->failure[0] && p->failure_fatal;
}

const char *
xr_publisher_failure_topic(const xr_publisher_t *p)
{
	return p->failure_topic;
}

void
xr_publisher_clear_failure(xr_publisher_t *p)
{
	p->failure[0] = '\0';
	p->failure_topic[0] = '\0';
	p->failure_fatal = false;
}

/* Thread-safe: rd_kafka_fatal_error() may be called from any thread. */
static int
publisher_fatal(rd_kafka_t *rk, char *errstr, size_t errstr_size)
{
	char                reason[256];
	rd_kafka_resp_err_t err;

	err = rd_kafka_fatal_error(rk, reason, sizeof(reason));
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	snprintf(errstr, errstr_size,
	         "kafka: fatal error, the Kafka producer cannot go on: %s (%s)",
	         reason, rd_kafka_err2name(err));
	return 1;
}

int
xr_publisher_fatal(xr_publisher_t *p, char *errstr, size_t errstr_size)
{
	if (atomic_load(&p->refused)) {
		snprintf(errstr, errstr_size, "%s", p->refused_msg);
		return 1;
	}
	return publisher_fatal(p->rk, errstr, errstr_size);
}

bool
xr_publisher_renewable(xr_publisher_t *p)
{
	return !atomic_load(&p->refused) && xr_kafka_fatal_renewable(p->rk);
}

uint64_t
xr_publisher_delivered(const xr_publisher_t *p)
{
	return p->delivered;
}

rd_kafka_t *
xr_publisher_handle(xr_publisher_t *p)
{
	return p->rk;
}
