"""Reading a pacs.008 (decode/iso20022.py): each fast reading gives what the reading it stands in front of gives.

- XML: the fast reading (lxml ObjectPath per field) against the reference reading (one XPath per field),
  and the reused push parser against ``etree.fromstring``: the same tree, or the same error;
- JSON rendering: the typed structs (msgspec) against ``_flatten_json``: the same {path: text};
- and the JSON rendering of a message decodes like its XML — on every fixture and on generated messages with
  missing, empty, repeated, foreign-namespace and mixed-content elements.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock
from xml.sax.saxutils import escape, quoteattr

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from sekat.decode import iso20022
from sekat.decode.pacs008 import decode_pacs008
from sekat.records import Transfer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NS = "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"
OTHER_NS = "urn:example:not-iso"

# What a generated field may hold: good values, bad ones, blanks, and anything XML can carry.
VALUES: dict[str, list[str]] = {
    "EndToEndId": ["E2E-1", "NOTPROVIDED", " E2E-2 "],
    "TxId": ["TX-1", "TX\t2", "x" * 130],
    "UETR": ["7a562c67-ca16-48ba-b074-65581be6f001", "u" * 40],
    "IntrBkSttlmAmt": ["1500.00", "99", "12,000", "-5", "1e3"],
    "AccptncDtTm": ["2026-11-28T10:16:30Z", "2026-11-28T10:16:30", "yesterday"],
    "BICFI": ["MBBEMYKL", "CIBBMYKLXXX", "cibbmykl", "CIBB"],
    "IBAN": ["DE89370400440532013000", "DE00370400440532013000"],
    "Id": ["5140 1234 5678", "8001234567", "76AB", "+60123456789", "012-345 6789", "club@example.com"],
    "Cd": ["MBNO", "EMAL", "TELE", "DUITNOW", "SEPA"],
    "Prtry": ["DUITNOW", "RPP", "MBNO"],
}
CURRENCIES = ["MYR", "EUR", "myr", "ringgit", " MYR "]
xml_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), max_size=12)


def leaf_value(name: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(VALUES.get(name, ["v"])), st.sampled_from(["", "  "]), xml_text)


# A generated element: (local name, namespace, attributes, text, children).
Element = tuple[str, str, dict[str, str], str, list[Any]]


@st.composite
def children(draw: st.DrawFn, tree: dict[str, Any], mixed: bool) -> list[Element]:
    """Children along ``tree`` (a key tree of the field paths): some missing, some repeated, some foreign."""
    out: list[Element] = []
    for name, sub in tree.items():
        for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
            attrs: dict[str, str] = {}
            if name == "IntrBkSttlmAmt" and draw(st.integers(0, 4)):
                attrs["Ccy"] = draw(st.sampled_from(CURRENCIES + [""]))
            if sub:
                out.append((name, NS, attrs, "", draw(children(sub, mixed))))
            else:
                inner = [("b", NS, {}, "x", [])] if mixed and draw(st.integers(0, 9)) == 0 else []
                out.append((name, NS, attrs, draw(leaf_value(name)), inner))
        if draw(st.integers(0, 9)) == 0:  # the same name in another namespace is not the field
            out.append((name, OTHER_NS, {}, "foreign", []))
    if draw(st.booleans()):
        out.append(("Nm", NS, {}, draw(xml_text), []))
    return draw(st.permutations(out)) if draw(st.integers(0, 4)) == 0 else out


def render_xml(el: Element) -> str:
    name, ns, attrs, text, kids = el
    tag = name if ns == NS else f"o:{name}"
    decl = f' xmlns:o="{OTHER_NS}"' if ns == OTHER_NS else ""
    attributes = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    return f"<{tag}{decl}{attributes}>{escape(text)}{''.join(render_xml(k) for k in kids)}</{tag}>"


def render_json(kids: list[Element]) -> dict[str, Any]:
    """The JSON rendering of the same elements: repeated elements as a list, an amount as {Ccy, value}."""
    out: dict[str, Any] = {}
    for name, ns, attrs, text, sub in kids:
        if ns != NS:
            continue
        if name == "IntrBkSttlmAmt" and "Ccy" in attrs:
            value: Any = {"Ccy": attrs["Ccy"], "value": text}
        else:
            value = render_json(sub) if sub else text
        if name in out:
            out[name] = (out[name] if isinstance(out[name], list) else [out[name]]) + [value]
        else:
            out[name] = value
    return out


@st.composite
def messages(draw: st.DrawFn, mixed: bool = True) -> tuple[str, list[list[Element]], dict[str, str]]:
    header = {"MsgId": draw(st.sampled_from(["MSG-1", "M" * 40, ""])),
              "CreDtTm": draw(st.sampled_from(["2026-11-28T18:15:00.123+08:00", "2026-11-28T10:20:00", "later"]))}
    txs = draw(st.lists(children(iso20022._JSON_TX, mixed), min_size=1, max_size=3))
    group = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in header.items() if v)
    body = "".join(render_xml(("CdtTrfTxInf", NS, {}, "", tx)) for tx in txs)
    xml = f'<Document xmlns="{NS}"><FIToFICstmrCdtTrf><GrpHdr>{group}</GrpHdr>{body}</FIToFICstmrCdtTrf></Document>'
    return xml, txs, header


def reference_only(raw: bytes) -> list[Any]:
    """Decode with the fast reading switched off: every field by its XPath."""
    with mock.patch.object(iso20022, "read_fields", lambda el, fields: None):
        return decode_pacs008(raw)


def body_of(raw: bytes) -> Any:
    root = etree.fromstring(raw, iso20022._PARSER)
    if not root.tag.endswith("}Document"):
        root = next(el for el in root if el.tag.endswith("}Document"))
    return root, root[0]


@given(messages())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fast_and_reference_readings_agree_on_generated_messages(message: Any) -> None:
    xml, _, _ = message
    root, body = body_of(xml.encode())
    reader = iso20022.schema(NS)
    for tx in body.iterchildren(reader.transaction):
        fast = iso20022.read_fields(tx, reader.tx_fields)
        reference = reader.reference(tx, reader.tx_xpaths)
        if fast is None:  # only a field element holding child elements is handed over
            assert any(True for _ in tx.iter(f"{{{NS}}}b"))
        else:
            assert fast == reference
    assert decode_pacs008(xml.encode()) == reference_only(xml.encode())


@given(messages(mixed=False))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_json_rendering_decodes_like_the_xml(message: Any) -> None:
    xml, txs, header = message
    as_json = {"Document": {"FIToFICstmrCdtTrf": {
        "GrpHdr": {k: v for k, v in header.items() if v}, "CdtTrfTxInf": [render_json(tx) for tx in txs]}}}
    assert decode_pacs008(orjson.dumps(as_json)) == decode_pacs008(xml.encode())


def test_plain_messages_take_the_fast_reading() -> None:
    calls = []
    original = iso20022.Schema.reference

    def counted(el: Any, xpaths: Any) -> dict[str, str]:
        calls.append(el)
        return original(el, xpaths)

    with mock.patch.object(iso20022.Schema, "reference", staticmethod(counted)):
        results = decode_pacs008((FIXTURES / "pacs008_v08_multi.xml").read_bytes())
    assert len(results) == 3 and all(isinstance(r, Transfer) for r in results) and calls == []


def xml_fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("pacs00*.xml"))


def test_every_xml_fixture_decodes_the_same_by_either_reading() -> None:
    for path in xml_fixtures():
        raw = path.read_bytes()
        assert decode_pacs008(raw) == reference_only(raw), path.name


def test_mixed_content_is_read_as_its_string_value() -> None:
    raw = (FIXTURES / "pacs008_v10_single.xml").read_text().replace(
        "<TxId>CIBB-TX-777</TxId>", "<TxId>CIBB<![CDATA[-TX]]><Sub>-7</Sub>77</TxId>").encode()
    [t] = decode_pacs008(raw)
    assert isinstance(t, Transfer) and t.tx_id == "CIBB-TX-777"


def test_a_repeated_element_is_read_from_its_first_occurrence() -> None:
    # DbtrAcct occurs once in the schema; with two, the first is the debtor account, whatever the second holds.
    raw = (FIXTURES / "pacs008_v10_single.xml").read_text().replace(
        "<DbtrAcct><Id><Othr><Id>7600-1122-3344</Id></Othr></Id></DbtrAcct>",
        "<DbtrAcct><Nm>no id here</Nm></DbtrAcct><DbtrAcct><Id><Othr><Id>7600-1122-3344</Id></Othr></Id></DbtrAcct>",
    ).encode()
    [transfer] = decode_pacs008(raw)
    assert isinstance(transfer, Transfer) and transfer.payer.account is None  # the first has no id


def test_json_account_currency_does_not_hide_the_account() -> None:
    data = orjson.loads((FIXTURES / "pacs008_v09.json").read_bytes())
    tx = data["Document"]["FIToFICstmrCdtTrf"]["CdtTrfTxInf"][0]
    tx["CdtrAcct"]["Ccy"] = "MYR"
    tx["DbtrAcct"] = {"Ccy": "MYR", "value": "not an amount", "Id": {"Othr": {"Id": "514012345678"}}}
    first = decode_pacs008(orjson.dumps(data))[0]
    assert isinstance(first, Transfer)
    assert first.payee.account.value == "CIBBMYKL:8001234567"
    assert first.payer.account.value == "MBBEMYKL:514012345678"


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


@given(json_node(iso20022._JSON_TX), json_node(iso20022._JSON_HEADER))
@settings(max_examples=400, deadline=None)
def test_typed_json_reading_gives_what_the_walk_gives(tx: dict[str, Any], header: dict[str, Any]) -> None:
    tx, header = orjson.loads(orjson.dumps(tx)), orjson.loads(orjson.dumps(header))  # as orjson decodes them
    walked: dict[str, str] = {}
    iso20022._flatten_json(tx, "", walked, iso20022._JSON_TX)
    assert iso20022._json_transaction(tx) == walked
    walked = {}
    iso20022._flatten_json(header, "", walked, iso20022._JSON_HEADER)
    assert iso20022._json_header(header) == walked


def test_the_plain_json_shape_converts_and_another_spelling_is_walked() -> None:
    data = orjson.loads((FIXTURES / "pacs008_v09.json").read_bytes())
    plain, spelled = data["Document"]["FIToFICstmrCdtTrf"]["CdtTrfTxInf"]  # amount {"@Ccy", "#text": 35.5}
    walked: dict[str, str] = {}
    iso20022._flatten_json(plain, "", walked, iso20022._JSON_TX)
    assert iso20022._transaction_fields(msgspec.convert(plain, iso20022._JsonTransaction)) == walked
    assert walked["IntrBkSttlmAmt/@Ccy"] == "MYR" and walked["PmtTpInf/LclInstrm/Prtry"] == "DUITNOW"
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(spelled, iso20022._JsonTransaction)
    assert iso20022._json_transaction(spelled)["IntrBkSttlmAmt"] == "35.5"


# -- parsing ----------------------------------------------------------------------------------------------
def by_fromstring(raw: bytes) -> Any:
    try:
        return etree.tostring(etree.fromstring(raw, iso20022._PARSER))
    except etree.LxmlError as exc:
        return type(exc), str(exc)


def by_parse(raw: bytes) -> Any:
    try:
        return etree.tostring(iso20022.parse(raw))
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
