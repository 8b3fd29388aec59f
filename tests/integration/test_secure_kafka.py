"""Kafka over SASL_SSL with per-region ACLs (docs/security.md): a broker of
its own, started by scripts/stack.sh with XR_KAFKA_SECURE=1 (TLS from a
test CA, users xr-us and xr-eu with PLAIN and SCRAM-SHA-512 credentials,
KRaft's StandardAuthorizer).
Two regions replicate through it under the ACLs docs/security.md gives;
eu's credentials cannot write to us's topics; a wrong password or an
untrusted certificate ends the replicator with a clear error, not a
retry loop; no secret shows in a log, in --help or in status.
"""
import os
import re
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType,
                                   AdminClient, ResourcePatternType,
                                   ResourceType)

import xrtest
from xrdeploy import Deployment

SCHEMA = "CREATE TABLE items (id bigint PRIMARY KEY, note text);"
TABLES = [("public.items", False)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    state = str(tmp_path_factory.mktemp("xrsec"))
    port = xrtest.free_port()
    env = {**os.environ, "XR_STATE_DIR": state, "XR_REGIONS": "",
           "XR_KAFKA_PORT": str(port),
           "XR_KAFKA_CONTROLLER_PORT": str(xrtest.free_port()),
           "XR_KAFKA_SECURE": "1", "XR_KAFKA_HEAP": "384m",
           "XR_KAFKA_USERS": "us eu"}
    stack = [os.path.join(xrtest.ROOT, "scripts", "stack.sh")]
    subprocess.run(["bash", *stack, "up"], env=env, check=True, timeout=300)
    with open(os.path.join(state, "kafka", "tls", "users")) as f:
        users = dict(line.split() for line in f if line.strip())
    yield {"brokers": f"127.0.0.1:{port}", "users": users, "dir": state,
           "ca": os.path.join(state, "kafka", "tls", "ca.crt")}
    subprocess.run(["bash", *stack, "down"], env=env, timeout=120)


def client(b, user, password=None, **more):
    return {"bootstrap.servers": b["brokers"], "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "PLAIN", "sasl.username": user,
            "sasl.password": password or b["users"][user],
            "ssl.ca.location": b["ca"], **more}


def grant(b, prefix, region):
    """The ACLs of docs/security.md for region under topic prefix."""
    user = f"User:xr-{region}"
    allow = AclPermissionType.ALLOW
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    pre, lit = ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL
    acls = [AclBinding(topic, f"{prefix}.{region}.", pre, user, "*",
                       AclOperation.ALL, allow)]
    acls += [AclBinding(topic, f"{prefix}.", pre, user, "*", op, allow)
             for op in (AclOperation.READ, AclOperation.DESCRIBE,
                        AclOperation.DESCRIBE_CONFIGS)]
    acls += [AclBinding(topic, f"{prefix}.{t}", lit, user, "*", op, allow)
             for t in ("_schemas", "_feed_dlq")
             for op in (AclOperation.WRITE, AclOperation.CREATE)]
    # its group, and groups under it: "xregion.<prefix>.us" must not
    # also match another region named "usw..."
    acls += [AclBinding(group, f"xregion.{prefix}.{region}", lit, user, "*",
                        AclOperation.READ, allow),
             AclBinding(group, f"xregion.{prefix}.{region}.", pre, user, "*",
                        AclOperation.READ, allow)]
    admin = AdminClient(client(b, "admin"))
    for f in admin.create_acls(acls).values():
        f.result(timeout=30)


def kafka_lines(b, region, ca=None):
    return ["properties:", "  security.protocol: SASL_SSL",
            "  sasl.mechanisms: PLAIN", f"  sasl.username: xr-{region}",
            f"  ssl.ca.location: {ca or b['ca']}"]


def end_offsets(b, topic):
    c = Consumer(client(b, "admin", **{"group.id": "xr-test-" + uuid.uuid4().hex}))
    try:
        md = c.list_topics(topic, timeout=30).topics[topic]
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                for p in md.partitions]
    finally:
        c.close()


@pytest.fixture
def duo(broker):
    prefix = "xrs" + uuid.uuid4().hex[:8]
    for r in ("us", "eu"):
        grant(broker, prefix, r)
    d = Deployment(TABLES, SCHEMA, regions=("us", "eu"), prefix=prefix,
                   brokers=broker["brokers"],
                   kafka={r: kafka_lines(broker, r) for r in ("us", "eu")},
                   env={r: {"XREGION_KAFKA_PROP_SASL_PASSWORD":
                            broker["users"][f"xr-{r}"]} for r in ("us", "eu")})
    yield d
    d.close()


