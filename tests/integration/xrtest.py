"""Helpers for xregion's integration tests: real PostgreSQL, real Kafka.

Every test module gets its own database, slot, publication and topic prefix
on the local stack (scripts/stack.sh up), so tests never see each other's
events nor the running three-region deployment's.
"""
import io
import json
import os
import signal
import subprocess
import tempfile
import time
import uuid

import fastavro
import psycopg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
XREGION = os.environ.get("XREGION_BIN", os.path.join(ROOT, "build", "xregion"))
BROKERS = os.environ.get("XR_KAFKA_BROKERS", "127.0.0.1:19092")
PG_PORTS = {"us": 15432, "eu": 15433, "apac": 15434}

with open(os.path.join(ROOT, "schemas", "envelope.avsc")) as f:
    ENVELOPE = fastavro.parse_schema(json.load(f))


def pg_dsn(region="us", db="postgres"):
    return f"host=127.0.0.1 port={PG_PORTS[region]} dbname={db} user=postgres"


def connect(region="us", db="postgres"):
    return psycopg.connect(pg_dsn(region, db), autocommit=True)


class Region:
    """One test region: a fresh database with its config and producer."""

    def __init__(self, name, tables, region="us", extra_config="",
                 producer=None):
        self.region = region
        self.suffix = uuid.uuid4().hex[:8]
        self.db = f"xrt_{name}_{self.suffix}"
        self.prefix = f"xrt{self.suffix}"
        self.slot = f"xrt_{name}_{self.suffix}"
        self.tmp = tempfile.mkdtemp(prefix="xrt-")
        self.config = os.path.join(self.tmp, "xregion.yaml")
        self.proc = None
        self.log = os.path.join(self.tmp, "producer.log")
        with connect(region) as c:
            c.execute(f'CREATE DATABASE "{self.db}"')
        lines = [
            f"region: {region}",
            "regions: [us, eu, apac]",
            "log_level: info",
            "postgres:",
            f'  dsn: "{pg_dsn(region, self.db)}"',
            f"  slot: {self.slot}",
            "kafka:",
            f"  brokers: {BROKERS}",
            f"  topic_prefix: {self.prefix}",
            "  partitions: 3",
            "producer:",
            "  status_interval_ms: 1000",
            *[f"  {k}: {v}" for k, v in (producer or {}).items()],
            "tables:",
        ]
        for t in tables:
            lines.append(f"  - name: {t['name']}")
            if "pii" in t:
                lines.append(f"    pii: {'true' if t['pii'] else 'false'}")
            if t.get("exclude"):
                lines.append(f"    exclude_columns: [{', '.join(t['exclude'])}]")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n" + extra_config)

    def sql(self, statement, params=None):
        with connect(self.region, self.db) as c:
            cur = c.execute(statement, params)
            return cur.fetchall() if cur.description else None

    def xregion(self, *args, check=True, timeout=120):
        r = subprocess.run([XREGION, *args, "-c", self.config],
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"xregion {args} exited {r.returncode}:\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def start(self):
        assert self.proc is None
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([XREGION, "produce", "-c", self.config],
                                     stdout=self.logf, stderr=subprocess.STDOUT)
        self.wait_log("streaming slot")

    def wait_log(self, text, timeout=60, count=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.log) as f:
                if f.read().count(text) >= count:
                    return
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"producer exited {self.proc.returncode}:"
                                     f"\n{self.read_log()}")
            time.sleep(0.1)
        raise AssertionError(f"no '{text}' in producer log:\n{self.read_log()}")

    def read_log(self):
        with open(self.log) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.proc = None
        self.logf.close()
        return rc

    def confirmed_lsn(self):
        rows = self.sql("SELECT confirmed_flush_lsn FROM pg_replication_slots "
                        "WHERE slot_name = %s", (self.slot,))
        return rows[0][0] if rows else None

    def current_lsn(self):
        return self.sql("SELECT pg_current_wal_lsn()")[0][0]

    def topic(self, table, schema="public"):
        return f"{self.prefix}.{self.region}.{schema}.{table}"

    def close(self):
        if self.proc is not None:
            self.stop(signal.SIGKILL)
        with connect(self.region) as c:
            c.execute("SELECT pg_drop_replication_slot(slot_name) FROM "
                      "pg_replication_slots WHERE slot_name = %s", (self.slot,))
            c.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        admin = AdminClient({"bootstrap.servers": BROKERS})
        mine = [t for t in admin.list_topics(timeout=10).topics
                if t.startswith(self.prefix + ".")]
        if mine:
            for f in admin.delete_topics(mine).values():
                try:
                    f.result()
                except Exception:
                    pass


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def rss_kb(pid, field="VmRSS"):
    """A process's resident set (or peak, with VmHWM) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def topic_size(topic):
    """Messages on a topic (sum of partition high watermarks)."""
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "xrt-size"})
    try:
        md = c.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            return 0
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in md.topics[topic].partitions)
    finally:
        c.close()


def topics():
    admin = AdminClient({"bootstrap.servers": BROKERS})
    return set(admin.list_topics(timeout=10).topics)


def read_topic(topic, timeout=30, expect=None):
    """Every message of topic, from the beginning to the current end.

    With expect, waits (up to timeout) until at least that many are there.
    Returns a list of confluent_kafka Message objects, in partition order.
    """
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "xrt-reader",
                  "enable.auto.commit": False,
                  "enable.partition.eof": True})
    try:
        deadline = time.time() + timeout
        while True:
            md = c.list_topics(topic, timeout=10)
            parts = md.topics[topic].partitions if topic in md.topics else {}
            if md.topics.get(topic) is not None and md.topics[topic].error is None and parts:
                break
            if time.time() > deadline:
                return []
            time.sleep(0.2)
        while True:
            ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                    for p in parts}
            total = sum(hi - lo for lo, hi in ends.values())
            if expect is None or total >= expect or time.time() > deadline:
                break
            time.sleep(0.2)
        c.assign([TopicPartition(topic, p, lo) for p, (lo, hi) in ends.items()
                  if hi > lo])
        out = []
        remaining = {p: hi for p, (lo, hi) in ends.items() if hi > lo}
        while remaining:
            m = c.poll(5)
            if m is None:
                if time.time() > deadline + 30:
                    raise AssertionError(f"reading {topic} stalled")
                continue
            if m.error():
                continue
            out.append(m)
            if m.offset() + 1 >= remaining.get(m.partition(), 0):
                remaining.pop(m.partition(), None)
        return out
    finally:
        c.close()


def schema_registry(prefix):
    """fingerprint bytes -> parsed writer schema, from <prefix>._schemas."""
    reg = {}
    for m in read_topic(f"{prefix}._schemas"):
        fp = m.key().decode()
        schema = json.loads(m.value())
        parsed = fastavro.parse_schema(schema)
        # The key must be the CRC-64-AVRO of the canonical form: check it
        # with fastavro's own implementation.
        canon = fastavro.schema.to_parsing_canonical_form(parsed)
        assert fastavro.schema.fingerprint(canon, "CRC-64-AVRO") == fp, \
            f"schema keyed {fp} has another fingerprint"
        reg[fp] = parsed
    return reg


def decode(data, registry, reader=None):
    """Decodes Avro single-object bytes with fastavro."""
    assert data[:2] == b"\xc3\x01", f"not single-object encoded: {data[:10]!r}"
    fp = data[2:10].hex()
    assert fp in registry, f"fingerprint {fp} not in the schemas topic"
    buf = io.BytesIO(data[10:])
    rec = fastavro.schemaless_reader(buf, registry[fp], reader)
    assert buf.read() == b"", "bytes left over after the datum"
    return rec


def events(region, table, registry=None, expect=None, timeout=60):
    """The decoded (key, value, headers) of every event on a table's topic."""
    msgs = read_topic(region.topic(table), expect=expect, timeout=timeout)
    if registry is None:
        registry = schema_registry(region.prefix)
    out = []
    for m in msgs:
        key = decode(m.key(), registry) if m.key() else None
        value = decode(m.value(), registry)
        out.append((key, value, dict(m.headers() or [])))
    return out
