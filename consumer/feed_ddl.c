/*
 * feed_ddl.c: `xregion feed --ddl TABLE`: the SQL that loads the feed's
 * flat rows into a table of current rows, for PostgreSQL, DuckDB or
 * ClickHouse (docs/feed.md).
 *
 * The state table keeps a deleted key as a tombstone row (__deleted) with
 * its version, so that a change loaded later but older than the delete
 * (files of several regions land in any order) cannot bring the row back.
 * A key's state is its row with the greatest (__version, __region, __lsn).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "common/buf.h"
#include "common/kafka_conf.h"
#include "common/log.h"
#include "consumer/feed.h"
#include "consumer/feed_int.h"

#define KAFKA_TIMEOUT_MS 10000
#define LOOK_BACK        20     /* messages read back per partition */

typedef enum { D_POSTGRES, D_DUCKDB, D_CLICKHOUSE } dialect_t;

static void
ident(xr_buf_t *b, dialect_t d, const char *s)
{
	char q = d == D_CLICKHOUSE ? '`' : '"';

	xr_buf_putc(b, q);
	for (; *s; s++) {
		if (*s == q || (d == D_CLICKHOUSE && *s == '\\'))
			xr_buf_putc(b, d == D_CLICKHOUSE ? '\\' : q);
		xr_buf_putc(b, *s);
	}
	xr_buf_putc(b, q);
}

/* A SQL string literal. */
static void
literal(xr_buf_t *b, const char *s)
{
	xr_buf_putc(b, '\'');
	for (; *s; s++) {
		if (*s == '\'')
			xr_buf_putc(b, '\'');
		xr_buf_putc(b, *s);
	}
	xr_buf_putc(b, '\'');
}

/* A name made of the table's: <schema>_<table><suffix>, quoted. */
static void
tname(xr_buf_t *b, dialect_t d, const xr_feed_plan_t *p, const char *suffix)
{
	xr_buf_t n;
	char    *dot;

	xr_buf_init(&n);
	xr_buf_puts(&n, p->table);
	dot = strchr(n.data, '.');
	if (dot)
		*dot = '_';
	xr_buf_puts(&n, suffix);
	ident(b, d, n.data);
	xr_buf_term(&n);
}

/* Whether s is safe to print into SQL as a type name or in a comment. */
static bool
plain(const char *s, const char *extra)
{
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || strchr(extra, *s)))
			return false;
	return true;
}

static void
scalar_type(xr_buf_t *b, dialect_t d, const xr_coltype_t *t)
{
	static const char *const pg[] = {
		[XR_AT_STRING] = "text", [XR_AT_BOOLEAN] = "boolean",
		[XR_AT_INT] = "integer", [XR_AT_LONG] = "bigint",
		[XR_AT_FLOAT] = "real", [XR_AT_DOUBLE] = "double precision",
		[XR_AT_BYTES] = "bytea", [XR_AT_DECIMAL] = "numeric",
		[XR_AT_UUID] = "uuid", [XR_AT_DATE] = "date",
		[XR_AT_TIME_MICROS] = "time", [XR_AT_TIMESTAMP_MICROS] = "timestamptz",
		[XR_AT_LOCAL_TIMESTAMP_MICROS] = "timestamp", [XR_AT_JSON] = "jsonb",
	};
	static const char *const duck[] = {
		[XR_AT_STRING] = "VARCHAR", [XR_AT_BOOLEAN] = "BOOLEAN",
		[XR_AT_INT] = "INTEGER", [XR_AT_LONG] = "BIGINT",
		[XR_AT_FLOAT] = "FLOAT", [XR_AT_DOUBLE] = "DOUBLE",
		[XR_AT_BYTES] = "BLOB", [XR_AT_DECIMAL] = "DECIMAL",
		[XR_AT_UUID] = "UUID", [XR_AT_DATE] = "DATE",
		[XR_AT_TIME_MICROS] = "TIME", [XR_AT_TIMESTAMP_MICROS] = "TIMESTAMPTZ",
		[XR_AT_LOCAL_TIMESTAMP_MICROS] = "TIMESTAMP", [XR_AT_JSON] = "VARCHAR",
	};
	static const char *const ch[] = {
		[XR_AT_STRING] = "String", [XR_AT_BOOLEAN] = "Bool",
		[XR_AT_INT] = "Int32", [XR_AT_LONG] = "Int64",
		[XR_AT_FLOAT] = "Float32", [XR_AT_DOUBLE] = "Float64",
		[XR_AT_BYTES] = "String", [XR_AT_DECIMAL] = "Decimal",
		[XR_AT_UUID] = "UUID", [XR_AT_DATE] = "Date32",
		[XR_AT_TIME_MICROS] = "Int64",
		[XR_AT_TIMESTAMP_MICROS] = "DateTime64(6, 'UTC')",
		[XR_AT_LOCAL_TIMESTAMP_MICROS] = "DateTime64(6)",
		[XR_AT_JSON] = "String",
	};
	const char *const *names = d == D_POSTGRES ? pg
	                         : d == D_DUCKDB   ? duck : ch;

	if (t->at == XR_AT_DECIMAL && d == D_DUCKDB && t->precision > 38) {
		xr_buf_puts(b, "DOUBLE");   /* DuckDB's decimals stop at 38 */
		return;
	}
	xr_buf_puts(b, names[t->at]);
	if (t->at == XR_AT_DECIMAL)
		xr_buf_printf(b, "(%d, %d)", t->precision, t->scale);
}

