"""ISO 20022 pacs.008 (FI-to-FI customer credit transfer) → one ``Transfer`` per ``CdtTrfTxInf``.

The message is read by decode/iso20022.py (XML with or without a business application header envelope,
or the JSON rendering; pacs.008.001.08 or later) into the text of its fields; this module maps those onto
the Transfer contract. A ``pacs.002`` status report yields ``Skipped("pacs.002", statuses)``: Sekat screens
credit transfers only, so a status report is counted (``sekat_events_total{outcome="SKIPPED"}``) and acked,
and each of its transactions' statuses (``PaymentStatus``) on a payment Sekat held becomes that hold's
outcome (streams/status_reports.py).

Mapping (paths relative to ``CdtTrfTxInf``):

    event_id        GrpHdr/MsgId + "/" + position of the transaction (1-based): deterministic on replay
    transfer_id     PmtId/UETR, else PmtId/TxId, else payer.bank + "/" + PmtId/EndToEndId (an end-to-end id is
                    the customer's, unique only within the debtor agent)
    end_to_end_id   PmtId/EndToEndId (required)      tx_id  PmtId/TxId      uetr  PmtId/UETR
    occurred_at     AddtlDtTm/AccptncDtTm (.13) or AccptncDtTm (.08-.12), else GrpHdr/CreDtTm (no zone = UTC)
    amount          IntrBkSttlmAmt                   currency  IntrBkSttlmAmt/@Ccy
    payer.bank      DbtrAgt/FinInstnId: BICFI, else ClrSysMmbId or Othr through the member directory (below)
                                                     payer.account  DbtrAcct/Id/IBAN | DbtrAcct/Id/Othr/Id (with its SchmeNm) | None
    payee.bank      CdtrAgt/FinInstnId, as payer.bank  payee.account  CdtrAcct/Id/IBAN | CdtrAcct/Id/Othr/Id | None
    payee.proxy     CdtrAcct/Prxy/Tp/Cd (or Prtry) and CdtrAcct/Prxy/Id; MBNO/TELE → MOBILE, EMAL → EMAIL;
                    NRIC/NIDN → NRIC, PSPT/CCPT → PASSPORT, BREG/CINC → BRN, each hashed (ProxyHasher)
    payee.wallet    CdtrAcct/Prxy/Id when CdtrAcct/Prxy/Tp is EWAL: the wallet id, its provider the CdtrAgt (BIC8)
    channel         PmtTpInf/LclInstrm/Prtry | PmtTpInf/LclInstrm/Cd | PmtTpInf/SvcLvl/Cd

Each path means its first element at each step (``p:DbtrAcct[1]/p:Id[1]/...``); in the JSON rendering a
list stands for its first item. Every fast path (the reading's, and "The mapping's happy path" below) gives
up to a precise one on anything unusual, so a result or a dead letter does not depend on which path ran
(tests/unit/test_adapter_pacs008_mapping.py).

``DbtrAcct`` and ``CdtrAcct`` are optional in the message definition: a transaction is screened on the
identifiers it has (payer account, payee account, payee proxy) and dead-lettered as ``missing_field`` at
``CdtTrfTxInf[n]/CdtrAcct`` only when it has none of them.

A bank named without a BIC is looked up in the member directory (``SEKAT_MEMBER_DIRECTORY``,
``sekat.identifiers.parse_member_directory``): ``ClrSysMmbId/MmbId`` under its clearing-system code
(``ClrSysId/Cd`` or ``Prtry``), ``Othr/Id`` under ``OTHR`` and its scheme name. The bank is then that BIC8,
so its accounts are keyed and its commands routed exactly as if the message had named the BIC; the kind and
code in the key keep one id in two schemes apart. A member the directory does not list is ``invalid_bank``:
a command for it could reach no one.

A transaction that cannot be mapped becomes a ``Rejection`` whose ``field`` is the XPath at fault, e.g.
``/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[2]/CdtrAgt/FinInstnId/BICFI``; the other transactions of the
message are still decided. A message that cannot be read is one ``Rejection``. Reason codes: those of
``sekat.decode.fields`` and ``sekat.decode.iso20022``, and ``invalid_currency``.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sekat.decode import fields, iso20022
from sekat.decode.fields import MAX_AMOUNT, Bad
from sekat.decode.iso20022 import ROOT
from sekat.errors import InvalidIdentifier
from sekat.identifiers import (NO_PROXY_HASHER, AccountId, MemberKey, ProxyHasher, normalise_account,
                               normalise_bank, normalise_phone, normalise_wallet, scheme_account)
from sekat.records import Party, PaymentStatus, Proxy, Rejection, Skipped, Transfer

log = logging.getLogger(__name__)

_CCY_RE = re.compile(r"^[A-Z]{3}$")
PROXY_TYPES = {"MBNO": "MOBILE", "TELE": "MOBILE", "EMAL": "EMAIL"}
WALLET_PROXY = "EWAL"  # ISO 20022 proxy type "e-wallet": the payee is a wallet at the creditor agent
MAX_ID = 128
# pacs.008.001.13 moved the acceptance time under AddtlDtTm; .08 to .12 have it directly under CdtTrfTxInf.
ACCEPTED_13 = "AddtlDtTm/AccptncDtTm"

Result = Transfer | Rejection | Skipped
Members = dict[MemberKey, str]
NO_MEMBERS: Members = {}


def decode_pacs008(raw: bytes | None, max_bytes: int = 65536, region: str = "MY",
                   members: Members = NO_MEMBERS, hasher: ProxyHasher = NO_PROXY_HASHER) -> list[Result]:
    """One result per credit transfer transaction; ``[Rejection]`` when the whole message is unusable."""
    try:
        message = iso20022.read_message(fields.sized(raw, max_bytes))
        if message.kind == iso20022.PACS002:
            return [Skipped(message.kind, statuses(message))]
        return _transfers(message.header, message.transactions, region, members, hasher)
    except Bad as bad:
        return [bad.rejection]
    except Exception as exc:  # noqa: BLE001 - no input may stop the worker; a bug here is counted, kept
        log.exception("pacs.008 adapter failed on a message")
        return [Rejection("internal_error", f"adapter failed: {type(exc).__name__}")]


def statuses(message: iso20022.Message) -> tuple[PaymentStatus, ...]:
    """The payment statuses of a pacs.002 as read (``iso20022.STATUS_PATHS``)."""
    msg_id = message.header.get("MsgId", "")
    return tuple(PaymentStatus(msg_id, tx["status"], tx.get("reason", ""), tx.get("end_to_end_id", ""),
                               tx.get("tx_id", ""), tx.get("uetr", "")) for tx in message.transactions)


def _transfers(header: dict[str, str], transactions: list[dict[str, str]], region: str,
               members: Members = NO_MEMBERS, hasher: ProxyHasher = NO_PROXY_HASHER) -> list[Result]:
    """Each transaction's Transfer, or its Rejection; raises ``Bad`` when the message as a whole is at fault."""
    msg_id = _text(header, "MsgId", f"{ROOT}/GrpHdr", required=True, max_len=35)
    assert msg_id is not None
    if not transactions:
        raise Bad("missing_field", f"{ROOT}/CdtTrfTxInf", "a pacs.008 needs at least one transaction")
    created = _created(header)
    results: list[Result] = []
    for index, flat in enumerate(transactions, start=1):
        fast = _fast_transaction(flat, msg_id, created, index, region, members, hasher)
        if fast is not None:
            results.append(fast)
            continue
        try:
            results.append(_transaction(flat, msg_id, created, index, region, members, hasher))
        except (Bad, _Rejected) as bad:
            results.append(bad.rejection)
    return results


