"""Tombstone purge: a tombstone goes only once every region has applied
past it (the progress topic, consumer/progress.h), so that a change older
than the delete, arriving late from a region that was offline, cannot
bring the row back in one region only.

The regions purge as often as they can here: tombstone_retention_hours 0
(no minimum age) and a purge every second.
"""
import json
import re
import time

from confluent_kafka import Consumer, Producer, TopicPartition

import xrtest
from xrdeploy import Deployment

SCHEMA = "CREATE TABLE orders (id int PRIMARY KEY, note text);"
TABLES = [("public.orders", False)]
FAST_PURGE = ("tombstone_retention_hours: 0", "tombstone_purge_interval_s: 1")


def tombstones(n):
    return n.sql('SELECT count(*) FROM xregion."public.orders" WHERE deleted')[0][0]


def progress_records(prefix, regions=("us", "eu", "apac")):
    """{key: value} of the records in every region's progress topic."""
    c = Consumer({"bootstrap.servers": xrtest.BROKERS, "group.id": "xrt-progress",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(f"{prefix}.{r}._progress", 0, 0)
                  for r in regions])
        out = {}
        end = time.time() + 10
        while time.time() < end:
            m = c.poll(1)
            if m is None:
                if out:
                    break
                continue
            if not m.error():
                out[m.key().decode()] = json.loads(m.value())
        return out
    finally:
        c.close()


def test_a_late_older_change_does_not_outlive_the_delete():
    d = Deployment(TABLES, SCHEMA, consumer=FAST_PURGE)
    try:
        d.start()
        us, eu, apac = d["us"], d["eu"], d["apac"]
        us.sql("INSERT INTO orders VALUES (1, 'us')")
        d.converge("orders", expect_rows=1)
        apac.stop()                    # apac goes offline
        apac.sql("UPDATE orders SET note = 'apac, offline' WHERE id = 1")
        time.sleep(0.05)
        eu.sql("DELETE FROM orders WHERE id = 1")   # newer than apac's update
        end = time.time() + 60
        while us.sql("SELECT count(*) FROM orders") != [(0,)]:
            assert time.time() < end, "us did not apply eu's delete"
            time.sleep(0.2)
        # Long enough for many purge rounds: the tombstone must stay while
        # apac's update has not arrived anywhere.
        time.sleep(25)
        assert tombstones(us) == 1 and tombstones(eu) == 1
        out = us.xregion("status", check=False).stdout
        assert "public.orders: 1 tombstones" in out, out
        assert "apac: published through" in out, out
        apac.start()                   # its older update arrives now
        d.converge("orders", expect_rows=0, timeout=90)
        for r, n in d.nodes.items():
            assert n.sql("SELECT count(*) FROM orders") == [(0,)], r
        # Once every region is past the delete, the tombstone goes everywhere.
        end = time.time() + 90
        while any(tombstones(n) for n in d.nodes.values()):
            assert time.time() < end, {r: tombstones(n) for r, n in d.nodes.items()}
            time.sleep(1)
        recs = progress_records(d.prefix)
        for r in d.nodes:
            assert f"producer/{r}" in recs and f"consumer/{r}" in recs, recs
            assert recs[f"producer/{r}"]["region"] == r, recs
        assert "purged 1 tombstone(s)" in us.read_log()
        out = us.xregion("status", check=False).stdout
        assert "public.orders: 0 tombstones" in out, out
        assert "purge horizon: 20" in out, out
    finally:
        d.close()


FUTURE_US = 4102444800 * 1000000          # 2100-01-01, in µs


def test_a_region_cannot_speak_for_another_in_the_progress_topics():
    """Each region writes its progress to a topic of its own, which Kafka
    ACLs can keep for its writes alone (test_secure_kafka.py).  A record
    that speaks for another region (in eu's topic, as us) or names
    another region than its topic's (in us's topic, as apac) is skipped:
    it does not move the purge horizon."""
    d = Deployment(TABLES, SCHEMA, consumer=FAST_PURGE)
    try:
        d.start()
        d["us"].sql("INSERT INTO orders VALUES (1, 'us')")
        d.converge("orders", expect_rows=1)
        end = time.time() + 90          # the real records first
        while not all(f"{k}/{r}" in progress_records(d.prefix)
                      for k in ("producer", "consumer") for r in d.nodes):
            assert time.time() < end, progress_records(d.prefix)
            time.sleep(1)
        forged = {"applied": {"us": FUTURE_US, "eu": FUTURE_US,
                              "apac": FUTURE_US}, "at": FUTURE_US}
        p = Producer({"bootstrap.servers": xrtest.BROKERS})
        sent = set()

        def delivered(err, msg):
            assert err is None, err
            sent.add((msg.topic(), str(msg.offset())))
        p.produce(f"{d.prefix}.eu._progress", key=b"consumer/us",
                  value=json.dumps(dict(forged, region="us")).encode(),
                  on_delivery=delivered)
        p.produce(f"{d.prefix}.us._progress", key=b"consumer/apac",
                  value=json.dumps(dict(forged, region="apac")).encode(),
                  on_delivery=delivered)
        p.produce(f"{d.prefix}.us._progress", key=b"producer/us",
                  value=json.dumps({"region": "apac", "through": FUTURE_US,
                                    "at": FUTURE_US}).encode(),
                  on_delivery=delivered)
        assert p.flush(30) == 0 and len(sent) == 3
        st = d["eu"].xregion("status", check=False)
        out = st.stdout + st.stderr
        assert "2100-01-01" not in out, out
        skipped = set(re.findall(r"progress topic (\S+): skipped a record at "
                                 r"offset (\d+) that does not speak", out))
        assert skipped == sent, out
        assert "us: published through 20" in out, out   # the real records
    finally:
        d.close()
