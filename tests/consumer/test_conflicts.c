/*
 * test_conflicts.c: unit tests for consumer/conflicts.c's command-line side:
 * the --since/--until parser and the option checks.  The report itself runs
 * against the real stack in tests/integration/test_conflicts_cmd.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "consumer/conflicts.h"

#define S  INT64_C(1000000)
#define T0 (INT64_C(1714557600) * S)     /* 2024-05-01T10:00:00Z */

static char err[512];

static xr_when_t
when_ok(const char *s)
{
	xr_when_t w;

	memset(&w, 0, sizeof(w));
	err[0] = '\0';
	if (xr_conflicts_parse_when(s, &w, err, sizeof(err)) != 0)
		fail_msg("\"%s\" refused: %s", s, err);
	assert_true(w.set);
	return w;
}

static void
when_bad(const char *s, const char *msg)
{
	xr_when_t w;

	memset(&w, 0, sizeof(w));
	err[0] = '\0';
	assert_int_equal(xr_conflicts_parse_when(s, &w, err, sizeof(err)), -1);
	assert_false(w.set);
	if (!strstr(err, msg))
		fail_msg("\"%s\": error \"%s\" lacks \"%s\"", s, err, msg);
}

static void
test_durations_are_relative(void **state)
{
	(void)state;
	assert_true(when_ok("30m").relative);
	assert_int_equal(when_ok("45s").us, 45 * S);
	assert_int_equal(when_ok("30m").us, 30 * 60 * S);
	assert_int_equal(when_ok("2h").us, 2 * 3600 * S);
	assert_int_equal(when_ok("7d").us, 7 * 86400 * S);
	assert_int_equal(when_ok("1w").us, 7 * 86400 * S);
	assert_int_equal(when_ok("1h30m").us, 90 * 60 * S);
	assert_int_equal(when_ok("0s").us, 0);
	assert_int_equal(when_ok("36525d").us, INT64_C(36525) * 86400 * S);
}

static void
test_bad_durations_are_refused(void **state)
{
	(void)state;
	when_bad("", "is neither");
	when_bad("30", "is neither");        /* no unit: minutes? seconds? */
	when_bad("m", "is neither");
	when_bad("30x", "is neither");
	when_bad("-5m", "is neither");
	when_bad("1.5h", "is neither");
	when_bad("5 m", "is neither");
	when_bad("2h ", "is neither");
	when_bad("yesterday", "is neither");
	when_bad("36526d", "longer than 100 years");
	when_bad("99999999999999999999999d", "longer than 100 years");
	when_bad("36525d1s", "longer than 100 years");
}

static void
test_iso_times_with_an_offset(void **state)
{
	xr_when_t w;

	(void)state;
	w = when_ok("2024-05-01T10:00:00Z");
	assert_false(w.relative);
	assert_int_equal(w.us, T0);
	assert_int_equal(when_ok("2024-05-01 10:00:00z").us, T0);
	assert_int_equal(when_ok("2024-05-01T12:00:00+02:00").us,
	                 T0);
	assert_int_equal(when_ok("2024-05-01T12:00+0200").us,
	                 T0);
	assert_int_equal(when_ok("2024-05-01T05:30:00-04:30").us,
	                 T0);
	assert_int_equal(when_ok("2024-05-01T12:00+02").us, T0);
	/* Microseconds, as the report prints them, round-trip exactly. */
	assert_int_equal(when_ok("2024-05-01T10:00:00.123456Z").us,
	                 T0 + 123456);
	assert_int_equal(when_ok("2024-05-01T10:00:00.5Z").us,
	                 T0 + 500000);
	assert_int_equal(when_ok("2024-02-29T00:00:00Z").us, INT64_C(1709164800) * S);
	assert_int_equal(when_ok("1970-01-01T00:00:00Z").us, 0);
}

static void
test_iso_times_without_an_offset_are_local(void **state)
{
	(void)state;
	/* POSIX TZ strings need no tzdata: "XRT-2" is UTC+2. */
	setenv("TZ", "XRT-2", 1);
	tzset();
	assert_int_equal(when_ok("2024-05-01T12:00:00").us, T0);
	assert_int_equal(when_ok("2024-05-01 12:00").us, T0);
	assert_int_equal(when_ok("2024-05-01").us,
	                 T0 - 12 * 3600 * S);
	/* An explicit offset wins over TZ. */
	assert_int_equal(when_ok("2024-05-01T10:00:00Z").us, T0);
	setenv("TZ", "UTC0", 1);
	tzset();
	assert_int_equal(when_ok("2024-05-01T10:00:00").us, T0);
	assert_int_equal(when_ok("2024-05-01").us, INT64_C(1714521600) * S);
}

static void
test_bad_iso_times_are_refused(void **state)
{
	(void)state;
	when_bad("2024-02-30", "day out of range");
	when_bad("2023-02-29", "day out of range");
	when_bad("2024-13-01", "month out of range");
	when_bad("2024-00-01", "month out of range");
	when_bad("2024-05-01T24:00:00Z", "time of day out of range");
	when_bad("2024-05-01T10:60Z", "time of day out of range");
	when_bad("2024-05-01T10:00:61Z", "time of day out of range");
	when_bad("1969-12-31", "year out of range");
	when_bad("2024-05-01T10:00:00.1234567Z", "more than 6 fractional digits");
	when_bad("2024-05-01T10:00:00+16:00", "UTC offset out of range");
	when_bad("2024-5-1", "is neither");
	when_bad("2024-05-01T10", "is neither");
	when_bad("2024-05-01T10:00:00.Z", "is neither");
	when_bad("2024-05-01T10:00:00Zjunk", "is neither");
	when_bad("2024-05-01T10:00:00+2", "is neither");
	when_bad("2024-05-01T10:00:00+02:", "is neither");
	when_bad("2024-05-01T10:00:00+02:0", "is neither");
	when_bad("2024-05-01Z", "is neither");
	when_bad("2024-05-01T", "is neither");
	when_bad("20240501", "is neither");
}

