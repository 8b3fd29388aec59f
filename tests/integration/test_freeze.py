"""A row's version survives freezing.

PostgreSQL keeps commit timestamps only until vacuum freezes past them:
then pg_xact_commit_timestamp() of the row's xmin is NULL.  Reproduction:
eu runs its producer but not its consumer; row 1 is written in us at T1,
then in eu at T2 > T1 (us applies it: us holds eu's T2); row 2 is updated
in us at T1 and deleted in eu at T2; and the same for 3,500 rows in two
large transactions (which the producer records whole, by xid).  eu then freezes:
tens of thousands of transactions, VACUUM FREEZE in every database
(template0 too, as anti-wraparound autovacuum eventually does), until the
commit timestamps of eu's writes are gone.  eu's consumer starts and meets
us's older T1 writes: it must keep T2 (the row, and the delete), as us does.

eu runs on a cluster of its own (the freeze touches every database of it).
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "convergence"))

import psycopg  # noqa: E402
import skewpg  # noqa: E402
import xrtest  # noqa: E402
from xrdeploy import Deployment  # noqa: E402

PGBENCH = os.path.join(skewpg.PG_BIN, "pgbench")


def freeze_cluster(port, ntx=60000):
    """Burns ntx transaction ids, then VACUUM FREEZE in every database."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".xid.sql")
    with open(script, "w") as f:
        f.write("SELECT txid_current();\n")
    try:
        subprocess.run([PGBENCH, "-h", "127.0.0.1", "-p", str(port), "-U",
                        "postgres", "-n", "-c", "2", "-t", str(ntx // 2), "-f",
                        script, "postgres"], check=True, capture_output=True,
                       timeout=300)
    finally:
        os.unlink(script)
    # A logical slot's catalog_xmin holds every database's datfrozenxid
    # back (catalogs cannot be frozen past it): wait until the slots have
    # moved on (a checkpoint logs the running transactions they need).
    with xrtest.connect(port=port) as c:
        target = int(c.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
        deadline = time.time() + 60
        while True:
            c.execute("CHECKPOINT")
            low = c.execute("SELECT min(catalog_xmin::text::bigint) FROM "
                            "pg_replication_slots").fetchone()[0]
            if low is None or low > target - ntx // 2:
                break
            assert time.time() < deadline, f"slots hold catalog_xmin {low}"
            time.sleep(0.5)
    with xrtest.connect(port=port) as c:
        dbs = [r[0] for r in c.execute("SELECT datname FROM pg_database")]
        c.execute("UPDATE pg_database SET datallowconn = true "
                  "WHERE datname = 'template0'")
    try:
        for db in dbs:
            with xrtest.connect(db=db, port=port) as c:
                c.execute("VACUUM FREEZE")
    finally:
        with xrtest.connect(port=port) as c:
            c.execute("UPDATE pg_database SET datallowconn = false "
                      "WHERE datname = 'template0'")


def test_a_row_keeps_its_version_after_vacuum_truncates_commit_timestamps():
    with skewpg.SkewedCluster("eu", 0) as eu_pg:
        d = Deployment([("public.t", False)],
                       "CREATE TABLE t (id int PRIMARY KEY, v text);",
                       regions=("us", "eu"), ports={"eu": eu_pg.port})
        try:
            d.start()
            us, eu = d["us"], d["eu"]
            us.sql("INSERT INTO t VALUES (2, 'both')")
            us.sql("INSERT INTO t SELECT g, 'both' FROM generate_series(1000, 4499) g")
            d.converge("t", expect_rows=3501)
            eu.stop()
            eu.start("produce")
            eu.wait_log("streaming slot", count=2)
            us.sql("INSERT INTO t VALUES (1, 'us-T1')")
            us.sql("UPDATE t SET v = 'us-T1' WHERE id = 2")
            us.sql("UPDATE t SET v = 'us-T1' WHERE id >= 1000")
            time.sleep(0.05)
            eu.sql("INSERT INTO t VALUES (1, 'eu-T2')")
            eu.sql("DELETE FROM t WHERE id = 2")
            # Large transactions: recorded whole by the producer.
            eu.sql("UPDATE t SET v = 'eu-T2' WHERE id BETWEEN 1000 AND 2999")
            eu.sql("DELETE FROM t WHERE id >= 3000")
            want = [(1, "eu-T2")] + [(i, "eu-T2") for i in range(1000, 3000)]
            deadline = time.time() + 60
            while us.sql("SELECT id, v FROM t ORDER BY id") != want:
                assert time.time() < deadline, "us did not apply eu's write"
                time.sleep(0.2)
            # The producer has had time to record eu's write; then freeze.
            time.sleep(2)
            xmins = [r[0] for r in eu.sql("SELECT DISTINCT xmin::text FROM t")]
            assert len(xmins) == 2
            freeze_cluster(eu_pg.port)
            for xmin in xmins:
                assert eu.sql("SELECT pg_xact_commit_timestamp(%s::xid)",
                              (xmin,)) == [(None,)], "commit timestamp not truncated"
            eu.stop()
            eu.start("run")
            eu.wait_log("subscribed to")
            # Until eu's consumer has stored offsets past every us event.
            topic = f"{d.prefix}.us.public.t"
            end = xrtest.topic_size(topic)
            deadline = time.time() + 60
            while eu.sql("SELECT coalesce(sum(next_offset), 0)::int FROM "
                         "xregion.offsets WHERE topic = %s", (topic,)) != [(end,)]:
                assert time.time() < deadline, eu.read_log()[-3000:]
                time.sleep(0.3)
            # eu's consumer has stored its offset past us's T1 events: the
            # newer local insert and the newer local delete stand.
            assert eu.sql("SELECT id, v FROM t ORDER BY id") == want
            assert us.sql("SELECT id, v FROM t ORDER BY id") == want
            got = eu.sql("SELECT kind, resolution, count(*) FROM "
                         "xregion.conflicts GROUP BY 1, 2 ORDER BY 1")
            assert got == [("insert_exists", "local_kept", 1),
                           ("update_deleted", "local_kept", 1501),
                           ("update_origin_differs", "local_kept", 2000)], got
        finally:
            d.close()


def test_the_slot_waits_for_the_stamps_of_its_writes():
    """A stamp that cannot be written (a local transaction holds the row
    with FOR UPDATE, so the stamps' KEY SHARE lock times out after 50 ms)
    is retried, and meanwhile the slot does not move past the write: a
    restarted producer would stream it, and stamp it, again."""
    d = Deployment([("public.t", False)],
                   "CREATE TABLE t (id int PRIMARY KEY, v text);",
                   regions=("us", "eu"))
    try:
        d.start()
        us = d["us"]
        us.sql("INSERT INTO t VALUES (2, 'a')")
        d.converge("t", expect_rows=1)
        with psycopg.connect(xrtest.pg_dsn("us", us.db)) as holder:
            us.sql("UPDATE t SET v = 'b' WHERE id = 2")
            holder.execute("SELECT * FROM t WHERE id = 2 FOR UPDATE")
            lsn = xrtest.lsn_int(us.sql("SELECT pg_current_wal_lsn()::text")[0][0])
            us.wait_log("versions of local writes not recorded yet", timeout=30)
            time.sleep(3)
            slot = us.sql("SELECT confirmed_flush_lsn::text FROM "
                          "pg_replication_slots WHERE slot_name = %s", (us.slot,))
            assert xrtest.lsn_int(slot[0][0]) < lsn, (slot, lsn)
            holder.rollback()
        deadline = time.time() + 60
        while True:
            slot = us.sql("SELECT confirmed_flush_lsn::text FROM "
                          "pg_replication_slots WHERE slot_name = %s", (us.slot,))
            if xrtest.lsn_int(slot[0][0]) >= lsn:
                break
            assert time.time() < deadline, "the slot did not move on"
            time.sleep(0.5)
        assert us.sql('SELECT xid(v.xid) = t.xmin, v.region FROM t JOIN '
                      'xregion."public.t" v USING (id)') == [(True, "us")]
    finally:
        d.close()
