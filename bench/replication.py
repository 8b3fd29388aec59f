"""Measurement side of bench/replication.sh (see its --help).

Each subcommand does one step; timed steps add their figures to a JSON
results file (--results) under a dotted key such as "xregion.insert", so the
shell script only orchestrates processes and clusters.

  prepare     drop and create a database with the items table
  dropdb      drop a database (and the bench's replication slots/origins in it)
  warmup      insert and delete one row on the source, wait for the destination
  insert      time a one-transaction INSERT of N rows until the destination has them
  update      time UPDATE ... WHERE id % 2 = 0 until the destination reflects it
  oltp        pgbench single-row updates on the source, then the time until
              the destination has caught up
  latency     pgbench single-row updates at fixed rates (-R); a trigger on
              the destination stamps each row's arrival: p50/p99 of arrival
              minus the source's statement time
  stage-load  make a stage's backlog (with pgoutput slots for other readers)
  stage       time one stage alone over that backlog
  set         store a value in the results file
  topic-create create a Kafka topic (for Debezium's events)
  topics-drop delete the Kafka topics (and consumer groups) of a topic prefix
  report      print the result table, write the final JSON
"""
import argparse
import json
import os
import sys
import threading
import time

import psycopg

TABLE_SQL = ("CREATE TABLE items (id bigint PRIMARY KEY, a int, b text, "
             "c timestamptz); CREATE TABLE stage (LIKE items INCLUDING ALL)")
POLL = 0.2          # seconds between destination polls
PROGRESS = 5.0      # seconds between progress lines


def say(msg):
    print(f"[bench] {msg}", flush=True)


def dsn(port, db):
    return f"host=127.0.0.1 port={port} dbname={db} user=postgres"


def connect(port, db="postgres"):
    # application_name marks the bench's own sessions, which CPU accounting skips
    return psycopg.connect(dsn(port, db), autocommit=True,
                           application_name="xrbench")


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()[0]


# -------------------------------------------------------------- results file

def load(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}


def store(path, key, value):
    data = load(path)
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


# ---------------------------------------------------------- databases, slots

def drop_db(port, db, slot_like=None):
    """Drops db after its replication slots; and origins named slot_like."""
    with connect(port) as c:
        for (slot, pid) in c.execute(
                "SELECT slot_name, active_pid FROM pg_replication_slots "
                "WHERE database = %s", (db,)).fetchall():
            if pid:
                c.execute("SELECT pg_terminate_backend(%s)", (pid,))
                time.sleep(0.5)
            c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        if slot_like:
            # every origin of a bench slot (xrbench_<suffix>_<region>_from_<src>),
            # including ones a killed run left behind; none are in use by others
            c.execute("SELECT pg_replication_origin_drop(roname) FROM "
                      "pg_replication_origin WHERE roname LIKE %s", (slot_like,))
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def cmd_prepare(a):
    drop_db(a.port, a.db, a.origins_like)
    with connect(a.port) as c:
        c.execute(f'CREATE DATABASE "{a.db}"')
    with connect(a.port, a.db) as c:
        c.execute(TABLE_SQL)
    say(f"database {a.db} on 127.0.0.1:{a.port}: fresh, with table items")


def cmd_dropdb(a):
    drop_db(a.port, a.db, a.origins_like)


# ------------------------------------------------------------ Kafka progress

class KafkaWatch:
    """Sum of the high watermarks of one topic: how many events are in Kafka."""

    def __init__(self, brokers, topic):
        from confluent_kafka import Consumer, TopicPartition
        self.tp = TopicPartition
        self.topic = topic
        self.c = Consumer({"bootstrap.servers": brokers,
                           "group.id": "xrbench-watch",
                           "enable.auto.commit": False})
        md = self.c.list_topics(topic, timeout=10).topics[topic]
        self.parts = sorted(md.partitions)

    def events(self):
        return sum(self.c.get_watermark_offsets(self.tp(self.topic, p),
                                                timeout=10, cached=False)[1]
                   for p in self.parts)

    def close(self):
        self.c.close()


class Sampler(threading.Thread):
    """Samples Kafka's event count every POLL s: when were all events there."""

    def __init__(self, watch, target, t0):
        super().__init__(daemon=True)
        self.watch, self.target, self.t0 = watch, target, t0
        self.done_at = None
        self.first_at = None
        self.last = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                n = self.watch.events()
            except Exception:  # keep sampling; a miss only blurs the figure
                n = self.last
            now = time.monotonic() - self.t0
            self.last = n
            if n > self.target[0] and self.first_at is None:
                self.first_at = now
            if n >= self.target[1]:
                self.done_at = now
                return
            self.stop.wait(POLL)


# ------------------------------------------------------------ CPU accounting

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """user+system CPU seconds of a process and all its threads, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


class CpuWatch:
    """CPU used during a step by each process taking part: the replication
    backends of the two databases (walsenders, the apply session or worker)
    and the processes named with --pids (xregion, Kafka)."""

    def __init__(self, a, src, dst):
        self.sides = ((src, a.src_db, "source"), (dst, a.dst_db, "dest"))
        self.extra = {}
        for item in (a.pids or "").split(","):
            if "=" in item:
                name, pid = item.split("=", 1)
                self.extra[int(pid)] = name
        self.last, self.peak = {}, {}
        self.start = self.snapshot()

    def procs(self):
        found = dict(self.extra)
        for conn, db, side in self.sides:
            for pid, btype, app in conn.execute(
                    "SELECT pid, backend_type, coalesce(nullif("
                    "application_name, ''), '?') FROM pg_stat_activity "
                    "WHERE datname = %s AND coalesce(application_name, '') "
                    "<> 'xrbench'", (db,)).fetchall():
                found[pid] = f"{side} {btype} ({app})"
        return found

    def snapshot(self):
        return {pid: (name, cpu_seconds(pid))
                for pid, name in self.procs().items()}

    def sample(self):
        """Notes the CPU time (and peak RSS) of every process now taking
        part, so that one that starts after the step began (counted from
        0) or ends before it ends (counted until its last sample) is in
        the figures too."""
        for pid, (name, cpu) in self.snapshot().items():
            if cpu is not None:
                self.last[pid] = (name, cpu)
            rss = peak_rss_mb(pid)
            if rss is not None:
                self.peak[name] = max(self.peak.get(name, 0.0), rss)

    def add(self, name, pid):
        self.extra[int(pid)] = name

    def usage(self, wall):
        """{name: cpu seconds} for the step, summed over pids of one name."""
        self.sample()
        out = {}
        for pid, (name, cpu) in self.last.items():
            before = self.start.get(pid, (name, 0.0))[1] or 0.0
            out[name] = out.get(name, 0.0) + cpu - before
        return {k: round(v, 2) for k, v in sorted(out.items())}


def peak_rss_mb(pid):
    """The peak resident set of a process so far (VmHWM), in MiB, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# ------------------------------------------------------------- timed steps

