"""The convergence test's tables and its random writers.

Every region runs writer threads that insert, update and delete rows of a
small key space (so that the regions' writes conflict often), sometimes
several rows in one transaction, sometimes one row several times (insert
then update, delete then re-insert), and log every row change they commit.  A
write's row image is fully determined by the write: val is unique in the
whole run ("<region>.<worker>.<n>"), so a final row can always be traced
back to the write that made it.

Shape "a" tables carry TOASTed values: one note in ten is a ~6 kB value
that PostgreSQL stores out of line, and some updates and key changes leave
it unchanged (pgoutput then sends no value for it).  The bulk tables take,
from one BulkWriter per region, transactions of thousands of rows (inserts,
updates and deletes of a block of keys) racing the other regions' ones.
"""
import os
import random
import sys
import threading
import time

# xrtest and xrdeploy live with the integration tests.
_INTEGRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

import psycopg
from psycopg.types.json import Jsonb

import xrtest

# Errors a writer expects from concurrency (with the other writers and with
# the local consumer): the transaction is rolled back and nothing is logged.
RETRYABLE = (psycopg.errors.DeadlockDetected,
             psycopg.errors.SerializationFailure,
             psycopg.errors.UniqueViolation,
             psycopg.errors.LockNotAvailable)


class Unseen(Exception):
    """A bulk upsert updated a row its transaction had not read."""


