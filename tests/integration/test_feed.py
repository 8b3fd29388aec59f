"""xregion feed: the change stream as flat rows in Avro container files,
exactly once, read back by independent readers (fastavro, and avro-tools,
the reference implementation).

The main test runs a seeded random write load in three regions (several
writes to one row in a transaction, delete and re-insert, key changes,
TOASTed values changed and left unchanged, several tables per transaction,
a 10,000-row transaction, conflicting writes to shared keys, a truncate)
while the feeder is killed with SIGKILL again and again.  Then:
  - the rows in the files are exactly the rows the events on Kafka make
    (each decoded with fastavro from the topics): none missing, none twice;
  - for every table, the newest row of each key by (__version, __region,
    __lsn) reconstructs the table every region ends with;
  - the PII table is nowhere in the files.
"""
import datetime
import glob
import json
import os
import random
import re
import signal
import subprocess
import threading
import time

import duckdb
import fastavro
import psycopg
import pytest

import xrtest
from xrdeploy import Deployment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AVRO_TOOLS = os.environ.get("XR_AVRO_TOOLS", os.path.join(
    ROOT, ".stack", "tools", "avro-tools-1.12.1.jar"))

SCHEMA = """
CREATE TABLE orders (id bigint PRIMARY KEY, n int, note text,
                     amount numeric(10,2), at timestamptz);
CREATE TABLE docs (id bigint PRIMARY KEY, v int, body text);
CREATE TABLE vitems (id bigint PRIMARY KEY, n int);
CREATE TABLE wipe (id bigint PRIMARY KEY, n int);
CREATE TABLE secret (id bigint PRIMARY KEY, ssn text);
"""
TABLES = [("public.orders", False), ("public.docs", False),
          ("public.vitems", False, {"conflict": "vclock"}),
          ("public.wipe", False), ("public.secret", True)]
FED = ("orders", "docs", "vitems", "wipe")
KEYS = {"orders": ["id"], "docs": ["id"], "vitems": ["id"], "wipe": ["id"]}


# ---- the feeder ------------------------------------------------------------

class Feeder:
    def __init__(self, node, out, *extra):
        self.node, self.out, self.extra = node, out, extra
        self.proc = None
        self.log = os.path.join(node.dep.tmp, "feed.log")

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen(
            [xrtest.XREGION, "feed", "-c", self.node.config, "--out", self.out,
             *self.extra], stdout=self.logf, stderr=subprocess.STDOUT)

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=60)
        self.logf.close()
        self.proc = None
        return rc

    def read_log(self):
        with open(self.log) as f:
            return f.read()


def read_files(out):
    """{table: [row, ...]} of every committed file, and the files' metadata."""
    rows, metas = {}, []
    for fn in sorted(glob.glob(os.path.join(out, "*", "dt=*", "hr=*", "*.avro"))):
        with open(fn, "rb") as fh:
            r = fastavro.reader(fh)
            meta = {k: (v.decode() if isinstance(v, bytes) else v)
                    for k, v in r.metadata.items()}
            meta["path"] = fn
            meta["rows"] = list(r)
        metas.append(meta)
        rows.setdefault(meta["xr.table"].split(".", 1)[1], []).extend(meta["rows"])
    return rows, metas


def newer(a, b):
    return (a["__version"], a["__region"], a["__lsn"]) > \
           (b["__version"], b["__region"], b["__lsn"])


def reconstruct(rows, key):
    """The state the rows describe: the newest row of each key, then the
    newest truncate drops every key older than it."""
    state, trunc = {}, None
    for r in rows:
        if r["__op"] == "truncate":
            if trunc is None or newer(r, trunc):
                trunc = r
            continue
        k = tuple(r[c] for c in key)
        if k not in state or newer(r, state[k]):
            state[k] = r
    out = {}
    for k, r in state.items():
        if r["__deleted"] or (trunc is not None and not newer(r, trunc)):
            continue
        assert not r["__unchanged"], f"the state of {k} has unsent values: {r}"
        out[k] = {c: v for c, v in r.items() if not c.startswith("__")}
    return out


def table_rows(node, table, key):
    with xrtest.connect(node.region, node.db, node.port) as c:
        c.execute("SET TIME ZONE 'UTC'")
        cur = c.execute(f"SELECT * FROM {table}")
        cols = [d.name for d in cur.description]
        return {tuple(row[cols.index(k)] for k in key): dict(zip(cols, row))
                for row in cur.fetchall()}


