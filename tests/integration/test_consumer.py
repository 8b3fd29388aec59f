"""Consumer integration tests: three regions on the real stack, each running
`xregion run`; results are compared with queries in every region."""
import random
import signal
import subprocess
import threading
import time

import psycopg
import pytest
from confluent_kafka import Producer

import xrtest

SCHEMA = """
CREATE TABLE users (id int PRIMARY KEY, email text);
CREATE TABLE orders (id int PRIMARY KEY, region text, qty int, note text);
"""
TABLES = [("public.users", True), ("public.orders", False)]


@pytest.fixture
def deploy(deployments):
    return lambda tables=TABLES, schema=SCHEMA, **kw: deployments(tables, schema, **kw)


def test_writes_in_each_region_reach_the_other_two(deploy):
    d = deploy()
    for i, r in enumerate(("us", "eu", "apac")):
        d[r].sql("INSERT INTO orders SELECT g, %s, g, 'x' FROM "
                 "generate_series(%s::int, %s::int) g", (r, i * 100 + 1, i * 100 + 50))
    d.converge("orders", expect_rows=150)
    d["eu"].sql("UPDATE orders SET qty = qty + 1000 WHERE id <= 50")
    d["apac"].sql("DELETE FROM orders WHERE id > 100 AND id <= 110")
    d["us"].sql("UPDATE orders SET note = NULL WHERE id > 200")
    d.converge("orders", expect_rows=140)
    rows = d["us"].sql("SELECT count(*) FROM orders WHERE qty > 1000")
    assert rows == [(50,)]
    d["eu"].sql("TRUNCATE orders")
    d.converge("orders", expect_rows=0)
    # Applied changes are not published again: the us topic holds only
    # us's own writes.
    us_events = xrtest.read_topic(f"{d.prefix}.us.public.orders")
    assert len(us_events) == 50 + 50


ALLTYPES = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE alltypes (
    id int PRIMARY KEY, c_int2 int2, c_int4 int4, c_int8 int8,
    c_float4 float4, c_float8 float8, c_numeric numeric(12,3),
    c_numeric_free numeric, c_bool bool, c_text text, c_varchar varchar(20),
    c_char char(5), c_bytea bytea, c_uuid uuid, c_date date, c_time time,
    c_ts timestamp, c_tstz timestamptz, c_json json, c_jsonb jsonb,
    c_int_arr int4[], c_text_arr text[], c_mood mood, c_interval interval,
    c_big text);