def test_regions_replicate_under_acls(broker, duo):
    d = duo
    d.start()
    d["us"].sql("INSERT INTO items SELECT g, 'us' FROM generate_series(1, 300) g")
    d["eu"].sql("INSERT INTO items SELECT g, 'eu' FROM generate_series(301, 400) g")
    d.converge("items", expect_rows=400)
    d["eu"].sql("UPDATE items SET note = 'eu wrote' WHERE id <= 10")
    d.converge("items", expect_rows=400)

    # eu's credentials cannot write us's table topic, nor speak for us in
    # us's progress topic: refused, nothing lands
    p = Producer(client(broker, "xr-eu"))
    for topic, key, value in ((f"{d.prefix}.us.public.items", b"k", b"forged"),
                              (f"{d.prefix}.us._progress", b"consumer/us",
                               b'{"region": "us"}')):
        before = end_offsets(broker, topic)
        errors = []
        p.produce(topic, key=key, value=value,
                  on_delivery=lambda err, msg: errors.append(err))
        p.flush(30)
        assert errors and errors[0] is not None and \
            errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors
        assert end_offsets(broker, topic) == before
    assert d["eu"].sql("SELECT count(*) FROM items") == [(400,)]

    # no secret anywhere a person or a log collector looks
    secrets = [broker["users"]["xr-us"], broker["users"]["xr-eu"]]
    seen = d["us"].read_log() + d["eu"].read_log()
    seen += d["us"].xregion("run", "--help").stdout
    seen += d["us"].xregion("status", "--json", check=False).stdout
    with open(d["us"].config) as f:
        seen += f.read()
    assert not [s for s in secrets if s in seen]


@pytest.mark.parametrize("what", ["password", "certificate"])
def test_bad_credentials_stop_with_a_clear_error(broker, duo, tmp_path, what):
    d = duo
    us = d["us"]
    secret = "wrong-" + uuid.uuid4().hex
    if what == "password":
        d.env["us"] = {"XREGION_KAFKA_PROP_SASL_PASSWORD": secret}
        expect = "refuses these credentials"
    else:
        subprocess.run(["openssl", "req", "-x509", "-new", "-nodes", "-newkey",
                        "rsa:2048", "-keyout", str(tmp_path / "o.key"), "-out",
                        str(tmp_path / "o.crt"), "-days", "2", "-subj",
                        "/CN=another CA"], check=True, capture_output=True)
        with open(us.config) as f:
            text = f.read().replace(broker["ca"], str(tmp_path / "o.crt"))
        with open(us.config, "w") as f:
            f.write(text)
        expect = "certificate did not verify"
    t0 = time.time()
    us.start()
    rc = us.proc.wait(timeout=90)
    took = time.time() - t0
    log = us.read_log()
    us.proc = None
    us.logf.close()
    assert rc == 1, log[-3000:]
    assert took < 60, took
    assert expect in log.lower(), log[-3000:]
    assert secret not in log and broker["users"]["xr-us"] not in log


def librdkafka_at_least(version, wanted):
    return tuple(int(x) for x in version.split(".")[:3]) >= wanted


def test_scram_sign_in(broker, duo):
    """The region users' SCRAM-SHA-512 credentials: a client on librdkafka
    2.6.1 or later (the Python client's own) signs in with them; a wrong
    password is refused.  xregion built on an older librdkafka (Debian
    12's 2.0.2) cannot sign in with SCRAM to Kafka 4, whatever the
    password: it stops at once, and its error says why and what to do."""
    from confluent_kafka import libversion
    if not librdkafka_at_least(libversion()[0], (2, 6, 1)):
        pytest.skip(f"the Python client's librdkafka {libversion()[0]} "
                    "predates SCRAM against Kafka 4")
    for password, ok in ((None, True), ("wrong-" + uuid.uuid4().hex, False)):
        errors = []
        admin = AdminClient(client(broker, "xr-us", password, **{
            "sasl.mechanisms": "SCRAM-SHA-512", "error_cb": errors.append}))
        try:
            topics = admin.list_topics(timeout=10).topics
        except Exception as e:
            topics = None
            errors.append(e)
        assert (topics is not None) == ok, errors

    d = duo
    d.start()                       # set up and started with PLAIN
    us = d["us"]
    assert us.stop() == 0
    r = subprocess.run([us.binary, "--version"], capture_output=True,
                       text=True, check=True)
    rdk = re.search(r"librdkafka (\d+\.\d+\.\d+)", r.stdout + r.stderr)
    assert rdk, r.stdout + r.stderr
    with open(us.config) as f:
        text = f.read().replace("sasl.mechanisms: PLAIN",
                                "sasl.mechanisms: SCRAM-SHA-512")
    assert "sasl.mechanisms: SCRAM-SHA-512" in text and "PLAIN" not in text
    with open(us.config, "w") as f:
        f.write(text)
    if librdkafka_at_least(rdk.group(1), (2, 6, 1)):
        us.start()
        us.sql("INSERT INTO items VALUES (1, 'scram')")
        d.converge("items", expect_rows=1)
        return
    t0 = time.time()
    us.start()
    rc = us.proc.wait(timeout=90)
    log = us.read_log()
    us.proc = None
    us.logf.close()
    assert rc == 1, log[-3000:]
    assert time.time() - t0 < 60
    assert "fixed in librdkafka 2.6.1" in log, log[-3000:]
    assert f"runs librdkafka {rdk.group(1)}" in log, log[-3000:]
