/*
 * consume.c: the consumer's loop: Kafka in, batches of decoded events out
 * to the applier, poison to the dead-letter topic.
 */
#include "consumer/consume.h"

#include <errno.h>
#include <inttypes.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "common/kafka_conf.h"
#include "common/log.h"
#include "common/lsn.h"
#include "common/mem.h"
#include "consumer/apply.h"
#include "consumer/event.h"
#include "consumer/lease.h"
#include "consumer/plan.h"
#include "consumer/progress.h"
#include "consumer/registry.h"
#include "consumer/ahead.h"
#include "consumer/txq.h"

/* One message of a batch. */
typedef struct msgrec_s {
	rd_kafka_message_t *m;
	xr_event_t          ev;
	char                region[64];   /* from the topic name */
	enum { REC_APPLY, REC_POISON, REC_DROP, REC_SKIP } kind;
	char                reason[512];
	bool                refused;      /* a replay counted it not applied */
	char                otopic[256];  /* redrive: the topic it came from */
	int                 replays;      /* redrive: its xr-dlq-replays */
	bool                pre_skip;     /* atomic: the assembler says skip */
} msgrec_t;

/* A source region's state in atomic apply (by txq region index). */
typedef struct atom_region_s {
	int64_t  blocked_until;   /* no take before then (µs, monotonic) */
	int      backoff_ms;
	char     reason[512];     /* why it is blocked, "" if not */
	char     nspname[128], relname[128];  /* a drift's table */
	bool     piece_commits;   /* its large transaction goes in pieces that
	                             each commit (it failed whole on the data) */
	int64_t  waiting_since;   /* its next transaction waits since (µs) */
	int64_t  waiting_logged;
	bool     rewind_due;      /* a seek failed: rewind before a take */
} atom_region_t;

/* A partition paused because its events name a column missing here. */
typedef struct paused_s {
	char    *topic;
	int32_t  partition;
	int64_t  offset;       /* where to resume */
	char    *nspname, *relname;
	int64_t  recheck_us;
	bool     retried;      /* resumed at least once: log quietly */
	char    *why;          /* for /status */
} paused_t;

static void
paused_free(paused_t *p)
{
	free(p->topic);
	free(p->nspname);
	free(p->relname);
	free(p->why);
}

typedef struct consumer_s {
	const xr_config_t     *conf;
	xr_metrics_t          *metrics;   /* may be NULL */
	atomic_int *stop;
	rd_kafka_t    *rk;         /* consumer (partitions assigned by lease) */
	rd_kafka_queue_t *cq;      /* its queue: what is fetched, not polled */
	rd_kafka_t    *dlq;        /* dead-letter producer */
	xr_registry_t *reg;
	xr_applier_t  *ap;
	xr_ahead_t    *ahead;      /* atomic: decodes the next piece; or NULL */
	rd_kafka_message_t **peek; /* batch_size: the next piece's messages */
	msgrec_t      *recs;
	size_t         nrecs;
	paused_t      *paused;
	size_t         npaused;
	bool           paused_dirty;  /* changed since /status last had it */
	char         **warned;     /* tables logged once as not applicable */
	size_t         nwarned;
	int            dlq_failed;
	uint64_t       dlq_fail_at;  /* tests: XREGION_TEST_DLQ_FATAL */
	volatile sig_atomic_t fatal;   /* librdkafka gave up: stop, exit 1 */
	/*
	 * Partitions assigned while their stored offsets could not be read:
	 * paused, their messages dropped, until the main loop reads the
	 * offsets and seeks them there (the rebalance callback never waits).
	 */
	rd_kafka_topic_partition_list_t *pending;
	int64_t        pending_retry_us;
	int            pending_backoff;
	/* Progress. */
	uint64_t       consumed, poisoned;
	uint64_t       last_consumed, last_applied;
	int64_t        last_progress_us, last_purge_us, last_unhide_us;
	/* Progress records and the purge horizon (progress.h). */
	xr_sharer_t   *sharer;
	int64_t        last_stats_us;
	bool           purge_said;
	/* A replay (replay.h): its range, what is left of it, its counts. */
	xr_replay_part_t  *parts;     /* NULL: the long-running consumer */
	size_t             nparts, nopen;
	bool               dry_run;
	xr_replay_tally_t *tally;
	bool               redrive;   /* the parts are the dead-letter topic's */
	int                max_replays;
	/* Atomic apply (consumer.apply_mode atomic; txq.h). */
	bool               atomic;
	xr_txq_t          *txq;
	xr_txq_out_t      *outs;      /* batch_size */
	atom_region_t     *atom;      /* by txq region */
	size_t             natom;
	size_t             rr;        /* the region to look at first */
	bool               revoked;   /* partitions were revoked meanwhile */
	bool               drifted;   /* classify found a missing column */
	char               drift[512];
	char               drift_nsp[128], drift_rel[128];
	bool               no_half_offsets; /* halves store no offsets */
	/*
	 * Leases (lease.h): the source regions, which of them have their
	 * partitions assigned here, and which topics are a region's.
	 */
	const char       **sources;
	size_t             nsources;
	bool              *had;       /* by source: its partitions assigned */
	regex_t            topics_re;
	bool               topics_re_ok;
	rd_kafka_topic_partition_list_t *assigned;   /* sorted; or NULL */
	int64_t            next_lease_us, next_meta_us;
	int                members;
	unsigned long      session;   /* the applier's, when last assigned */
	size_t             spread;    /* where this one starts taking */
} consumer_t;

static void
sleep_ms(consumer_t *c, int ms)
{
	int waited;

	for (waited = 0; waited < ms && !*c->stop; waited += 100)
		usleep(100 * 1000);
}

/* The region part of <prefix>.<region>.<schema>.<table>, into out. */
static int
topic_region(const consumer_t *c, const char *topic, char *out, size_t size)
{
	size_t      plen = strlen(c->conf->topic_prefix);
	const char *r, *dot;

	if (strncmp(topic, c->conf->topic_prefix, plen) != 0 || topic[plen] != '.')
		return -1;
	r = topic + plen + 1;
	dot = strchr(r, '.');
	if (!dot || (size_t)(dot - r) >= size)
		return -1;
	memcpy(out, r, (size_t)(dot - r));
	out[dot - r] = '\0';
	return 0;
}

/*
 * Sets each partition of parts to the offset stored with the rows it
 * applied (or the beginning: a new region replays all history).  Returns
 * 0, or -1 with errstr when the database could not be asked.
 */
static int
stored_offsets(consumer_t *c, rd_kafka_topic_partition_list_t *parts,
               char *errstr, size_t errstr_size)
{
	const char **topics = calloc((size_t)parts->cnt + 1, sizeof(char *));
	int32_t     *pn = calloc((size_t)parts->cnt + 1, sizeof(int32_t));
	int64_t     *offs = calloc((size_t)parts->cnt + 1, sizeof(int64_t));
	int          i, rc = -1;

	if (!topics || !pn || !offs) {
		snprintf(errstr, errstr_size, "out of memory");
		goto out;
	}
	for (i = 0; i < parts->cnt; i++) {
		topics[i] = parts->elems[i].topic;
		pn[i] = parts->elems[i].partition;
	}
	if ((!xr_applier_connected(c->ap) &&
	     xr_applier_connect(c->ap, errstr, errstr_size)) ||
	    xr_applier_load_offsets(c->ap, topics, pn, (size_t)parts->cnt, offs,
	                            errstr, errstr_size))
		goto out;
	for (i = 0; i < parts->cnt; i++)
		parts->elems[i].offset = offs[i] >= 0 ? offs[i]
		                                      : RD_KAFKA_OFFSET_BEGINNING;
	rc = 0;
out:
	free(topics);
	free(pn);
	free(offs);
	return rc;
}

static void
log_assigned(const rd_kafka_topic_partition_list_t *parts)
{
	int i;

	for (i = 0; i < parts->cnt; i++)
		xr_info("assigned %s [%d] from offset %s%" PRId64,
		        parts->elems[i].topic, (int)parts->elems[i].partition,
		        parts->elems[i].offset < 0 ? "(beginning) " : "",
		        parts->elems[i].offset < 0 ? (int64_t)0
		                                   : parts->elems[i].offset);
}

/* Whether the message's partition is in parts. */
static bool
in_list(const rd_kafka_topic_partition_list_t *parts,
        const rd_kafka_message_t *m)
{
	return parts &&
	       rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt),
	                                          m->partition) != NULL;
}

/*
 * Drops the records of the batch being filled that belong to parts
 * (revoked: another consumer, or this one after the next assignment,
 * applies them from the stored offsets).
 */
static void
drop_records(consumer_t *c, const rd_kafka_topic_partition_list_t *parts)
{
	size_t i, k = 0;

	for (i = 0; i < c->nrecs; i++) {
		if (in_list(parts, c->recs[i].m)) {
			rd_kafka_message_destroy(c->recs[i].m);
			c->recs[i].m = NULL;
			c->consumed--;
			continue;
		}
		c->recs[k++].m = c->recs[i].m;
	}
	c->nrecs = k;
}

/* Tells the assembler where assigned partitions start. */
static void
txq_assign(consumer_t *c, const rd_kafka_topic_partition_list_t *parts)
{
	int i;

	for (i = 0; c->txq && i < parts->cnt; i++)
		xr_txq_assign(c->txq, parts->elems[i].topic,
		              parts->elems[i].partition, parts->elems[i].offset);
}

/*
 * Takes parts away from this consumer: the batch being filled forgets
 * their records, the assembler all it holds (the partitions still assigned
 * are read again from their stored offsets), and nothing stays paused.
 */
static void
revoke_parts(consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
	size_t k;

	for (k = 0; k < c->npaused; k++)
		paused_free(&c->paused[k]);
	c->npaused = 0;
	c->paused_dirty = true;
	drop_records(c, parts);
	/*
	 * librdkafka keeps our pause of a partition across unassign and
	 * assign: resume them all, or a reassigned one never delivers.
	 */
	(void)rd_kafka_resume_partitions(c->rk, parts);
	if (c->txq) {
		xr_ahead_clear(c->ahead);
		xr_txq_clear(c->txq);
		free(c->atom);
		c->atom = NULL;
		c->natom = 0;
		c->revoked = true;
	}
	if (c->pending)
		rd_kafka_topic_partition_list_destroy(c->pending);
	c->pending = NULL;
	(void)rd_kafka_assign(c->rk, NULL);
}

/*
 * Assigns parts, each at its stored offset.  When those cannot be read
 * now, the partitions are assigned paused and the main loop tries again
 * (retry_pending).  Sets the offsets of parts.
 */
static void
assign_parts(consumer_t *c, rd_kafka_topic_partition_list_t *parts)
{
	rd_kafka_resp_err_t err;
	char                errstr[512];

	if (stored_offsets(c, parts, errstr, sizeof(errstr)) == 0) {
		log_assigned(parts);
		txq_assign(c, parts);
		err = rd_kafka_assign(c->rk, parts);
		if (err)
			xr_error("kafka: assign: %s", rd_kafka_err2str(err));
		return;
	}
	xr_error("reading stored offsets: %s; partitions held until they can be "
	         "read", errstr);
	if (c->pending)
		rd_kafka_topic_partition_list_destroy(c->pending);
	c->pending = rd_kafka_topic_partition_list_copy(parts);
	c->pending_backoff = 500;
	c->pending_retry_us = xr_mono_us() + 500 * 1000;
	err = rd_kafka_assign(c->rk, parts);
	if (err)
		xr_error("kafka: assign: %s", rd_kafka_err2str(err));
	(void)rd_kafka_pause_partitions(c->rk, parts);
}

/*
 * The version time of an lww write the hybrid clock moved past its commit
 * time travels in header xr-version-ts (decimal µs since the Unix epoch):
 * it replaces ev->commit_ts as the version's time.  Returns 0, or -1 with
 * reason (a malformed header).
 */
static int
version_ts(const rd_kafka_message_t *m, xr_event_t *ev, char *reason,
           size_t reason_size)
{
	rd_kafka_headers_t *hdrs;
	const void         *hv;
	size_t              hlen;
	char                buf[24], *end;
	long long           v;

	if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_get_last(hdrs, "xr-version-ts", &hv, &hlen) !=
	        RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	if (!hv || hlen == 0 || hlen >= sizeof(buf))
		goto bad;
	memcpy(buf, hv, hlen);
	buf[hlen] = '\0';
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno || *end || v <= 0)
		goto bad;
	ev->commit_ts = (int64_t)v;
	return 0;
