"""Vector-clock conflict mode on the real stack: the trigger's vectors and
clocks, their events, the apply decision (dominates / stale / concurrent)
with each tie-break, tombstones, replays and teardown.  Results are checked
with queries in every region, not with xregion's own output."""
import time

import pytest

import xrtest

SCHEMA = """
CREATE TABLE acct (id int PRIMARY KEY, v text);
CREATE TABLE plain (id int PRIMARY KEY, v text);
"""


def vc_tables(tiebreak=None):
    extra = ["conflict: vclock"] + ([f"tiebreak: {tiebreak}"] if tiebreak else [])
    return [("public.acct", False, *extra), ("public.plain", False)]


@pytest.fixture
def deploy(deployments):
    return lambda tables=None, schema=SCHEMA, **kw: deployments(
        tables or vc_tables(), schema, **kw)


def versions(node, table="acct"):
    return node.sql(f'SELECT id, ts, region, deleted, vv FROM xregion."public.{table}" '
                    "ORDER BY id")


def converge_all(d, table="acct", timeout=90):
    """Rows and versions entries equal everywhere (and stay so briefly)."""
    deadline = time.time() + timeout
    while True:
        rows = {r: (n.checksum(table), versions(n, table)) for r, n in d.nodes.items()}
        if len({repr(v) for v in rows.values()}) == 1:
            time.sleep(1.0)
            again = {r: (n.checksum(table), versions(n, table))
                     for r, n in d.nodes.items()}
            if again == rows:
                return next(iter(rows.values()))
        if time.time() > deadline:
            raise AssertionError(f"{table} did not converge:\n{rows}")
        time.sleep(0.3)


def conflicts(node, table="acct"):
    return node.sql("SELECT kind, resolution, local_vclock, remote_vclock, "
                    "remote_region FROM xregion.conflicts WHERE table_name = %s "
                    "ORDER BY id", (table,))


def test_local_writes_advance_the_vector_and_events_carry_it(deploy):
    d = deploy(regions=("us", "eu"))
    us, eu = d["us"], d["eu"]
    us.sql("INSERT INTO acct VALUES (1, 'a')")
    us.sql("UPDATE acct SET v = 'b' WHERE id = 1")
    us.sql("INSERT INTO acct VALUES (1, 'x') ON CONFLICT (id) DO NOTHING")
    us.sql("INSERT INTO plain VALUES (1, 'p')")
    d.converge("plain", expect_rows=1)
    rows = converge_all(d)
    ver = versions(us)
    assert ver[0][4] == {"us": 2}, ver          # DO NOTHING counted nothing
    assert rows[1] == ver
    reg = xrtest.schema_registry(d.prefix)
    evs = [xrtest.decode(m.value(), reg) for m in
           xrtest.read_topic(f"{d.prefix}.us.public.acct", expect=2)]
    assert [e["vclock"]["vector"] for e in evs] == [{"us": 1}, {"us": 2}]
    assert evs[0]["vclock"]["hlc"] < evs[1]["vclock"]["hlc"]
    assert evs[1]["vclock"]["hlc"] == ver[0][1]
    plain = [xrtest.decode(m.value(), reg) for m in
             xrtest.read_topic(f"{d.prefix}.us.public.plain", expect=1)]
    assert plain[0]["vclock"] is None
    # eu's later write includes us's: it dominates, no conflict anywhere.
    eu.sql("UPDATE acct SET v = 'eu' WHERE id = 1")
    converge_all(d)
    assert us.sql("SELECT v FROM acct") == [("eu",)]
    assert versions(us)[0][4] == {"us": 2, "eu": 1}
    assert conflicts(us) == [] and conflicts(eu) == []


