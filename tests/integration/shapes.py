"""Seeded random transactions of the shapes real applications make, for
one writer: a row written several times in one transaction, delete and
re-insert, upserts, updates of every column or of a small one only (so
that a TOASTed value is left unchanged), key changes, NULLs, several
tables in one transaction, truncates and large transactions.

The tables (all with a ~10 kB TOASTable text column):
  sa  (id int PK, v text, n int, note text, big text)        lww
  sv  (id int PK, v text, n int, note text, big text)        vclock
  sc  (g int, id int, v text, big text, PRIMARY KEY (g, id)) lww, composite key

Every statement is written so that it cannot fail whatever the table
holds (ON CONFLICT, NOT EXISTS guards): the generator keeps no model of the
rows, so the same seed gives the same statements, and the source database
decides what they do.  `python3 shapes.py SEED [N]` prints a seed's
transactions.
"""
import random
import sys

DDL = """
CREATE TABLE sa (id int PRIMARY KEY, v text, n int, note text, big text);
CREATE TABLE sv (id int PRIMARY KEY, v text, n int, note text, big text);
CREATE TABLE sc (g int, id int, v text, big text, PRIMARY KEY (g, id));
"""
LWW = ("sa", "sc")
VCLOCK = ("sv",)
TABLES = LWW + VCLOCK
KEYS = 30          # keys per table: small, so that writes meet often


def big(rng):
    """A value TOASTed out of line (~10 kB of md5 text, poorly compressible)."""
    return (f"(SELECT string_agg(md5(g::text || '{rng.getrandbits(48):x}'), '') "
            "FROM generate_series(1, 320) g)")


def text(rng):
    return "NULL" if rng.random() < 0.1 else f"'{rng.getrandbits(32):08x}'"


def _single(rng, t):
    """One write to table t (sa or sv): a statement that cannot fail."""
    k = rng.randrange(1, KEYS + 1)
    shape = rng.random()
    if shape < 0.18:
        return (f"INSERT INTO {t} VALUES ({k}, {text(rng)}, {rng.randrange(100)}, "
                f"{text(rng)}, {big(rng)}) ON CONFLICT (id) DO NOTHING")
    if shape < 0.30:
        return (f"INSERT INTO {t} VALUES ({k}, {text(rng)}, {rng.randrange(100)}, "
                f"{text(rng)}, {big(rng)}) ON CONFLICT (id) DO UPDATE SET "
                "v = EXCLUDED.v, n = EXCLUDED.n")
    if shape < 0.45:   # every column, TOASTed value changed
        return (f"UPDATE {t} SET v = {text(rng)}, n = n + 1, note = {text(rng)}, "
                f"big = {big(rng)} WHERE id = {k}")
    if shape < 0.70:   # a small column only: the TOASTed value unchanged
        return f"UPDATE {t} SET n = n + 1, v = {text(rng)} WHERE id = {k}"
    if shape < 0.78:
        return f"DELETE FROM {t} WHERE id = {k}"
    if shape < 0.88:   # delete and re-insert
        return (f"DELETE FROM {t} WHERE id = {k}; INSERT INTO {t} VALUES "
                f"({k}, {text(rng)}, 0, {text(rng)}, {big(rng)})")
    if shape < 0.95:   # key change to a free key
        k2 = rng.randrange(1, KEYS + 1)
        return (f"UPDATE {t} SET id = {k2}, n = n + 1 WHERE id = {k} AND NOT "
                f"EXISTS (SELECT 1 FROM {t} WHERE id = {k2})")
    # the same row twice in one statement's transaction
    return (f"UPDATE {t} SET note = {text(rng)} WHERE id = {k}; "
            f"UPDATE {t} SET n = n * 2, big = {big(rng)} WHERE id = {k}; "
            f"UPDATE {t} SET v = {text(rng)} WHERE id = {k}")


def _composite(rng):
    g, i = rng.randrange(1, 4), rng.randrange(1, KEYS // 3 + 1)
    shape = rng.random()
    if shape < 0.35:
        return (f"INSERT INTO sc VALUES ({g}, {i}, {text(rng)}, {big(rng)}) "
                "ON CONFLICT (g, id) DO UPDATE SET v = EXCLUDED.v")
    if shape < 0.65:
        return f"UPDATE sc SET v = {text(rng)} WHERE g = {g} AND id = {i}"
    if shape < 0.80:
        return f"DELETE FROM sc WHERE g = {g} AND id = {i}"
    g2 = rng.randrange(1, 4)
    return (f"UPDATE sc SET g = {g2} WHERE g = {g} AND id = {i} AND NOT EXISTS "
            f"(SELECT 1 FROM sc WHERE g = {g2} AND id = {i})")


def transaction(rng, large_rows=10000):
    """The statements of one random transaction (to run between BEGIN and
    COMMIT)."""
    r = rng.random()
    if r < 0.004:
        return [f"TRUNCATE {rng.choice(LWW)}"]
    if r < 0.010:   # a large transaction: many rows, one statement each kind
        t = rng.choice(("sa", "sv"))
        base = 1000 + rng.randrange(100) * large_rows
        return [f"INSERT INTO {t} SELECT g, md5(g::text), g, NULL, 'x' FROM "
                f"generate_series({base}, {base + large_rows - 1}) g "
                "ON CONFLICT (id) DO NOTHING",
                f"UPDATE {t} SET n = n + 1 WHERE id BETWEEN {base} AND "
                f"{base + large_rows // 2}",
                f"DELETE FROM {t} WHERE id >= {base} AND id % 3 = 0"]
    stmts = []
    for _ in range(rng.randrange(1, 7)):
        if rng.random() < 0.2:
            stmts.append(_composite(rng))
        else:
            stmts.append(_single(rng, rng.choice(("sa", "sv"))))
    return stmts


def run(conn, seed, ntx, large_rows=10000):
    """Runs ntx random transactions of seed on a psycopg connection
    (autocommit off); returns how many statements ran."""
    rng = random.Random(seed)
    count = 0
    for _ in range(ntx):
        for s in transaction(rng, large_rows):
            conn.execute(s)
            count += 1
        conn.commit()
    return count


if __name__ == "__main__":
    rng = random.Random(int(sys.argv[1]))
    for n in range(int(sys.argv[2]) if len(sys.argv) > 2 else 20):
        print(f"-- transaction {n}\nBEGIN;")
        for s in transaction(rng):
            print(s + ";")
        print("COMMIT;")
