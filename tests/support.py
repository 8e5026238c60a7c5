"""Test support: a real local stack, a real worker process, and Kafka I/O helpers.

Nothing here fakes Kafka or Redis: the stack is ``sekat.localstack`` (the
same code ``sekat up`` runs), the worker is the ``sekat worker`` command in a
child process, and producers/consumers are kafka-python clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import MessageSizeTooLargeError

from sekat.localstack.kafka_servers import KafkaBroker, kafka_lib
from sekat.localstack.processes import free_port, stop_process
from sekat.localstack.redis_servers import RedisServer
from sekat.records import iso
from sekat.settings import Settings
from sekat.streams.topics import create_topics


@dataclass
class Stack:
    kafka: KafkaBroker
    redis: RedisServer

    def settings_env(self, **overrides: str) -> dict[str, str]:
        env = {"SEKAT_KAFKA_BOOTSTRAP": self.kafka.bootstrap, "SEKAT_REDIS_URL": self.redis.url}
        env.update(overrides)
        return env


def start_stack(base: Path) -> Stack:
    kafka = KafkaBroker(base / "kafka", free_port(), free_port())
    redis = RedisServer(base / "redis", free_port())
    redis.start()
    try:
        kafka.start()
    except Exception:
        redis.stop()
        raise
    return Stack(kafka, redis)


def unique(prefix: str = "t") -> str:
    """``prefix`` and 10 random hex digits, of which the 4th and 7th are letters: never 7 decimal digits in a row,
    which dead letters and logs mask as they would an account number (a test looking for its id would not find
    it)."""
    h = uuid.uuid4().hex[:10]
    return f"{prefix}{h[:3]}{'abcdef'[int(h[3], 16) % 6]}{h[4:6]}{'abcdef'[int(h[6], 16) % 6]}{h[7:]}"


_NO_DIGITS = str.maketrans("0123456789", "ghijklmnop")


def unique_letters(prefix: str = "t") -> str:
    """``unique`` without digits: an id that stays as it is in a dead letter, which masks every run of 7 or
    more digits as it would an account number."""
    return f"{prefix}{uuid.uuid4().hex[:10].translate(_NO_DIGITS)}"


def child_env(env: dict[str, str]) -> dict[str, str]:
    """This process's environment with exactly ``env``'s SEKAT_* settings, for a child ``sekat`` process."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SEKAT_")} | env




def isolated_env(stack: Stack, name: str, **overrides: str) -> dict[str, str]:
    """SEKAT_* variables for a worker with its own group, topics, Redis prefix and web port."""
    env = stack.settings_env(
        SEKAT_APP_ID=f"sekat-{name}",
        SEKAT_REDIS_PREFIX=f"{name}:",
        SEKAT_WEB_PORT=str(free_port()),
        SEKAT_TOPIC_PARTITIONS="2",
        SEKAT_BATCH_WITHIN_MS="5",
        SEKAT_AUDIT_KEY=f"audit-key-{name}-0123456789",
        SEKAT_OPERATOR="test-operator",
    )
    for topic in ("transfers", "calls", "sms", "reports", "freeze", "block", "decisions", "deadletter", "undelivered",
                  "appeals", "audit", "feedback", "notices", "institutions"):
        env[f"SEKAT_TOPIC_{topic.upper()}"] = f"{name}.{topic}"
    env.update(overrides)
    return env


# App ids of the workers this session started: their Faust data directories ({tmp}/{app_id}-data, see
# streams/app.py) are removed when the session ends (tests/conftest.py), once every worker has stopped.
STARTED_APPS: set[str] = set()


