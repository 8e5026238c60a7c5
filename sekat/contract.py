"""The wire contract: the JSON of every message Sekat reads or writes, as msgspec types, and their JSON Schemas.

docs/contract.md explains the messages; the types here are their exact shape on the wire (field names as in
the JSON, lengths and patterns as the decoders check them), and the source of ``docs/schemas/*.schema.json``:

    python -m sekat.contract --write docs/schemas     # regenerate the committed schemas
    python -m sekat.contract --check docs/schemas     # exit 1 naming each stale, missing or extra file

These are not the records the code works with (``sekat.records``): a record is what a decoder builds from
the wire (``Transfer.payee_proxy`` is the wire's ``payee.proxy``; identifiers are normalised), and an encoder
(``Command.to_json``, ``Decision.to_json``, the dead-letter writer) builds the wire from a record.
tests/unit/test_contract.py holds both directions to these types: every example in docs/contract.md validates
against its schema and decodes through the real decoder, and the real encoders' output validates too.

The schemas are JSON Schema draft-07 (what AsyncAPI 3.0 tools must support; docs/asyncapi.yaml references
them). Unknown fields are allowed everywhere: a consumer ignores what it does not know, and so does Sekat.

One module, a little over 500 lines, on purpose: it is nearly all declarations, and every message's type
beside the others is what makes a change to one of them show against its neighbours.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from sekat.expiry import MAX_DAYS
from sekat.records import Action, Status

JSON_SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"

# -- field types ------------------------------------------------------------------------------------------------
NON_BLANK = r"\S"  # unanchored: at least one character that is not white space (blank strings are refused)
UTC_MS = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"  # sekat.records.iso()
BIC_IN = r"^\s*[A-Za-z]{6}[A-Za-z0-9]{2}([A-Za-z0-9]{3})?\s*$"
BIC8 = r"^[A-Z]{6}[A-Z0-9]{2}$"
E164 = r"^\+[1-9][0-9]{1,14}$"
ACCOUNT_VALUE = r"^[A-Z]{6}[A-Z0-9]{2}:[A-Z0-9]{4,34}$"  # BIC8:digits or BIC8:IBAN
OPERATOR = r"^[A-Za-z0-9_.-]{1,32}$"
OPERATOR_OUT = r"^[A-Z0-9_.-]{1,32}$"  # upper-cased by the decoders

Id = Annotated[str, Meta(max_length=128, pattern=NON_BLANK)]
Short = Annotated[str, Meta(max_length=32, pattern=NON_BLANK)]
InTime = Annotated[str, Meta(max_length=64, pattern=NON_BLANK, description=(
    "ISO 8601 timestamp, e.g. 2026-11-28T10:15:00.123Z; without a zone it is read as UTC"))]
OutTime = Annotated[str, Meta(pattern=UTC_MS, description="UTC, milliseconds, Z suffix")]
Bic = Annotated[str, Meta(max_length=16, pattern=BIC_IN, description=(
    "BIC of the bank, 8 or 11 characters, any case; Sekat uses its first 8 (BIC8)"))]
Bic8 = Annotated[str, Meta(pattern=BIC8, description="BIC8 of the bank")]
PhoneIn = Annotated[str, Meta(max_length=32, pattern=NON_BLANK, description=(
    "phone number in any usual spelling (+60 12-345 6789, 012-345 6789, 60123456789); "
    "Sekat normalises it to E.164, numbers without a country code in SEKAT_PHONE_REGION"))]
Phone = Annotated[str, Meta(pattern=E164, description="E.164 phone number")]
AccountIn = Annotated[str, Meta(max_length=64, pattern=NON_BLANK, description=(
    "account number: 4-34 digits (spaces and dashes are removed) or an IBAN"))]
AccountValue = Annotated[str, Meta(pattern=ACCOUNT_VALUE, description=(
    "normalised account: BIC8:digits or BIC8:IBAN"))]
CommandId = Annotated[uuid.UUID, Meta(description=(
    "uuid5(6f1d2c8e-5b7a-5e1c-9a43-5e4b41540001, 'event_id|action|target'): the same for a re-processed event"))]
Reasons = Annotated[list[str], Meta(description="human-readable reasons, citing the evidence")]
RuleRefs = Annotated[list[str], Meta(description="id@version of every enforce rule behind the command")]
Outcome = Literal["ALLOW", "LABEL", "HOLD", "BLOCK"]  # rules.outcome.Outcome, lowest to highest
Kind = Literal["phone", "account", "wallet", "proxy", "sender", "url", "domain"]
# Every reason a dead letter can carry: sekat.decode.fields.REASONS, the adapters' own and not_text (CDR).
DeadLetterReason = Literal[
    "empty", "too_large", "not_json", "not_object", "missing_field", "wrong_type", "invalid_value",
    "invalid_timestamp", "invalid_amount", "invalid_bank", "invalid_account", "invalid_phone", "internal_error",
    "invalid_key", "protected", "not_text", "not_xml", "forbidden_dtd", "unsupported_message",
    "unsupported_version", "invalid_currency",
    "invalid_sender", "invalid_link",
]


# -- input events ---------------------------------------------------------------------------------------------
class Proxy(Struct, kw_only=True):
    """A payment proxy (DuitNow ID) naming the payee instead of, or beside, an account."""

    type: Annotated[str, Meta(max_length=32, pattern=NON_BLANK, description=(
        "proxy type, any case: MOBILE (looked up as a phone number); NRIC, PASSPORT or BRN (also PSPT, BREG; "
        "looked up by their keyed hash); any other type is accepted and not screened"))]
    value: Annotated[str, Meta(max_length=64, pattern=NON_BLANK, description=(
        "the proxy; a MOBILE proxy must be a phone number, an NRIC 12 digits (dashes allowed), a passport or "
        "business registration number letters and digits"))]


class Payer(Struct, kw_only=True):
    bank: Bic
    account: AccountIn
    phone: PhoneIn | None = None


# The payee needs an account, a proxy or a wallet (or several: each is checked).
_PAYEE_NEEDS = {"anyOf": [{"required": ["account"], "properties": {"account": {"type": "string"}}},
                          {"required": ["proxy"], "properties": {"proxy": {"type": "object"}}},
                          {"required": ["wallet"], "properties": {"wallet": {"type": "object"}}}]}


class Wallet(Struct, kw_only=True):
    """An e-wallet account: the provider's code and the wallet id it gives."""

    provider: Annotated[str, Meta(max_length=16, pattern=NON_BLANK, description=(
        "the e-wallet provider's code, any case, e.g. TNG, or its BIC (cut to 8 characters)"))]
    id: Annotated[str, Meta(max_length=64, pattern=NON_BLANK, description=(
        "the wallet id: 4-34 letters or digits (spaces and dashes removed, a leading + kept)"))]


