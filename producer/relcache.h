/*
 * relcache.h: what the producer knows of each relation in the stream.
 *
 * pgoutput describes a relation (Relation message) before its first change
 * in a session and again after its definition changes; changes then name
 * only its OID.  The cache keeps, per OID, the columns with their Avro
 * mapping, the config's classification and the derived key and value
 * schemas.  Every Relation message replaces the entry.  When a schema's
 * full JSON differs from the cached one, it is a new schema version that
 * the stream publishes before the next event.  The JSON, not only the
 * fingerprint, decides: the fingerprint is taken over the Parsing
 * Canonical Form, which drops logical types, so numeric(10,2) and
 * numeric(10,4) (or timestamp and timestamptz) share a fingerprint.
 */
#ifndef XR_RELCACHE_H
#define XR_RELCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <avro.h>

#include "common/avro_codec.h"
#include "common/config.h"
#include "common/pgtype.h"
#include "producer/pgoutput.h"

/*
 * A schema's id: "<fingerprint>.<json crc>", 16 lowercase hex digits each.
 * The first part is the CRC-64-AVRO of the Parsing Canonical Form as its
 * bytes stand in a message (little-endian), the second the CRC-64-AVRO of
 * the full JSON text, in the same byte order.  It keys the schemas topic
 * and is sent in each event's xr-schema / xr-key-schema header.
 */
#define XR_SCHEMA_ID_LEN 33

typedef struct xr_relcol_s {
	char        *name;
	uint32_t     typid;
	int32_t      typmod;
	bool         is_key;     /* primary-key column */
	int          field;      /* its field in xregion.Row, -1 if excluded */
	int          key_field;  /* its field in xregion.Key, -1 if not a key */
	xr_coltype_t type;
} xr_relcol_t;

typedef struct xr_rel_s {
	uint32_t     relid;
	char        *nspname;
	char        *relname;
	int          ncols;
	xr_relcol_t *cols;
	int          nkeys;

	/* Published only when the config lists the table with pii: false. */
	bool         published;
	bool         warned;     /* logged once that it is not published */
	bool         vclock_warned; /* logged once: a change without vclock */
	bool         partitioned;   /* a partitioned table (relkind p): its
	                               partitions' changes come under its name
	                               (publish_via_partition_root) */
	char         replident;     /* the Relation message's: d, n, f or i */
	const xr_table_conf_t *tconf;  /* borrowed from the config, or NULL */
	char        *topic;      /* <prefix>.<region>.<schema>.<table> */

	/* Set for published relations only; owned. */
	xr_schema_t *value_schema;
	xr_schema_t *key_schema;
	avro_value_t value;      /* reused for every event of the relation */
	avro_value_t key;
	char         value_schema_id[XR_SCHEMA_ID_LEN + 1];
	char         key_schema_id[XR_SCHEMA_ID_LEN + 1];
	bool         schemas_published;
	/* With kafka.schema_registry (framing confluent): the ids it gave. */
	bool         sr_registered;
	int32_t      sr_value_id;
	int32_t      sr_key_id;
} xr_rel_t;

typedef struct xr_relcache_s xr_relcache_t;

xr_relcache_t *xr_relcache_new(const xr_config_t *conf);   /* NULL on OOM */
void           xr_relcache_destroy(xr_relcache_t *rc);      /* NULL ok */

/*
 * Records a non-built-in type from a Type message, so that columns of it
 * get a readable "xr.pg_type" name.
 */
void xr_relcache_type(xr_relcache_t *rc, uint32_t typid, const char *nspname,
                      const char *typname);

/*
 * Takes a Relation message.  key_cols, if not NULL, lists the names of the
 * table's primary-key columns (NULL-terminated) and overrides the replica
 * identity flags of the message.  On success *out is the cache's entry
 * (valid until the next update of the same relid or destroy).
 * Returns 0, or -1 with errstr set (e.g. a published table without a key,
 * or a key column listed in exclude_columns).
 */
int xr_relcache_update(xr_relcache_t *rc, const xr_pgo_msg_t *relation,
                       const char *const *key_cols, xr_rel_t **out,
                       char *errstr, size_t errstr_size)
	__attribute__((warn_unused_result));

/*
 * Whether Relation message relation describes rel as it is: the same
 * columns (names, types, type modifiers) and replica identity.
 */
bool xr_relcache_same_layout(const xr_rel_t *rel,
                             const xr_pgo_msg_t *relation);

/* The entry of relid, or NULL when no Relation message described it. */
xr_rel_t *xr_relcache_get(xr_relcache_t *rc, uint32_t relid);

/* The published relation whose topic is topic, or NULL. */
xr_rel_t *xr_relcache_by_topic(xr_relcache_t *rc, const char *topic);

/* Writes s's id (see XR_SCHEMA_ID_LEN), NUL-terminated, to out. */
void xr_relcache_schema_id(const xr_schema_t *s,
                           char out[XR_SCHEMA_ID_LEN + 1]);

#endif
