/* stream.c: logical replication protocol over libpq (see stream.h). */
#include "producer/stream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include "common/log.h"

struct xr_stream_s {
	PGconn *conn;
	char   *copybuf;     /* the last message, freed at the next read */
	char    sysid[32];   /* IDENTIFY_SYSTEM's systemid */
};

/* (No JIT: the stamps' and chunks' statements are compiled at every
 * execution, for nothing; see consumer/session.c.) */
const char xr_stream_session_options[] =
	"-c datestyle=ISO,YMD -c timezone=UTC -c intervalstyle=postgres "
	"-c extra_float_digits=3 -c bytea_output=hex -c jit=off";

static void
copy_pq_error(PGconn *conn, const char *what, char *errstr, size_t errstr_size)
{
	const char *msg = PQerrorMessage(conn);
	size_t      n = strlen(msg);

	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		n--;
	snprintf(errstr, errstr_size, "%s: %.*s", what, (int)n, msg);
}

xr_stream_t *
xr_stream_connect(const char *dsn, const char *appname, char *errstr,
                  size_t errstr_size)
{
	const char *keys[] = { "dbname", "replication", "options",
	                       "application_name", NULL };
	const char *vals[] = { dsn, "database", xr_stream_session_options,
	                       appname, NULL };
	xr_stream_t *s = calloc(1, sizeof(*s));
	PGresult    *res;

	if (!s) {
		snprintf(errstr, errstr_size, "out of memory");
		return NULL;
	}
	s->conn = PQconnectdbParams(keys, vals, 1);
	if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
		copy_pq_error(s->conn, "cannot connect to PostgreSQL", errstr,
		              errstr_size);
		xr_stream_close(s);
		return NULL;
	}
	/* The cluster's identity: a re-created one starts its LSNs again. */
	res = PQexec(s->conn, "IDENTIFY_SYSTEM");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    PQgetlength(res, 0, 0) >= (int)sizeof(s->sysid)) {
		copy_pq_error(s->conn, "IDENTIFY_SYSTEM", errstr, errstr_size);
		PQclear(res);
		xr_stream_close(s);
		return NULL;
	}
	snprintf(s->sysid, sizeof(s->sysid), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return s;
}

const char *
xr_stream_system_id(const xr_stream_t *s)
{
	return s->sysid;
}

void
xr_stream_close(xr_stream_t *s)
{
	if (!s)
		return;
	if (s->copybuf)
		PQfreemem(s->copybuf);
	PQfinish(s->conn);
	free(s);
}

const char *
xr_stream_database(const xr_stream_t *s)
{
	return PQdb(s->conn);
}

int
xr_stream_slot_position(xr_stream_t *s, const char *slot, xr_lsn_t *out,
                        char *errstr, size_t errstr_size)
{
	PGresult *res = NULL;
	char     *lit, sql[512];
	int       rc = -1;

	/* A replication connection speaks only the simple query protocol. */
	lit = PQescapeLiteral(s->conn, slot, strlen(slot));
	if (!lit) {
		copy_pq_error(s->conn, "quoting the slot name", errstr, errstr_size);
		return -1;
	}
	if ((size_t)snprintf(sql, sizeof(sql),
	                     "SELECT confirmed_flush_lsn::text, plugin, "
	                     "       database = current_database(), slot_type "
	                     "FROM pg_catalog.pg_replication_slots "
	                     "WHERE slot_name = %s", lit) >= sizeof(sql)) {
		snprintf(errstr, errstr_size, "slot name too long");
		PQfreemem(lit);
		return -1;
	}
	PQfreemem(lit);
	res = PQexec(s->conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		copy_pq_error(s->conn, "reading the replication slot", errstr,
		              errstr_size);
		goto out;
	}
	if (PQntuples(res) != 1) {
		snprintf(errstr, errstr_size,
		         "replication slot \"%s\" does not exist: run xregion setup",
		         slot);
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 3), "logical") != 0 ||
	    strcmp(PQgetvalue(res, 0, 1), "pgoutput") != 0 ||
	    strcmp(PQgetvalue(res, 0, 2), "t") != 0) {
		snprintf(errstr, errstr_size,
		         "replication slot \"%s\" is not a pgoutput logical slot of "
		         "database \"%s\"", slot, PQdb(s->conn));
		goto out;
	}
	if (PQgetisnull(res, 0, 0) || xr_lsn_parse(PQgetvalue(res, 0, 0), out)) {
		snprintf(errstr, errstr_size,
		         "replication slot \"%s\" has no confirmed position", slot);
		goto out;
	}
	rc = 0;