bad:
	snprintf(reason, reason_size, "header xr-version-ts is not a time in "
	         "microseconds");
	return -1;
}

/*
 * Reads the stored offsets of partitions assigned while the database could
 * not be asked, then seeks them there and resumes them; with backoff.
 */
static void
retry_pending(consumer_t *c)
{
	rd_kafka_error_t *kerr;
	char              errstr[512];

	if (!c->pending || xr_mono_us() < c->pending_retry_us)
		return;
	if (stored_offsets(c, c->pending, errstr, sizeof(errstr))) {
		xr_error("reading stored offsets: %s; retrying in %d ms", errstr,
		         c->pending_backoff);
		c->pending_retry_us = xr_mono_us() + (int64_t)c->pending_backoff * 1000;
		c->pending_backoff = c->pending_backoff * 2 >
		                     c->conf->reconnect_backoff_max_ms
		                     ? c->conf->reconnect_backoff_max_ms
		                     : c->pending_backoff * 2;
		return;
	}
	log_assigned(c->pending);
	txq_assign(c, c->pending);
	kerr = rd_kafka_seek_partitions(c->rk, c->pending, 10000);
	if (kerr) {
		xr_error("kafka: seek: %s", rd_kafka_error_string(kerr));
		rd_kafka_error_destroy(kerr);
		c->pending_retry_us = xr_mono_us() + (int64_t)c->pending_backoff * 1000;
		return;
	}
	(void)rd_kafka_resume_partitions(c->rk, c->pending);
	rd_kafka_topic_partition_list_destroy(c->pending);
	c->pending = NULL;
}

static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	consumer_t *c = opaque;
	char        why[1024];

	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		(void)rd_kafka_fatal_error(rk, why, sizeof(why));
		if (rk == c->dlq && xr_kafka_fatal_renewable(rk)) {
			/* dlq_renew() replaces it before the next dead letter. */
			xr_error("kafka: fatal error of the dead-letter producer: "
			         "%s; a new one replaces it", why);
			return;
		}
		xr_error("kafka: fatal: %s; the consumer stops", why);
		c->fatal = 1;
		return;
	}
	if (xr_kafka_refused(err, reason, why, sizeof(why))) {
		if (!c->fatal)
			xr_error("%s; the consumer stops", why);
		c->fatal = 1;
		return;
	}
	xr_warn("kafka: %s (%s); librdkafka retries with backoff", reason,
	        rd_kafka_err2name((rd_kafka_resp_err_t)err));
}

static void
dlq_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	consumer_t *c = opaque;

	(void)rk;
	if (m->err) {
		xr_error("dead-letter topic: delivery failed: %s",
		         rd_kafka_err2str(m->err));
		c->dlq_failed = 1;
	}
}

static int replay_init(consumer_t *c, char *errstr, size_t errstr_size);

/* Creates c->dlq, the dead-letter producer.  Returns 0, or -1 with errstr. */
static int
dlq_new(consumer_t *c, char *errstr, size_t errstr_size)
{
	c->dlq = xr_kafka_dlq_new(c->conf, "xregion-dead-letters", dlq_dr_cb,
	                          error_cb, c, errstr, errstr_size);
	return c->dlq ? 0 : -1;
}

/*
 * If the dead-letter producer has a fatal error that a new handle mends
 * (xr_kafka_fatal_renewable), replaces it: what it held is dropped, and
 * the batch that needed it fails at its dlq_flush and is retried (its
 * offsets are not stored), its letters sent again.
 * Returns 0, or -1 (logged, c->fatal set) when no new one can be made.
 */
static int
dlq_renew(consumer_t *c)
{
	char err[512];

	if (!c->dlq || !xr_kafka_fatal_renewable(c->dlq))
		return 0;
	xr_warn("kafka: replacing the dead-letter producer");
	xr_kafka_drop(c->dlq);
	c->dlq = NULL;
	/*
	 * The batch's letters the old handle held may be lost, their reports
	 * not all served: the batch fails at its flush and is retried whole.
	 */
	c->dlq_failed = 1;
	if (dlq_new(c, err, sizeof(err))) {
		xr_error("kafka: dead-letter producer: %s; the consumer stops", err);
		c->fatal = 1;
		return -1;
	}
	return 0;
}

static int
consumer_init(consumer_t *c, char *errstr, size_t errstr_size)
{
	static const char *const locked[] = {
		"enable.auto.commit", "false",  /* offsets live in the database */
		NULL
	};
	char        replay_group[160];
	const char *defaults[] = {
		"client.id", c->parts ? "xregion-replay" : "xregion-consumer",
		/*
		 * Partitions are assigned by this consumer itself (by lease,
		 * lease.h; a replay: its range) and no offset is committed: the
		 * group only names the client to the brokers.
		 */
		"group.id", c->parts ? replay_group : c->conf->group_id,
		"auto.offset.reset", "earliest",
		"enable.auto.offset.store", "false",
		NULL
	};
	rd_kafka_conf_t *kc;
	xr_buf_t         pattern;
	size_t           i, n = 0;
	int              rc;

	snprintf(replay_group, sizeof(replay_group), "xregion-replay-%s-%ld",
	         c->conf->region, (long)getpid());
	if (dlq_new(c, errstr, errstr_size))
		return -1;
	if (getenv("XREGION_TEST_DLQ_FATAL"))
		c->dlq_fail_at = strtoull(getenv("XREGION_TEST_DLQ_FATAL"), NULL, 10);
	kc = xr_kafka_conf_new(c->conf, defaults, locked, errstr, errstr_size);
	if (!kc)
		return -1;
	rd_kafka_conf_set_opaque(kc, c);
	rd_kafka_conf_set_error_cb(kc, error_cb);
	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, errstr_size);
	if (!c->rk) {
		rd_kafka_conf_destroy(kc);
		return -1;
	}
	rd_kafka_poll_set_consumer(c->rk);
	c->cq = rd_kafka_queue_get_consumer(c->rk);
	if (c->parts)
		return replay_init(c, errstr, errstr_size);

	/* ^<prefix>\.(r1|r2)\.[^.]+\.[^.]+$ : every region but ours. */
	xr_buf_init(&pattern);
	xr_buf_putc(&pattern, '^');
	for (i = 0; c->conf->topic_prefix[i]; i++) {
		if (strchr(".-", c->conf->topic_prefix[i]))
			xr_buf_putc(&pattern, '\\');
		xr_buf_putc(&pattern, c->conf->topic_prefix[i]);
	}
	xr_buf_puts(&pattern, "\\.(");
	for (i = 0; i < c->conf->n_regions; i++) {
		if (strcmp(c->conf->regions[i], c->conf->region) == 0)
			continue;
		xr_buf_printf(&pattern, "%s%s", n++ ? "|" : "", c->conf->regions[i]);
	}
	/* Atomic apply also reads their transactions topics. */
	xr_buf_puts(&pattern, c->atomic ? ")\\.([^.]+\\.[^.]+|_tx)$"
	                                : ")\\.[^.]+\\.[^.]+$");
	if (n == 0) {
		snprintf(errstr, errstr_size,
		         "regions lists no region but %s: nothing to consume",
		         c->conf->region);
		xr_buf_term(&pattern);
		return -1;
	}
	rc = regcomp(&c->topics_re, pattern.data, REG_EXTENDED | REG_NOSUB);
	if (rc) {
		char why[256];

		(void)regerror(rc, &c->topics_re, why, sizeof(why));
		snprintf(errstr, errstr_size, "topic pattern %s: %s", pattern.data, why);
		xr_buf_term(&pattern);
		return -1;
	}
	c->topics_re_ok = true;
	c->sources = xr_calloc(c->conf->n_regions, sizeof(*c->sources));
	c->had = xr_calloc(c->conf->n_regions, sizeof(*c->had));
	for (i = 0; i < c->conf->n_regions; i++)
		if (strcmp(c->conf->regions[i], c->conf->region) != 0)
			c->sources[c->nsources++] = c->conf->regions[i];
	/* Apply only the source regions whose lease the session holds. */
	xr_applier_fence(c->ap);
	/* (In containers every process may be pid 1: the clock differs.) */
	c->spread = (size_t)getpid() + (size_t)(xr_mono_us() / 1000);
	xr_info("subscribed to %s as group %s: source regions are shared with "
	        "the region's other consumers by lease", pattern.data,
	        c->conf->group_id);
	xr_buf_term(&pattern);
	c->reg = xr_registry_new(c->conf, errstr, errstr_size);
	if (!c->reg)
		return -1;
	c->recs = calloc((size_t)c->conf->batch_size, sizeof(*c->recs));
	if (!c->recs) {
		snprintf(errstr, errstr_size, "out of memory");
		return -1;
	}
	for (i = 0; i < (size_t)c->conf->batch_size; i++)
		xr_event_init(&c->recs[i].ev);
	if (c->atomic) {
		/*
		 * A queue holds eight batches: a transaction of a batch fits, and
		 * a large one streams without waiting on refetches (a paused
		 * partition loses what librdkafka had fetched for it).
		 */
		c->txq = xr_txq_new(c->conf, 8 * (size_t)c->conf->batch_size);
		c->ahead = xr_ahead_new(c->reg, (size_t)c->conf->batch_size, errstr,
		                        errstr_size);
		if (!c->ahead)
			xr_warn("decoding ahead is off (%s): large transactions are "
			        "decoded and applied by turns", errstr);
		c->peek = xr_calloc((size_t)c->conf->batch_size, sizeof(*c->peek));
		c->outs = xr_calloc((size_t)c->conf->batch_size, sizeof(*c->outs));
	}
	c->sharer = xr_sharer_start(c->conf, errstr, errstr_size);
	return c->sharer ? 0 : -1;
}

/*
 * The rest of consumer_init for a replay: assigns the partitions of its
 * range that are not empty, each at its start.
 */
static int
replay_init(consumer_t *c, char *errstr, size_t errstr_size)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	size_t i;

	l = rd_kafka_topic_partition_list_new((int)c->nparts + 1);
	c->nopen = 0;
	for (i = 0; i < c->nparts; i++) {
		c->parts[i].done = c->parts[i].start >= c->parts[i].end;
		if (c->parts[i].done)
			continue;
		rd_kafka_topic_partition_list_add(l, c->parts[i].topic,
		                                  c->parts[i].partition)->offset =
			c->parts[i].start;
		c->nopen++;
	}
	err = rd_kafka_assign(c->rk, l);
	rd_kafka_topic_partition_list_destroy(l);
	if (err) {
		snprintf(errstr, errstr_size, "kafka: assign: %s",
		         rd_kafka_err2str(err));
		return -1;
	}
	c->reg = xr_registry_new(c->conf, errstr, errstr_size);
	if (!c->reg)
		return -1;
	c->recs = xr_calloc((size_t)c->conf->batch_size, sizeof(*c->recs));
	for (i = 0; i < (size_t)c->conf->batch_size; i++)
		xr_event_init(&c->recs[i].ev);
	return 0;
}

/*
 * A replay's message m: whether it is inside the range (else it is
 * dropped); marks its partition done at the range's last message.
 */
static bool
replay_keep(consumer_t *c, const rd_kafka_message_t *m)
{
	const char *topic = rd_kafka_topic_name(m->rkt);
	size_t      i;

	for (i = 0; i < c->nparts; i++) {
		xr_replay_part_t *p = &c->parts[i];

		if (p->partition != m->partition || strcmp(p->topic, topic) != 0)
			continue;
		if (p->done)
			return false;
		if (m->offset >= p->end) {
			/* Past the end: the last message of the range is gone. */
			p->done = true;
			c->nopen--;
			return false;
		}
		if (m->offset + 1 >= p->end) {
			p->done = true;
			c->nopen--;
		}
		return m->offset >= p->start;
	}
	return false;
}

