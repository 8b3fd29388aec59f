"""Measurement side of bench/vclock_overhead.sh (see its --help).

Four tables of the same shape in one database: acct_plain (no xregion
objects), acct_lwwc (conflict: lww, clock: commit), acct_lww (conflict: lww,
clock: hybrid) and acct_vclock (conflict: vclock).  The shell script writes the config and runs
'xregion setup' between 'prepare' and 'load'; this helper does the rest.

  prepare   drop and create the database with the three tables, their id
            sequences and pg_walinspect
  load      check the triggers setup installed, fill each table with --rows
            rows in one INSERT (timed), VACUUM ANALYZE
  measure   pgbench runs: per workload, --runs rounds of the three variants in
            rotating order, a CHECKPOINT before each run; TPS and WAL bytes
  report    print the result table, write the final JSON and text
  dropdb    drop the database, with any replication slot left in it and the
            replication origins named <slot>_from_*
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import psycopg

# The helpers replication.py already has: log lines, connections, the
# results file, dropping a database with its slots and origins.
from replication import connect, one, say, store
from replication import load as load_results
from replication import drop_db as _drop_db

VARIANTS = ("plain", "lwwc", "lww", "vclock")
WORKLOADS = ("update", "insert", "mixed")
WORKLOAD_DESC = {
    "update": "UPDATE 1 random row",
    "insert": "INSERT 1 new row",
    "mixed": "UPDATE+INSERT+DELETE, 1 txn",
}


def table(v):
    return f"acct_{v}"


def versions_table(v):
    # the versions table 'xregion setup' makes for public.acct_<v>
    return f'xregion."public.{table(v)}"'


# ------------------------------------------------------------ the database

def drop_db(port, db, slot):
    """Drops db, its slots and the origins of slot (<slot>_from_<region>)."""
    _drop_db(port, db, slot.replace("_", "\\_") + "\\_from\\_%" if slot else None)


def cmd_prepare(a):
    drop_db(a.port, a.db, a.slot)
    with connect(a.port) as c:
        c.execute(f'CREATE DATABASE "{a.db}"')
    with connect(a.port, a.db) as c:
        for v in VARIANTS:
            t = table(v)
            c.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, balance bigint, "
                      "note text)")
            # new ids for the insert and mixed workloads, and the ids the
            # mixed workload deletes (trailing the inserts)
            c.execute(f"CREATE SEQUENCE {t}_ins START {a.rows + 1}")
            c.execute(f"CREATE SEQUENCE {t}_del START {a.rows + 1}")
        walinspect = True
        try:
            c.execute("CREATE EXTENSION pg_walinspect")
        except psycopg.Error as e:
            walinspect = False
            say(f"no pg_walinspect ({str(e).strip()}): WAL bytes only from "
                "pg_current_wal_lsn(), which counts every session")
    say(f"database {a.db} on 127.0.0.1:{a.port}: fresh, with tables "
        + ", ".join(table(v) for v in VARIANTS))
    store(a.results, "walinspect", walinspect)


def triggers(c, v):
    return sorted(r[0] for r in c.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass "
        "AND NOT tgisinternal", (table(v),)).fetchall())


def cmd_load(a):
    with connect(a.port, a.db) as c:
        want = {"plain": [],
                "lwwc": ["xregion_key_change", "xregion_tombstone",
                         "xregion_truncate"],
                "lww": ["xregion_clock", "xregion_clock_xmin",
                        "xregion_key_change", "xregion_tombstone",
                        "xregion_truncate"],
                "vclock": ["xregion_truncate", "xregion_vclock"]}
        for v in VARIANTS:
            got = triggers(c, v)
            if got != want[v]:
                raise SystemExit(f"[bench] {table(v)} has triggers {got}, "
                                 f"expected {want[v]}: did setup install "
                                 f"conflict: {v}?")
            say(f"{table(v)}: triggers {', '.join(got) or '(none)'}")
        store(a.results, "triggers", {v: want[v] for v in VARIANTS})
        for v in VARIANTS:
            c.execute("CHECKPOINT")
            t0 = time.monotonic()
            c.execute(f"INSERT INTO {table(v)} SELECT g, 0, md5(g::text) "
                      "FROM generate_series(1, %s) g", (a.rows,))
            secs = time.monotonic() - t0
            say(f"load {table(v)}: {a.rows} rows in one INSERT, {secs:.2f} s")
            store(a.results, f"load.{v}", secs)
        c.execute("VACUUM ANALYZE")
        n = one(c, f"SELECT count(*) FROM {versions_table('vclock')}")
        if n != a.rows:
            raise SystemExit(f"[bench] {versions_table('vclock')} has {n} rows "
                             f"after loading {a.rows}: the vclock trigger did "
                             "not version every row")


# ------------------------------------------------------------ measurement

def scripts(a, v):
    """The pgbench scripts of variant v: {workload: path}."""
    t = table(v)
    text = {
        "update": (f"\\set id random(1, {a.rows})\n"
                   f"UPDATE {t} SET balance = balance + 1 WHERE id = :id;\n"),
        "insert": (f"INSERT INTO {t} (id, balance, note) VALUES "
                   f"(nextval('{t}_ins'), 0, md5(random()::text));\n"),
        # the delete takes the oldest row the insert workloads added; the
        # sub-select makes nextval() run once, so the primary key is used
        "mixed": (f"\\set id random(1, {a.rows})\n"
                  "BEGIN;\n"
                  f"UPDATE {t} SET balance = balance + 1 WHERE id = :id;\n"
                  f"INSERT INTO {t} (id, balance, note) VALUES "
                  f"(nextval('{t}_ins'), 0, md5(random()::text));\n"
                  f"DELETE FROM {t} WHERE id = (SELECT nextval('{t}_del'));\n"
                  "END;\n"),
    }
    out = {}
    for w, body in text.items():
        path = os.path.join(a.workdir, f"{w}-{v}.sql")
        with open(path, "w") as f:
            f.write(body)
        out[w] = path
    return out


RELS_SQL = """
WITH base AS (
  SELECT c.oid FROM pg_class c
  WHERE c.oid IN (to_regclass(%(t)s), to_regclass(%(vt)s),
                  to_regclass(%(ins)s), to_regclass(%(del)s))),
