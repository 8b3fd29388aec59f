"""Unique keys other than the primary key: the row with the greater version
keeps the value in every region, the other is hidden (xregion.hidden) and
logged (unique_conflict), and comes back once nothing newer holds its value.

The regions' replicators are stopped while the conflicting writes are made
one after the other (so each is made without seeing the others, and their
commit times are in that order), then started together.
"""
import time

import pytest

from xrdeploy import Deployment

SCHEMA = """
CREATE TABLE people (id bigint PRIMARY KEY, email text UNIQUE, who text);
CREATE TABLE contacts (id bigint PRIMARY KEY, email text UNIQUE,
                       phone text UNIQUE, who text);
CREATE TABLE tagged (id bigint PRIMARY KEY, email text, who text,
                     UNIQUE (email) INCLUDE (who));
CREATE TABLE vpeople (id bigint PRIMARY KEY, email text UNIQUE, who text);
"""
TABLES = [("public.people", False), ("public.contacts", False),
          ("public.tagged", False),
          ("public.vpeople", False, {"conflict": "vclock"})]
# people in both conflict modes: vclock decides a unique value by the rows'
# hybrid clocks, as lww by their versions
MODES = pytest.mark.parametrize("people", ["people", "vpeople"])


@pytest.fixture
def dep():
    d = Deployment(TABLES, SCHEMA)
    d.start()
    yield d
    d.close()


def offline(d, writes):
    """Runs writes ((region, sql), in order) with every replicator stopped,
    then starts them all."""
    for n in d.nodes.values():
        n.stop()
    for region, sql in writes:
        d[region].sql(sql)
        time.sleep(0.01)          # distinct commit times, in this order
    for n in d.nodes.values():
        n.start()


def rows(d, table, cols="id, email, who"):
    return {r: d[r].sql(f"SELECT {cols} FROM {table} ORDER BY id") for r in d.nodes}


def wait_rows(d, table, want, cols="id, email, who", timeout=90):
    end = time.time() + timeout
    while True:
        got = rows(d, table, cols)
        if all(v == want for v in got.values()):
            return
        if time.time() > end:
            raise AssertionError(f"{table}: want {want} everywhere, got {got}\n" + "\n".join(f"--- {r}\n" + n.read_log()[-2500:] for r, n in d.nodes.items()))
        time.sleep(0.5)


def unique_conflicts(n, table):
    return n.sql("SELECT key->>'id', resolution, local_row->>'id', "
                 "remote_row->>'id' FROM xregion.conflicts "
                 "WHERE kind = 'unique_conflict' AND table_name = %s "
                 "ORDER BY id", (table,))


@MODES
def test_two_inserts_of_one_value_keep_the_newer_everywhere(dep, people):
    d = dep
    offline(d, [("us", f"INSERT INTO {people} VALUES (1, 'a@x', 'us')"),
                ("eu", f"INSERT INTO {people} VALUES (2, 'a@x', 'eu')")])
    wait_rows(d, people, [(2, "a@x", "eu")])
    for r, n in d.nodes.items():
        hidden = n.sql("SELECT key->>'id', image->>'who' FROM xregion.hidden")
        assert hidden == [("1", "us")], (r, hidden)
        conf = unique_conflicts(n, people)
        assert len(conf) == 1, (r, conf)
    # us lost its own row to eu's; eu kept its row against us's.
    assert unique_conflicts(d["us"], people) == [("1", "remote_applied", "1", "2")]
    assert unique_conflicts(d["eu"], people) == [("1", "local_kept", "2", "1")]
    for n in d.nodes.values():
        assert n.sql("SELECT count(*) FROM xregion.conflicts WHERE kind <> "
                     "'unique_conflict'") == [(0,)]

    # The winner goes: the loser comes back, everywhere.
    d["eu"].sql(f"DELETE FROM {people} WHERE id = 2")
    wait_rows(d, people, [(1, "a@x", "us")], timeout=60)
    for r, n in d.nodes.items():
        assert n.sql("SELECT count(*) FROM xregion.hidden") == [(0,)], r
        assert n.sql("SELECT count(*) FROM xregion.conflicts "
                     "WHERE kind = 'unique_restored'") == [(1,)], r
    # and it is an ordinary row again: a later update replicates
    d["apac"].sql(f"UPDATE {people} SET who = 'apac' WHERE id = 1")
    wait_rows(d, people, [(1, "a@x", "apac")])


@MODES
def test_updates_to_one_value_keep_the_newer_everywhere(dep, people):
    d = dep
    d["us"].sql(f"INSERT INTO {people} VALUES (1, 'a@x', 'us'), (2, 'b@x', 'us')")
    wait_rows(d, people, [(1, "a@x", "us"), (2, "b@x", "us")])
    offline(d, [("us", f"UPDATE {people} SET email = 'c@x', who = 'us2' WHERE id = 1"),
                ("eu", f"UPDATE {people} SET email = 'c@x', who = 'eu2' WHERE id = 2")])
    wait_rows(d, people, [(2, "c@x", "eu2")])
    for r, n in d.nodes.items():
        assert n.sql("SELECT key->>'id', image->>'email', image->>'who' "
                     "FROM xregion.hidden") == [("1", "c@x", "us2")], r