def checkpoint(*conns):
    for c in conns:
        c.execute("CHECKPOINT")


def wait_for(label, dst, check, t0, timeout, progress):
    """Polls check(dst) every POLL s until true; returns (seconds since t0,
    seconds when the destination first changed)."""
    last_print = time.monotonic()
    first = None
    while True:
        ok, seen = check(dst)
        now = time.monotonic()
        if seen and first is None:
            first = now - t0
        if ok:
            return now - t0, first
        if now - t0 > timeout:
            raise SystemExit(f"[bench] {label}: destination not caught up after "
                             f"{timeout:.0f} s ({progress(seen)})")
        if now - last_print >= PROGRESS:
            say(f"  {label}: {now - t0:6.1f} s, destination {progress(seen)}")
            last_print = now
        time.sleep(POLL)


def start_watch(a):
    if not a.kafka_topic:
        return None, None
    w = KafkaWatch(a.brokers, a.kafka_topic)
    base = w.events()
    return w, base


def finish(a, label, res, sampler, watch, cpu=None):
    if cpu:
        res["cpu_s"] = cpu.usage(res["seconds"])
    if sampler:
        sampler.stop.set()
        sampler.join(5)
        res["kafka_first_s"] = sampler.first_at
        res["kafka_all_s"] = sampler.done_at
        watch.close()
    parts = [f"{k}={v:.2f}" for k, v in res.items()
             if isinstance(v, float) and k != "seconds"]
    say(f"{label}: {res['seconds']:.2f} s  ({', '.join(parts)})")
    store(a.results, a.key, res)


def cmd_insert(a):
    src, dst = connect(a.src_port, a.src_db), connect(a.dst_port, a.dst_db)
    checkpoint(src, dst)
    watch, base = start_watch(a)
    n = a.rows
    cpu = CpuWatch(a, src, dst)
    label = f"{a.key}: INSERT {n} rows"
    say(f"{label} in one transaction on 127.0.0.1:{a.src_port}/{a.src_db}")
    t0 = time.monotonic()
    sampler = None
    if watch:
        sampler = Sampler(watch, (base, base + n), t0)
        sampler.start()
    src.execute("INSERT INTO items SELECT g, (g %% 1000)::int, md5(g::text), "
                "now() FROM generate_series(1, %s) g", (n,))
    committed = time.monotonic() - t0
    say(f"  {a.key}: source committed after {committed:.2f} s")

    def check(c):
        k = one(c, "SELECT count(*) FROM items")
        return k >= n, k

    total, first = wait_for(a.key, dst, check, t0, a.timeout,
                            lambda k: f"{k}/{n} rows")
    res = {"seconds": total, "rows": n, "source_commit_s": committed,
           "dest_first_rows_s": first, "rows_per_s": n / total}
    finish(a, f"{a.key} done", res, sampler, watch, cpu)


def sums(c):
    return c.execute("SELECT count(*), coalesce(sum(a), 0), "
                     "coalesce(sum(length(b)), 0) FROM items").fetchone()


def cmd_update(a):
    src, dst = connect(a.src_port, a.src_db), connect(a.dst_port, a.dst_db)
    for c in (src, dst):
        c.execute("VACUUM ANALYZE items")
    checkpoint(src, dst)
    n = one(src, "SELECT count(*) FROM items WHERE id % 2 = 0")
    before = sums(dst)
    watch, base = start_watch(a)
    cpu = CpuWatch(a, src, dst)
    label = f"{a.key}: UPDATE {n} rows"
    say(f"{label} in one transaction on 127.0.0.1:{a.src_port}/{a.src_db}")
    t0 = time.monotonic()
    sampler = None
    if watch:
        sampler = Sampler(watch, (base, base + n), t0)
        sampler.start()
    updated = src.execute("UPDATE items SET a = a + 1, b = b || 'x' "
                          "WHERE id % 2 = 0").rowcount
    committed = time.monotonic() - t0
    want = sums(src)
    say(f"  {a.key}: source committed {updated} updates after {committed:.2f} s")

    # each update adds 1 to a and 1 to length(b) of a distinct row, so the
    # destination's sums equal the source's only once all of them arrived
    def check(c):
        got = sums(c)
        return got == want, (got[1] - before[1]) if got != before else 0

    total, first = wait_for(a.key, dst, check, t0, a.timeout,
                            lambda k: f"{k}/{updated} updates")
    res = {"seconds": total, "rows": updated, "source_commit_s": committed,
           "dest_first_rows_s": first, "rows_per_s": updated / total}
    finish(a, f"{a.key} done", res, sampler, watch, cpu)


