/* relcache.c: relations of the stream, their schemas and classification. */
#include "producer/relcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/mem.h"

typedef struct typename_s {
	uint32_t typid;
	char    *name;      /* "schema.type" */
} typename_t;

struct xr_relcache_s {
	const xr_config_t *conf;
	xr_rel_t   **rels;  /* a small table: a producer sees few relations */
	size_t       nrels;
	typename_t  *types;
	size_t       ntypes;
};

static void
rel_free(xr_rel_t *r)
{
	int i;

	if (!r)
		return;
	for (i = 0; i < r->ncols; i++)
		free(r->cols[i].name);
	free(r->cols);
	free(r->nspname);
	free(r->relname);
	free(r->topic);
	if (r->value_schema) {
		avro_value_decref(&r->value);
		avro_value_decref(&r->key);
	}
	xr_schema_destroy(r->value_schema);
	xr_schema_destroy(r->key_schema);
	free(r);
}

xr_relcache_t *
xr_relcache_new(const xr_config_t *conf)
{
	xr_relcache_t *rc = calloc(1, sizeof(*rc));

	if (rc)
		rc->conf = conf;
	return rc;
}

void
xr_relcache_destroy(xr_relcache_t *rc)
{
	size_t i;

	if (!rc)
		return;
	for (i = 0; i < rc->nrels; i++)
		rel_free(rc->rels[i]);
	free(rc->rels);
	for (i = 0; i < rc->ntypes; i++)
		free(rc->types[i].name);
	free(rc->types);
	free(rc);
}

void
xr_relcache_type(xr_relcache_t *rc, uint32_t typid, const char *nspname,
                 const char *typname)
{
	size_t i, n = strlen(nspname) + strlen(typname) + 2;
	char  *name = xr_calloc(1, n);

	snprintf(name, n, "%s.%s", nspname, typname);
	for (i = 0; i < rc->ntypes; i++) {
		if (rc->types[i].typid == typid) {
			free(rc->types[i].name);
			rc->types[i].name = name;
			return;
		}
	}
	rc->types = xr_reallocarray(rc->types, rc->ntypes + 1, sizeof(*rc->types));
	rc->types[rc->ntypes].typid = typid;
	rc->types[rc->ntypes++].name = name;
}

static const char *
type_name(const xr_relcache_t *rc, uint32_t typid)
{
	size_t i;

	for (i = 0; i < rc->ntypes; i++)
		if (rc->types[i].typid == typid)
			return rc->types[i].name;
	return NULL;
}

static bool
in_list(const char *const *list, const char *name)
{
	for (; list && *list; list++)
		if (strcmp(*list, name) == 0)
			return true;
	return false;
}

/*
 * Builds the schemas and reusable values of a published relation.  Both
 * schemas are built from the same column list, so that a mangled name is
 * the same in the key as in the row (the key is refused when a key column
 * is excluded, so key fields keep their order).
 */
static int
build_schemas(xr_rel_t *r, char *errstr, size_t errstr_size)
{
	xr_schema_col_t *vcols = xr_calloc(1, (size_t)r->ncols * sizeof(*vcols));
	int              i, nv = 0, rc = -1;

	for (i = 0; i < r->ncols; i++) {
		xr_relcol_t *c = &r->cols[i];

		if (c->field >= 0) {
			vcols[nv].name = c->name;
			vcols[nv].type = &c->type;
			vcols[nv++].is_key = c->is_key;
		}
	}
	if (xr_schema_build(vcols, nv, false, &r->value_schema, errstr,
	                    errstr_size) ||
	    xr_schema_build(vcols, nv, true, &r->key_schema, errstr,
	                    errstr_size))
		goto out;
	xr_relcache_schema_id(r->value_schema, r->value_schema_id);
	xr_relcache_schema_id(r->key_schema, r->key_schema_id);
	if (avro_generic_value_new(r->value_schema->iface, &r->value)) {
		snprintf(errstr, errstr_size, "avro: %s", avro_strerror());
		goto out;
	}
	if (avro_generic_value_new(r->key_schema->iface, &r->key)) {
		snprintf(errstr, errstr_size, "avro: %s", avro_strerror());
		avro_value_decref(&r->value);
		goto out;
	}
	rc = 0;
out:
	if (rc) {
		xr_schema_destroy(r->value_schema);
		xr_schema_destroy(r->key_schema);
		r->value_schema = r->key_schema = NULL;
	}
	free(vcols);
	return rc;
}

static bool
same_json(const xr_schema_t *a, const xr_schema_t *b)
{
	return a->json.len == b->json.len &&
	       memcmp(a->json.data, b->json.data, a->json.len) == 0;
}

bool
xr_relcache_same_layout(const xr_rel_t *rel, const xr_pgo_msg_t *m)
{
	int c;

	if (m->u.relation.relid != rel->relid ||
	    m->u.relation.ncols != rel->ncols ||
	    m->u.relation.replident != rel->replident)
		return false;
	for (c = 0; c < rel->ncols; c++) {
		const xr_pgo_relcol_t *col = &m->u.relation.cols[c];

		if (strcmp(col->name, rel->cols[c].name) != 0 ||
		    col->typid != rel->cols[c].typid ||
		    col->typmod != rel->cols[c].typmod)
			return false;
	}
	return true;
}

