/* mem.c: allocation that aborts when memory runs out (see mem.h). */
#include "common/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
xr_oom(void)
{
	fputs("xregion: out of memory\n", stderr);
	abort();
}

void *
xr_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		xr_oom();
	return p;
}

void *
xr_reallocarray(void *p, size_t n, size_t size)
{
	void *q;

	if (size && n > SIZE_MAX / size)
		xr_oom();
	q = realloc(p, (n * size) != 0 ? n * size : 1);
	if (!q)
		xr_oom();
	return q;
}

char *
xr_strdup(const char *s)
{
	char *d = strdup(s);

	if (!d)
		xr_oom();
	return d;
}
