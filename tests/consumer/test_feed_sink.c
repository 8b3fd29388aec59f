/*
 * test_feed_sink.c: consumer/feed_sink.c: files committed whole and in
 * place, rows of no commit dropped on the next open, a commit interrupted
 * between its record and its renames finished on the next open, rotation
 * by size, a new file for a new schema, rows larger than a block, and the
 * header keeping the schema's logical types (which avro-c's own drops).
 * Files are read back with avro-c's reader.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <avro.h>

#include "common/avro_codec.h"
#include "common/buf.h"
#include "consumer/feed_sink.h"

static const char schema_a[] =
	"{\"type\":\"record\",\"name\":\"r\",\"fields\":[{\"name\":\"t\",\"type\":"
	"{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}},{\"name\":\"s\","
	"\"type\":\"string\"}]}";
static const char schema_b[] =
	"{\"type\":\"record\",\"name\":\"r\",\"fields\":[{\"name\":\"t\",\"type\":"
	"{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}},{\"name\":\"s\","
	"\"type\":\"string\"},{\"name\":\"x\",\"type\":\"long\"}]}";

#define DIR_A "public.t/dt=2026-12-01/hr=00"

typedef struct fx_s {
	char           out[64];
	xr_sink_conf_t conf;
} fx_t;

static int
setup(void **state)
{
	fx_t *fx = calloc(1, sizeof(*fx));

	strcpy(fx->out, "/tmp/xr-sink-XXXXXX");
	assert_non_null(mkdtemp(fx->out));
	fx->conf.out = fx->out;
	fx->conf.codec = "deflate";
	fx->conf.rotate_bytes = 1 << 30;
	fx->conf.rotate_us = INT64_C(3600000000);
	fx->conf.idle_us = INT64_C(3600000000);
	fx->conf.max_open = 8;
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	fx_t *fx = *state;
	char  cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", fx->out);
	assert_int_equal(system(cmd), 0);
	free(fx);
	return 0;
}

static xr_sink_t *
open_sink(fx_t *fx)
{
	char       err[512] = "";
	xr_sink_t *s = xr_sink_open(&fx->conf, err, sizeof(err));

	if (!s)
		fail_msg("xr_sink_open: %s", err);
	return s;
}

static xr_sink_schema_t
schema(const char *json)
{
	xr_sink_schema_t sch;
	xr_schema_t     *p = NULL;
	char             err[256];

	assert_int_equal(xr_schema_from_json(json, strlen(json), &p, err,
	                                     sizeof(err)), 0);
	sch.json = json;
	sch.fingerprint = p->fingerprint;
	sch.table = "public.t";
	sch.source_schema = "0000000000000000.0000000000000000";
	xr_schema_destroy(p);
	return sch;
}

/* Appends a row (t = offset, s = text of len bytes) and advances. */
static void
row(xr_sink_t *s, const xr_sink_schema_t *sch, int64_t off, size_t len,
    bool extra)
{
	xr_buf_t b;
	char     err[512] = "";
	char    *text = malloc(len + 1);

	memset(text, 'a' + (int)(off % 26), len);
	xr_buf_init(&b);
	xr_avro_put_long(&b, off);
	xr_avro_put_bytes(&b, text, len);
	if (extra)
		xr_avro_put_long(&b, -off);
	if (xr_sink_append(s, "xr.us.public.t", 0, off, DIR_A, sch, 0, b.data,
	                   b.len, err, sizeof(err)) ||
	    xr_sink_advance(s, "xr.us.public.t", 0, off, err, sizeof(err)))
		fail_msg("append: %s", err);
	xr_buf_term(&b);
	free(text);
}

static void
commit_all(xr_sink_t *s)
{
	char err[512] = "";

	if (xr_sink_commit_due(s, 0, true, err, sizeof(err)))
		fail_msg("commit: %s", err);
}

/* Files in dir (relative to out), sorted, as "name" lines. */
static int
count_files(const fx_t *fx, const char *rel, const char *suffix)
{
	char           path[512];
	DIR           *d;
	struct dirent *de;
	int            n = 0;

	snprintf(path, sizeof(path), "%s/%s", fx->out, rel);
	d = opendir(path);
	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, suffix))
			n++;
	closedir(d);
	return n;
}

