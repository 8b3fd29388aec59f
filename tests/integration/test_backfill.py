"""Backfill: a donor region publishes the rows it holds as snapshot_read
events (producer/backfill.h), so that a region that never saw their changes
(a new region whose consumer starts after them) ends with the same rows,
under continuous writes, with each read carrying its row's own version.
"""
import datetime
import json
import os
import random
import signal
import threading
import time

import psycopg
import pytest

import xrtest
from xrdeploy import Deployment

SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, n int, note text, big text);
CREATE TABLE vitems (id bigint PRIMARY KEY, n int);
CREATE TABLE secret (id bigint PRIMARY KEY, ssn text);
CREATE TABLE nokey (id bigint PRIMARY KEY, v text);
CREATE TABLE people (id bigint PRIMARY KEY, email text UNIQUE, who text);
ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;
"""
TABLES = [("public.items", False),
          ("public.vitems", False, {"conflict": "vclock"}),
          ("public.secret", True),
          ("public.nokey", False),
          ("public.people", False)]


def start(d, regions):
    for r in regions:
        d[r].start()
    for r in regions:
        d[r].wait_log("streaming slot")
        d[r].wait_log("subscribed to")


def checksums(d, regions, table):
    return {r: d[r].checksum(table) for r in regions}


def converge(d, regions, table, timeout=120):
    end = time.time() + timeout
    while True:
        sums = checksums(d, regions, table)
        if len(set(sums.values())) == 1:
            return next(iter(sums.values()))
        if time.time() > end:
            raise AssertionError(f"{table} did not converge: {sums}\n"
                                 f"{differences(d, regions, table)}")
        time.sleep(0.5)


def differences(d, regions, table):
    """What a failed converge says first: the rows that differ between the
    regions (up to 20 keys), with each key's versions entry where it is
    missing, then the end of each log."""
    rows = {r: {row[0]: row for row in d[r].sql(f"SELECT * FROM {table}")}
            for r in regions}
    keys = set().union(*rows.values())
    odd = sorted(k for k in keys
                 if len({rows[r].get(k) for r in regions}) > 1)
    lines = [f"{len(odd)} key(s) differ: {odd[:20]}"]
    for k in odd[:20]:
        lines.append(f"  {k}: " + "; ".join(
            f"{r} {rows[r].get(k, 'missing')}" for r in regions))
        for r in regions:
            if k not in rows[r]:
                v = d[r].sql(f'SELECT * FROM xregion."public.{table}" '
                             "WHERE id = %s", (k,))
                lines.append(f"    {r} versions entry: {v}")
    lines += [f"--- {r}\n{d[r].read_log()[-3000:]}" for r in regions
              if os.path.exists(d[r].log)]
    return "\n".join(lines)


def join(d, donor, region, tmp_path, *args):
    """The join procedure (docs/backfill.md): the donor writes the manifest
    and submits the backfill, the new region seeks to the manifest, then
    starts."""
    m = str(tmp_path / f"{region}.manifest.json")
    r = d[donor].xregion("backfill", "--for", region, "--manifest", m,
                         "--no-wait", *args)
    assert "manifest for region" in r.stdout, r.stdout
    r = d[region].xregion("seek", "--manifest", m)
    assert "offset(s) stored" in r.stdout, r.stdout
    start(d, (region,))
    return m


class Writer(threading.Thread):
    """Random transactions on one region until stopped: updates, deletes,
    inserts (its own key range), several rows per transaction, TOASTed
    values changed and left unchanged, vclock rows."""

    def __init__(self, node, base, seed):
        super().__init__(daemon=True)
        self.node, self.base, self.rnd = node, base, random.Random(seed)
        self.stop = threading.Event()
        self.txns = 0
        self.error = None

    def run(self):
        try:
            with xrtest.connect(self.node.region, self.node.db,
                                self.node.port) as c:
                nxt = self.base
                while not self.stop.is_set():
                    with c.transaction():
                        for _ in range(self.rnd.randint(1, 4)):
                            k = self.rnd.choice((1, 2, 3, 4, 5))
                            i = self.rnd.choice((self.rnd.randint(1, 3000),
                                                 self.rnd.randint(100001, 101000)))
                            if k == 1:
                                c.execute("UPDATE items SET n = n + 1 WHERE id = %s", (i,))
                            elif k == 2:
                                c.execute("UPDATE items SET big = repeat(md5(random()::text), 100) "
                                          "WHERE id = %s", (i,))
                            elif k == 3:
                                c.execute("DELETE FROM items WHERE id = %s", (i,))
                            elif k == 4:
                                nxt += 1
                                c.execute("INSERT INTO items VALUES (%s, 1, 'new', NULL)", (nxt,))
                                c.execute("UPDATE items SET n = 2 WHERE id = %s", (nxt,))
                            else:
                                c.execute("INSERT INTO vitems VALUES (%s, 1) ON CONFLICT (id) "
                                          "DO UPDATE SET n = vitems.n + 1",
                                          (self.rnd.randint(1, 400),))
                    self.txns += 1
                    time.sleep(0.01)
        except Exception as e:  # reported by the test
            self.error = e


def us_of(t):
    """µs since the epoch of a decoded timestamp-micros."""
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (t - epoch) // datetime.timedelta(microseconds=1)


def job(node, table="items"):
    return node.sql("SELECT id, state, rows_sent, rows_skipped, chunks, "
                    "rows_total FROM xregion.backfills WHERE table_name = %s "
                    "ORDER BY id DESC LIMIT 1", (table,))[0]


@pytest.fixture
def trio():
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu", "sa"),
                   ports={"sa": 15432})
    yield d
    d.close()


def test_new_region_joins_under_writes(trio, tmp_path):
    """sa's consumer starts after the history (a donor manifest), us backfills
    it while us and eu keep writing: sa ends identical, PII excluded."""
    d = trio
    start(d, ("us", "eu"))
    d["us"].sql("INSERT INTO items SELECT g, g % 7, 'us ' || g, CASE WHEN "
                "g % 10 = 0 THEN repeat(md5(g::text), 200) END "
                "FROM generate_series(1, 3000) g")
    d["us"].sql("INSERT INTO vitems SELECT g, 0 FROM generate_series(1, 200) g")
    d["us"].sql("INSERT INTO secret VALUES (1, '123-45-6789')")
    d["eu"].sql("INSERT INTO items SELECT g, 0, 'eu', NULL "
                "FROM generate_series(100001, 101000) g")
    d["eu"].sql("INSERT INTO vitems SELECT g, 0 FROM generate_series(201, 400) g")
    converge(d, ("us", "eu"), "items")
    d["eu"].sql("UPDATE items SET n = n + 100, note = 'eu wrote' WHERE id % 50 = 0")
    d["eu"].sql("UPDATE vitems SET n = n + 1 WHERE id % 3 = 0")
    converge(d, ("us", "eu"), "items")
    converge(d, ("us", "eu"), "vitems")

    writers = [Writer(d["us"], 200000, 1), Writer(d["eu"], 300000, 2)]
    for w in writers:
        w.start()
    time.sleep(1)
    join(d, "us", "sa", tmp_path, "--chunk-size", "250", "--rate", "2000")
    r = d["us"].xregion("backfill", "--for", "sa")
    assert "following it" in r.stdout and "done" in r.stdout, r.stdout + r.stderr
    time.sleep(2)
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(30)
        assert w.error is None, w.error
        assert w.txns > 20, "the writers did not write during the backfill"
    for t in ("items", "vitems"):
        converge(d, ("us", "eu", "sa"), t)
    assert d["sa"].sql("SELECT count(*) FROM secret")[0][0] == 0
    assert d["sa"].sql("SELECT count(*) FROM items WHERE big IS NOT NULL")[0][0] > 0
    _, state, sent, skipped, chunks, _ = job(d["us"])
    assert state == "done" and sent > 3000 and chunks >= 8
    vstate = job(d["us"], "vitems")
    assert vstate[1] == "done" and vstate[2] >= 300

    # a finished backfill is not run again
    r = d["us"].xregion("backfill", "--for", "sa")
    assert r.stdout.count("nothing to do") == 4, r.stdout
    # the manifest started sa after the history: the backfill brought it
    m = json.load(open(tmp_path / "sa.manifest.json"))
    assert m["donor"] == "us" and any(
        o["next_offset"] > 0 for o in m["offsets"]
        if o["topic"].startswith(f"{d.prefix}.eu.")), m
    assert d["us"].sql("SELECT count(*) FROM xregion.backfills")[0][0] == 4


def test_killed_backfill_resumes(trio, tmp_path):
    """kill -9 of the donor's producer mid-table: the restarted producer goes
    on from its last chunk on Kafka; the new region ends identical."""
    d = trio
    start(d, ("us", "eu"))
    d["us"].sql("INSERT INTO items SELECT g, g, 'x', NULL "
                "FROM generate_series(1, 20000) g")
    converge(d, ("us", "eu"), "items")
    join(d, "us", "sa", tmp_path, "--table", "items", "--chunk-size", "500",
         "--rate", "4000")
    end = time.time() + 60
    while job(d["us"])[2] < 3000:
        assert time.time() < end, d["us"].read_log()[-3000:]
        time.sleep(0.1)
    d["us"].stop(signal.SIGKILL)
    _, state, sent_at_kill, _, _, total = job(d["us"])
    assert state == "running" and 3000 <= sent_at_kill < 20000
    d["us"].sql("UPDATE items SET n = -n WHERE id % 1000 = 0")
    d["us"].start()
    r = d["us"].xregion("backfill", "--table", "items", "--for", "sa")
    assert "following it" in r.stdout and "done" in r.stdout, r.stdout
    converge(d, ("us", "eu", "sa"), "items")
    # it went on from the last chunk: one job, and at most the chunks in
    # flight at the kill were sent twice
    assert d["us"].sql("SELECT count(*) FROM xregion.backfills")[0][0] == 1
    _, state, sent, skipped, chunks, _ = job(d["us"])
    # Rows changed while their chunk was read are left to the stream
    # (skipped): when the kill came before the slot passed the 20,000-row
    # INSERT, the restarted producer decodes it again, inside a window.
    assert state == "done" and 20000 <= sent + skipped, job(d["us"])
    assert sent <= 20000 + 500, job(d["us"])
    reads = [m for m in xrtest.read_topic(f"{d.prefix}.us.public.items",
                                          timeout=30)
             if dict(m.headers() or []).get("xr-for") == b"sa"]
    # every row counted sent is on Kafka, at most the chunks in flight at
    # the kill twice
    assert sent <= len(reads) <= 20000 + 4 * 500, (len(reads), job(d["us"]))


@pytest.fixture
def duo():
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"))
    yield d
    d.close()


def test_rows_changed_while_read_and_versions(duo):
    """A row updated and one deleted while their chunk is read are left to
    the stream (never shipped stale); every read carries its row's version;
    a read never overwrites a newer write, in any order of arrival."""
    d = duo
    os.environ["XREGION_BACKFILL_PAUSE_MS"] = "3000"
    try:
        start(d, ("us",))
    finally:
        del os.environ["XREGION_BACKFILL_PAUSE_MS"]
    start(d, ("eu",))
    d["us"].sql("INSERT INTO items SELECT g, g, 'us', NULL "
                "FROM generate_series(1, 50) g")
    converge(d, ("us", "eu"), "items")
    d["eu"].sql("UPDATE items SET note = 'eu' WHERE id BETWEEN 20 AND 29")
    converge(d, ("us", "eu"), "items")

    d["us"].xregion("backfill", "--table", "items", "--no-wait")
    d["us"].wait_log("chunk of 50 rows read")
    d["us"].sql("UPDATE items SET note = 'changed while read' WHERE id = 5")
    d["us"].sql("DELETE FROM items WHERE id = 6")
    end = time.time() + 60
    while job(d["us"])[1] != "done":
        assert time.time() < end, d["us"].read_log()[-3000:]
        time.sleep(0.2)
    _, _, sent, skipped, _, _ = job(d["us"])
    assert skipped >= 2 and sent == 50 - skipped
    converge(d, ("us", "eu"), "items")
    assert d["eu"].sql("SELECT note FROM items WHERE id = 5") == [("changed while read",)]
    assert d["eu"].sql("SELECT count(*) FROM items WHERE id = 6") == [(0,)]

    reg = xrtest.schema_registry(d.prefix)
    msgs = xrtest.read_topic(f"{d.prefix}.us.public.items", timeout=30)
    reads = {}
    for m in msgs:
        h = {k: v.decode() for k, v in (m.headers() or [])}
        ev = xrtest.decode(m.value(), reg, schema_id=h["xr-schema"])
        if ev["op"] == "snapshot_read":
            reads[ev["after"]["id"]] = (ev, h)
    assert 5 not in reads and 6 not in reads
    assert len(reads) == sent
    versions = dict((i, (ts, region, clsn, lsn)) for i, ts, region, clsn, lsn in d["us"].sql(
        "SELECT t.id, (x).ts, (x).region, (x).clsn, (x).lsn FROM items t "
        "LEFT JOIN xregion.\"public.items\" v USING (id), LATERAL "
        "(SELECT xregion.version_of(t.xmin, v.ts, v.region, v.clsn, v.lsn, v.xid) AS x) s"))
    for i, (ev, h) in reads.items():
        ts, region, clsn, lsn = versions[i]
        src = ev["source"]
        assert us_of(src["commit_ts"]) == ts, i
        assert src["origin"] == region and src["region"] == "us"
        assert (src["commit_lsn"], src["lsn"]) == (clsn, lsn)
        assert "xr-for" not in h
    assert {reads[i][0]["source"]["origin"] for i in range(20, 30)} == {"eu"}

    # A read older than a write it meets is skipped: eu writes rows 40-44
    # while stopped, us backfills again, eu starts and meets the reads first.
    d["eu"].stop()
    d["eu"].sql("UPDATE items SET note = 'eu newer' WHERE id BETWEEN 40 AND 44")
    r = d["us"].xregion("backfill", "--table", "items", "--again")
    assert "done" in r.stdout
    start(d, ("eu",))
    converge(d, ("us", "eu"), "items")
    assert d["us"].sql("SELECT count(*) FROM items WHERE note = 'eu newer'") == [(5,)]


def test_progress_waits_for_kafka(duo):
    """A chunk's progress is recorded only once Kafka has acknowledged its
    reads: with the broker stopped after the job starts, rows_sent stays 0
    (a kill -9 then resumes from the first chunk, losing nothing); once the
    broker is back the job ends, and every row counted sent is on Kafka."""
    d = duo
    start(d, ("us", "eu"))
    d["us"].sql("INSERT INTO items SELECT g, g, 'x', NULL "
                "FROM generate_series(1, 3000) g")
    converge(d, ("us", "eu"), "items")
    # a first run publishes the backfill's schemas (a synchronous send,
    # which would wait for the broker)
    r = d["us"].xregion("backfill", "--table", "items", "--for", "eu")
    assert "done" in r.stdout, r.stdout
    with xrtest.kafka_paused():
        d["us"].xregion("backfill", "--table", "items", "--for", "eu",
                        "--chunk-size", "500", "--again", "--no-wait")
        d["us"].wait_log("chunks of 500 rows")
        # the first chunks are read and queued in librdkafka, unacknowledged:
        # their progress must not be recorded
        time.sleep(4)
        _, state, sent, _, chunks, _ = job(d["us"])
        assert (state, sent, chunks) == ("running", 0, 0), job(d["us"])
    end = time.time() + 90
    while job(d["us"])[1] != "done":
        assert time.time() < end, (job(d["us"]), d["us"].read_log()[-3000:])
        time.sleep(0.2)
    assert job(d["us"])[2] == 3000, job(d["us"])
    reads = [m for m in xrtest.read_topic(f"{d.prefix}.us.public.items",
                                          timeout=30)
             if dict(m.headers() or []).get("xr-for") == b"eu"]
    # both jobs' reads, each row at least once
    assert len(reads) >= 6000, len(reads)
    converge(d, ("us", "eu"), "items")


def test_refusals_and_dry_run(duo):
    d = duo
    start(d, ("us",))
    d["us"].sql("INSERT INTO items SELECT g, g, 'us', NULL FROM generate_series(1, 10) g")
    r = d["us"].xregion("backfill", "--table", "items", "--dry-run")
    assert "about 10 rows in 1 chunk(s) of 2000" in r.stdout, r.stdout
    assert "nothing was written" in r.stdout
    assert d["us"].sql("SELECT count(*) FROM xregion.backfills") == [(0,)]
    for args, text in ((["--table", "secret"], "not marked pii: false"),
                       (["--table", "nosuch"], "is not in"),
                       (["--for", "us"], "that is this region"),
                       (["--for", "mars"], "not in regions"),
                       (["--rate", "-1"], "--rate")):
        r = d["us"].xregion("backfill", *args, check=False)
        assert r.returncode == 2 and text in r.stderr, (args, r.stderr)
    d["us"].stop()
    d["us"].sql("ALTER TABLE nokey DROP CONSTRAINT nokey_pkey")
    r = d["us"].xregion("backfill", "--table", "nokey", check=False)
    assert r.returncode == 2 and "has no primary key" in r.stderr, r.stderr
    r = d["us"].xregion("backfill", "--help")
    assert "--chunk-size" in r.stdout and "--dry-run" in r.stdout
    r = d["us"].xregion("backfill", "--status")
    assert "no backfills" in r.stdout


def test_joining_region_keeps_deletes(trio, tmp_path):
    """A delete the donor made before the manifest, of a key whose older
    write from another region the donor has not applied yet: the new region
    gets the donor's tombstone, so that older write, read from the other
    region's topic after the manifest, cannot bring the row back."""
    d = trio
    start(d, ("us", "eu"))
    d["us"].sql("INSERT INTO items SELECT g, 0, 'us', NULL FROM generate_series(1, 20) g")
    d["us"].sql("INSERT INTO vitems SELECT g, 0 FROM generate_series(1, 20) g")
    converge(d, ("us", "eu"), "items")
    converge(d, ("us", "eu"), "vitems")
    d["us"].stop()
    # eu writes first, us deletes later; us has not seen eu's writes
    d["eu"].sql("UPDATE items SET note = 'eu, older' WHERE id BETWEEN 1 AND 5")
    d["eu"].sql("UPDATE vitems SET n = 1 WHERE id BETWEEN 1 AND 5")
    d["eu"].sql("INSERT INTO nokey SELECT g, 'eu, older' FROM generate_series(1, 5) g")
    time.sleep(0.05)
    d["us"].sql("DELETE FROM items WHERE id BETWEEN 1 AND 5")
    d["us"].sql("DELETE FROM vitems WHERE id BETWEEN 1 AND 5")
    d["us"].sql("TRUNCATE nokey")
    # us publishes its deletes but does not apply eu's updates yet
    d["us"].start("produce")
    d["us"].wait_log("streaming slot", count=2)
    time.sleep(2)
    join(d, "us", "sa", tmp_path)
    end = time.time() + 60
    while any(job(d["us"], t)[1] != "done" for t in ("items", "vitems", "nokey")):
        assert time.time() < end, d["us"].read_log()[-3000:]
        time.sleep(0.2)
    assert d["us"].sql("SELECT sum(tombstones_sent) FROM xregion.backfills "
                       "WHERE state = 'done'")[0][0] >= 10
    d["us"].stop()
    start(d, ("us",))
    for t in ("items", "vitems", "nokey"):
        converge(d, ("us", "eu", "sa"), t)
    assert d["sa"].sql("SELECT count(*) FROM nokey") == [(0,)]
    assert d["sa"].sql("SELECT count(*) FROM items WHERE id <= 5") == [(0,)]
    assert d["sa"].sql("SELECT count(*) FROM vitems WHERE id <= 5") == [(0,)]


