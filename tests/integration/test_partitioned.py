"""Partitioned tables (issue 12): a range-partitioned table is published and
applied under its root's name (publish_via_partition_root), whatever its
partitions are called in each region, and a row that moves between
partitions is one update event (a key change: the partition key is part of
the primary key), in both directions; a backfill reads the root.
"""
import xrtest
from xrdeploy import Deployment

ROOT = """
CREATE TABLE events (id int, day date, v text, n int,
                     PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
"""
US = ROOT + """
CREATE TABLE events_2026_01 PARTITION OF events
  FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE events_2026_02 PARTITION OF events
  FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
CREATE TABLE events_2026_03 PARTITION OF events
  FOR VALUES FROM ('2026-03-01') TO ('2026-04-01');
"""
EU = ROOT + """
CREATE TABLE ev_early PARTITION OF events
  FOR VALUES FROM ('2026-01-01') TO ('2026-02-15');
CREATE TABLE ev_rest PARTITION OF events DEFAULT;
"""
KEY = "id, day"


def test_partitioned_table_under_its_root_name():
    d = Deployment([("public.events", False)], {"us": US, "eu": EU},
                   regions=("us", "eu"))
    try:
        d.start()
        us, eu = d["us"], d["eu"]
        us.sql("INSERT INTO events SELECT g, date '2026-01-01' + (g % 80), "
               "'v' || g, 0 FROM generate_series(1, 300) g")
        d.converge("events", key=KEY, expect_rows=300)
        # moves: January rows to March (us: 2026_01 -> 2026_03; eu:
        # ev_early -> ev_rest), in one transaction with other writes
        us.sql("BEGIN; UPDATE events SET day = day + 59, n = n + 1 "
               "WHERE id <= 40 AND day < '2026-02-01'; "
               "UPDATE events SET v = 'changed' WHERE id BETWEEN 200 AND 210; "
               "DELETE FROM events WHERE id BETWEEN 290 AND 300; COMMIT")
        d.converge("events", key=KEY, expect_rows=289)
        # and back the other way, written in eu
        eu.sql("UPDATE events SET day = date '2026-01-02', n = n + 10 "
               "WHERE id BETWEEN 100 AND 110")
        d.converge("events", key=KEY, expect_rows=289)
        # a delete and insert of one key, with the table's Relation message
        # sent again between them (the ALTER invalidates the partition's
        # entry in pgoutput's cache, as an autoanalyze can between the two
        # halves of a move): still one update
        us.sql("BEGIN; DELETE FROM events WHERE id = 250; "
               "ALTER TABLE events_2026_01 SET (fillfactor = 90); "
               "INSERT INTO events VALUES (250, date '2026-01-11', 'again', 5); "
               "COMMIT")
        d.converge("events", key=KEY, expect_rows=289)
        assert us.sql("SELECT count(*) FROM events_2026_01 "
                      "WHERE id BETWEEN 100 AND 110")[0][0] == 11
        assert eu.sql("SELECT count(*) FROM ev_early "
                      "WHERE id BETWEEN 100 AND 110")[0][0] == 11

        # a move is one event: an update whose before has the old key
        reg = xrtest.schema_registry(d.prefix)
        moved = us.sql("SELECT count(*) FROM events WHERE id <= 40 "
                       "AND day >= '2026-03-01' AND n = 1")[0][0]
        assert moved > 10
        ops = {"insert": 0, "update": 0, "delete": 0}
        keychanges = again = 0
        for m in xrtest.read_topic(f"{d.prefix}.us.public.events"):
            ev = xrtest.decode(m.value(), reg,
                               schema_id=dict(m.headers())["xr-schema"])
            ops[ev["op"]] = ops.get(ev["op"], 0) + 1
            if ev["op"] == "update" and ev["after"]["v"] == "again":
                assert ev["before"] is None, ev
                again += 1
            if ev["op"] == "update" and ev["before"] is not None:
                assert ev["before"]["day"] != ev["after"]["day"], ev
                keychanges += 1
        assert keychanges == moved, (keychanges, moved, ops)
        assert again == 1, (again, ops)
        assert ops["update"] == moved + 12 and ops["delete"] == 11, ops
        # a backfill reads the root (its partitions' rows)
        r = us.xregion("backfill", "--table", "events")
        assert "done" in r.stdout, r.stdout + r.stderr
        assert us.sql("SELECT rows_sent FROM xregion.backfills")[0][0] == 289
        d.converge("events", key=KEY, expect_rows=289)
        # no topic under a partition's name
        admin = xrtest.AdminClient({"bootstrap.servers": xrtest.BROKERS})
        names = [t for t in admin.list_topics(timeout=10).topics
                 if t.startswith(d.prefix + ".")]
        assert not [t for t in names if "events_" in t or "ev_" in t], names
        assert eu.sql("SELECT count(*) FROM xregion.conflicts")[0][0] == 0
        # eu moved rows us had written: the old keys' deletes are logged in
        # us as what they are (a write of another region's row), applied
        assert us.sql("SELECT kind, resolution, count(*) FROM xregion.conflicts "
                      "GROUP BY 1, 2") == [("delete_origin_differs",
                                            "remote_applied", 11)]
    finally:
        d.close()
