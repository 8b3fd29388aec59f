/*
 * test_lease.c: unit tests for the decisions of consumer/lease.c: how many
 * source regions a consumer of a region takes or gives up, and the lock
 * keys.  No database: the locks themselves are covered by
 * tests/integration/test_scale_out.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "consumer/lease.h"

/* Alone, a consumer takes every source region. */
static void
test_alone_takes_all(void **state)
{
	bool   held[3] = { false, false, false };
	size_t want;

	(void)state;
	assert_int_equal(xr_lease_plan(held, 3, 1, &want), -1);
	assert_int_equal(want, 3);
	held[1] = true;
	assert_int_equal(xr_lease_plan(held, 3, 1, &want), -1);
	assert_int_equal(want, 2);
}

/* A second member joins: the first gives up its last region, one a tick. */
static void
test_gives_up_beyond_share(void **state)
{
	bool   held[3] = { true, true, true };
	size_t want;

	(void)state;
	/* share ceil(3/2) = 2: one too many, the last one held goes */
	assert_int_equal(xr_lease_plan(held, 3, 2, &want), 2);
	assert_int_equal(want, 0);
	held[2] = false;
	assert_int_equal(xr_lease_plan(held, 3, 2, &want), -1);
	assert_int_equal(want, 0);
	/* three members: share 1 */
	assert_int_equal(xr_lease_plan(held, 3, 3, &want), 1);
	held[0] = false;
	held[1] = true;
	assert_int_equal(xr_lease_plan(held, 3, 3, &want), -1);
	assert_int_equal(want, 0);
}

/* More members than regions: the rest stand by; one that holds none wants one. */
static void
test_more_members_than_regions(void **state)
{
	bool   none[2] = { false, false }, one[2] = { false, true };
	size_t want;

	(void)state;
	assert_int_equal(xr_lease_plan(none, 2, 3, &want), -1);
	assert_int_equal(want, 1);
	assert_int_equal(xr_lease_plan(one, 2, 3, &want), -1);
	assert_int_equal(want, 0);
	/* a member count not yet known counts as one */
	assert_int_equal(xr_lease_plan(none, 2, 0, &want), -1);
	assert_int_equal(want, 2);
	/* no source region at all */
	assert_int_equal(xr_lease_plan(none, 0, 2, &want), -1);
	assert_int_equal(want, 0);
}

/*
 * Every split of n regions over m members that the plan reaches from any
 * start gives each member at most its share, and together they hold all.
 */
static void
test_members_settle(void **state)
{
	size_t n, m;

	(void)state;
	for (n = 1; n <= 5; n++) {
		for (m = 1; m <= 4; m++) {
			bool   held[4][5] = { { false } };
			bool   owner_of[5] = { false };
			size_t i, j, round, total = 0, share = (n + m - 1) / m;

			/* member 0 starts with all of them */
			for (i = 0; i < n; i++) {
				held[0][i] = true;
				owner_of[i] = true;
			}
			for (round = 0; round < 20; round++) {
				for (j = 0; j < m; j++) {
					size_t want;
					long   drop = xr_lease_plan(held[j], n, (int)m, &want);

					if (drop >= 0) {
						held[j][drop] = false;
						owner_of[drop] = false;
					}
					for (i = 0; i < n && want > 0; i++)
						if (!owner_of[i]) {
							held[j][i] = owner_of[i] = true;
							want--;
						}
				}
			}
			for (j = 0; j < m; j++) {
				size_t cnt = 0;

				for (i = 0; i < n; i++)
					cnt += held[j][i];
				assert_true(cnt <= share);
				total += cnt;
			}
			assert_int_equal(total, n);
		}
	}
}

static void
test_keys(void **state)
{
	(void)state;
	/* positive, never membership's 0, stable, distinct for these names */
	assert_true(xr_lease_key("us") > 0);
	assert_int_equal(xr_lease_key("us"), xr_lease_key("us"));
	assert_int_not_equal(xr_lease_key("us"), xr_lease_key("eu"));
	assert_int_not_equal(xr_lease_key("eu"), xr_lease_key("apac"));
	assert_true(xr_lease_key("") > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alone_takes_all),
		cmocka_unit_test(test_gives_up_beyond_share),
		cmocka_unit_test(test_more_members_than_regions),
		cmocka_unit_test(test_members_settle),
		cmocka_unit_test(test_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
