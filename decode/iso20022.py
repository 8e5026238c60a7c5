"""Reading ISO 20022 messages: the bytes of a pacs.008 (or a pacs.002) → the text of the fields Sekat maps.

Two renderings are read, told apart by the first non-blank byte (or an XML byte order mark):

- XML, namespace ``urn:iso:std:iso:20022:tech:xsd:pacs.NNN.001.VV``: the ``Document`` is the root element, or
  the one ``Document`` (beside a business application header, ``AppHdr``) under known scheme envelopes
  (``ENVELOPES``), at most ``MAX_ENVELOPE_DEPTH`` deep;
- JSON, as some switches render it: the same element names as keys, ``{"Document": {"FIToFICstmrCdtTrf":
  {...}}}`` or without the ``Document`` wrapper; an amount as ``{"Ccy": "MYR", "value": "1500.00"}``
  (``Amt``, ``amount``, ``#text`` or ``$`` also name the number, ``@Ccy`` the currency). One that names its
  schema (``xmlns`` or ``$schema``) must name a supported version, as the XML namespace must.

``read_message`` gives a ``Message``: its kind and, for a pacs.008 (version 08 or later), the fields of the
group header and of each ``CdtTrfTxInf`` as {path: text} (``HEADER_PATHS``, ``TX_PATHS``), so one mapping
(decode/pacs008.py) serves both renderings. Of a pacs.002 status report, the group header's ``MsgId`` and
each ``TxInfAndSts``'s original ids, status and reason are read (``STATUS_PATHS``; the group's status for a
transaction without one); a status report is never refused, it only yields fewer statuses. Anything else
raises ``Bad``: ``not_xml``, ``forbidden_dtd``, ``not_json``, ``not_object``,
``wrong_type``, ``missing_field``, ``unsupported_message`` or ``unsupported_version``.

Safety: no DTD is ever loaded, no entity is expanded, no network is touched (lxml parser with
``resolve_entities=False, no_network=True, load_dtd=False``), and any document carrying a DOCTYPE is refused
(``forbidden_dtd``) — ISO 20022 messages never have one, so XXE and billion-laughs inputs die here.
"""

from __future__ import annotations

import re
import threading
from typing import Any, NamedTuple

import msgspec
from lxml import etree, objectify

from sekat.decode.fields import Bad, load_json

NS_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
MIN_PACS008_VERSION = 8
_NS_RE = re.compile(r"^urn:iso:std:iso:20022:tech:xsd:(pacs\.\d{3})\.001\.(\d{2})$")
ROOT = "/Document/FIToFICstmrCdtTrf"
PACS008, PACS002 = "pacs.008", "pacs.002"


class Message(NamedTuple):
    """A message as read: its kind, and for a pacs.008 its group header's and transactions' fields."""

    kind: str
    header: dict[str, str]
    transactions: list[dict[str, str]]


STATUS_REPORT = Message(PACS002, {}, [])
# Read of each TxInfAndSts of a pacs.002 (relative to it), and of the group's status (relative to the message).
STATUS_PATHS = {"end_to_end_id": "OrgnlEndToEndId", "tx_id": "OrgnlTxId", "uetr": "OrgnlUETR", "status": "TxSts",
                "reason": "StsRsnInf/Rsn/Cd", "reason_prtry": "StsRsnInf/Rsn/Prtry"}
GROUP_STATUS_PATHS = {"status": "OrgnlGrpInfAndSts/GrpSts", "reason": "OrgnlGrpInfAndSts/StsRsnInf/Rsn/Cd"}
MAX_STATUSES = 10_000  # transactions read of one status report
MAX_ID_CHARS = 128  # of an id, a status or a reason read from a status report


def _status_fields(read: Any, paths: dict[str, str]) -> dict[str, str]:
    out = {}
    for name, path in paths.items():
        text = read(path)
        if isinstance(text, (str, int, float)) and not isinstance(text, bool) and str(text).strip():
            out[name] = str(text).strip()[:MAX_ID_CHARS]
    if "reason" not in out and "reason_prtry" in out:
        out["reason"] = out["reason_prtry"]
    out.pop("reason_prtry", None)
    return out


def _status_report(header: dict[str, str], group: dict[str, str], txs: list[dict[str, str]]) -> Message:
    """The report's transactions that have a status: their own, else the group's (with the group's reason)."""
    transactions = []
    for tx in txs[:MAX_STATUSES]:
        if "status" not in tx and "status" in group:
            tx = {**group, **tx}
        if "status" in tx:
            transactions.append(tx)
    return Message(PACS002, header, transactions)


