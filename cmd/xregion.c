/*
 * xregion.c: the xregion command: parses the command line, loads the
 * config, dispatches to a subcommand and cleans up.
 *
 * Exit status: 0 success, 1 runtime failure, 2 bad usage or bad config.
 */
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "common/config.h"
#include "common/log.h"
#include "common/manifest.h"
#include "common/metrics.h"
#include "common/version.h"
#include "consumer/conflicts.h"
#include "consumer/dlq.h"
#include "consumer/feed.h"
#include "consumer/progress.h"
#include "consumer/status.h"
#include "consumer/consume.h"
#include "consumer/meta.h"
#include "consumer/replay.h"
#include "producer/backfill_cmd.h"
#include "producer/produce.h"
#include "producer/setup.h"

#include <pthread.h>

/*
 * Set by the signal handler and by either thread of `xregion run`: an atomic
 * (lock-free, so async-signal-safe) rather than a plain sig_atomic_t,
 * which is only safe between a handler and one thread.
 */
static atomic_int stop_requested = 0;

/* The process's counters, served at metrics_listen when configured. */
static xr_metrics_t metrics;

/* The options of `xregion conflicts`, set while parsing the command line. */
static xr_conflicts_opts_t conflicts_opts;

/* The options of `xregion backfill`. */
static xr_backfill_opts_t backfill_opts;

/* The options of `xregion replay`. */
static xr_replay_opts_t replay_opts;

/* The options of `xregion dlq`. */
static xr_dlq_opts_t dlq_opts;

/* The options of `xregion feed`. */
static xr_feed_opts_t feed_opts;

/* xregion status's options, with its further -c files. */
static xr_status_opts_t status_opts;

/* The --manifest of `xregion seek`. */
static const char *seek_manifest;

static void
on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

typedef struct command_s {
	const char *name;
	const char *summary;
	const char *help;     /* what it does, after the usage line */
	int       (*run)(const xr_config_t *conf);
} command_t;

/* `xregion setup --restored`: after a logical restore of the database. */
static bool setup_restored;

static int
run_setup(const xr_config_t *conf)
{
	int rc = xr_setup_run(conf);

	/*
	 * Before installing: setup stamps the rows it finds without a version
	 * as local writes of their commit time, which after a restore is the
	 * restore's.
	 */
	if (rc == 0 && setup_restored)
		rc = xr_meta_restored(conf);
	/*
	 * The consumer's objects are the region's (its origins are named
	 * after the main producer's slot): the main config's setup makes them.
	 */
	if (rc == 0 && conf->stream) {
		xr_info("schema xregion: left to the region's main config "
		        "(producer.stream is set)");
		return 0;
	}
	return rc ? rc : xr_meta_setup(conf);
}

/* A second producer's config runs no consumer: 0, or 1 (logged). */
static int
no_stream(const xr_config_t *conf, const char *cmd)
{
	if (!conf->stream)
		return 0;
	xr_error("producer.stream is set in %s: it is the config of a second "
	         "producer of region %s, which runs only xregion produce; run "
	         "xregion %s with the region's main config", conf->path,
	         conf->region, cmd);
	return 1;
}

/*
 * Deletes a second producer's progress record: the region's time would
 * otherwise wait on it for ever (consumer/progress.h).
 */
static void
retire_stream(const xr_config_t *conf)
{
	char           who[160], key[192], err[512] = "";
	xr_progress_t *p;

	xr_config_stream_key(conf, who, sizeof(who));
	snprintf(key, sizeof(key), "producer/%s", who);
	p = xr_progress_new(conf, err, sizeof(err));
	if (!p || xr_progress_publish(p, key, NULL, 10000, err, sizeof(err)))
		xr_warn("progress record %s not deleted (%s): tombstones are not "
		        "purged until it is; run the teardown again", key, err);
	else
		xr_info("progress record %s: deleted", key);
	xr_progress_destroy(p);
}