static void
consumer_term(consumer_t *c)
{
	size_t i;

	if (c->cq)
		rd_kafka_queue_destroy(c->cq);
	if (c->rk) {
		(void)rd_kafka_consumer_close(c->rk);
		/* Messages held keep rd_kafka_destroy waiting. */
		if (c->txq)
			xr_txq_clear(c->txq);
		rd_kafka_destroy(c->rk);
	}
	if (c->dlq) {
		if (rd_kafka_flush(c->dlq, c->conf->flush_timeout_ms))
			xr_warn("dead-letter topic: messages not acknowledged at exit");
		rd_kafka_destroy(c->dlq);
	}
	if (c->pending)
		rd_kafka_topic_partition_list_destroy(c->pending);
	if (c->assigned)
		rd_kafka_topic_partition_list_destroy(c->assigned);
	if (c->topics_re_ok)
		regfree(&c->topics_re);
	free(c->sources);
	free(c->had);
	xr_sharer_stop(c->sharer);
	xr_ahead_destroy(c->ahead);
	free(c->peek);
	xr_txq_destroy(c->txq);
	free(c->outs);
	free(c->atom);
	xr_registry_destroy(c->reg);
	for (i = 0; c->recs && i < (size_t)c->conf->batch_size; i++)
		xr_event_term(&c->recs[i].ev);
	free(c->recs);
	for (i = 0; i < c->npaused; i++)
		paused_free(&c->paused[i]);
	free(c->paused);
	for (i = 0; i < c->nwarned; i++)
		free(c->warned[i]);
	free(c->warned);
}

static bool
is_paused(const consumer_t *c, const char *topic, int32_t partition)
{
	size_t i;

	for (i = 0; i < c->npaused; i++)
		if (c->paused[i].partition == partition &&
		    strcmp(c->paused[i].topic, topic) == 0)
			return true;
	return false;
}

static void
seek(consumer_t *c, const char *topic, int32_t partition, int64_t offset)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_error_t *e;

	rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
	e = rd_kafka_seek_partitions(c->rk, l, 10000);
	if (e) {
		xr_error("kafka: seek %s [%d] to %" PRId64 ": %s", topic,
		         (int)partition, offset, rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	}
	rd_kafka_topic_partition_list_destroy(l);
}

static void
pause_partition(consumer_t *c, msgrec_t *r, const char *why)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	const char *topic = rd_kafka_topic_name(r->m->rkt);
	paused_t   *p;
	size_t      i;
	bool        retried = false;

	rd_kafka_topic_partition_list_add(l, topic, r->m->partition);
	(void)rd_kafka_pause_partitions(c->rk, l);
	rd_kafka_topic_partition_list_destroy(l);
	for (i = 0; i < c->npaused; i++)
		if (c->paused[i].partition == r->m->partition &&
		    strcmp(c->paused[i].topic, topic) == 0)
			return;
	/* Was it paused for the same reason before this retry? */
	p = realloc(c->paused, (c->npaused + 1) * sizeof(*p));
	if (!p)
		return;
	c->paused = p;
	p = &c->paused[c->npaused++];
	p->topic = strdup(topic);
	p->partition = r->m->partition;
	p->offset = r->m->offset;
	p->nspname = strdup(r->ev.nspname);
	p->relname = strdup(r->ev.relname);
	p->recheck_us = xr_mono_us() + (int64_t)c->conf->drift_recheck_ms * 1000;
	p->retried = retried;
	p->why = strdup(why);
	c->paused_dirty = true;
	xr_error("%s; pausing %s [%d] at offset %" PRId64 " until the column "
	         "exists here (rechecked every %d ms)", why, topic,
	         (int)r->m->partition, r->m->offset, c->conf->drift_recheck_ms);
}

/* Resumes paused partitions whose recheck time has come. */
static void
recheck_paused(consumer_t *c)
{
	int64_t now = xr_mono_us();
	size_t  i = 0;

	while (i < c->npaused) {
		paused_t *p = &c->paused[i];
		rd_kafka_topic_partition_list_t *l;

		if (p->recheck_us > now) {
			i++;
			continue;
		}
		/* Forget the catalog facts: the table may have changed. */
		xr_applier_forget(c->ap, p->nspname, p->relname);
		l = rd_kafka_topic_partition_list_new(1);
		rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
		(void)rd_kafka_resume_partitions(c->rk, l);
		rd_kafka_topic_partition_list_destroy(l);
		seek(c, p->topic, p->partition, p->offset);
		xr_debug("rechecking %s [%d]", p->topic, (int)p->partition);
		paused_free(p);
		c->paused[i] = c->paused[--c->npaused];
		c->paused_dirty = true;
	}
}

/* Logs once per table that its events are not applied here. */
static void
warn_once(consumer_t *c, const char *nsp, const char *rel, const char *why)
{
	char   name[300];
	size_t i;
	char **w;

	snprintf(name, sizeof(name), "%s.%s", nsp, rel);
	for (i = 0; i < c->nwarned; i++)
		if (strcmp(c->warned[i], name) == 0)
			return;
	w = realloc(c->warned, (c->nwarned + 1) * sizeof(*w));
	if (!w)
		return;
	c->warned = w;
	c->warned[c->nwarned++] = strdup(name);
	xr_warn("table %s: %s; its events go to %s", name, why,
	        c->conf->dead_letter_topic);
}

/* The tally entry of r's table. */
static xr_replay_table_t *
replay_table(consumer_t *c, const msgrec_t *r)
{
	char name[260];

	const char *topic = c->redrive ? r->otopic
	                               : rd_kafka_topic_name(r->m->rkt), *p;

	if (r->ev.nspname[0]) {
		snprintf(name, sizeof(name), "%s.%s", r->ev.nspname, r->ev.relname);
	} else {
		/* Not decoded: the table as the topic names it. */
		p = strchr(topic, '.');
		p = p ? strchr(p + 1, '.') : NULL;
		snprintf(name, sizeof(name), "%s", p ? p + 1 : topic);
	}
	return xr_replay_tally_get(c->tally, name);
}

/* A replay counts what it cannot apply (the consumer dead-lettered it). */
static int
replay_refused(consumer_t *c, const rd_kafka_message_t *m, const char *reason)
{
	size_t i;

	for (i = 0; i < c->nrecs; i++) {
		if (c->recs[i].m != m)
			continue;
		if (!c->recs[i].refused) {
			c->recs[i].refused = true;
			replay_table(c, &c->recs[i])->refused++;
		}
		break;
	}
	c->poisoned++;
	xr_warn("replay: not applied: %s [%d] offset %" PRId64 ": %s",
	        rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset, reason);
	return 0;
}

/* Counts the outcomes of a replay's applied items. */
static void
replay_count(consumer_t *c, const xr_apply_item_t *items, size_t n)
{
	size_t i;

	for (i = 0; c->parts && i < n; i++) {
		msgrec_t          *r = items[i].opaque;
		xr_replay_table_t *t;

		if (r->refused || items[i].resolution == XR_RES_DEAD_LETTER)
			continue;
		t = replay_table(c, r);
		if (items[i].resolution == XR_RES_APPLIED)
			t->applied++;
		else
			t->skipped++;
		if (items[i].conflict != XR_CONFLICT_NONE)
			t->conflicts++;
	}
}

/* Produces one message to the dead-letter topic with its reason. */
static int
dead_letter(consumer_t *c, const rd_kafka_message_t *m, const char *reason)
{
	rd_kafka_headers_t *src = NULL, *h;
	rd_kafka_resp_err_t err;
	char                part[16], off[32];

	if (c->parts && (!c->redrive || c->dry_run))
		return replay_refused(c, m, reason);
	if (dlq_renew(c))
		return -1;
	if (rd_kafka_message_headers(m, &src) == RD_KAFKA_RESP_ERR_NO_ERROR && src)
		h = rd_kafka_headers_copy(src);
	else
		h = rd_kafka_headers_new(5);
	if (c->redrive) {
		/* Back where it was, as it was, with the new reason and count. */
		const msgrec_t *r = NULL;
		size_t          i;

		for (i = 0; i < c->nrecs; i++)
			if (c->recs[i].m == m)
				r = &c->recs[i];
		(void)replay_refused(c, m, reason);
		c->poisoned--;   /* counted below */
		(void)rd_kafka_header_remove(h, "xr-dlq-reason");
		(void)rd_kafka_header_remove(h, "xr-dlq-replays");
		snprintf(part, sizeof(part), "%d", r ? r->replays + 1 : 1);
		(void)rd_kafka_header_add(h, "xr-dlq-reason", -1, reason, -1);
		(void)rd_kafka_header_add(h, "xr-dlq-replays", -1, part, -1);
	} else {
		snprintf(part, sizeof(part), "%d", (int)m->partition);
		snprintf(off, sizeof(off), "%" PRId64, m->offset);
		(void)rd_kafka_header_add(h, "xr-dlq-reason", -1, reason, -1);
		(void)rd_kafka_header_add(h, "xr-dlq-topic", -1,
		                          rd_kafka_topic_name(m->rkt), -1);
		(void)rd_kafka_header_add(h, "xr-dlq-partition", -1, part, -1);
		(void)rd_kafka_header_add(h, "xr-dlq-offset", -1, off, -1);
		(void)rd_kafka_header_add(h, "xr-dlq-region", -1, c->conf->region,
		                          -1);
	}
	for (;;) {
		err = rd_kafka_producev(c->dlq,
		                        RD_KAFKA_V_TOPIC(c->conf->dead_letter_topic),
		                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		                        RD_KAFKA_V_KEY(m->key, m->key_len),
		                        RD_KAFKA_V_VALUE(m->payload, m->len),
		                        RD_KAFKA_V_HEADERS(h),
		                        RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || *c->stop)
			break;
		rd_kafka_poll(c->dlq, 100);
	}
	if (err) {
		rd_kafka_headers_destroy(h);
		xr_error("dead-letter topic %s: %s", c->conf->dead_letter_topic,
		         rd_kafka_err2str(err));
		return -1;
	}
	c->poisoned++;
	/*
	 * Tests only: XREGION_TEST_DLQ_FATAL=N raises, at the Nth dead
	 * letter, the fatal error a partition leader change raises in
	 * librdkafka before 2.3 (see dlq_renew).
	 */
	if (c->dlq_fail_at && c->poisoned == c->dlq_fail_at)
		(void)rd_kafka_test_fatal_error(
		    c->dlq, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
		    "XREGION_TEST_DLQ_FATAL");
	xr_warn("dead-lettered %s [%d] offset %" PRId64 ": %s",
	        rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset, reason);
	return 0;
}

/* Waits until every dead letter is acknowledged. */
static int
dlq_flush(consumer_t *c)
{
	if (c->parts && (!c->redrive || c->dry_run))
		return 0;
	if (rd_kafka_flush(c->dlq, c->conf->flush_timeout_ms) != 0 ||
	    c->dlq_failed) {
		c->dlq_failed = 0;
		(void)dlq_renew(c);
		return -1;
	}
	return 0;
}

/* The applier's callback: dead letters found while applying. */
static int
apply_dead_letters(void *ctx, xr_apply_item_t *items, size_t n)
{
	consumer_t *c = ctx;
	size_t      i;

	for (i = 0; i < n; i++) {
		if (items[i].resolution != XR_RES_DEAD_LETTER)
			continue;
		if (dead_letter(c, ((msgrec_t *)items[i].opaque)->m, items[i].reason))
			return -1;
	}
	return dlq_flush(c);
}

static void
free_batch(consumer_t *c)
{
	size_t i;

	for (i = 0; i < c->nrecs; i++) {
		rd_kafka_message_destroy(c->recs[i].m);
		c->recs[i].m = NULL;
	}
	c->nrecs = 0;
}

/*
 * Whether message m is for this region: a backfill's rows for another
 * region (header xr-for) are consumed without being applied.
 */
static bool
for_here(const consumer_t *c, const rd_kafka_message_t *m)
{
	rd_kafka_headers_t *hdrs;
	const void         *hv;
	size_t              hlen;

	if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
	    rd_kafka_header_get_last(hdrs, "xr-for", &hv, &hlen) !=
	        RD_KAFKA_RESP_ERR_NO_ERROR || !hv)
		return true;
	return hlen == strlen(c->conf->region) &&
	       memcmp(hv, c->conf->region, hlen) == 0;
}

/*
 * A redriven dead letter: its source topic (header xr-dlq-topic, into
 * r->otopic and *topic) and how often it was redriven.  Returns 0, or -1
 * when it is not to be applied: not an xregion dead letter, or redriven
 * max_replays times already (counted as given up).
 */