"""


def test_every_type_arrives_equal(deploy):
    d = deploy(tables=[("public.alltypes", False)], schema=ALLTYPES)
    d["us"].sql("""
        INSERT INTO alltypes VALUES
        (1, -32768, 2147483647, -9223372036854775808, 1.5, 3.141592653589793,
         -12345.678, 0.00000000000000000001, true, e'h\\u00e9llo "q"\\nx', 'v',
         'ab', '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
         '2024-02-29', '13:14:15.123456', '2024-02-29 13:14:15.123456',
         '2024-02-29 13:14:15.123456+02', '{"a": [1, 2]}', '{"b": true}',
         '{1,NULL,3}', '{"a,b","c\\"d",""}', 'happy', '1 day 02:00:00', 'x'),
        (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL),
        (3, 0, 0, 0, 'NaN', '-Infinity', 0, 'NaN', false, '', '', '', '',
         '00000000-0000-0000-0000-000000000000', 'infinity', '24:00:00',
         '-infinity', 'infinity', 'null', '[]', '{}', '{{1,2},{3,4}}', 'sad',
         '-1 mons', repeat(md5('x'), 65536))
    """)
    d.converge("alltypes", expect_rows=3)
    # An update that leaves the 2 MB TOASTed value untouched.
    d["us"].sql("UPDATE alltypes SET c_int4 = 5 WHERE id = 3")
    d.converge("alltypes", expect_rows=3)
    assert d["eu"].sql("SELECT c_int4, length(c_big) FROM alltypes "
                       "WHERE id = 3") == [(5, 32 * 65536)]


def test_pii_table_is_never_applied(deploy):
    d = deploy()
    d["us"].sql("INSERT INTO users VALUES (1, 'a@example.com')")
    d["us"].sql("INSERT INTO orders VALUES (1, 'us', 1, 'x')")
    d.converge("orders", expect_rows=1)
    # A rogue producer publishes users as if it were non-PII in us.
    rogue = xrtest.Region("rogue", [{"name": "public.users", "pii": False}],
                          region="us")
    try:
        rogue.sql("CREATE TABLE users (id int PRIMARY KEY, email text)")
        with open(rogue.config) as f:
            text = f.read().replace(f"topic_prefix: {rogue.prefix}",
                                    f"topic_prefix: {d.prefix}")
        with open(rogue.config, "w") as f:
            f.write(text)
        rogue.xregion("setup")
        rogue.start()
        rogue.sql("INSERT INTO users VALUES (2, 'b@example.com')")
        dlq = xrtest.read_topic(f"{d.prefix}.eu._dlq", expect=1, timeout=60)
        reasons = [dict(m.headers())["xr-dlq-reason"].decode() for m in dlq]
        assert any("public.users is not marked pii: false" in r for r in reasons)
    finally:
        rogue.close()
    d["us"].sql("INSERT INTO orders VALUES (2, 'us', 1, 'x')")
    d.converge("orders", expect_rows=2)       # the consumer went on
    for r in ("eu", "apac"):
        assert d[r].sql("SELECT count(*) FROM users") == [(0,)]


@pytest.mark.parametrize("regions", [("us", "eu"), ("us", "eu", "apac")],
                         ids=["two-regions", "three-regions"])
def test_concurrent_conflicting_writes_converge(deploy, regions):
    d = deploy(regions=regions)
    keys = 40
    d["us"].sql("INSERT INTO orders SELECT g, 'us', 0, 'seed' "
                "FROM generate_series(1, %s::int) g", (keys,))
    d.converge("orders", expect_rows=keys)
    stop = time.time() + 8

    def writer(region, seed):
        rnd = random.Random(seed)
        n = 0
        while time.time() < stop:
            k = rnd.randint(1, keys)
            op = rnd.random()
            if op < 0.7:
                d[region].sql("UPDATE orders SET qty = qty + 1, region = %s, "
                              "note = %s WHERE id = %s", (region, f"{region}{n}", k))
            elif op < 0.85:
                d[region].sql("DELETE FROM orders WHERE id = %s", (k,))
            else:
                d[region].sql("INSERT INTO orders VALUES (%s, %s, 0, 'ins') "
                              "ON CONFLICT (id) DO UPDATE SET note = 'reins'",
                              (k, region))
            n += 1

    threads = [threading.Thread(target=writer, args=(r, i))
               for i, r in enumerate(regions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = d.converge("orders", timeout=120)
    conflicts = sum(d[r].sql("SELECT count(*) FROM xregion.conflicts")[0][0]
                    for r in regions)
    print(f"converged at {total}, {conflicts} conflicts logged")
    assert conflicts > 0, "a small key space under load must conflict"


def test_kill_9_consumer_mid_batch_then_restart(deploy):
    d = deploy()
    d["us"].sql("INSERT INTO orders SELECT g, 'us', g, repeat('n', 50) "
                "FROM generate_series(1, 20000) g")
    time.sleep(0.5)          # eu is part-way through applying
    d["eu"].stop(signal.SIGKILL)
    d["us"].sql("UPDATE orders SET qty = qty * 2 WHERE id % 3 = 0")
    d["eu"].start()
    d.converge("orders", expect_rows=20000, timeout=180)
    assert d["eu"].sql("SELECT sum(qty) FROM orders") == \
        d["us"].sql("SELECT sum(qty) FROM orders")
    assert d["eu"].sql("SELECT count(*) FROM xregion.conflicts") == [(0,)]


def test_replay_from_offset_zero_changes_nothing(deploy):
    d = deploy()
    d["us"].sql("INSERT INTO orders SELECT g, 'us', g, 'a' FROM "
                "generate_series(1, 300) g")
    d["us"].sql("UPDATE orders SET qty = -qty WHERE id <= 100")
    d["us"].sql("DELETE FROM orders WHERE id > 250")
    d.converge("orders", expect_rows=250)
    d["eu"].sql("UPDATE orders SET note = 'eu' WHERE id = 5")   # a later local write
    before = d.converge("orders", expect_rows=250)
    assert d["us"].sql("SELECT note FROM orders WHERE id = 5") == [("eu",)]
    d["eu"].stop()
    d["eu"].sql("UPDATE xregion.offsets SET next_offset = 0")
    d["eu"].start()
    d["eu"].wait_log("from offset 0", timeout=60)
    # Wait until the replay has gone through: the stored offsets are back
    # where they were.
    deadline = time.time() + 60
    while time.time() < deadline and d["eu"].sql(
            "SELECT sum(next_offset) FROM xregion.offsets "
            "WHERE topic LIKE %s", (f"{d.prefix}.us.%",))[0][0] != 300 + 100 + 50:
        time.sleep(0.3)
    assert d["eu"].checksum("orders") == before
    assert d["eu"].sql("SELECT note FROM orders WHERE id = 5") == [("eu",)]


def test_corrupt_and_unknown_table_messages_go_to_dead_letters(deploy):
    d = deploy(tables=TABLES + [("public.extra", False)],
               schema=SCHEMA + "CREATE TABLE extra (id int PRIMARY KEY);")
    d["eu"].sql("DROP TABLE extra")          # eu lacks a table us publishes
    d["us"].sql("INSERT INTO orders VALUES (1, 'us', 1, 'x')")
    d.converge("orders", expect_rows=1)
    p = Producer({"bootstrap.servers": xrtest.BROKERS})
    p.produce(f"{d.prefix}.us.public.orders", key=b"k", value=b"\xc3\x01garbage!")
    p.produce(f"{d.prefix}.us.public.orders", key=b"k", value=b"not avro at all")
    p.flush(10)
    d["us"].sql("INSERT INTO extra VALUES (1)")
    d["us"].sql("INSERT INTO orders VALUES (2, 'us', 1, 'x')")
    d.converge("orders", expect_rows=2)       # the consumer went on
    dlq = xrtest.read_topic(f"{d.prefix}.eu._dlq", expect=3, timeout=60)
    reasons = sorted(dict(m.headers())["xr-dlq-reason"].decode() for m in dlq)
    assert len(reasons) == 3, reasons
    assert "table public.extra does not exist in region eu" in reasons[0]
    assert reasons[1].startswith("undecodable") and reasons[2].startswith("undecodable")
    for m in dlq:
        h = dict(m.headers())
        assert h["xr-dlq-topic"].decode().startswith(f"{d.prefix}.us.public.")
        assert int(h["xr-dlq-offset"]) >= 0 and h["xr-dlq-region"] == b"eu"
    # apac has the table: it applied the row.
    assert d["apac"].sql("SELECT count(*) FROM extra") == [(1,)]


def test_missing_column_pauses_until_it_exists(deploy):
    d = deploy()
    d["us"].sql("INSERT INTO orders VALUES (1, 'us', 1, 'x')")
    d.converge("orders", expect_rows=1)
    d["us"].sql("ALTER TABLE orders ADD COLUMN color text")
    d["us"].sql("INSERT INTO orders VALUES (2, 'us', 1, 'x', 'red')")
    for r in ("eu", "apac"):
        d[r].wait_log('column "color" of region us\'s schema is missing', timeout=60)
    time.sleep(1)
    assert d["eu"].sql("SELECT count(*) FROM orders") == [(1,)]
    # A write from another region still flows while us's partition waits.
    d["apac"].sql("INSERT INTO orders VALUES (3, 'apac', 1, 'x')")
    deadline = time.time() + 30
    while d["eu"].sql("SELECT count(*) FROM orders WHERE id = 3") != [(1,)]:
        assert time.time() < deadline, "apac's write did not reach eu"
        time.sleep(0.2)
    for r in ("eu", "apac"):
        d[r].sql("ALTER TABLE orders ADD COLUMN color text")
    d.converge("orders", expect_rows=3)
    assert d["eu"].sql("SELECT color FROM orders WHERE id = 2") == [("red",)]
    # Extra target columns take their defaults: us lacks nothing now, but
    # eu adds one more column us does not have.
    d["eu"].sql("ALTER TABLE orders ADD COLUMN size int DEFAULT 7")
    d["us"].sql("INSERT INTO orders VALUES (4, 'us', 1, 'x', 'blue')")
    deadline = time.time() + 30
    while d["eu"].sql("SELECT size, color FROM orders WHERE id = 4") != [(7, "blue")]:
        assert time.time() < deadline, "row 4 did not arrive with the default"
        time.sleep(0.2)


def test_metrics_endpoint_counts_applies_and_conflicts(deploy):
    import socket
    import urllib.request
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    d = deploy(extra={"eu": f"metrics_listen: 127.0.0.1:{port}\n"})
    d["us"].sql("INSERT INTO orders SELECT g, 'us', g, 'x' FROM generate_series(1, 20) g")
    d.converge("orders", expect_rows=20)
    d["eu"].sql("UPDATE orders SET note = 'eu' WHERE id = 1")
    d.converge("orders", expect_rows=20)
    d["us"].sql("UPDATE orders SET note = 'us' WHERE id = 1")   # newer: wins
    d.converge("orders", expect_rows=20)
    deadline = time.time() + 40
    while True:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                      timeout=5).read().decode()
        vals = {l.split(" ")[0]: float(l.split(" ")[1]) for l in body.splitlines()
                if l and not l.startswith("#")}
        if vals.get('xregion_applied_events_total{region="eu"}', 0) >= 21 or \
           time.time() > deadline:
            break
        time.sleep(0.5)
    assert vals['xregion_applied_events_total{region="eu"}'] >= 21, body
    assert vals['xregion_produced_events_total{region="eu"}'] >= 1, body
    assert vals['xregion_conflicts_total{region="eu",kind="update_origin_differs",'
                'resolution="remote_applied"}'] >= 1, body
    health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert health.status == 200


def test_application_role_can_delete_without_rights_on_schema_xregion(deploy):
    d = deploy()
    role = f"xrt_app_{d.suffix}"
    d["us"].sql(f"CREATE ROLE {role} LOGIN")
    try:
        d["us"].sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO {role}")
        d["us"].sql("INSERT INTO orders VALUES (1, 'us', 1, 'x'), (2, 'us', 1, 'x')")
        d.converge("orders", expect_rows=2)
        import psycopg
        dsn = xrtest.pg_dsn("us", d["us"].db).replace("user=postgres", f"user={role}")
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("DELETE FROM orders WHERE id = 1")   # fires the trigger
            c.execute("UPDATE orders SET id = 3 WHERE id = 2")   # key change
        d.converge("orders", expect_rows=1)
        assert d["eu"].sql("SELECT id FROM orders") == [(3,)]
        tomb = d["us"].sql('SELECT id, deleted FROM xregion."public.orders" '
                           "WHERE deleted ORDER BY id")
        assert tomb == [(1, True), (2, True)]
    finally:
        d["us"].sql(f"DROP OWNED BY {role}")
        with xrtest.connect("us") as c:
            c.execute(f"DROP ROLE IF EXISTS {role}")


def test_update_of_missing_row_carries_its_toasted_value(deploy):
    d = deploy(tables=[("public.docs", False)],
               schema="CREATE TABLE docs (id int PRIMARY KEY, n int, body text);")
    d["us"].sql("INSERT INTO docs SELECT 1, 0, string_agg(md5(g::text), '') "
                "FROM generate_series(1, 65536) g")
    d.converge("docs", expect_rows=1)
    # eu loses the row; us then updates it without touching the big value.
    # PostgreSQL sends no body for it, but the producer reads it back, so
    # eu can make the row again, whole (update_missing, remote_applied).
    d["eu"].stop()
    d["eu"].sql("SET session_replication_role = replica; DELETE FROM docs")
    d["eu"].start()
    d["eu"].wait_log("subscribed to")
    d["us"].sql("UPDATE docs SET n = 1 WHERE id = 1")
    d.converge("docs", expect_rows=1)
    assert d["eu"].sql("SELECT n, md5(body) FROM docs") == \
        d["us"].sql("SELECT n, md5(body) FROM docs")
    kinds = d["eu"].sql("SELECT kind, resolution FROM xregion.conflicts")
    assert ("update_missing", "remote_applied") in kinds


def test_a_local_delete_that_loses_is_named_in_the_conflict_log(deploy):
    """eu deletes a row while us, not having seen the delete, updates it
    later: the update wins everywhere.  eu logs the update as
    update_deleted/remote_applied with its delete (its tombstone's
    version) as the local side, us logs eu's delete as the loser: both
    name the same losing write."""
    d = deploy(regions=("us", "eu"))
    us, eu = d["us"], d["eu"]
    us.sql("INSERT INTO orders VALUES (5, 'us', 1, 'x')")
    d.converge("orders", expect_rows=1)
    eu.stop()
    eu.sql("DELETE FROM orders WHERE id = 5")
    time.sleep(0.05)
    us.sql("UPDATE orders SET qty = 2 WHERE id = 5")
    eu.start()
    d.converge("orders", expect_rows=1)
    q = ("SELECT kind, resolution, local_region, local_ts, remote_region, "
         "remote_ts FROM xregion.conflicts")
    deadline = time.time() + 30
    while not us.sql(q) and time.time() < deadline:
        time.sleep(0.2)
    [(kind, res, lreg, lts, rreg, rts)] = eu.sql(q)
    assert (kind, res, lreg, rreg) == ("update_deleted", "remote_applied", "eu", "us")
    [(ukind, ures, ulreg, _, urreg, urts)] = us.sql(q)
    assert (ukind, ures, ulreg, urreg) == ("delete_after_update", "local_kept",
                                           "us", "eu")
    assert lts is not None and urts == lts and rts > lts


@pytest.mark.parametrize("mode", ["lww", "vclock"])
def test_a_key_change_that_removes_an_unseen_write_logs_it(deploy, mode):
    """eu updates row 5 while us, not having seen that, moves row 5 to key
    6 later: in eu the key change deletes eu's row at key 5, a write it
    never saw, which must be logged as the loser (a delete_* conflict of
    the old key, remote_applied, eu's row in local_row)."""
    opts = {"conflict": "vclock"} if mode == "vclock" else {}
    d = deploy(tables=[("public.orders", False, opts)] if opts else
               [("public.orders", False)], regions=("us", "eu"))
    us, eu = d["us"], d["eu"]
    us.sql("INSERT INTO orders VALUES (5, 'us', 1, 'x')")
    d.converge("orders", expect_rows=1)
    us.stop()
    eu.stop()
    eu.sql("UPDATE orders SET note = 'eu' WHERE id = 5")
    time.sleep(0.05)
    us.sql("UPDATE orders SET id = 6, note = 'moved' WHERE id = 5")
    us.start()
    eu.start()
    deadline = time.time() + 60
    while eu.sql("SELECT id, note FROM orders") != [(6, "moved")]:
        assert time.time() < deadline, eu.sql("SELECT * FROM orders")
        time.sleep(0.2)
    logged = eu.sql("SELECT kind, resolution, key->>'id', local_row->>'note' "
                    "FROM xregion.conflicts")
    assert [c for c in logged if c[2] == "5" and c[3] == "eu" and
            c[1] == "remote_applied" and c[0].startswith("delete_")], logged


def test_bulk_insert_takes_the_fast_path_with_the_source_version(deploy):
    """The rows of one large source transaction are inserted without
    versions entries: the apply transaction carries the source's commit
    timestamp and origin, and that is the version every region compares."""
    d = deploy()
    us, eu, apac = d["us"], d["eu"], d["apac"]
    us.sql("INSERT INTO orders SELECT g, 'us', g, 'a' FROM generate_series(1, 500) g")
    d.converge("orders", expect_rows=500)
    src = us.sql("SELECT DISTINCT (extract(epoch FROM pg_xact_commit_timestamp(xmin))"
                 " * 1000000)::bigint FROM orders")
    assert len(src) == 1
    for n in (eu, apac):
        assert n.sql('SELECT count(*) FROM xregion."public.orders"') == [(0,)]
        assert n.sql("SELECT DISTINCT (v).ts, (v).region FROM (SELECT "
                     "xregion.version_of(xmin, NULL, NULL) AS v FROM orders) x") == \
            [(src[0][0], "us")]
    # An update of them all in one transaction: the fast update path, no
    # entries either, and the update's commit time as the version.
    us.sql("UPDATE orders SET qty = qty + 1")
    deadline = time.time() + 60
    while time.time() < deadline and apac.sql(
            "SELECT count(*) FROM orders WHERE qty = id + 1") != [(500,)]:
        time.sleep(0.3)
    d.converge("orders", expect_rows=500)
    src = us.sql("SELECT DISTINCT (extract(epoch FROM pg_xact_commit_timestamp(xmin))"
                 " * 1000000)::bigint FROM orders")
    assert len(src) == 1
    for n in (eu, apac):
        assert n.sql('SELECT count(*) FROM xregion."public.orders"') == [(0,)]
        assert n.sql("SELECT DISTINCT (v).ts, (v).region FROM (SELECT "
                     "xregion.version_of(xmin, NULL, NULL) AS v FROM orders) x") == \
            [(src[0][0], "us")]
    # Later writes still win over the fast rows, and older ones still lose.
    eu.sql("UPDATE orders SET note = 'eu' WHERE id <= 10")
    us.sql("DELETE FROM orders WHERE id > 490")
    d.converge("orders", expect_rows=490)
    assert apac.sql("SELECT count(*) FROM orders WHERE note = 'eu'") == [(10,)]
    # eu's updates overwrote rows us wrote: logged as such, newer, applied;
    # in apac the fast rows' version names us and the source commit time.
    for n in (us, apac):
        got = n.sql("SELECT kind, resolution, local_region, "
                    "(extract(epoch FROM local_ts) * 1000000)::bigint, remote_region "
                    "FROM xregion.conflicts WHERE table_name = 'orders'")
        assert len(got) == 10
        for kind, res, lreg, lts, rreg in got:
            assert (kind, res, lreg, rreg) == ("update_origin_differs",
                                               "remote_applied", "us", "eu")
            if n is apac:
                assert abs(lts - src[0][0]) <= 1
    assert eu.sql("SELECT count(*) FROM xregion.conflicts") == [(0,)]



def test_killed_consumer_resumes_at_once(deploy):
    """After kill -9 the restarted consumer applies again within seconds:
    the killed one's database session, and with it its source regions'
    leases, ended with it (no Kafka session timeout to wait out)."""
    d = deploy(regions=("us", "eu"))
    d["eu"].stop(signal.SIGKILL)
    d["us"].sql("INSERT INTO orders VALUES (1, 'us', 1, 'x')")
    t0 = time.time()
    d["eu"].start()
    d.converge("orders", expect_rows=1, timeout=90)
    assert time.time() - t0 < 10, f"took {time.time() - t0:.1f} s"


def test_sigterm_ends_the_replicator_while_an_apply_waits_for_a_row_lock(deploy):
    """A local transaction holds the row lock an apply needs: the apply
    gives up after consumer.lock_timeout_ms and retries, and SIGTERM ends
    the process within seconds, with nothing applied (the batch rolled
    back) and the change applied after the restart."""
    d = deploy(regions=("us", "eu"))
    us, eu = d["us"], d["eu"]
    us.sql("INSERT INTO orders VALUES (1, 'us', 1, 'x')")
    d.converge("orders", expect_rows=1)
    with psycopg.connect(xrtest.pg_dsn("eu", eu.db)) as holder:
        holder.execute("UPDATE orders SET note = 'held' WHERE id = 1")
        us.sql("UPDATE orders SET qty = 2 WHERE id = 1")
        eu.wait_log("lock timeout", timeout=60)
        t0 = time.time()
        rc = eu.stop(signal.SIGTERM)
        took = time.time() - t0
        assert rc == 0, rc
        assert took < 10, f"SIGTERM took {took:.1f} s"
        holder.rollback()
    assert eu.sql("SELECT qty FROM orders") == [(1,)]
    eu.start()
    d.converge("orders", expect_rows=1, timeout=60)
    assert eu.sql("SELECT qty, note FROM orders") == [(2, "x")]


def test_setup_under_load_gives_way_to_the_application(deploy):
    """Setup re-run while the application writes: it locks the replicated
    tables first and waits for a lock at most 500 ms before it tries again.
    An application transaction that writes b, then a, while setup holds a
    and waits for b, commits (setup gives way, not it), and setup ends
    well on a later try."""
    d = deploy(tables=[("public.a", False), ("public.b", False)],
               schema="CREATE TABLE a (id int PRIMARY KEY, v int);\n"
                      "CREATE TABLE b (id int PRIMARY KEY, v int);\n",
               regions=("us", "eu"))
    us = d["us"]
    assert us.stop() == 0
    with psycopg.connect(xrtest.pg_dsn("us", us.db)) as app:
        app.execute("INSERT INTO b VALUES (1, 1)")
        setup = subprocess.Popen([us.binary, "setup", "-c", us.config],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True,
                                 env=us.env())
        deadline = time.time() + 60
        while not us.sql("SELECT 1 FROM pg_stat_activity "
                         "WHERE datname = current_database() "
                         "AND pid <> pg_backend_pid() "
                         "AND wait_event_type = 'Lock' "
                         "AND query LIKE '%%LOCK TABLE%%'"):
            assert setup.poll() is None, setup.communicate()[0]
            assert time.time() < deadline, "setup never waited for b"
            time.sleep(0.02)
        # setup holds a: the application's insert waits for it (a lock
        # cycle), until setup gives up its try
        app_pid = app.info.backend_pid
        done = []
        t = threading.Thread(target=lambda: done.append(
            app.execute("INSERT INTO a VALUES (1, 1)")))
        t.start()
        waited = False
        while t.is_alive() and not waited:
            waited = bool(us.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s "
                                 "AND wait_event_type = 'Lock'", (app_pid,)))
            time.sleep(0.01)
        t.join(30)
        assert done, "the application's insert did not finish"
        assert waited, "the insert never waited for setup's lock: no cycle"
        app.commit()
    out = setup.communicate(timeout=120)[0]
    assert setup.returncode == 0, out
    assert "consumer objects: waiting for a lock, try 2 of 30" in out, out
    assert "deadlock detected" not in out, out
    streams = us.read_log().count("streaming slot")
    us.start()
    us.wait_log("streaming slot", count=streams + 1)
    us.sql("INSERT INTO a VALUES (2, 2)")
    d.converge("a", expect_rows=2)
    d.converge("b", expect_rows=1)
