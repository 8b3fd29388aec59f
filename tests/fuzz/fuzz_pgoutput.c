/*
 * fuzz_pgoutput.c: libFuzzer harness for producer/pgoutput.c, the parser of
 * the bytes the replication slot streams (a server, a proxy or a bit flip
 * on the way are all "outside").
 *
 * One input is one pgoutput message (the XLogData payload).  What it
 * checks, beyond what ASan/UBSan catch on the way:
 *   - xr_pgo_parse() never reads outside the input (the input is copied
 *     to a heap block of exactly its size, so ASan sees the first byte
 *     over);
 *   - on success, every pointer of the message lies inside the input or
 *     the parser's arrays, every string ends with its NUL inside the
 *     input, and every datum's bytes are readable (they are summed);
 *   - on failure, errstr is set;
 *   - parsing the same bytes again with the same parser (scratch arrays
 *     already grown) gives the same result;
 *   - the parser frees all it allocates (LeakSanitizer).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer/pgoutput.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *lo, *hi;   /* the input: [lo, hi) */

static void
check_in_input(const void *ptr, size_t len)
{
	const char *p = ptr;

	if (p < lo || p > hi || len > (size_t)(hi - p))
		abort();
}

/* A borrowed string: starts in the input and ends with a NUL in it. */
static void
check_str(const char *s)
{
	if (!s)
		abort();
	check_in_input(s, 0);
	if (!memchr(s, '\0', (size_t)(hi - s)))
		abort();
}

static unsigned
check_tuple(const xr_pgo_tuple_t *t)
{
	unsigned sum = 0;
	int i;

	if (t->ncols < 0 || (t->ncols > 0 && !t->cols))
		abort();
	for (i = 0; i < t->ncols; i++) {
		const xr_pgo_datum_t *d = &t->cols[i];
		size_t k;

		switch (d->kind) {
		case XR_PGO_COL_NULL:
		case XR_PGO_COL_UNCHANGED:
			if (d->data || d->len)
				abort();
			break;
		case XR_PGO_COL_TEXT:
		case XR_PGO_COL_BINARY:
			check_in_input(d->data, d->len);
			for (k = 0; k < d->len; k++)
				sum += (unsigned char)d->data[k];
			break;
		default:
			abort();
		}
	}
	return sum;
}

static unsigned
check_msg(const xr_pgo_msg_t *m)
{
	unsigned sum = 0;
	uint32_t i;
	int c;

	switch (m->kind) {
	case XR_PGO_BEGIN:
	case XR_PGO_COMMIT:
		break;
	case XR_PGO_ORIGIN:
		check_str(m->u.origin.name);
		break;
	case XR_PGO_RELATION:
		check_str(m->u.relation.nspname);
		check_str(m->u.relation.relname);
		if (m->u.relation.ncols < 0)
			abort();
		for (c = 0; c < m->u.relation.ncols; c++)
			check_str(m->u.relation.cols[c].name);
		break;
	case XR_PGO_TYPE:
		check_str(m->u.type.nspname);
		check_str(m->u.type.typname);
		break;
	case XR_PGO_INSERT:
		sum += check_tuple(&m->u.insert.newtup);
		break;
	case XR_PGO_UPDATE:
		if (m->u.update.oldkind == 0 && m->u.update.oldtup.ncols != 0)
			abort();
		sum += check_tuple(&m->u.update.oldtup);
		sum += check_tuple(&m->u.update.newtup);
		break;
	case XR_PGO_DELETE:
		if (m->u.delete.oldkind != 'K' && m->u.delete.oldkind != 'O')
			abort();
		sum += check_tuple(&m->u.delete.oldtup);
		break;
	case XR_PGO_TRUNCATE:
		for (i = 0; i < m->u.truncate.nrelids; i++)
			sum += m->u.truncate.relids[i];
		break;
	case XR_PGO_MESSAGE:
		check_str(m->u.message.prefix);
		check_in_input(m->u.message.content, m->u.message.len);
		break;
	default:
		abort();
	}
	return sum;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	xr_pgo_parser_t *p;
	xr_pgo_msg_t     m1, m2;
	char             err[256];
	char            *buf;
	int              rc1, rc2;
	volatile unsigned sink;

	/* Exactly size bytes on the heap: one byte over is an ASan report. */
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	if (size)
		memcpy(buf, data, size);
	lo = buf;
	hi = buf + size;

	p = xr_pgo_parser_new();
	if (!p)
		abort();
	err[0] = '\0';
	rc1 = xr_pgo_parse(p, buf, size, &m1, err, sizeof(err));
	if (rc1 == 0)
		sink = check_msg(&m1);
	else if (rc1 != -1 || err[0] == '\0')
		abort();

	rc2 = xr_pgo_parse(p, buf, size, &m2, err, sizeof(err));
	if (rc2 != rc1)
		abort();
	if (rc2 == 0) {
		sink = check_msg(&m2);
		if (m2.kind != m1.kind)
			abort();
	}
	(void)sink;

	xr_pgo_parser_destroy(p);
	free(buf);
	return 0;
}