class Payee(Struct, kw_only=True):
    bank: Bic
    account: AccountIn | None = None
    proxy: Proxy | None = None
    wallet: Wallet | None = None


class Transfer(Struct, kw_only=True):
    """A bank transfer (SEKAT_TOPIC_TRANSFERS with SEKAT_TRANSFERS_FORMAT=json)."""

    event_id: Annotated[Id, Meta(description="unique per event; part of every command id")]
    occurred_at: InTime
    transfer_id: Annotated[Id, Meta(description="the bank's id of the payment; carried back in commands")]
    amount: Annotated[str, Meta(max_length=64, pattern=r"^\s*[0-9]+(\.[0-9]+)?\s*$")] | Annotated[
        float, Meta(gt=0, le=1e12)]
    payer: Payer
    payee: Annotated[Payee, Meta(extra_json_schema=_PAYEE_NEEDS)]
    channel: Short | None = None
    currency: Annotated[str, Meta(max_length=3, pattern=NON_BLANK)] | None = None


_Duration = Annotated[float, Meta(ge=0, le=86_400, description=(
    "seconds: talk time of an answered call, ring time of an unanswered one"))]
_Answered = Annotated[bool, Meta(description="whether the callee answered")]


class Call(Struct, kw_only=True):
    """A voice call or SMS (SEKAT_TOPIC_CALLS with SEKAT_CALLS_FORMAT=json)."""

    event_id: Annotated[Id, Meta(description="unique per event; part of every command id")]
    occurred_at: InTime
    call_id: Annotated[Id, Meta(description="the operator's id of the call; carried back in commands")]
    operator: Annotated[str, Meta(pattern=OPERATOR, description="operator code, any case (upper-cased)")]
    caller: PhoneIn
    callee: PhoneIn
    type: Literal["voice", "sms"] | None = None
    caller_network: Short | None = None
    attestation: Annotated[str, Meta(max_length=8, pattern=r"^\s*[ABCabc]\s*$", description=(
        "STIR/SHAKEN attestation of the caller ID: A, B or C"))] | None = None
    duration: _Duration | None = None
    answered: _Answered | None = None


class CallAttempt(Struct, kw_only=True):
    """A call attempt from a signalling probe or SBC (SEKAT_CALLS_FORMAT=call-attempt)."""

    attempt_id: Annotated[Id, Meta(description="also the event id and the call id")]
    attempted_at: InTime
    operator: Annotated[str, Meta(max_length=32, pattern=r"^\s*[A-Za-z0-9_.-]{1,32}\s*$")]
    calling_number: PhoneIn
    called_number: PhoneIn
    service: Annotated[str, Meta(max_length=16, description=(
        "voice (default) or sms, any case; CDR codes such as MOC, MTC, SMS-MO, SMS-MT too"))] | None = None
    presentation: Annotated[str, Meta(max_length=32, description=(
        "CLI presentation: allowed, restricted, unavailable (or 0, 1, 2 and their CDR spellings)"))] | None = None
    origin_network: Annotated[str, Meta(max_length=32, description="becomes the Call's caller_network")] | None = None
    attestation: Annotated[str, Meta(max_length=8, pattern=r"^\s*[ABCabc]\s*$")] | None = None
    duration: _Duration | None = None
    answered: _Answered | None = None


