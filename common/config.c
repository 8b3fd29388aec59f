/*
 * config.c: reads xregion's YAML configuration with libyaml's document API,
 * validates every key, fills in defaults and applies environment overrides
 * (see config.h; docs/configuration.md documents the keys).
 *
 * The file is parsed twice: once as an event stream, which rejects aliases
 * and multiple documents with exact line numbers before any node exists, and
 * once into a document whose nodes are walked.  Aliases are refused because
 * libyaml's loader resolves them into shared (and possibly cyclic) nodes.
 */
#include "common/config.h"

#include "common/buf.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <yaml.h>

#include "common/log.h"

#define CFG_MAX_FILE_SIZE  (1024 * 1024)  /* a config file, not a data file */
#define CFG_PATH_MAX       256            /* key paths, for messages only */
#define CFG_REGION_MAX     32
#define CFG_PG_NAME_MAX    63             /* NAMEDATALEN - 1 */
#define CFG_STREAM_MAX     32             /* producer.stream, tables[].stream */
#define CFG_TOPIC_MAX      249            /* Kafka's limit on topic names */
#define CFG_MSG_VALUE_MAX  64             /* echoed values are cut here */

#define ENV_DSN        "XREGION_POSTGRES_DSN"
#define ENV_BROKERS    "XREGION_KAFKA_BROKERS"
#define ENV_PROP       "XREGION_KAFKA_PROP_"
#define ENV_REGISTRY_PASSWORD "XREGION_SCHEMA_REGISTRY_PASSWORD"
#define ENV_METRICS    "XREGION_METRICS_LISTEN"

#define WUR __attribute__((warn_unused_result))

/* State of one xr_config_load() call. */
typedef struct {
	const char      *file;
	yaml_document_t *doc;
	char            *errstr;
	size_t           errstr_size;
	size_t           root_line;      /* for "required key missing" after env */
	size_t           pg_line;
	size_t           kafka_line;
	bool             slot_set, publication_set;   /* postgres.* given */
} cfg_ctx_t;

static const char *const root_keys[] = {
	"region", "regions", "log_level", "metrics_listen", "postgres", "kafka",
	"producer", "consumer", "tables", NULL
};
static const char *const pg_keys[] = {
	"dsn", "slot", "publication", "failover", NULL
};
static const char *const kafka_keys[] = {
	"brokers", "topic_prefix", "schemas_topic", "dead_letter_topic",
	"progress_topic", "feed_dead_letter_topic", "partitions", "replication_factor", "max_message_bytes", "properties",
	"schema_registry", NULL
};
static const char *const registry_keys[] = {
	"url", "framing", "username", "password", "ca_location", "timeout_ms",
	NULL
};
static const char *const producer_keys[] = {
	"status_interval_ms", "max_inflight_mb", "flush_timeout_ms",
	"reconnect_backoff_max_ms", "stream", NULL
};
static const char *const consumer_keys[] = {
	"group_id", "batch_size", "batch_linger_ms", "tombstone_retention_hours",
	"tombstone_purge_interval_s", "drift_recheck_ms", "lock_timeout_ms",
	"statement_timeout_ms", "apply_mode", NULL
};
static const char *const table_keys[] = {
	"name", "pii", "exclude_columns", "conflict", "tiebreak", "clock",
	"stream", NULL
};

/* ---- memory: allocation failure aborts, as in buf.c ---- */

static void
oom(void)
{
	fputs("xregion: out of memory\n", stderr);
	abort();
}

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		oom();
	return p;
}

static void *
xreallocarray(void *p, size_t n, size_t size)
{
	size_t bytes;

	if (size && n > SIZE_MAX / size)
		oom();
	bytes = n * size;
	p = realloc(p, bytes ? bytes : 1);
	if (!p)
		oom();
	return p;
}

static char *
xstrdup(const char *s)
{
	char *d = strdup(s);

	if (!d)
		oom();
	return d;
}

static char *
xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom();
	return s;
}

/* Frees a NULL-terminated list of n strings. */
static void
free_list(char **list, size_t n)
{
	size_t i;

	if (!list)
		return;
	for (i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

/* ---- errors ---- */

/*
 * Fills errstr with "file:line: path: message".  line 0 leaves the line out,
 * an empty path leaves the path out.  errstr is the caller's buffer: a message
 * longer than it is cut there, which is all snprintf can do for a caller who
 * chose the size.
 */
static void
cfg_err(cfg_ctx_t *c, size_t line, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
cfg_err(cfg_ctx_t *c, size_t line, const char *path, const char *fmt, ...)
{
	char msg[1024], where[32] = "";
	va_list ap;

	if (!c->errstr || c->errstr_size == 0)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);   /* cut, never overrun */
	va_end(ap);
	if (line > 0)
		(void)snprintf(where, sizeof(where), ":%zu", line);
	(void)snprintf(c->errstr, c->errstr_size, "%s%s: %s%s%s", c->file, where,
	               path && *path ? path : "", path && *path ? ": " : "", msg);
}

/* "parent.key", or "key" at the top level; "..." marks a cut path. */
static const char *
path_key(char dst[CFG_PATH_MAX], const char *parent, const char *key)
{
	int n = snprintf(dst, CFG_PATH_MAX, "%s%s%s", parent,
	                 *parent ? "." : "", key);

	if (n < 0 || (size_t)n >= CFG_PATH_MAX)
		memcpy(dst + CFG_PATH_MAX - 4, "...", 4);
	return dst;
}

static const char *
path_index(char dst[CFG_PATH_MAX], const char *parent, size_t i)
{
	int n = snprintf(dst, CFG_PATH_MAX, "%s[%zu]", parent, i);

	if (n < 0 || (size_t)n >= CFG_PATH_MAX)
		memcpy(dst + CFG_PATH_MAX - 4, "...", 4);
	return dst;
}

/* ---- nodes ---- */

static size_t
node_line(const yaml_node_t *n)
{
	return n->start_mark.line + 1;
}

static const char *
node_str(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* An empty value, "~" or "null" written plainly (YAML's null). */
static bool
node_is_null(const yaml_node_t *n)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };
	size_t i;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	for (i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (strcmp(node_str(n), nulls[i]) == 0)
			return true;
	return false;
}

/* What a node is, for "expected X, got Y"; never the value (it may be secret). */
static const char *
node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:  return "a mapping";
	case YAML_SEQUENCE_NODE: return "a list";
	case YAML_SCALAR_NODE:   return node_is_null(n) ? "nothing" : "a scalar";
	default:                 return "an empty node";
	}
}

static yaml_node_t *
node_get(cfg_ctx_t *c, int index)
{
	return yaml_document_get_node(c->doc, index);
}

/* The value under key in map, or NULL. map_check() has ruled out duplicates. */
static yaml_node_t *
map_get(cfg_ctx_t *c, yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *p;

	if (!map)
		return NULL;
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
		if (strcmp(node_str(node_get(c, p->key)), key) == 0)
			return node_get(c, p->value);
	return NULL;
}

static bool
in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

/* Scalar text without embedded NULs, which a C string would silently cut. */
static WUR int
check_scalar_text(cfg_ctx_t *c, const yaml_node_t *n, const char *path)
{
	if (strlen(node_str(n)) != n->data.scalar.length) {
		cfg_err(c, node_line(n), path, "contains a NUL character");
		return -1;
	}
	return 0;
}

/*
 * Checks that every key of map is a string, appears once and, when valid is
 * not NULL, is one of valid.
 */
static WUR int
map_check(cfg_ctx_t *c, yaml_node_t *map, const char *path,
          const char *const *valid)
{
	yaml_node_pair_t *p, *q;
	char kpath[CFG_PATH_MAX];

	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_get(c, p->key);
		const char *key;

		if (k->type != YAML_SCALAR_NODE || node_is_null(k)) {
			cfg_err(c, node_line(k), path, "expected a string as key, got %s",
			        node_kind(k));
			return -1;
		}
		if (check_scalar_text(c, k, path) != 0)
			return -1;
		key = node_str(k);
		path_key(kpath, path, key);
		for (q = map->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *prev = node_get(c, q->key);

			if (strcmp(node_str(prev), key) == 0) {
				cfg_err(c, node_line(k), kpath,
				        "duplicate key (first at line %zu)", node_line(prev));
				return -1;
			}
		}
		if (valid && !in_list(valid, key)) {
			char list[512] = "";
			size_t used = 0;
			const char *const *v;

			for (v = valid; *v; v++) {
				int n = snprintf(list + used, sizeof(list) - used, "%s%s",
				                 v == valid ? "" : ", ", *v);

				if (n < 0 || (size_t)n >= sizeof(list) - used)
					break;   /* the key lists above are far shorter */
				used += (size_t)n;
			}
			cfg_err(c, node_line(k), kpath, "unknown key; valid keys are: %s",
			        list);
			return -1;
		}
	}
	return 0;
}

