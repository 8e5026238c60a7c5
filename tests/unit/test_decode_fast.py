"""The transfer and call decoders' fast paths (msgspec) and precise paths give one answer.

``decode_transfer`` (and ``decode_call``) tries ``_decode_fast`` and falls back to ``_decode_precise``
(which reads the JSON object field by field and explains rejections). If the fast path accepted something the precise
path refuses, or built a different Transfer, screening would depend on which
path ran: these properties pin that it cannot, on generated events around the
contract's edges (missing, blank, long, wrongly typed and look-alike values).
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sekat.decode import calls, transfers
from sekat.decode.fields import decode_object
from sekat.decode.transfers import _decode_fast, decode_transfer
from sekat.records import Call, Rejection, Transfer
from sekat.identifiers import ProxyHasher

texts = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "\t", "x" * 129, "x" * 257]))
banks = st.one_of(st.sampled_from(["MBBEMYKL", "cibbmykl", " MBBEMYKLXXX ", "MBBEMYK", "12345678", ""]), texts)
accounts = st.one_of(st.sampled_from(["5140 1234 5678", "8001234567", "123", "١٢٣٤٥٦٧٨", "GB82WEST12345698765432",
                                      "8001-2345-67", "", " ", "1" * 35]), texts)
phones = st.one_of(st.sampled_from(["+60123456789", "012-345 6789", "999", "60123456789", "+6012", "٠١٢٣٤٥٦٧٨٩",
                                    ""]), texts)
amounts = st.one_of(st.sampled_from(["1500.00", "0", "-1", "NaN", "1e3", "١٥٠٠", " 12.5 ", "1e13", "Infinity", ""]),
                    st.integers(-5, 10**14), st.floats(allow_nan=True), texts)
stamps = st.one_of(st.sampled_from(["2026-11-28T10:15:00.123Z", "2026-11-28T10:15:00", "2026-13-01T00:00:00Z",
                                    "yesterday", ""]), texts)
junk = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.lists(st.integers(-9, 9), max_size=2), st.builds(dict))


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value, a wrongly typed one, or (as a marker) nothing at all."""
    return st.one_of(strategy, strategy, strategy, junk, st.just(...))


def body(draw: Any, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    out = {}
    for name, strategy in fields.items():
        value = draw(maybe(strategy))
        if value is not ...:
            out[name] = value
    return out


@st.composite
def events(draw: Any) -> bytes:
    proxy = body(draw, {"type": st.sampled_from(["MOBILE", "mobile", "NRIC", ""]), "value": phones})
    event = body(draw, {
        "event_id": texts, "occurred_at": stamps, "transfer_id": texts, "amount": amounts,
        "channel": texts, "currency": st.sampled_from(["MYR", "MYRX", "", None]),
        "payer": st.builds(dict, bank=banks, account=accounts, phone=phones),
        "payee": st.one_of(st.builds(dict, bank=banks, account=accounts),
                           st.builds(dict, bank=banks, proxy=st.just(proxy)),
                           st.builds(dict, bank=banks, account=accounts, proxy=st.just(proxy))),
        "unknown": junk,
    })
    return orjson.dumps(event)


def precise_transfer(raw: bytes) -> Transfer | Rejection:
    return decode_object(raw, 65536, lambda data: transfers._decode_precise(data, "MY"))


def precise_call(raw: bytes) -> Call | Rejection:
    return decode_object(raw, 65536, lambda data: calls._decode_precise(data, "MY"))


def assert_agree(precise: object, fast: object, record: type) -> None:
    if isinstance(precise, record):
        # every valid event the fast path takes (here all of them are JSON strings) gives the same record
        assert fast is None or fast == precise
    else:
        assert fast is None, f"fast path accepted what the precise one refuses: {precise}"


@settings(max_examples=600, deadline=None)
@given(events())
def test_the_fast_path_never_disagrees_with_the_precise_one(raw: bytes) -> None:
    precise = precise_transfer(raw)
    assert_agree(precise, _decode_fast(raw, "MY"), Transfer)
    assert decode_transfer(raw) == precise


TRANSFER = {"event_id": "t-1", "occurred_at": "2026-11-28T10:15:00.123Z", "transfer_id": "DN1", "amount": "1500.00",
            "currency": "MYR", "channel": "DUITNOW",
            "payer": {"bank": "MBBEMYKL", "account": "5140 1234 5678", "phone": "+60123456789"},
            "payee": {"bank": "CIBBMYKL", "account": "8001234567", "proxy": {"type": "MOBILE", "value": "0123456789"}}}
TRANSFER_FIELDS: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("event_id",): texts, ("occurred_at",): stamps, ("transfer_id",): texts, ("amount",): amounts,
    ("currency",): st.sampled_from(["MYR", "MYRX", "", " ", None]), ("channel",): texts,
    ("payer", "bank"): banks, ("payer", "account"): accounts, ("payer", "phone"): phones,
    ("payee", "bank"): banks, ("payee", "account"): accounts, ("payee", "proxy", "type"): texts,
    ("payee", "proxy", "value"): phones, ("payee", "proxy"): junk, ("unknown",): junk,
}


