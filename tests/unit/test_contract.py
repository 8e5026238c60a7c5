"""The contract in docs/: its schemas, its examples and its AsyncAPI document hold to the code.

* docs/schemas/*.schema.json are what ``sekat.contract`` generates now;
* every fenced block of docs/contract.md is labelled by an HTML comment on the line before it,
  ``<!-- schema: NAME, example: ID, key: KEY -->``: ``schema`` names its file in docs/schemas/ (or ``input``
  a non-JSON format, or ``of`` + ``rejected`` an input refused with that reason), ``key`` the Kafka key and
  ``written-by: sekat`` a report Sekat writes; each JSON example validates against its schema, and every
  input example decodes through the real decoder to a record;
* every output example is exactly what the real shell writes for the document's own input examples: the
  screening ``Screen`` (decode, look up, decide, emit), the release sweep, the safety brake and the re-arm
  route run on fakes of Redis and Kafka's producer, and what they hand to the producer (topic, key, value) is
  compared with the example; every record they write validates against its schema too;
* docs/asyncapi.yaml names every topic of the settings' defaults and references every schema file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from sekat import contract
from sekat.blocklist import lifecycle, links
from sekat.brake.guard import Brake, Limits
from sekat.brake.metrics import BrakeMetrics
from sekat.brake.store import Trip
from sekat.decode import fields as decode
from sekat.decode.call_attempt import decode_call_attempt
from sekat.decode.calls import decode_call
from sekat.decode.cdr import CdrCsvDecoder
from sekat.decode.formats import call_decoder, sms_decoder, transfer_decoder
from sekat.decode.pacs008 import decode_pacs008
from sekat.decode.reports import decode_report
from sekat.decode.sms import decode_sms
from sekat.decode.transfers import decode_transfer
from sekat.metrics.worker import WorkerMetrics
from sekat.records import Action, Call, Entry, Rejection, Report, Sms, Status, Transfer
from sekat.release.metrics import ReleaseMetrics
from sekat.release.sweep import Releaser, recording_who_acted
from sekat.rules.engine import decide_call, decide_sms, decide_transfer
from sekat.rules.policy import DEFAULT_POLICY_FILE, load_policy
from sekat.rules.registry import Context
from sekat.settings import Settings
from sekat.streams.intake import Intake
from sekat.streams.screening import Screen, ScreenServices, StreamSteps
from tests.unit.wire import Lookups, Sent, Wire, no_state, outputs, write_nothing

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONTRACT = DOCS / "contract.md"
SCHEMAS = DOCS / "schemas"
SETTINGS = Settings()
POLICY = load_policy(DEFAULT_POLICY_FILE)  # the shipped policy, as a worker without SEKAT_POLICY_FILE runs it


# -- docs/contract.md's examples ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    labels: dict[str, str]
    lang: str
    text: str
    line: int

    @property
    def id(self) -> str:
        return self.labels.get("example", f"line {self.line}")

    def json(self) -> Any:
        return orjson.loads(self.text)

    def raw(self) -> bytes:
        """The example as a producer would send it: its bytes exactly as written."""
        return self.text.encode()


_BLOCK = re.compile(r"```(\w*)\n(.*?)\n```", re.S)
_LABEL = re.compile(r"<!--\s*(.*?)\s*-->\s*$")


def examples() -> list[Example]:
    """Every fenced block of docs/contract.md with the labels of the HTML comment on the line before it."""
    text = CONTRACT.read_text(encoding="utf-8")
    found = []
    for block in _BLOCK.finditer(text):
        before = text[:block.start()].rstrip("\n").rpartition("\n")[2]
        label = _LABEL.search(before)
        labels: dict[str, str] = {}
        if label:
            for part in label.group(1).split(","):
                name, _, value = part.partition(":")
                labels[name.strip()] = value.strip()
        found.append(Example(labels, block.group(1), block.group(2), text.count("\n", 0, block.start()) + 1))
    return found


EXAMPLES = examples()
BY_ID = {e.id: e for e in EXAMPLES}
INPUT_SCHEMAS = {"transfer", "call", "call-attempt", "sms", "report"}
SCHEMA_TOPIC = {"bank-command": SETTINGS.topic_freeze, "telco-command": SETTINGS.topic_block,
                "decision": SETTINGS.topic_decisions, "release-audit": SETTINGS.topic_decisions,
                "brake-audit": SETTINGS.topic_decisions, "deadletter": SETTINGS.topic_deadletter,
                "report": SETTINGS.topic_reports, "undelivered-command": SETTINGS.topic_undelivered,
                "appeal": SETTINGS.topic_appeals,
                "feedback": SETTINGS.topic_feedback, "notice": SETTINGS.topic_notices,
                "institution": SETTINGS.topic_institutions, "audit": SETTINGS.topic_audit}


def doc(example_id: str) -> Example:
    return BY_ID[example_id]


def validator(name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes()))


def report(example_id: str) -> Report:
    ex = doc(example_id)
    decoded = decode_report(ex.raw(), ex.labels["key"].encode())
    assert isinstance(decoded, Report), (example_id, decoded)
    return decoded


def entry(*example_ids: str) -> Entry:
    """The blocklist entry the reports agent builds from these report examples."""
    built: Entry | None = None
    for example_id in example_ids:
        built = lifecycle.merge(built, report(example_id))
    assert built is not None
    return built


# -- the shell on fakes: what it hands to Kafka's producer -------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """What the screening consumer hands a ``Screen``: an aiokafka ConsumerRecord's fields."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def screen(stream: str, decoder: Callable[[bytes | None], Any], values: list[tuple[bytes, bytes | None]],
           entries: Iterable[Entry], now: datetime) -> list[Sent]:
    """One batch through the screening shell as the worker wires it; the records it sends."""
    wire = Wire()
    topic = {"transfers": SETTINGS.topic_transfers, "calls": SETTINGS.topic_calls, "sms": SETTINGS.topic_sms}[stream]
    decide = recording_who_acted({"transfers": decide_transfer, "calls": decide_call, "sms": decide_sms}[stream])
    services = ScreenServices(store=Lookups(entries), topics=outputs(wire, SETTINGS), metrics=WorkerMetrics(CollectorRegistry()),
                              policy=lambda: POLICY, write_state=write_nothing, clock=lambda: now)
    shell = Screen(stream, StreamSteps(decoder, decide, no_state), services)
    records = [Record(topic, 0, 41 + i, int(now.timestamp() * 1000) - 2, key, value)
               for i, (value, key) in enumerate(values)]

    async def run() -> None:
        pending = await shell.start(records)
        await pending.acked()

    asyncio.run(run())
    return wire.records()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def keyed(ex: Example) -> tuple[bytes, bytes | None]:
    return ex.raw(), ex.labels["key"].encode() if "key" in ex.labels else None