class Sms(Struct, kw_only=True):
    """An SMS as the operator's SMS firewall sees it (SEKAT_TOPIC_SMS). ``text`` is read for its links and dropped."""

    event_id: Annotated[Id, Meta(description="unique per event; part of every command id")]
    occurred_at: InTime
    sms_id: Annotated[Id, Meta(description="the operator's id of the message; carried back in commands")]
    operator: Annotated[str, Meta(pattern=OPERATOR, description="operator code, any case (upper-cased)")]
    sender: Annotated[str, Meta(max_length=32, pattern=NON_BLANK, description=(
        "a phone number in any usual spelling, or an alphanumeric sender ID (case, spaces, '-', '.', '_' "
        "ignored: May-Bank is MAYBANK)"))]
    recipient: PhoneIn
    route: Annotated[str, Meta(max_length=32, pattern=r"^\s*[A-Za-z0-9_.-]{1,32}\s*$", description=(
        "the route it arrived over (aggregator, SMSC or interconnect id); checked against "
        "SEKAT_SENDER_REGISTRY_FILE for a protected sender ID"))] | None = None
    text: Annotated[str, Meta(max_length=4096, pattern=NON_BLANK, description=(
        "the message text: read for links, never stored or logged"))] | None = None
    urls: Annotated[list[Annotated[str, Meta(max_length=2049)]], Meta(max_length=10, description=(
        "links the operator already extracted (http or https; a bare host is read as http)"))] | None = None


# -- reports (read and written on SEKAT_TOPIC_REPORTS) ----------------------------------------------------------
class Link(Struct, kw_only=True):
    """Another identifier of the same scam."""

    kind: Kind
    value: Annotated[str, Meta(max_length=512, pattern=NON_BLANK)]
    bank: Annotated[str, Meta(max_length=16, description="BIC of an account's bank")] | None = None


_Links = Annotated[list[Link], Meta(max_length=21, description=(
    "identifiers of the same scam (at most 20 on a filed report; a derived report carries its whole group)"))]
_TtlDays = Annotated[int, Meta(ge=0, le=MAX_DAYS, description="days until the report expires; 0: never")]


class HistoryItem(Struct, kw_only=True):
    """One earlier report on the same identifier, as a consolidated record carries it."""

    report_id: Id
    reported_at: InTime
    status: Status
    source: Annotated[str, Meta(max_length=64, pattern=NON_BLANK)]
    case_ref: Annotated[str, Meta(max_length=128)] | None = None
    reason: Annotated[str, Meta(max_length=512)] | None = None
    ttl_days: _TtlDays | None = None
    filed_by: Annotated[str, Meta(max_length=64)] | None = None
    links: _Links | None = None
    origin: Annotated[str, Meta(max_length=128)] | None = None
    origin_key: Annotated[str, Meta(max_length=520)] | None = None
    renewal: bool = False


# An account needs its bank.
_REPORT_BANK = {"if": {"properties": {"kind": {"const": "account"}}, "required": ["kind"]},
                "then": {"required": ["bank"], "properties": {"bank": {"type": "string"}}}}


class Through(Struct, kw_only=True):
    """The newest report a summary folds: it covers every report ordered at or before this one."""

    reported_at: InTime
    report_id: Id


class SourceTally(Struct, kw_only=True):
    source: Annotated[str, Meta(max_length=64, pattern=NON_BLANK)]
    count: Annotated[int, Meta(ge=1)]
    first_seen: InTime
    last_seen: InTime


class Standing(Struct, kw_only=True):
    source: Annotated[str, Meta(max_length=64, pattern=NON_BLANK)]
    until: Annotated[str, Meta(max_length=64, description=(
        "when the last of the source's reports since the last revocation expires; empty: never"))]


class EntryLink(Struct, kw_only=True):
    """A link as an entry keeps it: the identifier and the report that named it."""

    key: Annotated[str, Meta(max_length=100, description="account:BIC8:number or phone:+E164")]
    report_id: Id
    source: Annotated[str, Meta(max_length=64)]
    reported_at: InTime
    via: Annotated[str, Meta(max_length=100)] | None = None


class Summary(Struct, kw_only=True):
    """The reports on the identifier older than ``history``, folded (docs/intake.md "Bounded history")."""

    through: Through
    report_count: Annotated[int, Meta(ge=1)]
    first_seen: InTime
    sources: list[SourceTally]
    case_refs: Annotated[list[Annotated[str, Meta(max_length=128)]], Meta(max_length=32)]
    status: Status
    decisive: Annotated[HistoryItem, Meta(description="the report that set the status the folded reports leave")]
    standing: list[Standing]
    renewals: Annotated[int, Meta(ge=0)]
    links: list[EntryLink]


class Report(HistoryItem, kw_only=True):
    """A report on one identifier: the unit of the blocklist, keyed by its identifier key."""

    kind: Kind
    value: Annotated[str, Meta(max_length=512, pattern=NON_BLANK, description=(
        "phone number (any spelling), account number, e-wallet PROVIDER:ID, proxy TYPE:<32 hex digits of its "
        "keyed hash> (never a clear NRIC: the API hashes it), SMS sender ID, link (url) or domain; Sekat writes "
        "them normalised (E.164, digits, upper-case sender ID without separators, host/path, host)"))]
    bank: Annotated[str, Meta(max_length=16, description="BIC of the account's bank (accounts only)")] | None = None
    history: Annotated[list[HistoryItem], Meta(max_length=10_000, description=(
        "the identifier's most recent reports, in full (written by Sekat on a consolidated record)"))] | None = None
    summary: Annotated[Summary, Meta(description=(
        "its older reports, folded (written by Sekat on a consolidated record)"))] | None = None
    unlinks: Annotated[list[Link], Meta(min_length=1, max_length=100, description=(
        "identifiers no longer linked (purged or erased): every link to them leaves the entry, which the report "
        "does not otherwise change (written by Sekat only; status is not read, and it names no links and carries "
        "no history)"))] | None = None


