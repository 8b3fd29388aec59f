/* setup.c: publication, slot and topics of a region (see setup.h). */
#include "producer/setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "common/buf.h"
#include "common/kafka_conf.h"
#include "common/log.h"

static void
log_pq_error(PGconn *conn, const char *what)
{
	char   msg[1024];
	size_t n;

	snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	xr_error("%s: %s", what, msg);
}

/* Runs a statement that returns no rows. */
static int
exec_command(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	int       ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		log_pq_error(conn, sql);
	PQclear(res);
	return ok ? 0 : -1;
}

/* Appends schema.table, each part quoted as an identifier. */
static int
append_qualified(PGconn *conn, xr_buf_t *b, const char *schema,
                 const char *name)
{
	char *s = PQescapeIdentifier(conn, schema, strlen(schema));
	char *t = PQescapeIdentifier(conn, name, strlen(name));

	if (!s || !t) {
		log_pq_error(conn, "quoting a name");
		PQfreemem(s);
		PQfreemem(t);
		return -1;
	}
	xr_buf_printf(b, "%s.%s", s, t);
	PQfreemem(s);
	PQfreemem(t);
	return 0;
}

/* Refuses published tables that are missing or have no primary key. */
static int
check_tables(PGconn *conn, const xr_config_t *conf)
{
	size_t i;
	int    bad = 0;

	for (i = 0; i < conf->n_tables; i++) {
		const xr_table_conf_t *t = &conf->tables[i];
		const char *params[2] = { t->schema, t->name };
		PGresult   *res;

		if (!xr_config_produces(conf, t))
			continue;
		res = PQexecParams(conn,
		                   "SELECT c.relkind, "
		                   "       EXISTS (SELECT 1 FROM pg_catalog.pg_index i "
		                   "               WHERE i.indrelid = c.oid "
		                   "                 AND i.indisprimary) "
		                   "FROM pg_catalog.pg_class c "
		                   "JOIN pg_catalog.pg_namespace n "
		                   "  ON n.oid = c.relnamespace "
		                   "WHERE n.nspname = $1 AND c.relname = $2",
		                   2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			log_pq_error(conn, "reading the catalog");
			PQclear(res);
			return -1;
		}
		if (PQntuples(res) != 1) {
			xr_error("table %s.%s (in %s) does not exist in database %s",
			         t->schema, t->name, conf->path, PQdb(conn));
			bad = 1;
		} else if (strcmp(PQgetvalue(res, 0, 0), "r") != 0 &&
		           strcmp(PQgetvalue(res, 0, 0), "p") != 0) {
			xr_error("%s.%s is not a table", t->schema, t->name);
			bad = 1;
		} else if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
			xr_error("table %s.%s has no primary key: xregion cannot key "
			         "its events; add a primary key or mark it pii: true",
			         t->schema, t->name);
			bad = 1;
		}
		PQclear(res);
	}
	return bad ? -1 : 0;
}