def transfer_outputs() -> list[Sent]:
    """The Transfer example, its payee account listed (confirmed) by the account report; and a bad transfer."""
    return screen("transfers", transfer_decoder(SETTINGS), [keyed(doc("transfer")), keyed(doc("bad-transfer"))],
                  [entry("report-account")], at("2026-11-28T10:15:00.125Z"))


def follow_outputs() -> list[Sent]:
    """Money leaving the confirmed mule account a few minutes later: followed to its payee."""
    return screen("transfers", transfer_decoder(SETTINGS), [keyed(doc("transfer-out"))],
                  [entry("report-account")], at("2026-11-28T10:19:30.210Z"))


def pacs008_outputs() -> list[Sent]:
    settings = Settings(transfers_format="pacs008")
    return screen("transfers", transfer_decoder(settings), [keyed(doc("pacs008"))], [entry("report-account")],
                  at("2026-11-28T10:20:00.640Z"))


def call_outputs() -> list[Sent]:
    """A voice call from the confirmed number, an SMS from a reported one."""
    return screen("calls", call_decoder(SETTINGS), [keyed(doc("call")), keyed(doc("call-sms"))],
                  [entry("report-phone"), entry("report-reported")], at("2026-11-28T10:14:02.310Z"))


def sms_outputs() -> list[Sent]:
    """An SMS with a link to the reported domain (written in another case, with www.), one from a reported number."""
    return screen("sms", sms_decoder(SETTINGS), [keyed(doc("sms")), keyed(doc("sms-number"))],
                  [entry("report-domain"), entry("report-reported")], at("2026-11-28T10:16:00.210Z"))


class Acted:
    """The release sweep's Redis side: who acted on which entry (sekat.release.acted.ActedStore)."""

    def __init__(self, members: dict[str, list[str]]) -> None:
        self.members_of = members

    async def due(self, _ts: float, _limit: int) -> list[tuple[str, float]]:
        return [(key, 0.0) for key in self.members_of]

    async def members(self, keys: list[str]) -> dict[str, list[str]]:
        return {k: self.members_of[k] for k in keys}

    async def forget(self, _key: str, _members: list[str]) -> None:
        return None

    async def reschedule(self, _moves: list[Any]) -> None:
        return None


def release_outputs() -> list[Sent]:
    """The account revoked on appeal (its payer's bank held, its own bank froze); the number's listing expired."""
    revoked = entry("report-account", "report-revocation")
    expired, domain = entry("report-phone"), entry("report-domain")
    acted = Acted({revoked.key: ["RELEASE_ACCOUNT|MBBEMYKL", "RELEASE_ACCOUNT|CIBBMYKL"],
                   expired.key: ["UNBLOCK_NUMBER|CELCOM"], domain.key: ["UNBLOCK_SMS|MAXIS"]})
    wire = Wire()
    now = at("2026-12-01T09:00:05.000Z")
    releaser = Releaser(acted, Lookups([revoked, expired, domain]), outputs(wire, SETTINGS),  # type: ignore[arg-type]
                        WorkerMetrics(CollectorRegistry()), ReleaseMetrics(CollectorRegistry()), lambda: now)
    assert asyncio.run(releaser.sweep()) == 2  # revoked and expired (the domain's expiry too)
    return wire.records()


class Brakes:
    """The brake's Redis side (sekat.brake.store.BrakeStore): the entry drove 12 commands in the window."""

    def __init__(self, *_: Any) -> None:
        pass

    async def add(self, counts: dict[str, int], _now: float, _window: int) -> dict[str, float]:
        return {target: 12.0 for target in counts}

    async def trip(self, _trip: Trip) -> bool:
        return True

    async def trip_of(self, target: str) -> dict[str, Any]:
        return Trip(target, 12, 10, 60, "2026-11-28T10:15:01.000Z", "sekat@worker-1:6066", "reported").to_json()

    async def rearm(self, target: str, _now: float, window_s: int, _event: Any, tripped_at: str = ""
                    ) -> dict[str, Any]:
        return Trip(target, 12, 10, window_s, tripped_at or "2026-11-28T10:15:01.000Z", "sekat@worker-1:6066",
                    "reported").to_json()


