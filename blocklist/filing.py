"""Filing a report: raw fields from an agency (API, CLI, bulk import) → a valid ``Report``.

The one place intake checks a report before it goes on ``sekat.reports``:
identifiers normalised, emergency/short numbers and the protected list
refused (reason ``protected``), limits enforced. Raises ``InvalidReport``
naming the field. The reports agent checks again on the way in, because any
Kafka producer can write to the topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sekat.errors import InvalidIdentifier, InvalidReport
from sekat.expiry import MAX_DAYS, ExpiryPolicy
from sekat.identifiers import (SMS_KINDS, ProxyHasher, normalise_account, normalise_bank, normalise_phone,
                               parse_proxy, parse_sms_key, parse_wallet)
from sekat.records import Report, Status

MAX_TTL_DAYS = MAX_DAYS  # the longest a report may ask to stay in effect
KINDS = ("phone", "account", "wallet", "proxy", *SMS_KINDS)
KIND_RULE = "must be 'phone', 'account', 'wallet', 'proxy', 'sender', 'url' or 'domain'"
MAX_SMS_VALUE = 512  # characters of a sender, url or domain value (punycode can lengthen what was written)
LIMITS = {"source": 64, "case_ref": 128, "reason": 512, "filed_by": 64, "report_id": 128}


def new_report_id() -> str:
    return "r-" + uuid.uuid4().hex


def key_of(kind: str, bank: str, value: str) -> str:
    """The index key of an identifier as ``identifier`` returns it."""
    return f"account:{bank}:{value}" if kind == "account" else f"{kind}:{value}"


def identifier(kind: str, value: str, bank: str | None, region: str,
               protected: Collection[str] = (), hasher: ProxyHasher | None = None) -> tuple[str, str]:
    """(bank, normalised value) of a listable identifier; raises ``InvalidReport`` naming the field.

    A wallet is ``PROVIDER:ID``. A proxy is ``TYPE:value`` in clear where an agency files it (``hasher``
    given: the API, the CLI, the bulk import, the public check), which becomes ``TYPE:<keyed hash>``; on the
    reports topic (``hasher`` None) it is that hash already, and a clear value there is refused.
    """
    if kind == "phone":
        try:
            phone = normalise_phone(value, region)
        except InvalidIdentifier as exc:
            raise InvalidReport("value", str(exc), "invalid_phone") from None
        if phone.protected:
            raise InvalidReport("value", "is an emergency or service number and can never be listed", "protected")
        bank_code, number, key = "", phone.e164, phone.key
    elif kind == "account":
        if not bank:
            raise InvalidReport("bank", "is required for an account (the BIC of its bank)", "missing_field")
        try:
            bank_code = normalise_bank(bank)
        except InvalidIdentifier as exc:
            raise InvalidReport("bank", str(exc), "invalid_bank") from None
        try:
            account = normalise_account(bank_code, value)
        except InvalidIdentifier as exc:
            raise InvalidReport("value", str(exc), "invalid_account") from None
        number, key = account.number, account.key
    elif kind == "wallet":
        try:
            wallet = parse_wallet(value)
        except InvalidIdentifier as exc:
            raise InvalidReport("value", str(exc), "invalid_value") from None
        bank_code, number, key = "", wallet.value, wallet.key
    elif kind == "proxy":
        try:
            if hasher is None:
                proxy = parse_proxy(value)
            else:
                code, sep, clear = value.partition(":")
                if not sep:
                    raise InvalidReport("value", "a proxy is written TYPE:value, e.g. NRIC:900101-14-5678",
                                        "invalid_value")
                proxy = hasher.proxy(code, clear)
        except InvalidIdentifier as exc:
            raise InvalidReport("value", str(exc), "invalid_value") from None
        bank_code, number, key = "", proxy.value, proxy.key
    elif kind in SMS_KINDS:
        try:
            web = parse_sms_key(kind, value)
        except InvalidIdentifier as exc:
            raise InvalidReport("value", str(exc), "invalid_sender" if kind == "sender" else "invalid_link") from None
        bank_code, key = "", web.key
        number = key.partition(":")[2]
        if len(number) > MAX_SMS_VALUE:  # as the reports agent reads it back (decode/reports.py)
            raise InvalidReport("value", f"is longer than {MAX_SMS_VALUE} characters once normalised",
                                "invalid_sender" if kind == "sender" else "invalid_link")
    else:
        raise InvalidReport("kind", KIND_RULE)
    if key in protected:
        raise InvalidReport("value", "is on the protected list and can never be listed", "protected")
    return bank_code, number


def link_keys(links: Sequence[Mapping[str, Any]], own: str, region: str, protected: Collection[str] = (),
              limit: int = 20, hasher: ProxyHasher | None = None) -> tuple[str, ...]:
    """Keys of the identifiers a report links (``{kind, value, bank}`` each); raises naming ``links[i]``."""
    if len(links) > limit:
        raise InvalidReport("links", f"names more than {limit} identifiers")
    keys: list[str] = []
    for i, link in enumerate(links):
        kind = link.get("kind")
        if kind not in KINDS:
            raise InvalidReport(f"links[{i}].kind", KIND_RULE)
        try:
            bank_code, number = identifier(str(kind), str(link.get("value") or ""), link.get("bank"), region,
                                           protected, hasher)
        except InvalidReport as exc:
            raise InvalidReport(f"links[{i}].{exc.field}", str(exc).split(": ", 1)[-1], exc.reason) from None
        key = key_of(str(kind), bank_code, number)
        if key != own:  # linking an identifier to itself says nothing
            keys.append(key)
    return tuple(dict.fromkeys(keys))


def file_report(kind: str, value: str, status: str, source: str, now: datetime, *, bank: str | None = None,
                case_ref: str = "", reason: str = "", ttl_days: int | None = 0, filed_by: str = "",
                report_id: str | None = None, region: str = "MY", protected: Collection[str] = (),
                links: Sequence[Mapping[str, Any]] = (), expiry: ExpiryPolicy | None = None,
                renewal: bool = False, hasher: ProxyHasher | None = None) -> Report:
    """A valid report; ``ttl_days`` None takes the expiry policy's days for its status and source."""
    try:
        parsed = Status(status)
    except ValueError:
        raise InvalidReport("status", "must be 'reported', 'confirmed' or 'revoked'") from None
    bank_code, number = identifier(kind, value, bank, region, protected, hasher)
    own = key_of(kind, bank_code, number)
    if links and parsed is Status.REVOKED:
        raise InvalidReport("links", "a revocation names no links (it concerns one identifier)")
    linked = link_keys(links, own, region, protected, hasher=hasher)
    if ttl_days is None:
        ttl_days = expiry.days(parsed.value, source) if expiry is not None and parsed is not Status.REVOKED else 0
    fields = {"source": source, "case_ref": case_ref, "reason": reason, "filed_by": filed_by,
              "report_id": report_id or ""}
    for name, text in fields.items():
        if len(text) > LIMITS[name]:
            raise InvalidReport(name, f"is longer than {LIMITS[name]} characters")
    if not source.strip():
        raise InvalidReport("source", "is required (the reporting agency)", "missing_field")
    if parsed is Status.REVOKED and not reason.strip():
        raise InvalidReport("reason", "is required to revoke (why the appeal was upheld)", "missing_field")
    if isinstance(ttl_days, bool) or not isinstance(ttl_days, int) or not 0 <= ttl_days <= MAX_TTL_DAYS:
        raise InvalidReport("ttl_days", f"must be a whole number of days between 0 and {MAX_TTL_DAYS}")
    return Report(report_id=report_id or new_report_id(), reported_at=now, kind=kind, value=number,
                  status=parsed, source=source.strip().upper(), bank=bank_code, case_ref=case_ref.strip(),
                  reason=reason.strip(), ttl_days=0 if parsed is Status.REVOKED else ttl_days, filed_by=filed_by,
                links=linked, renewal=renewal)
