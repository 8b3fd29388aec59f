/* buf.h: a growable byte buffer, used for JSON text, Avro payloads and SQL. */
#ifndef XR_BUF_H
#define XR_BUF_H

#include <stddef.h>
#include <stdint.h>

/*
 * An embedded object: xr_buf_init() it, xr_buf_term() it.  data is always
 * NUL-terminated (one byte past len) so that text can be used as a C string;
 * binary content may hold NULs.  Allocation failure aborts the process (the
 * same policy as avro-c and libpq's PQExpBuffer users): a replicator that
 * cannot allocate a few kilobytes cannot make progress either.
 */
typedef struct xr_buf_s {
	char   *data;
	size_t  len;
	size_t  cap;
} xr_buf_t;

void xr_buf_init(xr_buf_t *b);
void xr_buf_term(xr_buf_t *b);
void xr_buf_reset(xr_buf_t *b);              /* len = 0, keeps the memory */
void xr_buf_reserve(xr_buf_t *b, size_t extra);
void xr_buf_append(xr_buf_t *b, const void *p, size_t n);
void xr_buf_puts(xr_buf_t *b, const char *s);
/* Appends c; inline, as it runs once per byte of many values. */
static inline void
xr_buf_putc(xr_buf_t *b, char c)
{
	if (b->len + 2 > b->cap)
		xr_buf_reserve(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}
/* Appends v in decimal, zero-padded to at least width digits (after a
 * minus sign), as printf's "%0*lld" does but without parsing a format. */
void xr_buf_put_int(xr_buf_t *b, int64_t v, int width);
/* Writes v in decimal to out (no NUL: room for 20 digits); returns how
 * many digits it wrote. */
size_t xr_u64_digits(char *out, uint64_t v);
/* v in decimal, NUL-terminated, into out (21 bytes will do); returns
 * its length. */
size_t xr_i64_text(char *out, int64_t v);
void xr_buf_printf(xr_buf_t *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends s (n bytes) as a JSON string literal, quotes included. */
void xr_buf_json_str(xr_buf_t *b, const char *s, size_t n);

#endif
