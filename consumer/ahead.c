/* ahead.c: decoding the next piece on a second thread (see ahead.h). */
#include "consumer/ahead.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/mem.h"

typedef struct slot_s {
	const rd_kafka_message_t *m;
	rd_kafka_topic_t         *rkt;
	int32_t                   partition;
	int64_t                   offset;
	bool                      ok;
	xr_event_t                ev;
} slot_t;

struct xr_ahead_s {
	xr_registry_t  *reg;       /* the caller's, its own while a job runs */
	bool            started;
	size_t          cap;
	slot_t         *slots;
	size_t          n;
	size_t         *index;     /* open addressing by message: slot + 1 */
	size_t          mask;
	pthread_t       th;
	pthread_mutex_t mu;
	pthread_cond_t  cv;
	bool            job, quit;
	uint64_t        decoded, taken;   /* events, since the start */
};

static size_t
hash_of(const xr_ahead_t *a, const rd_kafka_message_t *m)
{
	uint64_t h = (uint64_t)(uintptr_t)m;

	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	return (size_t)h & a->mask;
}

static void
decode_all(xr_ahead_t *a)
{
	size_t i;

	for (i = 0; i < a->n; i++) {
		slot_t *s = &a->slots[i];
		char    err[256];

		s->ok = false;
		if (!s->m->payload || s->m->len == 0)
			continue;        /* the consumer refuses it itself */
		a->decoded++;
		s->ok = xr_event_decode_message(&s->ev, a->reg, s->m, err,
		                                sizeof(err)) == 0;
	}
}

static void *
ahead_main(void *arg)
{
	xr_ahead_t *a = arg;

	pthread_mutex_lock(&a->mu);
	for (;;) {
		while (!a->job && !a->quit)
			pthread_cond_wait(&a->cv, &a->mu);
		if (a->quit)
			break;
		pthread_mutex_unlock(&a->mu);
		decode_all(a);
		pthread_mutex_lock(&a->mu);
		a->job = false;
		pthread_cond_broadcast(&a->cv);
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

xr_ahead_t *
xr_ahead_new(xr_registry_t *reg, size_t cap, char *errstr, size_t errstr_size)
{
	xr_ahead_t *a = xr_calloc(1, sizeof(*a));
	size_t      i, size = 16;

	a->cap = cap ? cap : 1;
	while (size < 2 * a->cap)
		size *= 2;
	a->mask = size - 1;
	a->index = xr_calloc(size, sizeof(*a->index));
	a->slots = xr_calloc(a->cap, sizeof(*a->slots));
	for (i = 0; i < a->cap; i++)
		xr_event_init(&a->slots[i].ev);
	a->reg = reg;
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	if (pthread_create(&a->th, NULL, ahead_main, a) != 0) {
		snprintf(errstr, errstr_size, "cannot start a thread");
		xr_ahead_destroy(a);
		return NULL;
	}
	a->started = true;
	return a;
}

void
xr_ahead_destroy(xr_ahead_t *a)
{
	size_t i;

	if (!a)
		return;
	if (a->started) {
		pthread_mutex_lock(&a->mu);
		a->quit = true;
		pthread_cond_broadcast(&a->cv);
		pthread_mutex_unlock(&a->mu);
		pthread_join(a->th, NULL);
	}
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->cv);
	for (i = 0; i < a->cap; i++)
		xr_event_term(&a->slots[i].ev);
	free(a->slots);
	free(a->index);
	free(a);
}

void
xr_ahead_clear(xr_ahead_t *a)
{
	if (!a)
		return;
	xr_ahead_wait(a);
	memset(a->index, 0, (a->mask + 1) * sizeof(*a->index));
	a->n = 0;
}

void
xr_ahead_start(xr_ahead_t *a, rd_kafka_message_t *const *msgs, size_t n)
{
	size_t i;

	xr_ahead_clear(a);
	if (n > a->cap)
		n = a->cap;
	for (i = 0; i < n; i++) {
		slot_t *s = &a->slots[i];
		size_t  h = hash_of(a, msgs[i]);

		s->m = msgs[i];
		s->rkt = msgs[i]->rkt;
		s->partition = msgs[i]->partition;
		s->offset = msgs[i]->offset;
		s->ok = false;
		while (a->index[h])
			h = (h + 1) & a->mask;
		a->index[h] = i + 1;
	}
	a->n = n;
	if (n == 0)
		return;
	pthread_mutex_lock(&a->mu);
	a->job = true;
	pthread_cond_broadcast(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

void
xr_ahead_wait(xr_ahead_t *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->mu);
	while (a->job)
		pthread_cond_wait(&a->cv, &a->mu);
	pthread_mutex_unlock(&a->mu);
}

bool
xr_ahead_take(xr_ahead_t *a, const rd_kafka_message_t *m, xr_event_t *ev)
{
	size_t h;

	if (!a || a->n == 0)
		return false;
	for (h = hash_of(a, m); a->index[h]; h = (h + 1) & a->mask) {
		slot_t    *s = &a->slots[a->index[h] - 1];
		xr_event_t tmp;

		if (s->m != m)
			continue;
		/* The same record, not a new message where a freed one was. */
		if (!s->ok || s->rkt != m->rkt || s->partition != m->partition ||
		    s->offset != m->offset)
			return false;
		tmp = *ev;
		*ev = s->ev;
		s->ev = tmp;
		s->ok = false;         /* taken: its slot holds the old event */
		a->taken++;
		return true;
	}
	return false;
}

void
xr_ahead_counts(xr_ahead_t *a, uint64_t *decoded, uint64_t *taken)
{
	*decoded = *taken = 0;
	if (!a)
		return;
	xr_ahead_wait(a);
	*decoded = a->decoded;
	*taken = a->taken;
}
