/* manifest.c: where a joining region's consumer starts (see manifest.h). */
#include "common/manifest.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "common/kafka_conf.h"
#include "common/pgconn.h"

#define KAFKA_TIMEOUT_MS 10000

static void
add_offset(json_t *arr, const char *topic, int partition, int64_t next)
{
	json_array_append_new(arr, json_pack("{s:s, s:i, s:I}", "topic", topic,
	                                     "partition", partition,
	                                     "next_offset", (json_int_t)next));
}

/* The end offsets of the donor's table topics, into arr. */
static int
donor_ends(const xr_config_t *conf, json_t *arr, char *errstr,
           size_t errstr_size)
{
	rd_kafka_t      *rk;
	size_t           i;
	int              rc = -1;

	rk = xr_kafka_query_new(conf, errstr, errstr_size);
	if (!rk)
		return -1;
	for (i = 0; i < conf->n_tables; i++) {
		const struct rd_kafka_metadata *md = NULL;
		rd_kafka_topic_t *rkt;
		rd_kafka_resp_err_t e;
		char  name[512];
		int   p, np;

		if (conf->tables[i].pii)
			continue;
		snprintf(name, sizeof(name), "%s.%s.%s.%s", conf->topic_prefix,
		         conf->region, conf->tables[i].schema, conf->tables[i].name);
		rkt = rd_kafka_topic_new(rk, name, NULL);
		if (!rkt) {
			snprintf(errstr, errstr_size, "kafka: topic %s: %s", name,
			         rd_kafka_err2str(rd_kafka_last_error()));
			goto out;
		}
		e = rd_kafka_metadata(rk, 0, rkt, &md, KAFKA_TIMEOUT_MS);
		rd_kafka_topic_destroy(rkt);
		if (e || md->topic_cnt != 1 || md->topics[0].err) {
			snprintf(errstr, errstr_size, "kafka: metadata of %s: %s (was "
			         "xregion setup run?)", name,
			         rd_kafka_err2str(e ? e : md->topic_cnt == 1
			                                    ? md->topics[0].err
			                                    : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
			if (md)
				rd_kafka_metadata_destroy(md);
			goto out;
		}
		np = md->topics[0].partition_cnt;
		rd_kafka_metadata_destroy(md);
		for (p = 0; p < np; p++) {
			int64_t lo, hi;

			e = rd_kafka_query_watermark_offsets(rk, name, p, &lo, &hi,
			                                     KAFKA_TIMEOUT_MS);
			if (e) {
				snprintf(errstr, errstr_size, "kafka: end offset of %s "
				         "[%d]: %s", name, p, rd_kafka_err2str(e));
				goto out;
			}
			add_offset(arr, name, p, hi);
		}
	}
	rc = 0;
out:
	rd_kafka_destroy(rk);
	return rc;
}

/*
 * What the donor's consumer has applied of the regions other than itself
 * and for_region, into arr.
 */
static int
donor_applied(const xr_config_t *conf, PGconn *conn, const char *for_region,
              json_t *arr, char *errstr, size_t errstr_size)
{
	PGresult *res = PQexec(conn, "SELECT topic, partition, next_offset "
	                             "FROM xregion.offsets ORDER BY 1, 2");
	size_t    plen = strlen(conf->topic_prefix);
	int       r;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(errstr, errstr_size, "reading xregion.offsets: %s (was "
		         "xregion setup run?)", PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	for (r = 0; r < PQntuples(res); r++) {
		const char *topic = PQgetvalue(res, r, 0), *region, *dot;
		size_t      rlen;

		if (strncmp(topic, conf->topic_prefix, plen) != 0 ||
		    topic[plen] != '.')
			continue;
		region = topic + plen + 1;
		if (!(dot = strchr(region, '.')))
			continue;
		rlen = (size_t)(dot - region);
		if ((strlen(conf->region) == rlen &&
		     strncmp(region, conf->region, rlen) == 0) ||
		    (strlen(for_region) == rlen &&
		     strncmp(region, for_region, rlen) == 0))
			continue;
		add_offset(arr, topic, atoi(PQgetvalue(res, r, 1)),
		           strtoll(PQgetvalue(res, r, 2), NULL, 10));
	}
	PQclear(res);
	return 0;
}

int
xr_manifest_take(const xr_config_t *conf, const char *for_region,
                 const char *path, FILE *out, char *errstr,
                 size_t errstr_size)
{
	PGconn *conn;
	json_t *doc = NULL, *arr = json_array();
	char    tmp[4096], when[32];
	time_t  now = time(NULL);
	int     rc = -1;

	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	if (!(conn = xr_pg_connect(conf->pg_dsn, "xregion-manifest", errstr,
	                           errstr_size))) {
		json_decref(arr);
		return -1;
	}
	if (donor_applied(conf, conn, for_region, arr, errstr, errstr_size) ||
	    donor_ends(conf, arr, errstr, errstr_size))
		goto out;
	doc = json_pack("{s:i, s:s, s:s, s:s, s:s, s:O}", "version", 1,
	                "for_region", for_region, "donor", conf->region,
	                "topic_prefix", conf->topic_prefix, "taken_at", when,
	                "offsets", arr);
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		snprintf(errstr, errstr_size, "manifest path too long");
		goto out;
	}
	if (!doc || json_dump_file(doc, tmp, JSON_INDENT(1)) != 0 ||
	    rename(tmp, path) != 0) {
		snprintf(errstr, errstr_size, "writing manifest %s failed", path);
		(void)unlink(tmp);
		goto out;
	}
	fprintf(out, "manifest for region %s written to %s: %zu partition "
	        "offset(s) (donor %s, taken %s)\n", for_region, path,
	        json_array_size(arr), conf->region, when);
	rc = 0;
out:
	json_decref(doc);
	json_decref(arr);
	PQfinish(conn);
	return rc;
}

int
xr_manifest_seek(const xr_config_t *conf, const char *path, FILE *out,
                 char *errstr, size_t errstr_size)
{
	json_error_t jerr;
	json_t      *doc = json_load_file(path, 0, &jerr), *arr, *o;
	const char  *for_region = NULL, *prefix = NULL, *donor = NULL;
	PGconn      *conn = NULL;
	PGresult    *res = NULL;
	char         app[96];
	size_t       i;
	int          rc = -1;

	if (!doc) {
		snprintf(errstr, errstr_size, "manifest %s: %s (line %d)", path,
		         jerr.text, jerr.line);
		return -1;
	}
	if (json_unpack(doc, "{s:s, s:s, s:s, s:o}", "for_region", &for_region,
	                "topic_prefix", &prefix, "donor", &donor, "offsets",
	                &arr) != 0 || !json_is_array(arr)) {
		snprintf(errstr, errstr_size, "manifest %s: not an xregion manifest "
		         "(for_region, topic_prefix, donor, offsets)", path);
		goto out;
	}
	if (strcmp(for_region, conf->region) != 0 ||
	    strcmp(prefix, conf->topic_prefix) != 0) {
		snprintf(errstr, errstr_size, "manifest %s is for region %s, topic "
		         "prefix %s; this is region %s, prefix %s", path, for_region,
		         prefix, conf->region, conf->topic_prefix);
		goto out;
	}
	if (!(conn = xr_pg_connect(conf->pg_dsn, "xregion-seek", errstr,
	                           errstr_size)))
		goto out;
	snprintf(app, sizeof(app), "xregion-consumer-%s", conf->region);
	{
		const char *p[1] = { app };

		res = PQexecParams(conn,
		                   "SELECT count(*) FROM pg_catalog.pg_stat_activity "
		                   "WHERE datname = current_database() "
		                   "AND application_name = $1",
		                   1, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			snprintf(errstr, errstr_size, "%s", PQerrorMessage(conn));
			goto out;
		}
		if (atoi(PQgetvalue(res, 0, 0)) > 0) {
			snprintf(errstr, errstr_size, "the consumer of region %s is "
			         "running: stop it before seeking", conf->region);
			goto out;
		}
		PQclear(res);
		res = NULL;
	}
	res = PQexec(conn, "BEGIN");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(errstr, errstr_size, "%s", PQerrorMessage(conn));
		goto out;
	}
	json_array_foreach(arr, i, o) {
		const char *topic;
		json_int_t  part, next;
		char        pb[16], nb[24];
		const char *p[3] = { NULL, pb, nb };

		if (json_unpack(o, "{s:s, s:I, s:I}", "topic", &topic, "partition",
		                &part, "next_offset", &next) != 0 || next < 0) {
			snprintf(errstr, errstr_size, "manifest %s: offsets[%zu] is not "
			         "{topic, partition, next_offset}", path, i);
			goto out;
		}
		p[0] = topic;
		snprintf(pb, sizeof(pb), "%" PRId64, (int64_t)part);
		snprintf(nb, sizeof(nb), "%" PRId64, (int64_t)next);
		PQclear(res);
		res = PQexecParams(conn,
		                   "INSERT INTO xregion.offsets (topic, partition, "
		                   "next_offset) VALUES ($1, $2, $3) "
		                   "ON CONFLICT (topic, partition) DO UPDATE "
		                   "SET next_offset = EXCLUDED.next_offset, "
		                   "updated_at = now()",
		                   3, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			snprintf(errstr, errstr_size, "storing offsets: %s (was xregion "
			         "setup run?)", PQerrorMessage(conn));
			goto out;
		}
	}
	PQclear(res);
	res = PQexec(conn, "COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		snprintf(errstr, errstr_size, "%s", PQerrorMessage(conn));
		goto out;
	}
	fprintf(out, "region %s: %zu partition offset(s) stored from donor %s's "
	        "manifest; its consumer starts there\n", conf->region,
	        json_array_size(arr), donor);
	rc = 0;
out:
	PQclear(res);
	PQfinish(conn);
	json_decref(doc);
	return rc;
}
