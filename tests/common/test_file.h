/*
 * test_file.h: the unit tests' reader of fixture files (cmocka: include
 * after <cmocka.h>).
 */
#ifndef XR_TEST_FILE_H
#define XR_TEST_FILE_H

#include <stdio.h>
#include <stdlib.h>

/* The whole file at path, NUL-terminated (free it); fails the test if not. */
static inline char *
xr_test_read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long  n;

	if (!fp)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	n = ftell(fp);
	assert_true(n >= 0);
	assert_int_equal(fseek(fp, 0, SEEK_SET), 0);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

#endif
