/*
 * pgoutput.c: parser for pgoutput protocol version 1 messages (see
 * pgoutput.h).
 *
 * The bytes come from the network and are trusted no further than their
 * length: every field is read through an xr_pgo_rd_t cursor that checks the
 * remaining byte count first, and every count is checked against what the
 * remaining bytes could possibly hold before anything is allocated for it,
 * so a corrupt count fails fast instead of asking malloc for gigabytes.
 */
#include "producer/pgoutput.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The scratch arrays that parsed messages point into.  They only ever grow,
 * so that a steady stream of messages of similar shape allocates nothing.
 * Old and new tuples need separate arrays because an Update carries both.
 */
struct xr_pgo_parser_s {
	xr_pgo_datum_t  *oldcols;
	size_t           oldcols_cap;
	xr_pgo_datum_t  *newcols;
	size_t           newcols_cap;
	xr_pgo_relcol_t *relcols;
	size_t           relcols_cap;
	uint32_t        *relids;
	size_t           relids_cap;
};

/* A bounds-checked read cursor over one message. */
typedef struct xr_pgo_rd_s {
	const unsigned char *p;
	size_t               left;      /* bytes remaining after p */
	const char          *msgname;   /* "Insert", ...: prefixes errors */
	char                *errstr;
	size_t               errstr_size;
} xr_pgo_rd_t;

/*
 * Bytes a Relation column needs at least: Int8 flags, an empty name (just
 * its NUL), Int32 typid and Int32 typmod.
 */
#define XR_PGO_RELCOL_MIN_BYTES (1 + 1 + 4 + 4)