out:
	PQclear(res);
	return rc;
}

bool
xr_stream_filters_origin(const xr_stream_t *s)
{
	return s->conn && PQserverVersion(s->conn) >= 160000;
}

int
xr_stream_start(xr_stream_t *s, const char *slot, const char *publication,
                char *errstr, size_t errstr_size)
{
	char     *slot_id = NULL, *pub_id = NULL, *pub_lit = NULL, *sql = NULL;
	PGresult *res = NULL;
	size_t    n;
	int       rc = -1;

	/*
	 * publication_names is a string literal holding a list of identifiers:
	 * quote the identifier, then the literal around it.
	 */
	slot_id = PQescapeIdentifier(s->conn, slot, strlen(slot));
	pub_id = PQescapeIdentifier(s->conn, publication, strlen(publication));
	if (!slot_id || !pub_id) {
		copy_pq_error(s->conn, "quoting names", errstr, errstr_size);
		goto out;
	}
	pub_lit = PQescapeLiteral(s->conn, pub_id, strlen(pub_id));
	if (!pub_lit) {
		copy_pq_error(s->conn, "quoting names", errstr, errstr_size);
		goto out;
	}
	n = strlen(slot_id) + strlen(pub_lit) + 128;
	sql = malloc(n);
	if (!sql) {
		snprintf(errstr, errstr_size, "out of memory");
		goto out;
	}
	/*
	 * PostgreSQL 16 and later leave out what a consumer applied (it carries
	 * a replication origin) before decoding it; 15 sends it, with an
	 * Origin message, for the producer to drop.
	 */
	snprintf(sql, n,
	         "START_REPLICATION SLOT %s LOGICAL 0/0 "
	         "(proto_version '1', publication_names %s, messages 'true'%s)",
	         slot_id, pub_lit, xr_stream_filters_origin(s)
	                               ? ", origin 'none'" : "");
	res = PQexec(s->conn, sql);
	if (PQresultStatus(res) != PGRES_COPY_BOTH) {
		copy_pq_error(s->conn, "START_REPLICATION", errstr, errstr_size);
		goto out;
	}
	rc = 0;
out:
	PQclear(res);
	free(sql);
	PQfreemem(slot_id);
	PQfreemem(pub_id);
	PQfreemem(pub_lit);
	return rc;
}

static uint64_t
get_u64(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	uint64_t             v = 0;
	int                  i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | u[i];
	return v;
}

static void
put_u64(char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (char)(v & 0xff);
		v >>= 8;
	}
}

/* Ends of the COPY: reads the result that says why. */
static void
copy_ended(xr_stream_t *s, char *errstr, size_t errstr_size)
{
	PGresult *res = PQgetResult(s->conn);

	if (PQresultStatus(res) == PGRES_COMMAND_OK)
		snprintf(errstr, errstr_size, "the server ended the stream");
	else
		copy_pq_error(s->conn, "the server ended the stream", errstr,
		              errstr_size);
	PQclear(res);
}

int
xr_stream_read(xr_stream_t *s, int timeout_us, int wake_fd,
               xr_stream_msg_t *out, char *errstr, size_t errstr_size)
{
	int len;

	if (s->copybuf) {
		PQfreemem(s->copybuf);
		s->copybuf = NULL;
	}
	len = PQgetCopyData(s->conn, &s->copybuf, 1);
	if (len == 0) {
		fd_set         rfds;
		struct timeval tv;
		int            sock = PQsocket(s->conn), r;

		if (sock < 0) {
			snprintf(errstr, errstr_size, "replication connection lost");
			return -1;
		}
		FD_ZERO(&rfds);
		FD_SET(sock, &rfds);
		if (wake_fd >= 0)
			FD_SET(wake_fd, &rfds);
		tv.tv_sec = timeout_us / 1000000;
		tv.tv_usec = timeout_us % 1000000;
		r = select((sock > wake_fd ? sock : wake_fd) + 1, &rfds, NULL, NULL,
		           &tv);
		if (r < 0 && errno != EINTR) {
			snprintf(errstr, errstr_size, "select: %s", strerror(errno));
			return -1;
		}
		if (r <= 0 || !FD_ISSET(sock, &rfds))
			return 0;
		if (!PQconsumeInput(s->conn)) {
			copy_pq_error(s->conn, "reading the replication stream", errstr,
			              errstr_size);
			return -1;
		}
		len = PQgetCopyData(s->conn, &s->copybuf, 1);
		if (len == 0)
			return 0;
	}
	if (len == -1) {
		copy_ended(s, errstr, errstr_size);
		return -1;
	}
	if (len < 0) {
		copy_pq_error(s->conn, "reading the replication stream", errstr,
		              errstr_size);
		return -1;
	}
	memset(out, 0, sizeof(*out));
	out->kind = s->copybuf[0];
	if (out->kind == 'w') {
		if (len < 25) {
			snprintf(errstr, errstr_size,
			         "XLogData message of %d bytes is too short", len);
			return -1;
		}
		out->data_start = get_u64(s->copybuf + 1);
		out->wal_end = get_u64(s->copybuf + 9);
		out->send_time = (int64_t)get_u64(s->copybuf + 17);
		out->data = s->copybuf + 25;
		out->len = (size_t)len - 25;
	} else if (out->kind == 'k') {
		if (len < 18) {
			snprintf(errstr, errstr_size,
			         "keepalive message of %d bytes is too short", len);
			return -1;
		}
		out->wal_end = get_u64(s->copybuf + 1);
		out->send_time = (int64_t)get_u64(s->copybuf + 9);
		out->reply_requested = s->copybuf[17] != 0;
	} else {
		snprintf(errstr, errstr_size,
		         "unexpected replication message kind 0x%02x",
		         (unsigned char)out->kind);
		return -1;
	}
	return 1;
}