@st.composite
def near_valid(draw: Any, valid: dict[str, Any], fields: dict[tuple[str, ...], st.SearchStrategy[Any]]) -> bytes:
    """A valid event with up to three fields redrawn: each field's edges met in otherwise valid events."""
    event = orjson.loads(orjson.dumps(valid))
    for path in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        node = event
        for name in path[:-1]:
            node = node.get(name) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            continue
        value = draw(maybe(fields[path]))
        if value is ...:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return orjson.dumps(event)


@settings(max_examples=600, deadline=None)
@given(near_valid(TRANSFER, TRANSFER_FIELDS))
def test_the_fast_path_agrees_on_nearly_valid_transfers(raw: bytes) -> None:
    assert_agree(precise_transfer(raw), _decode_fast(raw, "MY"), Transfer)


def test_a_contract_event_takes_the_fast_path() -> None:
    raw = (b'{"event_id":"t-1","occurred_at":"2026-11-28T10:15:00.123Z","transfer_id":"DN1","amount":"1500.00",'
           b'"currency":"MYR","payer":{"bank":"MBBEMYKL","account":"5140 1234 5678","phone":"+60123456789"},'
           b'"payee":{"bank":"CIBBMYKL","account":"8001234567","proxy":{"type":"mobile","value":"012-345 6789"}}}')
    fast = _decode_fast(raw, "MY")
    assert isinstance(fast, Transfer) and fast == precise_transfer(raw)
    assert fast.payee.account is not None and fast.payee.account.key == "account:CIBBMYKL:8001234567"
    assert fast.payee_proxy is not None and fast.payee_proxy.phone is not None


def test_a_rejection_is_explained_by_the_precise_path() -> None:
    raw = b'{"event_id":"t-1","occurred_at":"2026-11-28T10:15:00Z","transfer_id":"DN1","amount":"\xd9\xa1",' \
          b'"payer":{"bank":"MBBEMYKL","account":"51401234"},"payee":{"bank":"CIBBMYKL","account":"8001234567"}}'
    out = decode_transfer(raw)
    assert isinstance(out, Rejection) and out.reason == "invalid_amount" and out.field == "amount"


operators = st.one_of(st.sampled_from(["MAXIS", "celcom", "u.mobile-1", "DiGi_2", "BAD OP", "X" * 33, "OP\n", ""]),
                      texts)
levels = st.one_of(st.sampled_from(["A", "b", " c ", "D", "", " ", "AB"]), texts)


CALL = {"event_id": "c-1", "occurred_at": "2026-11-28T10:15:00.123Z", "call_id": "k1", "operator": "MAXIS",
        "caller": "012-345 6789", "callee": "+60198765432", "type": "voice", "caller_network": "domestic",
        "attestation": "A"}


CALL_FIELDS: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("event_id",): texts, ("occurred_at",): stamps, ("call_id",): texts, ("operator",): operators,
    ("caller",): phones, ("callee",): phones, ("type",): st.sampled_from(["voice", "sms", "SMS", "", " ", "fax"]),
    ("caller_network",): st.one_of(st.sampled_from(["domestic", "international", ""]), texts),
    ("attestation",): levels, ("unknown",): junk,
    ("duration",): st.one_of(st.sampled_from([0, 1.5, 86_400, 86_401, -1, True, "2", None]), st.floats()),
    ("answered",): st.sampled_from([True, False, None, "yes", 1]),
}


@settings(max_examples=600, deadline=None)
@given(near_valid(CALL, CALL_FIELDS))
def test_the_call_fast_path_never_disagrees_with_the_precise_one(raw: bytes) -> None:
    precise = precise_call(raw)
    assert_agree(precise, calls._decode_fast(raw, "MY"), Call)
    assert calls.decode_call(raw) == precise


def test_a_contract_call_takes_the_fast_path() -> None:
    raw = (b'{"event_id":"c-1","occurred_at":"2026-11-28T10:15:00.123Z","call_id":"k1","operator":"maxis",'
           b'"caller":"012-345 6789","callee":"+60198765432","type":"sms","attestation":" b "}')
    fast = calls._decode_fast(raw, "MY")
    assert isinstance(fast, Call) and fast == precise_call(raw)
    assert (fast.operator, fast.caller.e164, fast.type, fast.attestation) == ("MAXIS", "+60123456789", "sms", "B")


WALLET_AND_PROXY = {**TRANSFER, "payee": {"bank": "CIBBMYKL", "wallet": {"provider": "TNG", "id": "6012000111"},
                                          "proxy": {"type": "NRIC", "value": "900101-14-5678"}}}


@settings(max_examples=300, deadline=None)
@given(st.one_of(near_valid(TRANSFER, TRANSFER_FIELDS), near_valid(WALLET_AND_PROXY, TRANSFER_FIELDS)))
def test_a_transfers_keys_are_its_identifiers_keys(raw: bytes) -> None:
    """``keys`` (what a batch looks up, written out for speed) is ``identifiers``' keys, in order."""
    transfer = decode_transfer(raw, hasher=ProxyHasher("k" * 40))
    if isinstance(transfer, Transfer):
        assert transfer.keys() == [ident.key for ident in transfer.identifiers()]
