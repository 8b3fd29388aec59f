"""Scale-out (issue 14, part 2): several `xregion consume` processes of one
region share its source regions by lease (consumer/lease.h): a source
region is applied by the one process whose database session holds its
advisory lock, so that a whole source transaction, on whichever partitions
it travels, is applied by one process, and a process that died or lost its
session writes nothing more.

eu runs two, then three consumers while us and apac write transactions of
several shapes (inserts, a row written twice, a delete and a re-insert of
one key). One consumer is killed with -9 mid-stream, a third one joins, and
one is frozen (SIGSTOP) while its database session is ended, so that the
others take its region over; thawed, it must not write with what it held.
Every region ends with every row and every bump exactly once, and eu's
conflict log is empty: no change was applied twice or out of order in effect.
"""
import os
import signal
import subprocess
import threading
import time

import psycopg

import xrtest
from xrdeploy import Deployment

SCHEMA = "CREATE TABLE items (id bigint PRIMARY KEY, region text, n int);"
LEASE_CLASS = 0x78726567


def lease_key(region):
    """consumer/lease.c's xr_lease_key: FNV-1a, 31 bits, never 0."""
    h = 2166136261
    for b in region.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) or 1


class Writer(threading.Thread):
    """Transactions of 10 inserts, 4 updates (one row twice) and a delete
    and re-insert of one key: +10 rows and +9 to sum(n) each."""

    def __init__(self, node, base):
        super().__init__(daemon=True)
        self.node, self.base = node, base
        self.stop = threading.Event()
        self.txns = 0
        self.error = None

    def run(self):
        try:
            dsn = xrtest.pg_dsn(self.node.region, self.node.db, self.node.port)
            with psycopg.connect(dsn, autocommit=True) as c:
                while not self.stop.is_set():
                    lo = self.base + 10 * self.txns
                    with c.transaction():
                        c.execute("INSERT INTO items SELECT g, %s, 0 FROM "
                                  "generate_series(%s, %s) g",
                                  (self.node.region, lo, lo + 9))
                        c.execute("UPDATE items SET n = n + 1 WHERE id "
                                  "BETWEEN %s AND %s", (lo, lo + 2))
                        c.execute("UPDATE items SET n = n + 1 WHERE id = %s",
                                  (lo,))
                        c.execute("DELETE FROM items WHERE id = %s", (lo + 9,))
                        c.execute("INSERT INTO items VALUES (%s, %s, 5)",
                                  (lo + 9, self.node.region))
                    self.txns += 1
                    time.sleep(0.02)
        except Exception as e:   # reported by the test
            self.error = e


class Consumer:
    """One `xregion consume` of a region, with a log of its own."""

    def __init__(self, node, name):
        self.node, self.name = node, name
        self.log = os.path.join(node.dep.tmp, f"{node.region}-{name}.log")
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([node.binary, "consume", "-c", node.config],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=node.env())

    def read_log(self):
        with open(self.log) as f:
            return f.read()

    def wait_log(self, text, timeout=60, count=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.read_log().count(text) >= count:
                return
            assert self.proc.poll() is None, \
                f"{self.name} exited {self.proc.returncode}:\n{self.read_log()[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"no '{text}' in {self.name}'s log:\n"
                             f"{self.read_log()[-3000:]}")

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.proc.wait(60)

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.kill()
        self.logf.close()


def start_sources(*nodes):
    """Starts the regions eu reads from (eu's consumers are the test's)."""
    for n in nodes:
        n.start()
    for n in nodes:
        n.wait_log("streaming slot")


def finish(d, writers):
    """Stops the writers and waits for items to converge with all their
    rows; returns how many."""
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(30)
        assert w.error is None, w.error
    expect = sum(w.txns for w in writers) * 10
    d.converge("items", timeout=180, expect_rows=expect)
    return expect


def leases(node):
    """{backend pid of the holder: [source regions]} from pg_locks."""
    names = {lease_key(r): r for r in ("us", "apac")}
    rows = node.sql("SELECT pid, objid::bigint FROM pg_locks WHERE locktype = "
                    "'advisory' AND granted AND classid = %s::oid AND "
                    "objsubid = 2 AND objid <> 0 AND database = (SELECT oid "
                    "FROM pg_database WHERE datname = current_database())",
                    (LEASE_CLASS,))
    held = {}
    for pid, key in rows:
        held.setdefault(pid, []).append(names.get(key, key))
    return held


