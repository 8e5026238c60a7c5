"""Telco SMS: decode the Sms contract (docs/contract.md "SMS") from the SMS topic.

The sender is a phone number or an alphanumeric sender ID (sekat/senders.py); the links are those found in
``text`` and those listed in ``urls`` (sekat/urls.py). The text is read for its links and dropped: the
``Sms`` record does not carry it. A sender on the registry of protected sender IDs gets the routes it is
registered on (``Sms.registered_routes``), for the ``sender_impersonation`` rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sekat.decode import fields
from sekat.decode.calls import operator
from sekat.decode.fields import Bad
from sekat.errors import InvalidIdentifier
from sekat.records import Rejection, Sms
from sekat.senders import normalise_sender, registered_routes, route_code
from sekat.urls import MAX_LINKS, MAX_URL_CHARS, Url, extract_links, normalise_url

MAX_SMS_TEXT = 4096  # characters: a concatenated SMS of 10+ parts


def decode_sms(raw: bytes | None, max_bytes: int = 65536, region: str = "MY",
               senders: Mapping[str, frozenset[str]] | None = None) -> Sms | Rejection:
    return fields.decode_object(raw, max_bytes, lambda data: _decode(data, region, senders or {}))


def _links(data: dict[str, Any]) -> tuple[Url, ...]:
    text = fields.text(data, "text", required=False, max_len=MAX_SMS_TEXT)
    found = list(extract_links(text)) if text else []
    listed = data.get("urls")
    if listed is not None:
        if not isinstance(listed, list):
            raise Bad("wrong_type", "urls", f"must be a list of links, got {type(listed).__name__}")
        if len(listed) > MAX_LINKS:
            raise Bad("invalid_value", "urls", f"has more than {MAX_LINKS} links")
        for i, item in enumerate(listed):
            if not isinstance(item, str):
                raise Bad("wrong_type", f"urls[{i}]", f"must be a string, got {type(item).__name__}")
            try:
                found.append(normalise_url(item[:MAX_URL_CHARS + 1]))
            except InvalidIdentifier as exc:
                raise Bad("invalid_link", f"urls[{i}]", str(exc)) from None
    return tuple({url.key: url for url in found}.values())[:MAX_LINKS]


def _decode(data: dict[str, Any], region: str, senders: Mapping[str, frozenset[str]]) -> Sms:
    event_id, occurred_at = fields.event_id_and_time(data)
    sms_id = fields.text(data, "sms_id", max_len=128)
    raw_operator = fields.text(data, "operator", max_len=32)
    raw_sender = fields.text(data, "sender", max_len=32)
    assert sms_id is not None and raw_operator is not None and raw_sender is not None
    operator_code = operator(raw_operator, "operator")
    try:
        sender = normalise_sender(raw_sender, region)
    except InvalidIdentifier as exc:
        raise Bad("invalid_sender", "sender", str(exc)) from None
    recipient = fields.phone(data, "recipient", "recipient", region)
    assert recipient is not None
    raw_route = fields.text(data, "route", required=False, max_len=32)
    try:
        route = route_code(raw_route) if raw_route is not None else None
    except InvalidIdentifier as exc:
        raise Bad("invalid_value", "route", str(exc)) from None
    return Sms(event_id=event_id, occurred_at=occurred_at, sms_id=sms_id, operator=operator_code, sender=sender,
               recipient=recipient, route=route, links=_links(data),
               registered_routes=registered_routes(senders, sender))
