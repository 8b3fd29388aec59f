/*
 * mem.h: allocation that aborts when memory runs out.  A replicator that
 * cannot allocate a few kilobytes cannot make progress either, so callers
 * need not carry an error path for it (the same policy as buf.h).
 */
#ifndef XR_MEM_H
#define XR_MEM_H

#include <stddef.h>

/* calloc(n, size), at least one byte; never returns NULL. */
void *xr_calloc(size_t n, size_t size);
/* realloc(p, n * size) with overflow check; never returns NULL. */
void *xr_reallocarray(void *p, size_t n, size_t size);
/* strdup(s); never returns NULL. */
char *xr_strdup(const char *s);
/* Reports the failure and aborts. */
void  xr_oom(void) __attribute__((noreturn));

#endif
