/* conflicts.c: `xregion conflicts`, the conflict log report (conflicts.h). */
#include "consumer/conflicts.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "common/buf.h"
#include "common/mem.h"

#define US_PER_SEC INT64_C(1000000)

/* Longest duration --since/--until take: a clear error beats PostgreSQL's
 * "timestamp out of range". */
#define MAX_DURATION_US (INT64_C(36525) * 86400 * US_PER_SEC)   /* 100 years */

/* PostgreSQL's NAMEDATALEN - 1, as config.c checks table names. */
#define PG_NAME_MAX 63

void
xr_conflicts_opts_init(xr_conflicts_opts_t *o)
{
	memset(o, 0, sizeof(*o));
	o->limit = 50;
	o->format = XR_CONFLICTS_TEXT;
}

void
xr_conflicts_opts_term(xr_conflicts_opts_t *o)
{
	xr_list_free(o->schemas, o->n_tables);
	xr_list_free(o->tables, o->n_tables);
	xr_list_free(o->kinds, o->n_kinds);
	memset(o, 0, sizeof(*o));
}

/* ---- --since / --until ------------------------------------------------- */

/* Exactly n digits at *p into *out; advances *p. */
static bool
take_digits(const char **p, int n, int *out)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* "30m", "1h30m", ...: returns 0 with *us set, or -1 if s is not one. */
static int
parse_duration(const char *s, int64_t *us, bool *too_long)
{
	const char *p = s;
	int64_t     total = 0;

	*too_long = false;
	if (!*p)
		return -1;
	while (*p) {
		int64_t n = 0, unit;

		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9') {
			/* Saturate: anything this large is refused below anyway. */
			if (n <= MAX_DURATION_US)
				n = n * 10 + (*p - '0');
			p++;
		}
		switch (*p) {
		case 's': unit = US_PER_SEC; break;
		case 'm': unit = 60 * US_PER_SEC; break;
		case 'h': unit = 3600 * US_PER_SEC; break;
		case 'd': unit = 86400 * US_PER_SEC; break;
		case 'w': unit = 7 * 86400 * US_PER_SEC; break;
		default:  return -1;
		}
		p++;
		if (n > MAX_DURATION_US / unit || total > MAX_DURATION_US - n * unit)
			*too_long = true;
		else
			total += n * unit;
	}
	*us = total;
	return 0;
}