/*
 * *out = the mapping n, or NULL when n is absent or null (an empty section).
 * Anything else is an error.
 */
static WUR int
as_map(cfg_ctx_t *c, yaml_node_t *n, const char *path, yaml_node_t **out)
{
	*out = NULL;
	if (!n || node_is_null(n))
		return 0;
	if (n->type != YAML_MAPPING_NODE) {
		cfg_err(c, node_line(n), path, "expected a mapping, got %s",
		        node_kind(n));
		return -1;
	}
	*out = n;
	return 0;
}

static WUR int
as_seq(cfg_ctx_t *c, yaml_node_t *n, const char *path, yaml_node_t **out)
{
	*out = NULL;
	if (!n || node_is_null(n))
		return 0;
	if (n->type != YAML_SEQUENCE_NODE) {
		cfg_err(c, node_line(n), path, "expected a list, got %s", node_kind(n));
		return -1;
	}
	*out = n;
	return 0;
}

static size_t
seq_len(const yaml_node_t *seq)
{
	return seq ? (size_t)(seq->data.sequence.items.top -
	                      seq->data.sequence.items.start) : 0;
}

/* *out = the text of a non-null scalar (borrowed from the document). */
static WUR int
get_scalar(cfg_ctx_t *c, yaml_node_t *n, const char *path, const char **out)
{
	if (n->type != YAML_SCALAR_NODE || node_is_null(n)) {
		cfg_err(c, node_line(n), path, "expected a string, got %s",
		        node_kind(n));
		return -1;
	}
	if (check_scalar_text(c, n, path) != 0)
		return -1;
	*out = node_str(n);
	return 0;
}

/* Replaces *out with a copy of a non-empty string.  Never echoes the value. */
static WUR int
get_string(cfg_ctx_t *c, yaml_node_t *n, const char *path, char **out)
{
	const char *s;

	if (get_scalar(c, n, path, &s) != 0)
		return -1;
	if (*s == '\0') {
		cfg_err(c, node_line(n), path, "must not be empty");
		return -1;
	}
	free(*out);
	*out = xstrdup(s);
	return 0;
}

/* [a-z0-9_]{1,max}: regions, slots, publications. */
static bool
is_lower_name(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

/* [A-Za-z0-9._-]{1,249}, not "." or "..": what Kafka accepts as a topic. */
static bool
is_topic(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CFG_TOPIC_MAX || strcmp(s, ".") == 0 ||
	    strcmp(s, "..") == 0)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return false;
	return true;
}

/*
 * A PostgreSQL identifier as it appears unquoted or as pgoutput reports it:
 * [A-Za-z_][A-Za-z0-9_$]{0,62}.  Case is kept: "Orders" and "orders" differ.
 */
const char *
xr_config_progress_topic(const xr_config_t *conf, const char *region)
{
	size_t i;

	for (i = 0; conf->progress_topics && i < conf->n_regions; i++)
		if (strcmp(conf->regions[i], region) == 0)
			return conf->progress_topics[i];
	return NULL;
}

bool
xr_config_is_ident(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > CFG_PG_NAME_MAX)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
	      s[0] == '_'))
		return false;
	for (i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '$'))
			return false;
	return true;
}

static WUR int
get_lower_name(cfg_ctx_t *c, yaml_node_t *n, const char *path, size_t max,
               char **out)
{
	const char *s;

	if (get_scalar(c, n, path, &s) != 0)
		return -1;
	if (!is_lower_name(s, max)) {
		cfg_err(c, node_line(n), path,
		        "expected 1 to %zu of a-z, 0-9 and _, got \"%.*s\"", max,
		        CFG_MSG_VALUE_MAX, s);
		return -1;
	}
	free(*out);
	*out = xstrdup(s);
	return 0;
}

static WUR int
get_topic(cfg_ctx_t *c, yaml_node_t *n, const char *path, char **out)
{
	const char *s;

	if (get_scalar(c, n, path, &s) != 0)
		return -1;
	if (!is_topic(s)) {
		cfg_err(c, node_line(n), path,
		        "expected a Kafka topic name (1 to %d of A-Z, a-z, 0-9, '.', "
		        "'_', '-'), got \"%.*s\"", CFG_TOPIC_MAX, CFG_MSG_VALUE_MAX, s);
		return -1;
	}
	free(*out);
	*out = xstrdup(s);
	return 0;
}

/* A base-10 integer in [min, max]: no spaces, no trailing junk, no overflow. */
static WUR int
get_int(cfg_ctx_t *c, yaml_node_t *n, const char *path, long min, long max,
        int *out)
{
	const char *s, *p;
	char *end;
	long long v;

	if (n->type != YAML_SCALAR_NODE || node_is_null(n)) {
		cfg_err(c, node_line(n), path, "expected an integer, got %s",
		        node_kind(n));
		return -1;
	}
	s = node_str(n);
	p = (*s == '+' || *s == '-') ? s + 1 : s;
	if (*p < '0' || *p > '9' || strlen(s) != n->data.scalar.length) {
		cfg_err(c, node_line(n), path, "expected an integer, got \"%.*s\"",
		        CFG_MSG_VALUE_MAX, s);
		return -1;
	}
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != '\0') {
		cfg_err(c, node_line(n), path, "expected an integer, got \"%.*s\"",
		        CFG_MSG_VALUE_MAX, s);
		return -1;
	}
	if (errno == ERANGE || v < min || v > max) {
		cfg_err(c, node_line(n), path,
		        "must be between %ld and %ld, got %.*s", min, max,
		        CFG_MSG_VALUE_MAX, s);
		return -1;
	}
	*out = (int)v;
	return 0;
}

