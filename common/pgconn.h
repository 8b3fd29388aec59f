/* pgconn.h: a plain libpq connection for xregion's commands. */
#ifndef XR_PGCONN_H
#define XR_PGCONN_H

#include <stddef.h>

#include <libpq-fe.h>

/*
 * Connects to dsn as application_name app, giving up after 10 s.  Returns
 * the connection (free with PQfinish), or NULL with errstr set to
 * "connecting to the database: <libpq's message>".
 */
PGconn *xr_pg_connect(const char *dsn, const char *app, char *errstr,
                      size_t errstr_size);

#endif