static bool
is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
days_in_month(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30,
	                            31, 31, 30, 31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/*
 * ISO 8601 (see conflicts.h): returns 0 with *us set, 1 if s looks like a
 * date but a field is out of range (*what says which), -1 if it is not a
 * timestamp at all.
 */
static int
parse_iso(const char *s, int64_t *us, const char **what)
{
	const char *p = s;
	struct tm   tm;
	int         y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, off = 0;
	bool        has_zone = false;
	time_t      t;

	if (!take_digits(&p, 4, &y) || *p++ != '-' || !take_digits(&p, 2, &mo) ||
	    *p++ != '-' || !take_digits(&p, 2, &d))
		return -1;
	if (*p == 'T' || *p == 't' || *p == ' ') {
		p++;
		if (!take_digits(&p, 2, &h) || *p++ != ':' || !take_digits(&p, 2, &mi))
			return -1;
		if (*p == ':') {
			p++;
			if (!take_digits(&p, 2, &sec))
				return -1;
			if (*p == '.') {
				int n = 0;

				p++;
				while (*p >= '0' && *p <= '9') {
					if (++n > 6) {
						*what = "more than 6 fractional digits (microseconds)";
						return 1;
					}
					frac = frac * 10 + (*p++ - '0');
				}
				if (n == 0)
					return -1;
				for (; n < 6; n++)
					frac *= 10;
			}
		}
		if (*p == 'Z' || *p == 'z') {
			p++;
			has_zone = true;
		} else if (*p == '+' || *p == '-') {
			int sign = *p++ == '-' ? -1 : 1, oh, om = 0;

			if (!take_digits(&p, 2, &oh))
				return -1;
			if (*p == ':') {
				p++;
				if (!take_digits(&p, 2, &om))
					return -1;
			} else if (*p && !take_digits(&p, 2, &om)) {
				return -1;
			}
			if (oh > 15 || om > 59) {
				*what = "UTC offset out of range";
				return 1;
			}
			off = sign * (oh * 3600 + om * 60);
			has_zone = true;
		}
	}
	if (*p)
		return -1;
	if (y < 1970 || y > 9999) {
		*what = "year out of range (1970 to 9999)";
		return 1;
	}
	if (mo < 1 || mo > 12) {
		*what = "month out of range";
		return 1;
	}
	if (d < 1 || d > days_in_month(y, mo)) {
		*what = "day out of range for its month";
		return 1;
	}
	if (h > 23 || mi > 59 || sec > 59) {
		*what = "time of day out of range";
		return 1;
	}
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	if (has_zone) {
		t = timegm(&tm) - off;
	} else {
		tm.tm_isdst = -1;
		errno = 0;
		t = mktime(&tm);
		if (t == (time_t)-1 && errno) {
			*what = "not a valid local time";
			return 1;
		}
	}
	*us = (int64_t)t * US_PER_SEC + frac;
	return 0;
}

int
xr_conflicts_parse_when(const char *s, xr_when_t *out, char *errstr,
                        size_t errstr_size)
{
	const char *what = NULL;
	bool        too_long;
	int64_t     us;
	int         rc;

	if (parse_duration(s, &us, &too_long) == 0) {
		if (too_long) {
			snprintf(errstr, errstr_size,
			         "\"%.64s\" is longer than 100 years", s);
			return -1;
		}
		out->set = true;
		out->relative = true;
		out->us = us;
		return 0;
	}
	rc = parse_iso(s, &us, &what);
	if (rc == 0) {
		out->set = true;
		out->relative = false;
		out->us = us;
		return 0;
	}
	if (rc > 0)
		snprintf(errstr, errstr_size, "\"%.64s\": %s", s, what);
	else
		snprintf(errstr, errstr_size,
		         "\"%.64s\" is neither a time (2024-05-01, "
		         "2024-05-01T10:00:00Z, 2024-05-01 12:00:00+02:00) nor a "
		         "duration ago (30s, 30m, 2h, 7d, 1w, 1h30m)", s);
	return -1;
}

/* ---- the other options ------------------------------------------------- */


static void
push(char ***v, size_t n, char *s)
{
	*v = xr_reallocarray(*v, n + 1, sizeof(**v));
	(*v)[n] = s;
}

static int
set_table(xr_conflicts_opts_t *o, const char *arg, char *errstr,
          size_t errstr_size)
{
	const char *dot = strchr(arg, '.');
	char       *schema;

	bool        ok = dot ? xr_config_is_ident(arg, (size_t)(dot - arg)) &&
	                       xr_config_is_ident(dot + 1, strlen(dot + 1))
	                     : xr_config_is_ident(arg, strlen(arg));

	if (!ok) {
		snprintf(errstr, errstr_size,
		         "--table: expected \"schema.table\" or \"table\" (schema "
		         "public), identifiers of A-Z, a-z, 0-9, _, $ as in the "
		         "config's tables, got \"%.64s\"", arg);
		return -1;
	}
	if (dot) {
		schema = xr_strdup(arg);
		schema[dot - arg] = '\0';
	} else {
		schema = xr_strdup("public");
	}
	push(&o->schemas, o->n_tables, schema);
	push(&o->tables, o->n_tables, xr_strdup(dot ? dot + 1 : arg));
	o->n_tables++;
	return 0;
}

static int
set_kind(xr_conflicts_opts_t *o, const char *arg, char *errstr,
         size_t errstr_size)
{
	size_t i, n = strlen(arg);

	/* Any word: the kinds are whatever the consumer logs, a growing list. */
	for (i = 0; i < n; i++)
		if (!((arg[i] >= 'a' && arg[i] <= 'z') || arg[i] == '_'))
			break;
	if (n == 0 || i < n || n > PG_NAME_MAX) {
		snprintf(errstr, errstr_size,
		         "--kind: expected a conflict kind such as insert_exists or "
		         "update_origin_differs (a-z and _), got \"%.64s\"", arg);
		return -1;
	}
	push(&o->kinds, o->n_kinds, xr_strdup(arg));
	o->n_kinds++;
	return 0;
}

static int
set_limit(xr_conflicts_opts_t *o, const char *arg, char *errstr,
          size_t errstr_size)
{
	char *end;
	long  v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < 0 || arg[0] < '0' || arg[0] > '9') {
		snprintf(errstr, errstr_size,
		         "--limit: expected a number of conflicts (0 for no limit), "
		         "got \"%.64s\"", arg);
		return -1;
	}
	o->limit = v;
	return 0;
}

