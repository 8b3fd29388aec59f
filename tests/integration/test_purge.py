"""Tombstone purge: a tombstone goes only once every region has applied
past it (the progress topic, consumer/progress.h), so that a change older
than the delete, arriving late from a region that was offline, cannot
bring the row back in one region only.

The regions purge as often as they can here: tombstone_retention_hours 0
(no minimum age) and a purge every second.
"""
import json
import time

from confluent_kafka import Consumer, TopicPartition

import xrtest
from xrdeploy import Deployment

SCHEMA = "CREATE TABLE orders (id int PRIMARY KEY, note text);"
TABLES = [("public.orders", False)]
FAST_PURGE = ("tombstone_retention_hours: 0", "tombstone_purge_interval_s: 1")


def tombstones(n):
    return n.sql('SELECT count(*) FROM xregion."public.orders" WHERE deleted')[0][0]


def progress_records(prefix):
    c = Consumer({"bootstrap.servers": xrtest.BROKERS, "group.id": "xrt-progress",
                  "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(f"{prefix}._progress", 0, 0)])
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
        assert "purged 1 tombstone(s)" in us.read_log()
        out = us.xregion("status", check=False).stdout
        assert "public.orders: 0 tombstones" in out, out
        assert "purge horizon: 20" in out, out
    finally:
        d.close()
