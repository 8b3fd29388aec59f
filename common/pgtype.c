/*
 * pgtype.c: PostgreSQL column types to Avro: classification, the Avro type
 * JSON of a column, and the conversion of a value's text form (see pgtype.h).
 *
 * The text parsers accept what PostgreSQL's output functions write under the
 * session settings pgtype.h lists, and reject everything else: a value that
 * does not parse is an error, never a guessed or clipped value.
 */
#include "common/pgtype.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/avro_codec.h"

/* ------------------------------------------------------------------------
 * Classification
 */

static const struct {
	uint32_t    oid;
	const char *name;
	xr_avtype_t at;
} scalar_types[] = {
	{ XR_OID_BOOL,        "bool",        XR_AT_BOOLEAN },
	{ XR_OID_BYTEA,       "bytea",       XR_AT_BYTES },
	{ XR_OID_CHAR,        "char",        XR_AT_STRING },
	{ XR_OID_NAME,        "name",        XR_AT_STRING },
	{ XR_OID_INT8,        "int8",        XR_AT_LONG },
	{ XR_OID_INT2,        "int2",        XR_AT_INT },
	{ XR_OID_INT4,        "int4",        XR_AT_INT },
	{ XR_OID_TEXT,        "text",        XR_AT_STRING },
	{ XR_OID_JSON,        "json",        XR_AT_JSON },
	{ XR_OID_FLOAT4,      "float4",      XR_AT_FLOAT },
	{ XR_OID_FLOAT8,      "float8",      XR_AT_DOUBLE },
	{ XR_OID_BPCHAR,      "bpchar",      XR_AT_STRING },
	{ XR_OID_VARCHAR,     "varchar",     XR_AT_STRING },
	{ XR_OID_DATE,        "date",        XR_AT_DATE },
	{ XR_OID_TIME,        "time",        XR_AT_TIME_MICROS },
	{ XR_OID_TIMESTAMP,   "timestamp",   XR_AT_LOCAL_TIMESTAMP_MICROS },
	{ XR_OID_TIMESTAMPTZ, "timestamptz", XR_AT_TIMESTAMP_MICROS },
	{ XR_OID_NUMERIC,     "numeric",     XR_AT_DECIMAL },
	{ XR_OID_UUID,        "uuid",        XR_AT_UUID },
	{ XR_OID_JSONB,       "jsonb",       XR_AT_JSON },
};

/* The array types of the scalars above (pg_type.dat typarray). */
static const struct {
	uint32_t array_oid;
	uint32_t elem_oid;
} array_types[] = {
	{ 1000, XR_OID_BOOL },      { 1001, XR_OID_BYTEA },
	{ 1002, XR_OID_CHAR },      { 1003, XR_OID_NAME },
	{ 1005, XR_OID_INT2 },      { 1007, XR_OID_INT4 },
	{ 1009, XR_OID_TEXT },      { 1014, XR_OID_BPCHAR },
	{ 1015, XR_OID_VARCHAR },   { 1016, XR_OID_INT8 },
	{ 1021, XR_OID_FLOAT4 },    { 1022, XR_OID_FLOAT8 },
	{ 1182, XR_OID_DATE },      { 1183, XR_OID_TIME },
	{ 1115, XR_OID_TIMESTAMP }, { 1185, XR_OID_TIMESTAMPTZ },
	{ 1231, XR_OID_NUMERIC },   { 2951, XR_OID_UUID },
	{ 199,  XR_OID_JSON },      { 3807, XR_OID_JSONB },
};

/*
 * Names of other built-in types, for "xr.pg_type" only: pgoutput sends a
 * Type message (and so a custom_name) only for types outside pg_catalog.
 */
