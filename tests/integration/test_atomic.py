"""Atomic apply (issue 12): the consumer applies each source transaction
whole, in one target transaction, in the source's commit order.

- Invariant reader: in us, transactions insert an order with its lines
  (order total = sum of its lines), add lines to orders, and move money
  between accounts (total constant); meanwhile a reader in eu checks the
  invariants in one snapshot, again and again.  With atomic apply it finds
  no violation, also with batches smaller than the transactions (those are
  applied in pieces of one target transaction); with apply_mode rows it
  finds some, which shows the check can fail.
- A region whose transactions wait (a column missing here) does not hold
  up the others.
- A transaction larger than a batch is applied as its events arrive, before
  its end record, and committed at it: also when its producer is killed
  with -9 meanwhile and sends it again; when its producer stalls, it is
  rolled back so that the other regions go on, and applied once whole.
- A large transaction, killed mid-apply (kill -9 of eu's consumer): after
  the restart it is there whole, once; eu's peak memory for a 1,000,000-row
  transaction is no larger than for a 100,000-row one (printed).
"""
import random
import signal
import threading
import time
import urllib.request

import psycopg
import pytest

import xrtest
from xrdeploy import Deployment

SCHEMA = """
CREATE TABLE orders (id bigint PRIMARY KEY, total bigint NOT NULL);
CREATE TABLE lines (order_id bigint, n int, amount bigint NOT NULL,
                    PRIMARY KEY (order_id, n));
CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
"""
TABLES = [("public.orders", False), ("public.lines", False),
          ("public.accounts", False)]
ACCOUNTS, BALANCE = 20, 1000


class Writer(threading.Thread):
    """us: orders with their lines, lines added to orders, transfers."""

    def __init__(self, node, seed, txns):
        super().__init__(daemon=True)
        self.node, self.rng, self.txns = node, random.Random(seed), txns
        self.error, self.big = None, 0

    def run(self):
        try:
            with xrtest.connect("us", self.node.db) as c:
                c.autocommit = True
                orders = []
                for i in range(self.txns):
                    with c.transaction():
                        k = self.rng.random()
                        if k < 0.45 or not orders:
                            o = i + 1
                            lines = [self.rng.randint(1, 100)
                                     for _ in range(self.rng.randint(1, 14))]
                            self.big += len(lines) + 1 > 10
                            # the order first with 0, its lines, its total
                            c.execute("INSERT INTO orders VALUES (%s, 0)", (o,))
                            for n, a in enumerate(lines):
                                c.execute("INSERT INTO lines VALUES (%s, %s, %s)",
                                          (o, n, a))
                            c.execute("UPDATE orders SET total = %s WHERE id = %s",
                                      (sum(lines), o))
                            orders.append((o, len(lines)))
                        elif k < 0.7:
                            j = self.rng.randrange(len(orders))
                            o, n = orders[j]
                            a = self.rng.randint(1, 100)
                            c.execute("INSERT INTO lines VALUES (%s, %s, %s)",
                                      (o, n, a))
                            c.execute("UPDATE orders SET total = total + %s "
                                      "WHERE id = %s", (a, o))
                            orders[j] = (o, n + 1)
                        else:
                            a, b = self.rng.sample(range(1, ACCOUNTS + 1), 2)
                            x = self.rng.randint(1, 50)
                            c.execute("UPDATE accounts SET balance = balance - %s "
                                      "WHERE id = %s", (x, a))
                            c.execute("UPDATE accounts SET balance = balance + %s "
                                      "WHERE id = %s", (x, b))
        except Exception as e:  # reported by the test
            self.error = e


