"""`xregion conflicts` against real conflicts: two regions on the real stack
write the same keys while their replicators are stopped, then converge; the
command's output is checked in both regions."""
import json
import os
import subprocess
import time

import psycopg
import pytest

import xrtest
from xrdeploy import Deployment

SCHEMA = """
CREATE TABLE orders (id int PRIMARY KEY, region text, qty int, note text);
CREATE TABLE items (id int PRIMARY KEY, name text);
"""
TABLES = [("public.orders", False), ("public.items", False)]

# What the writes below make each region log: (table, key, kind, winner).
EXPECTED = {
    "eu": sorted([
        ("public.orders", {"id": "1"}, "update_origin_differs/remote_applied", "us"),
        ("public.orders", {"id": "2"}, "update_origin_differs/remote_applied", "us"),
        ("public.orders", {"id": "3"}, "update_origin_differs/remote_applied", "us"),
        ("public.orders", {"id": "100"}, "insert_exists/local_kept", "eu"),
        ("public.items", {"id": "1"}, "update_origin_differs/local_kept", "eu"),
    ], key=str),
    "us": sorted([
        ("public.orders", {"id": "1"}, "update_origin_differs/local_kept", "us"),
        ("public.orders", {"id": "2"}, "update_origin_differs/local_kept", "us"),
        ("public.orders", {"id": "3"}, "update_origin_differs/local_kept", "us"),
        ("public.orders", {"id": "100"}, "insert_exists/remote_applied", "eu"),
        ("public.items", {"id": "1"}, "update_origin_differs/remote_applied", "eu"),
    ], key=str),
}


