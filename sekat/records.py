"""Sekat's domain types: the events, reports, entries, decisions and commands that flow through it.

Their fields are those of the JSON contract (docs/contract.md). Events are
parsed once at the edge (``sekat.decode``) into these frozen records; rules
receive them and return ``Decision``s holding ``Command``s; the shell
serialises those back to JSON.

    events        Transfer (its Party and Proxy), Call, Sms
    blocklist     Report (one report on one identifier: the unit of sekat.reports), Status,
                  Entry (an identifier as the serving index holds it), Link, Summary (an
                  entry's older reports folded: SourceTally, Standing)
    output        Decision (its Matches), Command (its Action)
    the edge      Rejection (why an input is dead-lettered), Skipped (a message that is not an
                  event; a pacs.002's PaymentStatus), Source (the Kafka record an input came from)

The records built for every event (``Transfer``, ``Call``, their parties and
the ``Decision`` with its ``Match``es) are frozen ``msgspec.Struct``s, several times cheaper to
build than frozen dataclasses and just as immutable, comparable and hashable.
The events (``Transfer``, ``Call``, ``Sms``, ``Party``, ``Proxy``) are also
left out of the garbage collector's tracking (``gc=False``): they hold only
strings, numbers, times and other immutable records, so they can never be part
of a reference cycle, and a worker makes thousands a second for the collector
to walk otherwise. The others are frozen dataclasses.
"""

from __future__ import annotations

import enum
import functools
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import msgspec

from sekat.identifiers import AccountId, PhoneNumber, ProxyId, WalletId
from sekat.senders import Sender
from sekat.urls import Domain, Url

# Fixed namespace for command ids: uuid5(namespace, "event_id|action|target").
COMMAND_NAMESPACE = uuid.UUID("6f1d2c8e-5b7a-5e1c-9a43-5e4b41540001")


@functools.lru_cache(maxsize=16384)
def iso(ts: datetime) -> str:
    """UTC timestamp with milliseconds and a Z suffix, as in the contract.

    Cached: applying a report formats its ``reported_at`` several times (its order, its history item, the
    entry's fields), ~2 µs each uncached."""
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Party(msgspec.Struct, frozen=True, gc=False):
    bank: str
    account: AccountId | None
    phone: PhoneNumber | None = None
    wallet: WalletId | None = None  # an e-wallet account (provider + wallet id) the party pays from / into


class Proxy(msgspec.Struct, frozen=True, gc=False):
    type: str
    value: str  # for a hashed type (NRIC, PASSPORT, BRN) the hash ``TYPE:digest``, never the clear value
    phone: PhoneNumber | None  # set when type is MOBILE
    hashed: ProxyId | None = None  # set when type is NRIC, PASSPORT or BRN


class Transfer(msgspec.Struct, frozen=True, gc=False):
    event_id: str
    occurred_at: datetime
    transfer_id: str
    amount: Decimal
    payer: Party
    payee: Party
    payee_proxy: Proxy | None = None
    channel: str | None = None
    currency: str | None = None
    # ISO 20022 payment ids (set by the pacs.008 adapter, None for contract JSON): the bank matches
    # a command to its payment by these, so they travel in the command's details.
    end_to_end_id: str | None = None
    tx_id: str | None = None
    uetr: str | None = None

    def command_details(self) -> tuple[tuple[str, str], ...]:
        """What a bank command carries to name this transfer: ``transfer_id``, and the ISO 20022 ids when set."""
        details = [("transfer_id", self.transfer_id)]
        if self.end_to_end_id is not None:
            details.append(("end_to_end_id", self.end_to_end_id))
        if self.tx_id is not None:
            details.append(("tx_id", self.tx_id))
        if self.uetr is not None:
            details.append(("uetr", self.uetr))
        return tuple(details)

    def identifiers(self) -> list[AccountId | PhoneNumber | WalletId | ProxyId]:
        ids: list[AccountId | PhoneNumber | WalletId | ProxyId] = []
        proxy = self.payee_proxy
        for ident in (self.payee.account, self.payer.account, proxy.phone if proxy else None,
                      self.payee.wallet, self.payer.wallet, proxy.hashed if proxy else None):
            if ident is not None and not getattr(ident, "protected", False):
                ids.append(ident)
        return ids

    def keys(self) -> list[str]:
        """The keys of ``identifiers()``, in its order: what a batch looks up. Written out, as it runs for every
        transfer (only a phone can be protected)."""
        payee, payer, proxy = self.payee, self.payer, self.payee_proxy
        keys = []
        if payee.account is not None:
            keys.append(payee.account.key)
        if payer.account is not None:
            keys.append(payer.account.key)
        if proxy is not None and proxy.phone is not None and not proxy.phone.protected:
            keys.append(proxy.phone.key)
        if payee.wallet is not None:
            keys.append(payee.wallet.key)
        if payer.wallet is not None:
            keys.append(payer.wallet.key)
        if proxy is not None and proxy.hashed is not None:
            keys.append(proxy.hashed.key)
        return keys


