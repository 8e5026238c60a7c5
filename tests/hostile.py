"""Hostile input for both input topics, each case labelled by the contract (docs/contract.md), not by the decoder.

A case is bytes for ``bank.transfers`` or ``telco.calls`` and what the contract
says must happen to it: ``bad`` ones must be dead-lettered with a reason,
``good`` ones decided. Good cases name a listed identifier (the transfer's
payee account, the call's caller), so each one is a non-allow decision that
can be seen on ``sekat.decisions``; hostile-but-valid variations ride on them:
unknown extra fields holding random JSON, unicode text, amounts as numbers,
look-alike digits in phone numbers (normalised to the same E.164 number, so
a listed caller cannot hide behind them), padded identifiers.

Bad cases: random bytes; random JSON; a valid event with one field removed,
nulled, of the wrong type (numbers, booleans, lists, objects nested deeper
than any parser should follow), empty, too long, or far too large; invalid
dates; NaN, infinite, zero, negative, oversized or look-alike-digit amounts;
look-alike digits in account numbers and banks; malformed phone numbers.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

LISTED_PHONE = "+60199999999"
LISTED_BANK = "CIBBMYKL"
LISTED_ACCOUNT = "8001234567"
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


@dataclass(frozen=True)
class Case:
    stream: str  # "transfers" or "calls"
    raw: bytes
    good: bool
    what: str  # how the case was made, for a failure message
    event_id: str = ""


def _event_id() -> str:
    return f"h-{uuid.uuid4().hex[:16]}"


def transfer(event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "occurred_at": "2026-11-28T10:15:00.123Z", "transfer_id": f"DN{event_id}",
            "channel": "DUITNOW", "amount": "1500.00", "currency": "MYR",
            "payer": {"bank": "MBBEMYKL", "account": "5140 1234 5678", "phone": "+60123456789"},
            "payee": {"bank": LISTED_BANK, "account": LISTED_ACCOUNT}}


def call(event_id: str) -> dict[str, Any]:
    return {"event_id": event_id, "occurred_at": "2026-11-28T10:14:02.000Z", "call_id": f"x{event_id}",
            "operator": "CELCOM", "type": "voice", "caller": LISTED_PHONE, "callee": "+60123456789"}


REQUIRED = {
    "transfers": ["event_id", "occurred_at", "transfer_id", "amount", "payer", "payer.bank", "payer.account",
                  "payee", "payee.bank"],
    "calls": ["event_id", "occurred_at", "call_id", "operator", "caller", "callee"],
}
CONTRACT_FIELDS = {"event_id", "occurred_at", "transfer_id", "channel", "amount", "currency", "payer", "payee",
                   "call_id", "operator", "type", "caller", "callee", "caller_network"}
TEXT_FIELDS = {"event_id", "transfer_id", "call_id", "operator"}

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**63),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=12)
wrong_types = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                        st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=3))
invalid_dates = st.one_of(
    st.sampled_from(["2026-13-01T00:00:00Z", "2026-02-30T10:00:00Z", "2026-11-28T25:00:00Z", "yesterday",
                     "28/11/2026 10:15", "2026-11-28T10:15:00.123Z junk", "٢٠٢٦-١١-٢٨T10:00:00Z",
                     "２０２６-11-28T10:00:00Z", "NaN", "-1", "", "   ", "T" * 80]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz !?", min_size=1, max_size=30))
bad_amounts = st.one_of(
    st.sampled_from(["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", "0", "0.00", "-0.01", "",
                     "1e400", "1000000000000.01", "12,50", "1 500", "RM15", "0x10", "١٥٠٠.٠٠", "１５００"]),
    st.decimals(max_value=0, allow_nan=False, allow_infinity=False, places=2).map(str),
    st.integers(max_value=0),
    st.text(alphabet="abcxyz-+.", min_size=1, max_size=12))
good_amounts = st.one_of(
    st.decimals(min_value="0.01", max_value="999999999999.99", places=2).map(str),
    st.integers(min_value=1, max_value=10**12),
    st.sampled_from(["1500.00", " 1500.00 ", "0.01", "1000000000000"]))
bad_accounts = st.sampled_from(["12", "0" * 40, "ABC-123", LISTED_ACCOUNT.translate(ARABIC_INDIC),
                                LISTED_ACCOUNT.translate(FULLWIDTH), "8001234567!", "   "])
bad_banks = st.sampled_from(["", "MBB", "12345678", "ＭＢＢＥＭＹＫＬ", "MBBEMYKL-XX", "MBBEMYKLXXXX"])
bad_phones = st.sampled_from(["not a number", "+999 1234 5678 90", "++60", "", "   ", "+60" + "1" * 40])
lookalike_phones = st.sampled_from([LISTED_PHONE.translate(ARABIC_INDIC), LISTED_PHONE.translate(FULLWIDTH),
                                    "019-999 9999", "60199999999", " +60 19 999 9999 ",
                                    "019-999 9999".translate(FULLWIDTH), "0199999999".translate(ARABIC_INDIC)])


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@st.composite
def bad_field(draw: st.DrawFn, stream: str) -> Case:
    """A valid event with one required field broken."""
    base = transfer(_event_id()) if stream == "transfers" else call(_event_id())
    path = draw(st.sampled_from(REQUIRED[stream]))
    leaf = path.split(".")[-1]
    options = [st.just(_DELETE), st.none(), wrong_types, st.integers(min_value=20, max_value=200).map(_nested)]
    if leaf in TEXT_FIELDS | {"occurred_at", "amount", "bank", "account", "caller", "callee"}:
        options += [st.sampled_from(["", "   ", "x" * 300])]
    if leaf == "occurred_at":
        options.append(invalid_dates)
    if leaf == "amount":
        options.append(bad_amounts)
    if leaf == "bank":
        options.append(bad_banks)
    if leaf == "account":
        options.append(bad_accounts)
    if leaf in ("caller", "callee"):
        options.append(bad_phones)
    if leaf == "operator":
        options.append(st.sampled_from(["CEL COM", "ＣＥＬＣＯＭ", "celcom;drop", "x" * 40]))
    if leaf == "amount":  # the decoder takes a JSON number for an amount too: only non-numbers are wrong types
        options[2] = st.one_of(st.booleans(), st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5),
                                                                                             scalars, max_size=3))
    value = draw(st.one_of(options))
    _set(base, path, value)
    # json.dumps: integers past 64 bits are hostile input too
    return Case(stream, json.dumps(base, ensure_ascii=False).encode(), False, f"{path}={str(value)[:60]!r}")


@st.composite
def good_event(draw: st.DrawFn, stream: str) -> Case:
    """A valid event naming a listed identifier, with hostile-but-valid variations."""
    event_id = _event_id()
    base = transfer(event_id) if stream == "transfers" else call(event_id)
    what = []
    if draw(st.booleans()):
        key = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in CONTRACT_FIELDS))
        base[key] = draw(json_values)
        what.append(f"extra {key!r}")
    if stream == "transfers":
        base["amount"] = draw(good_amounts)
        if draw(st.booleans()):
            base["payee"]["account"] = draw(st.sampled_from(["800-123-4567", " 8001234567 ", "800 1234 567"]))
        what.append(f"amount={base['amount']!r} payee={base['payee']['account']!r}")
    else:
        base["caller"] = draw(st.one_of(st.just(LISTED_PHONE), lookalike_phones))
        base["call_id"] = draw(st.text(min_size=1, max_size=40).filter(str.strip))
        what.append(f"caller={base['caller']!r}")
    return Case(stream, orjson.dumps(base), True, " ".join(what), event_id)


raw_bytes = st.one_of(st.binary(max_size=300), st.just(b""), st.just(b"[" * 5000 + b"]" * 5000),
                      st.just(b'{"event_id": NaN, "amount": Infinity}'), st.just(b"\xff\xfe{}"), st.just(b"x" * 70_000))


@st.composite
def hostile(draw: st.DrawFn) -> Case:
    """Any case, for either stream."""
    stream = draw(st.sampled_from(["transfers", "calls"]))
    kind = draw(st.sampled_from(["bytes", "json", "field", "field", "good", "good"]))
    if kind == "bytes":
        return Case(stream, draw(raw_bytes), False, "raw bytes")
    if kind == "json":
        raw = json.dumps(draw(json_values)).encode()
        return Case(stream, raw, False, f"json {raw[:60]!r}")
    if kind == "field":
        return draw(bad_field(stream))
    return draw(good_event(stream))