@pytest.mark.parametrize("regions", [("us", "eu"), ("us", "eu", "apac")])
def test_concurrent_writes_converge_with_both_vectors_logged(deploy, regions):
    d = deploy(regions=regions)
    first = d[regions[0]]
    first.sql("INSERT INTO acct SELECT g, 'base' FROM generate_series(1, 20) g")
    converge_all(d)
    for n in d.nodes.values():
        n.stop()
    # Every region updates every key, deletes some, re-inserts one.
    for i, (r, n) in enumerate(d.nodes.items()):
        n.sql("UPDATE acct SET v = %s", (r,))
        n.sql("DELETE FROM acct WHERE id %% %s = 0", (len(regions) + i,))
        n.sql("INSERT INTO acct VALUES (100, %s)", (r,))
    for n in d.nodes.values():
        n.start()
    count, ver = converge_all(d)
    # The winner of each key is the write with the largest (hlc, region):
    # the entry names it, and the row holds that region's value.
    for key, ts, region, deleted, vv in ver:
        assert set(vv) == set(regions), (key, vv)
        row = first.sql("SELECT v FROM acct WHERE id = %s", (key,))
        assert (row == []) == deleted
        if row:
            assert row[0][0] == region
    logged = [c for n in d.nodes.values() for c in conflicts(n)]
    assert logged, "concurrent writes logged no conflict"
    kinds = {c[0] for c in logged}
    assert kinds <= {"update_concurrent", "delete_concurrent",
                     "insert_concurrent", "update_deleted", "insert_deleted"}
    assert "update_concurrent" in kinds
    for kind, resolution, local_vv, remote_vv, _ in logged:
        assert local_vv and remote_vv
        assert resolution in ("remote_applied", "local_kept")


def test_a_write_made_after_seeing_another_wins_despite_a_slower_clock(deploy):
    """us's clock runs ahead (its row clock is set a minute into the
    future); eu writes after seeing us's write: its hybrid clock follows
    us's, so its write wins everywhere, as a causal successor must."""
    d = deploy(regions=("us", "eu"))
    us, eu = d["us"], d["eu"]
    us.sql("INSERT INTO acct VALUES (1, 'v0')")
    converge_all(d)
    ahead = int((time.time() + 60) * 1e6)
    us.sql('UPDATE xregion."public.acct" SET clk = %s WHERE id = 1', (ahead,))
    us.sql("UPDATE acct SET v = 'v1' WHERE id = 1")
    converge_all(d)
    us_hlc = versions(eu)[0][1]
    assert us_hlc > ahead
    eu.sql("UPDATE acct SET v = 'v2' WHERE id = 1")   # after seeing v1
    _, ver = converge_all(d)
    assert ver[0][1] > us_hlc and ver[0][2] == "eu"
    assert us.sql("SELECT v FROM acct") == [("v2",)]
    assert conflicts(us) == [] and conflicts(eu) == []


def test_prefer_region_wins_concurrent_writes(deploy):
    d = deploy(tables=vc_tables("prefer-region:us"), regions=("us", "eu"))
    us, eu = d["us"], d["eu"]
    us.sql("INSERT INTO acct VALUES (1, 'base'), (2, 'base')")
    converge_all(d)
    us.stop()
    eu.stop()
    us.sql("UPDATE acct SET v = 'us'")
    time.sleep(0.05)
    eu.sql("UPDATE acct SET v = 'eu'")           # later clock, still loses
    eu.sql("UPDATE acct SET v = 'eu2' WHERE id = 2")
    us.start()
    eu.start()
    converge_all(d)
    assert us.sql("SELECT v FROM acct ORDER BY id") == [("us",), ("us",)]
    # A write made after seeing us's wins again, wherever it is made.
    eu.sql("UPDATE acct SET v = 'eu3' WHERE id = 1")
    converge_all(d)
    assert us.sql("SELECT v FROM acct ORDER BY id") == [("eu3",), ("us",)]