int
xr_stream_send_status(xr_stream_t *s, xr_lsn_t write, xr_lsn_t flush,
                      char *errstr, size_t errstr_size)
{
	char msg[1 + 8 + 8 + 8 + 8 + 1];

	msg[0] = 'r';
	put_u64(msg + 1, write);
	put_u64(msg + 9, flush);
	put_u64(msg + 17, flush);   /* applied: the same, for us */
	put_u64(msg + 25, (uint64_t)xr_pg_now_us());
	msg[33] = 0;
	if (PQputCopyData(s->conn, msg, sizeof(msg)) <= 0 || PQflush(s->conn)) {
		copy_pq_error(s->conn, "sending feedback", errstr, errstr_size);
		return -1;
	}
	return 0;
}

/*
 * Waits until conn's socket is readable, at most until deadline
 * (CLOCK_MONOTONIC µs), then reads what came.  Returns 0, or -1 on timeout
 * or a broken connection.
 */
static int
wait_input(PGconn *conn, int64_t deadline)
{
	int             sock = PQsocket(conn);
	struct timespec now;
	struct timeval  tv;
	fd_set          rfds;
	int64_t         left;
	int             r;

	clock_gettime(CLOCK_MONOTONIC, &now);
	left = deadline - ((int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000);
	if (sock < 0 || left <= 0)
		return -1;
	FD_ZERO(&rfds);
	FD_SET(sock, &rfds);
	tv.tv_sec = (time_t)(left / 1000000);
	tv.tv_usec = (suseconds_t)(left % 1000000);
	r = select(sock + 1, &rfds, NULL, NULL, &tv);
	if ((r < 0 && errno != EINTR) || r == 0)
		return -1;
	return PQconsumeInput(conn) ? 0 : -1;
}

int
xr_stream_finish(xr_stream_t *s, char *errstr, size_t errstr_size)
{
	PGresult       *res;
	int             rc = 0;
	struct timespec now;
	int64_t         deadline;

	if (PQputCopyEnd(s->conn, NULL) <= 0 || PQflush(s->conn)) {
		copy_pq_error(s->conn, "ending the stream", errstr, errstr_size);
		return -1;
	}
	/* No wait without an end: the server gets 10 s to finish. */
	clock_gettime(CLOCK_MONOTONIC, &now);
	deadline = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000 + 10000000;
	/*
	 * The server may still send data it had in flight before it sees our
	 * CopyDone: drain it (it is not processed, so not confirmed).
	 */
	for (;;) {
		char *buf = NULL;
		int   len = PQgetCopyData(s->conn, &buf, 1);

		if (buf)
			PQfreemem(buf);
		if (len < 0)
			break;
		if (len == 0 && wait_input(s->conn, deadline))
			goto timeout;
	}
	for (;;) {
		while (PQisBusy(s->conn))
			if (wait_input(s->conn, deadline))
				goto timeout;
		if (!(res = PQgetResult(s->conn)))
			break;
		if (PQresultStatus(res) != PGRES_COMMAND_OK &&
		    PQresultStatus(res) != PGRES_COPY_OUT && rc == 0) {
			copy_pq_error(s->conn, "ending the stream", errstr, errstr_size);
			rc = -1;
		}
		PQclear(res);
	}
	return rc;
timeout:
	snprintf(errstr, errstr_size, "ending the stream: no answer from the "
	         "server within 10 s");
	return -1;
}