/* true/false/yes/no/on/off, any case. */
static WUR int
get_bool(cfg_ctx_t *c, yaml_node_t *n, const char *path, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };
	const char *s;
	size_t i;

	if (n->type != YAML_SCALAR_NODE || node_is_null(n)) {
		cfg_err(c, node_line(n), path, "expected true or false, got %s",
		        node_kind(n));
		return -1;
	}
	s = node_str(n);
	for (i = 0; i < 3; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	cfg_err(c, node_line(n), path, "expected true or false, got \"%.*s\"",
	        CFG_MSG_VALUE_MAX, s);
	return -1;
}

/* ---- sections ---- */

/* A list of unique names; *out becomes a new NULL-terminated list. */
typedef bool (*name_check_fn)(const char *s);

static bool
is_region(const char *s)
{
	return is_lower_name(s, CFG_REGION_MAX);
}

static bool
is_column(const char *s)
{
	return xr_config_is_ident(s, strlen(s));
}

static WUR int
get_name_list(cfg_ctx_t *c, yaml_node_t *n, const char *path,
              name_check_fn check, const char *expected, char ***out,
              size_t *n_out)
{
	yaml_node_t *seq;
	char ipath[CFG_PATH_MAX];
	size_t i, j, len;
	char **list;

	if (as_seq(c, n, path, &seq) != 0)
		return -1;
	len = seq_len(seq);
	list = xcalloc(len + 1, sizeof(*list));
	for (i = 0; i < len; i++) {
		yaml_node_t *item = node_get(c, seq->data.sequence.items.start[i]);
		const char *s;

		path_index(ipath, path, i);
		if (get_scalar(c, item, ipath, &s) != 0)
			goto fail;
		if (!check(s)) {
			cfg_err(c, node_line(item), ipath, "expected %s, got \"%.*s\"",
			        expected, CFG_MSG_VALUE_MAX, s);
			goto fail;
		}
		for (j = 0; j < i; j++)
			if (strcmp(list[j], s) == 0) {
				cfg_err(c, node_line(item), ipath, "\"%s\" is listed twice", s);
				goto fail;
			}
		list[i] = xstrdup(s);
	}
	free_list(*out, *n_out);
	*out = list;
	*n_out = len;
	return 0;
fail:
	free_list(list, i);
	return -1;
}

static WUR int
parse_postgres(cfg_ctx_t *c, xr_config_t *conf, yaml_node_t *n)
{
	yaml_node_t *map, *v;

	if (as_map(c, n, "postgres", &map) != 0)
		return -1;
	if (map) {
		c->pg_line = node_line(map);
		if (map_check(c, map, "postgres", pg_keys) != 0)
			return -1;
	}
	if ((v = map_get(c, map, "dsn")) &&
	    get_string(c, v, "postgres.dsn", &conf->pg_dsn) != 0)
		return -1;
	if ((v = map_get(c, map, "slot"))) {
		if (get_lower_name(c, v, "postgres.slot", CFG_PG_NAME_MAX,
		                   &conf->slot) != 0)
			return -1;
		c->slot_set = true;
	} else {
		conf->slot = xasprintf("xregion_%s", conf->region);
	}
	if ((v = map_get(c, map, "publication"))) {
		if (get_lower_name(c, v, "postgres.publication", CFG_PG_NAME_MAX,
		                   &conf->publication) != 0)
			return -1;
		c->publication_set = true;
	} else {
		conf->publication = xstrdup("xregion");
	}
	if ((v = map_get(c, map, "failover"))) {
		if (get_bool(c, v, "postgres.failover", &conf->slot_failover) != 0)
			return -1;
		conf->slot_failover_set = true;
	}
	return 0;
}

/* A derived topic name; errors point at topic_prefix, whence it came. */
static WUR int
derive_topic(cfg_ctx_t *c, yaml_node_t *prefix_node, char *name, char **out)
{
	if (!is_topic(name)) {
		cfg_err(c, prefix_node ? node_line(prefix_node) : c->root_line,
		        "kafka.topic_prefix",
		        "the derived topic name \"%.*s...\" is longer than %d characters",
		        CFG_MSG_VALUE_MAX, name, CFG_TOPIC_MAX);
		free(name);
		return -1;
	}
	*out = name;
	return 0;
}

static WUR int
parse_kafka_props(cfg_ctx_t *c, xr_config_t *conf, yaml_node_t *n)
{
	yaml_node_t *map;
	yaml_node_pair_t *p;
	char kpath[CFG_PATH_MAX];
	size_t len;

	if (as_map(c, n, "kafka.properties", &map) != 0)
		return -1;
	if (!map)
		return 0;
	if (map_check(c, map, "kafka.properties", NULL) != 0)
		return -1;
	len = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
	conf->kafka_props = xcalloc(len, sizeof(*conf->kafka_props));
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = node_get(c, p->key), *v = node_get(c, p->value);
		const char *key = node_str(k), *s;

		path_key(kpath, "kafka.properties", key);
		if (!is_topic(key)) {   /* the same alphabet as librdkafka's names */
			cfg_err(c, node_line(k), kpath,
			        "expected a librdkafka property name (A-Z, a-z, 0-9, '.', "
			        "'_', '-')");
			return -1;
		}
		if (strcmp(key, "bootstrap.servers") == 0 ||
		    strcmp(key, "metadata.broker.list") == 0) {
			cfg_err(c, node_line(k), kpath,
			        "set the brokers with kafka.brokers instead");
			return -1;
		}
		/* Scalars of any type pass as their text: 5, true, "x" alike. */
		if (v->type != YAML_SCALAR_NODE || node_is_null(v)) {
			cfg_err(c, node_line(v), kpath,
			        "expected a scalar value, got %s (a secret can come from "
			        "the environment instead, see docs/configuration.md)",
			        node_kind(v));
			return -1;
		}
		if (get_scalar(c, v, kpath, &s) != 0)
			return -1;
		conf->kafka_props[conf->n_kafka_props].key = xstrdup(key);
		conf->kafka_props[conf->n_kafka_props].value = xstrdup(s);
		conf->n_kafka_props++;
	}
	return 0;
}