def brake_outputs() -> list[Sent]:
    """The screening batch of the Transfer example as the brake counts it, with an entry limit of 10, had the
    payee account only been reported (a confirmed entry does not count towards its own limit)."""
    listed = replace(entry("report-account"), status=Status.REPORTED)
    decision = decide_transfer(_decoded(doc("transfer")), Context(at("2026-11-28T10:15:00.125Z"),
                                                                 {listed.key: listed}), POLICY).decision
    wire = Wire()
    brake = Brake(Brakes(), Limits(window_s=60, account_reported=10, rule=0, source=0),  # type: ignore[arg-type]
                  BrakeMetrics(CollectorRegistry()), outputs(wire, SETTINGS), "sekat@worker-1:6066",
                  lambda: at("2026-11-28T10:15:01.000Z").timestamp())
    asyncio.run(brake.count([decision]))
    return wire.records()


def lift_outputs() -> list[Sent]:
    """The reported payee braked at the entry limit of 10, then confirmed: the next batch that looks it up acts on
    it, and the worker lifts the trip."""
    confirmed = entry("report-account")
    wire = Wire()
    brake = Brake(Brakes(), Limits(window_s=60, account_reported=10, rule=0, source=0),  # type: ignore[arg-type]
                  BrakeMetrics(CollectorRegistry()), outputs(wire, SETTINGS), "sekat@worker-2:6066",
                  lambda: at("2026-11-28T10:40:00.250Z").timestamp())
    target = f"entry:{confirmed.key}"
    brake.engaged = frozenset({target})
    brake.trips = {target: Trip(target, 12, 10, 60, "2026-11-28T10:15:01.000Z", "sekat@worker-1:6066",
                                "reported").to_json()}
    assert brake.applying({confirmed.key: confirmed}) == frozenset()
    asyncio.run(brake.count([]))
    assert brake.engaged == frozenset()
    return wire.records()


def rearm_outputs() -> list[Sent]:
    """POST /v1/brake/rearm by an authority's key, through the agency API's route."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from sekat.api.keys import ApiKey
    from sekat.brake.routes import router

    sent: list[Sent] = []
    key = ApiKey("3f9a0c1b2d4e", "NSRC", ("rearm",), "2026-01-05T00:00:00.000Z")

    class Keys:
        async def verify(self, _token: str) -> ApiKey:
            return key

    async def send(topic: str, value: bytes, event_key: bytes, _late: str) -> None:
        sent.append((topic, event_key, orjson.loads(value)))

    app = FastAPI()
    app.include_router(router)
    app.state.clients = SimpleNamespace(keys=Keys(), brakes=Brakes(), send=send, settings=SETTINGS,
                                        clock=lambda: at("2026-11-28T11:02:40.500Z"))
    answer = TestClient(app, headers={"X-API-Key": "any"}).post(
        "/v1/brake/rearm", json={"target": "entry:account:CIBBMYKL:8001234567",
                                 "reason": "merchant account, listing under review"})
    assert answer.status_code == 200, answer.text
    return sent


class Appeals:
    """The appeal store's Redis side (sekat.blocklist.appeals.AppealStore): a dict, one writer."""

    def __init__(self) -> None:
        self.kept: dict[str, Any] = {}

    async def get(self, appeal_id: str) -> Any:
        return self.kept.get(appeal_id)

    async def latest_on(self, _identifier: str) -> None:
        return None

    async def put(self, appeal: Any) -> None:
        self.kept[appeal.appeal_id] = appeal

    @contextlib.asynccontextmanager
    async def lock(self, _name: str) -> Any:
        yield True