int
xr_conflicts_opts_set(xr_conflicts_opts_t *o, const char *name,
                      const char *arg, char *errstr, size_t errstr_size)
{
	char err[256];

	if (strcmp(name, "rows") == 0) {
		o->rows = true;
		return 0;
	}
	if (!arg) {
		snprintf(errstr, errstr_size, "--%s needs a value", name);
		return -1;
	}
	if (strcmp(name, "table") == 0)
		return set_table(o, arg, errstr, errstr_size);
	if (strcmp(name, "kind") == 0)
		return set_kind(o, arg, errstr, errstr_size);
	if (strcmp(name, "limit") == 0)
		return set_limit(o, arg, errstr, errstr_size);
	if (strcmp(name, "since") == 0 || strcmp(name, "until") == 0) {
		xr_when_t *w = name[0] == 's' ? &o->since : &o->until;

		if (xr_conflicts_parse_when(arg, w, err, sizeof(err))) {
			snprintf(errstr, errstr_size, "--%s: %s", name, err);
			return -1;
		}
		return 0;
	}
	if (strcmp(name, "format") == 0) {
		if (strcmp(arg, "text") == 0) {
			o->format = XR_CONFLICTS_TEXT;
		} else if (strcmp(arg, "json") == 0) {
			o->format = XR_CONFLICTS_JSON;
		} else {
			snprintf(errstr, errstr_size,
			         "--format: expected text or json, got \"%.64s\"", arg);
			return -1;
		}
		return 0;
	}
	snprintf(errstr, errstr_size, "--%s: not an option of xregion conflicts",
	         name);
	return -1;
}

/* ---- the report -------------------------------------------------------- */

/*
 * The parameters every query shares: $1, $2 schemas and names of --table,
 * $3 --kind, $4, $5 --since (µs, relative?), $6, $7 --until; the rows
 * query adds $8, the limit.  NULL arrays and bounds select everything.
 */
#define N_FILTER_PARAMS 7

#define BOUND(us, rel)                                                  \
	"CASE WHEN " rel "::bool THEN now() - " us "::bigint * interval "     \
	"'1 microsecond' ELSE timestamptz 'epoch' + " us "::bigint * "        \
	"interval '1 microsecond' END"

static const char filter_sql[] =
	" FROM xregion.conflicts c"
	" WHERE ($1::text[] IS NULL OR (c.table_schema, c.table_name) IN"
	"        (SELECT * FROM unnest($1::text[], $2::text[])))"
	"   AND ($3::text[] IS NULL OR c.kind = ANY ($3::text[]))"
	"   AND ($4::bigint IS NULL OR c.logged_at >= " BOUND("$4", "$5") ")"
	"   AND ($6::bigint IS NULL OR c.logged_at < " BOUND("$6", "$7") ")";

/* Times in UTC, ISO 8601 with microseconds, in both formats. */
#define ISO(x) "to_char(" x " AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* Who won, derived from the resolution. */
#define WINNER                                                          \
	"CASE s.resolution WHEN 'remote_applied' THEN s.remote_region "       \
	"WHEN 'local_kept' THEN coalesce(s.local_region, 'local') "           \
	"WHEN 'dead_lettered' THEN 'dead-lettered' ELSE s.resolution END"