/* kafka.schema_registry: a Confluent-compatible registry (optional). */
static WUR int
parse_registry(cfg_ctx_t *c, xr_config_t *conf, yaml_node_t *n)
{
	yaml_node_t *map, *v;
	char        *framing = NULL;

	conf->registry_timeout_ms = 10000;
	if (as_map(c, n, "kafka.schema_registry", &map) != 0)
		return -1;
	if (!map)
		return 0;
	if (map_check(c, map, "kafka.schema_registry", registry_keys) != 0)
		return -1;
	v = map_get(c, map, "url");
	if (!v) {
		cfg_err(c, node_line(map), "kafka.schema_registry.url",
		        "required when kafka.schema_registry is set");
		return -1;
	}
	if (get_string(c, v, "kafka.schema_registry.url", &conf->registry_url))
		return -1;
	if (strncmp(conf->registry_url, "http://", 7) != 0 &&
	    strncmp(conf->registry_url, "https://", 8) != 0) {
		cfg_err(c, node_line(v), "kafka.schema_registry.url",
		        "expected an http:// or https:// URL, got \"%s\"",
		        conf->registry_url);
		return -1;
	}
	if ((v = map_get(c, map, "framing"))) {
		if (get_string(c, v, "kafka.schema_registry.framing", &framing))
			return -1;
		if (strcmp(framing, "confluent") != 0 &&
		    strcmp(framing, "single-object") != 0) {
			cfg_err(c, node_line(v), "kafka.schema_registry.framing",
			        "expected confluent or single-object, got \"%s\"",
			        framing);
			free(framing);
			return -1;
		}
		conf->registry_framing = strcmp(framing, "confluent") == 0;
		free(framing);
	} else {
		conf->registry_framing = true;
	}
	if ((v = map_get(c, map, "username")) &&
	    get_string(c, v, "kafka.schema_registry.username",
	               &conf->registry_username) != 0)
		return -1;
	if ((v = map_get(c, map, "password")) &&
	    get_string(c, v, "kafka.schema_registry.password",
	               &conf->registry_password) != 0)
		return -1;
	if ((v = map_get(c, map, "ca_location")) &&
	    get_string(c, v, "kafka.schema_registry.ca_location",
	               &conf->registry_ca) != 0)
		return -1;
	if ((v = map_get(c, map, "timeout_ms")) &&
	    get_int(c, v, "kafka.schema_registry.timeout_ms", 100, 600000,
	            &conf->registry_timeout_ms) != 0)
		return -1;
	return 0;
}

static WUR int
parse_kafka(cfg_ctx_t *c, xr_config_t *conf, yaml_node_t *n)
{
	yaml_node_t *map, *v, *prefix_node;

	if (as_map(c, n, "kafka", &map) != 0)
		return -1;
	if (map) {
		c->kafka_line = node_line(map);
		if (map_check(c, map, "kafka", kafka_keys) != 0)
			return -1;
	}
	if ((v = map_get(c, map, "brokers")) &&
	    get_string(c, v, "kafka.brokers", &conf->brokers) != 0)
		return -1;
	if ((prefix_node = map_get(c, map, "topic_prefix"))) {
		if (get_topic(c, prefix_node, "kafka.topic_prefix",
		              &conf->topic_prefix) != 0)
			return -1;
	} else {
		conf->topic_prefix = xstrdup("xr");
	}
	if ((v = map_get(c, map, "schemas_topic"))) {
		if (get_topic(c, v, "kafka.schemas_topic", &conf->schemas_topic) != 0)
			return -1;
	} else if (derive_topic(c, prefix_node,
	                        xasprintf("%s._schemas", conf->topic_prefix),
	                        &conf->schemas_topic) != 0) {
		return -1;
	}
	if ((v = map_get(c, map, "dead_letter_topic"))) {
		if (get_topic(c, v, "kafka.dead_letter_topic",
		              &conf->dead_letter_topic) != 0)
			return -1;
	} else if (derive_topic(c, prefix_node,
	                        xasprintf("%s.%s._dlq", conf->topic_prefix,
	                                  conf->region),
	                        &conf->dead_letter_topic) != 0) {
		return -1;
	}
	/*
	 * Not configurable: each region publishes its progress to a topic of
	 * its own, which the others read by this name, and which Kafka ACLs
	 * can keep for that region's writes alone (docs/security.md).
	 */
	if ((v = map_get(c, map, "progress_topic"))) {
		cfg_err(c, node_line(v), "kafka.progress_topic",
		        "no longer configurable: each region publishes its progress "
		        "to <topic_prefix>.<region>._progress (remove the key; "
		        "docs/security.md)");
		return -1;
	}
	conf->progress_topics = xcalloc(conf->n_regions + 1, sizeof(char *));
	for (size_t i = 0; i < conf->n_regions; i++) {
		if (derive_topic(c, prefix_node,
		                 xasprintf("%s.%s._progress", conf->topic_prefix,
		                           conf->regions[i]),
		                 &conf->progress_topics[i]) != 0)
			return -1;
		if (strcmp(conf->regions[i], conf->region) == 0)
			conf->progress_topic = conf->progress_topics[i];
	}
	/*
	 * Not configurable: the consumers of the other regions find it by
	 * this name.
	 */
	if (derive_topic(c, prefix_node,
	                        xasprintf("%s.%s._tx", conf->topic_prefix,
	                                  conf->region),
	                        &conf->transactions_topic) != 0) {
		return -1;
	}
	if ((v = map_get(c, map, "feed_dead_letter_topic"))) {
		if (get_topic(c, v, "kafka.feed_dead_letter_topic",
		              &conf->feed_dead_letter_topic) != 0)
			return -1;
	} else if (derive_topic(c, prefix_node,
	                        xasprintf("%s._feed_dlq", conf->topic_prefix),
	                        &conf->feed_dead_letter_topic) != 0) {
		return -1;
	}
	conf->partitions = 3;
	if ((v = map_get(c, map, "partitions")) &&
	    get_int(c, v, "kafka.partitions", 1, INT_MAX, &conf->partitions) != 0)
		return -1;
	/* Kafka carries the replication factor as an int16. */
	conf->replication_factor = 1;
	if ((v = map_get(c, map, "replication_factor")) &&
	    get_int(c, v, "kafka.replication_factor", 1, INT16_MAX,
	            &conf->replication_factor) != 0)
		return -1;
	/* librdkafka's message.max.bytes tops out at 1000000000. */
	conf->max_message_bytes = 64 * 1024 * 1024;
	if ((v = map_get(c, map, "max_message_bytes")) &&
	    get_int(c, v, "kafka.max_message_bytes", 16384, 1000000000,
	            &conf->max_message_bytes) != 0)
		return -1;
	if (parse_registry(c, conf, map_get(c, map, "schema_registry")) != 0)
		return -1;
	return parse_kafka_props(c, conf, map_get(c, map, "properties"));
}

/* An integer setting of a section: key, full path, range, default, field. */
typedef struct int_key_s {
	const char *key;
	const char *path;
	long        min, max, def;
	size_t      offset;
} int_key_t;

/*
 * Checks section n (a mapping or absent) against keys and reads its
 * integer settings; *mapp is the section, NULL when absent.
 */
static WUR int
parse_int_section(cfg_ctx_t *c, xr_config_t *conf, yaml_node_t *n,
                  const char *name, const char *const *keys,
                  const int_key_t *ints, size_t nints, yaml_node_t **mapp)
{
	yaml_node_t *v;
	size_t       i;

	if (as_map(c, n, name, mapp) != 0)
		return -1;
	if (*mapp && map_check(c, *mapp, name, keys) != 0)
		return -1;
	for (i = 0; i < nints; i++) {
		int *field = (int *)((char *)conf + ints[i].offset);

		*field = (int)ints[i].def;
		if ((v = map_get(c, *mapp, ints[i].key)) &&
		    get_int(c, v, ints[i].path, ints[i].min, ints[i].max, field) != 0)
			return -1;
	}
	return 0;
}