class Call(msgspec.Struct, frozen=True, gc=False):
    event_id: str
    occurred_at: datetime
    call_id: str
    operator: str
    caller: PhoneNumber
    callee: PhoneNumber
    type: str = "voice"
    caller_network: str | None = None
    # CLI presentation: "allowed", "restricted" or "unavailable" (CDR / call-attempt adapters);
    # the network still knows a restricted caller, so it is screened all the same.
    presentation: str | None = None
    # STIR/SHAKEN attestation of the caller ID by the originating carrier: "A" (full: the carrier knows the
    # customer and their right to the number), "B" (partial), "C" (gateway: origin unknown), None (absent).
    attestation: str | None = None
    # Seconds: talk time of an answered call, ring time of an unanswered one (None: not given); with
    # ``answered`` (None: not given) they tell a one-ring (wangiri) call from a conversation.
    duration: float | None = None
    answered: bool | None = None

    def identifiers(self) -> list[AccountId | PhoneNumber]:
        return [] if self.caller.protected else [self.caller]

    def keys(self) -> list[str]:
        """The keys of ``identifiers()``: what a batch looks up."""
        return [] if self.caller.protected else [self.caller.key]


class Sms(msgspec.Struct, frozen=True, gc=False):
    """One SMS as the operator's SMS firewall sees it. The text is not kept: only the links found in it."""

    event_id: str
    occurred_at: datetime
    sms_id: str
    operator: str
    sender: Sender  # a phone number, or an alphanumeric sender ID
    recipient: PhoneNumber
    route: str | None = None  # the route it arrived over (aggregator, SMSC, interconnect id), upper case
    links: tuple[Url, ...] = ()
    # The routes the sender is registered on when it is a protected sender ID (SEKAT_SENDER_REGISTRY_FILE),
    # else None: set by the decoder from the registry, read by the sender_impersonation rule.
    registered_routes: frozenset[str] | None = None

    def identifiers(self) -> list[PhoneNumber | Sender | Url | Domain]:
        ids: list[PhoneNumber | Sender | Url | Domain] = [] if self.sender.protected else [self.sender]
        for link in self.links:
            ids.append(link)
            ids.extend(link.domains())
        return ids

    def keys(self) -> list[str]:
        """The keys of ``identifiers()``: what a batch looks up."""
        return [ident.key for ident in self.identifiers()]