class WorkerProcess:
    """``sekat worker`` as a child process; ready once Faust logs that partitions are assigned."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.settings = Settings.from_environ(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> "WorkerProcess":
        return self.launch().wait_ready(timeout)

    def launch(self) -> "WorkerProcess":
        """Start the process without waiting (to start several workers at once; then ``wait_ready``)."""
        STARTED_APPS.add(self.settings.app_id)
        create_topics(self.settings)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "sekat.cli", "worker"], env=child_env(self.env), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60.0) -> "WorkerProcess":
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            if b"Worker ready" in self.log_path.read_bytes():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.settings.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_replica(self, timeout: float = 20.0) -> None:
        """Wait until this worker's replica has applied every blocklist change made so far.

        A report takes effect on a worker through the change stream within milliseconds; a test that
        lists an identifier and at once sends an event must wait for that, as a real reporter would.
        """
        from sekat.blocklist.connection import sync_client

        client = sync_client(self.settings.redis_url)  # one server or a Redis Cluster
        try:
            last = client.xrevrange(f"{self.settings.redis_prefix}bl:changes", count=1)
        finally:
            client.close()
        if not last:
            return
        want = tuple(int(p) for p in last[0][0].decode().split("-"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.get("/healthz")
            if status in (200, 503):
                have = tuple(int(p) for p in orjson.loads(body).get("replica_change_id", "0-0").split("-"))
                if have >= want:
                    return
            time.sleep(0.01)
        raise AssertionError(f"worker replica did not apply change {want} in {timeout}s")

    def stop(self, sig: int = 15, timeout: float = 30.0) -> None:
        stop_process(self.proc, sig, timeout)

    def sample(self, pattern: str) -> float:
        """Sum of the samples on this worker's /metrics whose line starts with ``pattern`` (a regex)."""
        import re

        status, page = self.get("/metrics")
        assert status == 200, status
        return sum(float(m.group(1)) for m in re.finditer(rf"^{pattern}\S* (\S+)$", page.decode(), re.M))


def wait_http_ready(what: str, proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float,
                    cafile: str | None = None) -> None:
    """Wait until ``url`` answers 200 (over https: trusting ``cafile``); fail with the tail of ``log_path`` if
    ``proc`` exits or time runs out."""
    import ssl

    context = ssl.create_default_context(cafile=cafile) if cafile else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready in {timeout}s:\n{log_path.read_text()[-4000:]}")


def wait_until(what: str, read: Callable[[], Any], pred: Callable[[Any], bool], timeout: float = 30.0,
               every: float = 0.3) -> Any:
    """Poll ``read()`` until ``pred`` holds; fail naming ``what`` and the last value after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    value = read()
    while not pred(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout}s")
        time.sleep(every)
        value = read()
    return value


class Traffic:
    """Events produced at a steady rate from a background thread until stopped.

    ``make(i)`` builds the i-th event (a dict with an ``event_id``, or the field named by ``id_field``), sent
    with the record key ``key(event)`` if given. Each event is retried until Kafka acknowledges it (acks=all), so
    traffic rides through a broker restart; ``sent`` lists the acknowledged ids in order, ``retries`` counts
    failed attempts (a retried event may land twice: same id).
    """

    def __init__(self, settings: Settings, topic: str, make: Callable[[int], dict[str, Any]],
                 rate: float = 100.0, key: Callable[[dict[str, Any]], bytes] | None = None,
                 id_field: str = "event_id") -> None:
        self.topic = topic
        self.make = make
        self.rate = rate
        self.key = key
        self.id_field = id_field
        self.sent: list[str] = []
        self.retries = 0
        self._producer = KafkaProducer(**settings.kafka_client_config(), acks="all",  # type: ignore[arg-type]
                                       linger_ms=0, retries=5, request_timeout_ms=5000, max_block_ms=5000,
                                       reconnect_backoff_max_ms=500)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Traffic":
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        started = time.monotonic()
        while not self._stop.is_set():
            event = self.make(i)
            while not self._stop.is_set():
                try:
                    self._producer.send(self.topic, orjson.dumps(event),
                                        key=self.key(event) if self.key else None).get(timeout=10)
                    self.sent.append(event[self.id_field])
                    break
                except Exception:  # noqa: BLE001 - the broker is away: try the same event again
                    self.retries += 1
                    time.sleep(0.2)
            i += 1
            pause = started + i / self.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(20)
        self._producer.close(timeout=5)
        return list(self.sent)


class Producer:
    def __init__(self, settings: Settings) -> None:
        self._p = KafkaProducer(**settings.kafka_client_config(), acks="all", linger_ms=0)  # type: ignore[arg-type]

    def send(self, topic: str, value: bytes | dict[str, Any], key: bytes | None = None) -> None:
        body = value if isinstance(value, bytes) else orjson.dumps(value)
        self._p.send(topic, body, key=key).get(timeout=15)

    def close(self) -> None:
        self._p.close()


class RefusedWrites:
    """An output topic whose broker refuses the worker's records, as a full disk or a lost quorum would.

    ``refuse`` lowers the topic's ``max.message.bytes`` below a command's size and waits until the broker
    applies it (the change travels through its metadata log); ``accept`` restores the broker's default.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.admin = KafkaAdminClient(**settings.kafka_client_config())  # type: ignore[arg-type]
        self._probes = Producer(settings)

    def refuse(self, timeout: float = 15.0) -> None:
        self.admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, self.topic, {"max.message.bytes": "64"})])
        wait_until("the broker refusing command-sized records", self._refused, bool, timeout=timeout)

    def _refused(self) -> bool:
        try:
            self._probes.send(self.topic, orjson.dumps({"probe": "x" * 200}))
        except MessageSizeTooLargeError:
            return True
        return False

    def accept(self) -> None:
        self.admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, self.topic,
                                                 {"max.message.bytes": ("DELETE", None)})])

    def close(self) -> None:
        try:
            self.accept()
        finally:
            self.admin.close()
            self._probes.close()


