"""Decoding at the edge: a valid contract event becomes a record; anything else a reason naming the field."""

from decimal import Decimal

import orjson
import pytest

from sekat.decode.calls import decode_call
from sekat.decode.transfers import decode_transfer
from sekat.records import Call, Rejection, Transfer

TRANSFER = {"event_id": "t-000001", "occurred_at": "2026-11-28T10:15:00.123Z", "transfer_id": "DN20261128",
            "channel": "DUITNOW", "amount": "1500.00", "currency": "MYR",
            "payer": {"bank": "MBBEMYKL", "account": "5140 1234 5678", "phone": "+60123456789"},
            "payee": {"bank": "CIBBMYKL", "account": "8001234567", "proxy": {"type": "MOBILE", "value": "012-345 6789"}},
            "unknown_extra": {"ignored": True}}
CALL = {"event_id": "c-000001", "occurred_at": "2026-11-28T10:14:02.000Z", "call_id": "x", "operator": "celcom",
        "type": "voice", "caller": "+60376543210", "callee": "+60123456789", "caller_network": "international"}


def with_(base: dict, path: str, value: object = ...) -> bytes:
    data = orjson.loads(orjson.dumps(base))
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return orjson.dumps(data)


def test_contract_transfer_decodes() -> None:
    t = decode_transfer(orjson.dumps(TRANSFER))
    assert isinstance(t, Transfer)
    assert t.amount == Decimal("1500.00")
    assert t.payer.account.value == "MBBEMYKL:514012345678"
    assert t.payee.account.value == "CIBBMYKL:8001234567"
    assert t.payee_proxy.phone.e164 == "+60123456789"
    assert [i.key for i in t.identifiers()] == ["account:CIBBMYKL:8001234567", "account:MBBEMYKL:514012345678",
                                                "phone:+60123456789"]


def test_payee_with_only_a_proxy_is_valid() -> None:
    t = decode_transfer(with_(TRANSFER, "payee.account"))
    assert isinstance(t, Transfer) and t.payee.account is None


def test_contract_call_decodes() -> None:
    c = decode_call(orjson.dumps(CALL))
    assert isinstance(c, Call)
    assert c.operator == "CELCOM" and c.caller.e164 == "+60376543210" and c.type == "voice"


@pytest.mark.parametrize("raw,reason,field", [
    (b"", "empty", ""),
    (b"x" * 70000, "too_large", ""),
    (b"{not json", "not_json", ""),
    (b"\xff\xfe", "not_json", ""),
    (b'"a string"', "not_object", ""),
    (b"[" * 5000 + b"]" * 5000, "not_json", ""),
    (with_(TRANSFER, "event_id"), "missing_field", "event_id"),
    (with_(TRANSFER, "event_id", 12), "wrong_type", "event_id"),
    (with_(TRANSFER, "event_id", "  "), "invalid_value", "event_id"),
    (with_(TRANSFER, "event_id", "x" * 500), "invalid_value", "event_id"),
    (with_(TRANSFER, "occurred_at", "28/11/2026"), "invalid_timestamp", "occurred_at"),
    (with_(TRANSFER, "amount", "Infinity"), "invalid_amount", "amount"),
    (with_(TRANSFER, "amount", "0"), "invalid_amount", "amount"),
    (with_(TRANSFER, "amount", "1e20"), "invalid_amount", "amount"),
    (with_(TRANSFER, "amount", True), "wrong_type", "amount"),
    (with_(TRANSFER, "amount", {"v": 1}), "wrong_type", "amount"),
    (with_(TRANSFER, "payer", "MBBEMYKL"), "wrong_type", "payer"),
    (with_(TRANSFER, "payer.bank"), "missing_field", "payer.bank"),
    (with_(TRANSFER, "payer.account", "12-ab"), "invalid_account", "payer.account"),
    (with_(TRANSFER, "payee.bank", "XX"), "invalid_bank", "payee.bank"),
    (with_(TRANSFER, "payee.proxy.value", "not-a-phone"), "invalid_phone", "payee.proxy.value"),
    (with_(TRANSFER, "transfer_id"), "missing_field", "transfer_id"),
])
def test_bad_transfers_are_rejected_with_a_reason_naming_the_field(raw: bytes, reason: str, field: str) -> None:
    result = decode_transfer(raw)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (reason, field)
    assert result.message and (not field or result.message.startswith(field))


def test_payee_needs_account_or_proxy() -> None:
    data = orjson.loads(orjson.dumps(TRANSFER))
    del data["payee"]["account"], data["payee"]["proxy"]
    result = decode_transfer(orjson.dumps(data))
    assert isinstance(result, Rejection) and result.reason == "missing_field"


@pytest.mark.parametrize("raw,reason,field", [
    (with_(CALL, "caller"), "missing_field", "caller"),
    (with_(CALL, "caller", "anonymous"), "invalid_phone", "caller"),
    (with_(CALL, "callee", 60123456789), "wrong_type", "callee"),
    (with_(CALL, "type", "fax"), "invalid_value", "type"),
    (with_(CALL, "operator", "CEL COM;drop"), "invalid_value", "operator"),
    (with_(CALL, "call_id"), "missing_field", "call_id"),
    (with_(CALL, "attestation", "D"), "invalid_value", "attestation"),
    (with_(CALL, "attestation", 1), "wrong_type", "attestation"),
    (with_(CALL, "attestation", "AA"), "invalid_value", "attestation"),
    (with_(CALL, "duration", -1), "invalid_value", "duration"),
    (with_(CALL, "duration", 86_401), "invalid_value", "duration"),
    (with_(CALL, "duration", "2"), "wrong_type", "duration"),
    (with_(CALL, "duration", True), "wrong_type", "duration"),
    (with_(CALL, "answered", "no"), "wrong_type", "answered"),
])
def test_bad_calls_are_rejected(raw: bytes, reason: str, field: str) -> None:
    result = decode_call(raw)
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (reason, field)


def test_call_attestation_is_optional_and_case_blind() -> None:
    absent = decode_call(orjson.dumps(CALL))
    given = decode_call(with_(CALL, "attestation", "b"))
    assert isinstance(absent, Call) and absent.attestation is None
    assert isinstance(given, Call) and given.attestation == "B"


def test_call_duration_and_answered_are_optional() -> None:
    absent = decode_call(orjson.dumps(CALL))
    given = decode_call(orjson.dumps({**CALL, "duration": 1.5, "answered": False}))
    whole = decode_call(orjson.dumps({**CALL, "duration": 42, "answered": True}))
    assert isinstance(absent, Call) and (absent.duration, absent.answered) == (None, None)
    assert isinstance(given, Call) and (given.duration, given.answered) == (1.5, False)
    assert isinstance(whole, Call) and (whole.duration, whole.answered) == (42.0, True)


def test_emergency_caller_decodes_as_protected() -> None:
    c = decode_call(with_(CALL, "caller", "999"))
    assert isinstance(c, Call) and c.caller.protected and c.identifiers() == []