int
xr_relcache_update(xr_relcache_t *rc, const xr_pgo_msg_t *m,
                   const char *const *key_cols, xr_rel_t **out, char *errstr,
                   size_t errstr_size)
{
	const xr_config_t *conf = rc->conf;
	xr_rel_t *r = xr_calloc(1, sizeof(*r));
	size_t    i, n;
	int       c, nfield = 0;

	r->relid = m->u.relation.relid;
	r->nspname = xr_strdup(m->u.relation.nspname);
	r->relname = xr_strdup(m->u.relation.relname);
	r->ncols = m->u.relation.ncols;
	r->cols = xr_calloc(1, (size_t)r->ncols * sizeof(*r->cols));
	r->tconf = xr_config_table(conf, r->nspname, r->relname);
	r->published = r->tconf && xr_config_produces(conf, r->tconf);
	n = strlen(conf->topic_prefix) + strlen(conf->region) +
	    strlen(r->nspname) + strlen(r->relname) + 4;
	r->topic = xr_calloc(1, n);
	snprintf(r->topic, n, "%s.%s.%s.%s", conf->topic_prefix, conf->region,
	         r->nspname, r->relname);

	for (c = 0; c < r->ncols; c++) {
		const xr_pgo_relcol_t *src = &m->u.relation.cols[c];
		xr_relcol_t           *col = &r->cols[c];

		col->name = xr_strdup(src->name);
		col->typid = src->typid;
		col->typmod = src->typmod;
		col->is_key = key_cols ? in_list(key_cols, src->name) : src->is_key;
		col->key_field = col->is_key ? r->nkeys++ : -1;
		xr_pgtype_classify(src->typid, src->typmod,
		                   type_name(rc, src->typid), &col->type);
		if (r->tconf && xr_config_column_excluded(r->tconf, col->name)) {
			if (col->is_key && r->published) {
				snprintf(errstr, errstr_size,
				         "table %s.%s: key column \"%s\" is listed in "
				         "exclude_columns; a key cannot be excluded",
				         r->nspname, r->relname, col->name);
				goto fail;
			}
			col->field = -1;
		} else {
			col->field = nfield++;
		}
	}
	if (r->published) {
		if (r->nkeys == 0) {
			snprintf(errstr, errstr_size,
			         "table %s.%s has no primary key: xregion cannot "
			         "key its events (add one, or mark it pii: true)",
			         r->nspname, r->relname);
			goto fail;
		}
		if (build_schemas(r, errstr, errstr_size))
			goto fail;
	}

	for (i = 0; i < rc->nrels; i++) {
		if (rc->rels[i]->relid == r->relid) {
			xr_rel_t *old = rc->rels[i];

			/*
			 * Same schemas, to the byte: keep what was published.  Equal
			 * fingerprints are not enough (see relcache.h).
			 */
			if (r->published && old->published &&
			    same_json(old->value_schema, r->value_schema) &&
			    same_json(old->key_schema, r->key_schema))
			{
				r->schemas_published = old->schemas_published;
				r->sr_registered = old->sr_registered;
				r->sr_value_id = old->sr_value_id;
				r->sr_key_id = old->sr_key_id;
			}
			r->warned = old->warned;
			rel_free(old);
			rc->rels[i] = r;
			*out = r;
			return 0;
		}
	}
	rc->rels = xr_reallocarray(rc->rels, rc->nrels + 1, sizeof(*rc->rels));
	rc->rels[rc->nrels++] = r;
	*out = r;
	return 0;

fail:
	rel_free(r);
	return -1;
}

xr_rel_t *
xr_relcache_get(xr_relcache_t *rc, uint32_t relid)
{
	size_t i;

	for (i = 0; i < rc->nrels; i++)
		if (rc->rels[i]->relid == relid)
			return rc->rels[i];
	return NULL;
}

xr_rel_t *
xr_relcache_by_topic(xr_relcache_t *rc, const char *topic)
{
	size_t i;

	for (i = 0; i < rc->nrels; i++)
		if (rc->rels[i]->published && strcmp(rc->rels[i]->topic, topic) == 0)
			return rc->rels[i];
	return NULL;
}

static void
hex_le(uint64_t v, char *out)
{
	static const char digits[] = "0123456789abcdef";
	int               b;

	for (b = 0; b < 8; b++) {
		unsigned byte = (unsigned)(v >> (8 * b)) & 0xff;

		out[2 * b] = digits[byte >> 4];
		out[2 * b + 1] = digits[byte & 0xf];
	}
}

void
xr_relcache_schema_id(const xr_schema_t *s, char out[XR_SCHEMA_ID_LEN + 1])
{
	/*
	 * Little-endian, as the fingerprint stands in a message's header (and
	 * as Java and fastavro print it), so a reader matches hex(msg[2:10])
	 * against the part before the dot as is.
	 */
	hex_le(s->fingerprint, out);
	out[16] = '.';
	hex_le(xr_avro_crc64(s->json.data, s->json.len), out + 17);
	out[XR_SCHEMA_ID_LEN] = '\0';
}