def cmd_warmup(a):
    """One row through the pipeline and back out: connections, schemas and
    subscriptions are live before anything is timed."""
    src, dst = connect(a.src_port, a.src_db), connect(a.dst_port, a.dst_db)
    t0 = time.monotonic()
    src.execute("INSERT INTO items VALUES (-1, 0, 'warmup', now())")
    wait_for("warmup insert", dst,
             lambda c: (one(c, "SELECT count(*) FROM items WHERE id = -1") == 1,
                        None), t0, a.timeout, lambda _: "not yet")
    src.execute("DELETE FROM items WHERE id = -1")
    wait_for("warmup delete", dst,
             lambda c: (one(c, "SELECT count(*) FROM items") == 0, None),
             t0, a.timeout, lambda _: "not yet")
    say(f"warm-up row replicated and deleted in {time.monotonic() - t0:.2f} s")
    # xregion logs what it took for a conflict; none is expected here
    if one(dst, "SELECT to_regclass('xregion.conflicts') IS NOT NULL"):
        rows = dst.execute("SELECT kind, resolution, key::text, local_row::text, "
                           "remote_row::text FROM xregion.conflicts "
                           "ORDER BY id").fetchall()
        for r in rows:
            say(f"  warm-up: destination logged conflict {r[0]}/{r[1]} key {r[2]}"
                f" local {r[3]} remote {r[4]}")
        if a.results:
            store(a.results, a.key + "_conflicts", [list(r) for r in rows])


def cmd_oltp(a):
    """pgbench on the source, then the time until the destination caught up."""
    import re
    import subprocess
    src, dst = connect(a.src_port, a.src_db), connect(a.dst_port, a.dst_db)
    for c in (src, dst):
        c.execute("VACUUM ANALYZE items")
    checkpoint(src, dst)
    script = os.path.join(os.path.dirname(a.results), "oltp.sql")
    with open(script, "w") as f:
        f.write(f"\\set id random(1, {a.rows})\n"
                "UPDATE items SET a = a + 1 WHERE id = :id;\n")
    cmd = [a.pgbench, "-h", "127.0.0.1", "-p", str(a.src_port), "-U", "postgres",
           "-n", "-M", "prepared", "-c", str(a.clients),
           "-j", str(min(a.clients, os.cpu_count() or 1)),
           "-T", str(a.seconds), "-P", "5", "-f", script, a.src_db]
    say(f"{a.key}: pgbench, {a.clients} clients, {a.seconds} s of single-row "
        f"updates on 127.0.0.1:{a.src_port}/{a.src_db}")
    cpu = CpuWatch(a, src, dst)
    before = sums(dst)[1]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    out = []
    for line in p.stdout:
        out.append(line)
        if line.startswith("progress:"):
            say("  " + line.strip())
    rc = p.wait()
    ended = time.monotonic()
    text = "".join(out)
    if a.log:
        with open(a.log, "w") as f:
            f.write(" ".join(cmd) + "\n" + text)
    if rc:
        raise SystemExit(f"[bench] pgbench exited {rc}:\n{text}")
    tps = float(re.search(r"tps = ([0-9.]+) \(without initial", text).group(1))
    txns = int(re.search(r"actually processed: (\d+)", text).group(1))
    want = sums(src)
    got = sums(dst)
    behind = want[1] - got[1]
    say(f"  {a.key}: {txns} updates, {tps:.1f} TPS on the source; destination "
        f"{behind} updates behind {time.monotonic() - ended:.2f} s after the "
        "load ended")

    def check(c):
        g = sums(c)
        return g == want, want[1] - g[1]

    secs, _ = wait_for(a.key + " catch-up", dst, check, ended, a.timeout,
                       lambda k: f"{k} updates behind")
    arrived = want[1] - before
    res = {"tps": tps, "transactions": txns, "clients": a.clients,
           "seconds": a.seconds, "catchup_s": secs, "behind_at_end": behind,
           "replicated_updates": arrived,
           "cpu_s": cpu.usage(a.seconds + secs)}
    store(a.results, a.key, res)
    say(f"{a.key}: {tps:.1f} TPS; destination caught up {secs:.2f} s after "
        "the load ended")


# ------------------------------------------------- stages, each one alone

STAGE_POLL = 0.05   # seconds between checks while a stage is timed


def stage_sums(c):
    return list(c.execute("SELECT count(*), coalesce(sum(a), 0), "
                          "coalesce(sum(length(b)), 0) FROM stage").fetchone())


def cmd_stage_load(a):
    """The backlog of a stage: one transaction on the source's table stage
    (an INSERT of --rows rows, or an UPDATE of every second one) while
    nothing reads it; stores what the destination must end with, where the
    WAL ended, and how many events Kafka had before.  With --recv-slot
    (pg_recvlogical's) and each --slot (another reader's, e.g. Debezium's)
    a pgoutput slot is made first, so that each reader has the same
    backlog.  Each --advance-slot (xregion's, not read meanwhile) is moved
    to the WAL's end first, past a checkpoint's record of the running
    transactions: its restart point then follows, as it does within 15 s
    in a deployment that streams, and the stage does not decode the
    previous stage's backlog again (the fresh slots of the other readers
    never do)."""
    src = connect(a.src_port, a.src_db)
    for slot in ([a.recv_slot] if a.recv_slot else []) + (a.slot or []):
        src.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                    (slot,))
    watch, base = start_watch(a)
    if watch:
        watch.close()
    checkpoint(src)
    for slot in a.advance_slot or []:
        src.execute("SELECT pg_replication_slot_advance(%s, "
                    "pg_current_wal_lsn())", (slot,))
    t0 = time.monotonic()
    if a.op == "insert":
        n = src.execute("INSERT INTO stage SELECT g, (g %% 1000)::int, "
                        "md5(g::text), now() FROM generate_series(1, %s) g",
                        (a.rows,)).rowcount
    else:
        n = src.execute("UPDATE stage SET a = a + 1, b = b || 'x' "
                        "WHERE id % 2 = 0").rowcount
    committed = time.monotonic() - t0
    res = {"op": a.op, "changes": n, "source_commit_s": committed,
           "want": stage_sums(src), "kafka_base": base,
           "endpos": one(src, "SELECT pg_current_wal_lsn()::text")}
    say(f"{a.key}: {a.op} of {n} rows committed on the source in "
        f"{committed:.2f} s; backlog up to {res['endpos']}")
    store(a.results, a.key, res)


