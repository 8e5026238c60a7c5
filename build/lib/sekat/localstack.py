"""Local stack: a real Kafka broker (KRaft, jars from Maven Central) and a real
Redis server, started as child processes bound to 127.0.0.1.

Used by ``sekat up``/``sekat down`` (``make run``) and by the integration test
fixtures, so the stack a developer runs is the stack the tests run on. Each
server writes a pid file into its own directory and is stopped by that PID.

Nothing here installs system packages: ``deploy/bootstrap.sh`` does that
(virtualenv, ``apt-get install redis-server prometheus``, the Kafka jars).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

KAFKA_VERSION = "4.1.2"
REPO_ROOT = Path(__file__).resolve().parent.parent
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"


class StackError(RuntimeError):
    """A local server could not be started or stopped; the message says which and why."""


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def stop_pid(pid_file: Path, timeout: float = 20.0) -> bool:
    """Stop the process named in ``pid_file`` (SIGTERM, then SIGKILL). True if one was running."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    running = _pid_alive(pid)
    if running:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return running


def stop_process(proc: "subprocess.Popen[bytes] | None", sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Stop a child process we hold by its PID: ``sig``, then SIGKILL after ``timeout``; reaped either way."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


@dataclass
class KafkaBroker:
    """A single-node KRaft broker (controller and broker in one JVM) on loopback."""

    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "768m"
    extra_properties: dict[str, str] = field(default_factory=dict)
    version: str = KAFKA_VERSION
    format_args: list[str] = field(default_factory=list)  # e.g. --add-scram (see ``secured_broker``)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

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

    def running(self) -> bool:
        return _running_pid(self.pid_file) is not None and port_open(self.port)

    def start(self, timeout: float = 90.0) -> None:
        if self.running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lib = kafka_lib(self.version)
        java = shutil.which("java")
        if java is None:
            raise StackError("java (OpenJDK 17+) is needed to run the Kafka broker")
        for p in (self.port, self.controller_port):
            if port_open(p):
                raise StackError(f"port 127.0.0.1:{p} is taken by another process; set other Kafka ports")
        conf = self.data_dir / "server.properties"
        conf.write_text(self.properties())
        classpath = f"{lib}/*"
        meta = self.data_dir / "logs" / "meta.properties"
        if not meta.exists():
            # One id in 64 starts with '-': passed as --cluster-id=ID so it is never read as an option.
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            fmt = subprocess.run(
                [java, "-cp", classpath, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                 "-c", str(conf), "--ignore-formatted", *self.format_args],
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
        cmd = [
            java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dorg.slf4j.simpleLogger.logFile={self.log_file}",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-Dorg.slf4j.simpleLogger.log.kafka=warn",
            "-Dorg.slf4j.simpleLogger.log.org.apache.kafka=warn",
            "-cp", classpath, "kafka.Kafka", str(conf),
        ]
        with open(self.data_dir / "kafka.stdout", "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        self.wait_ready(timeout, proc)

    def wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        """Ready means a metadata request lists this broker, not merely an open port."""
        from kafka import KafkaAdminClient  # deferred: kafka-python is only needed here
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise StackError(f"Kafka exited with code {proc.returncode}; see {self.log_file}")
            if port_open(self.port):
                try:
                    admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
                    try:
                        brokers = admin.describe_cluster().get("brokers", [])
                    finally:
                        admin.close()
                    if brokers:
                        return
                except KafkaError as exc:  # not ready yet
                    last = exc
            time.sleep(0.3)
        raise StackError(f"Kafka did not become ready in {timeout:.0f}s ({last}); see {self.log_file}")

    def stop(self) -> bool:
        return stop_pid(self.pid_file)


@dataclass
class RedisServer:
    """A Redis server on loopback with no persistence (the blocklist's source of truth is Kafka)."""

    data_dir: Path
    port: int = 6379
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    def running(self) -> bool:
        return _running_pid(self.pid_file) is not None and port_open(self.port)

    def start(self, timeout: float = 15.0) -> None:
        if self.running():
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server is not installed; run deploy/bootstrap.sh (apt-get install redis-server)")
        if port_open(self.port):
            raise StackError(f"port 127.0.0.1:{self.port} is taken by another process; set another Redis port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
               "--dir", str(self.data_dir), "--logfile", str(self.data_dir / "redis.log"),
               "--daemonize", "no", *self.extra_args]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"redis-server exited with code {proc.returncode}; see {self.data_dir / 'redis.log'}")
            if port_open(self.port):
                return
            time.sleep(0.05)
        raise StackError(f"redis-server did not open port {self.port} in {timeout:.0f}s")

    def stop(self) -> bool:
        return stop_pid(self.pid_file)


# --- Secured servers: SASL/TLS Kafka and an ACL-user Redis (tests, and a local rehearsal of production settings) ---


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, as PEM files (made by openssl)."""

    ca: Path
    cert: Path
    key: Path  # unencrypted PKCS#8
    server_pem: Path  # key then certificate, the form Kafka's PEM keystore reads


def make_tls_files(directory: Path, days: int = 2) -> TlsFiles:
    """Generate a CA and a server certificate signed by it (SAN IP:127.0.0.1, DNS:localhost) with openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError("openssl is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.crt"))
    ext = directory / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", str(days),
         "-subj", "/CN=sekat-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
         "-days", str(days), "-extfile", str(ext)],
    ]
    for step in steps:
        done = subprocess.run([openssl, *step], capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(f"openssl {step[0]} failed: {done.stderr[-1000:]}")
    server_pem = directory / "server.pem"
    server_pem.write_text(key.read_text() + cert.read_text())
    for private in (ca_key, key, server_pem):
        private.chmod(0o600)
    return TlsFiles(ca, cert, key, server_pem)


def secured_broker(data_dir: Path, port: int, controller_port: int, sasl_port: int, users: dict[str, str], *,
                   tls: TlsFiles | None = None, authorizer: bool = False) -> KafkaBroker:
    """A KRaft broker with a client listener on ``sasl_port`` taking PLAIN and SCRAM-SHA-512 for ``users``.

    ``users`` (name -> password) are PLAIN users in the listener's JAAS entry and SCRAM-SHA-512 credentials
    written into the metadata log at format time (``kafka-storage format --add-scram``). The listener is
    SASL_SSL when ``tls`` is given, else SASL_PLAINTEXT. ``port`` stays a PLAINTEXT listener on loopback for
    the broker's own use (inter-broker, readiness, ACL administration) as principal ``User:ANONYMOUS``.
    With ``authorizer`` the broker checks ACLs (StandardAuthorizer): ANONYMOUS is the only super user and
    every SASL user can do only what an ACL allows.
    """
    for name, password in users.items():
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or '"' in password or "\\" in password:
            raise StackError(f"SASL user {name!r}: names are letters, digits, '.', '_', '-'; passwords have no quotes")
    protocol = "SASL_SSL" if tls else "SASL_PLAINTEXT"
    listener = protocol.lower()
    plain_users = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    props = {
        "listeners": f"PLAINTEXT://127.0.0.1:{port},{protocol}://127.0.0.1:{sasl_port},"
                     f"CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},{protocol}://127.0.0.1:{sasl_port}",
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,{protocol}:{protocol}",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        f"listener.name.{listener}.plain.sasl.jaas.config":
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};",
        f"listener.name.{listener}.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }
    if tls:
        props.update({f"listener.name.{listener}.ssl.keystore.type": "PEM",
                      f"listener.name.{listener}.ssl.keystore.location": str(tls.server_pem)})
    if authorizer:
        props.update({"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                      "super.users": "User:ANONYMOUS", "allow.everyone.if.no.acl.found": "false"})
    scram = [f"--add-scram=SCRAM-SHA-512=[name={name},password={password}]" for name, password in users.items()]
    return KafkaBroker(data_dir, port, controller_port, extra_properties=props, format_args=scram)


# What Sekat's processes need of Redis, and no administration (docs/security.md).
SEKAT_REDIS_ACL = ("resetchannels", "-@all", "+@read", "+@write", "+@stream", "+@keyspace", "+@scripting",
                   "+@connection", "+@transaction", "-@dangerous")


def acl_redis(data_dir: Path, port: int, user: str, password: str, *, tls: TlsFiles | None = None,
              keys: str = "*") -> RedisServer:
    """A Redis server whose only user is ``user`` (the default user is off); TLS-only on ``port`` with ``tls``.

    ``user`` gets ``SEKAT_REDIS_ACL`` on keys matching ``keys`` (e.g. ``sekat:*``).

    The URL to reach it: ``redis://user:password@127.0.0.1:port/0``, or with TLS
    ``rediss://user:password@127.0.0.1:port/0?ssl_ca_certs=<tls.ca>``.
    """
    if not re.fullmatch(r"[A-Za-z0-9._-]+", user) or any(c.isspace() for c in password):
        raise StackError("Redis ACL user: a plain name and a password without spaces")
    args = ["--user", "default", "off", "--user", user, "on", f">{password}", f"~{keys}", *SEKAT_REDIS_ACL]
    if tls:
        args += ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls.cert), "--tls-key-file",
                 str(tls.key), "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "no"]
    return RedisServer(data_dir, port, extra_args=args)


# -- scale-out on one machine: a KRaft cluster and a Redis Cluster --------------------------------------------


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

    def _format(self) -> None:
        java = shutil.which("java")
        if java is None:
            raise StackError("java (OpenJDK 17+) is needed to run the Kafka broker")
        lib = kafka_lib(self.version)
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        for broker in self.brokers:
            if (broker.data_dir / "logs" / "meta.properties").exists():
                continue
            broker.data_dir.mkdir(parents=True, exist_ok=True)
            conf = broker.data_dir / "server.properties"
            conf.write_text(broker.properties())
            fmt = subprocess.run(
                [java, "-cp", f"{lib}/*", "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                 "-c", str(conf), "--ignore-formatted"], capture_output=True, text=True)
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka storage of {broker.data_dir} failed:\n{fmt.stdout}{fmt.stderr}")

    def start(self, timeout: float = 120.0) -> None:
        """Format (first time), start every member at once, wait until each lists all brokers."""
        from concurrent.futures import ThreadPoolExecutor

        if self.running():
            return
        self._format()
        with ThreadPoolExecutor(len(self.brokers)) as pool:
            errors = [f.exception() for f in [pool.submit(b.start, timeout) for b in self.brokers]]
        failed = [e for e in errors if e is not None]
        if failed:
            self.stop()
            raise StackError(f"Kafka cluster did not start: {failed[0]}")
        self.wait_members(len(self.brokers), timeout)

    def wait_members(self, count: int, timeout: float = 60.0) -> None:
        """Wait until the cluster's metadata lists ``count`` brokers (topics with RF 3 need all three)."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap.split(","), request_timeout_ms=5000)
                try:
                    seen = len(admin.describe_cluster().get("brokers", []))
                finally:
                    admin.close()
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


@dataclass
class RedisClusterServers:
    """A Redis Cluster on loopback: one ``redis-server --cluster-enabled yes`` per port, all masters.

    Joined with ``redis-cli --cluster create ... --cluster-replicas 0`` (slots split evenly), ready when
    every node reports ``cluster_state:ok``. No persistence, as for the single server: the blocklist's
    source of truth is the reports topic.
    """

    data_dir: Path
    ports: list[int]
    servers: list[RedisServer] = field(init=False)

    def __post_init__(self) -> None:
        if len(self.ports) < 3:
            raise StackError("a Redis Cluster needs at least 3 masters (ports)")
        # The cluster bus listens on port + 10000 by default; a free port from the OS may be too high for
        # that, so such a node gets a free bus port of its own (cluster-port, Redis >= 7).
        self.servers = [RedisServer(self.data_dir / f"redis-{p}", p,
                                    ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                     "--cluster-node-timeout", "5000",
                                     "--cluster-port", str(p + 10000 if p + 10000 < 65536 else free_port())])
                        for p in self.ports]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def running(self) -> bool:
        return all(s.running() for s in self.servers)

    def _cli(self, port: int, *args: str) -> str:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise StackError("redis-cli is not installed; run deploy/bootstrap.sh (apt-get install redis-server)")
        result = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, text=True,
                                timeout=60)
        if result.returncode != 0:
            raise StackError(f"redis-cli {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def start(self, timeout: float = 30.0) -> None:
        if self.running():
            return
        try:
            for server in self.servers:
                server.start()
            # A node that knows only itself was never joined (restarted nodes rejoin from nodes.conf).
            if "cluster_known_nodes:1" in self._cli(self.ports[0], "cluster", "info").split():
                self._cli(self.ports[0], "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                          "--cluster-replicas", "0", "--cluster-yes")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if all("cluster_state:ok" in self._cli(p, "cluster", "info") for p in self.ports):
                    return
                time.sleep(0.1)
            raise StackError(f"the Redis Cluster on ports {self.ports} did not reach cluster_state:ok "
                             f"in {timeout:.0f}s")
        except Exception:
            self.stop()
            raise

    def stop(self) -> bool:
        return any([s.stop() for s in self.servers])
