/*
 * config.h: xregion's configuration, read from a YAML file with libyaml.
 * docs/configuration.md documents every key; keep the two in step.
 */
#ifndef XR_CONFIG_H
#define XR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
	XR_CONFLICT_LWW = 0,
	XR_CONFLICT_VCLOCK
} xr_conflict_mode_t;

/* How vclock mode picks the winner of two concurrent writes. */
typedef enum {
	XR_TIEBREAK_LWW = 0,        /* the later hybrid timestamp, then region */
	XR_TIEBREAK_KEEP_LOCAL,     /* the local row stays (regions may differ) */
	XR_TIEBREAK_PREFER_REGION   /* the write that saw more of one region's */
} xr_tiebreak_t;

/* Where an lww table's local writes take their version time. */
typedef enum {
	XR_CLOCK_HYBRID = 0,        /* past the version it overwrites (trigger) */
	XR_CLOCK_COMMIT             /* the commit time alone (no trigger) */
} xr_clock_t;

/* One entry of "tables:". */
typedef struct xr_table_conf_s {
	char   *schema;            /* "public" when the name has no schema part */
	char   *name;
	bool    pii;               /* true unless the entry says pii: false */
	char  **exclude_columns;   /* never published; NULL-terminated list */
	size_t  n_exclude_columns;
	xr_conflict_mode_t conflict;
	xr_tiebreak_t tiebreak;    /* vclock only */
	char   *prefer_region;     /* XR_TIEBREAK_PREFER_REGION: the region */
	xr_clock_t clock;          /* lww only */
	char   *stream;            /* the producer stream publishing it, NULL:
	                            * the main one */
} xr_table_conf_t;

/* A librdkafka property passed through as-is. */
typedef struct xr_kv_s {
	char *key;
	char *value;
} xr_kv_t;

typedef struct xr_config_s {
	char   *path;              /* the file read */
	char   *region;            /* required: [a-z0-9_]{1,32} */
	char  **regions;           /* all regions of the deployment, incl. region */
	size_t  n_regions;
	char   *log_level;         /* "info" */
	char   *metrics_listen;    /* "host:port" of /metrics, NULL: none */

	/* postgres: */
	char   *pg_dsn;            /* required; env XREGION_POSTGRES_DSN wins */
	char   *slot;              /* "xregion_<region>[_<stream>]" */
	char   *publication;       /* "xregion[_<stream>]" */
	char   *stream;            /* producer.stream, NULL: the main producer */
	bool    slot_failover;     /* false; true: a failover slot (PG 17+),
	                              synchronized to physical standbys */
	bool    slot_failover_set; /* postgres.failover was in the file */

	/* kafka: */
	char   *brokers;           /* required; env XREGION_KAFKA_BROKERS wins */
	char   *topic_prefix;      /* "xr" */
	char   *schemas_topic;     /* "<prefix>._schemas" */
	char   *dead_letter_topic; /* "<prefix>.<region>._dlq" */
	char   *progress_topic;    /* "<prefix>.<region>._progress": this
	                              region's, one of progress_topics */
	char  **progress_topics;   /* per regions[i]: "<prefix>.<r>._progress" */
	char   *feed_dead_letter_topic; /* "<prefix>._feed_dlq" (xregion feed) */
	char   *transactions_topic; /* "<prefix>.<region>._tx": end records */
	int     partitions;        /* 3; for topics setup creates */
	int     replication_factor;/* 1 */
	int     max_message_bytes; /* 64 MiB: largest event (producer and topics) */
	/* kafka.schema_registry: a Confluent-compatible registry, or none. */
	char   *registry_url;      /* NULL: none (single-object framing) */
	bool    registry_framing;  /* frame produced events with its ids
	                              (framing: confluent, the default); false:
	                              single-object still, read both */
	char   *registry_username; /* HTTP basic auth, or NULL */
	char   *registry_password; /* env XREGION_SCHEMA_REGISTRY_PASSWORD wins */
	char   *registry_ca;       /* CA bundle for https, or NULL: the system's */
	int     registry_timeout_ms; /* 10000: one HTTP request */
	xr_kv_t *kafka_props;      /* kafka.properties, then env overrides */
	size_t  n_kafka_props;

	/* producer: */
	int     status_interval_ms;     /* 10000 */
	int     max_inflight_mb;        /* 64: librdkafka queue bound */
	int     flush_timeout_ms;       /* 30000 */
	int     reconnect_backoff_max_ms; /* 30000 */

	/* consumer: */
	char   *group_id;               /* "xregion.<prefix>.<region>" */
	int     batch_size;             /* 2000 events per transaction at most */
	bool    apply_atomic;           /* apply_mode atomic (default): each
	                                   source transaction whole, in commit
	                                   order; rows: event by event */
	int     batch_linger_ms;        /* 50: wait this long to fill a batch */
	int     tombstone_retention_hours; /* 168; 0: as soon as safe */
	int     tombstone_purge_interval_s; /* 3600 */
	int     drift_recheck_ms;       /* 5000 */
	int     lock_timeout_ms;        /* 5000: an apply waiting on a row lock */
	int     statement_timeout_ms;   /* 600000: one apply statement */

	xr_table_conf_t *tables;
	size_t  n_tables;
} xr_config_t;

