"""Telco calls and SMS: decode the Call contract (docs/contract.md).

Two decoders, one answer, as for transfers (decode/transfers.py): ``_decode_fast``
(msgspec into a typed struct, cached phone normalisation) takes a valid event;
anything it does not like falls through to ``_decode_precise``, which names the
field at fault for the dead letter. tests/unit/test_decode_fast.py holds the two
to the same answer on generated calls.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated

import msgspec

from sekat.decode import fields as d
from sekat.errors import InvalidIdentifier
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
    return d.fast_or_precise(raw, max_bytes, region, _decode_fast, _decode_precise)


# -- the happy path -----------------------------------------------------------------------------------------
# Lengths as in the precise decoder (d.text's max_len per field); blank strings are checked below.
_Id, _Short = d.Id, d.Short
_Tiny = Annotated[str, msgspec.Meta(max_length=8)]


class _Call(msgspec.Struct):
    event_id: _Id
    occurred_at: Annotated[str, msgspec.Meta(max_length=64)]
    call_id: _Id
    operator: _Short
    caller: _Short
    callee: _Short
    type: _Tiny | None = None
    caller_network: _Short | None = None
    attestation: _Tiny | None = None


_WIRE = msgspec.json.Decoder(_Call)
_UTC = timezone.utc


def _decode_fast(raw: bytes, region: str) -> Call | None:
    """The Call for a valid event, or None: then the precise decoder decides (and explains)."""
    try:
        w = _WIRE.decode(raw)
        if (d.blank(w.event_id) or d.blank(w.call_id) or not _OPERATOR_RE.match(w.operator)
                or (w.type is not None and w.type not in CALL_TYPES)
                or (w.caller_network is not None and d.blank(w.caller_network))):
            return None
        level = w.attestation
        if level is not None:
            level = level.strip().upper()
            if level not in ATTESTATIONS:  # a blank one too: the precise path refuses it as empty
                return None
        occurred_at = datetime.fromisoformat(w.occurred_at)
        if occurred_at.tzinfo is None:
            occurred_at = occurred_at.replace(tzinfo=_UTC)
        return Call(event_id=w.event_id, occurred_at=occurred_at, call_id=w.call_id, operator=w.operator.upper(),
                    caller=d.fast_phone(w.caller, region), callee=d.fast_phone(w.callee, region),
                    type=w.type or "voice", caller_network=w.caller_network, attestation=level)
    except (msgspec.DecodeError, ValueError, InvalidIdentifier):
        # msgspec.ValidationError is a DecodeError; fromisoformat raises ValueError.
        return None


# -- the precise path: every rejection explained ------------------------------------------------------------
def _decode_precise(raw: bytes | None, max_bytes: int = 65536, region: str = "MY") -> Call | Rejection:
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
