"""What the convergence test checks once the load has stopped.

drain() waits until every replicator has caught up; snapshot() reads every
table of every region; check() compares them row by row and against the
write logs; conflicts() reads each region's xregion.conflicts.

The checks, per key of a replicated table (W = every logged write to the
key, from all regions):

- divergent:  the regions do not hold the same row (full rows compared, by
              primary key), or one holds a row and another none.
- phantom:    a region holds a row that is not the row image of any write
              in W (every write stores a unique val, so the image names
              its write).
- overwritten: a region holds the row of a write w although another write
              in W replaced w where it was made (its writer read w, under
              the row lock, before writing).  That write came causally
              after w, so w must not win, in either conflict mode (for lww,
              as long as the clocks agree: the causal scenario shows the
              case where they do not).
- vanished:   a region holds no row although W has inserts or updates and
              no delete (nor key change away from it).
- lww-not-latest (lww tables only): a region's row is not that of the write
              with the greatest LWW version (commit timestamp at its
              origin, then region name) in W, or is there although that
              write was a delete.  This is the exact end state of
              docs/consumer.md ("applying writes in any order yields the
              write with the maximal version"): it covers "a key whose last
              write was an insert or update with no later delete exists
              everywhere", "a later delete is not undone", and "no newer
              update is lost".
- vclock-not-latest (vclock tables, tiebreak lww or prefer-region): a
              region's row is not that of the write with the greatest
              (rank, hybrid clock, region) in W, each write's clock and
              rank read back from its versions entry in its own
              transaction, or is there although that write was a delete:
              the exact end state docs/vclock.md argues for.

- unique-not-expected (lww_u and vc_u, tables with email UNIQUE): a region's row
              for a key (or its absence) is not the one unique_outcome
              derives from the write logs: per key its latest write, and
              of those rows, newest first, each one whose email no newer
              row kept.  Replaces the kinds above for that table, whose
              losers are hidden by design.

For the PII table, each region must hold exactly the outcome of its own
writes (the last one per key, by local commit timestamp) and nothing
written by another region; its topics must not exist or be empty.

A key with any finding other than "divergent" counts as a lost change.
"""
import json
import os
import sys
import time

# xrtest and xrdeploy live with the integration tests.
_INTEGRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

from confluent_kafka import Consumer, KafkaException, TopicPartition

import xrtest


def topic(dep, region, table):
    return f"{dep.prefix}.{region}.public.{table.name}"


class Watermarks:
    """High watermarks of the deployment's topics (one client per run)."""

    def __init__(self, brokers=None):
        self.c = Consumer({"bootstrap.servers": brokers or xrtest.BROKERS,
                           "group.id": "xrconverge-watermarks"})

    def ends(self, topics):
        """{(topic, partition): end offset} of those topics that exist."""
        md = self.c.list_topics(timeout=10)
        out = {}
        for t in topics:
            tm = md.topics.get(t)
            if tm is None or tm.error is not None:
                continue
            for p in tm.partitions:
                out[(t, p)] = self.c.get_watermark_offsets(
                    TopicPartition(t, p), timeout=10)[1]
        return out

    def close(self):
        self.c.close()


def checksums(dep, tables):
    return {(r, t.name): n.checksum(t.name, ", ".join(t.key_cols))
            for r, n in dep.nodes.items() for t in tables}


