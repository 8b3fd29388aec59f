/* test_tracker.c: the safe flush LSN only passes fully delivered work. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "producer/tracker.h"

static void
test_starts_at_slot_position(void **state)
{
	xr_tracker_t *t = xr_tracker_new(1000);

	(void)state;
	assert_int_equal(xr_tracker_safe_lsn(t), 1000);
	assert_int_equal(xr_tracker_open_txns(t), 0);
	xr_tracker_destroy(t);
}

static void
test_waits_for_every_message_of_a_transaction(void **state)
{
	xr_tracker_t *t = xr_tracker_new(100);
	uint64_t      a = xr_tracker_begin(t);

	(void)state;
	xr_tracker_add(t, a);
	xr_tracker_add(t, a);
	xr_tracker_commit(t, a, 200);
	assert_int_equal(xr_tracker_safe_lsn(t), 100);
	xr_tracker_delivered(t, a);
	assert_int_equal(xr_tracker_safe_lsn(t), 100);
	xr_tracker_delivered(t, a);
	assert_int_equal(xr_tracker_safe_lsn(t), 200);
	assert_int_equal(xr_tracker_in_flight(t), 0);
	xr_tracker_destroy(t);
}

static void
test_not_safe_before_commit(void **state)
{
	xr_tracker_t *t = xr_tracker_new(100);
	uint64_t      a = xr_tracker_begin(t);

	(void)state;
	xr_tracker_add(t, a);
	xr_tracker_delivered(t, a);
	/* All delivered, but the transaction is still being decoded. */
	assert_int_equal(xr_tracker_safe_lsn(t), 100);
	xr_tracker_commit(t, a, 300);
	assert_int_equal(xr_tracker_safe_lsn(t), 300);
	xr_tracker_destroy(t);
}

static void
test_later_transaction_waits_for_earlier(void **state)
{
	xr_tracker_t *t = xr_tracker_new(0);
	uint64_t      a, b;

	(void)state;
	a = xr_tracker_begin(t);
	xr_tracker_add(t, a);
	xr_tracker_commit(t, a, 10);
	b = xr_tracker_begin(t);
	xr_tracker_add(t, b);
	xr_tracker_commit(t, b, 20);
	/* b is delivered first: nothing may pass a. */
	xr_tracker_delivered(t, b);
	assert_int_equal(xr_tracker_safe_lsn(t), 0);
	xr_tracker_delivered(t, a);
	assert_int_equal(xr_tracker_safe_lsn(t), 20);
	assert_int_equal(xr_tracker_open_txns(t), 0);
	xr_tracker_destroy(t);
}

static void
test_empty_transaction_is_safe_at_commit(void **state)
{
	xr_tracker_t *t = xr_tracker_new(5);
	uint64_t      a = xr_tracker_begin(t);

	(void)state;
	xr_tracker_commit(t, a, 50);
	assert_int_equal(xr_tracker_safe_lsn(t), 50);
	xr_tracker_destroy(t);
}

static void
test_server_lsn_only_when_idle(void **state)
{
	xr_tracker_t *t = xr_tracker_new(5);
	uint64_t      a;

	(void)state;
	xr_tracker_server_lsn(t, 70);
	assert_int_equal(xr_tracker_safe_lsn(t), 70);
	a = xr_tracker_begin(t);
	xr_tracker_add(t, a);
	xr_tracker_commit(t, a, 80);
	xr_tracker_server_lsn(t, 90);          /* a still in flight */
	assert_int_equal(xr_tracker_safe_lsn(t), 70);
	xr_tracker_delivered(t, a);
	assert_int_equal(xr_tracker_safe_lsn(t), 80);
	xr_tracker_server_lsn(t, 60);          /* never backwards */
	assert_int_equal(xr_tracker_safe_lsn(t), 80);
	xr_tracker_server_lsn(t, 90);
	assert_int_equal(xr_tracker_safe_lsn(t), 90);
	xr_tracker_destroy(t);
}

/* Many transactions in flight at once make the ring grow and wrap. */
/*
 * A report for a transaction the tracker does not have (or one more than
 * it was waiting for) is a bug: checked in release builds too, and the
 * safe LSN stops where it was.
 */
static void
test_unknown_transaction_breaks_it_for_good(void **state)
{
	xr_tracker_t *t = xr_tracker_new(100);
	uint64_t      a;

	(void)state;
	a = xr_tracker_begin(t);
	xr_tracker_add(t, a);
	xr_tracker_commit(t, a, 200);
	xr_tracker_delivered(t, a);
	assert_int_equal(xr_tracker_safe_lsn(t), 200);
	assert_false(xr_tracker_broken(t));
	xr_tracker_delivered(t, a);          /* once more: nothing pending */
	assert_true(xr_tracker_broken(t));
	a = xr_tracker_begin(t);
	xr_tracker_commit(t, a, 300);
	xr_tracker_server_lsn(t, 400);
	assert_int_equal(xr_tracker_safe_lsn(t), 200);
	xr_tracker_destroy(t);

	t = xr_tracker_new(100);
	xr_tracker_commit(t, 42, 200);       /* never begun */
	assert_true(xr_tracker_broken(t));
	assert_int_equal(xr_tracker_safe_lsn(t), 100);
	xr_tracker_destroy(t);
}

static void
test_ring_grows_and_wraps(void **state)
{
	enum { N = 1000 };
	xr_tracker_t *t = xr_tracker_new(0);
	uint64_t      ids[N];
	int           i, round;

	(void)state;
	for (round = 0; round < 3; round++) {
		for (i = 0; i < N; i++) {
			ids[i] = xr_tracker_begin(t);
			xr_tracker_add(t, ids[i]);
			xr_tracker_commit(t, ids[i],
			                  (xr_lsn_t)(round * N + i + 1) * 16);
		}
		/* Deliver in reverse: safe stays put until the first arrives. */
		for (i = N - 1; i > 0; i--)
			xr_tracker_delivered(t, ids[i]);
		assert_int_equal(xr_tracker_safe_lsn(t), (xr_lsn_t)(round * N) * 16);
		xr_tracker_delivered(t, ids[0]);
		assert_int_equal(xr_tracker_safe_lsn(t),
		                 (xr_lsn_t)((round + 1) * N) * 16);
		assert_int_equal(xr_tracker_open_txns(t), 0);
	}
	xr_tracker_destroy(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_starts_at_slot_position),
		cmocka_unit_test(test_waits_for_every_message_of_a_transaction),
		cmocka_unit_test(test_not_safe_before_commit),
		cmocka_unit_test(test_later_transaction_waits_for_earlier),
		cmocka_unit_test(test_empty_transaction_is_safe_at_commit),
		cmocka_unit_test(test_server_lsn_only_when_idle),
		cmocka_unit_test(test_unknown_transaction_breaks_it_for_good),
		cmocka_unit_test(test_ring_grows_and_wraps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