def _xml_status_report(body: Any, namespace: str) -> Message:
    ns = f"{{{namespace}}}"

    def reader(element: Any) -> Any:
        return lambda path: element.findtext("/".join(ns + step for step in path.split("/")))

    header = _status_fields(reader(body), {"MsgId": "GrpHdr/MsgId"})
    group = _status_fields(reader(body), GROUP_STATUS_PATHS)
    txs = [_status_fields(reader(tx), STATUS_PATHS) for tx in body.iterfind(ns + "TxInfAndSts")]
    return _status_report(header, group, txs)


def _json_status_report(body: Any) -> Message:
    def reader(node: Any) -> Any:
        def read(path: str) -> Any:
            value = node
            for step in path.split("/"):
                if isinstance(value, list):
                    value = value[0] if value else None
                value = value.get(step) if isinstance(value, dict) else None
            return value
        return read

    if not isinstance(body, dict):
        return STATUS_REPORT
    header = _status_fields(reader(body), {"MsgId": "GrpHdr/MsgId"})
    group = _status_fields(reader(body), GROUP_STATUS_PATHS)
    raw = body.get("TxInfAndSts")
    txs = [_status_fields(reader(tx), STATUS_PATHS)
           for tx in (raw if isinstance(raw, list) else [raw]) if isinstance(tx, dict)]
    return _status_report(header, group, txs)


def read_message(raw: bytes) -> Message:
    """The message in ``raw``, XML or JSON; raises ``Bad`` for what is not a pacs.008 or a pacs.002."""
    first = raw[:1]
    if first.isspace():
        first = raw.lstrip()[:1]
    if first == b"<" or raw[:2] in (b"\xff\xfe", b"\xfe\xff") or raw.startswith(b"\xef\xbb\xbf<"):
        return _read_xml(raw)
    if first == b"{":
        return _read_json(raw)
    raise Bad("unsupported_message", "", "value is neither XML nor a JSON object")


# ---------------------------------------------------------------------------------------------------------
# Parsing the XML rendering.

def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=True, remove_pis=True)


_PARSER = _safe_parser()
_FEED = threading.local()  # one push parser per thread: a feed parser holds the document it is building


def parse(raw: bytes) -> Any:
    """The root element, parsed by libxml2 with the safe parser's options.

    The push interface (``feed``/``close`` on a parser kept for the thread) costs less a message than
    ``etree.fromstring``, which sets up a parser context per call. Any failure drops that parser and parses
    again with ``etree.fromstring``, so a malformed message raises what ``etree.fromstring`` raises (the
    same ``not_xml`` message); tests/unit/test_adapter_pacs008_reading.py holds the two to the same tree.
    """
    parser = getattr(_FEED, "parser", None) or _safe_parser()
    _FEED.parser = None  # taken: a failure (or an interruption) leaves no half-fed parser for the next message
    try:
        parser.feed(raw)
        root = parser.close()
    except Exception:  # noqa: BLE001 - the reference parse decides, and names the error
        return etree.fromstring(raw, _PARSER)
    _FEED.parser = parser
    return root


# ---------------------------------------------------------------------------------------------------------
# Reading the fields: both renderings become {path relative to CdtTrfTxInf: text} per transaction, so one
# mapping serves both and names the XPath at fault whichever rendering came in. A path means its first
# element at each step (``p:DbtrAcct[1]/p:Id[1]/p:IBAN[1]``): every element on these paths occurs at most
# once in a valid pacs.008 (``SvcLvl`` may repeat: the first is read), and the JSON rendering reads the
# first item of a list alike.
#
# XML, fast (every message): one lxml ObjectPath per field, compiled once per namespace. It walks the
# path in C and hands Python the one element it names, so a field costs one call and one element object;
# an XPath evaluation costs several times that, and walking the tree from Python pays for an element
# object per child visited (docs/input-formats.md has the cost figures).
# XML, reference (rare): one XPath per field, giving the XPath string-value. The fast reading hands a
# transaction (or the group header) to it when a field's element is not a plain text leaf (it holds child
# elements: mixed content), so a value is always the XPath string-value; tests hold the two to the same
# output on every fixture and on generated messages.
TX_PATHS = (
    "PmtId/EndToEndId", "PmtId/TxId", "PmtId/UETR", "IntrBkSttlmAmt", "IntrBkSttlmAmt/@Ccy", "AccptncDtTm",
    "AddtlDtTm/AccptncDtTm",
    "DbtrAgt/FinInstnId/BICFI", "DbtrAcct/Id/IBAN", "DbtrAcct/Id/Othr/Id",
    "CdtrAgt/FinInstnId/BICFI", "CdtrAcct/Id/IBAN", "CdtrAcct/Id/Othr/Id",
    "CdtrAcct/Prxy/Id", "CdtrAcct/Prxy/Tp/Cd", "CdtrAcct/Prxy/Tp/Prtry",
    "PmtTpInf/LclInstrm/Prtry", "PmtTpInf/LclInstrm/Cd", "PmtTpInf/SvcLvl/Cd",
)
HEADER_PATHS = ("MsgId", "CreDtTm")  # relative to GrpHdr
# Read only for a transaction that needs them (``Schema.read``), so a feed of BICs and account numbers does not
# pay for them: an agent without a BICFI may be named by clearing-system member id or by other participant id,
# and an account id that is not plain digits may carry a scheme name (``Othr/SchmeNm``).
AGENT_ID_PATHS = tuple(f"{agent}/FinInstnId/{leaf}" for agent in ("DbtrAgt", "CdtrAgt") for leaf in (
    "ClrSysMmbId/MmbId", "ClrSysMmbId/ClrSysId/Cd", "ClrSysMmbId/ClrSysId/Prtry",
    "Othr/Id", "Othr/SchmeNm/Cd", "Othr/SchmeNm/Prtry"))