def drain(dep, tables, expected, timeout, say=print):
    """Waits until the replicators have drained: every region's topics hold
    at least the events its writers committed (expected: {(region, table
    name): count}; a producer killed with -9 may publish some twice), every
    region's consumer has stored the end offset of every other region's
    partitions, and every table's checksum in every region is the same on
    two polls in a row.  Returns (drained, seconds, what was missing)."""
    tables = [t for t in tables if t.replicated]
    # hidden rows come back in the consumers' unique_unhide rounds (5 s)
    settle = 15 if any(t.shape == "u" for t in tables) else 0
    wm = Watermarks(dep.brokers)
    start = said = since = time.time()
    last = None
    missing = []
    try:
        while True:
            names = [topic(dep, r, t) for r in dep.nodes for t in tables]
            try:
                ends = wm.ends(names)
            except KafkaException as e:     # the broker may be restarting
                ends = None
                missing = [f"topic ends: {e}"]
            else:
                missing = []
            for r in (dep.nodes if ends is not None else []):
                for t in tables:
                    tp = topic(dep, r, t)
                    have = sum(v for (tt, _), v in ends.items() if tt == tp)
                    if have < expected.get((r, t.name), 0):
                        missing.append(f"{tp}: {have} of "
                                       f"{expected[(r, t.name)]} events published")
            for r, n in (dep.nodes.items() if ends is not None else []):
                stored = {(tp, p): o for tp, p, o in n.sql(
                    "SELECT topic, partition, next_offset FROM xregion.offsets")}
                lag = sum(end - stored.get((tp, p), 0)
                          for (tp, p), end in ends.items()
                          if not tp.startswith(f"{dep.prefix}.{r}."))
                if lag > 0:
                    missing.append(f"{r}: consumer {lag} events behind")
            if not missing:
                sums = checksums(dep, tables)
                if sums == last and time.time() - since >= settle:
                    return True, time.time() - start, []
                if sums != last:
                    last, since = sums, time.time()
            else:
                last = None
            if time.time() - start > timeout:
                return False, time.time() - start, missing
            if missing and time.time() - said >= 10:
                said = time.time()
                say(f"  [drain {said - start:4.0f}s] " + "; ".join(missing[:6]))
            time.sleep(1)
    finally:
        wm.close()


def snapshot(dep, tables):
    """{table name: {region: {key tuple: row dict}}}, rows as to_jsonb."""
    out = {}
    for t in tables:
        out[t.name] = {}
        for r, n in dep.nodes.items():
            rows = n.sql(f"SELECT to_jsonb(t) FROM {t.name} t")
            out[t.name][r] = {tuple(row[c] for c in t.key_cols): row
                              for (row,) in rows}
    return out


def _version(w):
    return (w["ts"], w["region"], w["tx"])


def _vc_version(w):
    """The order vclock mode keeps the maximum of: (rank, hybrid clock,
    region); a write made after seeing another is always greater."""
    return (w["rnk"], w["hlc"], w["region"])


def check(tables, logs, snap, regions):
    """Returns a list of findings: dicts with kind, table, key, regions
    (region -> row or None) and writes (the key's write history)."""
    findings = []
    writes = {}
    for log in logs.values():
        for w in log.records:
            writes.setdefault((w["table"], tuple(w["key"])), []).append(w)
    for hist in writes.values():
        hist.sort(key=_version)

    for t in tables:
        if not t.replicated or t.shape == "u":
            continue
        keys = set()
        for r in regions:
            keys |= set(snap[t.name][r])
        keys |= {k for (tn, k) in writes if tn == t.name}
        for key in sorted(keys):
            hist = writes.get((t.name, key), [])
            final = {r: snap[t.name][r].get(key) for r in regions}
            kinds = []
            if len({json.dumps(v, sort_keys=True) for v in final.values()}) > 1:
                kinds.append("divergent")
            images = {w["row"]["val"]: w["row"] for w in hist if w["row"]}
            replaced = {w["prev"] for w in hist if w["prev"] is not None}
            for r, row in final.items():
                if row is None:
                    if images and not any(w["row"] is None for w in hist):
                        kinds.append(f"vanished@{r}")
                    continue
                if images.get(row["val"]) != row:
                    kinds.append(f"phantom@{r}")
                elif row["val"] in replaced:
                    kinds.append(f"overwritten@{r}")
            if t.mode == "lww" and hist:
                want = hist[-1]["row"]
                for r, row in final.items():
                    if row != want:
                        kinds.append(f"lww-not-latest@{r}")
            if t.mode == "vclock" and hist and t.tiebreak != "keep-local":
                want = max(hist, key=_vc_version)["row"]
                for r, row in final.items():
                    if row != want:
                        kinds.append(f"vclock-not-latest@{r}")
            if kinds:
                findings.append({"kind": kinds, "table": t.name, "key": key,
                                 "regions": final, "writes": hist})

    for t in tables:
        if t.shape == "u":
            findings += check_unique(t, writes, snap, regions)

    for t in tables:
        if t.replicated:
            continue
        for r in regions:
            own = {}
            for w in sorted(logs[r].records, key=_version):
                if w["table"] == t.name:
                    own[tuple(w["key"])] = w["row"]
            want = {k: v for k, v in own.items() if v is not None}
            have = snap[t.name][r]
            for key in sorted(set(want) | set(have)):
                row = have.get(key)
                kinds = []
                if row is not None and row.get("origin") != r:
                    kinds.append(f"pii-leak@{r}")
                if row != want.get(key):
                    kinds.append(f"pii-not-own-last-write@{r}")
                if kinds:
                    findings.append({"kind": kinds, "table": t.name, "key": key,
                                     "regions": {r: row}, "writes": [
                                         w for w in logs[r].records
                                         if w["table"] == t.name
                                         and tuple(w["key"]) == key]})
    return findings


