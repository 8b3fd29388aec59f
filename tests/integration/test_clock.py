"""The hybrid clock of lww tables (clock: hybrid): a local write gets a
version greater than the one it overwrote, and every region must end with
the same version for it, whatever else its transaction did.

Each test gives row 1, in both regions, the version a write of a region
whose clock runs ahead would have left there (a fraction of a second in the
future), then writes it in us so that the clock trigger moves the time, in
transactions that do more than one write: the version us keeps must be the
one eu applied.  Different versions for one row are a divergence in
waiting: a later write with a version between them wins in one region and
loses in the other.
"""
import time

import psycopg
import pytest

import xrtest

SCHEMA = "CREATE TABLE acct (id int PRIMARY KEY, v text);"
TABLES = [("public.acct", False)]
VT = 'xregion."public.acct"'


@pytest.fixture
def d(deployments):
    return deployments(TABLES, SCHEMA, regions=("us", "eu"))


def ahead(d, key, seconds):
    """Leaves key, in every region, as the apply of a write of eu's, made on
    a clock `seconds` ahead, would have: a row whose versions entry (naming
    the row's writer) holds that time.  Returns the version time."""
    d["us"].sql("INSERT INTO acct VALUES (%s, 'ahead')", (key,))
    d.converge("acct")
    fut = int((time.time() + seconds) * 1e6)
    for n in d.nodes.values():
        n.sql(f"INSERT INTO {VT} (id, ts, region, xid, deleted) "
              "SELECT id, %s, 'eu', xregion.xid8_of(t.xmin), false "
              "FROM acct t WHERE id = %s "
              "ON CONFLICT (id) DO UPDATE SET ts = EXCLUDED.ts, "
              "region = EXCLUDED.region, xid = EXCLUDED.xid, "
              "deleted = false, clsn = NULL, lsn = NULL", (fut, key))
    return fut


def version(n, key):
    """(ts, region) of key's version in n: its row's, or its tombstone's."""
    got = n.sql("SELECT (x).ts, (x).region FROM (SELECT xregion.version_of("
                f"t.xmin, v.ts, v.region, v.clsn, v.lsn, v.xid) x FROM acct t "
                f"LEFT JOIN {VT} v USING (id) WHERE t.id = %s) s", (key,))
    if got:
        return got[0]
    got = n.sql("SELECT (x).ts, (x).region FROM (SELECT xregion.tomb_version("
                f"v.ts, v.region, v.xid, v.clsn, v.lsn) x FROM {VT} v "
                "WHERE v.id = %s AND v.deleted) s", (key,))
    return got[0] if got else None


def until_past(us_time):
    """Sleeps until the wall clock is past us_time (µs), plus a margin."""
    time.sleep(max(0.0, us_time / 1e6 - time.time()) + 0.1)


def in_us(d, *steps):
    """Runs steps in one transaction in us: SQL strings, "sleep:<µs>" to
    wait until the clock is past that time, "savepoint"/"release"."""
    us = d["us"]
    with psycopg.connect(xrtest.pg_dsn("us", us.db, us.port)) as c:
        for s in steps:
            if isinstance(s, tuple):
                until_past(s[1])
            elif s == "savepoint":
                c.execute("SAVEPOINT s")
            elif s == "release":
                c.execute("RELEASE SAVEPOINT s")
            else:
                c.execute(s)


def all_hold(d, rows):
    """Waits until every region's acct is rows (ordered by id)."""
    deadline = time.time() + 60
    while not all(n.sql("SELECT id, v FROM acct ORDER BY id") == rows
                  for n in d.nodes.values()):
        assert time.time() < deadline, {
            r: n.sql("SELECT id, v FROM acct ORDER BY id") for r, n in d.nodes.items()}
        time.sleep(0.2)


def settled(d, want):
    """Waits until both regions hold row 1 as want (None: no row), then
    returns each region's version of key 1."""
    rows = [] if want is None else [(1, want)]
    deadline = time.time() + 60
    while time.time() < deadline:
        if all(n.sql("SELECT id, v FROM acct WHERE id = 1") == rows
               for n in d.nodes.values()):
            return {r: version(n, 1) for r, n in d.nodes.items()}
        time.sleep(0.2)
    raise AssertionError({r: n.sql("SELECT * FROM acct") for r, n in d.nodes.items()})


@pytest.mark.parametrize("before, first, then, want", [
    # The first update lands while the row's version is still in the
    # future: the trigger gives it that version + 1 µs.  The second, once
    # the clock has passed it, must not leave us with the first one's
    # version while eu takes the commit time.
    (None, "UPDATE acct SET v = 'a' WHERE id = 1",
     "UPDATE acct SET v = 'b' WHERE id = 1", "b"),
    (None, "DELETE FROM acct WHERE id = 1",
     "INSERT INTO acct VALUES (1, 'again')", "again"),
    ("INSERT INTO acct VALUES (2, 'two')", "DELETE FROM acct WHERE id = 1",
     "UPDATE acct SET id = 1, v = 'moved' WHERE id = 2", "moved"),
], ids=["update-update", "delete-reinsert", "delete-key-change"])
def test_second_write_of_a_key_after_the_clock_moved(d, before, first, then, want):
    fut = ahead(d, 1, 0.5)
    if before:
        d["us"].sql(before)
    in_us(d, first, ("sleep", fut), then)
    v = settled(d, want)
    assert v["us"] == v["eu"] and v["us"][0] > fut, (fut, v)