# ---------------------------------------------------------------------------------------------------------
# Mapping one transaction's fields onto the Transfer contract, naming the XPath at fault.

def _text(flat: dict[str, str], path: str, base: str, required: bool = False, max_len: int = MAX_ID) -> str | None:
    value = flat.get(path)
    if value:
        value = value.strip()
        if value and len(value) <= max_len:
            return value
    if value is None or not value.strip():
        if required:
            raise Bad("missing_field", f"{base}/{path}", "is required")
        return None
    raise Bad("invalid_value", f"{base}/{path}", f"is longer than {max_len} characters")


def _bank(flat: dict[str, str], agent: str, base: str, members: Members) -> str:
    """The agent's BIC8: its BICFI, else its member id or participant id through the member directory."""
    bic = _text(flat, f"{agent}/FinInstnId/BICFI", base, max_len=16)
    if bic is not None:
        return fields.as_bank(bic, f"{base}/{agent}/FinInstnId/BICFI")
    for kind, leaf, codes in _MEMBER_PATHS[agent]:
        member = _text(flat, leaf, base, max_len=35)
        if member is not None:
            code = _text(flat, codes[0], base, max_len=35) or _text(flat, codes[1], base, max_len=35) or ""
            found = members.get((kind, code.upper(), member))
            if found is None:
                scheme = code or ("no clearing-system code" if kind == "CLR" else "no scheme name")
                raise Bad("invalid_bank", f"{base}/{leaf}",
                          f"{'member' if kind == 'CLR' else 'participant'} {member!r} ({scheme}) is not in "
                          "SEKAT_MEMBER_DIRECTORY")
            return found
    raise Bad("missing_field", f"{base}/{agent}/FinInstnId/BICFI",
              "is required (or ClrSysMmbId/MmbId or Othr/Id listed in SEKAT_MEMBER_DIRECTORY)")


