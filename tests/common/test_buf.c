/* test_buf.c: the byte buffer and the LSN helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/lsn.h"

static void
test_append_grows_and_terminates(void **state)
{
	xr_buf_t b;
	int      i;

	(void)state;
	xr_buf_init(&b);
	for (i = 0; i < 1000; i++)
		xr_buf_append(&b, "abc", 3);
	assert_int_equal(b.len, 3000);
	assert_int_equal(b.data[3000], '\0');
	assert_memory_equal(b.data + 2997, "abc", 3);
	xr_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	xr_buf_term(&b);
}

static void
test_printf_longer_than_capacity(void **state)
{
	xr_buf_t b;
	char     big[1000];

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	xr_buf_init(&b);
	xr_buf_puts(&b, "<");
	xr_buf_printf(&b, "%s|%d", big, 42);
	assert_int_equal(b.len, 1 + 999 + 3);
	assert_string_equal(b.data + 1000, "|42");
	xr_buf_term(&b);
}

static void
test_json_string_escapes(void **state)
{
	xr_buf_t b;

	(void)state;
	xr_buf_init(&b);
	xr_buf_json_str(&b, "a\"b\\c\n\x01\xc3\xa9", 9);
	assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\"");
	xr_buf_term(&b);
}

/* xr_buf_put_int as printf's "%0*lld" writes it, at the edges. */
static void
test_put_int_as_printf(void **state)
{
	static const int64_t vals[] = { 0, 7, -7, 42, 2024, -44, INT64_MAX,
	                                INT64_MIN, INT32_MIN };
	static const int     widths[] = { 0, 1, 2, 4, 6 };
	xr_buf_t b;
	char     want[64];
	size_t   i, k;

	(void)state;
	xr_buf_init(&b);
	for (i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
		for (k = 0; k < sizeof(widths) / sizeof(widths[0]); k++) {
			/* printf counts the minus sign in the width; xr_buf_put_int
			 * pads the digits. */
			snprintf(want, sizeof(want), "%s%0*llu", vals[i] < 0 ? "-" : "",
			         widths[k], vals[i] < 0
			             ? (unsigned long long)(0 - (uint64_t)vals[i])
			             : (unsigned long long)vals[i]);
			xr_buf_reset(&b);
			xr_buf_put_int(&b, vals[i], widths[k]);
			assert_string_equal(b.data, want);
			assert_int_equal(b.len, strlen(want));
		}
	xr_buf_term(&b);
}

static void
test_i64_text(void **state)
{
	char s[21];

	(void)state;
	assert_int_equal(xr_i64_text(s, 0), 1);
	assert_string_equal(s, "0");
	assert_int_equal(xr_i64_text(s, -42), 3);
	assert_string_equal(s, "-42");
	assert_int_equal(xr_i64_text(s, INT64_MIN), 20);
	assert_string_equal(s, "-9223372036854775808");
	assert_int_equal(xr_i64_text(s, INT64_MAX), 19);
	assert_string_equal(s, "9223372036854775807");
}

static void
test_lsn_round_trip(void **state)
{
	char     s[XR_LSN_STRLEN];
	xr_lsn_t lsn;

	(void)state;
	assert_string_equal(xr_lsn_format(UINT64_C(0x16B3748), s), "0/16B3748");
	assert_string_equal(xr_lsn_format(UINT64_MAX, s), "FFFFFFFF/FFFFFFFF");
	assert_string_equal(xr_lsn_format(0, s), "0/0");
	assert_string_equal(xr_lsn_format(UINT64_C(0x100000000), s), "1/0");
	assert_string_equal(xr_lsn_format(UINT64_C(0xA0000000F), s), "A/F");
	assert_int_equal(xr_lsn_parse("1A/2B", &lsn), 0);
	assert_int_equal(lsn, (UINT64_C(0x1A) << 32) | 0x2B);
	assert_int_equal(xr_lsn_parse("FFFFFFFF/FFFFFFFF", &lsn), 0);
	assert_int_equal(lsn, UINT64_MAX);
}

static void
test_lsn_parse_rejects_garbage(void **state)
{
	xr_lsn_t lsn;

	(void)state;
	assert_int_equal(xr_lsn_parse("", &lsn), -1);
	assert_int_equal(xr_lsn_parse("1A", &lsn), -1);
	assert_int_equal(xr_lsn_parse("1A/", &lsn), -1);
	assert_int_equal(xr_lsn_parse("/1", &lsn), -1);
	assert_int_equal(xr_lsn_parse("1/2x", &lsn), -1);
	assert_int_equal(xr_lsn_parse("100000000/0", &lsn), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_grows_and_terminates),
		cmocka_unit_test(test_printf_longer_than_capacity),
		cmocka_unit_test(test_json_string_escapes),
		cmocka_unit_test(test_put_int_as_printf),
		cmocka_unit_test(test_i64_text),
		cmocka_unit_test(test_lsn_round_trip),
		cmocka_unit_test(test_lsn_parse_rejects_garbage),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
