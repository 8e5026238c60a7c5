"""Security end to end: SASL/TLS Kafka with ACLs, a TLS Redis with an ACL user per process, per-institution topics.

Given a broker whose only client listener is SASL_SSL (PLAIN and SCRAM-SHA-512, users written at format
time, ACLs enforced) and a Redis that accepts only TLS and the users of ``sekat redis-acls`` (worker, API,
operators' CLI), when the real ``sekat worker``, ``sekat api`` and CLI run with nothing but ``SEKAT_*``
settings, each as its own Redis user, then a report filed through either path blocks the next event and the
command reaches only its institution's own topic; each bank's principal reads its own topic and is refused
another's; Redis refuses none of the processes' own commands, and refuses the API's user a write to the index
or a new API key and the worker's user the API keys; wrong credentials stop start-up with a message naming
the setting; and no password, phone number or account number appears in any log line or on /metrics.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

from sekat.api.keys import ApiKeyStore
from sekat.blocklist.store import BlocklistStore
from sekat.brake.store import BrakeStore, Trip
from sekat.errors import BlocklistUnavailable
from sekat.localstack.kafka_servers import KafkaBroker
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.localstack.secured import TlsFiles, acl_redis, make_tls_files, secured_broker
from sekat.records import Entry, Status, iso
from sekat.settings import Settings
from sekat.streams.acls import acl_plan
from sekat.streams.topics import create_topics
from tests.support import (
    ApiProcess,
    Collector,
    Producer,
    Stack,
    WorkerProcess,
    file_report,
    for_event,
    isolated_env,
    sekat,
    unique,
)

pytestmark = pytest.mark.integration

KAFKA_PASSWORD = "kpw-" + secrets.token_hex(12)
REDIS_PASSWORD = "rpw-" + secrets.token_hex(12)  # the worker's Redis user, ``sekat``
REDIS_PASSWORDS = {"worker": REDIS_PASSWORD, "api": "rapi-" + secrets.token_hex(12),
                   "admin": "radm-" + secrets.token_hex(12)}
REDIS_USERS = {"worker": "sekat", "api": "sekat-api", "admin": "sekat-admin"}
OPS_PASSWORD = "rops-" + secrets.token_hex(12)  # Redis's administrator: reads ACL LOG and CLIENT LIST
BANK_PASSWORDS = {"bank-mbbe": "mbbe-" + secrets.token_hex(8), "bank-cibb": "cibb-" + secrets.token_hex(8),
                  "telco-celcom": "celcom-" + secrets.token_hex(8)}
API_PASSWORD = "api-" + secrets.token_hex(12)
INSTITUTIONS = {"MBBEMYKL": "User:bank-mbbe", "CIBBMYKL": "User:bank-cibb", "CELCOM": "User:telco-celcom"}
FILING_LIMIT = 5
SECRETS = (KAFKA_PASSWORD, *REDIS_PASSWORDS.values(), API_PASSWORD, *BANK_PASSWORDS.values())


@dataclass
class Secured:
    kafka: KafkaBroker
    redis: RedisServer
    tls: TlsFiles
    env: dict[str, str]  # the worker's SEKAT_* settings
    cli_env: dict[str, str]  # the operators' CLI: Kafka as the API/CLI principal, Redis as the admin user
    worker: WorkerProcess
    api: ApiProcess
    out: Collector  # reads every command topic as the broker's super user
    producer: Producer  # transfers, as bank-mbbe (banks write transfers)
    calls: Producer  # calls, as telco-celcom
    cli_output: list[str] = field(default_factory=list)  # stderr of every CLI run: that is its log

    @property
    def settings(self) -> Settings:
        return self.worker.settings

    def cli(self, *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
        result = sekat(self.cli_env | overrides, *args, timeout=60)
        self.cli_output.append(result.stderr)
        return result

    def routed(self, kind: str, institution: str) -> str:
        return f"{self.settings.topic_freeze if kind == 'bank' else self.settings.topic_block}.{institution}"

    def commands(self, event_id: str, count: int = 1) -> list:
        return self.out.wait_for(lambda r: r.topic != self.settings.topic_deadletter and for_event(event_id)(r),
                                 count)

    def wait_listed(self, key: str, timeout: float = 20.0) -> None:
        """Wait until ``key`` is in the index (over TLS, as the ACL user) and the worker's replica has it."""
        async def get() -> object:
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                return await store.get(key)
            finally:
                await store.close()
        deadline = time.monotonic() + timeout
        while asyncio.run(get()) is None:
            assert time.monotonic() < deadline, f"{key.split(':')[0]} report never reached the index"
            time.sleep(0.05)
        self.worker.wait_replica()

    def wait_listed_by(self, key_id: str) -> None:
        """Some index entry's history names ``api:<key_id>`` as who filed it."""
        async def filed() -> bool:
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                async for batch in store.scan_entries():
                    if any(r.filed_by == f"api:{key_id}" for e in batch for r in e.history):
                        return True
                return False
            finally:
                await store.close()
        deadline = time.monotonic() + 20
        while not asyncio.run(filed()):
            assert time.monotonic() < deadline, f"nothing in the index names api:{key_id} as its filer"
            time.sleep(0.1)

    def list_as_worker(self, key: str) -> None:
        """Apply a confirmed report on ``key`` to the index as the worker's Redis user (as the reports agent does)."""
        async def go() -> None:
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                await file_report(store, key, Status.CONFIRMED, "PDRM")
            finally:
                await store.close()
        asyncio.run(go())

    def redis_as(self, role: str) -> redis.Redis:
        """A plain client of the secured Redis as the user of ``role`` (worker, api, admin) or ``ops``."""
        user, password = ("ops", OPS_PASSWORD) if role == "ops" else (REDIS_USERS[role], REDIS_PASSWORDS[role])
        return redis.Redis(port=self.redis.port, username=user, password=password, ssl=True,
                           ssl_ca_certs=str(self.tls.ca))

    def logs(self) -> str:
        return "\n".join([self.worker.log_path.read_text(errors="replace"),
                          self.api.log_path.read_text(errors="replace"), *self.cli_output])