static int
setup_publication(PGconn *conn, const xr_config_t *conf)
{
	const char *params[1] = { conf->publication };
	xr_buf_t    tables, sql;
	PGresult   *res;
	char       *pub = NULL;
	size_t      i, n = 0;
	int         exists, rc = -1;

	xr_buf_init(&tables);
	xr_buf_init(&sql);
	for (i = 0; i < conf->n_tables; i++) {
		if (!xr_config_produces(conf, &conf->tables[i]))
			continue;
		if (n++)
			xr_buf_puts(&tables, ", ");
		if (append_qualified(conn, &tables, conf->tables[i].schema,
		                     conf->tables[i].name))
			goto out;
	}
	res = PQexecParams(conn,
	                   "SELECT 1 FROM pg_catalog.pg_publication "
	                   "WHERE pubname = $1", 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_pq_error(conn, "reading publications");
		PQclear(res);
		goto out;
	}
	exists = PQntuples(res) == 1;
	PQclear(res);
	pub = PQescapeIdentifier(conn, conf->publication,
	                         strlen(conf->publication));
	if (!pub) {
		log_pq_error(conn, "quoting a name");
		goto out;
	}
	if (exists && n > 0) {
		xr_buf_printf(&sql, "ALTER PUBLICATION %s SET TABLE %s", pub,
		              tables.data);
	} else if (exists) {
		/* SET TABLE needs a table: an empty publication is made anew. */
		xr_buf_printf(&sql, "DROP PUBLICATION %s", pub);
		if (exec_command(conn, sql.data))
			goto out;
		xr_buf_reset(&sql);
		xr_buf_printf(&sql, "CREATE PUBLICATION %s", pub);
	} else if (n > 0) {
		xr_buf_printf(&sql, "CREATE PUBLICATION %s FOR TABLE %s", pub,
		              tables.data);
	} else {
		xr_buf_printf(&sql, "CREATE PUBLICATION %s", pub);
	}
	if (exec_command(conn, sql.data))
		goto out;
	/*
	 * A partitioned table's changes come under its own name, whatever its
	 * partitions are called here (and in the other regions).
	 */
	xr_buf_reset(&sql);
	xr_buf_printf(&sql, "ALTER PUBLICATION %s SET "
	              "(publish_via_partition_root = true)", pub);
	if (exec_command(conn, sql.data))
		goto out;
	xr_info("publication %s: %zu table(s)%s%s", conf->publication, n,
	        n ? ": " : " (no table is marked pii: false)", tables.data);
	rc = 0;
out:
	PQfreemem(pub);
	xr_buf_term(&tables);
	xr_buf_term(&sql);
	return rc;
}

/*
 * Makes an existing slot a failover slot, or not (PostgreSQL 17:
 * ALTER_REPLICATION_SLOT exists only as a replication command).
 */
static int
alter_slot_failover(const xr_config_t *conf)
{
	const char *keys[] = { "dbname", "replication", "application_name", NULL };
	const char *vals[] = { conf->pg_dsn, "database", "xregion setup", NULL };
	PGconn     *rc_conn = PQconnectdbParams(keys, vals, 1);
	PGresult   *res = NULL;
	char       *id = NULL;
	xr_buf_t    sql;
	int         rc = -1;

	xr_buf_init(&sql);
	if (PQstatus(rc_conn) != CONNECTION_OK) {
		log_pq_error(rc_conn, "replication connection (to alter the slot)");
		goto out;
	}
	if (!(id = PQescapeIdentifier(rc_conn, conf->slot, strlen(conf->slot)))) {
		log_pq_error(rc_conn, "quoting the slot name");
		goto out;
	}
	xr_buf_printf(&sql, "ALTER_REPLICATION_SLOT %s (FAILOVER %s)", id,
	              conf->slot_failover ? "true" : "false");
	res = PQexec(rc_conn, sql.data);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		log_pq_error(rc_conn, sql.data);
		if (st && strcmp(st, "55006") == 0)   /* object_in_use */
			xr_error("replication slot %s is in use: stop the producer "
			         "streaming from it, then run setup again", conf->slot);
		goto out;
	}
	rc = 0;
out:
	PQclear(res);
	PQfreemem(id);
	xr_buf_term(&sql);
	PQfinish(rc_conn);
	return rc;
}

/*
 * postgres.failover needs synchronized_standby_slots, naming physical
 * slots of this server: without it the primary may send changes that no
 * standby has, other regions apply them, and after a failover the
 * promoted server writes new transactions at the same LSNs, which the
 * other regions then skip as applied already.  Returns 0, or -1 (logged).
 */