static int
redrive_source(consumer_t *c, msgrec_t *r, const char **topic)
{
	rd_kafka_headers_t *hdrs;
	const void         *hv;
	size_t              hlen;
	char                n[16];

	r->otopic[0] = '\0';
	r->replays = 0;
	if (rd_kafka_message_headers(r->m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
		hdrs = NULL;
	if (hdrs && rd_kafka_header_get_last(hdrs, "xr-dlq-topic", &hv, &hlen) ==
	        RD_KAFKA_RESP_ERR_NO_ERROR && hv && hlen < sizeof(r->otopic)) {
		memcpy(r->otopic, hv, hlen);
		r->otopic[hlen] = '\0';
	}
	if (hdrs && rd_kafka_header_get_last(hdrs, "xr-dlq-replays", &hv, &hlen) ==
	        RD_KAFKA_RESP_ERR_NO_ERROR && hv && hlen < sizeof(n)) {
		memcpy(n, hv, hlen);
		n[hlen] = '\0';
		r->replays = atoi(n);
	}
	if (!r->otopic[0]) {
		xr_warn("redrive: %s [%d] offset %" PRId64 " has no xr-dlq-topic "
		        "header: not an xregion dead letter, left alone",
		        rd_kafka_topic_name(r->m->rkt), (int)r->m->partition,
		        r->m->offset);
		snprintf(r->otopic, sizeof(r->otopic), "?.?.?");
		replay_table(c, r)->gave_up++;
		return -1;
	}
	if (r->replays >= c->max_replays) {
		xr_warn("redrive: %s [%d] offset %" PRId64 " was redriven %d "
		        "time(s) already (--max-replays %d): left alone",
		        rd_kafka_topic_name(r->m->rkt), (int)r->m->partition,
		        r->m->offset, r->replays, c->max_replays);
		replay_table(c, r)->gave_up++;
		return -1;
	}
	*topic = r->otopic;
	return 0;
}

/* Decodes and classifies every message of the batch. */
static int
classify_batch(consumer_t *c)
{
	size_t i;

	for (i = 0; i < c->nrecs; i++) {
		msgrec_t   *r = &c->recs[i];
		const char *topic = rd_kafka_topic_name(r->m->rkt);
		char        err[512];
		xr_check_t  chk;
		int         rc;

		if (r->pre_skip) {
			/* Atomic apply: a copy, or an end record (region set). */
			r->kind = REC_SKIP;
			r->reason[0] = '\0';
			r->refused = false;
			continue;
		}
		r->kind = REC_APPLY;
		r->reason[0] = '\0';
		r->refused = false;
		r->ev.nspname[0] = '\0';
		r->region[0] = '\0';
		if (c->redrive && redrive_source(c, r, &topic)) {
			r->kind = REC_SKIP;
			continue;
		}
		if (is_paused(c, topic, r->m->partition)) {
			r->kind = REC_DROP;
			continue;
		}
		if (topic_region(c, topic, r->region, sizeof(r->region))) {
			r->kind = REC_POISON;
			snprintf(r->reason, sizeof(r->reason),
			         "topic name is not <prefix>.<region>.<schema>.<table>");
			continue;
		}
		if (!r->m->payload || r->m->len == 0) {
			r->kind = REC_POISON;
			snprintf(r->reason, sizeof(r->reason), "empty message");
			continue;
		}
		if (!for_here(c, r->m)) {
			r->kind = REC_SKIP;
			continue;
		}
		if (c->ahead && xr_ahead_take(c->ahead, r->m, &r->ev))
			rc = 0;          /* decoded while the last piece was applied */
		else if ((rc = xr_event_decode_message(&r->ev, c->reg, r->m, err,
		                                       sizeof(err))) == -2) {
			xr_error("%s", err);
			return -1;
		} else if (rc) {
			r->kind = REC_POISON;
			snprintf(r->reason, sizeof(r->reason), "undecodable: %.480s", err);
			continue;
		}
		if (version_ts(r->m, &r->ev, r->reason, sizeof(r->reason))) {
			r->kind = REC_POISON;
			continue;
		}
		if (strcmp(r->ev.source_region, r->region) != 0) {
			r->kind = REC_POISON;
			snprintf(r->reason, sizeof(r->reason),
			         "event of region %s on a topic of region %s",
			         r->ev.source_region, r->region);
			continue;
		}
		if (!xr_config_publishes(c->conf, r->ev.nspname, r->ev.relname)) {
			r->kind = REC_POISON;
			snprintf(r->reason, sizeof(r->reason),
			         "table %s.%s is not marked pii: false in region %s",
			         r->ev.nspname, r->ev.relname, c->conf->region);
			warn_once(c, r->ev.nspname, r->ev.relname,
			          "not marked pii: false here, never applied");
			continue;
		}
		chk = xr_applier_check(c->ap, &r->ev, err, sizeof(err));
		if (chk == XR_CHECK_NO_TABLE) {
			r->kind = REC_POISON;
			snprintf(r->reason, sizeof(r->reason), "%s", err);
			warn_once(c, r->ev.nspname, r->ev.relname, err);
		} else if (chk == XR_CHECK_DRIFT && c->parts) {
			/* A replay does not wait for the column: it reports it. */
			r->kind = REC_POISON;
			snprintf(r->reason, sizeof(r->reason), "%s", err);
		} else if (chk == XR_CHECK_DRIFT && c->atomic) {
			/* The region waits, whole transactions and all. */
			r->kind = REC_DROP;
			if (!c->drifted) {
				c->drifted = true;
				snprintf(c->drift, sizeof(c->drift), "%s", err);
				snprintf(c->drift_nsp, sizeof(c->drift_nsp), "%s",
				         r->ev.nspname);
				snprintf(c->drift_rel, sizeof(c->drift_rel), "%s",
				         r->ev.relname);
			}
		} else if (chk == XR_CHECK_DRIFT) {
			r->kind = REC_DROP;
			pause_partition(c, r, err);
		} else if (chk == XR_CHECK_ERROR) {
			xr_error("%s", err);
			return -1;
		}
	}
	return 0;
}

/* A replay's partition read again: not done any more. */
static void
replay_reopen(consumer_t *c, const char *topic, int32_t partition)
{
	size_t i;

	for (i = 0; c->parts && i < c->nparts; i++)
		if (c->parts[i].partition == partition && c->parts[i].done &&
		    strcmp(c->parts[i].topic, topic) == 0) {
			c->parts[i].done = false;
			c->nopen++;
		}
}

/* Seeks every partition of the batch back to its first message. */
static void
rewind_batch(consumer_t *c)
{
	size_t i, j;

	for (i = 0; i < c->nrecs; i++) {
		const char *topic = rd_kafka_topic_name(c->recs[i].m->rkt);
		bool        first = true;

		for (j = 0; j < i; j++)
			if (c->recs[j].m->partition == c->recs[i].m->partition &&
			    strcmp(rd_kafka_topic_name(c->recs[j].m->rkt), topic) == 0)
				first = false;
		if (!first)
			continue;
		if (is_paused(c, topic, c->recs[i].m->partition)) {
			/* Resume from the batch's first message, not the drift's. */
			for (j = 0; j < c->npaused; j++)
				if (c->paused[j].partition == c->recs[i].m->partition &&
				    strcmp(c->paused[j].topic, topic) == 0 &&
				    c->recs[i].m->offset < c->paused[j].offset)
					c->paused[j].offset = c->recs[i].m->offset;
			continue;
		}
		seek(c, topic, c->recs[i].m->partition, c->recs[i].m->offset);
		replay_reopen(c, topic, c->recs[i].m->partition);
	}
}

/*
 * The offsets to store for the records of region: per partition, one past
 * the last message that is applied or dead-lettered (dropped messages of a
 * paused partition stay unconsumed).
 */
static size_t
offsets_of(consumer_t *c, const char *region, xr_offset_t *out)
{
	size_t i, j, n = 0;

	for (i = 0; i < c->nrecs; i++) {
		msgrec_t *r = &c->recs[i];

		if (r->kind == REC_DROP || (region && strcmp(r->region, region) != 0))
			continue;
		for (j = 0; j < n; j++)
			if (out[j].partition == r->m->partition &&
			    strcmp(out[j].topic, rd_kafka_topic_name(r->m->rkt)) == 0)
				break;
		if (j == n) {
			out[n].topic = rd_kafka_topic_name(r->m->rkt);
			out[n].partition = r->m->partition;
			out[n++].next_offset = r->m->offset + 1;
		} else if (r->m->offset + 1 > out[j].next_offset) {
			out[j].next_offset = r->m->offset + 1;
		}
	}
	return n;
}

/*
 * Applies the events of one source region one by one: used after a batch
 * failed, to find the message that made it fail and dead-letter it.
 */
static int
apply_one_by_one(consumer_t *c, xr_apply_item_t *items, size_t n)
{
	size_t i;
	char   err[1024];

	for (i = 0; i < n; i++) {
		msgrec_t   *r = items[i].opaque;
		xr_offset_t off = { rd_kafka_topic_name(r->m->rkt), r->m->partition,
		                    r->m->offset + 1 };
		int         tries = 0, u = 0;
		bool        ok = false;

		for (;;) {
			if (xr_applier_apply(c->ap, r->region, &items[i], 1, &off,
			                     c->redrive || c->no_half_offsets ? 0 : 1,
			                     apply_dead_letters, c, err, sizeof(err)) == 0) {
				ok = true;
				break;
			}
			/* Another row holds a unique value: decide it by version. */
			/* A dry run decides nothing that commits on its own. */
			if (!xr_applier_connected(c->ap) || c->dry_run ||
			    !xr_applier_error_is_unique(c->ap) || tries++ == 3)
				break;
			u = xr_applier_resolve_unique(c->ap, r->region, &items[i], &off,
			                              err, sizeof(err));
			if (u == -1) {
				xr_error("%s", err);
				return -1;
			}
			if (u == -2) {
				ok = true;
				break;
			}
			/* Otherwise apply it again (at most 3 rounds). */
		}
		if (ok) {
			replay_count(c, &items[i], 1);
			continue;
		}
		if (!xr_applier_connected(c->ap) || !xr_applier_error_is_data(c->ap)) {
			xr_error("%s", err);
			return -1;
		}
		/* The database refused this one event: it is poison. */
		if (dead_letter(c, r->m, err) || dlq_flush(c) ||
		    xr_applier_store_offsets(c->ap, &off,
		                             c->redrive || c->no_half_offsets ? 0 : 1,
		                             err, sizeof(err)))
			return -1;
	}
	return 0;
}

/* The next offsets to store for items: per partition, the last + 1. */
static size_t
item_offsets(const xr_apply_item_t *items, size_t n, xr_offset_t *out)
{
	size_t i, j, k = 0;

	for (i = 0; i < n; i++) {
		for (j = 0; j < k; j++)
			if (out[j].partition == items[i].partition &&
			    strcmp(out[j].topic, items[i].topic) == 0)
				break;
		if (j == k) {
			out[k].topic = items[i].topic;
			out[k].partition = items[i].partition;
			out[k++].next_offset = items[i].offset + 1;
		} else if (items[i].offset + 1 > out[j].next_offset) {
			out[j].next_offset = items[i].offset + 1;
		}
	}
	return k;
}

/*
 * Applies the events of one source region after their batch failed on
 * the data (failed: items as a whole is known to fail): each half that
 * applies goes in one transaction; a half that fails is split again, down
 * to the single event, which apply_one_by_one resolves or dead-letters.
 * A batch with k such events costs about 2 k log2 n transactions, not n.
 * Returns 0, or -1 to retry the batch later.
 */
static int
apply_halves(consumer_t *c, xr_apply_item_t *items, size_t n, bool failed)
{
	const char  *region = ((msgrec_t *)items[0].opaque)->region;
	xr_offset_t *offs;
	size_t       noff, half = n / 2;
	char         err[1024];
	int          rc;

	if (n == 1)
		return apply_one_by_one(c, items, 1);
	if (!failed) {
		offs = xr_calloc(n, sizeof(*offs));
		noff = c->redrive || c->no_half_offsets ? 0
		                                        : item_offsets(items, n, offs);
		rc = xr_applier_apply(c->ap, region, items, n, offs, noff,
		                      apply_dead_letters, c, err, sizeof(err));
		free(offs);
		if (rc == 0) {
			replay_count(c, items, n);
			return 0;
		}
		if (!xr_applier_connected(c->ap) || !xr_applier_error_is_data(c->ap)) {
			xr_error("%s", err);
			return -1;
		}
	}
	if (apply_halves(c, items, half, false) ||
	    apply_halves(c, items + half, n - half, false))
		return -1;
	return 0;
}

/*
 * The batch's events to apply (of region, or all with NULL) as apply
 * items, in batch order, into items (room for c->nrecs).  Returns how many.
 */
static size_t
apply_items(consumer_t *c, const char *region, xr_apply_item_t *items)
{
	size_t i, n = 0;

	for (i = 0; i < c->nrecs; i++) {
		msgrec_t *r = &c->recs[i];

		if (r->kind != REC_APPLY ||
		    (region && strcmp(r->region, region) != 0))
			continue;
		items[n].ev = &r->ev;
		items[n].topic = rd_kafka_topic_name(r->m->rkt);
		items[n].partition = r->m->partition;
		items[n].offset = r->m->offset;
		items[n++].opaque = r;
	}
	return n;
}

/* Applies a classified batch.  Returns 0, or -1 to retry it later. */
static int
apply_batch(consumer_t *c)
{
	xr_apply_item_t *items = calloc(c->nrecs + 1, sizeof(*items));
	xr_offset_t     *offs = calloc(c->nrecs + 1, sizeof(*offs));
	char           **regions = calloc(c->nrecs + 1, sizeof(char *));
	size_t           i, j, nreg = 0;
	char             err[1024];
	int              rc = -1;

	if (!items || !offs || !regions)
		goto out;
	/* Dead letters first: they must be on Kafka before their offsets. */
	for (i = 0; i < c->nrecs; i++)
		if (c->recs[i].kind == REC_POISON &&
		    dead_letter(c, c->recs[i].m, c->recs[i].reason))
			goto out;
	if (dlq_flush(c))
		goto out;

	for (i = 0; i < c->nrecs; i++) {
		if (c->recs[i].kind == REC_DROP)
			continue;
		for (j = 0; j < nreg; j++)
			if (strcmp(regions[j], c->recs[i].region) == 0)
				break;
		if (j == nreg)
			regions[nreg++] = c->recs[i].region;
	}
	for (j = 0; j < nreg; j++) {
		/*
		 * A redrive's dead-letter partitions mix source regions: their
		 * offsets are stored once the whole batch is applied (below).
		 */
		size_t n, noff = c->redrive ? 0 : offsets_of(c, regions[j], offs);

		n = apply_items(c, regions[j], items);
		if (n == 0) {
			if (xr_applier_store_offsets(c->ap, offs, noff, err, sizeof(err))) {
				xr_error("%s", err);
				goto out;
			}
			continue;
		}
		if (xr_applier_apply(c->ap, regions[j], items, n, offs, noff,
		                     apply_dead_letters, c, err, sizeof(err)) == 0) {
			replay_count(c, items, n);
			continue;
		}
		if (!xr_applier_connected(c->ap) || !xr_applier_error_is_data(c->ap)) {
			/* Not the data's fault: the whole batch is tried again. */
			xr_error("%s", err);
			goto out;
		}
		xr_warn("batch from region %s failed (%s); applying its %zu events "
		        "in halves, down to the one that fails", regions[j], err, n);
		if (apply_halves(c, items, n, true))
			goto out;
		/* Dead letters and drops of this region: store their offsets. */
		if (xr_applier_store_offsets(c->ap, offs, noff, err, sizeof(err))) {
			xr_error("%s", err);
			goto out;
		}
	}
	/*
	 * Applied in transactions of their own, before: a crash in between
	 * redrives them again, which the conflict rules skip as repeats.
	 */
	if (c->redrive &&
	    xr_applier_store_offsets(c->ap, offs, offsets_of(c, NULL, offs), err,
	                             sizeof(err))) {
		xr_error("%s", err);
		goto out;
	}
	rc = 0;
out:
	free(items);
	free(offs);
	free(regions);
	return rc;
}

/* Copies the counters to the metrics the HTTP endpoint serves. */
static void
publish_metrics(consumer_t *c)
{
	const xr_apply_stats_t *st = xr_applier_stats(c->ap);
	xr_metrics_t           *m = c->metrics;
	int                     k, r;

	if (!m)
		return;
	atomic_store(&m->consumed_events, c->consumed);
	atomic_store(&m->applied_events, st->applied);
	atomic_store(&m->skipped_events, st->skipped);
	atomic_store(&m->dead_lettered, c->poisoned);
	atomic_store(&m->paused_partitions, c->npaused);
	atomic_store(&m->batches, st->batches);
	for (k = 0; k <= XR_LATENCY_BUCKETS; k++)
		atomic_store(&m->apply_latency[k], st->latency[k]);
	atomic_store(&m->apply_latency_sum_us, st->latency_sum_us);
	if (c->paused_dirty) {
		json_t *a = json_array();
		size_t  i;

		for (i = 0; a && i < c->npaused; i++) {
			const paused_t *p = &c->paused[i];

			json_t *e = json_pack(
			    "{s:s,s:i,s:I,s:s++,s:s?}", "topic", p->topic,
			    "partition", (int)p->partition, "offset",
			    (json_int_t)p->offset, "table", p->nspname ? p->nspname : "",
			    ".", p->relname ? p->relname : "", "reason", p->why);

			/* (A name that is not UTF-8: the entry, without it.) */
			json_array_append_new(a, e ? e : json_pack(
			    "{s:s,s:i,s:s}", "topic", "(not UTF-8)", "partition",
			    (int)p->partition, "reason", "(not UTF-8: see the log)"));
		}
		/* Atomic apply: a source region waiting for a column. */
		for (i = 0; a && i < c->natom; i++) {
			json_t *e;

			if (!c->atom[i].reason[0])
				continue;
			e = json_pack("{s:s,s:s}", "region",
			              xr_txq_region_name(c->txq, i), "reason",
			              c->atom[i].reason);
			json_array_append_new(a, e ? e : json_pack(
			    "{s:s,s:s}", "region", xr_txq_region_name(c->txq, i),
			    "reason", "(not UTF-8: see the log)"));
		}
		if (a) {
			xr_metrics_set_paused(m, json_dumps(a, JSON_COMPACT));
			json_decref(a);
			c->paused_dirty = false;
		}
	}
	for (k = 0; k < XR_CONFLICT_NKINDS && k < XR_METRICS_KINDS; k++)
		for (r = 0; r < XR_RES_N && r < XR_METRICS_RESOLUTIONS; r++)
			atomic_store(&m->conflicts[k][r], st->conflicts[k][r]);
}

static void
progress(consumer_t *c, bool force)
{
	const xr_apply_stats_t *st = xr_applier_stats(c->ap);
	int64_t now = xr_mono_us();
	double  secs = (double)(now - c->last_progress_us) / 1e6;
	char    conflicts[512] = "";
	size_t  len = 0;
	int     k, r;

	if (!force && secs < 30.0)
		return;
	if (!force && c->consumed == c->last_consumed)
		return;
	for (k = 1; k < XR_CONFLICT_NKINDS; k++) {
		for (r = 0; r < XR_RES_N; r++) {
			int w;

			if (!st->conflicts[k][r])
				continue;
			w = snprintf(conflicts + len, sizeof(conflicts) - len, " %s/%s=%"
			             PRIu64, xr_conflict_names[k], xr_resolution_names[r],
			             st->conflicts[k][r]);
			if (w > 0 && (size_t)w < sizeof(conflicts) - len)
				len += (size_t)w;
		}
	}
	xr_info("consumed %" PRIu64 " events (%.0f/s): applied %" PRIu64
	        ", skipped %" PRIu64 ", dead-lettered %" PRIu64 ", paused "
	        "partitions %zu; conflicts:%s", c->consumed,
	        secs > 0 ? (double)(c->consumed - c->last_consumed) / secs : 0.0,
	        st->applied, st->skipped, c->poisoned, c->npaused,
	        len ? conflicts : " none");
	c->last_consumed = c->consumed;
	c->last_progress_us = now;
}

/*
 * Connects the applier, retrying with backoff until it connects or *stop
 * is set.  Returns 0 (connected, or stopped: the caller checks *stop), or
 * -1 (logged) when the database lacks xregion's setup, which no retry
 * mends.
 */
static int
connect_applier(consumer_t *c)
{
	char err[1024];
	int  backoff = 500;

	while (!*c->stop && xr_applier_connect(c->ap, err, sizeof(err))) {
		xr_error("%s; retrying in %d ms", err, backoff);
		if (strstr(err, "run xregion setup"))
			return -1;
		sleep_ms(c, backoff);
		backoff = backoff * 2 > c->conf->reconnect_backoff_max_ms
		              ? c->conf->reconnect_backoff_max_ms : backoff * 2;
	}
	return 0;
}

typedef enum {
	POLL_NONE = 0,   /* nothing came within the wait */
	POLL_MESSAGE,    /* *out: a message to use */
	POLL_SKIPPED,    /* one came and was dropped: poll again */
	POLL_FATAL       /* librdkafka gave up (c->fatal is set) */
} poll_result_t;

/*
 * Polls the group consumer once for up to wait_ms.  Errors are logged and
 * messages of partitions whose stored offsets are not known yet dropped.
 */
static poll_result_t
poll_message(consumer_t *c, int wait_ms, rd_kafka_message_t **out)
{
	rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, wait_ms);

	*out = NULL;
	if (!m)
		return POLL_NONE;
	if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
		error_cb(c->rk, m->err, rd_kafka_message_errstr(m), c);
		rd_kafka_message_destroy(m);
		return POLL_FATAL;
	}
	if (m->err) {
		if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			xr_warn("kafka: %s", rd_kafka_message_errstr(m));
		rd_kafka_message_destroy(m);
		return POLL_SKIPPED;
	}
	if (in_list(c->pending, m)) {
		/* Fetched before its stored offset was known. */
		rd_kafka_message_destroy(m);
		return POLL_SKIPPED;
	}
	*out = m;
	return POLL_MESSAGE;
}

