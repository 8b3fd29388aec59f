/* pqbuf.c: quoting for SQL built in a buffer (see pqbuf.h). */
#include "common/pqbuf.h"

#include <string.h>

int
xr_pqbuf_ident(PGconn *conn, xr_buf_t *b, const char *s)
{
	char *q = PQescapeIdentifier(conn, s, strlen(s));

	if (!q)
		return -1;
	xr_buf_puts(b, q);
	PQfreemem(q);
	return 0;
}

int
xr_pqbuf_literal(PGconn *conn, xr_buf_t *b, const char *s)
{
	char *q = PQescapeLiteral(conn, s, strlen(s));

	if (!q)
		return -1;
	xr_buf_puts(b, q);
	PQfreemem(q);
	return 0;
}