static int
check_failover_settings(PGconn *conn)
{
	PGresult *res = PQexec(conn,
	                       "SELECT current_setting('synchronized_standby_slots'), "
	                       "(SELECT string_agg(s, ', ') FROM unnest(string_to_array("
	                       "current_setting('synchronized_standby_slots'), ',')) "
	                       "AS u(s) WHERE trim(s) <> '' AND NOT EXISTS (SELECT 1 "
	                       "FROM pg_catalog.pg_replication_slots WHERE slot_name "
	                       "= trim(s) AND slot_type = 'physical'))");
	int       rc = -1;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		log_pq_error(conn, "reading synchronized_standby_slots");
	} else if (PQgetvalue(res, 0, 0)[0] == '\0') {
		xr_error("postgres.failover: synchronized_standby_slots is empty on "
		         "this server; set it to the standby's physical slot. "
		         "Without it, changes can reach other regions before the "
		         "standby has them, and after a failover the promoted "
		         "server's new transactions would be skipped there "
		         "(docs/deployment.md, \"Failover of a region's database\")");
	} else {
		if (!PQgetisnull(res, 0, 1))
			xr_warn("postgres.failover: synchronized_standby_slots names %s, "
			        "not a physical slot of this server: the producer waits "
			        "for it", PQgetvalue(res, 0, 1));
		rc = 0;
	}
	PQclear(res);
	return rc;
}

static int
setup_slot(PGconn *conn, const xr_config_t *conf)
{
	const char *params[2] = { conf->slot,
	                          conf->slot_failover ? "true" : "false" };
	int         version = PQserverVersion(conn);
	PGresult   *res;

	if (conf->slot_failover && version < 170000) {
		xr_error("postgres.failover: failover slots need PostgreSQL 17 or "
		         "later (this server is %d.%d)", version / 10000,
		         version % 10000);
		return -1;
	}
	res = PQexecParams(conn,
	                   version >= 170000
	                       ? "SELECT plugin, database = current_database(), "
	                         "failover FROM pg_catalog.pg_replication_slots "
	                         "WHERE slot_name = $1"
	                       : "SELECT plugin, database = current_database(), "
	                         "false FROM pg_catalog.pg_replication_slots "
	                         "WHERE slot_name = $1",
	                   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_pq_error(conn, "reading replication slots");
		PQclear(res);
		return -1;
	}
	if (PQntuples(res) == 1) {
		int  ok = strcmp(PQgetvalue(res, 0, 0), "pgoutput") == 0 &&
		          strcmp(PQgetvalue(res, 0, 1), "t") == 0;
		bool failover = strcmp(PQgetvalue(res, 0, 2), "t") == 0;

		PQclear(res);
		if (!ok) {
			xr_error("replication slot %s exists but is not a pgoutput slot "
			         "of database %s", conf->slot, PQdb(conn));
			return -1;
		}
		if (conf->slot_failover && check_failover_settings(conn))
			return -1;
		/* Without the key, a failover slot stays one. */
		if (version >= 170000 && failover != conf->slot_failover &&
		    conf->slot_failover_set) {
			if (alter_slot_failover(conf))
				return -1;
			if (conf->slot_failover)
				xr_info("replication slot %s: exists; now a failover slot",
				        conf->slot);
			else
				xr_warn("replication slot %s: exists; no longer a failover "
				        "slot (postgres.failover: false): a standby promoted "
				        "from now on will not have it", conf->slot);
		} else {
			xr_info("replication slot %s: exists%s", conf->slot,
			        failover ? " (a failover slot)" : "");
		}
		return 0;
	}
	PQclear(res);
	if (conf->slot_failover && check_failover_settings(conn))
		return -1;
	res = PQexecParams(conn,
	                   version >= 170000
	                       ? "SELECT lsn::text FROM pg_catalog."
	                         "pg_create_logical_replication_slot($1, "
	                         "'pgoutput', false, false, $2::bool)"
	                       : "SELECT lsn::text FROM pg_catalog."
	                         "pg_create_logical_replication_slot($1, "
	                         "'pgoutput')",
	                   version >= 170000 ? 2 : 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_pq_error(conn, "creating the replication slot");
		PQclear(res);
		return -1;
	}
	xr_info("replication slot %s: created at %s%s", conf->slot,
	        PQgetvalue(res, 0, 0),
	        conf->slot_failover ? " (a failover slot)" : "");
	PQclear(res);
	return 0;
}