class Status(str, enum.Enum):
    REPORTED = "reported"
    CONFIRMED = "confirmed"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Report:
    """One report on one identifier (docs/contract.md "Reports"): the unit of the ``sekat.reports`` topic.

    ``history`` is empty on a report as an agency files it. The reports agent
    sets it on a *consolidated* report (every report known for the key), so the
    one record that survives compaction still rebuilds the whole entry.
    ``filed_by`` is who filed it (API key id, ``cli`` or ``import``): with
    ``source``, ``reported_at`` and ``reason`` it is the audit trail.

    ``links`` are the keys of other identifiers of the same scam (mule
    accounts, phone numbers, a DuitNow proxy) named by the reporter. A report
    the reports agent derives for a linked identifier (``blocklist.links``)
    names the report it follows in ``origin`` (its id) and ``origin_key``.
    ``renewal`` marks a renewal by an authority (``POST /v1/renewals``).

    ``unlinks`` makes the report an *unlink*: written by Sekat when an
    identifier is purged or erased, on each entry linked to it, it removes
    every link to those keys from the entry and its reports
    (``blocklist.lifecycle.unlinked``) and is itself no report on the entry.
    """

    report_id: str
    reported_at: datetime
    kind: str  # "phone", "account", "wallet", "proxy", "sender", "url" or "domain"
    value: str  # E.164 for phones, digits for accounts, PROVIDER:ID for wallets, TYPE:hash for proxies, the
    #             normalised value for the others
    status: Status
    source: str
    bank: str = ""
    case_ref: str = ""
    reason: str = ""
    ttl_days: int = 0
    filed_by: str = ""
    history: tuple["Report", ...] = ()
    summary: "Summary | None" = None  # a consolidated report's reports older than its history, folded
    links: tuple[str, ...] = ()  # keys (``kind:value``) of identifiers of the same scam
    origin: str = ""  # derived for a link: the id of the report it follows
    origin_key: str = ""  # derived for a link: the key that report was filed on
    renewal: bool = False
    unlinks: tuple[str, ...] = ()  # keys no longer linked: an unlink (docs/contract.md, Reports)
    # The index key (``kind:value``, ``account:BANK:value``), made once: the intake asks for it many times a report.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"account:{self.bank}:{self.value}" if self.kind == "account"
                           else f"{self.kind}:{self.value}")

    def without_history(self) -> "Report":
        return replace(self, history=(), summary=None) if self.history or self.summary else self

    def history_item(self) -> dict[str, Any]:
        """The fields one history item keeps (who, when, what, why, linked to what)."""
        body = {"report_id": self.report_id, "reported_at": iso(self.reported_at), "status": self.status.value,
                "source": self.source, "case_ref": self.case_ref, "reason": self.reason,
                "ttl_days": self.ttl_days, "filed_by": self.filed_by}
        self._extensions(body)
        return body

    def _extensions(self, body: dict[str, Any]) -> None:
        # Written only when set: a report without links, origin or renewal has the contract's base fields alone.
        if self.links:
            body["links"] = [key_object(k) for k in self.links]
        if self.origin:
            body["origin"] = self.origin
            body["origin_key"] = self.origin_key
        if self.renewal:
            body["renewal"] = True

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"report_id": self.report_id, "reported_at": iso(self.reported_at),
                                "kind": self.kind}
        if self.kind == "account":
            body["bank"] = self.bank
        body.update(value=self.value, status=self.status.value, source=self.source, case_ref=self.case_ref,
                    reason=self.reason, ttl_days=self.ttl_days, filed_by=self.filed_by)
        self._extensions(body)
        if self.unlinks:
            body["unlinks"] = [key_object(k) for k in self.unlinks]
        if self.history:
            body["history"] = [r.history_item() for r in self.history]
        if self.summary is not None:
            body["summary"] = self.summary.to_json()
        return body

    @classmethod
    def from_history_item(cls, key: str, data: dict[str, Any]) -> "Report":
        """A history item back into a Report of ``key`` (history items are written by Sekat itself)."""
        kind, _, rest = key.partition(":")
        bank, value = rest.split(":", 1) if kind == "account" else ("", rest)
        ts = datetime.fromisoformat(str(data["reported_at"]))
        return cls(report_id=str(data["report_id"]), reported_at=ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc),
                   kind=kind, value=value, status=Status(data["status"]), source=str(data.get("source", "")),
                   bank=bank, case_ref=str(data.get("case_ref", "")), reason=str(data.get("reason", "")),
                   ttl_days=int(data.get("ttl_days", 0)), filed_by=str(data.get("filed_by", "")),
                   links=tuple(object_key(o) for o in data.get("links", ())), origin=str(data.get("origin", "")),
                   origin_key=str(data.get("origin_key", "")), renewal=bool(data.get("renewal", False)))


def key_object(key: str) -> dict[str, str]:
    """An identifier key as the contract's ``{kind, value[, bank]}`` object."""
    kind, _, rest = key.partition(":")
    if kind == "account":
        bank, _, value = rest.partition(":")
        return {"kind": kind, "bank": bank, "value": value}
    return {"kind": kind, "value": rest}


def object_key(data: dict[str, Any]) -> str:
    """The key of a ``{kind, value[, bank]}`` object written by Sekat itself (already normalised)."""
    kind = str(data["kind"])
    return f"account:{data['bank']}:{data['value']}" if kind == "account" else f"{kind}:{data['value']}"


@dataclass(frozen=True, slots=True)
class Link:
    """One identifier an entry is linked to, and where the link came from (the agency API shows it)."""

    key: str
    report_id: str  # the report on this entry that names the link
    source: str  # the agency that filed it
    reported_at: str
    via: str = ""  # for a link learnt through another member: the key whose report it follows

    def to_json(self) -> dict[str, Any]:
        return {**key_object(self.key), "key": self.key, "report_id": self.report_id, "source": self.source,
                "reported_at": self.reported_at, "via": self.via}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Link":
        return cls(str(data["key"]), str(data.get("report_id", "")), str(data.get("source", "")),
                   str(data.get("reported_at", "")), str(data.get("via", "")))


