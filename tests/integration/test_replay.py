"""xregion replay: a range of history applied again from Kafka, through the
conflict rules, next to the running consumer and without moving its
offsets; and a region restored from an older pg_dump (setup --restored, then
a replay) ends identical to the others.
"""
import datetime
import os
import subprocess
import time

import pytest

import xrtest
from xrdeploy import Deployment

SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, n int, note text);
CREATE TABLE vitems (id bigint PRIMARY KEY, n int);
CREATE TABLE secret (id bigint PRIMARY KEY, ssn text);
"""
TABLES = [("public.items", False),
          ("public.vitems", False, {"conflict": "vclock"}),
          ("public.secret", True)]
PG_BIN = os.environ.get("XR_PG_BIN", "/usr/lib/postgresql/15/bin")


@pytest.fixture
def duo():
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"))
    d.start()
    yield d
    d.close()


def converge(d, table, timeout=120):
    end = time.time() + timeout
    while True:
        sums = {r: d[r].checksum(table) for r in ("us", "eu")}
        if len(set(sums.values())) == 1:
            return next(iter(sums.values()))
        assert time.time() < end, f"{table} did not converge: {sums}"
        time.sleep(0.3)


def history(d):
    d["us"].sql("INSERT INTO items SELECT g, g, 'us' FROM generate_series(1, 300) g")
    d["us"].sql("UPDATE items SET n = -n WHERE id <= 50")
    d["us"].sql("DELETE FROM items WHERE id BETWEEN 51 AND 60")
    d["eu"].sql("INSERT INTO items SELECT g, g, 'eu' FROM generate_series(1001, 1100) g")
    d["us"].sql("INSERT INTO vitems SELECT g, 0 FROM generate_series(1, 50) g")
    converge(d, "items")
    d["eu"].sql("UPDATE items SET note = 'eu wrote' WHERE id BETWEEN 100 AND 120")
    d["eu"].sql("UPDATE vitems SET n = n + 1 WHERE id <= 10")
    converge(d, "items")
    converge(d, "vitems")


def rows_of(out):
    """The per-table lines of a replay's report: {table: [counts]}."""
    got = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 7 and parts[1].isdigit():
            got[parts[0]] = [int(x) for x in parts[1:]]
    return got


def test_replay_of_converged_history_changes_nothing(duo):
    d = duo
    history(d)
    before = {t: converge(d, t) for t in ("items", "vitems")}
    offsets = d["eu"].sql("SELECT * FROM xregion.offsets ORDER BY 1, 2")

    r = d["eu"].xregion("replay", "--from", "1h", "--dry-run")
    assert "dry run" in r.stdout, r.stdout
    dry = rows_of(r.stdout)
    assert dry["public.items"][0] == 300 + 50 + 10, r.stdout
    assert "public.secret" not in dry

    r = d["eu"].xregion("replay", "--from", "1h")
    assert "replay done" in r.stdout, r.stdout + r.stderr
    done = rows_of(r.stdout)
    assert done["public.items"][0] == dry["public.items"][0]
    # nothing newer than what eu holds: every row as it was
    assert {t: converge(d, t) for t in ("items", "vitems")} == before
    assert d["eu"].sql("SELECT * FROM xregion.offsets ORDER BY 1, 2") == offsets
    # ran next to eu's consumer, which goes on applying
    d["us"].sql("UPDATE items SET note = 'later' WHERE id = 1")
    converge(d, "items")
    assert d["eu"].sql("SELECT note FROM items WHERE id = 1") == [("later",)]

    r = d["eu"].xregion("replay", "--from", "2099-01-01")
    assert r.returncode == 0 and "nothing to do" in r.stdout, r.stdout
    r = d["eu"].xregion("replay", "--from", "1h", "--source-regions", "mars",
                        check=False)
    assert r.returncode == 2 and "not in regions" in r.stderr
    r = d["eu"].xregion("replay", check=False)
    assert r.returncode == 2 and "--from is required" in r.stderr
    r = d["eu"].xregion("replay", "--from", "yesterday-ish", check=False)
    assert r.returncode == 2 and "--from" in r.stderr


def test_region_restored_from_older_dump_converges(duo, tmp_path):
    d = duo
    history(d)
    eu = d["eu"]
    time.sleep(1)
    dumped_at = datetime.datetime.now(datetime.timezone.utc)
    dump = str(tmp_path / "eu.dump")
    subprocess.run([f"{PG_BIN}/pg_dump", "-Fc", "-f", dump,
                    xrtest.pg_dsn("eu", eu.db)], check=True)
    time.sleep(1)
    # both regions write on; eu's later writes exist only in Kafka and in us
    d["us"].sql("UPDATE items SET note = 'after dump' WHERE id <= 30")
    d["us"].sql("DELETE FROM items WHERE id BETWEEN 61 AND 70")
    d["us"].sql("INSERT INTO items SELECT g, g, 'us2' FROM generate_series(301, 350) g")
    eu.sql("UPDATE items SET note = 'eu after dump' WHERE id BETWEEN 1001 AND 1040")
    eu.sql("DELETE FROM items WHERE id BETWEEN 1041 AND 1045")
    eu.sql("INSERT INTO items SELECT g, g, 'eu2' FROM generate_series(1101, 1150) g")
    eu.sql("UPDATE items SET n = 0 WHERE id BETWEEN 200 AND 210")
    eu.sql("UPDATE vitems SET n = n + 10 WHERE id BETWEEN 20 AND 30")
    want = {t: converge(d, t) for t in ("items", "vitems")}

    # eu's database is lost and restored from the older dump
    eu.stop()
    xrtest.drop_region_objects("eu", eu.slot, eu.db)
    with xrtest.connect("eu") as c:
        c.execute(f'CREATE DATABASE "{eu.db}"')
    subprocess.run([f"{PG_BIN}/pg_restore", "-d", xrtest.pg_dsn("eu", eu.db), dump],
                   check=True)
    assert eu.checksum("items") != want["items"]
    r = eu.xregion("setup", "--restored")
    assert "re-attached" in r.stdout + r.stderr, r.stdout + r.stderr
    eu.start()
    eu.wait_log("streaming slot")
    since = (dumped_at - datetime.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = eu.xregion("replay", "--from", since, "--source-regions", "us,eu")
    assert "replay done" in r.stdout, r.stdout + r.stderr
    assert {t: converge(d, t) for t in ("items", "vitems")} == want
    assert d["us"].checksum("items") == want["items"]


def test_without_restored_a_restore_would_keep_stale_rows(duo, tmp_path):
    """Why setup --restored exists: restored rows look like new local writes,
    newer than every write they missed."""
    d = duo
    history(d)
    eu = d["eu"]
    dump = str(tmp_path / "eu.dump")
    subprocess.run([f"{PG_BIN}/pg_dump", "-Fc", "-f", dump,
                    xrtest.pg_dsn("eu", eu.db)], check=True)
    time.sleep(1)
    d["us"].sql("UPDATE items SET note = 'after dump' WHERE id <= 30")
    converge(d, "items")
    eu.stop()
    xrtest.drop_region_objects("eu", eu.slot, eu.db)
    with xrtest.connect("eu") as c:
        c.execute(f'CREATE DATABASE "{eu.db}"')
    subprocess.run([f"{PG_BIN}/pg_restore", "-d", xrtest.pg_dsn("eu", eu.db), dump],
                   check=True)
    eu.xregion("setup")
    r = eu.xregion("replay", "--from", "beginning", "--source-regions", "us")
    assert "replay done" in r.stdout
    assert eu.sql("SELECT count(*) FROM items WHERE note = 'after dump'") == [(0,)]
