"""Kafka on loopback: a single-node KRaft broker, and a KRaft cluster of several brokers.

The broker jars come from Maven Central (``deploy/kafka/pom.xml``), resolved once into the cache
directory; ``java`` (OpenJDK 17+) runs them.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sekat.localstack.processes import ServerProcess, StackError, port_open

KAFKA_VERSION = "4.1.2"
REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"


def cache_dir() -> Path:
    return Path(os.environ.get("SEKAT_CACHE_DIR", Path.home() / ".cache" / "sekat"))


def kafka_lib(version: str = KAFKA_VERSION) -> Path:
    """The folder of broker jars for ``version``, resolved with Maven on first use."""
    lib = cache_dir() / f"kafka-{version}" / "lib"
    if lib.is_dir() and any(lib.glob(f"kafka_2.13-{version}.jar")):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is needed to fetch the Kafka broker jars; install it or run deploy/bootstrap.sh")
    tmp = lib.with_name("lib.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "package", f"-Dkafka.version={version}", f"-Dlib.dir={tmp}", "-f", str(KAFKA_POM)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"resolving Kafka {version} jars failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    return lib


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError("java (OpenJDK 17+) is needed to run the Kafka broker")
    return java


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def broker_count(bootstrap: list[str]) -> int:
    """How many brokers the cluster's metadata lists; raises ``KafkaError`` while no broker answers."""
    from kafka import KafkaAdminClient  # deferred: kafka-python is only needed here

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        return len(admin.describe_cluster().get("brokers", []))
    finally:
        admin.close()


@dataclass
class KafkaBroker(ServerProcess):
    """A single-node KRaft broker (controller and broker in one JVM) on loopback."""

    name = "kafka"
    port: int = 9092
    controller_port: int = 9093
    heap: str = "768m"
    extra_properties: dict[str, str] = field(default_factory=dict)
    version: str = KAFKA_VERSION
    format_args: list[str] = field(default_factory=list)  # e.g. --add-scram (see ``secured.secured_broker``)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"

    def properties(self) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "auto.create.topics.enable": "true",
        }
        props.update(self.extra_properties)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def format_storage(self, cluster_id: str | None = None) -> Path:
        """Write ``server.properties`` and, the first time, format the log directory for ``cluster_id``
        (a new one by default); returns the properties file."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "server.properties"
        conf.write_text(self.properties())
        if (self.data_dir / "logs" / "meta.properties").exists():
            return conf
        # One id in 64 starts with '-': passed as --cluster-id=ID so it is never read as an option.
        fmt = subprocess.run(
            [_java(), "-cp", f"{kafka_lib(self.version)}/*", "kafka.tools.StorageTool", "format",
             f"--cluster-id={cluster_id or new_cluster_id()}", "-c", str(conf), "--ignore-formatted",
             *self.format_args],
            capture_output=True, text=True,
        )
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage of {self.data_dir} failed:\n{fmt.stdout}{fmt.stderr}")
        return conf

    def start(self, timeout: float = 90.0) -> None:
        if self.running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lib = kafka_lib(self.version)
        java = _java()
        for p in (self.port, self.controller_port):
            if port_open(p):
                raise StackError(f"port 127.0.0.1:{p} is taken by another process; set other Kafka ports")
        conf = self.format_storage()
        cmd = [
            java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dorg.slf4j.simpleLogger.logFile={self.log_file}",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-Dorg.slf4j.simpleLogger.log.kafka=warn",
            "-Dorg.slf4j.simpleLogger.log.org.apache.kafka=warn",
            "-cp", f"{lib}/*", "kafka.Kafka", str(conf),
        ]
        with open(self.data_dir / "kafka.stdout", "ab") as out:
            proc = self.launch(cmd, out)
        self.wait_ready(timeout, proc)

    def wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Ready means a metadata request lists this broker, not merely an open port."""
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise StackError(f"Kafka exited with code {proc.returncode}; see {self.log_file}")
            if port_open(self.port):
                try:
                    if broker_count([self.bootstrap]):
                        return
                except KafkaError as exc:  # not ready yet
                    last = exc
            time.sleep(0.3)
        raise StackError(f"Kafka did not become ready in {timeout:.0f}s ({last}); see {self.log_file}")


@dataclass
class KafkaCluster:
    """Several KRaft brokers on loopback (each broker and controller in one JVM), one cluster id.

    Each member is a ``KafkaBroker`` whose properties are overridden: its own ``node.id``, the same
    ``controller.quorum.voters`` on all, replication factor 3 for Kafka's own topics and
    ``min.insync.replicas=2``. The members are formatted with one cluster id and started together
    (a controller quorum needs a majority of the voters up before any broker is ready).
    """

    data_dir: Path
    ports: list[int]
    heap: str = "512m"
    version: str = KAFKA_VERSION
    controller_ports: list[int] = field(default_factory=list)  # default: each broker port + 1
    brokers: list[KafkaBroker] = field(init=False)

    def __post_init__(self) -> None:
        if not self.ports:
            raise StackError("a Kafka cluster needs at least one broker port")
        n = len(self.ports)
        controllers = self.controller_ports or [p + 1 for p in self.ports]
        if len(controllers) != n:
            raise StackError("a Kafka cluster needs one controller port per broker port")
        rf = str(min(3, n))
        isr = str(2 if n >= 3 else 1)
        voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(controllers, start=1))
        self.brokers = []
        for i, (port, controller) in enumerate(zip(self.ports, controllers), start=1):
            props = {
                "node.id": str(i),
                "controller.quorum.voters": voters,
                "default.replication.factor": rf,
                "min.insync.replicas": isr,
                "offsets.topic.replication.factor": rf,
                "transaction.state.log.replication.factor": rf,
                "transaction.state.log.min.isr": isr,
                "share.coordinator.state.topic.replication.factor": rf,
                "share.coordinator.state.topic.min.isr": isr,
                # a stopped broker's leaderships come back to it when it returns (rolling restarts)
                "auto.leader.rebalance.enable": "true",
                "leader.imbalance.check.interval.seconds": "10",
            }
            self.brokers.append(KafkaBroker(self.data_dir / f"kafka-{i}", port, controller, heap=self.heap,
                                            extra_properties=props, version=self.version))

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers)

    def running(self) -> bool:
        return all(b.running() for b in self.brokers)

    def start(self, timeout: float = 120.0) -> None:
        """Format (first time) with one cluster id, start every member at once, wait until each lists all brokers."""
        from concurrent.futures import ThreadPoolExecutor

        if self.running():
            return
        cluster_id = new_cluster_id()
        for broker in self.brokers:
            broker.format_storage(cluster_id)
        with ThreadPoolExecutor(len(self.brokers)) as pool:
            errors = [f.exception() for f in [pool.submit(b.start, timeout) for b in self.brokers]]
        failed = [e for e in errors if e is not None]
        if failed:
            self.stop()
            raise StackError(f"Kafka cluster did not start: {failed[0]}")
        self.wait_members(len(self.brokers), timeout)

    def wait_members(self, count: int, timeout: float = 60.0) -> None:
        """Wait until the cluster's metadata lists ``count`` brokers (topics with RF 3 need all three)."""
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            try:
                seen = broker_count(self.bootstrap.split(","))
                if seen >= count:
                    return
            except KafkaError:
                pass
            time.sleep(0.3)
        raise StackError(f"the Kafka cluster lists {seen} of {count} brokers after {timeout:.0f}s")

    def stop(self) -> bool:
        """Stop every member at once: one by one, the last would wait for a quorum that is gone."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(self.brokers)) as pool:
            return any(list(pool.map(lambda b: b.stop(), self.brokers)))
