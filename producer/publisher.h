/*
 * publisher.h: the producer's side of Kafka.  An idempotent librdkafka
 * producer with acks=all whose delivery reports feed the LSN tracker.
 *
 * Threads: everything here, the delivery reports included, runs on the
 * caller's thread; reports are served inside xr_publisher_* calls.
 */
#ifndef XR_PUBLISHER_H
#define XR_PUBLISHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "common/config.h"
#include "producer/tracker.h"

typedef struct xr_publisher_s xr_publisher_t;

/*
 * What a failed publisher call means.  XR_PUB_RETRY: the same message may
 * go through in a new session (Kafka away, a wait interrupted).
 * XR_PUB_FATAL: retrying cannot help: the message is larger than
 * kafka.max_message_bytes or than the topic's max.message.bytes, or
 * librdkafka raised a fatal error and the handle can produce no more.
 */
#define XR_PUB_RETRY (-1)
#define XR_PUB_FATAL (-2)

/*
 * Called about every 100 ms while a produce call waits for room in
 * librdkafka's queue, so that the caller can keep its replication
 * connection alive.  Returns 0 to keep waiting, non-zero to give up.
 */
typedef int (xr_publisher_wait_cb_t)(void *ctx);

/*
 * Called for every message of a tracker transaction that Kafka
 * acknowledged, with where it landed (before the tracker hears of it).
 * Runs inside a poll: it must not produce.
 */
typedef void (xr_publisher_dr_cb_t)(void *ctx, uint64_t txn,
                                    const char *topic, int32_t partition,
                                    int64_t offset);

/* Returns a new publisher, or NULL with errstr naming the bad setting. */
xr_publisher_t *xr_publisher_new(const xr_config_t *conf, char *errstr,
                                 size_t errstr_size);
/*
 * Waits up to conf's flush_timeout_ms for outstanding deliveries, unless
 * the handle has had a fatal error (nothing more can be delivered: what it
 * holds is dropped at once); NULL ok.
 */
void xr_publisher_destroy(xr_publisher_t *p);

/* Delivery reports of messages produced from now on go to t (borrowed). */
void xr_publisher_set_tracker(xr_publisher_t *p, xr_tracker_t *t);
void xr_publisher_set_wait_cb(xr_publisher_t *p, xr_publisher_wait_cb_t *cb,
                              void *ctx);

/* Sets (or with NULL clears) the delivery callback. */
void xr_publisher_set_dr_cb(xr_publisher_t *p, xr_publisher_dr_cb_t *cb,
                            void *ctx);

/*
 * Like xr_publisher_produce, for a message the caller already counted in
 * the tracker (xr_tracker_add) when it reserved it.
 */
int xr_publisher_produce_counted(xr_publisher_t *p, const char *topic,
                                 int32_t partition, const void *value,
                                 size_t valuelen, rd_kafka_headers_t *headers,
                                 uint64_t txn, char *errstr,
                                 size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Queues one message of transaction txn (counted in the tracker).  The key
 * and value are copied; headers (may be NULL) are taken over on success and
 * on failure alike.  partition is RD_KAFKA_PARTITION_UA to partition by key.
 * Blocks while the queue is full.  Returns 0, or XR_PUB_RETRY or
 * XR_PUB_FATAL with errstr set.
 */
int xr_publisher_produce(xr_publisher_t *p, const char *topic,
                         int32_t partition, const void *key, size_t keylen,
                         const void *value, size_t valuelen,
                         rd_kafka_headers_t *headers, uint64_t txn,
                         char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Produces one message outside any transaction, to partition (or
 * RD_KAFKA_PARTITION_UA: by key), and waits until Kafka has acknowledged
 * it (used for schemas, which must be readable before the first event
 * that names them).  An earlier one that timed out and is still in
 * flight is waited for first, within the same timeout_ms.  Returns 0, or
 * XR_PUB_RETRY or XR_PUB_FATAL with errstr set.
 */
int xr_publisher_produce_sync(xr_publisher_t *p, const char *topic,
                              int32_t partition,
                              const void *key, size_t keylen,
                              const void *value, size_t valuelen,
                              int timeout_ms, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Queues one message outside any transaction, like produce_sync but
 * without waiting for it: one at a time (XR_PUB_RETRY while the last is in
 * flight).  xr_publisher_side_result says how it went: 1 still in flight,
 * 0 acknowledged, -1 failed (errstr set).
 */
int xr_publisher_produce_side(xr_publisher_t *p, const char *topic,
                              int32_t partition,
                              const void *key, size_t keylen,
                              const void *value, size_t valuelen,
                              char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));
int xr_publisher_side_result(const xr_publisher_t *p, char *errstr,
                             size_t errstr_size);

/* The number of partitions of topic (cached), or -1 with errstr set. */
int xr_publisher_partitions(xr_publisher_t *p, const char *topic,
                            char *errstr, size_t errstr_size);

/* Serves delivery reports, waiting up to timeout_ms for the first. */
void xr_publisher_poll(xr_publisher_t *p, int timeout_ms);

/*
 * A descriptor that becomes readable when a delivery report is queued (to
 * wait on with others); xr_publisher_poll serves the reports and empties
 * it.
 */
int xr_publisher_wake_fd(const xr_publisher_t *p);

/*
 * Adaptive batching: the caller has nothing more to produce for now, so
 * what is queued goes to the broker at once instead of after linger.ms,
 * if everything queued before is acknowledged.  Otherwise (a high rate)
 * messages wait for linger.ms and go in batches.  Waits at most a
 * millisecond, serving delivery reports meanwhile.  Returns false when
 * the messages kicked are not acknowledged within it (maybe not sent:
 * kick again soon), true otherwise.
 */
bool xr_publisher_kick(xr_publisher_t *p);

/*
 * Waits up to timeout_ms until every queued message is acknowledged or has
 * failed.  Returns 0 when nothing is outstanding, -1 on timeout.
 */
int xr_publisher_flush(xr_publisher_t *p, int timeout_ms);

/*
 * The first delivery failure since the last clear, or NULL (valid until
 * the next clear).  A failure that retrying cannot mend (too large, fatal)
 * replaces an earlier one that it can.
 */
const char *xr_publisher_failure(const xr_publisher_t *p);
/* Whether that failure is one retrying cannot mend (see XR_PUB_FATAL). */
bool        xr_publisher_failure_fatal(const xr_publisher_t *p);
/* The topic of the failed message ("" if none; valid until the clear). */
const char *xr_publisher_failure_topic(const xr_publisher_t *p);
void        xr_publisher_clear_failure(xr_publisher_t *p);

/*
 * Whether librdkafka raised a fatal error (e.g. the idempotent producer
 * lost its guarantees): returns 0 if not, else non-zero with its text
 * copied to errstr.  The handle cannot produce after that; only a new
 * process (a new handle) can.  Thread-safe, cheap when there is none.
 */
int xr_publisher_fatal(xr_publisher_t *p, char *errstr, size_t errstr_size);

/*
 * Whether a new handle mends the fatal error (xr_kafka_fatal_renewable,
 * and the broker did not refuse the credentials).
 */
bool xr_publisher_renewable(xr_publisher_t *p);

/* Counters since start. */
uint64_t xr_publisher_delivered(const xr_publisher_t *p);

/* The librdkafka handle (borrowed), e.g. for the admin API. */
rd_kafka_t *xr_publisher_handle(xr_publisher_t *p);

#endif