/* Reads a committed file: its rows' t values in order into ts. */
static int
read_file(const fx_t *fx, const char *name, int64_t *ts, int max,
          char **schema_json)
{
	char               path[512];
	avro_file_reader_t r;
	avro_schema_t      ws;
	avro_value_iface_t *iface;
	avro_value_t       v;
	int                n = 0;
	FILE              *f;
	char               head[4096];
	size_t             got;

	snprintf(path, sizeof(path), "%s/" DIR_A "/%s", fx->out, name);
	assert_int_equal(avro_file_reader(path, &r), 0);
	ws = avro_file_reader_get_writer_schema(r);
	iface = avro_generic_class_from_schema(ws);
	assert_int_equal(avro_generic_value_new(iface, &v), 0);
	while (avro_file_reader_read_value(r, &v) == 0) {
		avro_value_t f0;

		assert_true(n < max);
		assert_int_equal(avro_value_get_by_index(&v, 0, &f0, NULL), 0);
		assert_int_equal(avro_value_get_long(&f0, &ts[n]), 0);
		n++;
	}
	avro_value_decref(&v);
	avro_value_iface_decref(iface);
	avro_schema_decref(ws);
	avro_file_reader_close(r);
	if (schema_json) {
		f = fopen(path, "rb");
		got = fread(head, 1, sizeof(head) - 1, f);
		head[got] = '\0';
		fclose(f);
		/* NULs in the header end the string early: search the bytes. */
		*schema_json = NULL;
		for (size_t i = 0; i + 16 < got; i++)
			if (memcmp(head + i, "timestamp-micros", 16) == 0)
				*schema_json = "found";
	}
	return n;
}

static void
test_commit_puts_whole_files_in_place(void **state)
{
	fx_t            *fx = *state;
	xr_sink_t       *s = open_sink(fx);
	xr_sink_schema_t a = schema(schema_a);
	int64_t          ts[64];
	char            *lt;
	int              i;

	assert_true(xr_sink_position(s, "xr.us.public.t", 0) == -1);
	for (i = 0; i < 10; i++)
		row(s, &a, i, 20, false);
	/* Nothing in place before the commit. */
	assert_int_equal(count_files(fx, DIR_A, ".avro"), 0);
	commit_all(s);
	assert_int_equal(count_files(fx, DIR_A, ".avro"), 1);
	assert_int_equal(count_files(fx, "_xregion/tmp", ".avro"), 0);
	assert_true(xr_sink_position(s, "xr.us.public.t", 0) == 10);
	assert_int_equal(read_file(fx, "xr.us.public.t+0+0000000000.avro", ts, 64,
	                           &lt), 10);
	for (i = 0; i < 10; i++)
		assert_true(ts[i] == i);
	/* The header has the schema as given, logical types included. */
	assert_non_null(lt);
	xr_sink_close(s);
}

static void
test_uncommitted_rows_are_dropped_on_open(void **state)
{
	fx_t            *fx = *state;
	xr_sink_t       *s = open_sink(fx);
	xr_sink_schema_t a = schema(schema_a);
	int              i;

	for (i = 0; i < 10; i++)
		row(s, &a, i, 20, false);
	commit_all(s);
	for (i = 10; i < 15; i++)
		row(s, &a, i, 20, false);
	assert_int_equal(count_files(fx, "_xregion/tmp", ".avro"), 1);
	xr_sink_close(s);   /* as if killed: no commit */
	s = open_sink(fx);
	assert_int_equal(count_files(fx, "_xregion/tmp", ".avro"), 0);
	assert_int_equal(count_files(fx, DIR_A, ".avro"), 1);
	assert_true(xr_sink_position(s, "xr.us.public.t", 0) == 10);
	xr_sink_close(s);
}

static void
test_interrupted_commit_is_finished_on_open(void **state)
{
	fx_t            *fx = *state;
	xr_sink_t       *s = open_sink(fx);
	xr_sink_schema_t a = schema(schema_a);
	char             cmd[1024], path[512];
	FILE            *f;
	int64_t          ts[64];
	int              i;

	for (i = 0; i < 5; i++)
		row(s, &a, i, 20, false);
	commit_all(s);
	xr_sink_close(s);
	/*
	 * The state a kill leaves between a commit's record and its renames:
	 * the file in tmp, the record naming it and the next offset.
	 */
	snprintf(cmd, sizeof(cmd), "mv %s/" DIR_A "/xr.us.public.t+0+0000000000.avro "
	         "%s/_xregion/tmp/", fx->out, fx->out);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/_xregion/state/xr.us.public.t+0", fx->out);
	f = fopen(path, "w");
	fprintf(f, "xregion-feed-state 1\ntopic xr.us.public.t\npartition 0\n"
	        "next 5\nfile xr.us.public.t+0+0000000000.avro " DIR_A
	        "/xr.us.public.t+0+0000000000.avro\n");
	fclose(f);
	s = open_sink(fx);
	assert_int_equal(count_files(fx, DIR_A, ".avro"), 1);
	assert_int_equal(count_files(fx, "_xregion/tmp", ".avro"), 0);
	assert_true(xr_sink_position(s, "xr.us.public.t", 0) == 5);
	assert_int_equal(read_file(fx, "xr.us.public.t+0+0000000000.avro", ts, 64,
	                           NULL), 5);
	xr_sink_close(s);
}