/*
 * How long to wait for one more message of a batch begun at first_us: -1
 * (apply now) when nothing more is fetched, as a source that is not busy
 * has its changes applied at once while under load the fetched backlog
 * makes batches; or when batch_linger_ms has passed since the first; else
 * a millisecond.
 */
static int
linger_wait(const consumer_t *c, int64_t first_us)
{
	int64_t left = first_us + (int64_t)c->conf->batch_linger_ms * 1000 -
	               xr_mono_us();

	if (left <= 0 || (c->cq && rd_kafka_queue_length(c->cq) == 0))
		return -1;
	return 1;
}

/*
 * Fills the batch from Kafka: up to batch_size messages, while more are
 * fetched and for at most batch_linger_ms after the first (linger_wait);
 * returns at once when none came within 100 ms, or
 * when stopped or librdkafka gave up (c->fatal).
 */
static void
fill_batch(consumer_t *c)
{
	int64_t first_us = 0;

	while (c->nrecs < (size_t)c->conf->batch_size && !*c->stop && !c->fatal &&
	       !(c->parts && c->nopen == 0)) {
		int                 wait_ms = 100;
		rd_kafka_message_t *m;
		poll_result_t       pr;

		if (c->nrecs > 0 && (wait_ms = linger_wait(c, first_us)) < 0)
			break;
		pr = poll_message(c, wait_ms, &m);
		if (pr == POLL_NONE)
			break;          /* idle: apply what came at once */
		if (pr == POLL_FATAL)
			break;
		if (pr != POLL_MESSAGE)
			continue;
		if (c->parts && !replay_keep(c, m)) {
			/* In a replay, outside the range. */
			rd_kafka_message_destroy(m);
			continue;
		}
		if (c->nrecs == 0)
			first_us = xr_mono_us();
		c->recs[c->nrecs++].m = m;
		c->consumed++;
	}
}

/* Counts a replay's batch, once applied, by table. */
static void
replay_read(consumer_t *c)
{
	size_t i;

	for (i = 0; c->parts && i < c->nrecs; i++) {
		xr_replay_table_t *t = replay_table(c, &c->recs[i]);

		t->events++;
		/* (A redrive's skips are the ones it gave up, counted so.) */
		if (c->recs[i].kind == REC_SKIP && !c->redrive)
			t->other++;
	}
}

/*
 * Classifies and applies the filled batch, then frees it.  On failure the
 * batch's partitions are rewound to its first messages, to be read again
 * after *backoff ms (doubled for the next failure, up to
 * reconnect_backoff_max_ms; back to 500 ms once a batch is applied), and
 * a lost database connection is tried again once.
 */