def expected_rows(d, table):
    """The flat rows the events on Kafka make, decoded independently:
    {(event_id, deleted, key)} with a count each."""
    reg = xrtest.schema_registry(d.prefix)
    out = {}
    for region in d.regions:
        for m in xrtest.read_topic(f"{d.prefix}.{region}.public.{table}"):
            h = dict(m.headers() or [])
            if "xr-for" in h:
                continue
            ev = xrtest.decode(m.value(), reg, schema_id=h["xr-schema"])
            ev["event_id"] = str(ev["event_id"])
            if ev["op"] == "truncate":
                if m.partition() != 0:
                    continue
                keys = [(ev["event_id"], True, None)]
            elif ev["op"] == "delete":
                keys = [(ev["event_id"], True, ev["before"]["id"])]
            else:
                keys = [(ev["event_id"], False, ev["after"]["id"])]
                if ev["op"] == "update" and ev["before"] and \
                        ev["before"]["id"] != ev["after"]["id"]:
                    keys.append((ev["event_id"], True, ev["before"]["id"]))
            for k in keys:
                out[k] = out.get(k, 0) + 1
    return out


def got_rows(rows):
    out = {}
    for r in rows:
        k = (str(r["__event_id"]), r["__deleted"],
             None if r["__op"] == "truncate" else r["id"])
        out[k] = out.get(k, 0) + 1
    return out


# ---- the write load ----------------------------------------------------------

def big(rng):
    # Incompressible enough to be stored out of line (TOASTed).
    return rng.randbytes(3000).hex()


def region_load(node, seed, base, txns, stop_at):
    rng = random.Random(seed)
    ids = list(range(base, base + 200))
    shared = list(range(1, 40))          # every region writes these
    with xrtest.connect(node.region, node.db, node.port) as c:
        c.autocommit = True
        for i in range(txns):
            if time.time() > stop_at:
                break
            kind = rng.randrange(9)
            try:
                one_txn(c, rng, kind, i, ids, shared, node.region)
            except (psycopg.errors.DeadlockDetected,
                    psycopg.errors.LockNotAvailable):
                pass   # rolled back whole, as an application would retry


def one_txn(c, rng, kind, i, ids, shared, region):
    if True:
            with c.transaction():
                if kind == 0:            # several writes to one row
                    k = rng.choice(ids)
                    c.execute("INSERT INTO orders VALUES (%s, 0, 'a', 1.50, now()) "
                              "ON CONFLICT (id) DO NOTHING", (k,))
                    for _ in range(rng.randrange(2, 5)):
                        c.execute("UPDATE orders SET n = n + 1, note = note || 'x' "
                                  "WHERE id = %s", (k,))
                elif kind == 1:          # delete and re-insert
                    k = rng.choice(ids)
                    c.execute("DELETE FROM orders WHERE id = %s", (k,))
                    c.execute("INSERT INTO orders VALUES (%s, %s, 'again', 2.25, now())",
                              (k, i))
                elif kind == 2:          # a key change, in the region's own range
                    a, b = rng.sample(ids, 2)
                    c.execute("DELETE FROM orders WHERE id = %s", (b,))
                    c.execute("UPDATE orders SET id = %s WHERE id = %s", (b, a))
                elif kind == 3:          # TOAST changed
                    k = rng.choice(ids)
                    c.execute("INSERT INTO docs VALUES (%s, 0, %s) ON CONFLICT (id) "
                              "DO UPDATE SET body = excluded.body, v = docs.v + 1",
                              (k, big(rng)))
                elif kind == 4:          # TOAST left unchanged
                    k = rng.choice(ids)
                    c.execute("UPDATE docs SET v = v + 1 WHERE id = %s", (k,))
                elif kind == 5:          # several tables, PII among them
                    k = rng.choice(ids)
                    c.execute("INSERT INTO orders VALUES (%s, 1, 'multi', 9.99, now()) "
                              "ON CONFLICT (id) DO UPDATE SET n = orders.n + 1", (k,))
                    c.execute("INSERT INTO vitems VALUES (%s, 1) ON CONFLICT (id) "
                              "DO UPDATE SET n = vitems.n + 1", (k,))
                    c.execute("INSERT INTO secret VALUES (%s, 'x') ON CONFLICT (id) "
                              "DO UPDATE SET ssn = 'y'", (k,))
                elif kind == 6:          # conflicts on shared keys
                    k = rng.choice(shared)
                    c.execute("INSERT INTO orders VALUES (%s, %s, %s, 0.01, now()) "
                              "ON CONFLICT (id) DO UPDATE SET n = excluded.n, "
                              "note = excluded.note", (k, i, region))
                    c.execute("INSERT INTO vitems VALUES (%s, %s) ON CONFLICT (id) "
                              "DO UPDATE SET n = excluded.n", (k, i))
                elif kind == 7:
                    c.execute("DELETE FROM orders WHERE id = %s", (rng.choice(shared),))
                else:
                    c.execute("DELETE FROM vitems WHERE id = %s", (rng.choice(ids),))