/* The column's type in dialect d; key columns are never Nullable. */
static void
col_type(xr_buf_t *b, dialect_t d, const xr_field_t *f, bool key)
{
	const xr_coltype_t *t = &f->type;

	if (d == D_POSTGRES && t->pgname[0] && plain(t->pgname, " (),[]")) {
		/* The source's own type, e.g. numeric(12,2) or varchar(20)[]. */
		xr_buf_puts(b, t->pgname);
		return;
	}
	if (d == D_CLICKHOUSE) {
		if (t->is_array) {
			xr_buf_puts(b, "Array(Nullable(");
			scalar_type(b, d, t);
			xr_buf_puts(b, "))");
			return;
		}
		if (!key)
			xr_buf_puts(b, "Nullable(");
		scalar_type(b, d, t);
		if (!key)
			xr_buf_putc(b, ')');
		return;
	}
	scalar_type(b, d, t);
	if (t->is_array)
		xr_buf_puts(b, "[]");
}

static bool
is_key(const xr_feed_plan_t *p, int i)
{
	int k;

	for (k = 0; k < p->nkey; k++)
		if (p->key_idx[k] == i)
			return true;
	return false;
}

/* The column list of the landing and state tables. */
static void
columns(xr_buf_t *b, dialect_t d, const xr_feed_plan_t *p, bool state)
{
	static const char *const meta[][3] = {
		/* postgres, duckdb, clickhouse */
		{ "text", "VARCHAR", "LowCardinality(String)" },
		{ "boolean", "BOOLEAN", "UInt8" },
		{ "text", "VARCHAR", "LowCardinality(String)" },
		{ "timestamptz", "TIMESTAMPTZ", "DateTime64(6, 'UTC')" },
		{ "bigint", "BIGINT", "Int64" },
		{ "bigint", "BIGINT", "Int64" },
		{ "bigint", "BIGINT", "Int64" },
		{ "bigint", "BIGINT", "Nullable(Int64)" },
		{ "uuid", "UUID", "UUID" },
		{ "bigint", "BIGINT", "UInt64" },
		{ "text[]", "VARCHAR[]", "Array(String)" },
		{ "jsonb", "MAP(VARCHAR, VARCHAR)", "Map(String, String)" },
	};
	int i;

	_Static_assert(sizeof(meta) / sizeof(meta[0]) == XR_FM_N,
	               "a type for each metadata column");
	for (i = 0; i < p->nrow; i++) {
		const xr_field_t *f = &p->vs->row_fields[i];

		xr_buf_puts(b, "  ");
		ident(b, d, f->column);
		xr_buf_putc(b, ' ');
		col_type(b, d, f, d == D_CLICKHOUSE && is_key(p, i));
		if (state && d != D_CLICKHOUSE && is_key(p, i))
			xr_buf_puts(b, " NOT NULL");
		xr_buf_puts(b, ",\n");
	}
	for (i = 0; i < XR_FM_N; i++) {
		xr_buf_puts(b, "  ");
		ident(b, d, xr_feed_meta_names[i]);
		xr_buf_printf(b, " %s%s\n", meta[i][d],
		              i + 1 < XR_FM_N ? "," : (state && d != D_CLICKHOUSE
		                                       ? "," : ""));
	}
}