/* Creates the topics that are missing; existing ones are left alone. */
static int
setup_topics(const xr_config_t *conf)
{
	rd_kafka_conf_t     *kc;
	rd_kafka_t          *rk;
	rd_kafka_queue_t    *q = NULL;
	rd_kafka_NewTopic_t **topics;
	rd_kafka_event_t    *ev = NULL;
	char                 err[512];
	size_t               i, n = 0, max = conf->n_tables + 5;
	char                 maxbytes[32];
	int                  rc = -1;

	snprintf(maxbytes, sizeof(maxbytes), "%d", conf->max_message_bytes);

	topics = calloc(max, sizeof(*topics));
	kc = xr_kafka_conf_new(conf, NULL, NULL, err, sizeof(err));
	if (!kc || !topics) {
		xr_error("%s", kc ? "out of memory" : err);
		if (kc)
			rd_kafka_conf_destroy(kc);
		free(topics);
		return -1;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
	if (!rk) {
		xr_error("kafka: %s", err);
		rd_kafka_conf_destroy(kc);
		free(topics);
		return -1;
	}
	for (i = 0; i < conf->n_tables; i++) {
		char name[512];

		if (!xr_config_produces(conf, &conf->tables[i]))
			continue;
		snprintf(name, sizeof(name), "%s.%s.%s.%s", conf->topic_prefix,
		         conf->region, conf->tables[i].schema, conf->tables[i].name);
		topics[n] = rd_kafka_NewTopic_new(name, conf->partitions,
		                                  conf->replication_factor, err,
		                                  sizeof(err));
		if (!topics[n] ||
		    rd_kafka_NewTopic_set_config(topics[n], "max.message.bytes",
		                                 maxbytes)) {
			xr_error("kafka: topic %s: %s", name, err);
			goto out;
		}
		n++;
	}
	topics[n] = rd_kafka_NewTopic_new(conf->schemas_topic, 1,
	                                  conf->replication_factor, err,
	                                  sizeof(err));
	if (!topics[n] ||
	    rd_kafka_NewTopic_set_config(topics[n], "cleanup.policy", "compact")) {
		xr_error("kafka: topic %s: %s", conf->schemas_topic, err);
		goto out;
	}
	n++;
	/* How far each region has published and applied (consumer/progress.c). */
	topics[n] = rd_kafka_NewTopic_new(conf->progress_topic, 1,
	                                  conf->replication_factor, err,
	                                  sizeof(err));
	if (!topics[n] ||
	    rd_kafka_NewTopic_set_config(topics[n], "cleanup.policy", "compact")) {
		xr_error("kafka: topic %s: %s", conf->progress_topic, err);
		goto out;
	}
	n++;
	topics[n] = rd_kafka_NewTopic_new(conf->dead_letter_topic,
	                                  conf->partitions,
	                                  conf->replication_factor, err,
	                                  sizeof(err));
	if (!topics[n] ||
	    rd_kafka_NewTopic_set_config(topics[n], "max.message.bytes", maxbytes)) {
		xr_error("kafka: topic %s: %s", conf->dead_letter_topic, err);
		goto out;
	}
	n++;
	/* The end records of this region's transactions: one partition, in
	 * commit order. */
	topics[n] = rd_kafka_NewTopic_new(conf->transactions_topic, 1,
	                                  conf->replication_factor, err,
	                                  sizeof(err));
	if (!topics[n] ||
	    rd_kafka_NewTopic_set_config(topics[n], "max.message.bytes", maxbytes)) {
		xr_error("kafka: topic %s: %s", conf->transactions_topic, err);
		goto out;
	}
	n++;
	/* Shared by every region's feeders (xregion feed). */
	topics[n] = rd_kafka_NewTopic_new(conf->feed_dead_letter_topic, 1,
	                                  conf->replication_factor, err,
	                                  sizeof(err));
	if (!topics[n] ||
	    rd_kafka_NewTopic_set_config(topics[n], "max.message.bytes", maxbytes)) {
		xr_error("kafka: topic %s: %s", conf->feed_dead_letter_topic, err);
		goto out;
	}
	n++;

	q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, topics, n, NULL, q);
	ev = rd_kafka_queue_poll(q, 30000);
	if (!ev) {
		xr_error("kafka: no answer to CreateTopics from %s within 30 s",
		         conf->brokers);
		goto out;
	}
	if (rd_kafka_event_error(ev)) {
		xr_error("kafka: CreateTopics: %s", rd_kafka_event_error_string(ev));
		goto out;
	} else {
		const rd_kafka_CreateTopics_result_t *res =
		    rd_kafka_event_CreateTopics_result(ev);
		const rd_kafka_topic_result_t **tr;
		size_t                          cnt;

		tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
		for (i = 0; i < cnt; i++) {
			rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);

			if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
				xr_info("kafka topic %s: created",
				        rd_kafka_topic_result_name(tr[i]));
			else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
				xr_info("kafka topic %s: exists",
				        rd_kafka_topic_result_name(tr[i]));
			else {
				xr_error("kafka topic %s: %s",
				         rd_kafka_topic_result_name(tr[i]),
				         rd_kafka_topic_result_error_string(tr[i]));
				goto out;
			}
		}
	}
	rc = 0;