static WUR int
parse_producer(cfg_ctx_t *c, xr_config_t *conf, yaml_node_t *n)
{
	static const int_key_t ints[] = {
		{ "status_interval_ms", "producer.status_interval_ms",
		  100, 600000, 10000, offsetof(xr_config_t, status_interval_ms) },
		{ "max_inflight_mb", "producer.max_inflight_mb",
		  1, 4096, 64, offsetof(xr_config_t, max_inflight_mb) },
		{ "flush_timeout_ms", "producer.flush_timeout_ms",
		  100, 3600000, 30000, offsetof(xr_config_t, flush_timeout_ms) },
		{ "reconnect_backoff_max_ms", "producer.reconnect_backoff_max_ms",
		  100, 600000, 30000, offsetof(xr_config_t, reconnect_backoff_max_ms) },
	};
	yaml_node_t *map, *v;

	if (parse_int_section(c, conf, n, "producer", producer_keys, ints,
	                      sizeof(ints) / sizeof(ints[0]), &map) != 0)
		return -1;
	if ((v = map_get(c, map, "stream"))) {
		if (get_lower_name(c, v, "producer.stream", CFG_STREAM_MAX,
		                   &conf->stream) != 0)
			return -1;
		/* Its own slot and publication, unless they are set. */
		if (!c->slot_set) {
			free(conf->slot);
			conf->slot = xasprintf("xregion_%s_%s", conf->region,
			                       conf->stream);
			if (strlen(conf->slot) > CFG_PG_NAME_MAX) {
				cfg_err(c, node_line(v), "producer.stream",
				        "makes slot name %s, longer than %d characters: "
				        "set postgres.slot", conf->slot, CFG_PG_NAME_MAX);
				return -1;
			}
		}
		if (!c->publication_set) {
			free(conf->publication);
			conf->publication = xasprintf("xregion_%s", conf->stream);
		}
	}
	return 0;
}

static WUR int
parse_consumer(cfg_ctx_t *c, xr_config_t *conf, yaml_node_t *n)
{
	static const int_key_t ints[] = {
		{ "batch_size", "consumer.batch_size",
		  1, 100000, 2000, offsetof(xr_config_t, batch_size) },
		{ "batch_linger_ms", "consumer.batch_linger_ms",
		  1, 10000, 5, offsetof(xr_config_t, batch_linger_ms) },
		{ "tombstone_retention_hours", "consumer.tombstone_retention_hours",
		  0, 87600, 168, offsetof(xr_config_t, tombstone_retention_hours) },
		{ "tombstone_purge_interval_s", "consumer.tombstone_purge_interval_s",
		  1, 86400, 3600, offsetof(xr_config_t, tombstone_purge_interval_s) },
		{ "drift_recheck_ms", "consumer.drift_recheck_ms",
		  100, 600000, 5000, offsetof(xr_config_t, drift_recheck_ms) },
		{ "lock_timeout_ms", "consumer.lock_timeout_ms",
		  100, 600000, 5000, offsetof(xr_config_t, lock_timeout_ms) },
		{ "statement_timeout_ms", "consumer.statement_timeout_ms",
		  1000, 86400000, 600000,
		  offsetof(xr_config_t, statement_timeout_ms) },
	};
	yaml_node_t *map, *v;

	if (parse_int_section(c, conf, n, "consumer", consumer_keys, ints,
	                      sizeof(ints) / sizeof(ints[0]), &map) != 0)
		return -1;
	if ((v = map_get(c, map, "group_id"))) {
		if (get_string(c, v, "consumer.group_id", &conf->group_id) != 0)
			return -1;
	} else {
		conf->group_id = xasprintf("xregion.%s.%s", conf->topic_prefix,
		                           conf->region);
	}
	conf->apply_atomic = true;
	if ((v = map_get(c, map, "apply_mode"))) {
		const char *s;

		if (get_scalar(c, v, "consumer.apply_mode", &s) != 0)
			return -1;
		if (strcasecmp(s, "atomic") == 0) {
			conf->apply_atomic = true;
		} else if (strcasecmp(s, "rows") == 0) {
			conf->apply_atomic = false;
		} else {
			cfg_err(c, node_line(v), "consumer.apply_mode",
			        "expected atomic or rows, got \"%.*s\"",
			        CFG_MSG_VALUE_MAX, s);
			return -1;
		}
	}
	return 0;
}

/* "schema.table" or "table" (schema public) into t->schema and t->name. */
static WUR int
parse_table_name(cfg_ctx_t *c, yaml_node_t *n, const char *path,
                 xr_table_conf_t *t)
{
	const char *s, *dot;

	if (get_scalar(c, n, path, &s) != 0)
		return -1;
	dot = strchr(s, '.');
	if (dot ? !xr_config_is_ident(s, (size_t)(dot - s)) || !is_column(dot + 1)
	        : !is_column(s)) {
		cfg_err(c, node_line(n), path,
		        "expected \"schema.table\" or \"table\" (identifiers of A-Z, "
		        "a-z, 0-9, _, $, not starting with a digit), got \"%.*s\"",
		        CFG_MSG_VALUE_MAX, s);
		return -1;
	}
	if (dot) {
		t->schema = strndup(s, (size_t)(dot - s));
		if (!t->schema)
			oom();
		t->name = xstrdup(dot + 1);
	} else {
		t->schema = xstrdup("public");
		t->name = xstrdup(s);
	}
	return 0;
}