def wait_leases(node, shape, timeout=30):
    """Waits until the holders' lease counts are shape (sorted), each
    source region held once; returns the holders."""
    deadline = time.time() + timeout
    while True:
        held = leases(node)
        got = sorted(len(v) for v in held.values())
        if got == sorted(shape) and \
           sorted(r for v in held.values() for r in v) == ["apac", "us"]:
            return held
        if time.time() > deadline:
            raise AssertionError(f"leases {held}, wanted counts {shape}")
        time.sleep(0.2)


def test_consumers_of_a_region_share_and_take_over():
    d = Deployment([("public.items", False)], SCHEMA)
    consumers = []
    writers = []
    try:
        us, eu, apac = d["us"], d["eu"], d["apac"]
        start_sources(us, apac)
        a, b = Consumer(eu, "a"), Consumer(eu, "b")
        consumers += [a, b]
        held = wait_leases(eu, [1, 1])
        print("two consumers:", held)

        writers = [Writer(us, 1_000_000), Writer(apac, 2_000_000)]
        for w in writers:
            w.start()
        time.sleep(4)

        # kill -9 one mid-stream: the other takes its region at once
        a.kill()
        t0 = time.time()
        held = wait_leases(eu, [2])
        print(f"a killed: b holds both after {time.time() - t0:.1f} s")
        b.wait_log("took region")
        time.sleep(3)

        # a third joins: b gives one up to it
        c = Consumer(eu, "c")
        consumers.append(c)
        held = wait_leases(eu, [1, 1])
        b.wait_log("gave region")
        time.sleep(3)

        # b freezes; its session ends while it holds a lease: c takes over,
        # and b, thawed with a batch in hand, writes nothing with it
        held_before = leases(eu)
        b.kill(signal.SIGSTOP)
        # b holds the region c did not take when it joined
        c_took = [r for r in ("us", "apac") if f"took region {r}" in c.read_log()]
        assert len(c_took) == 1, c.read_log()[-2000:]
        b_region = "apac" if c_took[0] == "us" else "us"
        b_pid = next((pid for pid, regions in held_before.items()
                      if regions == [b_region]), None)
        assert b_pid, held_before
        eu.sql("SELECT pg_terminate_backend(%s)", (b_pid,))
        t0 = time.time()
        wait_leases(eu, [2])
        print(f"b's session ended while frozen: c holds both after "
              f"{time.time() - t0:.1f} s")
        time.sleep(2)
        b.kill(signal.SIGCONT)
        b.wait_log(f"lease of region {b_region} lost")
        wait_leases(eu, [1, 1])

        time.sleep(3)
        expect = finish(d, writers)
        sums = eu.sql("SELECT region, count(*), sum(n) FROM items GROUP BY 1 "
                      "ORDER BY 1")
        assert sums == [("apac", writers[1].txns * 10, writers[1].txns * 9),
                        ("us", writers[0].txns * 10, writers[0].txns * 9)], sums
        assert eu.sql("SELECT count(*) FROM xregion.conflicts")[0][0] == 0, \
            eu.sql("SELECT * FROM xregion.conflicts LIMIT 5")
        for cons in (b, c):
            assert cons.proc.poll() is None, cons.read_log()[-3000:]
        print(f"converged: {expect} rows from {sum(w.txns for w in writers)} "
              f"transactions")
    finally:
        for w in writers:
            w.stop.set()
        for cons in consumers:
            cons.close()
        d.close()


