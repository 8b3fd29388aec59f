#!/usr/bin/env python3
"""Feeder benchmark: N change events already on Kafka, fed into Avro files
by `xregion feed --once` (each codec) and applied by `xregion consume` to
another region, on this machine, in one run, against the running local
stack (scripts/stack.sh up).

  xregion feed --once       rows/s into committed files, per codec (deflate,
                            snappy, null), file sizes, CPU seconds
  xregion consume           the same topics applied to a PostgreSQL table
                            (eu), until every row is there: rows/s, CPU
                            seconds of the consumer and of its database
                            backend

The events are made once: N rows inserted in us (1,000 rows per
transaction) while `xregion produce` runs, until all N are on Kafka.  Also
prints the bytes the events take on Kafka (Avro single-object values) next
to the files.  Checks (not timed): the files hold N rows, each event once.

Usage: bench/feed.py [--rows N] [--json FILE]
"""
import argparse
import glob
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import fastavro

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from replication import connect, cpu_seconds, dsn, one, say  # noqa: E402
from backfill import recreate, write_config  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
XREGION = os.environ.get("XREGION_BIN", os.path.join(ROOT, "build", "xregion"))
BROKERS = os.environ.get("XR_KAFKA_BROKERS", "127.0.0.1:19092")
SRC_PORT, DST_PORT = 15432, 15433
TABLE_SQL = ("CREATE TABLE items (id bigint PRIMARY KEY, a int, b text, "
             "c timestamptz, d numeric(12,2))")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def topic_bytes(topic):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "xrbench-size",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    total, n = 0, 0
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, 0) for p in md.partitions]
        ends = {p.partition: c.get_watermark_offsets(p, timeout=10)[1] for p in parts}
        c.assign(parts)
        left = {p for p, e in ends.items() if e > 0}
        while left:
            m = c.poll(5)
            if m is None:
                break
            if m.error():
                left.discard(m.partition())
                continue
            total += len(m.value() or b"") + len(m.key() or b"")
            n += 1
            if m.offset() + 1 >= ends[m.partition()]:
                left.discard(m.partition())
    finally:
        c.close()
    return total, n


def du(path):
    total = 0
    for fn in glob.glob(os.path.join(path, "*", "dt=*", "hr=*", "*.avro")):
        total += os.path.getsize(fn)
    return total