ACCOUNT_SCHEME_PATHS = tuple(f"{acct}/Id/Othr/SchmeNm/{leaf}" for acct in ("DbtrAcct", "CdtrAcct")
                             for leaf in ("Cd", "Prtry"))
EXTRA_PATHS = AGENT_ID_PATHS + ACCOUNT_SCHEME_PATHS
BICFI = ("DbtrAgt/FinInstnId/BICFI", "CdtrAgt/FinInstnId/BICFI")
OTHER_IDS = ("DbtrAcct/Id/Othr/Id", "CdtrAcct/Id/Othr/Id")
_SEPARATORS = str.maketrans("", "", " -")  # as account numbers are written (sekat.identifiers)


def needs_extra(flat: dict[str, str]) -> bool:
    """Whether a transaction's ``EXTRA_PATHS`` are to be read: an agent without BICFI, or an Othr/Id that is not
    digits (spaces and dashes aside), whose scheme name may then decide its key."""
    if BICFI[0] not in flat or BICFI[1] not in flat:
        return True
    debtor, creditor = flat.get(OTHER_IDS[0]), flat.get(OTHER_IDS[1])
    return not ((debtor is None or debtor.isdigit() or debtor.translate(_SEPARATORS).isdigit())
                and (creditor is None or creditor.isdigit() or creditor.translate(_SEPARATORS).isdigit()))

# One field read by the fast path: (path, ObjectPath to its element, attribute path, attribute name).
Field = tuple[str, Any, "str | None", "str | None"]


def _fields(root_tag: str, paths: tuple[str, ...], prefix: str = "") -> list[Field]:
    fields: list[Field] = []
    for path in paths:
        if "@" in path:
            continue  # read on its element, which is a field too
        attr_path = next((p for p in paths if p.startswith(path + "/@")), None)
        find = objectify.ObjectPath(f"{root_tag}.{prefix}{path.replace('/', '.')}")
        fields.append((path, find, attr_path, attr_path.rsplit("@", 1)[1] if attr_path else None))
    return fields


def _xpath(path: str) -> str:
    """``A/B/@c`` → ``p:A[1]/p:B[1]/@c``: the first element at each step."""
    return "/".join(step if step.startswith("@") else f"p:{step}[1]" for step in path.split("/"))


def read_fields(el: Any, fields: list[Field]) -> dict[str, str] | None:
    """The fields under ``el`` (empty values left out); None when one is not a plain text leaf."""
    out: dict[str, str] = {}
    for path, find, attr_path, attr in fields:
        found = find(el, None)
        if found is None:
            continue
        if len(found):  # child elements: its value is the string-value of the whole subtree
            return None
        text = found.text
        if text:
            out[path] = text
        if attr_path is not None:
            value = found.get(attr)
            if value:
                out[attr_path] = value
    return out