def appeal_outputs() -> list[Sent]:
    """An appeal on the confirmed account of ``report-account``, filed by its holder, acknowledged and upheld by
    PDRM through the agency API's routes: what they send to the appeals and reports topics."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from sekat.api import appeals
    from sekat.api.keys import ApiKey

    sent: list[Sent] = []
    key = ApiKey("5be2a7c4d901", "PDRM", ("appeal",), "2026-01-05T00:00:00.000Z")
    # the filing, the acknowledgement, the decision and its revocation ask the clock in turn
    times = iter(at(t) for t in ("2026-12-01T08:00:00.000Z", "2026-12-01T15:20:00.000Z", "2026-12-03T10:05:00.000Z",
                                 "2026-12-03T10:05:00.000Z"))

    class Keys:
        async def verify(self, _token: str) -> ApiKey:
            return key

    class Store:
        async def get(self, ident: str) -> Entry | None:
            return entry("report-account") if ident == "account:CIBBMYKL:8001234567" else None

    async def send(topic: str, value: bytes, record_key: bytes, _late: str) -> SimpleNamespace:
        sent.append((topic, record_key, orjson.loads(value)))
        return SimpleNamespace(partition=0, offset=len(sent))

    async def allow(*_: Any) -> tuple[bool, int]:
        return True, 60

    app = FastAPI()
    app.include_router(appeals.router)
    app.state.clients = SimpleNamespace(
        keys=Keys(), store=Store(), appeals=Appeals(), send=send, settings=SETTINGS, clock=lambda: next(times),
        allow_appeal=allow, allow_filing=allow, protected=frozenset(), expiry=SETTINGS.expiry_policy(),
        proxy_hasher=SETTINGS.proxy_hasher())
    token = "kIs8nZ2yQm4rV1tXa7bC0dEfGhJkLmNo"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(appeals, "new_appeal_id", lambda: "ap-4c1f09d2e8b7a365")
        patch.setattr(appeals, "new_token", lambda: (token, hashlib.sha256(token.encode()).hexdigest()))
        patch.setattr("sekat.blocklist.filing.new_report_id", lambda: "r-20261203-0007")
        client = TestClient(app, headers={"X-API-Key": "any"})
        filed = client.post("/v1/appeals", json={
            "kind": "account", "bank": "CIBBMYKL", "value": "8001234567", "appellant": "person",
            "contact": {"name": "Tan Mei Ling", "email": "meiling.tan@mail.example.my", "phone": "+60123456789"},
            "grounds": "My salary account: my employer's payroll was paid into it by mistake by the scam victim.",
            "evidence_ref": "CIMB letter 2026/11/4471"})
        assert filed.status_code == 202, filed.text
        assert client.post("/v1/appeals/ap-4c1f09d2e8b7a365/review").status_code == 200
        upheld = client.post("/v1/appeals/ap-4c1f09d2e8b7a365/decision",
                             json={"outcome": "upheld", "reason": "payroll account, funds traced to the employer"})
        assert upheld.status_code == 200 and upheld.json()["status"] == "upheld", upheld.text
    return sent


def _decoded(ex: Example) -> Transfer:
    decoded = decode_transfer(ex.raw())
    assert isinstance(decoded, Transfer), decoded
    return decoded


def report_outputs() -> list[Sent]:
    """What the reports agent publishes back, as ``BlocklistStore.apply`` finds it and ``Intake.publish`` sends it.

    The number's report (with its link) is applied: the account gets a derived report. That derived report is
    applied to the account the police had confirmed: it does not carry the account's history, so it is
    published again, consolidated.
    """
    phone = entry("report-phone")
    [derived] = links.propagate(None, phone)
    account = lifecycle.merge(entry("report-account"), derived)
    assert not lifecycle.covers(derived, account)
    wire = Wire()
    topics = outputs(wire, SETTINGS)
    intake = Intake(None, topics, topics.reports, WorkerMetrics(CollectorRegistry()),  # type: ignore[arg-type]
                    1_048_576, "MY", frozenset())
    # An identifier with more reports than an entry keeps in full (one, here) folds the older ones.
    key = "account:CIBBMYKL:8001234567"
    later = [replace(derived, report_id=f"r-2026112{day}-0001", reported_at=derived.reported_at.replace(month=11, day=20 + day),
                     source=source, status=Status.REPORTED, case_ref="", reason="mule account", ttl_days=90,
                     filed_by=f"key-{source.lower()}", links=(), origin="", origin_key="")
             for day, source in ((1, "MBBEMYKL"), (2, "NSRC"))]
    folded = account
    for report in later:
        folded = lifecycle.merge(folded, report, keep=1)
    assert folded.key == key and folded.summary is not None
    # The number purged: the unlink the purge writes on the account its entry links to.
    [unlink] = links.unlinks({phone.key: phone}, at("2027-03-02T03:00:00.000Z"), "purge", "retention purge")
    asyncio.run(intake.publish([derived, lifecycle.consolidated(derived, account),
                                lifecycle.consolidated(later[-1], folded), unlink]))
    return wire.records()


def find(records: list[Sent], topic: str = "", **fields: Any) -> Sent:
    """The one record (on ``topic``, if given) whose value has these fields."""
    found = [r for r in records if (not topic or r[0] == topic) and all(r[2].get(k) == v for k, v in fields.items())]
    assert len(found) == 1, (fields, records)
    return found[0]


def undelivered_outputs() -> list[Sent]:
    """What ``sekat relay`` writes when it gives up the freeze-account example after a day of 503s."""
    from sekat.relay.undelivered import undelivered_record

    value = undelivered_record(
        command_id=doc("freeze-account").json()["command_id"], institution="CIBBMYKL",
        url="https://hooks.cimb.example/sekat", error="HTTP 503: Service Unavailable", attempts=31,
        first_attempt_at=at("2026-11-28T10:15:00.180Z").timestamp(),
        given_up_at=at("2026-11-29T10:15:02.540Z").timestamp(), topic=SETTINGS.topic_freeze, partition=2,
        offset=1881, timestamp_ms=1795860900125, value=orjson.dumps(doc("freeze-account").json()))
    return [(SETTINGS.topic_undelivered, b"CIBBMYKL", orjson.loads(value))]


def feedback_outputs() -> list[Sent]:
    """The bank of the freeze-account example says, through POST /v1/feedback with its institution's key, that
    the account holder is a victim used as a mule, then (SEKAT_FEEDBACK_FALSE_POSITIVE_INSTITUTIONS=1) that
    the freeze was a false positive."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from sekat.api import feedback
    from sekat.api.keys import ApiKey
    from sekat.api.metrics import ApiMetrics
    from sekat.streams.sent import sent_commands

    listed = entry("report-account")
    decision = decide_transfer(_decoded(doc("transfer")), Context(at("2026-11-28T10:15:00.125Z"),
                                                                 {listed.key: listed}), POLICY).decision
    sent_by_id = {c.command_id: c for c in sent_commands(decision)}
    key = ApiKey("7c21d0e9a4b3", "CIBBMYKL", ("feedback",), "2026-01-05T00:00:00.000Z", institution="CIBBMYKL")
    kept: dict[str, dict[str, dict[str, Any]]] = {}
    flags: dict[str, dict[str, Any]] = {}
    written: list[Sent] = []

    class Keys:
        async def verify(self, _token: str) -> ApiKey:
            return key

    class Feedback:  # blocklist.feedback.FeedbackStore
        async def sent(self, command_id: str) -> Any:
            return sent_by_id.get(command_id)

        async def add(self, record: dict[str, Any], entries: list[str]) -> bool:
            first = all(record["command_id"] not in kept.get(k, {}) for k in entries)
            for k in entries:
                kept.setdefault(k, {})[record["command_id"]] = dict(record)
            return first

        async def of_entry(self, k: str) -> list[dict[str, Any]]:
            return list(kept.get(k, {}).values())

        async def flags(self, k: str) -> dict[str, Any]:
            return {kind: v for (kind, entry_key), v in flags.items() if entry_key == k}  # type: ignore[misc]

        async def flag(self, kind: str, k: str, record: dict[str, Any]) -> bool:
            return flags.setdefault((kind, k), record) is record  # type: ignore[call-overload]

    class Index:
        async def get(self, k: str) -> Entry | None:
            return listed if k == listed.key else None

    async def send(topic: str, value: bytes, record_key: bytes, _late: str) -> None:
        written.append((topic, record_key, orjson.loads(value)))

    times = iter([at("2026-11-28T10:31:12.400Z"), at("2026-11-28T11:05:40.000Z")])
    app = FastAPI()
    app.include_router(feedback.router)
    app.state.clients = SimpleNamespace(keys=Keys(), feedback=Feedback(), store=Index(), brakes=Brakes(), send=send,
                                        settings=replace(SETTINGS, feedback_false_positive_institutions=1),
                                        metrics=ApiMetrics(CollectorRegistry()), clock=lambda: next(times))
    client = TestClient(app, headers={"X-API-Key": "any"})
    freeze = doc("freeze-account").json()["command_id"]
    for body in ({"command_id": freeze, "outcome": "customer_is_victim", "case_ref": "CIMB/FR/2026/0456",
                  "note": "holder was recruited through a job-scam ad; account kept frozen, customer contacted"},
                 {"command_id": freeze, "outcome": "false_positive", "case_ref": "CIMB/FR/2026/0456",
                  "note": "payroll account of a registered business; transfers match invoices"}):
        answer = client.post("/v1/feedback", json=body)
        assert answer.status_code == 202, answer.text
    return written