# ---- tests -------------------------------------------------------------------

@pytest.fixture
def trio(tmp_path):
    d = Deployment(TABLES, SCHEMA)
    d.start()
    yield d
    d.close()


def test_feed_under_load_with_kill9_reconstructs_every_region(trio, tmp_path):
    d = trio
    out = str(tmp_path / "lake")
    feeder = Feeder(d["us"], out, "--rotate-bytes", "200k", "--idle-flush", "1",
                    "--rotate-seconds", "4", "--codec", "deflate")
    feeder.start()
    d["us"].sql("INSERT INTO wipe SELECT g, g FROM generate_series(1, 50) g")
    # 10,000 rows in one transaction, frozen by VACUUM FREEZE afterwards.
    d["eu"].sql("INSERT INTO orders SELECT g, g, 'bulk', g / 100.0, now() "
                "FROM generate_series(100001, 110000) g")
    d["eu"].sql("VACUUM (FREEZE) orders")
    stop_at = time.time() + 20
    loads = [threading.Thread(target=region_load,
                              args=(d[r], 11 + i, 1000 * (i + 1), 100000, stop_at))
             for i, r in enumerate(d.regions)]
    for t in loads:
        t.start()
    kills = 0
    rng = random.Random(7)
    while any(t.is_alive() for t in loads):
        time.sleep(rng.uniform(1.0, 4.0))
        assert feeder.proc.poll() is None, feeder.read_log()[-3000:]
        feeder.kill()
        kills += 1
        feeder.start()
    for t in loads:
        t.join()
    d["apac"].sql("TRUNCATE wipe")
    d["us"].sql("INSERT INTO wipe VALUES (1000, 1)")
    for t in FED:
        d.converge(t, timeout=180)
    feeder.kill()
    assert kills >= 3
    # The rest, up to the end of every topic, and stop.
    r = d["us"].xregion("feed", "--out", out, "--once", "--codec", "deflate")
    assert "feed: dead-lettered" not in r.stderr, r.stderr[-3000:]

    rows, metas = read_files(out)
    assert "secret" not in rows and not glob.glob(os.path.join(out, "*secret*"))
    assert not glob.glob(os.path.join(out, "_xregion", "tmp", "*"))
    log = feeder.read_log()
    assert "dropped uncommitted" in log, "no kill ever left a file behind"
    for t in FED:
        want = expected_rows(d, t)
        got = got_rows(rows.get(t, []))
        twice = {k: n for k, n in got.items() if n > 1}
        missing = set(want) - set(got)
        extra = set(got) - set(want)
        assert not twice, f"{t}: rows written twice: {list(twice)[:5]}"
        assert not missing, f"{t}: {len(missing)} rows missing: {list(missing)[:5]}"
        assert not extra, f"{t}: rows of no event: {list(extra)[:5]}"
        state = reconstruct(rows[t], KEYS[t])
        for region in d.regions:
            assert state == table_rows(d[region], t, KEYS[t]), \
                f"{t}: the files' state differs from {region}'s table"
    # Every kind of change landed, key changes as a delete and an update.
    ops = {r["__op"] for r in rows["orders"]}
    assert {"insert", "update", "delete"} <= ops
    assert any(r["__op"] == "truncate" for r in rows["wipe"])
    assert len(rows["orders"]) > 10000
    assert {m["avro.codec"] for m in metas} == {"deflate"}


