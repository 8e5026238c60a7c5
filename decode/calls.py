"""Telco calls and SMS: decode the Call contract (docs/contract.md).

Two decoders, one answer, as for transfers (decode/transfers.py): ``_decode_fast``
(msgspec into a typed struct, cached phone normalisation) takes a valid event;
anything it does not like falls through to ``_decode_precise``, which names the
field at fault for the dead letter. tests/unit/test_decode_fast.py holds the two
to the same answer on generated calls.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from sekat.decode import fields
from sekat.decode.fields import Bad
from sekat.errors import InvalidIdentifier
from sekat.identifiers import normalise_phone
from sekat.records import Call, Rejection

_OPERATOR_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
CALL_TYPES = ("voice", "sms")
ATTESTATIONS = ("A", "B", "C")
MAX_DURATION_S = 86_400.0  # a day: a call record's duration beyond it is a unit mistake (ms for s)


def operator(raw: str, field: str) -> str:
    """An operator code: 1-32 letters, digits, '.', '_' or '-', upper-cased."""
    if not _OPERATOR_RE.match(raw):
        raise Bad("invalid_value", field, "must be 1-32 letters, digits, '.', '_' or '-'")
    return raw.upper()


def attestation(raw: str | None, field: str) -> str | None:
    """A STIR/SHAKEN attestation level: A, B or C (any case); empty or absent means none was given."""
    if raw is None or not raw.strip():
        return None
    level = raw.strip().upper()
    if level not in ATTESTATIONS:
        raise Bad("invalid_value", field, "must be A, B or C (STIR/SHAKEN attestation level)")
    return level


def duration(value: Any, field: str) -> float | None:
    """Seconds (talk time if answered, ring time if not), 0 to a day; absent or null means not given."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Bad("wrong_type", field, "must be a number of seconds")
    if not 0 <= value <= MAX_DURATION_S:  # NaN fails too
        raise Bad("invalid_value", field, f"must be 0 to {MAX_DURATION_S:.0f} seconds")
    return float(value)


def answered(value: Any, field: str) -> bool | None:
    """Whether the callee answered: true or false; absent or null means not given."""
    if value is None or isinstance(value, bool):
        return value
    raise Bad("wrong_type", field, "must be true or false")


def decode_call(raw: bytes | None, max_bytes: int = 65536, region: str = "MY") -> Call | Rejection:
    """The fast path's answer when it takes the event, else the precise path's (as ``decode_transfer``)."""
    if raw and len(raw) <= max_bytes:
        found = _decode_fast(raw, region)
        if found is not None:
            return found
    return fields.decode_object(raw, max_bytes, lambda data: _decode_precise(data, region))


# -- the happy path -----------------------------------------------------------------------------------------
# Lengths as in the precise decoder (fields.text's max_len per field); blank strings are checked below.
# Strings and numbers only, never in a cycle: untracked by the garbage collector (``gc=False``).
_Id, _Short = fields.Id, fields.Short
_Tiny = Annotated[str, msgspec.Meta(max_length=8)]


class _Call(msgspec.Struct, gc=False):
    event_id: _Id
    occurred_at: Annotated[str, msgspec.Meta(max_length=64)]
    call_id: _Id
    operator: _Short
    caller: _Short
    callee: _Short
    type: _Tiny | None = None
    caller_network: _Short | None = None
    attestation: _Tiny | None = None
    duration: float | None = None
    answered: bool | None = None


_WIRE = msgspec.json.Decoder(_Call)


def _decode_fast(raw: bytes, region: str) -> Call | None:
    """The Call for a valid event, or None: then the precise decoder decides (and explains)."""
    try:
        w = _WIRE.decode(raw)
        if (fields.blank(w.event_id) or fields.blank(w.call_id) or not _OPERATOR_RE.match(w.operator)
                or (w.type is not None and w.type not in CALL_TYPES)
                or (w.caller_network is not None and fields.blank(w.caller_network))
                or (w.duration is not None and not 0 <= w.duration <= MAX_DURATION_S)):
            return None
        level = w.attestation
        if level is not None:
            level = level.strip().upper()
            if level not in ATTESTATIONS:  # a blank one too: the precise path refuses it as empty
                return None
        return Call(event_id=w.event_id, occurred_at=fields.iso_time(w.occurred_at), call_id=w.call_id,
                    operator=w.operator.upper(), caller=normalise_phone(w.caller, region),
                    callee=normalise_phone(w.callee, region), type=w.type or "voice",
                    caller_network=w.caller_network, attestation=level, duration=w.duration,
                    answered=w.answered)
    except (msgspec.DecodeError, ValueError, InvalidIdentifier):
        # msgspec.ValidationError is a DecodeError; fromisoformat raises ValueError.
        return None


# -- the precise path: every rejection explained ------------------------------------------------------------
def _decode_precise(data: dict[str, Any], region: str) -> Call:
    event_id, occurred_at = fields.event_id_and_time(data)
    call_id = fields.text(data, "call_id", max_len=128)
    raw_operator = fields.text(data, "operator", max_len=32)
    assert call_id is not None and raw_operator is not None
    operator_code = operator(raw_operator, "operator")
    caller = fields.phone(data, "caller", "caller", region)
    callee = fields.phone(data, "callee", "callee", region)
    assert caller is not None and callee is not None
    kind = fields.text(data, "type", required=False, max_len=8) or "voice"
    if kind not in CALL_TYPES:
        raise Bad("invalid_value", "type", "must be 'voice' or 'sms'")
    return Call(
        event_id=event_id, occurred_at=occurred_at, call_id=call_id, operator=operator_code,
        caller=caller, callee=callee, type=kind,
        caller_network=fields.text(data, "caller_network", required=False, max_len=32),
        attestation=attestation(fields.text(data, "attestation", required=False, max_len=8), "attestation"),
        duration=duration(data.get("duration"), "duration"), answered=answered(data.get("answered"), "answered"),
    )
