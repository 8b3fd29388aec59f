/*
 * test_plan.c: unit tests for consumer/plan.c, merging the writes of one
 * key within a batch.  Events are made in memory: a table (id, v, big)
 * where big may come as an unchanged TOASTed value; no database, no Kafka.
 * A randomized test checks the merge against applying every event in
 * order to an in-memory table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer/plan.h"

enum { F_ID = 0, F_V, F_BIG, NF };

/* Two writer schemas: only their addresses matter to the planner. */
static xr_schema_t schema_a, schema_b;

/* Adds value v (NULL: SQL NULL, "~": unchanged TOAST) to image img[f]. */
static void
put(xr_event_t *ev, xr_eval_t *img, int f, const char *v)
{
	img[f].present = true;
	if (!v) {
		img[f].is_null = true;
		return;
	}
	if (strcmp(v, "~") == 0) {
		img[f].unchanged = true;
		img[f].is_null = true;
		return;
	}
	img[f].off = ev->text.len;
	img[f].len = strlen(v);
	xr_buf_append(&ev->text, v, strlen(v) + 1);
}

/*
 * An event of op on key id, at commit time ts and change LSN lsn, with v
 * and big (after image; for a delete the before image's key).
 */
static xr_event_t *
mk(xr_op_t op, int id, const char *v, const char *big, int64_t ts,
   uint64_t lsn)
{
	xr_event_t *ev = malloc(sizeof(*ev));
	char        key[16];

	xr_event_init(ev);
	ev->op = op;
	ev->schema = &schema_a;
	ev->nfields = NF;
	ev->commit_ts = ts;
	ev->commit_lsn = 1000 + (uint64_t)ts;
	ev->lsn = lsn;
	ev->before = calloc(NF, sizeof(xr_eval_t));
	ev->after = calloc(NF, sizeof(xr_eval_t));
	snprintf(key, sizeof(key), "%d", id);
	if (op == XR_OP_DELETE) {
		ev->has_before = true;
		put(ev, ev->before, F_ID, key);
	} else {
		ev->has_after = true;
		put(ev, ev->after, F_ID, key);
		put(ev, ev->after, F_V, v);
		put(ev, ev->after, F_BIG, big);
	}
	return ev;
}

static void
free_events(xr_event_t **evs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		xr_event_term(evs[i]);
		free(evs[i]);
	}
}

/* The planner's input for evs, keyed by id ("t:<id>"). */
static void
inputs(xr_event_t **evs, size_t n, xr_plan_in_t *in, char keys[][16])
{
	size_t i;

	for (i = 0; i < n; i++) {
		const xr_eval_t *img = evs[i]->op == XR_OP_DELETE ? evs[i]->before
		                                                  : evs[i]->after;

		snprintf(keys[i], 16, "t:%s", evs[i]->text.data + img[F_ID].off);
		in[i].ev = evs[i];
		in[i].key = keys[i];
		in[i].vclock = false;
	}
}

static const char *
after(const xr_event_t *ev, const xr_plan_out_t *o, int f)
{
	bool known;
	const char *v = xr_plan_after_text(ev, o, f, &known);

	return known ? (v ? v : "NULL") : "~";
}

static void
test_later_write_of_a_key_supersedes_the_earlier(void **state)
{
	xr_event_t   *evs[3] = {
		mk(XR_OP_INSERT, 1, "first", "b", 10, 1),
		mk(XR_OP_UPDATE, 1, "second", "b", 10, 2),
		mk(XR_OP_INSERT, 2, "other", "b", 10, 3),
	};
	xr_plan_in_t  in[3];
	xr_plan_out_t out[3];
	char          keys[3][16];

	(void)state;
	inputs(evs, 3, in, keys);
	assert_int_equal(xr_plan_merge(in, 3, out), XR_PLAN_MERGED);
	assert_true(out[0].superseded);
	assert_false(out[1].superseded);
	assert_true(out[1].follows_insert);
	assert_false(out[2].superseded);
	assert_false(out[2].follows_insert);
	xr_plan_out_term(out, 3);
	free_events(evs, 3);
}

