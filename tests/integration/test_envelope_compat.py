"""The compatibility rule of schemas/envelope.avsc (docs/event-format.md,
"Changing the envelope"), checked against the envelope of the previous
release (the last commit that changed the file, before this one's change,
or XR_PREVIOUS_REV): a datum written with either schema must be readable
with the other by Avro schema resolution (fastavro), both ways, for
datums that fill every field and every branch of every union.  No stack
needed.
"""
import datetime
import io
import json
import os
import random
import subprocess
import uuid

import fastavro
import pytest

import xrtest

PATH = "schemas/envelope.avsc"


def git(*args):
    return subprocess.run(["git", "-C", xrtest.ROOT, *args],
                          capture_output=True, text=True)


def no_history(why):
    # CI runs on a whole clone: there, missing history is a failure
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


def previous_envelope():
    rev = os.environ.get("XR_PREVIOUS_REV")
    if not rev and git("diff", "--quiet", "HEAD", "--", PATH).returncode:
        rev = "HEAD"   # an edit not committed yet: against the last commit
    if not rev:
        log = git("log", "--format=%H", "--", PATH)
        revs = log.stdout.split()
        if log.returncode or len(revs) < 2:
            no_history("no history of schemas/envelope.avsc in this checkout")
        # the file as the last release before its latest change had it
        rev = revs[0] + "^"
    r = git("show", f"{rev}:{PATH}")
    if r.returncode:
        no_history(f"{rev}:{PATH} is not in this checkout: {r.stderr}")
    return rev, json.loads(r.stdout)


def current_envelope():
    with open(os.path.join(xrtest.ROOT, PATH)) as f:
        return json.load(f)


def datum(schema, named, rng, branch=None):
    """A random datum of schema; branch picks a union's branch and an
    enum's symbol; named maps the schema's named types (names())."""
    if isinstance(schema, str) and schema in named:
        return datum(named[schema], named, rng, branch)
    if isinstance(schema, list):
        b = schema[branch % len(schema)] if branch is not None else \
            rng.choice(schema)
        return datum(b, named, rng)
    if isinstance(schema, dict):
        t = schema["type"]
        if t == "record":
            return {f["name"]: datum(f["type"], named, rng, branch)
                    for f in schema["fields"]}
        if t == "enum":
            syms = schema["symbols"]
            return syms[branch % len(syms)] if branch is not None else \
                rng.choice(syms)
        if t == "fixed":
            return bytes(rng.getrandbits(8) for _ in range(schema["size"]))
        if t == "array":
            return [datum(schema["items"], named, rng, branch)
                    for _ in range(rng.randint(0, 2))]
        if t == "map":
            return {f"k{i}": datum(schema["values"], named, rng, branch)
                    for i in range(rng.randint(0, 2))}
        if schema.get("logicalType") in ("timestamp-micros", "timestamp-millis"):
            return datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        if schema.get("logicalType") == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128)))
        return datum(t, named, rng, branch)
    return {"null": None, "boolean": rng.random() < 0.5,
            "int": rng.randint(-2**31, 2**31 - 1),
            "long": rng.randint(-2**63, 2**63 - 1),
            "float": 1.5, "double": 2.25, "string": "s%d" % rng.randint(0, 9),
            "bytes": b"\x00\x01"}[schema]


def names(schema, named, ns=""):
    """Every named type of schema, by full and short name."""
    if isinstance(schema, list):
        for b in schema:
            names(b, named, ns)
    elif isinstance(schema, dict):
        t = schema["type"]
        if t in ("record", "enum", "fixed"):
            name = schema["name"]
            ns = schema.get("namespace", ns) if "." not in name else \
                name.rsplit(".", 1)[0]
            short = name.rsplit(".", 1)[-1]
            named[short] = named[f"{ns}.{short}" if ns else short] = schema
        for f in schema.get("fields", []):
            names(f["type"], named, ns)
        for k in ("items", "values"):
            if k in schema:
                names(schema[k], named, ns)
    return named


def widest(schema):
    """The most branches of a union, or symbols of an enum, in schema."""
    if isinstance(schema, list):
        return max([len(schema)] + [widest(b) for b in schema])
    if isinstance(schema, dict):
        n = len(schema.get("symbols", []))
        for f in schema.get("fields", []):
            n = max(n, widest(f["type"]))
        for k in ("items", "values"):
            if k in schema:
                n = max(n, widest(schema[k]))
        return n
    return 1


def roundtrip(writer, reader, rng):
    """Every union branch and enum symbol (k-th of each in datum k), then
    random mixes."""
    w, r = fastavro.parse_schema(writer), fastavro.parse_schema(reader)
    for branch in [*range(widest(writer)), None, None, None]:
        d = datum(writer, names(writer, {}), rng, branch)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, w, d)
        buf.seek(0)
        fastavro.schemaless_reader(buf, w, r)   # raises if not resolvable


def test_previous_and_current_envelope_read_each_other():
    rev, old = previous_envelope()
    new = current_envelope()
    rng = random.Random(20261202)
    roundtrip(old, new, rng)   # a new reader, an old region's events
    roundtrip(new, old, rng)   # an old reader, a new region's events
    # the rule's first clause, checked on its own: fields are only added,
    # each with a default, and none is taken away
    of = {f["name"]: f for f in old["fields"]}
    nf = {f["name"]: f for f in new["fields"]}
    assert set(of) <= set(nf), f"fields removed since {rev}: {set(of) - set(nf)}"
    for name in set(nf) - set(of):
        assert "default" in nf[name], f"new field {name} has no default"


def test_the_check_can_fail():
    """A field added without a default cannot be read from old events."""
    old = current_envelope()
    new = json.loads(json.dumps(old))
    new["fields"].append({"name": "no_default", "type": "long"})
    with pytest.raises(Exception):
        roundtrip(old, new, random.Random(1))