/*
 * The columns of the rows query, in this order: text for both formats.
 * JSON is put together here rather than by json_build_object(), for
 * compact lines with the keys in this order; the jsonb values (key,
 * vclocks, rows) go in as PostgreSQL prints them, numbers and all.
 */
enum {
	C_ID, C_LOGGED_AT, C_TABLE, C_KEY, C_KIND, C_RESOLUTION, C_WINNER,
	C_LOCAL_REGION, C_LOCAL_TS, C_LOCAL_VCLOCK,
	C_REMOTE_REGION, C_REMOTE_TS, C_REMOTE_VCLOCK,
	C_EVENT_ID, C_TOPIC, C_PARTITION, C_OFFSET,
	C_LOCAL_ROW, C_REMOTE_ROW
};

static const char row_cols[] =
	"SELECT s.id, " ISO("s.logged_at") ", "
	"s.table_schema || '.' || s.table_name, s.key::text, s.kind, "
	"s.resolution, " WINNER ", "
	"s.local_region, " ISO("s.local_ts") ", s.local_vclock::text, "
	"s.remote_region, " ISO("s.remote_ts") ", s.remote_vclock::text, "
	"s.event_id, s.topic, s.kafka_partition, s.kafka_offset, ";

/* Copies the connection's error message, without its final newline. */
static void
copy_err(PGconn *conn, const char *what, char *errstr, size_t errstr_size)
{
	const char *m = PQerrorMessage(conn);
	size_t      n = strlen(m);

	while (n && m[n - 1] == '\n')
		n--;
	snprintf(errstr, errstr_size, "%s: %.*s", what, (int)n, m);
}

/* Appends v as a PostgreSQL array literal of text: {"a","b"}. */
static void
put_array(xr_buf_t *b, char *const *v, size_t n)
{
	size_t i;

	xr_buf_putc(b, '{');
	for (i = 0; i < n; i++) {
		const char *s;

		if (i)
			xr_buf_putc(b, ',');
		xr_buf_putc(b, '"');
		for (s = v[i]; *s; s++) {
			if (*s == '"' || *s == '\\')
				xr_buf_putc(b, '\\');
			xr_buf_putc(b, *s);
		}
		xr_buf_putc(b, '"');
	}
	xr_buf_putc(b, '}');
}

/* The parameters' text, kept alive for the queries. */
typedef struct params_s {
	xr_buf_t    schemas, tables, kinds;
	char        since[24], until[24], limit[24];
	const char *values[N_FILTER_PARAMS + 1];
} params_t;

static void
params_init(params_t *p, const xr_conflicts_opts_t *o)
{
	xr_buf_init(&p->schemas);
	xr_buf_init(&p->tables);
	xr_buf_init(&p->kinds);
	put_array(&p->schemas, o->schemas, o->n_tables);
	put_array(&p->tables, o->tables, o->n_tables);
	put_array(&p->kinds, o->kinds, o->n_kinds);
	snprintf(p->since, sizeof(p->since), "%" PRId64, o->since.us);
	snprintf(p->until, sizeof(p->until), "%" PRId64, o->until.us);
	snprintf(p->limit, sizeof(p->limit), "%ld", o->limit);
	p->values[0] = o->n_tables ? p->schemas.data : NULL;
	p->values[1] = o->n_tables ? p->tables.data : NULL;
	p->values[2] = o->n_kinds ? p->kinds.data : NULL;
	p->values[3] = o->since.set ? p->since : NULL;
	p->values[4] = o->since.relative ? "true" : "false";
	p->values[5] = o->until.set ? p->until : NULL;
	p->values[6] = o->until.relative ? "true" : "false";
	p->values[7] = o->limit > 0 ? p->limit : NULL;   /* LIMIT NULL: all */
}

static void
params_term(params_t *p)
{
	xr_buf_term(&p->schemas);
	xr_buf_term(&p->tables);
	xr_buf_term(&p->kinds);
}

