"""Call-attempt events (JSON) → ``Call``: the shape a signalling probe or SBC emits for every attempt.

    {"attempt_id": "ca-1", "attempted_at": "2026-11-28T10:14:02Z", "operator": "CELCOM",
     "service": "voice", "calling_number": "+60376543210", "called_number": "+60123456789",
     "presentation": "restricted", "origin_network": "international"}

Required: ``attempt_id`` (also the event id), ``attempted_at``, ``operator``, ``calling_number``,
``called_number``. ``service`` is ``voice`` (default) or ``sms`` (CDR codes such as ``MOC``/``SMS-MO`` too);
``presentation`` is the CLI presentation (``allowed``, ``restricted``, ``unavailable`` or 0/1/2);
``origin_network`` becomes ``caller_network``; ``attestation`` is the STIR/SHAKEN level (A, B or C). Unknown extra fields are ignored.
"""

from __future__ import annotations

from sekat.decode import cdr
from sekat.decode import fields as d
from sekat.decode.calls import attestation
from sekat.records import Call, Rejection


def decode_call_attempt(raw: bytes | None, max_bytes: int = 65536, region: str = "MY") -> Call | Rejection:
    try:
        data = d.load_object(raw, max_bytes)
        attempt_id = d.text(data, "attempt_id", "attempt_id", max_len=128)
        occurred_at = d.timestamp(data, "attempted_at")
        operator = cdr.operator(d.text(data, "operator", "operator", max_len=32), "operator")
        caller = d.phone(data, "calling_number", "calling_number", region)
        callee = d.phone(data, "called_number", "called_number", region)
        assert attempt_id is not None and caller is not None and callee is not None
        return Call(
            event_id=attempt_id, occurred_at=occurred_at, call_id=attempt_id, operator=operator,
            caller=caller, callee=callee,
            type=cdr.call_type(d.text(data, "service", "service", required=False, max_len=16), "service"),
            caller_network=cdr.network(d.text(data, "origin_network", "origin_network", required=False, max_len=32),
                                       "origin_network"),
            presentation=cdr.presentation(d.text(data, "presentation", "presentation", required=False, max_len=32),
                                          "presentation"),
            attestation=attestation(d.text(data, "attestation", "attestation", required=False, max_len=8),
                                    "attestation"),
        )
    except d.Bad as bad:
        return bad.rejection