def institution_outputs() -> list[Sent]:
    """PUT /v1/institutions/AGROMYKL by an authority's key, through the agency API's route."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from sekat.api import institutions
    from sekat.api.keys import ApiKey

    sent: list[Sent] = []
    key = ApiKey("3f9a0c1b2d4e", "NSRC", ("institutions",), "2026-01-05T00:00:00.000Z")

    class Keys:
        async def verify(self, _token: str) -> ApiKey:
            return key

    async def send(topic: str, value: bytes, record_key: bytes, _late: str) -> None:
        sent.append((topic, record_key, orjson.loads(value)))

    app = FastAPI()
    app.include_router(institutions.router)
    app.state.clients = SimpleNamespace(keys=Keys(), send=send, settings=SETTINGS,
                                        clock=lambda: at("2026-11-28T09:00:00.000Z"))
    answer = TestClient(app, headers={"X-API-Key": "any"}).put(
        "/v1/institutions/agromykl", json={"url": "https://hooks.agrobank.example/sekat/commands",
                                           "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]})
    assert answer.status_code == 202, answer.text
    assert "whsec_" not in answer.text and answer.json()["secrets"] == 1
    return sent
AUDIT_KEY = "example-audit-key-0123456789"


def audit_outputs() -> list[Sent]:
    """An agency's read of the example number, then its erasure by a data-protection officer."""
    from sekat.audit import entry_read, erasure

    read = entry_read(AUDIT_KEY, "phone:+60123456789", "api:PDRM:k7f3a9c2", at("2026-12-01T09:12:30.120Z"),
                      "investigation KL/2026/123", True)
    erased = erasure(AUDIT_KEY, "phone:+60123456789", "cli:aisyah.dpo", at("2026-12-02T03:00:00.000Z"),
                     "PDPA erasure request DPO/2026/77 after the appeal was upheld")
    return [(SETTINGS.topic_audit, key, orjson.loads(value)) for key, value in (read, erased)]


def produced() -> dict[str, Sent]:
    """Output example id -> the record the real code sends for it."""
    transfers, follow, iso20022 = transfer_outputs(), follow_outputs(), pacs008_outputs()
    calls, releases, derived = call_outputs(), release_outputs(), report_outputs()
    sms = sms_outputs()
    return {
        "hold-transfer": find(transfers, action="HOLD_TRANSFER"),
        "freeze-account": find(transfers, action="FREEZE_ACCOUNT"),
        "decision": find(transfers, stream="transfers"),
        "deadletter": find(transfers, reason="invalid_amount"),
        "hold-transfer-iso": find(iso20022, action="HOLD_TRANSFER"),
        "hold-amount": find(follow, action="HOLD_AMOUNT"),
        "report-automatic": find(follow, SETTINGS.topic_reports),
        "block-call": find(calls, action="BLOCK_CALL"),
        "label-call": find(calls, action="LABEL_CALL"),
        "release-account": find(releases, action="RELEASE_ACCOUNT", bank="MBBEMYKL"),
        "unblock-number": find(releases, action="UNBLOCK_NUMBER"),
        "block-sms": find(sms, action="BLOCK_SMS"),
        "label-sms": find(sms, action="LABEL_SMS"),
        "unblock-sms": find(releases, action="UNBLOCK_SMS"),
        "release-audit": find(releases, stream="releases", released="revoked"),
        "brake-trip": find(brake_outputs(), action="trip"),
        "brake-rearm": find(rearm_outputs(), action="rearm"),
        "brake-lift": find(lift_outputs(), action="lift"),
        "report-derived": derived[0],
        "report-consolidated": derived[1],
        "report-summarised": derived[2],
        "report-unlink": derived[3],
        "undelivered": undelivered_outputs()[0],
        "appeal": find(appeal_outputs(), SETTINGS.topic_appeals, status="upheld"),
        "feedback": find(feedback_outputs(), SETTINGS.topic_feedback, outcome="false_positive"),
        "notice-review": find(feedback_outputs(), notice="review"),
        "notice-victim": find(feedback_outputs(), notice="victim_mule"),
        "brake-review": find(feedback_outputs(), SETTINGS.topic_decisions, action="trip"),
        "institution": institution_outputs()[0],
        "audit-read": audit_outputs()[0],
        "audit-erase": audit_outputs()[1],
    }