class Schema:
    """How to read one namespace's pacs.008: element tags, the fast fields and the reference XPaths."""

    def __init__(self, namespace: str) -> None:
        ns = {"p": namespace}
        self.transaction = f"{{{namespace}}}CdtTrfTxInf"
        self.header_fields = _fields(f"{{{namespace}}}FIToFICstmrCdtTrf", HEADER_PATHS, "GrpHdr.")
        self.tx_fields = _fields(self.transaction, TX_PATHS)
        self.extra_fields = _fields(self.transaction, EXTRA_PATHS)
        self.header_xpaths = {p: etree.XPath(f"string(p:GrpHdr[1]/{_xpath(p)})", namespaces=ns, smart_strings=False)
                              for p in HEADER_PATHS}
        self.tx_xpaths = {p: etree.XPath(f"string({_xpath(p)})", namespaces=ns, smart_strings=False)
                          for p in TX_PATHS}
        self.extra_xpaths = {p: etree.XPath(f"string({_xpath(p)})", namespaces=ns, smart_strings=False)
                             for p in EXTRA_PATHS}

    def read(self, body: Any) -> tuple[dict[str, str], list[dict[str, str]]]:
        """The group header and each transaction of a FIToFICstmrCdtTrf (``body``)."""
        header = read_fields(body, self.header_fields)
        if header is None:
            header = self.reference(body, self.header_xpaths)
        transactions = []
        for tx in body.iterchildren(self.transaction):
            flat = read_fields(tx, self.tx_fields)
            if flat is None:
                flat = self.reference(tx, self.tx_xpaths)
            if needs_extra(flat):
                extra = read_fields(tx, self.extra_fields)
                flat.update(self.reference(tx, self.extra_xpaths) if extra is None else extra)
            transactions.append(flat)
        return header, transactions

    @staticmethod
    def reference(el: Any, xpaths: dict[str, Any]) -> dict[str, str]:
        """Each field by its own XPath: the reading that defines what the fast one must give."""
        return {path: value for path, xpath in xpaths.items() if (value := xpath(el))}


_SCHEMAS: dict[str, Schema] = {}  # bounded: only namespaces that passed _NS_RE (pacs.008.001.08..99)


def schema(namespace: str) -> Schema:
    found = _SCHEMAS.get(namespace)
    if found is None:
        found = _SCHEMAS[namespace] = Schema(namespace)
    return found


# The JSON rendering: walk the decoded object once, into the keys on the way to a field only.
_AMOUNT_KEYS = ("value", "Amt", "amount", "#text", "$")
KeyTree = dict[str, "KeyTree"]


def _key_tree(paths: tuple[str, ...]) -> KeyTree:
    tree: KeyTree = {}
    for path in paths:
        node = tree
        for step in path.split("/"):
            if not step.startswith("@"):
                node = node.setdefault(step, {})
    return tree


_JSON_TX = _key_tree(TX_PATHS + EXTRA_PATHS)
_JSON_HEADER = _key_tree(HEADER_PATHS)


def _flatten_json(node: dict[str, Any], prefix: str, out: dict[str, str], tree: KeyTree) -> None:
    """Add to ``out`` the fields under ``node`` that ``tree`` leads to; a list stands for its first item."""
    for key, sub in tree.items():
        value = node.get(key)
        if value is None:
            continue
        if isinstance(value, list):  # a repeated element: the first, as in the XML (p:A[1])
            if not value or value[0] is None:
                continue
            value = value[0]
        if isinstance(value, dict):
            if sub:
                _flatten_json(value, prefix + key + "/", out, sub)
                continue
            # Where a field's value is expected, an object is an amount: {"Ccy": "MYR", "value": "1.00"}, or
            # wrapped once more as {"Amt": {"Amt": 1.0, "Ccy": "MYR"}}.
            inner = value.get("Amt")
            if isinstance(inner, dict) and len(value) == 1:
                value = inner
            ccy = value.get("Ccy", value.get("@Ccy"))
            if ccy is not None:
                for amount_key in _AMOUNT_KEYS:
                    if amount_key in value:
                        out[prefix + key] = str(value[amount_key])
                        out[prefix + key + "/@Ccy"] = str(ccy)
                        break
        elif not sub and not isinstance(value, bool):
            out[prefix + key] = str(value)


# The JSON rendering, fast (every message): msgspec converts each transaction (and the group header) that
# orjson decoded into typed structs holding only the elements on the field paths, in C; the structs give the
# same {path: text} as ``_flatten_json``. Only the plain shape converts: an object where a path goes on, a
# string where a field is, an amount as {"Ccy": "...", "value": "..."}. Anything else (a list, a number, null
# where an object goes on, another amount spelling) raises ValidationError and ``_flatten_json`` reads that
# transaction. orjson decodes the whole message first, so orjson alone decides which bytes are JSON.
class _JsonAmount(msgspec.Struct):
    Ccy: str
    value: str


