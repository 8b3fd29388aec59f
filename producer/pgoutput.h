/*
 * pgoutput.h: parser for the messages of PostgreSQL's pgoutput logical
 * decoding plugin, protocol version 1 (the payload of each XLogData 'w'
 * CopyData message of a logical replication stream).
 *
 * Reference: "Logical Replication Message Formats" in the PostgreSQL 15
 * documentation, and src/backend/replication/logical/proto.c.
 */
#ifndef XR_PGOUTPUT_H
#define XR_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/lsn.h"

typedef enum {
	XR_PGO_BEGIN    = 'B',
	XR_PGO_COMMIT   = 'C',
	XR_PGO_ORIGIN   = 'O',
	XR_PGO_RELATION = 'R',
	XR_PGO_TYPE     = 'Y',
	XR_PGO_INSERT   = 'I',
	XR_PGO_UPDATE   = 'U',
	XR_PGO_DELETE   = 'D',
	XR_PGO_TRUNCATE = 'T',
	XR_PGO_MESSAGE  = 'M'
} xr_pgo_kind_t;

/* One column of a TupleData. */
typedef enum {
	XR_PGO_COL_NULL      = 'n',
	XR_PGO_COL_UNCHANGED = 'u',  /* unchanged TOASTed value: not sent */
	XR_PGO_COL_TEXT      = 't',
	XR_PGO_COL_BINARY    = 'b'
} xr_pgo_colkind_t;

typedef struct xr_pgo_datum_s {
	xr_pgo_colkind_t kind;
	const char      *data;  /* borrowed, NOT NUL-terminated; NULL unless t/b */
	size_t           len;
} xr_pgo_datum_t;

typedef struct xr_pgo_tuple_s {
	int             ncols;
	xr_pgo_datum_t *cols;   /* borrowed, ncols entries */
} xr_pgo_tuple_t;

typedef struct xr_pgo_relcol_s {
	bool        is_key;     /* flags & 1: part of the replica identity */
	const char *name;       /* borrowed, NUL-terminated */
	uint32_t    typid;
	int32_t     typmod;
} xr_pgo_relcol_t;

/* Truncate option bits. */
#define XR_PGO_TRUNCATE_CASCADE          1
#define XR_PGO_TRUNCATE_RESTART_IDENTITY 2

typedef struct xr_pgo_msg_s {
	xr_pgo_kind_t kind;
	union {
		struct {
			xr_lsn_t final_lsn;
			int64_t  commit_ts;     /* µs since 2000-01-01 UTC */
			uint32_t xid;
		} begin;
		struct {
			uint8_t  flags;
			xr_lsn_t commit_lsn;
			xr_lsn_t end_lsn;
			int64_t  commit_ts;     /* µs since 2000-01-01 UTC */
		} commit;
		struct {
			xr_lsn_t    commit_lsn;
			const char *name;
		} origin;
		struct {
			uint32_t         relid;
			const char      *nspname;
			const char      *relname;
			char             replident;  /* 'd', 'n', 'f' or 'i' */
			int              ncols;
			xr_pgo_relcol_t *cols;
		} relation;
		struct {
			uint32_t    typid;
			const char *nspname;
			const char *typname;
		} type;
		struct {
			uint32_t       relid;
			xr_pgo_tuple_t newtup;
		} insert;
		struct {
			uint32_t       relid;
			char           oldkind;  /* 0 (no old tuple), 'K' or 'O' */
			xr_pgo_tuple_t oldtup;   /* ncols 0 when oldkind is 0 */
			xr_pgo_tuple_t newtup;
		} update;
		struct {
			uint32_t       relid;
			char           oldkind;  /* 'K' or 'O' */
			xr_pgo_tuple_t oldtup;
		} delete;
		struct {
			uint8_t   options;       /* XR_PGO_TRUNCATE_* bits */
			uint32_t  nrelids;
			uint32_t *relids;        /* borrowed */
		} truncate;
		struct {
			uint8_t     flags;       /* 1: transactional */
			xr_lsn_t    lsn;
			const char *prefix;
			const char *content;     /* NOT NUL-terminated */
			size_t      len;
		} message;
	} u;
} xr_pgo_msg_t;

/*
 * Parser state: owns the scratch arrays that messages point into, so that
 * parsing a message allocates nothing once the arrays have grown.
 */
typedef struct xr_pgo_parser_s xr_pgo_parser_t;

/* Returns a new parser (free with xr_pgo_parser_destroy); NULL on OOM. */
xr_pgo_parser_t *xr_pgo_parser_new(void);
void             xr_pgo_parser_destroy(xr_pgo_parser_t *p);  /* NULL ok */

/*
 * Parses one pgoutput message of len bytes at buf into *out.
 *
 * Every length, count and string terminator is checked against len: a
 * truncated, over-long or malformed message returns -1 with a description
 * in errstr (never reads outside [buf, buf+len)).  Trailing bytes after a
 * complete message are an error too.
 *
 * Everything *out points to is borrowed: from buf (strings, column data)
 * or from p (arrays), valid until the next call on p or until buf changes.
 */
int xr_pgo_parse(xr_pgo_parser_t *p, const char *buf, size_t len,
                 xr_pgo_msg_t *out, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

#endif
