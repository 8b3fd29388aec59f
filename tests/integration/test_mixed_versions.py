"""Mixed versions (issue 14, part 3): eu runs the previous event format's
release, built here from git, while us and apac run this one, under load
in every direction.  Every event decodes (each side resolves the other's
writer schema from the schemas topic), nothing is dead-lettered, and all
three regions converge; then eu is upgraded to this build and rolled back
to the old one again, under load, with the same outcome.

PREVIOUS is the last commit before the envelope changed (466038a added
source.tx_index and the transaction end records): its producer publishes
no end records and its consumer knows neither.  XR_PREVIOUS_REV overrides.
"""
import os
import subprocess
import threading
import time

import psycopg
import psycopg.errors
import pytest

import xrtest
from xrdeploy import Deployment

PREVIOUS = os.environ.get("XR_PREVIOUS_REV", "466038a^")
SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, region text, n int, note text);
CREATE TABLE orders (id bigint PRIMARY KEY, total numeric(12,2), at timestamptz);
"""
TABLES = [("public.items", False), ("public.orders", False)]


@pytest.fixture(scope="module")
def old_binary(tmp_path_factory):
    if subprocess.run(["git", "-C", xrtest.ROOT, "rev-parse", "--verify",
                       PREVIOUS], capture_output=True).returncode:
        pytest.skip(f"{PREVIOUS} is not in this checkout's history")
    d = tmp_path_factory.mktemp("previous")
    src, build = d / "src", d / "build"
    src.mkdir()
    archive = subprocess.run(["git", "-C", xrtest.ROOT, "archive", PREVIOUS],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    subprocess.run(["cmake", "-S", str(src), "-B", str(build),
                    "-DCMAKE_BUILD_TYPE=RelWithDebInfo"], check=True,
                   capture_output=True, timeout=300)
    subprocess.run(["cmake", "--build", str(build), "-j2", "--target",
                    "xregion"], check=True, capture_output=True, timeout=900)
    return str(build / "xregion")


class Writer(threading.Thread):
    """Inserts in its own key range, updates its rows and the others'."""

    def __init__(self, node, base):
        super().__init__(daemon=True)
        self.node, self.base = node, base
        self.stop = threading.Event()
        self.txns = 0
        self.deadlocks = 0   # with setup's DDL during a switch: retried
        self.error = None

    def run(self):
        try:
            dsn = xrtest.pg_dsn(self.node.region, self.node.db, self.node.port)
            with psycopg.connect(dsn, autocommit=True) as c:
                i = 0
                while not self.stop.is_set():
                    lo = self.base + i
                    try:
                        self.one(c, lo, i)
                    except psycopg.errors.DeadlockDetected:
                        self.deadlocks += 1
                        continue
                    self.txns += 1
                    i += 5
                    time.sleep(0.05)
        except Exception as e:
            self.error = e

    def one(self, c, lo, i):
        with c.transaction():
            c.execute("INSERT INTO items SELECT g, %s, 0, repeat('x', ("
                      "g %% 50)::int) FROM generate_series(%s::bigint, "
                      "%s::bigint) g", (self.node.region, lo, lo + 4))
            c.execute("INSERT INTO orders VALUES (%s, %s, now())",
                      (lo, (lo % 1000) / 7))
            c.execute("UPDATE items SET n = n + 1, note = %s "
                      "WHERE id %% 97 = %s", (self.node.region, i % 97))
            if i % 10 == 0:
                c.execute("DELETE FROM items WHERE id = %s", (lo,))


def start_load(d, base):
    ws = [Writer(d[r], base + k * 100_000_000)
          for k, r in enumerate(("us", "eu", "apac"))]
    for w in ws:
        w.start()
    return ws


def stop_load(ws):
    for w in ws:
        w.stop.set()
    for w in ws:
        w.join(30)
        assert w.error is None, w.error
        assert w.txns > 10, w.node.region


def settled(d):
    for t in ("items", "orders"):
        d.converge(t, timeout=180)
    for r in ("us", "eu", "apac"):
        dl = xrtest.topic_size(f"{d.prefix}.{r}._dlq")
        assert dl == 0, f"{r} dead-lettered {dl}:\n{d[r].read_log()[-3000:]}"
        assert d[r].proc.poll() is None, d[r].read_log()[-3000:]


def switch(d, region, binary):
    n = d[region]
    assert n.stop() == 0
    n.binary = binary
    # The previous release's setup has no lock timeout: under the writers'
    # load the deadlock detector may choose it, and its operator runs it
    # again.  This build's setup must get through on its own.
    for attempt in range(3 if binary != xrtest.XREGION else 1):
        r = n.xregion("setup", check=False)
        if r.returncode == 0 or "deadlock detected" not in r.stderr + r.stdout:
            break
    assert r.returncode == 0, f"setup ({region}):\n{r.stdout}{r.stderr}"
    n.start()
    n.wait_log("streaming slot", count=n.read_log().count("streaming slot") + 1)


def test_previous_release_in_one_region(old_binary):
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu", "apac"),
                   binaries={"eu": old_binary})
    try:
        d.start()
        ws = start_load(d, 1)
        time.sleep(8)
        stop_load(ws)
        settled(d)
        # the old eu published no transaction end records, us did
        assert xrtest.topic_size(f"{d.prefix}.eu._tx") == 0
        assert xrtest.topic_size(f"{d.prefix}.us._tx") > 0
        # upgrade eu, then roll it back, each while all three write
        for base, binary in ((10_000_000, xrtest.XREGION),
                             (20_000_000, old_binary)):
            ws = start_load(d, base)
            time.sleep(3)
            switch(d, "eu", binary)
            time.sleep(3)
            stop_load(ws)
            settled(d)
            if binary == xrtest.XREGION:
                assert xrtest.topic_size(f"{d.prefix}.eu._tx") > 0
    finally:
        d.close()