allrel AS (
  SELECT oid FROM base
  UNION SELECT i.indexrelid FROM pg_index i JOIN base b ON i.indrelid = b.oid
  UNION SELECT c.reltoastrelid FROM pg_class c JOIN base b ON c.oid = b.oid
        WHERE c.reltoastrelid <> 0
  UNION SELECT i.indexrelid FROM pg_index i JOIN pg_class c
        ON i.indrelid = c.reltoastrelid JOIN base b ON c.oid = b.oid)
SELECT array_agg(pg_relation_filenode(oid)) FROM allrel
"""

# WAL of one variant between two LSNs: every record touching one of its
# relations (table, versions table, sequences, their indexes and TOAST), and
# every record of a transaction that touched one: commits, logical messages.
WAL_SQL = r"""
WITH r AS (
  SELECT xid::text::bigint AS x, record_length, fpi_length, resource_manager,
         EXISTS (SELECT 1 FROM regexp_matches(block_ref,
                   'rel \d+/(\d+)/(\d+)', 'g') m
                 WHERE m[1]::oid = %(db)s AND m[2]::oid = ANY (%(rels)s)) AS mine
  FROM pg_get_wal_records_info(%(start)s::pg_lsn, %(end)s::pg_lsn)),
x AS (SELECT DISTINCT x FROM r WHERE mine AND x <> 0)
SELECT coalesce(sum(record_length), 0)::bigint,
       coalesce(sum(fpi_length), 0)::bigint,
       coalesce(sum(record_length) FILTER (
         WHERE resource_manager = 'LogicalMessage'), 0)::bigint,
       count(*)
