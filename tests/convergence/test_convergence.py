"""The convergence test under pytest: short randomized runs with a kill -9
and a broker restart, a fourth region joining, a Kafka node killed on a
three-broker cluster, the causal scenario, and checks of the checker.

XR_CONVERGE_MODES: conflict modes to test (default "lww,vclock").
XR_CONVERGE_LONG=1 adds a long run (XR_CONVERGE_LONG_SECONDS, default 600).
The broker restart uses scripts/stack.sh restart-kafka on XR_STATE_DIR
(default <repo>/.stack): the stack must be the one scripts/stack.sh started.
"""
import os

import pytest

import checks
import converge
import workload

MODES = converge.parse_modes(os.environ.get("XR_CONVERGE_MODES", "lww,vclock"))
LONG = os.environ.get("XR_CONVERGE_LONG") == "1"


def assert_converged(s):
    problems = [f"{f['table']} {f['key']}: {', '.join(f['kind'])}"
                for f in s["findings"]]
    assert s["drained"], "the replicators did not drain"
    assert not s["errors"], s["errors"]
    assert s["unexpected_exits"] == 0, "a replicator exited by itself"
    assert s["unlogged_losers"] == 0, s["unlogged"][:5]
    assert s["divergent_rows"] == 0 and s["lost_changes"] == 0, \
        "\n".join(problems[:40])
    # Not vacuous: the regions wrote the same keys at once.
    assert s["writes"] > 500 and s["conflicts"] > 50, s


def test_random_writes_with_kill_and_broker_restart_converge():
    """eu runs 2 s behind: its writes over rows the others wrote within
    that lag take the hybrid clock's versions, which the lww checks use."""
    s = converge.run_random(duration=25, modes=MODES, workers=2, kills=1,
                            broker_restart=True, pause_ms=5, drain_timeout=150,
                            bulk_rows=2000, bulk_every=20, races=True,
                            skews={"eu": -2.0})
    assert s["kills"] == 1 and s["broker_restarts"] == 1
    assert s["bulk_transactions"] >= 3, s["bulk_transactions"]
    assert s["races_forced"] >= 5, s["races_forced"]
    assert_converged(s)


def test_a_fourth_region_joins_under_writes():
    """sa (its own cluster, empty tables) joins at a third of the load: us
    writes a manifest and backfills every table for it while the three
    regions write on (TOASTed values, vclock, unique and bulk tables
    included); then all four hold the same rows, and sa no PII."""
    s = converge.run_random(duration=25, modes=MODES, workers=2, kills=1,
                            pause_ms=5, drain_timeout=150, bulk_rows=1000,
                            bulk_every=10, races=True, join="sa")
    j = s["join"]
    assert j["rows"] > 100 and j["joined_at_s"] is not None, j
    assert_converged(s)


def test_random_writes_with_a_kafka_node_killed_converge():
    """A three-broker cluster of its own: the leader of a partition us
    writes is killed with -9 mid-load and restarted; with a replicator
    killed too, nothing is lost or doubled in effect."""
    s = converge.run_random(duration=20, modes=MODES, workers=2, kills=1,
                            pause_ms=5, drain_timeout=150, broker_kills=1)
    assert s["kills"] == 1 and s["broker_kills"] == 1, s
    assert_converged(s)


def test_causal_write_on_a_lagging_clock():
    out = converge.run_causal(MODES, {"eu": -30.0})
    for line in converge.causal_summary(out):
        print(line)
    assert converge.causal_verdict(out) == []