# -- commands (SEKAT_TOPIC_FREEZE, SEKAT_TOPIC_BLOCK) -------------------------------------------------------------
class _Command(Struct, kw_only=True, tag_field="action"):
    command_id: CommandId
    issued_at: OutTime
    event_id: Annotated[str, Meta(description="the event (or release) the command comes from")]
    rule: Annotated[str, Meta(description="reason code of the strongest finding, e.g. payee-on-blocklist")]
    reasons: Reasons
    rules: RuleRefs | UnsetType = UNSET


class _BankCommand(_Command, kw_only=True):
    bank: Annotated[Bic8, Meta(description="the bank that must act (also the record key)")]
    account: AccountValue


class _TransferIds(_BankCommand, kw_only=True):
    transfer_id: str
    end_to_end_id: Annotated[str, Meta(description="ISO 20022 input only")] | UnsetType = UNSET
    tx_id: Annotated[str, Meta(description="ISO 20022 input only")] | UnsetType = UNSET
    uetr: Annotated[str, Meta(description="ISO 20022 input only")] | UnsetType = UNSET


_HoldUntil = Annotated[str, Meta(pattern=UTC_MS, description=(
    "when the hold ends (UTC; issued_at plus the policy's holds): the bank lets it lapse then"))]


class HoldTransfer(_TransferIds, kw_only=True, tag=Action.HOLD_TRANSFER.value):
    """The payer's bank stops this transfer (account: the payer's) until ``hold_until``."""

    hold_until: _HoldUntil


class FreezeAccount(_TransferIds, kw_only=True, tag=Action.FREEZE_ACCOUNT.value):
    """The account holder's bank freezes the listed account (account: the listed one)."""


class HoldAmount(_TransferIds, kw_only=True, tag=Action.HOLD_AMOUNT.value):
    """A lien of the disputed amount on the account, instead of a freeze, until ``hold_until``.

    Sekat releases it (RELEASE_ACCOUNT naming this account) at ``hold_until``, or earlier when an entry that
    caused it is revoked or expires.
    """

    amount: Annotated[str, Meta(pattern=r"^[0-9]+(\.[0-9]+)?$", description="decimal string")]
    currency: Annotated[str, Meta(description="the transfer's currency; empty when it named none")]
    hold_until: _HoldUntil


_EntryKey = Annotated[str, Meta(description=(
    "key of the entry that ended: account:BIC8:number, phone:+E164, wallet:PROVIDER:ID, proxy:TYPE:hash, "
    "sender:NAME, url:host/path or domain:host"))]
WALLET_VALUE = r"^[A-Z0-9]{2,16}:\+?[A-Z0-9]{4,34}$"
PROXY_VALUE = r"^(NRIC|PASSPORT|BRN):[0-9a-f]{32}$"
_Released = Literal["revoked", "expired", "hold_ended"]
_ReleaseRef = Annotated[str, Meta(description="the revocation, or for an expiry the report that set the status")]


class ReleaseAccount(_BankCommand, kw_only=True, tag=Action.RELEASE_ACCOUNT.value):
    """Lift the freezes, holds and liens this bank applied because of the entry (revoked or expired), or one
    lien whose hold ended (``released`` hold_ended).

    ``account`` is the entry's account, the E.164 number of a listed DuitNow mobile proxy (kind phone), a
    listed e-wallet (PROVIDER:ID, kind wallet) or hashed proxy (TYPE:hash, kind proxy), or for a lien the liened
    account.
    """

    account: Annotated[str, Meta(pattern=f"{ACCOUNT_VALUE}|{E164}|{WALLET_VALUE}|{PROXY_VALUE}")]
    identifier: _EntryKey
    kind: Kind
    released: _Released
    report_id: _ReleaseRef


class _TelcoCommand(_Command, kw_only=True):
    operator: Annotated[str, Meta(pattern=OPERATOR_OUT, description="the operator that must act (also the key)")]
    caller: Phone


class _CallIds(_TelcoCommand, kw_only=True):
    call_id: str
    callee: Phone
    type: Literal["voice", "sms"]


class BlockCall(_CallIds, kw_only=True, tag=Action.BLOCK_CALL.value):
    """The operator blocks this call or SMS."""


class LabelCall(_CallIds, kw_only=True, tag=Action.LABEL_CALL.value):
    """The operator delivers it with a "suspected scam" warning."""


class UnblockNumber(_TelcoCommand, kw_only=True, tag=Action.UNBLOCK_NUMBER.value):
    """Stop blocking or labelling the number (its entry was revoked or expired)."""

    identifier: _EntryKey
    kind: Literal["phone"]
    released: _Released
    report_id: _ReleaseRef


