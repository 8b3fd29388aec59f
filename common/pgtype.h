/*
 * pgtype.h: how a PostgreSQL column type maps to Avro, and the conversion of
 * a value's PostgreSQL text form (as pgoutput sends it) into an avro-c value.
 *
 * The text forms are those of a session with DateStyle=ISO, TimeZone=UTC,
 * IntervalStyle=postgres, extra_float_digits=3 and bytea_output=hex: the
 * producer sets these on its replication connection.
 *
 * Mapping (every column is a union with null first):
 *   bool                 boolean
 *   int2, int4           int
 *   int8                 long
 *   float4               float
 *   float8               double
 *   numeric(p,s)         bytes/decimal(p,s), plus a "string" branch for the
 *                        values a decimal cannot hold (NaN); when s < 0 or
 *                        s > p the column maps to string
 *   numeric              string (unconstrained: no fixed scale)
 *   text, varchar, bpchar, name, char   string
 *   bytea                bytes
 *   uuid                 string/uuid
 *   date                 int/date (days since 1970-01-01); infinity and
 *                        -infinity are INT32_MAX / INT32_MIN, as in
 *                        PostgreSQL's own storage
 *   time                 long/time-micros
 *   timestamp            long/local-timestamp-micros (µs since 1970-01-01
 *                        as wall-clock time); ±infinity: INT64_MAX/INT64_MIN
 *   timestamptz          long/timestamp-micros (µs since 1970-01-01 UTC);
 *                        ±infinity: INT64_MAX/INT64_MIN
 *   json, jsonb          string (the "xr.pg_type" attribute says which)
 *   one-dimensional arrays of the types above
 *                        array of the nullable element type, plus a
 *                        "string" branch carrying the PostgreSQL text form
 *                        of values an Avro array cannot hold (more than one
 *                        dimension, or lower bound other than 1)
 *   anything else (enums, domains, interval, timetz, ranges, ...)
 *                        string: the value's text form
 */
#ifndef XR_PGTYPE_H
#define XR_PGTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <avro.h>

#include "common/buf.h"

/* Built-in type OIDs (pg_type.dat), the ones the mapping names. */
#define XR_OID_BOOL        16
#define XR_OID_BYTEA       17
#define XR_OID_CHAR        18
#define XR_OID_NAME        19
#define XR_OID_INT8        20
#define XR_OID_INT2        21
#define XR_OID_INT4        23
#define XR_OID_TEXT        25
#define XR_OID_JSON        114
#define XR_OID_FLOAT4      700
#define XR_OID_FLOAT8      701
#define XR_OID_BPCHAR      1042
#define XR_OID_VARCHAR     1043
#define XR_OID_DATE        1082
#define XR_OID_TIME        1083
#define XR_OID_TIMESTAMP   1114
#define XR_OID_TIMESTAMPTZ 1184
#define XR_OID_NUMERIC     1700
#define XR_OID_UUID        2950
#define XR_OID_JSONB       3802

/* The Avro shape of a (scalar or element) type. */
typedef enum {
	XR_AT_STRING = 0,      /* also the fallback: the value's text form */
	XR_AT_BOOLEAN,
	XR_AT_INT,
	XR_AT_LONG,
	XR_AT_FLOAT,
	XR_AT_DOUBLE,
	XR_AT_BYTES,           /* bytea */
	XR_AT_DECIMAL,         /* bytes + logicalType decimal */
	XR_AT_UUID,            /* string + logicalType uuid */
	XR_AT_DATE,            /* int + logicalType date */
	XR_AT_TIME_MICROS,     /* long + logicalType time-micros */
	XR_AT_TIMESTAMP_MICROS,        /* timestamptz */
	XR_AT_LOCAL_TIMESTAMP_MICROS,  /* timestamp */
	XR_AT_JSON             /* string */
} xr_avtype_t;

typedef struct xr_coltype_s {
	uint32_t    typid;
	int32_t     typmod;
	bool        is_array;   /* one-dimensional array of elem below */
	xr_avtype_t at;         /* the scalar, or the array's element */
	int         precision;  /* XR_AT_DECIMAL only */
	int         scale;      /* XR_AT_DECIMAL only */
	char        pgname[128];/* e.g. "numeric(10,2)", "text[]", "public.mood" */
} xr_coltype_t;