static void
test_order_is_the_version_not_the_batch_position(void **state)
{
	/* Same commit time: the later change in the stream wins. */
	xr_event_t   *evs[2] = {
		mk(XR_OP_UPDATE, 1, "later", "b", 10, 9),
		mk(XR_OP_UPDATE, 1, "earlier", "b", 10, 5),
	};
	xr_plan_in_t  in[2];
	xr_plan_out_t out[2];
	char          keys[2][16];

	(void)state;
	inputs(evs, 2, in, keys);
	assert_int_equal(xr_plan_merge(in, 2, out), XR_PLAN_MERGED);
	assert_false(out[0].superseded);
	assert_true(out[1].superseded);
	xr_plan_out_term(out, 2);
	free_events(evs, 2);
}

static void
test_position_is_commit_lsn_then_change_lsn(void **state)
{
	xr_event_t *a = mk(XR_OP_UPDATE, 1, "a", "b", 10, 9);
	xr_event_t *b = mk(XR_OP_UPDATE, 2, "a", "b", 11, 1);
	xr_event_t *evs[2] = { a, b };

	(void)state;
	/* a's transaction committed first (commit LSN 1010 < 1011). */
	assert_int_equal(xr_plan_cmp_position(a, b), -1);
	assert_int_equal(xr_plan_cmp_position(b, a), 1);
	b->commit_lsn = a->commit_lsn;
	assert_int_equal(xr_plan_cmp_position(a, b), 1);
	b->lsn = a->lsn;
	assert_int_equal(xr_plan_cmp_position(a, b), 0);
	free_events(evs, 2);
}

static void
test_vclock_orders_by_hybrid_clock(void **state)
{
	/* The commit times say the other way round; the clocks decide. */
	xr_event_t   *evs[2] = {
		mk(XR_OP_UPDATE, 1, "a", "b", 20, 1),
		mk(XR_OP_UPDATE, 1, "b", "b", 10, 2),
	};
	xr_plan_in_t  in[2];
	xr_plan_out_t out[2];
	char          keys[2][16];

	(void)state;
	evs[0]->has_vclock = evs[1]->has_vclock = true;
	evs[0]->vc_hlc = 100;
	evs[1]->vc_hlc = 101;
	inputs(evs, 2, in, keys);
	in[0].vclock = in[1].vclock = true;
	assert_int_equal(xr_plan_merge(in, 2, out), XR_PLAN_MERGED);
	assert_true(out[0].superseded);
	assert_false(out[1].superseded);
	xr_plan_out_term(out, 2);
	free_events(evs, 2);
}

static void
test_unchanged_toast_is_filled_from_the_latest_earlier_image(void **state)
{
	xr_event_t   *evs[4] = {
		mk(XR_OP_UPDATE, 1, "v1", "BIG-1", 10, 1),
		mk(XR_OP_UPDATE, 1, "v2", "BIG-2", 11, 1),
		mk(XR_OP_UPDATE, 1, "v3", "~", 12, 1),
		mk(XR_OP_UPDATE, 1, "v4", "~", 13, 1),
	};
	xr_plan_in_t  in[4];
	xr_plan_out_t out[4];
	char          keys[4][16];

	(void)state;
	inputs(evs, 4, in, keys);
	assert_int_equal(xr_plan_merge(in, 4, out), XR_PLAN_MERGED);
	assert_false(out[3].superseded);
	assert_string_equal(after(evs[3], &out[3], F_BIG), "BIG-2");
	assert_string_equal(after(evs[3], &out[3], F_V), "v4");
	assert_true(xr_plan_complete(evs[3], &out[3]));
	xr_plan_out_term(out, 4);
	free_events(evs, 4);
}