/*
 * Reads and validates the file at path, then applies environment overrides.
 * On success returns a new config (free with xr_config_destroy).  On failure
 * returns NULL and errstr names the file, line and key, e.g.
 * "xregion.yaml:12: tables[1].pii: expected true or false, got \"maybe\"".
 * Unknown keys are errors (a typo must not silently fall back to a default).
 */
xr_config_t *xr_config_load(const char *path, char *errstr, size_t errstr_size);

/*
 * The same from len bytes of YAML at yaml (borrowed; need not be
 * NUL-terminated), for callers that hold the text already (the fuzzer,
 * tools).  name stands for the file in errstr and in conf->path (NULL:
 * "(memory)").  Environment overrides apply as for a file.
 */
xr_config_t *xr_config_load_mem(const char *name, const void *yaml, size_t len,
                                char *errstr, size_t errstr_size);
void         xr_config_destroy(xr_config_t *conf);   /* NULL ok */

/* The table's entry, or NULL when the config does not list it (= PII). */
/* Whether s[0..n) is a table or column name the config accepts. */
bool xr_config_is_ident(const char *s, size_t n);

/* Region's progress topic ("<prefix>.<region>._progress"), or NULL. */
const char *xr_config_progress_topic(const xr_config_t *conf,
                                     const char *region);

const xr_table_conf_t *xr_config_table(const xr_config_t *conf,
                                       const char *schema, const char *name);

/*
 * Whether this config's producer publishes table t: listed with pii: false
 * and in its stream (producer.stream; a table without a stream key is the
 * main producer's).  Fail closed.
 */
bool xr_config_produces(const xr_config_t *conf, const xr_table_conf_t *t);

/*
 * The producer's key in xregion.producer and the consumers' in
 * xregion.applied: "<region>", or "<region>/<stream>" (names are
 * [a-z0-9_], so the two never meet).
 */
void xr_config_stream_key(const xr_config_t *conf, char *buf, size_t size);

/*
 * True only for tables listed with pii: false (whichever producer stream
 * publishes them: what leaves the region, and what the consumer applies).
 * Fail closed.
 */
bool xr_config_publishes(const xr_config_t *conf, const char *schema,
                         const char *name);

/* True when column col of a published table is listed in exclude_columns. */
bool xr_config_column_excluded(const xr_table_conf_t *t, const char *col);

/* Longest versions table name (see xr_config_versions_name). */
#define XR_CONFIG_MAX_VTNAME 56

/*
 * The name of the versions table of schema.table (in schema xregion, to be
 * quoted as an identifier) into buf: "<schema>.<table>" with every '.' and
 * '%' of either name written %2E and %25, so that no two tables share one
 * ("a.b"."c" and "a"."b.c" differ).  Returns 0, or -1 when it would be
 * longer than XR_CONFIG_MAX_VTNAME bytes.
 */
int xr_config_versions_name(const char *schema, const char *table, char *buf,
                            size_t size) __attribute__((warn_unused_result));

#endif
