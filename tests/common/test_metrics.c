/*
 * test_metrics.c: the latency histogram's buckets and exposition, and the
 * /status document (paused partitions, the last error logged).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/log.h"
#include "common/metrics.h"

/* Bounds are inclusive: 1 ms lands in the first bucket, 1.001 in the next. */
static void
test_latency_buckets(void **state)
{
	uint64_t b[XR_LATENCY_BUCKETS + 1];
	(void)state;

	memset(b, 0, sizeof(b));
	xr_latency_observe(b, 0);
	xr_latency_observe(b, 1000);
	xr_latency_observe(b, 1001);
	xr_latency_observe(b, xr_latency_bounds_us[XR_LATENCY_BUCKETS - 1]);
	xr_latency_observe(b, xr_latency_bounds_us[XR_LATENCY_BUCKETS - 1] + 1);
	assert_int_equal(b[0], 2);
	assert_int_equal(b[1], 1);
	assert_int_equal(b[XR_LATENCY_BUCKETS - 1], 1);
	assert_int_equal(b[XR_LATENCY_BUCKETS], 1);
}

/* The exposition is cumulative, ends with +Inf = _count, and has _sum. */
static void
test_latency_rendered_cumulative(void **state)
{
	xr_metrics_t m;
	char        *out;
	(void)state;

	xr_metrics_init(&m, "eu");
	atomic_store(&m.apply_latency[0], 3);
	atomic_store(&m.apply_latency[2], 2);
	atomic_store(&m.apply_latency[XR_LATENCY_BUCKETS], 1);
	atomic_store(&m.apply_latency_sum_us, 2500000);
	out = xr_metrics_render(&m);
	assert_non_null(strstr(out, "# TYPE xregion_apply_latency_seconds "
	                            "histogram\n"));
	assert_non_null(strstr(out, "xregion_apply_latency_seconds_bucket{"
	                            "region=\"eu\",le=\"0.001\"} 3\n"));
	assert_non_null(strstr(out, "xregion_apply_latency_seconds_bucket{"
	                            "region=\"eu\",le=\"0.0025\"} 3\n"));
	assert_non_null(strstr(out, "xregion_apply_latency_seconds_bucket{"
	                            "region=\"eu\",le=\"0.005\"} 5\n"));
	assert_non_null(strstr(out, "xregion_apply_latency_seconds_bucket{"
	                            "region=\"eu\",le=\"60\"} 5\n"));
	assert_non_null(strstr(out, "xregion_apply_latency_seconds_bucket{"
	                            "region=\"eu\",le=\"+Inf\"} 6\n"));
	assert_non_null(strstr(out, "xregion_apply_latency_seconds_sum{"
	                            "region=\"eu\"} 2.500000\n"));
	assert_non_null(strstr(out, "xregion_apply_latency_seconds_count{"
	                            "region=\"eu\"} 6\n"));
	free(out);
	xr_metrics_term(&m);
}

/* /status: counters, the paused list as set, the last ERROR line. */
static void
test_status_document(void **state)
{
	xr_metrics_t m;
	json_t      *doc, *p;
	char        *out;
	(void)state;

	xr_metrics_init(&m, "us");
	atomic_store(&m.in_flight, 7);
	atomic_store(&m.confirmed_lsn, ((uint64_t)1 << 32) | 0x10);
	out = xr_metrics_status_json(&m);
	doc = json_loads(out, 0, NULL);
	free(out);
	assert_non_null(doc);
	assert_string_equal(json_string_value(json_object_get(doc, "region")),
	                    "us");
	p = json_object_get(doc, "producer");
	assert_int_equal(json_integer_value(json_object_get(p, "in_flight")), 7);
	assert_string_equal(json_string_value(json_object_get(p,
	                    "confirmed_lsn")), "1/10");
	assert_int_equal(json_array_size(json_object_get(json_object_get(doc,
	                 "consumer"), "paused")), 0);
	json_decref(doc);

	xr_metrics_set_paused(&m, strdup("[{\"topic\":\"xr.eu.public.t\","
	                                 "\"partition\":2,\"reason\":\"why\"}]"));
	xr_log_set_level(XR_LOG_ERROR);
	xr_error("test: something %s", "broke");
	out = xr_metrics_status_json(&m);
	doc = json_loads(out, 0, NULL);
	free(out);
	assert_non_null(doc);
	p = json_array_get(json_object_get(json_object_get(doc, "consumer"),
	                   "paused"), 0);
	assert_string_equal(json_string_value(json_object_get(p, "reason")),
	                    "why");
	p = json_object_get(doc, "last_error");
	assert_string_equal(json_string_value(json_object_get(p, "message")),
	                    "test: something broke");
	assert_non_null(json_string_value(json_object_get(p, "at")));
	json_decref(doc);
	xr_metrics_term(&m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_latency_buckets),
		cmocka_unit_test(test_latency_rendered_cumulative),
		cmocka_unit_test(test_status_document),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
