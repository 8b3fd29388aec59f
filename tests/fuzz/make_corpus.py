#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses to tests/fuzz/corpus/<name>/.

Run once after a change to a fixture (python3 tests/fuzz/make_corpus.py) and
commit the files; scripts/fuzz.sh copies them to a work directory and never
writes here.  The seeds come from the unit tests' fixtures:

  pgoutput         every message kind, laid out as test_pgoutput.c (and
                   PostgreSQL's proto.c) writes them
  event            tests/common/data/all_types.value.bin in the three
                   framings of fuzz_event.c (first byte 0, 1, 2)
  schema_registry  registry answers (an id, a schema, an error), the
                   schemas of tests/common/data and schemas/, framed headers
  config           config/*.yaml and the YAML of test_config.c's sections
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "tests", "common", "data")


def write(harness, name, data):
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(*path):
    with open(os.path.join(ROOT, *path), "rb") as f:
        return f.read()


# ---- pgoutput: big-endian fields, strings with their NUL ----------------

def s(text):
    return text.encode() + b"\0"


def u8(v):
    return struct.pack(">B", v)


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def tuple_data(cols):
    out = u16(len(cols))
    for c in cols:
        if c is None:
            out += b"n"
        elif c == "u":
            out += b"u"
        elif isinstance(c, bytes):
            out += b"b" + u32(len(c)) + c
        else:
            out += b"t" + u32(len(c.encode())) + c.encode()
    return out


def pgoutput():
    row = ["42", "h\u00e9llo", None, "u", "{a,\"b c\",NULL}", b"\x00\x01\xff"]
    key = ["42", None, None, None, None, None]
    relcol = lambda flags, name, typid, typmod: (
        u8(flags) + s(name) + u32(typid) + u32(typmod & 0xffffffff))
    msgs = {
        "begin": b"B" + u64(0x1000000A8) + u64(757382400000000) + u32(777),
        "commit": b"C" + u8(0) + u64(0x100000F00) + u64(0x100000F38)
                  + u64(757382400000000),
        "origin": b"O" + u64(0x100000F00) + s("pg_eu"),
        "relation": b"R" + u32(16384) + s("public") + s("orders") + b"d"
                    + u16(6) + relcol(1, "id", 20, -1)
                    + relcol(0, "note", 25, -1)
                    + relcol(0, "amount", 1700, (12 << 16 | 2) + 4)
                    + relcol(0, "body", 25, -1)
                    + relcol(0, "tags", 1009, -1)
                    + relcol(0, "blob", 17, -1),
        "relation_full": b"R" + u32(16385) + s("sales") + s("odd name") + b"f"
                         + u16(1) + relcol(0, "", 23, -1),
        "type": b"Y" + u32(90001) + s("public") + s("mood"),
        "insert": b"I" + u32(16384) + b"N" + tuple_data(row),
        "update": b"U" + u32(16384) + b"N" + tuple_data(row),
        "update_key": b"U" + u32(16384) + b"K" + tuple_data(key) + b"N"
                      + tuple_data(row),
        "update_old": b"U" + u32(16384) + b"O" + tuple_data(row) + b"N"
                      + tuple_data(row),
        "delete_key": b"D" + u32(16384) + b"K" + tuple_data(key),
        "delete_old": b"D" + u32(16384) + b"O" + tuple_data(row),
        "truncate": b"T" + u32(2) + u8(3) + u32(16384) + u32(16385),
        "message": b"M" + u8(1) + u64(0x100000F00) + s("xregion")
                   + u32(5) + b"a\0b\xffc",
    }
    for name, data in msgs.items():
        write("pgoutput", name, data)


# ---- event ---------------------------------------------------------------

def event():
    msg = read("tests", "common", "data", "all_types.value.bin")
    assert msg[:2] == b"\xc3\x01"
    body = msg[10:]
    write("event", "raw_single_object", b"\x00" + msg)
    write("event", "single_object", b"\x01" + body)
    write("event", "confluent", b"\x02" + body)
    write("event", "raw_confluent", b"\x00" + b"\x00\x00\x00\x00\x01" + body)


# ---- schema registry -----------------------------------------------------

def schema_registry():
    key = read("tests", "common", "data", "all_types.key.avsc")
    value = read("tests", "common", "data", "all_types.value.avsc")
    envelope = read("schemas", "envelope.avsc")
    write("schema_registry", "answer_id", b'{"id":1}')
    write("schema_registry", "answer_schema_key",
          json.dumps({"schema": key.decode()}).encode())
    write("schema_registry", "answer_schema_value",
          json.dumps({"schema": value.decode(), "schemaType": "AVRO"}).encode())
    write("schema_registry", "answer_error",
          b'{"error_code":40403,"message":"Schema 7 not found"}')
    write("schema_registry", "key.avsc", key)
    write("schema_registry", "value.avsc", value)
    write("schema_registry", "envelope.avsc", envelope)
    msg = read("tests", "common", "data", "all_types.value.bin")
    write("schema_registry", "single_object", msg[:40])
    write("schema_registry", "confluent", b"\x00\x00\x00\x00\x01" + msg[10:40])


# ---- config --------------------------------------------------------------

MINIMAL = (
    "region: us\n"
    "postgres:\n"
    "  dsn: \"host=127.0.0.1 port=15432 dbname=app\"\n"
    "kafka:\n"
    "  brokers: 127.0.0.1:19092\n")


def config():
    for region in ("us", "eu", "apac"):
        write("config", region + ".yaml", read("config", region + ".yaml"))
    write("config", "minimal.yaml", MINIMAL.encode())
    write("config", "registry.yaml", (MINIMAL +
          "  schema_registry:\n"
          "    url: http://127.0.0.1:18081/apis/ccompat/v7\n"
          "    username: feed\n"
          "    password: s3cret\n"
          "    timeout_ms: 2500\n"
          "    framing: single-object\n").encode())
    write("config", "full.yaml", (
        "region: us\n"
        "regions: [us, eu, apac]\n"
        "log_level: debug\n"
        "metrics_listen: 127.0.0.1:9187\n"
        "postgres:\n"
        "  dsn: \"host=127.0.0.1 port=15432 dbname=app user=postgres\"\n"
        "  slot: xr_slot_us\n"
        "  publication: xr_pub\n"
        "  failover: yes\n"
        "kafka:\n"
        "  brokers: 127.0.0.1:19092,127.0.0.1:19093\n"
        "  topic_prefix: acme\n"
        "  schemas_topic: acme.schemas\n"
        "  dead_letter_topic: acme.us.dead\n"
        "  partitions: 6\n"
        "  replication_factor: 3\n"
        "  properties:\n"
        "    security.protocol: plaintext\n"
        "    linger.ms: 5\n"
        "producer:\n"
        "  status_interval_ms: 5000\n"
        "  max_inflight_mb: 128\n"
        "  flush_timeout_ms: 60000\n"
        "  reconnect_backoff_max_ms: 20000\n"
        "consumer:\n"
        "  group_id: acme-us\n"
        "  batch_size: 500\n"
        "  batch_linger_ms: 10\n"
        "  tombstone_retention_hours: 24\n"
        "  drift_recheck_ms: 1000\n"
        "tables:\n"
        "  - name: public.orders\n"
        "    pii: false\n"
        "    exclude_columns: [internal_note, cost]\n"
        "    conflict: vclock\n"
        "    tiebreak: prefer-region:eu\n"
        "  - name: users\n"
        "    pii: true\n"
        "  - name: \"sales.odd.name\"\n"
        "    pii: false\n"
        "    clock: commit\n").encode())
    write("config", "flow.yaml", (
        "{region: eu, postgres: {dsn: 'host=x'}, kafka: {brokers: 'k:1', "
        "properties: {linger.ms: 5}}, tables: [{name: t, pii: false, "
        "conflict: vclock, tiebreak: keep-local}]}\n").encode())


def main():
    if len(sys.argv) > 1:
        print(__doc__)
        return 0
    pgoutput()
    event()
    schema_registry()
    config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
