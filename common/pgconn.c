/* pgconn.c: a plain libpq connection for xregion's commands. */
#include "common/pgconn.h"

#include <stdio.h>

PGconn *
xr_pg_connect(const char *dsn, const char *app, char *errstr,
              size_t errstr_size)
{
	const char *keys[] = { "dbname", "application_name", "connect_timeout",
	                       NULL };
	const char *vals[] = { dsn, app, "10", NULL };
	PGconn     *conn = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(errstr, errstr_size, "connecting to the database: %s",
		         PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}