def test_a_consumer_without_the_lease_writes_nothing():
    """eu's one consumer loses its database session, and before it can take
    us's lease again the test holds it: while it does, nothing of us is
    applied in eu (apac's changes go on); once it lets go, the consumer
    takes us back and every row arrives once."""
    d = Deployment([("public.items", False)], SCHEMA)
    writers = []
    cons = None
    try:
        us, eu, apac = d["us"], d["eu"], d["apac"]
        start_sources(us, apac)
        cons = Consumer(eu, "only")
        held = wait_leases(eu, [2])
        writers = [Writer(us, 1_000_000), Writer(apac, 2_000_000)]
        for w in writers:
            w.start()
        time.sleep(3)

        dsn = xrtest.pg_dsn("eu", eu.db, eu.port)
        with psycopg.connect(dsn, autocommit=True) as thief:
            # end the consumer's session and take us's lease before it can
            (pid,) = held
            thief.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.time() + 10
            while not thief.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                    (LEASE_CLASS, lease_key("us"))).fetchone()[0]:
                assert time.time() < deadline, "the consumer kept us's lease"
                time.sleep(0.01)
            cons.wait_log("lease of region us lost")
            time.sleep(1)    # what was in flight before the lock is in
            count = lambda r: eu.sql("SELECT count(*) FROM items WHERE "
                                     "region = %s", (r,))[0][0]
            us_before, apac_before = count("us"), count("apac")
            time.sleep(5)
            assert count("us") == us_before, "applied without the lease"
            assert count("apac") > apac_before, "apac stopped too"
            assert us.sql("SELECT count(*) FROM items WHERE region = 'us'")[0][0] \
                > us_before      # us kept writing meanwhile
        # the thief's session ended: the lease is free
        cons.wait_log("took region us", timeout=30, count=2)
        expect = finish(d, writers)
        assert eu.sql("SELECT count(*) FROM xregion.conflicts")[0][0] == 0
    finally:
        for w in writers:
            w.stop.set()
        if cons:
            cons.close()
        d.close()


def explain(us, eu):
    """On a failure: what eu lacks, and where its positions stand."""
    for t in ("a", "b"):
        ua = {r[0] for r in us.sql(f"SELECT id FROM {t}")}
        ea = {r[0] for r in eu.sql(f"SELECT id FROM {t}")}
        print(f"eu lacks {len(ua - ea)} rows of {t}: {sorted(ua - ea)[:20]}")
    print("eu's positions:", eu.sql("SELECT region, commit_lsn FROM "
                                    "xregion.applied ORDER BY 1"))
    print("eu's offsets:", eu.sql("SELECT topic, partition, next_offset FROM "
                                  "xregion.offsets ORDER BY 1, 2"))


