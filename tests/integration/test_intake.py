"""Blocklist intake end to end: agency API and Kafka reports → reports agent → index → decisions.

Runs one real ``sekat worker`` and one real ``sekat api`` (child processes) on
the session's real Kafka broker and Redis. Given an agency key, when it files,
confirms or revokes through the API (or a producer writes the topic), then
the index, the public status check and the commands for the next event follow.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata

from sekat.blocklist.applied import reports_group
from sekat.blocklist.bulk import CHUNK
from sekat.blocklist.lifecycle import RECENT_KEPT, merge
from sekat.blocklist.store import BlocklistStore
from sekat.decode.reports import decode_report
from sekat.records import Entry, Status, iso
from sekat.streams.topics import create_topics
from tests.support import (ApiProcess, Collector, Producer, Stack, WorkerProcess, committed_to_end, for_event,
                           index_entries, isolated_env, sekat, unique)

pytestmark = pytest.mark.integration

PROTECTED_ACCOUNT = ("BNMAMYKL", "1234567890")  # a government collection account on the protected list


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Desk:
    """An agency's view: keys, the API, the index and the command topics."""

    def __init__(self, worker: WorkerProcess, api: ApiProcess, collector: Collector, producer: Producer) -> None:
        self.worker, self.api, self.out, self.producer = worker, api, collector, producer
        self.settings = worker.settings
        self.env = worker.env
        self.http = httpx.Client(base_url=api.url, timeout=20)
        self.keys: dict[str, str] = {}

    def key(self, agency: str, scopes: str) -> str:
        name = f"{agency}:{scopes}"
        if name not in self.keys:
            result = sekat(self.env, "apikey", "create", "--agency", agency, "--scopes", scopes)
            assert result.returncode == 0, result.stderr
            self.keys[name] = result.stdout.strip()
        return self.keys[name]

    def file(self, key: str, **body: Any) -> httpx.Response:
        return self.http.post("/v1/reports", json=body, headers={"X-API-Key": key})

    def revoke(self, key: str, **body: Any) -> httpx.Response:
        return self.http.post("/v1/revocations", json=body, headers={"X-API-Key": key})

    def entry(self, key: str) -> Entry | None:
        async def go() -> Entry | None:
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                return await store.get(key)
            finally:
                await store.close()
        return run(go())

    def wait_entry(self, key: str, pred: Any = lambda e: True, timeout: float = 20.0) -> Entry:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.entry(key)
            if found is not None and pred(found):
                self.worker.wait_replica()  # and the worker's replica has it: the next event sees it
                return found
            time.sleep(0.05)
        raise AssertionError(f"index entry {key} did not reach the expected state in {timeout}s: {self.entry(key)}")

    def index(self) -> dict[str, dict[str, Any]]:
        async def go() -> dict[str, dict[str, Any]]:
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                return {e.key: e.to_json() async for batch in store.scan_entries() for e in batch}
            finally:
                await store.close()
        return run(go())

    def call(self, caller: str) -> str:
        event_id = unique("c-")
        body = {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "call_id": unique("call-"),
                "operator": "CELCOM", "caller": caller, "callee": "+60123456780"}
        self.producer.send(self.settings.topic_calls, body, key=caller.encode())
        return event_id

    def report_on_topic(self, key: str | None = None, **body: Any) -> None:
        full = {"report_id": unique("r-"), "reported_at": iso(datetime.now(timezone.utc)), "source": "PDRM",
                "status": "confirmed", **body}
        if key is None:
            key = f"phone:{full['value']}" if full.get("kind") == "phone" else \
                f"account:{full.get('bank')}:{full.get('value')}"
        self.producer.send(self.settings.topic_reports, full, key=key.encode())

    def dead(self, marker: str, timeout: float = 20.0) -> dict[str, Any]:
        [record] = self.out.wait_for(
            lambda r: r.topic == self.settings.topic_deadletter and marker.encode() in
            base64.b64decode(r.json["original_b64"]), timeout=timeout)
        return record.json