def drop_slot(conn, slot, wait=15.0):
    """Drops a replication slot once its reader has let go of it (the
    walsender of a reader that just exited may linger a moment; after
    `wait` s it is terminated)."""
    deadline = time.monotonic() + wait
    while True:
        row = conn.execute("SELECT active_pid FROM pg_replication_slots "
                           "WHERE slot_name = %s", (slot,)).fetchone()
        if row is None:
            return
        if row[0] is None:
            break
        if time.monotonic() > deadline:
            conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        time.sleep(0.1)
    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def stop_process(proc, grace=10.0):
    """SIGTERM, then SIGKILL after grace s, to a process a stage started."""
    import subprocess
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def reported_json(path):
    """The last line of a log that is a JSON object (a program's own
    report on stdout, e.g. DebeziumCapture's), or None."""
    found = None
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{") and line.endswith("}"):
                    try:
                        found = json.loads(line)
                    except ValueError:
                        pass
    except OSError:
        pass
    return found


def log_tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def cmd_stage(a):
    """Times one stage alone over the backlog stage-load made (--load):
    from starting a process (--start, or pg_recvlogical with --recvlogical)
    or running --sql-start on the destination, until the process exits
    (--until exit), Kafka has every event (kafka) or the destination has
    every row (dest).  Reports the CPU seconds and peak RSS of every
    process taking part.  In --start, {changes} and {endpos} stand for the
    backlog's number of changes and end LSN.  A started process that is
    still running when the stage fails is stopped."""
    import shlex
    load_res = load(a.results)
    for part in a.load.split("."):
        load_res = load_res[part]
    n = load_res["changes"]
    src, dst = connect(a.src_port, a.src_db), connect(a.dst_port, a.dst_db)
    cpu = CpuWatch(a, src, dst)
    watch = None
    if a.until == "kafka":
        watch = KafkaWatch(a.brokers, a.kafka_topic)
    cmd = None
    if a.start:
        cmd = [w.replace("{changes}", str(n)).replace("{endpos}",
                                                      load_res["endpos"])
               for w in shlex.split(a.start)]
    if a.recvlogical:
        cmd = [a.recvlogical, "-h", "127.0.0.1", "-p", str(a.src_port),
               "-U", "postgres", "-d", a.src_db, "-S", a.recv_slot,
               "--start", "--no-loop", "-E", load_res["endpos"],
               "-o", "proto_version=1", "-o", "publication_names=" + a.publication,
               "-o", "messages=true", "-f", a.log]
    try:
        return stage_run(a, cmd, load_res, n, src, dst, cpu, watch)
    except BaseException:
        stop_process(proc_of.get("proc"))
        raise


proc_of = {}    # the process the stage at hand started, for stop_process