static int
handle_batch(consumer_t *c, int *backoff)
{
	char err[1024];
	int  rc = 0;

	if (classify_batch(c) == 0 && apply_batch(c) == 0) {
		*backoff = 500;
		replay_read(c);
	} else {
		rc = -1;
		c->consumed -= c->nrecs;
		rewind_batch(c);
		xr_warn("batch not applied; retrying in %d ms", *backoff);
		sleep_ms(c, *backoff);
		*backoff = *backoff * 2 > c->conf->reconnect_backoff_max_ms
		               ? c->conf->reconnect_backoff_max_ms : *backoff * 2;
		if (!xr_applier_connected(c->ap) &&
		    xr_applier_connect(c->ap, err, sizeof(err)))
			xr_error("%s", err);
	}
	free_batch(c);
	return rc;
}

/* Wall-clock µs since the Unix epoch. */
static int64_t
wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Every consumer.tombstone_purge_interval_s: deletes the tombstones older
 * than consumer.tombstone_retention_hours that every region has applied
 * past (the purge horizon, progress.h): no older change of their keys can
 * still arrive, from any region.  Every minute, the tombstone count for
 * the metrics.
 */
static void
purge_tombstones(consumer_t *c)
{
	char        err[1024];
	char        missing[64];
	int64_t     horizon, cutoff, tombs, bytes;
	long        n;

	if (c->metrics && xr_mono_us() - c->last_stats_us >= INT64_C(60000000) &&
	    xr_applier_connected(c->ap)) {
		c->last_stats_us = xr_mono_us();
		if (xr_applier_tombstone_stats(c->ap, &tombs, &bytes, err,
		                               sizeof(err)) == 0) {
			atomic_store(&c->metrics->tombstones, (uint64_t)tombs);
			atomic_store(&c->metrics->versions_bytes, (uint64_t)bytes);
		}
	}
	if (xr_mono_us() - c->last_purge_us <
	    (int64_t)c->conf->tombstone_purge_interval_s * 1000000)
		return;
	c->last_purge_us = xr_mono_us();
	horizon = c->sharer ? xr_sharer_horizon(c->sharer, missing,
	                                        sizeof(missing))
	                    : XR_PROGRESS_NONE;
	if (horizon == XR_PROGRESS_NONE) {
		if (!c->purge_said)
			xr_info("tombstone purge waits: no progress yet from region %s "
			        "(topic %s)", missing,
			        xr_config_progress_topic(c->conf, missing)
			            ? xr_config_progress_topic(c->conf, missing) : "?");
		c->purge_said = true;
		return;
	}
	c->purge_said = false;
	if (c->metrics)
		atomic_store(&c->metrics->purge_horizon_us, (uint64_t)horizon);
	cutoff = wall_us() - (int64_t)c->conf->tombstone_retention_hours *
	                         INT64_C(3600000000);
	if (horizon < cutoff)
		cutoff = horizon;
	n = xr_applier_purge_tombstones(c->ap, cutoff, err, sizeof(err));
	if (n < 0) {
		xr_warn("%s", err);
		return;
	}
	if (c->metrics)
		atomic_fetch_add(&c->metrics->tombstones_purged, (uint64_t)n);
	if (n > 0)
		xr_info("purged %ld tombstone(s): older than %d hours and applied "
		        "by every region", n, c->conf->tombstone_retention_hours);
}

/*
 * Every 5 s: brings back the rows hidden by a unique key conflict whose
 * values nothing newer holds any longer (see unique.c).
 */
static void
unhide_rows(consumer_t *c)
{
	char err[1024];
	long n;

	if (xr_mono_us() - c->last_unhide_us <= INT64_C(5) * 1000000)
		return;
	c->last_unhide_us = xr_mono_us();
	n = xr_applier_unhide(c->ap, err, sizeof(err));
	if (n < 0)
		xr_warn("%s", err);
	else if (n > 0)
		xr_info("brought back %ld row(s) hidden by a unique key conflict "
		        "(conflict unique_restored)", n);
}

/* ---- atomic apply (consumer.apply_mode atomic; txq.h) ---------------- */

/* Region r's state, grown to cover every region the assembler knows. */
static atom_region_t *
atom_of(consumer_t *c, size_t r)
{
	size_t n = xr_txq_regions(c->txq);

	if (n > c->natom) {
		c->atom = xr_reallocarray(c->atom, n, sizeof(*c->atom));
		memset(c->atom + c->natom, 0, (n - c->natom) * sizeof(*c->atom));
		c->natom = n;
	}
	return &c->atom[r];
}

/*
 * Pauses or resumes one partition; a resume also seeks to offset (-1: the
 * beginning).  Returns 0, or -1 when the seek failed (logged).
 */
static int
pause_one(consumer_t *c, const char *topic, int32_t partition, bool pause,
          int64_t offset)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_error_t *e = NULL;

	rd_kafka_topic_partition_list_add(l, topic, partition)->offset =
		offset >= 0 ? offset : RD_KAFKA_OFFSET_BEGINNING;
	if (pause) {
		(void)rd_kafka_pause_partitions(c->rk, l);
	} else {
		(void)rd_kafka_resume_partitions(c->rk, l);
		e = rd_kafka_seek_partitions(c->rk, l, 10000);
	}
	rd_kafka_topic_partition_list_destroy(l);
	if (e) {
		xr_error("kafka: seek %s [%d] to %" PRId64 ": %s", topic,
		         (int)partition, offset, rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
		return -1;
	}
	return 0;
}

/* The assembler's index of topic's region, or -1. */
static long
region_index(consumer_t *c, const char *topic)
{
	char   name[64];
	size_t r;

	if (topic_region(c, topic, name, sizeof(name)))
		return -1;
	for (r = 0; r < xr_txq_regions(c->txq); r++)
		if (strcmp(xr_txq_region_name(c->txq, r), name) == 0)
			return (long)r;
	return -1;
}

/* Resumes the partitions whose queue has room again. */
static void
txq_resume(consumer_t *c)
{
	size_t        n = xr_txq_npaused(c->txq), i;
	xr_txq_pos_t *pos;

	if (n == 0)
		return;
	pos = xr_calloc(n, sizeof(*pos));
	n = xr_txq_resumable(c->txq, pos);
	for (i = 0; i < n; i++)
		if (pause_one(c, pos[i].topic, pos[i].partition, false,
		              pos[i].offset)) {
			/* Not where the queue ends: read the region again. */
			long r = region_index(c, pos[i].topic);

			if (r >= 0)
				atom_of(c, (size_t)r)->rewind_due = true;
		}
	free(pos);
}

/*
 * Reads messages into the assembler: until a batch's worth came, or none
 * more is fetched, or batch_linger_ms after the first (linger_wait); or
 * until wait_ms pass with none at all.
 */
static void
txq_fill(consumer_t *c, int wait_ms)
{
	int64_t first_us = 0;
	size_t  got = 0;

	while (!*c->stop && !c->fatal) {
		rd_kafka_message_t *m;
		int                 w = wait_ms;
		char                bad[600];
		int                 full;
		poll_result_t       pr;

		if (got > 0 && (w = linger_wait(c, first_us)) < 0)
			break;
		pr = poll_message(c, w, &m);
		if (pr == POLL_NONE || pr == POLL_FATAL)
			break;          /* none (more) within the wait: apply now */
		if (pr != POLL_MESSAGE)
			continue;
		if (got++ == 0)
			first_us = xr_mono_us();
		{
			const char *topic = rd_kafka_topic_name(m->rkt);
			int32_t     part = m->partition;

			full = xr_txq_add(c->txq, c->reg, m, bad, sizeof(bad));
			if (bad[0])
				xr_error("%s; its region waits there (read again every "
				         "%d ms)", bad, c->conf->drift_recheck_ms);
			if (full)
				pause_one(c, topic, part, true, -1);
		}
		if (got >= (size_t)c->conf->batch_size)
			break;
	}
}

/* Rolls back what region r had taken and reads it again from the stored
 * positions; r takes nothing for backoff_ms. */
static void
txq_rewind(consumer_t *c, size_t r, int backoff_ms)
{
	size_t         n = xr_txq_npositions(c->txq, r), i;
	xr_txq_pos_t  *pos = xr_calloc(n ? n : 1, sizeof(*pos));
	atom_region_t *a = atom_of(c, r);

	xr_applier_rollback(c->ap);
	xr_ahead_clear(c->ahead);
	n = xr_txq_rewind(c->txq, r, pos);
	a->rewind_due = false;
	for (i = 0; i < n; i++)
		if (pause_one(c, pos[i].topic, pos[i].partition, false,
		              pos[i].offset))
			a->rewind_due = true;     /* tried again before a take */
	free(pos);
	a->blocked_until = xr_mono_us() + (int64_t)backoff_ms * 1000;
}

/* The next commit stores these positions of region's streams. */
static void
set_positions(consumer_t *c, const char *region, const xr_txq_taken_t *tp,
              size_t n)
{
	size_t i;

	xr_applier_clear_positions(c->ap);
	for (i = 0; i < n; i++)
		xr_applier_add_position(c->ap, region, tp[i].stream, tp[i].lsn,
		                        tp[i].sysid, tp[i].commit_ts);
}

/* Frees the messages of the batch in c->recs (atomic apply). */
static void
atomic_free(consumer_t *c)
{
	free_batch(c);
}

/* Orders items by position in their source's stream, then by offset. */
static int
cmp_item_position(const void *x, const void *y)
{
	const xr_apply_item_t *a = x, *b = y;
	int                    c = xr_plan_cmp_position(a->ev, b->ev);

	if (c)
		return c;
	if (a->partition != b->partition)
		return a->partition < b->partition ? -1 : 1;
	return a->offset < b->offset ? -1 : (a->offset > b->offset);
}

/*
 * xr_applier_apply; for a piece of a large transaction with more to come,
 * the next piece's events are decoded on the ahead thread meanwhile.  The
 * thread is done when this returns, before anything may free a message.
 */
static int
apply_overlapped(consumer_t *c, size_t r, bool hold, const char *region,
                 xr_apply_item_t *items, size_t ni, const xr_offset_t *offs,
                 size_t noff, char *err, size_t err_size)
{
	int rc;

	if (hold && c->ahead)
		xr_ahead_start(c->ahead, c->peek,
		               xr_txq_peek_piece(c->txq, r, c->peek,
		                                 (size_t)c->conf->batch_size));
	rc = xr_applier_apply(c->ap, region, items, ni, offs, noff,
	                      apply_dead_letters, c, err, err_size);
	xr_ahead_wait(c->ahead);
	return rc;
}

/*
 * Applies region r's n messages handed out in c->outs: whole transactions
 * in one target transaction with their offsets and applied position, or
 * with hold a piece of a big transaction, left open.  Returns 0, or -1
 * after rewinding r (retried later).
 */