out:
	if (ev)
		rd_kafka_event_destroy(ev);
	if (q)
		rd_kafka_queue_destroy(q);
	for (i = 0; i < max; i++)
		if (topics[i])
			rd_kafka_NewTopic_destroy(topics[i]);
	free(topics);
	rd_kafka_destroy(rk);
	return rc;
}

static PGconn *
connect_plain(const xr_config_t *conf)
{
	PGconn *conn = PQconnectdb(conf->pg_dsn);

	if (PQstatus(conn) != CONNECTION_OK) {
		log_pq_error(conn, "cannot connect to PostgreSQL");
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/* Runs sql with three parameters: the result, or NULL (logged as what). */
static PGresult *
exec_params(PGconn *conn, ExecStatusType want, const char *const params[3],
            const char *what, const char *sql)
{
	PGresult *res = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) != want) {
		log_pq_error(conn, what);
		PQclear(res);
		return NULL;
	}
	return res;
}

/*
 * Records this producer (its region and stream, slot and publication) in
 * xregion.producer, refusing, before anything is made, a second producer
 * of the same region and stream (the other regions would skip its
 * transactions as copies of the first one's), and a slot or publication
 * that another producer of this database uses while its slot exists.
 * Checked and recorded in one transaction under a lock.
 */
static int
claim_producer(PGconn *conn, const xr_config_t *conf)
{
	char        key[160];
	const char *params[3] = { key, conf->slot, conf->publication };
	PGresult   *res;
	int         rc = -1;

	xr_config_stream_key(conf, key, sizeof(key));
	if (exec_command(conn,
	                 "BEGIN; SET LOCAL client_min_messages = warning; "
	                 "CREATE SCHEMA IF NOT EXISTS xregion; "
	                 "CREATE TABLE IF NOT EXISTS xregion.producer ("
	                 "region text PRIMARY KEY, slot text NOT NULL, "
	                 "updated_at timestamptz NOT NULL DEFAULT now()); "
	                 "ALTER TABLE xregion.producer "
	                 "ADD COLUMN IF NOT EXISTS publication text; "
	                 "LOCK TABLE xregion.producer IN EXCLUSIVE MODE"))
		goto out;
	if (!(res = exec_params(conn, PGRES_TUPLES_OK, params,
	                        "reading xregion.producer",
	                        "SELECT p.region, p.slot, p.slot = $2, "
	                        "p.publication = $3 FROM xregion.producer p "
	                        "WHERE ((p.region = $1 AND p.slot <> $2) OR "
	                        "(p.region <> $1 AND (p.slot = $2 OR "
	                        "p.publication = $3))) AND EXISTS ("
	                        "SELECT 1 FROM pg_catalog.pg_replication_slots s "
	                        "WHERE s.slot_name = p.slot "
	                        "AND s.slot_type = 'logical' "
	                        "AND s.database = current_database())")))
		goto out;
	if (PQntuples(res) > 0) {
		const char *other = PQgetvalue(res, 0, 0), *oslot = PQgetvalue(res, 0, 1);

		if (strcmp(other, key) == 0)
			xr_error("region %s%s%s already has a producer in database %s, "
			         "on slot %s: a region (or stream) has one producer per "
			         "database (postgres.slot %s would be a second one, and "
			         "the other regions would skip its transactions as copies "
			         "of the first one's; a producer of other tables takes a "
			         "producer.stream of its own). Use slot %s, or drop it "
			         "first: SELECT pg_drop_replication_slot('%s')",
			         conf->region, conf->stream ? " stream " : "",
			         conf->stream ? conf->stream : "", PQdb(conn), oslot,
			         conf->slot, oslot, oslot);
		else
			xr_error("the %s of %s is the producer %s's in database %s: "
			         "each producer (producer.stream) needs a slot and a "
			         "publication of its own (the defaults are)",
			         strcmp(PQgetvalue(res, 0, 2), "t") == 0 ? "slot"
			                                                 : "publication",
			         key, other, PQdb(conn));
		PQclear(res);
		goto out;
	}
	PQclear(res);
	if (!(res = exec_params(conn, PGRES_COMMAND_OK, params,
	                        "recording the slot in xregion.producer",
	                        "INSERT INTO xregion.producer AS p (region, slot, "
	                        "publication) VALUES ($1, $2, $3) "
	                        "ON CONFLICT (region) DO UPDATE "
	                        "SET slot = EXCLUDED.slot, publication = "
	                        "EXCLUDED.publication, updated_at = now() "
	                        "WHERE p.slot IS DISTINCT FROM EXCLUDED.slot OR "
	                        "p.publication IS DISTINCT FROM "
	                        "EXCLUDED.publication")))
		goto out;
	PQclear(res);
	rc = exec_command(conn, "COMMIT");
out:
	if (rc)
		PQclear(PQexec(conn, "ROLLBACK"));
	return rc;
}