def stage_run(a, cmd, load_res, n, src, dst, cpu, watch):
    import subprocess
    proc = perf = None
    t0 = time.monotonic()
    if cmd:
        out = subprocess.DEVNULL if a.recvlogical else open(a.log, "ab")
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT if not a.recvlogical
                                else None, start_new_session=True)
        proc_of["proc"] = proc
        cpu.add(a.name, proc.pid)
        if os.environ.get("XR_BENCH_PERF") and not a.recvlogical:
            # a profile of the started process for the stage (perf report -i)
            perf = subprocess.Popen(
                ["perf", "record", "-q", "--call-graph", "dwarf,16384", "-F", os.environ.get("XR_BENCH_PERF_HZ", "99"), "-p", str(proc.pid),
                 "-o", os.path.join(os.environ["XR_BENCH_PERF"],
                                    f"{a.key}.perf.data")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if a.pidfile:
            with open(a.pidfile, "w") as f:
                f.write(f"{proc.pid}\n")
    if a.sql_start:
        dst.execute(a.sql_start)
    last_print = t0
    exit_usage = None
    while True:
        now = time.monotonic()
        if a.until == "exit":
            # wait4: the exit status and the process's own rusage (all its
            # CPU time and its peak RSS, also of the last moments unsampled)
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            rc = None
            if pid:
                rc = proc.returncode = os.waitstatus_to_exitcode(status)
                exit_usage = ru
            if rc is not None:
                if rc:
                    tail = "" if a.recvlogical or not a.log else (
                        f"; last lines of {a.log}:\n{log_tail(a.log)}")
                    raise SystemExit(f"[bench] {a.key}: {cmd[0]} exited "
                                     f"{rc}{tail}")
                break
            done = None
        elif a.until == "kafka":
            got = watch.events() - load_res["kafka_base"]
            done = got >= n
        else:
            got = stage_sums(dst)
            done = got == load_res["want"]
        if done:
            break
        if now - t0 > a.timeout:
            raise SystemExit(f"[bench] {a.key}: not done after {a.timeout:.0f} s")
        if now - last_print >= PROGRESS:
            say(f"  {a.key}: {now - t0:6.1f} s")
            last_print = now
        cpu.sample()
        time.sleep(STAGE_POLL)
    secs = time.monotonic() - t0
    if perf:
        perf.send_signal(2)
        perf.wait(30)
    res = {"seconds": secs, "changes": n, "changes_per_s": n / secs,
           "cpu_s": cpu.usage(secs),
           "peak_rss_mb": {k: round(v, 1) for k, v in sorted(cpu.peak.items())
                           if k in (a.name, "kafka") or k.startswith("xregion")}}
    if exit_usage is not None:
        res["cpu_s"][a.name] = round(exit_usage.ru_utime + exit_usage.ru_stime, 2)
        res["peak_rss_mb"][a.name] = round(max(
            res["peak_rss_mb"].get(a.name, 0.0), exit_usage.ru_maxrss / 1024), 1)
    if watch:
        watch.close()
    if a.sql_end:
        dst.execute(a.sql_end)
    while a.sql_end_wait and not one(dst, a.sql_end_wait):
        time.sleep(STAGE_POLL)
    if a.recv_slot and a.until == "exit":
        drop_slot(src, a.recv_slot)
    if a.drop_slot:
        drop_slot(src, a.drop_slot)
    if a.report_json and a.log:
        rep = reported_json(a.log)
        if rep is None:
            raise SystemExit(f"[bench] {a.key}: no JSON report in {a.log}:\n"
                             + log_tail(a.log))
        res["reported"] = rep
    if a.count_topic:
        # the topic's records (no transactions: offsets are contiguous)
        w = KafkaWatch(a.brokers, a.count_topic)
        res["kafka_events"] = w.events()
        w.close()
        if res["kafka_events"] != n:
            say(f"  {a.key}: {a.count_topic} has {res['kafka_events']} events, "
                f"the backlog {n} changes")
    cpu_total = sum(res["cpu_s"].values())
    rss = ", ".join(f"{k} {v:.0f} MiB" for k, v in res["peak_rss_mb"].items()
                    if k != "kafka")
    say(f"{a.key}: {n} changes in {secs:.2f} s ({n / secs:.0f}/s), "
        f"{cpu_total:.1f} CPU s: " + ", ".join(
            f"{k} {v:.1f}" for k, v in res["cpu_s"].items() if v >= 0.05)
        + (f"; peak RSS {rss}" if rss else ""))
    if res.get("reported"):
        r = res["reported"]
        say(f"  {a.key}: {a.name} reports {r.get('events')} events acknowledged"
            f" {r.get('seconds', 0):.2f} s after its start "
            f"({r.get('events_per_s', 0):.0f}/s; first event at "
            f"{r.get('first_event_s', 0):.2f} s, "
            f"{r.get('events_per_s_from_first_event', 0):.0f}/s from it)")
    store(a.results, a.key, res)


LATENCY_SQL = """
CREATE TABLE IF NOT EXISTS xrbench_arrivals (id bigint, src timestamptz,
                                             arrived timestamptz);
CREATE OR REPLACE FUNCTION xrbench_arrived() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.xrbench_arrivals VALUES (NEW.id, NEW.c, clock_timestamp());
  RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS xrbench_arrived ON items;
CREATE TRIGGER xrbench_arrived AFTER UPDATE ON items
  FOR EACH ROW EXECUTE FUNCTION xrbench_arrived();
-- appliers run with session_replication_role = replica
ALTER TABLE items ENABLE ALWAYS TRIGGER xrbench_arrived;
"""


def cmd_latency(a):
    """Single-row update transactions at each fixed rate, each stamped with
    the source's clock_timestamp() in column c; the destination's trigger
    stamps its arrival (its apply, just before that commits).  Both servers
    share this machine's clock.  The first second of each rate is left out
    (warm-up)."""
    import re
    import subprocess
    src, dst = connect(a.src_port, a.src_db), connect(a.dst_port, a.dst_db)
    dst.execute(LATENCY_SQL)
    script = os.path.join(os.path.dirname(a.results), "latency.sql")
    with open(script, "w") as f:
        f.write(f"\\set id random(1, {a.rows})\n"
                "UPDATE items SET a = a + 1, c = clock_timestamp() "
                "WHERE id = :id;\n")
    out = {}
    try:
        for rate in a.rates:
            dst.execute("TRUNCATE xrbench_arrivals")
            clients = 1 if rate <= 1000 else 2
            cmd = [a.pgbench, "-h", "127.0.0.1", "-p", str(a.src_port),
                   "-U", "postgres", "-n", "-M", "prepared", "-c", str(clients),
                   "-j", str(clients), "-R", str(rate), "-T", str(a.seconds),
                   "-f", script, a.src_db]
            t0 = time.time()
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(f"[bench] pgbench exited {r.returncode}:\n"
                                 f"{r.stdout}{r.stderr}")
            txns = int(re.search(r"actually processed: (\d+)", r.stdout).group(1))
            # Caught up when the sums agree: xregion applies two updates of
            # a row in one batch as one write (one arrival, the later one).
            want = sums(src)
            deadline = time.monotonic() + a.timeout
            while sums(dst) != want:
                if time.monotonic() > deadline:
                    raise SystemExit(f"[bench] {a.key}: {rate}/s: the "
                                     "destination did not catch up")
                time.sleep(POLL)
            p50, p90, p99, pmax, n = dst.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), "
                "percentile_cont(0.9) WITHIN GROUP (ORDER BY ms), "
                "percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms), "
                "count(*) FROM (SELECT (extract(epoch FROM arrived - src) * 1000)::float8 "
                "AS ms FROM xrbench_arrivals "
                "WHERE src >= to_timestamp(%s)) x", (t0 + 1,)).fetchone()
            worst = dst.execute(
                "SELECT round(extract(epoch FROM src)::numeric - %s::numeric, 3)::float8, "
                "round((extract(epoch FROM arrived - src) * 1000)::numeric, 1)"
                "::float8 FROM xrbench_arrivals WHERE src >= to_timestamp(%s) "
                "ORDER BY arrived - src DESC LIMIT 8", (t0, t0 + 1)).fetchall()
            res = {"rate": rate, "transactions": txns,
                   "worst": [list(w) for w in worst],
                   "achieved_tps": txns / a.seconds, "p50_ms": p50,
                   "p90_ms": p90, "p99_ms": p99, "max_ms": pmax, "measured": n}
            out[str(rate)] = res
            say(f"{a.key}: {rate}/s asked, {txns / a.seconds:.0f}/s made: "
                f"p50 {p50:.2f} ms, p90 {p90:.2f} ms, p99 {p99:.2f} ms, "
                f"max {pmax:.1f} ms ({n} updates); slowest at "
                + ", ".join(f"{t:.2f} s ({ms:.0f} ms)" for t, ms in worst[:5]))
    finally:
        dst.execute("DROP TRIGGER IF EXISTS xrbench_arrived ON items")
    store(a.results, a.key, out)


