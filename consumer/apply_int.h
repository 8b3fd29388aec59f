/*
 * apply_int.h: what the files of the apply share, inside the consumer
 * library (apply.h is the interface).  In the spirit of PostgreSQL's
 * logical/relation.c and worker.c, the apply is split by concern:
 *
 *   target.c     the target tables' catalog (columns, keys, field maps)
 *   sqlgen.c     the SQL of every apply statement, built from the catalog
 *   stmtcache.c  prepared statements, one per table, operation and shape
 *   plan.c       merging a batch's writes of one key (no database access)
 *   classify.c   conflict classification of a result, the conflict log
 *   session.c    the connection, its origin, offsets, pipeline reads
 *   apply.c      applying a batch: set-based groups, the pipeline, outcomes
 *
 * Everything here runs on the consumer's thread.
 */
#ifndef XR_APPLY_INT_H
#define XR_APPLY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/buf.h"
#include "consumer/apply.h"

/* A column of a target table. */
typedef struct tcol_s {
	char *name;
	char *qname;     /* quoted identifier */
	/*
	 * The type parameters are cast to: schema-qualified, without the
	 * column's modifier (pg_catalog."varchar", not varchar(3)).  The
	 * modifier is applied when the value is assigned to the column, which
	 * refuses a value that does not fit (too long for varchar, char or
	 * bit) where an explicit cast would clip it silently.
	 */
	char *type;
	bool  is_key;
} tcol_t;

/* A prepared statement for one shape of change. */
typedef struct stmt_s {
	char *sig;       /* op + per column: '1' set, '2' from the old key's
	                  * row (a key change's unchanged value), '0' not set */
	char  name[32];
	int   ncols;     /* value parameters after the fixed ones */
	int  *cols;      /* target column of each value parameter */
	int   nold;      /* of which the last nold are the old key's columns */
	char *sql;       /* the fast insert: run unprepared (stmtcache.c) */
} stmt_t;

/* How the fields of one writer schema map onto the target's columns. */
typedef struct fmap_s {
	const xr_schema_t *schema;
	int               *col;      /* per field: target column, -1 if missing */
	int               *field_of; /* per target column: field, -1 if none */
} fmap_t;

typedef struct target_s {
	char    *nspname, *relname;
	char    *qual;       /* "schema"."table" */
	char    *vt;         /* xregion."schema.table" */
	char    *lit_nsp, *lit_rel;
	const xr_table_conf_t *tconf;   /* this region's entry (NULL: none) */
	bool     exists;
	int      ncols;
	tcol_t  *cols;
	int      nkeys;
	stmt_t **stmts;      /* each allocated alone: plans keep pointers */
	size_t   nstmts;
	fmap_t  *maps;
	size_t   nmaps;
} target_t;

/* A position to store in xregion.applied (xr_applier_add_position). */
typedef struct apos_s {
	char     region[64];     /* the source region */
	char     key[112];       /* region, or region/stream */
	xr_lsn_t lsn;
	char     sysid[32];
	int64_t  ts;
} apos_t;

struct xr_applier_s {
	const xr_config_t *conf;
	PGconn    *conn;
	char       origin[128];   /* origin set up in this session, "" if none */
	char       origin_id[16]; /* its roident, as text */
	target_t **targets;
	size_t     ntargets;
	unsigned   stmt_seq;
	char       sqlstate[6];   /* of the last failed statement, "" if none */
	xr_apply_stats_t stats;
	xr_apply_stats_t held;    /* the open transaction's pieces, till COMMIT */
	bool       replay;        /* under the replay origin, no fast path */
	bool       dry_run;       /* replay: roll every batch back */
	bool       no_offsets;    /* replay: store no offsets */
	/* Atomic apply (xr_applier_add_position, xr_applier_hold_open). */
	apos_t    *pos;           /* positions to store at commit */
	size_t     npos, poscap;
	bool       hold_open;     /* leave the transaction open after apply */
	bool       in_open;       /* a transaction is open from an apply */
	/* Leases (lease.c): the source regions this session may apply. */
	bool       fenced;        /* apply only leased regions */
	char     **leases;        /* held by the current session */
	size_t     nleases;
	bool       joined;        /* holds the membership lock */
	unsigned long session;    /* counts the sessions connected */
	xr_buf_t   sql;
	xr_buf_t   scratch;
};

/* ---- lease.c --------------------------------------------------------- */

/* Forgets the leases: the session that held them has ended. */
void xr_lease_forget(xr_applier_t *a);
/*
 * With the applier fenced: 0 when its session holds the lease of src (if
 * not NULL), of the source region of each offset's topic and of the
 * position's region (if set); otherwise -1 with errstr.
 */
int  xr_lease_fence(const xr_applier_t *a, const char *src,
                    const xr_offset_t *o, size_t n, char *errstr,
                    size_t errstr_size) __attribute__((warn_unused_result));

/* ---- session.c ------------------------------------------------------- */

/* Copies conn's error message, prefixed with what, into errstr. */
void xr_apply_copy_err(PGconn *conn, const char *what, char *errstr,
                       size_t errstr_size);