class Table:
    """One test table.  mode: "lww" or "vclock" (replicated with that
    conflict mode) or "pii" (never leaves its region).  shape "a": key id,
    key changes allowed, a note that may be TOASTed; shape "b": composite
    key (grp, id) and a jsonb; shape "u": key id and email UNIQUE, from 15
    values (or NULL), so that regions give one email to two keys often;
    shape "bulk": key id over bulk_keys keys, written only by BulkWriter."""

    def __init__(self, name, mode, shape, bulk_keys=0):
        self.name = name
        self.mode = mode
        self.shape = shape
        if shape == "a":
            self.key_cols = ("id",)
            self.cols = ("id", "val", "origin", "n", "note")
            self.keys = [(i,) for i in range(1, 51)]
            self.ddl = (f"CREATE TABLE {name} (id int PRIMARY KEY, val text NOT NULL, "
                        "origin text NOT NULL, n int NOT NULL, note text);")
        elif shape == "u":
            self.key_cols = ("id",)
            self.cols = ("id", "email", "val", "origin")
            self.keys = [(i,) for i in range(1, 51)]
            self.emails = [f"e{i}@x" for i in range(1, 16)]
            self.ddl = (f"CREATE TABLE {name} (id int PRIMARY KEY, email text UNIQUE, "
                        "val text NOT NULL, origin text NOT NULL);")
        elif shape == "bulk":
            self.key_cols = ("id",)
            self.cols = ("id", "val", "origin", "n")
            self.keys = [(i,) for i in range(1, bulk_keys + 1)]
            self.ddl = (f"CREATE TABLE {name} (id int PRIMARY KEY, val text NOT NULL, "
                        "origin text NOT NULL, n int NOT NULL);")
        else:
            self.key_cols = ("grp", "id")
            self.cols = ("grp", "id", "val", "origin", "doc")
            self.keys = [(g, i) for g in range(1, 6) for i in range(1, 11)]
            self.ddl = (f"CREATE TABLE {name} (grp int, id int, val text NOT NULL, "
                        "origin text NOT NULL, doc jsonb, PRIMARY KEY (grp, id));")
        self.data_cols = tuple(c for c in self.cols if c not in self.key_cols)
        where = " AND ".join(f"{c} = %s" for c in self.key_cols)
        self.sql_prev = (f"SELECT val{', note' if shape == 'a' else ''} "
                         f"FROM {name} WHERE {where} FOR UPDATE")
        # A plain insert: if another transaction (another writer, or the
        # consumer's apply) inserts the key meanwhile, it fails and the
        # transaction rolls back, so a logged insert replaced no row.
        self.sql_insert = (
            f"INSERT INTO {name} ({', '.join(self.cols)}) VALUES "
            f"({', '.join(['%s'] * len(self.cols))})")
        self.sql_update = (f"UPDATE {name} SET "
                           + ", ".join(f"{c} = %s" for c in self.data_cols)
                           + f" WHERE {where}")
        self.sql_delete = f"DELETE FROM {name} WHERE {where} RETURNING val"
        # vclock: the clock and rank the trigger gave the write just made
        # (the versions entry, locked by this transaction until it commits).
        self.sql_vc = (f'SELECT ts, rnk FROM xregion."public.{name}" '
                       f"WHERE {where}")
        # lww (clock: hybrid): the version time the clock trigger gave the
        # write just made, if it moved the time (the key's entry, written
        # by this transaction: a tombstone for a delete); else none, and
        # the write's version time is its commit time.
        self.sql_vts = (f'SELECT ts FROM xregion."public.{name}" v '
                        f"WHERE {where} AND v.xid = pg_current_xact_id() "
                        "AND v.ts IS NOT NULL AND v.deleted = %s")
        self.tiebreak = None
        if shape == "a":
            self.sql_move = (f"UPDATE {name} SET id = %s, "
                             + ", ".join(f"{c} = %s" for c in self.data_cols)
                             + " WHERE id = %s")
            # the same, leaving the (maybe TOASTed) note unchanged
            kept = [c for c in self.data_cols if c != "note"]
            self.sql_touch = (f"UPDATE {name} SET "
                              + ", ".join(f"{c} = %s" for c in kept)
                              + f" WHERE {where}")
            self.sql_move_keep = (f"UPDATE {name} SET id = %s, "
                                  + ", ".join(f"{c} = %s" for c in kept)
                                  + " WHERE id = %s")

    @property
    def replicated(self):
        return self.mode != "pii"

    def config_entry(self, tiebreak=None):
        """The (name, pii, options) entry for xrdeploy."""
        if self.mode == "pii":
            return (f"public.{self.name}", True)
        opts = {"conflict": self.mode}
        if self.mode == "vclock" and tiebreak:
            opts["tiebreak"] = tiebreak
            self.tiebreak = tiebreak
        return (f"public.{self.name}", False, opts)

    def new_row(self, key, val, region, rnd):
        """The row a write stores, as JSON values (what to_jsonb gives)."""
        if self.shape == "a":
            note = rnd.choice([None, "", "x", f"note {val}"])
            if rnd.random() < 0.1:
                # random hex barely compresses: stored out of line
                note = f"big {val} " + rnd.randbytes(3000).hex()
            return {"id": key[0], "val": val, "origin": region,
                    "n": rnd.randint(-1000, 1000), "note": note}
        if self.shape == "u":
            return {"id": key[0], "val": val, "origin": region,
                    "email": None if rnd.random() < 0.1 else rnd.choice(self.emails)}
        if self.shape == "bulk":
            return {"id": key[0], "val": val, "origin": region,
                    "n": rnd.randint(-1000, 1000)}
        return {"grp": key[0], "id": key[1], "val": val, "origin": region,
                "doc": rnd.choice([None, {"w": val, "k": [key[0], key[1]]},
                                   {"nested": {"a": rnd.randint(0, 9)}}])}

    def params(self, row):
        return [Jsonb(row[c]) if c == "doc" and row[c] is not None else row[c]
                for c in self.cols]

    def data_params(self, row):
        return [Jsonb(row[c]) if c == "doc" and row[c] is not None else row[c]
                for c in self.data_cols]


def tables_for(modes, bulk_keys=0):
    """Three tables per conflict mode (shapes a, b and u: lww_u and vc_u have
    a secondary unique key), with bulk_keys a bulk table per mode, and one
    PII table."""
    out = []
    for m in modes:
        p = {"lww": "lww", "vclock": "vc"}[m]
        out += [Table(f"{p}_a", m, "a"), Table(f"{p}_b", m, "b"),
                Table(f"{p}_u", m, "u")]
        if bulk_keys:
            out.append(Table(f"{p}_bulk", m, "bulk", bulk_keys))
    out.append(Table("pii_notes", "pii", "a"))
    return out


