"""The transactions real applications make, replicated without losing a
write: a row written twice in one transaction, delete and re-insert, a
TOASTed value changed and then left unchanged, each in a conflict-free
deployment where us writes and eu and apac apply.

Each case runs twice: with the consumers applying as the writes arrive
(small batches, row by row), and from a backlog (eu's replicator stopped
while us writes, so that eu applies everything in one merged batch).
Both modes, lww and vclock, must end with us's rows everywhere."""
import pytest

from xrdeploy import Deployment

SCHEMA = """
CREATE TABLE t (id int PRIMARY KEY, v text, n int, big text);
CREATE TABLE tv (id int PRIMARY KEY, v text, n int, big text);
"""
TABLES = [("public.t", False), ("public.tv", False, {"conflict": "vclock"})]
def big(seed):
    """A value TOASTed out of line: 12,800 bytes of md5 text."""
    return (f"(SELECT string_agg(md5(g::text || '{seed}'), '') "
            "FROM generate_series(1, 400) g)")


@pytest.fixture(scope="module")
def dep():
    d = Deployment(TABLES, SCHEMA)
    try:
        d.start()
        yield d
    finally:
        d.close()


def run(dep, backlog, statements):
    """Runs statements (each a transaction) in us; with backlog, while
    eu's replicator is stopped, so that eu applies them in one batch."""
    if backlog:
        dep["eu"].stop()
    for s in statements:
        dep["us"].sql(s)
    if backlog:
        dep["eu"].start()
        dep["eu"].wait_log("subscribed to", count=2)


def same_everywhere(dep, table):
    want = dep["us"].sql(f"SELECT * FROM {table} ORDER BY id")
    dep.converge(table, timeout=60)
    for r in ("eu", "apac"):
        assert dep[r].sql(f"SELECT * FROM {table} ORDER BY id") == want, r
    return want


@pytest.fixture(autouse=True)
def clean(dep):
    yield
    for r in ("us",):
        dep[r].sql("DELETE FROM t; DELETE FROM tv")
    dep.converge("t", expect_rows=0, timeout=60)
    dep.converge("tv", expect_rows=0, timeout=60)


@pytest.mark.parametrize("backlog", [False, True], ids=["live", "backlog"])
@pytest.mark.parametrize("table", ["t", "tv"])
def test_insert_then_update_in_one_transaction(dep, table, backlog):
    run(dep, backlog, [
        f"BEGIN; INSERT INTO {table} VALUES (1, 'first', 1, 'b');"
        f" UPDATE {table} SET v = 'second' WHERE id = 1; COMMIT",
        # Several writes of one row, and of others, in one transaction.
        f"BEGIN; INSERT INTO {table} VALUES (2, 'a', 1, 'b');"
        f" UPDATE {table} SET v = 'b' WHERE id = 2;"
        f" INSERT INTO {table} VALUES (3, 'c', 1, 'b');"
        f" UPDATE {table} SET n = n + 1 WHERE id IN (2, 3);"
        f" UPDATE {table} SET v = v || '!' WHERE id = 2; COMMIT",
    ])
    assert same_everywhere(dep, table) == [
        (1, "second", 1, "b"), (2, "b!", 2, "b"), (3, "c", 2, "b")]
    assert dep["eu"].sql("SELECT count(*) FROM xregion.conflicts") == [(0,)]


@pytest.mark.parametrize("backlog", [False, True], ids=["live", "backlog"])
@pytest.mark.parametrize("table", ["t", "tv"])
def test_delete_and_reinsert_in_one_transaction(dep, table, backlog):
    dep["us"].sql(f"INSERT INTO {table} VALUES (1, 'old', 1, 'b'), (2, 'old', 1, 'b')")
    dep.converge(table, expect_rows=2)
    run(dep, backlog, [
        f"BEGIN; DELETE FROM {table} WHERE id = 1;"
        f" INSERT INTO {table} VALUES (1, 'reinserted', 2, 'c'); COMMIT",
        # ... and the other way round: insert, delete, insert again.
        f"BEGIN; INSERT INTO {table} VALUES (3, 'x', 1, 'b');"
        f" DELETE FROM {table} WHERE id = 3;"
        f" INSERT INTO {table} VALUES (3, 'y', 2, 'c');"
        f" DELETE FROM {table} WHERE id = 2; COMMIT",
    ])
    assert same_everywhere(dep, table) == [
        (1, "reinserted", 2, "c"), (3, "y", 2, "c")]


@pytest.mark.parametrize("backlog", [False, True], ids=["live", "backlog"])
@pytest.mark.parametrize("table", ["t", "tv"])
def test_toasted_value_changed_then_other_column_updated(dep, table, backlog):
    dep["us"].sql(f"INSERT INTO {table} VALUES (1, 'v', 0, {big('a')})")
    dep.converge(table, expect_rows=1)
    run(dep, backlog,
        [f"UPDATE {table} SET big = {big('b')} WHERE id = 1"] +
        [f"UPDATE {table} SET n = {i} WHERE id = 1" for i in range(1, 17)])
    rows = same_everywhere(dep, table)
    assert rows[0][2] == 16 and len(rows[0][3]) == 400 * 32
    # The same within one transaction: the last image lacks the value.
    run(dep, backlog, [
        f"BEGIN; UPDATE {table} SET big = {big('c')} WHERE id = 1;"
        f" UPDATE {table} SET n = 100 WHERE id = 1;"
        f" UPDATE {table} SET v = 'w' WHERE id = 1; COMMIT"])
    assert same_everywhere(dep, table)[0][1:3] == ("w", 100)


@pytest.mark.parametrize("table", ["t", "tv"])
def test_insert_with_toasted_value_then_update_in_one_transaction(dep, table):
    """The update's image lacks the value the insert before it carried: a
    region applying both in one batch must take it from the insert."""
    run(dep, True, [
        f"BEGIN; INSERT INTO {table} VALUES (1, 'v', 0, {big('d')});"
        f" UPDATE {table} SET n = 1 WHERE id = 1; COMMIT"])
    rows = same_everywhere(dep, table)
    assert rows[0][2] == 1 and len(rows[0][3]) == 400 * 32
    for r in ("eu", "apac"):
        assert dep[r].sql("SELECT count(*) FROM xregion.conflicts "
                          "WHERE resolution = 'dead_lettered'") == [(0,)]


@pytest.mark.parametrize("backlog", [False, True], ids=["live", "backlog"])
@pytest.mark.parametrize("table", ["t", "tv"])
def test_key_change_keeps_the_unchanged_toasted_value(dep, table, backlog):
    """A key change leaves the TOASTed value out of the new image: the
    other regions move the row, value and all."""
    dep["us"].sql(f"INSERT INTO {table} SELECT g, 'v', 0, {big('e')} "
                  "FROM generate_series(1, 4) g")
    dep.converge(table, expect_rows=4)
    run(dep, backlog, [
        f"UPDATE {table} SET id = 17, n = 1 WHERE id = 1",
        f"BEGIN; UPDATE {table} SET id = 18 WHERE id = 2;"
        f" UPDATE {table} SET n = 2 WHERE id = 18; COMMIT",
        f"UPDATE {table} SET id = id + 100 WHERE id IN (3, 4)",
        f"UPDATE {table} SET v = 'w' WHERE id = 103"])
    rows = same_everywhere(dep, table)
    assert [r[0] for r in rows] == [17, 18, 103, 104]
    assert all(len(r[3]) == 400 * 32 for r in rows)
    for r in ("eu", "apac"):
        assert dep[r].sql("SELECT kind, resolution FROM xregion.conflicts") == []