class _SmsCommand(_Command, kw_only=True):
    operator: Annotated[str, Meta(pattern=OPERATOR_OUT, description="the operator that must act (also the key)")]


class _SmsIds(_SmsCommand, kw_only=True):
    sender: Annotated[str, Meta(description="the SMS's sender: E.164 (sender_kind phone) or the sender ID")]
    sms_id: str
    recipient: Phone
    sender_kind: Literal["phone", "sender"]
    route: Annotated[str, Meta(description="the route it arrived over, when the event named one")] | UnsetType = UNSET


class BlockSms(_SmsIds, kw_only=True, tag=Action.BLOCK_SMS.value):
    """The operator drops this SMS."""


class LabelSms(_SmsIds, kw_only=True, tag=Action.LABEL_SMS.value):
    """The operator delivers this SMS with a "suspected scam" warning."""


class UnblockSms(_SmsCommand, kw_only=True, tag=Action.UNBLOCK_SMS.value):
    """Stop blocking or labelling SMS because of this entry (revoked or expired): its sender, link or domain."""

    value: Annotated[str, Meta(description="the entry's value: E.164, sender ID, host/path (url) or host (domain)")]
    identifier: _EntryKey
    kind: Kind
    released: _Released
    report_id: _ReleaseRef


BankCommand = HoldTransfer | FreezeAccount | HoldAmount | ReleaseAccount
TelcoCommand = BlockCall | LabelCall | UnblockNumber | BlockSms | LabelSms | UnblockSms
COMMANDS: dict[Action, type[_Command]] = {
    Action.HOLD_TRANSFER: HoldTransfer, Action.FREEZE_ACCOUNT: FreezeAccount, Action.HOLD_AMOUNT: HoldAmount,
    Action.RELEASE_ACCOUNT: ReleaseAccount, Action.BLOCK_CALL: BlockCall, Action.LABEL_CALL: LabelCall,
    Action.UNBLOCK_NUMBER: UnblockNumber, Action.BLOCK_SMS: BlockSms, Action.LABEL_SMS: LabelSms,
    Action.UNBLOCK_SMS: UnblockSms,
}


# -- audit records (SEKAT_TOPIC_DECISIONS) -------------------------------------------------------------------------
class Match(Struct, kw_only=True):
    """One rule that fired, and the blocklist evidence behind it (empty strings when none)."""

    rule: str
    version: int
    mode: Literal["enforce", "shadow"]
    code: str
    outcome: Outcome
    reason: str
    identifier: str
    status: Literal["", "reported", "confirmed", "revoked"]
    source: str
    case_ref: str


class EventSource(Struct, kw_only=True):
    topic: str
    partition: int
    offset: int


class Decision(Struct, kw_only=True):
    """The verdict on one event that any rule matched (enforce or shadow) or that a rule failed on."""

    event_id: str
    stream: Literal["transfers", "calls", "sms"]
    outcome: Annotated[Outcome, Meta(description="what enforce rules decided")]
    shadow_outcome: Annotated[Outcome, Meta(description="what shadow rules would have decided")]
    decided_at: OutTime
    policy_version: str
    rules: Annotated[list[str], Meta(description="id@version:mode of every rule that matched")]
    matches: list[Match]
    reasons: list[str]
    shadow_reasons: list[str]
    command_ids: list[uuid.UUID]
    report_ids: Annotated[list[str], Meta(description="automatic reports filed because of this event")]
    rule_errors: Annotated[list[str], Meta(description="ids of rules that failed on this event")]
    source: Annotated[EventSource, Meta(description="where the event was read")]


class ReleaseAudit(Struct, kw_only=True):
    """One entry that ended (revoked or expired) and the release commands sent for it."""

    event_id: Annotated[str, Meta(description="release:<ref>, also the record key")]
    stream: Literal["releases"]
    outcome: Literal["RELEASE"]
    decided_at: OutTime
    identifier: str
    released: _Released
    report_id: str
    source: str
    case_ref: str
    reason: str
    expires_at: str
    reasons: list[str]
    institutions: Annotated[list[str], Meta(description="ACTION|INSTITUTION of every release command")]
    command_ids: list[uuid.UUID]


_Dimension = Literal["entry", "rule", "source"]
_Target = Annotated[str, Meta(pattern=r"^(entry|rule|source):", description=(
    "entry:<identifier key>, rule:<rule id> or source:<agency>"))]


class _BrakeEvent(Struct, kw_only=True, tag_field="action"):
    event_id: Annotated[str, Meta(description="brake-<uuid5>, also the record key")]
    stream: Literal["brake"]
    target: _Target
    dimension: _Dimension
    at: OutTime
    by: Annotated[str, Meta(description="the worker that tripped it, or the agency and API key that re-armed it")]
    reason: str


_EntryStatus = Annotated[Literal["reported", "confirmed", "unlisted"], Meta(description=(
    "an entry's status when it tripped (its limit depends on its kind and status); entry trips only"))]


class BrakeTrip(_BrakeEvent, kw_only=True, tag="trip"):
    """The safety brake switched a target to shadow mode."""

    count: Annotated[int, Meta(description="commands the target drove in the window")]
    limit: int
    window_s: int
    status: _EntryStatus | None = None


