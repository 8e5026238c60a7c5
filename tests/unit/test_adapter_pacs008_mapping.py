"""pacs.008: each fast path of the adapter gives the answer of the precise path it stands in front of.

- mapping: ``_fast_transaction`` (checks inline) against ``_transaction`` (a helper per field, which names
  the XPath at fault): the same Transfer, or it gives up and the rejection comes from ``_transaction``;
- JSON rendering: the typed structs (msgspec) against ``_flatten_json``: the same {path: text};
- XML: the reused push parser against ``etree.fromstring``: the same tree, or the same error;
- and the whole decoder with every fast path switched off gives what it gives with them on, rejections
  included (reason, field and message), on generated messages in both renderings.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from sekat.decode import pacs008
from sekat.decode.pacs008 import decode_pacs008
from sekat.records import Rejection, Transfer
from tests.unit.test_adapter_pacs008_reading import CURRENCIES, VALUES, messages, render_json, xml_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CREATED = datetime(2026, 11, 28, 10, 15, tzinfo=timezone.utc)


# -- mapping ------------------------------------------------------------------------------------------------
GOOD = {  # values a valid transaction may carry, padding and lower case included
    "PmtId/EndToEndId": ["E2E-1", " E2E-2 "], "PmtId/TxId": ["TX-1", "TX\t2"],
    "PmtId/UETR": ["7a562c67-ca16-48ba-b074-65581be6f001"], "IntrBkSttlmAmt": ["1500.00", "99", " 7.5 ", "1_000"],
    "IntrBkSttlmAmt/@Ccy": ["MYR", " EUR"], "AccptncDtTm": ["2026-11-28T10:16:30Z", "2026-11-28T10:16:30"],
    "DbtrAcct/Id/IBAN": ["DE89370400440532013000"], "DbtrAcct/Id/Othr/Id": ["5140 1234 5678", "8001234567"],
    "CdtrAcct/Id/IBAN": ["de89 3704 0044 0532 0130 00"], "CdtrAcct/Id/Othr/Id": ["8001-2345-67"],
    "CdtrAcct/Prxy/Id": ["+60123456789", "012-345 6789", "club@example.com"],
    "CdtrAcct/Prxy/Tp/Cd": ["MBNO", "emal", "TELE", "NRIC"], "CdtrAcct/Prxy/Tp/Prtry": ["DUITNOW", "MBNO"],
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
    for path in pacs008.TX_PATHS:
        if draw(st.sampled_from([True] * 15 + [False] if path in REQUIRED else [True, False])):
            flat[path] = draw(field_value(path))
    return flat


def precise(flat: dict[str, str], created: datetime | Rejection) -> Transfer | Rejection:
    try:
        return pacs008._transaction(flat, "MSG-1", created, 2, "MY")
    except (pacs008.Bad, pacs008._Rejected) as bad:
        return bad.rejection


@given(flat_transactions(), st.sampled_from([CREATED, Rejection("invalid_timestamp", "bad", "/x/CreDtTm")]))
@settings(max_examples=600, deadline=None)
def test_the_fast_mapping_never_disagrees_with_the_precise_one(flat: dict[str, str], created: Any) -> None:
    fast = pacs008._fast_transaction(flat, "MSG-1", created, 2, "MY")
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


# -- the JSON rendering ---------------------------------------------------------------------------------------
def mostly(plain: st.SearchStrategy[Any], *odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``plain`` six times in seven, else one of ``odd``."""
    return st.sampled_from([plain] * 6 * len(odd) + list(odd)).flatmap(lambda chosen: chosen)


text_leaf = st.one_of(xml_text, st.sampled_from(["1500.00", "MYR", "MBBEMYKL", "8001234567", ""]))
odd_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False))
json_leaf = mostly(text_leaf, odd_leaf)
odd_amount = st.fixed_dictionaries({}, optional={
    "Ccy": st.one_of(st.sampled_from(CURRENCIES), st.none(), st.integers(0, 9)),
    "@Ccy": st.sampled_from(CURRENCIES), "value": json_leaf, "Amt": json_leaf, "$": json_leaf})
amounts = mostly(st.fixed_dictionaries({"Ccy": st.sampled_from(CURRENCIES), "value": text_leaf},
                                       optional={"Amt": json_leaf}), odd_amount)


def json_node(tree: dict[str, Any]) -> st.SearchStrategy[Any]:
    """An object along ``tree`` whose members may be missing, null, lists, amounts or of the wrong type."""
    members = {}
    for name, sub in tree.items():
        plain = json_node(sub) if sub else (amounts if name == "IntrBkSttlmAmt" else text_leaf)
        members[name] = mostly(plain, st.lists(plain, max_size=2), odd_leaf, amounts, text_leaf)
    return st.fixed_dictionaries({}, optional={**members, "Nm": json_leaf, "Ccy": json_leaf})


