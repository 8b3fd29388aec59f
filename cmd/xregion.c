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
#include "common/metrics.h"
#include "common/version.h"
#include "consumer/conflicts.h"
#include "consumer/status.h"
#include "consumer/consume.h"
#include "consumer/meta.h"
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

static int
run_setup(const xr_config_t *conf)
{
	int rc = xr_setup_run(conf);

	return rc ? rc : xr_meta_setup(conf);
}

static int
run_teardown(const xr_config_t *conf)
{
	int rc = xr_teardown_run(conf);

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
run_status(const xr_config_t *conf)
{
	char err[1024];

	if (xr_status_run(conf, stdout, err, sizeof(err))) {
		fprintf(stderr, "xregion status: %s\n", err);
		return 1;
	}
	return 0;
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
	  "replication origin per source region.\n",
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
	  "Subscribes to the change topics of every other region, decodes their\n"
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
	{ "status", "show tombstones, hidden rows and every region's progress",
	  "Prints, for each table this region replicates, its tombstones and\n"
	  "live versions entries, the size of its versions table, the rows\n"
	  "hidden by unique key conflicts and the oldest tombstone; then what\n"
	  "every region has published and applied of every other region (the\n"
	  "progress topic) and the tombstone purge horizon: tombstones older\n"
	  "than it (and than consumer.tombstone_retention_hours) are purged;\n"
	  "while a region has no record yet, none is. Read only; exits 1 if the\n"
	  "database cannot be reached or has no schema xregion.\n",
	  run_status },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* getopt_long's value for the options xr_conflicts_opts_set() takes. */
#define OPT_CONFLICTS 256

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
			path = optarg;
			break;
		case 'l':
			level = optarg;
			break;
		case 'h':
			command_usage(cmd, stdout);
			return 0;
		case OPT_CONFLICTS:
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
		default:
			command_usage(cmd, stderr);
			return 2;
		}
	}
	if (optind < argc) {
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
	                             cmd->run == run_both)) {
		server = xr_metrics_server_start(conf->metrics_listen, &metrics, err,
		                                 sizeof(err));
		if (!server) {
			fprintf(stderr, "xregion: %s\n", err);
			xr_config_destroy(conf);
			return 2;
		}
		xr_info("metrics at http://%s/metrics", conf->metrics_listen);
	}
	rc = cmd->run(conf);
	xr_metrics_server_stop(server);
	xr_config_destroy(conf);
	xr_conflicts_opts_term(&conflicts_opts);
	return rc;
}
