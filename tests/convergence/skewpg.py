"""A throwaway PostgreSQL 15 cluster whose clock is skewed with faketime.

The stack's clusters are shared with other tests, so a region that must run
on a skewed clock gets a cluster of its own: initdb into a temporary
directory, the settings scripts/stack.sh gives the stack's clusters, a free
port from 15444 up, and the server started with libfaketime preloaded
(FAKETIME='<skew>s', as `faketime -f '<skew>s' pg_ctl start` would), so that
every backend (now(), the commit timestamps that
track_commit_timestamp records and pgoutput sends) runs <skew> seconds off.
start() checks that the server's clock really is skewed and raises if not.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg

PG_BIN = os.environ.get("XR_PG_BIN", "/usr/lib/postgresql/15/bin")
FIRST_PORT = int(os.environ.get("XR_SKEW_PG_PORT", "15444"))

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
cluster_name = 'xregion-skew-{name}-{port}'
log_line_prefix = '%m [%p] %q%u@%d '
"""
HBA = """\
local   all          all                  trust
host    all          all   127.0.0.1/32   trust
host    replication  all   127.0.0.1/32   trust
"""


def libfaketime():
    """The path of libfaketime.so.1.

    The server gets it as LD_PRELOAD with FAKETIME set, which is what
    `faketime -f` does; the faketime wrapper itself is not used because it
    waits (on a pipe every descendant inherits) until the postmaster exits,
    so `faketime -f ... pg_ctl start` never returns.
    """
    for d in ("/usr/lib/x86_64-linux-gnu/faketime", "/usr/lib/aarch64-linux-gnu/faketime",
              "/usr/lib/faketime", "/usr/local/lib/faketime"):
        p = os.path.join(d, "libfaketime.so.1")
        if os.path.exists(p):
            return p
    raise RuntimeError("libfaketime.so.1 not found: run scripts/install-deps.sh "
                       "(it installs faketime)")


def _as_owner(cmd):
    """PostgreSQL refuses to run as root: as root, run cmd as user postgres
    (as stack.sh does)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class SkewedCluster:
    """One cluster for one region, its clock off by skew seconds (negative:
    behind).  start() / stop(); usable as a context manager."""

    def __init__(self, name, skew):
        self.name = name
        self.skew = float(skew)
        self.port = None
        self.root = None
        self.data = None
        self.logfile = None
        self.running = False

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def dsn(self, db="postgres"):
        return f"host=127.0.0.1 port={self.port} dbname={db} user=postgres"

    def _run(self, cmd, what, timeout=120):
        r = subprocess.run(_as_owner(cmd), capture_output=True, text=True,
                           timeout=timeout, cwd="/")
        if r.returncode:
            log = ""
            if self.logfile and os.path.exists(self.logfile):
                with open(self.logfile) as f:
                    log = f.read()[-3000:]
            raise RuntimeError(f"skewed cluster {self.name}: {what} exited "
                               f"{r.returncode}:\n{r.stdout}{r.stderr}{log}")
        return r

    def start(self):
        libfaketime()                      # fail early when it is missing
        self.root = tempfile.mkdtemp(prefix=f"xrconv-pg-{self.name}-")
        os.chmod(self.root, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = os.path.join(self.root, "data")
        self.logfile = os.path.join(self.root, "postgres.log")
        self._run([f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--locale=C"], "initdb")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write(HBA)
        # Another session may take the port between the check and the
        # start: then try the next one.
        port = FIRST_PORT
        for _ in range(40):
            while not _port_free(port):
                port += 1
            self._write_conf(port)
            try:
                self._run(["env", f"LD_PRELOAD={libfaketime()}",
                           f"FAKETIME={self.skew:+g}s",
                           f"{PG_BIN}/pg_ctl", "start", "-D", self.data,
                           "-l", self.logfile, "-w", "-t", "60"], "pg_ctl start")
                self.port = port
                break
            except RuntimeError:
                if _port_free(port):
                    raise          # not a port clash
                port += 1
        else:
            raise RuntimeError(f"skewed cluster {self.name}: no free port")
        self.running = True
        self.check_skew()

    def _write_conf(self, port):
        conf = os.path.join(self.data, "postgresql.auto.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(port=port, name=self.name))
        if os.geteuid() == 0:
            shutil.chown(conf, "postgres", "postgres")
            shutil.chown(os.path.join(self.data, "pg_hba.conf"),
                         "postgres", "postgres")

    def measured_skew(self):
        """(now() - host clock, commit timestamp - host clock), in seconds,
        as the server sees them."""
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            t0 = time.time()
            now = c.execute("SELECT extract(epoch FROM now())::float8").fetchone()[0]
            t1 = time.time()
            with c.transaction():
                xid = c.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
            t2 = time.time()
            cts = c.execute("SELECT extract(epoch FROM pg_xact_commit_timestamp("
                            "%s::xid))::float8", (xid,)).fetchone()[0]
        return now - (t0 + t1) / 2, cts - t2

    def check_skew(self, tolerance=2.0):
        """Raises unless both now() and commit timestamps are off by the
        requested skew (within tolerance seconds)."""
        now_off, commit_off = self.measured_skew()
        if abs(now_off - self.skew) > tolerance or \
           abs(commit_off - self.skew) > tolerance:
            raise RuntimeError(
                f"skewed cluster {self.name} on port {self.port}: asked for "
                f"{self.skew:+g} s, but now() is off by {now_off:+.2f} s and "
                f"commit timestamps by {commit_off:+.2f} s (is faketime's "
                f"LD_PRELOAD reaching postgres?)")
        return now_off, commit_off

    def stop(self):
        try:
            if self.running:
                self._run([f"{PG_BIN}/pg_ctl", "stop", "-D", self.data,
                           "-m", "immediate", "-w", "-t", "60"], "pg_ctl stop")
                self.running = False
        finally:
            if self.root and not self.running:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
