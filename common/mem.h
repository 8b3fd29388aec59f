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

/*
 * Appends the comma-separated items of arg to the list *list of *n strings
 * (owned; with_schema: a name without a dot gets "public.").  An empty item
 * is an error naming option --name.  Returns 0, or -1 with errstr.
 */
int  xr_list_add_csv(char ***list, size_t *n, const char *arg,
                     int with_schema, const char *name, char *errstr,
                     size_t errstr_size) __attribute__((warn_unused_result));
/* Frees a list of n strings and the list. */
void xr_list_free(char **l, size_t n);

#endif