def test_keep_local_keeps_each_regions_row_and_logs_it(deploy):
    d = deploy(tables=vc_tables("keep-local"), regions=("us", "eu"))
    us, eu = d["us"], d["eu"]
    us.sql("INSERT INTO acct VALUES (1, 'base')")
    converge_all(d)
    us.stop()
    eu.stop()
    us.sql("UPDATE acct SET v = 'us'")
    eu.sql("UPDATE acct SET v = 'eu'")
    us.start()
    eu.start()
    for n, mine in ((us, "us"), (eu, "eu")):
        deadline = time.time() + 60
        while not conflicts(n) and time.time() < deadline:
            time.sleep(0.3)
        assert [c[:2] for c in conflicts(n)] == [("update_concurrent", "local_kept")]
        assert n.sql("SELECT v FROM acct") == [(mine,)]
    # Both now know both writes: the next write anywhere dominates.
    assert versions(us)[0][4] == versions(eu)[0][4] == {"us": 2, "eu": 1}
    us.sql("UPDATE acct SET v = 'settled'")
    converge_all(d)
    assert eu.sql("SELECT v FROM acct") == [("settled",)]


def test_tombstone_keeps_older_writes_out_and_replay_changes_nothing(deploy):
    d = deploy(regions=("us", "eu"))
    us, eu = d["us"], d["eu"]
    us.sql("INSERT INTO acct SELECT g, 'a' FROM generate_series(1, 50) g")
    us.sql("UPDATE acct SET v = 'b' WHERE id <= 25")
    us.sql("DELETE FROM acct WHERE id > 40")
    eu.sql("INSERT INTO acct VALUES (1000, 'eu')")
    before = converge_all(d)
    assert before[0][0] == 41
    # Replaying every event of us into eu: each is equal to or dominated by
    # what eu has (the inserts of deleted rows included): nothing changes.
    eu.stop()
    eu.sql("UPDATE xregion.offsets SET next_offset = 0")
    eu.start()
    eu.wait_log("from offset 0", timeout=60)
    deadline = time.time() + 60
    while time.time() < deadline and eu.sql(
            "SELECT sum(next_offset) FROM xregion.offsets WHERE topic LIKE %s",
            (f"{d.prefix}.us.public.acct",))[0][0] != 50 + 25 + 10:
        time.sleep(0.3)
    assert (eu.checksum("acct"), versions(eu)) == before
    assert conflicts(eu) == []


def test_application_role_writes_without_rights_on_schema_xregion(deploy):
    """The trigger runs as its owner: a plain role needs rights on its
    table only, key changes included."""
    import psycopg
    d = deploy(regions=("us", "eu"))
    role = f"xrt_vc_{d.suffix}"
    d["us"].sql(f"CREATE ROLE {role} LOGIN")
    try:
        d["us"].sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON acct TO {role}")
        dsn = xrtest.pg_dsn("us", d["us"].db).replace("user=postgres",
                                                      f"user={role}")
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO acct VALUES (1, 'a'), (2, 'b')")
            c.execute("UPDATE acct SET id = 3 WHERE id = 2")   # key change
            c.execute("DELETE FROM acct WHERE id = 1")
        _, ver = converge_all(d)
        assert d["eu"].sql("SELECT id, v FROM acct") == [(3, "b")]
        assert [(k, dl, vv) for k, _, _, dl, vv in ver] == [
            (1, True, {"us": 2}), (2, True, {"us": 2}), (3, False, {"us": 1})]
    finally:
        d["us"].sql(f"DROP OWNED BY {role}")
        with xrtest.connect("us") as c:
            c.execute(f"DROP ROLE IF EXISTS {role}")


def test_teardown_removes_the_vclock_trigger_and_functions(deploy):
    d = deploy(regions=("us", "eu"))
    us = d["us"]
    q = ("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'acct'::regclass "
         "AND tgname = 'xregion_vclock'")
    assert us.sql(q) == [(1,)]
    us.stop()
    us.xregion("teardown")
    assert us.sql(q) == [(0,)]
    assert us.sql("SELECT count(*) FROM pg_proc WHERE proname LIKE '%vclock%' "
                  "OR proname IN ('vv_cmp', 'vv_merge', 'vc_wins')") == [(0,)]
    us.sql("INSERT INTO acct VALUES (7, 'after teardown')")   # plain table again
    assert us.sql("SELECT v FROM acct WHERE id = 7") == [("after teardown",)]