class TripState(Struct, kw_only=True):
    """A trip as the brake keeps it."""

    target: str
    dimension: _Dimension
    count: int
    limit: int
    window_s: int
    tripped_at: OutTime
    tripped_by: str
    status: _EntryStatus | None = None


class BrakeRearm(_BrakeEvent, kw_only=True, tag="rearm"):
    """An authority re-armed a target (POST /v1/brake/rearm): its matches send commands again."""

    trip: Annotated[TripState, Meta(description="the trip it lifted")]


class BrakeLift(_BrakeEvent, kw_only=True, tag="lift"):
    """A worker lifted an entry's trip because an authority confirmed the entry after it tripped under a lower
    status (reported or unlisted): its matches send commands again, counted under the confirmed limit."""

    trip: Annotated[TripState, Meta(description="the trip it lifted")]


BrakeAudit = BrakeTrip | BrakeRearm | BrakeLift


# -- appeals (SEKAT_TOPIC_APPEALS) ------------------------------------------------------------------------------------
class AppealContact(Struct, kw_only=True):
    """How to reach the appellant: personal data, shown only to the agencies the appeal is routed to."""

    name: Annotated[str, Meta(max_length=128)]
    email: Annotated[str, Meta(max_length=254)]
    phone: Annotated[str, Meta(max_length=32)]


class AppealStep(Struct, kw_only=True):
    """One step of an appeal: filed by the appellant, acknowledged (review), upheld or rejected by an agency."""

    action: Literal["filed", "review", "upheld", "rejected"]
    at: OutTime
    by: Annotated[str, Meta(description="the agency; for filed, the appellant's kind (person, bank, telco)")]
    key_id: Annotated[str, Meta(description="the agency's API key; empty for filed")]
    reason: str


_AppealTime = Annotated[str, Meta(pattern="^$|" + UTC_MS, description="UTC, milliseconds, Z suffix; empty until set")]


class Appeal(Struct, kw_only=True):
    """An appeal against a listing, whole: each record holds every step so far (the topic is compacted)."""

    appeal_id: Annotated[str, Meta(pattern=r"^ap-[0-9a-f]{16}$", description="also the record key")]
    identifier: Annotated[str, Meta(pattern=r"^(phone|account):", description="the appealed entry's key")]
    status: Literal["received", "under_review", "upheld", "rejected"]
    appellant: Annotated[Literal["person", "bank", "telco"], Meta(description=(
        "the listed person, or their bank or telco on their behalf"))]
    contact: AppealContact
    grounds: Annotated[str, Meta(max_length=4000)]
    evidence_ref: Annotated[str, Meta(max_length=256, description="a reference to evidence held elsewhere")]
    agencies: Annotated[list[str], Meta(description="the agencies whose reports kept the entry listed when filed")]
    rule: Annotated[Literal["own-report", "any-agency"], Meta(description="SEKAT_APPEAL_RULE when filed")]
    filed_at: OutTime
    acknowledge_by: OutTime
    decide_by: OutTime
    token_sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$", description=(
        "SHA-256 of the status token given to the appellant, hex"))]
    events: list[AppealStep]
    decided_at: _AppealTime
    reason: Annotated[str, Meta(description="the deciding agency's reason; empty while open")]
    revocation_id: Annotated[str, Meta(description="upheld: the report_id of the revocation filed")]
    reappeal_after: _AppealTime
# -- audit records (SEKAT_TOPIC_AUDIT) --------------------------------------------------------------------------------
_Subject = Annotated[str, Meta(pattern=r"^hmac-sha256:[0-9a-f]{64}$", description=(
    "the identifier key's keyed hash (HMAC-SHA256 with SEKAT_AUDIT_KEY), never the identifier itself"))]


class _AuditEvent(Struct, kw_only=True, tag_field="action"):
    audit_id: Annotated[uuid.UUID, Meta(description="also the record key")]
    at: OutTime
    by: Annotated[str, Meta(description=(
        "who: api:<agency>:<API key id> for the agency API, cli:<operator> for the command line"))]
    kind: Kind
    subject: _Subject


class EntryRead(_AuditEvent, kw_only=True, tag="read"):
    """An entry was read, found or not: through the agency API (GET /v1/entries; GET /v1/brake, for each entry
    its answer names) or from the command line (sekat blocklist show)."""

    purpose: Annotated[str, Meta(description="why, as the caller gave it (the required purpose parameter)")]
    found: bool


class Erasure(_AuditEvent, kw_only=True, tag="erase"):
    """An operator erased an identifier's personal data (``sekat privacy erase``): what is left of it."""

    reason: Annotated[str, Meta(description="why, as the operator gave it (free text, no identifier)")]


Audit = EntryRead | Erasure


# -- dead letters (SEKAT_TOPIC_DEADLETTER) ---------------------------------------------------------------------------
class DeadLetterSource(Struct, kw_only=True):
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None