static WUR int
parse_table(cfg_ctx_t *c, yaml_node_t *n, const char *path, xr_table_conf_t *t)
{
	char kpath[CFG_PATH_MAX];
	yaml_node_t *v;

	t->pii = true;   /* fail closed: only "pii: false" publishes */
	t->conflict = XR_CONFLICT_LWW;
	if (n->type != YAML_MAPPING_NODE) {
		cfg_err(c, node_line(n), path, "expected a mapping, got %s",
		        node_kind(n));
		return -1;
	}
	if (map_check(c, n, path, table_keys) != 0)
		return -1;
	if (!(v = map_get(c, n, "name"))) {
		cfg_err(c, node_line(n), path_key(kpath, path, "name"),
		        "required key missing");
		return -1;
	}
	if (parse_table_name(c, v, path_key(kpath, path, "name"), t) != 0)
		return -1;
	if ((v = map_get(c, n, "pii")) &&
	    get_bool(c, v, path_key(kpath, path, "pii"), &t->pii) != 0)
		return -1;
	if ((v = map_get(c, n, "stream")) &&
	    get_lower_name(c, v, path_key(kpath, path, "stream"), CFG_STREAM_MAX,
	                   &t->stream) != 0)
		return -1;
	if ((v = map_get(c, n, "exclude_columns")) &&
	    get_name_list(c, v, path_key(kpath, path, "exclude_columns"),
	                  is_column, "a column name", &t->exclude_columns,
	                  &t->n_exclude_columns) != 0)
		return -1;
	if (!t->exclude_columns)
		t->exclude_columns = xcalloc(1, sizeof(char *));
	if ((v = map_get(c, n, "conflict"))) {
		const char *s;

		path_key(kpath, path, "conflict");
		if (get_scalar(c, v, kpath, &s) != 0)
			return -1;
		if (strcasecmp(s, "lww") == 0) {
			t->conflict = XR_CONFLICT_LWW;
		} else if (strcasecmp(s, "vclock") == 0) {
			t->conflict = XR_CONFLICT_VCLOCK;
		} else {
			cfg_err(c, node_line(v), kpath,
			        "expected lww or vclock, got \"%.*s\"", CFG_MSG_VALUE_MAX, s);
			return -1;
		}
	}
	if ((v = map_get(c, n, "tiebreak"))) {
		const char *s;

		path_key(kpath, path, "tiebreak");
		if (get_scalar(c, v, kpath, &s) != 0)
			return -1;
		if (t->conflict != XR_CONFLICT_VCLOCK) {
			cfg_err(c, node_line(v), kpath,
			        "only applies to conflict: vclock");
			return -1;
		}
		if (strcmp(s, "lww") == 0) {
			t->tiebreak = XR_TIEBREAK_LWW;
		} else if (strcmp(s, "keep-local") == 0) {
			t->tiebreak = XR_TIEBREAK_KEEP_LOCAL;
		} else if (strncmp(s, "prefer-region:", 14) == 0 &&
		           is_region(s + 14)) {
			t->tiebreak = XR_TIEBREAK_PREFER_REGION;
			t->prefer_region = xstrdup(s + 14);
		} else {
			cfg_err(c, node_line(v), kpath,
			        "expected lww, keep-local or prefer-region:<region>, "
			        "got \"%.*s\"", CFG_MSG_VALUE_MAX, s);
			return -1;
		}
	}
	if ((v = map_get(c, n, "clock"))) {
		const char *s;

		path_key(kpath, path, "clock");
		if (get_scalar(c, v, kpath, &s) != 0)
			return -1;
		if (t->conflict != XR_CONFLICT_LWW) {
			cfg_err(c, node_line(v), kpath,
			        "only applies to conflict: lww (vclock tables keep "
			        "a hybrid clock of their own)");
			return -1;
		}
		if (strcmp(s, "hybrid") == 0) {
			t->clock = XR_CLOCK_HYBRID;
		} else if (strcmp(s, "commit") == 0) {
			t->clock = XR_CLOCK_COMMIT;
		} else {
			cfg_err(c, node_line(v), kpath,
			        "expected hybrid or commit, got \"%.*s\"",
			        CFG_MSG_VALUE_MAX, s);
			return -1;
		}
	}
	return 0;
}

static WUR int
parse_tables(cfg_ctx_t *c, xr_config_t *conf, yaml_node_t *n)
{
	char ipath[CFG_PATH_MAX], npath[CFG_PATH_MAX];
	yaml_node_t *seq;
	size_t i, j, len;

	if (as_seq(c, n, "tables", &seq) != 0)
		return -1;
	len = seq_len(seq);
	conf->tables = xcalloc(len, sizeof(*conf->tables));
	for (i = 0; i < len; i++) {
		yaml_node_t *item = node_get(c, seq->data.sequence.items.start[i]);
		xr_table_conf_t *t = &conf->tables[i];

		path_index(ipath, "tables", i);
		conf->n_tables = i + 1;   /* so that destroy frees a partial entry */
		if (parse_table(c, item, ipath, t) != 0)
			return -1;
		if (t->prefer_region) {
			bool known = false;

			for (j = 0; j < conf->n_regions; j++)
				known = known || strcmp(conf->regions[j], t->prefer_region) == 0;
			if (!known) {
				cfg_err(c, node_line(map_get(c, item, "tiebreak")),
				        path_key(npath, ipath, "tiebreak"),
				        "region \"%s\" is not in regions", t->prefer_region);
				return -1;
			}
		}
		for (j = 0; j < i; j++) {
			const xr_table_conf_t *o = &conf->tables[j];

			if (strcmp(o->schema, t->schema) == 0 &&
			    strcmp(o->name, t->name) == 0) {
				yaml_node_t *name = map_get(c, item, "name");
				yaml_node_t *first = node_get(c,
					seq->data.sequence.items.start[j]);

				cfg_err(c, node_line(name), path_key(npath, ipath, "name"),
				        "duplicate table \"%s.%s\" (first at line %zu)",
				        t->schema, t->name,
				        node_line(map_get(c, first, "name")));
				return -1;
			}
		}
	}
	return 0;
}

static WUR int
parse_root(cfg_ctx_t *c, xr_config_t *conf, yaml_node_t *root)
{
	yaml_node_t *v;
	size_t i;

	if (!root || node_is_null(root)) {
		cfg_err(c, 1, "", "expected a mapping of settings, got an empty document");
		return -1;
	}
	c->root_line = node_line(root);
	if (root->type != YAML_MAPPING_NODE) {
		cfg_err(c, node_line(root), "",
		        "expected a mapping of settings at the top level, got %s",
		        node_kind(root));
		return -1;
	}
	if (map_check(c, root, "", root_keys) != 0)
		return -1;

	if (!(v = map_get(c, root, "region"))) {
		cfg_err(c, c->root_line, "region", "required key missing");
		return -1;
	}
	if (get_lower_name(c, v, "region", CFG_REGION_MAX, &conf->region) != 0)
		return -1;

	if ((v = map_get(c, root, "regions"))) {
		bool found = false;

		if (get_name_list(c, v, "regions", is_region,
		                  "a region name (1 to 32 of a-z, 0-9 and _)",
		                  &conf->regions, &conf->n_regions) != 0)
			return -1;
		for (i = 0; i < conf->n_regions; i++)
			found = found || strcmp(conf->regions[i], conf->region) == 0;
		if (!found) {
			cfg_err(c, node_line(v), "regions",
			        "must include this region \"%s\"", conf->region);
			return -1;
		}
	} else {
		conf->regions = xcalloc(2, sizeof(char *));
		conf->regions[0] = xstrdup(conf->region);
		conf->n_regions = 1;
	}

	if ((v = map_get(c, root, "log_level"))) {
		static const char *const names[] = { "error", "warn", "info", "debug" };
		const char *s;
		int level;

		if (get_scalar(c, v, "log_level", &s) != 0)
			return -1;
		if ((level = xr_log_level_parse(s)) < 0) {
			cfg_err(c, node_line(v), "log_level",
			        "expected error, warn, info or debug, got \"%.*s\"",
			        CFG_MSG_VALUE_MAX, s);
			return -1;
		}
		conf->log_level = xstrdup(names[level]);
	} else {
		conf->log_level = xstrdup("info");
	}
	if ((v = map_get(c, root, "metrics_listen")) &&
	    get_string(c, v, "metrics_listen", &conf->metrics_listen) != 0)
		return -1;

	if (parse_postgres(c, conf, map_get(c, root, "postgres")) != 0 ||
	    parse_kafka(c, conf, map_get(c, root, "kafka")) != 0 ||
	    parse_producer(c, conf, map_get(c, root, "producer")) != 0 ||
	    parse_consumer(c, conf, map_get(c, root, "consumer")) != 0 ||
	    parse_tables(c, conf, map_get(c, root, "tables")) != 0)
		return -1;
	return 0;
}