static void
test_rotation_by_size_and_new_schema(void **state)
{
	fx_t            *fx = *state;
	xr_sink_t       *s;
	xr_sink_schema_t a = schema(schema_a), b = schema(schema_b);
	int64_t          ts[64];
	int              i;

	fx->conf.rotate_bytes = 500;
	s = open_sink(fx);
	for (i = 0; i < 40; i++)   /* 40 rows of about 102 bytes */
		row(s, &a, i, 100, false);
	/* Committed at each 500 bytes: 8 files of 5 rows, in place already. */
	assert_int_equal(count_files(fx, DIR_A, ".avro"), 8);
	assert_int_equal(read_file(fx, "xr.us.public.t+0+0000000005.avro", ts, 64,
	                           NULL), 5);
	assert_true(ts[0] == 5 && ts[4] == 9);
	fx->conf.rotate_bytes = 1 << 30;
	xr_sink_close(s);
	s = open_sink(fx);
	row(s, &a, 40, 10, false);
	row(s, &b, 41, 10, true);   /* a new schema: a new file */
	row(s, &b, 42, 10, true);
	commit_all(s);
	assert_int_equal(count_files(fx, DIR_A, ".avro"), 10);
	assert_int_equal(read_file(fx, "xr.us.public.t+0+0000000040.avro", ts, 64,
	                           NULL), 1);
	assert_int_equal(read_file(fx, "xr.us.public.t+0+0000000041.avro", ts, 64,
	                           NULL), 2);
	assert_true(xr_sink_position(s, "xr.us.public.t", 0) == 43);
	xr_sink_close(s);
}

/* A partition whose topic has ".tmp" in it keeps its record. */
static void
test_record_of_a_tmp_named_topic_is_kept(void **state)
{
	fx_t            *fx = *state;
	xr_sink_t       *s = open_sink(fx);
	xr_sink_schema_t a = schema(schema_a);
	xr_buf_t         b;
	char             err[512] = "";

	xr_buf_init(&b);
	xr_avro_put_long(&b, 1);
	xr_avro_put_bytes(&b, "x", 1);
	assert_int_equal(xr_sink_append(s, "xr.us.public.tmp_orders", 0, 7,
	                                DIR_A, &a, 0, b.data, b.len, err,
	                                sizeof(err)), 0);
	assert_int_equal(xr_sink_advance(s, "xr.us.public.tmp_orders", 0, 7, err,
	                                 sizeof(err)), 0);
	commit_all(s);
	xr_sink_close(s);
	s = open_sink(fx);
	assert_true(xr_sink_position(s, "xr.us.public.tmp_orders", 0) == 8);
	xr_sink_close(s);
	xr_buf_term(&b);
}

/* Two sinks on one directory: the second is refused. */
static void
test_second_sink_on_a_directory_is_refused(void **state)
{
	fx_t      *fx = *state;
	xr_sink_t *s = open_sink(fx), *t;
	char       err[512] = "";

	t = xr_sink_open(&fx->conf, err, sizeof(err));
	assert_null(t);
	assert_non_null(strstr(err, "another xregion feed"));
	xr_sink_close(s);
	t = open_sink(fx);   /* free again once the first is closed */
	xr_sink_close(t);
}

static void
test_row_larger_than_a_block(void **state)
{
	fx_t            *fx = *state;
	xr_sink_t       *s = open_sink(fx);
	xr_sink_schema_t a = schema(schema_a);
	int64_t          ts[8];

	row(s, &a, 0, 10, false);
	row(s, &a, 1, 3 << 20, false);   /* 3 MiB: over the 256 KiB block */
	row(s, &a, 2, 10, false);
	commit_all(s);
	assert_int_equal(read_file(fx, "xr.us.public.t+0+0000000000.avro", ts, 8,
	                           NULL), 3);
	assert_true(ts[1] == 1 && ts[2] == 2);
	xr_sink_close(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commit_puts_whole_files_in_place,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_uncommitted_rows_are_dropped_on_open,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupted_commit_is_finished_on_open,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_by_size_and_new_schema,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_row_larger_than_a_block,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_record_of_a_tmp_named_topic_is_kept,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_sink_on_a_directory_is_refused,
		                                setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
