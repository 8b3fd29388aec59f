/*
 * pqbuf.h: quoting names and values for SQL built in an xr_buf_t, with
 * libpq's escaping (which follows the connection's encoding and settings).
 */
#ifndef XR_PQBUF_H
#define XR_PQBUF_H

#include <libpq-fe.h>

#include "common/buf.h"

/*
 * Appends s quoted as an identifier (xr_pqbuf_ident) or a literal
 * (xr_pqbuf_literal) to b.  Returns 0, or -1 (b unchanged) when libpq
 * refuses: PQerrorMessage(conn) says why.
 */
int xr_pqbuf_ident(PGconn *conn, xr_buf_t *b, const char *s)
	__attribute__((warn_unused_result));
int xr_pqbuf_literal(PGconn *conn, xr_buf_t *b, const char *s)
	__attribute__((warn_unused_result));

#endif
