"""Helpers for xregion's integration tests: real PostgreSQL, real Kafka.

Every test module gets its own database, slot, publication and topic prefix
on the local stack (scripts/stack.sh up), so tests never see each other's
events nor the running three-region deployment's.
"""
import io
import json
import os
import signal
import socket
import subprocess
import contextlib
import tempfile
import time
import uuid

import fastavro
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
XREGION = os.environ.get("XREGION_BIN", os.path.join(ROOT, "build", "xregion"))
BROKERS = os.environ.get("XR_KAFKA_BROKERS", "127.0.0.1:19092")
PG_PORTS = {"us": 15432, "eu": 15433, "apac": 15434}

with open(os.path.join(ROOT, "schemas", "envelope.avsc")) as f:
    ENVELOPE = fastavro.parse_schema(json.load(f))


def pg_dsn(region="us", db="postgres", port=None):
    """port: a cluster of the region's own instead of the stack's."""
    return f"host=127.0.0.1 port={port or PG_PORTS[region]} dbname={db} user=postgres"


def connect(region="us", db="postgres", port=None):
    return psycopg.connect(pg_dsn(region, db, port), autocommit=True)


class Region:
    """One test region: a fresh database with its config and producer."""

    def __init__(self, name, tables, region="us", extra_config="",
                 producer=None, kafka=None):
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
            *[f"  {k}: {v}" for k, v in (kafka or {}).items()],
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

    def wait_exit(self, timeout=60):
        """Waits for the producer to exit by itself; returns its status."""
        rc = self.proc.wait(timeout=timeout)
        self.proc = None
        self.logf.close()
        return rc

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        return self.wait_exit()

    def error_lines(self):
        return [line for line in self.read_log().splitlines()
                if " ERROR [" in line]

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
        drop_region_objects(self.region, self.slot, self.db)
        admin = AdminClient({"bootstrap.servers": BROKERS})
        mine = [t for t in admin.list_topics(timeout=10).topics
                if t.startswith(self.prefix + ".")]
        if mine:
            for f in admin.delete_topics(mine).values():
                try:
                    f.result()
                except Exception:
                    pass


def drop_region_objects(region, slot, db, port=None):
    """Drops what a test region leaves in its cluster: the slot (once its
    walsender has gone), the replication origins setup made (they are
    cluster-wide and outlive the database: <slot>_from_<region> and
    <slot>_replay) and the database."""
    with connect(region, port=port) as c:
        deadline = time.time() + 15
        while c.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s "
                        "AND active", (slot,)).fetchall() and time.time() < deadline:
            time.sleep(0.2)
        c.execute("SELECT pg_drop_replication_slot(slot_name) FROM "
                  "pg_replication_slots WHERE slot_name = %s", (slot,))
        c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        c.execute("SELECT pg_replication_origin_drop(roname) FROM "
                  "pg_replication_origin WHERE starts_with(roname, %s)",
                  (slot + "_",))


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


def free_port():
    """A port of 127.0.0.1 free now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def kafka_paused():
    """The stack's broker stopped (SIGSTOP) inside the block: connections
    stay open, nothing is acknowledged; SIGCONT on the way out."""
    state = os.environ.get("XR_STATE_DIR", os.path.join(ROOT, ".stack"))
    with open(os.path.join(state, "kafka", "kafka.pid")) as f:
        pid = int(f.read().strip())
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


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


def _crc64_table():
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (0xc15d213aa4d7a795 & -(fp & 1))
        table.append(fp)
    return table


_CRC64 = _crc64_table()


def crc64_avro(data):
    """CRC-64-AVRO of bytes, as the hex of its little-endian bytes (the
    order of a single-object header and of fastavro's fingerprint())."""
    fp = 0xc15d213aa4d7a795
    for b in data:
        fp = (fp >> 8) ^ _CRC64[(fp ^ b) & 0xff]
    return fp.to_bytes(8, "little").hex()


class Registry:
    """Writer schemas read from a schemas topic.

    by_id: schema id (the topic's key, "<fingerprint>.<json crc>", also in
    the xr-schema / xr-key-schema headers) -> parsed schema: the exact
    writer schema, logical types included.
    by_fp: canonical fingerprint (hex of header bytes 2..10) -> the parsed
    schemas under it, in topic order.  Any of them decodes the bytes; only
    the one named by the header gives the right logical types.
    """

    def __init__(self):
        self.by_id = {}
        self.by_fp = {}

    def __len__(self):
        return len(self.by_id)


def schema_registry(prefix):
    """A Registry of every schema on <prefix>._schemas, each key checked."""
    reg = Registry()
    for m in read_topic(f"{prefix}._schemas"):
        sid = m.key().decode()
        fp, dot, json_crc = sid.partition(".")
        assert dot and len(fp) == 16 and len(json_crc) == 16, \
            f"schema key {sid!r} is not <fingerprint>.<json crc>"
        schema = json.loads(m.value())
        parsed = fastavro.parse_schema(schema)
        # The first part must be the CRC-64-AVRO of the canonical form
        # (checked with fastavro's own implementation), the second that of
        # the full JSON text as published.
        canon = fastavro.schema.to_parsing_canonical_form(parsed)
        assert fastavro.schema.fingerprint(canon, "CRC-64-AVRO") == fp, \
            f"schema keyed {sid} has another fingerprint"
        assert crc64_avro(m.value()) == json_crc, \
            f"schema keyed {sid} has another JSON checksum"
        assert reg.by_id.get(sid, parsed) == parsed, \
            f"two different schemas keyed {sid}"
        reg.by_id[sid] = parsed
        under = reg.by_fp.setdefault(fp, [])
        if parsed not in under:
            under.append(parsed)
    return reg


def decode(data, registry, reader=None, schema_id=None):
    """Decodes Avro single-object bytes with fastavro.

    schema_id (str or bytes, an xr-schema / xr-key-schema header) picks the
    exact writer schema; without it, the latest schema published under the
    header's fingerprint is used.
    """
    assert data[:2] == b"\xc3\x01", f"not single-object encoded: {data[:10]!r}"
    fp = data[2:10].hex()
    if schema_id is not None:
        if isinstance(schema_id, bytes):
            schema_id = schema_id.decode()
        assert schema_id.split(".")[0] == fp, \
            f"header schema {schema_id} does not match fingerprint {fp}"
        assert schema_id in registry.by_id, \
            f"schema {schema_id} not in the schemas topic"
        writer = registry.by_id[schema_id]
    else:
        assert fp in registry.by_fp, f"fingerprint {fp} not in the schemas topic"
        writer = registry.by_fp[fp][-1]
    buf = io.BytesIO(data[10:])
    rec = fastavro.schemaless_reader(buf, writer, reader)
    assert buf.read() == b"", "bytes left over after the datum"
    return rec


def events(region, table, registry=None, expect=None, timeout=60):
    """The decoded (key, value, headers) of every event on a table's topic."""
    msgs = read_topic(region.topic(table), expect=expect, timeout=timeout)
    if registry is None:
        registry = schema_registry(region.prefix)
    out = []
    for m in msgs:
        headers = dict(m.headers() or [])
        key = decode(m.key(), registry, schema_id=headers["xr-key-schema"]) \
            if m.key() else None
        value = decode(m.value(), registry, schema_id=headers["xr-schema"])
        out.append((key, value, headers))
    return out
