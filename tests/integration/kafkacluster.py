"""A throwaway Kafka cluster of several KRaft nodes (each a broker and a
controller) from the stack's jars (XR_KAFKA_LIBS), on free ports of
127.0.0.1, for tests of broker failures: replication factor 3 and
min.insync.replicas 2 by default.  kill9(node) and restart(node) act on
one node; leader(topic, partition) says which node leads a partition.
"""
import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

from confluent_kafka.admin import AdminClient

import xrtest

LIBS = os.environ.get("XR_KAFKA_LIBS",
                      os.path.join(xrtest.ROOT, ".stack", "kafka-libs"))


_next_port = [int(os.environ.get("XR_KAFKA_CLUSTER_PORT", "24100"))]


def free_port():
    """A free port below the ephemeral range (32768 up): one the kernel
    does not hand out as a source port while a killed broker is down."""
    while True:
        p = _next_port[0]
        _next_port[0] += 1
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue


class KafkaCluster:
    def __init__(self, nodes=3, heap="320m"):
        self.n = nodes
        self.heap = heap
        self.root = tempfile.mkdtemp(prefix="xr-kafka-cluster-")
        self.ports = {i: free_port() for i in range(1, nodes + 1)}
        self.cports = {i: free_port() for i in range(1, nodes + 1)}
        self.procs = {}

    @property
    def bootstrap(self):
        return ",".join(f"127.0.0.1:{p}" for p in self.ports.values())

    def _props(self, i):
        return os.path.join(self.root, f"node{i}", "server.properties")

    def _java(self, *args):
        return ["java", f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dkafka.logs.dir={self.root}/logs", "-cp", f"{LIBS}/*", *args]

    def start(self):
        # (like Kafka's own Uuid.randomUuid: an id that starts with "-" is
        # drawn again, or StorageTool's "-t" takes it for an option)
        cid = "-"
        while cid.startswith("-"):
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in self.cports.items())
        for i in self.ports:
            os.makedirs(os.path.join(self.root, f"node{i}", "data"))
            with open(self._props(i), "w") as f:
                f.write(f"""process.roles=broker,controller
node.id={i}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{self.ports[i]},CONTROLLER://127.0.0.1:{self.cports[i]}
advertised.listeners=PLAINTEXT://127.0.0.1:{self.ports[i]}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={self.root}/node{i}/data
num.partitions=1
default.replication.factor={min(3, self.n)}
min.insync.replicas={min(2, self.n)}
offsets.topic.replication.factor={min(3, self.n)}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor={min(3, self.n)}
transaction.state.log.min.isr={min(2, self.n)}
share.coordinator.state.topic.replication.factor={min(3, self.n)}
share.coordinator.state.topic.min.isr={min(2, self.n)}
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
num.network.threads=2
num.io.threads=2
""")
            subprocess.run(self._java("kafka.tools.StorageTool", "format",
                                      "-t", cid, "-c", self._props(i)),
                           check=True, capture_output=True, timeout=120)
        for i in self.ports:
            self.restart(i)
        self.wait_brokers(self.n)

    def restart(self, i):
        """Starts node i (again, with its data)."""
        with open(os.path.join(self.root, f"node{i}", "kafka.log"), "a") as log:
            self.procs[i] = subprocess.Popen(
                self._java("kafka.Kafka", self._props(i)), stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def kill9(self, i):
        p = self.procs.pop(i)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(30)

    def wait_brokers(self, n, timeout=120):
        """Until the metadata lists n brokers."""
        # (log_level 0: no line per refused connection while they start)
        admin = AdminClient({"bootstrap.servers": self.bootstrap,
                             "log_level": 0})
        end = time.time() + timeout
        while True:
            try:
                md = admin.list_topics(timeout=5)
                if len(md.brokers) >= n:
                    return
            except Exception:
                pass
            if time.time() > end:
                raise AssertionError(f"{n} brokers not up in {timeout} s:\n"
                                     + self.log_tail())
            time.sleep(1)

    def leader(self, topic, partition=0):
        md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(
            topic, timeout=10)
        return md.topics[topic].partitions[partition].leader

    def log_tail(self, n=2000):
        out = []
        for i in self.ports:
            path = os.path.join(self.root, f"node{i}", "kafka.log")
            if os.path.exists(path):
                with open(path) as f:
                    out.append(f"--- node {i}\n" + f.read()[-n:])
        return "\n".join(out)

    def stop(self):
        procs = [self.procs.pop(i) for i in list(self.procs)]
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.root, ignore_errors=True)
