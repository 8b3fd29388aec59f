/*
 * avro_codec.c: the change-event schemas (built from a table's columns or
 * parsed from published JSON), their Parsing Canonical Form and CRC-64-AVRO
 * fingerprint, and Avro single-object encoding (see avro_codec.h).
 */
#include "common/avro_codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static void
set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
set_err(char *errstr, size_t errstr_size, const char *fmt, ...)
{
	va_list ap;

	if (!errstr || errstr_size == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(errstr, errstr_size, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------------
 * CRC-64-AVRO
 */

#define CRC64_EMPTY UINT64_C(0xc15d213aa4d7a795)

/*
 * crc64_table[i] is i shifted through eight rounds of
 * fp = (fp >> 1) ^ (CRC64_EMPTY & -(fp & 1)), as the Avro specification's
 * reference code computes it at start-up; a constant table needs no
 * one-time initialisation shared between threads.
 */
static const uint64_t crc64_table[256] = {
	UINT64_C(0x0000000000000000), UINT64_C(0x2cf1cba6b75351fa),
	UINT64_C(0x59e3974d6ea6a3f4), UINT64_C(0x75125cebd9f5f20e),
	UINT64_C(0xb3c72e9add4d47e8), UINT64_C(0x9f36e53c6a1e1612),
	UINT64_C(0xea24b9d7b3ebe41c), UINT64_C(0xc6d5727104b8b5e6),
	UINT64_C(0xe5341f40f335c0fb), UINT64_C(0xc9c5d4e644669101),
	UINT64_C(0xbcd7880d9d93630f), UINT64_C(0x902643ab2ac032f5),
	UINT64_C(0x56f331da2e788713), UINT64_C(0x7a02fa7c992bd6e9),
	UINT64_C(0x0f10a69740de24e7), UINT64_C(0x23e16d31f78d751d),
	UINT64_C(0x48d27cf4afc4cedd), UINT64_C(0x6423b75218979f27),
	UINT64_C(0x1131ebb9c1626d29), UINT64_C(0x3dc0201f76313cd3),
	UINT64_C(0xfb15526e72898935), UINT64_C(0xd7e499c8c5dad8cf),
	UINT64_C(0xa2f6c5231c2f2ac1), UINT64_C(0x8e070e85ab7c7b3b),
	UINT64_C(0xade663b45cf10e26), UINT64_C(0x8117a812eba25fdc),
	UINT64_C(0xf405f4f93257add2), UINT64_C(0xd8f43f5f8504fc28),
	UINT64_C(0x1e214d2e81bc49ce), UINT64_C(0x32d0868836ef1834),
	UINT64_C(0x47c2da63ef1aea3a), UINT64_C(0x6b3311c55849bbc0),
	UINT64_C(0x91a4f9e95f899dba), UINT64_C(0xbd55324fe8dacc40),
	UINT64_C(0xc8476ea4312f3e4e), UINT64_C(0xe4b6a502867c6fb4),
	UINT64_C(0x2263d77382c4da52), UINT64_C(0x0e921cd535978ba8),
	UINT64_C(0x7b80403eec6279a6), UINT64_C(0x57718b985b31285c),
	UINT64_C(0x7490e6a9acbc5d41), UINT64_C(0x58612d0f1bef0cbb),
	UINT64_C(0x2d7371e4c21afeb5), UINT64_C(0x0182ba427549af4f),
	UINT64_C(0xc757c83371f11aa9), UINT64_C(0xeba60395c6a24b53),
	UINT64_C(0x9eb45f7e1f57b95d), UINT64_C(0xb24594d8a804e8a7),
	UINT64_C(0xd976851df04d5367), UINT64_C(0xf5874ebb471e029d),
	UINT64_C(0x809512509eebf093), UINT64_C(0xac64d9f629b8a169),
	UINT64_C(0x6ab1ab872d00148f), UINT64_C(0x464060219a534575),
	UINT64_C(0x33523cca43a6b77b), UINT64_C(0x1fa3f76cf4f5e681),
	UINT64_C(0x3c429a5d0378939c), UINT64_C(0x10b351fbb42bc266),
	UINT64_C(0x65a10d106dde3068), UINT64_C(0x4950c6b6da8d6192),
	UINT64_C(0x8f85b4c7de35d474), UINT64_C(0xa3747f616966858e),
	UINT64_C(0xd666238ab0937780), UINT64_C(0xfa97e82c07c0267a),
	UINT64_C(0xa1f3b1a7f6bc745f), UINT64_C(0x8d027a0141ef25a5),
	UINT64_C(0xf81026ea981ad7ab), UINT64_C(0xd4e1ed4c2f498651),
	UINT64_C(0x12349f3d2bf133b7), UINT64_C(0x3ec5549b9ca2624d),
	UINT64_C(0x4bd7087045579043), UINT64_C(0x6726c3d6f204c1b9),
	UINT64_C(0x44c7aee70589b4a4), UINT64_C(0x68366541b2dae55e),
	UINT64_C(0x1d2439aa6b2f1750), UINT64_C(0x31d5f20cdc7c46aa),
	UINT64_C(0xf700807dd8c4f34c), UINT64_C(0xdbf14bdb6f97a2b6),
	UINT64_C(0xaee31730b66250b8), UINT64_C(0x8212dc9601310142),
	UINT64_C(0xe921cd535978ba82), UINT64_C(0xc5d006f5ee2beb78),
	UINT64_C(0xb0c25a1e37de1976), UINT64_C(0x9c3391b8808d488c),
	UINT64_C(0x5ae6e3c98435fd6a), UINT64_C(0x7617286f3366ac90),
	UINT64_C(0x03057484ea935e9e), UINT64_C(0x2ff4bf225dc00f64),
	UINT64_C(0x0c15d213aa4d7a79), UINT64_C(0x20e419b51d1e2b83),
	UINT64_C(0x55f6455ec4ebd98d), UINT64_C(0x79078ef873b88877),
	UINT64_C(0xbfd2fc8977003d91), UINT64_C(0x9323372fc0536c6b),
	UINT64_C(0xe6316bc419a69e65), UINT64_C(0xcac0a062aef5cf9f),
	UINT64_C(0x3057484ea935e9e5), UINT64_C(0x1ca683e81e66b81f),
	UINT64_C(0x69b4df03c7934a11), UINT64_C(0x454514a570c01beb),
	UINT64_C(0x839066d47478ae0d), UINT64_C(0xaf61ad72c32bfff7),
	UINT64_C(0xda73f1991ade0df9), UINT64_C(0xf6823a3fad8d5c03),
	UINT64_C(0xd563570e5a00291e), UINT64_C(0xf9929ca8ed5378e4),
	UINT64_C(0x8c80c04334a68aea), UINT64_C(0xa0710be583f5db10),
	UINT64_C(0x66a47994874d6ef6), UINT64_C(0x4a55b232301e3f0c),
	UINT64_C(0x3f47eed9e9ebcd02), UINT64_C(0x13b6257f5eb89cf8),
	UINT64_C(0x788534ba06f12738), UINT64_C(0x5474ff1cb1a276c2),
	UINT64_C(0x2166a3f7685784cc), UINT64_C(0x0d976851df04d536),
	UINT64_C(0xcb421a20dbbc60d0), UINT64_C(0xe7b3d1866cef312a),
	UINT64_C(0x92a18d6db51ac324), UINT64_C(0xbe5046cb024992de),
	UINT64_C(0x9db12bfaf5c4e7c3), UINT64_C(0xb140e05c4297b639),
	UINT64_C(0xc452bcb79b624437), UINT64_C(0xe8a377112c3115cd),
	UINT64_C(0x2e7605602889a02b), UINT64_C(0x0287cec69fdaf1d1),
	UINT64_C(0x7795922d462f03df), UINT64_C(0x5b64598bf17c5225),
	UINT64_C(0xc15d213aa4d7a795), UINT64_C(0xedacea9c1384f66f),
	UINT64_C(0x98beb677ca710461), UINT64_C(0xb44f7dd17d22559b),
	UINT64_C(0x729a0fa0799ae07d), UINT64_C(0x5e6bc406cec9b187),
	UINT64_C(0x2b7998ed173c4389), UINT64_C(0x0788534ba06f1273),
	UINT64_C(0x24693e7a57e2676e), UINT64_C(0x0898f5dce0b13694),
	UINT64_C(0x7d8aa9373944c49a), UINT64_C(0x517b62918e179560),
	UINT64_C(0x97ae10e08aaf2086), UINT64_C(0xbb5fdb463dfc717c),
	UINT64_C(0xce4d87ade4098372), UINT64_C(0xe2bc4c0b535ad288),
	UINT64_C(0x898f5dce0b136948), UINT64_C(0xa57e9668bc4038b2),
	UINT64_C(0xd06cca8365b5cabc), UINT64_C(0xfc9d0125d2e69b46),
	UINT64_C(0x3a487354d65e2ea0), UINT64_C(0x16b9b8f2610d7f5a),
	UINT64_C(0x63abe419b8f88d54), UINT64_C(0x4f5a2fbf0fabdcae),
	UINT64_C(0x6cbb428ef826a9b3), UINT64_C(0x404a89284f75f849),
	UINT64_C(0x3558d5c396800a47), UINT64_C(0x19a91e6521d35bbd),
	UINT64_C(0xdf7c6c14256bee5b), UINT64_C(0xf38da7b29238bfa1),
	UINT64_C(0x869ffb594bcd4daf), UINT64_C(0xaa6e30fffc9e1c55),
	UINT64_C(0x50f9d8d3fb5e3a2f), UINT64_C(0x7c0813754c0d6bd5),
	UINT64_C(0x091a4f9e95f899db), UINT64_C(0x25eb843822abc821),
	UINT64_C(0xe33ef64926137dc7), UINT64_C(0xcfcf3def91402c3d),
	UINT64_C(0xbadd610448b5de33), UINT64_C(0x962caaa2ffe68fc9),
	UINT64_C(0xb5cdc793086bfad4), UINT64_C(0x993c0c35bf38ab2e),
	UINT64_C(0xec2e50de66cd5920), UINT64_C(0xc0df9b78d19e08da),
	UINT64_C(0x060ae909d526bd3c), UINT64_C(0x2afb22af6275ecc6),
	UINT64_C(0x5fe97e44bb801ec8), UINT64_C(0x7318b5e20cd34f32),
	UINT64_C(0x182ba427549af4f2), UINT64_C(0x34da6f81e3c9a508),
	UINT64_C(0x41c8336a3a3c5706), UINT64_C(0x6d39f8cc8d6f06fc),
	UINT64_C(0xabec8abd89d7b31a), UINT64_C(0x871d411b3e84e2e0),
	UINT64_C(0xf20f1df0e77110ee), UINT64_C(0xdefed65650224114),
	UINT64_C(0xfd1fbb67a7af3409), UINT64_C(0xd1ee70c110fc65f3),
	UINT64_C(0xa4fc2c2ac90997fd), UINT64_C(0x880de78c7e5ac607),
	UINT64_C(0x4ed895fd7ae273e1), UINT64_C(0x62295e5bcdb1221b),
	UINT64_C(0x173b02b01444d015), UINT64_C(0x3bcac916a31781ef),
	UINT64_C(0x60ae909d526bd3ca), UINT64_C(0x4c5f5b3be5388230),
	UINT64_C(0x394d07d03ccd703e), UINT64_C(0x15bccc768b9e21c4),
	UINT64_C(0xd369be078f269422), UINT64_C(0xff9875a13875c5d8),
	UINT64_C(0x8a8a294ae18037d6), UINT64_C(0xa67be2ec56d3662c),
	UINT64_C(0x859a8fdda15e1331), UINT64_C(0xa96b447b160d42cb),
	UINT64_C(0xdc791890cff8b0c5), UINT64_C(0xf088d33678abe13f),
	UINT64_C(0x365da1477c1354d9), UINT64_C(0x1aac6ae1cb400523),
	UINT64_C(0x6fbe360a12b5f72d), UINT64_C(0x434ffdaca5e6a6d7),
	UINT64_C(0x287cec69fdaf1d17), UINT64_C(0x048d27cf4afc4ced),
	UINT64_C(0x719f7b249309bee3), UINT64_C(0x5d6eb082245aef19),
	UINT64_C(0x9bbbc2f320e25aff), UINT64_C(0xb74a095597b10b05),
	UINT64_C(0xc25855be4e44f90b), UINT64_C(0xeea99e18f917a8f1),
	UINT64_C(0xcd48f3290e9addec), UINT64_C(0xe1b9388fb9c98c16),
	UINT64_C(0x94ab6464603c7e18), UINT64_C(0xb85aafc2d76f2fe2),
	UINT64_C(0x7e8fddb3d3d79a04), UINT64_C(0x527e16156484cbfe),
	UINT64_C(0x276c4afebd7139f0), UINT64_C(0x0b9d81580a22680a),
	UINT64_C(0xf10a69740de24e70), UINT64_C(0xddfba2d2bab11f8a),
	UINT64_C(0xa8e9fe396344ed84), UINT64_C(0x8418359fd417bc7e),
	UINT64_C(0x42cd47eed0af0998), UINT64_C(0x6e3c8c4867fc5862),
	UINT64_C(0x1b2ed0a3be09aa6c), UINT64_C(0x37df1b05095afb96),
	UINT64_C(0x143e7634fed78e8b), UINT64_C(0x38cfbd924984df71),
	UINT64_C(0x4ddde17990712d7f), UINT64_C(0x612c2adf27227c85),
	UINT64_C(0xa7f958ae239ac963), UINT64_C(0x8b08930894c99899),
	UINT64_C(0xfe1acfe34d3c6a97), UINT64_C(0xd2eb0445fa6f3b6d),
	UINT64_C(0xb9d81580a22680ad), UINT64_C(0x9529de261575d157),
	UINT64_C(0xe03b82cdcc802359), UINT64_C(0xccca496b7bd372a3),
	UINT64_C(0x0a1f3b1a7f6bc745), UINT64_C(0x26eef0bcc83896bf),
	UINT64_C(0x53fcac5711cd64b1), UINT64_C(0x7f0d67f1a69e354b),
	UINT64_C(0x5cec0ac051134056), UINT64_C(0x701dc166e64011ac),
	UINT64_C(0x050f9d8d3fb5e3a2), UINT64_C(0x29fe562b88e6b258),
	UINT64_C(0xef2b245a8c5e07be), UINT64_C(0xc3daeffc3b0d5644),
	UINT64_C(0xb6c8b317e2f8a44a), UINT64_C(0x9a3978b155abf5b0)
};

uint64_t
xr_avro_crc64(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t fp = CRC64_EMPTY;
	size_t   i;

	for (i = 0; i < len; i++)
		fp = (fp >> 8) ^ crc64_table[(fp ^ p[i]) & 0xff];
	return fp;
}

/* ------------------------------------------------------------------------
 * Parsing Canonical Form of a parsed schema
 */

static void
full_name(avro_schema_t s, xr_buf_t *out)
{
	const char *ns = avro_schema_namespace(s);

	xr_buf_reset(out);
	if (ns && *ns) {
		xr_buf_puts(out, ns);
		xr_buf_putc(out, '.');
	}
	xr_buf_puts(out, avro_schema_name(s));
}

/*
 * Appends the Parsing Canonical Form of s: primitives as bare names, named
 * types by full name once defined, and only the attributes name, type,
 * fields, symbols, items, values and size, in that order.  avro-c has
 * already dropped everything else (doc, default, aliases, logicalType),
 * turned every reference by name into an AVRO_LINK and refused a name
 * defined twice, so each definition is met exactly once.
 */
static int
canon_walk(avro_schema_t s, xr_buf_t *out, char *errstr, size_t errstr_size)
{
	xr_buf_t name;
	size_t   i, n;
	int      rc = 0;

	switch (avro_typeof(s)) {
	case AVRO_STRING:  xr_buf_puts(out, "\"string\""); return 0;
	case AVRO_BYTES:   xr_buf_puts(out, "\"bytes\""); return 0;
	case AVRO_INT32:   xr_buf_puts(out, "\"int\""); return 0;
	case AVRO_INT64:   xr_buf_puts(out, "\"long\""); return 0;
	case AVRO_FLOAT:   xr_buf_puts(out, "\"float\""); return 0;
	case AVRO_DOUBLE:  xr_buf_puts(out, "\"double\""); return 0;
	case AVRO_BOOLEAN: xr_buf_puts(out, "\"boolean\""); return 0;
	case AVRO_NULL:    xr_buf_puts(out, "\"null\""); return 0;
	case AVRO_ARRAY:
		xr_buf_puts(out, "{\"type\":\"array\",\"items\":");
		if (canon_walk(avro_schema_array_items(s), out, errstr, errstr_size) != 0)
			return -1;
		xr_buf_putc(out, '}');
		return 0;
	case AVRO_MAP:
		xr_buf_puts(out, "{\"type\":\"map\",\"values\":");
		if (canon_walk(avro_schema_map_values(s), out, errstr, errstr_size) != 0)
			return -1;
		xr_buf_putc(out, '}');
		return 0;
	case AVRO_UNION:
		xr_buf_putc(out, '[');
		n = avro_schema_union_size(s);
		for (i = 0; i < n; i++) {
			if (i)
				xr_buf_putc(out, ',');
			if (canon_walk(avro_schema_union_branch(s, (int)i), out, errstr,
			               errstr_size) != 0)
				return -1;
		}
		xr_buf_putc(out, ']');
		return 0;
	case AVRO_LINK:
		/* A reference by name to a type defined earlier. */
		xr_buf_init(&name);
		full_name(avro_schema_link_target(s), &name);
		xr_buf_json_str(out, name.data, name.len);
		xr_buf_term(&name);
		return 0;
	case AVRO_RECORD:
	case AVRO_ENUM:
	case AVRO_FIXED:
		break;
	default:
		set_err(errstr, errstr_size, "schema has an unknown Avro type %d",
		        (int)avro_typeof(s));
		return -1;
	}

	xr_buf_init(&name);
	full_name(s, &name);
	xr_buf_puts(out, "{\"name\":");
	xr_buf_json_str(out, name.data, name.len);
	xr_buf_term(&name);

	switch (avro_typeof(s)) {
	case AVRO_RECORD:
		xr_buf_puts(out, ",\"type\":\"record\",\"fields\":[");
		n = avro_schema_record_size(s);
		for (i = 0; i < n && rc == 0; i++) {
			const char *fname = avro_schema_record_field_name(s, (int)i);

			if (!fname) {
				set_err(errstr, errstr_size, "record field %zu has no name",
				        i);
				return -1;
			}
			if (i)
				xr_buf_putc(out, ',');
			xr_buf_puts(out, "{\"name\":");
			xr_buf_json_str(out, fname, strlen(fname));
			xr_buf_puts(out, ",\"type\":");
			rc = canon_walk(avro_schema_record_field_get_by_index(s, (int)i),
			                out, errstr, errstr_size);
			xr_buf_putc(out, '}');
		}
		xr_buf_puts(out, "]}");
		return rc;
	case AVRO_ENUM:
		xr_buf_puts(out, ",\"type\":\"enum\",\"symbols\":[");
		n = (size_t)avro_schema_enum_number_of_symbols(s);
		for (i = 0; i < n; i++) {
			const char *sym = avro_schema_enum_get(s, (int)i);

			if (!sym) {
				set_err(errstr, errstr_size, "enum symbol %zu missing", i);
				return -1;
			}
			if (i)
				xr_buf_putc(out, ',');
			xr_buf_json_str(out, sym, strlen(sym));
		}
		xr_buf_puts(out, "]}");
		return 0;
	default: /* AVRO_FIXED */
		xr_buf_printf(out, ",\"type\":\"fixed\",\"size\":%lld}",
		              (long long)avro_schema_fixed_size(s));
		return 0;
	}
}

static char *
dup_or_die(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (!p) {
		fputs("xregion: out of memory\n", stderr);
		abort();
	}
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* ------------------------------------------------------------------------
 * Row and key fields, read with jansson: avro-c keeps neither logical types
 * nor the xr.* attributes, and those are what turn a value back into text.
 */

/* The string member key of obj, or NULL (also when it is not a string). */
static const char *
jstr(json_t *obj, const char *key)
{
	json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool
jstr_is(json_t *v, const char *want)
{
	return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

/*
 * The full name of the named type obj defined inside namespace ns (NULL or
 * "" for none): a dotted name is already full, an explicit "namespace"
 * replaces ns.
 */
static void
json_full_name(json_t *obj, const char *ns, xr_buf_t *out)
{
	const char *name = jstr(obj, "name");
	json_t     *jns = json_object_get(obj, "namespace");

	xr_buf_reset(out);
	if (!name)
		return;
	if (!strchr(name, '.')) {
		if (json_is_string(jns))
			ns = json_string_value(jns);
		if (ns && *ns) {
			xr_buf_puts(out, ns);
			xr_buf_putc(out, '.');
		}
	}
	xr_buf_puts(out, name);
}

/* Is v the definition of a record with full name want (inside ns)? */
static bool
is_record_named(json_t *v, const char *ns, const char *want)
{
	xr_buf_t name;
	bool     yes;

	if (!json_is_object(v) || !jstr_is(json_object_get(v, "type"), "record"))
		return false;
	xr_buf_init(&name);
	json_full_name(v, ns, &name);
	yes = strcmp(name.data, want) == 0;
	xr_buf_term(&name);
	return yes;
}

/* PostgreSQL's NUMERIC_MAX_PRECISION. */
#define PG_NUMERIC_MAX_PRECISION 1000

/* The Avro types a column value (or array element) can have. */
static const struct {
	const char *type;
	const char *logical;   /* NULL: no logicalType */
	xr_avtype_t at;
} avro_scalars[] = {
	{ "boolean", NULL, XR_AT_BOOLEAN },
	{ "int", NULL, XR_AT_INT },
	{ "int", "date", XR_AT_DATE },
	{ "long", NULL, XR_AT_LONG },
	{ "long", "time-micros", XR_AT_TIME_MICROS },
	{ "long", "timestamp-micros", XR_AT_TIMESTAMP_MICROS },
	{ "long", "local-timestamp-micros", XR_AT_LOCAL_TIMESTAMP_MICROS },
	{ "float", NULL, XR_AT_FLOAT },
	{ "double", NULL, XR_AT_DOUBLE },
	{ "bytes", NULL, XR_AT_BYTES },
	{ "bytes", "decimal", XR_AT_DECIMAL },
	{ "string", NULL, XR_AT_STRING },
	{ "string", "uuid", XR_AT_UUID },
};

/*
 * A scalar type: a primitive name, or an object with "type" and perhaps
 * "logicalType" (decimal with "precision" and "scale").  An unknown logical
 * type is refused rather than read as its underlying type: a timestamp in
 * milliseconds turned into a bare number would be a wrong value, not an
 * error.  Returns 0, or -1 with *why.
 */
static int
scalar_from_json(json_t *v, xr_coltype_t *t, const char **why)
{
	const char *type, *logical = NULL;
	json_t     *jp, *js;
	size_t      i;

	if (json_is_string(v)) {
		type = json_string_value(v);
	} else if (json_is_object(v)) {
		type = jstr(v, "type");
		if (json_object_get(v, "logicalType")) {
			logical = jstr(v, "logicalType");
			if (!logical) {
				*why = "logicalType is not a string";
				return -1;
			}
		}
	} else {
		*why = "not an Avro type";
		return -1;
	}
	if (!type) {
		*why = "not an Avro type";
		return -1;
	}
	for (i = 0; i < sizeof(avro_scalars) / sizeof(avro_scalars[0]); i++) {
		if (strcmp(avro_scalars[i].type, type) != 0)
			continue;
		if (logical ? avro_scalars[i].logical &&
		              strcmp(avro_scalars[i].logical, logical) == 0
		            : !avro_scalars[i].logical)
			break;
	}
	if (i == sizeof(avro_scalars) / sizeof(avro_scalars[0])) {
		*why = logical ? "unsupported logical type" : "unsupported type";
		return -1;
	}
	t->at = avro_scalars[i].at;
	if (t->at != XR_AT_DECIMAL)
		return 0;
	jp = json_object_get(v, "precision");
	js = json_object_get(v, "scale");
	if (!json_is_integer(jp) || (js && !json_is_integer(js))) {
		*why = "decimal precision or scale is not an integer";
		return -1;
	}
	/* PostgreSQL's numeric(p,s) limits; scale defaults to 0. */
	if (json_integer_value(jp) < 1 ||
	    json_integer_value(jp) > PG_NUMERIC_MAX_PRECISION ||
	    (js && (json_integer_value(js) < 0 ||
	            json_integer_value(js) > json_integer_value(jp)))) {
		*why = "decimal precision or scale out of range";
		return -1;
	}
	t->precision = (int)json_integer_value(jp);
	t->scale = js ? (int)json_integer_value(js) : 0;
	return 0;
}

/*
 * The union u's branches from index first on: a value type, optionally
 * followed by the "string" branch.  Sets *value and *has_text.
 */
static bool
value_and_text(json_t *u, size_t first, json_t **value, bool *has_text)
{
	size_t n = json_array_size(u);

	if (n == first + 1) {
		*has_text = false;
	} else if (n == first + 2 && jstr_is(json_array_get(u, first + 1),
	                                      "string")) {
		*has_text = true;
	} else {
		return false;
	}
	*value = json_array_get(u, first);
	return true;
}

/*
 * The type of a Row or Key field: [null,] value [, "string"], where value is
 * a scalar or an array of [null, scalar [, "string"]].  The text branch must
 * be there exactly for decimals and arrays, as xr_pgtype_schema_json makes
 * them.  Returns 0, or -1 with *why.
 */
static int
field_type_from_json(json_t *type, xr_field_t *f, const char **why)
{
	json_t *value = type, *items, *elem;
	bool    elem_text = false;

	f->nullable = false;
	f->has_text_branch = false;
	if (json_is_array(type)) {
		f->nullable = jstr_is(json_array_get(type, 0), "null");
		if (!value_and_text(type, f->nullable ? 1 : 0, &value,
		                    &f->has_text_branch)) {
			*why = "unsupported union";
			return -1;
		}
	}
	if (json_is_object(value) &&
	    jstr_is(json_object_get(value, "type"), "array")) {
		items = json_object_get(value, "items");
		if (!json_is_array(items) ||
		    !jstr_is(json_array_get(items, 0), "null") ||
		    !value_and_text(items, 1, &elem, &elem_text)) {
			*why = "array items are not a union with null first";
			return -1;
		}
		f->type.is_array = true;
		value = elem;
	}
	if (scalar_from_json(value, &f->type, why) != 0)
		return -1;
	if (elem_text != (f->type.is_array && f->type.at == XR_AT_DECIMAL) ||
	    f->has_text_branch != (f->type.is_array ||
	                           f->type.at == XR_AT_DECIMAL)) {
		*why = "unsupported union";
		return -1;
	}
	return 0;
}

/* A field of Row or Key; out is zeroed.  Returns 0, or -1 with errstr. */
static int
field_from_json(json_t *jf, size_t idx, xr_field_t *out, char *errstr,
                size_t errstr_size)
{
	const char *name = jstr(jf, "name"), *why = NULL;
	json_t     *jcol = json_object_get(jf, "xr.column");
	json_t     *jpg = json_object_get(jf, "xr.pg_type");
	const char *pg = jstr(jf, "xr.pg_type");
	size_t      n;

	if (!name) {
		set_err(errstr, errstr_size, "field %zu of the row has no name",
		        idx + 1);
		return -1;
	}
	if ((jcol && !json_is_string(jcol)) || (jpg && !pg)) {
		set_err(errstr, errstr_size, "field \"%s\": xr.column or "
		        "xr.pg_type is not a string", name);
		return -1;
	}
	out->name = dup_or_die(name, strlen(name));
	name = json_is_string(jcol) ? json_string_value(jcol) : name;
	out->column = dup_or_die(name, strlen(name));
	out->type.typmod = -1;
	if (pg) {
		n = strlen(pg);
		if (n >= sizeof(out->type.pgname)) {
			set_err(errstr, errstr_size, "field \"%s\": xr.pg_type is "
			        "longer than %zu bytes", out->name,
			        sizeof(out->type.pgname) - 1);
			return -1;
		}
		memcpy(out->type.pgname, pg, n + 1);
	}
	if (field_type_from_json(json_object_get(jf, "type"), out, &why) != 0) {
		set_err(errstr, errstr_size, "field \"%s\": %s", out->name, why);
		return -1;
	}
	/* json and jsonb are plain strings in Avro: xr.pg_type tells. */
	if (out->type.at == XR_AT_STRING && pg) {
		n = strlen(pg);
		if (out->type.is_array && n >= 2 && strcmp(pg + n - 2, "[]") == 0)
			n -= 2;
		if ((n == 4 && strncmp(pg, "json", 4) == 0) ||
		    (n == 5 && strncmp(pg, "jsonb", 5) == 0))
			out->type.at = XR_AT_JSON;
	}
	return 0;
}

static void
free_fields(xr_field_t *fields, int n)
{
	int i;

	if (!fields)
		return;
	for (i = 0; i < n; i++) {
		free(fields[i].name);
		free(fields[i].column);
	}
	free(fields);
}

/*
 * The record xregion.Row, defined in the union of one of the envelope's
 * fields (before, as xr_schema_build writes it, or after), or NULL.
 */
static json_t *
find_row_record(json_t *root)
{
	json_t *fields = json_object_get(root, "fields"), *type, *b;
	size_t  i, k;

	for (i = 0; i < json_array_size(fields); i++) {
		type = json_object_get(json_array_get(fields, i), "type");
		for (k = 0; k < json_array_size(type); k++) {
			b = json_array_get(type, k);
			if (is_record_named(b, "xregion", "xregion.Row"))
				return b;
		}
	}
	return NULL;
}

/* Fills s->is_envelope, is_key and row_fields from s->json. */
static int
describe_fields(xr_schema_t *s, char *errstr, size_t errstr_size)
{
	json_error_t jerr;
	json_t      *root, *record, *fields;
	size_t       i, n;
	int          rc = -1;

	root = json_loadb(s->json.data, s->json.len,
	                  JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
	                  &jerr);
	if (!root) {
		set_err(errstr, errstr_size, "cannot read schema JSON: %s "
		        "(line %d, column %d)", jerr.text, jerr.line, jerr.column);
		return -1;
	}
	if (is_record_named(root, NULL, "xregion.ChangeEvent")) {
		s->is_envelope = true;
		record = find_row_record(root);
		if (!record) {
			set_err(errstr, errstr_size, "envelope schema defines no "
			        "record xregion.Row");
			goto done;
		}
	} else if (is_record_named(root, NULL, "xregion.Key")) {
		s->is_key = true;
		record = root;
	} else {
		rc = 0;   /* not ours: no row fields */
		goto done;
	}
	fields = json_object_get(record, "fields");
	n = json_array_size(fields);
	if (!json_is_array(fields) || n > INT32_MAX) {
		set_err(errstr, errstr_size, "record %s has no field list",
		        s->is_key ? "xregion.Key" : "xregion.Row");
		goto done;
	}
	if (n > 0) {
		s->row_fields = calloc(n, sizeof(*s->row_fields));
		if (!s->row_fields) {
			fputs("xregion: out of memory\n", stderr);
			abort();
		}
	}
	for (i = 0; i < n; i++) {
		s->n_row_fields = (int)i + 1;
		if (field_from_json(json_array_get(fields, i), i, &s->row_fields[i],
		                    errstr, errstr_size) != 0)
			goto done;
	}
	rc = 0;
done:
	json_decref(root);
	return rc;
}

/* ------------------------------------------------------------------------
 * Schema objects
 */

static xr_schema_t *
schema_new(void)
{
	xr_schema_t *s = calloc(1, sizeof(*s));

	if (!s) {
		fputs("xregion: out of memory\n", stderr);
		abort();
	}
	xr_buf_init(&s->json);
	xr_buf_init(&s->canonical);
	return s;
}

void
xr_schema_destroy(xr_schema_t *s)
{
	if (!s)
		return;
	if (s->iface)
		avro_value_iface_decref(s->iface);
	if (s->schema)
		(void)avro_schema_decref(s->schema);
	free_fields(s->row_fields, s->n_row_fields);
	xr_buf_term(&s->json);
	xr_buf_term(&s->canonical);
	free(s);
}

/*
 * Writes named type t's full name to out as avro-c 1.11 gives it
 * (schema.c): a dotted name is full already; else the type's "namespace"
 * ("" for none), else the enclosing one, parent_ns.  Returns -1 when t
 * has no name (avro-c refuses it before making anything).
 */
static int
named_fullname(json_t *t, const char *parent_ns, xr_buf_t *out)
{
	const char *name = json_string_value(json_object_get(t, "name"));
	json_t     *jns = json_object_get(t, "namespace");
	const char *ns = json_is_string(jns) ? json_string_value(jns) : parent_ns;

	if (!name)
		return -1;
	xr_buf_reset(out);
	if (!strchr(name, '.') && ns && *ns)
		xr_buf_printf(out, "%s.", ns);
	xr_buf_puts(out, name);
	return 0;
}

/*
 * Walks schema JSON t the way avro-c does and fails on a named type
 * (record, enum, fixed) whose full name is defined a second time.  avro-c
 * refuses that too, but leaks the type it was making: a schema from
 * outside (the schemas topic, a registry) must not get that far.  names
 * holds the full names seen, NUL-separated.
 */
static int
names_once(json_t *t, const char *parent_ns, xr_buf_t *names, char *errstr,
           size_t errstr_size)
{
	json_t     *fields;
	xr_buf_t    full;
	const char *type, *p;
	char       *dot;
	size_t      i;
	int         rc = 0;

	if (json_is_array(t)) {   /* a union */
		for (i = 0; i < json_array_size(t) && rc == 0; i++)
			rc = names_once(json_array_get(t, i), parent_ns, names, errstr,
			                errstr_size);
		return rc;
	}
	if (!json_is_object(t) ||
	    !(type = json_string_value(json_object_get(t, "type"))))
		return 0;
	if (strcmp(type, "array") == 0)
		return names_once(json_object_get(t, "items"), parent_ns, names,
		                  errstr, errstr_size);
	if (strcmp(type, "map") == 0)
		return names_once(json_object_get(t, "values"), parent_ns, names,
		                  errstr, errstr_size);
	if (strcmp(type, "record") != 0 && strcmp(type, "enum") != 0 &&
	    strcmp(type, "fixed") != 0)
		return 0;

	xr_buf_init(&full);
	if (named_fullname(t, parent_ns, &full) != 0) {
		xr_buf_term(&full);
		return 0;
	}
	for (p = names->data; p < names->data + names->len; p += strlen(p) + 1)
		if (strcmp(p, full.data) == 0) {
			set_err(errstr, errstr_size, "cannot parse schema: named type "
			        "%.200s is defined twice", full.data);
			xr_buf_term(&full);
			return -1;
		}
	xr_buf_append(names, full.data, full.len + 1);
	fields = json_object_get(t, "fields");
	if (strcmp(type, "record") == 0 && json_is_array(fields)) {
		/* The fields' namespace: the record's, what precedes its name. */
		dot = strrchr(full.data, '.');
		if (dot)
			*dot = '\0';
		for (i = 0; i < json_array_size(fields) && rc == 0; i++)
			rc = names_once(json_object_get(json_array_get(fields, i),
			                                "type"),
			                dot ? full.data : NULL, names, errstr,
			                errstr_size);
	}
	xr_buf_term(&full);
	return rc;
}

/* names_once() over the whole of json[0..len); 0 when it does not parse. */
static int
check_names_once(const char *json, size_t len, char *errstr,
                 size_t errstr_size)
{
	json_error_t jerr;
	json_t      *root = json_loadb(json, len, JSON_DECODE_ANY, &jerr);
	xr_buf_t     names;
	int          rc;

	if (!root)
		return 0;   /* avro-c says why */
	xr_buf_init(&names);
	rc = names_once(root, NULL, &names, errstr, errstr_size);
	xr_buf_term(&names);
	json_decref(root);
	return rc;
}

/*
 * Parses s->json with avro-c and fills in the canonical form, fingerprint
 * and generic class, then reads the row fields with jansson.  With expect
 * set, the canonical form must equal it: the builder writes both forms
 * itself, and this cross-checks the two.
 */
static int
schema_finish(xr_schema_t *s, const char *expect, char *errstr,
              size_t errstr_size)
{
	if (check_names_once(s->json.data, s->json.len, errstr,
	                     errstr_size) != 0)
		return -1;
	if (avro_schema_from_json_length(s->json.data, s->json.len,
	                                 &s->schema) != 0) {
		s->schema = NULL;
		set_err(errstr, errstr_size, "cannot parse schema: %s",
		        avro_strerror());
		return -1;
	}
	xr_buf_reset(&s->canonical);
	if (canon_walk(s->schema, &s->canonical, errstr, errstr_size) != 0)
		return -1;
	if (expect && strcmp(expect, s->canonical.data) != 0) {
		set_err(errstr, errstr_size, "internal error: built canonical form "
		        "differs from avro-c's reading of the schema");
		return -1;
	}
	s->fingerprint = xr_avro_crc64(s->canonical.data, s->canonical.len);
	s->iface = avro_generic_class_from_schema(s->schema);
	if (!s->iface) {
		set_err(errstr, errstr_size, "cannot make a generic class: %s",
		        avro_strerror());
		return -1;
	}
	return describe_fields(s, errstr, errstr_size);
}

int
xr_schema_from_json(const char *json, size_t len, xr_schema_t **out,
                    char *errstr, size_t errstr_size)
{
	xr_schema_t *s;

	*out = NULL;
	if (!json || len == 0) {
		set_err(errstr, errstr_size, "empty schema");
		return -1;
	}
	s = schema_new();
	xr_buf_append(&s->json, json, len);
	if (schema_finish(s, NULL, errstr, errstr_size) != 0) {
		xr_schema_destroy(s);
		return -1;
	}
	*out = s;
	return 0;
}

/* ------------------------------------------------------------------------
 * Building the envelope and key schemas
 */

/* The envelope up to the Row record's fields, and from there on. */
static const char env_head_full[] =
	"{\"type\":\"record\",\"name\":\"xregion.ChangeEvent\","
	"\"doc\":\"One row change on a PostgreSQL table, as xregion publishes it.\","
	"\"fields\":["
	"{\"name\":\"event_id\",\"type\":{\"type\":\"string\",\"logicalType\":\"uuid\"},"
	"\"doc\":\"Unique identifier of this event.\"},"
	"{\"name\":\"op\",\"type\":{\"type\":\"enum\",\"name\":\"xregion.Op\","
	"\"symbols\":[\"insert\",\"update\",\"delete\",\"truncate\",\"snapshot_read\"]},"
	"\"doc\":\"The kind of change; snapshot_read is a row read by the initial copy of the table.\"},"
	"{\"name\":\"produced_at\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"},"
	"\"doc\":\"When the producer built this event.\"},"
	"{\"name\":\"source\",\"type\":{\"type\":\"record\",\"name\":\"xregion.Source\","
	"\"doc\":\"Position and identity of a change on its source database.\",\"fields\":["
	"{\"name\":\"region\",\"type\":\"string\",\"doc\":\"Region of the producer that read the change.\"},"
	"{\"name\":\"database\",\"type\":\"string\",\"doc\":\"Name of the source database.\"},"
	"{\"name\":\"schema\",\"type\":\"string\",\"doc\":\"Schema of the table.\"},"
	"{\"name\":\"table\",\"type\":\"string\",\"doc\":\"Name of the table.\"},"
	"{\"name\":\"lsn\",\"type\":\"long\",\"doc\":\"WAL position (LSN) of the change.\"},"
	"{\"name\":\"commit_lsn\",\"type\":\"long\",\"doc\":\"WAL position (LSN) of the commit of the change's transaction.\"},"
	"{\"name\":\"txid\",\"type\":\"long\",\"doc\":\"Id of the change's transaction on the source database.\"},"
	"{\"name\":\"commit_ts\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"},"
	"\"doc\":\"Commit time of the change's transaction.\"},"
	"{\"name\":\"origin\",\"type\":[\"null\",\"string\"],\"default\":null,"
	"\"doc\":\"Replication origin of the transaction, null when it was not replicated from elsewhere.\"}"
	"]},\"doc\":\"Where and when the change was made.\"},"
	"{\"name\":\"before\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"xregion.Row\","
	"\"doc\":\"The table's columns. A field whose name had to be changed to be a valid Avro name keeps "
	"the column's name in xr.column; xr.pg_type is the column's PostgreSQL type.\","
	"\"fields\":[";
static const char env_tail_full[] =
	"]}],\"default\":null,"
	"\"doc\":\"The row before the change, as far as the table's replica identity sends it (update, delete); otherwise null.\"},"
	"{\"name\":\"after\",\"type\":[\"null\",\"xregion.Row\"],\"default\":null,"
	"\"doc\":\"The row after the change (insert, update, snapshot_read); otherwise null.\"},"
	"{\"name\":\"unchanged\",\"type\":{\"type\":\"array\",\"items\":\"string\"},\"default\":[],"
	"\"doc\":\"Columns (by PostgreSQL name) whose unchanged TOASTed value was not sent: their fields in after are null.\"},"
	"{\"name\":\"vclock\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"xregion.VClock\","
	"\"doc\":\"The version of a write to a table in conflict mode vclock.\",\"fields\":["
	"{\"name\":\"hlc\",\"type\":\"long\",\"doc\":\"Hybrid clock of the write: microseconds since the Unix epoch, "
	"later than every clock of the row the writer had seen.\"},"
	"{\"name\":\"vector\",\"type\":{\"type\":\"map\",\"values\":\"long\"},"
	"\"doc\":\"Version vector of the row after the write: how many of each region's writes it includes.\"},"
	"{\"name\":\"before_hlc\",\"type\":[\"null\",\"long\"],\"default\":null,"
	"\"doc\":\"For an update that changed the key: the clock of the old key's tombstone.\"},"
	"{\"name\":\"before_vector\",\"type\":[\"null\",{\"type\":\"map\",\"values\":\"long\"}],\"default\":null,"
	"\"doc\":\"For an update that changed the key: the version vector of the old key's tombstone.\"}"
	"]}],\"default\":null,"
	"\"doc\":\"Vector-clock version of the write for tables in conflict mode vclock; null otherwise.\"},"
	"{\"name\":\"tx_index\",\"type\":[\"null\",\"long\"],\"default\":null,"
	"\"doc\":\"The change's place among the changes its transaction published, from 0 (the copies of a "
	"truncate share one); the transaction's end record counts its events. Null for what a backfill "
	"publishes.\"}"
	"]}";

static const char env_head_canon[] =
	"{\"name\":\"xregion.ChangeEvent\",\"type\":\"record\",\"fields\":["
	"{\"name\":\"event_id\",\"type\":\"string\"},"
	"{\"name\":\"op\",\"type\":{\"name\":\"xregion.Op\",\"type\":\"enum\","
	"\"symbols\":[\"insert\",\"update\",\"delete\",\"truncate\",\"snapshot_read\"]}},"
	"{\"name\":\"produced_at\",\"type\":\"long\"},"
	"{\"name\":\"source\",\"type\":{\"name\":\"xregion.Source\",\"type\":\"record\",\"fields\":["
	"{\"name\":\"region\",\"type\":\"string\"},"
	"{\"name\":\"database\",\"type\":\"string\"},"
	"{\"name\":\"schema\",\"type\":\"string\"},"
	"{\"name\":\"table\",\"type\":\"string\"},"
	"{\"name\":\"lsn\",\"type\":\"long\"},"
	"{\"name\":\"commit_lsn\",\"type\":\"long\"},"
	"{\"name\":\"txid\",\"type\":\"long\"},"
	"{\"name\":\"commit_ts\",\"type\":\"long\"},"
	"{\"name\":\"origin\",\"type\":[\"null\",\"string\"]}]}},"
	"{\"name\":\"before\",\"type\":[\"null\",{\"name\":\"xregion.Row\",\"type\":\"record\",\"fields\":[";
static const char env_tail_canon[] =
	"]}]},"
	"{\"name\":\"after\",\"type\":[\"null\",\"xregion.Row\"]},"
	"{\"name\":\"unchanged\",\"type\":{\"type\":\"array\",\"items\":\"string\"}},"
	"{\"name\":\"vclock\",\"type\":[\"null\",{\"name\":\"xregion.VClock\",\"type\":\"record\",\"fields\":["
	"{\"name\":\"hlc\",\"type\":\"long\"},"
	"{\"name\":\"vector\",\"type\":{\"type\":\"map\",\"values\":\"long\"}},"
	"{\"name\":\"before_hlc\",\"type\":[\"null\",\"long\"]},"
	"{\"name\":\"before_vector\",\"type\":[\"null\",{\"type\":\"map\",\"values\":\"long\"}]}]}]},"
	"{\"name\":\"tx_index\",\"type\":[\"null\",\"long\"]}]}";

static const char key_head_full[] =
	"{\"type\":\"record\",\"name\":\"xregion.Key\","
	"\"doc\":\"The primary-key columns of the changed row.\",\"fields\":[";
static const char key_head_canon[] =
	"{\"name\":\"xregion.Key\",\"type\":\"record\",\"fields\":[";
static const char key_tail[] = "]}";

static bool
is_name_start(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_';
}

static bool
is_name_char(char ch)
{
	return is_name_start(ch) || (ch >= '0' && ch <= '9');
}

static bool
valid_avro_name(const char *s)
{
	if (!is_name_start(*s))
		return false;
	while (*++s)
		if (!is_name_char(*s))
			return false;
	return true;
}

static bool
name_taken(char **names, int n, const char *name)
{
	int i;

	for (i = 0; i < n; i++)
		if (names[i] && strcmp(names[i], name) == 0)
			return true;
	return false;
}

/*
 * Field names for all columns.  Valid names are kept; the others become
 * [A-Za-z_][A-Za-z0-9_]* with one '_' per offending character and a '_'
 * before a leading digit, then "_2", "_3"... until unique.  Valid names are
 * placed first so that a mangled name never displaces one, and the key
 * schema uses the same names as the value schema because both are derived
 * from all of the table's columns.
 */
static char **
field_names(const xr_schema_col_t *cols, int ncols)
{
	char   **names = calloc((size_t)ncols + 1, sizeof(*names));
	xr_buf_t b, cand;
	int      i, k;

	if (!names) {
		fputs("xregion: out of memory\n", stderr);
		abort();
	}
	for (i = 0; i < ncols; i++)
		if (valid_avro_name(cols[i].name))
			names[i] = dup_or_die(cols[i].name, strlen(cols[i].name));

	xr_buf_init(&b);
	xr_buf_init(&cand);
	for (i = 0; i < ncols; i++) {
		const unsigned char *p = (const unsigned char *)cols[i].name;

		if (names[i])
			continue;
		xr_buf_reset(&b);
		if (!is_name_start((char)*p))
			xr_buf_putc(&b, '_');
		for (; *p; p++) {
			if ((*p & 0xC0) == 0x80)
				continue;   /* one '_' per UTF-8 character */
			xr_buf_putc(&b, is_name_char((char)*p) ? (char)*p : '_');
		}
		xr_buf_reset(&cand);
		xr_buf_append(&cand, b.data, b.len);
		for (k = 2; name_taken(names, ncols, cand.data); k++) {
			xr_buf_reset(&cand);
			xr_buf_printf(&cand, "%s_%d", b.data, k);
		}
		names[i] = dup_or_die(cand.data, cand.len);
	}
	xr_buf_term(&b);
	xr_buf_term(&cand);
	return names;
}

static void
free_names(char **names, int n)
{
	int i;

	if (!names)
		return;
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* One field of Row or Key, in both forms. */
static void
field_json(const xr_schema_col_t *col, const char *fname, bool key,
           xr_buf_t *full, xr_buf_t *canon)
{
	xr_buf_puts(full, "{\"name\":");
	xr_buf_json_str(full, fname, strlen(fname));
	xr_buf_puts(full, ",\"type\":");
	xr_buf_puts(canon, "{\"name\":");
	xr_buf_json_str(canon, fname, strlen(fname));
	xr_buf_puts(canon, ",\"type\":");
	if (key) {
		xr_pgtype_key_schema_json(col->type, false, full);
		xr_pgtype_key_schema_json(col->type, true, canon);
	} else {
		xr_pgtype_schema_json(col->type, false, full);
		xr_pgtype_schema_json(col->type, true, canon);
		xr_buf_puts(full, ",\"default\":null");
	}
	if (strcmp(fname, col->name) != 0) {
		xr_buf_puts(full, ",\"xr.column\":");
		xr_buf_json_str(full, col->name, strlen(col->name));
	}
	xr_buf_puts(full, ",\"xr.pg_type\":");
	xr_buf_json_str(full, col->type->pgname,
	                strnlen(col->type->pgname, sizeof(col->type->pgname)));
	xr_buf_putc(full, '}');
	xr_buf_putc(canon, '}');
}

/*
 * The row fields read back from the built JSON must describe the columns:
 * what a consumer will make of the schema is what the producer meant.
 */
static int
check_fields(const xr_schema_t *s, const xr_schema_col_t *cols, int ncols,
             bool key, char *errstr, size_t errstr_size)
{
	const xr_field_t *f;
	int               i, k = 0;

	for (i = 0; i < ncols; i++) {
		const xr_coltype_t *t = cols[i].type;

		if (key && !cols[i].is_key)
			continue;
		if (k >= s->n_row_fields)
			goto differ;
		f = &s->row_fields[k++];
		if (strcmp(f->column, cols[i].name) != 0 || f->nullable == key ||
		    f->type.at != t->at || f->type.is_array != t->is_array ||
		    f->type.precision != t->precision ||
		    f->type.scale != t->scale ||
		    strncmp(f->type.pgname, t->pgname, sizeof(t->pgname)) != 0) {
			set_err(errstr, errstr_size, "internal error: the schema's "
			        "field \"%s\" reads back as another type than column "
			        "%d's", f->name, i + 1);
			return -1;
		}
	}
	if (k == s->n_row_fields && (key ? s->is_key : s->is_envelope))
		return 0;
differ:
	set_err(errstr, errstr_size, "internal error: the schema's fields read "
	        "back differ from the columns");
	return -1;
}

int
xr_schema_build(const xr_schema_col_t *cols, int ncols, bool key,
                xr_schema_t **out, char *errstr, size_t errstr_size)
{
	xr_schema_t *s;
	xr_buf_t     canon;
	char       **names;
	int          i, nfields = 0, rc;

	*out = NULL;
	if (ncols < 0 || (ncols > 0 && !cols)) {
		set_err(errstr, errstr_size, "invalid column list");
		return -1;
	}
	for (i = 0; i < ncols; i++) {
		if (!cols[i].name || !cols[i].type) {
			set_err(errstr, errstr_size, "column %d has no name or type",
			        i + 1);
			return -1;
		}
	}

	names = field_names(cols, ncols);
	s = schema_new();
	xr_buf_init(&canon);
	xr_buf_puts(&s->json, key ? key_head_full : env_head_full);
	xr_buf_puts(&canon, key ? key_head_canon : env_head_canon);
	for (i = 0; i < ncols; i++) {
		if (key && !cols[i].is_key)
			continue;
		if (nfields++) {
			xr_buf_putc(&s->json, ',');
			xr_buf_putc(&canon, ',');
		}
		field_json(&cols[i], names[i], key, &s->json, &canon);
	}
	xr_buf_puts(&s->json, key ? key_tail : env_tail_full);
	xr_buf_puts(&canon, key ? key_tail : env_tail_canon);
	free_names(names, ncols);

	rc = schema_finish(s, canon.data, errstr, errstr_size);
	xr_buf_term(&canon);
	if (rc == 0)
		rc = check_fields(s, cols, ncols, key, errstr, errstr_size);
	if (rc != 0) {
		xr_schema_destroy(s);
		return -1;
	}
	*out = s;
	return 0;
}

/* ------------------------------------------------------------------------
 * Single-object encoding
 */

int
xr_avro_encode(const xr_schema_t *s, avro_value_t *value, xr_buf_t *out,
               char *errstr, size_t errstr_size)
{
	avro_schema_t vs = avro_value_get_schema(value);
	avro_writer_t w;
	size_t        size, i;
	char         *dst;
	int           rc;

	if (!vs || (vs != s->schema && !avro_schema_equal(vs, s->schema))) {
		set_err(errstr, errstr_size, "value is not of the schema's type");
		return -1;
	}
	if (avro_value_sizeof(value, &size) != 0) {
		set_err(errstr, errstr_size, "cannot size Avro value: %s",
		        avro_strerror());
		return -1;
	}
	if (size > (size_t)INT64_MAX - XR_AVRO_SO_HEADER_LEN) {
		set_err(errstr, errstr_size, "Avro value too large");
		return -1;
	}
	xr_buf_reserve(out, XR_AVRO_SO_HEADER_LEN + size);
	dst = out->data + out->len;
	dst[0] = (char)XR_AVRO_SO_MAGIC0;
	dst[1] = (char)XR_AVRO_SO_MAGIC1;
	for (i = 0; i < 8; i++)
		dst[2 + i] = (char)((s->fingerprint >> (8 * i)) & 0xff);

	w = avro_writer_memory(dst + XR_AVRO_SO_HEADER_LEN, (int64_t)size);
	if (!w) {
		set_err(errstr, errstr_size, "cannot make Avro writer: %s",
		        avro_strerror());
		out->data[out->len] = '\0';
		return -1;
	}
	rc = avro_value_write(w, value);
	if (rc != 0) {
		set_err(errstr, errstr_size, "cannot encode Avro value: %s",
		        avro_strerror());
	} else if (avro_writer_tell(w) != (int64_t)size) {
		set_err(errstr, errstr_size, "Avro value encoded to %lld bytes, "
		        "sized as %zu", (long long)avro_writer_tell(w), size);
		rc = -1;
	}
	avro_writer_free(w);
	if (rc != 0) {
		out->data[out->len] = '\0';   /* out keeps its old content */
		return -1;
	}
	out->len += XR_AVRO_SO_HEADER_LEN + size;
	out->data[out->len] = '\0';
	return 0;
}

int
xr_avro_so_header(const void *msg, size_t len, uint64_t *fingerprint,
                  const void **body, size_t *body_len,
                  char *errstr, size_t errstr_size)
{
	const unsigned char *p = msg;
	uint64_t fp = 0;
	int      i;

	if (!msg || len < XR_AVRO_SO_HEADER_LEN) {
		set_err(errstr, errstr_size, "message of %zu bytes is shorter than "
		        "the single-object header", len);
		return -1;
	}
	if (p[0] != XR_AVRO_SO_MAGIC0 || p[1] != XR_AVRO_SO_MAGIC1) {
		set_err(errstr, errstr_size, "not Avro single-object encoding "
		        "(starts with %02x %02x)", p[0], p[1]);
		return -1;
	}
	for (i = 7; i >= 0; i--)
		fp = (fp << 8) | p[2 + i];
	*fingerprint = fp;
	*body = p + XR_AVRO_SO_HEADER_LEN;
	*body_len = len - XR_AVRO_SO_HEADER_LEN;
	return 0;
}


/*
 * Walks an Avro binary datum against its schema without allocating,
 * checking what avro-c 1.11 does not before it allocates: that every
 * string, bytes and fixed length and every array or map block fits in the
 * bytes that remain (avro-c allocates a claimed length first: six bytes can
 * claim a gigabyte), that varints end, and that union and enum indexes are
 * in range.  Items of an array or map must take at least one byte each,
 * which every xregion schema satisfies.  Returns 0, or -1 with errstr.
 */
typedef struct vcur_s {
	const unsigned char *p;
	size_t               left;
} vcur_t;

static int
v_long(vcur_t *c, int64_t *out)
{
	uint64_t v = 0;
	int      shift = 0;

	for (;;) {
		unsigned char b;

		if (c->left == 0 || shift > 63)
			return -1;
		b = *c->p++;
		c->left--;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
		shift += 7;
	}
	*out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
	return 0;
}

static int
v_skip(vcur_t *c, size_t n)
{
	if (n > c->left)
		return -1;
	c->p += n;
	c->left -= n;
	return 0;
}

static int
v_walk(avro_schema_t s, vcur_t *c, int depth)
{
	int64_t n;
	size_t  i;

	if (depth > 64)
		return -1;
	switch (avro_typeof(s)) {
	case AVRO_NULL:
		return 0;
	case AVRO_BOOLEAN:
		return v_skip(c, 1);
	case AVRO_INT32:
	case AVRO_INT64:
		return v_long(c, &n);
	case AVRO_FLOAT:
		return v_skip(c, 4);
	case AVRO_DOUBLE:
		return v_skip(c, 8);
	case AVRO_STRING:
	case AVRO_BYTES:
		if (v_long(c, &n) || n < 0)
			return -1;
		return v_skip(c, (size_t)n);
	case AVRO_FIXED:
		return v_skip(c, (size_t)avro_schema_fixed_size(s));
	case AVRO_ENUM:
		if (v_long(c, &n) || n < 0 ||
		    n >= avro_schema_enum_number_of_symbols(s))
			return -1;
		return 0;
	case AVRO_UNION:
		if (v_long(c, &n) || n < 0 || (size_t)n >= avro_schema_union_size(s))
			return -1;
		return v_walk(avro_schema_union_branch(s, (int)n), c, depth + 1);
	case AVRO_RECORD:
		for (i = 0; i < avro_schema_record_size(s); i++)
			if (v_walk(avro_schema_record_field_get_by_index(s, (int)i), c,
			           depth + 1))
				return -1;
		return 0;
	case AVRO_ARRAY:
	case AVRO_MAP:
		for (;;) {
			int64_t k;

			if (v_long(c, &n))
				return -1;
			if (n == 0)
				return 0;
			if (n < 0) {
				int64_t bytes;

				if (n == INT64_MIN || v_long(c, &bytes) || bytes < 0)
					return -1;
				n = -n;
			}
			if ((uint64_t)n > c->left)
				return -1;
			for (k = 0; k < n; k++) {
				if (avro_typeof(s) == AVRO_MAP) {
					int64_t kl;

					if (v_long(c, &kl) || kl < 0 || v_skip(c, (size_t)kl))
						return -1;
					if (v_walk(avro_schema_map_values(s), c, depth + 1))
						return -1;
				} else if (v_walk(avro_schema_array_items(s), c, depth + 1)) {
					return -1;
				}
			}
		}
	case AVRO_LINK:
		return v_walk(avro_schema_link_target(s), c, depth + 1);
	}
	return -1;
}

int
xr_avro_validate(const xr_schema_t *s, const void *body, size_t len,
                 char *errstr, size_t errstr_size)
{
	vcur_t c = { body, len };

	if (v_walk(s->schema, &c, 0) != 0) {
		set_err(errstr, errstr_size,
		        "cannot decode Avro datum: a length, count or index does not "
		        "fit the %zu bytes of the message", len);
		return -1;
	}
	if (c.left != 0) {
		set_err(errstr, errstr_size, "Avro datum leaves bytes over");
		return -1;
	}
	return 0;
}

int
xr_avro_decode(const xr_schema_t *s, const void *body, size_t len,
               avro_value_t *out, char *errstr, size_t errstr_size)
{
	avro_reader_t r;

	if (len > (size_t)INT64_MAX) {
		set_err(errstr, errstr_size, "Avro datum too large");
		return -1;
	}
	if (xr_avro_validate(s, body, len, errstr, errstr_size))
		return -1;
	r = avro_reader_memory(body, (int64_t)len);
	if (!r) {
		set_err(errstr, errstr_size, "cannot make Avro reader: %s",
		        avro_strerror());
		return -1;
	}
	if (avro_generic_value_new(s->iface, out) != 0) {
		set_err(errstr, errstr_size, "cannot make Avro value: %s",
		        avro_strerror());
		avro_reader_free(r);
		return -1;
	}
	if (avro_value_read(r, out) != 0) {
		set_err(errstr, errstr_size, "cannot decode Avro datum: %s",
		        avro_strerror());
		goto fail;
	}
	/* (No bytes are left over: xr_avro_validate walked this schema over
	 * exactly len.  avro-c's end-of-data test, a one-byte read that fails,
	 * would format an error message for every datum.) */
	avro_reader_free(r);
	return 0;
fail:
	avro_value_decref(out);
	avro_reader_free(r);
	return -1;
}


/*
 * The envelope read in place: one pass over the datum in field order, every
 * length bounds-checked as xr_avro_validate() does, nothing allocated.
 */
static int
v_span(vcur_t *c, const unsigned char *base, xr_span_t *out)
{
	int64_t n;

	if (v_long(c, &n) || n < 0 || (uint64_t)n > c->left)
		return -1;
	out->off = (size_t)(c->p - base);
	out->len = (size_t)n;
	return v_skip(c, (size_t)n);
}

/* The schema behind a link, else s. */
static avro_schema_t
v_deref(avro_schema_t s)
{
	while (s && avro_typeof(s) == AVRO_LINK)
		s = avro_schema_link_target(s);
	return s;
}

/* A union [null, X]: its branch, and for X the span X's datum takes. */
static int
v_nullable(vcur_t *c, avro_schema_t u, const unsigned char *base, bool *has,
           xr_span_t *span)
{
	int64_t n;
	const unsigned char *start;

	u = v_deref(u);
	if (!u || avro_typeof(u) != AVRO_UNION || avro_schema_union_size(u) != 2 ||
	    v_long(c, &n) || n < 0 || n > 1)
		return -1;
	*has = n == 1;
	start = c->p;
	if (n == 1 && v_walk(avro_schema_union_branch(u, 1), c, 1))
		return -1;
	if (span) {
		span->off = (size_t)(start - base);
		span->len = (size_t)(c->p - start);
	}
	return 0;
}

int
xr_avro_env_view(const xr_schema_t *s, const void *body, size_t len,
                 xr_env_view_t *v, char *errstr, size_t errstr_size)
{
	const unsigned char *base = body;
	vcur_t        c = { body, len };
	avro_schema_t env = s->schema, src, f;
	size_t        nf, i;
	int64_t       n;
	const char   *what = "event_id";

	memset(v, 0, sizeof(*v));
	v->body = base;
	v->len = len;
	nf = avro_schema_record_size(env);
	if (!s->is_envelope || nf < XR_ENV_VCLOCK)
		goto bad;
	if (v_span(&c, base, &v->event_id))
		goto bad;
	what = "op";
	f = v_deref(avro_schema_record_field_get_by_index(env, XR_ENV_OP));
	if (!f || avro_typeof(f) != AVRO_ENUM || v_long(&c, &n) || n < 0 ||
	    n > XR_OP_SNAPSHOT_READ || n >= avro_schema_enum_number_of_symbols(f))
		goto bad;
	v->op = (xr_op_t)n;
	what = "produced_at";
	if (v_long(&c, &v->produced_at))
		goto bad;
	what = "source";
	src = v_deref(avro_schema_record_field_get_by_index(env, XR_ENV_SOURCE));
	if (!src || avro_typeof(src) != AVRO_RECORD ||
	    avro_schema_record_size(src) != XR_SRC_NFIELDS ||
	    v_span(&c, base, &v->region) || v_span(&c, base, &v->database) ||
	    v_span(&c, base, &v->schema) || v_span(&c, base, &v->table) ||
	    v_long(&c, &v->lsn) || v_long(&c, &v->commit_lsn) ||
	    v_long(&c, &v->txid) || v_long(&c, &v->commit_ts) ||
	    v_long(&c, &n) || n < 0 || n > 1)
		goto bad;
	v->has_origin = n == 1;
	if (v->has_origin && v_span(&c, base, &v->origin))
		goto bad;
	what = "before";
	if (v_nullable(&c, avro_schema_record_field_get_by_index(env,
	                                                         XR_ENV_BEFORE),
	               base, &v->has_before, &v->before))
		goto bad;
	what = "after";
	if (v_nullable(&c, avro_schema_record_field_get_by_index(env,
	                                                         XR_ENV_AFTER),
	               base, &v->has_after, &v->after))
		goto bad;
	what = "unchanged";
	v->unchanged.off = (size_t)(c.p - base);
	if (v_walk(avro_schema_record_field_get_by_index(env, XR_ENV_UNCHANGED),
	           &c, 1))
		goto bad;
	v->unchanged.len = (size_t)(c.p - base) - v->unchanged.off;
	if (nf > XR_ENV_VCLOCK) {
		avro_schema_t vc;

		what = "vclock";
		f = v_deref(avro_schema_record_field_get_by_index(env,
		                                                  XR_ENV_VCLOCK));
		if (!f || avro_typeof(f) != AVRO_UNION ||
		    avro_schema_union_size(f) != 2 || v_long(&c, &n) || n < 0 ||
		    n > 1)
			goto bad;
		v->has_vclock = n == 1;
		vc = v_deref(avro_schema_union_branch(f, 1));
		if (v->has_vclock) {
			if (!vc || avro_typeof(vc) != AVRO_RECORD ||
			    avro_schema_record_size(vc) < 4 ||
			    v_long(&c, &v->vc_hlc) ||
			    v_walk(avro_schema_record_field_get_by_index(vc, 1), &c, 1) ||
			    v_long(&c, &n) || n < 0 || n > 1)
				goto bad;
			v->has_vc_before = n == 1;
			if (v->has_vc_before && v_long(&c, &v->vc_before_hlc))
				goto bad;
			for (i = 3; i < avro_schema_record_size(vc); i++)
				if (v_walk(avro_schema_record_field_get_by_index(vc, (int)i),
				           &c, 1))
					goto bad;
		}
		if (nf > XR_ENV_TX_INDEX) {
			what = "tx_index";
			f = v_deref(avro_schema_record_field_get_by_index(env,
			                                                  XR_ENV_TX_INDEX));
			if (!f || avro_typeof(f) != AVRO_UNION ||
			    avro_schema_union_size(f) != 2 || v_long(&c, &n) || n < 0 ||
			    n > 1)
				goto bad;
			v->has_tx_index = n == 1;
			if (v->has_tx_index && v_long(&c, &v->tx_index))
				goto bad;
		}
		/* Fields of later releases. */
		for (i = XR_ENV_TX_INDEX + 1; i < nf; i++)
			if (v_walk(avro_schema_record_field_get_by_index(env, (int)i),
			           &c, 1))
				goto bad;
	}
	if (c.left != 0) {
		set_err(errstr, errstr_size, "Avro datum leaves bytes over");
		return -1;
	}
	return 0;
bad:
	set_err(errstr, errstr_size,
	        "cannot decode change event: field %s does not fit the %zu bytes "
	        "of the message or the envelope schema", what, len);
	return -1;
}

avro_schema_t
xr_avro_row_schema(const xr_schema_t *s)
{
	avro_schema_t u;

	if (!s->is_envelope)
		return NULL;
	u = v_deref(avro_schema_record_field_get_by_index(s->schema,
	                                                  XR_ENV_BEFORE));
	if (!u || avro_typeof(u) != AVRO_UNION || avro_schema_union_size(u) != 2)
		return NULL;
	u = v_deref(avro_schema_union_branch(u, 1));
	return u && avro_typeof(u) == AVRO_RECORD ? u : NULL;
}

int
xr_avro_row_fields(avro_schema_t row, const void *data, size_t len,
                   xr_span_t *spans, int *branches, int nfields)
{
	const unsigned char *base = data;
	vcur_t c = { data, len };
	int    i;

	if ((int)avro_schema_record_size(row) != nfields)
		return -1;
	for (i = 0; i < nfields; i++) {
		avro_schema_t u = v_deref(avro_schema_record_field_get_by_index(row,
		                                                                i));
		int64_t       n;

		spans[i].off = (size_t)(c.p - base);
		if (!u || avro_typeof(u) != AVRO_UNION || v_long(&c, &n) || n < 0 ||
		    (size_t)n >= avro_schema_union_size(u) ||
		    v_walk(avro_schema_union_branch(u, (int)n), &c, 1))
			return -1;
		branches[i] = (int)n;
		spans[i].len = (size_t)(c.p - base) - spans[i].off;
	}
	return c.left == 0 ? 0 : -1;
}

void
xr_avro_put_long(xr_buf_t *b, int64_t v)
{
	uint64_t      z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
	unsigned char tmp[10];
	size_t        n = 0;

	while (z >= 0x80) {
		tmp[n++] = (unsigned char)(z | 0x80);
		z >>= 7;
	}
	tmp[n++] = (unsigned char)z;
	xr_buf_append(b, tmp, n);
}

void
xr_avro_put_bytes(xr_buf_t *b, const void *p, size_t n)
{
	xr_avro_put_long(b, (int64_t)n);
	xr_buf_append(b, p, n);
}

int
xr_schema_id_fingerprint(const char *id, uint64_t *fp)
{
	uint64_t v = 0;
	int      i;

	for (i = 0; i < 8; i++) {
		unsigned int byte;

		if (sscanf(id + 2 * i, "%2x", &byte) != 1)
			return -1;
		v |= (uint64_t)byte << (8 * i);
	}
	*fp = v;
	return 0;
}

void
xr_avro_confluent_reframe(xr_buf_t *msg, int32_t id)
{
	unsigned char *p = (unsigned char *)msg->data;
	uint32_t       u = (uint32_t)id;

	if (msg->len < XR_AVRO_SO_HEADER_LEN)
		return;
	memmove(p + 5, p + XR_AVRO_SO_HEADER_LEN,
	        msg->len - XR_AVRO_SO_HEADER_LEN);
	p[0] = 0x00;
	p[1] = (unsigned char)(u >> 24);
	p[2] = (unsigned char)(u >> 16);
	p[3] = (unsigned char)(u >> 8);
	p[4] = (unsigned char)u;
	msg->len -= XR_AVRO_SO_HEADER_LEN - 5;
	msg->data[msg->len] = '\0';
}