@pytest.fixture(scope="module")
def real_outputs() -> dict[str, Sent]:
    return produced()


# -- (a) the committed schemas are what the code generates ------------------------------------------------------------
def test_the_committed_schemas_are_what_sekat_contract_generates() -> None:
    assert contract.check(SCHEMAS) == [], "run: python -m sekat.contract --write docs/schemas"


def test_check_names_a_stale_a_missing_and_an_extra_file_and_write_mends_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert contract.main(["--write", str(tmp_path)]) == 0
    assert contract.main(["--check", str(tmp_path)]) == 0
    (tmp_path / "call.schema.json").write_text("{}\n")
    (tmp_path / "deadletter.schema.json").unlink()
    (tmp_path / "old.schema.json").write_text("{}\n")
    capsys.readouterr()
    assert contract.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'call.schema.json'}: stale" in err
    assert f"{tmp_path / 'deadletter.schema.json'}: missing" in err
    assert f"{tmp_path / 'old.schema.json'}: not a message" in err
    assert contract.write(tmp_path) == ["call.schema.json", "deadletter.schema.json"]
    (tmp_path / "old.schema.json").unlink()
    assert contract.check(tmp_path) == []


@pytest.mark.parametrize("name", sorted(contract.MESSAGES))
def test_each_schema_is_a_valid_draft_7_schema_with_no_ref_beside_other_keywords(name: str) -> None:
    schema = orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == contract.JSON_SCHEMA_DRAFT

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            assert "$ref" not in node or len(node) == 1, node  # draft-07 ignores a $ref's siblings
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)


# -- the wire types cover what the code reads and writes --------------------------------------------------------------
def test_every_action_has_its_command_type_and_every_type_its_action() -> None:
    assert set(contract.COMMANDS) == set(Action)
    bank = {t.__struct_config__.tag for t in contract.BankCommand.__args__}
    telco = {t.__struct_config__.tag for t in contract.TelcoCommand.__args__}
    assert bank == {a.value for a in Action if a.for_bank}
    assert telco == {a.value for a in Action if not a.for_bank}


def _fields(struct: Any) -> set[str]:
    return set(struct.__struct_fields__)


def test_the_input_types_name_exactly_the_fields_the_fast_decoders_read() -> None:
    from sekat.decode import calls, transfers

    assert _fields(contract.Transfer) == _fields(transfers._Transfer)
    assert _fields(contract.Payer) == _fields(transfers._Payer)
    assert _fields(contract.Payee) == _fields(transfers._Payee)
    assert _fields(contract.Proxy) == _fields(transfers._Proxy)
    assert _fields(contract.Call) == _fields(calls._Call)


def test_the_dead_letter_reasons_are_every_reason_the_code_gives() -> None:
    from sekat.blocklist import filing

    written = set(decode.REASONS)
    for module in [*(ROOT / "decode").glob("*.py"), *(ROOT / "streams").glob("*.py"),
                   ROOT / "blocklist" / "filing.py"]:
        source = module.read_text(encoding="utf-8")
        written |= set(re.findall(r'(?:Bad|Rejection)\(\s*"([a-z_]+)"', source))
        written |= set(re.findall(r'InvalidReport\([^)]*?,\s*"([a-z_]+)"\)', source))
    assert filing.InvalidReport("f", "m").reason in written
    assert set(contract.DeadLetterReason.__args__) == written


def test_outcomes_are_the_engines() -> None:
    from sekat.rules.outcome import Outcome

    assert list(contract.Outcome.__args__) == [o.name for o in sorted(Outcome)]


def test_the_topics_table_gives_each_default_topic_with_its_setting() -> None:
    text = CONTRACT.read_text(encoding="utf-8")
    for field, topic in SETTINGS.topic_names().items():
        assert f"| `{topic}` | `SEKAT_TOPIC_{field.upper()}` |" in text, topic


def test_every_setting_the_documents_name_exists() -> None:
    from dataclasses import fields

    known = {"SEKAT_" + f.name.upper() for f in fields(Settings)}
    for path in (CONTRACT, DOCS / "asyncapi.yaml", ROOT / "sekat" / "contract.py"):
        named = set(re.findall(r"SEKAT_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")))
        assert named and named <= known, (path.name, named - known)