def unique_outcome(t, writes):
    """The rows a table with a unique email must end with: per key, its
    latest write (lww: by LWW version; vclock: by (rank, hybrid clock,
    region)); of those that are rows, newest first (vclock: by hybrid
    clock, then region), each one whose email no newer row kept
    (docs/consumer.md, "Unique keys other than the primary key")."""
    vc = t.mode == "vclock"
    latest = []
    for (tn, key), hist in writes.items():
        if tn != t.name or not hist:
            continue
        last = max(hist, key=_vc_version) if vc else hist[-1]
        if last["row"] is not None:
            latest.append(last)
    latest.sort(key=(lambda w: (w["hlc"], w["region"])) if vc else _version,
                reverse=True)
    taken, out = set(), {}
    for w in latest:
        email = w["row"]["email"]
        if email is not None and email in taken:
            continue
        if email is not None:
            taken.add(email)
        out[tuple(w["key"])] = w["row"]
    return out


def check_unique(t, writes, snap, regions):
    """divergent, and unique-not-expected@r: r's row (or its absence) is not
    what unique_outcome gives for that key."""
    want = unique_outcome(t, writes)
    findings = []
    keys = set(want) | {k for (tn, k) in writes if tn == t.name}
    for r in regions:
        keys |= set(snap[t.name][r])
    for key in sorted(keys):
        final = {r: snap[t.name][r].get(key) for r in regions}
        kinds = []
        if len({json.dumps(v, sort_keys=True) for v in final.values()}) > 1:
            kinds.append("divergent")
        for r, row in final.items():
            if row != want.get(key):
                kinds.append(f"unique-not-expected@{r}")
        if kinds:
            findings.append({"kind": kinds, "table": t.name, "key": key,
                             "regions": final,
                             "writes": writes.get((t.name, key), [])})
    return findings


def conflict_losers(dep):
    """What the regions' conflict logs name as losers, as two sets: (table,
    val) of the losing row images, and (table, key, region, version time)
    of every losing side (for a delete, the only trace: it has no row).
    The loser of an entry is its local side when the remote change was
    applied, else its remote side."""
    vals, sides = set(), set()
    for n in dep.nodes.values():
        for table, key, val, region, ts in n.sql(
                "SELECT DISTINCT table_name, key::text, r.val, r.region, "
                "(extract(epoch FROM r.ts) * 1000000)::bigint "
                "FROM xregion.conflicts c, LATERAL (SELECT "
                "CASE WHEN c.resolution = 'remote_applied' THEN c.local_row "
                "ELSE c.remote_row END ->> 'val' AS val, "
                "CASE WHEN c.resolution = 'remote_applied' THEN c.local_region "
                "ELSE c.remote_region END AS region, "
                "CASE WHEN c.resolution = 'remote_applied' THEN c.local_ts "
                "ELSE c.remote_ts END AS ts) r "
                "WHERE c.resolution IN ('remote_applied', 'local_kept')"):
            if val is not None:
                vals.add((table, val))
            sides.add((table, _key_id(json.loads(key).items()), region, ts))
    return vals, sides