@dataclass
class Record:
    topic: str
    key: bytes | None
    value: bytes
    timestamp_ms: int

    @property
    def json(self) -> Any:
        return orjson.loads(self.value)


@dataclass
class Collector:
    """Reads output topics from the beginning in a background thread."""

    settings: Settings
    topics: list[str]
    records: list[Record] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._consumer = KafkaConsumer(
            *self.topics, **self.settings.kafka_client_config(), group_id=None,  # type: ignore[arg-type]
            auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=200,
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._consumer.poll(timeout_ms=100)
            with self._lock:
                for msgs in batch.values():
                    self.records.extend(Record(m.topic, m.key, m.value, m.timestamp) for m in msgs)

    def matching(self, pred: Callable[[Record], bool]) -> list[Record]:
        with self._lock:
            return [r for r in self.records if pred(r)]

    def wait_for(self, pred: Callable[[Record], bool], count: int = 1, timeout: float = 20.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.matching(pred)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"waited {timeout}s for {count} matching record(s), found {len(self.matching(pred))}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def for_event(event_id: str, topic: str | None = None) -> Callable[[Record], bool]:
    def pred(r: Record) -> bool:
        if topic is not None and r.topic != topic:
            return False
        try:
            return r.json.get("event_id") == event_id
        except orjson.JSONDecodeError:
            return False
    return pred


class PrometheusServer:
    """Debian's ``prometheus`` binary on a free loopback port with its own storage; stopped by PID.

    Scrapes ``targets`` as job ``sekat`` every second and evaluates ``rule_files`` every second.
    """

    def __init__(self, base: Path, targets: list[str], rule_files: list[Path]) -> None:
        self.base = base
        self.port = free_port()
        self.targets = targets
        self.rule_files = rule_files
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "PrometheusServer":
        import shutil

        exe = shutil.which("prometheus")
        if exe is None:
            raise RuntimeError("prometheus is missing: run `make bootstrap` (Debian's prometheus package)")
        self.base.mkdir(parents=True, exist_ok=True)
        config = self.base / "prometheus.yml"
        config.write_text(orjson.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [{"job_name": "sekat", "static_configs": [{"targets": self.targets}]}],
        }).decode())  # JSON is YAML
        log = open(self.base / "prometheus.log", "ab")
        self.proc = subprocess.Popen(
            [exe, f"--config.file={config}", f"--storage.tsdb.path={self.base / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_http_ready("prometheus", self.proc, f"{self.url}/-/ready", self.base / "prometheus.log", timeout)
        return self

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query through the HTTP API; the result vector."""
        from urllib.parse import urlencode

        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urlencode({'query': expr})}", timeout=5) as resp:
            body = orjson.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, expr: str, pred: Callable[[float], bool], timeout: float = 40.0) -> float:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and pred(last):
                return last
            time.sleep(0.5)
        raise AssertionError(f"{expr}: last value {last} after {timeout}s")

    def stop(self, timeout: float = 20.0) -> None:
        stop_process(self.proc, timeout=timeout)


class ApiProcess:
    """``sekat api`` as a child process on a free port; ready once /openapi.json answers (over https, trusting
    ``cafile``, when the settings give it a certificate)."""

    def __init__(self, env: dict[str, str], log_path: Path, cafile: str | None = None) -> None:
        self.env = dict(env)
        self.env.setdefault("SEKAT_API_PORT", str(free_port()))
        self.log_path = log_path
        self.cafile = cafile
        self.settings = Settings.from_environ(self.env)
        scheme = "https" if self.settings.api_tls_certfile else "http"
        self.url = f"{scheme}://127.0.0.1:{self.settings.api_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "ApiProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "sekat.cli", "api"], env=child_env(self.env), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_http_ready("api", self.proc, self.url + "/openapi.json", self.log_path, timeout, self.cafile)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        stop_process(self.proc, timeout=timeout)


@contextlib.contextmanager
def own_api(stack: Stack, logs_dir: Path, name: str, cafile: str | None = None,
            **overrides: str) -> Iterator[ApiProcess]:
    """A ``sekat api`` of its own (own topics and Redis prefix, so its own rate-limit counters), stopped after."""
    name = unique(name)
    api = ApiProcess(isolated_env(stack, name, **overrides), logs_dir / f"{name}-api.log", cafile)
    create_topics(api.settings)
    api.start()
    try:
        yield api
    finally:
        api.stop()


def sekat(env: dict[str, str], *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run the ``sekat`` command with exactly ``env``'s SEKAT_* settings."""
    return subprocess.run([sys.executable, "-m", "sekat.cli", *args], env=child_env(env), capture_output=True,
                          text=True, timeout=timeout)


JAVA_PRODUCER = Path(__file__).resolve().parent / "fixtures" / "ProduceCompressed.java"


def produce_compressed(bootstrap: str, topic: str, value: bytes, codec: str, key: bytes | None = None) -> None:
    """Send one record with Kafka's official Java producer and ``compression.type=codec``, as a bank or telco
    might configure it."""
    result = subprocess.run(["java", "-cp", f"{kafka_lib()}/*", str(JAVA_PRODUCER), bootstrap, topic, codec,
                             *([key.decode()] if key is not None else [])],
                            input=value, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode()[-2000:]


def list_phone(settings: Settings, phone: str, case_ref: str, reason: str = "scam caller") -> None:
    """List ``phone`` as confirmed by PDRM, straight into the index (as the reports agent applies a report)."""
    from sekat.blocklist.store import BlocklistStore
    from sekat.records import Status

    async def go() -> None:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        try:
            await file_report(store, f"phone:{phone}", Status.CONFIRMED, "PDRM", reason, case_ref)
        finally:
            await store.close()

    asyncio.run(go())


def index_entries(settings: Settings, prefix: str | None = None) -> dict[str, dict[str, Any]]:
    """Every entry of the blocklist index under ``prefix`` (the settings' by default), as JSON by key."""
    from sekat.blocklist.store import BlocklistStore

    async def go() -> dict[str, dict[str, Any]]:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix if prefix is None else prefix)
        try:
            return {e.key: e.to_json() async for batch in store.scan_entries() for e in batch}
        finally:
            await store.close()

    return asyncio.run(go())


def rebuilt_from_topic(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The index ``sekat blocklist rebuild`` makes from the reports topic of ``env``, under a fresh prefix."""
    prefix = unique("rebuilt") + ":"
    result = sekat(env | {"SEKAT_REDIS_PREFIX": prefix}, "blocklist", "rebuild")
    assert result.returncode == 0, result.stderr
    rebuilt = index_entries(Settings.from_environ(env), prefix)
    from sekat.blocklist.store import BlocklistStore

    async def drop() -> None:
        store = BlocklistStore.from_url(Settings.from_environ(env).redis_url, prefix)
        try:
            await store.wipe()
        finally:
            await store.close()

    asyncio.run(drop())
    return rebuilt


def report_body(kind: str, value: str, status: str = "confirmed", source: str = "PDRM", **extra: Any) -> dict[str, Any]:
    """A report as an agency files it on the reports topic (docs/contract.md); key it with ``report_key``."""
    return {"report_id": unique("r-"), "reported_at": iso(datetime.now(timezone.utc)), "kind": kind, "value": value,
            "status": status, "source": source, "reason": extra.pop("reason", "scam"), **extra}


def report_key(report: dict[str, Any]) -> bytes:
    """The record key of a report: its identifier's ``kind:value`` (``kind:bank:value`` for an account)."""
    if report["kind"] == "account":
        return f"account:{report['bank']}:{report['value']}".encode()
    return f"phone:{report['value']}".encode()


def committed_to_end(settings: Settings, group: str, topic: str) -> bool:
    """Whether consumer group ``group`` has committed every partition of ``topic`` up to its end."""
    admin = KafkaAdminClient(**settings.kafka_client_config())  # type: ignore[arg-type]
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None)  # type: ignore[arg-type]
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(tps)
        committed = {tp: meta.offset for tp, meta in admin.list_group_offsets(group).get(group, {}).items()}
        return bool(tps) and all(committed.get(tp, -1) == ends[tp] for tp in tps)
    finally:
        consumer.close()
        admin.close()


def list_account(settings: Settings, bank: str, account: str, case_ref: str = "KL/19") -> None:
    """List ``bank``'s ``account`` as a mule confirmed by PDRM, straight into the index (as ``list_phone``)."""
    from sekat.blocklist.store import BlocklistStore
    from sekat.records import Status

    async def go() -> None:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        try:
            await file_report(store, f"account:{bank}:{account}", Status.CONFIRMED, "PDRM", "mule account", case_ref)
        finally:
            await store.close()

    asyncio.run(go())


def transfer_traffic(bank: str, account: str, every: int, listed_ids: list[str]) -> Callable[[int], dict[str, object]]:
    """Transfer events for ``Traffic``: every ``every``-th to ``bank``'s ``account`` (its event id kept in
    ``listed_ids``), the others to accounts of their own."""
    def make(i: int) -> dict[str, object]:
        event_id = unique("t-")
        listed = i % every == 0
        if listed:
            listed_ids.append(event_id)
        payee = {"bank": bank, "account": account} if listed else {"bank": "PBBEMYKL", "account": f"4{i:09d}"}
        return {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "transfer_id": f"DN{i}",
                "amount": "900.00", "currency": "MYR", "payer": {"bank": "MBBEMYKL", "account": f"7{i:09d}"},
                "payee": payee}
    return make


def call_traffic(listed_phone: str, every: int, listed_ids: list[str]) -> Callable[[int], dict[str, object]]:
    """Call events for ``Traffic``: every ``every``-th from ``listed_phone`` (its event id kept in ``listed_ids``)."""
    def make(i: int) -> dict[str, object]:
        event_id = unique("c-")
        listed = i % every == 0
        if listed:
            listed_ids.append(event_id)
        return {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "call_id": f"x{i}",
                "operator": "CELCOM", "caller": listed_phone if listed else f"+601234{i:05d}",
                "callee": f"+60123{i:06d}"}
    return make


async def file_report(store: Any, key: str, status: Any, source: str = "PDRM", reason: str = "scam",
                      case_ref: str = "", expires_at: str = "", reported_at: Any = None) -> None:
    """Apply one report to the index the way the reports agent does (``BlocklistStore.apply``).

    ``expires_at`` in the past files the report two days ago with a one-day ttl; in the future, with a
    ttl of whole days reaching past it.
    """
    import math
    from datetime import datetime, timedelta, timezone

    from sekat.records import Report, Status

    now = datetime.now(timezone.utc)
    ttl_days = 0
    if expires_at:
        expiry = datetime.fromisoformat(expires_at)
        if expiry <= now:
            reported_at, ttl_days = now - timedelta(days=2), 1
        else:
            ttl_days = max(1, math.ceil((expiry - now) / timedelta(days=1)))
    kind, _, rest = key.partition(":")
    bank, value = rest.split(":", 1) if kind == "account" else ("", rest)
    await store.apply([Report(report_id=unique("r-"), reported_at=reported_at or now, kind=kind, value=value,
                              status=Status(status), source=source, bank=bank, case_ref=case_ref, reason=reason,
                              ttl_days=ttl_days, filed_by="test")])


class RelayProcess:
    """``sekat relay`` as a child process; ready once it logs its first partition assignment."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.env.setdefault("SEKAT_RELAY_WEB_PORT", str(free_port()))
        self.log_path = log_path
        self.settings = Settings.from_environ(self.env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> "RelayProcess":
        create_topics(self.settings)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._seen = self.log_path.read_bytes().count(b"Relay ready") if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "sekat.cli", "relay"], env=child_env(self.env),
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.log_path.read_bytes().count(b"Relay ready") > self._seen:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"relay not ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def sample(self, pattern: str) -> float:
        """Sum of the samples on this relay's /metrics whose line starts with ``pattern`` (a regex)."""
        import re

        url = f"http://127.0.0.1:{self.settings.relay_web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            page = resp.read().decode()
        return sum(float(m.group(1)) for m in re.finditer(rf"^{pattern}\S* (\S+)$", page, re.M))

    def stop(self, sig: int = 15, timeout: float = 30.0) -> None:
        stop_process(self.proc, sig, timeout)
