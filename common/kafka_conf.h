/* kafka_conf.h: librdkafka configuration from xregion's config. */
#ifndef XR_KAFKA_CONF_H
#define XR_KAFKA_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "common/config.h"

/*
 * Builds a librdkafka configuration: first the role's defaults (pairs of
 * key, value in defaults, ending with NULL), then bootstrap.servers from
 * kafka.brokers, then kafka.properties as the user wrote them.  The pairs in
 * locked (same layout, may be NULL) are what xregion's guarantees rest on
 * (acks=all, idempotence): a property that tries to change one is an error.
 *
 * Returns a new conf (pass to rd_kafka_new, or rd_kafka_conf_destroy), or
 * NULL with errstr naming the offending key, e.g.
 * "kafka.properties.acks: xregion requires \"all\"".
 */
rd_kafka_conf_t *xr_kafka_conf_new(const xr_config_t *conf,
                                   const char *const *defaults,
                                   const char *const *locked,
                                   char *errstr, size_t errstr_size);

/*
 * A handle for metadata and offset queries only (a producer that produces
 * nothing), with conf's brokers and properties.  Returns it (free with
 * rd_kafka_destroy), or NULL with errstr.
 */
rd_kafka_t *xr_kafka_query_new(const xr_config_t *conf, char *errstr,
                               size_t errstr_size);

/*
 * The value of message m's last header name, copied NUL-terminated into
 * buf: false when m has no such header, or its value is null or does not
 * fit in size - 1 bytes.
 */
bool xr_kafka_header(const rd_kafka_message_t *m, const char *name,
                     char *buf, size_t size);

/*
 * Whether an error that librdkafka reports to the error callback (err,
 * reason) is one that no retry mends: the broker refused the SASL
 * credentials, or its certificate did not verify against
 * ssl.ca.location.  If so, buf gets the one line to log (it names what
 * to fix, never a secret).
 */
bool xr_kafka_refused(int err, const char *reason, char *buf, size_t size);

/*
 * Whether rk (a producer) has a fatal error of the idempotent producer's
 * own state, which a new handle, with a new producer id, mends: sequence
 * numbers out of step after a partition leader change (librdkafka before
 * 2.3, its issue #4438), a lost producer id.  False when there is none, and
 * for a cluster that denies the producer id or a broker too old, which a
 * new handle would meet again.
 */
bool xr_kafka_fatal_renewable(rd_kafka_t *rk);

/*
 * A dead-letter producer (idempotent, acks=all) named client_id, with
 * conf's brokers and properties, dr_cb and error_cb (either may be NULL)
 * getting opaque.  Returns it, or NULL with errstr.
 */
rd_kafka_t *xr_kafka_dlq_new(const xr_config_t *conf, const char *client_id,
                             void (*dr_cb)(rd_kafka_t *,
                                           const rd_kafka_message_t *, void *),
                             void (*error_cb)(rd_kafka_t *, int, const char *,
                                              void *),
                             void *opaque, char *errstr, size_t errstr_size);

/*
 * Destroys a producer without waiting for what it holds (after a fatal
 * error nothing more is delivered): purged, their reports served first.
 */
void xr_kafka_drop(rd_kafka_t *rk);

#endif