def cmd_set(a):
    try:
        v = json.loads(a.value)
    except ValueError:
        v = a.value
    store(a.results, a.key, v)


def cmd_topic_create(a):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": a.brokers})
    for f in admin.create_topics([NewTopic(a.topic, a.partitions,
                                           a.replication_factor)]).values():
        f.result()
    say(f"kafka: topic {a.topic} created ({a.partitions} partitions)")


def cmd_topics_drop(a):
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": a.brokers})
    mine = [t for t in admin.list_topics(timeout=10).topics
            if t.startswith(a.prefix + ".")]
    for f in (admin.delete_topics(mine).values() if mine else []):
        try:
            f.result()
        except Exception:
            pass
    groups = []
    try:
        res = admin.list_consumer_groups().result()
        groups = [g.group_id for g in res.valid
                  if g.group_id.startswith(f"xregion.{a.prefix}.")]
        for f in (admin.delete_consumer_groups(groups).values() if groups else []):
            try:
                f.result()
            except Exception:
                pass
    except Exception:
        pass
    say(f"kafka: deleted {len(mine)} topic(s) and {len(groups)} consumer "
        f"group(s) of prefix {a.prefix}")


# ------------------------------------------------------------------ report

def fmt(v, unit=" s"):
    return "-" if v is None else f"{v:.2f}{unit}"


def ratio(native, xr):
    if native is None or xr is None or xr <= 0:
        return "-"
    return f"{native / xr:.3f}"


def cmd_report(a):
    r = load(a.results)
    x, n = r.get("xregion", {}), r.get("native", {})
    xr = r.get("xregion_rows", {})
    rows = []

    def line(case, xv, rv, nv):
        rows.append((case, fmt(xv), fmt(rv), fmt(nv), ratio(nv, xv),
                     ratio(rv, xv)))

    g = lambda d, *ks: (d.get(ks[0], {}) or {}).get(ks[1]) if d else None

    def after(d, case):  # replication alone: from the source's commit on
        t, c = g(d, case, "seconds"), g(d, case, "source_commit_s")
        return None if t is None or c is None else t - c

    line(f"insert {r.get('rows', '?')} rows, 1 txn",
         g(x, "insert", "seconds"), g(xr, "insert", "seconds"),
         g(n, "insert", "seconds"))
    line("  of which after the source's commit",
         after(x, "insert"), after(xr, "insert"), after(n, "insert"))
    line(f"update {g(x, 'update', 'rows') or g(n, 'update', 'rows') or '?'} "
         "rows, 1 txn", g(x, "update", "seconds"), g(xr, "update", "seconds"),
         g(n, "update", "seconds"))
    line("  of which after the source's commit",
         after(x, "update"), after(xr, "update"), after(n, "update"))
    line("OLTP catch-up after load end", g(x, "oltp", "catchup_s"),
         g(xr, "oltp", "catchup_s"), g(n, "oltp", "catchup_s"))
    xt, rt, nt = g(x, "oltp", "tps"), g(xr, "oltp", "tps"), g(n, "oltp", "tps")
    rows.append((f"OLTP source TPS ({r.get('oltp_clients', '?')} clients, "
                 f"{r.get('oltp_seconds', '?')} s)",
                 fmt(xt, ""), fmt(rt, ""), fmt(nt, ""),
                 "-" if not (xt and nt) else f"{xt / nt:.3f}*",
                 "-" if not (xt and rt) else f"{xt / rt:.3f}*"))
    hdr = ("case", "xregion atomic", "xregion rows", "native",
           "native/atomic", "rows/atomic")
    w = [max(len(row[i]) for row in rows + [hdr]) for i in range(len(hdr))]
    out = [" | ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i])
                      for i, h in enumerate(hdr)),
           "-+-".join("-" * k for k in w)]
    for row in rows:
        out.append(" | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i])
                              for i, c in enumerate(row)))
    print()
    print(f"Replication benchmark {r.get('started', '')} on {r.get('host', '')}"
          f" ({r.get('cpus', '?')} CPUs), {r.get('xregion_version', '')}")
    print("\n".join(out))
    print("native/atomic = native time / xregion time with atomic apply (>= 1.0: "
          "xregion at least as fast);\nrows/atomic = time with per-row apply / "
          "time with atomic apply (>= 1.0: atomic apply at least as fast);\n"
          "* TPS row: the first source's TPS / the second's")
    details = []
    for name, d in (("xregion", x), ("rows", xr), ("native", n)):
        for case in ("insert", "update"):
            c = d.get(case) if d else None
            if not c:
                continue
            s = (f"  {name:7} {case}: source commit {fmt(c.get('source_commit_s'))}"
                 f", first rows at destination {fmt(c.get('dest_first_rows_s'))}")
            if c.get("kafka_all_s") is not None or "kafka_all_s" in c:
                s += (f", first event in Kafka {fmt(c.get('kafka_first_s'))}"
                      f", all events in Kafka {fmt(c.get('kafka_all_s'))}")
            s += f", all at destination {fmt(c.get('seconds'))}"
            s += f" ({c.get('rows_per_s', 0):.0f} rows/s end to end)"
            details.append(s)
        o = d.get("oltp") if d else None
        if o:
            details.append(f"  {name:7} oltp: {o.get('transactions', '?')} "
                           f"updates at {fmt(o.get('tps'), ' TPS')}, "
                           f"{o.get('behind_at_end', '?')} behind at load end, "
                           f"caught up {fmt(o.get('catchup_s'))} after it")
    if details:
        print("Stages (seconds from the start of the statement):")
        print("\n".join(details))
    lat = []
    rates = sorted({int(k) for d in (x, xr, n) for k in
                    ((d or {}).get("latency") or {})}, key=int)
    for rate in rates:
        cells = []
        for d in (x, xr, n):
            c = ((d or {}).get("latency") or {}).get(str(rate))
            cells.append("-" if not c else
                         f"{c['p50_ms']:.1f} / {c['p99_ms']:.1f} ms "
                         f"({c['achieved_tps']:.0f}/s)")
        lat.append(f"  {rate:>5}/s: atomic {cells[0]}; rows {cells[1]}; "
                   f"native {cells[2]}")
    if lat:
        print("Latency, source statement to arrival at the destination, p50 / "
              "p99 (rate made):")
        print("\n".join(lat))
    cpu_lines = []
    for name, d in (("xregion", x), ("rows", xr), ("native", n)):
        for case in ("insert", "update", "oltp"):
            c = (d or {}).get(case) or {}
            if not c.get("cpu_s"):
                continue
            wall = c["seconds"] + (c.get("catchup_s") or 0) \
                if case == "oltp" else c["seconds"]
            used = sorted(((v, k) for k, v in c["cpu_s"].items() if v >= 0.01),
                          reverse=True)
            cpu_lines.append(f"  {name:7} {case:6} ({wall:.1f} s): " + ", ".join(
                f"{k} {v:.1f} s ({100 * v / wall:.0f}%)" for v, k in used))
    if cpu_lines:
        print("CPU seconds per process during each case (% of its wall time; "
              "the bench's own sessions and pgbench are not counted):")
        print("\n".join(cpu_lines))
    stage_report(r, x, xr, n)
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(r, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"results: {a.out}")


