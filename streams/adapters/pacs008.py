"""ISO 20022 pacs.008 (FI-to-FI customer credit transfer) → one ``Transfer`` per ``CdtTrfTxInf``.

Accepts the XML message (namespaces ``urn:iso:std:iso:20022:tech:xsd:pacs.008.001.NN``, NN ≥ 08, with
or without a business application header envelope) and the JSON rendering some switches use (the same
element names as keys, ``{"Document": {"FIToFICstmrCdtTrf": {...}}}`` or without the ``Document`` wrapper;
an amount as ``{"Ccy": "MYR", "value": "1500.00"}`` — ``Amt``, ``amount``, ``#text`` or ``$`` also name
the number, ``@Ccy`` the currency). The format is detected from the first non-blank byte.

A ``pacs.002`` status report is recognised and yields ``Skipped("pacs.002")``: Sekat screens credit
transfers only, so a status report is counted (``sekat_events_total{outcome="SKIPPED"}``) and acked.

Mapping (paths relative to ``CdtTrfTxInf``):

    event_id        GrpHdr/MsgId + "/" + position of the transaction (1-based): deterministic on replay
    transfer_id     PmtId/TxId, else PmtId/EndToEndId
    end_to_end_id   PmtId/EndToEndId (required)      tx_id  PmtId/TxId      uetr  PmtId/UETR
    occurred_at     AccptncDtTm, else GrpHdr/CreDtTm (no zone = UTC)
    amount          IntrBkSttlmAmt                   currency  IntrBkSttlmAmt/@Ccy
    payer.bank      DbtrAgt/FinInstnId/BICFI         payer.account  DbtrAcct/Id/IBAN | DbtrAcct/Id/Othr/Id
    payee.bank      CdtrAgt/FinInstnId/BICFI         payee.account  CdtrAcct/Id/IBAN | CdtrAcct/Id/Othr/Id
    payee.proxy     CdtrAcct/Prxy/Tp/Cd (or Prtry) and CdtrAcct/Prxy/Id; MBNO/TELE → MOBILE, EMAL → EMAIL
    channel         PmtTpInf/LclInstrm/Prtry | PmtTpInf/LclInstrm/Cd | PmtTpInf/SvcLvl/Cd

A transaction that cannot be mapped becomes a ``Rejection`` whose ``field`` is the XPath at fault, e.g.
``/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[2]/CdtrAgt/FinInstnId/BICFI``; the other transactions of the
message are still decided. Reason codes (besides those of ``streams.decode``): ``not_xml``,
``forbidden_dtd``, ``unsupported_message``, ``unsupported_version``, ``invalid_currency``.

Safety: no DTD is ever loaded, no entity is expanded, no network is touched (lxml parser with
``resolve_entities=False, no_network=True, load_dtd=False``), and any document carrying a DOCTYPE is refused
(``forbidden_dtd``) — ISO 20022 messages never have one, so XXE and billion-laughs inputs die here.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from lxml import etree

from blocklist.identifiers import AccountId, normalise_account, normalise_bank, normalise_phone
from sekat.errors import InvalidIdentifier
from sekat.records import Party, Proxy, Rejection, Skipped, Transfer
from streams.decode import MAX_AMOUNT, Bad

log = logging.getLogger(__name__)

NS_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
MIN_PACS008_VERSION = 8
_NS_RE = re.compile(r"^urn:iso:std:iso:20022:tech:xsd:(pacs\.\d{3})\.001\.(\d{2})$")
_CCY_RE = re.compile(r"^[A-Z]{3}$")
PROXY_TYPES = {"MBNO": "MOBILE", "TELE": "MOBILE", "EMAL": "EMAIL"}
ROOT = "/Document/FIToFICstmrCdtTrf"
MAX_ID = 128

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                          huge_tree=False, remove_comments=True, remove_pis=True)

Result = Transfer | Rejection | Skipped


# ---------------------------------------------------------------------------------------------------------
# Extraction: both renderings become {path relative to CdtTrfTxInf: text} per transaction, so one mapping
# serves both. The XML path: one compiled XPath per namespace evaluates every field of a transaction in C and returns
# them as one tab-separated string (no Python object per element: half the cost of walking the tree).
# A value holding a tab itself (never valid in these fields) falls back to one XPath per field.
TX_PATHS = (
    "PmtId/EndToEndId", "PmtId/TxId", "PmtId/UETR", "IntrBkSttlmAmt", "IntrBkSttlmAmt/@Ccy", "AccptncDtTm",
    "DbtrAgt/FinInstnId/BICFI", "DbtrAcct/Id/IBAN", "DbtrAcct/Id/Othr/Id",
    "CdtrAgt/FinInstnId/BICFI", "CdtrAcct/Id/IBAN", "CdtrAcct/Id/Othr/Id",
    "CdtrAcct/Prxy/Id", "CdtrAcct/Prxy/Tp/Cd", "CdtrAcct/Prxy/Tp/Prtry",
    "PmtTpInf/LclInstrm/Prtry", "PmtTpInf/LclInstrm/Cd", "PmtTpInf/SvcLvl/Cd",
)
HEADER_PATHS = ("GrpHdr/MsgId", "GrpHdr/CreDtTm")


def _xpath(path: str) -> str:
    return "/".join(step if step.startswith("@") else "p:" + step for step in path.split("/"))


class _Compiled:
    def __init__(self, namespace: str) -> None:
        ns = {"p": namespace}
        self.transactions = etree.XPath("p:CdtTrfTxInf", namespaces=ns)
        self.fields = etree.XPath("concat(" + ",'\t',".join(f"string({_xpath(p)})" for p in TX_PATHS) + ")",
                                  namespaces=ns)
        self.header = etree.XPath("concat(" + ",'\t',".join(f"string({_xpath(p)})" for p in HEADER_PATHS) + ")",
                                  namespaces=ns)
        self.one = {p: etree.XPath(f"string({_xpath(p)})", namespaces=ns) for p in TX_PATHS + HEADER_PATHS}

    def values(self, el: Any, joined: Any, paths: tuple[str, ...]) -> dict[str, str]:
        values = joined(el).split("\t")
        if len(values) != len(paths):
            values = [self.one[p](el) for p in paths]
        return {p: v for p, v in zip(paths, values) if v}


_COMPILED: dict[str, _Compiled] = {}  # bounded: only namespaces that passed _NS_RE (pacs.008.001.08..99)


def _compiled(namespace: str) -> _Compiled:
    compiled = _COMPILED.get(namespace)
    if compiled is None:
        compiled = _COMPILED[namespace] = _Compiled(namespace)
    return compiled


# The JSON path: walk the (small) decoded object once.
_AMOUNT_KEYS = ("value", "Amt", "amount", "#text", "$")


def _flatten_json(node: dict[str, Any], prefix: str, out: dict[str, str]) -> None:
    for key, value in node.items():
        name = prefix + key
        if isinstance(value, dict):
            ccy = value.get("Ccy", value.get("@Ccy"))
            if ccy is not None:
                for amount_key in _AMOUNT_KEYS:
                    if amount_key in value:
                        out[name] = str(value[amount_key])
                        out[name + "/@Ccy"] = str(ccy)
                        break
                continue
            _flatten_json(value, name + "/", out)
        elif isinstance(value, list):
            if value and isinstance(value[0], dict):
                _flatten_json(value[0], name + "/", out)  # repeated elements: the first one (unused by the mapping)
        elif value is not None and not isinstance(value, bool):
            out[name] = str(value)


# ---------------------------------------------------------------------------------------------------------
# Mapping one flattened transaction onto the Transfer contract.

def _text(flat: dict[str, str], path: str, base: str, required: bool = False, max_len: int = MAX_ID) -> str | None:
    value = flat.get(path)
    if value is None or not value.strip():
        if required:
            raise Bad("missing_field", f"{base}/{path}", "is required")
        return None
    value = value.strip()
    if len(value) > max_len:
        raise Bad("invalid_value", f"{base}/{path}", f"is longer than {max_len} characters")
    return value


def _bank(flat: dict[str, str], path: str, base: str) -> str:
    raw = _text(flat, path, base, required=True, max_len=16)
    assert raw is not None
    try:
        return normalise_bank(raw)
    except InvalidIdentifier as exc:
        raise Bad("invalid_bank", f"{base}/{path}", str(exc)) from None


def _account(flat: dict[str, str], bic: str, acct: str, base: str) -> AccountId | None:
    for path in (f"{acct}/Id/IBAN", f"{acct}/Id/Othr/Id"):
        raw = _text(flat, path, base, max_len=64)
        if raw is not None:
            try:
                return normalise_account(bic, raw)
            except InvalidIdentifier as exc:
                raise Bad("invalid_account", f"{base}/{path}", str(exc)) from None
    return None


def _timestamp(raw: str, field: str) -> datetime:
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        raise Bad("invalid_timestamp", field, "must be an ISO 8601 date-time such as 2026-11-28T10:15:00") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _transaction(flat: dict[str, str], header: dict[str, str], index: int, region: str) -> Transfer:
    base = f"{ROOT}/CdtTrfTxInf[{index}]"
    end_to_end_id = _text(flat, "PmtId/EndToEndId", base, required=True)
    tx_id = _text(flat, "PmtId/TxId", base)
    uetr = _text(flat, "PmtId/UETR", base, max_len=36)
    accepted = _text(flat, "AccptncDtTm", base, max_len=64)
    if accepted is not None:
        occurred_at = _timestamp(accepted, f"{base}/AccptncDtTm")
    else:
        created = _text(header, "CreDtTm", f"{ROOT}/GrpHdr", required=True, max_len=64)
        assert created is not None
        occurred_at = _timestamp(created, f"{ROOT}/GrpHdr/CreDtTm")

    raw_amount = _text(flat, "IntrBkSttlmAmt", base, required=True, max_len=32)
    assert raw_amount is not None
    try:
        amount = Decimal(raw_amount)
    except InvalidOperation:
        raise Bad("invalid_amount", f"{base}/IntrBkSttlmAmt", "is not a decimal number") from None
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
        raise Bad("invalid_amount", f"{base}/IntrBkSttlmAmt", "must be a positive finite amount")
    currency = _text(flat, "IntrBkSttlmAmt/@Ccy", base, required=True, max_len=16)
    if currency is None or not _CCY_RE.match(currency):
        raise Bad("invalid_currency", f"{base}/IntrBkSttlmAmt/@Ccy", "must be an ISO 4217 code such as MYR")

    payer_bank = _bank(flat, "DbtrAgt/FinInstnId/BICFI", base)
    payer_account = _account(flat, payer_bank, "DbtrAcct", base)
    if payer_account is None:
        raise Bad("missing_field", f"{base}/DbtrAcct/Id", "debtor account (IBAN or Othr/Id) is required")
    payee_bank = _bank(flat, "CdtrAgt/FinInstnId/BICFI", base)
    payee_account = _account(flat, payee_bank, "CdtrAcct", base)

    proxy = None
    proxy_id = _text(flat, "CdtrAcct/Prxy/Id", base, max_len=64)
    if proxy_id is not None:
        code = _text(flat, "CdtrAcct/Prxy/Tp/Cd", base, max_len=35) or _text(flat, "CdtrAcct/Prxy/Tp/Prtry", base,
                                                                           max_len=35)
        kind = PROXY_TYPES.get(code.upper(), code.upper()) if code else "MOBILE" if proxy_id.startswith("+") else "PROXY"
        mobile = None
        if kind == "MOBILE":
            try:
                mobile = normalise_phone(proxy_id, region)
            except InvalidIdentifier as exc:
                raise Bad("invalid_phone", f"{base}/CdtrAcct/Prxy/Id", str(exc)) from None
        proxy = Proxy(kind, proxy_id, mobile)
    if payee_account is None and proxy is None:
        raise Bad("missing_field", f"{base}/CdtrAcct", "creditor account needs Id/IBAN, Id/Othr/Id or Prxy/Id")

    channel = (_text(flat, "PmtTpInf/LclInstrm/Prtry", base, max_len=35)
               or _text(flat, "PmtTpInf/LclInstrm/Cd", base, max_len=35)
               or _text(flat, "PmtTpInf/SvcLvl/Cd", base, max_len=35))
    msg_id = header["MsgId"]
    assert end_to_end_id is not None
    return Transfer(
        event_id=f"{msg_id}/{index}", occurred_at=occurred_at, transfer_id=tx_id or end_to_end_id, amount=amount,
        payer=Party(payer_bank, payer_account), payee=Party(payee_bank, payee_account), payee_proxy=proxy,
        channel=channel, currency=currency, end_to_end_id=end_to_end_id, tx_id=tx_id, uetr=uetr,
    )


def _message(header: dict[str, str], transactions: list[dict[str, str]], region: str) -> list[Result]:
    msg_id = _text(header, "MsgId", f"{ROOT}/GrpHdr", required=True, max_len=35)
    assert msg_id is not None
    header["MsgId"] = msg_id
    if not transactions:
        raise Bad("missing_field", f"{ROOT}/CdtTrfTxInf", "a pacs.008 needs at least one transaction")
    results: list[Result] = []
    for index, flat in enumerate(transactions, start=1):
        try:
            results.append(_transaction(flat, header, index, region))
        except Bad as bad:
            results.append(bad.rejection)
    return results


# ---------------------------------------------------------------------------------------------------------
# Renderings.

def _message_type(namespace: str, where: str) -> tuple[str, int]:
    match = _NS_RE.match(namespace)
    if match is None:
        raise Bad("unsupported_message", where, f"namespace {namespace[:80]!r} is not an ISO 20022 message")
    return match.group(1), int(match.group(2))


def _check_version(kind: str, version: int, where: str) -> None:
    if kind == "pacs.008" and version < MIN_PACS008_VERSION:
        raise Bad("unsupported_version", where,
                   f"pacs.008.001.{version:02d} is not supported; use pacs.008.001.08 or later")


def _decode_xml(raw: bytes, region: str) -> list[Result]:
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise Bad("forbidden_dtd", "", "XML with a DOCTYPE or entity declaration is refused")
    try:
        root = etree.fromstring(raw, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise Bad("not_xml", "", f"not well-formed XML ({str(exc)[:100]})") from None
    if root.getroottree().docinfo.doctype:
        raise Bad("forbidden_dtd", "", "XML with a DOCTYPE is refused")
    # A business application header envelope (AppHdr + Document): screen the Document inside it.
    if not root.tag.endswith("}Document"):
        inner = [el for el in root if isinstance(el.tag, str) and el.tag.endswith("}Document")]
        if len(inner) != 1:
            raise Bad("unsupported_message", "/" + etree.QName(root).localname,
                       "root element must be an ISO 20022 Document")
        root = inner[0]
    namespace = etree.QName(root).namespace or ""
    kind, version = _message_type(namespace, "/Document")
    if len(root) != 1:
        raise Bad("unsupported_message", "/Document", "Document must hold exactly one message element")
    body = root[0]
    if kind == "pacs.002":
        return [Skipped("pacs.002")]
    if kind != "pacs.008" or body.tag != f"{{{namespace}}}FIToFICstmrCdtTrf":
        raise Bad("unsupported_message", "/Document/" + etree.QName(body).localname,
                   f"{kind} is not screened; expected pacs.008 FIToFICstmrCdtTrf")
    _check_version(kind, version, "/Document")
    compiled = _compiled(namespace)
    header = compiled.values(body, compiled.header, HEADER_PATHS)
    header = {p[len("GrpHdr/"):]: v for p, v in header.items()}
    transactions = [compiled.values(tx, compiled.fields, TX_PATHS) for tx in compiled.transactions(body)]
    return _message(header, transactions, region)


def _decode_json(raw: bytes, region: str) -> list[Result]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Bad("not_json", "", f"value is not UTF-8 JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise Bad("not_object", "", "value must be a JSON object")
    document = data.get("Document", data)
    if not isinstance(document, dict):
        raise Bad("wrong_type", "/Document", "must be an object")
    if "FIToFIPmtStsRpt" in document:
        return [Skipped("pacs.002")]
    body = document.get("FIToFICstmrCdtTrf")
    if not isinstance(body, dict):
        raise Bad("unsupported_message", "/Document",
                   "expected FIToFICstmrCdtTrf (pacs.008) or FIToFIPmtStsRpt (pacs.002)")
    # A rendering that names its schema (e.g. "$schema" or "xmlns") must be pacs.008.001.08 or later.
    declared = data.get("xmlns") or document.get("xmlns") or data.get("$schema")
    if isinstance(declared, str) and declared.startswith(NS_PREFIX):
        kind, version = _message_type(declared, "/Document/@xmlns")
        _check_version(kind, version, "/Document/@xmlns")
    group_header = body.get("GrpHdr")
    if not isinstance(group_header, dict):
        raise Bad("missing_field", f"{ROOT}/GrpHdr", "is required")
    header: dict[str, str] = {}
    _flatten_json(group_header, "", header)
    raw_txs = body.get("CdtTrfTxInf")
    tx_list = raw_txs if isinstance(raw_txs, list) else [raw_txs] if raw_txs is not None else []
    transactions: list[dict[str, str]] = []
    for index, tx in enumerate(tx_list, start=1):
        if not isinstance(tx, dict):
            raise Bad("wrong_type", f"{ROOT}/CdtTrfTxInf[{index}]", "must be an object")
        flat: dict[str, str] = {}
        _flatten_json(tx, "", flat)
        transactions.append(flat)
    return _message(header, transactions, region)


def decode_pacs008(raw: bytes | None, max_bytes: int = 65536, region: str = "MY") -> list[Result]:
    """One result per credit transfer transaction; ``[Rejection]`` when the whole message is unusable."""
    try:
        if not raw:
            raise Bad("empty", "", "event has no value")
        if len(raw) > max_bytes:
            raise Bad("too_large", "", f"event is {len(raw)} bytes, limit is {max_bytes}")
        first = raw.lstrip()[:1]
        if first == b"<" or raw[:2] in (b"\xff\xfe", b"\xfe\xff") or raw.startswith(b"\xef\xbb\xbf<"):
            return _decode_xml(raw, region)
        if first == b"{":
            return _decode_json(raw, region)
        raise Bad("unsupported_message", "", "value is neither XML nor a JSON object")
    except Bad as bad:
        return [bad.rejection]
    except Exception as exc:  # noqa: BLE001 - no input may stop the worker; a bug here is counted, kept
        log.exception("pacs.008 adapter failed on a message")
        return [Rejection("internal_error", f"adapter failed: {type(exc).__name__}")]
