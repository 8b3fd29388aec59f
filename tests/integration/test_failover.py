"""Failover of a region's database (PostgreSQL 17 and later).

us runs on a primary of its own with a physical standby that synchronizes
us's failover slot (postgres.failover: true; the primary lists the standby's
slot in synchronized_standby_slots, and commits wait for the standby).  While
us and eu write, us's replicator is stopped (SIGSTOP) for 3 s, so that the
transactions us commits meanwhile are only in the WAL, behind the slot; then
the primary is killed with -9, the standby promoted and us's replicator
pointed at it.  It must publish those transactions from the synced slot (a
slot made anew at the standby's position would skip them): both regions end
with the same rows, every acknowledged write of us among them, a counter
that every us transaction increments equal in both, and no dead letter.
docs/deployment.md, "Failover of a region's database", explains the
settings.
"""
import re
import signal
import subprocess
import threading
import time

import psycopg
import pytest

import pgcluster
import xrtest
from xrdeploy import Deployment



def pg_major():
    """The major version of the binaries the test's clusters use."""
    out = subprocess.run([f"{pgcluster.PG_BIN}/postgres", "--version"],
                         capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.", out)
    return int(m.group(1)) if m else 0


pytestmark = pytest.mark.skipif(
    pg_major() < 17, reason="failover slots need PostgreSQL 17 or later "
    "(XR_PG_BIN of 17: scripts/test.sh, or eval \"$(scripts/stack.sh env)\")")

PRIMARY = """\
synchronized_standby_slots = 'xr_standby'
synchronous_standby_names = '*'
"""
STANDBY = """\
hot_standby = on
hot_standby_feedback = on
sync_replication_slots = on
"""
SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, region text NOT NULL,
                    val text NOT NULL, big text);
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO counters VALUES (1, 0);
"""


class Writer(threading.Thread):
    """Writes to one region in transactions of several statements; records
    the ids of every transaction whose COMMIT was acknowledged."""

    def __init__(self, dsn, region, base):
        super().__init__(daemon=True)
        self.dsn, self.region, self.base = dsn, region, base
        self.acked, self.failed = set(), 0
        self.stop = threading.Event()
        self.next_id = base

    def run(self):
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, connect_timeout=2)
                ids = [self.next_id, self.next_id + 1]
                self.next_id += 2
                with conn.transaction():
                    for i in ids:
                        conn.execute("INSERT INTO items VALUES (%s, %s, 'v0', "
                                     "repeat('x', 3000))", (i, self.region))
                    conn.execute("UPDATE items SET val = 'v1' WHERE id = %s",
                                 (ids[0],))
                    conn.execute("DELETE FROM items WHERE id = %s", (ids[1],))
                    conn.execute("INSERT INTO items VALUES (%s, %s, 'again', "
                                 "NULL)", (ids[1], self.region))
                    if self.region == "us":
                        conn.execute("UPDATE counters SET n = n + 1 WHERE id = 1")
                self.acked.update(ids)
            except psycopg.Error:
                self.failed += 1
                try:
                    conn.close()
                except Exception:
                    pass
                conn = None
                time.sleep(0.2)
            time.sleep(0.01)
        if conn is not None:
            conn.close()


def repoint(node, port):
    """us's config and test connections go to the cluster on port."""
    with open(node.config) as f:
        text = f.read()
    text = re.sub(r"port=\d+", f"port={port}", text, count=1)
    with open(node.config, "w") as f:
        f.write(text)
    node.port = port


def slot_synced(standby, slot):
    with standby.connect() as c:
        row = c.execute("SELECT synced AND NOT temporary FROM "
                        "pg_replication_slots WHERE slot_name = %s",
                        (slot,)).fetchone()
    return bool(row and row[0])


def test_failover_slot_survives_promotion():
    primary = pgcluster.Cluster("failover-primary", PRIMARY)
    standby = pgcluster.Cluster("failover-standby", STANDBY)
    dep = None
    writers = []
    try:
        primary.start()
        standby.start_standby_of(primary, "xr_standby")
        dep = Deployment([("items", False), ("counters", False)], SCHEMA,
                         regions=("us", "eu"), ports={"us": primary.port},
                         postgres={"us": ["failover: true"]})
        us, eu = dep["us"], dep["eu"]
        setup_out = us.xregion("setup")
        assert "a failover slot" in setup_out.stdout + setup_out.stderr
        assert "synchronized_standby_slots is empty" not in \
            setup_out.stdout + setup_out.stderr
        dep.start()
        writers = [Writer(primary.dsn(us.db), "us", 1),
                   Writer(xrtest.pg_dsn("eu", eu.db), "eu", 10_000_000)]
        for w in writers:
            w.start()
        deadline = time.time() + 90
        while not slot_synced(standby, us.slot):
            assert time.time() < deadline, "the standby never synced us's slot"
            time.sleep(0.5)
        while len(writers[0].acked) < 400:
            assert time.time() < deadline + 60, "us wrote too little"
            time.sleep(0.2)
        # us's replicator stops reading while us writes on: these
        # transactions can reach eu only through the synced slot.
        us.proc.send_signal(signal.SIGSTOP)
        n = len(writers[0].acked)
        time.sleep(3)
        acked_before = set(writers[0].acked)
        assert len(acked_before) > n + 50, "us wrote too little while stopped"

        primary.kill9()
        standby.promote()
        us.proc.send_signal(signal.SIGCONT)
        us.stop()
        repoint(us, standby.port)
        writers[0].dsn = standby.dsn(us.db)
        streams = us.read_log().count("streaming slot")
        us.start()
        us.wait_log("streaming slot", count=streams + 1)
        n = len(writers[0].acked)
        deadline = time.time() + 60
        while len(writers[0].acked) < n + 200:
            assert time.time() < deadline, "us did not write after the failover"
            time.sleep(0.2)
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(30)

        dep.converge("items", timeout=120)
        dep.converge("counters", timeout=60)
        ids = {r[0] for r in eu.sql("SELECT id FROM items")}
        missing = acked_before - ids
        assert not missing, f"{len(missing)} acknowledged us writes lost in eu"
        assert writers[0].acked <= ids and writers[1].acked <= ids
        n_us = us.sql("SELECT n FROM counters")[0][0]
        assert n_us >= len(writers[0].acked) // 2
        assert eu.sql("SELECT n FROM counters")[0][0] == n_us
        log = us.read_log()
        assert "does not exist" not in log, log[-3000:]
        for r in ("us", "eu"):
            assert xrtest.topic_size(f"{dep.prefix}.{r}._dlq") == 0, \
                dep[r].read_log()[-3000:]
    finally:
        for w in writers:
            w.stop.set()
        for step in ((dep.close if dep is not None else None), standby.stop,
                     primary.stop):
            try:
                if step:
                    step()
            except Exception as e:      # clean up the rest all the same
                print(f"cleanup: {e}")