def debezium_lines(changes, cap, capture, dbz):
    """Debezium's capture of a backlog next to xregion's: events/s (from
    the process's start until Kafka acknowledged every event) and peak RSS,
    and the two ratios xregion/Debezium."""
    rep = dbz.get("reported") or {}
    # its own figure, JVM start to the last acknowledgement; the stage's
    # wall time also has the engine's shutdown in it
    dsecs = rep.get("seconds") or dbz.get("seconds")
    deps = changes / dsecs if dsecs else None
    drss = (dbz.get("peak_rss_mb") or {}).get("debezium") or rep.get("peak_rss_mib")
    xeps = changes / cap if cap else None
    xrss = (capture.get("peak_rss_mb") or {}).get("xregion-us")

    def num(v, unit):
        return "-" if v is None else f"{v:.0f}{unit}"

    r = f"{xeps / deps:.2f}" if xeps and deps else "-"
    m = f"{xrss / drss:.3f} (1/{drss / xrss:.1f})" if xrss and drss else "-"
    out = [f"    capture: xregion {fmt(cap)} ({num(xeps, ' events/s')}, peak RSS "
           f"{num(xrss, ' MiB')}), Debezium {fmt(dsecs)} ({num(deps, ' events/s')}"
           f", peak RSS {num(drss, ' MiB')}): xregion/Debezium events/s ratio "
           f"{r}, memory ratio (xregion/Debezium peak RSS) {m}"]
    if rep:
        out.append(
            f"             Debezium {rep.get('debezium', '?')}: first event "
            f"{fmt(rep.get('first_event_s'))} after its start, "
            f"{num(rep.get('events_per_s_from_first_event'), ' events/s')} from "
            f"it; {rep.get('events', '?')} acknowledged ({rep.get('sent', '?')} "
            f"sent, {dbz.get('kafka_events', '?')} in its topic), "
            f"{(rep.get('value_bytes') or 0) / max(changes, 1):.0f} bytes"
            f" a value ({rep.get('converter', '?').rsplit('.', 1)[-1]}, "
            f"schemas {'on' if rep.get('schemas_enable') else 'off'}); "
            f"exited {fmt(dbz.get('seconds'))} after its start")
    return out