@given(json_node(pacs008._JSON_TX), json_node(pacs008._JSON_HEADER))
@settings(max_examples=400, deadline=None)
def test_typed_json_reading_gives_what_the_walk_gives(tx: dict[str, Any], header: dict[str, Any]) -> None:
    tx, header = orjson.loads(orjson.dumps(tx)), orjson.loads(orjson.dumps(header))  # as orjson decodes them
    walked: dict[str, str] = {}
    pacs008._flatten_json(tx, "", walked, pacs008._JSON_TX)
    assert pacs008._json_transaction(tx) == walked
    walked = {}
    pacs008._flatten_json(header, "", walked, pacs008._JSON_HEADER)
    assert pacs008._json_header(header) == walked


def test_the_plain_json_shape_converts_and_another_spelling_is_walked() -> None:
    data = orjson.loads((FIXTURES / "pacs008_v09.json").read_bytes())
    plain, spelled = data["Document"]["FIToFICstmrCdtTrf"]["CdtTrfTxInf"]  # amount {"@Ccy", "#text": 35.5}
    walked: dict[str, str] = {}
    pacs008._flatten_json(plain, "", walked, pacs008._JSON_TX)
    assert pacs008._transaction_fields(msgspec.convert(plain, pacs008._JsonTransaction)) == walked
    assert walked["IntrBkSttlmAmt/@Ccy"] == "MYR" and walked["PmtTpInf/LclInstrm/Prtry"] == "DUITNOW"
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(spelled, pacs008._JsonTransaction)
    assert pacs008._json_transaction(spelled)["IntrBkSttlmAmt"] == "35.5"


# -- parsing ----------------------------------------------------------------------------------------------
def by_fromstring(raw: bytes) -> Any:
    try:
        return etree.tostring(etree.fromstring(raw, pacs008._PARSER))
    except etree.LxmlError as exc:
        return type(exc), str(exc)


def by_parse(raw: bytes) -> Any:
    try:
        return etree.tostring(pacs008.parse(raw))
    except etree.LxmlError as exc:
        return type(exc), str(exc)


XML_SAMPLES = [p.read_bytes() for p in sorted(FIXTURES.glob("*.xml"))] + [
    b"<a>x<!--c-->y<?pi z?></a>", b"<a>&amp;&#65;<![CDATA[<z>]]></a>", b"<a>&foo;</a>", b"<a>", b"<a/><b/>",
    b"<a/>\x00", b"\xef\xbb\xbf<a>x</a>", b"<a>\xff</a>", b"<p:a/>", b"<a>\r\n</a>",
    '<?xml version="1.0" encoding="UTF-16"?><a>\u00e9</a>'.encode("utf-16"),
    '<?xml version="1.0" encoding="ISO-8859-1"?><a>\u00e9</a>'.encode("latin-1"),
    b'<?xml version="1.0" encoding="bogus"?><a/>',
]


@pytest.mark.parametrize("raw", XML_SAMPLES)
def test_the_push_parser_builds_what_fromstring_builds(raw: bytes) -> None:
    assert by_parse(raw) == by_fromstring(raw)
    assert by_parse(b"<ok>1</ok>") == b"<ok>1</ok>"  # an error leaves nothing behind for the next message


@given(st.sampled_from(XML_SAMPLES[:8]), st.integers(0, 2000), st.integers(0, 40),
       st.binary(max_size=12) | st.sampled_from([b"<", b"&", b"]]>", b"<!--", b"\xc3", b"</x>", b"<?", b"\x00"]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_push_parser_agrees_on_damaged_messages(raw: bytes, at: int, cut: int, insert: bytes) -> None:
    at = at % (len(raw) + 1)
    damaged = raw[:at] + insert + raw[at + cut:]
    assert by_parse(damaged) == by_fromstring(damaged)


# -- the whole decoder ----------------------------------------------------------------------------------------
def all_precise(raw: bytes) -> list[Any]:
    """Decode with every fast path off: fromstring, the XPath reading, the JSON walk, the per-field mapping."""
    def walk(tx: dict[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        pacs008._flatten_json(tx, "", out, pacs008._JSON_TX)
        return out

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(pacs008, "parse", lambda raw: etree.fromstring(raw, pacs008._PARSER)))
        stack.enter_context(mock.patch.object(pacs008, "read_fields", lambda el, fields: None))
        stack.enter_context(mock.patch.object(pacs008, "_json_transaction", walk))
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
