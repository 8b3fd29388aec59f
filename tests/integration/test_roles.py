"""Three database roles (docs/deployment.md, "Three roles: setup,
producer, consumer"): the SQL of that page, taken from it, makes the roles
in every region; setup runs as the setup role, and each region's producer
and consumer as their own processes under their own roles.  Under a
workload of real transactions the three regions converge, nothing logs
"permission denied", every connection ran as the role it was meant to,
and the runtime roles cannot do what they were not given.
"""
import os
import re
import signal
import subprocess
import time
import uuid

import psycopg
import psycopg.errors
import pytest

import xrtest
from xrdeploy import Deployment

REGIONS = ("us", "eu", "apac")
# the replicated tables, each with its first primary-key column
REPLICATED = [("public.orders", "id"), ("public.items", "sku"),
              ("public.accounts", "id")]
SCHEMA = """
CREATE TABLE orders (id int PRIMARY KEY, region text, qty int, note text);
CREATE TABLE items (sku text, part int, body text, PRIMARY KEY (sku, part));
CREATE TABLE accounts (id int PRIMARY KEY, balance int);
CREATE TABLE users (id int PRIMARY KEY, email text);
"""
TABLES = [("public.orders", False), ("public.items", False),
          ("public.accounts", False, {"conflict": "vclock"}),
          ("public.users", True)]


def documented_sql():
    with open(os.path.join(xrtest.ROOT, "docs", "deployment.md")) as f:
        text = f.read()
    m = re.search(r"<!-- roles\.sql -->\s*```sql\n(.*?)```\s*<!-- /roles\.sql -->",
                  text, re.S)
    assert m, "docs/deployment.md has no roles.sql block"
    return m.group(1)


def role_sql(suffix, db):
    """The documented SQL for this run: its role names made unique (roles
    are cluster-wide), database app is the region's, the table list is
    this test's."""
    lines = []
    for line in documented_sql().splitlines():
        if "public.orders" not in line:
            lines.append(line)
            continue
        # the page's per-table lines, for each of this test's tables
        assert "(id)" in line or "UPDATE (" not in line, line
        lines += [line.replace("public.orders", t).replace("(id)", f"({k})")
                  for t, k in REPLICATED]
    sql = "\n".join(lines)
    for name in ("xregion_setup", "xregion_producer", "xregion_consumer",
                 "app_owner"):
        sql = re.sub(rf"\b{name}\b", f"{name}_{suffix}", sql)
    return re.sub(r"\bDATABASE app\b", f'DATABASE "{db}"', sql)


def role_dsn(node, role):
    return xrtest.pg_dsn(node.region, node.db, node.port).replace(
        "user=postgres", f"user={role}")


@pytest.fixture
def roles():
    suffix = uuid.uuid4().hex[:8]
    made = []

    def prepare(region, db):
        """Runs, as the superuser: the tables' owner, then the documented
        SQL.  The schema is the one the test made as postgres."""
        with xrtest.connect(region, db) as c:
            c.execute(f"CREATE ROLE app_owner_{suffix}")
            made.append(region)
            for t in ("orders", "items", "accounts", "users"):
                c.execute(f"ALTER TABLE {t} OWNER TO app_owner_{suffix}")
            c.execute(role_sql(suffix, db))
    yield suffix, prepare
    for region in made:
        with xrtest.connect(region) as c:
            c.execute(f"REVOKE SET ON PARAMETER session_replication_role "
                      f"FROM xregion_consumer_{suffix}")
            for r in ("xregion_setup", "xregion_producer", "xregion_consumer",
                      "app_owner"):
                c.execute(f"DROP ROLE IF EXISTS {r}_{suffix}")


class Proc:
    """One xregion process of a region under a role of its own."""

    def __init__(self, node, mode, role):
        self.log = os.path.join(node.dep.tmp, f"{node.region}.{mode}.log")
        self.logf = open(self.log, "a")
        env = {**node.env(), "XREGION_POSTGRES_DSN": role_dsn(node, role)}
        self.proc = subprocess.Popen([node.binary, mode, "-c", node.config],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=env)

    def read(self):
        with open(self.log) as f:
            return f.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        self.logf.close()
        return rc


def wait_for(proc, text, timeout=60):
    deadline = time.time() + timeout
    while text not in proc.read():
        assert proc.proc.poll() is None, proc.read()[-3000:]
        assert time.time() < deadline, f"no '{text}':\n{proc.read()[-3000:]}"
        time.sleep(0.1)


def workload(node, base):
    """Transactions as applications make them, in a key range of its own."""
    r = node.region
    with psycopg.connect(xrtest.pg_dsn(r, node.db)) as c:
        for i in range(base, base + 40):
            with c.transaction():
                c.execute("INSERT INTO orders VALUES (%s, %s, 1, 'new')", (i, r))
                c.execute("UPDATE orders SET qty = qty + 1 WHERE id = %s", (i,))
                c.execute("UPDATE orders SET note = %s WHERE id = %s",
                          ("x" * 5000 + str(i), i))             # TOASTed
                c.execute("INSERT INTO items SELECT %s, g, repeat('b', 3000) "
                          "FROM generate_series(1, 3) g", (f"{r}{i}",))
                c.execute("INSERT INTO accounts VALUES (%s, 100)", (i,))
                c.execute("INSERT INTO users VALUES (%s, 'p@example.com')", (i,))
        with c.transaction():
            c.execute("DELETE FROM orders WHERE id = %s", (base,))
            c.execute("INSERT INTO orders VALUES (%s, %s, 9, 'again')", (base, r))
            c.execute("UPDATE orders SET id = id + 1000 WHERE id = %s", (base + 1,))
            c.execute("UPDATE orders SET qty = 7 WHERE id = %s", (base + 2,))  # note unchanged
            c.execute("UPDATE accounts SET balance = balance - 5 WHERE id = %s",
                      (base + 3,))
            c.execute("DELETE FROM items WHERE sku = %s", (f"{r}{base + 4}",))
        with c.transaction():      # the same rows everywhere: conflicts
            c.execute("INSERT INTO orders SELECT g, %s, 0, 'contended' "
                      "FROM generate_series(900000, 900009) g "
                      "ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.region",
                      (r,))


