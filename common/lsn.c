/* lsn.c: LSN text forms and clocks (see lsn.h). */
#include "common/lsn.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

char *
xr_lsn_format(xr_lsn_t lsn, char buf[XR_LSN_STRLEN])
{
	static const char hex[] = "0123456789ABCDEF";
	uint32_t half[2] = { (uint32_t)(lsn >> 32), (uint32_t)lsn };
	size_t   n = 0;
	int      h, shift;

	/* %X/%X without printf: it runs once per event (the xr-lsn header). */
	for (h = 0; h < 2; h++) {
		for (shift = 28; shift > 0 && !(half[h] >> shift); shift -= 4)
			;
		for (; shift >= 0; shift -= 4)
			buf[n++] = hex[(half[h] >> shift) & 0xf];
		if (h == 0)
			buf[n++] = '/';
	}
	buf[n] = '\0';
	return buf;
}

int
xr_lsn_parse(const char *s, xr_lsn_t *out)
{
	char              *end;
	unsigned long long hi, lo;

	hi = strtoull(s, &end, 16);
	if (end == s || *end != '/' || hi > UINT32_MAX)
		return -1;
	s = end + 1;
	lo = strtoull(s, &end, 16);
	if (end == s || *end != '\0' || lo > UINT32_MAX)
		return -1;
	*out = ((xr_lsn_t)hi << 32) | (xr_lsn_t)lo;
	return 0;
}

int64_t
xr_unix_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
xr_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
xr_pg_now_us(void)
{
	return xr_unix_now_us() - XR_PG_EPOCH_OFFSET_US;
}
