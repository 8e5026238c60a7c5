"""The field readers every decoder shares, and the reason codes of its ``Rejection``.

A ``Rejection`` carries a stable reason code (used as a metric label and in the dead letter) and a message
naming the field at fault. ``REASONS`` holds the codes of the contract decoders; the format adapters add
their own (decode/iso20022.py, decode/pacs008.py, decode/cdr.py).

The readers here raise ``Bad`` for the first field at fault; ``decode_object`` turns it into the decoder's
``Rejection``. The field readers (``text``, ``amount``, ``phone``...) take a JSON object and a field name;
the ``as_*`` checks take a value already read, for formats that are not JSON objects.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated, Any, TypeVar

import msgspec
import orjson

from sekat.errors import InvalidIdentifier
from sekat.identifiers import (AccountId, PhoneNumber, ProxyHasher, WalletId, normalise_account, normalise_bank,
                               normalise_phone, normalise_wallet, proxy_type)
from sekat.records import Proxy, Rejection

REASONS = (
    "empty", "too_large", "not_json", "not_object", "missing_field", "wrong_type", "invalid_value",
    "invalid_timestamp", "invalid_amount", "invalid_bank", "invalid_account", "invalid_phone", "internal_error",
    "invalid_key", "protected",
    "invalid_sender", "invalid_link",  # the SMS decoder's (decode/sms.py)
)
MAX_TEXT = 256
R = TypeVar("R")
MAX_AMOUNT = Decimal("1000000000000")


class Bad(Exception):
    """The field at fault, raised inside a decoder; the decoder returns its ``rejection`` (see ``decode_object``)."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(reason, f"{field}: {message}" if field else message, field)


# Field types of the fast paths' msgspec structs, with the lengths ``text`` checks (its max_len per field).
Id = Annotated[str, msgspec.Meta(max_length=128)]
Short = Annotated[str, msgspec.Meta(max_length=32)]


def decode_object(raw: bytes | None, max_bytes: int, read: Callable[[dict[str, Any]], R]) -> R | Rejection:
    """The record ``read`` makes of the event's JSON object, or the ``Rejection`` for the first field at fault."""
    try:
        return read(load_object(raw, max_bytes))
    except Bad as bad:
        return bad.rejection


def blank(value: str) -> bool:
    """Empty or only whitespace: what ``text`` refuses as empty (for the decoders' fast paths)."""
    return not value or value.isspace()


@lru_cache(maxsize=4096)
def iso_time(raw: str) -> datetime:
    """An ISO 8601 date-time; one without a zone is UTC. Raises ``ValueError``.

    Cached: events stamped to the millisecond arrive tens to a millisecond at line rate, so most stamps were
    read a moment ago (a hit ~0.1 µs, a parse ~0.25)."""
    ts = datetime.fromisoformat(raw)
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def sized(raw: bytes | None, max_bytes: int) -> bytes:
    """The event's value, refused when it is empty or larger than ``max_bytes``."""
    if not raw:
        raise Bad("empty", "", "event has no value")
    if len(raw) > max_bytes:
        raise Bad("too_large", "", f"event is {len(raw)} bytes, limit is {max_bytes}")
    return raw


def load_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Bad("not_json", "", f"value is not UTF-8 JSON ({str(exc)[:80]})") from None