/* Writes "pgoutput: <msgname>: <fmt...>" to errstr; always returns -1. */
static int xr_pgo_fail(xr_pgo_rd_t *rd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int
xr_pgo_fail(xr_pgo_rd_t *rd, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!rd->errstr || rd->errstr_size == 0)
		return -1;

	if (rd->msgname)
		n = snprintf(rd->errstr, rd->errstr_size, "pgoutput: %s: ",
		             rd->msgname);
	else
		n = snprintf(rd->errstr, rd->errstr_size, "pgoutput: ");
	/* A clipped error message is still better than none: just stop. */
	if (n < 0 || (size_t)n >= rd->errstr_size)
		return -1;

	va_start(ap, fmt);
	(void)vsnprintf(rd->errstr + n, rd->errstr_size - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static int
xr_pgo_need(xr_pgo_rd_t *rd, const char *what, size_t n)
{
	if (rd->left < n)
		return xr_pgo_fail(rd, "%s: need %zu bytes, %zu remain",
		                   what, n, rd->left);
	return 0;
}

static int
xr_pgo_u8(xr_pgo_rd_t *rd, const char *what, uint8_t *out)
{
	if (xr_pgo_need(rd, what, 1) == -1)
		return -1;
	*out = rd->p[0];
	rd->p += 1;
	rd->left -= 1;
	return 0;
}

static int
xr_pgo_u16(xr_pgo_rd_t *rd, const char *what, uint16_t *out)
{
	if (xr_pgo_need(rd, what, 2) == -1)
		return -1;
	*out = (uint16_t)((unsigned)rd->p[0] << 8 | (unsigned)rd->p[1]);
	rd->p += 2;
	rd->left -= 2;
	return 0;
}

static int
xr_pgo_u32(xr_pgo_rd_t *rd, const char *what, uint32_t *out)
{
	if (xr_pgo_need(rd, what, 4) == -1)
		return -1;
	*out = (uint32_t)rd->p[0] << 24 | (uint32_t)rd->p[1] << 16 |
	       (uint32_t)rd->p[2] << 8  | (uint32_t)rd->p[3];
	rd->p += 4;
	rd->left -= 4;
	return 0;
}

static int
xr_pgo_u64(xr_pgo_rd_t *rd, const char *what, uint64_t *out)
{
	uint64_t v = 0;
	int i;

	if (xr_pgo_need(rd, what, 8) == -1)
		return -1;
	for (i = 0; i < 8; i++)
		v = v << 8 | rd->p[i];
	*out = v;
	rd->p += 8;
	rd->left -= 8;
	return 0;
}

/*
 * Signed reads: the wire carries two's complement; going through the
 * unsigned value and subtracting keeps the conversion defined in C11
 * whatever the bits are.
 */
static int
xr_pgo_i16(xr_pgo_rd_t *rd, const char *what, int *out)
{
	uint16_t u;

	if (xr_pgo_u16(rd, what, &u) == -1)
		return -1;
	*out = u < 0x8000u ? (int)u : (int)u - 0x10000;
	return 0;
}

static int
xr_pgo_i32(xr_pgo_rd_t *rd, const char *what, int32_t *out)
{
	uint32_t u;

	if (xr_pgo_u32(rd, what, &u) == -1)
		return -1;
	*out = u < UINT32_C(0x80000000) ? (int32_t)u
	                                : -(int32_t)(UINT32_MAX - u) - 1;
	return 0;
}

static int
xr_pgo_i64(xr_pgo_rd_t *rd, const char *what, int64_t *out)
{
	uint64_t u;

	if (xr_pgo_u64(rd, what, &u) == -1)
		return -1;
	*out = u < UINT64_C(0x8000000000000000) ? (int64_t)u
	                                        : -(int64_t)(UINT64_MAX - u) - 1;
	return 0;
}

/* Points *out at a NUL-terminated string in the buffer, NUL included. */
static int
xr_pgo_str(xr_pgo_rd_t *rd, const char *what, const char **out)
{
	const unsigned char *nul;
	size_t n;

	nul = rd->left ? memchr(rd->p, '\0', rd->left) : NULL;
	if (!nul)
		return xr_pgo_fail(rd, "%s: no string terminator in the "
		                   "remaining %zu bytes", what, rd->left);
	n = (size_t)(nul - rd->p) + 1;
	*out = (const char *)rd->p;
	rd->p += n;
	rd->left -= n;
	return 0;
}

/*
 * Points *out at len bytes, after checking the Int32 length the caller just
 * read: negative lengths are malformed, not "NULL".
 */
static int
xr_pgo_bytes(xr_pgo_rd_t *rd, const char *what, int32_t len,
             const char **out, size_t *outlen)
{
	if (len < 0)
		return xr_pgo_fail(rd, "%s: negative length %" PRId32, what, len);
	if ((uint32_t)len > rd->left)
		return xr_pgo_fail(rd, "%s: length %" PRId32 " exceeds remaining "
		                   "%zu bytes", what, len, rd->left);
	*out = (const char *)rd->p;
	*outlen = (size_t)len;
	rd->p += (size_t)len;
	rd->left -= (size_t)len;
	return 0;
}

/*
 * Grows *arrp to hold at least need elements of elsize bytes, doubling so
 * that a slowly growing column count does not realloc every message.  On
 * failure *arrp and *capp are untouched.
 */
static int
xr_pgo_reserve(xr_pgo_rd_t *rd, void **arrp, size_t *capp, size_t need,
               size_t elsize)
{
	size_t ncap;
	void *n;

	if (need <= *capp)
		return 0;
	ncap = *capp ? *capp : 16;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			return xr_pgo_fail(rd, "%zu elements: size overflow", need);
		ncap *= 2;
	}
	if (ncap > SIZE_MAX / elsize)
		return xr_pgo_fail(rd, "%zu elements: size overflow", need);
	n = realloc(*arrp, ncap * elsize);
	if (!n)
		return xr_pgo_fail(rd, "out of memory for %zu elements", ncap);
	*arrp = n;
	*capp = ncap;
	return 0;
}

/*
 * Reads one TupleData into *tup, its columns stored in the scratch array
 * (*colsp, *capp).  which ("new tuple", "old tuple", "key") names the tuple
 * in errors; columns are numbered from 1 there, as attnums are.
 */
static int
xr_pgo_tuple(xr_pgo_rd_t *rd, const char *which, xr_pgo_datum_t **colsp,
             size_t *capp, xr_pgo_tuple_t *tup)
{
	char what[64];
	void *arr;
	int ncols, i;

	if (xr_pgo_i16(rd, which, &ncols) == -1)
		return -1;
	if (ncols < 0)
		return xr_pgo_fail(rd, "%s: negative ncols %d", which, ncols);
	/* Every column takes at least its kind byte. */
	if ((size_t)ncols > rd->left)
		return xr_pgo_fail(rd, "%s: ncols %d needs at least %d bytes, "
		                   "%zu remain", which, ncols, ncols, rd->left);

	arr = *colsp;
	if (xr_pgo_reserve(rd, &arr, capp, (size_t)ncols,
	                   sizeof(xr_pgo_datum_t)) == -1)
		return -1;
	*colsp = arr;

	for (i = 0; i < ncols; i++) {
		xr_pgo_datum_t *d = &(*colsp)[i];
		uint8_t kind;
		int32_t len;

		(void)snprintf(what, sizeof(what), "%s: column %d", which, i + 1);
		if (xr_pgo_u8(rd, what, &kind) == -1)
			return -1;
		switch (kind) {
		case XR_PGO_COL_NULL:
		case XR_PGO_COL_UNCHANGED:
			d->kind = (xr_pgo_colkind_t)kind;
			d->data = NULL;
			d->len = 0;
			break;
		case XR_PGO_COL_TEXT:
		case XR_PGO_COL_BINARY:
			d->kind = (xr_pgo_colkind_t)kind;
			if (xr_pgo_i32(rd, what, &len) == -1 ||
			    xr_pgo_bytes(rd, what, len, &d->data, &d->len) == -1)
				return -1;
			break;
		default:
			return xr_pgo_fail(rd, "%s: unknown column kind 0x%02x",
			                   what, kind);
		}
	}

	tup->ncols = ncols;
	tup->cols = *colsp;
	return 0;
}


static int
xr_pgo_begin(xr_pgo_rd_t *rd, xr_pgo_msg_t *out)
{
	if (xr_pgo_u64(rd, "final_lsn", &out->u.begin.final_lsn) == -1 ||
	    xr_pgo_i64(rd, "commit_ts", &out->u.begin.commit_ts) == -1 ||
	    xr_pgo_u32(rd, "xid", &out->u.begin.xid) == -1)
		return -1;
	return 0;
}

/*
 * PostgreSQL's own reader rejects non-zero Commit flags; we pass them up
 * instead, so that a future flag does not stop replication in the parser.
 */
static int
xr_pgo_commit(xr_pgo_rd_t *rd, xr_pgo_msg_t *out)
{
	if (xr_pgo_u8(rd, "flags", &out->u.commit.flags) == -1 ||
	    xr_pgo_u64(rd, "commit_lsn", &out->u.commit.commit_lsn) == -1 ||
	    xr_pgo_u64(rd, "end_lsn", &out->u.commit.end_lsn) == -1 ||
	    xr_pgo_i64(rd, "commit_ts", &out->u.commit.commit_ts) == -1)
		return -1;
	return 0;
}

static int
xr_pgo_origin(xr_pgo_rd_t *rd, xr_pgo_msg_t *out)
{
	if (xr_pgo_u64(rd, "commit_lsn", &out->u.origin.commit_lsn) == -1 ||
	    xr_pgo_str(rd, "name", &out->u.origin.name) == -1)
		return -1;
	return 0;
}

static int
xr_pgo_relation(xr_pgo_parser_t *p, xr_pgo_rd_t *rd, xr_pgo_msg_t *out)
{
	char what[64];
	uint8_t replident;
	void *arr;
	int ncols, i;

	if (xr_pgo_u32(rd, "relid", &out->u.relation.relid) == -1 ||
	    xr_pgo_str(rd, "nspname", &out->u.relation.nspname) == -1 ||
	    xr_pgo_str(rd, "relname", &out->u.relation.relname) == -1 ||
	    xr_pgo_u8(rd, "replident", &replident) == -1)
		return -1;
	/*
	 * pg_class.relreplident has exactly these values; anything else means
	 * we are out of step with the stream, and the key choice downstream
	 * depends on it.
	 */
	if (replident != 'd' && replident != 'n' && replident != 'f' &&
	    replident != 'i')
		return xr_pgo_fail(rd, "replident: unknown value 0x%02x",
		                   replident);
	out->u.relation.replident = (char)replident;

	if (xr_pgo_i16(rd, "ncols", &ncols) == -1)
		return -1;
	if (ncols < 0)
		return xr_pgo_fail(rd, "negative ncols %d", ncols);
	if ((size_t)ncols > rd->left / XR_PGO_RELCOL_MIN_BYTES)
		return xr_pgo_fail(rd, "ncols %d needs at least %zu bytes, "
		                   "%zu remain", ncols,
		                   (size_t)ncols * XR_PGO_RELCOL_MIN_BYTES,
		                   rd->left);

	arr = p->relcols;
	if (xr_pgo_reserve(rd, &arr, &p->relcols_cap, (size_t)ncols,
	                   sizeof(xr_pgo_relcol_t)) == -1)
		return -1;
	p->relcols = arr;

	for (i = 0; i < ncols; i++) {
		xr_pgo_relcol_t *c = &p->relcols[i];
		uint8_t flags;

		(void)snprintf(what, sizeof(what), "column %d", i + 1);
		if (xr_pgo_u8(rd, what, &flags) == -1 ||
		    xr_pgo_str(rd, what, &c->name) == -1 ||
		    xr_pgo_u32(rd, what, &c->typid) == -1 ||
		    xr_pgo_i32(rd, what, &c->typmod) == -1)
			return -1;
		c->is_key = (flags & 1) != 0;
	}

	out->u.relation.ncols = ncols;
	out->u.relation.cols = p->relcols;
	return 0;
}

static int
xr_pgo_type(xr_pgo_rd_t *rd, xr_pgo_msg_t *out)
{
	if (xr_pgo_u32(rd, "typid", &out->u.type.typid) == -1 ||
	    xr_pgo_str(rd, "nspname", &out->u.type.nspname) == -1 ||
	    xr_pgo_str(rd, "typname", &out->u.type.typname) == -1)
		return -1;
	return 0;
}

static int
xr_pgo_insert(xr_pgo_parser_t *p, xr_pgo_rd_t *rd, xr_pgo_msg_t *out)
{
	uint8_t marker;

	if (xr_pgo_u32(rd, "relid", &out->u.insert.relid) == -1 ||
	    xr_pgo_u8(rd, "tuple marker", &marker) == -1)
		return -1;
	if (marker != 'N')
		return xr_pgo_fail(rd, "expected new tuple marker 'N', got 0x%02x",
		                   marker);
	return xr_pgo_tuple(rd, "new tuple", &p->newcols, &p->newcols_cap,
	                    &out->u.insert.newtup);
}

static int
xr_pgo_update(xr_pgo_parser_t *p, xr_pgo_rd_t *rd, xr_pgo_msg_t *out)
{
	uint8_t marker;

	if (xr_pgo_u32(rd, "relid", &out->u.update.relid) == -1 ||
	    xr_pgo_u8(rd, "tuple marker", &marker) == -1)
		return -1;

	/* 'K' or 'O' only when the key changed or REPLICA IDENTITY FULL. */
	if (marker == 'K' || marker == 'O') {
		out->u.update.oldkind = (char)marker;
		if (xr_pgo_tuple(rd, marker == 'K' ? "key" : "old tuple",
		                 &p->oldcols, &p->oldcols_cap,
		                 &out->u.update.oldtup) == -1 ||
		    xr_pgo_u8(rd, "new tuple marker", &marker) == -1)
			return -1;
		if (marker != 'N')
			return xr_pgo_fail(rd, "expected new tuple marker 'N' after "
			                   "old tuple, got 0x%02x", marker);
	} else if (marker != 'N') {
		return xr_pgo_fail(rd, "expected tuple marker 'K', 'O' or 'N', "
		                   "got 0x%02x", marker);
	}
	return xr_pgo_tuple(rd, "new tuple", &p->newcols, &p->newcols_cap,
	                    &out->u.update.newtup);
}

static int
xr_pgo_delete(xr_pgo_parser_t *p, xr_pgo_rd_t *rd, xr_pgo_msg_t *out)
{
	uint8_t marker;

	if (xr_pgo_u32(rd, "relid", &out->u.delete.relid) == -1 ||
	    xr_pgo_u8(rd, "tuple marker", &marker) == -1)
		return -1;
	if (marker != 'K' && marker != 'O')
		return xr_pgo_fail(rd, "expected tuple marker 'K' or 'O', "
		                   "got 0x%02x", marker);
	out->u.delete.oldkind = (char)marker;
	return xr_pgo_tuple(rd, marker == 'K' ? "key" : "old tuple",
	                    &p->oldcols, &p->oldcols_cap, &out->u.delete.oldtup);
}

/* Note the order on the wire: the count comes before the options byte. */
static int
xr_pgo_truncate(xr_pgo_parser_t *p, xr_pgo_rd_t *rd, xr_pgo_msg_t *out)
{
	char what[32];
	uint32_t nrelids, i;
	void *arr;

	if (xr_pgo_u32(rd, "nrelids", &nrelids) == -1 ||
	    xr_pgo_u8(rd, "options", &out->u.truncate.options) == -1)
		return -1;
	if (nrelids > rd->left / 4)
		return xr_pgo_fail(rd, "nrelids %" PRIu32 " needs %llu bytes, "
		                   "%zu remain", nrelids,
		                   (unsigned long long)nrelids * 4, rd->left);

	arr = p->relids;
	if (xr_pgo_reserve(rd, &arr, &p->relids_cap, nrelids,
	                   sizeof(uint32_t)) == -1)
		return -1;
	p->relids = arr;

	for (i = 0; i < nrelids; i++) {
		(void)snprintf(what, sizeof(what), "relid %" PRIu32, i + 1);
		if (xr_pgo_u32(rd, what, &p->relids[i]) == -1)
			return -1;
	}
	out->u.truncate.nrelids = nrelids;
	out->u.truncate.relids = p->relids;
	return 0;
}

static int
xr_pgo_message(xr_pgo_rd_t *rd, xr_pgo_msg_t *out)
{
	int32_t len;

	if (xr_pgo_u8(rd, "flags", &out->u.message.flags) == -1 ||
	    xr_pgo_u64(rd, "lsn", &out->u.message.lsn) == -1 ||
	    xr_pgo_str(rd, "prefix", &out->u.message.prefix) == -1 ||
	    xr_pgo_i32(rd, "content", &len) == -1 ||
	    xr_pgo_bytes(rd, "content", len, &out->u.message.content,
	                 &out->u.message.len) == -1)
		return -1;
	return 0;
}


xr_pgo_parser_t *
xr_pgo_parser_new(void)
{
	return calloc(1, sizeof(xr_pgo_parser_t));
}

void
xr_pgo_parser_destroy(xr_pgo_parser_t *p)
{
	if (!p)
		return;
	free(p->oldcols);
	free(p->newcols);
	free(p->relcols);
	free(p->relids);
	free(p);
}

int
xr_pgo_parse(xr_pgo_parser_t *p, const char *buf, size_t len,
             xr_pgo_msg_t *out, char *errstr, size_t errstr_size)
{
	xr_pgo_rd_t rd;
	uint8_t kind;
	int rc;

	memset(out, 0, sizeof(*out));
	rd.p = (const unsigned char *)buf;
	rd.left = len;
	rd.msgname = NULL;
	rd.errstr = errstr;
	rd.errstr_size = errstr_size;

	if (len == 0)
		return xr_pgo_fail(&rd, "empty message");
	(void)xr_pgo_u8(&rd, "type", &kind);  /* cannot fail: len > 0 */

	switch (kind) {
	case XR_PGO_BEGIN:
		rd.msgname = "Begin";
		rc = xr_pgo_begin(&rd, out);
		break;
	case XR_PGO_COMMIT:
		rd.msgname = "Commit";
		rc = xr_pgo_commit(&rd, out);
		break;
	case XR_PGO_ORIGIN:
		rd.msgname = "Origin";
		rc = xr_pgo_origin(&rd, out);
		break;
	case XR_PGO_RELATION:
		rd.msgname = "Relation";
		rc = xr_pgo_relation(p, &rd, out);
		break;
	case XR_PGO_TYPE:
		rd.msgname = "Type";
		rc = xr_pgo_type(&rd, out);
		break;
	case XR_PGO_INSERT:
		rd.msgname = "Insert";
		rc = xr_pgo_insert(p, &rd, out);
		break;
	case XR_PGO_UPDATE:
		rd.msgname = "Update";
		rc = xr_pgo_update(p, &rd, out);
		break;
	case XR_PGO_DELETE:
		rd.msgname = "Delete";
		rc = xr_pgo_delete(p, &rd, out);
		break;
	case XR_PGO_TRUNCATE:
		rd.msgname = "Truncate";
		rc = xr_pgo_truncate(p, &rd, out);
		break;
	case XR_PGO_MESSAGE:
		rd.msgname = "Message";
		rc = xr_pgo_message(&rd, out);
		break;
	default:
		/*
		 * Includes the streaming ('S', 'E', 'c', 'A') and two-phase
		 * messages, which protocol version 1 never sends.
		 */
		return xr_pgo_fail(&rd, "unknown message type 0x%02x", kind);
	}
	if (rc == -1)
		return -1;

	if (rd.left != 0)
		return xr_pgo_fail(&rd, "%zu trailing bytes after the message",
		                   rd.left);
	out->kind = (xr_pgo_kind_t)kind;
	return 0;
}