# Per agent: (directory kind, the id's path, the paths of its scheme code), in the order they are tried.
_MEMBER_PATHS = {agent: (("CLR", f"{agent}/FinInstnId/ClrSysMmbId/MmbId",
                          (f"{agent}/FinInstnId/ClrSysMmbId/ClrSysId/Cd", f"{agent}/FinInstnId/ClrSysMmbId/ClrSysId/Prtry")),
                         ("OTHR", f"{agent}/FinInstnId/Othr/Id",
                          (f"{agent}/FinInstnId/Othr/SchmeNm/Cd", f"{agent}/FinInstnId/Othr/SchmeNm/Prtry")))
                 for agent in ("DbtrAgt", "CdtrAgt")}


_ACCOUNT_PATHS = {acct: (f"{acct}/Id/IBAN", f"{acct}/Id/Othr/Id") for acct in ("DbtrAcct", "CdtrAcct")}


def _account(flat: dict[str, str], bic: str, acct: str, base: str) -> AccountId | None:
    iban, other = _ACCOUNT_PATHS[acct]
    raw = _text(flat, iban, base, max_len=64)
    if raw is not None:
        return fields.as_account(bic, raw, f"{base}/{iban}")
    raw = _text(flat, other, base, max_len=64)
    if raw is None:
        return None
    try:
        return normalise_account(bic, raw)
    except InvalidIdentifier as exc:
        plain = exc  # read the scheme name only for an id that is not an account number
    scheme = _text(flat, f"{other[:-3]}/SchmeNm/Cd", base, max_len=35) or _text(flat, f"{other[:-3]}/SchmeNm/Prtry",
                                                                                base, max_len=35)
    if scheme is None:
        raise Bad("invalid_account", f"{base}/{other}", str(plain))
    try:
        return scheme_account(bic, scheme, raw)
    except InvalidIdentifier as exc:
        raise Bad("invalid_account", f"{base}/{other}", str(exc)) from None


def _timestamp(raw: str, field: str) -> datetime:
    try:
        return fields.iso_time(raw)
    except ValueError:
        raise Bad("invalid_timestamp", field, "must be an ISO 8601 date-time such as 2026-11-28T10:15:00") from None


def _created(header: dict[str, str]) -> datetime | Rejection:
    """GrpHdr/CreDtTm, read once per message: the time of each transaction without its own AccptncDtTm."""
    try:
        created = _text(header, "CreDtTm", f"{ROOT}/GrpHdr", required=True, max_len=64)
        assert created is not None
        return _timestamp(created, f"{ROOT}/GrpHdr/CreDtTm")
    except Bad as bad:
        return bad.rejection


class _Rejected(Exception):
    """A transaction refused for a reason found once for the whole message (see ``_created``)."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


def _proxy_type(code: str | None, proxy_id: str) -> str:
    """The contract's proxy type: the code, named as the contract names it; without one, told from the id."""
    if code:
        return PROXY_TYPES.get(code.upper(), code.upper())
    return "MOBILE" if proxy_id.startswith("+") else "PROXY"