/* ---- environment ---- */

/*
 * True when property key, upper-cased with '.' and '-' as '_', is the env
 * name suffix (n bytes).  This lets XREGION_KAFKA_PROP_SSL_ENGINE_ID replace
 * a property the file spelt with underscores or dots alike.
 */
static bool
env_name_matches(const char *key, const char *name, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char k = key[i], e = name[i];

		if (k == '\0')
			return false;
		if (k == '.' || k == '-')
			k = '_';
		else if (k >= 'a' && k <= 'z')
			k = (char)(k - 'a' + 'A');
		if (e >= 'a' && e <= 'z')
			e = (char)(e - 'a' + 'A');
		if (k != e)
			return false;
	}
	return key[n] == '\0';
}

/* Error messages here name variables, never their values (they hold secrets). */
static WUR int
apply_env(cfg_ctx_t *c, xr_config_t *conf)
{
	const size_t plen = strlen(ENV_PROP);
	const char *v;
	char **e;

	if ((v = getenv(ENV_DSN))) {
		if (*v == '\0') {
			cfg_err(c, 0, "", "environment variable %s is set but empty",
			        ENV_DSN);
			return -1;
		}
		free(conf->pg_dsn);
		conf->pg_dsn = xstrdup(v);
	}
	if ((v = getenv(ENV_REGISTRY_PASSWORD))) {
		if (!conf->registry_url) {
			cfg_err(c, 0, "", "environment variable %s is set but "
			        "kafka.schema_registry is not", ENV_REGISTRY_PASSWORD);
			return -1;
		}
		free(conf->registry_password);
		conf->registry_password = xstrdup(v);
	}
	if ((v = getenv(ENV_METRICS))) {
		/* Empty: no endpoint, whatever the file says. */
		free(conf->metrics_listen);
		conf->metrics_listen = *v ? xstrdup(v) : NULL;
	}
	if ((v = getenv(ENV_BROKERS))) {
		if (*v == '\0') {
			cfg_err(c, 0, "", "environment variable %s is set but empty",
			        ENV_BROKERS);
			return -1;
		}
		free(conf->brokers);
		conf->brokers = xstrdup(v);
	}
	for (e = environ; *e; e++) {
		const char *name, *eq;
		size_t n, i;
		xr_kv_t *kv = NULL;

		if (strncmp(*e, ENV_PROP, plen) != 0)
			continue;
		name = *e + plen;
		if (!(eq = strchr(name, '=')))
			continue;
		n = (size_t)(eq - name);
		for (i = 0; i < n; i++)
			if (!((name[i] >= 'A' && name[i] <= 'Z') ||
			      (name[i] >= 'a' && name[i] <= 'z') ||
			      (name[i] >= '0' && name[i] <= '9') || name[i] == '_'))
				break;
		if (n == 0 || i < n || name[0] == '_' || name[n - 1] == '_' ||
		    memmem(name, n, "__", 2)) {
			cfg_err(c, 0, "",
			        "environment variable %.*s: expected %s<NAME> with NAME "
			        "the librdkafka property upper-cased, '.' as '_'",
			        (int)(eq - *e), *e, ENV_PROP);
			return -1;
		}
		for (i = 0; i < conf->n_kafka_props && !kv; i++)
			if (env_name_matches(conf->kafka_props[i].key, name, n))
				kv = &conf->kafka_props[i];
		if (!kv) {
			char *key = strndup(name, n);

			if (!key)
				oom();
			for (i = 0; i < n; i++)
				key[i] = key[i] == '_' ? '.'
				       : (key[i] >= 'A' && key[i] <= 'Z')
				         ? (char)(key[i] - 'A' + 'a') : key[i];
			if (strcmp(key, "bootstrap.servers") == 0 ||
			    strcmp(key, "metadata.broker.list") == 0) {
				cfg_err(c, 0, "", "environment variable %.*s: set the brokers "
				        "with %s instead", (int)(eq - *e), *e, ENV_BROKERS);
				free(key);
				return -1;
			}
			conf->kafka_props = xreallocarray(conf->kafka_props,
			                                  conf->n_kafka_props + 1,
			                                  sizeof(*conf->kafka_props));
			kv = &conf->kafka_props[conf->n_kafka_props++];
			kv->key = key;
			kv->value = NULL;
		}
		free(kv->value);
		kv->value = xstrdup(eq + 1);
	}
	return 0;
}

/* Required keys that the environment may also supply. */
static WUR int
check_required(cfg_ctx_t *c, const xr_config_t *conf)
{
	if (!conf->pg_dsn) {
		cfg_err(c, c->pg_line ? c->pg_line : c->root_line, "postgres.dsn",
		        "required key missing (or set %s)", ENV_DSN);
		return -1;
	}
	if (!conf->brokers) {
		cfg_err(c, c->kafka_line ? c->kafka_line : c->root_line,
		        "kafka.brokers", "required key missing (or set %s)",
		        ENV_BROKERS);
		return -1;
	}
	return 0;
}

/* ---- file and YAML ---- */

static WUR int
read_file(cfg_ctx_t *c, unsigned char **out, size_t *len)
{
	unsigned char *buf;
	size_t n = 0, got;
	FILE *f;

	if (!(f = fopen(c->file, "rb"))) {
		cfg_err(c, 0, "", "cannot open: %s", strerror(errno));
		return -1;
	}
	buf = xcalloc(CFG_MAX_FILE_SIZE + 1, 1);
	do {
		got = fread(buf + n, 1, CFG_MAX_FILE_SIZE + 1 - n, f);
		n += got;
	} while (got > 0 && n <= CFG_MAX_FILE_SIZE);
	if (ferror(f)) {
		cfg_err(c, 0, "", "cannot read: %s", strerror(errno));
		goto fail;
	}
	if (n > CFG_MAX_FILE_SIZE) {
		cfg_err(c, 0, "", "larger than %d bytes; is this a config file?",
		        CFG_MAX_FILE_SIZE);
		goto fail;
	}
	(void)fclose(f);
	*out = buf;
	*len = n;
	return 0;
fail:
	(void)fclose(f);
	free(buf);
	return -1;
}

/* Copies libyaml's error at once. */
static void
yaml_error(cfg_ctx_t *c, const yaml_parser_t *p)
{
	if (p->error == YAML_MEMORY_ERROR)
		oom();
	if (p->error == YAML_READER_ERROR) {
		cfg_err(c, 0, "", "not valid YAML: %s at byte %zu",
		        p->problem ? p->problem : "unreadable input", p->problem_offset);
		return;
	}
	cfg_err(c, p->problem_mark.line + 1, "", "not valid YAML: %s%s%s",
	        p->problem ? p->problem : "syntax error",
	        p->context ? " " : "", p->context ? p->context : "");
}

