/* tracker.c: safe flush LSN bookkeeping (see tracker.h). */
#include "producer/tracker.h"

#include "common/mem.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct txn_s {
	uint64_t pending;     /* messages not yet acknowledged */
	xr_lsn_t end_lsn;
	bool     committed;
} txn_t;

/*
 * Transactions in flight, oldest first, in a ring: the entry of id is at
 * (head + id - head_id) % cap.
 */
struct xr_tracker_s {
	txn_t   *ring;
	size_t   cap;
	size_t   head;
	size_t   count;
	uint64_t head_id;     /* id of ring[head] */
	uint64_t next_id;
	uint64_t in_flight;
	xr_lsn_t safe_lsn;
	bool     broken;      /* a call named a transaction it does not have */
};

xr_tracker_t *
xr_tracker_new(xr_lsn_t start_lsn)
{
	xr_tracker_t *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->cap = 64;
	t->ring = calloc(t->cap, sizeof(*t->ring));
	if (!t->ring) {
		free(t);
		return NULL;
	}
	t->head_id = t->next_id = 1;
	t->safe_lsn = start_lsn;
	return t;
}

void
xr_tracker_destroy(xr_tracker_t *t)
{
	if (!t)
		return;
	free(t->ring);
	free(t);
}

/*
 * The entry of transaction id, or NULL (and the tracker broken for good)
 * when it has none: checked in every build, since a wrong entry would
 * confirm a position whose changes are not on Kafka.
 */
static txn_t *
entry(xr_tracker_t *t, uint64_t id)
{
	if (t->broken || id < t->head_id || id - t->head_id >= t->count) {
		t->broken = true;
		return NULL;
	}
	return &t->ring[(t->head + (size_t)(id - t->head_id)) % t->cap];
}

/* Drops finished transactions from the front, raising the safe LSN. */
static void
advance(xr_tracker_t *t)
{
	if (t->broken)
		return;
	while (t->count > 0) {
		txn_t *e = &t->ring[t->head];

		if (!e->committed || e->pending > 0)
			break;
		if (e->end_lsn > t->safe_lsn)
			t->safe_lsn = e->end_lsn;
		t->head = (t->head + 1) % t->cap;
		t->head_id++;
		t->count--;
	}
}

uint64_t
xr_tracker_begin(xr_tracker_t *t)
{
	txn_t *e;

	if (t->count == t->cap) {
		size_t  ncap = t->cap * 2, i;
		txn_t  *nring = xr_reallocarray(NULL, ncap, sizeof(*nring));

		for (i = 0; i < t->count; i++)
			nring[i] = t->ring[(t->head + i) % t->cap];
		free(t->ring);
		t->ring = nring;
		t->cap = ncap;
		t->head = 0;
	}
	t->count++;
	e = &t->ring[(t->head + t->count - 1) % t->cap];
	e->pending = 0;
	e->end_lsn = XR_INVALID_LSN;
	e->committed = false;
	return t->next_id++;
}

void
xr_tracker_add(xr_tracker_t *t, uint64_t txn)
{
	txn_t *e = entry(t, txn);

	if (!e)
		return;
	e->pending++;
	t->in_flight++;
}

void
xr_tracker_commit(xr_tracker_t *t, uint64_t txn, xr_lsn_t end_lsn)
{
	txn_t *e = entry(t, txn);

	if (!e)
		return;
	e->committed = true;
	e->end_lsn = end_lsn;
	advance(t);
}

void
xr_tracker_delivered(xr_tracker_t *t, uint64_t txn)
{
	txn_t *e = entry(t, txn);

	if (!e || e->pending == 0 || t->in_flight == 0) {
		t->broken = true;
		return;
	}
	e->pending--;
	t->in_flight--;
	if (e->pending == 0 && txn == t->head_id)
		advance(t);
}

xr_lsn_t
xr_tracker_safe_lsn(const xr_tracker_t *t)
{
	return t->safe_lsn;
}

bool
xr_tracker_broken(const xr_tracker_t *t)
{
	return t->broken;
}

void
xr_tracker_server_lsn(xr_tracker_t *t, xr_lsn_t lsn)
{
	if (!t->broken && t->count == 0 && t->in_flight == 0 && lsn > t->safe_lsn)
		t->safe_lsn = lsn;
}

uint64_t
xr_tracker_in_flight(const xr_tracker_t *t)
{
	return t->in_flight;
}

size_t
xr_tracker_open_txns(const xr_tracker_t *t)
{
	return t->count;
}