def test_rotation_idle_flush_schema_change_and_readers(tmp_path):
    d = Deployment([("public.t", False), ("public.pii", True)],
                   "CREATE TABLE t (id bigint PRIMARY KEY, note text, "
                   "price numeric(8,2), tags int[]);"
                   "CREATE TABLE pii (id bigint PRIMARY KEY);",
                   regions=("us", "eu"))
    try:
        d.start()
        out = str(tmp_path / "lake")
        feeder = Feeder(d["eu"], out, "--rotate-bytes", "20k", "--idle-flush", "2",
                        "--rotate-seconds", "3", "--codec", "snappy")
        # Its own config: eu's with a metrics endpoint (eu's replicator has
        # none, so the port is the feeder's).
        with open(d["eu"].config) as f:
            cfg = f.read()
        feeder.node = type("N", (), {"config": str(tmp_path / "feed.yaml"),
                                     "dep": d["eu"].dep})()
        with open(feeder.node.config, "w") as f:
            f.write("metrics_listen: 127.0.0.1:19199\n" + cfg)
        feeder.start()
        # Size: 2,000 rows of about 100 bytes in one transaction.
        d["us"].sql("INSERT INTO t SELECT g, repeat('x', 90), g, ARRAY[g] "
                    "FROM generate_series(1, 2000) g")
        # Idle flush: the files land while the feeder runs on.
        deadline = time.time() + 30
        while len(read_files(out)[0].get("t", [])) < 2000:
            assert time.time() < deadline, feeder.read_log()[-3000:]
            time.sleep(0.5)
        _, metas = read_files(out)
        assert len(metas) > 3, "20k files: the 2,000 rows take several"
        deadline = time.time() + 10
        while True:   # published every 0.2 s
            m = metrics("http://127.0.0.1:19199/metrics")
            if (m["xregion_feed_rows_total"], m["xregion_feed_files_total"],
                    m["xregion_feed_lag_messages"]) == (2000, len(metas), 0) or \
                    time.time() > deadline:
                break
            time.sleep(0.3)
        assert m["xregion_feed_rows_total"] == 2000, m
        assert m["xregion_feed_files_total"] == len(metas), m
        assert m["xregion_feed_lag_messages"] == 0, m
        assert m["xregion_feed_last_commit_seconds"] > time.time() - 60, m
        assert all(os.path.getsize(m["path"]) < 60000 for m in metas)
        # Time: a row every 0.4 s for 8 s never idles 2 s, yet files of
        # rows spanning 3 s are committed.
        before = len(metas)
        for i in range(20):
            d["us"].sql("UPDATE t SET note = 'tick' WHERE id = %s", (i + 1,))
            time.sleep(0.4)
        time.sleep(3)
        _, metas = read_files(out)
        ticks = [m for m in metas if any(r["note"] == "tick" for r in m["rows"])]
        assert len(ticks) >= 2, f"{len(metas) - before} files for 8 s of ticks"
        # A schema change starts a new file, its fingerprint in the header.
        for r in d.regions:
            d[r].sql("ALTER TABLE t ADD COLUMN extra text")
        d["us"].sql("INSERT INTO t VALUES (5000, 'new', 'NaN', '{{1,2},{3,4}}', 'e')")
        deadline = time.time() + 30
        while not any("extra" in m["avro.schema"] for m in read_files(out)[1]):
            assert time.time() < deadline, feeder.read_log()[-3000:]
            time.sleep(0.5)
        rows, metas = read_files(out)
        fps = {m["xr.schema.fingerprint"] for m in metas}
        assert len(fps) == 2
        new = [r for m in metas if "extra" in m["avro.schema"] for r in m["rows"]]
        assert [r["id"] for r in new] == [5000] and new[0]["extra"] == "e"
        # Values the column's type cannot hold: null there, text in __text.
        assert new[0]["price"] is None and new[0]["tags"] is None
        assert new[0]["__text"] == {"price": "NaN", "tags": "{{1,2},{3,4}}"}
        assert {m["avro.codec"] for m in metas} == {"snappy"}
        # The reference implementation reads every file, logical types kept.
        for m in metas[:3] + metas[-1:]:
            r = subprocess.run(["java", "-jar", AVRO_TOOLS, "tojson", m["path"]],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            # (Its JSON of decimal bytes is not always valid JSON: compare
            # the event ids.)
            ids = re.findall(r'"__event_id":"([0-9a-f-]{36})"', r.stdout)
            assert r.stdout.count("\n") == len(m["rows"])
            assert ids == [str(x["__event_id"]) for x in m["rows"]]
            r = subprocess.run(["java", "-jar", AVRO_TOOLS, "getschema", m["path"]],
                               capture_output=True, text=True, timeout=120)
            assert '"logicalType" : "timestamp-micros"' in r.stdout, r.stdout
            assert '"logicalType" : "decimal"' in r.stdout, r.stdout
        assert "pii" not in {r for r in rows}
        # An undecodable message goes to the feed's dead-letter topic.
        p = xrtest.Producer({"bootstrap.servers": xrtest.BROKERS})
        p.produce(f"{d.prefix}.us.public.t", b"not avro", partition=0)
        p.flush(10)
        d["us"].sql("INSERT INTO t VALUES (6000, 'after', 1, '{}', 'z')")
        deadline = time.time() + 30
        while not any(r["id"] == 6000 for r in read_files(out)[0]["t"]):
            assert time.time() < deadline, feeder.read_log()[-3000:]
            time.sleep(0.5)
        dead = xrtest.read_topic(f"{d.prefix}._feed_dlq")
        assert len(dead) == 1 and dead[0].value() == b"not avro"
        h = dict(dead[0].headers())
        assert b"single-object" in h["xr-dlq-reason"], h
        assert h["xr-dlq-topic"].decode() == f"{d.prefix}.us.public.t"
        # SIGTERM: what is open is committed, exit 0.
        d["us"].sql("INSERT INTO t VALUES (7000, 'last', 1, '{}', 'z')")
        time.sleep(1)
        assert feeder.kill(signal.SIGTERM) == 0
        assert any(r["id"] == 7000 for r in read_files(out)[0]["t"])
    finally:
        d.close()


def metrics(url):
    import urllib.request
    deadline = time.time() + 10
    while True:
        try:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            break
        except OSError:
            assert time.time() < deadline, f"no metrics at {url}"
            time.sleep(0.3)
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name.split("{")[0]] = float(value)
    return out