class WriteLog:
    """Every committed row change of one region, in that region's commit
    order (a writer appends under the lock right after COMMIT returns; for
    two writes to one key, the row lock orders their commits and appends).

    A record: region, worker, tx (the region's transaction count), xid,
    table, key (tuple), op (insert | update | delete | move-out | move-in),
    row (dict, None for delete and move-out), prev (the val the write saw
    and replaced, None when there was no row), cts (commit timestamp in µs
    since the epoch, filled in by fill_commit_ts after the run), ts (the
    write's LWW version time: vts, the time the hybrid clock trigger gave
    it, if it moved the time, else cts).
    """

    def __init__(self, region):
        self.region = region
        self.records = []
        self.txs = 0
        self.aborted = 0
        self.lock = threading.Lock()

    def commit(self, records):
        with self.lock:
            self.txs += 1
            for r in records:
                r["tx"] = self.txs
                self.records.append(r)

    def events(self, table):
        """How many change events the region's producer must publish for
        table: one per row change, a key change being one."""
        return sum(1 for r in self.records
                   if r["table"] == table and r["op"] != "move-in")

    def fill_commit_ts(self, node):
        """Looks up every logged transaction's commit timestamp (µs) in the
        region's own database (track_commit_timestamp): the ts of the
        write's LWW version."""
        xids = sorted({r["xid"] for r in self.records})
        ts = {}
        for i in range(0, len(xids), 5000):
            rows = node.sql(
                "SELECT x, (extract(epoch FROM pg_xact_commit_timestamp(x::xid))"
                " * 1000000)::bigint FROM unnest(%s::text[]) x", (xids[i:i + 5000],))
            ts.update(rows)
        for r in self.records:
            r["cts"] = ts[r["xid"]]
            r["ts"] = r.get("vts") or r["cts"]


class Writer(threading.Thread):
    """One writer thread of one region, until stop is set."""

    def __init__(self, node, wid, tables, log, stop, seed, pause_ms=0):
        super().__init__(name=f"writer-{node.region}-{wid}", daemon=True)
        self.node = node
        self.wid = wid
        self.tables = [t for t in tables if t.shape != "bulk"]
        self.log = log
        self.stop = stop
        self.rnd = random.Random(seed)
        self.pause = pause_ms / 1000.0
        self.n = 0
        self.error = None

    def run(self):
        try:
            dsn = xrtest.pg_dsn(self.node.region, self.node.db, self.node.port)
            with psycopg.connect(dsn, autocommit=True) as conn:
                while not self.stop.is_set():
                    self.one_tx(conn)
                    if self.pause:
                        time.sleep(self.rnd.uniform(0, 2 * self.pause))
        except Exception as e:  # reported by the caller
            self.error = e

    def pick(self):
        """1 row (3 in 4 transactions) or 2 to 4 rows of distinct keys."""
        n = 1 if self.rnd.random() < 0.75 else self.rnd.randint(2, 4)
        picks = set()
        while len(picks) < n:
            t = self.rnd.choice(self.tables)
            picks.add((t.name, self.rnd.choice(t.keys)))
        by_name = {t.name: t for t in self.tables}
        return [(by_name[n], k) for n, k in sorted(picks)]

    def one_tx(self, conn):
        region = self.node.region
        picks = self.pick()
        busy = {(t.name, k) for t, k in picks}
        records = []
        try:
            with conn.transaction():
                xid = conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
                for t, key in picks:
                    records += self.one_row(conn, t, key, busy)
        except RETRYABLE:
            with self.log.lock:
                self.log.aborted += 1
            return
        for r in records:
            r.update(region=region, worker=self.wid, xid=xid)
        if records:
            self.log.commit(records)

    def next_val(self):
        self.n += 1
        return f"{self.node.region}.{self.wid}.{self.n}"

    def one_row(self, conn, t, key, busy, op=None):
        """Writes one row, and in one case in four writes it again in the
        same transaction (up to four writes: an insert then an update, a
        delete then a re-insert, two updates, a key change then an insert
        of the freed key); returns the records of what changed, in order,
        with, for vclock tables, the hybrid clock and rank of each, read
        back right after the write."""
        records = []
        for _ in range(4):
            got = self.write_row(conn, t, key, busy, op)
            op = None
            for r in got:
                if t.mode == "vclock":
                    r["hlc"], r["rnk"] = conn.execute(t.sql_vc, r["key"]).fetchone()
                elif t.mode == "lww":
                    v = conn.execute(t.sql_vts, [*r["key"], r["row"] is None]).fetchone()
                    r["vts"] = v[0] if v else None
            records += got
            if not got or self.rnd.random() >= 0.25:
                break
        return records

    def write_row(self, conn, t, key, busy, op=None):
        got = conn.execute(t.sql_prev, key).fetchone()
        prev = got[0] if got else None
        # touch and move-keep leave the note as it is (unchanged TOAST)
        op = op or self.rnd.choices(["upsert", "update", "delete", "move", "touch",
                                     "move-keep"], [40, 20, 20, 6, 10, 4])[0]
        if op in ("move", "touch", "move-keep") and (t.shape != "a" or prev is None):
            op = "upsert"
        keep = op in ("touch", "move-keep")
        if keep:
            op = {"touch": "update", "move-keep": "move"}[op]
        rec = {"table": t.name, "key": key, "prev": prev}
        if op == "delete":
            if prev is None:
                return []
            conn.execute(t.sql_delete, key)
            return [dict(rec, op="delete", row=None)]
        if op == "update" and prev is None:
            return []
        if op == "move":
            new = self.rnd.choice(t.keys)
            if new == key or (t.name, new) in busy or \
               conn.execute(t.sql_prev, new).fetchone():
                return []
            busy.add((t.name, new))
            row = t.new_row(new, self.next_val(), self.node.region, self.rnd)
            if keep:
                row["note"] = got[1]
                conn.execute(t.sql_move_keep, [new[0], row["val"], row["origin"],
                                               row["n"], key[0]])
            else:
                conn.execute(t.sql_move, [new[0], *t.data_params(row), key[0]])
            return [dict(rec, op="move-out", row=None),
                    {"table": t.name, "key": new, "prev": None,
                     "op": "move-in", "row": row}]
        row = t.new_row(key, self.next_val(), self.node.region, self.rnd)
        if prev is None:
            conn.execute(t.sql_insert, t.params(row))
            return [dict(rec, op="insert", row=row)]
        if keep:
            row["note"] = got[1]
            conn.execute(t.sql_touch, [row["val"], row["origin"], row["n"], *key])
        else:
            conn.execute(t.sql_update, [*t.data_params(row), *key])
        return [dict(rec, op="update", row=row)]


