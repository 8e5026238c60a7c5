"""Call-attempt events (JSON) → ``Call``: the shape a signalling probe or SBC emits for every attempt.

    {"attempt_id": "ca-1", "attempted_at": "2026-11-28T10:14:02Z", "operator": "CELCOM",
     "service": "voice", "calling_number": "+60376543210", "called_number": "+60123456789",
     "presentation": "restricted", "origin_network": "international"}

Required: ``attempt_id`` (also the event id), ``attempted_at``, ``operator``, ``calling_number``,
``called_number``. ``service`` is ``voice`` (default) or ``sms`` (CDR codes such as ``MOC``/``SMS-MO`` too);
``presentation`` is the CLI presentation (``allowed``, ``restricted``, ``unavailable`` or 0/1/2);
``origin_network`` becomes ``caller_network``; ``attestation`` is the STIR/SHAKEN level (A, B or C);
``duration`` (seconds: talk time if answered, ring time if not) and ``answered`` (true/false) tell a one-ring
call. Unknown extra fields are ignored.
"""

from __future__ import annotations

from typing import Any

from sekat.decode import calls, cdr, fields
from sekat.records import Call, Rejection


def decode_call_attempt(raw: bytes | None, max_bytes: int = 65536, region: str = "MY") -> Call | Rejection:
    return fields.decode_object(raw, max_bytes, lambda data: _call_attempt(data, region))


def _call_attempt(data: dict[str, Any], region: str) -> Call:
    def optional(name: str, max_len: int) -> str | None:
        return fields.text(data, name, required=False, max_len=max_len)

    attempt_id = fields.text(data, "attempt_id", max_len=128)
    occurred_at = fields.timestamp(data, "attempted_at")
    operator = cdr.operator(fields.text(data, "operator", max_len=32), "operator")
    caller = fields.phone(data, "calling_number", "calling_number", region)
    callee = fields.phone(data, "called_number", "called_number", region)
    assert attempt_id is not None and caller is not None and callee is not None
    return Call(
        event_id=attempt_id, occurred_at=occurred_at, call_id=attempt_id, operator=operator,
        caller=caller, callee=callee, type=cdr.call_type(optional("service", 16), "service"),
        caller_network=cdr.network(optional("origin_network", 32), "origin_network"),
        presentation=cdr.presentation(optional("presentation", 32), "presentation"),
        attestation=calls.attestation(optional("attestation", 8), "attestation"),
        duration=calls.duration(data.get("duration"), "duration"),
        answered=calls.answered(data.get("answered"), "answered"),
    )
