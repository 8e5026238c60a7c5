"""Telco calls and SMS: decode the Call contract (DESIGN.md)."""

from __future__ import annotations

import re

from streams import decode as d
from sekat.records import Call, Rejection

_OPERATOR_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
CALL_TYPES = ("voice", "sms")
ATTESTATIONS = ("A", "B", "C")


def attestation(raw: str | None, field: str) -> str | None:
    """A STIR/SHAKEN attestation level: A, B or C (any case); empty or absent means none was given."""
    if raw is None or not raw.strip():
        return None
    level = raw.strip().upper()
    if level not in ATTESTATIONS:
        raise d.Bad("invalid_value", field, "must be A, B or C (STIR/SHAKEN attestation level)")
    return level


def decode_call(raw: bytes | None, max_bytes: int = 65536, region: str = "MY") -> Call | Rejection:
    try:
        data = d.load_object(raw, max_bytes)
        event_id = d.text(data, "event_id", "event_id", max_len=128)
        occurred_at = d.timestamp(data, "occurred_at")
        call_id = d.text(data, "call_id", "call_id", max_len=128)
        operator = d.text(data, "operator", "operator", max_len=32)
        assert event_id is not None and call_id is not None and operator is not None
        if not _OPERATOR_RE.match(operator):
            raise d.Bad("invalid_value", "operator", "must be 1-32 letters, digits, '.', '_' or '-'")
        caller = d.phone(data, "caller", "caller", region)
        callee = d.phone(data, "callee", "callee", region)
        assert caller is not None and callee is not None
        kind = d.text(data, "type", "type", required=False, max_len=8) or "voice"
        if kind not in CALL_TYPES:
            raise d.Bad("invalid_value", "type", "must be 'voice' or 'sms'")
        return Call(
            event_id=event_id, occurred_at=occurred_at, call_id=call_id, operator=operator.upper(),
            caller=caller, callee=callee, type=kind,
            caller_network=d.text(data, "caller_network", "caller_network", required=False, max_len=32),
            attestation=attestation(d.text(data, "attestation", "attestation", required=False, max_len=8),
                                    "attestation"),
        )
    except d.Bad as bad:
        return bad.rejection