def wait_conflicts(node, n, timeout=90):
    deadline = time.time() + timeout
    while True:
        got = node.sql("SELECT count(*) FROM xregion.conflicts")[0][0]
        if got >= n:
            return got
        if time.time() > deadline:
            raise AssertionError(f"{node.region}: {got} conflicts logged, "
                                 f"expected {n}:\n{node.read_log()[-3000:]}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def dep():
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"))
    try:
        d.start()
        d["us"].sql("INSERT INTO orders SELECT g, 'us', 0, 'seed' "
                    "FROM generate_series(1, 5) g")
        d["us"].sql("INSERT INTO items VALUES (1, 'mug'), (2, 'cup')")
        d.converge("orders", expect_rows=5)
        d.converge("items", expect_rows=2)
        # With both replicators stopped, each region writes the same keys;
        # the later write of each key wins everywhere.
        for n in d.nodes.values():
            n.stop()
        d["eu"].sql("UPDATE orders SET note = 'eu', region = 'eu' WHERE id <= 3")
        d["us"].sql("INSERT INTO orders VALUES (100, 'us', 1, 'first')")
        d["us"].sql("UPDATE orders SET note = 'us', region = 'us' WHERE id <= 3")
        d["us"].sql("UPDATE items SET name = 'us mug' WHERE id = 1")
        d["eu"].sql("UPDATE items SET name = 'eu mug' WHERE id = 1")
        d["eu"].sql("INSERT INTO orders VALUES (100, 'eu', 2, 'second')")
        for n in d.nodes.values():
            n.start()
        for n in d.nodes.values():
            n.wait_log("subscribed to", count=2)
        d.converge("orders", expect_rows=6)
        d.converge("items", expect_rows=2)
        for r in ("us", "eu"):
            wait_conflicts(d[r], len(EXPECTED[r]))
        yield d
    finally:
        d.close()


def conflicts(node, *args, check=True):
    return node.xregion("conflicts", *args, check=check)


def conflict_lines(out):
    return [l for l in out.splitlines()
            if l and not l.startswith("summary:") and not l.startswith("    ")]


def parse_line(line):
    """(table, key, kind/resolution, winner) of a text line."""
    when, table, key, kind, winner = line.split("  ")[:5]
    assert when.endswith("Z") and "T" in when, line
    assert winner.startswith("winner="), line
    return table, json.loads(key), kind, winner[len("winner="):]


@pytest.mark.parametrize("region", ["eu", "us"])
def test_text_lists_each_conflict_with_its_winner(dep, region):
    out = conflicts(dep[region]).stdout
    lines = conflict_lines(out)
    got = sorted((parse_line(l) for l in lines), key=str)
    assert got == EXPECTED[region], out
    other = "us" if region == "eu" else "eu"
    for l in lines:
        # Both versions are there: every row met was written locally.
        assert f"  local={region}@20" in l, l
        assert f"  remote={other}@20" in l, l
        assert "vclock" not in l, l
    summary = out.splitlines()[-1]
    assert summary.startswith("summary: 5 conflicts selected, 5 shown; "), out
    if region == "eu":
        assert "update_origin_differs/remote_applied=3" in summary
        assert "update_origin_differs/local_kept=1" in summary
        assert "insert_exists/local_kept=1" in summary


def test_newest_last_and_limit(dep):
    every = conflict_lines(conflicts(dep["eu"], "--limit", "0").stdout)
    assert len(every) == 5
    times = [l.split("  ")[0] for l in every]
    assert times == sorted(times), "oldest first, newest last"
    out = conflicts(dep["eu"], "--limit", "2").stdout
    lines = conflict_lines(out)
    assert lines == every[-2:], out
    assert out.splitlines()[-1].startswith("summary: 5 conflicts selected, "
                                           "2 shown;"), out


def test_table_filter(dep):
    out = conflicts(dep["eu"], "--table", "items").stdout
    tables = {parse_line(l)[0] for l in conflict_lines(out)}
    assert tables == {"public.items"}, out
    assert "summary: 1 conflict selected, 1 shown;" in out
    out = conflicts(dep["eu"], "--table", "public.orders").stdout
    assert len(conflict_lines(out)) == 4 and "public.items" not in out, out
    out = conflicts(dep["eu"], "--table", "orders", "--table", "items").stdout
    assert len(conflict_lines(out)) == 5, out
    out = conflicts(dep["eu"], "--table", "other.orders").stdout
    assert conflict_lines(out) == [], out


def test_kind_filter(dep):
    out = conflicts(dep["us"], "--kind", "insert_exists").stdout
    got = [parse_line(l) for l in conflict_lines(out)]
    assert got == [("public.orders", {"id": "100"},
                    "insert_exists/remote_applied", "eu")], out
    out = conflicts(dep["us"], "--kind", "delete_missing").stdout
    assert conflict_lines(out) == [], out
    assert out.splitlines()[-1] == "summary: 0 conflicts selected, 0 shown"


def test_since_and_until(dep):
    out = conflicts(dep["eu"], "--since", "2999-01-01T00:00:00Z").stdout
    assert conflict_lines(out) == [], out
    assert len(conflict_lines(conflicts(dep["eu"], "--since", "1h").stdout)) == 5
    assert conflict_lines(conflicts(dep["eu"], "--until", "1h").stdout) == []
    assert len(conflict_lines(conflicts(
        dep["eu"], "--since", "2020-01-01", "--until", "2999-12-31 23:59:59+02:00"
    ).stdout)) == 5
    # A bound taken from the output itself: the newest conflict's time.
    newest = conflict_lines(conflicts(dep["eu"]).stdout)[-1].split("  ")[0]
    out = conflicts(dep["eu"], "--since", newest).stdout
    assert conflict_lines(out) and all(l.startswith(newest)
                                       for l in conflict_lines(out)), out
    out = conflicts(dep["eu"], "--until", newest).stdout
    assert all(not l.startswith(newest) for l in conflict_lines(out)), out


def test_json_lines(dep):
    out = conflicts(dep["us"], "--format", "json").stdout
    objs = [json.loads(l) for l in out.splitlines()]
    assert len(objs) == 5, out
    for o in objs:
        assert set(o) == {"id", "logged_at", "table", "key", "kind",
                          "resolution", "winner", "local", "remote",
                          "event_id", "topic", "kafka_partition",
                          "kafka_offset"}, o
        assert o["remote"]["region"] == "eu" and o["remote"]["vclock"] is None
        assert o["remote"]["ts"].endswith("Z")
        assert o["local"]["region"] in ("us", "eu") and o["local"]["ts"]
        assert o["topic"].startswith(f"{dep.prefix}.eu.public.")
    got = sorted(((o["table"], o["key"], f"{o['kind']}/{o['resolution']}",
                   o["winner"]) for o in objs), key=str)
    assert got == EXPECTED["us"]
    ins = [o for o in objs if o["kind"] == "insert_exists"]
    assert ins[0]["key"] == {"id": "100"} and ins[0]["winner"] == "eu"
    # --rows adds both row images.
    out = conflicts(dep["us"], "--format", "json", "--rows",
                    "--kind", "insert_exists").stdout
    (o,) = [json.loads(l) for l in out.splitlines()]
    assert o["local_row"]["note"] == "first", o
    assert o["remote_row"]["note"] == "second", o


def test_text_rows(dep):
    out = conflicts(dep["eu"], "--rows", "--table", "items").stdout
    lines = out.splitlines()
    assert lines[1].startswith("    local_row:  {") and "eu mug" in lines[1], out
    assert lines[2].startswith("    remote_row: {") and "us mug" in lines[2], out


@pytest.mark.parametrize("args, option", [
    (["--since", "yesterday"], "--since"),
    (["--until", "2024-02-30"], "--until"),
    (["--since", "5"], "--since"),
    (["--limit", "many"], "--limit"),
    (["--format", "xml"], "--format"),
    (["--kind", "Insert-Exists"], "--kind"),
    (["--table", "a.b.c"], "--table"),
])
def test_bad_option_value_exits_2_naming_it(dep, args, option):
    r = conflicts(dep["eu"], *args, check=False)
    assert r.returncode == 2, r
    assert f"xregion conflicts: {option}:" in r.stderr, r.stderr
    assert r.stdout == ""


def test_options_belong_to_conflicts_only(dep):
    r = dep["eu"].xregion("setup", "--limit", "3", check=False)
    assert r.returncode == 2 and "--limit" in r.stderr, r


def test_help(dep):
    r = subprocess.run([xrtest.XREGION, "conflicts", "--help"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    for opt in ("--table", "--since", "--until", "--kind", "--limit",
                "--rows", "--format"):
        assert opt in r.stdout, opt


def config_with_dsn(dep, dsn, name):
    with open(dep["us"].config) as f:
        text = f.read()
    path = os.path.join(dep.tmp, name)
    with open(path, "w") as f:
        f.write(text.replace(xrtest.pg_dsn("us", dep["us"].db), dsn))
    return path


def test_database_without_schema_xregion_exits_1(dep):
    db = f"xrc_{dep.suffix}_bare"
    with xrtest.connect("us") as c:
        c.execute(f'CREATE DATABASE "{db}"')
    try:
        path = config_with_dsn(dep, xrtest.pg_dsn("us", db), "bare.yaml")
        r = subprocess.run([xrtest.XREGION, "conflicts", "-c", path],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r
        assert f'database "{db}" has no schema xregion' in r.stderr, r.stderr
        assert "xregion setup" in r.stderr, r.stderr
    finally:
        with xrtest.connect("us") as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}"')


def test_unreachable_database_exits_1(dep):
    path = config_with_dsn(dep, "host=127.0.0.1 port=1 dbname=app "
                           "user=postgres connect_timeout=5", "down.yaml")
    r = subprocess.run([xrtest.XREGION, "conflicts", "-c", path],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    assert "cannot connect to PostgreSQL" in r.stderr, r.stderr
