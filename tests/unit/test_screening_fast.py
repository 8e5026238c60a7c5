"""The screening shell's fast path: under a policy that finds nothing without a listed identifier (the blocklist
alone, ``engine.listed_only``), an event none of whose identifiers is listed is counted as ALLOW without asking
the engine. Held to the engine's own answer: for any batch, listed set and such policy, the records sent and
what the batch counts and writes are the same with the fast path switched off."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest.mock import patch

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from sekat.decode.calls import decode_call
from sekat.decode.sms import decode_sms
from sekat.decode.transfers import decode_transfer
from sekat.metrics.worker import WorkerMetrics
from sekat.records import Entry, Status
from sekat.release.sweep import recording_who_acted
from sekat.rules.engine import decide_call, decide_sms, decide_transfer, listed_only
from sekat.rules.policy import DEFAULT_POLICY_FILE, Policy, load_policy
from sekat.settings import Settings
from sekat.streams import screening
from sekat.streams.screening import PendingBatch, Screen, ScreenServices, StreamSteps
from sekat.streams.sent import recording_sent
from tests.unit.wire import Lookups, Wire, no_state, outputs, write_nothing

NOW = datetime(2026, 11, 28, 10, 15, tzinfo=timezone.utc)
SETTINGS = Settings()
TOPIC = {"transfers": SETTINGS.topic_transfers, "calls": SETTINGS.topic_calls, "sms": SETTINGS.topic_sms}
DECODE = {"transfers": decode_transfer, "calls": decode_call, "sms": decode_sms}
DECIDE = {"transfers": decide_transfer, "calls": decide_call, "sms": decide_sms}

# Events of each stream, written as the contract allows ({i}: the event's place in the batch), and one that is
# refused (a dead letter, whichever path decides the rest).
EVENTS = {
    "transfers": [
        '{{"event_id":"t-{i}","occurred_at":"2026-11-28T10:14:00.{i:03d}Z","transfer_id":"DN{i}","amount":"1500.00",'
        '"payer":{{"bank":"MBBEMYKL","account":"5140 1234 5678","phone":"012-345 6789"}},'
        '"payee":{{"bank":"CIBBMYKL","account":"8001234567"}}}}',
        '{{"event_id":"t-{i}","occurred_at":"2026-11-28T10:14:00Z","transfer_id":"DN{i}","amount":"20.5",'
        '"payer":{{"bank":"RHBBMYKL","account":"2140000011"}},'
        '"payee":{{"bank":"MBBEMYKL","proxy":{{"type":"MOBILE","value":"+60198765432"}}}}}}',
        '{{"event_id":"t-{i}","occurred_at":"2026-11-28T10:14:00Z","transfer_id":"DN{i}","amount":"99",'
        '"payer":{{"bank":"MBBEMYKL","account":"5140 1234 5678"}},'
        '"payee":{{"bank":"CIBBMYKL","wallet":{{"provider":"TNG","id":"6012000111"}}}}}}',
        '{{"event_id":"t-{i}","occurred_at":"2026-11-28T10:14:00Z","amount":"1"}}',
    ],
    "calls": [
        '{{"event_id":"c-{i}","occurred_at":"2026-11-28T10:14:00Z","call_id":"x{i}","operator":"CELCOM",'
        '"caller":"+60376543210","callee":"0123456789"}}',
        '{{"event_id":"c-{i}","occurred_at":"2026-11-28T10:14:00Z","call_id":"x{i}","operator":"maxis",'
        '"caller":"011-2345 6789","callee":"+60123456789","type":"sms"}}',
        '{{"event_id":"c-{i}","occurred_at":"2026-11-28T10:14:00Z","call_id":"x{i}","operator":"CELCOM",'
        '"caller":"999","callee":"+60123456789"}}',
        '{{"event_id":"c-{i}","occurred_at":"2026-11-28T10:14:00Z","call_id":"x{i}","operator":"CELCOM"}}',
    ],
    "sms": [
        '{{"event_id":"s-{i}","occurred_at":"2026-11-28T10:14:00Z","sms_id":"m{i}","operator":"MAXIS",'
        '"sender":"+60112223344","recipient":"0123456789","text":"Pay at https://www.Bayar-Segera.com.my/x?{i}"}}',
        '{{"event_id":"s-{i}","occurred_at":"2026-11-28T10:14:00Z","sms_id":"m{i}","operator":"MAXIS",'
        '"sender":"MYBANK","recipient":"0123456789","text":"Your code is {i}"}}',
        '{{"event_id":"s-{i}","occurred_at":"2026-11-28T10:14:00Z","sms_id":"m{i}","operator":"MAXIS"}}',
    ],
}


def _keys(stream: str) -> list[str]:
    found = (DECODE[stream](template.format(i=1).encode()) for template in EVENTS[stream])
    return sorted({ident.key for record in found if hasattr(record, "identifiers") for ident in record.identifiers()})


KEYS = {stream: _keys(stream) for stream in EVENTS}


def _policy(tmp: Path, name: str, rule: dict[str, Any]) -> Policy:
    body = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    body["rules"] = {"blocklist_match": rule}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return load_policy(path)


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> list[Policy]:
    """The blocklist alone, enforcing every role; in shadow; enforcing some roles only."""
    tmp = tmp_path_factory.mktemp("policies")
    return [_policy(tmp, "all", {"mode": "enforce"}), _policy(tmp, "shadow", {"mode": "shadow"}),
            _policy(tmp, "some", {"mode": "enforce", "params": {"roles": ["payee", "caller", "link"]}})]


class Record:
    """What the screening consumer hands a ``Screen``: an aiokafka ConsumerRecord's fields."""

    def __init__(self, topic: str, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.value = topic, 0, offset, value
        self.timestamp, self.key = int(NOW.timestamp() * 1000) - 5, None


def screen(stream: str, values: list[bytes], entries: list[Entry], policy: Policy, decide: Any = None,
           registry: CollectorRegistry | None = None) -> tuple[PendingBatch, list[tuple[str, bytes, bytes]]]:
    """One batch through the screening shell as the worker wires it: the finished batch and the records sent."""
    wire = Wire()
    services = ScreenServices(store=Lookups(entries), topics=outputs(wire, SETTINGS),
                              metrics=WorkerMetrics(registry or CollectorRegistry()),
                              policy=lambda: policy, write_state=write_nothing, clock=lambda: NOW)
    decide = decide or recording_sent(recording_who_acted(DECIDE[stream]))
    shell = Screen(stream, StreamSteps(DECODE[stream], decide, no_state), services)
    records = [Record(TOPIC[stream], 100 + i, value) for i, value in enumerate(values)]

    async def run() -> PendingBatch:
        pending = await shell.start(records)
        await pending.acked()
        return pending

    return asyncio.run(run()), wire.sent


def entry(key: str, status: Status, expired: bool) -> Entry:
    return Entry(key, status, "PDRM", reason="scam", case_ref="CASE-1", report_id="r-" + key,
                 expires_at=(NOW - timedelta(days=1)).isoformat() if expired else "")


@st.composite
def batches(draw: Any) -> tuple[str, list[bytes], list[Entry], int]:
    stream = draw(st.sampled_from(sorted(EVENTS)))
    picks = draw(st.lists(st.sampled_from(EVENTS[stream]), max_size=12))
    values = [template.format(i=i).encode() for i, template in enumerate(picks)]
    listed = draw(st.lists(st.sampled_from(KEYS[stream]), unique=True, max_size=3))
    entries = [entry(key, draw(st.sampled_from(list(Status))), draw(st.booleans())) for key in listed]
    return stream, values, entries, draw(st.integers(0, 2))


@settings(max_examples=150, deadline=None)
@given(batches())
def test_the_fast_path_sends_counts_and_writes_what_the_engine_would(
        policies: list[Policy], batch: tuple[str, list[bytes], list[Entry], int]) -> None:
    stream, values, entries, which = batch
    policy = policies[which]
    assert listed_only(policy, stream)
    fast, fast_sent = screen(stream, values, entries, policy)
    with patch.object(screening, "listed_only", lambda *_: False):
        slow, slow_sent = screen(stream, values, entries, policy)
    assert fast_sent == slow_sent
    for name in ("counts", "writes", "issued", "acted", "matched", "reported", "statuses"):
        assert getattr(fast.decided, name) == getattr(slow.decided, name), name


def test_an_event_with_no_listed_identifier_is_allowed_without_asking_the_engine(policies: list[Policy]) -> None:
    asked: list[str] = []

    def decide(record: Any, ctx: Any, policy: Policy) -> Any:
        asked.append(record.event_id)
        return decide_transfer(record, ctx, policy)

    values = [EVENTS["transfers"][i % 3].format(i=i).encode() for i in range(6)]
    pending, sent = screen("transfers", values, [entry("account:CIBBMYKL:8001234567", Status.CONFIRMED, False)],
                           policies[0], decide)
    assert asked == ["t-0", "t-3"]  # the two events paying the listed account
    assert pending.decided.counts == {"ALLOW": 4, "BLOCK": 2}
    assert [orjson.loads(value)["event_id"] for _, _, value in sent if b'"action"' in value] == ["t-0"] * 2 + ["t-3"] * 2


def test_a_batch_counted_without_the_engine_shows_in_the_metrics(policies: list[Policy]) -> None:
    registry = CollectorRegistry()
    values = [EVENTS["transfers"][i % 3].format(i=i).encode() for i in range(6)]
    pending, _ = screen("transfers", values, [entry("account:CIBBMYKL:8001234567", Status.CONFIRMED, False)],
                        policies[0], registry=registry)
    pending.observe()

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"stream": "transfers", **labels})

    assert sample("sekat_events_total", outcome="ALLOW") == 4
    assert sample("sekat_events_total", outcome="BLOCK") == 2
    assert sample("sekat_decision_latency_seconds_count") == 6  # one latency per record, from its timestamp


def test_the_shipped_policy_asks_the_engine_for_every_event() -> None:
    shipped = load_policy(DEFAULT_POLICY_FILE)
    assert not any(listed_only(shipped, stream) for stream in ("transfers", "calls"))