class Reader(threading.Thread):
    """eu: checks the invariants in one snapshot, until stopped."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node = node
        self.stop = threading.Event()
        self.checks, self.violations, self.error = 0, [], None

    def run(self):
        try:
            with xrtest.connect("eu", self.node.db) as c:
                c.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                while not self.stop.is_set():
                    with c.transaction():
                        bad_orders = c.execute(
                            "SELECT o.id, o.total, coalesce(sum(l.amount), 0) "
                            "FROM orders o LEFT JOIN lines l ON l.order_id = o.id "
                            "GROUP BY o.id HAVING o.total <> coalesce(sum(l.amount), 0)"
                        ).fetchall()
                        orphans = c.execute(
                            "SELECT count(*) FROM lines l WHERE NOT EXISTS "
                            "(SELECT 1 FROM orders o WHERE o.id = l.order_id)"
                        ).fetchone()[0]
                        n, total = c.execute(
                            "SELECT count(*), coalesce(sum(balance), 0) "
                            "FROM accounts").fetchone()
                    self.checks += 1
                    if bad_orders or orphans or \
                            (n, total) not in ((0, 0), (ACCOUNTS, ACCOUNTS * BALANCE)):
                        self.violations.append((bad_orders[:3], orphans, n, total))
                    time.sleep(0.005)
        except Exception as e:
            self.error = e


def run_invariants(consumer):
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"), consumer=consumer)
    try:
        d.start()
        d["us"].sql(f"INSERT INTO accounts SELECT g, {BALANCE} "
                    f"FROM generate_series(1, {ACCOUNTS}) g")
        reader = Reader(d["eu"])
        reader.start()
        writer = Writer(d["us"], 12, 1500)
        writer.start()
        writer.join(300)
        assert writer.error is None, writer.error
        for t, key in (("orders", "id"), ("lines", "order_id, n"),
                       ("accounts", "id")):
            d.converge(t, key=key)
        reader.stop.set()
        reader.join(30)
        assert reader.error is None, reader.error
        assert writer.big > 50, "too few transactions larger than a batch"
        assert reader.checks > 100, reader.checks
        return reader, d["eu"].read_log()
    finally:
        d.close()


def test_atomic_apply_keeps_the_invariants():
    # Batches of 10 events: most orders are larger, and go in pieces of one
    # target transaction.
    reader, log = run_invariants(["batch_size: 10"])
    print(f"atomic: {reader.checks} checks, {len(reader.violations)} violations")
    assert reader.violations == [], reader.violations[:5]
    assert "large transaction" not in log or "committed" in log


def test_per_row_apply_shows_partial_transactions():
    # The same check fails when transactions are not applied whole.
    reader, _ = run_invariants(["batch_size: 10", "apply_mode: rows"])
    print(f"rows: {reader.checks} checks, {len(reader.violations)} violations")
    assert reader.violations, "the check found nothing in rows mode"


def peak_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_transaction_killed_mid_apply_is_applied_whole_once():
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"))
    try:
        d.start()
        eu = d["eu"]
        # 100,000 rows in one transaction: eu's peak memory after it
        d["us"].sql("BEGIN; INSERT INTO orders VALUES (1, 100000); "
                    "INSERT INTO lines SELECT 1, g, 1 FROM generate_series(1, 100000) g; "
                    "COMMIT")
        d.converge("lines", key="order_id, n", timeout=180)
        small = peak_rss_kb(eu.proc.pid)

        # 1,000,000 rows: kill -9 eu while it applies them (pieces done,
        # nothing committed), then let it start over
        d["us"].sql("BEGIN; INSERT INTO orders VALUES (2, 1000000); "
                    "INSERT INTO lines SELECT 2, g, 1 FROM generate_series(1, 1000000) g; "
                    "COMMIT")
        eu.wait_log("large transaction: 50 pieces", timeout=300)
        assert eu.sql("SELECT count(*) FROM lines WHERE order_id = 2")[0][0] == 0
        assert eu.sql("SELECT count(*) FROM orders WHERE id = 2")[0][0] == 0
        eu.stop(signal.SIGKILL)
        eu.start()
        # whole or nothing, as a reader sees it, until it is there
        deadline = time.time() + 300
        while True:
            n, o = eu.sql("SELECT (SELECT count(*) FROM lines WHERE order_id = 2), "
                          "(SELECT count(*) FROM orders WHERE id = 2)")[0]
            assert (n, o) in ((0, 0), (1000000, 1)), (n, o)
            if n:
                break
            assert time.time() < deadline, eu.read_log()[-3000:]
            time.sleep(0.5)
        big = peak_rss_kb(eu.proc.pid)
        print(f"eu peak RSS: {small} kB after a 100,000-row transaction, "
              f"{big} kB for a 1,000,000-row one (after a restart)")
        d.converge("lines", key="order_id, n", timeout=180)
        d.converge("orders")
        # once: nothing applied twice shows as conflicts
        assert eu.sql("SELECT count(*) FROM xregion.conflicts")[0][0] == 0
        assert big < small * 1.5 + 32 * 1024, (small, big)
        applied = eu.sql("SELECT commit_lsn > 0 FROM xregion.applied "
                         "WHERE region = 'us'")
        assert applied == [(True,)], applied
    finally:
        d.close()


BIG_TX = ("BEGIN; INSERT INTO orders VALUES (1, {n}); "
          "INSERT INTO lines SELECT 1, g, 1 FROM generate_series(1, {n}) g; "
          "UPDATE accounts SET balance = 1 WHERE id = 1; COMMIT")


def wait_whole(eu, n, timeout=300):
    """Until eu has the big transaction: a reader sees none of it or all."""
    deadline = time.time() + timeout
    while True:
        got = eu.sql("SELECT (SELECT count(*) FROM lines WHERE order_id = 1), "
                     "(SELECT count(*) FROM orders WHERE id = 1), "
                     "(SELECT balance FROM accounts WHERE id = 1)")[0]
        assert got in ((0, 0, 0), (n, 1, 1)), got
        if got[0]:
            return
        assert time.time() < deadline, eu.read_log()[-3000:]
        time.sleep(0.2)


def applied_or_skipped(port):
    """eu's events of committed applies: applied, or skipped as older."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                  timeout=5).read().decode()
    vals = {l.split(" ")[0]: float(l.split(" ")[1])
            for l in body.splitlines() if l and not l.startswith("#")}
    return vals.get('xregion_applied_events_total{region="eu"}', 0) + \
        vals.get('xregion_skipped_events_total{region="eu"}', 0)