static void
key_list(xr_buf_t *b, dialect_t d, const xr_feed_plan_t *p, const char *pfx)
{
	int k;

	for (k = 0; k < p->nkey; k++) {
		if (k)
			xr_buf_puts(b, ", ");
		if (pfx)
			xr_buf_printf(b, "%s.", pfx);
		ident(b, d, p->vs->row_fields[p->key_idx[k]].column);
	}
}

/*
 * (a.__version, a.__region, a.__lsn) > (b.__version, b.__region, b.__lsn),
 * regions compared byte by byte as the consumers compare them.
 */
static void
newer(xr_buf_t *b, dialect_t d, const char *a, const char *o)
{
	const char *c = d == D_POSTGRES ? " COLLATE \"C\"" : "";

	xr_buf_printf(b,
	              "(%s.__version > %s.__version OR (%s.__version = %s.__version"
	              " AND (%s.__region%s > %s.__region OR (%s.__region = "
	              "%s.__region AND %s.__lsn > %s.__lsn))))",
	              a, o, a, o, a, c, o, a, o, a, o);
}


static void
print_sql(xr_buf_t *b, dialect_t d, const xr_feed_plan_t *p)
{
	int i, k;

	xr_buf_puts(b, "-- ");
	xr_buf_puts(b, plain(p->table, ".$") ? p->table : "the table");
	xr_buf_printf(b, ", as xregion feed writes it (writer schema %s).\n",
	              plain(p->source_id, ".") ? p->source_id : "?");
	if (d == D_CLICKHOUSE) {
		xr_buf_puts(b, "-- One row per key after merges: the greatest "
		            "__version; a key whose last\n-- row is a delete is "
		            "dropped. Read with FINAL.\nCREATE TABLE ");
		tname(b, d, p, "");
		xr_buf_puts(b, " (\n");
		columns(b, d, p, false);
		xr_buf_puts(b, ") ENGINE = ReplacingMergeTree(__version, __deleted)\n"
		            "ORDER BY (");
		key_list(b, d, p, NULL);
		xr_buf_printf(b, ");\n\n-- Load (truncate rows carry no key):\n"
		              "-- INSERT INTO ");
		tname(b, d, p, "");
		xr_buf_printf(b, " SELECT * FROM file('<out>/%s/dt=*/hr=*/*.avro', "
		              "'Avro') WHERE __op != 'truncate';\n-- Read:\n-- SELECT "
		              "* FROM ", p->dir);
		tname(b, d, p, "");
		xr_buf_puts(b, " FINAL WHERE NOT __deleted;\n");
		return;
	}
	xr_buf_puts(b, "-- Landing table: load the feed's files here, in any "
	            "order");
	if (d == D_DUCKDB)
		xr_buf_printf(b, ":\n--   INSERT INTO <changes> SELECT * FROM "
		              "read_avro('<out>/%s/*/*/*.avro');\n", p->dir);
	else
		xr_buf_puts(b, " (with any Avro\n-- reader: Spark, avro-tools "
		            "tojson, fastavro).\n");
	xr_buf_puts(b, "CREATE TABLE ");
	tname(b, d, p, "_changes");
	xr_buf_puts(b, " (\n");
	columns(b, d, p, false);
	xr_buf_puts(b, ");\n\n-- Current state: one row per key, a deleted "
	            "key kept as a tombstone\n-- (__deleted) so that an older "
	            "change loaded later cannot bring it back.\nCREATE TABLE ");
	tname(b, d, p, "_state");
	xr_buf_puts(b, " (\n");
	columns(b, d, p, true);
	xr_buf_puts(b, "  PRIMARY KEY (");
	key_list(b, d, p, NULL);
	xr_buf_puts(b, ")\n);\nCREATE VIEW ");
	tname(b, d, p, "_current");
	xr_buf_puts(b, " AS\n  SELECT ");
	for (i = 0; i < p->nrow; i++) {
		if (i)
			xr_buf_puts(b, ", ");
		ident(b, d, p->vs->row_fields[i].column);
	}
	xr_buf_puts(b, " FROM ");
	tname(b, d, p, "_state");
	xr_buf_puts(b, " WHERE NOT __deleted;\n-- The newest truncate: older "
	            "rows are gone.\nCREATE TABLE ");
	tname(b, d, p, "_truncated");
	xr_buf_puts(b, " (__version bigint, __region text, __lsn bigint);\n\n"
	            "-- After each load: truncates, then the newest change of each "
	            "key, then\n-- empty the landing table.\nINSERT INTO ");
	tname(b, d, p, "_truncated");
	xr_buf_puts(b, " SELECT __version, __region, __lsn FROM ");
	tname(b, d, p, "_changes");
	xr_buf_puts(b, " WHERE __op = 'truncate';\nUPDATE ");
	tname(b, d, p, "_state");
	xr_buf_puts(b, " AS t SET __deleted = true\n WHERE NOT t.__deleted AND "
	            "EXISTS (SELECT 1 FROM ");
	tname(b, d, p, "_truncated");
	xr_buf_puts(b, " AS k WHERE ");
	newer(b, d, "k", "t");
	xr_buf_puts(b, ");\nMERGE INTO ");
	tname(b, d, p, "_state");
	xr_buf_puts(b, " AS t\nUSING (SELECT DISTINCT ON (");
	key_list(b, d, p, "c");
	xr_buf_puts(b, ") * FROM ");
	tname(b, d, p, "_changes");
	xr_buf_puts(b, " AS c\n        WHERE c.__op <> 'truncate' AND NOT EXISTS "
	            "(SELECT 1 FROM ");
	tname(b, d, p, "_truncated");
	xr_buf_puts(b, " AS k WHERE ");
	newer(b, d, "k", "c");
	xr_buf_puts(b, ")\n        ORDER BY ");
	key_list(b, d, p, "c");
	xr_buf_puts(b, ", c.__version DESC, c.__region DESC, c.__lsn DESC) AS s\n"
	            "ON ");
	for (k = 0; k < p->nkey; k++) {
		const char *c = p->vs->row_fields[p->key_idx[k]].column;

		if (k)
			xr_buf_puts(b, " AND ");
		xr_buf_puts(b, "t.");
		ident(b, d, c);
		xr_buf_puts(b, " = s.");
		ident(b, d, c);
	}
	xr_buf_puts(b, "\nWHEN MATCHED AND ");
	newer(b, d, "s", "t");
	xr_buf_puts(b, " THEN UPDATE SET\n");
	for (i = 0; i < p->nrow; i++) {
		const char *c = p->vs->row_fields[i].column;

		xr_buf_puts(b, "  ");
		ident(b, d, c);
		if (is_key(p, i)) {
			xr_buf_puts(b, " = s.");
			ident(b, d, c);
			xr_buf_puts(b, ",\n");
			continue;
		}
		/* An unchanged TOASTed value: keep what the state has. */
		xr_buf_puts(b, d == D_DUCKDB ? " = CASE WHEN list_contains("
		                               "s.__unchanged, " : " = CASE WHEN ");
		literal(b, c);
		xr_buf_puts(b, d == D_DUCKDB ? ")" : " = ANY (s.__unchanged)");
		xr_buf_puts(b, " THEN t.");
		ident(b, d, p->vs->row_fields[i].column);
		xr_buf_puts(b, " ELSE s.");
		ident(b, d, p->vs->row_fields[i].column);
		xr_buf_puts(b, " END,\n");
	}
	for (i = 0; i < XR_FM_N; i++)
		xr_buf_printf(b, "  %s = s.%s%s\n", xr_feed_meta_names[i],
		              xr_feed_meta_names[i], i + 1 < XR_FM_N ? "," : "");
	xr_buf_puts(b, "WHEN NOT MATCHED THEN INSERT VALUES (");
	for (i = 0; i < p->nrow; i++) {
		xr_buf_puts(b, "s.");
		ident(b, d, p->vs->row_fields[i].column);
		xr_buf_puts(b, ", ");
	}
	for (i = 0; i < XR_FM_N; i++)
		xr_buf_printf(b, "s.%s%s", xr_feed_meta_names[i],
		              i + 1 < XR_FM_N ? ", " : ");\n");
	xr_buf_puts(b, "DELETE FROM ");
	tname(b, d, p, "_changes");
	xr_buf_puts(b, ";\n");
}