def _transaction(flat: dict[str, str], msg_id: str, created: datetime | Rejection, index: int,
                 region: str, members: Members = NO_MEMBERS, hasher: ProxyHasher = NO_PROXY_HASHER) -> Transfer:
    base = f"{ROOT}/CdtTrfTxInf[{index}]"
    end_to_end_id = _text(flat, "PmtId/EndToEndId", base, required=True)
    tx_id = _text(flat, "PmtId/TxId", base)
    uetr = _text(flat, "PmtId/UETR", base, max_len=36)
    accepted_path = ACCEPTED_13
    accepted = _text(flat, ACCEPTED_13, base, max_len=64)
    if accepted is None:
        accepted_path = "AccptncDtTm"
        accepted = _text(flat, accepted_path, base, max_len=64)
    if accepted is not None:
        occurred_at = _timestamp(accepted, f"{base}/{accepted_path}")
    elif isinstance(created, Rejection):
        raise _Rejected(created)
    else:
        occurred_at = created

    raw_amount = _text(flat, "IntrBkSttlmAmt", base, required=True, max_len=32)
    assert raw_amount is not None
    amount = fields.as_amount(raw_amount, f"{base}/IntrBkSttlmAmt")
    currency = _text(flat, "IntrBkSttlmAmt/@Ccy", base, required=True, max_len=16)
    if currency is None or not _CCY_RE.match(currency):
        raise Bad("invalid_currency", f"{base}/IntrBkSttlmAmt/@Ccy", "must be an ISO 4217 code such as MYR")

    payer_bank = _bank(flat, "DbtrAgt", base, members)
    payer_account = _account(flat, payer_bank, "DbtrAcct", base)
    payee_bank = _bank(flat, "CdtrAgt", base, members)
    payee_account = _account(flat, payee_bank, "CdtrAcct", base)

    proxy, wallet = None, None
    proxy_id = _text(flat, "CdtrAcct/Prxy/Id", base, max_len=64)
    if proxy_id is not None:
        code = _text(flat, "CdtrAcct/Prxy/Tp/Cd", base, max_len=35) or _text(flat, "CdtrAcct/Prxy/Tp/Prtry", base,
                                                                           max_len=35)
        kind = _proxy_type(code, proxy_id)
        if kind == WALLET_PROXY:
            wallet = fields.as_wallet(payee_bank, proxy_id, f"{base}/CdtrAcct/Prxy/Id")
        else:
            proxy = fields.as_proxy(kind, proxy_id, f"{base}/CdtrAcct/Prxy/Id", region, hasher)
    if payer_account is None and payee_account is None and proxy is None and wallet is None:
        raise Bad("missing_field", f"{base}/CdtrAcct",
                  "nothing to screen: needs DbtrAcct/Id, CdtrAcct/Id (IBAN or Othr/Id) or CdtrAcct/Prxy/Id")

    channel = (_text(flat, "PmtTpInf/LclInstrm/Prtry", base, max_len=35)
               or _text(flat, "PmtTpInf/LclInstrm/Cd", base, max_len=35)
               or _text(flat, "PmtTpInf/SvcLvl/Cd", base, max_len=35))
    assert end_to_end_id is not None
    return Transfer(f"{msg_id}/{index}", occurred_at, uetr or tx_id or f"{payer_bank}/{end_to_end_id}", amount,
                    Party(payer_bank, payer_account),
                    Party(payee_bank, payee_account, wallet=wallet), proxy, channel, currency, end_to_end_id, tx_id,
                    uetr)


# ---------------------------------------------------------------------------------------------------------
# The mapping's happy path: the same Transfer as ``_transaction`` for a transaction it finds plainly valid,
# with the checks inline and the identifiers through the same cached normalisers; anything it does not like
# (a missing, blank or over-long value, a bad amount, time, currency or identifier) makes it give up, and
# ``_transaction`` decides and names the XPath at fault. So a valid transaction costs this path only.
# tests/unit/test_adapter_pacs008_mapping.py holds the two to one answer.
class _Unclear(Exception):
    """The fast mapping gives up: the precise one decides."""


def _clean(value: str | None, max_len: int) -> str | None:
    """``_text`` for an optional field: the stripped value, None when absent or blank; too long: give up."""
    if value is None:
        return None
    value = value.strip()
    if len(value) > max_len:
        raise _Unclear
    return value or None