/*
 * The event pass: rejects aliases (which the document loader would turn into
 * shared or cyclic nodes) and more than one document.
 */
static WUR int
prescan(cfg_ctx_t *c, const void *buf, size_t len)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	int docs = 0, rc = 0;
	bool done = false;

	if (!yaml_parser_initialize(&parser))
		oom();
	yaml_parser_set_input_string(&parser, buf, len);
	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			yaml_error(c, &parser);
			rc = -1;
			break;
		}
		if (ev.type == YAML_ALIAS_EVENT) {
			cfg_err(c, ev.start_mark.line + 1, "",
			        "YAML aliases (*%.*s) are not supported; write the value out",
			        CFG_MSG_VALUE_MAX, (const char *)ev.data.alias.anchor);
			rc = -1;
		} else if (ev.type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
			cfg_err(c, ev.start_mark.line + 1, "",
			        "more than one YAML document; expected one");
			rc = -1;
		}
		done = rc != 0 || ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	return rc;
}

xr_config_t *
xr_config_load(const char *path, char *errstr, size_t errstr_size)
{
	cfg_ctx_t c = { .file = path, .errstr = errstr,
	                .errstr_size = errstr_size };
	unsigned char *buf = NULL;
	xr_config_t *conf;
	size_t len;

	if (errstr && errstr_size)
		errstr[0] = '\0';
	if (!path) {
		c.file = "(null)";
		cfg_err(&c, 0, "", "no configuration file given");
		return NULL;
	}
	if (read_file(&c, &buf, &len) != 0)
		return NULL;
	conf = xr_config_load_mem(path, buf, len, errstr, errstr_size);
	free(buf);
	return conf;
}

xr_config_t *
xr_config_load_mem(const char *name, const void *yaml, size_t len,
                   char *errstr, size_t errstr_size)
{
	cfg_ctx_t c = { .file = name ? name : "(memory)", .errstr = errstr,
	                .errstr_size = errstr_size };
	yaml_parser_t parser;
	yaml_document_t doc;
	bool have_parser = false, have_doc = false;
	xr_config_t *conf = NULL;
	int rc = -1;

	if (errstr && errstr_size)
		errstr[0] = '\0';
	if (len > CFG_MAX_FILE_SIZE) {
		cfg_err(&c, 0, "", "larger than %d bytes; is this a config file?",
		        CFG_MAX_FILE_SIZE);
		return NULL;
	}
	if (prescan(&c, yaml, len) != 0)
		goto out;

	if (!yaml_parser_initialize(&parser))
		oom();
	have_parser = true;
	yaml_parser_set_input_string(&parser, yaml, len);
	if (!yaml_parser_load(&parser, &doc)) {
		yaml_error(&c, &parser);
		goto out;
	}
	have_doc = true;
	c.doc = &doc;

	conf = xcalloc(1, sizeof(*conf));
	conf->path = xstrdup(c.file);
	if (parse_root(&c, conf, yaml_document_get_root_node(&doc)) != 0 ||
	    apply_env(&c, conf) != 0 || check_required(&c, conf) != 0)
		goto out;
	rc = 0;
out:
	if (have_doc)
		yaml_document_delete(&doc);
	if (have_parser)
		yaml_parser_delete(&parser);
	if (rc != 0) {
		xr_config_destroy(conf);
		return NULL;
	}
	return conf;
}

void
xr_config_destroy(xr_config_t *conf)
{
	size_t i;

	if (!conf)
		return;
	free(conf->path);
	free(conf->region);
	free_list(conf->regions, conf->n_regions);
	free(conf->log_level);
	free(conf->pg_dsn);
	free(conf->slot);
	free(conf->publication);
	free(conf->stream);
	free(conf->brokers);
	free(conf->group_id);
	free(conf->metrics_listen);
	free(conf->topic_prefix);
	free(conf->schemas_topic);
	free(conf->dead_letter_topic);
	if (conf->progress_topics)
		for (i = 0; i < conf->n_regions; i++)
			free(conf->progress_topics[i]);
	free(conf->progress_topics);
	free(conf->feed_dead_letter_topic);
	free(conf->transactions_topic);
	free(conf->registry_url);
	free(conf->registry_username);
	if (conf->registry_password)
		explicit_bzero(conf->registry_password,
		               strlen(conf->registry_password));
	free(conf->registry_password);
	free(conf->registry_ca);
	for (i = 0; i < conf->n_kafka_props; i++) {
		free(conf->kafka_props[i].key);
		free(conf->kafka_props[i].value);
	}
	free(conf->kafka_props);
	for (i = 0; i < conf->n_tables; i++) {
		free(conf->tables[i].schema);
		free(conf->tables[i].name);
		free(conf->tables[i].prefer_region);
		free(conf->tables[i].stream);
		free_list(conf->tables[i].exclude_columns,
		          conf->tables[i].n_exclude_columns);
	}
	free(conf->tables);
	free(conf);
}

const xr_table_conf_t *
xr_config_table(const xr_config_t *conf, const char *schema, const char *name)
{
	size_t i;

	if (!conf || !name)
		return NULL;
	if (!schema)
		schema = "public";
	for (i = 0; i < conf->n_tables; i++)
		if (strcmp(conf->tables[i].schema, schema) == 0 &&
		    strcmp(conf->tables[i].name, name) == 0)
			return &conf->tables[i];
	return NULL;
}

bool
xr_config_produces(const xr_config_t *conf, const xr_table_conf_t *t)
{
	return !t->pii && strcmp(t->stream ? t->stream : "",
	                         conf->stream ? conf->stream : "") == 0;
}

bool
xr_config_publishes(const xr_config_t *conf, const char *schema,
                    const char *name)
{
	const xr_table_conf_t *t = xr_config_table(conf, schema, name);

	return t && !t->pii;
}

void
xr_config_stream_key(const xr_config_t *conf, char *buf, size_t size)
{
	if (conf->stream)
		snprintf(buf, size, "%s/%s", conf->region, conf->stream);
	else
		snprintf(buf, size, "%s", conf->region);
}

bool
xr_config_column_excluded(const xr_table_conf_t *t, const char *col)
{
	size_t i;

	if (!t || !col)
		return false;
	for (i = 0; i < t->n_exclude_columns; i++)
		if (strcmp(t->exclude_columns[i], col) == 0)
			return true;
	return false;
}

static void
put_name_part(xr_buf_t *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '.')
			xr_buf_puts(b, "%2E");
		else if (*s == '%')
			xr_buf_puts(b, "%25");
		else
			xr_buf_putc(b, *s);
	}
}

int
xr_config_versions_name(const char *schema, const char *table, char *buf,
                        size_t size)
{
	xr_buf_t b;
	int      rc = -1;

	xr_buf_init(&b);
	put_name_part(&b, schema);
	xr_buf_putc(&b, '.');
	put_name_part(&b, table);
	if (b.len <= XR_CONFIG_MAX_VTNAME && b.len < size) {
		memcpy(buf, b.data, b.len + 1);
		rc = 0;
	}
	xr_buf_term(&b);
	return rc;
}
