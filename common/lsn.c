/* lsn.c: LSN text forms and clocks (see lsn.h). */
#include "common/lsn.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

char *
xr_lsn_format(xr_lsn_t lsn, char buf[XR_LSN_STRLEN])
{
	snprintf(buf, XR_LSN_STRLEN, "%" PRIX32 "/%" PRIX32,
	         (uint32_t)(lsn >> 32), (uint32_t)lsn);
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
