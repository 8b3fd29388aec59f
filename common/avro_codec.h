/*
 * avro_codec.h: the change-event schemas and Avro single-object encoding.
 *
 * Every Kafka message xregion writes is Avro single-object encoded:
 * 0xC3 0x01, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer
 * schema's Parsing Canonical Form, then the Avro binary datum.
 *
 * The value schema of a table is the envelope of schemas/envelope.avsc with
 * the table's columns as the fields of the record xregion.Row; the key
 * schema is the record xregion.Key with the primary-key columns.
 */
#ifndef XR_AVRO_CODEC_H
#define XR_AVRO_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <avro.h>

#include "common/buf.h"
#include "common/pgtype.h"

#define XR_AVRO_SO_MAGIC0 0xC3
#define XR_AVRO_SO_MAGIC1 0x01
#define XR_AVRO_SO_HEADER_LEN 10

/* Positions of the envelope's fields (schemas/envelope.avsc order). */
enum {
	XR_ENV_EVENT_ID = 0,
	XR_ENV_OP,
	XR_ENV_PRODUCED_AT,
	XR_ENV_SOURCE,
	XR_ENV_BEFORE,
	XR_ENV_AFTER,
	XR_ENV_UNCHANGED,
	XR_ENV_VCLOCK,     /* absent in events of releases before vclock */
	XR_ENV_TX_INDEX,   /* absent in events of releases before it */
	XR_ENV_NFIELDS
};
/* Positions of the source record's fields. */
enum {
	XR_SRC_REGION = 0,
	XR_SRC_DATABASE,
	XR_SRC_SCHEMA,
	XR_SRC_TABLE,
	XR_SRC_LSN,
	XR_SRC_COMMIT_LSN,
	XR_SRC_TXID,
	XR_SRC_COMMIT_TS,
	XR_SRC_ORIGIN,
	XR_SRC_NFIELDS
};
/* Symbols of the enum xregion.Op, in order. */
typedef enum {
	XR_OP_INSERT = 0,
	XR_OP_UPDATE,
	XR_OP_DELETE,
	XR_OP_TRUNCATE,
	XR_OP_SNAPSHOT_READ
} xr_op_t;

/* One column as the schema builder sees it. */
typedef struct xr_schema_col_s {
	const char         *name;    /* PostgreSQL column name, any characters */
	const xr_coltype_t *type;
	bool                is_key;
} xr_schema_col_t;

/*
 * One field of xregion.Row or xregion.Key as read back from the schema's
 * JSON (avro-c drops logical types and the xr.* attributes, so this is what
 * a reader knows of the column).
 */
typedef struct xr_field_s {
	char        *name;     /* Avro field name (mangled); owned */
	char        *column;   /* PostgreSQL column name: "xr.column" if present,
	                          else name; owned */
	xr_coltype_t type;     /* at, is_array, precision, scale from the Avro
	                          type, pgname from "xr.pg_type" ("" if absent);
	                          typid 0, typmod -1 */
	bool         nullable; /* a union with null first */
	bool         has_text_branch; /* the union's extra "string" branch
	                                 (decimals and arrays) */
} xr_field_t;

/* A built schema: its JSON, canonical form, fingerprint and avro-c form. */
typedef struct xr_schema_s {
	xr_buf_t     json;        /* full JSON, with logical types */
	xr_buf_t     canonical;   /* Parsing Canonical Form */
	uint64_t     fingerprint; /* CRC-64-AVRO of canonical */
	avro_schema_t schema;     /* parsed from json; owned */
	avro_value_iface_t *iface;/* generic class of schema; owned */
	bool         is_envelope; /* the record xregion.ChangeEvent */
	bool         is_key;      /* the record xregion.Key */
	xr_field_t  *row_fields;  /* envelope: the fields of xregion.Row; key:
	                             those of xregion.Key; else NULL; owned */
	int          n_row_fields;
} xr_schema_t;

/*
 * Builds the value schema (envelope) for a table's columns, or with key set,
 * the key schema of its is_key columns.  Column names that are not valid
 * Avro names are mangled ([A-Za-z_][A-Za-z0-9_]*, duplicates suffixed) and
 * keep their PostgreSQL name in the field attribute "xr.column".  row_fields
 * are read back from the built JSON as xr_schema_from_json reads them, and
 * must agree with cols (an internal error otherwise).
 * On success *out is a new schema (free with xr_schema_destroy).
 * Returns 0, or -1 with errstr set.
 */