def test_setup_producer_and_consumer_under_their_own_roles(roles):
    suffix, prepare = roles
    role = {k: f"xregion_{k}_{suffix}" for k in ("setup", "producer", "consumer")}

    d = None
    procs = {}
    try:
        d = Deployment(TABLES, SCHEMA, regions=REGIONS, setup=False)
        for r in REGIONS:
            n = d[r]
            prepare(r, n.db)
            d.env[r] = {"XREGION_POSTGRES_DSN": role_dsn(n, role["setup"])}
            n.xregion("setup")
            assert n.sql("SELECT nspowner::regrole::text FROM pg_namespace "
                         "WHERE nspname = 'xregion'") == [(role["setup"],)]
        for r in REGIONS:
            procs[r] = (Proc(d[r], "produce", role["producer"]),
                        Proc(d[r], "consume", role["consumer"]))
        for p, c in procs.values():
            wait_for(p, "streaming slot")
            wait_for(c, "subscribed to")
        for k, r in enumerate(REGIONS):
            workload(d[r], 1 + k * 10_000)
        d.converge("items", key="sku, part", expect_rows=3 * (40 * 3 - 3),
                   timeout=120)
        d["us"].sql("TRUNCATE items")
        d["eu"].sql("INSERT INTO items VALUES ('after-truncate', 1, 'eu')")
        for t, key in (("orders", "id"), ("items", "sku, part"),
                       ("accounts", "id")):
            d.converge(t, key=key, timeout=120)
        assert d["eu"].sql("SELECT count(*) FROM orders") == [(130,)]
        # a 500-row transaction: the fast path (origin and commit time of
        # the source set on the apply transaction), so no entries
        d["us"].sql("INSERT INTO orders SELECT g, 'us', 1, 'bulk' "
                    "FROM generate_series(100001, 100500) g")
        d.converge("orders", expect_rows=630, timeout=120)
        for r in ("eu", "apac"):
            assert d[r].sql('SELECT count(*) FROM xregion."public.orders" '
                            "WHERE id BETWEEN 100001 AND 100500") == [(0,)], r
        conflicts = sum(d[r].sql("SELECT count(*) FROM xregion.conflicts")[0][0]
                        for r in REGIONS)
        assert conflicts > 0, "the contended rows logged no conflict"
        assert d["us"].sql("SELECT count(*) FROM items") == [(1,)]
        for r in REGIONS:
            assert d[r].sql("SELECT count(*) FROM users") == [(40,)]   # its own only

        # every connection of each process ran as its role
        for r in REGIONS:
            users = {u for (u,) in d[r].sql(
                "SELECT usename FROM pg_stat_activity "
                "WHERE datname = current_database() AND usename <> 'postgres'")}
            assert users == {role["producer"], role["consumer"]}, (r, users)
        # the runtime roles are no superusers and cannot do more
        for forged in ("INSERT INTO orders VALUES (-1, 'us', 0, 'forged')",
                       "UPDATE orders SET qty = 0",
                       "DELETE FROM orders"):
            with psycopg.connect(role_dsn(d["us"], role["producer"])) as c:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(forged)
        with psycopg.connect(role_dsn(d["us"], role["consumer"])) as c:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute("CREATE SCHEMA nope")
        assert d["us"].sql(
            "SELECT rolname FROM pg_roles WHERE rolsuper AND rolname = ANY(%s)",
            ([role["producer"], role["consumer"], role["setup"]],)) == []

        # status reads schema xregion as a runtime role
        for k in ("producer", "consumer"):
            env = {**d["eu"].env(),
                   "XREGION_POSTGRES_DSN": role_dsn(d["eu"], role[k])}
            st = subprocess.run([d["eu"].binary, "status", "--json", "-c",
                                 d["eu"].config], capture_output=True,
                                text=True, env=env, timeout=60)
            assert "permission denied" not in st.stdout + st.stderr, st.stderr
            assert st.returncode in (0, 1), (k, st.returncode, st.stdout, st.stderr)
        for p, c in procs.values():
            logs = p.read() + c.read()
            assert "permission denied" not in logs, logs[-4000:]
            assert " ERROR [" not in logs, logs[-4000:]
            assert p.stop() == 0 and c.stop() == 0
        dl = sum(xrtest.topic_size(f"{d.prefix}.{r}._dlq") for r in REGIONS)
        assert dl == 0
    finally:
        for pc in procs.values():
            for p in pc:
                if p.proc.poll() is None:
                    p.proc.kill()
                    p.proc.wait()
        if d is not None:
            d.close()
