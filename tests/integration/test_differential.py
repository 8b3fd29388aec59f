"""Differential test: PostgreSQL's own logical replication is the oracle.

One region (us) runs a seeded random workload of the transactions real
applications make (shapes.py: rows written several times in one
transaction, delete and re-insert, TOASTed values changed and left
unchanged, key changes, NULLs, several tables per transaction, truncates,
10k-row transactions).  The same source database feeds

  - xregion, into region eu (lww and vclock tables), and
  - native logical replication (a subscription), into a fresh database of
    the apac cluster,

and both copies must end with us's rows, row by row.

The default run is short (XR_DIFF_TX transactions, 120 by default); a long
run is `XR_DIFF_TX=3000 pytest test_differential.py`.  XR_DIFF_SEED replays
a seed; the seed is printed, and named in any failure.
"""
import os
import random
import time

import psycopg

import shapes
import xrtest
from xrdeploy import Deployment

TABLES = [("public.sa", False), ("public.sv", False, {"conflict": "vclock"}),
          ("public.sc", False)]
KEYS = {"sa": "id", "sv": "id", "sc": "g, id"}


def rows(conn_fn, table):
    with conn_fn() as c:
        return c.execute(f"SELECT * FROM {table} ORDER BY {KEYS[table]}").fetchall()


def digest(conn_fn, table):
    with conn_fn() as c:
        return c.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' "
                         f"ORDER BY {KEYS[table]}), '')) FROM {table} t").fetchone()


def describe_diff(seed, table, want, got, who):
    w = {r[:2] if table == "sc" else r[:1]: r for r in want}
    g = {r[:2] if table == "sc" else r[:1]: r for r in got}
    lines = [f"seed {seed}: {table} in {who} differs from us "
             f"({len(want)} rows in us, {len(got)} in {who})"]
    for k in sorted(set(w) | set(g)):
        if w.get(k) != g.get(k):
            short = lambda r: None if r is None else tuple(
                (v[:20] + f"..({len(v)})") if isinstance(v, str) and len(v) > 24
                else v for v in r)
            lines.append(f"  key {k}: us {short(w.get(k))} / {who} {short(g.get(k))}")
            if len(lines) > 25:
                break
    return "\n".join(lines)


def test_xregion_ends_with_the_rows_native_replication_ends_with():
    seed = int(os.environ.get("XR_DIFF_SEED", random.randrange(1 << 31)))
    ntx = int(os.environ.get("XR_DIFF_TX", "120"))
    print(f"differential test: seed {seed}, {ntx} transactions")
    d = Deployment(TABLES, shapes.DDL, regions=("us", "eu"))
    oracle_db = f"xrn_{d.suffix}"
    sub = f"xrn_{d.suffix}"
    try:
        us, eu = d["us"], d["eu"]
        us.sql(f"CREATE PUBLICATION {sub} FOR TABLE sa, sv, sc")
        with xrtest.connect("apac") as c:
            c.execute(f'CREATE DATABASE "{oracle_db}"')
        oracle = lambda: xrtest.connect("apac", oracle_db)
        with oracle() as c:
            c.execute(shapes.DDL)
            c.execute(f"CREATE SUBSCRIPTION {sub} CONNECTION "
                      f"'{xrtest.pg_dsn('us', us.db)}' PUBLICATION {sub}")
        d.start()
        with psycopg.connect(xrtest.pg_dsn("us", us.db)) as src:
            t0 = time.time()
            n = shapes.run(src, seed, ntx)
            print(f"seed {seed}: {ntx} transactions, {n} statements in "
                  f"{time.time() - t0:.1f} s")
        usc = lambda: xrtest.connect("us", us.db)
        euc = lambda: xrtest.connect("eu", eu.db)
        deadline = time.time() + 180
        for table in KEYS:
            while True:
                want = digest(usc, table)
                got = {"native": digest(oracle, table), "xregion": digest(euc, table)}
                if all(g == want for g in got.values()):
                    break
                if time.time() > deadline:
                    w = rows(usc, table)
                    msgs = [describe_diff(seed, table, w, rows(fn, table), who)
                            for who, fn in (("native", oracle), ("xregion", euc))
                            if got[who] != want]
                    raise AssertionError("\n".join(msgs) + "\n--- eu log:\n" +
                                         eu.read_log()[-3000:])
                time.sleep(0.5)
            print(f"seed {seed}: {table}: {want[0]} rows, identical in us, "
                  f"native and xregion")
        # Nothing was set aside on the way, and one writer makes no
        # conflicts: with atomic apply each transaction is applied whole in
        # commit order (a key change no longer overtakes the old key's
        # earlier writes on another partition).
        got = eu.sql("SELECT kind, resolution, count(*) FROM xregion.conflicts "
                     "GROUP BY 1, 2 ORDER BY 1, 2")
        print(f"seed {seed}: conflicts logged in eu: {got}")
        dead = eu.sql("SELECT table_name, key::text, remote_ts, kafka_partition, "
                      "kafka_offset FROM xregion.conflicts "
                      "WHERE resolution = 'dead_lettered'")
        assert not dead, f"seed {seed}: dead letters {dead}"
        assert not got, f"seed {seed}: {got}"
    finally:
        try:
            with xrtest.connect("apac", oracle_db) as c:
                c.execute(f"DROP SUBSCRIPTION IF EXISTS {sub}")
        except Exception as e:
            print(f"dropping the subscription: {e}")
        with xrtest.connect("apac") as c:
            c.execute(f'DROP DATABASE IF EXISTS "{oracle_db}" WITH (FORCE)')
        d.close()