def load_object(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    data = load_json(sized(raw, max_bytes))
    if not isinstance(data, dict):
        raise Bad("not_object", "", f"value must be a JSON object, got {type(data).__name__}")
    return data


def _present(data: dict[str, Any], name: str, path: str, required: bool, kind: type, described: str) -> Any:
    """``data[name]`` when it is a ``kind``; None when it is absent (or null) and not ``required``."""
    value = data.get(name)
    if value is None:
        if required:
            raise Bad("missing_field", path, "is required")
        return None
    if not isinstance(value, kind):
        raise Bad("wrong_type", path, f"must be {described}, got {type(value).__name__}")
    return value


def obj(data: dict[str, Any], name: str, path: str | None = None, required: bool = True) -> dict[str, Any] | None:
    return _present(data, name, path or name, required, dict, "an object")


def text(data: dict[str, Any], name: str, path: str | None = None, required: bool = True,
         max_len: int = MAX_TEXT) -> str | None:
    path = path or name
    value: str | None = _present(data, name, path, required, str, "a string")
    if value is None:
        return None
    if not value.strip():
        raise Bad("invalid_value", path, "must not be empty")
    if len(value) > max_len:
        raise Bad("invalid_value", path, f"is longer than {max_len} characters")
    return value


def timestamp(data: dict[str, Any], name: str, path: str | None = None) -> datetime:
    path = path or name
    raw = text(data, name, path, max_len=64)
    assert raw is not None
    try:
        return iso_time(raw)
    except ValueError:
        raise Bad("invalid_timestamp", path, "must be an ISO-8601 timestamp such as 2026-11-28T10:15:00.123Z") from None


def event_id_and_time(data: dict[str, Any]) -> tuple[str, datetime]:
    """``event_id`` and ``occurred_at``, which every contract event carries first (DESIGN.md)."""
    event_id = text(data, "event_id", max_len=128)
    assert event_id is not None
    return event_id, timestamp(data, "occurred_at")


def amount(data: dict[str, Any], name: str) -> Decimal:
    value = data.get(name)
    if value is None:
        raise Bad("missing_field", name, "is required")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Bad("wrong_type", name, f"must be a decimal string such as \"1500.00\", got {type(value).__name__}")
    if isinstance(value, str) and not value.isascii():  # Decimal() reads Arabic-Indic and full-width digits too
        raise Bad("invalid_amount", name, "must be written with ASCII digits")
    return as_amount(str(value).strip(), name)


def bank(data: dict[str, Any], name: str, path: str) -> str:
    raw = text(data, name, path, max_len=16)
    assert raw is not None
    return as_bank(raw, path)


def account(bic: str, data: dict[str, Any], name: str, path: str, required: bool = True) -> AccountId | None:
    raw = text(data, name, path, required, max_len=64)
    return None if raw is None else as_account(bic, raw, path)


def phone(data: dict[str, Any], name: str, path: str, region: str, required: bool = True) -> PhoneNumber | None:
    raw = text(data, name, path, required, max_len=32)
    return None if raw is None else as_phone(raw, path, region)


def as_amount(raw: str, path: str) -> Decimal:
    """A positive finite amount up to ``MAX_AMOUNT``, from its decimal text."""
    try:
        result = Decimal(raw)
    except InvalidOperation:
        raise Bad("invalid_amount", path, "is not a decimal number") from None
    if not result.is_finite() or result <= 0 or result > MAX_AMOUNT:
        raise Bad("invalid_amount", path, "must be a positive finite amount")
    return result


def as_bank(raw: str, path: str) -> str:
    try:
        return normalise_bank(raw)
    except InvalidIdentifier as exc:
        raise Bad("invalid_bank", path, str(exc)) from None


def as_account(bic: str, raw: str, path: str) -> AccountId:
    try:
        return normalise_account(bic, raw)
    except InvalidIdentifier as exc:
        raise Bad("invalid_account", path, str(exc)) from None


def as_phone(raw: str, path: str, region: str) -> PhoneNumber:
    try:
        return normalise_phone(raw, region)
    except InvalidIdentifier as exc:
        raise Bad("invalid_phone", path, str(exc)) from None


def as_proxy(code: str, raw: str, path: str, region: str, hasher: ProxyHasher) -> Proxy:
    """A payee's DuitNow proxy: a MOBILE number normalised; an NRIC, passport or business registration number
    hashed (``ProxyHasher``), its clear value dropped here; any other type kept as given, not screened. Without
    a hash key an NRIC, passport or BRN proxy is kept by its type alone (value empty), not screened."""
    kind = code.upper()
    if kind == "MOBILE":
        return Proxy(kind, raw, as_phone(raw, path, region))
    hashed_type = proxy_type(kind)
    if hashed_type is None:
        return Proxy(kind, raw, None)
    if not hasher.enabled:
        return Proxy(hashed_type, "", None)
    try:
        hashed = hasher.proxy(hashed_type, raw)
    except InvalidIdentifier as exc:
        raise Bad("invalid_value", path, str(exc)) from None
    return Proxy(hashed_type, hashed.value, None, hashed)


def as_wallet(provider: str, raw: str, path: str) -> WalletId:
    try:
        return normalise_wallet(provider, raw)
    except InvalidIdentifier as exc:
        raise Bad("invalid_value", path, str(exc)) from None