int
xr_setup_run(const xr_config_t *conf)
{
	PGconn *conn = connect_plain(conf);
	int     rc = 1;

	if (!conn)
		return 1;
	if (check_tables(conn, conf) || claim_producer(conn, conf) ||
	    setup_publication(conn, conf) || setup_slot(conn, conf))
		goto out;
	if (setup_topics(conf))
		goto out;
	xr_info("setup of region %s done", conf->region);
	rc = 0;
out:
	PQfinish(conn);
	return rc;
}

int
xr_teardown_run(const xr_config_t *conf)
{
	const char *params[1] = { conf->slot };
	PGconn     *conn = connect_plain(conf);
	PGresult   *res;
	xr_buf_t    sql;
	char       *pub;
	int         rc = 1;

	if (!conn)
		return 1;
	xr_buf_init(&sql);
	res = PQexecParams(conn,
	                   "SELECT pg_catalog.pg_drop_replication_slot(slot_name) "
	                   "FROM pg_catalog.pg_replication_slots "
	                   "WHERE slot_name = $1", 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_pq_error(conn, "dropping the replication slot");
		PQclear(res);
		goto out;
	}
	xr_info("replication slot %s: %s", conf->slot,
	        PQntuples(res) ? "dropped" : "was not there");
	PQclear(res);
	pub = PQescapeIdentifier(conn, conf->publication, strlen(conf->publication));
	if (!pub) {
		log_pq_error(conn, "quoting a name");
		goto out;
	}
	xr_buf_printf(&sql, "DROP PUBLICATION IF EXISTS %s", pub);
	PQfreemem(pub);
	if (exec_command(conn, sql.data))
		goto out;
	xr_info("publication %s: dropped", conf->publication);
	if (conf->stream) {
		char        key[160];
		const char *kp[1] = { key };

		xr_config_stream_key(conf, key, sizeof(key));
		res = PQexecParams(conn, "DELETE FROM xregion.producer "
		                   "WHERE region = $1", 1, NULL, kp, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK &&
		    strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE) ?
		           PQresultErrorField(res, PG_DIAG_SQLSTATE) : "", "42P01")) {
			log_pq_error(conn, "forgetting the producer in xregion.producer");
			PQclear(res);
			goto out;
		}
		PQclear(res);
	}
	rc = 0;
out:
	xr_buf_term(&sql);
	PQfinish(conn);
	return rc;
}