@pytest.fixture(scope="module")
def desk(stack: Stack, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    name = unique("int")
    protected = tmp_path_factory.mktemp("protected") / "protected.txt"
    protected.write_text("# government collection accounts\n" + ":".join(PROTECTED_ACCOUNT) + "\n+60 3-8888 0000\n")
    env = isolated_env(stack, name, SEKAT_PROTECTED_FILE=str(protected), SEKAT_STATUS_RATE_PER_MINUTE="1000")
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    api = ApiProcess(env, logs_dir / f"{name}-api.log").start()
    s = worker.settings
    collector = Collector(s, [s.topic_freeze, s.topic_block, s.topic_deadletter, s.topic_reports])
    producer = Producer(s)
    d = Desk(worker, api, collector, producer)
    try:
        yield d
    finally:
        d.http.close()
        producer.close()
        collector.close()
        api.stop()
        worker.stop()


def mobile() -> str:
    digits = str(int(unique("")[:8], 16))[-7:].rjust(7, "0")
    return f"+6012{digits}"


def account() -> str:
    return str(int(unique("")[:10], 16))[-10:].rjust(10, "0")


# --- auth -----------------------------------------------------------------------------------------------


def test_no_key_is_401_and_a_wrong_or_disabled_key_is_401(desk: Desk) -> None:
    body = {"kind": "phone", "value": mobile()}
    assert desk.http.post("/v1/reports", json=body).status_code == 401
    assert desk.file("sekat_nope_nope", **body).status_code == 401
    created = sekat(desk.env, "apikey", "create", "--agency", "MCMC", "--scopes", "report")
    token = created.stdout.strip()
    key_id = token.split("_")[1]
    assert desk.file(token, **body).status_code == 202
    listed = sekat(desk.env, "apikey", "list").stdout
    assert key_id in listed and token.split("_", 2)[2] not in listed, "the secret is never stored or shown again"
    assert sekat(desk.env, "apikey", "disable", key_id).returncode == 0
    assert desk.file(token, **body).status_code == 401


def test_missing_scope_is_403(desk: Desk) -> None:
    reporter = desk.key("MBBEMYKL", "report")
    r = desk.file(reporter, kind="phone", value=mobile(), status="confirmed")
    assert r.status_code == 403 and "confirm" in r.json()["detail"]["message"]
    assert desk.revoke(reporter, kind="phone", value=mobile(), reason="x").status_code == 403
    assert desk.http.get("/v1/entries", params={"phone": mobile()},
                         headers={"X-API-Key": reporter}).status_code == 403


def test_a_key_cannot_file_for_another_agency(desk: Desk) -> None:
    pdrm = desk.key("PDRM", "report,confirm")
    number = mobile()
    r = desk.file(pdrm, kind="phone", value=number, status="confirmed", source="NSRC")
    assert r.status_code == 403 and r.json()["detail"]["field"] == "source"
    ok = desk.file(pdrm, kind="phone", value=number, status="confirmed", source="pdrm")
    assert ok.status_code == 202 and ok.json()["source"] == "PDRM"
    entry = desk.wait_entry(f"phone:{number}")
    assert entry.sources == ("PDRM",) and entry.history[0].filed_by.startswith("api:")


# --- lifecycle through the API and the real worker ------------------------------------------------------


def test_lifecycle_merge_revoke_and_reconfirm(desk: Desk) -> None:
    bank_key = desk.key("MBBEMYKL", "report")
    pdrm = desk.key("PDRM", "report,confirm,read")
    nsrc = desk.key("NSRC", "report,confirm,revoke,read")
    number = account()
    ident = dict(kind="account", bank="CIBBMYKLXXX", value=f"{number[:3]}-{number[3:]}")
    key = f"account:CIBBMYKL:{number}"

    assert desk.file(bank_key, **ident, case_ref="BANK/1", reason="mule inflow", ttl_days=30).status_code == 202
    e = desk.wait_entry(key)
    assert e.status.value == "reported" and e.expires_at
    reported_until = e.expires_at

    # no ttl_days: the expiry policy's days for a confirmed report (SEKAT_EXPIRY_DAYS, 365 by default)
    assert desk.file(pdrm, **ident, status="confirmed", case_ref="KL/2026/9", reason="investment scam").status_code == 202
    e = desk.wait_entry(key, lambda e: e.report_count == 2)
    assert e.status.value == "confirmed" and e.source == "PDRM" and e.expires_at > reported_until
    assert e.history[-1].ttl_days == 365
    assert e.sources == ("MBBEMYKL", "PDRM") and e.case_refs == ("BANK/1", "KL/2026/9")
    assert e.first_seen < e.last_seen

    r = desk.revoke(nsrc, **ident, reason="appeal upheld: salary account")
    assert r.status_code == 202
    e = desk.wait_entry(key, lambda e: e.report_count == 3)
    assert e.status.value == "revoked" and e.reason == "appeal upheld: salary account"

    desk.file(bank_key, **ident, reason="again")  # unverified: does not undo the upheld appeal
    e = desk.wait_entry(key, lambda e: e.report_count == 4)
    assert e.status.value == "revoked"
    assert desk.http.get("/v1/status", params={"account": number, "bank": "CIBBMYKL"}).json() == {"listed": False}

    desk.file(nsrc, **ident, status="confirmed", case_ref="KL/2026/10")
    e = desk.wait_entry(key, lambda e: e.report_count == 5)
    assert e.status.value == "confirmed"
    assert desk.http.get("/v1/status", params={"account": number, "bank": "CIBBMYKL"}).json() == {"listed": True}

    looked = desk.http.get("/v1/entries", params={"account": number, "bank": "CIBBMYKL", "purpose": "case KL/2026/9"},
                           headers={"X-API-Key": pdrm})
    assert looked.status_code == 200
    history = looked.json()["history"]
    assert [h["status"] for h in history] == ["reported", "confirmed", "revoked", "reported", "confirmed"]
    assert [h["source"] for h in history] == ["MBBEMYKL", "PDRM", "NSRC", "MBBEMYKL", "NSRC"]
    assert all(h["reported_at"] and h["filed_by"].startswith("api:") for h in history)


def test_revoke_then_event_a_listed_caller_stops_being_blocked(desk: Desk) -> None:
    pdrm = desk.key("PDRM", "report,confirm")
    nsrc = desk.key("NSRC", "report,confirm,revoke,read")
    number = mobile()
    assert desk.file(pdrm, kind="phone", value=number, status="confirmed").status_code == 202
    desk.wait_entry(f"phone:{number}")
    [cmd] = desk.out.wait_for(for_event(desk.call(number), desk.settings.topic_block))
    assert cmd.json["action"] == "BLOCK_CALL"

    assert desk.revoke(nsrc, kind="phone", value=number, reason="appeal upheld").status_code == 202
    desk.wait_entry(f"phone:{number}", lambda e: e.status.value == "revoked")
    quiet = desk.call(number)
    sentinel = mobile()
    desk.file(pdrm, kind="phone", value=sentinel, status="confirmed")
    desk.wait_entry(f"phone:{sentinel}")
    for _ in range(4):  # one per partition at least: once these are out, the quiet one was decided
        desk.out.wait_for(for_event(desk.call(sentinel), desk.settings.topic_block))
    assert not desk.out.matching(for_event(quiet, desk.settings.topic_block))


def test_an_expired_entry_no_longer_matches(desk: Desk) -> None:
    number = mobile()
    two_days_ago = iso(datetime.now(timezone.utc) - timedelta(days=2))
    desk.report_on_topic(kind="phone", value=number, reported_at=two_days_ago, ttl_days=1)
    e = desk.wait_entry(f"phone:{number}")
    assert e.expires_at and not e.active_at(datetime.now(timezone.utc))
    assert desk.http.get("/v1/status", params={"phone": number}).json() == {"listed": False}
    quiet = desk.call(number)
    live = mobile()
    desk.report_on_topic(kind="phone", value=live)
    desk.wait_entry(f"phone:{live}")
    for _ in range(4):
        desk.out.wait_for(for_event(desk.call(live), desk.settings.topic_block))
    assert not desk.out.matching(for_event(quiet, desk.settings.topic_block))


def test_an_older_report_arriving_late_does_not_override_a_newer_revocation(desk: Desk) -> None:
    number = mobile()
    now = datetime.now(timezone.utc)
    desk.report_on_topic(kind="phone", value=number, reported_at=iso(now - timedelta(hours=2)))
    desk.report_on_topic(kind="phone", value=number, status="revoked", source="NSRC", reason="appeal",
                         reported_at=iso(now - timedelta(minutes=1)))
    desk.report_on_topic(kind="phone", value=number, status="confirmed", reported_at=iso(now - timedelta(hours=1)))
    e = desk.wait_entry(f"phone:{number}", lambda e: e.report_count == 3)
    assert e.status.value == "revoked"


# --- protected identifiers and bad input ----------------------------------------------------------------


def test_protected_identifiers_are_refused_with_a_reason(desk: Desk) -> None:
    pdrm = desk.key("PDRM", "report,confirm")
    for body in ({"kind": "phone", "value": "999"}, {"kind": "phone", "value": "15999"},
                 {"kind": "phone", "value": "03-8888 0000"},
                 {"kind": "account", "bank": PROTECTED_ACCOUNT[0], "value": PROTECTED_ACCOUNT[1]}):
        r = desk.file(pdrm, **body, status="confirmed")
        assert r.status_code == 422, body
        assert r.json()["detail"]["field"] == "value" and "never be listed" in r.json()["detail"]["message"]
    marker = unique("r-protected-")
    desk.report_on_topic(key=f"account:{PROTECTED_ACCOUNT[0]}:{PROTECTED_ACCOUNT[1]}", report_id=marker,
                         kind="account", bank=PROTECTED_ACCOUNT[0], value=PROTECTED_ACCOUNT[1])
    dead = desk.dead(marker)
    assert dead["reason"] == "protected" and dead["field"] == "value"
    assert desk.entry(f"account:{PROTECTED_ACCOUNT[0]}:{PROTECTED_ACCOUNT[1]}") is None


@pytest.mark.parametrize("mutate,reason,field", [
    (lambda b: b.pop("report_id"), "missing_field", "report_id"),
    (lambda b: b.update(status="maybe"), "invalid_value", "status"),
    (lambda b: b.update(ttl_days="ten"), "wrong_type", "ttl_days"),
    (lambda b: b.update(kind="email"), "invalid_value", "kind"),
    (lambda b: b.update(value="not a number"), "invalid_phone", "value"),
    (lambda b: b.update(reported_at="last tuesday"), "invalid_timestamp", "reported_at"),
    (lambda b: b.update(history=[{"report_id": "x"}]), "missing_field", "history[0].reported_at"),
])
def test_bad_reports_on_the_topic_go_to_the_dead_letters(desk: Desk, mutate: Any, reason: str, field: str) -> None:
    marker = unique("r-bad-")
    body = {"report_id": marker, "reported_at": iso(datetime.now(timezone.utc)), "kind": "phone",
            "value": mobile(), "status": "confirmed", "source": "PDRM", "note": marker}
    mutate(body)
    desk.producer.send(desk.settings.topic_reports, body, key=b"phone:whatever")
    dead = desk.dead(marker)
    assert (dead["reason"], dead["field"]) == (reason, field)
    assert desk.worker.alive()


def test_a_mis_keyed_report_is_dead_lettered(desk: Desk) -> None:
    marker = unique("r-key-")
    desk.report_on_topic(key="phone:+60100000000", report_id=marker, kind="phone", value=mobile())
    assert desk.dead(marker)["reason"] == "invalid_key"


# --- public status check --------------------------------------------------------------------------------


def test_status_reveals_only_listed_or_not(desk: Desk) -> None:
    pdrm = desk.key("PDRM", "report,confirm")
    number = mobile()
    desk.file(pdrm, kind="phone", value=number, status="confirmed", case_ref="SECRET/1", reason="secret")
    desk.wait_entry(f"phone:{number}")
    r = desk.http.get("/v1/status", params={"phone": "0" + number[3:]})
    assert r.status_code == 200 and r.json() == {"listed": True}
    assert desk.http.get("/v1/status", params={"phone": mobile()}).json() == {"listed": False}
    assert desk.http.get("/v1/status", params={"phone": "999"}).json() == {"listed": False}
    bad = desk.http.get("/v1/status", params={"phone": "call me"})
    assert bad.status_code == 422 and bad.json()["detail"]["field"] == "phone"
    assert desk.http.get("/v1/status").status_code == 422
    assert desk.http.get("/v1/status", params={"account": "123456"}).json()["detail"]["field"] == "bank"


def test_status_answers_listed_only_for_what_an_agency_reported(desk: Desk) -> None:
    """A rule's automatic report (as the worker files it on the reports topic) is not revealed to the public;
    an agency's report on another number is, and so is the rule's number once an agency reports it too."""
    suspected, reported = mobile(), mobile()
    desk.report_on_topic(kind="phone", value=suspected, status="reported", source="sekat-rule",
                         filed_by="sekat-rule", reason="mule_inflow@1: mule inflow: 5 payers in 10 min",
                         case_ref="transfers/t-1", ttl_days=7)
    maybank = desk.key("MAYBANK", "report")
    assert desk.file(maybank, kind="phone", value=reported, reason="victim's complaint").status_code == 202
    desk.wait_entry(f"phone:{suspected}")
    desk.wait_entry(f"phone:{reported}")
    assert desk.http.get("/v1/status", params={"phone": suspected}).json() == {"listed": False}
    assert desk.http.get("/v1/status", params={"phone": reported}).json() == {"listed": True}
    assert desk.file(maybank, kind="phone", value=suspected, reason="victim's complaint").status_code == 202
    desk.wait_entry(f"phone:{suspected}", lambda e: "MAYBANK" in e.sources)
    assert desk.http.get("/v1/status", params={"phone": suspected}).json() == {"listed": True}


def test_status_is_rate_limited_per_client(stack: Stack, desk: Desk, logs_dir: Path) -> None:
    env = {**desk.env, "SEKAT_STATUS_RATE_PER_MINUTE": "5", "SEKAT_REDIS_PREFIX": unique("rl") + ":"}
    env.pop("SEKAT_API_PORT", None)
    api = ApiProcess(env, logs_dir / "rate-limited-api.log").start()
    try:
        with httpx.Client(base_url=api.url, timeout=10) as http:
            codes = [http.get("/v1/status", params={"phone": mobile()}).status_code for _ in range(8)]
            assert codes[:5] == [200] * 5 and set(codes[5:]) == {429}
            last = http.get("/v1/status", params={"phone": mobile()})
            assert int(last.headers["Retry-After"]) > 0
    finally:
        api.stop()


def test_openapi_document_is_served(desk: Desk) -> None:
    doc = desk.http.get("/openapi.json").json()
    assert {"/v1/reports", "/v1/revocations", "/v1/entries", "/v1/status"} <= set(doc["paths"])
    assert "APIKeyHeader" in doc["components"]["securitySchemes"]


def test_identifiers_are_masked_in_the_api_log(desk: Desk) -> None:
    pdrm = desk.key("PDRM", "report,confirm")
    number = mobile()
    assert desk.file(pdrm, kind="phone", value=number).status_code == 202
    desk.http.get("/v1/status", params={"phone": number})
    time.sleep(0.3)
    log = desk.api.log_path.read_text()
    assert number[-4:] in log and number not in log and number[1:] not in log


# --- bulk, rebuild, compaction --------------------------------------------------------------------------


def test_import_reports_bad_rows_with_line_numbers_and_export_writes_them_back(desk: Desk, tmp_path: Path) -> None:
    numbers = [mobile() for _ in range(3)]
    acct = account()
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("kind,value,bank,status,source,case_ref,ttl_days\n"
                        f"phone,{numbers[0]},,confirmed,PDRM,BULK/1,\n"
                        f"account,{acct},MBBEMYKL,reported,MBBEMYKL,,30\n"
                        "phone,999,,confirmed,PDRM,,\n"
                        "phone,not-a-number,,reported,PDRM,,\n"
                        f"phone,{numbers[1]},,sure,PDRM,,\n")
    result = sekat(desk.env, "blocklist", "import", str(csv_file))
    assert result.returncode == 3, result.stderr
    assert "list.csv:4: value:" in result.stderr and "list.csv:5: value:" in result.stderr
    assert "list.csv:6: status:" in result.stderr
    assert "2 reports acknowledged by Kafka, 3 bad rows" in result.stdout

    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text(orjson.dumps({"kind": "phone", "value": numbers[2], "status": "confirmed"}).decode() + "\n"
                     + "{not json\n" + orjson.dumps({"kind": "phone", "value": numbers[2], "ttl_days": -1}).decode()
                     + "\n")
    result = sekat(desk.env, "blocklist", "import", str(jsonl), "--source", "NSRC")
    assert result.returncode == 3 and "list.jsonl:2: not JSON" in result.stderr
    assert "list.jsonl:3: ttl_days:" in result.stderr

    e = desk.wait_entry(f"phone:{numbers[2]}")
    assert e.source == "NSRC" and e.history[0].filed_by == "import:test-operator"
    desk.wait_entry(f"phone:{numbers[0]}")
    desk.wait_entry(f"account:MBBEMYKL:{acct}")

    out = tmp_path / "export.jsonl"
    assert sekat(desk.env, "blocklist", "export", "--purpose", "bulk check", "-o", str(out)).returncode == 0
    exported = {row["key"]: row for row in map(orjson.loads, out.read_text().splitlines())}
    assert exported[f"phone:{numbers[0]}"]["case_ref"] == "BULK/1"
    assert exported[f"account:MBBEMYKL:{acct}"]["expires_at"]
    csv_out = tmp_path / "export.csv"
    assert sekat(desk.env, "blocklist", "export", "--purpose", "bulk check", "--format", "csv",
                 "-o", str(csv_out)).returncode == 0
    lines = csv_out.read_text().splitlines()
    assert lines[0].startswith("key,status,source") and len(lines) == len(exported) + 1


def test_import_wait_applied_returns_once_every_report_is_in_effect(desk: Desk, tmp_path: Path) -> None:
    caller, numbers, accounts = mobile(), [mobile() for _ in range(150)], [account() for _ in range(150)]
    csv_file = tmp_path / "bulk.csv"
    csv_file.write_text("kind,value,bank,status,source,case_ref\n" + f"phone,{caller},,confirmed,PDRM,BULK/9\n"
                        + "".join(f"phone,{n},,reported,NSRC,BULK/9\n" for n in numbers)
                        + "".join(f"account,{a},MBBEMYKL,confirmed,PDRM,BULK/9\n" for a in accounts))
    result = sekat(desk.env, "blocklist", "import", str(csv_file), "--wait-applied", "--wait-timeout", "60")
    assert result.returncode == 0, result.stderr
    assert "301 reports acknowledged by Kafka" in result.stdout
    assert "applied to the index" in result.stdout and "every running worker's replica (1 worker)" in result.stdout

    # No waiting here: when the command returned, the index and the worker's replica had every report.
    keys = [f"phone:{caller}", *(f"phone:{n}" for n in numbers), *(f"account:MBBEMYKL:{a}" for a in accounts)]

    async def held() -> dict[str, Entry]:
        store = BlocklistStore.from_url(desk.settings.redis_url, desk.settings.redis_prefix)
        try:
            return await store.lookup_many(keys)
        finally:
            await store.close()
    assert sorted(run(held())) == sorted(keys)
    [cmd] = desk.out.wait_for(for_event(desk.call(caller), desk.settings.topic_block))
    assert cmd.json["action"] == "BLOCK_CALL"


def test_import_puts_each_report_on_kafkas_default_partition_for_its_key(desk: Desk, tmp_path: Path) -> None:
    # More rows than one chunk of the import (hashed to their partitions together), and a bad row between.
    numbers = [mobile() for _ in range(CHUNK + 300)]
    csv_file = tmp_path / "spread.csv"
    csv_file.write_text("kind,value,bank,status,source,case_ref\n"
                        + "".join(f"phone,{n},,reported,NSRC,BULK/P\n" for n in numbers[:500])
                        + "phone,999,,reported,NSRC,BULK/P\n"
                        + "".join(f"phone,{n},,reported,NSRC,BULK/P\n" for n in numbers[500:]))
    result = sekat(desk.env, "blocklist", "import", str(csv_file))
    assert result.returncode == 3 and f"{len(numbers)} reports acknowledged by Kafka, 1 bad rows" in result.stdout

    topic = desk.settings.topic_reports
    consumer = KafkaConsumer(**desk.settings.kafka_client_config(), group_id=None, enable_auto_commit=False)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        assert len(partitions) > 1
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        wanted, found = {f"phone:{n}".encode() for n in numbers}, {}
        deadline = time.monotonic() + 30
        while wanted - found.keys() and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                found.update((r.key, r.partition) for r in records if r.key in wanted)
    finally:
        consumer.close()
    assert found == {key: partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)] for key in wanted}


