/*
 * plan.h: batch planning, apart from the database.  Within a batch of one
 * source region's events, the writes of one key are merged into the last
 * of them: the earlier ones are superseded (the last write wins, and it is
 * the last by the order the conflict rules use), and the survivor's
 * unchanged TOASTed values, which its event does not carry, are taken from
 * the latest earlier write of the key in the batch that carried them.  A
 * batch that cannot be merged without losing a value is applied in order,
 * event by event.
 *
 * No I/O: tests/consumer/test_plan.c drives it with events made in memory.
 */
#ifndef XR_PLAN_H
#define XR_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "consumer/event.h"

/* One event of the batch, as the planner sees it. */
typedef struct xr_plan_in_s {
	const xr_event_t *ev;     /* borrowed */
	const char       *key;    /* table and key values (borrowed); NULL:
	                           * this event cannot be merged (a truncate,
	                           * a key change) */
	bool              vclock; /* its table is in conflict mode vclock */
} xr_plan_in_t;

/* What the planner decided for one event. */
typedef struct xr_plan_out_s {
	bool               superseded;     /* a later write of its key decides */
	bool               follows_insert; /* its key was inserted earlier in
	                                    * the batch: not "missing" here */
	/*
	 * Per field of ev->schema: the event whose after image holds the
	 * value ev left unchanged (NULL: none in the batch).  NULL when
	 * nothing was filled.  Owned by the output: xr_plan_out_term().
	 */
	const xr_event_t **fill;
} xr_plan_out_t;

typedef enum {
	XR_PLAN_MERGED = 0,   /* out says which events to apply, with fills */
	XR_PLAN_IN_ORDER      /* apply every event, in batch order */
} xr_plan_result_t;

/*
 * Plans n events (in batch order, all from one source region).  out must
 * have n entries; they are reset first.  Returns XR_PLAN_IN_ORDER, leaving
 * out cleared, when an event has no key, or when two writes of one key
 * come with different writer schemas (their fields do not line up).
 */
xr_plan_result_t xr_plan_merge(const xr_plan_in_t *in, size_t n,
                               xr_plan_out_t *out);

/*
 * Orders two events of one source region by their position in its stream
 * (commit LSN, then the change's LSN): -1, 0 or 1.
 */
int xr_plan_cmp_position(const xr_event_t *a, const xr_event_t *b);

/* Frees what xr_plan_merge allocated in out[0..n). */
void xr_plan_out_term(xr_plan_out_t *out, size_t n);

/*
 * The text of field f of the after image of ev, taking the value from
 * fill when ev left it unchanged; NULL for SQL NULL.  *known is false when
 * the value is neither in ev nor in fill (still unchanged).
 */
const char *xr_plan_after_text(const xr_event_t *ev, const xr_plan_out_t *out,
                               int f, bool *known);

/*
 * Whether the write of ev, with out's fills, carries every column (an
 * insert of a missing row may then be made from it).
 */
bool xr_plan_complete(const xr_event_t *ev, const xr_plan_out_t *out);

#endif