def stage_report(r, x, xr, n):
    """The stages alone: capture against pg_recvlogical, apply against
    native replication, with the CPU seconds of every process and their
    sum per million changes, and the replicators' peak RSS."""
    lines = []
    for op in ("insert", "update"):
        sx, sr, sn = ((d or {}).get(f"stage_{op}") or {} for d in (x, xr, n))
        ld = sx.get("load") or sr.get("load") or sn.get("load") or {}
        if not ld:
            continue
        changes = ld.get("changes", 0)
        lines.append(f"  {op} backlog, {changes} changes in one transaction "
                     f"(source commit: xregion {fmt(sx.get('load', {}).get('source_commit_s'))}"
                     f", native {fmt(sn.get('load', {}).get('source_commit_s'))}):")

        def secs(d, k):
            return (d.get(k) or {}).get("seconds")

        cap, recv = secs(sx, "capture"), secs(sx, "recvlogical")
        if cap or recv:
            lines.append(f"    capture: xregion {fmt(cap)}, pg_recvlogical "
                         f"{fmt(recv)}: pg_recvlogical/xregion "
                         f"{ratio(recv, cap)}")
        # Debezium runs in the first apply mode's stages only
        sd = sx if sx.get("debezium") else sr
        if sd.get("debezium"):
            lines.extend(debezium_lines(changes, secs(sd, "capture"),
                                        sd.get("capture") or {},
                                        sd["debezium"]))
        app, appr, nat = secs(sx, "apply"), secs(sr, "apply"), secs(sn, "apply")
        if app or nat:
            lines.append(f"    apply:   xregion atomic {fmt(app)}, rows "
                         f"{fmt(appr)}, native {fmt(nat)}: native/atomic "
                         f"{ratio(nat, app)}, native/rows {ratio(nat, appr)}")
        for name, d in (("atomic", sx), ("rows", sr), ("native", sn)):
            for st in ("recvlogical", "debezium", "capture", "apply"):
                c = d.get(st) or {}
                if not c.get("cpu_s"):
                    continue
                used = sorted(((v, k) for k, v in c["cpu_s"].items()
                               if v >= 0.01), reverse=True)
                total = sum(v for v, _ in used)
                per_m = total * 1e6 / changes if changes else 0
                rss = ", ".join(f"{k} {v:.0f} MiB"
                                for k, v in (c.get("peak_rss_mb") or {}).items())
                lines.append(f"      {name:6} {st:11} CPU {total:5.1f} s "
                             f"({per_m:.1f} s per million): " + ", ".join(
                                 f"{k} {v:.1f}" for v, k in used)
                             + (f"; peak RSS {rss}" if rss else ""))
        caps = [(d.get(st) or {}).get("cpu_s") for d, st in
                ((sx, "capture"), (sx, "apply"), (sn, "apply"))]
        if all(caps):
            xcpu = sum(caps[0].values()) + sum(caps[1].values())
            ncpu = sum(caps[2].values())
            lines.append(f"    CPU, capture + apply against native's apply: "
                         f"{xcpu:.1f} s / {ncpu:.1f} s = {xcpu / ncpu:.2f}x")
    if lines:
        print("Stages alone (each over a backlog made while nothing read it; "
              "seconds from starting the reader):")
        print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def db_args(sp):
        sp.add_argument("--port", type=int, required=True)
        sp.add_argument("--db", required=True)
        sp.add_argument("--origins-like")

    db_args(sub.add_parser("prepare"))
    db_args(sub.add_parser("dropdb"))
    for name in ("insert", "update", "warmup", "oltp", "latency"):
        sp = sub.add_parser(name)
        sp.add_argument("--src-port", type=int, required=True)
        sp.add_argument("--src-db", required=True)
        sp.add_argument("--dst-port", type=int, required=True)
        sp.add_argument("--dst-db", required=True)
        sp.add_argument("--results")
        sp.add_argument("--key", default=name)
        sp.add_argument("--rows", type=int, default=0)
        sp.add_argument("--timeout", type=float, default=3600)
        sp.add_argument("--brokers", default="127.0.0.1:19092")
        sp.add_argument("--kafka-topic")
        sp.add_argument("--clients", type=int, default=4)
        sp.add_argument("--seconds", type=int, default=15)
        sp.add_argument("--pgbench", default="/usr/lib/postgresql/15/bin/pgbench")
        sp.add_argument("--log", help="where to keep pgbench's output")
        sp.add_argument("--pids", help="name=pid,... processes whose CPU "
                        "time to report besides the databases' backends")
        sp.add_argument("--rates", type=lambda v: [int(x) for x in v.split()],
                        default=[200, 1000, 5000],
                        help="latency: transactions per second, space-separated")
    sp = sub.add_parser("stage-load")
    sp.add_argument("--src-port", type=int, required=True)
    sp.add_argument("--src-db", required=True)
    sp.add_argument("--op", choices=("insert", "update"), required=True)
    sp.add_argument("--rows", type=int, default=0)
    sp.add_argument("--results", required=True)
    sp.add_argument("--key", required=True)
    sp.add_argument("--brokers", default="127.0.0.1:19092")
    sp.add_argument("--kafka-topic")
    sp.add_argument("--recv-slot", help="pg_recvlogical's slot to make")
    sp.add_argument("--advance-slot", action="append",
                    help="a slot to move to the WAL's end before the load")
    sp.add_argument("--slot", action="append", help="another pgoutput slot "
                    "to make before the load (repeatable)")
    sp = sub.add_parser("stage")
    for arg in ("--src-port", "--dst-port"):
        sp.add_argument(arg, type=int, required=True)
    for arg in ("--src-db", "--dst-db", "--results", "--key", "--load"):
        sp.add_argument(arg, required=True)
    sp.add_argument("--until", choices=("exit", "kafka", "dest"), required=True)
    sp.add_argument("--start", help="command line of the process to start")
    sp.add_argument("--name", default="started", help="its name in the CPU table")
    sp.add_argument("--log", help="its output (pg_recvlogical: its data)")
    sp.add_argument("--pidfile")
    sp.add_argument("--recvlogical", help="pg_recvlogical: run it on --recv-slot")
    sp.add_argument("--recv-slot")
    sp.add_argument("--drop-slot", help="a slot to drop after the stage "
                    "(the started process's)")
    sp.add_argument("--report-json", action="store_true", help="keep the "
                    "last JSON line of --log (the process's own report)")
    sp.add_argument("--count-topic", help="after the stage, note how many "
                    "events this Kafka topic has")
    sp.add_argument("--publication", default="xrbench")
    sp.add_argument("--sql-start", help="run on the destination to start")
    sp.add_argument("--sql-end", help="run on the destination when done")
    sp.add_argument("--sql-end-wait", help="then poll this query on the "
                    "destination until it returns true")
    sp.add_argument("--pids")
    sp.add_argument("--brokers", default="127.0.0.1:19092")
    sp.add_argument("--kafka-topic")
    sp.add_argument("--timeout", type=float, default=3600)
    sp = sub.add_parser("set")
    sp.add_argument("--results", required=True)
    sp.add_argument("key")
    sp.add_argument("value")
    sp = sub.add_parser("topic-create")
    sp.add_argument("--brokers", default="127.0.0.1:19092")
    sp.add_argument("--topic", required=True)
    sp.add_argument("--partitions", type=int, default=3)
    sp.add_argument("--replication-factor", type=int, default=1)
    sp = sub.add_parser("topics-drop")
    sp.add_argument("--brokers", default="127.0.0.1:19092")
    sp.add_argument("--prefix", required=True)
    sp = sub.add_parser("report")
    sp.add_argument("--results", required=True)
    sp.add_argument("--out")
    a = p.parse_args()
    {"prepare": cmd_prepare, "dropdb": cmd_dropdb, "insert": cmd_insert,
     "update": cmd_update, "warmup": cmd_warmup, "oltp": cmd_oltp,
     "latency": cmd_latency, "stage-load": cmd_stage_load, "stage": cmd_stage,
     "set": cmd_set, "topic-create": cmd_topic_create,
     "topics-drop": cmd_topics_drop,
     "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
