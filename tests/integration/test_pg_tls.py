"""PostgreSQL over TLS with sslmode=verify-full: a region whose cluster
takes TLS connections only (hostssl), with a server certificate from a test
CA made here with openssl, replicates both ways, every xregion connection
(the replication stream and the plain ones) encrypted; a config that trusts
another CA is refused at once with libpq's reason, and nothing is applied.
"""
import os
import subprocess
import tempfile

import pytest

import pgcluster
from xrdeploy import Deployment

SCHEMA = "CREATE TABLE items (id bigint PRIMARY KEY, note text);"
HBA = """\
local      all          all                  trust
hostnossl  all          all   127.0.0.1/32   reject
hostssl    all          all   127.0.0.1/32   trust
hostssl    replication  all   127.0.0.1/32   trust
"""


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   capture_output=True, timeout=60)


def make_ca(d, name):
    """A self-signed CA in d: name.crt, name.key."""
    openssl("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
            "-subj", f"/CN=xregion test {name}", cwd=d)


def make_server_cert(d, ca):
    """server.crt/.key for 127.0.0.1 and localhost, signed by ca."""
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout",
            "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
            cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt",
            "-CAkey", f"{ca}.key", "-CAcreateserial", "-out", "server.crt",
            "-days", "2", "-extfile", "san.ext", cwd=d)


def read(d, name):
    with open(os.path.join(d, name)) as f:
        return f.read()


@pytest.fixture(scope="module")
def tls():
    d = tempfile.mkdtemp(prefix="xr-tls-")
    os.chmod(d, 0o755)
    make_ca(d, "ca")
    make_ca(d, "other")
    make_server_cert(d, "ca")
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    c = pgcluster.Cluster(
        "tls", settings="ssl = on\nssl_cert_file = 'server.crt'\n"
                        "ssl_key_file = 'server.key'\n",
        files={"server.crt": read(d, "server.crt"),
               "server.key": read(d, "server.key")}, hba=HBA)
    c.start()
    yield c, d
    c.stop()


def with_dsn(node, dsn):
    """Rewrites node's config with postgres.dsn = dsn."""
    with open(node.config) as f:
        lines = f.read().split("\n")
    lines = [f'  dsn: "{dsn}"' if line.startswith("  dsn: ") else line
             for line in lines]
    with open(node.config, "w") as f:
        f.write("\n".join(lines))


def test_verify_full(tls):
    cluster, d = tls
    dep = Deployment([("public.items", False)], SCHEMA, regions=("us", "eu"),
                     ports={"us": cluster.port})
    try:
        us, eu = dep["us"], dep["eu"]
        base = f"host=127.0.0.1 port={cluster.port} dbname={us.db} user=postgres"
        # a plain connection is refused: the cluster takes TLS only
        r = subprocess.run(["psql", base + " sslmode=disable", "-c", "SELECT 1"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode != 0 and "no encryption" in r.stderr, r.stderr

        # trusting another CA: refused with libpq's reason, exit 1, quickly
        with_dsn(us, base + " sslmode=verify-full sslrootcert="
                 + os.path.join(d, "other.crt"))
        r = us.xregion("status", "--brief", check=False)
        assert r.returncode == 2 and "certificate verify failed" in r.stdout, \
            r.stdout + r.stderr
        r = us.xregion("setup", check=False)
        assert r.returncode == 1 and "certificate verify failed" in r.stderr, \
            r.stdout + r.stderr

        with_dsn(us, base + " sslmode=verify-full sslrootcert="
                 + os.path.join(d, "ca.crt"))
        us.xregion("setup")
        dep.start()
        us.sql("INSERT INTO items SELECT g, 'us' FROM generate_series(1, 200) g")
        eu.sql("INSERT INTO items SELECT g, 'eu' FROM generate_series(201, 300) g")
        dep.converge("items", expect_rows=300)
        # every connection of us's xregion is encrypted: the walsender of
        # its slot and the consumer's and catalog connections
        rows = us.sql(
            "SELECT a.backend_type, s.ssl, s.version FROM pg_stat_activity a "
            "JOIN pg_stat_ssl s USING (pid) WHERE a.datname = %s AND "
            "a.pid <> pg_backend_pid() AND a.application_name LIKE 'xregion%%'",
            (us.db,))
        assert any(t == "walsender" for t, _, _ in rows), rows
        assert len(rows) >= 2 and all(ssl for _, ssl, _ in rows), rows
    finally:
        dep.close()