@MODES
def test_a_hidden_write_still_names_the_delete_it_beat(dep, people):
    """eu deletes row 1; us, not having seen that, then gives row 1 the
    email b@x; eu then inserts row 2 with b@x.  In eu, us's update is newer
    than eu's delete but loses b@x to row 2 and is hidden: its key's delete
    lost all the same, and eu's conflict log names it (update_deleted,
    remote_applied, eu's tombstone as the local side) next to the
    unique_conflict."""
    d = dep
    d["us"].sql(f"INSERT INTO {people} VALUES (1, 'a@x', 'us')")
    wait_rows(d, people, [(1, "a@x", "us")])
    offline(d, [("eu", f"DELETE FROM {people} WHERE id = 1"),
                ("us", f"UPDATE {people} SET email = 'b@x', who = 'us2' WHERE id = 1"),
                ("eu", f"INSERT INTO {people} VALUES (2, 'b@x', 'eu')")])
    wait_rows(d, people, [(2, "b@x", "eu")])
    end = time.time() + 60
    while time.time() < end and not all(
            n.sql("SELECT key->>'id' FROM xregion.hidden") == [("1",)]
            for n in d.nodes.values()):
        time.sleep(0.3)
    deleted_at = d["eu"].sql(
        f'SELECT xregion.ts_of(ts) FROM xregion."public.{people}" '
        "WHERE id = 1 AND deleted AND region = 'eu'")
    logged = d["eu"].sql(
        "SELECT kind, resolution, local_region, local_ts, remote_region "
        "FROM xregion.conflicts WHERE table_name = %s AND key->>'id' = '1' "
        "ORDER BY id", (people,))
    assert ("update_deleted", "remote_applied", "eu", "us") in \
        [(k, r, lr, rr) for k, r, lr, _, rr in logged], logged
    assert ("unique_conflict", "local_kept") in [(k, r) for k, r, *_ in logged]
    # the tombstone is the hidden write's now: the delete's own time is
    # the one us logs for it, and eu's update_deleted names that time too
    times = {lt for k, _, _, lt, _ in logged if k == "update_deleted"}
    us_saw = {t for (t,) in d["us"].sql(
        "SELECT remote_ts FROM xregion.conflicts WHERE table_name = %s "
        "AND key->>'id' = '1' AND remote_region = 'eu' AND remote_row IS NULL",
        (people,))}
    assert times and (not us_saw or us_saw == times), (times, us_saw, deleted_at)


def test_several_unique_keys_at_once(dep):
    """1 (a, p1) from us, then 2 (b, p1) from eu and 3 (a, p2) from apac:
    3 is the newest and keeps a; 2 keeps p1 (3 does not hold it); 1 holds
    both values, is older than both, and is hidden, in every region."""
    d = dep
    offline(d, [("us", "INSERT INTO contacts VALUES (1, 'a', 'p1', 'us')"),
                ("eu", "INSERT INTO contacts VALUES (2, 'b', 'p1', 'eu')"),
                ("apac", "INSERT INTO contacts VALUES (3, 'a', 'p2', 'apac')")])
    wait_rows(d, "contacts", [(2, "b", "p1"), (3, "a", "p2")], cols="id, email, phone")
    for r, n in d.nodes.items():
        assert n.sql("SELECT key->>'id' FROM xregion.hidden") == [("1",)], r


def test_a_key_change_that_loses_its_value_still_deletes_its_old_key(dep):
    d = dep
    d["us"].sql("INSERT INTO people VALUES (1, 'old@x', 'us')")
    wait_rows(d, "people", [(1, "old@x", "us")])
    offline(d, [("us", "UPDATE people SET id = 2, email = 'a@x', who = 'us2' "
                       "WHERE id = 1"),
                ("eu", "INSERT INTO people VALUES (5, 'a@x', 'eu')")])
    wait_rows(d, "people", [(5, "a@x", "eu")])
    for r, n in d.nodes.items():
        assert n.sql("SELECT key->>'id', image->>'who' FROM xregion.hidden") \
            == [("2", "us2")], r


def test_a_unique_index_with_included_columns(dep):
    d = dep
    offline(d, [("us", "INSERT INTO tagged VALUES (1, 'a@x', 'us')"),
                ("eu", "INSERT INTO tagged VALUES (2, 'a@x', 'eu')")])
    wait_rows(d, "tagged", [(2, "a@x", "eu")])


def test_a_newer_truncate_removes_the_hidden_rows_too(dep):
    d = dep
    offline(d, [("us", "INSERT INTO people VALUES (1, 'a@x', 'us')"),
                ("eu", "INSERT INTO people VALUES (2, 'a@x', 'eu')")])
    wait_rows(d, "people", [(2, "a@x", "eu")])
    d["apac"].sql("TRUNCATE people")
    wait_rows(d, "people", [])
    time.sleep(12)             # two unhide rounds: row 1 must not come back
    wait_rows(d, "people", [], timeout=1)
    for r, n in d.nodes.items():
        assert n.sql("SELECT count(*) FROM xregion.hidden") == [(0,)], r