static const char *
get(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* "us@2024-05-01T10:00:00.000000Z": a version, "none" without one. */
static void
put_version(FILE *out, const char *label, const char *region, const char *ts,
            const char *vclock)
{
	if (!region && !ts) {
		fprintf(out, "  %s=none", label);
		return;
	}
	/* No timestamp: a row without commit data, the oldest version. */
	fprintf(out, "  %s=%s@%s", label, region ? region : "?",
	        ts ? ts : "oldest");
	if (vclock)
		fprintf(out, " %s_vclock=%s", label, vclock);
}

/* ,"name":value with value a JSON string, or null. */
static void
json_str(xr_buf_t *b, const char *name, const char *v)
{
	xr_buf_printf(b, ",\"%s\":", name);
	if (v)
		xr_buf_json_str(b, v, strlen(v));
	else
		xr_buf_puts(b, "null");
}

/* ,"name":v with v JSON text already (a number, a jsonb's text), or null. */
static void
json_raw(xr_buf_t *b, const char *name, const char *v)
{
	xr_buf_printf(b, ",\"%s\":%s", name, v ? v : "null");
}

/* ,"name":{"region":..,"ts":..,"vclock":..}, or null without a version. */
static void
json_version(xr_buf_t *b, const char *name, const char *region,
             const char *ts, const char *vclock)
{
	if (!region && !ts) {
		json_raw(b, name, NULL);
		return;
	}
	xr_buf_printf(b, ",\"%s\":{\"region\":", name);
	if (region)
		xr_buf_json_str(b, region, strlen(region));
	else
		xr_buf_puts(b, "null");
	json_str(b, "ts", ts);
	json_raw(b, "vclock", vclock);
	xr_buf_putc(b, '}');
}

/* One JSON object on one line; b is scratch space. */
static void
print_json(FILE *out, const PGresult *res, int i, bool rows, xr_buf_t *b)
{
	xr_buf_reset(b);
	xr_buf_printf(b, "{\"id\":%s", PQgetvalue(res, i, C_ID));
	json_str(b, "logged_at", get(res, i, C_LOGGED_AT));
	json_str(b, "table", get(res, i, C_TABLE));
	json_raw(b, "key", get(res, i, C_KEY));
	json_str(b, "kind", get(res, i, C_KIND));
	json_str(b, "resolution", get(res, i, C_RESOLUTION));
	json_str(b, "winner", get(res, i, C_WINNER));
	json_version(b, "local", get(res, i, C_LOCAL_REGION),
	             get(res, i, C_LOCAL_TS), get(res, i, C_LOCAL_VCLOCK));
	json_version(b, "remote", get(res, i, C_REMOTE_REGION),
	             get(res, i, C_REMOTE_TS), get(res, i, C_REMOTE_VCLOCK));
	json_str(b, "event_id", get(res, i, C_EVENT_ID));
	json_str(b, "topic", get(res, i, C_TOPIC));
	json_raw(b, "kafka_partition", get(res, i, C_PARTITION));
	json_raw(b, "kafka_offset", get(res, i, C_OFFSET));
	if (rows) {
		json_raw(b, "local_row", get(res, i, C_LOCAL_ROW));
		json_raw(b, "remote_row", get(res, i, C_REMOTE_ROW));
	}
	xr_buf_puts(b, "}\n");
	fwrite(b->data, 1, b->len, out);
}

/* Prints row i of res, a row of the rows query, in format o->format. */
static void
print_row(FILE *out, const PGresult *res, int i, const xr_conflicts_opts_t *o,
          xr_buf_t *b)
{
	const char *v;

	if (o->format == XR_CONFLICTS_JSON) {
		print_json(out, res, i, o->rows, b);
		return;
	}
	/* Columns NOT NULL in the log; PQgetvalue gives "" for a NULL anyway. */
	fprintf(out, "%s  %s  %s  %s/%s  winner=%s",
	        PQgetvalue(res, i, C_LOGGED_AT),
	        PQgetvalue(res, i, C_TABLE), PQgetvalue(res, i, C_KEY),
	        PQgetvalue(res, i, C_KIND), PQgetvalue(res, i, C_RESOLUTION),
	        PQgetvalue(res, i, C_WINNER));
	put_version(out, "local", get(res, i, C_LOCAL_REGION),
	            get(res, i, C_LOCAL_TS), get(res, i, C_LOCAL_VCLOCK));
	put_version(out, "remote", get(res, i, C_REMOTE_REGION),
	            get(res, i, C_REMOTE_TS), get(res, i, C_REMOTE_VCLOCK));
	fputc('\n', out);
	if (o->rows) {
		v = get(res, i, C_LOCAL_ROW);
		fprintf(out, "    local_row:  %s\n", v ? v : "(none)");
		v = get(res, i, C_REMOTE_ROW);
		fprintf(out, "    remote_row: %s\n", v ? v : "(none)");
	}
}

/*
 * Runs the rows query in single-row mode, so that --limit 0 over a long
 * log needs no more memory than one row.  Sets *shown.
 */
static int
print_rows(PGconn *conn, const xr_conflicts_opts_t *o, bool has_vclock,
           const params_t *p, FILE *out, long *shown, char *errstr,
           size_t errstr_size)
{
	PGresult *res;
	xr_buf_t  sql, line;
	int       rc = 0;

	xr_buf_init(&sql);
	xr_buf_puts(&sql, row_cols);
	/* Row images can be large: fetched only when printed. */
	xr_buf_puts(&sql, o->rows ? "s.local_row::text, s.remote_row::text"
	                          : "NULL, NULL");
	xr_buf_puts(&sql,
	            " FROM (SELECT c.id, c.logged_at, c.table_schema, "
	            "c.table_name, c.key, c.kind, c.resolution, c.local_ts, "
	            "c.local_region, c.remote_ts, c.remote_region, c.local_row, "
	            "c.remote_row, c.event_id, c.topic, c.kafka_partition, "
	            "c.kafka_offset, ");
	/* A schema set up before the vclock columns existed lacks them. */
	xr_buf_puts(&sql, has_vclock ? "c.local_vclock, c.remote_vclock"
	                             : "NULL::jsonb AS local_vclock, "
	                               "NULL::jsonb AS remote_vclock");
	xr_buf_puts(&sql, filter_sql);
	/* The newest N, printed oldest first: the newest end up last. */
	xr_buf_puts(&sql, " ORDER BY c.logged_at DESC, c.id DESC"
	                  " LIMIT $8::bigint) s ORDER BY s.logged_at, s.id");

	*shown = 0;
	if (!PQsendQueryParams(conn, sql.data, N_FILTER_PARAMS + 1, NULL,
	                       p->values, NULL, NULL, 0)) {
		copy_err(conn, "reading xregion.conflicts", errstr, errstr_size);
		xr_buf_term(&sql);
		return -1;
	}
	xr_buf_term(&sql);
	xr_buf_init(&line);
	/*
	 * Refused only when called too late; the rows then come in one
	 * PGRES_TUPLES_OK result, which the loop prints as well.
	 */
	(void)PQsetSingleRowMode(conn);
	while ((res = PQgetResult(conn)) != NULL) {
		int i;

		switch (PQresultStatus(res)) {
		case PGRES_SINGLE_TUPLE:
		case PGRES_TUPLES_OK:   /* in single-row mode: the end, no rows */
			for (i = 0; rc == 0 && i < PQntuples(res); i++) {
				print_row(out, res, i, o, &line);
				(*shown)++;
			}
			break;
		default:
			if (rc == 0)
				copy_err(conn, "reading xregion.conflicts", errstr,
				         errstr_size);
			rc = -1;
			break;
		}
		PQclear(res);
	}
	xr_buf_term(&line);
	return rc;
}

/* The text format's last line: counts by kind and resolution. */
static int
print_summary(PGconn *conn, const params_t *p, long shown, FILE *out,
              char *errstr, size_t errstr_size)
{
	PGresult *res;
	xr_buf_t  sql;
	long      total = 0;
	int       i, n;

	xr_buf_init(&sql);
	xr_buf_printf(&sql, "SELECT c.kind, c.resolution, count(*)%s "
	              "GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2", filter_sql);
	res = PQexecParams(conn, sql.data, N_FILTER_PARAMS, NULL, p->values,
	                   NULL, NULL, 0);
	xr_buf_term(&sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		copy_err(conn, "counting xregion.conflicts", errstr, errstr_size);
		PQclear(res);
		return -1;
	}
	n = PQntuples(res);
	for (i = 0; i < n; i++)
		total += strtol(PQgetvalue(res, i, 2), NULL, 10);
	fprintf(out, "summary: %ld conflict%s selected, %ld shown", total,
	        total == 1 ? "" : "s", shown);
	for (i = 0; i < n; i++)
		fprintf(out, "%s%s/%s=%s", i ? ", " : "; ", PQgetvalue(res, i, 0),
		        PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
	fputc('\n', out);
	PQclear(res);
	return 0;
}

/*
 * Checks that schema xregion is set up here; *has_vclock says whether its
 * conflict log has the vclock columns.
 */
static int
check_schema(PGconn *conn, bool *has_vclock, char *errstr, size_t errstr_size)
{
	PGresult *res;
	int       rc = -1;

	res = PQexec(conn,
	             "SELECT to_regnamespace('xregion') IS NOT NULL, "
	             "to_regclass('xregion.conflicts') IS NOT NULL, "
	             "(SELECT count(*) = 2 FROM pg_catalog.pg_attribute "
	             " WHERE attrelid = to_regclass('xregion.conflicts') "
	             "   AND attname IN ('local_vclock', 'remote_vclock') "
	             "   AND NOT attisdropped)");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		copy_err(conn, "checking schema xregion", errstr, errstr_size);
	} else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		snprintf(errstr, errstr_size,
		         "database \"%s\" has no schema xregion: this region is not "
		         "set up (run xregion setup), or postgres.dsn names the wrong "
		         "database", PQdb(conn));
	} else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		snprintf(errstr, errstr_size,
		         "database \"%s\" has schema xregion but no table "
		         "xregion.conflicts (run xregion setup)", PQdb(conn));
	} else {
		*has_vclock = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
		rc = 0;
	}
	PQclear(res);
	return rc;
}