def _key_id(items):
    """A key as conflict logs and write logs can both give it: sorted
    (column, value as text) pairs."""
    return tuple(sorted((c, str(v)) for c, v in items))


def _version_ts(t, w):
    return w["hlc"] if t.mode == "vclock" else w["ts"]


def unlogged_losers(tables, logs, snap, regions, losers):
    """Findings "loser-not-logged": writes that lost a conflict and that no
    region's xregion.conflicts names as the loser (docs/consumer.md: the
    loser of every conflict is logged whole).

    A write lost when it is not its key's final write and no write
    replaced it causally: for a row image, no write of the key read it
    (prev); for a delete (or key change away), the key ends with a row, no
    later write inserted the key afresh (prev None: it may have seen the
    delete, which lww cannot tell), and no later delete took its place (two
    deletes are one outcome: a region that has one tombstone takes the
    newer one's silently, and the newer one is the loser to name).  For lww_u and vc_u, also each key's
    final row that its unique email hid (a unique_conflict loser).  Tables in
    keep-local vclock mode keep different rows by design and are left out."""
    vals, sides = losers
    writes = {}
    for log in logs.values():
        for w in log.records:
            writes.setdefault((w["table"], tuple(w["key"])), []).append(w)
    for hist in writes.values():
        hist.sort(key=_version)     # what unique_outcome expects
    findings = []
    for t in tables:
        if not t.replicated or t.tiebreak == "keep-local":
            continue
        order = _vc_version if t.mode == "vclock" else _version
        kept = unique_outcome(t, writes) if t.shape == "u" else None
        for (tn, key), hist in sorted(writes.items()):
            if tn != t.name:
                continue
            hist = sorted(hist, key=order)
            final = hist[-1]
            replaced = {w["prev"] for w in hist if w["prev"] is not None}
            missing = []
            for i, w in enumerate(hist[:-1]):
                if w["row"] is not None:
                    if w["row"]["val"] in replaced or (t.name, w["row"]["val"]) in vals:
                        continue
                else:
                    if final["row"] is None or \
                       any(x["prev"] is None or x["row"] is None
                           for x in hist[i + 1:]):
                        continue
                    if (t.name, _key_id(zip(t.key_cols, key)), w["region"],
                            _version_ts(t, w)) in sides:
                        continue
                missing.append(w)
            if kept is not None and final["row"] is not None and \
               key not in kept and (t.name, final["row"]["val"]) not in vals:
                missing.append(final)
            if missing:
                findings.append({"kind": ["loser-not-logged"], "table": t.name,
                                 "key": key, "regions": {
                                     r: snap[t.name][r].get(key) for r in regions},
                                 "writes": hist, "unlogged": missing})
    return findings


def pii_topics(dep, tables):
    """Findings for PII tables that have a non-empty topic."""
    wm = Watermarks(dep.brokers)
    try:
        out = []
        for t in tables:
            if t.replicated:
                continue
            for r in dep.nodes:
                tp = topic(dep, r, t)
                n = sum(wm.ends([tp]).values())
                if n:
                    out.append({"kind": ["pii-published"], "table": t.name,
                                "key": (), "regions": {r: f"{n} events on {tp}"},
                                "writes": []})
        return out
    finally:
        wm.close()


def conflicts(dep):
    """{region: [(table, kind, resolution, count)]} from xregion.conflicts."""
    return {r: [tuple(row) for row in n.sql(
                "SELECT table_name, kind, resolution, count(*) "
                "FROM xregion.conflicts GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")]
            for r, n in dep.nodes.items()}


def fmt_row(row):
    if row is None:
        return "(no row)"
    if isinstance(row, str):
        return row
    return json.dumps(row, sort_keys=True)


def fmt_write(w):
    return (f"ts={w['ts']} {w['region']:>4} tx{w['tx']:<6} {w['op']:<8} "
            f"val={w['row']['val'] if w['row'] else '-'} "
            f"(replaced {w['prev'] or '-'})")
