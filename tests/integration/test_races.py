"""A local write committing while an apply waits for it: forced interleavings.

Each test holds a local transaction open on the rows a remote change will
touch, waits until the consumer's apply is really blocked on that
transaction (pg_blocking_pids names it), and only then commits it.  The
local write is always the newer one, so it must stand in every region.
"""
import time

import psycopg
import pytest

import xrtest

SCHEMA = "CREATE TABLE orders (id int PRIMARY KEY, region text, qty int, note text);"
TABLES = [("public.orders", False)]


@pytest.fixture
def deploy(deployments):
    return lambda **kw: deployments(TABLES, SCHEMA, **kw)


def wait_blocked_by(node, holder_pid, timeout=60):
    """Waits until some backend of node's database waits for holder_pid (the
    consumer's apply, the only other writer there)."""
    end = time.time() + timeout
    while time.time() < end:
        n = node.sql("SELECT count(*) FROM pg_stat_activity "
                     "WHERE datname = current_database() "
                     "AND %s = ANY (pg_blocking_pids(pid))", (holder_pid,))[0][0]
        if n:
            return
        time.sleep(0.05)
    raise AssertionError(f"no apply in {node.region} waited for the local "
                         f"transaction (pid {holder_pid}) within {timeout} s")


def held(node):
    """A transaction on node's database, not autocommit, and its pid."""
    c = psycopg.connect(xrtest.pg_dsn(node.region, node.db))
    return c, c.execute("SELECT pg_backend_pid()").fetchone()[0]


def all_regions(d, sql):
    return {r: d[r].sql(sql) for r in d.nodes}


@pytest.mark.parametrize("local", ["delete", "key change"])
def test_local_write_committing_while_an_older_update_waits(deploy, local):
    """us updates row 10 while eu's transaction deleting it (or moving it to
    key 11) is open; eu's apply of the update waits for eu's row lock; eu
    commits: its write is the newer one, in every region."""
    d = deploy()
    us, eu = d["us"], d["eu"]
    us.sql("INSERT INTO orders VALUES (10, 'us', 1, 'x')")
    d.converge("orders", expect_rows=1)
    tx, pid = held(eu)
    try:
        if local == "delete":
            tx.execute("DELETE FROM orders WHERE id = 10")
        else:
            tx.execute("UPDATE orders SET id = 11, note = 'moved' WHERE id = 10")
        us.sql("UPDATE orders SET note = 'us' WHERE id = 10")    # older
        wait_blocked_by(eu, pid)
        tx.commit()                                               # newer
    finally:
        tx.close()
    want = [] if local == "delete" else [(11, "moved")]
    d.converge("orders", expect_rows=len(want))
    assert all_regions(d, "SELECT id, note FROM orders ORDER BY id") == \
        {r: want for r in d.nodes}


def test_local_delete_committing_while_an_older_fast_insert_waits(deploy):
    """The fast insert path (one source transaction of many new rows): apac
    inserts rows 1-12, which eu applies by the fast path (no versions
    entries); eu deletes them in a transaction it holds open; us, which has
    not seen apac's rows, inserts the same keys: eu's fast insert of them
    waits for eu's delete.  Once the delete commits, the rows must stay
    deleted in eu, as everywhere else."""
    d = deploy()
    us, eu, apac = d["us"], d["eu"], d["apac"]
    us.stop()
    apac.sql("INSERT INTO orders SELECT g, 'apac', 1, 'a' FROM generate_series(1, 12) g")
    for r in ("eu",):
        end = time.time() + 60
        while d[r].sql("SELECT count(*) FROM orders")[0][0] < 12:
            assert time.time() < end, f"{r} did not get apac's rows"
            time.sleep(0.2)
    assert eu.sql('SELECT count(*) FROM xregion."public.orders"') == [(0,)], \
        "eu did not apply apac's rows by the fast path"
    tx, pid = held(eu)
    try:
        tx.execute("DELETE FROM orders")
        us.sql("INSERT INTO orders SELECT g, 'us', 2, 'u' FROM generate_series(1, 12) g")
        us.start()
        wait_blocked_by(eu, pid)
        tx.commit()
    finally:
        tx.close()
    d.converge("orders", expect_rows=0, timeout=120)
    assert all_regions(d, "SELECT count(*) FROM orders") == \
        {r: [(0,)] for r in d.nodes}


def test_local_insert_committing_while_a_fast_insert_waits(deploy):
    """The fast insert meets a key inserted here meanwhile: eu inserts rows
    1-12 in a transaction it holds open; us inserts the same keys in one
    transaction, which eu would apply by the fast path (no row, no versions
    entry in its snapshot): the insert waits for eu's transaction.  Once
    that commits, the fast insert fails on the key and its rows go to the
    general path, where eu's newer rows win: every region ends with them,
    and eu logged the lost inserts as conflicts."""
    d = deploy()
    us, eu = d["us"], d["eu"]
    tx, pid = held(eu)
    try:
        tx.execute("INSERT INTO orders SELECT g, 'eu', 3, 'e' "
                   "FROM generate_series(1, 12) g")
        us.sql("INSERT INTO orders SELECT g, 'us', 2, 'u' "
               "FROM generate_series(1, 12) g")                  # older
        wait_blocked_by(eu, pid)
        tx.commit()                                               # newer
    finally:
        tx.close()
    d.converge("orders", expect_rows=12, timeout=120)
    want = [(g, "eu", 3, "e") for g in range(1, 13)]
    assert all_regions(d, "SELECT id, region, qty, note FROM orders "
                          "ORDER BY id") == {r: want for r in d.nodes}
    lost = eu.sql("SELECT kind, resolution, count(*) FROM xregion.conflicts "
                  "WHERE remote_region = 'us' GROUP BY 1, 2")
    assert lost == [("insert_exists", "local_kept", 12)], lost
