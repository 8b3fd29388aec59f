"""Transaction boundaries in the stream (issue 12, part 1): every event of a
transaction carries its change's index in the transaction (tx_index), and
the producer publishes an end record per transaction on the region's
transactions topic (<prefix>.<region>._tx) that counts its events per topic
and partition.  Checked by an independent reader (fastavro on the topics):
for every end record, the events with its commit LSN are exactly the ones
it counts, their tx_index run 0..changes-1; transactions that published
nothing (PII only) have no record; a backfill's events have no tx_index.
"""
import collections
import time

import xrtest
from xrdeploy import Deployment

SCHEMA = """
CREATE TABLE orders (id bigint PRIMARY KEY, total int);
CREATE TABLE lines (order_id bigint, n int, amount int, PRIMARY KEY (order_id, n));
CREATE TABLE secret (id bigint PRIMARY KEY, ssn text);
"""
TABLES = [("public.orders", False), ("public.lines", False),
          ("public.secret", True)]


def test_every_transaction_has_an_end_record_counting_its_events():
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"))
    try:
        d.start()
        us = d["us"]
        with xrtest.connect("us", us.db) as c:
            c.autocommit = True
            for o in range(1, 41):
                with c.transaction():
                    c.execute("INSERT INTO orders VALUES (%s, 0)", (o,))
                    for n in range(o % 7 + 1):
                        c.execute("INSERT INTO lines VALUES (%s, %s, %s)", (o, n, n))
                    c.execute("UPDATE orders SET total = (SELECT sum(amount) "
                              "FROM lines WHERE order_id = %s) WHERE id = %s", (o, o))
                    c.execute("UPDATE orders SET total = total + 1 WHERE id = %s", (o,))
            with c.transaction():        # PII only: nothing published
                c.execute("INSERT INTO secret VALUES (1, 'x')")
            with c.transaction():        # a key change and a delete
                c.execute("UPDATE orders SET id = 1000 WHERE id = 1")
                c.execute("DELETE FROM lines WHERE order_id = 2")
            with c.transaction():        # one copy per partition
                c.execute("TRUNCATE lines")
        d.converge("orders")
        us.xregion("backfill", "--table", "orders")

        reg = xrtest.schema_registry(d.prefix)
        events = collections.defaultdict(list)   # commit_lsn -> [(topic, p, ev)]
        backfilled = []
        offsets = {}                             # (topic, p, offset) -> commit_lsn
        for table in ("orders", "lines"):
            topic = f"{d.prefix}.us.public.{table}"
            for m in xrtest.read_topic(topic):
                h = dict(m.headers())
                ev = xrtest.decode(m.value(), reg, schema_id=h["xr-schema"])
                if ev["tx_index"] is None:
                    # What a backfill publishes (rows, tombstones): no
                    # transaction, source.origin set.
                    assert ev["source"]["origin"] is not None, ev
                    backfilled.append(ev["op"])
                    continue
                events[ev["source"]["commit_lsn"]].append((topic, m.partition(), ev))
                offsets[(topic, m.partition(), m.offset())] = ev["source"]["commit_lsn"]
                assert h["xr-tx"].decode() == "%d:%d" % (
                    ev["source"]["commit_lsn"], ev["tx_index"]), h
        assert backfilled.count("snapshot_read") == 40
        ends = []
        for m in xrtest.read_topic(f"{d.prefix}.us._tx"):
            h = dict(m.headers())
            ends.append(xrtest.decode(m.value(), reg, schema_id=h["xr-schema"]))
        sysid = str(us.sql("SELECT system_identifier FROM pg_control_system()")[0][0])
        assert {(e["region"], e["system_id"]) for e in ends} == {("us", sysid)}
        # One record per transaction that published something, in commit order.
        assert len(ends) == 40 + 2
        assert [e["commit_lsn"] for e in ends] == sorted(e["commit_lsn"] for e in ends)
        assert {e["commit_lsn"] for e in ends} == set(events)
        for e in ends:
            got = events[e["commit_lsn"]]
            counts = collections.Counter((t, p) for t, p, _ in got)
            assert counts == {(x["topic"], x["partition"]): x["events"]
                              for x in e["partitions"]}, e
            # first_offset..last_offset hold exactly its events there
            for x in e["partitions"]:
                span = range(x["first_offset"], x["last_offset"] + 1)
                assert len(span) == x["events"], x
                assert all(offsets.get((x["topic"], x["partition"], o))
                           == e["commit_lsn"] for o in span), (x, e)
            assert e["events"] == len(got)
            assert {ev["source"]["txid"] for _, _, ev in got} == {e["txid"]}
            indexes = sorted({ev["tx_index"] for _, _, ev in got})
            assert indexes == list(range(e["changes"])), (indexes, e)
        # The orders' transactions: order, lines, two updates.
        sizes = sorted(e["changes"] for e in ends)
        assert sizes[-1] == 1 + 7 + 2
        # The truncate: one change, one event per partition of lines.
        trunc = [e for e in ends if any(ev["op"] == "truncate"
                                        for _, _, ev in events[e["commit_lsn"]])]
        assert len(trunc) == 1 and trunc[0]["changes"] == 1
        assert trunc[0]["events"] == 3 and len(trunc[0]["partitions"]) == 3
    finally:
        d.close()


def test_a_lone_transaction_does_not_wait_for_linger_ms():
    """Adaptive batching (issue 13): with librdkafka's linger.ms at 3 s, a
    transaction alone on the stream still reaches the other region at once.
    Its events, then its end record, each waited linger.ms before; now the
    producer sends what is queued as soon as the stream is quiet and
    everything sent before is acknowledged, and a delivery report wakes it
    at once for the end record."""
    d = Deployment([("public.t", False)],
                   "CREATE TABLE t (id bigint PRIMARY KEY, v int);",
                   regions=("us", "eu"),
                   kafka=["properties:", "  linger.ms: 3000"])
    try:
        d.start()
        took = []
        with xrtest.connect("us", d["us"].db) as src, \
                xrtest.connect("eu", d["eu"].db) as dst:
            src.autocommit = dst.autocommit = True
            for i in range(6):
                time.sleep(0.2)                 # alone: nothing in flight
                t0 = time.monotonic()
                src.execute("INSERT INTO t VALUES (%s, %s)", (i, i))
                while not dst.execute("SELECT 1 FROM t WHERE id = %s",
                                      (i,)).fetchone():
                    assert time.monotonic() - t0 < 30, f"row {i} not applied"
                    time.sleep(0.005)
                took.append(time.monotonic() - t0)
        # The first may wait for the topics' metadata; two waits of
        # linger.ms would be 6 s each.
        assert max(took[1:]) < 1.5, took
    finally:
        d.close()