/*
 * The newest event of the table with a key schema: the last LOOK_BACK
 * messages of each partition of its topic in every region.
 */
static int
newest_schema(const xr_config_t *conf, const char *table, char *vid,
              char *kid, size_t idsize, char *errstr, size_t errstr_size)
{
	static const char *const defaults[] = {
		"client.id", "xregion-feed-ddl",
		"group.id", "xregion-feed-unused",
		"enable.auto.commit", "false",
		"enable.partition.eof", "true",
		NULL
	};
	rd_kafka_conf_t *kc = xr_kafka_conf_new(conf, defaults, NULL, errstr,
	                                        errstr_size);
	rd_kafka_t      *rk;
	rd_kafka_topic_partition_list_t *l;
	const struct rd_kafka_metadata  *md = NULL;
	int64_t          best_ts = INT64_MIN;
	size_t           r;
	int              i, j, waiting = 0, rc = -1;
	char             kerr[512];

	if (!kc)
		return -1;
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof(kerr));
	if (!rk) {
		rd_kafka_conf_destroy(kc);
		snprintf(errstr, errstr_size, "kafka: %s", kerr);
		return -1;
	}
	rd_kafka_poll_set_consumer(rk);
	if (rd_kafka_metadata(rk, 1, NULL, &md, KAFKA_TIMEOUT_MS)) {
		snprintf(errstr, errstr_size, "kafka: no metadata from %s",
		         conf->brokers);
		rd_kafka_destroy(rk);
		return -1;
	}
	l = rd_kafka_topic_partition_list_new(8);
	for (r = 0; r < conf->n_regions; r++) {
		char name[600];

		snprintf(name, sizeof(name), "%s.%s.%s", conf->topic_prefix,
		         conf->regions[r], table);
		for (i = 0; i < md->topic_cnt; i++) {
			if (strcmp(md->topics[i].topic, name) != 0)
				continue;
			for (j = 0; j < md->topics[i].partition_cnt; j++) {
				int32_t pt = md->topics[i].partitions[j].id;
				int64_t lo, hi;

				if (rd_kafka_query_watermark_offsets(rk, name, pt, &lo, &hi,
				                                     KAFKA_TIMEOUT_MS) ||
				    hi <= lo)
					continue;
				rd_kafka_topic_partition_list_add(l, name, pt)->offset =
				    hi - LOOK_BACK > lo ? hi - LOOK_BACK : lo;
				waiting++;
			}
		}
	}
	rd_kafka_metadata_destroy(md);
	if (waiting && rd_kafka_assign(rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		int idle = 0;

		while (waiting > 0 && idle < 100) {
			rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
			rd_kafka_headers_t *h;
			const void         *v;
			size_t              n;

			if (!m) {
				idle++;
				continue;
			}
			if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
				waiting--;
			} else if (!m->err &&
			           rd_kafka_message_headers(m, &h) == 0 &&
			           rd_kafka_header_get_last(h, "xr-key-schema", &v,
			                                    &n) == 0 && n < idsize &&
			           rd_kafka_message_timestamp(m, NULL) >= best_ts) {
				const void *vv;
				size_t      vn;

				if (rd_kafka_header_get_last(h, "xr-schema", &vv, &vn) == 0 &&
				    vn < idsize) {
					memcpy(kid, v, n);
					kid[n] = '\0';
					memcpy(vid, vv, vn);
					vid[vn] = '\0';
					best_ts = rd_kafka_message_timestamp(m, NULL);
				}
			}
			rd_kafka_message_destroy(m);
		}
	}
	rd_kafka_topic_partition_list_destroy(l);
	if (best_ts == INT64_MIN)
		snprintf(errstr, errstr_size, "no event of %s on its topics yet: its "
		         "schema is known from its first change (or a backfill)",
		         table);
	else
		rc = 0;
	(void)rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return rc;
}