@dataclass(frozen=True, slots=True)
class SourceTally:
    """How many of the folded reports one source filed, and when the first and last were filed."""

    source: str
    count: int
    first_seen: str
    last_seen: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "count": self.count, "first_seen": self.first_seen,
                "last_seen": self.last_seen}


@dataclass(frozen=True, slots=True)
class Standing:
    """One source's folded reports since the last revocation: when the last of them expires ("" = never)."""

    source: str
    until: str

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "until": self.until}


@dataclass(frozen=True, slots=True)
class Summary:
    """The reports on one identifier older than those kept in full, folded (``blocklist.lifecycle``).

    It covers every report ordered at or before ``through`` (``reported_at``,
    ``report_id``): what the entry needs from them (the status they leave and
    the report that set it, what keeps it listed per source, renewals, links)
    and, for the people who read an entry, counts per source with first and
    last seen, and the first ``CASE_REFS_KEPT`` case references.
    """

    through_at: str
    through_id: str
    report_count: int
    first_seen: str
    sources: tuple[SourceTally, ...]
    case_refs: tuple[str, ...]
    status: Status
    decisive: Report
    standing: tuple[Standing, ...]
    renewals: int
    links: tuple[Link, ...]

    @property
    def through(self) -> tuple[str, str]:
        return (self.through_at, self.through_id)

    def to_json(self) -> dict[str, Any]:
        return {"through": {"reported_at": self.through_at, "report_id": self.through_id},
                "report_count": self.report_count, "first_seen": self.first_seen,
                "sources": [t.to_json() for t in self.sources], "case_refs": list(self.case_refs),
                "status": self.status.value, "decisive": self.decisive.history_item(),
                "standing": [s.to_json() for s in self.standing], "renewals": self.renewals,
                "links": [link.to_json() for link in self.links]}

    @classmethod
    def from_json(cls, key: str, data: dict[str, Any]) -> "Summary":
        """A summary written by Sekat (``decode.reports`` checks one read from the topic first)."""
        through = data["through"]
        return cls(
            through_at=str(through["reported_at"]), through_id=str(through["report_id"]),
            report_count=int(data["report_count"]), first_seen=str(data["first_seen"]),
            sources=tuple(SourceTally(str(t["source"]), int(t["count"]), str(t["first_seen"]), str(t["last_seen"]))
                          for t in data.get("sources", ())),
            case_refs=tuple(str(c) for c in data.get("case_refs", ())), status=Status(data["status"]),
            decisive=Report.from_history_item(key, data["decisive"]),
            standing=tuple(Standing(str(s["source"]), str(s["until"])) for s in data.get("standing", ())),
            renewals=int(data.get("renewals", 0)),
            links=tuple(Link.from_json(link) for link in data.get("links", ())),
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """One identifier on the blocklist, as the serving index holds it.

    Everything but ``key``, ``history`` and ``summary`` is derived from them
    (every report on the key: the recent ones in full, the older ones folded)
    by ``blocklist.lifecycle.entry_from_history``.
    """

    key: str
    status: Status
    source: str
    reason: str = ""
    case_ref: str = ""
    report_id: str = ""
    reported_at: str = ""
    expires_at: str = ""  # ISO-8601 UTC; empty means no expiry
    sources: tuple[str, ...] = ()
    report_count: int = 1
    case_refs: tuple[str, ...] = ()
    first_seen: str = ""
    last_seen: str = ""
    history: tuple[Report, ...] = ()  # the most recent reports, in full
    links: tuple[Link, ...] = ()  # identifiers of the same scam (``blocklist.links``)
    renewals: int = 0  # renewals by an authority since the last revocation
    summary: Summary | None = None  # the reports older than ``history``, folded

    def active_at(self, now: datetime) -> bool:
        if self.status is Status.REVOKED:
            return False
        if self.expires_at:
            return datetime.fromisoformat(self.expires_at) > now
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "status": self.status.value, "source": self.source, "reason": self.reason,
            "case_ref": self.case_ref, "report_id": self.report_id, "reported_at": self.reported_at,
            "expires_at": self.expires_at, "sources": list(self.sources), "report_count": self.report_count,
            "case_refs": list(self.case_refs), "first_seen": self.first_seen, "last_seen": self.last_seen,
            "history": [r.history_item() for r in self.history],
            "links": [link.to_json() for link in self.links], "renewals": self.renewals,
            **({"summary": self.summary.to_json()} if self.summary is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Entry":
        key = str(data["key"])
        return cls(
            key=key, status=Status(data["status"]), source=str(data.get("source", "")),
            reason=str(data.get("reason", "")), case_ref=str(data.get("case_ref", "")),
            report_id=str(data.get("report_id", "")), reported_at=str(data.get("reported_at", "")),
            expires_at=str(data.get("expires_at", "")), sources=tuple(data.get("sources", ())),
            report_count=int(data.get("report_count", 1)), case_refs=tuple(data.get("case_refs", ())),
            first_seen=str(data.get("first_seen", "")), last_seen=str(data.get("last_seen", "")),
            history=tuple(Report.from_history_item(key, h) for h in data.get("history", ())),
            links=tuple(Link.from_json(link) for link in data.get("links", ())),
            renewals=int(data.get("renewals", 0)),
            summary=Summary.from_json(key, data["summary"]) if data.get("summary") else None,
        )


class Action(str, enum.Enum):
    HOLD_TRANSFER = "HOLD_TRANSFER"
    FREEZE_ACCOUNT = "FREEZE_ACCOUNT"
    HOLD_AMOUNT = "HOLD_AMOUNT"  # a lien of ``amount``/``currency`` on an account, rather than a freeze
    BLOCK_CALL = "BLOCK_CALL"
    LABEL_CALL = "LABEL_CALL"
    RELEASE_ACCOUNT = "RELEASE_ACCOUNT"  # the entry was revoked or expired: lift the freeze / holds it caused
    UNBLOCK_NUMBER = "UNBLOCK_NUMBER"  # the entry was revoked or expired: stop blocking / labelling the number
    BLOCK_SMS = "BLOCK_SMS"  # an operator drops an SMS
    LABEL_SMS = "LABEL_SMS"  # an operator delivers an SMS with a warning
    UNBLOCK_SMS = "UNBLOCK_SMS"  # the entry was revoked or expired: stop blocking / labelling SMS carrying it

    @property
    def for_bank(self) -> bool:
        return self in (Action.HOLD_TRANSFER, Action.FREEZE_ACCOUNT, Action.HOLD_AMOUNT, Action.RELEASE_ACCOUNT)

    @property
    def for_sms(self) -> bool:
        return self in (Action.BLOCK_SMS, Action.LABEL_SMS, Action.UNBLOCK_SMS)


@dataclass(frozen=True, slots=True)
class Command:
    """An instruction to one institution: ``institution`` is its BIC (banks) or operator (telcos)."""

    action: Action
    institution: str
    target: str  # account value (banks), caller E.164 (calls), sender (SMS) or released value: part of the id
    event_id: str
    rule: str
    reasons: tuple[str, ...]
    issued_at: datetime
    details: tuple[tuple[str, str], ...] = ()  # transfer_id / call_id / callee ...
    rules: tuple[str, ...] = ()  # ``id@version`` of every enforce rule behind the command
    # Not on the wire: the keys of the blocklist entries whose end releases this command's lien (HOLD_AMOUNT),
    # read by the release bookkeeping (``release.sweep.who_acted``).
    causes: tuple[str, ...] = ()

    @property
    def command_id(self) -> str:
        return str(uuid.uuid5(COMMAND_NAMESPACE, f"{self.event_id}|{self.action.value}|{self.target}"))

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "command_id": self.command_id,
            "issued_at": iso(self.issued_at),
            "action": self.action.value,
        }
        if self.action.for_bank:
            body["bank"] = self.institution
            body["account"] = self.target
        elif self.action.for_sms:
            body["operator"] = self.institution
            body["value" if self.action is Action.UNBLOCK_SMS else "sender"] = self.target
        else:
            body["operator"] = self.institution
            body["caller"] = self.target
        body.update(self.details)
        body["event_id"] = self.event_id
        body["rule"] = self.rule
        body["reasons"] = list(self.reasons)
        if self.rules:
            body["rules"] = list(self.rules)
        return body


class Match(msgspec.Struct, frozen=True):
    """One rule firing: which rule (id, version, mode), on which identifier, and why."""

    rule: str  # rule id in the registry, e.g. ``mule_inflow``
    outcome: int  # rules.outcome.Outcome value; kept as int so records import nothing of rules
    reason: str  # human-readable, cites the events that led to it
    identifier: str = ""
    status: str = ""
    source: str = ""
    case_ref: str = ""
    version: int = 1
    mode: str = "enforce"  # enforce | shadow
    code: str = ""  # stable reason code, e.g. ``payee-on-blocklist``; the command's ``rule`` field

    @property
    def rule_ref(self) -> str:
        return f"{self.rule}@{self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "version": self.version, "mode": self.mode, "code": self.code,
                "outcome": OUTCOME_NAMES.get(self.outcome, str(self.outcome)), "reason": self.reason,
                "identifier": self.identifier, "status": self.status, "source": self.source,
                "case_ref": self.case_ref}


