/* buf.c: a growable byte buffer (see buf.h). */
#include "common/buf.h"
#include "common/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void
xr_buf_init(xr_buf_t *b)
{
	b->cap = 256;
	b->len = 0;
	b->data = malloc(b->cap);
	if (!b->data)
		xr_oom();
	b->data[0] = '\0';
}

void
xr_buf_term(xr_buf_t *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
xr_buf_reset(xr_buf_t *b)
{
	b->len = 0;
	b->data[0] = '\0';
}

void
xr_buf_reserve(xr_buf_t *b, size_t extra)
{
	size_t need;

	if (extra > SIZE_MAX - b->len - 1)
		xr_oom();
	need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	while (b->cap < need)
		b->cap = b->cap > SIZE_MAX / 2 ? need : b->cap * 2;
	b->data = realloc(b->data, b->cap);
	if (!b->data)
		xr_oom();
}

void
xr_buf_append(xr_buf_t *b, const void *p, size_t n)
{
	xr_buf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
xr_buf_puts(xr_buf_t *b, const char *s)
{
	xr_buf_append(b, s, strlen(s));
}

size_t
xr_u64_digits(char *out, uint64_t v)
{
	char   d[20];
	size_t n = 0, i;

	do {
		d[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		out[i] = d[n - 1 - i];
	return n;
}

size_t
xr_i64_text(char *out, int64_t v)
{
	/* (the magnitude of INT64_MIN does not fit an int64_t) */
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	size_t   n = 0;

	if (v < 0)
		out[n++] = '-';
	n += xr_u64_digits(out + n, u);
	out[n] = '\0';
	return n;
}

void
xr_buf_put_int(xr_buf_t *b, int64_t v, int width)
{
	/* (the magnitude of INT64_MIN does not fit an int64_t) */
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	char     digits[20];
	size_t   n = xr_u64_digits(digits, u), pad;

	pad = width > 0 && (size_t)width > n ? (size_t)width - n : 0;
	xr_buf_reserve(b, pad + n + 1);
	if (v < 0)
		b->data[b->len++] = '-';
	memset(b->data + b->len, '0', pad);
	b->len += pad;
	memcpy(b->data + b->len, digits, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
xr_buf_printf(xr_buf_t *b, const char *fmt, ...)
{
	va_list ap;
	int     n;

	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		xr_oom();
	if ((size_t)n >= b->cap - b->len) {
		xr_buf_reserve(b, (size_t)n);
		va_start(ap, fmt);
		n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0 || (size_t)n >= b->cap - b->len)
			xr_oom();
	}
	b->len += (size_t)n;
}

void
xr_buf_json_str(xr_buf_t *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	xr_buf_putc(b, '"');
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		switch (c) {
		case '"':  xr_buf_puts(b, "\\\""); break;
		case '\\': xr_buf_puts(b, "\\\\"); break;
		case '\n': xr_buf_puts(b, "\\n"); break;
		case '\r': xr_buf_puts(b, "\\r"); break;
		case '\t': xr_buf_puts(b, "\\t"); break;
		default:
			if (c < 0x20) {
				char esc[6] = { '\\', 'u', '0', '0',
				                hex[c >> 4], hex[c & 15] };
				xr_buf_append(b, esc, sizeof(esc));
			} else {
				xr_buf_putc(b, (char)c);
			}
		}
	}
	xr_buf_putc(b, '"');
}
