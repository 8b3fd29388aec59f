#!/usr/bin/env python3
"""Backfill benchmark: copying one table of N rows to another cluster three
ways, on this machine, in one run, against the running local stack
(scripts/stack.sh up):

  pg_dump | psql              pg_dump -t items of the source into psql on the
                              destination (table, COPY, primary key)
  native copy_data            CREATE SUBSCRIPTION ... WITH (copy_data = true):
                              PostgreSQL's tablesync, until the table is ready
  xregion backfill            the donor's producer publishes the rows as
                              snapshot_read events, the destination's
                              consumer applies them; timed until every row is
                              there (and when the donor had published them all)

The source is a database on the us cluster (127.0.0.1:15432), the
destinations databases on the eu cluster (15433).  Prints seconds, rows/s,
the ratio other/xregion (>= 1.0: xregion as fast or faster), the CPU seconds
of each process taking part, and what the backfill cost the donor: WAL
written, blocks read, the donor processes' CPU.

Usage: bench/backfill.py [--rows N] [--chunk-size N] [--json FILE]
"""
import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from replication import connect, cpu_seconds, dsn, one, say  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
XREGION = os.environ.get("XREGION_BIN", os.path.join(ROOT, "build", "xregion"))
PGBIN = os.environ.get("XR_PG_BIN", "/usr/lib/postgresql/15/bin")
BROKERS = os.environ.get("XR_KAFKA_BROKERS", "127.0.0.1:19092")
SRC_PORT, DST_PORT = 15432, 15433
TABLE_SQL = ("CREATE TABLE items (id bigint PRIMARY KEY, a int, b text, "
             "c timestamptz)")
LOAD_SQL = "CREATE TABLE load (id int PRIMARY KEY, n bigint, t timestamptz)"


def recreate(port, db):
    with connect(port) as c:
        for slot, in c.execute("SELECT slot_name FROM pg_replication_slots "
                               "WHERE database = %s", (db,)).fetchall():
            c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{db}"')


def table_sum(port, db):
    """md5 of the items rows in key order: what each copy must equal."""
    with connect(port, db) as c:
        return one(c, "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM items t")


def backends_cpu(conns):
    """{pid: (label, cpu)} of the sessions of the given (conn, db, side)."""
    out = {}
    for c, db, side in conns:
        for pid, btype, app in c.execute(
                "SELECT pid, backend_type, coalesce(nullif(application_name, "
                "''), '?') FROM pg_stat_activity WHERE datname = %s AND "
                "coalesce(application_name, '') <> 'xrbench'", (db,)).fetchall():
            out[pid] = (f"{side} {btype} ({app})", cpu_seconds(pid))
    return out


