#!/usr/bin/env python3
"""Randomized three-region convergence test for xregion.

  converge.py [run] [--duration S] [--modes lww,vclock] [--kills N]
                    [--broker-restart | --broker-kill [N]]
                    [--skew REGION:SECONDS] ...
  converge.py causal [--skew eu:-30] [--modes lww,vclock]

run: three regions (fresh databases in the local stack's clusters, a fresh
topic prefix, `xregion run` in each) take random writes from every region at
once on a small key space, while replicators are killed with -9 and the
Kafka broker restarts (or, with --broker-kill, the regions run on a
three-broker cluster of their own and the leader of a partition us writes is
killed with -9 and later restarted); then the tool waits for the replicators to drain and
compares every table row by row across the regions and against the write
logs (see checks.py for exactly what is checked).  Exit status 0 only when
no row diverges and no change is lost.

causal: us writes a row, eu (its PostgreSQL clock behind) updates it after
seeing it; shows which value every region ends with in each conflict mode.

Runs with the venv's python (scripts/install-deps.sh) against the stack of
scripts/stack.sh up.  docs/convergence-test.md explains the output.
XR_CONVERGE_KEEP_FAILED=1 keeps a failed run's databases and topics (like
--keep, but only when the run fails); XR_CONVERGE_BROKER_DOWN=S keeps the
broker down S seconds in its restart.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import checks  # first: puts tests/integration on sys.path
import skewpg
import workload
import xrtest
from kafkacluster import KafkaCluster
from xrdeploy import Deployment, REGIONS

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
MODES = ("lww", "vclock")


def show_stuck(dep):
    """What a run that did not drain needs to be read later: each region's
    slot against its WAL, its last warnings and errors and last lines."""
    for r, n in dep.nodes.items():
        try:
            slot = n.sql("SELECT slot_name, confirmed_flush_lsn, "
                         "pg_current_wal_lsn() FROM pg_replication_slots "
                         "WHERE database = current_database()")
        except Exception as e:          # noqa: BLE001 (diagnostics only)
            slot = f"({e})"
        lines = n.read_log().splitlines()
        bad = [l for l in lines if " WARN " in l or " ERROR " in l]
        say(f"--- {r}: slot {slot}; {len(bad)} WARN/ERROR line(s), the last:")
        for line in bad[-15:] + ["..."] + lines[-8:]:
            say(f"  {line[:300]}")


class SetupError(Exception):
    """The run could not start; the message says why."""


def say(*a):
    print(*a, flush=True)


def stack_env():
    """The environment for scripts/stack.sh, pointing at the running stack:
    XR_STATE_DIR (default <repo>/.stack) and its Kafka jars."""
    state = os.environ.get("XR_STATE_DIR") or os.path.join(ROOT, ".stack")
    env = dict(os.environ, XR_STATE_DIR=state)
    env.setdefault("XR_KAFKA_LIBS", os.path.join(state, "kafka-libs"))
    if not os.path.exists(os.path.join(state, "kafka", "server.properties")):
        raise SetupError(f"no Kafka broker state in {state}: set XR_STATE_DIR "
                         "to the running stack's state directory")
    return env


def restart_broker(env):
    """XR_CONVERGE_BROKER_DOWN: seconds the broker stays down (default 0);
    past the consumers' session timeout (10 s) their groups rebalance."""
    down = os.environ.get("XR_CONVERGE_BROKER_DOWN", "0")
    r = subprocess.run([os.path.join(ROOT, "scripts", "stack.sh"), "restart-kafka",
                        "--down", down],
                       env=env, capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise RuntimeError(f"stack.sh restart-kafka exited {r.returncode}:\n"
                           f"{r.stdout}{r.stderr}")


def parse_skews(items):
    out = {}
    for item in items or []:
        region, sep, secs = item.partition(":")
        if not sep or region not in REGIONS:
            raise SetupError(f"--skew {item!r}: expected REGION:SECONDS, "
                             f"REGION one of {', '.join(REGIONS)}")
        try:
            out[region] = float(secs)
        except ValueError:
            raise SetupError(f"--skew {item!r}: {secs!r} is not a number")
    return out


def parse_modes(text):
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if not modes or bad:
        raise SetupError(f"--modes {text!r}: expected a list of {', '.join(MODES)}")
    return modes


class Env:
    """The deployment of one run: skewed clusters (if any) and the three
    regions with their replicators running.  close() tears all down."""

    def __init__(self, tables, skews, tiebreak=None, keep=False, join=None,
                 kafka_nodes=0):
        self.clusters = {}
        self.dep = None
        self.kafka = None
        self.keep = keep
        self.join = join
        try:
            if kafka_nodes:
                self.kafka = KafkaCluster(kafka_nodes)
                self.kafka.start()
                say(f"kafka: a cluster of {kafka_nodes} brokers of its own at "
                    f"{self.kafka.bootstrap} (replication factor 3, "
                    f"min.insync.replicas 2)")
            if join:
                # the joining region: a cluster of its own (clock not skewed)
                c = skewpg.SkewedCluster(join, 0)
                self.clusters[join] = c
                c.start()
                say(f"join: {join} runs its own cluster on port {c.port}")
            for region, secs in skews.items():
                c = skewpg.SkewedCluster(region, secs)
                self.clusters[region] = c
                c.start()
                now_off, commit_off = c.check_skew()
                say(f"skew: {region} runs its own cluster on port {c.port}, "
                    f"clock {secs:+g} s (measured: now() {now_off:+.2f} s, "
                    f"commit timestamps {commit_off:+.2f} s)")
            schema = "\n".join(t.ddl for t in tables)
            self.dep = Deployment([t.config_entry(tiebreak) for t in tables],
                                  schema,
                                  regions=REGIONS + ((join,) if join else ()),
                                  ports={r: c.port for r, c in self.clusters.items()},
                                  brokers=self.kafka.bootstrap if self.kafka else None,
                                  kafka=["replication_factor: 3"] if self.kafka else ())
            if join:
                # the others first; the joining region once it is seeked
                for r in REGIONS:
                    self.dep[r].start()
                for r in REGIONS:
                    self.dep[r].wait_log("streaming slot")
                    self.dep[r].wait_log("subscribed to")
            else:
                self.dep.start()
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.dep is not None and not self.keep:
            self.dep.close()
        elif self.dep is not None:
            for n in self.dep.nodes.values():
                if n.proc is not None:
                    n.stop()
            say(f"kept: databases {', '.join(n.db for n in self.dep.nodes.values())}, "
                f"topics {self.dep.prefix}.*")
        for c in self.clusters.values():
            if self.keep and self.dep is not None:
                say(f"kept: skewed cluster {c.name} on port {c.port} ({c.root}); "
                    f"stop it with pg_ctl stop -D {c.data}")
                continue
            try:
                c.stop()
            except Exception as e:
                say(f"stopping skewed cluster {c.name}: {e}")
        if self.kafka is not None and not self.keep:
            self.kafka.stop()
        elif self.kafka is not None:
            say(f"kept: kafka cluster in {self.kafka.root} (pids "
                f"{', '.join(str(p.pid) for p in self.kafka.procs.values())})")


class Chaos(threading.Thread):
    """Kills random replicators with -9 and restarts them, restarts the
    broker once, kills Kafka nodes of the deployment's own cluster with -9
    (the leader of partition 0 of us's first table topic) and restarts them, and restarts (and
    reports) any replicator that exits by itself, until stop is set.
    Events are spread over the load's middle."""

    def __init__(self, dep, kills, broker_restart, duration, rnd, env,
                 kafka=None, broker_kills=0):
        super().__init__(name="chaos", daemon=True)
        self.dep = dep
        self.rnd = rnd
        self.env = env
        self.stop = threading.Event()
        self.lock = threading.Lock()        # one node operation at a time
        self.t0 = None
        self.kill_at = sorted(rnd.uniform(0.1, 0.8) * duration for _ in range(kills))
        self.broker_at = rnd.uniform(0.25, 0.5) * duration if broker_restart else None
        self.kills = []                     # (t, region)
        self.broker_restarts = []           # (t, seconds it took)
        self.kafka = kafka
        self.broker_kill_at = sorted(rnd.uniform(0.15, 0.7) * duration
                                     for _ in range(broker_kills))
        self.broker_kills = []              # (t, node, seconds down)
        self.exits = []                     # (t, region, status, log tail)
        self.errors = []
        self.broker_thread = None

    def elapsed(self):
        return time.time() - self.t0

    def run(self):
        self.t0 = time.time()
        try:
            while not self.stop.is_set():
                if self.broker_at is not None and self.elapsed() >= self.broker_at:
                    self.broker_at = None
                    self.broker_thread = threading.Thread(target=self.broker,
                                                          daemon=True)
                    self.broker_thread.start()
                if self.kill_at and self.elapsed() >= self.kill_at[0]:
                    self.kill_at.pop(0)
                    self.kill()
                if (self.broker_kill_at and self.broker_thread is None and
                        self.elapsed() >= self.broker_kill_at[0]):
                    self.broker_kill_at.pop(0)
                    self.broker_thread = threading.Thread(target=self.kill_broker,
                                                          daemon=True)
                    self.broker_thread.start()
                if self.broker_thread is not None and not self.broker_thread.is_alive() \
                        and self.broker_kill_at:
                    self.broker_thread = None
                self.reap()
                self.stop.wait(0.2)
        except Exception as e:
            self.errors.append(f"chaos: {e!r}")

    def kill(self):
        with self.lock:
            running = [r for r, n in self.dep.nodes.items() if n.proc is not None]
        region = self.rnd.choice(running)
        n = self.dep[region]
        with self.lock:
            n.stop(signal.SIGKILL)
        t = self.elapsed()
        down = self.rnd.uniform(0.2, 2.0)
        say(f"  [{t:5.1f}s] kill -9 xregion run in {region}; restart in {down:.1f} s")
        self.stop.wait(down)
        with self.lock:
            n.start()
        self.kills.append((t, region))

    def broker(self):
        t = self.elapsed()
        say(f"  [{t:5.1f}s] restarting the Kafka broker")
        try:
            restart_broker(self.env)
        except Exception as e:
            self.errors.append(f"broker restart: {e}")
            return
        took = self.elapsed() - t
        say(f"  [{self.elapsed():5.1f}s] broker back after {took:.1f} s")
        self.broker_restarts.append((t, took))

    def kill_broker(self):
        """kill -9 of the node that leads partition 0 of us's first table
        topic (by name; us's producer writes it, eu's and apac's consumers
        read it), restarted after 3-8 s."""
        t = self.elapsed()
        try:
            topic = sorted(tp for tp in xrtest.AdminClient(
                {"bootstrap.servers": self.kafka.bootstrap}).list_topics(
                    timeout=10).topics
                if tp.startswith(f"{self.dep.prefix}.us.public."))
            node = self.kafka.leader(topic[0], 0) if topic else None
        except Exception as e:
            self.errors.append(f"broker kill: no leader found: {e!r}")
            return
        if node not in self.kafka.procs:
            node = self.rnd.choice(sorted(self.kafka.procs))
        down = self.rnd.uniform(3, 8)
        say(f"  [{t:5.1f}s] kill -9 Kafka node {node} (leader of "
            f"{topic[0] if topic else '?'} [0]); restart in {down:.1f} s")
        try:
            self.kafka.kill9(node)
            self.stop.wait(down)
            self.kafka.restart(node)
            self.kafka.wait_brokers(self.kafka.n, timeout=120)
        except Exception as e:
            self.errors.append(f"broker kill: {e!r}")
            return
        say(f"  [{self.elapsed():5.1f}s] Kafka node {node} back after "
            f"{self.elapsed() - t:.1f} s")
        self.broker_kills.append((t, node, down))

    def reap(self):
        """Restarts a replicator that exited by itself (a failure)."""
        with self.lock:
            for r, n in self.dep.nodes.items():
                if n.proc is not None and n.proc.poll() is not None:
                    rc = n.proc.returncode
                    n.proc = None
                    n.logf.close()
                    tail = n.read_log()[-2000:]
                    self.exits.append((self.elapsed(), r, rc, tail))
                    say(f"  [{self.elapsed():5.1f}s] UNEXPECTED: xregion run in {r} "
                        f"exited {rc}; restarting it")
                    n.start()

    def finish(self):
        self.stop.set()
        self.join()
        if self.broker_thread is not None:
            self.broker_thread.join()
        if self.kafka is not None and len(self.kafka.procs) < self.kafka.n:
            self.errors.append("a Kafka node is still down after the load")
        if self.broker_kill_at:
            self.errors.append(f"{len(self.broker_kill_at)} Kafka node kill(s) "
                               "not made before the load ended")
        self.reap()


class Joiner:
    """--join: region `join` (empty tables, its own cluster) joins while the
    others write.  us, the donor, writes the manifest and backfills every
    table for it (docs/backfill.md, Adding a region); join seeks to the
    manifest and starts.  Records how the writers' commit rate and the
    backfill went."""

    def __init__(self, dep, join, chaos, logs, t_load):
        self.dep, self.join, self.chaos, self.logs = dep, join, chaos, logs
        self.t_load = t_load
        self.samples = []          # (t, writes committed in all regions)
        self.t_join = self.t_done = None
        self.error = None

    def writes(self):
        return sum(len(l.records) for l in self.logs.values())

    def step(self, due):
        self.samples.append((time.time(), self.writes()))
        if not due or self.t_join is not None:
            return
        self.t_join = time.time()
        donor, new = self.dep["us"], self.dep[self.join]
        manifest = os.path.join(self.dep.tmp, f"{self.join}.manifest.json")
        try:
            r = donor.xregion("backfill", "--for", self.join, "--manifest",
                              manifest, "--no-wait")
            say(f"  [{self.t_join - self.t_load:5.1f}s] {self.join} joins: "
                + r.stdout.strip().replace("\n", "; "))
            r = new.xregion("seek", "--manifest", manifest)
            say("  " + r.stdout.strip())
            with self.chaos.lock:
                new.start()
        except Exception as e:
            self.error = f"join: {e}"

    def wait_done(self, timeout):
        if self.t_join is None or self.error:
            return
        end = time.time() + timeout
        while time.time() < end:
            left = self.dep["us"].sql("SELECT count(*) FROM xregion.backfills "
                                      "WHERE for_region = %s AND state <> 'done'",
                                      (self.join,))[0][0]
            if left == 0:
                self.t_done = time.time()
                return
            time.sleep(0.5)
        self.error = f"join: the backfill for {self.join} not done after {timeout} s"

    def summary(self):
        def rate(t0, t1):
            pts = [(t, n) for t, n in self.samples if t0 <= t <= t1]
            if len(pts) < 2 or pts[-1][0] == pts[0][0]:
                return None
            return round((pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]), 1)
        rows = self.dep["us"].sql(
            "SELECT coalesce(sum(rows_sent), 0), coalesce(sum(tombstones_sent), 0), "
            "coalesce(sum(rows_skipped), 0) FROM xregion.backfills "
            "WHERE for_region = %s", (self.join,))[0]
        end = self.t_done or time.time()
        return {"region": self.join, "donor": "us",
                "joined_at_s": round(self.t_join - self.t_load, 1) if self.t_join else None,
                "backfill_s": round(end - self.t_join, 1) if self.t_join else None,
                "rows": int(rows[0]), "tombstones": int(rows[1]),
                "left_to_stream": int(rows[2]),
                "writes_per_s_before": rate(self.t_load, self.t_join or end),
                "writes_per_s_during": rate(self.t_join or end, end)}


