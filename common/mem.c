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

int
xr_list_add_csv(char ***list, size_t *n, const char *arg, int with_schema,
                const char *name, char *errstr, size_t errstr_size)
{
	const char *p = arg;

	while (*p) {
		const char *end = strchr(p, ',');
		size_t      len = end ? (size_t)(end - p) : strlen(p);
		int         bare = with_schema && !memchr(p, '.', len);
		char       *item;

		if (len == 0) {
			snprintf(errstr, errstr_size, "--%s: empty name in \"%.64s\"",
			         name, arg);
			return -1;
		}
		item = xr_calloc(len + 8, 1);
		snprintf(item, len + 8, "%s%.*s", bare ? "public." : "", (int)len, p);
		*list = xr_reallocarray(*list, *n + 1, sizeof(char *));
		(*list)[(*n)++] = item;
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

void
xr_list_free(char **l, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(l[i]);
	free(l);
}