def count_rows(path):
    n, ids = 0, set()
    for fn in glob.glob(os.path.join(path, "*", "dt=*", "hr=*", "*.avro")):
        with open(fn, "rb") as fh:
            for r in fastavro.reader(fh):
                n += 1
                ids.add(r["__event_id"])
    return n, len(ids)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--json", help="write the figures to this file")
    a = ap.parse_args()

    tag = uuid.uuid4().hex[:8]
    prefix = f"xrfd{tag}"
    tmp = tempfile.mkdtemp(prefix="xrbench-feed-")
    recreate(SRC_PORT, "fdb_src")
    recreate(DST_PORT, "fdb_dst")
    for port, db in ((SRC_PORT, "fdb_src"), (DST_PORT, "fdb_dst")):
        with connect(port, db) as c:
            c.execute(TABLE_SQL)
    us = write_config(tmp, "us", "fdb_src", SRC_PORT, prefix, f"fdb_{tag}_us",
                      ("public.items",))
    eu = write_config(tmp, "eu", "fdb_dst", DST_PORT, prefix, f"fdb_{tag}_eu",
                      ("public.items",))
    for cfg in (us, eu):
        subprocess.run([XREGION, "setup", "-c", cfg], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    topic = f"{prefix}.us.public.items"
    res = {"rows": a.rows, "cores": os.cpu_count()}
    consumer = None
    try:
        say(f"making {a.rows:,} events: insert in us, xregion produce ...")
        logf = open(os.path.join(tmp, "produce.log"), "w")
        prod = subprocess.Popen([XREGION, "produce", "-c", us], stdout=logf,
                                stderr=subprocess.STDOUT)
        with connect(SRC_PORT, "fdb_src") as s:
            for lo in range(1, a.rows + 1, 1000):
                s.execute("INSERT INTO items SELECT g, g %% 1000, md5(g::text), "
                          "now(), g / 7.0 FROM generate_series(%s::bigint, %s::bigint) g",
                          (lo, min(lo + 999, a.rows)))
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": BROKERS, "group.id": "xrbench-wm"})
        while True:
            n = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in range(3))
            if n >= a.rows:
                break
            assert prod.poll() is None, f"xregion produce exited: see {tmp}"
            time.sleep(0.5)
        c.close()
        prod.send_signal(signal.SIGTERM)
        prod.wait(60)
        logf.close()
        kbytes, kmsgs = topic_bytes(topic)
        res["kafka"] = {"bytes": kbytes, "messages": kmsgs}

        # The Kafka read alone: kcat (librdkafka's own client) reading the
        # same topic to its end, printing only offsets.
        kc = shutil.which("kcat") or shutil.which("kafkacat")
        if kc:
            say("kcat: the topic read alone ...")
            c0 = children_cpu()
            t0 = time.monotonic()
            r = subprocess.run([kc, "-b", BROKERS, "-C", "-t", topic, "-o",
                                "beginning", "-e", "-q", "-f", "%o\n"],
                               capture_output=True, text=True)
            secs = time.monotonic() - t0
            assert r.stdout.count("\n") == a.rows, "kcat read another count"
            res["kcat"] = {"seconds": secs, "cpu_s": round(children_cpu() - c0, 2)}

        res["feed"] = {}
        for codec in ("deflate", "snappy", "null"):
            out = os.path.join(tmp, f"lake-{codec}")
            say(f"xregion feed --once --codec {codec} ...")
            c0 = children_cpu()
            t0 = time.monotonic()
            r = subprocess.run([XREGION, "feed", "-c", us, "--out", out, "--once",
                                "--codec", codec, "--regions", "us"],
                               capture_output=True, text=True)
            secs = time.monotonic() - t0
            cpu = children_cpu() - c0
            assert r.returncode == 0, r.stderr[-3000:]
            rows, ids = count_rows(out)
            assert rows == a.rows and ids == a.rows, \
                f"{codec}: {rows} rows, {ids} distinct events in the files"
            say(f"  {secs:.2f} s, {a.rows / secs:.0f} rows/s, {cpu:.2f} CPU s")
            res["feed"][codec] = {"seconds": secs, "cpu_s": round(cpu, 2),
                                  "bytes": du(out),
                                  "files": len(glob.glob(os.path.join(
                                      out, "*", "dt=*", "hr=*", "*.avro")))}
            shutil.rmtree(out)

        say("xregion consume (eu) of the same topic ...")
        with connect(DST_PORT, "fdb_dst") as d:
            logf = open(os.path.join(tmp, "consume.log"), "w")
            t0 = time.monotonic()
            consumer = subprocess.Popen([XREGION, "consume", "-c", eu], stdout=logf,
                                        stderr=subprocess.STDOUT)
            backend = None
            while True:
                n = one(d, "SELECT count(*) FROM items")
                if backend is None:
                    row = d.execute("SELECT pid FROM pg_stat_activity WHERE "
                                    "datname = 'fdb_dst' AND pid <> "
                                    "pg_backend_pid() AND backend_type = "
                                    "'client backend' LIMIT 1").fetchone()
                    backend = row[0] if row else None
                    b_cpu0 = cpu_seconds(backend) if backend else None
                if n >= a.rows:
                    break
                assert consumer.poll() is None, f"xregion consume exited: see {tmp}"
                time.sleep(0.2)
            secs = time.monotonic() - t0
            cpu = cpu_seconds(consumer.pid)
            bcpu = (cpu_seconds(backend) - b_cpu0) if backend and b_cpu0 is not None \
                else None
        res["consume"] = {"seconds": secs, "cpu_s": round(cpu, 2),
                          "backend_cpu_s": round(bcpu, 2) if bcpu is not None else None}
    finally:
        if consumer:
            consumer.send_signal(signal.SIGTERM)
            consumer.wait(60)
        for cfg in (us, eu):
            subprocess.run([XREGION, "teardown", "-c", cfg],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    n = a.rows
    cons = res["consume"]["seconds"]
    print()
    print(f"Feed of {n:,} events (items: bigint, int, text, timestamptz, "
          f"numeric(12,2); inserts), {res['cores']} cores")
    print(f"  on Kafka: {res['kafka']['bytes'] / 1e6:.1f} MB (keys and Avro "
          f"single-object values, {res['kafka']['messages']:,} messages)")
    print(f"{'stage':34} {'seconds':>8} {'rows/s':>10} {'ratio':>7} "
          f"{'CPU s':>7} {'files':>6} {'MB':>8}")
    for codec, f in res["feed"].items():
        print(f"{'xregion feed --codec ' + codec:34} {f['seconds']:8.2f} "
              f"{n / f['seconds']:10.0f} {cons / f['seconds']:7.2f} "
              f"{f['cpu_s']:7.2f} {f['files']:6d} {f['bytes'] / 1e6:8.1f}")
    if "kcat" in res:
        k = res["kcat"]
        print(f"{'kcat: the topic read alone':34} {k['seconds']:8.2f} "
              f"{n / k['seconds']:10.0f} {cons / k['seconds']:7.2f} "
              f"{k['cpu_s']:7.2f}")
    cc = res["consume"]
    print(f"{'xregion consume (apply to eu)':34} {cons:8.2f} {n / cons:10.0f} "
          f"{1.0:7.2f} {cc['cpu_s']:7.2f}")
    print(f"  (ratio: consume seconds / feed seconds; the consumer's database "
          f"backend used {cc['backend_cpu_s']} CPU s more)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
