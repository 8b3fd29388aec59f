"""Throwaway PostgreSQL clusters for tests that need one of their own: a
primary with a physical standby (test_failover.py), or a cluster whose clock
is skewed (tests/convergence/skewpg.py).

A cluster is initdb'd into a temporary directory with the settings
scripts/stack.sh gives the stack's clusters, on a free port from
XR_OWN_PG_PORT (default 15444) up, and run as the postgres user when the
tests run as root (PostgreSQL refuses to run as root).  The binaries are
XR_PG_BIN's (scripts/test.sh sets it for each PostgreSQL version).
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psycopg

PG_BIN = os.environ.get("XR_PG_BIN", "/usr/lib/postgresql/15/bin")
FIRST_PORT = int(os.environ.get("XR_OWN_PG_PORT",
                                os.environ.get("XR_SKEW_PG_PORT", "15444")))

# The stack's settings (scripts/stack.sh, pg_write_config), with room for
# the slots and replication origins of a test deployment.
CONF = """\
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
wal_level = logical
track_commit_timestamp = on
max_replication_slots = 20
max_wal_senders = 20
max_connections = 100
cluster_name = 'xregion-{name}-{port}'
log_line_prefix = '%m [%p] %q%u@%d '
"""
HBA = """\
local   all          all                  trust
host    all          all   127.0.0.1/32   trust
host    replication  all   127.0.0.1/32   trust
"""


def as_owner(cmd):
    """As root, cmd run as user postgres (as stack.sh does)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def server_version_num(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        return int(c.execute("SHOW server_version_num").fetchone()[0])


class Cluster:
    """One cluster.  settings: more postgresql.conf lines; env: more
    environment for the server (e.g. libfaketime's).  start() / stop();
    usable as a context manager."""

    def __init__(self, name, settings="", env=None, files=None, hba=HBA):
        """files: {name: text} written into the data directory before the
        server starts (a key gets mode 0600); hba: pg_hba.conf."""
        self.name = name
        self.settings = settings
        self.env = dict(env or {})
        self.files = dict(files or {})
        self.hba = hba
        # A relocatable build (PyPI's) brings its own libpq: the server's
        # walreceiver must load it, not the system's older one.
        lib = os.path.realpath(os.path.join(PG_BIN, "..", "lib"))
        if os.path.exists(os.path.join(lib, "libpq.so.5")):
            self.env.setdefault("LD_LIBRARY_PATH", lib)
        self.port = None
        self.root = None
        self.data = None
        self.logfile = None
        self.running = False
        self.halted = False   # stopped by halt(), its data kept

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def dsn(self, db="postgres"):
        return f"host=127.0.0.1 port={self.port} dbname={db} user=postgres"

    def connect(self, db="postgres"):
        return psycopg.connect(self.dsn(db), autocommit=True)

    def run(self, cmd, what, timeout=120):
        r = subprocess.run(as_owner(cmd), capture_output=True, text=True,
                           timeout=timeout, cwd="/")
        if r.returncode:
            raise RuntimeError(f"cluster {self.name}: {what} exited "
                               f"{r.returncode}:\n{r.stdout}{r.stderr}"
                               f"{self.log_tail()}")
        return r

    def log_tail(self, n=3000):
        if self.logfile and os.path.exists(self.logfile):
            with open(self.logfile) as f:
                return f.read()[-n:]
        return ""

    def _make_root(self):
        self.root = tempfile.mkdtemp(prefix=f"xr-pg-{self.name}-")
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = os.path.join(self.root, "data")
        self.logfile = os.path.join(self.root, "postgres.log")

    def start(self):
        """initdb, then start on a free port."""
        self._make_root()
        self.run([f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--locale=C"], "initdb")
        self._write("pg_hba.conf", self.hba)
        for name, text in self.files.items():
            self._write(name, text)
            if name.endswith(".key"):
                os.chmod(os.path.join(self.data, name), 0o600)
        self._start_on_free_port()

    def start_standby_of(self, primary, slot):
        """A physical standby of primary (pg_basebackup -R through the
        physical slot slot, which this creates), started on a free port."""
        self._make_root()
        with primary.connect() as c:
            c.execute("SELECT pg_create_physical_replication_slot(%s)", (slot,))
        # dbname in primary_conninfo: slot synchronization needs it.
        self.run([f"{PG_BIN}/pg_basebackup", "-D", self.data, "-R", "-S", slot,
                  "-X", "stream", "-c", "fast",
                  "-d", primary.dsn()], "pg_basebackup")
        # -R wrote primary_conninfo and primary_slot_name after a copy of
        # the primary's own settings, which are not the standby's.
        with open(os.path.join(self.data, "postgresql.auto.conf")) as f:
            self.settings += "".join(line for line in f if line.startswith(
                ("primary_conninfo", "primary_slot_name")))
        self._start_on_free_port()

    def _write(self, name, text, mode="w"):
        path = os.path.join(self.data, name)
        with open(path, mode) as f:
            f.write(text)
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def _start_on_free_port(self):
        # Another session may take the port between the check and the
        # start: then try the next one.
        port = FIRST_PORT
        for _ in range(40):
            while not port_free(port):
                port += 1
            self._write("postgresql.auto.conf",
                        CONF.format(port=port, name=self.name) + self.settings)
            try:
                self.run(["env", *(f"{k}={v}" for k, v in self.env.items()),
                          f"{PG_BIN}/pg_ctl", "start", "-D", self.data,
                          "-l", self.logfile, "-w", "-t", "60"], "pg_ctl start")
                self.port = port
                break
            except RuntimeError:
                if port_free(port):
                    raise          # not a port clash
                port += 1
        else:
            raise RuntimeError(f"cluster {self.name}: no free port")
        self.running = True

    def postmaster_pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def kill9(self):
        """kill -9 of the postmaster: its backends exit when they notice."""
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        # (Its backends exit on their own once they notice.)
        while time.time() < deadline and not port_free(self.port):
            time.sleep(0.1)
        self.running = False

    def halt(self):
        """Stops the server (fast shutdown) and keeps its data: resume()
        starts it again on the same port."""
        self.run([f"{PG_BIN}/pg_ctl", "stop", "-D", self.data, "-m", "fast",
                  "-w", "-t", "60"], "pg_ctl stop")
        self.halted = True

    def resume(self):
        self.run(["env", *(f"{k}={v}" for k, v in self.env.items()),
                  f"{PG_BIN}/pg_ctl", "start", "-D", self.data,
                  "-l", self.logfile, "-w", "-t", "60"], "pg_ctl start")
        self.halted = False

    def promote(self):
        self.run([f"{PG_BIN}/pg_ctl", "promote", "-D", self.data, "-w",
                  "-t", "60"], "pg_ctl promote")

    def stop(self):
        """Stops the server if it runs and removes its data."""
        try:
            if self.running and not self.halted:
                self.run([f"{PG_BIN}/pg_ctl", "stop", "-D", self.data,
                          "-m", "immediate", "-w", "-t", "60"], "pg_ctl stop")
                self.running = False
        finally:
            if self.halted:
                self.running = self.halted = False
            if self.root and not self.running:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
