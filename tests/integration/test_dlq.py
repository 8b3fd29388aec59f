"""xregion dlq: dead letters listed by table and reason, shown decoded, and
redriven once their cause is fixed: applied once, resumable, a failing one
back on the dead-letter topic with its replay count, left alone at
--max-replays.
"""
import re
import time

import pytest

import xrtest
from xrdeploy import Deployment

SCHEMA = """
CREATE TABLE items (id bigint PRIMARY KEY, code text, note text);
CREATE TABLE extra (id bigint PRIMARY KEY, v text);
"""
TABLES = [("public.items", False), ("public.extra", False)]


@pytest.fixture
def duo():
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"))
    d.start()
    yield d
    d.close()


def wait_for(pred, what, timeout=60):
    end = time.time() + timeout
    while not pred():
        assert time.time() < end, what
        time.sleep(0.3)


def dlq_size(d, region):
    return xrtest.topic_size(f"{d.prefix}.{region}._dlq")


def groups(out):
    """list's lines: {(table, reason prefix): (count, pending, replays, first)}"""
    got = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+:\d+)\s+(\S+)\s+(.*)$", line)
        if m:
            got[(m.group(5), m.group(6)[:30])] = (int(m.group(1)), int(m.group(2)),
                                                 int(m.group(3)), m.group(4))
    return got


def test_dead_letters_listed_shown_and_redriven(duo):
    d = duo
    us, eu = d["us"], d["eu"]
    # eu lacks table extra, and its items.code is narrower than us's
    eu.sql("DROP TABLE extra")
    eu.sql("ALTER TABLE items ALTER COLUMN code TYPE varchar(3)")
    us.sql("INSERT INTO extra SELECT g, 'x' || g FROM generate_series(1, 5) g")
    us.sql("INSERT INTO items VALUES (1, 'abc', 'fits'), (2, 'abcdef', 'too long')")
    wait_for(lambda: dlq_size(d, "eu") >= 6, "eu dead-lettered 6 events")
    wait_for(lambda: eu.sql("SELECT count(*) FROM items") == [(1,)], "row 1 applied")

    r = eu.xregion("dlq", "list")
    assert "6 dead letter(s), 6 not redriven yet" in r.stdout, r.stdout
    g = groups(r.stdout)
    extra = [v for k, v in g.items() if k[0] == "public.extra"]
    items = [v for k, v in g.items() if k[0] == "public.items"]
    assert extra and extra[0][0] == 5 and items and items[0][0] == 1, r.stdout
    first_items = items[0][3]

    r = eu.xregion("dlq", "show", first_items)
    assert "reason:" in r.stdout and "value too long" in r.stdout, r.stdout
    assert "insert of public.items from region us" in r.stdout, r.stdout
    assert "code = abcdef" in r.stdout, r.stdout

    # before the fix: a dry run changes nothing; a redrive sends them back
    r = eu.xregion("dlq", "replay", "--dry-run")
    assert "dry run" in r.stdout, r.stdout
    assert dlq_size(d, "eu") == 6
    r = eu.xregion("dlq", "replay")
    assert "redrive done" in r.stdout, r.stdout
    assert dlq_size(d, "eu") == 12, "the 6 failed again and went back"
    r = eu.xregion("dlq", "list")
    assert "12 dead letter(s), 6 not redriven yet" in r.stdout, r.stdout
    assert max(v[2] for v in groups(r.stdout).values()) == 1

    # the causes fixed: the table created, the column widened
    eu.sql("CREATE TABLE extra (id bigint PRIMARY KEY, v text)")
    eu.sql("ALTER TABLE items ALTER COLUMN code TYPE text")
    r = eu.xregion("dlq", "replay", "--max-replays", "2")
    assert "redrive done" in r.stdout, r.stdout
    assert eu.sql("SELECT id, code FROM items ORDER BY id") == [(1, "abc"), (2, "abcdef")]
    assert eu.sql("SELECT count(*) FROM extra") == [(5,)]
    assert dlq_size(d, "eu") == 12, "nothing failed this time"
    # resumable and once: a second redrive has nothing to do
    r = eu.xregion("dlq", "replay")
    assert "nothing to do" in r.stdout, r.stdout
    r = eu.xregion("dlq", "list")
    assert "12 dead letter(s), 0 not redriven yet" in r.stdout, r.stdout
    # and the regions agree
    for t in ("items", "extra"):
        wait_for(lambda: us.checksum(t) == eu.checksum(t), f"{t} converges")