/* Runs one command or query on a's connection.  Returns 0 or -1 + errstr. */
int  xr_apply_exec(xr_applier_t *a, const char *sql, char *errstr,
                   size_t errstr_size) __attribute__((warn_unused_result));
/* Makes the session apply as the origin of source region src. */
int  xr_session_origin(xr_applier_t *a, const char *src, char *errstr,
                       size_t errstr_size) __attribute__((warn_unused_result));
/*
 * Makes this transaction carry the source's commit LSN and time (the fast
 * paths) and records that version in xregion.xact_versions.
 */
int  xr_session_origin_xact(xr_applier_t *a, xr_lsn_t lsn, const char *ts,
                            const char *region, char *errstr,
                            size_t errstr_size)
	__attribute__((warn_unused_result));
/* Stores offsets inside the open transaction (never moving one back). */
int  xr_session_store_offsets(xr_applier_t *a, const xr_offset_t *o, size_t n,
                              char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));
/* Stores the position of xr_applier_set_position inside the transaction. */
int  xr_session_store_position(xr_applier_t *a, char *errstr,
                               size_t errstr_size)
	__attribute__((warn_unused_result));
/* Sends prepared statement s with vals into the pipeline. */
int  xr_session_send(xr_applier_t *a, const stmt_t *s, const char **vals,
                     char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));
/*
 * Reads the next statement's result in the pipeline: returns it (free
 * with PQclear), or NULL with errstr and a->sqlstate set.
 */
PGresult *xr_session_result(xr_applier_t *a, char *errstr, size_t errstr_size);
/* Reads until the pipeline's next sync point. */
void xr_session_drain(xr_applier_t *a);
/*
 * After a failure in pipeline mode: reads to a sync point and leaves the
 * mode, or drops the connection (a->conn NULL) when it cannot.
 */
void xr_session_pipeline_abort(xr_applier_t *a);

/* ---- target.c -------------------------------------------------------- */

/* The cached target nsp.rel (made on first use, not loaded); NULL on a
 * quoting failure.  Valid until the applier is destroyed. */
target_t *xr_target_get(xr_applier_t *a, const char *nsp, const char *rel);
/* xr_target_get for ev's table, kept in ev (its only change to ev). */
target_t *xr_target_of(xr_applier_t *a, const xr_event_t *ev);
/* Loads t's columns from the catalog; t->exists says if it is there. */
int  xr_target_load(xr_applier_t *a, target_t *t, char *errstr,
                    size_t errstr_size) __attribute__((warn_unused_result));
/* Forgets t's columns, statements and maps (they are made again). */
void xr_target_reset(target_t *t);
void xr_target_free(target_t *t);    /* NULL ok */
/* The field map of t for writer schema s, made on first use. */
fmap_t *xr_target_fmap(target_t *t, const xr_schema_t *s);
bool xr_target_vclock(const target_t *t);     /* conflict mode vclock */
bool xr_target_keep_local(const target_t *t); /* tiebreak keep-local */
/* Whether ev's key columns differ between its before and after images. */
bool xr_target_key_changed(const xr_event_t *ev, const target_t *t,
                           const fmap_t *m);

/* ---- sqlgen.c -------------------------------------------------------- */

/*
 * Parameters ahead of the column values of a statement of op: 'u' upsert,
 * 'd' delete, 't' truncate, 'v'/'x' their vclock forms, 'U'/'D' set-based,
 * 'F'/'G' the fast insert and update.
 */
int  xr_sql_nfixed(char op);
/* Appends the rank of a write to a vclock table, from its vector ($vvp). */
void xr_sql_vc_rank(PGconn *conn, xr_buf_t *b, const target_t *t, int vvp);
/*
 * Writes the statement of op on t into b: set says which columns it sets
 * (for 'd'/'x': the keys), pnum[c] the parameter number of column c (-1:
 * read from the old key's row, whose key columns are parameters okp[c];
 * okp NULL when there are none).  conn quotes literals.
 */
void xr_sql_build(xr_buf_t *b, PGconn *conn, const target_t *t, char op,
                  const bool *set, const int *pnum, const int *okp);

/* ---- stmtcache.c ----------------------------------------------------- */

/*
 * The prepared statement for op on t setting the columns in set, and
 * taking those in from_old (NULL: none) from the old key's row.  Prepares
 * it on first use.  NULL with errstr when the server refused it.  Valid
 * until t is reset.
 */
stmt_t *xr_stmt_get(xr_applier_t *a, target_t *t, char op, const bool *set,
                    const bool *from_old, char *errstr, size_t errstr_size);

/* ---- classify.c ------------------------------------------------------ */

/* Sets it's conflict and resolution from row row of r (an lww statement). */
void xr_classify_lww(xr_apply_item_t *it, PGresult *r, int row,
                     bool may_insert);
/* The same for a vclock statement's result. */
void xr_classify_vc(xr_apply_item_t *it, PGresult *r, int row,
                    bool may_insert);
/* Inserts it's conflict into xregion.conflicts.  Returns 0 or -1. */
int  xr_conflict_log(xr_applier_t *a, const xr_apply_item_t *it,
                     const target_t *t, const fmap_t *m, PGresult *res,
                     int rrow, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

#endif