def test_write_in_a_savepoint_while_the_clock_moves(d):
    """A row written in a subtransaction has that subtransaction's xid as
    its xmin, which the producer's stamps do not know: the entry the
    trigger writes must still describe it."""
    fut = ahead(d, 1, 1)
    in_us(d, "savepoint", "UPDATE acct SET v = 'sub' WHERE id = 1", "release")
    v = settled(d, "sub")
    assert v["us"] == v["eu"] and v["us"][0] == fut + 1, (fut, v)


def test_second_write_in_a_savepoint_after_the_clock_moved(d):
    """The same subtransaction writes the row again once the clock has
    passed the first write's version: that write still gets a version of
    its own (the transaction moved a time), which both regions keep."""
    fut = ahead(d, 1, 0.5)
    in_us(d, "savepoint", "UPDATE acct SET v = 'a' WHERE id = 1", ("sleep", fut),
          "UPDATE acct SET v = 'b' WHERE id = 1", "release")
    v = settled(d, "b")
    assert v["us"] == v["eu"] and v["us"][0] > fut + 1, (fut, v)


@pytest.mark.parametrize("first, then, want", [
    ("UPDATE acct SET v = 'x' WHERE id = 2",
     "UPDATE acct SET v = 'y' WHERE id = 2", "y"),
    ("DELETE FROM acct WHERE id = 2",
     "INSERT INTO acct VALUES (2, 'back')", "back"),
], ids=["update-update", "delete-reinsert"])
def test_a_key_written_before_the_clock_moved_keeps_its_commit_time(
        d, first, then, want):
    """Row 2 is written at the commit time, then row 1 moves the
    transaction's clock, then row 2 is written again: that write must keep
    the commit time too (a time of its own, earlier than the commit time
    its first write carries, would lose to that write elsewhere)."""
    d["us"].sql("INSERT INTO acct VALUES (2, 'two')")
    fut = ahead(d, 1, 5)
    in_us(d, first, "UPDATE acct SET v = 'a' WHERE id = 1", then)
    all_hold(d, [(1, "a"), (2, want)])
    v1 = {r: version(n, 1) for r, n in d.nodes.items()}
    v2 = {r: version(n, 2) for r, n in d.nodes.items()}
    assert v1["us"] == v1["eu"] and v1["us"][0] == fut + 1, (fut, v1)
    assert v2["us"] == v2["eu"] and v2["us"][0] < fut, (fut, v2)


def test_later_transaction_after_the_clock_moved_takes_its_commit_time(d):
    """Once the clock is past, a new transaction's write needs no entry:
    both regions take its commit time."""
    fut = ahead(d, 1, 0.3)
    in_us(d, "UPDATE acct SET v = 'a' WHERE id = 1")
    until_past(fut)
    in_us(d, "UPDATE acct SET v = 'b' WHERE id = 1")
    v = settled(d, "b")
    assert v["us"] == v["eu"] and v["us"][0] > fut + 1, (fut, v)


def test_insert_that_does_nothing_moves_no_time(d):
    """An insert of a key that is there (ON CONFLICT DO NOTHING) is no
    write, even when a time would be moved for it: here a truncation of
    eu's on a clock 5 s ahead, which the first insert of row 1 is moved
    past.  The second insert must leave that version as it is in us; an
    entry of its own would name a transaction that wrote no row."""
    fut = int((time.time() + 5) * 1e6)
    for n in d.nodes.values():
        n.sql("INSERT INTO xregion.truncations (table_schema, table_name, ts, "
              "region, xid, clsn, lsn) VALUES ('public', 'acct', %s, 'eu', "
              "NULL, 0, 0)", (fut,))
    in_us(d, "INSERT INTO acct VALUES (1, 'a')")
    # the producer records the row's version after the fact (stamp.c):
    # once it has, nothing would write over what the second insert did
    deadline = time.time() + 30
    while not d["us"].sql(f"SELECT v.xmin <> t.xmin FROM {VT} v JOIN acct t "
                          "USING (id) WHERE id = 1")[0][0]:
        assert time.time() < deadline, "row 1's version was never recorded"
        time.sleep(0.1)
    in_us(d, "INSERT INTO acct VALUES (1, 'b') ON CONFLICT DO NOTHING",
          "INSERT INTO acct VALUES (2, 'two')")
    all_hold(d, [(1, "a"), (2, "two")])
    v = {r: version(n, 1) for r, n in d.nodes.items()}
    assert v["us"] == v["eu"] == (fut + 1, "us"), (fut, v)