def print_findings(findings, limit):
    """Each problem key once: what is wrong, each region's row and which
    write made it, what replaced that write, and the key's last writes."""
    for f in findings[:limit]:
        say(f"  {f['table']} key {tuple(f['key'])}: {', '.join(f['kind'])}")
        by_val = {w["row"]["val"]: w for w in f["writes"] if w["row"]}
        for r, row in f["regions"].items():
            say(f"      {r:>4}: {checks.fmt_row(row)}")
            w = by_val.get(row.get("val")) if isinstance(row, dict) else None
            if w:
                say(f"            written by {checks.fmt_write(w)}")
                for later in f["writes"]:
                    if later["prev"] == w["row"]["val"]:
                        say(f"            replaced by {checks.fmt_write(later)}")
        for w in f.get("unlogged", []):
            say(f"      lost, in no conflict log: {checks.fmt_write(w)}")
        if f["writes"]:
            say(f"      last writes to this key, by LWW version "
                f"({min(8, len(f['writes']))} of {len(f['writes'])}):")
            for w in f["writes"][-8:]:
                say(f"        {checks.fmt_write(w)}")
    if len(findings) > limit:
        say(f"  ... and {len(findings) - limit} more (all in the JSON report, --json)")


def explain_keys(dep, findings, limit):
    """For each problem key, what each region's consumer knows of it: the
    versions entry, a hidden image, and its last conflicts."""
    for f in findings[:limit]:
        key = tuple(f["key"])
        say(f"  {f['table']} key {key}, as each region's xregion schema has it:")
        cond = " AND ".join(f"id = {int(k)}" for k in key[:1])
        for r, n in dep.nodes.items():
            try:
                entry = n.sql(f'SELECT to_jsonb(v) FROM xregion."public.{f["table"]}" v '
                              f"WHERE {cond}")
                hidden = n.sql("SELECT to_jsonb(h) - 'image' || jsonb_build_object("
                               "'image', h.image) FROM xregion.hidden h "
                               "WHERE table_name = %s AND key = %s::jsonb",
                               (f["table"], json.dumps({"id": str(key[0])})))
                conf = n.sql("SELECT kind, resolution, local_ts, local_region, "
                             "remote_ts, remote_region, local_row ->> 'email', "
                             "remote_row ->> 'email', topic, kafka_offset "
                             "FROM xregion.conflicts WHERE table_name = %s "
                             "AND key = %s::jsonb ORDER BY id DESC LIMIT 6",
                             (f["table"], json.dumps({"id": str(key[0])})))
            except Exception as e:     # a table of another shape: say so
                say(f"      {r:>4}: (not read: {e})")
                continue
            say(f"      {r:>4}: entry {entry[0][0] if entry else None}")
            say(f"            hidden {hidden[0][0] if hidden else None}")
            for c in conf:
                say(f"            conflict {c}")


