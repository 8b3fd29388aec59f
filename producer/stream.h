/*
 * stream.h: a logical replication connection through libpq: the slot's
 * position, START_REPLICATION with pgoutput, CopyData framing (XLogData 'w'
 * and keepalive 'k') and standby status updates ('r').
 *
 * Modelled on pg_recvlogical: status goes out on a timer and whenever the
 * server asks, otherwise wal_sender_timeout ends the connection.
 */
#ifndef XR_STREAM_H
#define XR_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/lsn.h"

typedef struct xr_stream_s xr_stream_t;

/* One CopyData message from the server. */
typedef struct xr_stream_msg_s {
	char        kind;            /* 'w' (XLogData) or 'k' (keepalive) */
	xr_lsn_t    data_start;      /* 'w': the LSN of the change */
	xr_lsn_t    wal_end;         /* the server's end of WAL */
	int64_t     send_time;       /* µs since 2000-01-01 */
	bool        reply_requested; /* 'k' only */
	const char *data;            /* 'w': the pgoutput message; borrowed, */
	size_t      len;             /*      valid until the next read */
} xr_stream_msg_t;

/*
 * The session settings of every connection whose text values pgtype.c
 * parses (the replication stream's, and the producer's plain one): the
 * text forms are fixed whatever the server's defaults are.
 */
extern const char xr_stream_session_options[];

/*
 * Opens a replication connection (replication=database) to dsn with the
 * session settings pgtype.h expects.  Returns a new stream (close with
 * xr_stream_close), or NULL with errstr holding libpq's message.
 */
xr_stream_t *xr_stream_connect(const char *dsn, const char *appname,
                               char *errstr, size_t errstr_size);

/* The server's system identifier (IDENTIFY_SYSTEM), as decimal text. */
const char *xr_stream_system_id(const xr_stream_t *s);
void         xr_stream_close(xr_stream_t *s);   /* NULL ok */

/* The database connected to (borrowed, valid until close). */
const char *xr_stream_database(const xr_stream_t *s);

/*
 * Reads the slot's confirmed_flush_lsn, checking that it is a logical slot
 * of pgoutput in this database.  Returns 0, or -1 with errstr set (e.g.
 * "replication slot \"x\" does not exist: run xregion setup").
 */
int xr_stream_slot_position(xr_stream_t *s, const char *slot, xr_lsn_t *out,
                            char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Whether the server leaves applied transactions out of the stream
 * (pgoutput's origin 'none', PostgreSQL 16 and later).
 */
bool xr_stream_filters_origin(const xr_stream_t *s);

/*
 * START_REPLICATION SLOT slot LOGICAL 0/0 with pgoutput protocol 1 (and
 * origin 'none' where the server has it).
 */
int xr_stream_start(xr_stream_t *s, const char *slot, const char *publication,
                    char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Waits up to timeout_us for a message, or until wake_fd (when >= 0) is
 * readable.  Returns 1 with *out filled, 0 when none came in time (or
 * wake_fd woke it), -1 on error or when the server ended the stream
 * (errstr says which).  A message that is too short or of an unknown kind
 * is an error.
 */
int xr_stream_read(xr_stream_t *s, int timeout_us, int wake_fd,
                   xr_stream_msg_t *out, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/* Sends a standby status update: received up to write, safe up to flush. */
int xr_stream_send_status(xr_stream_t *s, xr_lsn_t write, xr_lsn_t flush,
                          char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/* Ends the COPY (CopyDone) and reads the server's final results. */
int xr_stream_finish(xr_stream_t *s, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

#endif