static void
test_nothing_is_filled_across_a_delete(void **state)
{
	/* Delete and re-insert: the insert carries every value itself. */
	xr_event_t   *evs[4] = {
		mk(XR_OP_UPDATE, 1, "v1", "OLD", 10, 1),
		mk(XR_OP_DELETE, 1, NULL, NULL, 10, 2),
		mk(XR_OP_INSERT, 1, "v2", "NEW", 10, 3),
		mk(XR_OP_UPDATE, 1, "v3", "~", 10, 4),
	};
	xr_plan_in_t  in[4];
	xr_plan_out_t out[4];
	char          keys[4][16];

	(void)state;
	inputs(evs, 4, in, keys);
	assert_int_equal(xr_plan_merge(in, 4, out), XR_PLAN_MERGED);
	assert_string_equal(after(evs[3], &out[3], F_BIG), "NEW");
	assert_true(out[3].follows_insert);
	xr_plan_out_term(out, 4);
	free_events(evs, 4);
}

static void
test_value_unknown_in_the_batch_stays_unchanged(void **state)
{
	xr_event_t   *evs[2] = {
		mk(XR_OP_UPDATE, 1, "v1", "~", 10, 1),
		mk(XR_OP_UPDATE, 1, "v2", "~", 11, 1),
	};
	xr_plan_in_t  in[2];
	xr_plan_out_t out[2];
	char          keys[2][16];

	(void)state;
	inputs(evs, 2, in, keys);
	assert_int_equal(xr_plan_merge(in, 2, out), XR_PLAN_MERGED);
	assert_true(out[0].superseded);
	assert_string_equal(after(evs[1], &out[1], F_BIG), "~");
	assert_false(xr_plan_complete(evs[1], &out[1]));
	assert_null(out[1].fill);
	xr_plan_out_term(out, 2);
	free_events(evs, 2);
}

static void
test_null_is_a_value_not_an_unchanged_one(void **state)
{
	xr_event_t   *evs[2] = {
		mk(XR_OP_UPDATE, 1, "v1", NULL, 10, 1),
		mk(XR_OP_UPDATE, 1, "v2", "~", 11, 1),
	};
	xr_plan_in_t  in[2];
	xr_plan_out_t out[2];
	char          keys[2][16];

	(void)state;
	inputs(evs, 2, in, keys);
	assert_int_equal(xr_plan_merge(in, 2, out), XR_PLAN_MERGED);
	assert_string_equal(after(evs[1], &out[1], F_BIG), "NULL");
	xr_plan_out_term(out, 2);
	free_events(evs, 2);
}

static void
test_no_key_or_a_schema_change_applies_in_order(void **state)
{
	xr_event_t   *evs[2] = {
		mk(XR_OP_UPDATE, 1, "v1", "B", 10, 1),
		mk(XR_OP_UPDATE, 1, "v2", "~", 11, 1),
	};
	xr_plan_in_t  in[2];
	xr_plan_out_t out[2];
	char          keys[2][16];

	(void)state;
	inputs(evs, 2, in, keys);
	evs[1]->schema = &schema_b;
	assert_int_equal(xr_plan_merge(in, 2, out), XR_PLAN_IN_ORDER);
	assert_false(out[0].superseded);
	assert_null(out[1].fill);
	evs[1]->schema = &schema_a;
	in[0].key = NULL;   /* a truncate or a key change */
	assert_int_equal(xr_plan_merge(in, 2, out), XR_PLAN_IN_ORDER);
	assert_false(out[0].superseded || out[1].superseded);
	free_events(evs, 2);
}

/*
 * Randomized: batches of writes to a few keys, in stream order (as one
 * region's producer emits them) but shuffled across keys the way
 * partitions interleave.  Applying every event in order to an in-memory
 * table must give what applying the merge's survivors gives.
 */
#define RKEYS 4
#define RMAX  24

typedef struct row_s {
	bool exists;
	char v[16], big[16];
} row_t;

