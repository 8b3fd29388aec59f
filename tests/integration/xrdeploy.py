"""A throwaway three-region deployment for consumer tests.

Each region is a fresh database in its own PostgreSQL cluster of the local
stack (us 15432, eu 15433, apac 15434) running `xregion run`; all three share
a fresh topic prefix, so tests see only their own events.

A table is (name, pii) or (name, pii, {"conflict": "vclock", ...}): the
mapping's items become more keys of its tables[] entry.  ports maps a
region to the port of a cluster of its own (say one run under faketime)
instead of the stack's.
"""
import os
import signal
import subprocess
import tempfile
import time
import uuid

import psycopg

import xrtest

REGIONS = ("us", "eu", "apac")


class Node:
    def __init__(self, dep, region, tables, extra="", consumer=(), kafka=(),
                 postgres=()):
        self.dep = dep
        self.region = region
        self.db = f"xrd_{dep.suffix}_{region}"
        self.slot = f"xrd_{dep.suffix}_{region}"
        self.config = os.path.join(dep.tmp, f"{region}.yaml")
        self.log = os.path.join(dep.tmp, f"{region}.log")
        self.proc = None
        self.port = dep.ports.get(region)
        # the xregion it runs (another build: mixed versions)
        self.binary = dep.binaries.get(region, xrtest.XREGION)
        with xrtest.connect(region, port=self.port) as c:
            c.execute(f'CREATE DATABASE "{self.db}"')
        lines = [
            f"region: {region}",
            f"regions: [{', '.join(dep.regions)}]",
            "log_level: info",
            "postgres:",
            f'  dsn: "{xrtest.pg_dsn(region, self.db, self.port)}"',
            f"  slot: {self.slot}",
            *(f"  {line}" for line in postgres),
            "kafka:",
            f"  brokers: {dep.brokers}",
            f"  topic_prefix: {dep.prefix}",
            "  partitions: 3",
            *(f"  {line}" for line in kafka),
            "producer:",
            "  status_interval_ms: 1000",
            "consumer:",
            "  batch_linger_ms: 20",
            *(f"  {line}" for line in consumer),
            "tables:",
        ]
        for name, pii, *more in tables:
            lines += [f"  - name: {name}", f"    pii: {'true' if pii else 'false'}"]
            # more: further keys of the entry, as {"conflict": "vclock"}
            # mappings or "conflict: vclock" lines
            for m in more:
                items = m.items() if isinstance(m, dict) else [m.split(": ", 1)]
                lines += [f"    {k}: {v}" for k, v in items]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n" + extra)

    def sql(self, statement, params=None):
        with xrtest.connect(self.region, self.db, self.port) as c:
            cur = c.execute(statement, params)
            return cur.fetchall() if cur.description else None

    def xregion(self, *args, check=True, timeout=120):
        r = subprocess.run([self.binary, *args, "-c", self.config],
                           capture_output=True, text=True, timeout=timeout,
                           env=self.env())
        if check and r.returncode:
            raise AssertionError(f"xregion {args} ({self.region}) exited "
                                 f"{r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def start(self, mode="run"):
        assert self.proc is None
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([self.binary, mode, "-c", self.config],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=self.env())

    def env(self):
        """The environment of its xregion commands: the test's, and the
        deployment's variables for this region (secrets)."""
        return {**os.environ, **self.dep.env.get(self.region, {})}

    def wait_log(self, text, timeout=60, count=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.read_log().count(text) >= count:
                return
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"{self.region} exited {self.proc.returncode}:"
                                     f"\n{self.read_log()[-4000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no '{text}' in {self.region} log:\n"
                             f"{self.read_log()[-4000:]}")

    def read_log(self):
        with open(self.log) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=60)
        self.proc = None
        self.logf.close()
        return rc

    def checksum(self, table, key="id"):
        return self.sql(f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' "
                        f"ORDER BY {key}), '')) FROM {table} t")[0]

    def close(self):
        if self.proc is not None:
            self.stop(signal.SIGKILL)
        xrtest.drop_region_objects(self.region, self.slot, self.db, self.port)


class Deployment:
    def __init__(self, tables, schema_sql, regions=REGIONS, extra="",
                 ports=None, consumer=(), kafka=(), postgres=(), brokers=None,
                 env=None, prefix=None, binaries=None, setup=True):
        """consumer, kafka, postgres: further lines of each region's
        consumer:, kafka: and postgres: sections (kafka and postgres may map
        a region to its own lines);
        schema_sql may map a region to its own DDL; brokers: another
        Kafka than the stack's; env: a region's further environment;
        binaries: a region's xregion executable, if not the tests' one;
        setup=False: the test runs each region's setup itself."""
        self.suffix = uuid.uuid4().hex[:8]
        self.ports = ports or {}
        self.prefix = prefix or f"xrd{self.suffix}"
        self.brokers = brokers or xrtest.BROKERS
        self.env = env or {}
        self.binaries = binaries or {}
        self.regions = regions
        self.tmp = tempfile.mkdtemp(prefix="xrd-")
        self.nodes = {}
        try:
            for r in regions:
                self.nodes[r] = Node(self, r, tables,
                                     extra.get(r, "") if isinstance(extra, dict)
                                     else extra, consumer,
                                     kafka.get(r, ()) if isinstance(kafka, dict)
                                     else kafka,
                                     postgres.get(r, ()) if isinstance(postgres, dict)
                                     else postgres)
                self.nodes[r].sql(schema_sql.get(r, "")
                                  if isinstance(schema_sql, dict)
                                  else schema_sql)
            for n in self.nodes.values() if setup else ():
                n.xregion("setup")
        except Exception:
            self.close()
            raise

    def __getitem__(self, region):
        return self.nodes[region]

    def start(self):
        for n in self.nodes.values():
            n.start()
        for n in self.nodes.values():
            n.wait_log("streaming slot")
            n.wait_log("subscribed to")

    def converge(self, table, key="id", timeout=90, expect_rows=None):
        """Waits until table has the same checksum in every region."""
        deadline = time.time() + timeout
        while True:
            sums = {r: n.checksum(table, key) for r, n in self.nodes.items()}
            if len(set(sums.values())) == 1 and \
               (expect_rows is None or next(iter(sums.values()))[0] == expect_rows):
                return next(iter(sums.values()))
            if time.time() > deadline:
                logs = "\n".join(f"--- {r}\n{n.read_log()[-3000:]}"
                                 for r, n in self.nodes.items())
                raise AssertionError(f"{table} did not converge: {sums}\n{logs}")
            time.sleep(0.3)

    def close(self):
        for n in self.nodes.values():
            try:
                n.close()
            except Exception as e:  # keep closing the others
                print(f"closing {n.region}: {e}")
        if self.brokers != xrtest.BROKERS:
            return   # another broker's topics: its owner cleans up
        admin = xrtest.AdminClient({"bootstrap.servers": xrtest.BROKERS})
        mine = [t for t in admin.list_topics(timeout=10).topics
                if t.startswith(self.prefix + ".")]
        if mine:
            for f in admin.delete_topics(mine).values():
                try:
                    f.result()
                except Exception:
                    pass