def grant(kafka: KafkaBroker, settings: Settings) -> None:
    """Exactly the ACLs ``sekat acls`` prints (streams/acls.py), nothing more: least privilege for everyone."""
    acls = [ACL(acl.principal, "*", getattr(ACLOperation, op.upper()), ACLPermissionType.ALLOW,
                ResourcePattern(getattr(ResourceType, acl.resource.upper()), acl.name,
                                getattr(ACLResourcePatternType, acl.pattern.upper())))
            for acl in acl_plan(settings, "User:sekat", "User:sekat-api", INSTITUTIONS) for op in acl.operations]
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)  # the broker's own PLAINTEXT listener (super user)
    try:
        result = admin.create_acls(acls)
        assert not result["failed"], result["failed"]
    finally:
        admin.close()


def as_principal(env: dict[str, str], user: str) -> Settings:
    """Settings for a bank's or telco's own client: SASL PLAIN over TLS as ``user``."""
    return Settings.from_environ(env | {"SEKAT_KAFKA_SASL_USERNAME": user, "SEKAT_KAFKA_SASL_MECHANISM": "PLAIN",
                                        "SEKAT_KAFKA_SASL_PASSWORD": BANK_PASSWORDS[user]})


@pytest.fixture(scope="module")
def secured(logs_dir: Path) -> Iterator[Secured]:
    base = Path(tempfile.mkdtemp(prefix="sekat-secure-"))
    tls = make_tls_files(base / "tls")
    sasl_port = free_port()
    users = {"sekat": KAFKA_PASSWORD, "sekat-api": API_PASSWORD, **BANK_PASSWORDS}
    kafka = secured_broker(base / "kafka", free_port(), free_port(), sasl_port, users, tls=tls, authorizer=True)
    name = unique("sec")
    # One Redis user per process (sekat.redis_acl): its commands, its keys under the prefix, no administration.
    redis_server = acl_redis(base / "redis", free_port(), REDIS_PASSWORDS, prefix=f"{name}:", tls=tls,
                             ops_password=OPS_PASSWORD)
    worker = api = out = producer = calls = None

    def redis_url(role: str) -> str:
        return (f"rediss://{REDIS_USERS[role]}:{REDIS_PASSWORDS[role]}@127.0.0.1:{redis_server.port}/0"
                f"?ssl_ca_certs={tls.ca}")
    try:
        redis_server.start()
        kafka.start()
        env = isolated_env(Stack(kafka, redis_server), name, **{
            "SEKAT_KAFKA_BOOTSTRAP": f"127.0.0.1:{sasl_port}", "SEKAT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SEKAT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "SEKAT_KAFKA_SASL_USERNAME": "sekat",
            "SEKAT_KAFKA_SASL_PASSWORD": KAFKA_PASSWORD, "SEKAT_KAFKA_SSL_CAFILE": str(tls.ca),
            "SEKAT_REDIS_URL": redis_url("worker"),
            "SEKAT_COMMAND_ROUTING": "per-institution", "SEKAT_ROUTE_BANKS": "MBBEMYKL,CIBBMYKL",
            "SEKAT_ROUTE_OPERATORS": "CELCOM", "SEKAT_FILING_RATE_PER_MINUTE": str(FILING_LIMIT)})
        # An administrator creates the topics and grants the ACLs over the broker's own listener.
        admin_view = Settings.from_environ(env | {"SEKAT_KAFKA_BOOTSTRAP": kafka.bootstrap,
                                                  "SEKAT_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
        create_topics(admin_view)
        grant(kafka, admin_view)
        worker = WorkerProcess(env, logs_dir / f"{name}-worker.log")  # held before start: stopped even if it fails
        worker.start(timeout=120)
        # The API on the other mechanism, PLAIN over TLS, and at debug level: aiokafka's debug lines print
        # each request, the SASL bytes with the password among them (the log check below guards that).
        # Redis as the API's own user (SEKAT_API_REDIS_URL).
        api = ApiProcess(env | {"SEKAT_KAFKA_SASL_MECHANISM": "PLAIN", "SEKAT_KAFKA_SASL_USERNAME": "sekat-api",
                                "SEKAT_KAFKA_SASL_PASSWORD": API_PASSWORD, "SEKAT_LOG_LEVEL": "debug",
                                "SEKAT_API_REDIS_URL": redis_url("api")},
                         logs_dir / f"{name}-api.log")
        api.start()
        s = worker.settings
        out = Collector(admin_view, [s.topic_freeze, s.topic_block, s.topic_deadletter,
                                     *s.command_topics().values()])
        producer, calls = Producer(as_principal(env, "bank-mbbe")), Producer(as_principal(env, "telco-celcom"))
        # The operators' CLI files, reads (audited) and erases as the agency API/CLI principal, Redis as admin.
        cli_env = env | {"SEKAT_KAFKA_SASL_MECHANISM": "PLAIN", "SEKAT_KAFKA_SASL_USERNAME": "sekat-api",
                         "SEKAT_KAFKA_SASL_PASSWORD": API_PASSWORD, "SEKAT_REDIS_URL": redis_url("admin")}
        yield Secured(kafka, redis_server, tls, env, cli_env, worker, api, out, producer, calls)
    finally:
        for closing in (producer, calls, out):
            if closing is not None:
                closing.close()
        for proc in (api, worker):
            if proc is not None:
                proc.stop()
        kafka.stop()
        redis_server.stop()
        shutil.rmtree(base, ignore_errors=True)


def fresh_mobile() -> tuple[str, str]:
    """A random Malaysian mobile number as (national format with separators, E.164)."""
    digits = f"{secrets.randbelow(10**7):07d}"
    return f"012-{digits[:3]} {digits[3:]}", f"+6012{digits}"


def fresh_account() -> tuple[str, str]:
    digits = f"8{secrets.randbelow(10**9):09d}"
    return f"{digits[:3]}-{digits[3:6]} {digits[6:]}", digits


def transfer(sec: Secured, payee_written: str, payer_written: str, payer_phone: str) -> str:
    event_id = unique("t-")
    sec.producer.send(sec.settings.topic_transfers, {
        "event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "transfer_id": unique("DN"),
        "channel": "DUITNOW", "amount": "1500.00", "currency": "MYR",
        "payer": {"bank": "MBBEMYKL", "account": payer_written, "phone": payer_phone},
        "payee": {"bank": "CIBBMYKLXXX", "account": payee_written}}, key=payer_written.encode())
    return event_id


def call(sec: Secured, caller: str, callee: str, operator: str) -> str:
    event_id = unique("c-")
    sec.calls.send(sec.settings.topic_calls, {
        "event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "call_id": unique("call-"),
        "operator": operator, "caller": caller, "callee": callee}, key=caller.encode())
    return event_id


def read_as(sec: Secured, user: str, topic: str, timeout: float = 15.0) -> list[bytes]:
    """What ``user`` (a bank's principal, SASL PLAIN over TLS) can read from ``topic``."""
    s = as_principal(sec.env, user)
    group = next(code for code, principal in INSTITUTIONS.items() if principal == f"User:{user}") + "-app"
    consumer = KafkaConsumer(topic, **s.kafka_client_config(), group_id=group,  # type: ignore[arg-type]
                             auto_offset_reset="earliest", enable_auto_commit=False)
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not values:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
    finally:
        consumer.close()
    return values


# Identifiers that cross every path in the module, in every written form; the log check looks for each.
MULE_WRITTEN, MULE = fresh_account()
PAYER_WRITTEN, PAYER = fresh_account()
PAYER_PHONE_NATIONAL, PAYER_PHONE = fresh_mobile()
SCAMMER_NATIONAL, SCAMMER = fresh_mobile()
VICTIM_NATIONAL, VICTIM = fresh_mobile()


def test_cli_report_and_worker_over_sasl_ssl_and_acl_redis_reach_only_the_banks_own_topics(secured: Secured) -> None:
    filed = secured.cli("blocklist", "add", "--account", MULE_WRITTEN, "--bank", "CIBBMYKL", "--status",
                        "confirmed", "--source", "PDRM", "--case-ref", "KL/2026/7")
    assert filed.returncode == 0, filed.stderr
    secured.wait_listed(f"account:CIBBMYKL:{MULE}")  # applied by the worker's reports agent (Faust, SCRAM)
    shown = secured.cli("blocklist", "show", "--account", MULE_WRITTEN, "--bank", "CIBBMYKL",
                        "--purpose", "case KL/2026/7")
    assert shown.returncode == 0 and '"confirmed"' in shown.stdout, shown.stderr
    exported = secured.cli("blocklist", "export", "--purpose", "reconciliation KL/2026/7")  # audited per entry
    assert exported.returncode == 0 and f"account:CIBBMYKL:{MULE}" in exported.stdout, exported.stderr

    event_id = transfer(secured, MULE_WRITTEN, PAYER_WRITTEN, PAYER_PHONE_NATIONAL)
    cmds = {c.json["action"]: c for c in secured.commands(event_id, count=2)}
    assert cmds["HOLD_TRANSFER"].topic == secured.routed("bank", "MBBEMYKL")
    assert cmds["FREEZE_ACCOUNT"].topic == secured.routed("bank", "CIBBMYKL")
    assert not secured.out.matching(lambda r: r.topic == secured.settings.topic_freeze and for_event(event_id)(r))

    # Each bank's principal reads its own commands; the broker refuses it the other bank's, which hold data.
    assert any(event_id.encode() in v and b"HOLD_TRANSFER" in v
               for v in read_as(secured, "bank-mbbe", secured.routed("bank", "MBBEMYKL")))
    assert any(event_id.encode() in v and b"FREEZE_ACCOUNT" in v
               for v in read_as(secured, "bank-cibb", secured.routed("bank", "CIBBMYKL")))
    assert read_as(secured, "bank-mbbe", secured.routed("bank", "CIBBMYKL"), timeout=4) == []
    assert read_as(secured, "bank-cibb", secured.routed("bank", "MBBEMYKL"), timeout=4) == []


def test_api_report_over_sasl_plain_blocks_on_the_operators_topic_and_unrouted_stay_shared(secured: Secured) -> None:
    created = secured.cli("apikey", "create", "--agency", "MCMC", "--scopes", "report,confirm")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    reply = httpx.post(f"{secured.api.url}/v1/reports", headers={"X-API-Key": token}, timeout=20,
                       json={"kind": "phone", "value": SCAMMER_NATIONAL, "status": "confirmed", "reason": "scam"})
    assert reply.status_code == 202, reply.text
    secured.wait_listed(f"phone:{SCAMMER}")

    routed = call(secured, SCAMMER_NATIONAL, VICTIM_NATIONAL, "CELCOM")
    unrouted = call(secured, SCAMMER.replace("+", ""), VICTIM, "DIGI")
    [blocked] = secured.commands(routed)
    assert blocked.topic == secured.routed("telco", "CELCOM") and blocked.json["action"] == "BLOCK_CALL"
    [shared] = secured.commands(unrouted)
    assert shared.topic == secured.settings.topic_block and shared.key == b"DIGI"
    assert read_as(secured, "bank-mbbe", secured.settings.topic_block, timeout=4) == []  # no ACL: refused


def test_a_stolen_key_is_contained_by_scope_rate_limit_audit_and_revocation(secured: Secured) -> None:
    created = secured.cli("apikey", "create", "--agency", "MBBEMYKL", "--scopes", "report")
    token = created.stdout.strip()
    key_id = token.split("_")[1]

    def file(status: str = "reported") -> httpx.Response:
        return httpx.post(f"{secured.api.url}/v1/reports", headers={"X-API-Key": token}, timeout=20,
                          json={"kind": "phone", "value": fresh_mobile()[1], "status": status, "reason": "x"})

    # Scope: a bank's report-only key cannot confirm (so cannot block outright) and cannot revoke.
    assert file("confirmed").status_code == 403
    revoked = httpx.post(f"{secured.api.url}/v1/revocations", headers={"X-API-Key": token}, timeout=20,
                         json={"kind": "phone", "value": SCAMMER, "reason": "stolen key"})
    assert revoked.status_code == 403
    # Rate limit: at most FILING_LIMIT filings a minute per key (two windows if the minute turns meanwhile).
    answers = []
    while 429 not in answers and len(answers) <= 2 * FILING_LIMIT:
        answers.append(file().status_code)
    assert answers[-1] == 429 and set(answers[:-1]) == {202} and len(answers) - 1 <= 2 * FILING_LIMIT
    # Audit: what the key filed carries its id, in the index history and in the API log.
    secured.wait_listed_by(key_id)
    assert f"(key {key_id})" in secured.api.log_path.read_text()
    # Revocation: disabled at once, with the time recorded.
    assert secured.cli("apikey", "disable", key_id).returncode == 0
    assert file().status_code == 401
    listed = [line for line in secured.cli("apikey", "list").stdout.splitlines() if key_id in line]
    assert '"disabled":true' in listed[0] and '"disabled_at"' in listed[0]


def test_a_brake_re_arm_over_the_api_principal_is_audited_and_done(secured: Secured) -> None:
    # Given a target the brake tripped, when an authority re-arms it through the API (its principal has only
    # the plan's ACLs), then the audit record is accepted on the decisions topic and the brake lets go.
    s = secured.settings
    target = f"rule:{unique('acl')}"

    async def tripped(trip: Trip | None) -> dict[str, dict[str, object]]:
        store = BrakeStore.from_url(s.redis_url, s.redis_prefix)
        try:
            if trip is not None:
                assert await store.trip(trip)
            return await store.tripped()
        finally:
            await store.close()

    asyncio.run(tripped(Trip(target, 70_000, 60_000, 60, iso(datetime.now(timezone.utc)), "test")))
    created = secured.cli("apikey", "create", "--agency", "NSRC", "--scopes", "rearm")
    assert created.returncode == 0, created.stderr
    reply = httpx.post(f"{secured.api.url}/v1/brake/rearm", headers={"X-API-Key": created.stdout.strip()},
                       json={"target": target, "reason": "rule parameter restored"}, timeout=20)
    assert reply.status_code == 200, reply.text
    assert target not in asyncio.run(tripped(None))


@pytest.mark.parametrize("override,setting", [
    ({"SEKAT_KAFKA_SASL_PASSWORD": "not-the-password"}, "SEKAT_KAFKA_SASL_PASSWORD"),
    ({"SEKAT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"}, "SEKAT_KAFKA_SASL_MECHANISM"),
    ({"SEKAT_KAFKA_SSL_CAFILE": ""}, "SEKAT_KAFKA_SSL_CAFILE"),
    ({"SEKAT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "SEKAT_KAFKA_SECURITY_PROTOCOL"),
    ({"SEKAT_REDIS_URL": "wrong-redis-password"}, "SEKAT_REDIS_URL"),
    ({"SEKAT_REDIS_URL": "no-user"}, "SEKAT_REDIS_URL"),
    ({"SEKAT_REDIS_URL": "untrusted"}, "SEKAT_REDIS_URL"),
])
def test_wrong_credentials_stop_start_up_naming_the_setting(secured: Secured, override: dict[str, str],
                                                            setting: str) -> None:
    port, ca = secured.redis.port, secured.tls.ca
    redis_urls = {"wrong-redis-password": f"rediss://sekat:nope@127.0.0.1:{port}/0?ssl_ca_certs={ca}",
                  "no-user": f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}",
                  "untrusted": f"rediss://sekat:{REDIS_PASSWORD}@127.0.0.1:{port}/0"}  # no CA given
    env = {k: redis_urls.get(v, v) if k == "SEKAT_REDIS_URL" else v for k, v in override.items()}
    # A wrong password is tried on every kind of process; the other cases on the worker (one start-up check).
    every = "SEKAT_KAFKA_SASL_PASSWORD" in override or override.get("SEKAT_REDIS_URL") == "wrong-redis-password"
    commands = [["worker"], ["api"], ["blocklist", "add", "--phone", SCAMMER, "--source", "PDRM"]]
    for command in commands if every else commands[:1]:
        if command[0] == "blocklist" and setting == "SEKAT_REDIS_URL":
            command = ["blocklist", "show", "--phone", SCAMMER, "--purpose", "case check"]
        started = time.monotonic()
        result = secured.cli(*command, **env)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert f"invalid configuration: {setting}:" in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr and time.monotonic() - started < 30
        assert "not-the-password" not in result.stderr and "nope" not in result.stderr


def test_no_secret_on_metrics_and_no_secret_or_identifier_in_any_log_line(secured: Secured) -> None:
    # Bad input naming identifiers too: dead-lettered, never logged.
    secured.producer.send(secured.settings.topic_transfers, {"event_id": unique("t-"), "payer": {
        "account": PAYER_WRITTEN, "phone": PAYER_PHONE}, "payee": {"account": MULE}})
    secured.calls.send(secured.settings.topic_calls, f'{{"caller": "{SCAMMER}", "callee": "{VICTIM}"'.encode())
    secured.out.wait_for(lambda r: r.topic == secured.settings.topic_deadletter, count=2)
    bad = httpx.post(f"{secured.api.url}/v1/reports", headers={"X-API-Key": "sekat_nokey_x"}, timeout=10,
                     json={"kind": "phone", "value": VICTIM_NATIONAL})
    assert bad.status_code == 401
    assert httpx.get(f"{secured.api.url}/v1/status", params={"phone": VICTIM_NATIONAL}, timeout=10).json() == {
        "listed": False}
    # The CLI at debug level too, on both servers.
    for args in (("blocklist", "add", "--phone", VICTIM_NATIONAL, "--source", "PDRM", "--reason", "x"),
                 ("blocklist", "show", "--phone", VICTIM_NATIONAL, "--purpose", "complaint"), ("blocklist", "revoke", "--phone", VICTIM,
                                                                    "--source", "NSRC", "--reason", "appeal")):
        secured.cli(*args, SEKAT_LOG_LEVEL="debug")
    status, metrics = secured.worker.get("/metrics")
    assert status == 200 and b"sekat_" in metrics
    assert "DEBUG" in secured.api.log_path.read_text(), "the API ran at debug level"

    logs = secured.logs()
    for secret in SECRETS:
        assert secret not in logs and secret.encode() not in metrics, "a password reached a log or /metrics"
    # Every written form, and the bare digits with separators taken out of the log text.
    flat = re.sub(r"[\s\-+()]", "", logs)
    for written, digits in ((MULE_WRITTEN, MULE), (PAYER_WRITTEN, PAYER), (PAYER_PHONE_NATIONAL, PAYER_PHONE),
                            (SCAMMER_NATIONAL, SCAMMER), (VICTIM_NATIONAL, VICTIM)):
        national = digits.removeprefix("+60")
        for form in (written, digits, digits.lstrip("+")):
            assert form not in logs, f"identifier in plain text in a log: {form[:3]}..."
        assert national not in flat, f"identifier digits in a log: {national[:3]}..."
        assert national.encode() not in metrics


def refusals(sec: Secured) -> list[dict[str, object]]:
    """What Redis refused Sekat's users (ACL LOG, read as the administrator): commands and keys, not logins."""
    ops = sec.redis_as("ops")
    try:
        return [e for e in ops.acl_log(count=1000) if e["username"] in REDIS_USERS.values() and e["reason"] != "auth"]
    finally:
        ops.close()


def test_each_process_is_its_own_redis_user_and_redis_refused_none_of_their_commands(secured: Secured) -> None:
    # Runs after every scenario above (rebuild at start, reports applied, screening, rule state, the brake, a
    # re-arm through the API, key management and revocations through the CLI): none was refused anything.
    assert refusals(secured) == []
    ops = secured.redis_as("ops")
    try:
        connected = {c["user"] for c in ops.client_list()}
    finally:
        ops.close()
    assert {"sekat", "sekat-api"} <= connected, connected  # the worker's and the API's pools, each its own user
    # The users the secured Redis runs with are the lines `sekat redis-acls` prints for this prefix.
    printed = secured.cli("redis-acls")
    assert printed.returncode == 0, printed.stderr
    running = (secured.redis.data_dir / "users.acl").read_text()
    for password in REDIS_PASSWORDS.values():
        running = running.replace(f">{password} ", ">PASSWORD ")
    assert printed.stdout.splitlines() == running.splitlines()[1:4]


def test_the_api_user_cannot_write_the_index_or_mint_keys_and_the_worker_user_cannot_touch_api_keys(
        secured: Secured) -> None:
    s = secured.settings
    p = s.redis_prefix
    listed = fresh_mobile()[1]
    secured.list_as_worker(f"phone:{listed}")
    api, worker = secured.redis_as("api"), secured.redis_as("worker")
    entry = f"{p}bl:phone:{listed}"
    try:
        # The API's user reads entries, and nothing lets it change the index or the keys.
        before = api.get(entry)
        assert before is not None
        refused = [(api.set, (entry, b"{}")), (api.delete, (entry,)),
                   (api.xadd, (f"{p}bl:changes", {"key": f"phone:{listed}"})),
                   (api.set, (f"{p}index:built", "forged")), (api.hset, (f"{p}apikeys", "k", "{}")),
                   (api.zadd, (f"{p}acted:due", {"x": 0})), (api.set, (f"{p}rs:x", "1")),
                   (api.lpush, (f"{p}brake:tripped", "x")),  # a list where workers keep a hash: refused
                   (api.flushdb, ()), (api.keys, ("*",)), (api.config_get, ("*",)), (api.scan, (0,)),
                   (api.eval, ("return redis.call('set', KEYS[1], '{}')", 1, entry))]
        for command, args in refused:
            with pytest.raises(redis.exceptions.NoPermissionError):
                command(*args)
        # Through Sekat's own code too: a blocklist write and a new key are refused, not half-done.
        async def as_api() -> None:
            store = BlocklistStore.from_url(secured.api.settings.api_redis()[0], p)
            try:
                with pytest.raises(BlocklistUnavailable) as failed:
                    await store.put(Entry(f"phone:{VICTIM}", Status.CONFIRMED, "PDRM"))
                assert isinstance(failed.value.__cause__, redis.exceptions.NoPermissionError)
                with pytest.raises(BlocklistUnavailable) as failed:
                    await ApiKeyStore(store.client, p).create("PDRM", ("report", "confirm"))
                assert isinstance(failed.value.__cause__, redis.exceptions.NoPermissionError)
            finally:
                await store.close()
        asyncio.run(as_api())
        assert api.get(entry) == before  # unchanged
        # The worker's user: no API keys (read or write), no rate counters, no administration.
        for command, args in [(worker.hget, (f"{p}apikeys", "k")), (worker.hset, (f"{p}apikeys", "k", "{}")),
                              (worker.hgetall, (f"{p}apikeys",)), (worker.incr, (f"{p}rl:status:x:1",)),
                              (worker.flushall, ()), (worker.config_set, ("appendonly", "yes")),
                              (worker.keys, ("*",)), (worker.get, ("elsewhere:bl:x",))]:
            with pytest.raises(redis.exceptions.NoPermissionError):
                command(*args)
    finally:
        api.close()
        worker.close()
    # Redis logs a command the user may send on other keys by the key it refused: the API's SET and HSET are
    # its own on feedback (fb:*), so a forged entry and a minted key are refused by key.
    assert {(e["username"], e["object"]) for e in refusals(secured)} >= {
        ("sekat-api", entry), ("sekat-api", "xadd"), ("sekat-api", f"{p}apikeys"), ("sekat", "hget"),
        ("sekat", f"{p}rl:status:x:1")}  # SET is the API's for appeals and feedback, INCRBY the worker's for the entry count: refused by key here