def test_import_wait_applied_gives_up_with_a_message_when_no_worker_applies(desk: Desk, tmp_path: Path) -> None:
    csv_file = tmp_path / "one.csv"
    csv_file.write_text(f"kind,value,status,source\nphone,{mobile()},reported,PDRM\n")
    env = {**desk.env, "SEKAT_APP_ID": unique("nobody")}  # a reports group no worker consumes in
    result = sekat(env, "blocklist", "import", str(csv_file), "--wait-applied", "--wait-timeout", "2")
    assert result.returncode == 4, result.stderr
    assert "1 reports acknowledged by Kafka" in result.stdout
    assert "--wait-applied: the index holds 0 of 1 imported reports after 2s" in result.stderr


def _last_records(desk: Desk, topic: str) -> dict[bytes, bytes]:
    """What compaction would leave of ``topic``: the last record of each key."""
    cfg = desk.settings.kafka_client_config()
    consumer = KafkaConsumer(**cfg, group_id=None, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    last: dict[bytes, bytes] = {}
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for msgs in consumer.poll(timeout_ms=500).values():
            for m in msgs:
                last[m.key] = m.value
    consumer.close()
    return last


def _last_record_per_key(desk: Desk, target_topic: str) -> int:
    """Copy what compaction would leave of the reports topic (the last record of each key) to a fresh topic."""
    last = _last_records(desk, desk.settings.topic_reports)
    producer = KafkaProducer(**desk.settings.kafka_client_config(), acks="all")
    for key, value in last.items():
        producer.send(target_topic, value, key=key)
    producer.flush()
    producer.close()
    return len(last)


def test_a_flood_of_filings_on_one_number_neither_stalls_the_others_nor_outgrows_its_record(desk: Desk) -> None:
    """1,200 hotline filings on one number (the longest reasons): a report on another number filed after them
    is in effect within seconds, the hot entry keeps its recent reports in full and counts the rest, and its
    last record on the topic (what compaction keeps) stays far below the 1 MB a record may have."""
    hot = mobile()
    for n in range(1_200):
        desk.report_on_topic(kind="phone", value=hot, status="reported", source=("NSRC", "PDRM")[n % 2],
                             case_ref=f"997/{n}", reason=("caller asked for a TAC " * 30)[:512])
    other = mobile()
    assert desk.file(desk.key("PDRM", "report,confirm"), kind="phone", value=other,
                     status="confirmed").status_code == 202
    desk.wait_entry(f"phone:{other}", timeout=30)
    entry = desk.wait_entry(f"phone:{hot}", lambda e: e.report_count == 1_200, timeout=60)
    assert len(entry.history) == RECENT_KEPT and entry.summary is not None
    assert entry.summary.report_count == 1_200 - RECENT_KEPT
    assert entry.sources == ("NSRC", "PDRM") and [t.count for t in entry.summary.sources] == [550, 550]
    assert entry.first_seen == entry.summary.first_seen and entry.status is Status.REPORTED
    time.sleep(1.0)  # the consolidated record the agent publishes last
    last = _last_records(desk, desk.settings.topic_reports)[f"phone:{hot}".encode()]
    assert len(last) < 100_000
    assert merge(None, decode_report(last, f"phone:{hot}".encode())) == entry  # type: ignore[arg-type]


def test_rebuild_gives_the_same_index_before_and_after_compaction(desk: Desk) -> None:
    # Make sure several keys have several reports, the last of them not carrying the whole history.
    pdrm = desk.key("PDRM", "report,confirm")
    nsrc = desk.key("NSRC", "report,confirm,revoke")
    number = mobile()
    desk.file(pdrm, kind="phone", value=number, ttl_days=10)
    desk.file(nsrc, kind="phone", value=number, status="confirmed", case_ref="N/1")
    desk.revoke(nsrc, kind="phone", value=number, reason="appeal")
    desk.wait_entry(f"phone:{number}", lambda e: e.report_count == 3)
    time.sleep(1.0)  # let the consolidated records the agent publishes come back through it
    live = desk.index()
    assert len(live) >= 5

    result = sekat(desk.env, "blocklist", "rebuild")
    assert result.returncode == 0, result.stderr
    assert desk.index() == live

    compacted = unique("compacted")
    kept = _last_record_per_key(desk, compacted)
    assert kept >= len(live)  # every listed key, and the keys of dead-lettered reports
    env = {**desk.env, "SEKAT_TOPIC_REPORTS": compacted, "SEKAT_REDIS_PREFIX": unique("rb") + ":"}
    result = sekat(env, "blocklist", "rebuild")
    assert result.returncode == 0, result.stderr

    async def rebuilt() -> dict[str, dict[str, Any]]:
        store = BlocklistStore.from_url(desk.settings.redis_url, env["SEKAT_REDIS_PREFIX"])
        try:
            return {e.key: e.to_json() async for batch in store.scan_entries() for e in batch}
        finally:
            await store.close()
    assert run(rebuilt()) == live


def test_show_reads_the_index(desk: Desk) -> None:
    number = mobile()
    desk.report_on_topic(kind="phone", value=number, case_ref="SHOW/1")
    desk.wait_entry(f"phone:{number}")
    shown = sekat(desk.env, "blocklist", "show", "--phone", "0" + number[3:], "--purpose", "case check")
    assert shown.returncode == 0 and orjson.loads(shown.stdout)["case_ref"] == "SHOW/1"
    assert sekat(desk.env, "blocklist", "show", "--phone", mobile(), "--purpose", "case check").returncode == 1


def test_api_keys_are_stored_hashed(desk: Desk) -> None:
    token = desk.key("PDRM", "read")

    async def raw() -> list[bytes]:
        store = BlocklistStore.from_url(desk.settings.redis_url, desk.settings.redis_prefix)
        try:
            return list((await store.client.hgetall(f"{desk.settings.redis_prefix}apikeys")).values())
        finally:
            await store.close()
    values = run(raw())
    assert values and not any(token.split("_", 2)[2].encode() in v for v in values)


def test_kafka_unreachable_gives_503_with_a_message_not_a_crash(stack: Stack, desk: Desk, logs_dir: Path) -> None:
    from sekat.localstack.processes import free_port

    env = {**desk.env, "SEKAT_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    env.pop("SEKAT_API_PORT", None)
    api = ApiProcess(env, logs_dir / "no-kafka-api.log").start()
    try:
        with httpx.Client(base_url=api.url, timeout=30) as http:
            r = http.post("/v1/reports", json={"kind": "phone", "value": mobile()},
                          headers={"X-API-Key": desk.key("PDRM", "report")})
            assert r.status_code == 503 and "Kafka" in r.json()["detail"]["message"]
            assert r.headers["Retry-After"]
            assert http.get("/v1/status", params={"phone": mobile()}).status_code == 200  # Redis still answers
    finally:
        api.stop()


def test_an_upgraded_worker_applies_reports_from_where_the_faust_group_had_committed(
        stack: Stack, logs_dir: Path) -> None:
    """The reports intake's group (``{app id}.reports``) starts a partition it never committed where the worker's
    Faust group (``{app id}``), which applied the reports before it, had committed: not from the topic's start."""
    name = unique("upg")
    env = isolated_env(stack, name, SEKAT_TOPIC_PARTITIONS="1")
    worker = WorkerProcess(env, logs_dir / f"{name}.log")
    s = worker.settings
    create_topics(s)
    run(_mark_built(s))  # an index already built from the topic: nothing is replayed
    applied_before, new = mobile(), mobile()
    producer = KafkaProducer(**s.kafka_client_config(), acks="all")
    sent = producer.send(s.topic_reports, orjson.dumps(
        {"report_id": unique("r-"), "reported_at": iso(datetime.now(timezone.utc)), "kind": "phone",
         "value": applied_before, "status": "confirmed", "source": "PDRM"}), key=f"phone:{applied_before}".encode())
    offset = sent.get(timeout=20).offset
    old = KafkaConsumer(**s.kafka_client_config(), group_id=s.app_id, enable_auto_commit=False)
    old.commit({TopicPartition(s.topic_reports, 0): OffsetAndMetadata(offset + 1, "", -1)})
    old.close()
    producer.send(s.topic_reports, orjson.dumps(
        {"report_id": unique("r-"), "reported_at": iso(datetime.now(timezone.utc)), "kind": "phone",
         "value": new, "status": "confirmed", "source": "PDRM"}), key=f"phone:{new}".encode()).get(timeout=20)
    producer.close()
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not committed_to_end(s, reports_group(s), s.topic_reports):
            time.sleep(0.1)
        assert committed_to_end(s, reports_group(s), s.topic_reports)
        keys = index_entries(s)
        assert f"phone:{new}" in keys
        assert f"phone:{applied_before}" not in keys  # before the Faust group's offset: not applied again
    finally:
        worker.stop()


async def _mark_built(s: Any) -> None:
    store = BlocklistStore.from_url(s.redis_url, s.redis_prefix)
    try:
        await store.mark_built("before-the-upgrade")
    finally:
        await store.close()