static int
atomic_apply(consumer_t *c, size_t r, size_t n, bool hold, bool rows)
{
	const char      *region = xr_txq_region_name(c->txq, r);
	atom_region_t   *a = atom_of(c, r);
	xr_apply_item_t *items = xr_calloc(n ? n : 1, sizeof(*items));
	size_t           npos = xr_txq_npositions(c->txq, r), noff = 0, ni = 0;
	xr_txq_pos_t    *pos = xr_calloc(npos ? npos : 1, sizeof(*pos));
	xr_offset_t     *offs = xr_calloc(npos ? npos : 1, sizeof(*offs));
	xr_txq_taken_t  *tp = NULL;
	size_t           ntp = 0;
	bool             has_pos, was_open;
	size_t           i;
	char             err[1024];
	int              rc = -1;

	for (i = 0; i < n; i++) {
		msgrec_t *rec = &c->recs[i];

		rec->m = c->outs[i].m;
		rec->pre_skip = c->outs[i].skip;
		snprintf(rec->region, sizeof(rec->region), "%s", region);
	}
	c->nrecs = n;
	c->drifted = false;
	if (classify_batch(c) != 0)
		goto fail;
	if (c->drifted) {
		snprintf(a->reason, sizeof(a->reason), "%s", c->drift);
		c->paused_dirty = true;
		snprintf(a->nspname, sizeof(a->nspname), "%s", c->drift_nsp);
		snprintf(a->relname, sizeof(a->relname), "%s", c->drift_rel);
		xr_error("%s; region %s waits (whole transactions, in commit order) "
		         "until the column exists here (rechecked every %d ms)",
		         c->drift, region, c->conf->drift_recheck_ms);
		atomic_free(c);
		txq_rewind(c, r, c->conf->drift_recheck_ms);
		goto out;
	}
	for (i = 0; i < n; i++)
		if (c->recs[i].kind == REC_POISON &&
		    dead_letter(c, c->recs[i].m, c->recs[i].reason))
			goto fail;
	if (dlq_flush(c))
		goto fail;
	ni = apply_items(c, NULL, items);
	/* Offsets and position go with the last piece (or the only one). */
	if (!hold) {
		npos = xr_txq_offsets(c->txq, r, pos);
		for (i = 0; i < npos; i++) {
			offs[noff].topic = pos[i].topic;
			offs[noff].partition = pos[i].partition;
			offs[noff++].next_offset = pos[i].offset;
		}
	}
	if (!hold) {
		tp = xr_calloc(xr_txq_nstreams(c->txq, r) + 1, sizeof(*tp));
		ntp = xr_txq_taken_positions(c->txq, r, tp,
		                             xr_txq_nstreams(c->txq, r));
	}
	has_pos = ntp > 0;
	if (!hold)
		set_positions(c, region, tp, ntp);
	xr_applier_hold_open(c->ap, hold && !rows);
	was_open = xr_applier_in_open(c->ap);
	if (ni == 0 && !was_open) {
		if (!hold && (noff || has_pos) &&
		    xr_applier_store_offsets(c->ap, offs, noff, err, sizeof(err))) {
			xr_error("%s", err);
			goto fail;
		}
	} else if (apply_overlapped(c, r, hold, region, items, ni,
	                            rows && hold ? NULL : offs,
	                            rows && hold ? 0 : noff, err,
	                            sizeof(err)) != 0) {
		/* (A piece of an open transaction fails it all: no halves.) */
		if (!xr_applier_connected(c->ap) || !xr_applier_error_is_data(c->ap) ||
		    (hold && !rows) || was_open) {
			xr_error("%s", err);
			goto fail;
		}
		/*
		 * The database refused an event: the transactions of this batch
		 * go in parts, down to the event, which is dead-lettered.  A
		 * reader may see part of them meanwhile.
		 */
		xr_warn("batch from region %s failed (%s); applying its %zu events "
		        "in halves, not whole transactions, down to the one that "
		        "fails", region, err, ni);
		/* Halves in the source's order: a half is never a later write
		 * applied before an earlier one of another half. */
		qsort(items, ni, sizeof(*items), cmp_item_position);
		c->no_half_offsets = true;
		rc = apply_halves(c, items, ni, true);
		c->no_half_offsets = false;
		if (rc)
			goto fail;
		rc = -1;
		if (!hold) {
			set_positions(c, region, tp, ntp);
			if (xr_applier_store_offsets(c->ap, offs, noff, err,
			                             sizeof(err))) {
				xr_error("%s", err);
				goto fail;
			}
		}
	}
	if (!hold)
		xr_txq_commit(c->txq, r);
	for (i = 0; i < n; i++)
		if (!c->recs[i].pre_skip)
			c->consumed++;
	replay_count(c, items, ni);
	a->backoff_ms = 500;
	if (a->reason[0])
		c->paused_dirty = true;
	a->reason[0] = '\0';
	atomic_free(c);
	rc = 0;
	goto out;
fail:
	atomic_free(c);
	if (a->backoff_ms < 500)
		a->backoff_ms = 500;
	xr_warn("region %s: batch not applied; reading it again in %d ms",
	        region, a->backoff_ms);
	txq_rewind(c, r, a->backoff_ms);
	a->backoff_ms = a->backoff_ms * 2 > c->conf->reconnect_backoff_max_ms
	                    ? c->conf->reconnect_backoff_max_ms : a->backoff_ms * 2;
	if (!xr_applier_connected(c->ap) &&
	    xr_applier_connect(c->ap, err, sizeof(err)))
		xr_error("%s", err);
	rc = -1;
out:
	free(items);
	free(pos);
	free(offs);
	free(tp);
	return rc;
}

/*
 * A big transaction taken before its end record that has waited this long
 * for its next piece is rolled back when other regions have messages to
 * apply: they wait meanwhile, and would otherwise wait on its producer's
 * pace.
 */
#define EARLY_WAIT_US (5 * 1000000LL)

/*
 * Applies region r's next transaction, larger than a batch, piece by piece
 * in one target transaction (or, after it failed so, in pieces that each
 * commit: rows).  Other regions wait meanwhile, as for any batch.
 */
static void
atomic_big(consumer_t *c, size_t r)
{
	int64_t        last = xr_mono_us(), start = last, waited = 0;
	uint64_t       dec0, took0;
	bool           rows = atom_of(c, r)->piece_commits;
	size_t         pieces = 0;

	xr_ahead_counts(c->ahead, &dec0, &took0);
	if (rows && xr_txq_early(c->txq, r)) {
		/* Pieces that commit: only once the transaction is known whole. */
		xr_txq_early_give_up(c->txq, r);
		txq_rewind(c, r, 0);
		return;
	}
	for (;;) {
		bool   done;
		size_t n;

		if (*c->stop || c->fatal || c->revoked) {
			xr_applier_rollback(c->ap);
			if (!c->revoked)
				txq_rewind(c, r, 0);
			return;
		}
		n = xr_txq_take_piece(c->txq, r, c->outs,
		                      (size_t)c->conf->batch_size, &done);
		if (n > 0) {
			if (atomic_apply(c, r, n, !done, rows)) {
				if (!rows && xr_applier_connected(c->ap) &&
				    xr_applier_error_is_data(c->ap)) {
					/* Whole, it cannot be applied: in committed pieces. */
					atom_of(c, r)->piece_commits = true;
					xr_warn("region %s: a large transaction failed on the "
					        "data; applying it again in pieces that each "
					        "commit", xr_txq_region_name(c->txq, r));
				}
				return;
			}
			last = xr_mono_us();
			/* Refill drained queues while the rest is applied. */
			txq_resume(c);
			if (++pieces % 50 == 0)
				xr_info("region %s: large transaction: %zu pieces of up "
				        "to %d events applied, not yet committed",
				        xr_txq_region_name(c->txq, r), pieces,
				        c->conf->batch_size);
			if (done) {
				uint64_t dec, took;

				xr_ahead_counts(c->ahead, &dec, &took);
				if (pieces > 1)
					xr_info("region %s: large transaction committed (%zu "
					        "pieces in %.1f s, %.1f s of it waiting for "
					        "events; %" PRIu64 " events decoded ahead, %"
					        PRIu64 " of them used)",
					        xr_txq_region_name(c->txq, r), pieces,
					        (double)(xr_mono_us() - start) / 1e6,
					        (double)waited / 1e6, dec - dec0, took - took0);
				atom_of(c, r)->piece_commits = false;
				return;
			}
			continue;
		}
		if (xr_txq_piece_broken(c->txq, r)) {
			/* Taken before its end record, and not the next one after
			 * all (logged): what was applied of it is rolled back. */
			txq_rewind(c, r, 0);
			return;
		}
		if (xr_txq_early(c->txq, r) && xr_mono_us() - last > EARLY_WAIT_US &&
		    xr_txq_others_waiting(c->txq, r)) {
			/*
			 * Taken as it arrives, and its events come slower than they
			 * are applied (its producer lags or stopped): the other
			 * regions, which have transactions to apply, are not held
			 * up for it any longer; it is taken again once its end
			 * record is here.
			 */
			xr_warn("region %s: a large transaction taken as it arrives "
			        "waited %.1f s for its next events while other regions "
			        "wait: rolled back, applied once it is whole",
			        xr_txq_region_name(c->txq, r),
			        (double)(xr_mono_us() - last) / 1e6);
			xr_txq_early_give_up(c->txq, r);
			txq_rewind(c, r, 0);
			return;
		}
		if (xr_mono_us() - last > 60 * 1000000LL) {
			char why[512];

			xr_txq_waiting(c->txq, r, why, sizeof(why));
			xr_warn("region %s: a large transaction waited 60 s for its "
			        "events (%s); rolled back, read again later",
			        xr_txq_region_name(c->txq, r), why[0] ? why : "?");
			xr_txq_early_give_up(c->txq, r);
			txq_rewind(c, r, 5000);
			return;
		}
		{
			int64_t t0 = xr_mono_us();

			txq_resume(c);
			txq_fill(c, 100);
			waited += xr_mono_us() - t0;
		}
	}
}

/* Logs a region whose next transaction has waited long. */
static void
atomic_waiting(consumer_t *c, size_t r)
{
	atom_region_t *a = atom_of(c, r);
	int64_t        now = xr_mono_us();
	char           why[512];

	xr_txq_waiting(c->txq, r, why, sizeof(why));
	if (!why[0]) {
		a->waiting_since = 0;
		return;
	}
	if (!a->waiting_since)
		a->waiting_since = now;
	if (now - a->waiting_since >= 30 * 1000000LL &&
	    now - a->waiting_logged >= 60 * 1000000LL) {
		xr_warn("region %s: %s for %.0f s; its later transactions wait, "
		        "other regions go on", xr_txq_region_name(c->txq, r), why,
		        (double)(now - a->waiting_since) / 1e6);
		a->waiting_logged = now;
	}
}

/* One turn of the atomic consumer: read, then each region's next batch. */
static void
atomic_step(consumer_t *c)
{
	size_t nreg, k;
	char   err[1024];

	txq_resume(c);
	txq_fill(c, 100);
	txq_resume(c);
	nreg = xr_txq_regions(c->txq);
	c->revoked = false;
	for (k = 0; k < nreg && !*c->stop && !c->fatal && !c->revoked; k++) {
		size_t         r = (c->rr + k) % nreg;
		atom_region_t *a = atom_of(c, r);
		size_t         n;
		bool           big;

		if (a->blocked_until > xr_mono_us())
			continue;
		if (a->rewind_due) {
			txq_rewind(c, r, 0);
			if (atom_of(c, r)->rewind_due)
				continue;
		}
		if (a->reason[0] && a->nspname[0]) {
			/* A drift: the table may have its column now. */
			xr_applier_forget(c->ap, a->nspname, a->relname);
			a->nspname[0] = '\0';
		}
		if (!xr_txq_has_applied(c->txq, r)) {
			xr_position_t *ps;
			size_t         nps, i;

			if (xr_applier_load_positions(c->ap, xr_txq_region_name(c->txq, r),
			                              &ps, &nps, err, sizeof(err))) {
				xr_error("%s", err);
				continue;
			}
			for (i = 0; i < nps; i++)
				xr_txq_set_applied(c->txq, r, ps[i].stream, ps[i].lsn,
				                   ps[i].sysid);
			xr_txq_set_applied(c->txq, r, NULL, 0, NULL);
			free(ps);
		}
		n = xr_txq_take(c->txq, r, c->outs, (size_t)c->conf->batch_size,
		                &big);
		if (n > 0 && atomic_apply(c, r, n, false, false))
			continue;
		if (xr_txq_bad_end(c->txq, r)) {
			/* Read it again later: a schema may have been missing. */
			txq_rewind(c, r, c->conf->drift_recheck_ms);
			continue;
		}
		if (big)
			atomic_big(c, r);
		if (!c->revoked)
			atomic_waiting(c, r);
	}
	c->rr++;
}

/* ---- leases: which source regions this consumer applies (lease.h) --- */

#define LEASE_TICK_US  INT64_C(1000000)     /* balance and take-over */
#define META_EVERY_US  INT64_C(5000000)     /* new topics and partitions */

/*
 * Every partition of the topics of the sources held[], sorted, into *out
 * (new: destroy it).  Returns 0, or -1 (logged) when Kafka did not answer.
 */