def start_early(d, n):
    """Starts d, then us's transaction before, then its big one of n lines;
    returns once eu applies the big one as it arrives."""
    d.start()
    us, eu = d["us"], d["eu"]
    us.sql("INSERT INTO accounts VALUES (1, 0)")   # the one before
    d.converge("accounts", expect_rows=1)
    us.sql(BIG_TX.format(n=n))
    eu.wait_log("is larger than a batch: applied as its events arrive",
                timeout=120)
    return us, eu


def test_large_transaction_is_applied_as_it_arrives():
    """A transaction larger than a batch whose first event names (xr-prev)
    the transaction eu took last is applied while its events still arrive,
    in one target transaction committed at its end record: whole, once."""
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"),
                   consumer=["batch_size: 1000"])
    try:
        us, eu = start_early(d, 200000)
        wait_whole(eu, 200000)
        assert "large transaction committed" in eu.read_log()
        d.converge("lines", key="order_id, n", timeout=120)
        d.converge("accounts")
        assert eu.sql("SELECT count(*) FROM xregion.conflicts")[0][0] == 0
    finally:
        d.close()


def test_large_transaction_taken_early_whose_producer_is_killed():
    """us's process is killed with -9 while eu applies its big transaction
    as it arrives; us sends it again whole after its restart.  eu rolls
    back what it took of the first copy and applies the transaction from
    its record: a reader sees none or all of it, and eu's committed
    applies count each event once."""
    port = xrtest.free_port()
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"),
                   consumer=["batch_size: 1000"],
                   extra={"eu": f"metrics_listen: 127.0.0.1:{port}\n"})
    try:
        us, eu = start_early(d, 500000)
        us.stop(signal.SIGKILL)
        us.start()
        wait_whole(eu, 500000)
        assert "sends it again from its start: rolled back" in \
            eu.read_log(), eu.read_log()[-3000:]
        d.converge("lines", key="order_id, n", timeout=180)
        d.converge("accounts")
        assert eu.sql("SELECT count(*) FROM xregion.conflicts")[0][0] == 0
        # once: the committed applies (applied or skipped as older) count
        # each of the 500,003 events once; a copy applied again adds to them
        want, deadline = 500003, time.time() + 30
        while applied_or_skipped(port) < want and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(2)   # anything more would show by now
        assert applied_or_skipped(port) == want
    finally:
        d.close()


