/*
 * feed_int.h: what feed.c and feed_ddl.c share: the flat row layout of one
 * table's writer schema.
 */
#ifndef XR_FEED_INT_H
#define XR_FEED_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <avro.h>

#include "common/avro_codec.h"
#include "common/config.h"
#include "consumer/registry.h"

/* The metadata columns of a flat row, in order, after the table's. */
enum {
	XR_FM_OP = 0,
	XR_FM_DELETED,
	XR_FM_REGION,
	XR_FM_COMMIT_TS,
	XR_FM_COMMIT_LSN,
	XR_FM_LSN,
	XR_FM_TXID,
	XR_FM_TX_INDEX,
	XR_FM_EVENT_ID,
	XR_FM_VERSION,
	XR_FM_UNCHANGED,
	XR_FM_TEXT,
	XR_FM_N
};

extern const char *const xr_feed_meta_names[XR_FM_N];

/*
 * How the events of one table with one writer schema become flat rows.
 * The flat schema is xregion.Row's fields (a union [null, X, "string"]
 * loses its "string" branch: such values go to __text) and the metadata.
 */
typedef struct xr_feed_plan_s {
	char              *id;       /* value id, key id and table: the cache key */
	const xr_schema_t *vs;       /* writer envelope schema (registry's) */
	avro_schema_t      row;      /* its xregion.Row */
	int                nrow;
	bool               narrow;   /* a field has a text branch */
	int               *key_idx;  /* Row field of each key column */
	int                nkey;
	xr_schema_t       *flat;     /* the flat row schema; owned */
	char              *table;    /* schema.table */
	char              *dir;      /* its directory name under out */
	char              *source_id;/* the value schema id */
	char              *error;    /* why its rows cannot be written, or NULL */
} xr_feed_plan_t;

/*
 * Builds the plan of table (schema.table) for envelope vs and key schema
 * ks (NULL: none known, e.g. a truncate).  Returns NULL with errstr only
 * when out of memory or the schema is not an envelope; a table whose
 * columns cannot be flattened gets a plan with error set.
 */
xr_feed_plan_t *xr_feed_plan_new(const char *id, const xr_schema_t *vs,
                                 const xr_schema_t *ks, const char *schema,
                                 const char *table, char *errstr,
                                 size_t errstr_size);
void xr_feed_plan_free(xr_feed_plan_t *p);   /* NULL ok */

struct xr_feed_opts_s;

/*
 * `xregion feed --ddl TABLE`: finds the table's newest writer schema (the
 * last event on its topics) and prints the landing table, the state table
 * and the statements that merge one into the other, in o->dialect.
 * Returns 0, 1 (no event or Kafka failed) or 2 (not a fed table).
 */
int xr_feed_ddl_command(const xr_config_t *conf,
                        const struct xr_feed_opts_s *o, FILE *out,
                        FILE *err_out);

#endif