class DeadLetter(Struct, kw_only=True):
    """An input record Sekat could not decide, with the reason and the original bytes."""

    reason: DeadLetterReason
    message: Annotated[str, Meta(description="what is wrong, naming the field")]
    field: Annotated[str, Meta(description="the field at fault (a JSON path, an XPath, or a CDR column); may be empty")]
    source: DeadLetterSource
    dead_at: OutTime
    original_b64: Annotated[str, Meta(extra_json_schema={"contentEncoding": "base64"}, description=(
        "the record's value, base64: all of it, or its first SEKAT_DEADLETTER_ORIGINAL_BYTES bytes when "
        "original_truncated; empty when the dead letter itself was refused by Kafka"))]
    original_size: Annotated[int, Meta(ge=0, description="the size of the record's whole value, in bytes")]
    original_sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$", description=(
        "SHA-256 of the record's whole value, hex"))]
    original_truncated: Annotated[bool, Meta(description="original_b64 holds only the start of the value")]
    original_key_b64: Annotated[str, Meta(extra_json_schema={"contentEncoding": "base64"}, description=(
        "the record's key, base64 (its first 1024 bytes)"))] | None
    original_key_size: Annotated[int, Meta(ge=0, description="the size of the record's whole key, in bytes")]


# -- commands the relay gave up (SEKAT_TOPIC_UNDELIVERED) ---------------------------------------------------------------
class UndeliveredSource(Struct, kw_only=True):
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None


class UndeliveredCommand(Struct, kw_only=True):
    """A command ``sekat relay`` gave up delivering to an institution's webhook, with the last error."""

    command_id: Annotated[str, Meta(description="the command's command_id, sent as webhook-id; empty if it had none")]
    institution: Annotated[str, Meta(description="the institution's id in SEKAT_INSTITUTIONS_FILE (the record key)")]
    url: Annotated[str, Meta(description="the endpoint the relay posted to")]
    error: Annotated[str, Meta(max_length=1000, description=(
        "the last error: HTTP status and the start of the answer, a timeout, a connection error, or the open "
        "circuit breaker with the institution's last error"))]
    attempts: Annotated[int, Meta(ge=0, description="attempts made for this command")]
    first_attempt_at: OutTime
    given_up_at: OutTime
    source: UndeliveredSource
    command_b64: Annotated[str, Meta(extra_json_schema={"contentEncoding": "base64"}, description=(
        "the command record's value as it was on its topic (the webhook body), base64"))]


# -- feedback (SEKAT_TOPIC_FEEDBACK) and notices to the listing agency (SEKAT_TOPIC_NOTICES) ----------------------------
FeedbackOutcome = Literal["executed", "not_found", "already_closed", "false_positive", "customer_is_victim",
                          "accepted", "rejected", "pending"]


class Feedback(Struct, kw_only=True):
    """An institution's word on a command it received: the latest one per command is kept (compacted topic)."""

    command_id: Annotated[uuid.UUID, Meta(description="the command's command_id (the webhook-id); the record key")]
    institution: Annotated[str, Meta(pattern=OPERATOR_OUT, description="the institution the command was for")]
    outcome: Annotated[FeedbackOutcome, Meta(description=(
        "executed, not_found, already_closed, false_positive, customer_is_victim (POST /v1/feedback); "
        "accepted, rejected, pending (a pacs.002 status report on a held payment)"))]
    note: Annotated[str, Meta(max_length=1000, description="free text from the institution; may be empty")]
    case_ref: Annotated[str, Meta(max_length=128, description="the institution's case reference; may be empty")]
    reason_code: Annotated[str, Meta(max_length=35, description=(
        "pacs.002: the status reason code (ISO 20022 ExternalStatusReason1Code, e.g. AC04); else empty"))]
    action: Annotated[str, Meta(description="the command's action, e.g. FREEZE_ACCOUNT")]
    issued_at: Annotated[OutTime, Meta(description="when the command was issued")]
    received_at: OutTime
    entries: Annotated[list[str], Meta(description="keys of the entries behind the command")]
    via: Annotated[Literal["api", "pacs.002"], Meta(description="how it came: the agency API or a status report")]
    by: Annotated[str, Meta(description="the API key id that sent it (api:<key id>), or the pacs.002 message id")]


class Notice(Struct, kw_only=True):
    """Tells the agency that listed an entry what institutions' feedback did to it (keyed by the entry key)."""

    notice_id: Annotated[str, Meta(description="notice-<uuid5>: the same for the same notice sent again")]
    notice: Annotated[Literal["review", "victim_mule"], Meta(description=(
        "review: false_positive feedback from SEKAT_FEEDBACK_FALSE_POSITIVE_INSTITUTIONS institutions put the "
        "entry into review (its matches are in shadow until re-armed); victim_mule: a mule account's holder "
        "was reported a victim (the account stays frozen)"))]
    identifier: Annotated[str, Meta(description="the entry: account:BIC8:number or phone:+E164")]
    agency: Annotated[str, Meta(description="the source of the entry's status: the agency that listed it")]
    case_ref: Annotated[str, Meta(description="the entry's case reference; may be empty")]
    at: OutTime
    institutions: Annotated[list[str], Meta(description="the institutions whose feedback led to it")]
    command_ids: list[uuid.UUID]
    notes: Annotated[list[str], Meta(description="their notes, as they wrote them")]