int xr_schema_build(const xr_schema_col_t *cols, int ncols, bool key,
                    xr_schema_t **out, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Parses a schema published by any producer (full JSON) into *out (free
 * with xr_schema_destroy).  An xregion envelope or key schema also gets its
 * row_fields; every field's type must be one xr_pgtype_schema_json (Row) or
 * xr_pgtype_key_schema_json (Key) can make, else this fails naming the
 * field.  Any other schema parses with n_row_fields 0.
 * Returns 0, or -1 with errstr set.
 */
int xr_schema_from_json(const char *json, size_t len, xr_schema_t **out,
                        char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

void xr_schema_destroy(xr_schema_t *s);   /* NULL ok */

/* CRC-64-AVRO (the Rabin fingerprint of the Avro specification). */
uint64_t xr_avro_crc64(const void *data, size_t len);

/*
 * Appends the single-object encoding of value (whose schema is s) to out.
 * Returns 0, or -1 with errstr set (avro-c's message copied).
 */
int xr_avro_encode(const xr_schema_t *s, avro_value_t *value, xr_buf_t *out,
                   char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Reads the header of a single-object encoded message: on success returns
 * 0 and sets *fingerprint and *body and *body_len to the datum that follows;
 * returns -1 with errstr set when the message is shorter than the header or
 * the magic bytes differ.
 */
int xr_avro_so_header(const void *msg, size_t len, uint64_t *fingerprint,
                      const void **body, size_t *body_len,
                      char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Checks, without allocating, that a datum of len bytes fits schema s:
 * every length, count and index within the bytes there are, nothing over.
 * xr_avro_decode() calls it first, so that corrupt bytes are refused before
 * avro-c allocates what they claim.  Returns 0, or -1 with errstr set.
 */
int xr_avro_validate(const xr_schema_t *s, const void *body, size_t len,
                     char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Decodes a datum written with schema s into a new value of s's generic
 * class (release with avro_value_decref).  Returns 0, or -1 with errstr set
 * when the bytes do not decode or leave bytes over.
 */
int xr_avro_decode(const xr_schema_t *s, const void *body, size_t len,
                   avro_value_t *out, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));


/* A byte range of a datum: data + off, len bytes. */
typedef struct xr_span_s {
	size_t off;
	size_t len;
} xr_span_t;

/*
 * An envelope read in place, without allocating: the spans point into the
 * datum (body).  before and after span the Row record's datum, after its
 * union index; unchanged spans the whole array encoding.
 */
typedef struct xr_env_view_s {
	const unsigned char *body;
	size_t     len;
	xr_span_t  event_id;
	xr_op_t    op;
	int64_t    produced_at;
	xr_span_t  region, database, schema, table;   /* source.* */
	int64_t    lsn, commit_lsn, txid, commit_ts;
	bool       has_origin;
	xr_span_t  origin;
	bool       has_before, has_after;
	xr_span_t  before, after;
	xr_span_t  unchanged;
	bool       has_vclock;
	int64_t    vc_hlc;
	bool       has_vc_before;
	int64_t    vc_before_hlc;
	bool       has_tx_index;  /* null (a backfill's) or an older release's */
	int64_t    tx_index;
} xr_env_view_t;

/*
 * Reads the envelope datum body (len bytes) written with envelope schema s
 * into *v, checking every length, count and index against the bytes there
 * are, and that none are left over.  Returns 0, or -1 with errstr set.
 */
int xr_avro_env_view(const xr_schema_t *s, const void *body, size_t len,
                     xr_env_view_t *v, char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/* The record xregion.Row of envelope schema s, or NULL. */
avro_schema_t xr_avro_row_schema(const xr_schema_t *s);

/*
 * Splits a Row datum (a view's before or after) into its nfields fields:
 * spans[i] covers field i's union index and value, branches[i] is the
 * union branch.  Returns 0, or -1 if the bytes do not fit row.
 */
int xr_avro_row_fields(avro_schema_t row, const void *data, size_t len,
                       xr_span_t *spans, int *branches, int nfields)
	__attribute__((warn_unused_result));

/*
 * The fingerprint of a schema id (<fingerprint>.<JSON checksum>, whose
 * first 16 hex digits are the fingerprint's bytes as a message carries
 * them, little-endian).  Returns 0, or -1 if id does not start so.
 */
int xr_schema_id_fingerprint(const char *id, uint64_t *fp)
	__attribute__((warn_unused_result));

/*
 * Turns a single-object encoded message in msg into the Confluent wire
 * format with schema registry id id: 0x00, the id big-endian, the datum.
 */
void xr_avro_confluent_reframe(xr_buf_t *msg, int32_t id);

/* Avro binary encoding of a long (zigzag varint), and of bytes or string. */
void xr_avro_put_long(xr_buf_t *b, int64_t v);
void xr_avro_put_bytes(xr_buf_t *b, const void *p, size_t n);

#endif