def run_random(duration=30, modes=MODES, workers=2, kills=0, broker_restart=False,
               skews=None, seed=None, drain_timeout=180, pause_ms=0,
               tiebreak=None, keep=False, report=None, show=20,
               bulk_rows=0, bulk_every=60, races=False, join=None,
               broker_kills=0):
    """The randomized run.  Returns the summary dict; its "ok" is true only
    with zero divergent rows and no lost change (and no replicator that
    exited by itself, no writer error, and a complete drain)."""
    if broker_kills and broker_restart:
        raise SetupError("--broker-kill runs a Kafka cluster of its own: "
                         "it does not go with --broker-restart")
    seed = random.randrange(1 << 30) if seed is None else seed
    rnd = random.Random(seed)
    skews = skews or {}
    tables = workload.tables_for(modes, bulk_rows * 3 // 2)
    env = stack_env() if broker_restart else None
    t_start = time.time()
    say(f"converge: seed {seed}, modes {','.join(modes)}, {duration} s load, "
        f"{workers} writer(s) per region, {kills} kill(s), broker restart "
        f"{'yes' if broker_restart else 'no'}, "
        + (f"{broker_kills} Kafka node kill(s) on 3 brokers, " if broker_kills else "")
        + "skew "
        f"{', '.join(f'{r}:{s:+g}' for r, s in skews.items()) or 'none'}, "
        + (f"a {bulk_rows}-row transaction per bulk table and region every "
           f"{bulk_every:g} s" if bulk_rows else "no bulk transactions")
        + (", a racer per region (local deletes held until an apply waits)"
           if races else "")
        + (f"; region {join} joins at a third of the load (a backfill from us)"
           if join else "")
        + f"; binary {xrtest.XREGION}")
    e = Env(tables, skews, tiebreak, keep, join, 3 if broker_kills else 0)
    dep = e.dep
    summary = {"seed": seed, "modes": list(modes), "prefix": dep.prefix,
               "tmp": dep.tmp, "skew": skews}
    stop = threading.Event()
    chaos = Chaos(dep, kills, broker_restart, duration, rnd, env, e.kafka,
                  broker_kills)
    try:
        t_setup = time.time() - t_start
        say(f"deployment {dep.prefix} up in {t_setup:.1f} s "
            f"(databases xrd_{dep.suffix}_<region>, logs in {dep.tmp})")
        logs = {r: workload.WriteLog(r) for r in dep.nodes}
        # the joining region only reads: it is empty, then filled
        writing = {r: n for r, n in dep.nodes.items() if r != join}
        writers = [workload.Writer(n, w, tables, logs[r], stop,
                                   rnd.randrange(1 << 30), pause_ms)
                   for r, n in writing.items() for w in range(workers)]
        racers = [workload.Racer(n, tables, logs[r], stop, rnd.randrange(1 << 30))
                  for r, n in writing.items()] if races else []
        writers += racers
        if bulk_rows:
            writers += [workload.BulkWriter(n, tables, logs[r], stop,
                                            rnd.randrange(1 << 30), bulk_rows,
                                            bulk_every)
                        for r, n in writing.items()]
        t_load = time.time()
        for w in writers:
            w.start()
        chaos.start()
        joiner = Joiner(dep, join, chaos, logs, t_load) if join else None
        while time.time() - t_load < duration:
            time.sleep(min(5, max(0.1, duration - (time.time() - t_load))))
            if joiner:
                joiner.step(time.time() - t_load >= duration / 3)
            say(f"  [{time.time() - t_load:5.1f}s] writes committed: "
                + ", ".join(f"{r} {len(l.records)}" for r, l in logs.items())
                + f"; aborted txs {sum(l.aborted for l in logs.values())}"
                + (f"; bulk txs {sum(getattr(w, 'done', 0) for w in writers)}"
                   if bulk_rows else "")
                + (f"; races forced {sum(r.forced for r in racers)}"
                   if racers else ""))
        if joiner:
            joiner.step(True)
        stop.set()
        for w in writers:
            w.join()
        chaos.finish()
        load_s = time.time() - t_load
        if joiner:
            joiner.wait_done(drain_timeout)
            summary["join"] = joiner.summary()
            say(f"join: {summary['join']}")
        errors = [f"{w.name}: {w.error!r}" for w in writers if w.error] + chaos.errors
        for r, l in logs.items():
            l.fill_commit_ts(dep[r])
        for r, l in logs.items():
            with open(os.path.join(dep.tmp, f"writes-{r}.jsonl"), "w") as f:
                for w in l.records:
                    f.write(json.dumps(w) + "\n")

        expected = {(r, t.name): l.events(t.name)
                    for r, l in logs.items() for t in tables if t.replicated}
        say(f"load stopped after {load_s:.1f} s; draining (timeout {drain_timeout} s)")
        drained, drain_s, missing = checks.drain(dep, tables, expected, drain_timeout)
        if drained:
            say(f"drained in {drain_s:.1f} s")
        else:
            say(f"NOT DRAINED after {drain_s:.1f} s: " + "; ".join(missing[:10]))
            show_stuck(dep)
        for r, c in e.clusters.items():
            now_off, commit_off = c.check_skew()
            say(f"skew still in force in {r}: now() {now_off:+.2f} s, "
                f"commit timestamps {commit_off:+.2f} s")

        snap = checks.snapshot(dep, tables)
        findings = checks.check(tables, logs, snap, list(dep.nodes))
        findings += checks.pii_topics(dep, tables)
        conf = checks.conflicts(dep)
        divergent = [f for f in findings if "divergent" in f["kind"]]
        lost = [f for f in findings if any(k != "divergent" for k in f["kind"])]
        unlogged = checks.unlogged_losers(tables, logs, snap, list(dep.nodes),
                                          checks.conflict_losers(dep))
        n_unlogged = sum(len(f["unlogged"]) for f in unlogged)

        say("\nconflicts logged (xregion.conflicts), per region:")
        for r, rows in conf.items():
            total = sum(row[3] for row in rows)
            say(f"  {r}: {total}")
            for table, kind, resolution, n in rows:
                say(f"      {table:<10} {kind:<24} {resolution:<15} {n}")
        rows_now = {t.name: {r: len(snap[t.name][r]) for r in dep.nodes} for t in tables}
        say("\nrows at the end: " + "; ".join(
            f"{t} " + "/".join(str(v) for v in per.values())
            for t, per in rows_now.items()) + f" ({'/'.join(dep.nodes)})")
        if findings:
            say(f"\nPROBLEM KEYS: {len(findings)} ({len(divergent)} divergent, "
                f"{len(lost)} with a lost change; checks.py explains each kind)")
            print_findings(findings, show)
            explain_keys(dep, findings, min(show, 5))
        say(f"\nwrites that lost a conflict and that no conflict log names: "
            f"{n_unlogged}")
        if unlogged:
            print_findings(unlogged, show)
        for t, r, rc, tail in chaos.exits:
            say(f"\nxregion run in {r} exited {rc} at {t:.1f} s by itself; log tail:\n{tail}")
        for err in errors:
            say(f"\nERROR {err}")

        n_conf = sum(row[3] for rows in conf.values() for row in rows)
        summary.update({
            "writes": sum(len(l.records) for l in logs.values()),
            "writes_per_region": {r: len(l.records) for r, l in logs.items()},
            "transactions": sum(l.txs for l in logs.values()),
            "bulk_transactions": sum(getattr(w, "done", 0) for w in writers),
            "races_forced": sum(r.forced for r in racers),
            "aborted_transactions": sum(l.aborted for l in logs.values()),
            "conflicts": n_conf,
            "conflicts_per_region": {r: [list(x) for x in rows] for r, rows in conf.items()},
            "kills": len(chaos.kills),
            "broker_restarts": len(chaos.broker_restarts),
            "broker_kills": len(chaos.broker_kills),
            "unexpected_exits": len(chaos.exits),
            "errors": errors,
            "drained": drained,
            "divergent_rows": len(divergent),
            "lost_changes": len(lost),
            "findings": [dict(f, key=list(f["key"])) for f in findings],
            "unlogged_losers": n_unlogged,
            "unlogged": [dict(f, key=list(f["key"])) for f in unlogged],
            "seconds": {"setup": round(t_setup, 1), "load": round(load_s, 1),
                        "drain": round(drain_s, 1),
                        "total": round(time.time() - t_start, 1)},
        })
        if joiner and joiner.error:
            errors.append(joiner.error)
        summary["ok"] = (drained and not divergent and not lost and not unlogged
                         and not chaos.exits and not errors)
        say(f"\nTOTAL: writes {summary['writes']} in {summary['transactions']} "
            f"transactions ({summary['aborted_transactions']} more rolled back by "
            f"deadlocks or key clashes, not logged), conflicts {n_conf}, kills {summary['kills']}, "
            f"broker restarts {summary['broker_restarts']}, Kafka node kills "
            f"{summary['broker_kills']}, unexpected exits "
            f"{summary['unexpected_exits']}, divergent rows {len(divergent)}, "
            f"lost changes {len(lost)}, unlogged losers {n_unlogged}; load {load_s:.0f} s, drain {drain_s:.0f} s, "
            f"total {time.time() - t_start:.0f} s")
        say("RESULT: " + ("OK, converged" if summary["ok"] else "FAILED"))
    finally:
        stop.set()                 # on an exception: writers and chaos too
        if chaos.is_alive():
            chaos.finish()
        if report:
            with open(report, "w") as f:
                json.dump(summary, f, indent=1, default=str)
        if os.environ.get("XR_CONVERGE_KEEP_FAILED") == "1" and not summary.get("ok"):
            e.keep = True          # a failed run's databases, for a post-mortem
        e.close()
    return summary


def run_causal(modes=MODES, skews=None, tiebreak=None, keep=False, timeout=90):
    """The causal scenario: us writes k = 'v1'; once eu has it, eu (its
    clock behind us's) writes k = 'v2', a write made after seeing v1.  Under
    lww the later write carries the older commit timestamp; under vclock it
    dominates v1.  Returns {table: {region: val}} plus the versions."""
    skews = skews if skews else {"eu": -30.0}
    if "eu" not in skews or skews["eu"] >= 0:
        raise SetupError("causal: needs eu's clock behind, e.g. --skew eu:-30")
    tables = [t for t in workload.tables_for(modes) if t.shape == "a" and t.replicated]
    say(f"causal: modes {','.join(modes)}, skew "
        f"{', '.join(f'{r}:{s:+g}' for r, s in skews.items())}; binary {xrtest.XREGION}")
    e = Env(tables, skews, tiebreak, keep)
    dep = e.dep
    try:
        us, eu = dep["us"], dep["eu"]
        xid = {}
        for t in tables:
            xid[("us", t.name)] = us.sql(
                f"INSERT INTO {t.name} VALUES (1, 'v1', 'us', 1, NULL) "
                "RETURNING pg_current_xact_id()::text")[0][0]
        deadline = time.time() + timeout
        for t in tables:
            while eu.sql(f"SELECT val FROM {t.name} WHERE id = 1") != [("v1",)]:
                if time.time() > deadline:
                    raise AssertionError(f"{t.name}: v1 did not reach eu")
                time.sleep(0.2)
        say("eu has v1 in " + ", ".join(t.name for t in tables) + "; eu writes v2")
        for t in tables:
            xid[("eu", t.name)] = eu.sql(
                f"UPDATE {t.name} SET val = 'v2', origin = 'eu', n = 2 WHERE id = 1 "
                "RETURNING pg_current_xact_id()::text")[0][0]
        expected = {(r, t.name): 1 for r in ("us", "eu") for t in tables}
        drained, secs, missing = checks.drain(dep, tables, expected, timeout)
        if not drained:
            raise AssertionError("not drained: " + "; ".join(missing))
        out = {"tables": {}, "versions": {}}
        for (r, tn), x in xid.items():
            ts = dep[r].sql("SELECT (extract(epoch FROM pg_xact_commit_timestamp("
                            "%s::xid)) * 1000000)::bigint", (x,))[0][0]
            out["versions"][f"{tn}:{'v1' if r == 'us' else 'v2'}"] = (ts, r)
        for t in tables:
            out["tables"][t.name] = {
                r: (n.sql(f"SELECT val FROM {t.name} WHERE id = 1") or [(None,)])[0][0]
                for r, n in dep.nodes.items()}
        conf = checks.conflicts(dep)
        for t in tables:
            v1 = out["versions"][f"{t.name}:v1"]
            v2 = out["versions"][f"{t.name}:v2"]
            say(f"{t.name} ({t.mode}): v1 at us ts {v1[0]}, v2 at eu ts {v2[0]} "
                f"({(v2[0] - v1[0]) / 1e6:+.1f} s by the clocks, written after v1)")
            say("    ends with: " + ", ".join(f"{r}={v}" for r, v in
                                            out["tables"][t.name].items()))
            for r, rows in conf.items():
                for table, kind, resolution, n in rows:
                    if table == t.name:
                        say(f"    conflict in {r}: {kind} -> {resolution} ({n})")
        out["conflicts"] = conf
        return out
    finally:
        e.close()


def causal_verdict(out):
    """What the causal scenario must show, as a list of failures (empty: as
    expected).

    vclock: v2, the write that saw v1, wins everywhere.
    lww (clock: hybrid, the default): v2's commit time is older than v1's,
    but the clock trigger gives it the version time v1 + 1 µs, since it
    overwrote v1: v2 wins everywhere too (docs/consumer.md, "Clocks").
    """
    bad = []
    for table, vals in out["tables"].items():
        if set(vals.values()) != {"v2"}:
            bad.append(f"{table}: expected v2 everywhere, got {vals}")
    return bad


def causal_summary(out):
    """One line per table saying what happened."""
    lines = []
    for table, vals in out["tables"].items():
        v1, v2 = out["versions"][f"{table}:v1"], out["versions"][f"{table}:v2"]
        lost_in = [r for r, v in vals.items() if v == "v1"]
        line = (f"{table}: v2 (eu, written after seeing v1, commit timestamp "
                f"{(v2[0] - v1[0]) / 1e6:+.1f} s from v1's) ")
        if not lost_in:
            line += "won everywhere"
        else:
            line += f"lost in {', '.join(lost_in)}"
            kept = [r for r, v in vals.items() if v != "v1"]
            if kept:
                line += (f"; {', '.join(kept)} kept "
                         f"{'/'.join(sorted({vals[r] or '(no row)' for r in kept}))}: "
                         "the regions DIVERGE on this row")
        lines.append(line)
    return lines


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "causal", "-h", "--help"):
        argv.insert(0, "run")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--modes", default=os.environ.get("XR_CONVERGE_MODES", "lww,vclock"),
                        help="conflict modes to test, comma-separated "
                        "(default: $XR_CONVERGE_MODES or lww,vclock)")
    common.add_argument("--skew", action="append", metavar="REGION:SECONDS",
                        help="run REGION's PostgreSQL on a cluster of its own with "
                        "its clock off by SECONDS (negative: behind); repeatable")
    common.add_argument("--tiebreak", help="tiebreak: of the vclock tables "
                        "(lww, keep-local, prefer-region:<r>)")
    common.add_argument("--keep", action="store_true",
                        help="keep the databases, topics and skewed clusters")
    r = sub.add_parser("run", parents=[common], help="the randomized run (default)")
    r.add_argument("--duration", type=float, default=60, help="seconds of load (60)")
    r.add_argument("--workers", type=int, default=2, help="writer threads per region (2)")
    r.add_argument("--kills", type=int, default=0,
                   help="kill -9 and restart a random replicator N times")
    r.add_argument("--broker-restart", action="store_true",
                   help="restart the Kafka broker once, mid-run (scripts/stack.sh "
                   "restart-kafka on $XR_STATE_DIR, default <repo>/.stack)")
    r.add_argument("--broker-kill", type=int, nargs="?", const=1, default=0,
                   metavar="N", help="run on a three-broker Kafka cluster of "
                   "its own and kill -9 the leader of a partition us writes N times "
                   "(default 1), each restarted after 3-8 s")
    r.add_argument("--seed", type=int, help="seed of the random choices")
    r.add_argument("--pause-ms", type=float, default=0,
                   help="mean pause between a writer's transactions (0)")
    r.add_argument("--drain-timeout", type=float, default=180,
                   help="seconds to wait for the replicators to drain (180)")
    r.add_argument("--bulk-rows", type=int, default=0,
                   help="rows of each bulk transaction (0: none; e.g. 10000)")
    r.add_argument("--bulk-every", type=float, default=60,
                   help="seconds between a region's bulk transactions (60)")
    r.add_argument("--races", action="store_true",
                   help="a racer per region: locks a row until the local apply "
                   "waits for it, then deletes it or changes its key")
    r.add_argument("--join", metavar="REGION",
                   help="a fourth region (its own cluster, empty tables) joins "
                        "at a third of the load: us writes a manifest and "
                        "backfills every table for it (docs/backfill.md)")
    r.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    r.add_argument("--show", type=int, default=20,
                   help="findings to print in full (20)")
    c = sub.add_parser("causal", parents=[common],
                       help="the deterministic causal scenario")
    c.add_argument("--json", metavar="FILE", help="write the outcome as JSON")
    a = ap.parse_args(argv)
    try:
        modes = parse_modes(a.modes)
        skews = parse_skews(a.skew)
        if a.cmd == "causal":
            out = run_causal(modes, skews, a.tiebreak, a.keep)
            bad = causal_verdict(out)
            for line in causal_summary(out):
                say(line)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(out, f, indent=1)
            for b in bad:
                say(f"UNEXPECTED: {b}")
            say("RESULT: " + ("as expected" if not bad else "FAILED"))
            return 0 if not bad else 1
        s = run_random(a.duration, modes, a.workers, a.kills, a.broker_restart,
                       skews, a.seed, a.drain_timeout, a.pause_ms, a.tiebreak,
                       a.keep, a.json, a.show, a.bulk_rows, a.bulk_every,
                       a.races, a.join, a.broker_kill)
        return 0 if s["ok"] else 1
    except SetupError as e:
        say(f"converge: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