OUTCOME_NAMES = {0: "ALLOW", 1: "LABEL", 2: "HOLD", 3: "BLOCK"}


class Decision(msgspec.Struct, frozen=True):
    """The verdict on one event. ``outcome`` is what enforce rules decided; shadow matches only inform."""

    event_id: str
    stream: str
    outcome: str
    decided_at: datetime
    matches: tuple[Match, ...] = ()
    commands: tuple[Command, ...] = ()
    reports: tuple[Report, ...] = ()
    shadow_outcome: str = "ALLOW"
    policy_version: str = ""
    rule_errors: tuple[str, ...] = ()  # ids of rules that raised on this event (counted, not fatal)

    def to_json(self) -> dict[str, Any]:
        matches = self.matches
        if len(matches) == 1:  # the common case of a decision record: one rule fired
            m = matches[0]
            rules = [f"{m.rule}@{m.version}:{m.mode}"]
            reasons, shadow = ([m.reason], []) if m.mode == "enforce" else ([], [m.reason])
        else:
            rules = sorted({m.rule_ref + ":" + m.mode for m in matches})
            reasons = [m.reason for m in matches if m.mode == "enforce"]
            shadow = [m.reason for m in matches if m.mode == "shadow"]
        return {
            "event_id": self.event_id,
            "stream": self.stream,
            "outcome": self.outcome,
            "shadow_outcome": self.shadow_outcome,
            "decided_at": iso(self.decided_at),
            "policy_version": self.policy_version,
            "rules": rules,
            "matches": [m.to_json() for m in matches],
            "reasons": reasons,
            "shadow_reasons": shadow,
            "command_ids": [c.command_id for c in self.commands],
            "report_ids": [r.report_id for r in self.reports],
            "rule_errors": list(self.rule_errors),
        }


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an input event cannot be decided: a stable code and a message naming the field."""

    reason: str
    message: str
    field: str = ""


# ISO 20022 transaction status codes (ExternalPaymentTransactionStatus1Code) -> the outcome a status report gives
# the command that held the payment; any other code (RCVD, PDNG, ACTC, ...) is ``pending``.
REJECTED_STATUSES = frozenset({"RJCT", "CANC"})
ACCEPTED_STATUSES = frozenset({"ACCC", "ACCP", "ACSC", "ACSP", "ACWC", "ACWP", "ACFC", "ACIS", "PART"})


@dataclass(frozen=True, slots=True)
class PaymentStatus:
    """One transaction's status in a pacs.002 status report, with the ids that name the payment."""

    message_id: str  # the report's GrpHdr/MsgId
    status: str  # TxSts (or the group's GrpSts), e.g. ACSC, RJCT, PDNG
    reason: str = ""  # StsRsnInf/Rsn/Cd (or Prtry), e.g. AC04
    end_to_end_id: str = ""
    tx_id: str = ""
    uetr: str = ""

    @property
    def outcome(self) -> str:
        if self.status in REJECTED_STATUSES:
            return "rejected"
        return "accepted" if self.status in ACCEPTED_STATUSES else "pending"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A recognised input message that is not an event to decide (e.g. a pacs.002 status report).

    Counted as ``sekat_events_total{outcome="SKIPPED"}`` and acked; no decision is made for it. A status
    report's transactions come with it (``statuses``): one on a payment Sekat held is that hold's outcome.
    """

    message: str  # the message type, e.g. "pacs.002"
    statuses: tuple[PaymentStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class Source:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    key: bytes | None = field(default=None, repr=False)