def test_two_producers_of_a_region_on_disjoint_tables():
    """us runs a second producer (producer.stream: orders) for table b, with
    a slot and publication of its own, beside its main one for table a;
    some transactions write both. The orders producer is killed with -9
    for a few seconds while both tables keep changing, so the main stream
    runs ahead of it: eu keeps one applied position per stream and applies
    every transaction of both, once (one position for the region would
    skip the late stream's older transactions as copies)."""
    tables = [("public.a", False), ("public.b", False, {"stream": "orders"})]
    d = Deployment(tables, "CREATE TABLE a (id bigint PRIMARY KEY, n int);"
                           "CREATE TABLE b (id bigint PRIMARY KEY, n int);",
                   regions=("us", "eu"))
    orders = None
    stop = threading.Event()
    try:
        us, eu = d["us"], d["eu"]
        with open(us.config) as f:
            conf = f.read()
        orders_conf = os.path.join(d.tmp, "us-orders.yaml")
        # the same config, but producer.stream and a slot of its own
        # (this deployment sets the main one's slot; the publication is
        # left to its default, xregion_orders)
        orders_slot = f"{us.slot}_orders"
        with open(orders_conf, "w") as f:
            f.write(conf.replace("producer:\n", "producer:\n  stream: orders\n", 1)
                        .replace(f"  slot: {us.slot}\n", f"  slot: {orders_slot}\n"))

        def xr(*args, check=True):
            r = subprocess.run([us.binary, *args, "-c", orders_conf],
                               capture_output=True, text=True, timeout=120,
                               env=us.env())
            assert not check or r.returncode == 0, r.stdout + r.stderr
            return r

        xr("setup")
        slots = us.sql("SELECT slot_name FROM pg_replication_slots WHERE "
                       "database = current_database() ORDER BY 1")
        assert slots == [(us.slot,), (orders_slot,)], slots
        pubs = us.sql("SELECT pubname, tablename FROM pg_publication_tables "
                      "ORDER BY 1")
        assert ("xregion", "a") in pubs and ("xregion_orders", "b") in pubs \
            and len(pubs) == 2, pubs

        # a config of the stream that takes the main one's slot
        with open(orders_conf + ".bad", "w") as f:
            f.write(conf.replace("producer:\n", "producer:\n  stream: orders\n", 1))
        r = subprocess.run([us.binary, "setup", "-c", orders_conf + ".bad"],
                           capture_output=True, text=True, timeout=120,
                           env=us.env())
        assert r.returncode == 1 and "needs a slot and a publication of its own" \
            in r.stdout + r.stderr, r.stdout + r.stderr

        # its config runs no consumer (its origins would not be the region's)
        r = xr("consume", check=False)
        assert r.returncode == 1 and "runs only xregion produce" in r.stderr, \
            r.stdout + r.stderr

        d.start()
        logf = open(os.path.join(d.tmp, "us-orders.log"), "a")

        def start_orders():
            return subprocess.Popen([us.binary, "produce", "-c", orders_conf],
                                    stdout=logf, stderr=subprocess.STDOUT,
                                    env=us.env())
        orders = start_orders()
        done = {"txns": 0}
        errors = []

        def write():
            try:
                dsn = xrtest.pg_dsn("us", us.db, us.port)
                with psycopg.connect(dsn, autocommit=True) as c:
                    i = 0
                    while not stop.is_set():
                        with c.transaction():
                            if i % 3 != 1:
                                c.execute("INSERT INTO a VALUES (%s, 0)", (i,))
                                c.execute("UPDATE a SET n = n + 1 WHERE id = %s",
                                          (i,))
                            if i % 3 != 0:
                                c.execute("INSERT INTO b VALUES (%s, 0)", (i,))
                                c.execute("UPDATE b SET n = n + 2 WHERE id = %s",
                                          (i,))
                        i += 1
                        done["txns"] = i
                        time.sleep(0.01)
            except Exception as e:
                errors.append(e)

        w = threading.Thread(target=write, daemon=True)
        w.start()
        time.sleep(3)
        orders.kill()
        orders.wait(30)
        time.sleep(4)     # the main stream runs ahead meanwhile
        orders = start_orders()
        time.sleep(3)
        stop.set()
        w.join(30)
        assert not errors, errors
        n = done["txns"]
        na = len([i for i in range(n) if i % 3 != 1])
        nb = len([i for i in range(n) if i % 3 != 0])
        try:
            d.converge("a", expect_rows=na, timeout=60)
            d.converge("b", expect_rows=nb, timeout=60)
        except AssertionError:
            explain(us, eu)
            raise

        assert eu.sql("SELECT count(*), sum(n) FROM a") == [(na, na)]
        assert eu.sql("SELECT count(*), sum(n) FROM b") == [(nb, 2 * nb)]
        keys = [k for (k,) in eu.sql("SELECT region FROM xregion.applied "
                                     "ORDER BY 1")]
        assert keys == ["us", "us/orders"], keys
        assert eu.sql("SELECT count(*) FROM xregion.conflicts")[0][0] == 0
        print(f"{n} transactions: {na} to a (main stream), {nb} to b (orders)")

        # the orders config's teardown drops only what is the stream's
        orders.kill()
        orders.wait(30)
        xr("teardown")
        assert us.sql("SELECT slot_name FROM pg_replication_slots WHERE "
                      "database = current_database()") == [(us.slot,)]
        assert us.sql("SELECT pubname FROM pg_publication") == [("xregion",)]
        assert us.sql("SELECT region FROM xregion.producer") == [("us",)]
    finally:
        stop.set()
        if orders and orders.poll() is None:
            orders.kill()
            orders.wait(30)
        try:   # (a slot left behind keeps its database from being dropped)
            d["us"].sql("SELECT pg_drop_replication_slot(slot_name) FROM "
                        "pg_replication_slots WHERE slot_name = %s",
                        (f"{d['us'].slot}_orders",))
        except Exception as e:
            print(f"dropping the orders slot: {e}")
        d.close()