def test_joining_region_gets_hidden_rows(trio, tmp_path):
    """A row hidden by a unique key conflict in the donor reaches the new
    region too, hidden there as well, and comes back everywhere when the
    winner is deleted."""
    d = trio
    # us and eu each take a@x, not seeing each other: eu's, later, wins
    d["us"].sql("INSERT INTO people VALUES (1, 'a@x', 'us')")
    time.sleep(0.05)
    d["eu"].sql("INSERT INTO people VALUES (2, 'a@x', 'eu')")
    start(d, ("us", "eu"))
    converge(d, ("us", "eu"), "people")
    end = time.time() + 60
    while d["us"].sql("SELECT count(*) FROM xregion.hidden") != [(1,)]:
        assert time.time() < end, "no hidden row in us"
        time.sleep(0.3)
    assert d["us"].sql("SELECT id FROM people") == [(2,)]
    join(d, "us", "sa", tmp_path, "--table", "people")
    end = time.time() + 60
    while job(d["us"], "people")[1] != "done":
        assert time.time() < end, d["us"].read_log()[-3000:]
        time.sleep(0.2)
    converge(d, ("us", "eu", "sa"), "people")
    wait = time.time() + 60
    while d["sa"].sql("SELECT key FROM xregion.hidden") != [({"id": "1"},)]:
        assert time.time() < wait, d["sa"].sql("SELECT * FROM xregion.hidden")
        time.sleep(0.3)
    # the winner goes: us's row comes back in every region, sa included
    d["eu"].sql("DELETE FROM people WHERE id = 2")
    wait = time.time() + 60
    while any(d[r].sql("SELECT id, who FROM people") != [(1, "us")]
              for r in ("us", "eu", "sa")):
        assert time.time() < wait, {r: d[r].sql("SELECT * FROM people")
                                    for r in ("us", "eu", "sa")}
        time.sleep(0.3)