def _fast_transaction(flat: dict[str, str], msg_id: str, created: datetime | Rejection, index: int,
                      region: str, members: Members = NO_MEMBERS,
                      hasher: ProxyHasher = NO_PROXY_HASHER) -> Transfer | None:
    get = flat.get
    try:
        end_to_end_id = _clean(get("PmtId/EndToEndId"), MAX_ID)
        raw_amount = _clean(get("IntrBkSttlmAmt"), 32)
        currency = _clean(get("IntrBkSttlmAmt/@Ccy"), 16)
        payer_bic = _clean(get("DbtrAgt/FinInstnId/BICFI"), 16)
        payee_bic = _clean(get("CdtrAgt/FinInstnId/BICFI"), 16)
        if end_to_end_id is None or raw_amount is None or currency is None or not _CCY_RE.match(currency):
            return None
        tx_id = _clean(get("PmtId/TxId"), MAX_ID)
        uetr = _clean(get("PmtId/UETR"), 36)
        accepted = _clean(get(ACCEPTED_13), 64) or _clean(get("AccptncDtTm"), 64)
        if accepted is not None:
            occurred_at = fields.iso_time(accepted)
        elif isinstance(created, Rejection):
            return None
        else:
            occurred_at = created
        amount = Decimal(raw_amount)
        if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
            return None
        payer_bank = normalise_bank(payer_bic) if payer_bic is not None else _fast_member(flat, "DbtrAgt", members)
        payer_account = _fast_account(flat, payer_bank, "DbtrAcct")
        payee_bank = normalise_bank(payee_bic) if payee_bic is not None else _fast_member(flat, "CdtrAgt", members)
        payee_account = _fast_account(flat, payee_bank, "CdtrAcct")
        proxy, wallet = None, None
        proxy_id = _clean(get("CdtrAcct/Prxy/Id"), 64)
        if proxy_id is not None:
            kind = _proxy_type(_clean(get("CdtrAcct/Prxy/Tp/Cd"), 35) or _clean(get("CdtrAcct/Prxy/Tp/Prtry"), 35),
                               proxy_id)
            if kind == "MOBILE":
                proxy = Proxy(kind, proxy_id, normalise_phone(proxy_id, region))
            elif kind == WALLET_PROXY:
                wallet = normalise_wallet(payee_bank, proxy_id)
            else:
                proxy = fields.as_proxy(kind, proxy_id, "", region, hasher)
        elif payee_account is None and payer_account is None:
            return None
        channel = None
        if "PmtTpInf/LclInstrm/Prtry" in flat or "PmtTpInf/LclInstrm/Cd" in flat or "PmtTpInf/SvcLvl/Cd" in flat:
            channel = (_clean(get("PmtTpInf/LclInstrm/Prtry"), 35) or _clean(get("PmtTpInf/LclInstrm/Cd"), 35)
                       or _clean(get("PmtTpInf/SvcLvl/Cd"), 35))
    except (_Unclear, ValueError, InvalidOperation, InvalidIdentifier, Bad):
        return None  # fromisoformat raises ValueError, Decimal InvalidOperation, the normalisers InvalidIdentifier
    return Transfer(f"{msg_id}/{index}", occurred_at, uetr or tx_id or f"{payer_bank}/{end_to_end_id}", amount,
                    Party(payer_bank, payer_account), Party(payee_bank, payee_account, wallet=wallet), proxy, channel,
                    currency, end_to_end_id, tx_id, uetr)


def _fast_member(flat: dict[str, str], agent: str, members: Members) -> str:
    """``_bank`` for an agent without BICFI: its directory BIC, or give up (the precise mapping explains)."""
    for kind, leaf, codes in _MEMBER_PATHS[agent]:
        member = _clean(flat.get(leaf), 35)
        if member is not None:
            code = _clean(flat.get(codes[0]), 35) or _clean(flat.get(codes[1]), 35) or ""
            found = members.get((kind, code.upper(), member))
            if found is None:
                raise _Unclear
            return found
    raise _Unclear


def _fast_account(flat: dict[str, str], bank: str, acct: str) -> AccountId | None:
    """``_account`` without explanations: the IBAN, else Othr/Id as an account number or qualified by its scheme."""
    iban_path, other_path = _ACCOUNT_PATHS[acct]
    iban = _clean(flat.get(iban_path), 64)
    if iban is not None:
        return normalise_account(bank, iban)
    raw = _clean(flat.get(other_path), 64)
    if raw is None:
        return None
    try:
        return normalise_account(bank, raw)
    except InvalidIdentifier:
        scheme = _clean(flat.get(f"{acct}/Id/Othr/SchmeNm/Cd"), 35) or _clean(flat.get(f"{acct}/Id/Othr/SchmeNm/Prtry"), 35)
        if not scheme:
            raise
        return scheme_account(bank, scheme, raw)
