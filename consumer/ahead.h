/*
 * ahead.h: decoding ahead.  While the database applies one piece of a
 * large source transaction, a second thread decodes the events of the
 * next piece, so that the consumer's own work and the database's overlap.
 *
 * It is a cache and nothing else: an event it did not decode, or decoded
 * with an error, is decoded again by the caller as before.  While a job
 * runs (xr_ahead_start to xr_ahead_wait) the thread uses the caller's
 * registry and reads the job's messages: the caller must touch neither
 * meanwhile (it applies, which needs neither).  The events it decodes
 * then have the registry's schemas, as the caller's own do.
 */
#ifndef XR_AHEAD_H
#define XR_AHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "consumer/event.h"
#include "consumer/registry.h"

typedef struct xr_ahead_s xr_ahead_t;

/* Starts the thread, which decodes with reg (see above), up to cap
 * messages at a time.  NULL with errstr on failure (the caller then
 * decodes everything itself). */
xr_ahead_t *xr_ahead_new(xr_registry_t *reg, size_t cap, char *errstr,
                         size_t errstr_size);
void xr_ahead_destroy(xr_ahead_t *a);    /* NULL ok; stops the thread */

/*
 * Forgets what was decoded and starts decoding msgs (n, at most cap taken)
 * on the thread.  The messages must stay alive and unchanged until
 * xr_ahead_wait returns.
 */
void xr_ahead_start(xr_ahead_t *a, rd_kafka_message_t *const *msgs, size_t n);

/* Waits until the thread has decoded what xr_ahead_start gave it. */
void xr_ahead_wait(xr_ahead_t *a);

/*
 * After xr_ahead_wait: if m (the same record: topic, partition, offset)
 * was decoded without error, swaps its event with *ev and returns true.
 */
bool xr_ahead_take(xr_ahead_t *a, const rd_kafka_message_t *m,
                   xr_event_t *ev);

/* How many events it decoded, and how many of them were taken. */
void xr_ahead_counts(xr_ahead_t *a, uint64_t *decoded, uint64_t *taken);

/* Forgets what was decoded (messages may be freed after this). */
void xr_ahead_clear(xr_ahead_t *a);

#endif