static int
held_partitions(consumer_t *c, const bool *held,
                rd_kafka_topic_partition_list_t **out)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t err;
	int                 t, p;
	size_t              i;

	*out = NULL;
	err = rd_kafka_metadata(c->rk, 1, NULL, &md, 5000);
	if (err) {
		xr_warn("kafka: listing topics: %s; tried again in a second",
		        rd_kafka_err2str(err));
		return -1;
	}
	l = rd_kafka_topic_partition_list_new(16);
	for (t = 0; t < md->topic_cnt; t++) {
		const struct rd_kafka_metadata_topic *mt = &md->topics[t];
		char region[64];

		if (mt->err || regexec(&c->topics_re, mt->topic, 0, NULL, 0) != 0 ||
		    topic_region(c, mt->topic, region, sizeof(region)))
			continue;
		for (i = 0; i < c->nsources; i++)
			if (held[i] && strcmp(c->sources[i], region) == 0)
				break;
		if (i == c->nsources)
			continue;
		for (p = 0; p < mt->partition_cnt; p++)
			rd_kafka_topic_partition_list_add(l, mt->topic,
			                                  mt->partitions[p].id);
	}
	rd_kafka_metadata_destroy(md);
	rd_kafka_topic_partition_list_sort(l, NULL, NULL);
	*out = l;
	return 0;
}

/* Whether two sorted partition lists name the same partitions. */
static bool
same_partitions(const rd_kafka_topic_partition_list_t *a,
                const rd_kafka_topic_partition_list_t *b)
{
	int i;

	if (!a || !b)
		return (!a || a->cnt == 0) && (!b || b->cnt == 0);
	if (a->cnt != b->cnt)
		return false;
	for (i = 0; i < a->cnt; i++)
		if (a->elems[i].partition != b->elems[i].partition ||
		    strcmp(a->elems[i].topic, b->elems[i].topic) != 0)
			return false;
	return true;
}

/*
 * Makes want (taken over) this consumer's assignment, when it differs or
 * with force: the partitions assigned now are revoked first, and all of
 * want start at their stored offsets.
 */
static void
reassign(consumer_t *c, rd_kafka_topic_partition_list_t *want, bool force)
{
	if (!force && same_partitions(c->assigned, want)) {
		rd_kafka_topic_partition_list_destroy(want);
		return;
	}
	if (c->assigned) {
		revoke_parts(c, c->assigned);
		rd_kafka_topic_partition_list_destroy(c->assigned);
	}
	c->assigned = want;
	if (want->cnt > 0)
		assign_parts(c, want);
}

/*
 * Once a second, between transactions: notices leases lost with the
 * database session, joins the region's members and counts them, takes
 * source regions up to its share or gives one up beyond it, and assigns
 * the partitions of what it holds (listed again every 5 s for new topics).
 * A region given up is unassigned before its lease is released.
 */
static void
lease_tick(consumer_t *c)
{
	int64_t now = xr_mono_us();
	bool   *held;
	bool    changed = false, lost = false, fresh;
	size_t  want = 0, i, k;
	long    drop = -1;
	char    err[1024];
	rd_kafka_topic_partition_list_t *parts;

	if (c->parts || xr_applier_in_open(c->ap) ||
	    (now < c->next_lease_us && xr_applier_session(c->ap) == c->session))
		return;
	c->next_lease_us = now + LEASE_TICK_US;
	held = xr_calloc(c->nsources ? c->nsources : 1, sizeof(*held));
	/*
	 * A session that ended keeps its leases listed until a reconnect, and
	 * a consumer holding nothing has no apply that would reconnect it.
	 */
	if (!xr_applier_connected(c->ap) &&
	    xr_applier_connect(c->ap, err, sizeof(err)))
		xr_warn("%s; tried again in a second", err);
	/*
	 * A new session: what the old one applied is known only from the
	 * database (an ambiguous commit, another consumer's applies
	 * meanwhile): every partition starts again at its stored offset.
	 */
	fresh = xr_applier_session(c->ap) != c->session;
	for (i = 0; i < c->nsources; i++) {
		held[i] = xr_applier_holds_lease(c->ap, c->sources[i]);
		if (c->had[i] && (fresh || !held[i])) {
			xr_warn("lease of region %s lost with the database session; "
			        "its partitions are released", c->sources[i]);
			lost = true;
		}
	}
	if (xr_applier_connected(c->ap)) {
		int members;

		if (xr_applier_members(c->ap, &members, err, sizeof(err))) {
			xr_warn("%s", err);
		} else {
			if (members != c->members && c->members)
				xr_info("consumers of region %s: %d", c->conf->region,
				        members);
			c->members = members;
			drop = xr_lease_plan(held, c->nsources, members, &want);
		}
	}
	if (drop >= 0)
		held[drop] = false;
	/* Start somewhere of this process's own, so that members spread. */
	for (k = 0; k < c->nsources && want > 0; k++) {
		bool got;

		i = (c->spread + k) % c->nsources;
		if (held[i])
			continue;
		if (xr_applier_take_lease(c->ap, c->sources[i], &got, err,
		                          sizeof(err))) {
			xr_warn("%s", err);
			break;
		}
		if (got) {
			held[i] = true;
			want--;
			xr_info("took region %s (consumers of region %s: %d)",
			        c->sources[i], c->conf->region, c->members);
		}
	}
	for (i = 0; i < c->nsources; i++)
		changed |= held[i] != c->had[i];
	changed |= lost || (fresh && c->assigned && c->assigned->cnt > 0);
	if (changed || now >= c->next_meta_us) {
		if (held_partitions(c, held, &parts) == 0) {
			reassign(c, parts, fresh);
			memcpy(c->had, held, c->nsources * sizeof(*held));
			c->next_meta_us = now + META_EVERY_US;
			c->session = xr_applier_session(c->ap);
		} else if (lost || fresh) {
			/* Nothing of a region lost or given up stays assigned. */
			reassign(c, rd_kafka_topic_partition_list_new(1), true);
			memset(c->had, 0, c->nsources * sizeof(*c->had));
			c->session = xr_applier_session(c->ap);
		}
	}
	if (drop >= 0) {
		if (xr_applier_drop_lease(c->ap, c->sources[drop], err, sizeof(err)))
			xr_warn("%s", err);
		else
			xr_info("gave region %s up to the region's other consumers "
			        "(%d)", c->sources[drop], c->members);
	}
	free(held);
}

int
xr_consume_run(const xr_config_t *conf, xr_metrics_t *metrics,
               atomic_int *stop)
{
	consumer_t c;
	char       err[1024];
	int        rc = 0, backoff = 500;

	memset(&c, 0, sizeof(c));
	c.conf = conf;
	c.metrics = metrics;
	c.stop = stop;
	c.atomic = conf->apply_atomic;
	if (metrics) {
		metrics->kind_names = xr_conflict_names;
		metrics->nkinds = XR_CONFLICT_NKINDS;
		metrics->resolution_names = xr_resolution_names;
		metrics->nresolutions = XR_RES_N;
	}
	c.ap = xr_applier_new(conf);
	if (!c.ap) {
		xr_error("out of memory");
		return 1;
	}
	if (connect_applier(&c)) {
		xr_applier_destroy(c.ap);
		return 1;
	}
	if (*stop) {
		xr_applier_destroy(c.ap);
		return 0;
	}
	if (consumer_init(&c, err, sizeof(err))) {
		xr_error("%s", err);
		consumer_term(&c);
		xr_applier_destroy(c.ap);
		return 2;
	}
	c.last_progress_us = c.last_purge_us = xr_mono_us();

	while (!*stop && !c.fatal) {
		lease_tick(&c);
		if (c.atomic) {
			atomic_step(&c);
		} else {
			fill_batch(&c);
			if (c.nrecs > 0)
				(void)handle_batch(&c, &backoff);
		}
		recheck_paused(&c);
		retry_pending(&c);
		publish_metrics(&c);
		progress(&c, false);
		purge_tombstones(&c);
		unhide_rows(&c);
	}
	progress(&c, true);
	if (c.fatal)
		rc = 1;
	consumer_term(&c);
	xr_applier_destroy(c.ap);
	xr_info("consumer stopped");
	return rc;
}

/* Tries of one batch before a replay or redrive gives up. */
#define BOUNDED_TRIES 5

/*
 * Marks done the open partitions whose position has reached their end
 * (the last message of the range may be gone: retention, deleted records).
 */
static void
replay_positions(consumer_t *c)
{
	rd_kafka_topic_partition_list_t *l;
	size_t i;
	int    k;

	if (c->nopen == 0 || c->nrecs > 0 ||
	    xr_mono_us() - c->last_stats_us < INT64_C(1000000))
		return;
	c->last_stats_us = xr_mono_us();
	l = rd_kafka_topic_partition_list_new((int)c->nparts + 1);
	for (i = 0; i < c->nparts; i++)
		if (!c->parts[i].done)
			rd_kafka_topic_partition_list_add(l, c->parts[i].topic,
			                                  c->parts[i].partition);
	if (rd_kafka_position(c->rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		for (k = 0; k < l->cnt; k++) {
			for (i = 0; i < c->nparts; i++) {
				xr_replay_part_t *p = &c->parts[i];

				if (p->done || p->partition != l->elems[k].partition ||
				    strcmp(p->topic, l->elems[k].topic) != 0)
					continue;
				if (l->elems[k].offset >= p->end) {
					p->done = true;
					c->nopen--;
				}
			}
		}
	}
	rd_kafka_topic_partition_list_destroy(l);
}

/* A replay or a redrive: the range parts once, then return. */
static int
bounded_run(const xr_config_t *conf, xr_replay_part_t *parts, size_t nparts,
            bool dry_run, bool redrive, int max_replays,
            xr_replay_tally_t *tally, atomic_int *stop)
{
	consumer_t c;
	char       err[1024];
	int        rc = 0, backoff = 500, failures = 0;
	uint64_t   total = 0;
	size_t     i;

	memset(&c, 0, sizeof(c));
	c.conf = conf;
	c.stop = stop;
	c.parts = parts;
	c.nparts = nparts;
	c.dry_run = dry_run;
	c.redrive = redrive;
	c.max_replays = max_replays;
	c.tally = tally;
	for (i = 0; i < nparts; i++)
		if (parts[i].end > parts[i].start)
			total += (uint64_t)(parts[i].end - parts[i].start);
	c.ap = xr_applier_new(conf);
	if (!c.ap) {
		xr_error("out of memory");
		return 1;
	}
	xr_applier_set_replay(c.ap, dry_run, redrive && !dry_run);
	if (connect_applier(&c) || *stop) {
		xr_applier_destroy(c.ap);
		return 1;
	}
	if (consumer_init(&c, err, sizeof(err))) {
		xr_error("%s", err);
		consumer_term(&c);
		xr_applier_destroy(c.ap);
		return 2;
	}
	/*
	 * The replay origin, held from now on: a second replay or redrive of
	 * this region would wait for it forever, so it is refused at once.
	 */
	if (xr_applier_hold_origin(c.ap, err, sizeof(err))) {
		xr_error("%s%s", err, strstr(err, "already active")
		         ? " (another replay or dead-letter redrive of this region "
		           "is running: one at a time)" : "");
		consumer_term(&c);
		xr_applier_destroy(c.ap);
		return 1;
	}
	c.last_progress_us = xr_mono_us();
	while (!*stop && !c.fatal && (c.nopen > 0 || c.nrecs > 0)) {
		fill_batch(&c);
		if (c.nrecs > 0 && handle_batch(&c, &backoff) != 0) {
			if (++failures >= BOUNDED_TRIES) {
				xr_error("%s: a batch failed %d times in a row; stopping "
				         "(run it again once the cause is fixed: it resumes)",
				         redrive ? "redrive" : "replay", failures);
				break;
			}
		} else if (c.nrecs == 0 && backoff == 500) {
			failures = 0;
		}
		replay_positions(&c);
		if (xr_mono_us() - c.last_progress_us >= INT64_C(10000000)) {
			xr_info("%s: %" PRIu64 " of %" PRIu64 " events read, %zu "
			        "partition(s) to go", redrive ? "redrive" : "replay",
			        c.consumed, total, c.nopen);
			c.last_progress_us = xr_mono_us();
		}
	}
	if (c.fatal || c.nopen > 0)
		rc = 1;
	consumer_term(&c);
	xr_applier_destroy(c.ap);
	return rc;
}

int
xr_consume_replay(const xr_config_t *conf, xr_replay_part_t *parts,
                  size_t nparts, bool dry_run, xr_replay_tally_t *tally,
                  atomic_int *stop)
{
	return bounded_run(conf, parts, nparts, dry_run, false, 0, tally, stop);
}

int
xr_consume_redrive(const xr_config_t *conf, xr_replay_part_t *parts,
                   size_t nparts, bool dry_run, int max_replays,
                   xr_replay_tally_t *tally, atomic_int *stop)
{
	return bounded_run(conf, parts, nparts, dry_run, true, max_replays,
	                   tally, stop);
}