# -- (b) every example in docs/contract.md is labelled and valid -------------------------------------------------------
def test_every_fenced_block_is_a_labelled_example_with_a_unique_id() -> None:
    assert EXAMPLES
    for ex in EXAMPLES:
        assert "example" in ex.labels, f"docs/contract.md:{ex.line}: a fenced block needs <!-- example: ID, ... -->"
        assert {"schema", "input", "rejected"} & set(ex.labels), f"docs/contract.md:{ex.line}: {ex.labels}"
        if "schema" in ex.labels:
            assert ex.lang == "json" and ex.labels["schema"] in contract.MESSAGES, ex.labels
    assert len(BY_ID) == len(EXAMPLES), "example ids must be unique"


@pytest.mark.parametrize("ex", [e for e in EXAMPLES if "schema" in e.labels], ids=lambda e: e.id)
def test_each_json_example_validates_against_its_schema(ex: Example) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator(ex.labels["schema"]).iter_errors(ex.json())]
    assert errors == [], f"docs/contract.md:{ex.line} ({ex.id})"


def test_every_message_and_every_action_has_an_example() -> None:
    assert {e.labels["schema"] for e in EXAMPLES if "schema" in e.labels} == set(contract.MESSAGES)
    actions = {e.json()["action"] for e in EXAMPLES if e.labels.get("schema") in ("bank-command", "telco-command")}
    assert actions == {a.value for a in Action}
    assert {e.labels["input"] for e in EXAMPLES if "input" in e.labels} == {"pacs008", "cdr-csv"}


# -- (c) inputs decode to records, outputs are what the code writes ----------------------------------------------------
def _decode(ex: Example) -> list[Any]:
    kind = ex.labels.get("schema") or ex.labels.get("input") or ex.labels.get("of", "")
    if kind == "transfer":
        return [decode_transfer(ex.raw())]
    if kind == "call":
        return [decode_call(ex.raw())]
    if kind == "call-attempt":
        return [decode_call_attempt(ex.raw())]
    if kind == "sms":
        return [decode_sms(ex.raw())]
    if kind == "report":
        return [decode_report(ex.raw(), ex.labels["key"].encode())]
    if kind == "pacs008":
        return decode_pacs008(ex.raw())
    if kind == "cdr-csv":
        return CdrCsvDecoder(SETTINGS.cdr_column_map(), SETTINGS.cdr_separator)(ex.raw())
    raise AssertionError(f"docs/contract.md:{ex.line}: no decoder for {ex.labels}")


INPUTS = [e for e in EXAMPLES if e.labels.get("schema") in INPUT_SCHEMAS or "input" in e.labels]


@pytest.mark.parametrize("ex", INPUTS, ids=lambda e: e.id)
def test_each_input_example_decodes_to_records(ex: Example) -> None:
    decoded = _decode(ex)
    assert decoded and not [r for r in decoded if isinstance(r, Rejection)], decoded
    expected = {"transfer": Transfer, "pacs008": Transfer, "call": Call, "call-attempt": Call, "cdr-csv": Call,
                "sms": Sms, "report": Report}[ex.labels.get("schema") or ex.labels["input"]]
    assert all(isinstance(r, expected) for r in decoded), decoded


def test_the_examples_identifiers_normalise_as_the_document_says() -> None:
    [t] = _decode(doc("transfer-proxy"))
    assert (t.payer.bank, t.payer.account.value, t.payee.bank) == ("MBBEMYKL", "MBBEMYKL:514012345678", "RHBBMYKL")
    assert t.payee_proxy is not None and t.payee_proxy.phone is not None
    assert (t.payee_proxy.type, t.payee_proxy.phone.e164) == ("MOBILE", "+60198765432")
    assert t.occurred_at == at("2026-11-28T10:16:30Z")
    [c] = _decode(doc("call-sms"))
    assert (c.operator, c.caller.e164, c.callee.e164, c.type) == ("CELCOM", "+60162345678", "+60123456789", "sms")
    assert [r.key for r in _decode(doc("report-account"))] == ["account:CIBBMYKL:8001234567"]


@pytest.mark.parametrize("ex", [e for e in EXAMPLES if "rejected" in e.labels], ids=lambda e: e.id)
def test_each_rejected_example_is_refused_with_its_reason(ex: Example) -> None:
    [result] = _decode(ex)
    assert isinstance(result, Rejection) and result.reason == ex.labels["rejected"], result


# Output examples: every message Sekat writes, and the reports it writes back to the reports topic.
OUTPUTS = [e for e in EXAMPLES if "schema" in e.labels and (e.labels["schema"] not in INPUT_SCHEMAS
                                                            or e.labels.get("written-by") == "sekat")]


@pytest.mark.parametrize("ex", OUTPUTS, ids=lambda e: e.id)
def test_each_output_example_is_exactly_what_the_code_writes(ex: Example, real_outputs: dict[str, Sent]) -> None:
    topic, key, value = real_outputs[ex.id]
    assert value == ex.json(), f"docs/contract.md:{ex.line} ({ex.id}): the code writes\n{orjson.dumps(value).decode()}"
    assert key.decode() == ex.labels["key"]
    assert topic == SCHEMA_TOPIC[ex.labels["schema"]]


