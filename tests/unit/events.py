"""Typed events for rule unit tests, decoded from contract JSON so they are exactly what rules see."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from sekat.decode.calls import decode_call
from sekat.decode.transfers import decode_transfer
from sekat.records import Call, Transfer, iso
from sekat.rules.cross_channel import CallWarning
from sekat.rules.follow_money import TrailMark
from sekat.rules.registry import Context, Observations

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def transfer(event_id: str = "t-1", at: datetime = T0, payer: str = "5140 1234 5678", payee: str | None = "8001234567",
             amount: str = "1500.00", phone: str | None = "+60123456789", proxy: str | None = None) -> Transfer:
    body: dict[str, Any] = {"event_id": event_id, "occurred_at": iso(at), "transfer_id": "DN" + event_id,
                            "amount": amount, "payer": {"bank": "MBBEMYKL", "account": payer},
                            "payee": {"bank": "CIBBMYKL"}}
    if phone:
        body["payer"]["phone"] = phone
    if payee:
        body["payee"]["account"] = payee
    if proxy:
        body["payee"]["proxy"] = {"type": "MOBILE", "value": proxy}
    decoded = decode_transfer(orjson.dumps(body))
    assert isinstance(decoded, Transfer), decoded
    return decoded


def call(event_id: str = "c-1", at: datetime = T0, caller: str = "+60376543210", callee: str = "+60123456789",
         network: str | None = None, attestation: str | None = None, duration: float | None = None,
         answered: bool | None = None) -> Call:
    body: dict[str, Any] = {"event_id": event_id, "occurred_at": iso(at), "call_id": "x" + event_id,
                            "operator": "CELCOM", "caller": caller, "callee": callee}
    if network:
        body["caller_network"] = network
    if attestation:
        body["attestation"] = attestation
    if duration is not None:
        body["duration"] = duration
    if answered is not None:
        body["answered"] = answered
    decoded = decode_call(orjson.dumps(body))
    assert isinstance(decoded, Call), decoded
    return decoded


def ctx(now: datetime = T0 + timedelta(seconds=1), lookups: dict | None = None, *,
        counts: dict[str, dict[str, int]] | None = None, warnings: dict[str, CallWarning] | None = None,
        paid_before: set[tuple[str, str]] | None = None, auto_reported: set[str] | None = None,
        trail: dict[str, TrailMark] | None = None) -> Context:
    """A rule's context with the state the shell would have read: window counts by family and event id, and
    each rule's values (a customer's latest warning call, payer|payee pairs paid before, rules' report marks,
    trail marks) as the rules store them."""
    values = {"warn": {k: w.encode() for k, w in (warnings or {}).items()},
              "paid": {f"{a}|{b}": "1" for a, b in paid_before or ()},
              "auto": {m: "1" for m in auto_reported or ()},
              "trail": {k: m.encode() for k, m in (trail or {}).items()}}
    return Context(now, lookups or {}, Observations(counts or {}, values))