/*
 * Classifies a column type.  custom_name is the "schema.type" name pgoutput
 * gave for a non-built-in type in a Type message, or NULL.  Never fails:
 * unknown types map to XR_AT_STRING.
 */
void xr_pgtype_classify(uint32_t typid, int32_t typmod, const char *custom_name,
                        xr_coltype_t *out);

/*
 * Appends the JSON of the column's Avro type, a union that starts with
 * "null", to out.  canonical selects Avro's Parsing Canonical Form (no
 * logicalType, no extra attributes, no white space).
 */
void xr_pgtype_schema_json(const xr_coltype_t *t, bool canonical, xr_buf_t *out);

/* As above, without the "null" branch: the type of a primary-key field. */
void xr_pgtype_key_schema_json(const xr_coltype_t *t, bool canonical, xr_buf_t *out);

/*
 * Stores the value whose PostgreSQL text form is text[0..len) (not
 * NUL-terminated) in field.  With nullable, field is a value of the union
 * made by xr_pgtype_schema_json() and the right branch is selected;
 * otherwise it is a value of the plain key type.
 * Returns 0, or -1 with errstr set when the text does not parse as the type
 * (never a clipped or made-up value).
 */
int xr_pgtype_text_to_avro(const xr_coltype_t *t, const char *text, size_t len,
                           bool nullable, avro_value_t *field,
                           char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * As xr_pgtype_text_to_avro, appending the field's Avro binary datum to out
 * instead (with nullable, the union's index first): the bytes avro-c would
 * write for the value xr_pgtype_text_to_avro sets.  On failure out may hold
 * part of it.
 */
int xr_pgtype_text_to_raw(const xr_coltype_t *t, const char *text, size_t len,
                          bool nullable, xr_buf_t *out, char *errstr,
                          size_t errstr_size)
	__attribute__((warn_unused_result));

/* Sets a nullable field (a union made by xr_pgtype_schema_json) to null. */
int xr_pgtype_set_null(avro_value_t *field) __attribute__((warn_unused_result));

/*
 * The inverse of xr_pgtype_text_to_avro: appends to out the PostgreSQL text
 * form of field, a value of the type xr_pgtype_schema_json (nullable) or
 * xr_pgtype_key_schema_json (not nullable) makes for t, or sets *is_null
 * (appending nothing) when the union holds null.  field is borrowed; only
 * t's at, is_array, precision, scale and pgname are used, so a type
 * described from a schema (typid 0) will do.
 *
 * The text is what PostgreSQL's input functions read back as the same value
 * in a session with the settings above; it is PostgreSQL's own output where
 * that is easy to match:
 *   bool t/f; integers in decimal; float4/float8 the shortest %g form that
 *   reads back to the same bits (at most 9 / 17 digits), NaN, Infinity,
 *   -Infinity; decimals exactly at the column's scale ("-0.01"); bytea
 *   \x and lower-case hex; uuid, json, text and the "string" branches as
 *   they are; date YYYY-MM-DD[ BC], infinity, -infinity; time
 *   HH:MM:SS[.ffffff] (24:00:00 too); timestamp "YYYY-MM-DD HH:MM:SS[.ffffff]"
 *   and timestamptz the same with "+00", both followed by " BC" for BC
 *   years and with trailing fraction zeros dropped; arrays {...} quoted as
 *   array_out quotes (only where needed, NULL elements unquoted).
 * Returns 0, or -1 with errstr set (and out unchanged) when field is not of
 * that type, a decimal has more digits than the precision, a time is
 * outside 00:00:00..24:00:00 or a string holds a NUL byte.
 */
int xr_pgtype_avro_to_text(const xr_coltype_t *t, avro_value_t *field,
                           bool nullable, xr_buf_t *out, bool *is_null,
                           char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * As xr_pgtype_avro_to_text, from a field's Avro binary datum read in
 * place: p and len span the field's union index and value (as
 * xr_avro_row_fields gives it), branch its union branch.  Returns 1 with
 * the text appended (or *is_null set), or 0 when it does not read this
 * type (arrays, decimals) or this value (a string holding a NUL, an int
 * out of range): out is then as it was, and the caller takes the avro-c
 * path, which reads every type and words every error.
 */
int xr_pgtype_raw_to_text(const xr_coltype_t *t, bool nullable,
                          const unsigned char *p, size_t len, int branch,
                          xr_buf_t *out, bool *is_null);

#endif