# -- institutions configured for the relay (SEKAT_TOPIC_INSTITUTIONS) ------------------------------------------------
class InstitutionConfig(Struct, kw_only=True):
    """An institution ``sekat relay`` delivers to, as PUT /v1/institutions/{id} configured it (keyed by its id;
    a record with no value removes it). Holds its signing secrets: readable by the relay's principal alone."""

    id: Annotated[str, Meta(pattern=OPERATOR_OUT, description="BIC8 or operator code, as its commands are keyed")]
    url: Annotated[str, Meta(pattern=r"^https?://", description="its endpoint (https; http://127.0.0.1 for tests)")]
    secrets: Annotated[list[Annotated[str, Meta(pattern=r"^whsec_[A-Za-z0-9+/=]+$")]], Meta(
        min_length=1, max_length=2, description="one or two whsec_ signing secrets, the new one first")]
    updated_at: OutTime
    updated_by: Annotated[str, Meta(description="the agency and API key that configured it")]


# -- the schema files --------------------------------------------------------------------------------------------------
_ANNOTATED_REPORT = Annotated[Report, Meta(extra_json_schema=_REPORT_BANK)]

# file stem -> (title, type)
MESSAGES: dict[str, tuple[str, Any]] = {
    "transfer": ("Transfer", Transfer),
    "call": ("Call", Call),
    "call-attempt": ("CallAttempt", CallAttempt),
    "sms": ("Sms", Sms),
    "report": ("Report", _ANNOTATED_REPORT),
    "bank-command": ("BankCommand", BankCommand),
    "telco-command": ("TelcoCommand", TelcoCommand),
    "decision": ("Decision", Decision),
    "release-audit": ("ReleaseAudit", ReleaseAudit),
    "brake-audit": ("BrakeAudit", BrakeAudit),
    "appeal": ("Appeal", Appeal),
    "audit": ("Audit", Audit),
    "deadletter": ("DeadLetter", DeadLetter),
    "undelivered-command": ("UndeliveredCommand", UndeliveredCommand),
    "feedback": ("Feedback", Feedback),
    "notice": ("Notice", Notice),
    "institution": ("InstitutionConfig", InstitutionConfig),
}
_DESCRIPTIONS = {
    "bank-command": "A command to a bank (SEKAT_TOPIC_FREEZE, keyed by the bank's BIC8), by action.",
    "telco-command": "A command to a telco (SEKAT_TOPIC_BLOCK, keyed by the operator), by action.",
    "brake-audit": "A safety brake audit record on SEKAT_TOPIC_DECISIONS, by action (trip, rearm, lift).",
    "audit": "An audit record on SEKAT_TOPIC_AUDIT, by action (read, erase).",
}


def _draft7(node: Any) -> Any:
    """``node`` with each ``$ref`` that has sibling keywords wrapped in ``allOf`` (draft-07 ignores siblings)."""
    if isinstance(node, list):
        return [_draft7(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _draft7(value) for key, value in node.items()}
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}, *out.get("allOf", [])]
    return out


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema of message ``name`` (a key of ``MESSAGES``)."""
    title, kind = MESSAGES[name]
    (root,), defs = msgspec.json.schema_components([kind], ref_template="#/definitions/{name}")
    head: dict[str, Any] = {"$schema": JSON_SCHEMA_DRAFT, "title": title}
    ref = root.get("$ref", "")
    target = ref.rpartition("/")[2]
    if ref and target in defs and f'"{ref}"' not in json.dumps({k: v for k, v in defs.items() if k != target}):
        body = defs.pop(target) | {k: v for k, v in root.items() if k != "$ref"}  # inline the root struct
        body.pop("title", None)
    else:
        body = root
        head["description"] = _DESCRIPTIONS[name]
    out = head | body
    if defs:
        out["definitions"] = defs
    result: dict[str, Any] = _draft7(out)
    return result


def render(name: str) -> str:
    return json.dumps(schema(name), indent=2, ensure_ascii=False) + "\n"


def files() -> dict[str, str]:
    """File name -> content of every schema file."""
    return {f"{name}.schema.json": render(name) for name in MESSAGES}


def write(directory: Path) -> list[str]:
    """Write every schema file into ``directory``; returns the names of the files that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in files().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    return changed


def check(directory: Path) -> list[str]:
    """One line per schema file in ``directory`` that differs from what the types give; empty when all match."""
    problems = []
    expected = files()
    for name, text in expected.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: stale (differs from sekat/contract.py)")
    for path in sorted(directory.glob("*.schema.json")):
        if path.name not in expected:
            problems.append(f"{path}: not a message of sekat/contract.py (remove it)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sekat.contract",
                                     description="Write or check the JSON Schemas of Sekat's messages.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="DIR", type=Path, help="write the schema files into DIR")
    mode.add_argument("--check", metavar="DIR", type=Path, help="exit 1 if a schema file in DIR is stale")
    args = parser.parse_args(argv)
    if args.write is not None:
        changed = write(args.write)
        print(f"{len(changed)} of {len(MESSAGES)} schema files written to {args.write}"
              + (f": {', '.join(changed)}" if changed else ""))
        return 0
    problems = check(args.check)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"regenerate with: python -m sekat.contract --write {args.check}", file=sys.stderr)
        return 1
    print(f"{len(MESSAGES)} schema files in {args.check} match sekat/contract.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