class Racer(Writer):
    """Forces a local delete to race an apply (issue "Convergence holes",
    case 2), over and over, until stop is set: it locks a random row of a
    replicated table, holds the lock until the region's consumer has an
    apply waiting for it (pg_blocking_pids names this backend) or for at
    most `hold` seconds, then deletes the row or changes its key, and
    commits.  `forced` counts the transactions an apply really waited for;
    their writes go to the region's log like any writer's."""

    def __init__(self, node, tables, log, stop, seed, hold=1.5):
        super().__init__(node, "race", tables, log, stop, seed)
        self.name = f"racer-{node.region}"
        self.tables = [t for t in self.tables if t.replicated]
        self.hold = hold
        self.forced = 0
        self.watch = None

    def run(self):
        dsn = xrtest.pg_dsn(self.node.region, self.node.db, self.node.port)
        try:
            with psycopg.connect(dsn, autocommit=True) as self.watch:
                super().run()
        except Exception as e:  # reported by the caller
            self.error = self.error or e

    def apply_waits_for(self, pid):
        """Waits until some other backend waits for pid; True if one did
        within self.hold seconds."""
        end = time.time() + self.hold
        while time.time() < end and not self.stop.is_set():
            if self.watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                    "current_database() AND %s = ANY (pg_blocking_pids(pid))",
                    (pid,)).fetchone()[0]:
                return True
            time.sleep(0.02)
        return False

    def one_tx(self, conn):
        t = self.rnd.choice(self.tables)
        key = self.rnd.choice(t.keys)
        op = "move" if t.shape == "a" and self.rnd.random() < 0.3 else "delete"
        records = []
        waited = False
        try:
            with conn.transaction():
                xid, pid = conn.execute("SELECT pg_current_xact_id()::text, "
                                        "pg_backend_pid()").fetchone()
                if conn.execute(t.sql_prev, key).fetchone() is None:
                    return
                waited = self.apply_waits_for(pid)
                records = self.one_row(conn, t, key, {(t.name, key)}, op)
        except RETRYABLE:
            with self.log.lock:
                self.log.aborted += 1
            return
        for r in records:
            r.update(region=self.node.region, worker=self.wid, xid=xid)
        if records:
            self.log.commit(records)
            self.forced += waited
        self.stop.wait(self.rnd.uniform(0.1, 0.5))