class _JsonClearingMember(msgspec.Struct):
    MmbId: str | None = None
    ClrSysId: _JsonCode | None = None


class _JsonParticipant(msgspec.Struct):
    Id: str | None = None
    SchmeNm: _JsonCode | None = None


class _JsonFinInstnId(msgspec.Struct):
    BICFI: str | None = None
    ClrSysMmbId: _JsonClearingMember | None = None
    Othr: _JsonParticipant | None = None


class _JsonAgent(msgspec.Struct):
    FinInstnId: _JsonFinInstnId | None = None


class _JsonCode(msgspec.Struct):
    Cd: str | None = None
    Prtry: str | None = None


class _JsonOther(msgspec.Struct):
    Id: str | None = None
    SchmeNm: _JsonCode | None = None


class _JsonAccountId(msgspec.Struct):
    IBAN: str | None = None
    Othr: _JsonOther | None = None


class _JsonProxyType(msgspec.Struct):
    Cd: str | None = None
    Prtry: str | None = None


class _JsonProxy(msgspec.Struct):
    Id: str | None = None
    Tp: _JsonProxyType | None = None


class _JsonDebtorAccount(msgspec.Struct):
    Id: _JsonAccountId | None = None


class _JsonCreditorAccount(msgspec.Struct):
    Id: _JsonAccountId | None = None
    Prxy: _JsonProxy | None = None


class _JsonPaymentId(msgspec.Struct):
    EndToEndId: str | None = None
    TxId: str | None = None
    UETR: str | None = None


class _JsonLocalInstrument(msgspec.Struct):
    Prtry: str | None = None
    Cd: str | None = None


class _JsonServiceLevel(msgspec.Struct):
    Cd: str | None = None


class _JsonPaymentType(msgspec.Struct):
    LclInstrm: _JsonLocalInstrument | None = None
    SvcLvl: _JsonServiceLevel | None = None


class _JsonDateTimes(msgspec.Struct):
    AccptncDtTm: str | None = None


class _JsonTransaction(msgspec.Struct):
    PmtId: _JsonPaymentId | None = None
    IntrBkSttlmAmt: _JsonAmount | None = None
    AccptncDtTm: str | None = None
    AddtlDtTm: _JsonDateTimes | None = None
    DbtrAgt: _JsonAgent | None = None
    DbtrAcct: _JsonDebtorAccount | None = None
    CdtrAgt: _JsonAgent | None = None
    CdtrAcct: _JsonCreditorAccount | None = None
    PmtTpInf: _JsonPaymentType | None = None


class _JsonGroupHeader(msgspec.Struct):
    MsgId: str | None = None
    CreDtTm: str | None = None


_NO_ID = _JsonPaymentId()
_NO_AGENT = _JsonFinInstnId()
_NO_ACCOUNT = _JsonAccountId()
_NO_OTHER = _JsonOther()
_NO_PROXY = _JsonProxy()
_NO_PROXY_TYPE = _JsonProxyType()
_NO_PAYMENT_TYPE = _JsonPaymentType()
_NO_INSTRUMENT = _JsonLocalInstrument()
_NO_SERVICE = _JsonServiceLevel()


_NO_CODE = _JsonCode()


def _agent_ids(fields: dict[str, str | None], agent: str, fin: _JsonFinInstnId) -> None:
    """An agent's member-id and participant-id fields (the mapping reads them where its BICFI is missing)."""
    member, other = fin.ClrSysMmbId, fin.Othr
    if member is not None:
        system = member.ClrSysId or _NO_CODE
        fields.update({f"{agent}/FinInstnId/ClrSysMmbId/MmbId": member.MmbId,
                       f"{agent}/FinInstnId/ClrSysMmbId/ClrSysId/Cd": system.Cd,
                       f"{agent}/FinInstnId/ClrSysMmbId/ClrSysId/Prtry": system.Prtry})
    if other is not None:
        scheme = other.SchmeNm or _NO_CODE
        fields.update({f"{agent}/FinInstnId/Othr/Id": other.Id, f"{agent}/FinInstnId/Othr/SchmeNm/Cd": scheme.Cd,
                       f"{agent}/FinInstnId/Othr/SchmeNm/Prtry": scheme.Prtry})