int
xr_feed_ddl_command(const xr_config_t *conf, const xr_feed_opts_t *o,
                    FILE *out, FILE *err_out)
{
	char           vid[80], kid[80], err[1024];
	const char    *dot = strchr(o->ddl, '.');
	const char    *dn = o->dialect ? o->dialect : "postgres";
	dialect_t      d = strcmp(dn, "duckdb") == 0     ? D_DUCKDB
	                 : strcmp(dn, "clickhouse") == 0 ? D_CLICKHOUSE
	                                                 : D_POSTGRES;
	xr_buf_t       schema, table, sql;
	xr_registry_t *reg = NULL;
	const xr_schema_t *vs, *ks;
	xr_feed_plan_t *p = NULL;
	bool           transient;
	uint64_t       vfp, kfp;
	int            rc = 1;

	xr_buf_init(&schema);
	xr_buf_init(&table);
	xr_buf_init(&sql);
	if (dot) {
		xr_buf_append(&schema, o->ddl, (size_t)(dot - o->ddl));
		xr_buf_puts(&table, dot + 1);
	} else {
		xr_buf_puts(&schema, "public");
		xr_buf_puts(&table, o->ddl);
	}
	if (!xr_config_publishes(conf, schema.data, table.data)) {
		fprintf(err_out, "xregion feed: --ddl: %s.%s is not a table marked "
		        "pii: false in %s\n", schema.data, table.data, conf->path);
		rc = 2;
		goto out;
	}
	xr_buf_printf(&sql, "%s.%s", schema.data, table.data);
	if (newest_schema(conf, sql.data, vid, kid, sizeof(vid), err,
	                  sizeof(err)))
		goto fail;
	reg = xr_registry_new(conf, err, sizeof(err));
	if (!reg)
		goto fail;
	if (xr_schema_id_fingerprint(vid, &vfp) ||
	    xr_schema_id_fingerprint(kid, &kfp)) {
		snprintf(err, sizeof(err), "headers xr-schema \"%s\" and "
		         "xr-key-schema \"%s\" are not schema ids", vid, kid);
		goto fail;
	}
	vs = xr_registry_get(reg, vfp, vid, &transient, err, sizeof(err));
	ks = vs ? xr_registry_get(reg, kfp, kid, &transient, err, sizeof(err))
	        : NULL;
	if (!vs || !ks)
		goto fail;
	xr_buf_reset(&sql);
	xr_buf_printf(&sql, "%s|%s|%s.%s", vid, kid, schema.data, table.data);
	p = xr_feed_plan_new(sql.data, vs, ks, schema.data, table.data, err,
	                     sizeof(err));
	if (!p)
		goto fail;
	if (p->error) {
		snprintf(err, sizeof(err), "%s", p->error);
		goto fail;
	}
	xr_buf_reset(&sql);
	print_sql(&sql, d, p);
	fputs(sql.data, out);
	rc = 0;
	goto out;
fail:
	fprintf(err_out, "xregion feed: --ddl: %s\n", err);
out:
	xr_feed_plan_free(p);
	xr_registry_destroy(reg);
	xr_buf_term(&schema);
	xr_buf_term(&table);
	xr_buf_term(&sql);
	return rc;
}