FROM r WHERE mine OR x IN (SELECT x FROM x)
"""


def pgbench(a, script, seconds, log):
    cmd = [a.pgbench, "-h", "127.0.0.1", "-p", str(a.port), "-U", "postgres",
           "-n", "-M", "prepared", "-c", str(a.clients),
           "-j", str(min(a.clients, os.cpu_count() or 1)),
           "-T", str(seconds), "-f", script, a.db]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if log:
        with open(log, "a") as f:
            f.write("$ " + " ".join(cmd) + "\n" + p.stdout + "\n")
    if p.returncode:
        raise SystemExit(f"[bench] pgbench exited {p.returncode}:\n{p.stdout}")
    tps = float(re.search(r"tps = ([0-9.]+) \(without initial", p.stdout)
                .group(1))
    txns = int(re.search(r"actually processed: (\d+)", p.stdout).group(1))
    m = re.search(r"number of failed transactions: (\d+)", p.stdout)
    failed = int(m.group(1)) if m else 0
    m = re.search(r"latency average = ([0-9.]+) ms", p.stdout)
    lat = float(m.group(1)) if m else None
    return tps, txns, failed, lat


def lsn(c):
    return one(c, "SELECT pg_current_wal_flush_lsn()::text")


def lsn_diff(c, end, start):
    return int(one(c, "SELECT %s::pg_lsn - %s::pg_lsn", (end, start)))


def cmd_measure(a):
    res = load_results(a.results)
    walinspect = res.get("walinspect", False)
    c = connect(a.port, a.db)
    dboid = one(c, "SELECT oid FROM pg_database WHERE datname = %s", (a.db,))
    paths = {v: scripts(a, v) for v in VARIANTS}
    log = os.path.join(a.logs, "pgbench.log") if a.logs else None
    if a.warmup:
        for v in VARIANTS:
            pgbench(a, paths[v]["update"], a.warmup, log)
        say(f"warm-up: {a.warmup} s of the update workload per variant")
    runs = {w: {v: [] for v in VARIANTS} for w in WORKLOADS}
    for w in WORKLOADS:
        for r in range(a.runs):
            # ABC, BCA, CAB, ...: no variant always runs first or last
            order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
            for v in order:
                rels = one(c, RELS_SQL, {
                    "t": f"public.{table(v)}",
                    "vt": versions_table(v) if v != "plain" else None,
                    "ins": f"public.{table(v)}_ins",
                    "del": f"public.{table(v)}_del"})
                c.execute("CHECKPOINT")  # every run starts with full-page writes due
                start = lsn(c)
                t0 = time.monotonic()
                tps, txns, failed, lat = pgbench(a, paths[v][w], a.seconds, log)
                wall = time.monotonic() - t0
                end = lsn(c)
                run = {"tps": tps, "transactions": txns, "failed": failed,
                       "latency_ms": lat, "wall_s": round(wall, 2),
                       "cluster_wal_bytes": lsn_diff(c, end, start),
                       "loadavg": open("/proc/loadavg").read().split()[0]}
                if walinspect:
                    b, fpi, msg, nrec = c.execute(WAL_SQL, {
                        "db": dboid, "rels": rels, "start": start,
                        "end": end}).fetchone()
                    run.update(wal_bytes=b, wal_fpi_bytes=fpi,
                               wal_message_bytes=msg, wal_records=nrec)
                runs[w][v].append(run)
                store(a.results, f"measured.{w}.{v}", runs[w][v])
                per = run.get("wal_bytes", run["cluster_wal_bytes"]) / max(txns, 1)
                say(f"{w:6} run {r + 1}/{a.runs} {v:6}: {tps:9.1f} TPS, "
                    f"{txns} txns, WAL {per:7.0f} B/txn"
                    + (f", {failed} FAILED" if failed else ""))
    # mixed deletes that found no row (their id was not inserted yet): such
    # a row is still there, in (rows, last id the deletes took]
    misses = {}
    for v in VARIANTS:
        t = table(v)
        called, last = c.execute(f"SELECT is_called, last_value FROM {t}_del"
                                 ).fetchone()
        misses[v] = one(c, f"SELECT count(*) FROM {t} WHERE id > %s "
                        "AND id <= %s", (a.rows, last)) if called else 0
    store(a.results, "mixed_delete_misses", misses)
    sizes = {}
    for v in VARIANTS:
        s = {"table_rows": one(c, f"SELECT count(*) FROM {table(v)}"),
             "table_bytes": one(c, "SELECT pg_total_relation_size(%s)",
                                (table(v),))}
        if v != "plain":
            s["versions_rows"] = one(c, f"SELECT count(*) FROM {versions_table(v)}")
            s["versions_live"] = one(c, f"SELECT count(*) FROM {versions_table(v)}"
                                     " WHERE NOT deleted")
            s["versions_bytes"] = one(c, "SELECT pg_total_relation_size(%s)",
                                      (versions_table(v),))
        sizes[v] = s
    store(a.results, "sizes", sizes)
    store(a.results, "vclock_versions_sample", one(
        c, f"SELECT to_jsonb(v)::text FROM {versions_table('vclock')} v "
        "WHERE id = 1"))
    c.close()


# ------------------------------------------------------------------ report

def median(xs):
    return statistics.median(xs) if xs else None


def ratio(x, base):
    return "-" if x is None or not base else f"{x / base:.3f}"


def fmt(v, nd=1):
    return "-" if v is None else f"{v:,.{nd}f}"


def render(rows, hdr):
    w = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    line = lambda r: " | ".join(str(c).ljust(w[i]) if i == 0 else
                                str(c).rjust(w[i]) for i, c in enumerate(r))
    return [line(hdr), "-+-".join("-" * k for k in w)] + [line(r) for r in rows]


def cmd_report(a):
    r = load_results(a.results)
    runs = r.get("measured", {})
    out = []
    p = out.append
    p("")
    p(f"vclock overhead on local writes {r.get('started', '')} on "
      f"{r.get('host', '')} ({r.get('cpus', '?')} CPUs), "
      f"{r.get('xregion_version', '')}, {r.get('pg_version', '')}")
    p(f"{r.get('rows', '?')} rows per table; pgbench {r.get('clients', '?')} "
      f"clients, {r.get('runs', '?')} runs x {r.get('seconds', '?')} s per "
      "variant and workload, variants alternated; median TPS")
    rows = []
    for w in WORKLOADS:
        d = runs.get(w, {})
        med = {v: median([x["tps"] for x in d.get(v, [])]) for v in VARIANTS}
        rows.append((f"{w} ({WORKLOAD_DESC[w]})",
                     *(fmt(med[v]) for v in VARIANTS),
                     ratio(med["lwwc"], med["plain"]),
                     ratio(med["lww"], med["plain"]),
                     ratio(med["lww"], med["lwwc"]),
                     ratio(med["vclock"], med["plain"])))
    load = r.get("load", {})
    if load:
        # time, so the ratio is inverted: throughput relative to plain
        rows.append((f"bulk load ({r.get('rows', '?')} rows, 1 INSERT), s",
                     *(fmt(load.get(v), 2) for v in VARIANTS),
                     ratio(load.get("plain"), load.get("lwwc")),
                     ratio(load.get("plain"), load.get("lww")),
                     ratio(load.get("lwwc"), load.get("lww")),
                     ratio(load.get("plain"), load.get("vclock"))))
    p("")
    p("\n".join(render(rows, ("TPS", *VARIANTS, "lwwc/plain", "lww/plain",
                              "lww/lwwc", "vclock/plain"))))
    p("lwwc = conflict: lww, clock: commit (no clock trigger); lww = the "
      "default clock: hybrid; lww/lwwc = what the hybrid clock costs")
    p("ratio = variant throughput / plain throughput (1.000 = no overhead); "
      "for the bulk load: plain time / variant time")

    key = "wal_bytes" if r.get("walinspect") else "cluster_wal_bytes"
    rows = []
    for w in WORKLOADS:
        d = runs.get(w, {})

        def per(v, k=key):
            xs = [x[k] / x["transactions"] for x in d.get(v, [])
                  if x.get(k) is not None and x["transactions"]]
            return median(xs)
        def per_nofpi(v):
            xs = [(x["wal_bytes"] - x["wal_fpi_bytes"]) / x["transactions"]
                  for x in d.get(v, [])
                  if x.get("wal_bytes") is not None and x["transactions"]]
            return median(xs)
        med = {v: per(v) for v in VARIANTS}
        rows.append((w, *(fmt(med[v], 0) for v in VARIANTS),
                     ratio(med["lww"], med["plain"]),
                     ratio(med["vclock"], med["plain"]),
                     fmt(per("vclock", "wal_message_bytes"), 0)
                     if r.get("walinspect") else "-"))
        if r.get("walinspect"):
            med = {v: per_nofpi(v) for v in VARIANTS}
            rows.append(("  without full-page images",
                         *(fmt(med[v], 0) for v in VARIANTS),
                         ratio(med["lww"], med["plain"]),
                         ratio(med["vclock"], med["plain"]), ""))
    p("")
    p("\n".join(render(rows, ("WAL bytes/txn", *VARIANTS, "lww/plain",
                              "vclock/plain", "vclock msgs"))))
    if r.get("walinspect"):
        p("WAL of each variant's own relations and transactions (pg_walinspect: "
          "records touching its table, versions table, sequences or their "
          "indexes, plus the commits and logical messages of those "
          "transactions).  A CHECKPOINT precedes every run, so each run pays "
          "the full-page images of every page it touches first; the line "
          "without them is the steady-state cost.  'vclock msgs': the "
          "xregion.vclock logical messages, included in the vclock figures.")
    rows = []
    for w in WORKLOADS:
        d = runs.get(w, {})
        med = {v: median([x["cluster_wal_bytes"] / x["transactions"]
                          for x in d.get(v, []) if x["transactions"]])
               for v in VARIANTS}
        rows.append((w, *(fmt(med[v], 0) for v in VARIANTS)))
    p("")
    p("\n".join(render(rows, ("cluster WAL bytes/txn", *VARIANTS))))
    p("pg_current_wal_flush_lsn() difference over the run / transactions: "
      "includes every other session of the cluster (shared stack), so an "
      "upper bound.")

    sizes = r.get("sizes", {})
    rows = []
    for v in VARIANTS:
        s = sizes.get(v)
        if not s:
            continue
        tb = s["table_bytes"] / s["table_rows"] if s["table_rows"] else None
        vb = (s["versions_bytes"] / s["versions_rows"]
              if s.get("versions_rows") else None)
        rows.append((v, f"{s['table_rows']:,}", fmt(tb, 0),
                     f"{s['versions_rows']:,}" if "versions_rows" in s else "-",
                     f"{s['versions_live']:,}" if "versions_live" in s else "-",
                     f"{s['versions_bytes']:,}" if "versions_bytes" in s else "-",
                     fmt(vb, 0)))
    if rows:
        p("")
        p("\n".join(render(rows, ("after the runs", "table rows",
                                  "table B/row", "versions rows", "of them live",
                                  "versions bytes", "versions B/row"))))
        p("B/row = pg_total_relation_size (heap, indexes, TOAST, dead tuples "
          "included) / count(*); versions rows include the tombstones of "
          "deleted rows.")
    if r.get("vclock_versions_sample"):
        p(f"vclock versions row of id 1: {r['vclock_versions_sample']}")

    p("")
    p("Per run (TPS in run order; WAL B/txn; 1-minute load average at "
      "the end of the run):")
    for w in WORKLOADS:
        for v in VARIANTS:
            xs = runs.get(w, {}).get(v, [])
            if not xs:
                continue
            wal = ", ".join(fmt(x.get(key, 0) / max(x["transactions"], 1), 0)
                            for x in xs)
            failed = sum(x.get("failed", 0) for x in xs)
            load = ", ".join(str(x.get("loadavg", "?")) for x in xs)
            p(f"  {w:6} {v:6}: " + ", ".join(fmt(x["tps"]) for x in xs)
              + f"   (WAL {wal}; load average {load})"
              + (f"  {failed} failed txns" if failed else ""))
    misses = r.get("mixed_delete_misses", {})
    if any(misses.values()):
        p(f"  note: mixed deletes that found no row yet: {misses}")
    p(f"load average: start {r.get('loadavg_start', '?')}, end "
      f"{r.get('loadavg_end', '?')}; other xregion processes on the machine: "
      f"{r.get('other_xregion_processes', '?')}")
    text = "\n".join(out)
    print(text)
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(r, f, indent=2, sort_keys=True)
            f.write("\n")
        with open(a.out[:-len(".json")] + ".txt", "w") as f:
            f.write(text.lstrip("\n") + "\n")
        print(f"results: {a.out} (and .txt)")


def cmd_set(a):
    try:
        v = json.loads(a.value)
    except ValueError:
        v = a.value
    store(a.results, a.key, v)


def cmd_dropdb(a):
    drop_db(a.port, a.db, a.slot)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("prepare", "load", "measure", "dropdb"):
        sp = sub.add_parser(name)
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--db", required=True)
        sp.add_argument("--slot")
        sp.add_argument("--results")
        sp.add_argument("--rows", type=int, default=100000)
        sp.add_argument("--seconds", type=int, default=10)
        sp.add_argument("--runs", type=int, default=3)
        sp.add_argument("--clients", type=int, default=4)
        sp.add_argument("--warmup", type=int, default=2)
        sp.add_argument("--pgbench", default="/usr/lib/postgresql/15/bin/pgbench")
        sp.add_argument("--workdir", default="/tmp")
        sp.add_argument("--logs")
    sp = sub.add_parser("set")
    sp.add_argument("--results", required=True)
    sp.add_argument("key")
    sp.add_argument("value")
    sp = sub.add_parser("report")
    sp.add_argument("--results", required=True)
    sp.add_argument("--out")
    a = p.parse_args()
    {"prepare": cmd_prepare, "load": cmd_load, "measure": cmd_measure,
     "dropdb": cmd_dropdb, "set": cmd_set, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
