"""Three KRaft brokers (issue 14, part 2): topics with replication factor 3
and min.insync.replicas 2, producers with acks=all and idempotence (locked
in producer/publisher.c).  The broker leading partition 0 of us's table
topic is killed (-9) mid-stream and restarted 10 s later: no change lost
(the regions end with exactly the rows and updates the writers made; a
change applied twice leaves the same row, so "twice" shows as nothing
else), and the replicators never exit.

librdkafka before 2.3 (Debian 12 has 2.0.2) may raise a fatal error on
such a leader change ("rewound sequence number", OUT_OF_ORDER_SEQUENCE_NUMBER,
its issue #4438): the producer then replaces its Kafka producer and restarts
from the slot instead of exiting.  That path is also driven on purpose, on
the stack's broker, through XREGION_TEST_KAFKA_FATAL.
"""
import threading
import time

import psycopg

import xrtest
from kafkacluster import KafkaCluster
from xrdeploy import Deployment

SCHEMA = "CREATE TABLE items (id bigint PRIMARY KEY, region text, n int);"


class Writer(threading.Thread):
    """Transactions of 10 inserts and a +1 on 5 of its earlier rows."""

    def __init__(self, node, base):
        super().__init__(daemon=True)
        self.node, self.base = node, base
        self.stop = threading.Event()
        self.inserted = self.bumps = 0
        self.error = None

    def run(self):
        try:
            dsn = xrtest.pg_dsn(self.node.region, self.node.db, self.node.port)
            with psycopg.connect(dsn, autocommit=True) as c:
                while not self.stop.is_set():
                    lo = self.base + self.inserted
                    with c.transaction():
                        c.execute("INSERT INTO items SELECT g, %s, 0 FROM "
                                  "generate_series(%s, %s) g",
                                  (self.node.region, lo, lo + 9))
                        c.execute("UPDATE items SET n = n + 1 WHERE id "
                                  "BETWEEN %s AND %s", (lo, lo + 4))
                    self.inserted += 10
                    self.bumps += 5
                    time.sleep(0.05)
        except Exception as e:
            self.error = e


def stop(writers):
    """Stops the writers; returns how many rows they inserted."""
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(30)
        assert w.error is None, w.error
    return sum(w.inserted for w in writers)


def test_leader_killed_and_restarted():
    k = KafkaCluster(3)
    k.start()
    d = None
    try:
        d = Deployment([("public.items", False)], SCHEMA, regions=("us", "eu"),
                       brokers=k.bootstrap, kafka=["replication_factor: 3"])
        d.start()
        writers = [Writer(d["us"], 1_000_000), Writer(d["eu"], 2_000_000)]
        for w in writers:
            w.start()
        time.sleep(3)
        victim = k.leader(f"{d.prefix}.us.public.items", 0)
        k.kill9(victim)
        time.sleep(10)                 # the others lead; writes go on
        k.restart(victim)
        k.wait_brokers(3)
        time.sleep(5)
        total = stop(writers)
        assert total > 300, total
        d.converge("items", timeout=180, expect_rows=total)
        for r in ("us", "eu"):
            assert d[r].proc.poll() is None, f"{r} exited:\n{d[r].read_log()[-3000:]}"
            # every row once, every bump once: n is 1 on the first 5 of 10
            assert d[r].sql("SELECT count(*), sum(n) FROM items") == \
                [(total, sum(w.bumps for w in writers))], r
        print(f"broker {victim} killed for 10 s under {total} inserted rows; "
              "both regions hold every row and every bump once")
    finally:
        if d:
            d.close()
        k.stop()


def test_producer_replaced_after_a_fatal_idempotence_error():
    """us's Kafka producer raises the fatal error of a leader change at its
    200th delivery, with writes flowing in both regions: a new producer
    replaces it, the stream restarts from the slot, nothing is lost and
    nothing applied twice in effect, and no process exits."""
    d = Deployment([("public.items", False)], SCHEMA, regions=("us", "eu"),
                   env={"us": {"XREGION_TEST_KAFKA_FATAL": "200"}})
    try:
        d.start()
        writers = [Writer(d["us"], 1_000_000), Writer(d["eu"], 2_000_000)]
        for w in writers:
            w.start()
        d["us"].wait_log("replacing the Kafka producer", timeout=60)
        time.sleep(3)                  # writes go on after the new one
        total = stop(writers)
        d.converge("items", timeout=120, expect_rows=total)
        log = d["us"].read_log()
        print("\n".join(l for l in log.splitlines() if "kafka" in l))
        assert "OUT_OF_ORDER_SEQUENCE_NUMBER" in log, log[-3000:]
        assert "a new Kafka producer replaces this one" in log, log[-3000:]
        for r in ("us", "eu"):
            assert d[r].proc.poll() is None, f"{r} exited:\n{d[r].read_log()[-3000:]}"
            assert d[r].sql("SELECT count(*), sum(n) FROM items") == \
                [(total, sum(w.bumps for w in writers))], r
        # us published after the replacement: eu has rows written after it
        assert d["eu"].sql("SELECT max(id) FROM items WHERE region = 'us'") == \
            [(1_000_000 + writers[0].inserted - 1,)]
    finally:
        d.close()


def test_message_not_acknowledged_in_time_is_sent_again():
    """The broker stops answering (SIGSTOP) for longer than
    message.timeout.ms (3 s here, 5 minutes by default): us's queued
    events fail, its session restarts from the slot, and once the broker
    answers again every row reaches eu once; no process exits."""
    d = Deployment([("public.items", False)], SCHEMA, regions=("us", "eu"),
                   kafka=["properties:", "  message.timeout.ms: 3000"])
    try:
        d.start()
        writers = [Writer(d["us"], 1_000_000)]
        writers[0].start()
        time.sleep(2)
        with xrtest.kafka_paused():
            d["us"].wait_log("Message timed out", timeout=30)
            time.sleep(2)
        d["us"].wait_log("restarting from the slot", timeout=30)
        time.sleep(2)
        total = stop(writers)
        d.converge("items", timeout=120, expect_rows=total)
        for r in ("us", "eu"):
            assert d[r].proc.poll() is None, f"{r} exited:\n{d[r].read_log()[-3000:]}"
            assert d[r].sql("SELECT count(*), sum(n) FROM items") == \
                [(total, writers[0].bumps)], r
    finally:
        d.close()
