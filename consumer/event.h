/*
 * event.h: a change event decoded for applying: the envelope's metadata and
 * the before and after images as PostgreSQL text, one slot per field of
 * the writer schema's xregion.Row.
 */
#ifndef XR_EVENT_H
#define XR_EVENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "common/avro_codec.h"
#include "common/buf.h"
#include "common/lsn.h"
#include "consumer/registry.h"

typedef struct xr_eval_s {
	bool   present;    /* the image has this field */
	bool   is_null;
	bool   unchanged;  /* unchanged TOASTed value: not sent */
	size_t off;        /* text at ev->text.data + off, NUL-terminated */
	size_t len;
} xr_eval_t;

typedef struct xr_event_s {
	xr_op_t            op;
	const xr_schema_t *schema;     /* writer schema (borrowed, registry) */
	char               region[64]; /* the region of the write the event
	                                  carries, whose version it has:
	                                  source.origin when set (what a
	                                  backfill publishes), else
	                                  source.region */
	char               source_region[64]; /* source.region */
	char               nspname[128];
	char               relname[128];
	char               event_id[40];
	int64_t            commit_ts;  /* version time, µs since the Unix epoch:
	                                  the commit time, or the header
	                                  xr-version-ts (consume.c) */
	int64_t            source_commit_ts; /* the source's commit time */
	xr_lsn_t           lsn;
	xr_lsn_t           commit_lsn;
	bool               has_before, has_after;
	int                nfields;    /* schema->n_row_fields */
	xr_eval_t         *before;     /* nfields entries */
	xr_eval_t         *after;
	/* The vector-clock version (tables in conflict mode vclock). */
	bool               has_vclock;
	int64_t            vc_hlc;
	xr_buf_t           vc_vector;  /* JSON object region -> counter */
	bool               has_vc_before; /* the key changed: the old key's */
	int64_t            vc_before_hlc;
	xr_buf_t           vc_before_vector;
	xr_buf_t           text;       /* all values' text, NUL-separated */
	size_t             cap;        /* entries allocated in before/after */
	/* The applier's target of the event's table, looked up once
	 * (xr_target_of, target.c); cleared by every decode. */
	const void        *target_of;  /* the applier it was looked up in */
	struct target_s   *target;
} xr_event_t;

/* Events with up to this many fields may be read in place (see
 * xr_event_decode); wider ones take the avro-c path. */
#define XR_EVENT_IN_PLACE_MAX 128

/* Tests: true makes every event take the avro-c path, to compare. */
extern atomic_bool xr_event_generic_only;
/* Tests: how many events were read in place (not thread-safe). */
extern atomic_ulong xr_event_in_place_count;

void xr_event_init(xr_event_t *ev);
void xr_event_term(xr_event_t *ev);

/*
 * Decodes a single-object encoded change event, resolving its writer
 * schema by schema_id (its xr-schema header; NULL: by fingerprint alone).  Returns 0, or -1 with a
 * reason in errstr (not single-object encoded, unknown schema, not an
 * xregion envelope, undecodable datum, a value that does not convert), or
 * -2 when the schemas topic could not be read (try again later).
 */
int xr_event_decode(xr_event_t *ev, xr_registry_t *reg, const void *msg,
                    size_t len, const char *schema_id, char *errstr,
                    size_t errstr_size)
	__attribute__((warn_unused_result));

/* xr_event_decode of Kafka message m, with the writer schema its
 * xr-schema header names (if any). */
int xr_event_decode_message(xr_event_t *ev, xr_registry_t *reg,
                            const rd_kafka_message_t *m, char *errstr,
                            size_t errstr_size)
	__attribute__((warn_unused_result));

/* The text of value v of ev (NUL-terminated), or NULL if it is null. */
static inline const char *
xr_event_text(const xr_event_t *ev, const xr_eval_t *v)
{
	return v->is_null ? NULL : ev->text.data + v->off;
}

extern const char *const xr_op_names[];

#endif