static const struct {
	uint32_t    oid;
	const char *name;
} other_names[] = {
	{ 26, "oid" },          { 142, "xml" },        { 600, "point" },
	{ 650, "cidr" },        { 774, "macaddr8" },   { 790, "money" },
	{ 829, "macaddr" },     { 869, "inet" },       { 1186, "interval" },
	{ 1266, "timetz" },     { 1560, "bit" },       { 1562, "varbit" },
	{ 3614, "tsvector" },   { 3615, "tsquery" },   { 3904, "int4range" },
	{ 3906, "numrange" },   { 3908, "tsrange" },   { 3910, "tstzrange" },
	{ 3912, "daterange" },  { 3926, "int8range" },
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* PostgreSQL's numeric precision limit (NUMERIC_MAX_PRECISION). */
#define NUMERIC_MAX_PRECISION 1000

/*
 * Decodes a numeric typmod as PostgreSQL 15+ writes it: ((p << 16) | s) + 4,
 * with s an 11-bit two's-complement field (negative scales exist since 15).
 * Returns false for -1 (or anything below 4): unconstrained numeric.
 */
static bool
numeric_typmod(int32_t typmod, int *precision, int *scale)
{
	uint32_t tm;

	if (typmod < 4)
		return false;
	tm = (uint32_t)(typmod - 4);
	*precision = (int)((tm >> 16) & 0xffff);
	*scale = (int)((tm & 0x7ff) ^ 0x400) - 0x400;
	return true;
}

static uint32_t
elem_oid_of(uint32_t typid, bool *is_array)
{
	size_t i;

	for (i = 0; i < N_ELEMS(array_types); i++) {
		if (array_types[i].array_oid == typid) {
			*is_array = true;
			return array_types[i].elem_oid;
		}
	}
	*is_array = false;
	return typid;
}

void
xr_pgtype_classify(uint32_t typid, int32_t typmod, const char *custom_name,
                   xr_coltype_t *out)
{
	const char *base = NULL;
	char        mod[32] = "";
	uint32_t    elem;
	size_t      i;
	int         p, s;

	memset(out, 0, sizeof(*out));
	out->typid = typid;
	out->typmod = typmod;
	out->at = XR_AT_STRING;
	elem = elem_oid_of(typid, &out->is_array);

	for (i = 0; i < N_ELEMS(scalar_types); i++) {
		if (scalar_types[i].oid == elem) {
			base = scalar_types[i].name;
			out->at = scalar_types[i].at;
			break;
		}
	}

	/* The modifier; for an array column attypmod is the element's. */
	switch (elem) {
	case XR_OID_NUMERIC:
		out->at = XR_AT_STRING;
		if (numeric_typmod(typmod, &p, &s)) {
			(void)snprintf(mod, sizeof(mod), "(%d,%d)", p, s);
			if (p >= 1 && p <= NUMERIC_MAX_PRECISION &&
			    s >= 0 && s <= p) {
				out->at = XR_AT_DECIMAL;
				out->precision = p;
				out->scale = s;
			}
		}
		break;
	case XR_OID_BPCHAR:
	case XR_OID_VARCHAR:
		if (typmod >= 4)
			(void)snprintf(mod, sizeof(mod), "(%d)", (int)(typmod - 4));
		break;
	case XR_OID_TIME:
	case XR_OID_TIMESTAMP:
	case XR_OID_TIMESTAMPTZ:
		if (typmod >= 0)
			(void)snprintf(mod, sizeof(mod), "(%d)", (int)typmod);
		break;
	default:
		break;
	}

	if (base) {
		(void)snprintf(out->pgname, sizeof(out->pgname), "%s%s%s", base,
		               mod, out->is_array ? "[]" : "");
		return;
	}
	/* Not a mapped type: the whole column is the string fallback. */
	out->is_array = false;
	out->at = XR_AT_STRING;
	if (custom_name && *custom_name) {
		/* "schema.type": two names of at most 63 bytes fit in 128. */
		(void)snprintf(out->pgname, sizeof(out->pgname), "%s", custom_name);
		return;
	}
	for (i = 0; i < N_ELEMS(other_names); i++) {
		if (other_names[i].oid == typid) {
			(void)snprintf(out->pgname, sizeof(out->pgname), "%s",
			               other_names[i].name);
			return;
		}
	}
	(void)snprintf(out->pgname, sizeof(out->pgname), "oid:%u", (unsigned)typid);
}

/* ------------------------------------------------------------------------
 * Schema JSON
 */

/* The Avro type of a scalar or element value, without null or string. */
static void
value_type_json(const xr_coltype_t *t, bool canonical, xr_buf_t *out)
{
	const char *prim = NULL, *logical = NULL;

	switch (t->at) {
	case XR_AT_STRING:
	case XR_AT_JSON:    prim = "string"; break;
	case XR_AT_BOOLEAN: prim = "boolean"; break;
	case XR_AT_INT:     prim = "int"; break;
	case XR_AT_LONG:    prim = "long"; break;
	case XR_AT_FLOAT:   prim = "float"; break;
	case XR_AT_DOUBLE:  prim = "double"; break;
	case XR_AT_BYTES:   prim = "bytes"; break;
	case XR_AT_DECIMAL: prim = "bytes"; logical = "decimal"; break;
	case XR_AT_UUID:    prim = "string"; logical = "uuid"; break;
	case XR_AT_DATE:    prim = "int"; logical = "date"; break;
	case XR_AT_TIME_MICROS:
		prim = "long"; logical = "time-micros"; break;
	case XR_AT_TIMESTAMP_MICROS:
		prim = "long"; logical = "timestamp-micros"; break;
	case XR_AT_LOCAL_TIMESTAMP_MICROS:
		prim = "long"; logical = "local-timestamp-micros"; break;
	}
	if (!prim)
		prim = "string";
	if (canonical || !logical) {
		xr_buf_printf(out, "\"%s\"", prim);
	} else if (t->at == XR_AT_DECIMAL) {
		xr_buf_printf(out, "{\"type\":\"%s\",\"logicalType\":\"%s\","
		              "\"precision\":%d,\"scale\":%d}",
		              prim, logical, t->precision, t->scale);
	} else {
		xr_buf_printf(out, "{\"type\":\"%s\",\"logicalType\":\"%s\"}",
		              prim, logical);
	}
}

/* The union of an element (or scalar column): null, the type, and for
 * decimals the string branch that carries NaN. */
static void
nullable_value_json(const xr_coltype_t *t, bool canonical, xr_buf_t *out)
{
	xr_buf_puts(out, "[\"null\",");
	value_type_json(t, canonical, out);
	if (t->at == XR_AT_DECIMAL)
		xr_buf_puts(out, ",\"string\"");
	xr_buf_putc(out, ']');
}

static void
array_json(const xr_coltype_t *t, bool canonical, xr_buf_t *out)
{
	xr_buf_puts(out, "{\"type\":\"array\",\"items\":");
	nullable_value_json(t, canonical, out);
	xr_buf_putc(out, '}');
}

void
xr_pgtype_schema_json(const xr_coltype_t *t, bool canonical, xr_buf_t *out)
{
	if (t->is_array) {
		xr_buf_puts(out, "[\"null\",");
		array_json(t, canonical, out);
		xr_buf_puts(out, ",\"string\"]");
	} else {
		nullable_value_json(t, canonical, out);
	}
}

void
xr_pgtype_key_schema_json(const xr_coltype_t *t, bool canonical, xr_buf_t *out)
{
	if (t->is_array) {
		xr_buf_putc(out, '[');
		array_json(t, canonical, out);
		xr_buf_puts(out, ",\"string\"]");
	} else if (t->at == XR_AT_DECIMAL) {
		xr_buf_putc(out, '[');
		value_type_json(t, canonical, out);
		xr_buf_puts(out, ",\"string\"]");
	} else {
		value_type_json(t, canonical, out);
	}
}

/* ------------------------------------------------------------------------
 * Text to Avro
 */

/* What a conversion needs besides the text. */
typedef struct conv_s {
	xr_avtype_t at;
	uint32_t    oid;        /* the scalar's (or the element's) type */
	int         precision;
	int         scale;
	const char *tname;      /* for messages: "int4", "numeric(5,2)" */
	const char *array_name; /* the array's pgname, or NULL */
	size_t      elem_no;    /* 1-based element being converted, or 0 */
	xr_buf_t   *scratch;
	xr_buf_t   *raw;        /* Avro binary goes here, not into a value */
	char       *errstr;
	size_t      errstr_size;
} conv_t;

#define QUOTE_MAX 40

/* The type a message names: the array's, unless inside an element. */
static const char *
conv_name(const conv_t *c)
{
	return c->array_name && c->elem_no == 0 ? c->array_name : c->tname;
}

/*
 * Fills errstr with a message naming the type and quoting the start of the
 * value: at most QUOTE_MAX bytes, cut on a UTF-8 character boundary, with
 * control characters shown as '?'.  Returns -1.
 */
static int
bad_value(const conv_t *c, const char *s, size_t len, const char *why)
{
	char   q[QUOTE_MAX + 1];
	size_t n = len, i;

	if (!c->errstr || c->errstr_size == 0)
		return -1;
	if (n > QUOTE_MAX) {
		n = QUOTE_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		q[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	q[n] = '\0';
	if (c->elem_no > 0)
		(void)snprintf(c->errstr, c->errstr_size,
		               "invalid %s value \"%s\"%s in element %zu of %s: %s",
		               c->tname, q, n < len ? "..." : "", c->elem_no,
		               c->array_name, why);
	else
		(void)snprintf(c->errstr, c->errstr_size,
		               "invalid %s value \"%s\"%s: %s", conv_name(c),
		               q, n < len ? "..." : "", why);
	return -1;
}

static int
avro_fail(const conv_t *c, const char *what)
{
	if (c->errstr && c->errstr_size)
		(void)snprintf(c->errstr, c->errstr_size, "%s (%s): %s", what,
		               conv_name(c), avro_strerror());
	return -1;
}

/*
 * The value's way out: into the avro-c value v, or with c->raw as Avro
 * binary appended to it (v is not used then).  A union's branch in raw
 * form is its index; the selected branch value is v's again.
 */
static int
out_branch(const conv_t *c, avro_value_t *v, int idx, avro_value_t *branch)
{
	if (c->raw) {
		xr_avro_put_long(c->raw, idx);
		return 0;
	}
	if (avro_value_set_branch(v, idx, branch) != 0)
		return avro_fail(c, "cannot select union branch");
	return 0;
}

static int
out_null(const conv_t *c, avro_value_t *v)
{
	if (c->raw)
		return 0;
	return avro_value_set_null(v) != 0 ? avro_fail(c, "cannot set null") : 0;
}

static int
out_long(const conv_t *c, avro_value_t *v, int64_t x)
{
	if (c->raw) {
		xr_avro_put_long(c->raw, x);
		return 0;
	}
	return avro_value_set_long(v, x) != 0 ? avro_fail(c, "cannot set long")
	                                      : 0;
}

static int
out_int(const conv_t *c, avro_value_t *v, int32_t x)
{
	if (c->raw) {
		xr_avro_put_long(c->raw, x);
		return 0;
	}
	return avro_value_set_int(v, x) != 0 ? avro_fail(c, "cannot set int") : 0;
}

static int
out_boolean(const conv_t *c, avro_value_t *v, bool x)
{
	if (c->raw) {
		xr_buf_putc(c->raw, x ? 1 : 0);
		return 0;
	}
	return avro_value_set_boolean(v, x) != 0
	           ? avro_fail(c, "cannot set boolean") : 0;
}

/* Avro's float and double: IEEE 754, little-endian. */
static void
put_le(xr_buf_t *b, uint64_t bits, size_t n)
{
	char   tmp[8];
	size_t i;

	for (i = 0; i < n; i++)
		tmp[i] = (char)((bits >> (8 * i)) & 0xff);
	xr_buf_append(b, tmp, n);
}

static int
out_float(const conv_t *c, avro_value_t *v, float x)
{
	if (c->raw) {
		uint32_t bits;

		memcpy(&bits, &x, sizeof(bits));
		put_le(c->raw, bits, 4);
		return 0;
	}
	return avro_value_set_float(v, x) != 0 ? avro_fail(c, "cannot set float")
	                                       : 0;
}

static int
out_double(const conv_t *c, avro_value_t *v, double x)
{
	if (c->raw) {
		uint64_t bits;

		memcpy(&bits, &x, sizeof(bits));
		put_le(c->raw, bits, 8);
		return 0;
	}
	return avro_value_set_double(v, x) != 0
	           ? avro_fail(c, "cannot set double") : 0;
}

static int
out_bytes(const conv_t *c, avro_value_t *v, const void *p, size_t n)
{
	if (c->raw) {
		xr_avro_put_bytes(c->raw, p, n);
		return 0;
	}
	return avro_value_set_bytes(v, (void *)p, n) != 0
	           ? avro_fail(c, "cannot set bytes") : 0;
}

static bool
is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

static bool
text_is(const char *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). */
static bool
utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	while (p < end) {
		unsigned char b = *p;
		size_t        n, k;
		uint32_t      cp;

		if (b < 0x80) {
			p++;
			continue;
		}
		if (b >= 0xC2 && b <= 0xDF) {
			n = 1; cp = b & 0x1F;
		} else if (b >= 0xE0 && b <= 0xEF) {
			n = 2; cp = b & 0x0F;
		} else if (b >= 0xF0 && b <= 0xF4) {
			n = 3; cp = b & 0x07;
		} else {
			return false;
		}
		if ((size_t)(end - p) <= n)
			return false;
		for (k = 1; k <= n; k++) {
			if ((p[k] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (p[k] & 0x3F);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
			return false;
		p += n + 1;
	}
	return true;
}

static int
set_string(const conv_t *c, const char *s, size_t len, avro_value_t *v)
{
	if (!utf8_valid(s, len))
		return bad_value(c, s, len, "not valid UTF-8");
	if (c->raw) {
		xr_avro_put_bytes(c->raw, s, len);
		return 0;
	}
	/* avro-c wants the size including a NUL terminator: copy the text. */
	xr_buf_reset(c->scratch);
	xr_buf_append(c->scratch, s, len);
	if (avro_value_set_string_len(v, c->scratch->data, len + 1) != 0)
		return avro_fail(c, "cannot set string");
	return 0;
}

/* An optionally negative decimal integer within [min, max]. */
static int
parse_integer(const char *s, size_t len, int64_t min, int64_t max,
              int64_t *out, const char **why)
{
	bool     neg = false;
	uint64_t acc = 0, lim;
	size_t   i = 0;

	if (len > 0 && s[0] == '-') {
		neg = true;
		i = 1;
	}
	if (i == len) {
		*why = "not an integer";
		return -1;
	}
	lim = neg ? (uint64_t)(-(min + 1)) + 1 : (uint64_t)max;
	for (; i < len; i++) {
		unsigned d;

		if (!is_digit(s[i])) {
			*why = "not an integer";
			return -1;
		}
		d = (unsigned)(s[i] - '0');
		if (acc > (lim - d) / 10) {
			*why = "out of range";
			return -1;
		}
		acc = acc * 10 + d;
	}
	if (neg)
		*out = acc == 0 ? 0 : -(int64_t)(acc - 1) - 1;
	else
		*out = (int64_t)acc;
	return 0;
}

/*
 * PostgreSQL's float output: shortest round-trip decimal (or exponent)
 * notation, "NaN", "Infinity" and "-Infinity".
 */
static int
parse_float(const conv_t *c, const char *s, size_t len, bool single,
            double *out)
{
	char   tmp[64];
	char  *end;
	size_t i;

	if (text_is(s, len, "NaN")) {
		*out = NAN;
		return 0;
	}
	if (text_is(s, len, "Infinity")) {
		*out = INFINITY;
		return 0;
	}
	if (text_is(s, len, "-Infinity")) {
		*out = -INFINITY;
		return 0;
	}
	/* Only the characters of decimal notation: strtod alone would also
	 * take white space, hex floats, "inf" and "nan(...)". */
	if (len == 0 || len >= sizeof(tmp))
		return bad_value(c, s, len, "not a number");
	for (i = 0; i < len; i++) {
		if (!is_digit(s[i]) && s[i] != '-' && s[i] != '+' &&
		    s[i] != '.' && s[i] != 'e' && s[i] != 'E')
			return bad_value(c, s, len, "not a number");
	}
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	errno = 0;
	if (single) {
		float f = strtof(tmp, &end);

		*out = f;
	} else {
		*out = strtod(tmp, &end);
	}
	if (end != tmp + len)
		return bad_value(c, s, len, "not a number");
	/* ERANGE also flags subnormal results, which are valid values. */
	if (errno == ERANGE && isinf(*out))
		return bad_value(c, s, len, "out of range");
	return 0;
}

/* Large enough for 1000 decimal digits (416 bytes) plus a sign byte. */
#define DECIMAL_MAX_BYTES 424

/*
 * Converts numeric text ("-12.5") to the decimal's unscaled integer at the
 * given scale, as minimal big-endian two's complement.  Writes *outlen bytes
 * to out.  Returns 0, or -1 with *why.
 */
static int
numeric_to_decimal(const char *s, size_t len, int precision, int scale,
                   unsigned char *out, size_t *outlen, const char **why)
{
	static const uint32_t pow10[] = {
		1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
		100000000, 1000000000
	};
	unsigned char mag[DECIMAL_MAX_BYTES];  /* little-endian magnitude */
	size_t   nmag = 0, i, int0, int1, frac0 = 0, frac1 = 0, nfrac;
	size_t   ndigits, w;
	bool     neg = false;
	uint32_t chunk = 0;
	int      nchunk = 0;
	size_t   pos;

	if (precision < 1 || precision > NUMERIC_MAX_PRECISION || scale < 0 ||
	    scale > precision) {
		*why = "the column type is not a decimal";
		return -1;
	}
	i = 0;
	if (i < len && s[i] == '-') {
		neg = true;
		i++;
	}
	int0 = i;
	while (i < len && is_digit(s[i]))
		i++;
	int1 = i;
	if (int1 == int0) {
		*why = "not a number";
		return -1;
	}
	if (i < len && s[i] == '.') {
		frac0 = ++i;
		while (i < len && is_digit(s[i]))
			i++;
		frac1 = i;
		if (frac1 == frac0) {
			*why = "not a number";
			return -1;
		}
	}
	if (i != len) {
		*why = "not a number";
		return -1;
	}
	nfrac = frac1 - frac0;
	if (nfrac > (size_t)scale) {
		*why = "more fraction digits than the column's scale";
		return -1;
	}
	while (int0 < int1 && s[int0] == '0')
		int0++;
	if (int1 - int0 > (size_t)(precision - scale)) {
		*why = "more digits than the column's precision";
		return -1;
	}
	ndigits = (int1 - int0) + (size_t)scale;

	/* mag = mag * 10^k + chunk, nine digits at a time. */
	for (pos = 0; pos < ndigits; pos++) {
		size_t   ip = int1 - int0;
		unsigned d;

		if (pos < ip)
			d = (unsigned)(s[int0 + pos] - '0');
		else if (pos - ip < nfrac)
			d = (unsigned)(s[frac0 + (pos - ip)] - '0');
		else
			d = 0;   /* padding up to the scale */
		chunk = chunk * 10 + d;
		nchunk++;
		if (nchunk == 9 || pos + 1 == ndigits) {
			uint64_t carry = chunk;
			size_t   j;

			for (j = 0; j < nmag; j++) {
				uint64_t x = (uint64_t)mag[j] * pow10[nchunk] + carry;

				mag[j] = (unsigned char)(x & 0xff);
				carry = x >> 8;
			}
			while (carry) {
				if (nmag + 1 >= sizeof(mag)) {
					*why = "too many digits";
					return -1;
				}
				mag[nmag++] = (unsigned char)(carry & 0xff);
				carry >>= 8;
			}
			chunk = 0;
			nchunk = 0;
		}
	}
	if (nmag == 0) {
		out[0] = 0;
		*outlen = 1;
		return 0;
	}

	/* One more byte for the sign, then negate in place if needed. */
	mag[nmag] = 0;
	w = nmag + 1;
	if (neg) {
		unsigned carry = 1;

		for (i = 0; i < w; i++) {
			unsigned x = (unsigned)(unsigned char)~mag[i] + carry;

			mag[i] = (unsigned char)(x & 0xff);
			carry = x >> 8;
		}
	}
	/* Drop leading bytes that only repeat the sign. */
	while (w > 1 &&
	       ((mag[w - 1] == 0x00 && !(mag[w - 2] & 0x80)) ||
	        (mag[w - 1] == 0xff && (mag[w - 2] & 0x80))))
		w--;
	for (i = 0; i < w; i++)
		out[i] = mag[w - 1 - i];
	*outlen = w;
	return 0;
}

static bool
is_hex(char ch, unsigned *v)
{
	if (ch >= '0' && ch <= '9')
		*v = (unsigned)(ch - '0');
	else if (ch >= 'a' && ch <= 'f')
		*v = (unsigned)(ch - 'a' + 10);
	else if (ch >= 'A' && ch <= 'F')
		*v = (unsigned)(ch - 'A' + 10);
	else
		return false;
	return true;
}

static int
set_bytea(const conv_t *c, const char *s, size_t len, avro_value_t *v)
{
	size_t i, n;

	if (len < 2 || s[0] != '\\' || s[1] != 'x')
		return bad_value(c, s, len, "not in hex format (\\x...)");
	if ((len - 2) % 2 != 0)
		return bad_value(c, s, len, "odd number of hex digits");
	n = (len - 2) / 2;
	xr_buf_reset(c->scratch);
	xr_buf_reserve(c->scratch, n);
	for (i = 0; i < n; i++) {
		unsigned hi, lo;

		if (!is_hex(s[2 + 2 * i], &hi) || !is_hex(s[3 + 2 * i], &lo))
			return bad_value(c, s, len, "invalid hex digit");
		c->scratch->data[i] = (char)((hi << 4) | lo);
	}
	c->scratch->len = n;
	c->scratch->data[n] = '\0';
	return out_bytes(c, v, c->scratch->data, n);
}

static int
set_uuid(const conv_t *c, const char *s, size_t len, avro_value_t *v)
{
	size_t   i;
	unsigned dummy;

	if (len != 36)
		return bad_value(c, s, len, "not a UUID");
	for (i = 0; i < len; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;

		if (dash ? s[i] != '-' : !is_hex(s[i], &dummy))
			return bad_value(c, s, len, "not a UUID");
	}
	return set_string(c, s, len, v);
}

/* Exactly n digits at s[*i]. */
static bool
fixed_digits(const char *s, size_t len, size_t *i, size_t n, int *out)
{
	size_t k;
	int    v = 0;

	if (len - *i < n)
		return false;
	for (k = 0; k < n; k++) {
		if (!is_digit(s[*i + k]))
			return false;
		v = v * 10 + (s[*i + k] - '0');
	}
	*i += n;
	*out = v;
	return true;
}

static bool
is_leap(int64_t y)
{
	return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

/*
 * Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar, with
 * astronomical year numbering (1 BC is year 0).  The 400-year era
 * arithmetic is Howard Hinnant's days_from_civil.
 */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	int64_t  era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;                                   /* [0, 399] */
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
	return era * 146097 + doe - 719468;
}

/*
 * "YYYY-MM-DD" (four or more year digits, as PostgreSQL writes them) at
 * s[*i].  The year is returned as written: the caller applies " BC".
 */
static bool
parse_ymd(const char *s, size_t len, size_t *i, int64_t *y, int *m, int *d)
{
	size_t  start = *i;
	int64_t year = 0;

	while (*i < len && is_digit(s[*i])) {
		if (*i - start >= 9)
			return false;
		year = year * 10 + (s[*i] - '0');
		(*i)++;
	}
	if (*i - start < 4 || *i >= len || s[*i] != '-')
		return false;
	(*i)++;
	if (!fixed_digits(s, len, i, 2, m) || *i >= len || s[*i] != '-')
		return false;
	(*i)++;
	if (!fixed_digits(s, len, i, 2, d))
		return false;
	*y = year;
	return true;
}

/* Checks the day and converts to days since 1970, applying BC. */
static bool
ymd_to_days(int64_t year, int m, int d, bool bc, int64_t *days)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
	                             30, 31 };
	int64_t y;
	int     dim;

	if (year == 0 || m < 1 || m > 12 || d < 1)
		return false;
	y = bc ? 1 - year : year;
	dim = mdays[m - 1] + (m == 2 && is_leap(y));
	if (d > dim)
		return false;
	*days = days_from_civil(y, m, d);
	return true;
}

static bool
parse_bc(const char *s, size_t len, size_t *i)
{
	if (len - *i == 3 && memcmp(s + *i, " BC", 3) == 0) {
		*i += 3;
		return true;
	}
	return false;
}

#define USECS_PER_SEC  INT64_C(1000000)
#define USECS_PER_DAY  (INT64_C(86400) * USECS_PER_SEC)

/* "HH:MM:SS[.f{1,6}]" at s[*i]; with allow_24, "24:00:00" is midnight at
 * the end of the day (the time type allows it). */
static bool
parse_hms(const char *s, size_t len, size_t *i, bool allow_24, int64_t *usecs)
{
	int     h, m, sec;
	int64_t frac = 0;
	size_t  nfrac = 0;

	if (!fixed_digits(s, len, i, 2, &h) || *i >= len || s[*i] != ':')
		return false;
	(*i)++;
	if (!fixed_digits(s, len, i, 2, &m) || *i >= len || s[*i] != ':')
		return false;
	(*i)++;
	if (!fixed_digits(s, len, i, 2, &sec))
		return false;
	if (*i < len && s[*i] == '.') {
		(*i)++;
		while (*i < len && is_digit(s[*i])) {
			if (++nfrac > 6)
				return false;
			frac = frac * 10 + (s[*i] - '0');
			(*i)++;
		}
		if (nfrac == 0)
			return false;
		for (; nfrac < 6; nfrac++)
			frac *= 10;
	}
	if (m > 59 || sec > 59)
		return false;
	if (h > 23 && !(allow_24 && h == 24 && m == 0 && sec == 0 && frac == 0))
		return false;
	*usecs = ((int64_t)h * 3600 + m * 60 + sec) * USECS_PER_SEC + frac;
	return true;
}

/* "+HH", "+HH:MM" or "+HH:MM:SS" (or '-'), as seconds east of UTC. */
static bool
parse_offset(const char *s, size_t len, size_t *i, int64_t *secs)
{
	int  sign, h, m = 0, sec = 0;

	if (*i >= len || (s[*i] != '+' && s[*i] != '-'))
		return false;
	sign = s[*i] == '-' ? -1 : 1;
	(*i)++;
	if (!fixed_digits(s, len, i, 2, &h))
		return false;
	if (*i < len && s[*i] == ':') {
		(*i)++;
		if (!fixed_digits(s, len, i, 2, &m))
			return false;
		if (*i < len && s[*i] == ':') {
			(*i)++;
			if (!fixed_digits(s, len, i, 2, &sec))
				return false;
		}
	}
	/* PostgreSQL keeps offsets under 16 hours. */
	if (h > 15 || m > 59 || sec > 59)
		return false;
	*secs = sign * ((int64_t)h * 3600 + m * 60 + sec);
	return true;
}

static int
set_date(const conv_t *c, const char *s, size_t len, avro_value_t *v)
{
	size_t  i = 0;
	int64_t year, days;
	int     m, d;
	bool    bc;

	if (text_is(s, len, "infinity"))
		days = INT32_MAX;
	else if (text_is(s, len, "-infinity"))
		days = INT32_MIN;
	else {
		if (!parse_ymd(s, len, &i, &year, &m, &d))
			return bad_value(c, s, len, "not a date (YYYY-MM-DD)");
		bc = parse_bc(s, len, &i);
		if (i != len || !ymd_to_days(year, m, d, bc, &days))
			return bad_value(c, s, len, "not a date (YYYY-MM-DD)");
		/* The extremes stand for ±infinity. */
		if (days <= INT32_MIN || days >= INT32_MAX)
			return bad_value(c, s, len, "out of range");
	}
	return out_int(c, v, (int32_t)days);
}

static int
set_time(const conv_t *c, const char *s, size_t len, avro_value_t *v)
{
	size_t  i = 0;
	int64_t usecs;

	if (!parse_hms(s, len, &i, true, &usecs) || i != len)
		return bad_value(c, s, len, "not a time (HH:MM:SS[.ffffff])");
	return out_long(c, v, usecs);
}

/* timestamp and timestamptz: "YYYY-MM-DD HH:MM:SS[.ffffff][+TZ][ BC]". */
static int
set_timestamp(const conv_t *c, const char *s, size_t len, bool tz,
              avro_value_t *v)
{
	const char *form = tz ? "not a timestamptz (YYYY-MM-DD HH:MM:SS+TZ)"
	                      : "not a timestamp (YYYY-MM-DD HH:MM:SS)";
	size_t  i = 0;
	int64_t year, days, tod, off = 0, usecs;
	int     m, d;
	bool    bc;

	if (text_is(s, len, "infinity")) {
		usecs = INT64_MAX;
	} else if (text_is(s, len, "-infinity")) {
		usecs = INT64_MIN;
	} else {
		if (!parse_ymd(s, len, &i, &year, &m, &d) || i >= len ||
		    s[i] != ' ')
			return bad_value(c, s, len, form);
		i++;
		if (!parse_hms(s, len, &i, false, &tod))
			return bad_value(c, s, len, form);
		if (tz && !parse_offset(s, len, &i, &off))
			return bad_value(c, s, len, form);
		bc = parse_bc(s, len, &i);
		if (i != len || !ymd_to_days(year, m, d, bc, &days))
			return bad_value(c, s, len, form);
		if (__builtin_mul_overflow(days, USECS_PER_DAY, &usecs) ||
		    __builtin_add_overflow(usecs, tod, &usecs) ||
		    __builtin_sub_overflow(usecs, off * USECS_PER_SEC, &usecs) ||
		    usecs == INT64_MAX || usecs == INT64_MIN)
			return bad_value(c, s, len,
			                 "out of range for microseconds since 1970");
	}
	return out_long(c, v, usecs);
}

/*
 * Stores a non-NULL scalar.  When v is a union, base is the index of the
 * branch of the value's type (decimals keep NaN in branch base + 1); with
 * base < 0, v is the plain type itself.
 */
static int
put_scalar(const conv_t *c, const char *s, size_t len, avro_value_t *v,
           int base)
{
	avro_value_t  branch, *dst = v;
	const char   *why = NULL;
	int64_t       iv;
	double        dv;

	if (c->at == XR_AT_DECIMAL) {
		unsigned char dec[DECIMAL_MAX_BYTES];
		size_t        n;

		if (base < 0)
			return avro_fail(c, "decimal needs a union");
		/* What a decimal cannot hold: NaN (and numeric infinities). */
		if (text_is(s, len, "NaN") || text_is(s, len, "Infinity") ||
		    text_is(s, len, "-Infinity")) {
			if (out_branch(c, v, base + 1, &branch))
				return -1;
			return set_string(c, s, len, &branch);
		}
		if (numeric_to_decimal(s, len, c->precision, c->scale, dec, &n,
		                       &why) != 0)
			return bad_value(c, s, len, why);
		if (out_branch(c, v, base, &branch))
			return -1;
		return out_bytes(c, &branch, dec, n);
	}

	if (base >= 0) {
		if (out_branch(c, v, base, &branch))
			return -1;
		dst = &branch;
	}

	switch (c->at) {
	case XR_AT_BOOLEAN:
		if (!text_is(s, len, "t") && !text_is(s, len, "f"))
			return bad_value(c, s, len, "not 't' or 'f'");
		return out_boolean(c, dst, s[0] == 't');
	case XR_AT_INT:
		if (c->oid == XR_OID_INT2 ?
		    parse_integer(s, len, INT16_MIN, INT16_MAX, &iv, &why) :
		    parse_integer(s, len, INT32_MIN, INT32_MAX, &iv, &why))
			return bad_value(c, s, len, why);
		return out_int(c, dst, (int32_t)iv);
	case XR_AT_LONG:
		if (parse_integer(s, len, INT64_MIN, INT64_MAX, &iv, &why))
			return bad_value(c, s, len, why);
		return out_long(c, dst, iv);
	case XR_AT_FLOAT:
		if (parse_float(c, s, len, true, &dv) != 0)
			return -1;
		return out_float(c, dst, (float)dv);
	case XR_AT_DOUBLE:
		if (parse_float(c, s, len, false, &dv) != 0)
			return -1;
		return out_double(c, dst, dv);
	case XR_AT_BYTES:
		return set_bytea(c, s, len, dst);
	case XR_AT_UUID:
		return set_uuid(c, s, len, dst);
	case XR_AT_DATE:
		return set_date(c, s, len, dst);
	case XR_AT_TIME_MICROS:
		return set_time(c, s, len, dst);
	case XR_AT_TIMESTAMP_MICROS:
		return set_timestamp(c, s, len, true, dst);
	case XR_AT_LOCAL_TIMESTAMP_MICROS:
		return set_timestamp(c, s, len, false, dst);
	case XR_AT_DECIMAL:  /* handled above */
	case XR_AT_STRING:
	case XR_AT_JSON:
		break;
	}
	return set_string(c, s, len, dst);
}

static bool
is_array_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' ||
	       ch == '\v' || ch == '\f';
}

/*
 * Reads the element at s[*i] of a one-dimensional array's text form into
 * elem (unquoted and unescaped), leaving *i on the ',' or '}' after it.
 * Quoted elements may hold anything with '"' and '\' escaped; unquoted ones
 * end at ',' or '}', have surrounding white space removed, and are NULL
 * when they read NULL (in any case, and without escapes).
 */
static bool
array_elem(const char *s, size_t len, size_t *i, xr_buf_t *elem, bool *isnull)
{
	size_t keep = 0;    /* elem length up to the last significant char */
	bool   escaped = false;

	xr_buf_reset(elem);
	*isnull = false;
	while (*i < len && is_array_space(s[*i]))
		(*i)++;
	if (*i < len && s[*i] == '"') {
		(*i)++;
		for (;;) {
			if (*i >= len)
				return false;
			if (s[*i] == '"')
				break;
			if (s[*i] == '\\') {
				if (++(*i) >= len)
					return false;
			}
			xr_buf_putc(elem, s[(*i)++]);
		}
		(*i)++;
		while (*i < len && is_array_space(s[*i]))
			(*i)++;
		return *i < len && (s[*i] == ',' || s[*i] == '}');
	}
	while (*i < len && s[*i] != ',' && s[*i] != '}') {
		char ch = s[*i];

		if (ch == '"' || ch == '{')
			return false;
		if (ch == '\\') {
			if (++(*i) >= len)
				return false;
			xr_buf_putc(elem, s[(*i)++]);
			keep = elem->len;
			escaped = true;
			continue;
		}
		xr_buf_putc(elem, ch);
		if (!is_array_space(ch))
			keep = elem->len;
		(*i)++;
	}
	if (*i >= len || keep == 0)
		return false;   /* no terminator, or an empty unquoted element */
	elem->len = keep;
	elem->data[keep] = '\0';
	if (!escaped && keep == 4 && strncasecmp(elem->data, "NULL", 4) == 0)
		*isnull = true;
	return true;
}

/*
 * An array column: v is the union whose branch base is the Avro array and
 * base + 1 the string fallback.
 */
static int
put_array(conv_t *c, const char *s, size_t len, avro_value_t *v, int base)
{
	avro_value_t arr, branch, item, nb;
	xr_buf_t     elem, items, *raw = c->raw;
	size_t       i = 1, count = 0;
	int          rc = -1;
	bool         isnull;

	if (len > 0 && s[0] == '[') {
		/* "[0:2]={...}": a lower bound other than 1. */
		if (!memchr(s, '=', len) || s[len - 1] != '}')
			return bad_value(c, s, len, "not an array");
		goto raw;
	}
	if (len < 2 || s[0] != '{' || s[len - 1] != '}')
		return bad_value(c, s, len, "not an array ({...})");
	while (is_array_space(s[i]))   /* stops at the final '}' */
		i++;
	if (s[i] == '{')
		goto raw;   /* more than one dimension */

	if (out_branch(c, v, base, &arr))
		return -1;
	/* Selecting the branch that is already current keeps its items. */
	if (!raw && avro_value_reset(&arr) != 0)
		return avro_fail(c, "cannot reset array");
	if (s[i] == '}') {
		if (i != len - 1)
			return bad_value(c, s, len, "not a one-dimensional array");
		if (raw)
			xr_avro_put_long(raw, 0);   /* no block: the end */
		return 0;
	}

	/*
	 * Avro binary counts an array's items ahead of them (one block, then
	 * the 0 that ends it, as avro-c writes it): in raw form they are
	 * written aside first.
	 */
	xr_buf_init(&elem);
	xr_buf_init(&items);
	if (raw)
		c->raw = &items;
	i = 1;
	for (c->elem_no = 1;; c->elem_no++) {
		if (!array_elem(s, len, &i, &elem, &isnull)) {
			c->elem_no = 0;
			(void)bad_value(c, s, len, "not a one-dimensional array");
			goto done;
		}
		count++;
		if (!raw && avro_value_append(&arr, &item, NULL) != 0) {
			(void)avro_fail(c, "cannot append array element");
			goto done;
		}
		if (isnull) {
			if (out_branch(c, &item, 0, &nb) || out_null(c, &nb))
				goto done;
		} else if (put_scalar(c, elem.data, elem.len, &item, 1) != 0) {
			goto done;
		}
		if (s[i] == '}')
			break;
		i++;   /* the ',' */
	}
	c->elem_no = 0;
	if (i != len - 1) {
		(void)bad_value(c, s, len, "text after the array");
		goto done;
	}
	if (raw) {
		xr_avro_put_long(raw, (int64_t)count);
		xr_buf_append(raw, items.data, items.len);
		xr_avro_put_long(raw, 0);
	}
	rc = 0;
done:
	c->elem_no = 0;
	c->raw = raw;
	xr_buf_term(&elem);
	xr_buf_term(&items);
	return rc;

raw:
	if (out_branch(c, v, base + 1, &branch))
		return -1;
	return set_string(c, s, len, &branch);
}

static int
text_to(const xr_coltype_t *t, const char *text, size_t len, bool nullable,
        avro_value_t *field, xr_buf_t *raw, char *errstr, size_t errstr_size)
{
	conv_t   c;
	xr_buf_t scratch;
	char     ename[sizeof(t->pgname)];
	size_t   n;
	int      base, rc;
	bool     dummy;

	memset(&c, 0, sizeof(c));
	c.at = t->at;
	c.oid = elem_oid_of(t->typid, &dummy);
	c.precision = t->precision;
	c.scale = t->scale;
	c.errstr = errstr;
	c.errstr_size = errstr_size;
	c.tname = t->pgname;
	c.raw = raw;

	if (nullable)
		base = 1;
	else if (t->is_array || t->at == XR_AT_DECIMAL)
		base = 0;
	else
		base = -1;

	xr_buf_init(&scratch);
	c.scratch = &scratch;
	if (t->is_array) {
		/* Element messages name the element type, then the array. */
		n = strnlen(t->pgname, sizeof(t->pgname) - 1);
		memcpy(ename, t->pgname, n);
		ename[n] = '\0';
		if (n >= 2 && strcmp(ename + n - 2, "[]") == 0)
			ename[n - 2] = '\0';
		c.tname = ename;
		c.array_name = t->pgname;
		rc = put_array(&c, text, len, field, base);
	} else {
		rc = put_scalar(&c, text, len, field, base);
	}
	xr_buf_term(&scratch);
	return rc;
}

int
xr_pgtype_text_to_avro(const xr_coltype_t *t, const char *text, size_t len,
                       bool nullable, avro_value_t *field,
                       char *errstr, size_t errstr_size)
{
	return text_to(t, text, len, nullable, field, NULL, errstr, errstr_size);
}

int
xr_pgtype_text_to_raw(const xr_coltype_t *t, const char *text, size_t len,
                      bool nullable, xr_buf_t *out, char *errstr,
                      size_t errstr_size)
{
	return text_to(t, text, len, nullable, NULL, out, errstr, errstr_size);
}

int
xr_pgtype_set_null(avro_value_t *field)
{
	avro_value_t branch;

	if (avro_value_set_branch(field, 0, &branch) != 0)
		return -1;
	return avro_value_set_null(&branch) != 0 ? -1 : 0;
}

/* ------------------------------------------------------------------------
 * Avro to text
 *
 * The inverse of the above: the text PostgreSQL's input functions read back
 * as the same value.  Where PostgreSQL's own output is easy to match (dates,
 * times and timestamps without trailing fraction zeros, array quoting), it
 * is matched exactly; floats use the shortest %g form that reads back to the
 * same bits, which may differ in notation (1e+10 for 10000000000).
 */

static int
out_fail(const xr_coltype_t *t, char *errstr, size_t errstr_size,
         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
out_fail(const xr_coltype_t *t, char *errstr, size_t errstr_size,
         const char *fmt, ...)
{
	va_list ap;
	int     n;

	if (!errstr || errstr_size == 0)
		return -1;
	n = snprintf(errstr, errstr_size, "%s value: ",
	             t->pgname[0] ? t->pgname : "column");
	if (n < 0 || (size_t)n >= errstr_size)
		return -1;
	va_start(ap, fmt);
	(void)vsnprintf(errstr + n, errstr_size - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

/* What a union currently holds. */
typedef enum { PICK_NULL, PICK_VALUE, PICK_TEXT } pick_t;

/*
 * Reads the branch of a union laid out as the schema JSON above makes it:
 * [null,] value [, string].  Without nullable and has_text, u is the plain
 * value itself.  *v is set to the branch (or u).
 */
static int
pick_branch(avro_value_t *u, bool nullable, bool has_text, avro_value_t *v,
            pick_t *pick)
{
	int d = -1;

	if (!nullable && !has_text) {
		*v = *u;
		*pick = PICK_VALUE;
		return 0;
	}
	if (avro_value_get_discriminant(u, &d) != 0 ||
	    avro_value_get_current_branch(u, v) != 0)
		return -1;
	if (nullable) {
		if (d == 0) {
			*pick = PICK_NULL;
			return 0;
		}
		d--;
	}
	if (d == 0)
		*pick = PICK_VALUE;
	else if (d == 1 && has_text)
		*pick = PICK_TEXT;
	else
		return -1;
	return 0;
}

/* An Avro string's text without avro-c's NUL terminator; false when the
 * text itself holds a NUL, which no PostgreSQL text value can. */
static bool
string_text(avro_value_t *v, const char **s, size_t *len)
{
	const char *p = NULL;
	size_t      size = 0;

	if (avro_value_get_string(v, &p, &size) != 0)
		return false;
	if (size > 0 && p[size - 1] == '\0')
		size--;
	if (size > 0 && memchr(p, '\0', size))
		return false;
	*s = size > 0 ? p : "";
	*len = size;
	return true;
}

/*
 * Shortest %g form that reads back as the same value (at most 9 significant
 * digits for float4, 17 for float8), and PostgreSQL's spellings of the
 * special values.
 */
static void
append_float(xr_buf_t *out, double d, bool single)
{
	char tmp[48];
	int  prec, maxprec = single ? 9 : 17;

	if (isnan(d)) {
		xr_buf_puts(out, "NaN");
		return;
	}
	if (isinf(d)) {
		xr_buf_puts(out, d > 0 ? "Infinity" : "-Infinity");
		return;
	}
	for (prec = 1; prec <= maxprec; prec++) {
		/* At most "-d.<16 digits>e-308": always fits in tmp. */
		(void)snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
		if (single ? strtof(tmp, NULL) == (float)d : strtod(tmp, NULL) == d)
			break;
	}
	xr_buf_puts(out, tmp);
}

/* More than the 1022 digits of DECIMAL_MAX_BYTES - 1 magnitude bytes. */
#define DECIMAL_MAX_DIGITS 1040

/*
 * Appends the decimal whose unscaled value is the big-endian two's
 * complement b[0..n), at the given scale: "-0.01" for -1 at scale 2.
 * Returns 0, or -1 with *why when the value has more digits than precision.
 */
static int
append_decimal(const unsigned char *b, size_t n, int precision, int scale,
               xr_buf_t *out, const char **why)
{
	unsigned char mag[DECIMAL_MAX_BYTES];   /* big-endian magnitude */
	char          digits[DECIMAL_MAX_DIGITS + 9];
	size_t        ndig = 0, first = 0, i;
	bool          neg;

	if (precision < 1 || precision > NUMERIC_MAX_PRECISION || scale < 0 ||
	    scale > precision) {
		*why = "the column type is not a decimal";
		return -1;
	}
	if (n == 0) {
		*why = "empty decimal bytes";
		return -1;
	}
	neg = (b[0] & 0x80) != 0;
	/* Other writers need not use the minimal length. */
	while (n > 1 && ((b[0] == 0x00 && !(b[1] & 0x80)) ||
	                 (b[0] == 0xff && (b[1] & 0x80)))) {
		b++;
		n--;
	}
	if (n > sizeof(mag)) {
		*why = "more digits than the column's precision";
		return -1;
	}
	memcpy(mag, b, n);
	if (neg) {
		unsigned carry = 1;

		for (i = n; i-- > 0;) {
			unsigned x = (unsigned)(unsigned char)~mag[i] + carry;

			mag[i] = (unsigned char)(x & 0xff);
			carry = x >> 8;
		}
	}

	/* Nine digits per division of the magnitude by 10^9, lowest first. */
	while (first < n) {
		uint64_t rem = 0;
		int      k;

		for (i = first; i < n; i++) {
			rem = (rem << 8) | mag[i];
			mag[i] = (unsigned char)(rem / 1000000000u);
			rem %= 1000000000u;
		}
		while (first < n && mag[first] == 0)
			first++;
		for (k = 0; k < 9; k++) {
			digits[ndig++] = (char)('0' + rem % 10);
			rem /= 10;
		}
	}
	while (ndig > 0 && digits[ndig - 1] == '0')
		ndig--;
	if (ndig > (size_t)precision) {
		*why = "more digits than the column's precision";
		return -1;
	}

	/* digits[] is little-endian: write it out reversed. */
	if (neg && ndig > 0)
		xr_buf_putc(out, '-');
	if (ndig <= (size_t)scale) {
		xr_buf_putc(out, '0');
		if (scale > 0)
			xr_buf_putc(out, '.');
		for (i = ndig; i < (size_t)scale; i++)
			xr_buf_putc(out, '0');
		for (i = ndig; i-- > 0;)
			xr_buf_putc(out, digits[i]);
		return 0;
	}
	for (i = ndig; i-- > 0;) {
		xr_buf_putc(out, digits[i]);
		if (i == (size_t)scale && scale > 0)
			xr_buf_putc(out, '.');
	}
	return 0;
}

/* The inverse of days_from_civil (Howard Hinnant's civil_from_days). */
static void
civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;                                     /* [0, 146096] */
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);              /* [0, 365] */
	mp = (5 * doy + 2) / 153;                                   /* [0, 11] */
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

/* "YYYY-MM-DD" with PostgreSQL's BC year (1 - astronomical year); returns
 * whether " BC" must follow. */
static bool
append_ymd(xr_buf_t *out, int64_t days)
{
	int64_t y;
	int     m, d;
	bool    bc;

	civil_from_days(days, &y, &m, &d);
	bc = y <= 0;
	xr_buf_put_int(out, bc ? 1 - y : y, 4);
	xr_buf_putc(out, '-');
	xr_buf_put_int(out, m, 2);
	xr_buf_putc(out, '-');
	xr_buf_put_int(out, d, 2);
	return bc;
}

/* "HH:MM:SS" and the fraction without trailing zeros, as PostgreSQL
 * prints it; 0 <= usecs <= USECS_PER_DAY. */
static void
append_hms(xr_buf_t *out, int64_t usecs)
{
	int64_t secs = usecs / USECS_PER_SEC;
	int     frac = (int)(usecs % USECS_PER_SEC);
	char    f[6];
	int     n = 6, i;

	xr_buf_put_int(out, secs / 3600, 2);
	xr_buf_putc(out, ':');
	xr_buf_put_int(out, secs / 60 % 60, 2);
	xr_buf_putc(out, ':');
	xr_buf_put_int(out, secs % 60, 2);
	if (frac == 0)
		return;
	for (i = 5; i >= 0; i--, frac /= 10)
		f[i] = (char)('0' + frac % 10);
	while (f[n - 1] == '0')
		n--;
	xr_buf_putc(out, '.');
	xr_buf_append(out, f, (size_t)n);
}

static void
append_timestamp(xr_buf_t *out, int64_t usecs, bool tz)
{
	int64_t days, tod;
	bool    bc;

	if (usecs == INT64_MAX) {
		xr_buf_puts(out, "infinity");
		return;
	}
	if (usecs == INT64_MIN) {
		xr_buf_puts(out, "-infinity");
		return;
	}
	days = usecs / USECS_PER_DAY;
	tod = usecs % USECS_PER_DAY;
	if (tod < 0) {
		tod += USECS_PER_DAY;
		days--;
	}
	bc = append_ymd(out, days);
	xr_buf_putc(out, ' ');
	append_hms(out, tod);
	if (tz)
		xr_buf_puts(out, "+00");
	if (bc)
		xr_buf_puts(out, " BC");
}

/*
 * The text of an integer-valued scalar of type t (int, long, date, time,
 * timestamp), however it was read.  Returns 0, or -1 for a time outside
 * a day, which the caller words.
 */
static int
integer_text(const xr_coltype_t *t, int64_t v, xr_buf_t *out)
{
	switch (t->at) {
	case XR_AT_DATE:
		if (v == INT32_MAX)
			xr_buf_puts(out, "infinity");
		else if (v == INT32_MIN)
			xr_buf_puts(out, "-infinity");
		else if (append_ymd(out, v))
			xr_buf_puts(out, " BC");
		return 0;
	case XR_AT_TIME_MICROS:
		if (v < 0 || v > USECS_PER_DAY)
			return -1;
		append_hms(out, v);
		return 0;
	case XR_AT_TIMESTAMP_MICROS:
	case XR_AT_LOCAL_TIMESTAMP_MICROS:
		append_timestamp(out, v, t->at == XR_AT_TIMESTAMP_MICROS);
		return 0;
	default:
		xr_buf_put_int(out, v, 1);
		return 0;
	}
}

/* bytea's hex text of n bytes at p. */
static void
append_hex(xr_buf_t *out, const unsigned char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t            i;

	xr_buf_reserve(out, 2 + 2 * n);
	xr_buf_puts(out, "\\x");
	for (i = 0; i < n; i++) {
		xr_buf_putc(out, hex[p[i] >> 4]);
		xr_buf_putc(out, hex[p[i] & 0x0f]);
	}
}

/* The text of a non-null scalar (or element) value v of type at. */
static int
value_to_text(const xr_coltype_t *t, avro_value_t *v, xr_buf_t *out,
              char *errstr, size_t errstr_size)
{
	const char *s, *why = NULL;
	const void *bytes;
	size_t      n;
	int32_t     iv;
	int64_t     lv;
	float       fv;
	double      dv;
	int         bv;

	switch (t->at) {
	case XR_AT_BOOLEAN:
		if (avro_value_get_boolean(v, &bv) != 0)
			break;
		xr_buf_putc(out, bv ? 't' : 'f');
		return 0;
	case XR_AT_INT:
	case XR_AT_DATE:
		if (avro_value_get_int(v, &iv) != 0)
			break;
		return integer_text(t, iv, out);
	case XR_AT_LONG:
	case XR_AT_TIMESTAMP_MICROS:
	case XR_AT_LOCAL_TIMESTAMP_MICROS:
		if (avro_value_get_long(v, &lv) != 0)
			break;
		return integer_text(t, lv, out);
	case XR_AT_FLOAT:
		if (avro_value_get_float(v, &fv) != 0)
			break;
		append_float(out, fv, true);
		return 0;
	case XR_AT_DOUBLE:
		if (avro_value_get_double(v, &dv) != 0)
			break;
		append_float(out, dv, false);
		return 0;
	case XR_AT_BYTES:
		if (avro_value_get_bytes(v, &bytes, &n) != 0)
			break;
		append_hex(out, bytes, n);
		return 0;
	case XR_AT_DECIMAL:
		if (avro_value_get_bytes(v, &bytes, &n) != 0)
			break;
		if (append_decimal(bytes, n, t->precision, t->scale, out, &why) != 0)
			return out_fail(t, errstr, errstr_size, "%s", why);
		return 0;
	case XR_AT_TIME_MICROS:
		if (avro_value_get_long(v, &lv) != 0)
			break;
		if (integer_text(t, lv, out))
			return out_fail(t, errstr, errstr_size,
			                "time of %" PRId64 " microseconds is not within "
			                "a day", lv);
		return 0;
	case XR_AT_STRING:
	case XR_AT_UUID:
	case XR_AT_JSON:
		if (!string_text(v, &s, &n)) {
			if (avro_value_get_type(v) == AVRO_STRING)
				return out_fail(t, errstr, errstr_size,
				                "string holds a NUL byte");
			break;
		}
		xr_buf_append(out, s, n);
		return 0;
	}
	return out_fail(t, errstr, errstr_size, "Avro value of type %d does not "
	                "match the column type", (int)avro_value_get_type(v));
}

/* array_out's rule: quote empty strings, NULL in any case, and anything
 * with a delimiter, brace, quote, backslash or array white space. */
static void
append_array_elem(xr_buf_t *out, const char *s, size_t n)
{
	bool   quote = n == 0 || (n == 4 && strncasecmp(s, "NULL", 4) == 0);
	size_t i;

	for (i = 0; i < n && !quote; i++)
		quote = s[i] == '"' || s[i] == '\\' || s[i] == '{' || s[i] == '}' ||
		        s[i] == ',' || is_array_space(s[i]);
	if (!quote) {
		xr_buf_append(out, s, n);
		return;
	}
	xr_buf_putc(out, '"');
	for (i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			xr_buf_putc(out, '\\');
		xr_buf_putc(out, s[i]);
	}
	xr_buf_putc(out, '"');
}

static int
array_to_text(const xr_coltype_t *t, avro_value_t *arr, xr_buf_t *out,
              char *errstr, size_t errstr_size)
{
	avro_value_t item, v;
	xr_buf_t     elem;
	const char  *s;
	size_t       n, i, len;
	pick_t       pick;
	int          rc = -1;

	if (avro_value_get_size(arr, &n) != 0)
		return out_fail(t, errstr, errstr_size, "not an Avro array");
	xr_buf_init(&elem);
	xr_buf_putc(out, '{');
	for (i = 0; i < n; i++) {
		if (i)
			xr_buf_putc(out, ',');
		if (avro_value_get_by_index(arr, i, &item, NULL) != 0 ||
		    pick_branch(&item, true, t->at == XR_AT_DECIMAL, &v,
		                &pick) != 0) {
			(void)out_fail(t, errstr, errstr_size, "element %zu is not "
			               "of the array's element type", i + 1);
			goto done;
		}
		if (pick == PICK_NULL) {
			xr_buf_puts(out, "NULL");
			continue;
		}
		xr_buf_reset(&elem);
		if (pick == PICK_TEXT) {
			if (!string_text(&v, &s, &len)) {
				(void)out_fail(t, errstr, errstr_size, "element %zu: "
				               "bad string", i + 1);
				goto done;
			}
			xr_buf_append(&elem, s, len);
		} else if (value_to_text(t, &v, &elem, errstr, errstr_size) != 0) {
			goto done;
		}
		append_array_elem(out, elem.data, elem.len);
	}
	xr_buf_putc(out, '}');
	rc = 0;
done:
	xr_buf_term(&elem);
	return rc;
}

/* A zigzag varint from p (len bytes there); returns the bytes it took,
 * or 0 when it does not end within them or within ten bytes. */
static size_t
raw_long(const unsigned char *p, size_t len, int64_t *out)
{
	uint64_t v = 0;
	size_t   i;

	for (i = 0; i < len && i < 10; i++) {
		v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
			return i + 1;
		}
	}
	return 0;
}

/* Avro's little-endian float and double bits, on any host. */
static uint64_t
raw_le(const unsigned char *p, size_t n)
{
	uint64_t v = 0;

	while (n-- > 0)
		v = v << 8 | p[n];
	return v;
}

int
xr_pgtype_raw_to_text(const xr_coltype_t *t, bool nullable,
                      const unsigned char *p, size_t len, int branch,
                      xr_buf_t *out, bool *is_null)
{
	size_t   k, old_len = out->len;
	int64_t  v, n;
	uint32_t fbits;
	uint64_t dbits;
	float    fv;
	double   dv;

	*is_null = false;
	if (!nullable || t->is_array || t->at == XR_AT_DECIMAL)
		return 0;
	if (!(k = raw_long(p, len, &v)) || v != branch || branch > 1)
		return 0;
	p += k;
	len -= k;
	if (branch == 0) {
		*is_null = true;
		return len == 0;
	}
	switch (t->at) {
	case XR_AT_BOOLEAN:
		if (len != 1)
			return 0;
		xr_buf_putc(out, p[0] ? 't' : 'f');
		return 1;
	case XR_AT_INT:
	case XR_AT_DATE:
	case XR_AT_LONG:
	case XR_AT_TIME_MICROS:
	case XR_AT_TIMESTAMP_MICROS:
	case XR_AT_LOCAL_TIMESTAMP_MICROS:
		if (!len || raw_long(p, len, &v) != len ||
		    ((t->at == XR_AT_INT || t->at == XR_AT_DATE) &&
		     (v < INT32_MIN || v > INT32_MAX)))
			return 0;
		return integer_text(t, v, out) == 0;   /* a time past a day: 0 */
	case XR_AT_FLOAT:
		if (len != 4)
			return 0;
		fbits = (uint32_t)raw_le(p, 4);
		memcpy(&fv, &fbits, sizeof(fv));
		append_float(out, fv, true);
		return 1;
	case XR_AT_DOUBLE:
		if (len != 8)
			return 0;
		dbits = raw_le(p, 8);
		memcpy(&dv, &dbits, sizeof(dv));
		append_float(out, dv, false);
		return 1;
	case XR_AT_BYTES:
	case XR_AT_STRING:
	case XR_AT_UUID:
	case XR_AT_JSON:
		if (!(k = raw_long(p, len, &n)) || n < 0 || (size_t)n != len - k)
			return 0;
		p += k;
		if (t->at == XR_AT_BYTES)
			append_hex(out, p, (size_t)n);
		else if (n > 0 && memchr(p, '\0', (size_t)n))
			return 0;
		else
			xr_buf_append(out, p, (size_t)n);
		return 1;
	default:
		break;
	}
	out->len = old_len;
	out->data[old_len] = '\0';
	return 0;
}

int
xr_pgtype_avro_to_text(const xr_coltype_t *t, avro_value_t *field,
                       bool nullable, xr_buf_t *out, bool *is_null,
                       char *errstr, size_t errstr_size)
{
	avro_value_t v;
	const char  *s;
	size_t       n, old_len = out->len;
	pick_t       pick;
	int          rc;

	*is_null = false;
	if (pick_branch(field, nullable, t->is_array || t->at == XR_AT_DECIMAL,
	                &v, &pick) != 0)
		return out_fail(t, errstr, errstr_size,
		                "Avro value is not the column type's union");
	switch (pick) {
	case PICK_NULL:
		*is_null = true;
		return 0;
	case PICK_TEXT:
		if (!string_text(&v, &s, &n))
			return out_fail(t, errstr, errstr_size, "bad string branch");
		xr_buf_append(out, s, n);
		return 0;
	case PICK_VALUE:
		break;
	}
	if (t->is_array)
		rc = array_to_text(t, &v, out, errstr, errstr_size);
	else
		rc = value_to_text(t, &v, out, errstr, errstr_size);
	if (rc != 0) {
		/* out keeps its old content. */
		out->len = old_len;
		out->data[old_len] = '\0';
	}
	return rc;
}