static int
run_teardown(const xr_config_t *conf)
{
	int rc = xr_teardown_run(conf);

	/* A second producer's config drops only what is its own. */
	if (conf->stream) {
		retire_stream(conf);
		xr_info("schema xregion stays: it is region %s's (the main "
		        "config's teardown drops it)", conf->region);
		return rc;
	}
	return xr_meta_teardown(conf) ? 1 : rc;
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static int
run_produce(const xr_config_t *conf)
{
	install_signals();
	return xr_produce_run(conf, &metrics, &stop_requested);
}

static int
run_consume(const xr_config_t *conf)
{
	if (no_stream(conf, "consume"))
		return 1;
	install_signals();
	return xr_consume_run(conf, &metrics, &stop_requested);
}

/* `xregion run`: the producer on its own thread, the consumer on ours. */
typedef struct producer_thread_s {
	const xr_config_t *conf;
	int                rc;
} producer_thread_t;

static void *
producer_main(void *arg)
{
	producer_thread_t *pt = arg;

	pt->rc = xr_produce_run(pt->conf, &metrics, &stop_requested);
	/* A producer that gives up takes the replicator down with it. */
	if (pt->rc != 0)
		stop_requested = 1;
	return NULL;
}

static int
run_both(const xr_config_t *conf)
{
	producer_thread_t pt = { conf, 0 };
	pthread_t         th;
	sigset_t          block, old;
	int               rc;

	if (no_stream(conf, "run"))
		return 1;
	install_signals();
	/* Signals go to the consumer's (main) thread only. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	rc = pthread_create(&th, NULL, producer_main, &pt);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		xr_error("cannot start the producer thread: %s", strerror(rc));
		return 1;
	}
	rc = xr_consume_run(conf, &metrics, &stop_requested);
	stop_requested = 1;
	pthread_join(th, NULL);
	xr_info("replicator stopped (producer %d, consumer %d)", pt.rc, rc);
	return rc ? rc : pt.rc;
}

static int
run_conflicts(const xr_config_t *conf)
{
	char err[1024];

	if (xr_conflicts_run(conf, &conflicts_opts, stdout, err, sizeof(err))) {
		fprintf(stderr, "xregion conflicts: %s\n", err);
		return 1;
	}
	return 0;
}

static int
run_backfill(const xr_config_t *conf)
{
	install_signals();
	return xr_backfill_command(conf, &backfill_opts, &stop_requested, stdout,
	                           stderr);
}

static int
run_replay(const xr_config_t *conf)
{
	if (no_stream(conf, "replay"))
		return 1;
	install_signals();
	return xr_replay_command(conf, &replay_opts, &stop_requested, stdout,
	                         stderr);
}

static int
run_dlq(const xr_config_t *conf)
{
	if (no_stream(conf, "dlq"))
		return 1;
	install_signals();
	return xr_dlq_command(conf, &dlq_opts, &stop_requested, stdout, stderr);
}

static int
run_feed(const xr_config_t *conf)
{
	install_signals();
	return xr_feed_command(conf, &feed_opts, &metrics, &stop_requested, stdout,
	                       stderr);
}

static int
run_seek(const xr_config_t *conf)
{
	char err[1024];

	if (!seek_manifest) {
		fprintf(stderr, "xregion seek: --manifest FILE is required\n");
		return 2;
	}
	if (xr_manifest_seek(conf, seek_manifest, stdout, err, sizeof(err))) {
		fprintf(stderr, "xregion seek: %s\n", err);
		return 1;
	}
	return 0;
}

static int
run_status(const xr_config_t *conf)
{
	return (int)xr_status_run(conf, &status_opts, stdout);
}

static const command_t commands[] = {
	{ "setup", "create the publication, slot, Kafka topics and schema xregion",
	  "Idempotent. Checks that every table marked pii: false exists and has\n"
	  "a primary key (refusing, by name, any that does not), makes the\n"
	  "publication cover exactly those tables, creates the pgoutput slot if\n"
	  "missing, and creates the missing Kafka topics: one per published\n"
	  "table (<prefix>.<region>.<schema>.<table>), the compacted schemas\n"
	  "and progress topics and the dead-letter topic. Then installs the\n"
	  "consumer's schema xregion: applied offsets, row versions and\n"
	  "tombstones, the conflict log, rows hidden by unique key conflicts,\n"
	  "tombstone triggers and (clock: hybrid) the clock trigger\n"
	  "xregion_clock on the lww tables, the version-vector trigger\n"
	  "xregion_vclock on the tables with conflict: vclock, and a\n"
	  "replication origin per source region. With producer.stream set (a\n"
	  "second producer of the region) only its publication, slot and\n"
	  "topics: schema xregion is the main config's.\n\n"
	  "On PostgreSQL 17 and later, postgres.failover: true creates the slot\n"
	  "as a failover slot: a standby with sync_replication_slots = on,\n"
	  "hot_standby_feedback = on and primary_slot_name keeps a copy, and the\n"
	  "primary's synchronized_standby_slots lists that standby's physical\n"
	  "slot, so that the slot never sends a change the standby has not yet\n"
	  "received. After a promotion, point postgres.dsn at the new primary\n"
	  "(docs/deployment.md: Failover of a region's database).\n\n"
	  "      --restored        once, after this database was restored from a\n"
	  "                        logical dump (pg_dump): gives the restored rows\n"
	  "                        the versions they had when dumped (rows without\n"
	  "                        one count as the oldest), so that the writes they\n"
	  "                        missed win (then xregion replay; docs/backfill.md)\n",
	  run_setup },
	{ "produce", "stream committed changes to Kafka as Avro events",
	  "Reads the slot with pgoutput and publishes one Avro change event per\n"
	  "row change of the published tables. Confirms a position to the slot\n"
	  "only once Kafka has acknowledged every event before it. Transactions\n"
	  "applied under a replication origin (by xregion's consumer) are not\n"
	  "published. Runs until SIGINT or SIGTERM, then flushes Kafka, confirms\n"
	  "the final position and exits 0. Lost connections are retried with\n"
	  "backoff.\n",
	  run_produce },
	{ "consume", "apply the other regions' changes to this database",
	  "Reads the change topics of every other region whose lease it holds\n"
	  "(several consumers of a region share its source regions and take\n"
	  "over from one that dies; docs/consumer.md), decodes their\n"
	  "Avro events (schemas from the schemas topic) and applies the tables\n"
	  "this region marks pii: false, with last-write-wins: a row's version is\n"
	  "(version time at its origin, origin region, stream position), or\n"
	  "with vector clocks. Batches many events per transaction under a\n"
	  "replication origin per source region, with the Kafka offsets stored\n"
	  "in the same transaction. A write that takes another row's unique\n"
	  "value is decided by version (the loser is hidden, and comes back\n"
	  "when the value is free). What cannot be applied goes to the\n"
	  "dead-letter topic with its reason; conflicts are logged in\n"
	  "xregion.conflicts. Tombstones are purged once every region has\n"
	  "applied past them (the progress topic). Runs until SIGINT or\n"
	  "SIGTERM.\n",
	  run_consume },
	{ "run", "the region's replicator: produce and consume together",
	  "Runs the producer and the consumer of this region in one process\n"
	  "with one config, until SIGINT or SIGTERM; both shut down cleanly.\n",
	  run_both },
	{ "teardown", "drop the slot, the publication and schema xregion",
	  "Drops the region's replication slot and publication, the consumer's\n"
	  "schema xregion (offsets, versions, tombstones, version vectors,\n"
	  "conflict log) with its triggers, and its replication origins.\n"
	  "With producer.stream set (a second producer of the region), drops\n"
	  "only that producer's slot and publication.\n"
	  "Kafka topics are kept: they hold the change history.\n",
	  run_teardown },
	{ "conflicts", "show the recent conflicts of the conflict log",
	  "Prints the newest conflicts logged in xregion.conflicts of this\n"
	  "region's database, one line each, oldest first (the newest last),\n"
	  "then a summary line: counts by kind/resolution of every conflict the\n"
	  "filters select. A line gives the time it was logged (UTC), the table,\n"
	  "the key, kind/resolution, the winner (the region whose write stands,\n"
	  "\"local\", or \"dead-lettered\"), and the local and remote versions\n"
	  "(region@commit time, and the version vector if any; local=none when\n"
	  "there was no local row). Read only; exits 1 if the database cannot be\n"
	  "reached or has no schema xregion.\n\n"
	  "Selection and output:\n"
	  "      --table NAME      schema.table, or table (schema public); repeat\n"
	  "                        it to select several tables\n"
	  "      --kind KIND       a conflict kind, e.g. insert_exists or\n"
	  "                        update_origin_differs; repeat it for several\n"
	  "      --since WHEN      logged at or after WHEN: a time (2024-05-01,\n"
	  "                        2024-05-01T10:00:00Z; local time without an\n"
	  "                        offset) or a duration ago (45s, 30m, 2h, 7d,\n"
	  "                        1w, 1h30m)\n"
	  "      --until WHEN      logged before WHEN (the same forms)\n"
	  "      --limit N         show the newest N (default 50; 0: all)\n"
	  "      --rows            also print the local and remote row images\n"
	  "      --format FORMAT   text (default) or json: one JSON object per\n"
	  "                        line, without the summary\n",
	  run_conflicts },
	{ "backfill", "publish existing rows of tables for other regions",
	  "Run in the donor region. Asks this region's producer (xregion run or\n"
	  "produce, which must be running) to publish the rows its tables hold\n"
	  "now, as snapshot_read events on their usual topics, next to the live\n"
	  "changes: in primary-key order, a chunk per short read, each row with\n"
	  "its own version, so that applying one never overwrites a newer write;\n"
	  "a row that changes while its chunk is read is left to the stream,\n"
	  "which carries its newer state (watermarks in the WAL around each\n"
	  "chunk). Progress is kept in xregion.backfills: a producer restarted\n"
	  "(even by kill -9) goes on from its last chunk on Kafka, and running\n"
	  "the command again follows the job instead of starting another; a\n"
	  "finished backfill is not run twice. Tables not marked pii: false,\n"
	  "without a primary key or not published are refused (exit 2). Shows a\n"
	  "progress bar on a terminal, a line every 10 s otherwise; exits 0 when\n"
	  "every job is done, 1 if one failed or was cancelled. Ctrl-C stops\n"
	  "following only: the producer goes on.\n\n"
	  "Selection and pace:\n"
	  "      --table NAME[,NAME...]  schema.table, or table (schema public);\n"
	  "                        repeatable (--tables is the same); default:\n"
	  "                        every table marked pii: false\n"
	  "      --for REGION      apply the rows in REGION only (the others skip\n"
	  "                        them unread); default: every region applies\n"
	  "                        them, keeping what is newer\n"
	  "      --rate N          at most N rows/s (default: no cap)\n"
	  "      --chunk-size N    rows per chunk (default 2000)\n"
	  "      --again           run a finished backfill again\n"
	  "      --manifest FILE   with --for: first write where that region's\n"
	  "                        consumer is to start (for xregion seek there;\n"
	  "                        docs/backfill.md, Adding a region)\n"
	  "      --dry-run         print what would be read; write nothing\n"
	  "      --no-wait         submit and exit without following\n"
	  "      --status          list the backfills and their progress\n"
	  "      --cancel          cancel the unfinished backfills of the tables\n"
	  "                        given (all without --table)\n",
	  run_backfill },
	{ "replay", "apply a range of the other regions' history again",
	  "Reads the other regions' change events from Kafka again, from\n"
	  "--from to --until (or the end offsets of when it starts), and applies\n"
	  "them to this region's database through the normal conflict rules:\n"
	  "an event older than what the region holds is skipped, so a replay\n"
	  "never moves a row backwards and a replay of what is already here\n"
	  "changes nothing. Use it for a region restored from a backup. Runs\n"
	  "next to the consumer, under a replication origin of its own, and\n"
	  "does not move the consumer's offsets. Events it cannot apply are\n"
	  "counted and logged (the consumer dead-lettered them already). Prints\n"
	  "per table: events, applied, skipped, conflicts, refused, and other\n"
	  "(a backfill's rows for another region). A --from past the end is\n"
	  "\"nothing to do\" (exit 0). Exits 1 if stopped before the end.\n\n"
	  "Range and selection:\n"
	  "      --from WHEN       required: an offset (every partition),\n"
	  "                        \"beginning\", a time (2026-11-30T10:00:00Z;\n"
	  "                        local time without an offset) or a duration\n"
	  "                        ago (30m, 2h, 1d)\n"
	  "      --until WHEN      stop before WHEN (the same forms); default:\n"
	  "                        the end offsets when the replay starts\n"
	  "      --source-regions R[,R...]  default: every other region\n"
	  "      --table NAME[,NAME...]     default: every table marked pii: false\n"
	  "      --dry-run         apply each batch and roll it back: prints what\n"
	  "                        would apply, be skipped or conflict\n",
	  run_replay },
	{ "dlq", "list, show and redrive this region's dead letters",
	  "Actions:\n"
	  "  list                  counts the dead letters on this region's\n"
	  "                        dead-letter topic by table and reason, with\n"
	  "                        how many are not redriven yet and the first\n"
	  "                        of each (PARTITION:OFFSET)\n"
	  "  show PARTITION:OFFSET prints one: where it came from, why, how often\n"
	  "                        it was redriven, and the event decoded\n"
	  "  replay                redrives the ones not redriven yet, once the\n"
	  "                        cause is fixed (a table created, a column\n"
	  "                        added or widened): each is applied through the\n"
	  "                        normal conflict rules, next to the running\n"
	  "                        consumer, and its place stored in the same\n"
	  "                        transaction (a redrive resumes where it\n"
	  "                        stopped and applies each once). One that fails\n"
	  "                        again goes back to the dead-letter topic, bytes\n"
	  "                        and headers kept, with the new reason and\n"
	  "                        xr-dlq-replays one higher.\n\n"
	  "Options of replay:\n"
	  "      --dry-run         apply and roll back: print what would apply\n"
	  "      --max-replays N   leave alone (and report) a dead letter already\n"
	  "                        redriven N times (default 3)\n",
	  run_dlq },
	{ "feed", "write the change stream as flat rows for analytics",
	  "Reads the change topics of every region (not PII tables: they have\n"
	  "none) and writes one flat row per change: the table's columns plus\n"
	  "__op, __deleted, __region, __commit_ts, __commit_lsn, __lsn, __txid,\n"
	  "__tx_index, __event_id, __version, __unchanged and __text. A delete is a row\n"
	  "(__deleted true); an update that changed the key is a delete of the\n"
	  "old key and the update. Avro container files go to\n"
	  "OUT/<schema>.<table>/dt=YYYY-MM-DD/hr=HH/<topic>+<partition>+<first\n"
	  "offset>.avro, exactly once: each file is written under OUT/_xregion,\n"
	  "fsynced and renamed into place, and the positions to resume from are\n"
	  "read back from OUT on start, so a kill -9 neither loses nor repeats a\n"
	  "row. A message it cannot decode goes to kafka.feed_dead_letter_topic\n"
	  "with its reason. Runs until SIGINT or SIGTERM (then commits what it\n"
	  "has), or with --once until it has fed what there was at its start.\n"
	  "docs/feed.md has the layout and how to load it.\n\n"
	  "Output:\n"
	  "      --out DIR         where the files go (required); --out - writes\n"
	  "                        JSON lines to stdout (no positions are kept)\n"
	  "      --format FORMAT   avro (files, default) or jsonl (stdout)\n"
	  "      --codec CODEC     snappy (default), deflate (smaller, 3x the CPU)\n"
	  "                        or null\n"
	  "      --rotate-bytes N  commit a file at N encoded bytes (default 128M)\n"
	  "      --rotate-seconds S  ... once its rows span S seconds of commit\n"
	  "                        time or it has been open S seconds (default 900)\n"
	  "      --idle-flush S    ... once no row came for S seconds (default 60)\n"
	  "      --max-open N      open files per Kafka partition (default 64)\n"
	  "Selection:\n"
	  "      --table NAME[,NAME...]  default: every table marked pii: false\n"
	  "      --regions R[,R...]      default: every region in regions\n"
	  "      --start beginning|end   where a partition never fed starts\n"
	  "                        (default beginning)\n"
	  "      --once            stop at the end offsets of the start\n"
	  "SQL:\n"
	  "      --ddl TABLE       print the landing table, a state table and the\n"
	  "                        MERGE that keeps it current (or a\n"
	  "                        ReplacingMergeTree), then exit\n"
	  "      --dialect D       postgres (default), duckdb or clickhouse\n",
	  run_feed },
	{ "seek", "set where this region's consumer starts, from a manifest",
	  "Stores the start offsets of a manifest that xregion backfill --for\n"
	  "REGION --manifest FILE wrote in the donor region into this region's\n"
	  "xregion.offsets, where its consumer starts reading each partition.\n"
	  "Refuses a manifest for another region or topic prefix, and while\n"
	  "this region's consumer is running. Used when a region joins\n"
	  "(docs/backfill.md).\n\n"
	  "      --manifest FILE   the manifest (required)\n",
	  run_seek },
	{ "status", "is the region healthy: slot, process, lag, dead letters",
	  "Checks this region (and the region of every further -c FILE): its\n"
	  "database and slot (streamed by a producer? bytes behind the WAL),\n"
	  "how long ago its changes were last all on Kafka (the progress\n"
	  "topic), the running process's state at http://metrics_listen/status\n"
	  "(events in flight, paused partitions and why, the last error\n"
	  "logged), the consumer's lag per topic-partition (Kafka's high\n"
	  "watermark less the offset stored in xregion.offsets), the dead\n"
	  "letters not redriven and the last hour's conflicts by kind; then,\n"
	  "unless --brief, each replicated table's tombstones and hidden rows\n"
	  "and every region's progress with the tombstone purge horizon. Read\n"
	  "only. Each region is healthy, degraded (paused partitions, dead\n"
	  "letters not redriven, an error logged in the last 5 minutes, a lag\n"
	  "above the limits below) or down (database, Kafka or the process\n"
	  "unreachable, the slot missing, lost or not streamed).\n\n"
	  "Exit status, for probes: 0 healthy, 1 degraded, 2 down (the worst\n"
	  "region; a bad option or config also exits 2).\n\n"
	  "      --json            print a JSON document instead of the table\n"
	  "      --brief           leave out the tables and progress sections\n"
	  "      --max-slot-lag-mb N   degraded above N MB of WAL not confirmed\n"
	  "                        (default 256)\n"
	  "      --max-lag-events N    degraded when a partition is more than N\n"
	  "                        events behind (default 10000)\n"
	  "      --max-lag-seconds N   degraded when the region's changes are on\n"
	  "                        Kafka only up to more than N s ago (default\n"
	  "                        120)\n",
	  run_status },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* getopt_long's value for the options xr_conflicts_opts_set() takes. */
#define OPT_CONFLICTS 256
/* getopt_long's value for the options xr_backfill_opts_set() takes. */
#define OPT_BACKFILL  257
/* --manifest, of backfill and seek. */
#define OPT_MANIFEST  258
/* getopt_long's value for the options xr_replay_opts_set() takes. */
#define OPT_REPLAY    259
/* --restored, of setup. */
#define OPT_SETUP     260
/* getopt_long's value for the options xr_dlq_opts_set() takes. */
#define OPT_DLQ       261
/* getopt_long's value for the options of xregion feed alone. */
#define OPT_FEED      262
/* getopt_long's value for the options xr_status_opts_set() takes. */
#define OPT_STATUS    263

static void
usage(FILE *out)
{
	size_t i;

	fprintf(out,
	        "usage: xregion [--version] [--help] <command> [options]\n\n"
	        "Cross-region replication for PostgreSQL through Kafka.\n\n"
	        "Commands:\n");
	for (i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out,
	        "\nRun 'xregion <command> --help' for a command's options.\n"
	        "Exit status: 0 success, 1 runtime failure, 2 bad usage or "
	        "config.\n");
}

static void
command_usage(const command_t *cmd, FILE *out)
{
	fprintf(out,
	        "usage: xregion %s [-c FILE] [-l LEVEL]%s\n\n%s - %s\n\n%s\n"
	        "Options:\n"
	        "  -c, --config FILE     configuration file (default: "
	        "$XREGION_CONFIG,\n"
	        "                        else ./xregion.yaml)\n"
	        "  -l, --log-level LEVEL error, warn, info or debug (overrides "
	        "log_level)\n"
	        "  -h, --help            show this help\n\n"
	        "Environment: XREGION_POSTGRES_DSN, XREGION_KAFKA_BROKERS and\n"
	        "XREGION_KAFKA_PROP_<NAME> override the config file "
	        "(docs/configuration.md).\n",
	        cmd->name,
	        cmd->run == run_conflicts
	            ? " [--table NAME]... [--kind KIND]...\n"
	              "                 [--since WHEN] [--until WHEN] [--limit N] "
	              "[--rows]\n                 [--format text|json]"
	        : cmd->run == run_backfill
	            ? " [--table NAME]... [--for REGION]\n"
	              "                 [--rate N] [--chunk-size N] [--again] "
	              "[--no-wait]\n                 [--manifest FILE] "
	              "[--dry-run | --status | --cancel]"
	        : cmd->run == run_feed
	            ? " --out DIR|- [--format avro|jsonl]\n"
	              "                 [--codec C] [--rotate-bytes N] "
	              "[--rotate-seconds S]\n                 [--idle-flush S] "
	              "[--table NAME]... [--regions R,...]\n"
	              "                 [--start beginning|end] [--once]\n"
	              "       xregion feed [-c FILE] --ddl TABLE "
	              "[--dialect postgres|duckdb|clickhouse]"
	        : cmd->run == run_seek ? " --manifest FILE"
	        : cmd->run == run_setup ? " [--restored]"
	        : cmd->run == run_status
	            ? " [-c FILE]... [--json] [--brief]\n"
	              "                 [--max-slot-lag-mb N] [--max-lag-events N] "
	              "[--max-lag-seconds N]"
	        : cmd->run == run_dlq
	            ? " list | show PARTITION:OFFSET |\n"
	              "                 replay [--dry-run] [--max-replays N]"
	        : cmd->run == run_replay
	            ? " --from WHEN [--until WHEN]\n"
	              "                 [--source-regions R,...] [--table NAME]... "
	              "[--dry-run]"
	            : "",
	        cmd->name, cmd->summary, cmd->help);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		/* xregion conflicts only: */
		{ "table", required_argument, NULL, OPT_CONFLICTS },
		{ "kind", required_argument, NULL, OPT_CONFLICTS },
		{ "since", required_argument, NULL, OPT_CONFLICTS },
		{ "until", required_argument, NULL, OPT_CONFLICTS },
		{ "limit", required_argument, NULL, OPT_CONFLICTS },
		{ "rows", no_argument, NULL, OPT_CONFLICTS },
		{ "format", required_argument, NULL, OPT_CONFLICTS },
		/* xregion backfill only: */
		{ "tables", required_argument, NULL, OPT_BACKFILL },
		{ "for", required_argument, NULL, OPT_BACKFILL },
		{ "rate", required_argument, NULL, OPT_BACKFILL },
		{ "chunk-size", required_argument, NULL, OPT_BACKFILL },
		{ "dry-run", no_argument, NULL, OPT_BACKFILL },
		{ "status", no_argument, NULL, OPT_BACKFILL },
		{ "cancel", no_argument, NULL, OPT_BACKFILL },
		{ "no-wait", no_argument, NULL, OPT_BACKFILL },
		{ "again", no_argument, NULL, OPT_BACKFILL },
		/* xregion dlq only: */
		{ "max-replays", required_argument, NULL, OPT_DLQ },
		/* xregion setup only: */
		{ "restored", no_argument, NULL, OPT_SETUP },
		/* xregion replay only: */
		{ "from", required_argument, NULL, OPT_REPLAY },
		{ "source-regions", required_argument, NULL, OPT_REPLAY },
		/* xregion feed only: */
		{ "out", required_argument, NULL, OPT_FEED },
		{ "codec", required_argument, NULL, OPT_FEED },
		{ "rotate-bytes", required_argument, NULL, OPT_FEED },
		{ "rotate-seconds", required_argument, NULL, OPT_FEED },
		{ "idle-flush", required_argument, NULL, OPT_FEED },
		{ "max-open", required_argument, NULL, OPT_FEED },
		{ "regions", required_argument, NULL, OPT_FEED },
		{ "start", required_argument, NULL, OPT_FEED },
		{ "once", no_argument, NULL, OPT_FEED },
		{ "ddl", required_argument, NULL, OPT_FEED },
		{ "dialect", required_argument, NULL, OPT_FEED },
		/* xregion backfill and seek: */
		{ "manifest", required_argument, NULL, OPT_MANIFEST },
		/* xregion status only: */
		{ "json", no_argument, NULL, OPT_STATUS },
		{ "brief", no_argument, NULL, OPT_STATUS },
		{ "max-slot-lag-mb", required_argument, NULL, OPT_STATUS },
		{ "max-lag-events", required_argument, NULL, OPT_STATUS },
		{ "max-lag-seconds", required_argument, NULL, OPT_STATUS },
		{ NULL, 0, NULL, 0 }
	};
	const command_t *cmd = NULL;
	const char      *path = NULL, *level = NULL;
	xr_config_t     *conf;
	xr_metrics_server_t *server = NULL;
	char             err[1024];
	size_t           i;
	int              c, li = 0, lvl, rc;

	xr_conflicts_opts_init(&conflicts_opts);
	xr_backfill_opts_init(&backfill_opts);
	xr_replay_opts_init(&replay_opts);
	xr_dlq_opts_init(&dlq_opts);
	xr_feed_opts_init(&feed_opts);
	xr_status_opts_init(&status_opts);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("xregion %s (librdkafka %s, libpq %d)\n", XR_VERSION,
		       rd_kafka_version_str(), PQlibVersion());
		return 0;
	}
	for (i = 0; i < N_COMMANDS; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			cmd = &commands[i];
	if (!cmd) {
		fprintf(stderr, "xregion: unknown command \"%s\"\n\n", argv[1]);
		usage(stderr);
		return 2;
	}

	optind = 2;
	while ((c = getopt_long(argc, argv, "c:l:h", longopts, &li)) != -1) {
		switch (c) {
		case 'c':
			/* status takes several: one region each. */
			if (path && cmd->run == run_status) {
				const char **x = realloc(status_opts.extra,
				                         (status_opts.nextra + 1) *
				                         sizeof(*x));

				if (!x)
					return 2;
				status_opts.extra = x;
				x[status_opts.nextra++] = optarg;
				break;
			}
			path = optarg;
			break;
		case 'l':
			level = optarg;
			break;
		case 'h':
			command_usage(cmd, stdout);
			return 0;
		case OPT_FEED:
		case OPT_CONFLICTS:
		case OPT_BACKFILL:
		case OPT_REPLAY:
			/* Of feed: its own, and --table(s), --format, --source-regions. */
			if (cmd->run == run_feed &&
			    (c == OPT_FEED || strcmp(longopts[li].name, "table") == 0 ||
			     strcmp(longopts[li].name, "tables") == 0 ||
			     strcmp(longopts[li].name, "format") == 0 ||
			     strcmp(longopts[li].name, "source-regions") == 0)) {
				if (xr_feed_opts_set(&feed_opts, longopts[li].name, optarg,
				                     err, sizeof(err))) {
					fprintf(stderr, "xregion feed: %s\n", err);
					return 2;
				}
				break;
			}
			if (c == OPT_FEED) {
				fprintf(stderr, "xregion %s: --%s is an option of xregion "
				        "feed only\n", cmd->name, longopts[li].name);
				return 2;
			}
			if (c == OPT_REPLAY)
				goto replay_opt;
			if (c == OPT_BACKFILL)
				goto backfill_opt;
			/* --table selects the tables of backfill too. */
			if (cmd->run == run_backfill &&
			    strcmp(longopts[li].name, "table") == 0) {
				if (xr_backfill_opts_set(&backfill_opts, "table", optarg, err,
				                         sizeof(err))) {
					fprintf(stderr, "xregion backfill: %s\n", err);
					return 2;
				}
				break;
			}
			/* ... and of replay, with --until. */
			if (cmd->run == run_replay &&
			    (strcmp(longopts[li].name, "table") == 0 ||
			     strcmp(longopts[li].name, "until") == 0)) {
				if (xr_replay_opts_set(&replay_opts, longopts[li].name,
				                       optarg, err, sizeof(err))) {
					fprintf(stderr, "xregion replay: %s\n", err);
					return 2;
				}
				break;
			}
			if (cmd->run != run_conflicts) {
				fprintf(stderr, "xregion %s: --%s is an option of xregion "
				        "conflicts only\n", cmd->name, longopts[li].name);
				return 2;
			}
			if (xr_conflicts_opts_set(&conflicts_opts, longopts[li].name,
			                          optarg, err, sizeof(err))) {
				fprintf(stderr, "xregion conflicts: %s\n", err);
				return 2;
			}
			break;
		case OPT_MANIFEST:
			if (cmd->run == run_seek) {
				seek_manifest = optarg;
			} else if (cmd->run == run_backfill) {
				if (xr_backfill_opts_set(&backfill_opts, "manifest", optarg,
				                         err, sizeof(err))) {
					fprintf(stderr, "xregion backfill: %s\n", err);
					return 2;
				}
			} else {
				fprintf(stderr, "xregion %s: --manifest is an option of "
				        "xregion backfill and seek only\n", cmd->name);
				return 2;
			}
			break;
		case OPT_DLQ:
			if (cmd->run != run_dlq) {
				fprintf(stderr, "xregion %s: --%s is an option of xregion "
				        "dlq only\n", cmd->name, longopts[li].name);
				return 2;
			}
			if (xr_dlq_opts_set(&dlq_opts, longopts[li].name, optarg, err,
			                    sizeof(err))) {
				fprintf(stderr, "xregion dlq: %s\n", err);
				return 2;
			}
			break;
		case OPT_STATUS:
			if (cmd->run != run_status) {
				fprintf(stderr, "xregion %s: --%s is an option of xregion "
				        "status only\n", cmd->name, longopts[li].name);
				return 2;
			}
			if (xr_status_opts_set(&status_opts, longopts[li].name, optarg,
			                       err, sizeof(err))) {
				fprintf(stderr, "xregion status: %s\n", err);
				return 2;
			}
			break;
		case OPT_SETUP:
			if (cmd->run != run_setup) {
				fprintf(stderr, "xregion %s: --%s is an option of xregion "
				        "setup only\n", cmd->name, longopts[li].name);
				return 2;
			}
			setup_restored = true;
			break;
		replay_opt:
			if (cmd->run != run_replay) {
				fprintf(stderr, "xregion %s: --%s is an option of xregion "
				        "replay only\n", cmd->name, longopts[li].name);
				return 2;
			}
			if (xr_replay_opts_set(&replay_opts, longopts[li].name, optarg,
			                       err, sizeof(err))) {
				fprintf(stderr, "xregion replay: %s\n", err);
				return 2;
			}
			break;
		backfill_opt:
			if (cmd->run == run_dlq &&
			    strcmp(longopts[li].name, "dry-run") == 0) {
				dlq_opts.dry_run = true;
				break;
			}
			if (cmd->run == run_replay &&
			    (strcmp(longopts[li].name, "dry-run") == 0 ||
			     strcmp(longopts[li].name, "tables") == 0)) {
				if (xr_replay_opts_set(&replay_opts, longopts[li].name,
				                       optarg, err, sizeof(err))) {
					fprintf(stderr, "xregion replay: %s\n", err);
					return 2;
				}
				break;
			}
			if (cmd->run != run_backfill) {
				fprintf(stderr, "xregion %s: --%s is an option of xregion "
				        "backfill only\n", cmd->name, longopts[li].name);
				return 2;
			}
			if (xr_backfill_opts_set(&backfill_opts, longopts[li].name,
			                         optarg, err, sizeof(err))) {
				fprintf(stderr, "xregion backfill: %s\n", err);
				return 2;
			}
			break;
		default:
			command_usage(cmd, stderr);
			return 2;
		}
	}
	if (cmd->run == run_dlq) {
		if (xr_dlq_opts_args(&dlq_opts, argc - optind, argv + optind, err,
		                     sizeof(err))) {
			fprintf(stderr, "xregion dlq: %s\n", err);
			return 2;
		}
	} else if (optind < argc) {
		fprintf(stderr, "xregion %s: unexpected argument \"%s\"\n",
		        cmd->name, argv[optind]);
		return 2;
	}
	if (!path)
		path = getenv("XREGION_CONFIG");
	if (!path)
		path = "xregion.yaml";

	conf = xr_config_load(path, err, sizeof(err));
	if (!conf) {
		fprintf(stderr, "xregion: %s\n", err);
		return 2;
	}
	if (!level)
		level = conf->log_level;
	lvl = xr_log_level_parse(level);
	if (lvl < 0) {
		fprintf(stderr, "xregion: --log-level: unknown level \"%s\"\n", level);
		xr_config_destroy(conf);
		return 2;
	}
	xr_log_set_level((xr_log_level_t)lvl);
	xr_log_set_tag(conf->region);
	xr_metrics_init(&metrics, conf->region);
	if (conf->metrics_listen && (cmd->run == run_produce ||
	                             cmd->run == run_consume ||
	                             cmd->run == run_both ||
	                             (cmd->run == run_feed && !feed_opts.ddl))) {
		server = xr_metrics_server_start(conf->metrics_listen, &metrics, err,
		                                 sizeof(err));
		if (!server) {
			fprintf(stderr, "xregion: %s\n", err);
			xr_metrics_term(&metrics);
			xr_config_destroy(conf);
			return 2;
		}
		xr_info("metrics at http://%s/metrics (state at /status)",
		        conf->metrics_listen);
	}
	rc = cmd->run(conf);
	xr_metrics_server_stop(server);
	xr_metrics_term(&metrics);
	xr_config_destroy(conf);
	xr_conflicts_opts_term(&conflicts_opts);
	xr_backfill_opts_term(&backfill_opts);
	xr_replay_opts_term(&replay_opts);
	xr_feed_opts_term(&feed_opts);
	xr_status_opts_term(&status_opts);
	return rc;
}