def _transaction_fields(tx: _JsonTransaction) -> dict[str, str]:
    """{path: text} of one typed transaction: what ``_flatten_json`` gives for the same object."""
    pmt = tx.PmtId or _NO_ID
    amount = tx.IntrBkSttlmAmt
    debtor = (tx.DbtrAcct.Id if tx.DbtrAcct else None) or _NO_ACCOUNT
    creditor = tx.CdtrAcct
    creditor_id = (creditor.Id if creditor else None) or _NO_ACCOUNT
    proxy = (creditor.Prxy if creditor else None) or _NO_PROXY
    proxy_type = proxy.Tp or _NO_PROXY_TYPE
    payment_type = tx.PmtTpInf or _NO_PAYMENT_TYPE
    instrument = payment_type.LclInstrm or _NO_INSTRUMENT
    debtor_other, creditor_other = debtor.Othr or _NO_OTHER, creditor_id.Othr or _NO_OTHER
    debtor_agent = (tx.DbtrAgt.FinInstnId if tx.DbtrAgt else None) or _NO_AGENT
    creditor_agent = (tx.CdtrAgt.FinInstnId if tx.CdtrAgt else None) or _NO_AGENT
    fields: dict[str, str | None] = {
        "PmtId/EndToEndId": pmt.EndToEndId, "PmtId/TxId": pmt.TxId, "PmtId/UETR": pmt.UETR,
        "IntrBkSttlmAmt": amount.value if amount else None, "IntrBkSttlmAmt/@Ccy": amount.Ccy if amount else None,
        "AccptncDtTm": tx.AccptncDtTm, "AddtlDtTm/AccptncDtTm": tx.AddtlDtTm.AccptncDtTm if tx.AddtlDtTm else None,
        "DbtrAgt/FinInstnId/BICFI": debtor_agent.BICFI,
        "DbtrAcct/Id/IBAN": debtor.IBAN, "DbtrAcct/Id/Othr/Id": debtor_other.Id,
        "CdtrAgt/FinInstnId/BICFI": creditor_agent.BICFI,
        "CdtrAcct/Id/IBAN": creditor_id.IBAN, "CdtrAcct/Id/Othr/Id": creditor_other.Id,
        "CdtrAcct/Prxy/Id": proxy.Id, "CdtrAcct/Prxy/Tp/Cd": proxy_type.Cd, "CdtrAcct/Prxy/Tp/Prtry": proxy_type.Prtry,
        "PmtTpInf/LclInstrm/Prtry": instrument.Prtry, "PmtTpInf/LclInstrm/Cd": instrument.Cd,
        "PmtTpInf/SvcLvl/Cd": (payment_type.SvcLvl or _NO_SERVICE).Cd,
    }
    # The rarer elements, each only where present (the member ids and scheme names of EXTRA_PATHS).
    if debtor_agent.ClrSysMmbId is not None or debtor_agent.Othr is not None:
        _agent_ids(fields, "DbtrAgt", debtor_agent)
    if creditor_agent.ClrSysMmbId is not None or creditor_agent.Othr is not None:
        _agent_ids(fields, "CdtrAgt", creditor_agent)
    if debtor_other.SchmeNm is not None:
        fields["DbtrAcct/Id/Othr/SchmeNm/Cd"] = debtor_other.SchmeNm.Cd
        fields["DbtrAcct/Id/Othr/SchmeNm/Prtry"] = debtor_other.SchmeNm.Prtry
    if creditor_other.SchmeNm is not None:
        fields["CdtrAcct/Id/Othr/SchmeNm/Cd"] = creditor_other.SchmeNm.Cd
        fields["CdtrAcct/Id/Othr/SchmeNm/Prtry"] = creditor_other.SchmeNm.Prtry
    return {path: value for path, value in fields.items() if value is not None}


def _json_transaction(tx: dict[str, Any]) -> dict[str, str]:
    """The fields of one transaction of the JSON rendering, by path."""
    try:
        return _transaction_fields(msgspec.convert(tx, _JsonTransaction))
    except msgspec.ValidationError:
        flat: dict[str, str] = {}
        _flatten_json(tx, "", flat, _JSON_TX)
        return flat


def _json_header(group_header: dict[str, Any]) -> dict[str, str]:
    try:
        typed = msgspec.convert(group_header, _JsonGroupHeader)
    except msgspec.ValidationError:
        header: dict[str, str] = {}
        _flatten_json(group_header, "", header, _JSON_HEADER)
        return header
    return {path: value for path, value in (("MsgId", typed.MsgId), ("CreDtTm", typed.CreDtTm)) if value is not None}


# ---------------------------------------------------------------------------------------------------------
# Finding the message in each rendering.

_MESSAGE_TYPES: dict[str, tuple[str, int]] = {}  # namespaces seen, a few per stream; bounded below