int
xr_conflicts_run(const xr_config_t *conf, const xr_conflicts_opts_t *o,
                 FILE *out, char *errstr, size_t errstr_size)
{
	static const char *const keys[] = { "dbname", "fallback_application_name",
	                                    NULL };
	const char *vals[] = { conf->pg_dsn, "xregion conflicts", NULL };
	PGconn     *conn;
	PGresult   *res;
	params_t    p;
	bool        has_vclock = false;
	long        shown = 0;
	int         rc = -1;

	/* dbname is expanded: the whole DSN, then a default application name. */
	conn = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(conn) != CONNECTION_OK) {
		copy_err(conn, "cannot connect to PostgreSQL", errstr, errstr_size);
		PQfinish(conn);
		return -1;
	}
	params_init(&p, o);
	/* One snapshot: the summary counts exactly what the rows come from. */
	res = PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		copy_err(conn, "starting a transaction", errstr, errstr_size);
		PQclear(res);
		goto out;
	}
	PQclear(res);
	if (check_schema(conn, &has_vclock, errstr, errstr_size))
		goto out;
	if (print_rows(conn, o, has_vclock, &p, out, &shown, errstr, errstr_size))
		goto out;
	if (o->format == XR_CONFLICTS_TEXT &&
	    print_summary(conn, &p, shown, out, errstr, errstr_size))
		goto out;
	if (fflush(out) != 0 || ferror(out)) {
		snprintf(errstr, errstr_size, "writing the report: %s",
		         strerror(errno));
		goto out;
	}
	rc = 0;
out:
	/* Read only: closing the connection ends the transaction. */
	params_term(&p);
	PQfinish(conn);
	return rc;
}