static void
test_table_names_default_to_schema_public(void **state)
{
	xr_conflicts_opts_t o;

	(void)state;
	xr_conflicts_opts_init(&o);
	assert_int_equal(o.limit, 50);
	assert_int_equal(o.format, XR_CONFLICTS_TEXT);
	assert_int_equal(xr_conflicts_opts_set(&o, "table", "orders", err,
	                                       sizeof(err)), 0);
	assert_int_equal(xr_conflicts_opts_set(&o, "table", "sales.Orders_2$", err,
	                                       sizeof(err)), 0);
	assert_int_equal(o.n_tables, 2);
	assert_string_equal(o.schemas[0], "public");
	assert_string_equal(o.tables[0], "orders");
	assert_string_equal(o.schemas[1], "sales");
	assert_string_equal(o.tables[1], "Orders_2$");
	xr_conflicts_opts_term(&o);
	assert_int_equal(o.n_tables, 0);
	xr_conflicts_opts_term(&o);          /* twice is harmless */
}

static void
opt_bad(const char *name, const char *arg, const char *msg)
{
	xr_conflicts_opts_t o;

	xr_conflicts_opts_init(&o);
	err[0] = '\0';
	assert_int_equal(xr_conflicts_opts_set(&o, name, arg, err, sizeof(err)),
	                 -1);
	if (!strstr(err, msg))
		fail_msg("--%s %s: error \"%s\" lacks \"%s\"", name, arg, err, msg);
	xr_conflicts_opts_term(&o);
}

static void
test_bad_values_name_their_option(void **state)
{
	(void)state;
	opt_bad("table", "a.b.c", "--table: ");
	opt_bad("table", "public.", "--table: ");
	opt_bad("table", ".orders", "--table: ");
	opt_bad("table", "1orders", "--table: ");
	opt_bad("table", "", "--table: ");
	opt_bad("kind", "Insert_exists", "--kind: ");
	opt_bad("kind", "insert-exists", "--kind: ");
	opt_bad("kind", "", "--kind: ");
	opt_bad("limit", "-1", "--limit: ");
	opt_bad("limit", "ten", "--limit: ");
	opt_bad("limit", "10x", "--limit: ");
	opt_bad("limit", "", "--limit: ");
	opt_bad("limit", "+5", "--limit: ");
	opt_bad("limit", "99999999999999999999999", "--limit: ");
	opt_bad("format", "yaml", "--format: ");
	opt_bad("since", "yesterday", "--since: \"yesterday\" is neither");
	opt_bad("until", "2024-02-30", "--until: \"2024-02-30\": day out of range");
}

static void
test_good_values_are_kept(void **state)
{
	xr_conflicts_opts_t o;

	(void)state;
	xr_conflicts_opts_init(&o);
	assert_int_equal(xr_conflicts_opts_set(&o, "kind", "insert_exists", err,
	                                       sizeof(err)), 0);
	assert_int_equal(xr_conflicts_opts_set(&o, "kind", "some_future_kind", err,
	                                       sizeof(err)), 0);
	assert_int_equal(xr_conflicts_opts_set(&o, "limit", "0", err,
	                                       sizeof(err)), 0);
	assert_int_equal(xr_conflicts_opts_set(&o, "rows", NULL, err,
	                                       sizeof(err)), 0);
	assert_int_equal(xr_conflicts_opts_set(&o, "format", "json", err,
	                                       sizeof(err)), 0);
	assert_int_equal(xr_conflicts_opts_set(&o, "since", "2h", err,
	                                       sizeof(err)), 0);
	assert_int_equal(xr_conflicts_opts_set(&o, "until", "2024-05-01T10:00:00Z",
	                                       err, sizeof(err)), 0);
	assert_int_equal(o.n_kinds, 2);
	assert_string_equal(o.kinds[1], "some_future_kind");
	assert_int_equal(o.limit, 0);
	assert_true(o.rows);
	assert_int_equal(o.format, XR_CONFLICTS_JSON);
	assert_true(o.since.set && o.since.relative);
	assert_int_equal(o.since.us, 2 * 3600 * S);
	assert_true(o.until.set && !o.until.relative);
	assert_int_equal(o.until.us, T0);
	xr_conflicts_opts_term(&o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_durations_are_relative),
		cmocka_unit_test(test_bad_durations_are_refused),
		cmocka_unit_test(test_iso_times_with_an_offset),
		cmocka_unit_test(test_iso_times_without_an_offset_are_local),
		cmocka_unit_test(test_bad_iso_times_are_refused),
		cmocka_unit_test(test_table_names_default_to_schema_public),
		cmocka_unit_test(test_bad_values_name_their_option),
		cmocka_unit_test(test_good_values_are_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
