"""A throwaway PostgreSQL cluster whose clock is skewed with faketime.

The stack's clusters are shared with other tests, so a region that must run
on a skewed clock gets a cluster of its own (pgcluster.Cluster: a temporary
directory, the stack's settings, a free port from 15444 up), started with
libfaketime preloaded (FAKETIME='<skew>s', as `faketime -f '<skew>s'
pg_ctl start` would), so that every backend (now(), the commit timestamps
that track_commit_timestamp records and pgoutput sends) runs <skew> seconds
off.  start() checks that the server's clock really is skewed and raises if
not.
"""
import os
import sys
import time

_INTEGRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                            "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

import pgcluster  # noqa: E402
import psycopg  # noqa: E402

PG_BIN = pgcluster.PG_BIN


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


class SkewedCluster(pgcluster.Cluster):
    """One cluster for one region, its clock off by skew seconds (negative:
    behind).  start() / stop(); usable as a context manager."""

    def __init__(self, name, skew):
        self.skew = float(skew)
        super().__init__(f"skew-{name}", env={"LD_PRELOAD": libfaketime(),
                                              "FAKETIME": f"{self.skew:+g}s"})
        self.region = name

    def start(self):
        super().start()
        self.check_skew()

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