def _message_type(namespace: str, where: str) -> tuple[str, int]:
    known = _MESSAGE_TYPES.get(namespace)
    if known is not None:
        return known
    match = _NS_RE.match(namespace)
    if match is None:
        raise Bad("unsupported_message", where, f"namespace {namespace[:80]!r} is not an ISO 20022 message")
    known = match.group(1), int(match.group(2))
    if len(_MESSAGE_TYPES) < 256:
        _MESSAGE_TYPES[namespace] = known
    return known


def _check_version(kind: str, version: int, where: str) -> None:
    if kind == PACS008 and version < MIN_PACS008_VERSION:
        raise Bad("unsupported_version", where,
                  f"pacs.008.001.{version:02d} is not supported; use pacs.008.001.08 or later")


# Scheme envelopes: the wrapper elements (any namespace) that may hold the Document, with an application header
# or a scheme header beside it, e.g. ``BizMsgEnvlp/{AppHdr, Document}``, Swift's ``DataPDU/Body/{AppHdr,
# Document}``, ``Envelope/Message/{AppHdr, Document}``. The Document is looked for through these only, at most
# MAX_ENVELOPE_DEPTH of them deep and among at most MAX_ENVELOPE_CHILDREN children each.
ENVELOPES = frozenset({"BizMsgEnvlp", "Envelope", "DataPDU", "Body", "Message", "RequestPayload", "Payload",
                       "BizMsg"})
MAX_ENVELOPE_DEPTH = 4
MAX_ENVELOPE_CHILDREN = 16


def _enveloped_document(root: Any) -> Any:
    """The one ISO 20022 ``Document`` inside the envelope ``root``; raises ``Bad`` naming the element at fault.

    Headers beside it (``AppHdr``, a scheme's ``Header``) and empty elements are passed over; an element that is
    neither a known envelope nor a header, but holds elements, is named when no Document is found.
    """
    path = "/" + etree.QName(root).localname
    if path[1:] not in ENVELOPES:
        raise Bad("unsupported_message", path, "root element must be an ISO 20022 Document or a known envelope "
                  f"({', '.join(sorted(ENVELOPES))})")
    level, unknown = [(root, path)], []
    for _ in range(MAX_ENVELOPE_DEPTH):
        found, below = [], []
        for wrapper, path in level:
            children = [el for el in wrapper if isinstance(el.tag, str)]
            if len(children) > MAX_ENVELOPE_CHILDREN:
                raise Bad("unsupported_message", path, f"envelope holds more than {MAX_ENVELOPE_CHILDREN} elements")
            for el in children:
                name = etree.QName(el).localname
                if name == "Document":
                    found.append(el)
                elif name in ENVELOPES:
                    below.append((el, f"{path}/{name}"))
                elif len(el) and not name.endswith(("Hdr", "Header")):
                    unknown.append(f"{path}/{name}")
        if len(found) == 1:
            return found[0]
        if found:
            raise Bad("unsupported_message", level[0][1], "envelope holds more than one Document")
        if not below:
            if unknown:
                raise Bad("unsupported_message", unknown[0], "is not a known envelope; no Document found")
            raise Bad("unsupported_message", level[0][1], "envelope holds no ISO 20022 Document")
        level = below
    raise Bad("unsupported_message", level[0][1], f"no Document within {MAX_ENVELOPE_DEPTH} envelope levels")


def _read_xml(raw: bytes) -> Message:
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise Bad("forbidden_dtd", "", "XML with a DOCTYPE or entity declaration is refused")
    try:
        root = parse(raw)
    except etree.XMLSyntaxError as exc:
        raise Bad("not_xml", "", f"not well-formed XML ({str(exc)[:100]})") from None
    if root.getroottree().docinfo.doctype:
        raise Bad("forbidden_dtd", "", "XML with a DOCTYPE is refused")
    tag = root.tag
    if not tag.endswith("}Document"):
        root = _enveloped_document(root)
        tag = root.tag
    namespace = tag[1:tag.index("}")] if tag[:1] == "{" else ""
    kind, version = _message_type(namespace, "/Document")
    if len(root) != 1:
        raise Bad("unsupported_message", "/Document", "Document must hold exactly one message element")
    body = root[0]
    if kind == PACS002:
        return _xml_status_report(body, namespace)
    if kind != PACS008 or body.tag != f"{{{namespace}}}FIToFICstmrCdtTrf":
        raise Bad("unsupported_message", "/Document/" + etree.QName(body).localname,
                  f"{kind} is not screened; expected pacs.008 FIToFICstmrCdtTrf")
    _check_version(kind, version, "/Document")
    return Message(PACS008, *schema(namespace).read(body))