def cpu_delta(before, after):
    sums = {}
    for pid, (label, cpu) in after.items():
        if cpu is None:
            continue
        sums[label] = sums.get(label, 0.0) + cpu - (before.get(pid, (label, 0.0))[1] or 0.0)
    return {k: round(v, 2) for k, v in sorted(sums.items()) if v >= 0.005}


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench_dump(rows):
    recreate(DST_PORT, "bfb_dump")
    c0 = children_cpu()
    t0 = time.monotonic()
    dump = subprocess.Popen([f"{PGBIN}/pg_dump", "-t", "items", dsn(SRC_PORT, "bfb_src")],
                            stdout=subprocess.PIPE)
    subprocess.run([f"{PGBIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                    dsn(DST_PORT, "bfb_dump")], stdin=dump.stdout,
                   stdout=subprocess.DEVNULL, check=True)
    dump.stdout.close()
    assert dump.wait() == 0, "pg_dump failed"
    secs = time.monotonic() - t0
    with connect(DST_PORT, "bfb_dump") as c:
        assert one(c, "SELECT count(*) FROM items") == rows
    return {"seconds": secs, "cpu_s": {"pg_dump + psql (clients)": round(children_cpu() - c0, 2)}}


def bench_native(rows):
    recreate(DST_PORT, "bfb_native")
    with connect(SRC_PORT, "bfb_src") as s, connect(DST_PORT, "bfb_native") as d:
        s.execute("DROP PUBLICATION IF EXISTS bfb_pub")
        s.execute("CREATE PUBLICATION bfb_pub FOR TABLE items")
        d.execute(TABLE_SQL)
        before = backends_cpu([(s, "bfb_src", "source"), (d, "bfb_native", "dest")])
        t0 = time.monotonic()
        d.execute(f"CREATE SUBSCRIPTION bfb_sub CONNECTION '{dsn(SRC_PORT, 'bfb_src')}' "
                  "PUBLICATION bfb_pub WITH (copy_data = true)")
        after = before
        while True:
            snap = backends_cpu([(s, "bfb_src", "source"), (d, "bfb_native", "dest")])
            after = {**after, **snap}
            state = d.execute("SELECT srsubstate FROM pg_subscription_rel").fetchall()
            if state and all(x == "r" for x, in state):
                break
            time.sleep(0.1)
        secs = time.monotonic() - t0
        assert one(d, "SELECT count(*) FROM items") == rows
        d.execute("ALTER SUBSCRIPTION bfb_sub DISABLE")
        d.execute("ALTER SUBSCRIPTION bfb_sub SET (slot_name = NONE)")
        d.execute("DROP SUBSCRIPTION bfb_sub")
        for slot, in s.execute("SELECT slot_name FROM pg_replication_slots WHERE "
                               "database = 'bfb_src'").fetchall():
            s.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        s.execute("DROP PUBLICATION bfb_pub")
    return {"seconds": secs, "cpu_s": cpu_delta(before, after)}


class Load:
    """--with-load: single-row updates of table load on the source, one
    client, and the destination's lag behind them, sampled every 0.5 s."""

    def __init__(self):
        import threading
        self.stop = threading.Event()
        self.commits = []          # monotonic time of each commit
        self.lags = []             # (monotonic time, lag seconds)
        self.threads = [threading.Thread(target=self.write, daemon=True),
                        threading.Thread(target=self.sample, daemon=True)]

    def start(self):
        for t in self.threads:
            t.start()

    def write(self):
        import random
        with connect(SRC_PORT, "bfb_src") as c:
            while not self.stop.is_set():
                c.execute("UPDATE load SET n = n + 1, t = clock_timestamp() "
                          "WHERE id = %s", (random.randint(1, 100),))
                self.commits.append(time.monotonic())

    def sample(self):
        with connect(SRC_PORT, "bfb_src") as s, connect(DST_PORT, "bfb_xr") as d:
            while not self.stop.wait(0.5):
                src = one(s, "SELECT max(t) FROM load")
                dst = one(d, "SELECT max(t) FROM load")
                if src and dst:
                    self.lags.append((time.monotonic(),
                                      max(0.0, (src - dst).total_seconds())))

    def window(self, t0, t1):
        n = sum(1 for t in self.commits if t0 <= t < t1)
        lags = sorted(l for t, l in self.lags if t0 <= t < t1)
        return {"tps": round(n / max(t1 - t0, 1e-9), 1),
                "lag_p50_s": round(lags[len(lags) // 2], 2) if lags else None,
                "lag_max_s": round(lags[-1], 2) if lags else None}

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)


def write_config(tmp, region, db, port, prefix, slot,
                 tables=("public.items", "public.load")):
    path = os.path.join(tmp, f"{region}.yaml")
    entries = "".join(f"  - name: {t}\n    pii: false\n" for t in tables)
    with open(path, "w") as f:
        f.write(f"""region: {region}
regions: [us, eu]
log_level: info
postgres:
  dsn: "{dsn(port, db)}"
  slot: {slot}
kafka:
  brokers: {BROKERS}
  topic_prefix: {prefix}
  partitions: 3
tables:
""" + entries)
    return path


def bench_xregion(rows, chunk, with_load=False):
    recreate(DST_PORT, "bfb_xr")
    tmp = tempfile.mkdtemp(prefix="xrbench-bf-")
    tag = uuid.uuid4().hex[:8]
    prefix = f"xrbf{tag}"
    us = write_config(tmp, "us", "bfb_src", SRC_PORT, prefix, f"bfb_{tag}_us")
    eu = write_config(tmp, "eu", "bfb_xr", DST_PORT, prefix, f"bfb_{tag}_eu")
    with connect(DST_PORT, "bfb_xr") as d:
        d.execute(TABLE_SQL)
        d.execute(LOAD_SQL)
    for cfg in (us, eu):
        subprocess.run([XREGION, "setup", "-c", cfg], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    logs = [open(os.path.join(tmp, f"{r}.log"), "w") for r in ("us", "eu")]
    procs = [subprocess.Popen([XREGION, "run", "-c", cfg], stdout=lf,
                              stderr=subprocess.STDOUT)
             for cfg, lf in ((us, logs[0]), (eu, logs[1]))]
    load = Load() if with_load else None
    try:
        time.sleep(3)
        if load:
            load.start()
            time.sleep(10)          # the load alone: the "before" window
        with connect(SRC_PORT, "bfb_src") as s, connect(DST_PORT, "bfb_xr") as d:
            side = [(s, "bfb_src", "source"), (d, "bfb_xr", "dest")]
            before = backends_cpu(side)
            xr_before = {p.pid: cpu_seconds(p.pid) for p in procs}
            wal0 = one(s, "SELECT pg_current_wal_lsn()")
            io0 = s.execute("SELECT blks_read, blks_hit FROM pg_stat_database "
                            "WHERE datname = 'bfb_src'").fetchone()
            t0 = time.monotonic()
            subprocess.run([XREGION, "backfill", "-c", us, "--for", "eu", "--no-wait",
                            "--chunk-size", str(chunk)], check=True,
                           stdout=subprocess.DEVNULL)
            published = None
            after = before
            last = 0
            while True:
                after = {**after, **backends_cpu(side)}
                if published is None and one(
                        s, "SELECT state FROM xregion.backfills ORDER BY id DESC "
                           "LIMIT 1") == "done":
                    published = time.monotonic() - t0
                    wal1 = one(s, "SELECT pg_current_wal_lsn()")
                    io1 = s.execute("SELECT blks_read, blks_hit FROM pg_stat_database "
                                    "WHERE datname = 'bfb_src'").fetchone()
                    donor_cpu = cpu_seconds(procs[0].pid) - xr_before[procs[0].pid]
                n = one(d, "SELECT count(*) FROM items")
                if n >= rows:
                    break
                if time.monotonic() - last > 5:
                    say(f"  xregion: {time.monotonic() - t0:6.1f} s, {n} rows at "
                        f"the destination")
                    last = time.monotonic()
                for p in procs:
                    assert p.poll() is None, f"xregion exited: see {tmp}"
                time.sleep(0.2)
            secs = time.monotonic() - t0
            if published is None:
                published = secs
                wal1 = one(s, "SELECT pg_current_wal_lsn()")
                io1 = io0
                donor_cpu = cpu_seconds(procs[0].pid) - xr_before[procs[0].pid]
            wal = one(s, "SELECT %s::pg_lsn - %s::pg_lsn", (wal1, wal0))
            cpu = cpu_delta(before, after)
            cpu["xregion us (donor producer)"] = round(
                cpu_seconds(procs[0].pid) - xr_before[procs[0].pid], 2)
            cpu["xregion eu (consumer)"] = round(
                cpu_seconds(procs[1].pid) - xr_before[procs[1].pid], 2)
            donor = {"wal_bytes": int(wal), "blks_read": io1[0] - io0[0],
                     "blks_hit": io1[1] - io0[1],
                     "xregion_cpu_s_until_published": round(donor_cpu, 2)}
        out = {"seconds": secs, "published_s": published, "cpu_s": cpu,
               "donor": donor}
        if load:
            t_start = t0
            out["load_before"] = load.window(t_start - 10, t_start)
            out["load_during"] = load.window(t_start, t_start + secs)
        return out
    finally:
        if load:
            load.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        for lf in logs:
            lf.close()
        for cfg in (us, eu):
            subprocess.run([XREGION, "teardown", "-c", cfg],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--chunk-size", type=int, default=2000)
    ap.add_argument("--json", help="write the figures to this file")
    ap.add_argument("--with-load", action="store_true",
                    help="also run the xregion backfill again under a "
                         "single-client update load on the source, and report "
                         "the source's TPS and the destination's lag before "
                         "and during it")
    a = ap.parse_args()

    say(f"source: {a.rows} rows in bfb_src.items on 127.0.0.1:{SRC_PORT}")
    recreate(SRC_PORT, "bfb_src")
    with connect(SRC_PORT, "bfb_src") as s:
        s.execute(TABLE_SQL)
        s.execute(LOAD_SQL)
        s.execute("INSERT INTO load SELECT g, 0, now() FROM generate_series(1, 100) g")
        s.execute("INSERT INTO items SELECT g, g %% 1000, md5(g::text), now() "
                  "FROM generate_series(1, %s) g", (a.rows,))
        s.execute("VACUUM ANALYZE items")
        size = one(s, "SELECT pg_size_pretty(pg_table_size('items'))")
    res = {"rows": a.rows, "table_size": size, "chunk_size": a.chunk_size}
    source_sum = table_sum(SRC_PORT, "bfb_src")
    say("pg_dump | psql ...")
    res["pg_dump_psql"] = bench_dump(a.rows)
    res["pg_dump_psql"]["identical"] = table_sum(DST_PORT, "bfb_dump") == source_sum
    say("native logical replication, copy_data = true ...")
    res["native_copy_data"] = bench_native(a.rows)
    res["native_copy_data"]["identical"] = table_sum(DST_PORT, "bfb_native") == source_sum
    say("xregion backfill ...")
    res["xregion"] = bench_xregion(a.rows, a.chunk_size)
    # pg_dump and PostgreSQL's own tablesync are the oracles of the content
    res["xregion"]["identical"] = table_sum(DST_PORT, "bfb_xr") == source_sum

    if a.with_load:
        say("xregion backfill under load ...")
        res["xregion_loaded"] = bench_xregion(a.rows, a.chunk_size, True)

    xr = res["xregion"]["seconds"]
    print()
    print(f"Backfill of {a.rows:,} rows ({size}; id bigint, a int, b text, c "
          f"timestamptz), {os.cpu_count()} cores, chunk size {a.chunk_size}")
    print(f"{'method':34} {'seconds':>9} {'rows/s':>10} {'other/xregion':>14} "
          f"{'rows = source':>14}")
    for label, key in (("pg_dump | psql", "pg_dump_psql"),
                       ("native copy_data (tablesync)", "native_copy_data"),
                       ("xregion backfill, all applied", "xregion")):
        secs = res[key]["seconds"]
        ratio = "" if key == "xregion" else f"{secs / xr:.2f}"
        print(f"{label:34} {secs:9.2f} {a.rows / secs:10.0f} {ratio:>14} "
              f"{'yes' if res[key]['identical'] else 'NO':>14}")
    pub = res["xregion"]["published_s"]
    print(f"{'xregion backfill, all published':34} {pub:9.2f} {a.rows / pub:10.0f}")
    print("\nCPU seconds per process:")
    for key in ("pg_dump_psql", "native_copy_data", "xregion"):
        print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in res[key]["cpu_s"].items()))
    d = res["xregion"]["donor"]
    print(f"\nWhat the backfill cost the donor: {d['wal_bytes'] / 1e6:.1f} MB of WAL, "
          f"{d['blks_read']} blocks read and {d['blks_hit']} found in shared "
          f"buffers, {d['xregion_cpu_s_until_published']} CPU s of its xregion "
          f"process until every row was published")
    if a.with_load:
        r = res["xregion_loaded"]
        b, du = r["load_before"], r["load_during"]
        print(f"\nUnder load (one client updating table load on the donor, "
              f"replicated too): backfill {r['seconds']:.2f} s "
              f"({a.rows / r['seconds']:.0f} rows/s)")
        print(f"  donor TPS before {b['tps']}, during {du['tps']} "
              f"(during/before {du['tps'] / max(b['tps'], 1e-9):.2f})")
        print(f"  destination lag of those updates: before p50 "
              f"{b['lag_p50_s']} s max {b['lag_max_s']} s; during p50 "
              f"{du['lag_p50_s']} s max {du['lag_max_s']} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    if not all(res[k]["identical"] for k in ("pg_dump_psql", "native_copy_data",
                                            "xregion")):
        sys.exit("[bench] a copy differs from the source")


if __name__ == "__main__":
    main()
