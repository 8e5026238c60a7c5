"""pacs.008: the fast mapping gives the answer of the precise one, and so does the whole decoder.

- mapping: ``_fast_transaction`` (checks inline) against ``_transaction`` (a helper per field, which names
  the XPath at fault): the same Transfer, or it gives up and the rejection comes from ``_transaction``;
- the whole decoder with every fast path switched off (the reading's, test_adapter_pacs008_reading.py, and
  the mapping's) gives what it gives with them on, rejections included (reason, field and message), on
  generated messages in both renderings.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from sekat.decode import iso20022, pacs008
from sekat.decode.pacs008 import decode_pacs008
from sekat.records import Rejection, Transfer
from tests.unit.test_adapter_pacs008_reading import CURRENCIES, VALUES, messages, render_json, xml_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CREATED = datetime(2026, 11, 28, 10, 15, tzinfo=timezone.utc)
MEMBERS = {("CLR", "RPP", "M1"): "HLBBMYKL", ("CLR", "", "M2"): "FIRNZAJJ", ("OTHR", "", "P1"): "RHBBMYKL"}


# -- mapping ------------------------------------------------------------------------------------------------
GOOD = {  # values a valid transaction may carry, padding and lower case included
    "PmtId/EndToEndId": ["E2E-1", " E2E-2 "], "PmtId/TxId": ["TX-1", "TX\t2"],
    "PmtId/UETR": ["7a562c67-ca16-48ba-b074-65581be6f001"], "IntrBkSttlmAmt": ["1500.00", "99", " 7.5 ", "1_000"],
    "IntrBkSttlmAmt/@Ccy": ["MYR", " EUR"], "AccptncDtTm": ["2026-11-28T10:16:30Z", "2026-11-28T10:16:30"],
    "DbtrAcct/Id/IBAN": ["DE89370400440532013000"], "DbtrAcct/Id/Othr/Id": ["5140 1234 5678", "8001234567"],
    "CdtrAcct/Id/IBAN": ["de89 3704 0044 0532 0130 00"], "CdtrAcct/Id/Othr/Id": ["8001-2345-67"],
    "CdtrAcct/Prxy/Id": ["+60123456789", "012-345 6789", "club@example.com"],
    "CdtrAcct/Prxy/Tp/Cd": ["MBNO", "emal", "TELE", "NRIC"], "CdtrAcct/Prxy/Tp/Prtry": ["DUITNOW", "MBNO"],
    "AddtlDtTm/AccptncDtTm": ["2026-11-28T10:16:31Z"],
    "DbtrAgt/FinInstnId/ClrSysMmbId/MmbId": ["M1", "M2"], "CdtrAgt/FinInstnId/ClrSysMmbId/MmbId": ["M1", "M2"],
    "DbtrAgt/FinInstnId/ClrSysMmbId/ClrSysId/Prtry": ["RPP"], "CdtrAgt/FinInstnId/Othr/Id": ["P1"],
    "DbtrAcct/Id/Othr/SchmeNm/Prtry": ["MSISDN"], "CdtrAcct/Id/Othr/SchmeNm/Cd": ["BBAN"],
}
REQUIRED = {"PmtId/EndToEndId", "IntrBkSttlmAmt", "IntrBkSttlmAmt/@Ccy", "DbtrAgt/FinInstnId/BICFI",
            "CdtrAgt/FinInstnId/BICFI", "DbtrAcct/Id/Othr/Id", "CdtrAcct/Id/Othr/Id"}


def field_value(path: str) -> st.SearchStrategy[str]:
    leaf = path.rsplit("/", 1)[-1]
    any_value = CURRENCIES if leaf == "@Ccy" else VALUES.get(leaf, ["v"])
    good = st.sampled_from(GOOD.get(path, [v for v in any_value if v.strip() and len(v) <= 35] or ["v"]))
    bad = st.one_of(st.sampled_from(any_value), st.sampled_from(["", "  ", "x" * 40, "9" * 70, "1" * 130]), xml_text)
    return st.sampled_from([good] * 8 + [bad]).flatmap(lambda chosen: chosen)


@st.composite
def flat_transactions(draw: st.DrawFn) -> dict[str, str]:
    """{path: text} as a reading gives it: mostly valid, any field missing, blank, padded, too long or bad."""
    flat = {}
    for path in iso20022.TX_PATHS + iso20022.EXTRA_PATHS:
        if draw(st.sampled_from([True] * 15 + [False] if path in REQUIRED else [True, False])):
            flat[path] = draw(field_value(path))
    return flat


def precise(flat: dict[str, str], created: datetime | Rejection) -> Transfer | Rejection:
    try:
        return pacs008._transaction(flat, "MSG-1", created, 2, "MY", MEMBERS)
    except (pacs008.Bad, pacs008._Rejected) as bad:
        return bad.rejection


@given(flat_transactions(), st.sampled_from([CREATED, Rejection("invalid_timestamp", "bad", "/x/CreDtTm")]))
@settings(max_examples=600, deadline=None)
def test_the_fast_mapping_never_disagrees_with_the_precise_one(flat: dict[str, str], created: Any) -> None:
    fast = pacs008._fast_transaction(flat, "MSG-1", created, 2, "MY", MEMBERS)
    expected = precise(flat, created)
    if isinstance(expected, Transfer):
        assert fast == expected
    else:
        assert fast is None, f"fast mapping accepted what the precise one refuses: {expected}"


def test_plain_transactions_take_the_fast_mapping() -> None:
    calls = []
    original = pacs008._transaction

    def counted(*args: Any) -> Transfer:
        calls.append(args)
        return original(*args)

    with mock.patch.object(pacs008, "_transaction", counted):
        for name in ("pacs008_v08_multi.xml", "pacs008_v09.json", "pacs008_v10_single.xml"):
            results = decode_pacs008((FIXTURES / name).read_bytes())
            assert results and all(isinstance(r, Transfer) for r in results), name
    assert calls == []


# -- the whole decoder ----------------------------------------------------------------------------------------
def all_precise(raw: bytes) -> list[Any]:
    """Decode with every fast path off: fromstring, the XPath reading, the JSON walk, the per-field mapping."""
    def walk(tx: dict[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        iso20022._flatten_json(tx, "", out, iso20022._JSON_TX)
        return out

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(iso20022, "parse", lambda raw: etree.fromstring(raw, iso20022._PARSER)))
        stack.enter_context(mock.patch.object(iso20022, "read_fields", lambda el, fields: None))
        stack.enter_context(mock.patch.object(iso20022, "_json_transaction", walk))
        stack.enter_context(mock.patch.object(pacs008, "_fast_transaction", lambda *args: None))
        return decode_pacs008(raw)


@given(messages())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fast_and_precise_decoding_give_one_answer(message: Any) -> None:
    xml, txs, header = message
    raw = xml.encode()
    assert decode_pacs008(raw) == all_precise(raw)
    as_json = orjson.dumps({"Document": {"FIToFICstmrCdtTrf": {
        "GrpHdr": {k: v for k, v in header.items() if v}, "CdtTrfTxInf": [render_json(tx) for tx in txs]}}})
    assert decode_pacs008(as_json) == all_precise(as_json)


def test_every_fixture_decodes_the_same_with_the_fast_paths_off() -> None:
    for path in sorted(FIXTURES.glob("pacs00*")):
        raw = path.read_bytes()
        assert decode_pacs008(raw) == all_precise(raw), path.name