def test_max_replays_leaves_it_alone(duo):
    d = duo
    us, eu = d["us"], d["eu"]
    eu.sql("ALTER TABLE items ALTER COLUMN code TYPE varchar(3)")
    us.sql("INSERT INTO items VALUES (7, 'abcdef', 'too long')")
    wait_for(lambda: dlq_size(d, "eu") >= 1, "dead-lettered")
    eu.xregion("dlq", "replay")                      # fails: replays 1
    assert dlq_size(d, "eu") == 2
    r = eu.xregion("dlq", "replay", "--max-replays", "1")
    assert re.search(r"public\.items\s+1\s+0\s+0\s+0\s+0\s+1", r.stdout), r.stdout
    assert dlq_size(d, "eu") == 2, "given up: not sent back"
    r = eu.xregion("dlq", "show", "x:y", check=False)
    assert r.returncode == 2
    r = eu.xregion("dlq", check=False)
    assert r.returncode == 2 and "action is required" in r.stderr
    r = eu.xregion("dlq", "--help")
    assert "--max-replays" in r.stdout


def test_dead_letter_producer_replaced_after_a_fatal_error():
    """The dead-letter producer raises, at its 2nd letter, the fatal error
    a partition leader change raises in librdkafka before 2.3: a new one
    replaces it, the batch is applied again, every letter reaches the
    topic (some twice), and the consumer goes on applying."""
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"),
                   env={"eu": {"XREGION_TEST_DLQ_FATAL": "2"}})
    try:
        d.start()
        us, eu = d["us"], d["eu"]
        eu.sql("DROP TABLE extra")
        us.sql("INSERT INTO extra SELECT g, 'x' || g FROM generate_series(1, 5) g")
        us.sql("INSERT INTO items VALUES (1, 'a', 'after the letters')")
        wait_for(lambda: eu.sql("SELECT count(*) FROM items") == [(1,)],
                 "row 1 applied after the dead letters")
        log = eu.read_log()
        assert "XREGION_TEST_DLQ_FATAL" in log, log[-3000:]
        assert "replacing the dead-letter producer" in log, log[-3000:]

        def lettered():
            letters = xrtest.read_topic(f"{d.prefix}.eu._dlq", timeout=5)
            hs = [dict(m.headers()) for m in letters]
            return {(h["xr-dlq-partition"], h["xr-dlq-offset"]) for h in hs
                    if h["xr-dlq-topic"].endswith(b".extra")}
        # letters, then offsets: none stored past a letter not on Kafka
        wait_for(lambda: eu.sql(
            "SELECT sum(next_offset) FROM xregion.offsets WHERE topic LIKE "
            "'%%.extra'") == [(5,)], "extra's 5 offsets stored")
        stored = eu.sql("SELECT partition::text, generate_series(0, next_offset - 1)::text "
                        "FROM xregion.offsets WHERE topic LIKE '%%.extra'")
        assert lettered() == {(p.encode(), o.encode()) for p, o in stored}
        us.sql("INSERT INTO items VALUES (2, 'b', 'later')")
        wait_for(lambda: eu.sql("SELECT count(*) FROM items") == [(2,)],
                 "later writes applied")
        assert eu.proc.poll() is None, eu.read_log()[-3000:]
    finally:
        d.close()