class BulkWriter(threading.Thread):
    """One region's writer of large transactions: every `every` seconds
    (first after a random part of it), one transaction over a random block
    of `rows` keys of each bulk table: the block's rows are locked and read,
    one in ten present rows is deleted, the others updated, the absent ones
    inserted; until stop is set."""

    def __init__(self, node, tables, log, stop, seed, rows, every):
        super().__init__(name=f"bulk-{node.region}", daemon=True)
        self.node = node
        self.tables = [t for t in tables if t.shape == "bulk"]
        self.log = log
        self.stop = stop
        self.rnd = random.Random(seed)
        self.rows = rows
        self.every = every
        self.n = 0
        self.error = None
        self.done = 0

    def run(self):
        try:
            dsn = xrtest.pg_dsn(self.node.region, self.node.db, self.node.port)
            with psycopg.connect(dsn, autocommit=True) as conn:
                wait = self.rnd.uniform(0.1, 0.6) * self.every
                while not self.stop.wait(wait):
                    for t in self.tables:
                        self.one_tx(conn, t)
                    wait = self.every
        except Exception as e:  # reported by the caller
            self.error = e

    def one_tx(self, conn, t):
        region = self.node.region
        lo = self.rnd.randint(1, max(1, len(t.keys) - self.rows + 1))
        hi = lo + self.rows - 1
        records = []
        try:
            with conn.transaction():
                xid = conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
                prev = dict(conn.execute(
                    f"SELECT id, val FROM {t.name} WHERE id BETWEEN %s AND %s "
                    "ORDER BY id FOR UPDATE", (lo, hi)).fetchall())
                gone = [k for k in sorted(prev) if self.rnd.random() < 0.1]
                conn.execute(f"DELETE FROM {t.name} WHERE id = ANY(%s)", (gone,))
                records += [{"table": t.name, "key": (k,), "prev": prev[k],
                             "op": "delete", "row": None} for k in gone]
                rows = []
                for k in range(lo, hi + 1):
                    if k in gone:
                        continue
                    self.n += 1
                    rows.append(t.new_row((k,), f"{region}.bulk.{self.n}", region,
                                          self.rnd))
                # xmax is set on the rows the upsert updated: one it did
                # not see (inserted meanwhile, by the consumer's apply most
                # likely) would be replaced unlogged: roll back instead.
                updated = conn.execute(
                    f"INSERT INTO {t.name} (id, val, origin, n) SELECT * FROM "
                    "unnest(%s::int[], %s::text[], %s::text[], %s::int[]) "
                    "ON CONFLICT (id) DO UPDATE SET val = EXCLUDED.val, "
                    "origin = EXCLUDED.origin, n = EXCLUDED.n "
                    "RETURNING id, xmax::text <> '0'",
                    [[r[c] for r in rows] for c in t.cols]).fetchall()
                if any(upd and k not in prev for k, upd in updated):
                    raise Unseen()
                records += [{"table": t.name, "key": (r["id"],),
                             "prev": prev.get(r["id"]),
                             "op": "update" if r["id"] in prev else "insert",
                             "row": r} for r in rows]
                if t.mode == "vclock":
                    vc = {k: (ts, rnk) for k, ts, rnk in conn.execute(
                        f'SELECT id, ts, rnk FROM xregion."public.{t.name}" '
                        "WHERE id BETWEEN %s AND %s", (lo, hi))}
                    for r in records:
                        r["hlc"], r["rnk"] = vc[r["key"][0]]
                else:
                    # each key is written once: its entry, if the clock
                    # trigger moved its time (see Table.sql_vts)
                    vts = dict(conn.execute(
                        f'SELECT id, ts FROM xregion."public.{t.name}" v '
                        "WHERE id BETWEEN %s AND %s AND v.ts IS NOT NULL "
                        "AND v.xid = pg_current_xact_id()", (lo, hi)).fetchall())
                    for r in records:
                        r["vts"] = vts.get(r["key"][0])
        except (Unseen, *RETRYABLE):
            with self.log.lock:
                self.log.aborted += 1
            return
        for r in records:
            r.update(region=region, worker="bulk", xid=xid)
        self.log.commit(records)
        self.done += 1
