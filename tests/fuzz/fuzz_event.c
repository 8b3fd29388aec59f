/*
 * fuzz_event.c: libFuzzer harness for consumer/event.c, decoding a change
 * event read from Kafka: the framing (single-object or Confluent), the Avro
 * datum (xr_avro_validate, then avro-c) and the conversion of every value
 * to PostgreSQL text (common/pgtype.c).
 *
 * The writer schemas are the fixtures of tests/common/data (every mapped
 * type, arrays, vclock), fed to a registry with xr_registry_add_json: single-
 * object under their fingerprint, Confluent under schema registry id 1.  The
 * registry's Kafka handle points at a closed port and is never used: a
 * message naming any other schema is skipped before decoding, since an
 * unknown fingerprint would wait for the schemas topic.
 *
 * The first input byte picks the framing, the rest is the message:
 *   0: the rest as it is (only when it names a known schema or is
 *      Confluent-framed: other registry ids fail at once, no registry is
 *      configured);
 *   1: C3 01 and the fingerprint of schema (byte 0 / 3) % nschemas, then
 *      the rest as the datum;
 *   2: 00 00 00 00 01 (id 1: the first schema), then the rest as the datum.
 * What it checks, beyond ASan/UBSan and LeakSanitizer: a failure sets
 * errstr; on success every value present and not null points at
 * NUL-terminated text inside ev.text, and the identifiers are terminated.
 * XR_FUZZ_DEBUG=1 in the environment prints each decode's result (to see
 * whether a seed decodes at all).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/avro_codec.h"
#include "common/config.h"
#include "common/schema_registry.h"
#include "consumer/event.h"
#include "consumer/registry.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char yaml[] =
	"region: us\n"
	"regions: [us, eu]\n"
	"postgres:\n"
	"  dsn: \"host=127.0.0.1 port=1 dbname=app\"\n"
	"kafka:\n"
	"  brokers: 127.0.0.1:1\n"
	"  properties:\n"
	"    log_level: 0\n";

static const char *const schema_files[] = {
	XR_SOURCE_DIR "/tests/common/data/all_types.value.avsc",
	XR_SOURCE_DIR "/schemas/envelope.avsc",
};
#define NSCHEMAS (sizeof(schema_files) / sizeof(schema_files[0]))

static xr_config_t   *conf;
static xr_registry_t *reg;
static uint64_t       fps[NSCHEMAS];

static void die(const char *what, const char *err)
	__attribute__((noreturn));

static void
die(const char *what, const char *err)
{
	fprintf(stderr, "fuzz_event: %s: %s\n", what, err);
	exit(1);
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long  n;

	if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		die(path, "cannot read");
	buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
		die(path, "cannot read");
	buf[n] = '\0';
	(void)fclose(f);
	*len = (size_t)n;
	return buf;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char   err[1024], key[32];
	size_t i;

	(void)argc;
	(void)argv;
	conf = xr_config_load_mem("fuzz_event.yaml", yaml, sizeof(yaml) - 1, err,
	                          sizeof(err));
	if (!conf)
		die("config", err);
	reg = xr_registry_new(conf, err, sizeof(err));
	if (!reg)
		die("registry", err);
	for (i = 0; i < NSCHEMAS; i++) {
		xr_schema_t *s;
		size_t       len;
		char        *json = slurp(schema_files[i], &len);

		if (xr_schema_from_json(json, len, &s, err, sizeof(err)))
			die(schema_files[i], err);
		if (!s->is_envelope)
			die(schema_files[i], "not an xregion change event");
		fps[i] = s->fingerprint;
		xr_schema_destroy(s);
		/* Each under a key of its own: a key known keeps its first schema. */
		(void)snprintf(key, sizeof(key), "fuzz:%zu", i);
		if (xr_registry_add_json(reg, key, json, len, err, sizeof(err)) ||
		    (i == 0 &&
		     xr_registry_add_json(reg, "sr:1", json, len, err, sizeof(err))))
			die(schema_files[i], err);
		free(json);
	}
	if (xr_registry_size(reg) != NSCHEMAS + 1)
		die("registry", "a schema was not kept");
	/* conf and reg live as long as the process: no leak to report. */
	return 0;
}

static int
known(uint64_t fp)
{
	size_t i;

	for (i = 0; i < NSCHEMAS; i++)
		if (fps[i] == fp)
			return 1;
	return 0;
}

static void
check_vals(const xr_event_t *ev, const xr_eval_t *vals)
{
	int i;

	for (i = 0; i < ev->nfields; i++) {
		const xr_eval_t *v = &vals[i];

		if (!v->present || v->is_null)
			continue;
		if (v->off > ev->text.len || v->len >= ev->text.len - v->off ||
		    ev->text.data[v->off + v->len] != '\0')
			abort();
	}
}

static void
check_str(const char *s, size_t size)
{
	if (!memchr(s, '\0', size))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	xr_event_t     ev;
	unsigned char *msg;
	const void    *body;
	size_t         len = 0, body_len;
	uint64_t       fp;
	int32_t        sid;
	char           err[1024];
	int            rc, i;

	if (size < 1)
		return 0;
	msg = malloc(size + XR_AVRO_SO_HEADER_LEN);
	if (!msg)
		return 0;
	switch (data[0] % 3) {
	case 0:
		if (xr_confluent_header(data + 1, size - 1, &sid, &body,
		                        &body_len) != 0 &&
		    (xr_avro_so_header(data + 1, size - 1, &fp, &body, &body_len,
		                       err, sizeof(err)) == 0 && !known(fp))) {
			free(msg);
			return 0;
		}
		break;
	case 1:
		fp = fps[(data[0] / 3) % NSCHEMAS];
		msg[len++] = XR_AVRO_SO_MAGIC0;
		msg[len++] = XR_AVRO_SO_MAGIC1;
		for (i = 0; i < 8; i++)
			msg[len++] = (unsigned char)(fp >> (8 * i));
		break;
	default:
		msg[len++] = XR_CONFLUENT_MAGIC;
		msg[len++] = 0;
		msg[len++] = 0;
		msg[len++] = 0;
		msg[len++] = 1;
		break;
	}
	memcpy(msg + len, data + 1, size - 1);
	len += size - 1;
	/* Shrink to the exact size: ASan then sees the first byte over. */
	msg = realloc(msg, len ? len : 1);
	if (!msg)
		abort();

	xr_event_init(&ev);
	err[0] = '\0';
	rc = xr_event_decode(&ev, reg, msg, len, NULL, err, sizeof(err));
	if (getenv("XR_FUZZ_DEBUG"))
		fprintf(stderr, "fuzz_event: %d %s\n", rc, rc ? err : "");
	if (rc == 0) {
		check_str(ev.event_id, sizeof(ev.event_id));
		check_str(ev.region, sizeof(ev.region));
		check_str(ev.nspname, sizeof(ev.nspname));
		check_str(ev.relname, sizeof(ev.relname));
		if (ev.has_before)
			check_vals(&ev, ev.before);
		if (ev.has_after)
			check_vals(&ev, ev.after);
	} else if (rc == -2 || err[0] == '\0') {
		/* -2: it went to Kafka, which the skip above should prevent. */
		abort();
	}
	xr_event_term(&ev);
	free(msg);
	return 0;
}