@pytest.mark.skipif(not LONG, reason="long run: set XR_CONVERGE_LONG=1")
def test_long_random_run():
    secs = float(os.environ.get("XR_CONVERGE_LONG_SECONDS", "600"))
    s = converge.run_random(duration=secs, modes=MODES, workers=2,
                            kills=max(1, int(secs // 60)), broker_restart=True,
                            drain_timeout=600, bulk_rows=10000, bulk_every=60,
                            races=True, skews={"eu": -2.0}, join="sa")
    assert s["races_forced"] > 0 and s["join"]["rows"] > 0
    assert_converged(s)


# ----------------------------------------------- the checker can fail

REGIONS = ["us", "eu", "apac"]
T = workload.Table("lww_a", "lww", "a")
V = workload.Table("vc_a", "vclock", "a")
P = workload.Table("pii_notes", "pii", "a")


def row(key, val, origin):
    return {"id": key, "val": val, "origin": origin, "n": 1, "note": None}


def logs_of(*writes):
    """WriteLogs from (region, ts, table, key, op, val, prev) tuples."""
    logs = {r: workload.WriteLog(r) for r in REGIONS}
    for region, ts, table, key, op, val, prev in writes:
        logs[region].commit([{
            "region": region, "worker": 0, "xid": str(ts), "ts": ts,
            "hlc": ts, "rnk": 0,
            "table": table, "key": (key,), "op": op, "prev": prev,
            "row": None if op in ("delete", "move-out") else row(key, val, region)}])
    return logs


def snap_of(table_rows, tables=(T, V, P)):
    """{table: {region: {key: row}}} from {table: {region: [rows]}}."""
    return {t.name: {r: {(x["id"],): x for x in table_rows.get(t.name, {}).get(r, [])}
                     for r in REGIONS} for t in tables}


def kinds(findings):
    return sorted(k for f in findings for k in f["kind"])


LOGS = logs_of(("us", 100, "lww_a", 1, "insert", "us.0.1", None),
               ("eu", 200, "lww_a", 1, "update", "eu.0.1", "us.0.1"),
               ("apac", 150, "lww_a", 2, "insert", "apac.0.1", None),
               ("us", 300, "lww_a", 2, "delete", None, "apac.0.1"),
               ("us", 100, "vc_a", 1, "insert", "us.0.2", None),
               ("eu", 200, "vc_a", 1, "update", "eu.0.2", "us.0.2"),
               ("us", 400, "vc_a", 3, "insert", "us.0.4", None),
               ("apac", 300, "vc_a", 3, "insert", "apac.0.4", None),
               ("us", 100, "pii_notes", 1, "insert", "us.0.3", None))
GOOD = {"lww_a": {r: [row(1, "eu.0.1", "eu")] for r in REGIONS},
        "vc_a": {r: [row(1, "eu.0.2", "eu"), row(3, "us.0.4", "us")]
                 for r in REGIONS},
        "pii_notes": {"us": [row(1, "us.0.3", "us")]}}


def test_check_accepts_the_right_end_state():
    assert checks.check([T, V, P], LOGS, snap_of(GOOD), REGIONS) == []


@pytest.mark.parametrize("change, expect", [
    # us kept the write that eu's write replaced.
    (("lww_a", "us", [row(1, "us.0.1", "us")]),
     ["divergent", "lww-not-latest@us", "overwritten@us"]),
    # A row nobody wrote.
    (("lww_a", "eu", [row(1, "eu.0.1", "eu"), row(3, "zz", "eu")]),
     ["divergent", "phantom@eu"]),
    # The same val with another column changed is not that write's row.
    (("lww_a", "apac", [dict(row(1, "eu.0.1", "eu"), n=2)]),
     ["divergent", "lww-not-latest@apac", "phantom@apac"]),
    # The newest write (eu's update) lost everywhere... in lww.
    (("lww_a", "all", [row(1, "us.0.1", "us")]),
     ["lww-not-latest@apac", "lww-not-latest@eu", "lww-not-latest@us",
      "overwritten@apac", "overwritten@eu", "overwritten@us"]),
    # ...and in vclock, where the replaced write came back.
    (("vc_a", "all", [row(1, "us.0.2", "us"), row(3, "us.0.4", "us")]),
     ["overwritten@apac", "overwritten@eu", "overwritten@us",
      "vclock-not-latest@apac", "vclock-not-latest@eu", "vclock-not-latest@us"]),
    # vclock: of two concurrent writes (neither saw the other), the one with
    # the smaller clock is kept everywhere.
    (("vc_a", "all", [row(1, "eu.0.2", "eu"), row(3, "apac.0.4", "apac")]),
     ["vclock-not-latest@apac", "vclock-not-latest@eu", "vclock-not-latest@us"]),
    # Key 2's newest write is a delete: it must stay deleted.
    (("lww_a", "all", [row(1, "eu.0.1", "eu"), row(2, "apac.0.1", "apac")]),
     ["lww-not-latest@apac", "lww-not-latest@eu", "lww-not-latest@us",
      "overwritten@apac", "overwritten@eu", "overwritten@us"]),
    # A row that was never deleted vanished.
    (("vc_a", "all", [row(3, "us.0.4", "us")]),
     ["vanished@apac", "vanished@eu", "vanished@us",
      "vclock-not-latest@apac", "vclock-not-latest@eu", "vclock-not-latest@us"]),
    # PII: another region's row, and a region without its own last write.
    (("pii_notes", "eu", [row(1, "us.0.3", "us")]),
     ["pii-leak@eu", "pii-not-own-last-write@eu"]),
    (("pii_notes", "us", []), ["pii-not-own-last-write@us"]),
])
def test_check_finds(change, expect):
    table, region, rows = change
    state = {t: dict(per) for t, per in GOOD.items()}
    for r in (REGIONS if region == "all" else [region]):
        state[table][r] = rows
    assert kinds(checks.check([T, V, P], LOGS, snap_of(state), REGIONS)) == expect


def test_losers_must_be_named_in_a_conflict_log():
    """Key 1: eu's insert beat us's concurrent one.  Key 2: eu's update,
    made without seeing us's delete, beat it.  Key 3: us's own update
    replaced its insert (no conflict).  Key 4: apac's insert after us's
    delete (which it may have seen): nothing to name."""
    logs = logs_of(("us", 100, "lww_a", 1, "insert", "us.0.1", None),
                   ("eu", 200, "lww_a", 1, "insert", "eu.0.1", None),
                   ("apac", 150, "lww_a", 2, "insert", "apac.0.1", None),
                   ("us", 300, "lww_a", 2, "delete", None, "apac.0.1"),
                   ("eu", 400, "lww_a", 2, "update", "eu.0.2", "apac.0.1"),
                   ("us", 100, "lww_a", 3, "insert", "us.0.3", None),
                   ("us", 110, "lww_a", 3, "update", "us.0.4", "us.0.3"),
                   ("us", 100, "lww_a", 4, "insert", "us.0.5", None),
                   ("us", 120, "lww_a", 4, "delete", None, "us.0.5"),
                   ("apac", 130, "lww_a", 4, "insert", "apac.0.5", None))
    final = [row(1, "eu.0.1", "eu"), row(2, "eu.0.2", "eu"), row(3, "us.0.4", "us"),
             row(4, "apac.0.5", "apac")]
    snap = snap_of({"lww_a": {r: final for r in REGIONS}}, (T,))

    def unlogged(vals, sides):
        return {(f["key"][0], w["region"], w["op"])
                for f in checks.unlogged_losers([T], logs, snap, REGIONS, (vals, sides))
                for w in f["unlogged"]}

    assert unlogged(set(), set()) == {(1, "us", "insert"), (2, "us", "delete")}
    named = ({("lww_a", "us.0.1")}, {("lww_a", (("id", "2"),), "us", 300)})
    assert unlogged(*named) == set()
    # a delete is named by its region and version, not just its key
    assert unlogged(named[0], {("lww_a", (("id", "2"),), "us", 299)}) == \
        {(2, "us", "delete")}


U = workload.Table("lww_u", "lww", "u")


def test_unique_check_keeps_the_newest_row_of_each_email():
    def w(region, ts, key, email, val, op="insert"):
        return {"region": region, "worker": 0, "xid": str(ts), "ts": ts,
                "table": "lww_u", "key": (key,), "op": op, "prev": None,
                "row": None if op == "delete" else
                {"id": key, "email": email, "val": val, "origin": region}}
    logs = {r: workload.WriteLog(r) for r in REGIONS}
    # 1 and 2 take e@x (2 is newer); 3 takes f@x, then is deleted; 4 takes
    # f@x after that delete, older than 3's insert: it is free again.
    for rec in (w("us", 100, 1, "e@x", "us.1"), w("eu", 200, 2, "e@x", "eu.1"),
                w("apac", 300, 3, "f@x", "apac.1"), w("apac", 500, 3, None, None, "delete"),
                w("us", 250, 4, "f@x", "us.2")):
        logs[rec["region"]].commit([rec])
    want = {(2,): {"id": 2, "email": "e@x", "val": "eu.1", "origin": "eu"},
            (4,): {"id": 4, "email": "f@x", "val": "us.2", "origin": "us"}}
    good = {"lww_u": {r: {k: v for k, v in want.items()} for r in REGIONS}}
    assert checks.check([U], logs, good, REGIONS) == []
    bad = {"lww_u": dict(good["lww_u"])}
    bad["lww_u"]["us"] = {(1,): {"id": 1, "email": "e@x", "val": "us.1",
                                 "origin": "us"}, (4,): want[(4,)]}
    assert kinds(checks.check([U], logs, bad, REGIONS)) == [
        "divergent", "divergent", "unique-not-expected@us",
        "unique-not-expected@us"]
