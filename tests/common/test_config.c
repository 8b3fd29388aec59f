/* test_config.c: unit tests for common/config.c, on YAML files in a temp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/kafka_conf.h"

static char tmpdir[] = "/tmp/xr_test_config.XXXXXX";

/* Removes every XREGION_* variable so that the caller's shell cannot leak in. */
static void
clear_env(void)
{
	char *names[64];
	size_t n = 0, i;
	char **e;

	for (e = environ; *e && n < 64; e++) {
		const char *eq = strchr(*e, '=');

		if (strncmp(*e, "XREGION_", 8) == 0 && eq)
			names[n++] = strndup(*e, (size_t)(eq - *e));
	}
	for (i = 0; i < n; i++) {
		assert_non_null(names[i]);
		assert_int_equal(unsetenv(names[i]), 0);
		free(names[i]);
	}
}

static int
group_setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int
group_teardown(void **state)
{
	(void)state;
	return rmdir(tmpdir);
}

static int
test_setup(void **state)
{
	(void)state;
	clear_env();
	return 0;
}

static int
test_teardown(void **state)
{
	(void)state;
	clear_env();
	return 0;
}

/* Writes yaml to tmpdir/name, loads it, removes the file. */
static xr_config_t *
load(const char *name, const char *yaml, char *err, size_t errsz)
{
	char path[512];
	xr_config_t *conf;
	FILE *f;

	assert_true(snprintf(path, sizeof(path), "%s/%s", tmpdir, name) <
	            (int)sizeof(path));
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(yaml, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	conf = xr_config_load(path, err, errsz);
	assert_int_equal(unlink(path), 0);
	return conf;
}

/* Loading must fail with errstr exactly "<tmpdir>/<name><suffix>". */
static void
expect_error(const char *name, const char *yaml, const char *suffix)
{
	char err[1024], want[1024];
	xr_config_t *conf;

	conf = load(name, yaml, err, sizeof(err));
	assert_null(conf);
	assert_true(snprintf(want, sizeof(want), "%s/%s%s", tmpdir, name, suffix) <
	            (int)sizeof(want));
	assert_string_equal(err, want);
}

#define MINIMAL \
	"region: us\n" \
	"postgres:\n" \
	"  dsn: \"host=127.0.0.1 port=15432 dbname=app\"\n" \
	"kafka:\n" \
	"  brokers: 127.0.0.1:19092\n"

/* ---- valid files ---- */

/*
 * A second producer of a region: producer.stream takes the tables of its
 * stream only, a slot and publication of its own unless set, and the key
 * "<region>/<stream>"; the main producer takes the tables without one.
 */
static void
test_producer_stream(void **state)
{
	char         err[1024], key[64];
	xr_config_t *conf;

#define TABLES "tables:\n  - name: a\n    pii: false\n  - name: b\n" \
               "    pii: false\n    stream: orders\n  - name: c\n" \
               "    stream: orders\n"
	(void)state;
	conf = load("main.yaml", MINIMAL "producer:\n  status_interval_ms: 1000\n"
	            "consumer:\n  batch_size: 10\n" TABLES, err, sizeof(err));
	assert_non_null(conf);
	assert_null(conf->stream);
	assert_string_equal(conf->slot, "xregion_us");
	assert_string_equal(conf->publication, "xregion");
	assert_true(xr_config_produces(conf, &conf->tables[0]));
	assert_false(xr_config_produces(conf, &conf->tables[1]));
	assert_false(xr_config_produces(conf, &conf->tables[2]));   /* pii */
	xr_config_stream_key(conf, key, sizeof(key));
	assert_string_equal(key, "us");
	xr_config_destroy(conf);

	conf = load("orders.yaml", MINIMAL "producer:\n  stream: orders\n"
	            TABLES, err, sizeof(err));
	assert_non_null(conf);
	assert_string_equal(conf->stream, "orders");
	assert_string_equal(conf->slot, "xregion_us_orders");
	assert_string_equal(conf->publication, "xregion_orders");
	assert_false(xr_config_produces(conf, &conf->tables[0]));
	assert_true(xr_config_produces(conf, &conf->tables[1]));
	assert_false(xr_config_produces(conf, &conf->tables[2]));
	assert_true(xr_config_publishes(conf, "public", "b"));
	xr_config_stream_key(conf, key, sizeof(key));
	assert_string_equal(key, "us/orders");
	xr_config_destroy(conf);

	/* set names stay */
	conf = load("set.yaml", "region: us\npostgres:\n  dsn: x\n  slot: s1\n"
	            "  publication: p1\nkafka:\n  brokers: b:1\n"
	            "producer:\n  stream: orders\n", err, sizeof(err));
	assert_non_null(conf);
	assert_string_equal(conf->slot, "s1");
	assert_string_equal(conf->publication, "p1");
	xr_config_destroy(conf);

	expect_error("bad.yaml", MINIMAL "producer:\n  stream: Orders/x\n",
	             ":7: producer.stream: expected 1 to 32 of a-z, 0-9 and _, got \"Orders/x\"");
	/* the slot name a stream makes must fit PostgreSQL's 63 characters */
	expect_error("long.yaml",
	             "region: r23456789012345678901234567890ab\n"
	             "postgres:\n  dsn: x\nkafka:\n  brokers: b:1\n"
	             "producer:\n  stream: s23456789012345678901234567890ab\n",
	             ":7: producer.stream: makes slot name xregion_r23456789012345678"
	             "901234567890ab_s23456789012345678901234567890ab, longer than "
	             "63 characters: set postgres.slot");
#undef TABLES
}

static void
test_full_file(void **state)
{
	static const char yaml[] =
		"region: us\n"
		"regions: [us, eu, apac]\n"
		"log_level: debug\n"
		"postgres:\n"
		"  dsn: \"host=127.0.0.1 port=15432 dbname=app user=postgres\"\n"
		"  slot: xr_slot_us\n"
		"  publication: xr_pub\n"
		"  failover: yes\n"
		"kafka:\n"
		"  brokers: 127.0.0.1:19092,127.0.0.1:19093\n"
		"  topic_prefix: acme\n"
		"  schemas_topic: acme.schemas\n"
		"  dead_letter_topic: acme.us.dead\n"
		"  partitions: 6\n"
		"  replication_factor: 3\n"
		"  properties:\n"
		"    security.protocol: plaintext\n"
		"    linger.ms: 5\n"
		"producer:\n"
		"  status_interval_ms: 5000\n"
		"  max_inflight_mb: 128\n"
		"  flush_timeout_ms: 60000\n"
		"  reconnect_backoff_max_ms: 20000\n"
		"consumer:\n"
		"  group_id: acme-us\n"
		"  batch_size: 500\n"
		"  batch_linger_ms: 10\n"
		"  tombstone_retention_hours: 24\n"
		"  drift_recheck_ms: 1000\n"
		"tables:\n"
		"  - name: public.orders\n"
		"    pii: false\n"
		"    exclude_columns: [internal_note, cost]\n"
		"    conflict: vclock\n"
		"  - name: users\n"
		"    pii: true\n"
		"  - name: sales.products\n"
		"    pii: false\n";
	char err[512], path[512];
	xr_config_t *conf;
	(void)state;

	conf = load("full.yaml", yaml, err, sizeof(err));
	assert_non_null(conf);
	snprintf(path, sizeof(path), "%s/full.yaml", tmpdir);
	assert_string_equal(conf->path, path);
	assert_string_equal(conf->region, "us");
	assert_int_equal(conf->n_regions, 3);
	assert_string_equal(conf->regions[0], "us");
	assert_string_equal(conf->regions[1], "eu");
	assert_string_equal(conf->regions[2], "apac");
	assert_null(conf->regions[3]);
	assert_string_equal(conf->log_level, "debug");
	assert_string_equal(conf->pg_dsn,
	                    "host=127.0.0.1 port=15432 dbname=app user=postgres");
	assert_string_equal(conf->slot, "xr_slot_us");
	assert_string_equal(conf->publication, "xr_pub");
	assert_true(conf->slot_failover);
	assert_string_equal(conf->brokers, "127.0.0.1:19092,127.0.0.1:19093");
	assert_string_equal(conf->topic_prefix, "acme");
	assert_string_equal(conf->schemas_topic, "acme.schemas");
	assert_string_equal(conf->dead_letter_topic, "acme.us.dead");
	assert_int_equal(conf->partitions, 6);
	assert_int_equal(conf->replication_factor, 3);
	assert_int_equal(conf->n_kafka_props, 2);
	assert_string_equal(conf->kafka_props[0].key, "security.protocol");
	assert_string_equal(conf->kafka_props[0].value, "plaintext");
	assert_string_equal(conf->kafka_props[1].key, "linger.ms");
	assert_string_equal(conf->kafka_props[1].value, "5");
	assert_int_equal(conf->status_interval_ms, 5000);
	assert_int_equal(conf->max_inflight_mb, 128);
	assert_int_equal(conf->flush_timeout_ms, 60000);
	assert_int_equal(conf->reconnect_backoff_max_ms, 20000);
	assert_string_equal(conf->group_id, "acme-us");
	assert_int_equal(conf->batch_size, 500);
	assert_int_equal(conf->batch_linger_ms, 10);
	assert_int_equal(conf->tombstone_retention_hours, 24);
	assert_int_equal(conf->drift_recheck_ms, 1000);
	assert_int_equal(conf->n_tables, 3);
	assert_string_equal(conf->tables[0].schema, "public");
	assert_string_equal(conf->tables[0].name, "orders");
	assert_false(conf->tables[0].pii);
	assert_int_equal(conf->tables[0].n_exclude_columns, 2);
	assert_string_equal(conf->tables[0].exclude_columns[0], "internal_note");
	assert_string_equal(conf->tables[0].exclude_columns[1], "cost");
	assert_null(conf->tables[0].exclude_columns[2]);
	assert_int_equal(conf->tables[0].conflict, XR_CONFLICT_VCLOCK);
	assert_string_equal(conf->tables[1].schema, "public");
	assert_string_equal(conf->tables[1].name, "users");
	assert_true(conf->tables[1].pii);
	assert_int_equal(conf->tables[1].n_exclude_columns, 0);
	assert_null(conf->tables[1].exclude_columns[0]);
	assert_int_equal(conf->tables[1].conflict, XR_CONFLICT_LWW);
	assert_string_equal(conf->tables[2].schema, "sales");
	assert_string_equal(conf->tables[2].name, "products");
	assert_false(conf->tables[2].pii);
	xr_config_destroy(conf);
}

static void
test_minimal_defaults(void **state)
{
	char err[512];
	xr_config_t *conf;
	(void)state;

	conf = load("min.yaml", MINIMAL, err, sizeof(err));
	assert_non_null(conf);
	assert_string_equal(conf->region, "us");
	assert_int_equal(conf->n_regions, 1);
	assert_string_equal(conf->regions[0], "us");
	assert_null(conf->regions[1]);
	assert_string_equal(conf->log_level, "info");
	assert_string_equal(conf->slot, "xregion_us");
	assert_string_equal(conf->publication, "xregion");
	assert_string_equal(conf->topic_prefix, "xr");
	assert_string_equal(conf->schemas_topic, "xr._schemas");
	assert_string_equal(conf->dead_letter_topic, "xr.us._dlq");
	assert_int_equal(conf->partitions, 3);
	assert_int_equal(conf->replication_factor, 1);
	assert_int_equal(conf->n_kafka_props, 0);
	assert_int_equal(conf->status_interval_ms, 10000);
	assert_int_equal(conf->max_inflight_mb, 64);
	assert_int_equal(conf->flush_timeout_ms, 30000);
	assert_int_equal(conf->reconnect_backoff_max_ms, 30000);
	assert_int_equal(conf->max_message_bytes, 64 * 1024 * 1024);
	assert_string_equal(conf->group_id, "xregion.xr.us");
	assert_int_equal(conf->batch_size, 2000);
	assert_int_equal(conf->batch_linger_ms, 5);
	assert_false(conf->slot_failover);
	assert_int_equal(conf->tombstone_retention_hours, 168);
	assert_int_equal(conf->drift_recheck_ms, 5000);
	assert_int_equal(conf->n_tables, 0);
	xr_config_destroy(conf);
}

static void
test_derived_topics_follow_prefix(void **state)
{
	char err[512];
	xr_config_t *conf;
	(void)state;

	conf = load("prefix.yaml",
	            "region: eu\n"
	            "regions: [us, eu]\n"
	            "postgres: {dsn: x}\n"
	            "kafka: {brokers: b, topic_prefix: Acme-1}\n",
	            err, sizeof(err));
	assert_non_null(conf);
	assert_string_equal(conf->schemas_topic, "Acme-1._schemas");
	assert_string_equal(conf->dead_letter_topic, "Acme-1.eu._dlq");
	assert_string_equal(conf->slot, "xregion_eu");
	/* a progress topic per region, this region's its own */
	assert_string_equal(conf->progress_topics[0], "Acme-1.us._progress");
	assert_string_equal(conf->progress_topics[1], "Acme-1.eu._progress");
	assert_null(conf->progress_topics[2]);
	assert_ptr_equal(conf->progress_topic, conf->progress_topics[1]);
	assert_string_equal(xr_config_progress_topic(conf, "us"),
	                    "Acme-1.us._progress");
	assert_null(xr_config_progress_topic(conf, "apac"));
	xr_config_destroy(conf);
}

/* The progress topics are found by name: the old key is refused. */
static void
test_progress_topic_not_configurable(void **state)
{
	(void)state;
	expect_error("progress.yaml", MINIMAL "  progress_topic: xr._progress\n",
	             ":6: kafka.progress_topic: no longer configurable: each "
	             "region publishes its progress to "
	             "<topic_prefix>.<region>._progress (remove the key; "
	             "docs/security.md)");
}

static void
test_bool_spellings(void **state)
{
	char err[512];
	xr_config_t *conf;
	(void)state;

	conf = load("bools.yaml", MINIMAL
	            "tables:\n"
	            "  - {name: a, pii: No}\n"
	            "  - {name: b, pii: OFF}\n"
	            "  - {name: c, pii: False}\n"
	            "  - {name: d, pii: yes}\n"
	            "  - {name: e, pii: On}\n"
	            "  - {name: f, pii: TRUE}\n",
	            err, sizeof(err));
	assert_non_null(conf);
	assert_int_equal(conf->n_tables, 6);
	assert_false(conf->tables[0].pii);
	assert_false(conf->tables[1].pii);
	assert_false(conf->tables[2].pii);
	assert_true(conf->tables[3].pii);
	assert_true(conf->tables[4].pii);
	assert_true(conf->tables[5].pii);
	xr_config_destroy(conf);
}

static void
test_property_scalars_become_strings(void **state)
{
	char err[512];
	xr_config_t *conf;
	(void)state;

	conf = load("props.yaml", MINIMAL
	            "  properties:\n"
	            "    enable.idempotence: true\n"
	            "    message.timeout.ms: 300000\n"
	            "    sasl.mechanism: \"PLAIN\"\n",
	            err, sizeof(err));
	assert_non_null(conf);
	assert_int_equal(conf->n_kafka_props, 3);
	assert_string_equal(conf->kafka_props[0].key, "enable.idempotence");
	assert_string_equal(conf->kafka_props[0].value, "true");
	assert_string_equal(conf->kafka_props[1].value, "300000");
	assert_string_equal(conf->kafka_props[2].value, "PLAIN");
	xr_config_destroy(conf);
}

/* ---- files that are not there or not YAML ---- */

static void
test_missing_file(void **state)
{
	char err[512], path[512], want[600];
	(void)state;

	snprintf(path, sizeof(path), "%s/nope.yaml", tmpdir);
	assert_null(xr_config_load(path, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory",
	         path);
	assert_string_equal(err, want);
}

static void
test_directory_is_not_readable(void **state)
{
	char err[512], want[600];
	(void)state;

	assert_null(xr_config_load(tmpdir, err, sizeof(err)));
	snprintf(want, sizeof(want), "%s: cannot read: Is a directory", tmpdir);
	assert_string_equal(err, want);
}

static void
test_not_yaml(void **state)
{
	(void)state;
	expect_error("bad.yaml",
	             "region: us\n"
	             "postgres:\n"
	             "  dsn: [unclosed\n",
	             ":4: not valid YAML: did not find expected ',' or ']' "
	             "while parsing a flow sequence");
}

static void
test_empty_file(void **state)
{
	(void)state;
	expect_error("empty.yaml", "# nothing here\n",
	             ":1: expected a mapping of settings, got an empty document");
}

static void
test_empty_document(void **state)
{
	(void)state;
	expect_error("emptydoc.yaml", "---\n...\n",
	             ":1: expected a mapping of settings, got an empty document");
}

static void
test_top_level_list(void **state)
{
	(void)state;
	expect_error("list.yaml", "- region: us\n",
	             ":1: expected a mapping of settings at the top level, "
	             "got a list");
}

/* ---- keys and kinds ---- */

static void
test_unknown_top_key(void **state)
{
	(void)state;
	expect_error("unk.yaml", MINIMAL "regoin: eu\n",
	             ":6: regoin: unknown key; valid keys are: region, regions, "
	             "log_level, metrics_listen, postgres, kafka, producer, consumer, tables");
}

static void
test_unknown_table_key(void **state)
{
	(void)state;
	expect_error("unk2.yaml", MINIMAL
	             "tables:\n"
	             "  - name: orders\n"
	             "    pii: false\n"
	             "  - name: users\n"
	             "    pi: false\n",
	             ":10: tables[1].pi: unknown key; valid keys are: name, pii, "
	             "exclude_columns, conflict, tiebreak, clock, stream");
}

static void
test_duplicate_key(void **state)
{
	(void)state;
	expect_error("dupkey.yaml", MINIMAL "  brokers: other:9092\n",
	             ":6: kafka.brokers: duplicate key (first at line 5)");
}

static void
test_list_where_mapping_expected(void **state)
{
	(void)state;
	expect_error("kind.yaml",
	             "region: us\n"
	             "postgres:\n"
	             "  - dsn: x\n",
	             ":3: postgres: expected a mapping, got a list");
}

static void
test_mapping_where_list_expected(void **state)
{
	(void)state;
	expect_error("kind2.yaml", MINIMAL
	             "tables:\n"
	             "  name: orders\n",
	             ":7: tables: expected a list, got a mapping");
}

static void
test_list_where_scalar_expected(void **state)
{
	(void)state;
	expect_error("kind3.yaml", MINIMAL
	             "tables:\n"
	             "  - name: [a, b]\n",
	             ":7: tables[0].name: expected a string, got a list");
}

static void
test_missing_region(void **state)
{
	(void)state;
	expect_error("noregion.yaml",
	             "postgres: {dsn: x}\n"
	             "kafka: {brokers: y}\n",
	             ":1: region: required key missing");
}

static void
test_missing_dsn(void **state)
{
	(void)state;
	expect_error("nodsn.yaml",
	             "region: us\n"
	             "postgres:\n"
	             "  slot: s\n"
	             "kafka: {brokers: y}\n",
	             ":3: postgres.dsn: required key missing "
	             "(or set XREGION_POSTGRES_DSN)");
}

static void
test_missing_brokers(void **state)
{
	(void)state;
	expect_error("nobrokers.yaml",
	             "region: us\n"
	             "postgres: {dsn: x}\n",
	             ":1: kafka.brokers: required key missing "
	             "(or set XREGION_KAFKA_BROKERS)");
}

static void
test_missing_table_name(void **state)
{
	(void)state;
	expect_error("noname.yaml", MINIMAL
	             "tables:\n"
	             "  - name: orders\n"
	             "  - pii: false\n",
	             ":8: tables[1].name: required key missing");
}

/* ---- values ---- */

static void
test_bad_bool(void **state)
{
	(void)state;
	expect_error("us.yaml", MINIMAL
	             "tables:\n"
	             "  - name: public.orders\n"
	             "    pii: false\n"
	             "  - name: public.users\n"
	             "    pii: maybe\n",
	             ":10: tables[1].pii: expected true or false, got \"maybe\"");
}

static void
test_int_trailing_junk(void **state)
{
	(void)state;
	expect_error("junk.yaml", MINIMAL
	             "producer:\n"
	             "  status_interval_ms: 100ms\n",
	             ":7: producer.status_interval_ms: expected an integer, "
	             "got \"100ms\"");
}

static void
test_int_not_a_number(void **state)
{
	(void)state;
	expect_error("nan.yaml", MINIMAL "  partitions: \" 3\"\n",
	             ":6: kafka.partitions: expected an integer, got \" 3\"");
}

static void
test_int_overflow(void **state)
{
	(void)state;
	expect_error("overflow.yaml", MINIMAL
	             "  partitions: 99999999999999999999999\n",
	             ":6: kafka.partitions: must be between 1 and 2147483647, "
	             "got 99999999999999999999999");
}

static void
test_int_out_of_range(void **state)
{
	(void)state;
	expect_error("range.yaml", MINIMAL
	             "producer:\n"
	             "  flush_timeout_ms: 30000\n"
	             "  max_inflight_mb: 0\n",
	             ":8: producer.max_inflight_mb: must be between 1 and 4096, "
	             "got 0");
}

static void
test_int_negative(void **state)
{
	(void)state;
	expect_error("neg.yaml", MINIMAL "  replication_factor: -1\n",
	             ":6: kafka.replication_factor: must be between 1 and 32767, "
	             "got -1");
}

static void
test_bad_region_name(void **state)
{
	(void)state;
	expect_error("region.yaml",
	             "region: US-East\n",
	             ":1: region: expected 1 to 32 of a-z, 0-9 and _, "
	             "got \"US-East\"");
}

static void
test_region_too_long(void **state)
{
	(void)state;
	/* 33 characters */
	expect_error("long.yaml",
	             "region: abcdefghijabcdefghijabcdefghijabc\n",
	             ":1: region: expected 1 to 32 of a-z, 0-9 and _, "
	             "got \"abcdefghijabcdefghijabcdefghijabc\"");
}

static void
test_bad_slot(void **state)
{
	(void)state;
	expect_error("slot.yaml",
	             "region: us\n"
	             "postgres:\n"
	             "  dsn: x\n"
	             "  slot: xregion-us\n",
	             ":4: postgres.slot: expected 1 to 63 of a-z, 0-9 and _, "
	             "got \"xregion-us\"");
}

static void
test_bad_topic_prefix(void **state)
{
	(void)state;
	expect_error("prefix.yaml", MINIMAL "  topic_prefix: \"xr/us\"\n",
	             ":6: kafka.topic_prefix: expected a Kafka topic name (1 to "
	             "249 of A-Z, a-z, 0-9, '.', '_', '-'), got \"xr/us\"");
}

static void
test_bad_table_name(void **state)
{
	(void)state;
	expect_error("tname.yaml", MINIMAL
	             "tables:\n"
	             "  - name: public.orders.x\n",
	             ":7: tables[0].name: expected \"schema.table\" or \"table\" "
	             "(identifiers of A-Z, a-z, 0-9, _, $, not starting with a "
	             "digit), got \"public.orders.x\"");
}

static void
test_bad_conflict(void **state)
{
	(void)state;
	expect_error("conflict.yaml", MINIMAL
	             "tables:\n"
	             "  - name: orders\n"
	             "    conflict: newest\n",
	             ":8: tables[0].conflict: expected lww or vclock, "
	             "got \"newest\"");
}

static void
test_tiebreak(void **state)
{
	char         err[1024];
	xr_config_t *conf;

	(void)state;
	conf = load("tb.yaml", MINIMAL
	            "regions: [us, eu]\n"
	            "tables:\n"
	            "  - name: a\n"
	            "    conflict: vclock\n"
	            "  - name: b\n"
	            "    conflict: vclock\n"
	            "    tiebreak: keep-local\n"
	            "  - name: c\n"
	            "    conflict: vclock\n"
	            "    tiebreak: prefer-region:eu\n", err, sizeof(err));
	assert_non_null(conf);
	assert_int_equal(conf->tables[0].tiebreak, XR_TIEBREAK_LWW);
	assert_null(conf->tables[0].prefer_region);
	assert_int_equal(conf->tables[1].tiebreak, XR_TIEBREAK_KEEP_LOCAL);
	assert_int_equal(conf->tables[2].tiebreak, XR_TIEBREAK_PREFER_REGION);
	assert_string_equal(conf->tables[2].prefer_region, "eu");
	xr_config_destroy(conf);
}

static void
test_bad_tiebreak(void **state)
{
	(void)state;
	expect_error("tb1.yaml", MINIMAL
	             "tables:\n"
	             "  - name: orders\n"
	             "    conflict: vclock\n"
	             "    tiebreak: newest\n",
	             ":9: tables[0].tiebreak: expected lww, keep-local or "
	             "prefer-region:<region>, got \"newest\"");
	expect_error("tb2.yaml", MINIMAL
	             "tables:\n"
	             "  - name: orders\n"
	             "    tiebreak: lww\n",
	             ":8: tables[0].tiebreak: only applies to conflict: vclock");
	expect_error("tb3.yaml", MINIMAL
	             "regions: [us, eu]\n"
	             "tables:\n"
	             "  - name: orders\n"
	             "    conflict: vclock\n"
	             "    tiebreak: prefer-region:apac\n",
	             ":10: tables[0].tiebreak: region \"apac\" is not in regions");
}

static void
test_clock(void **state)
{
	char         err[1024];
	xr_config_t *conf;

	(void)state;
	conf = load("clk.yaml", MINIMAL
	            "tables:\n"
	            "  - name: a\n"
	            "  - name: b\n"
	            "    clock: commit\n"
	            "  - name: c\n"
	            "    conflict: lww\n"
	            "    clock: hybrid\n", err, sizeof(err));
	assert_non_null(conf);
	assert_int_equal(conf->tables[0].clock, XR_CLOCK_HYBRID);
	assert_int_equal(conf->tables[1].clock, XR_CLOCK_COMMIT);
	assert_int_equal(conf->tables[2].clock, XR_CLOCK_HYBRID);
	xr_config_destroy(conf);
	expect_error("clk1.yaml", MINIMAL
	             "tables:\n"
	             "  - name: orders\n"
	             "    clock: wall\n",
	             ":8: tables[0].clock: expected hybrid or commit, got \"wall\"");
	expect_error("clk2.yaml", MINIMAL
	             "tables:\n"
	             "  - name: orders\n"
	             "    conflict: vclock\n"
	             "    clock: commit\n",
	             ":9: tables[0].clock: only applies to conflict: lww (vclock "
	             "tables keep a hybrid clock of their own)");
}

static void
test_bad_log_level(void **state)
{
	(void)state;
	expect_error("level.yaml", MINIMAL "log_level: verbose\n",
	             ":6: log_level: expected error, warn, info or debug, "
	             "got \"verbose\"");
}

static void
test_duplicate_table(void **state)
{
	(void)state;
	/* "orders" is "public.orders". */
	expect_error("duptable.yaml", MINIMAL
	             "tables:\n"
	             "  - name: public.orders\n"
	             "    pii: false\n"
	             "  - name: users\n"
	             "  - name: orders\n"
	             "    pii: true\n",
	             ":10: tables[2].name: duplicate table \"public.orders\" "
	             "(first at line 7)");
}

static void
test_region_not_in_regions(void **state)
{
	(void)state;
	expect_error("regions.yaml",
	             "region: us\n"
	             "regions: [eu, apac]\n",
	             ":2: regions: must include this region \"us\"");
}

static void
test_duplicate_region(void **state)
{
	(void)state;
	expect_error("dupregion.yaml",
	             "region: us\n"
	             "regions:\n"
	             "  - us\n"
	             "  - eu\n"
	             "  - us\n",
	             ":5: regions[2]: \"us\" is listed twice");
}

static void
test_duplicate_exclude_column(void **state)
{
	(void)state;
	expect_error("dupcol.yaml", MINIMAL
	             "tables:\n"
	             "  - name: orders\n"
	             "    exclude_columns: [a, b, a]\n",
	             ":8: tables[0].exclude_columns[2]: \"a\" is listed twice");
}

static void
test_bootstrap_servers_property_rejected(void **state)
{
	(void)state;
	expect_error("bootstrap.yaml", MINIMAL
	             "  properties:\n"
	             "    bootstrap.servers: other:9092\n",
	             ":7: kafka.properties.bootstrap.servers: set the brokers "
	             "with kafka.brokers instead");
}

static void
test_alias_rejected(void **state)
{
	(void)state;
	expect_error("alias.yaml",
	             "region: &r us\n"
	             "regions: [*r]\n",
	             ":2: YAML aliases (*r) are not supported; write the value out");
}

static void
test_recursive_alias_rejected(void **state)
{
	(void)state;
	expect_error("loop.yaml", "a: &x [*x]\n",
	             ":1: YAML aliases (*x) are not supported; write the value out");
}

static void
test_two_documents_rejected(void **state)
{
	(void)state;
	expect_error("twodocs.yaml", MINIMAL "---\nregion: eu\n",
	             ":6: more than one YAML document; expected one");
}

/* ---- environment ---- */

static void
test_env_overrides_dsn_and_brokers(void **state)
{
	char err[512];
	xr_config_t *conf;
	(void)state;

	assert_int_equal(setenv("XREGION_POSTGRES_DSN", "host=db password=s3cret", 1), 0);
	assert_int_equal(setenv("XREGION_KAFKA_BROKERS", "k1:9092,k2:9092", 1), 0);
	conf = load("env.yaml", MINIMAL, err, sizeof(err));
	assert_non_null(conf);
	assert_string_equal(conf->pg_dsn, "host=db password=s3cret");
	assert_string_equal(conf->brokers, "k1:9092,k2:9092");
	xr_config_destroy(conf);
}

static void
test_env_supplies_required_keys(void **state)
{
	char err[512];
	xr_config_t *conf;
	(void)state;

	assert_int_equal(setenv("XREGION_POSTGRES_DSN", "host=db", 1), 0);
	assert_int_equal(setenv("XREGION_KAFKA_BROKERS", "k:9092", 1), 0);
	conf = load("envreq.yaml", "region: us\n", err, sizeof(err));
	assert_non_null(conf);
	assert_string_equal(conf->pg_dsn, "host=db");
	assert_string_equal(conf->brokers, "k:9092");
	xr_config_destroy(conf);
}

static void
test_env_empty_dsn_rejected(void **state)
{
	(void)state;
	assert_int_equal(setenv("XREGION_POSTGRES_DSN", "", 1), 0);
	expect_error("envempty.yaml", MINIMAL,
	             ": environment variable XREGION_POSTGRES_DSN is set but empty");
}

/*
 * Only the broker's refusal of the credentials, or a certificate that did
 * not verify, is final: a handshake cut by the network is retried.
 */
static void
test_kafka_refused(void **state)
{
	char buf[1024];
	(void)state;

	assert_true(xr_kafka_refused(RD_KAFKA_RESP_ERR__AUTHENTICATION,
	    "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: "
	    "Authentication failed: Invalid username or password (after 306ms "
	    "in state AUTH_REQ)", buf, sizeof(buf)));
	assert_non_null(strstr(buf, "refuses these credentials"));
	assert_null(strstr(buf, "2.6.1"));
	/* SCRAM refused: with a librdkafka older than 2.6.1, say why */
	assert_true(xr_kafka_refused(RD_KAFKA_RESP_ERR__AUTHENTICATION,
	    "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: "
	    "Authentication failed during authentication due to invalid "
	    "credentials with SASL mechanism SCRAM-SHA-512 (after 331ms in "
	    "state AUTH_REQ)", buf, sizeof(buf)));
	assert_non_null(strstr(buf, "refuses these credentials"));
	if (rd_kafka_version() < 0x020601ff) {
		assert_non_null(strstr(buf, "fixed in librdkafka 2.6.1"));
		assert_non_null(strstr(buf, rd_kafka_version_str()));
	} else {
		assert_null(strstr(buf, "2.6.1"));
	}
	assert_false(xr_kafka_refused(RD_KAFKA_RESP_ERR__AUTHENTICATION,
	    "sasl_ssl://127.0.0.1:9093/1: SASL SCRAM-SHA-512 mechanism handshake "
	    "failed: Local: Broker transport failure", buf, sizeof(buf)));
	assert_true(xr_kafka_refused(RD_KAFKA_RESP_ERR__SSL,
	    "SSL handshake failed: error:0A000086:SSL routines::certificate "
	    "verify failed: broker certificate could not be verified",
	    buf, sizeof(buf)));
	assert_false(xr_kafka_refused(RD_KAFKA_RESP_ERR__SSL,
	    "SSL handshake failed: Disconnected", buf, sizeof(buf)));
	assert_false(xr_kafka_refused(RD_KAFKA_RESP_ERR__TRANSPORT,
	    "Connection refused", buf, sizeof(buf)));
}

/* XREGION_METRICS_LISTEN replaces metrics_listen; empty removes it. */
static void
test_env_metrics_listen(void **state)
{
	char err[512];
	xr_config_t *conf;
	(void)state;

	assert_int_equal(setenv("XREGION_METRICS_LISTEN", "127.0.0.1:9999", 1), 0);
	conf = load("envm.yaml", "metrics_listen: 127.0.0.1:9187\n" MINIMAL, err,
	            sizeof(err));
	assert_non_null(conf);
	assert_string_equal(conf->metrics_listen, "127.0.0.1:9999");
	xr_config_destroy(conf);
	assert_int_equal(setenv("XREGION_METRICS_LISTEN", "", 1), 0);
	conf = load("envm.yaml", "metrics_listen: 127.0.0.1:9187\n" MINIMAL, err,
	            sizeof(err));
	assert_non_null(conf);
	assert_null(conf->metrics_listen);
	xr_config_destroy(conf);
}

static void
test_env_prop_adds(void **state)
{
	char err[512];
	xr_config_t *conf;
	(void)state;

	assert_int_equal(setenv("XREGION_KAFKA_PROP_SASL_PASSWORD", "hunter2", 1), 0);
	conf = load("envadd.yaml", MINIMAL
	            "  properties:\n"
	            "    security.protocol: sasl_ssl\n",
	            err, sizeof(err));
	assert_non_null(conf);
	assert_int_equal(conf->n_kafka_props, 2);
	assert_string_equal(conf->kafka_props[0].key, "security.protocol");
	assert_string_equal(conf->kafka_props[0].value, "sasl_ssl");
	assert_string_equal(conf->kafka_props[1].key, "sasl.password");
	assert_string_equal(conf->kafka_props[1].value, "hunter2");
	xr_config_destroy(conf);
}

static void
test_env_prop_replaces(void **state)
{
	char err[512];
	xr_config_t *conf;
	(void)state;

	assert_int_equal(setenv("XREGION_KAFKA_PROP_SECURITY_PROTOCOL", "ssl", 1), 0);
	conf = load("envrep.yaml", MINIMAL
	            "  properties:\n"
	            "    security.protocol: plaintext\n"
	            "    linger.ms: 5\n",
	            err, sizeof(err));
	assert_non_null(conf);
	assert_int_equal(conf->n_kafka_props, 2);
	assert_string_equal(conf->kafka_props[0].key, "security.protocol");
	assert_string_equal(conf->kafka_props[0].value, "ssl");
	assert_string_equal(conf->kafka_props[1].value, "5");
	xr_config_destroy(conf);
}

static void
test_env_error_does_not_echo_value(void **state)
{
	char err[512];
	(void)state;

	assert_int_equal(setenv("XREGION_KAFKA_PROP_BOOTSTRAP_SERVERS",
	                        "secret-host:9092", 1), 0);
	assert_null(load("envsecret.yaml", MINIMAL, err, sizeof(err)));
	assert_non_null(strstr(err, "XREGION_KAFKA_PROP_BOOTSTRAP_SERVERS"));
	assert_null(strstr(err, "secret-host"));
}

/* ---- lookups ---- */

static void
test_publishes_fail_closed(void **state)
{
	char err[512];
	xr_config_t *conf;
	(void)state;

	conf = load("pii.yaml", MINIMAL
	            "tables:\n"
	            "  - name: public.orders\n"
	            "    pii: false\n"
	            "  - name: public.users\n"
	            "    pii: true\n"
	            "  - name: public.audit\n",
	            err, sizeof(err));
	assert_non_null(conf);
	assert_true(xr_config_publishes(conf, "public", "orders"));
	assert_true(xr_config_publishes(conf, NULL, "orders"));
	assert_false(xr_config_publishes(conf, "public", "users"));
	/* listed without pii: treated as PII */
	assert_non_null(xr_config_table(conf, "public", "audit"));
	assert_true(xr_config_table(conf, "public", "audit")->pii);
	assert_false(xr_config_publishes(conf, "public", "audit"));
	/* not listed at all */
	assert_null(xr_config_table(conf, "public", "payments"));
	assert_false(xr_config_publishes(conf, "public", "payments"));
	assert_false(xr_config_publishes(conf, "other", "orders"));
	assert_false(xr_config_publishes(conf, "public", "Orders"));
	xr_config_destroy(conf);
}

static void
test_exclude_columns(void **state)
{
	char err[512];
	const xr_table_conf_t *t;
	xr_config_t *conf;
	(void)state;

	conf = load("excl.yaml", MINIMAL
	            "tables:\n"
	            "  - name: public.orders\n"
	            "    pii: false\n"
	            "    exclude_columns: [internal_note, margin]\n"
	            "  - name: products\n"
	            "    pii: false\n",
	            err, sizeof(err));
	assert_non_null(conf);
	t = xr_config_table(conf, "public", "orders");
	assert_non_null(t);
	assert_true(xr_config_column_excluded(t, "internal_note"));
	assert_true(xr_config_column_excluded(t, "margin"));
	assert_false(xr_config_column_excluded(t, "total"));
	assert_false(xr_config_column_excluded(t, "Margin"));
	t = xr_config_table(conf, "public", "products");
	assert_non_null(t);
	assert_false(xr_config_column_excluded(t, "internal_note"));
	assert_false(xr_config_column_excluded(NULL, "internal_note"));
	xr_config_destroy(conf);
}

/* The example files in config/ load and keep users in their region. */
static void
test_shipped_configs_load(void **state)
{
	static const char *const regions[] = { "us", "eu", "apac" };
	char path[512], err[512];
	size_t i;
	(void)state;

	for (i = 0; i < 3; i++) {
		xr_config_t *conf;

		snprintf(path, sizeof(path), "%s/config/%s.yaml", XR_SOURCE_DIR,
		         regions[i]);
		conf = xr_config_load(path, err, sizeof(err));
		if (!conf)
			fail_msg("%s", err);
		assert_string_equal(conf->region, regions[i]);
		assert_int_equal(conf->n_regions, 3);
		assert_false(xr_config_publishes(conf, "public", "users"));
		assert_true(xr_config_publishes(conf, "public", "orders"));
		assert_true(xr_config_publishes(conf, "public", "products"));
		xr_config_destroy(conf);
	}
}

static void
test_destroy_null(void **state)
{
	(void)state;
	xr_config_destroy(NULL);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

/* ---- versions table names ---- */

static void
test_plain_names_keep_their_versions_table(void **state)
{
	char buf[128];

	(void)state;
	assert_int_equal(xr_config_versions_name("public", "orders", buf,
	                                       sizeof(buf)), 0);
	assert_string_equal(buf, "public.orders");
}

static void
test_dots_in_names_cannot_make_two_tables_share_one(void **state)
{
	char a[128], b[128], c[128];

	(void)state;
	assert_int_equal(xr_config_versions_name("a.b", "c", a, sizeof(a)), 0);
	assert_int_equal(xr_config_versions_name("a", "b.c", b, sizeof(b)), 0);
	assert_string_not_equal(a, b);
	assert_string_equal(a, "a%2Eb.c");
	assert_string_equal(b, "a.b%2Ec");
	/* The escape itself is escaped: "a%2Eb" is not "a.b". */
	assert_int_equal(xr_config_versions_name("a%2Eb", "c", c, sizeof(c)), 0);
	assert_string_not_equal(a, c);
	assert_string_equal(c, "a%252Eb.c");
}

static void
test_too_long_a_name_is_refused(void **state)
{
	char buf[256], name[64];

	(void)state;
	memset(name, 'x', 50);
	name[50] = '\0';
	assert_int_equal(xr_config_versions_name("public", name, buf, sizeof(buf)),
	                 -1);
	name[49] = '\0';
	assert_int_equal(xr_config_versions_name("public", name, buf, sizeof(buf)),
	                 0);
	assert_int_equal(xr_config_versions_name("public", name, buf, 10), -1);
}


static void
test_schema_registry_section(void **state)
{
	char err[512];
	xr_config_t *conf;
	(void)state;

	conf = load("sr.yaml", MINIMAL
	            "  schema_registry:\n"
	            "    url: http://127.0.0.1:18081/apis/ccompat/v7\n"
	            "    username: feed\n"
	            "    password: s3cret\n"
	            "    timeout_ms: 2500\n",
	            err, sizeof(err));
	assert_non_null(conf);
	assert_string_equal(conf->registry_url,
	                    "http://127.0.0.1:18081/apis/ccompat/v7");
	assert_true(conf->registry_framing);
	assert_string_equal(conf->registry_username, "feed");
	assert_string_equal(conf->registry_password, "s3cret");
	assert_int_equal(conf->registry_timeout_ms, 2500);
	assert_string_equal(conf->feed_dead_letter_topic, "xr._feed_dlq");
	xr_config_destroy(conf);
	/* The password from the environment wins. */
	setenv("XREGION_SCHEMA_REGISTRY_PASSWORD", "fromenv", 1);
	conf = load("sr2.yaml", MINIMAL
	            "  schema_registry: {url: 'https://r:8081', framing: single-object}\n",
	            err, sizeof(err));
	unsetenv("XREGION_SCHEMA_REGISTRY_PASSWORD");
	assert_non_null(conf);
	assert_false(conf->registry_framing);
	assert_string_equal(conf->registry_password, "fromenv");
	xr_config_destroy(conf);
	/* None: no registry. */
	conf = load("sr3.yaml", MINIMAL, err, sizeof(err));
	assert_non_null(conf);
	assert_null(conf->registry_url);
	xr_config_destroy(conf);
}

static void
test_schema_registry_errors_name_the_key(void **state)
{
	(void)state;
	expect_error("sr_nourl.yaml", MINIMAL "  schema_registry: {framing: confluent}\n",
	             ":6: kafka.schema_registry.url: required when "
	             "kafka.schema_registry is set");
	expect_error("sr_scheme.yaml", MINIMAL "  schema_registry: {url: 'r:8081'}\n",
	             ":6: kafka.schema_registry.url: expected an http:// or "
	             "https:// URL, got \"r:8081\"");
	expect_error("sr_framing.yaml",
	             MINIMAL "  schema_registry: {url: 'http://r', framing: avro}\n",
	             ":6: kafka.schema_registry.framing: expected confluent or "
	             "single-object, got \"avro\"");
	expect_error("sr_key.yaml",
	             MINIMAL "  schema_registry: {url: 'http://r', urls: x}\n",
	             ":6: kafka.schema_registry.urls: unknown key; valid keys "
	             "are: url, framing, username, password, ca_location, "
	             "timeout_ms");
}

/*
 * xr_config_load_mem reads bytes that need not end with a NUL, names them
 * as told in errors and conf->path, and refuses what the file loader
 * refuses for its size.
 */
static void
test_load_mem(void **state)
{
	static const char yaml[] = MINIMAL "log_level: debug\n";
	char err[512], *big;
	xr_config_t *conf;
	(void)state;

	/* Cut before "debug": the loader must not read past len. */
	conf = xr_config_load_mem("mem.yaml", yaml, sizeof(yaml) - 1, err,
	                          sizeof(err));
	assert_non_null(conf);
	assert_string_equal(conf->path, "mem.yaml");
	assert_string_equal(conf->log_level, "debug");
	xr_config_destroy(conf);

	conf = xr_config_load_mem(NULL, "region: [\n", 10, err, sizeof(err));
	assert_null(conf);
	assert_true(strncmp(err, "(memory):", 9) == 0);

	big = calloc(1024 * 1024 + 1, 1);
	assert_non_null(big);
	memset(big, ' ', 1024 * 1024 + 1);
	conf = xr_config_load_mem("big.yaml", big, 1024 * 1024 + 1, err,
	                          sizeof(err));
	assert_null(conf);
	assert_string_equal(err, "big.yaml: larger than 1048576 bytes; is this "
	                    "a config file?");
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_names_keep_their_versions_table),
		cmocka_unit_test(test_dots_in_names_cannot_make_two_tables_share_one),
		cmocka_unit_test(test_too_long_a_name_is_refused),
		cmocka_unit_test(test_schema_registry_section),
		cmocka_unit_test(test_schema_registry_errors_name_the_key),
		T(test_load_mem),
		T(test_producer_stream),
		T(test_full_file),
		T(test_minimal_defaults),
		T(test_derived_topics_follow_prefix),
		T(test_progress_topic_not_configurable),
		T(test_bool_spellings),
		T(test_property_scalars_become_strings),
		T(test_missing_file),
		T(test_directory_is_not_readable),
		T(test_not_yaml),
		T(test_empty_file),
		T(test_empty_document),
		T(test_top_level_list),
		T(test_unknown_top_key),
		T(test_unknown_table_key),
		T(test_duplicate_key),
		T(test_list_where_mapping_expected),
		T(test_mapping_where_list_expected),
		T(test_list_where_scalar_expected),
		T(test_missing_region),
		T(test_missing_dsn),
		T(test_missing_brokers),
		T(test_missing_table_name),
		T(test_bad_bool),
		T(test_int_trailing_junk),
		T(test_int_not_a_number),
		T(test_int_overflow),
		T(test_int_out_of_range),
		T(test_int_negative),
		T(test_bad_region_name),
		T(test_region_too_long),
		T(test_bad_slot),
		T(test_bad_topic_prefix),
		T(test_bad_table_name),
		T(test_bad_conflict),
		T(test_tiebreak),
		T(test_clock),
		T(test_bad_tiebreak),
		T(test_bad_log_level),
		T(test_duplicate_table),
		T(test_region_not_in_regions),
		T(test_duplicate_region),
		T(test_duplicate_exclude_column),
		T(test_bootstrap_servers_property_rejected),
		T(test_alias_rejected),
		T(test_recursive_alias_rejected),
		T(test_two_documents_rejected),
		T(test_env_overrides_dsn_and_brokers),
		T(test_env_supplies_required_keys),
		T(test_env_empty_dsn_rejected),
		T(test_env_metrics_listen),
		T(test_kafka_refused),
		T(test_env_prop_adds),
		T(test_env_prop_replaces),
		T(test_env_error_does_not_echo_value),
		T(test_publishes_fail_closed),
		T(test_exclude_columns),
		T(test_shipped_configs_load),
		T(test_destroy_null),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