def _enveloped_json(data: dict[str, Any]) -> Any:
    """The ``Document`` under known envelope keys (``{"BizMsgEnvlp": {"AppHdr": ..., "Document": ...}}``), as
    in the XML rendering; ``data`` itself when it is no envelope (the message then names what it lacks). Raises
    ``Bad`` naming the key at fault, as ``_enveloped_document`` does: an object under a key that is neither a
    known envelope nor a header when no Document is found, too many keys, or too many levels."""
    level: list[tuple[dict[str, Any], str]] = [(data, "")]
    unknown: list[str] = []
    for depth in range(MAX_ENVELOPE_DEPTH):
        below = []
        for node, path in level:
            if depth and len(node) > MAX_ENVELOPE_CHILDREN:
                raise Bad("unsupported_message", path, f"envelope holds more than {MAX_ENVELOPE_CHILDREN} elements")
            if "Document" in node:
                return node["Document"]
            for name, value in node.items():
                if not isinstance(value, dict):
                    continue
                if name in ENVELOPES:
                    below.append((value, f"{path}/{name}"))
                elif value and not name.endswith(("Hdr", "Header")):
                    unknown.append(f"{path}/{name}")
        if not below:
            if unknown:
                raise Bad("unsupported_message", unknown[0], "is not a known envelope; no Document found")
            return data if depth == 0 else _no_document(level[0][1])
        level = below[:MAX_ENVELOPE_CHILDREN]
    raise Bad("unsupported_message", level[0][1], f"no Document within {MAX_ENVELOPE_DEPTH} envelope levels")


def _no_document(path: str) -> Any:
    raise Bad("unsupported_message", path, "envelope holds no ISO 20022 Document")


# The message element's key in each JSON rendering: the element names, and the names a fraud-screening
# platform's rendering uses ({"TxTp": "pacs.008.001.10", "FIToFICstmrCdt": {...}}, status {"FIToFIPmtSts": ...}).
_BODY_KEYS = ("FIToFICstmrCdtTrf", "FIToFICstmrCdt")
_STATUS_KEYS = ("FIToFIPmtStsRpt", "FIToFIPmtSts")
_TX_TYPE_RE = re.compile(r"^pacs\.\d{3}\.001\.\d{2}$")


def _read_json(raw: bytes) -> Message:
    data = load_json(raw)
    if not isinstance(data, dict):
        raise Bad("not_object", "", "value must be a JSON object")
    document = data.get("Document", data)
    if document is data and not any(key in data for key in _BODY_KEYS + _STATUS_KEYS):
        document = _enveloped_json(data)
    if not isinstance(document, dict):
        raise Bad("wrong_type", "/Document", "must be an object")
    if _STATUS_KEYS[0] in document or _STATUS_KEYS[1] in document:
        return _json_status_report(document.get(_STATUS_KEYS[0], document.get(_STATUS_KEYS[1])))
    body = document.get(_BODY_KEYS[0])
    if body is None:
        body = document.get(_BODY_KEYS[1])
    if not isinstance(body, dict):
        raise Bad("unsupported_message", "/Document",
                  "expected FIToFICstmrCdtTrf (pacs.008) or FIToFIPmtStsRpt (pacs.002)")
    # A rendering that names its schema (e.g. "$schema", "xmlns" or "TxTp") must be pacs.008.001.08 or later.
    declared = data.get("xmlns") or document.get("xmlns") or data.get("$schema")
    tx_type = data.get("TxTp")
    if not declared and isinstance(tx_type, str) and _TX_TYPE_RE.match(tx_type):
        declared = NS_PREFIX + tx_type
    if isinstance(declared, str) and declared.startswith(NS_PREFIX):
        kind, version = _message_type(declared, "/Document/@xmlns")
        _check_version(kind, version, "/Document/@xmlns")
    group_header = body.get("GrpHdr")
    if not isinstance(group_header, dict):
        raise Bad("missing_field", f"{ROOT}/GrpHdr", "is required")
    header = _json_header(group_header)
    raw_txs = body.get("CdtTrfTxInf")
    tx_list = raw_txs if isinstance(raw_txs, list) else [raw_txs] if raw_txs is not None else []
    transactions: list[dict[str, str]] = []
    for index, tx in enumerate(tx_list, start=1):
        if not isinstance(tx, dict):
            raise Bad("wrong_type", f"{ROOT}/CdtTrfTxInf[{index}]", "must be an object")
        transactions.append(_json_transaction(tx))
    return Message(PACS008, header, transactions)