static void
apply_one(row_t *tab, const xr_event_t *ev, const xr_plan_out_t *o)
{
	const xr_eval_t *img = ev->op == XR_OP_DELETE ? ev->before : ev->after;
	int              id = atoi(ev->text.data + img[F_ID].off);
	row_t           *r = &tab[id];

	if (ev->op == XR_OP_DELETE) {
		r->exists = false;
		return;
	}
	r->exists = true;
	snprintf(r->v, sizeof(r->v), "%s", after(ev, o, F_V));
	if (strcmp(after(ev, o, F_BIG), "~") != 0)
		snprintf(r->big, sizeof(r->big), "%s", after(ev, o, F_BIG));
}

static void
test_merge_matches_applying_every_event_in_order(void **state)
{
	unsigned seed;

	(void)state;
	for (seed = 1; seed <= 2000; seed++) {
		xr_event_t   *evs[RMAX];
		xr_plan_in_t  in[RMAX];
		xr_plan_out_t out[RMAX];
		char          keys[RMAX][16];
		row_t         want[RKEYS], got[RKEYS];
		bool          exists[RKEYS];
		size_t        n = 0, i;
		int64_t       ts = 100;
		uint64_t      lsn = 1;

		srand(seed);
		memset(exists, 0, sizeof(exists));
		memset(want, 0, sizeof(want));
		for (i = 0; i < RKEYS; i++) {
			/* Rows there before the batch, as the target has them. */
			want[i].exists = exists[i] = rand() % 2;
			snprintf(want[i].v, sizeof(want[i].v), "pre%zu", i);
			snprintf(want[i].big, sizeof(want[i].big), "PRE%zu", i);
		}
		memcpy(got, want, sizeof(want));
		while (n < RMAX) {
			int  id = rand() % RKEYS;
			char v[16], big[16];

			if (rand() % 4 == 0)
				ts++;   /* a new transaction */
			snprintf(v, sizeof(v), "v%zu", n);
			snprintf(big, sizeof(big), "B%zu", n);
			if (!exists[id]) {
				evs[n++] = mk(XR_OP_INSERT, id, v, big, ts, lsn++);
				exists[id] = true;
			} else if (rand() % 5 == 0) {
				evs[n++] = mk(XR_OP_DELETE, id, NULL, NULL, ts, lsn++);
				exists[id] = false;
			} else {
				evs[n++] = mk(XR_OP_UPDATE, id, v, rand() % 3 ? "~" : big,
				              ts, lsn++);
			}
		}
		for (i = 0; i < n; i++)
			apply_one(want, evs[i], NULL);
		inputs(evs, n, in, keys);
		assert_int_equal(xr_plan_merge(in, n, out), XR_PLAN_MERGED);
		for (i = 0; i < n; i++)
			if (!out[i].superseded)
				apply_one(got, evs[i], &out[i]);
		for (i = 0; i < RKEYS; i++) {
			if (want[i].exists != got[i].exists ||
			    (want[i].exists && (strcmp(want[i].v, got[i].v) != 0 ||
			                        strcmp(want[i].big, got[i].big) != 0)))
				fail_msg("seed %u key %zu: want %d %s %s, got %d %s %s", seed,
				         i, want[i].exists, want[i].v, want[i].big,
				         got[i].exists, got[i].v, got[i].big);
		}
		xr_plan_out_term(out, n);
		free_events(evs, n);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_later_write_of_a_key_supersedes_the_earlier),
		cmocka_unit_test(test_order_is_the_version_not_the_batch_position),
		cmocka_unit_test(test_position_is_commit_lsn_then_change_lsn),
		cmocka_unit_test(test_vclock_orders_by_hybrid_clock),
		cmocka_unit_test(test_unchanged_toast_is_filled_from_the_latest_earlier_image),
		cmocka_unit_test(test_nothing_is_filled_across_a_delete),
		cmocka_unit_test(test_value_unknown_in_the_batch_stays_unchanged),
		cmocka_unit_test(test_null_is_a_value_not_an_unchanged_one),
		cmocka_unit_test(test_no_key_or_a_schema_change_applies_in_order),
		cmocka_unit_test(test_merge_matches_applying_every_event_in_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