def load_landing(conn, table, rows):
    cols = list(rows[0].keys())
    ph = ", ".join(["%s"] * len(cols))
    conn.cursor().executemany(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({ph})",
        [[json.dumps(r[c]) if c == "__text" else r[c] for c in cols] for r in rows])


def load_duckdb(conn, table, rows):
    cols = list(rows[0].keys())
    ph = ", ".join("map(?::VARCHAR[], ?::VARCHAR[])" if c == "__text" else "?"
                   for c in cols)
    params = []
    for r in rows:
        row = []
        for c in cols:
            if c == "__text":
                row += [list(r[c].keys()), list(r[c].values())]
            else:
                row.append(r[c])
        params.append(row)
    conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({ph})",
                     params)


def test_ddl_merge_into_postgres_duckdb_and_jsonl(tmp_path):
    d = Deployment([("public.acct", False)],
                   "CREATE TABLE acct (id bigint PRIMARY KEY, owner text, "
                   "balance numeric(12,2), seen timestamptz, doc text);",
                   regions=("us", "eu"))
    try:
        d.start()
        d["us"].sql("INSERT INTO acct SELECT g, 'o' || g, g, now(), repeat(md5(g::text), 200) "
                    "FROM generate_series(1, 300) g")
        d["eu"].sql("UPDATE acct SET balance = balance + 1 WHERE id <= 100")
        d["us"].sql("UPDATE acct SET owner = 'toast kept' WHERE id BETWEEN 50 AND 60")
        d["us"].sql("UPDATE acct SET id = id + 1000 WHERE id BETWEEN 200 AND 210")
        d["eu"].sql("DELETE FROM acct WHERE id BETWEEN 100 AND 150")
        d.converge("acct")
        d["us"].sql("TRUNCATE acct")
        d.converge("acct", expect_rows=0)
        d["eu"].sql("INSERT INTO acct SELECT g, 'second ' || g, g, now(), "
                    "repeat(md5(g::text), 200) FROM generate_series(1, 200) g")
        d.converge("acct", expect_rows=200)
        d["us"].sql("UPDATE acct SET owner = 'doc kept' WHERE id BETWEEN 10 AND 20")
        d["eu"].sql("UPDATE acct SET id = id + 5000 WHERE id BETWEEN 30 AND 35")
        d["us"].sql("DELETE FROM acct WHERE id BETWEEN 40 AND 45")
        d.converge("acct", expect_rows=194)
        out = str(tmp_path / "lake")
        d["eu"].xregion("feed", "--out", out, "--once")
        rows = read_files(out)[0]["acct"]
        ddl = d["eu"].xregion("feed", "--ddl", "acct").stdout
        stmts = ddl.split("-- After each load")
        merge = "--" + stmts[1]
        with psycopg.connect(xrtest.pg_dsn("us", d["us"].db), autocommit=True) as c:
            c.execute("CREATE SCHEMA lake; SET search_path = lake")
            c.execute(stmts[0])
            # Two loads, the newer files first: order does not matter.
            half = len(rows) // 2
            for part in (rows[half:], rows[:half]):
                load_landing(c, "public_acct_changes", part)
                c.execute(merge)
            got = c.execute("SELECT id, owner, balance, seen, doc FROM "
                            "public_acct_current ORDER BY id").fetchall()
            want = c.execute("SELECT id, owner, balance, seen, doc FROM public.acct "
                             "ORDER BY id").fetchall()
            assert got == want and len(want) == 194
            # A backfill's rows, fed next (the feeder resumes where it
            # stopped): snapshot_read rows with each row's own version,
            # which change nothing when merged.
            d["eu"].xregion("backfill", "--table", "acct")
            d["eu"].xregion("feed", "--out", out, "--once")
            snap = [r for r in read_files(out)[0]["acct"]
                    if r["__op"] == "snapshot_read"]
            assert len(snap) == 194
            assert {r["__region"] for r in snap} == {"us", "eu"}
            load_landing(c, "public_acct_changes", snap)
            c.execute(merge)
            again = c.execute("SELECT id, owner, balance, seen, doc FROM "
                              "public_acct_current ORDER BY id").fetchall()
            assert again == want
            assert c.execute("SELECT count(*) FROM public_acct_state WHERE "
                             "__op = 'snapshot_read'").fetchone()[0] == 0
            want = c.execute("SELECT id, owner, balance, (extract(epoch FROM seen) "
                             "* 1000000)::bigint, doc FROM public.acct "
                             "ORDER BY id").fetchall()
        # DuckDB runs its dialect's statements: every row (the backfill's
        # too), in two loads, the newer first.
        duck = d["eu"].xregion("feed", "--ddl", "acct", "--dialect", "duckdb").stdout
        assert "read_avro" in duck
        dstmts = duck.split("-- After each load")
        dc = duckdb.connect()
        dc.execute(dstmts[0])
        every = read_files(out)[0]["acct"]
        for part in (every[len(every) // 2:], every[:len(every) // 2]):
            load_duckdb(dc, "public_acct_changes", part)
            dc.execute("--" + dstmts[1])
        got = dc.execute("SELECT id, owner, balance, epoch_us(seen), doc FROM "
                         "public_acct_current ORDER BY id").fetchall()
        assert got == want
        r = d["eu"].xregion("feed", "--ddl", "acct", "--dialect", "clickhouse")
        assert "ReplacingMergeTree(__version, __deleted)" in r.stdout, r.stdout
        r = d["eu"].xregion("feed", "--ddl", "nosuch", check=False)
        assert r.returncode == 2 and "pii: false" in r.stderr
        # JSON lines on stdout: the same rows.
        r = d["eu"].xregion("feed", "--out", "-", "--once")
        lines = [json.loads(x) for x in r.stdout.splitlines()]
        rows = read_files(out)[0]["acct"]
        assert sorted((x["__event_id"], x["__deleted"]) for x in lines) == \
            sorted((str(x["__event_id"]), x["__deleted"]) for x in rows)
        assert {x["__op"] for x in lines} == {"insert", "update", "delete", "truncate",
                                              "snapshot_read"}
    finally:
        d.close()


def test_feed_refuses_bad_options(tmp_path):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("region: us\nregions: [us, eu]\npostgres:\n  dsn: x\nkafka:\n"
                   f"  brokers: {xrtest.BROKERS}\ntables: []\n")
    for args, msg in ((["--codec", "lz4"], "--codec"),
                      (["--out", "-", "--format", "avro"], "--out -"),
                      (["--out", str(tmp_path), "--format", "jsonl"], "stdout only"),
                      ([], "--out DIR"),
                      (["--rotate-bytes", "lots"], "--rotate-bytes")):
        r = subprocess.run([xrtest.XREGION, "feed", "-c", str(cfg), *args],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (args, r.stderr)
        assert msg in r.stderr, (args, r.stderr)