def test_every_record_the_code_writes_validates_against_its_schema(real_outputs: dict[str, Sent]) -> None:
    written = [*transfer_outputs(), *follow_outputs(), *pacs008_outputs(), *call_outputs(), *sms_outputs(),
               *release_outputs(),
               *brake_outputs(), *rearm_outputs(), *lift_outputs(),
               *report_outputs(), *undelivered_outputs(), *appeal_outputs(), *feedback_outputs(),
               *institution_outputs(), *audit_outputs()]
    streams = {"transfers": "decision", "calls": "decision", "sms": "decision", "releases": "release-audit",
               "brake": "brake-audit"}
    by_topic = {SETTINGS.topic_freeze: "bank-command", SETTINGS.topic_block: "telco-command",
                SETTINGS.topic_deadletter: "deadletter", SETTINGS.topic_reports: "report",
                SETTINGS.topic_undelivered: "undelivered-command", SETTINGS.topic_appeals: "appeal",
                SETTINGS.topic_feedback: "feedback",
                SETTINGS.topic_notices: "notice", SETTINGS.topic_institutions: "institution",
                SETTINGS.topic_audit: "audit"}
    seen = set()
    for topic, key, value in written:
        name = streams[value["stream"]] if topic == SETTINGS.topic_decisions else by_topic[topic]
        seen.add(name)
        errors = [e.message for e in validator(name).iter_errors(value)]
        assert errors == [], (name, key, value)
        if name == "report":  # the reports agent reads back what Sekat writes
            assert isinstance(decode_report(orjson.dumps(value), key), Report)
    assert seen == set(contract.MESSAGES) - {"transfer", "call", "call-attempt", "sms"}
    assert set(real_outputs) == {e.id for e in OUTPUTS}


def test_the_command_id_recipe_in_the_document_gives_each_examples_id() -> None:
    import uuid

    namespace = uuid.UUID("6f1d2c8e-5b7a-5e1c-9a43-5e4b41540001")
    commands = [e.json() for e in EXAMPLES if e.labels.get("schema") in ("bank-command", "telco-command")]
    for body in commands:
        target = body.get("account", body.get("caller", body.get("sender", body.get("value"))))
        assert body["command_id"] == str(uuid.uuid5(namespace, f"{body['event_id']}|{body['action']}|{target}"))


def test_the_dead_letter_example_carries_the_bad_examples_bytes_and_key_with_identifiers_masked() -> None:
    import hashlib

    from sekat.redaction import mask_identifiers

    body, bad = doc("deadletter").json(), doc("bad-transfer")
    kept = base64.b64decode(body["original_b64"])
    assert kept == mask_identifiers(bad.raw()) and b"514012345678" not in kept and b"8001234567" not in kept
    assert b'"********5678"' in kept and body["original_sha256"] == hashlib.sha256(bad.raw()).hexdigest()
    assert base64.b64decode(body["original_key_b64"]).decode() == "MBBEMYKL:********5678"


# -- (d) docs/asyncapi.yaml -------------------------------------------------------------------------------------------
ASYNCAPI = DOCS / "asyncapi.yaml"


def _asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    return document


def _walk(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _messages(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(channel id, message id, message) of every channel's messages, references followed."""
    found = []
    for channel_id, channel in document["channels"].items():
        for message_id, message in channel["messages"].items():
            while "$ref" in message:
                message = _walk(document, message["$ref"])
            found.append((channel_id, message_id, message))
    return found


def test_the_asyncapi_document_is_asyncapi_3_yaml_with_operations_on_its_channels() -> None:
    document = _asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] and document["info"]["version"]
    for operation_id, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), operation_id
        channel = _walk(document, operation["channel"]["$ref"])
        for message in operation.get("messages", []):
            assert message["$ref"].startswith(operation["channel"]["$ref"] + "/messages/"), operation_id
            _walk(document, message["$ref"])
        assert channel["messages"]
    channels = {f"#/channels/{c}" for c in document["channels"]}
    assert channels == {op["channel"]["$ref"] for op in document["operations"].values()}


def test_every_json_message_payload_references_an_existing_schema_and_every_schema_is_used() -> None:
    document = _asyncapi()
    used = set()
    for channel_id, message_id, message in _messages(document):
        payload = message["payload"]
        content = message.get("contentType", document.get("defaultContentType"))
        if content == "application/json":
            assert payload["schemaFormat"] == "application/schema+json;version=draft-07", (channel_id, message_id)
            ref = payload["schema"]["$ref"]
            path = (ASYNCAPI.parent / ref).resolve()
            assert path.is_file(), f"{channel_id}.{message_id}: {ref} does not exist"
            assert path.parent == SCHEMAS.resolve()
            jsonschema.Draft7Validator.check_schema(orjson.loads(path.read_bytes()))
            used.add(path.name)
        else:
            assert content in ("application/xml", "text/csv"), (channel_id, message_id, content)
            assert payload["type"] == "string"
    assert used == {f"{name}.schema.json" for name in contract.MESSAGES}


def test_every_topic_of_the_settings_defaults_is_a_channel_with_its_setting() -> None:
    document = _asyncapi()
    by_address = {c["address"]: c for c in document["channels"].values()}
    for field, topic in SETTINGS.topic_names().items():
        assert topic in by_address, f"{topic} (SEKAT_TOPIC_{field.upper()}) is not a channel address"
        assert f"SEKAT_TOPIC_{field.upper()}" in by_address[topic]["description"]
    routed = {SETTINGS.topic_freeze + ".{bank}", SETTINGS.topic_block + ".{operator}"}
    assert routed <= set(by_address)


def test_every_message_names_its_kafka_key() -> None:
    for channel_id, message_id, message in _messages(_asyncapi()):
        key = message["bindings"]["kafka"]["key"]
        assert key["type"] == "string" and key["description"], (channel_id, message_id)
