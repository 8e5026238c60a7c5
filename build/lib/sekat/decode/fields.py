"""Decoding at the edge: bytes in, a typed record or a ``Rejection`` out.

A ``Rejection`` carries a stable reason code (used as a metric label and in
the dead letter) and a message naming the field at fault. Reason codes:

    empty, too_large, not_json, not_object, missing_field, wrong_type,
    invalid_value, invalid_timestamp, invalid_amount, invalid_bank,
    invalid_account, invalid_phone, invalid_key, protected
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

import msgspec
import orjson

from sekat.errors import InvalidIdentifier
from sekat.identifiers import AccountId, PhoneNumber, normalise_account, normalise_bank, normalise_phone
from sekat.records import Rejection

REASONS = (
    "empty", "too_large", "not_json", "not_object", "missing_field", "wrong_type", "invalid_value",
    "invalid_timestamp", "invalid_amount", "invalid_bank", "invalid_account", "invalid_phone", "internal_error",
    "invalid_key", "protected",
)
MAX_TEXT = 256
R = TypeVar("R")
MAX_AMOUNT = Decimal("1000000000000")


class Bad(Exception):
    """Internal flow control for decoders; never leaves this package (see ``decode_with``)."""

    def __init__(self, reason: str, field: str, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(reason, f"{field}: {message}" if field else message, field)


# Field types of the fast paths' msgspec structs, with the lengths ``text`` checks (its max_len per field).
Id = Annotated[str, msgspec.Meta(max_length=128)]
Short = Annotated[str, msgspec.Meta(max_length=32)]


def fast_or_precise(raw: bytes | None, max_bytes: int, region: str, fast: Callable[[bytes, str], R | None],
                    precise: Callable[[bytes | None, int, str], R | Rejection]) -> R | Rejection:
    """A decoder's answer: its fast path's, when that takes the event; else its precise path's, which explains."""
    if raw and len(raw) <= max_bytes:
        found = fast(raw, region)
        if found is not None:
            return found
    return precise(raw, max_bytes, region)


def blank(value: str) -> bool:
    """Empty or only whitespace: what ``text`` refuses as empty (for the decoders' fast paths)."""
    return not value or value.isspace()


def fast_phone(raw: str, region: str) -> PhoneNumber:
    """A phone number for a fast path: as ``phone`` reads it, but raising ``InvalidIdentifier`` (no explanation)."""
    if blank(raw):
        raise InvalidIdentifier("blank")
    return normalise_phone(raw, region)


def load_object(raw: bytes | None, max_bytes: int) -> dict[str, Any]:
    if not raw:
        raise Bad("empty", "", "event has no value")
    if len(raw) > max_bytes:
        raise Bad("too_large", "", f"event is {len(raw)} bytes, limit is {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Bad("not_json", "", f"value is not UTF-8 JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise Bad("not_object", "", f"value must be a JSON object, got {type(data).__name__}")
    return data


def obj(data: dict[str, Any], name: str, path: str, required: bool = True) -> dict[str, Any] | None:
    value = data.get(name)
    if value is None:
        if required:
            raise Bad("missing_field", path, "is required")
        return None
    if not isinstance(value, dict):
        raise Bad("wrong_type", path, f"must be an object, got {type(value).__name__}")
    return value


def text(data: dict[str, Any], name: str, path: str, required: bool = True, max_len: int = MAX_TEXT) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise Bad("missing_field", path, "is required")
        return None
    if not isinstance(value, str):
        raise Bad("wrong_type", path, f"must be a string, got {type(value).__name__}")
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
        ts = datetime.fromisoformat(raw)
    except ValueError:
        raise Bad("invalid_timestamp", path, "must be an ISO-8601 timestamp such as 2026-11-28T10:15:00.123Z") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def amount(data: dict[str, Any], name: str) -> Decimal:
    value = data.get(name)
    if value is None:
        raise Bad("missing_field", name, "is required")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Bad("wrong_type", name, f"must be a decimal string such as \"1500.00\", got {type(value).__name__}")
    if isinstance(value, str) and not value.isascii():  # Decimal() reads Arabic-Indic and full-width digits too
        raise Bad("invalid_amount", name, "must be written with ASCII digits")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise Bad("invalid_amount", name, "is not a decimal number") from None
    if not result.is_finite() or result <= 0 or result > MAX_AMOUNT:
        raise Bad("invalid_amount", name, "must be a positive finite amount")
    return result


def bank(data: dict[str, Any], name: str, path: str) -> str:
    raw = text(data, name, path, max_len=16)
    assert raw is not None
    try:
        return normalise_bank(raw)
    except InvalidIdentifier as exc:
        raise Bad("invalid_bank", path, str(exc)) from None


def account(bic: str, data: dict[str, Any], name: str, path: str, required: bool = True) -> AccountId | None:
    raw = text(data, name, path, required, max_len=64)
    if raw is None:
        return None
    try:
        return normalise_account(bic, raw)
    except InvalidIdentifier as exc:
        raise Bad("invalid_account", path, str(exc)) from None


def phone(data: dict[str, Any], name: str, path: str, region: str, required: bool = True) -> PhoneNumber | None:
    raw = text(data, name, path, required, max_len=32)
    if raw is None:
        return None
    try:
        return normalise_phone(raw, region)
    except InvalidIdentifier as exc:
        raise Bad("invalid_phone", path, str(exc)) from None
