"""kafka.schema_registry: events in Confluent's wire format (0x00, the
registry's schema id, the datum) against a real registry (Apicurio Registry
3, started by `XR_REGISTRY=1 scripts/stack.sh up`), read by an independent
reader (confluent-kafka's AvroDeserializer with a SchemaRegistryClient); a
topic that switches from single-object to framed events mid-stream is
applied and fed completely, without the consumer or feeder stopping.
"""
import os
import signal
import struct
import subprocess

import fastavro  # noqa: F401  (the deserializer's Avro implementation)
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

import xrtest
from xrdeploy import Deployment
from test_feed import read_files

URL = os.environ.get("XR_SCHEMA_REGISTRY_URL",
                     "http://127.0.0.1:18081/apis/ccompat/v7")
SCHEMA = ("CREATE TABLE items (id bigint PRIMARY KEY, n int, note text, "
          "price numeric(10,2), at timestamptz);"
          "CREATE TABLE secret (id bigint PRIMARY KEY, ssn text);")
TABLES = [("public.items", False), ("public.secret", True)]


def registry_lines(framing):
    return ["schema_registry:", f"  url: {URL}", f"  framing: {framing}"]


@pytest.fixture(scope="module")
def registry():
    c = SchemaRegistryClient({"url": URL})
    try:
        c.get_subjects()
    except Exception as e:  # the stack must have been started with it
        raise AssertionError(f"no schema registry at {URL} (XR_REGISTRY=1 "
                             f"scripts/stack.sh up): {e}")
    return c


def write_some(node, lo, hi):
    node.sql(f"INSERT INTO items SELECT g, g, 'n' || g, g / 4.0, now() "
             f"FROM generate_series({lo}, {hi}) g")
    node.sql(f"UPDATE items SET n = -n WHERE id BETWEEN {lo} AND {lo + 9}")
    node.sql(f"UPDATE items SET id = id + 100000 WHERE id = {lo + 20}")
    node.sql(f"DELETE FROM items WHERE id BETWEEN {lo + 30} AND {lo + 34}")


def test_framed_events_apply_and_decode_with_the_registry(registry, tmp_path):
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"),
                   kafka=registry_lines("confluent"))
    try:
        d.start()
        write_some(d["us"], 1, 200)
        d.converge("items", expect_rows=195)
        topic = f"{d.prefix}.us.public.items"
        assert set(registry.get_subjects()) >= {f"{topic}-value", f"{topic}-key"}
        value_de = AvroDeserializer(registry)
        key_de = AvroDeserializer(registry)
        msgs = xrtest.read_topic(topic)
        assert len(msgs) == 200 + 10 + 1 + 5
        ids = set()
        for m in msgs:
            assert m.value()[0] == 0 and m.key()[0] == 0, m.value()[:8]
            sid = struct.unpack(">I", m.value()[1:5])[0]
            ids.add(sid)
            v = value_de(m.value(), SerializationContext(topic, MessageField.VALUE))
            k = key_de(m.key(), SerializationContext(topic, MessageField.KEY))
            h = dict(m.headers())
            assert str(v["event_id"]) == h["xr-event-id"].decode()
            row = v["after"] or v["before"]
            assert k["id"] == row["id"]
        # The registry's schema for the id is the full one, logical types kept.
        s = registry.get_schema(ids.pop())
        assert '"logicalType"' in s.schema_str and "xr.pg_type" in s.schema_str
        # The feeder reads the framed events too.
        out = str(tmp_path / "lake")
        d["eu"].xregion("feed", "--out", out, "--once", "--regions", "us")
        rows = read_files(out)[0]["items"]
        assert len(rows) == len(msgs) + 1   # the key change is two rows
        assert not any(t.startswith(f"{d.prefix}.us.public.secret")
                       for t in xrtest.topics())
    finally:
        d.close()


def test_a_topic_switching_framing_mid_stream_is_read_whole(registry, tmp_path):
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"),
                   kafka=registry_lines("single-object"))
    try:
        d.start()
        out = str(tmp_path / "lake")
        flog = open(tmp_path / "feed.log", "w")
        feeder = subprocess.Popen([xrtest.XREGION, "feed", "-c", d["eu"].config,
                                   "--out", out, "--idle-flush", "1"],
                                  stdout=flog, stderr=subprocess.STDOUT)
        write_some(d["us"], 1, 100)
        d.converge("items", expect_rows=95)
        # us switches to Confluent framing: only its producer restarts.
        assert d["us"].stop() == 0
        with open(d["us"].config) as f:
            text = f.read()
        with open(d["us"].config, "w") as f:
            f.write(text.replace("framing: single-object", "framing: confluent"))
        d["us"].start()
        d["us"].wait_log("streaming slot", count=2)
        write_some(d["us"], 1001, 1100)
        d["us"].sql("UPDATE items SET note = 'framed' WHERE id BETWEEN 11 AND 19")
        d.converge("items", expect_rows=190)
        msgs = xrtest.read_topic(f"{d.prefix}.us.public.items")
        magic = [m.value()[0] for m in msgs]
        assert magic.count(0xC3) == 116 and magic.count(0x00) == 116 + 9, magic
        # The feeder ran on throughout; everything is in its files.
        feeder.send_signal(signal.SIGTERM)
        assert feeder.wait(60) == 0
        rows = read_files(out)[0]["items"]
        assert len(rows) == 2 * 117 + 9
        flog.close()
        assert "feed: dead-lettered" not in (tmp_path / "feed.log").read_text()
        assert "dead-lettered" not in d["eu"].read_log()
        # A key kept its partition across the switch.
        parts, framings = {}, {}
        for m in msgs:
            key = m.key()[10:] if m.key()[0] == 0xC3 else m.key()[5:]
            parts.setdefault(key, set()).add(m.partition())
            framings.setdefault(key, set()).add(m.key()[0])
        assert sum(1 for f in framings.values() if len(f) == 2) == 9
        assert all(len(p) == 1 for p in parts.values())
    finally:
        d.close()
