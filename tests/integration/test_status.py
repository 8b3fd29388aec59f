"""xregion status: a region's health for a probe (exit 0 healthy, 1
degraded, 2 down) and for a person, read from the database, the slot,
Kafka and the running process's /status (metrics_listen), and the commit-
to-applied latency histogram at /metrics.
"""
import json
import time
import urllib.request

import pytest

import xrtest
from xrdeploy import Deployment

SCHEMA = "CREATE TABLE items (id bigint PRIMARY KEY, n int);"


def status(node, *args):
    r = node.xregion("status", "--json", *args, check=False)
    assert r.returncode in (0, 1, 2), r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["health"] == ("healthy", "degraded", "down")[r.returncode], doc
    return r.returncode, doc


def wait_health(node, want, timeout=60):
    end = time.time() + timeout
    while True:
        rc, doc = status(node)
        if doc["health"] == want:
            return doc
        assert time.time() < end, json.dumps(doc, indent=1)
        time.sleep(1)


@pytest.fixture
def duo():
    ports = {r: xrtest.free_port() for r in ("us", "eu")}
    d = Deployment([("public.items", False)], SCHEMA, regions=("us", "eu"),
                   extra={r: f"metrics_listen: 127.0.0.1:{p}\n"
                          for r, p in ports.items()})
    d.metrics = ports
    yield d
    d.close()


def test_healthy_degraded_down(duo):
    d = duo
    d.start()
    us, eu = d["us"], d["eu"]
    us.sql("INSERT INTO items SELECT g, g FROM generate_series(1, 100) g")
    d.converge("items", expect_rows=100)

    # healthy once the regions' progress records are on Kafka (every 10 s)
    doc = wait_health(eu, "healthy")
    r = doc["regions"][0]
    assert r["region"] == "eu" and r["reasons"] == []
    assert r["slot"]["active"] is True and r["slot"]["confirmed_lsn"]
    assert r["process"]["pid"] == eu.proc.pid
    assert r["process"]["consumer"]["applied"] >= 100
    assert r["process"]["consumer"]["paused"] == []
    assert r["consumer_lag"]["total"] == 0
    assert any(p["topic"].endswith(".us.public.items")
               for p in r["consumer_lag"]["partitions"]), r
    assert r["dead_letters"]["not_redriven"] == 0
    text = eu.xregion("status").stdout
    assert text.startswith("region eu: healthy"), text
    assert "purge horizon" in text and "public.items:" in text, text

    # the latency histogram: one source transaction, applied in eu
    m = urllib.request.urlopen(
        f"http://127.0.0.1:{d.metrics['eu']}/metrics", timeout=5).read().decode()
    count = [l for l in m.splitlines()
             if l.startswith("xregion_apply_latency_seconds_count")]
    assert count and int(count[0].split()[-1]) >= 1, m[-1500:]
    assert 'xregion_apply_latency_seconds_bucket{region="eu",le="+Inf"}' in m

    # degraded: a column us has and eu lacks holds us's changes in eu
    us.sql("ALTER TABLE items ADD COLUMN extra text")
    us.sql("INSERT INTO items VALUES (101, 1, 'needs a column')")
    doc = wait_health(eu, "degraded", timeout=60)
    r = doc["regions"][0]
    waits = r["process"]["consumer"]["paused"]
    assert waits and "extra" in waits[0]["reason"], waits
    assert any("wait" in x or "paused" in x for x in r["reasons"]), r["reasons"]
    rc = eu.xregion("status", "--brief", check=False)
    assert rc.returncode == 1 and "! " in rc.stdout, rc.stdout
    eu.sql("ALTER TABLE items ADD COLUMN extra text")
    d.converge("items", expect_rows=101, timeout=60)
    end = time.time() + 60
    while status(eu)[1]["regions"][0]["process"]["consumer"]["paused"]:
        assert time.time() < end
        time.sleep(1)

    # down: us's replicator stopped (slot not streamed, /status unanswered);
    # both regions at once: the worst decides the exit status
    us.stop()
    rc, doc = status(eu, "-c", us.config)
    regions = {x["region"]: x for x in doc["regions"]}
    assert rc == 2 and sorted(regions) == ["eu", "us"], doc
    # eu: the drift's ERROR line stays a reason for 5 minutes
    assert regions["eu"]["health"] == "degraded", regions["eu"]
    assert [x for x in regions["eu"]["reasons"]
            if x.startswith("an error was logged")] == \
        regions["eu"]["reasons"], regions["eu"]["reasons"]
    down = regions["us"]
    assert down["health"] == "down"
    assert any("not streamed" in x for x in down["reasons"]), down["reasons"]
    assert any("does not answer" in x for x in down["reasons"]), down["reasons"]


def test_bad_options_exit_2(duo):
    d = duo
    r = d["us"].xregion("status", "--max-lag-events", "x", check=False)
    assert r.returncode == 2 and "--max-lag-events" in r.stderr, r.stderr
    r = d["us"].xregion("status", "--json", "--table", "x", check=False)
    assert r.returncode == 2, r.stderr