def test_large_transaction_taken_early_whose_producer_changes_tables():
    """As above, but us restarts with table orders marked pii: its copy of
    the transaction counts the changes from 0 without the order, so the
    tx_index of a line differs between the two copies.  eu must not mix
    them (that lost a line): it rolls back and applies the second copy
    from its record, every line and the balance."""
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"),
                   consumer=["batch_size: 1000"])
    try:
        us, eu = start_early(d, 500000)
        us.stop(signal.SIGKILL)
        with open(us.config) as f:
            conf = f.read()
        entry = "  - name: public.orders\n    pii: false\n"
        assert entry in conf
        with open(us.config, "w") as f:
            f.write(conf.replace(entry, "  - name: public.orders\n    pii: true\n"))
        us.start()
        deadline = time.time() + 300
        while True:
            got = eu.sql("SELECT (SELECT count(*) FROM lines), "
                         "(SELECT count(*) FROM orders), "
                         "(SELECT balance FROM accounts WHERE id = 1)")[0]
            assert got in ((0, 0, 0), (500000, 0, 1)), got
            if got[0]:
                break
            assert time.time() < deadline, eu.read_log()[-3000:]
            time.sleep(0.2)
        d.converge("lines", key="order_id, n", timeout=180)
        log = eu.read_log()
        assert "sends it again from its start: rolled back" in log or \
            "from a later session of its producer: rolled back" in log, \
            log[-3000:]
    finally:
        d.close()


def test_large_transaction_taken_early_whose_producer_stalls():
    """us's process is stopped (SIGSTOP) while eu applies its big
    transaction as it arrives, and apac writes: eu rolls the big one back
    after waiting 5 s, so that apac's write is applied meanwhile, and
    applies it whole once us goes on."""
    d = Deployment(TABLES, SCHEMA, consumer=["batch_size: 1000"])
    try:
        us, eu = start_early(d, 500000)
        apac = d["apac"]
        us.proc.send_signal(signal.SIGSTOP)
        try:
            apac.sql("INSERT INTO accounts VALUES (2, 5)")
            eu.wait_log("taken as it arrives waited", timeout=60)
            assert "rolled back, applied once it is whole" in eu.read_log()
            deadline = time.time() + 30
            while not eu.sql("SELECT 1 FROM accounts WHERE id = 2"):
                assert time.time() < deadline, eu.read_log()[-3000:]
                time.sleep(0.2)
            assert eu.sql("SELECT count(*) FROM lines")[0][0] == 0
        finally:
            us.proc.send_signal(signal.SIGCONT)
        wait_whole(eu, 500000)
        d.converge("lines", key="order_id, n", timeout=180)
        d.converge("accounts", expect_rows=2)
        assert eu.sql("SELECT count(*) FROM xregion.conflicts")[0][0] == 0
    finally:
        d.close()


def test_a_waiting_region_does_not_block_the_others():
    """us's transactions wait in eu for a column eu lacks (schema drift);
    apac's go on meanwhile, and the wait is in the log; once the column
    exists, us's transactions are applied, whole."""
    d = Deployment([("public.items", False)],
                   "CREATE TABLE items (id int PRIMARY KEY, n int);",
                   consumer=["drift_recheck_ms: 500"])
    try:
        d.start()
        us, eu, apac = d["us"], d["eu"], d["apac"]
        us.sql("INSERT INTO items VALUES (1, 1)")
        d.converge("items", expect_rows=1)
        us.sql("ALTER TABLE items ADD COLUMN extra int")
        us.sql("BEGIN; INSERT INTO items VALUES (2, 2, 7); "
               "UPDATE items SET n = 10, extra = 1 WHERE id = 1; COMMIT")
        eu.wait_log("region us waits")
        apac.sql("INSERT INTO items VALUES (100, 100)")
        deadline = time.time() + 60
        while eu.sql("SELECT count(*) FROM items WHERE id = 100")[0][0] == 0:
            assert time.time() < deadline, eu.read_log()[-3000:]
            time.sleep(0.2)
        # us's transaction is not there, not even in part
        assert eu.sql("SELECT id, n FROM items ORDER BY id") == [(1, 1), (100, 100)]
        for n in (eu, apac):
            n.sql("ALTER TABLE items ADD COLUMN extra int")
        d.converge("items", expect_rows=3)
        assert eu.sql("SELECT id, n, extra FROM items ORDER BY id") == \
            [(1, 10, 1), (2, 2, 7), (100, 100, None)]
    finally:
        d.close()
