"""SMS sender IDs: numeric senders are phone numbers, alphanumeric ones the ``sender`` kind; the registry of
protected sender IDs.

An SMS sender is either a phone number (``+60123456789``, ``012-345 6789``: the ``phone`` kind, one key with
the caller of a call) or an alphanumeric sender ID as banks, couriers and government send under
(``MAYBANK``, ``PosLaju``). A sender ID is compared without case and without the separators a look-alike
adds (``May-Bank``, ``MAY BANK`` and ``maybank`` are ``sender:MAYBANK``); it is 1-16 ASCII letters, digits or
``&`` after that. A short code of digits that is not a phone number (``66300``) is a sender ID too.

The registry of protected sender IDs (``SEKAT_SENDER_REGISTRY_FILE``) names, per sender ID, the routes
(aggregators, SMSC or interconnect ids, as the ``route`` of an SMS event) it is registered to send from::

    MAYBANK: MY-A2P-1, MY-A2P-2     # an SMS from MAYBANK over any other route is an impersonation
    PDRM:                           # registered on no route: never legitimately sent through Sekat's telcos

A protected sender ID can never be listed (it is the bank's own), and the ``sender_impersonation`` rule blocks
it when it arrives over a route not registered for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache

from sekat.errors import InvalidIdentifier
from sekat.identifiers import PhoneNumber, SenderId, normalise_phone, normalise_sender_id

_NUMERIC = re.compile(r"\+?[0-9 ()-]+")
_ROUTE_RE = re.compile(r"[A-Z0-9._-]{1,32}")


Sender = PhoneNumber | SenderId


@lru_cache(maxsize=1 << 14)
def normalise_sender(raw: str, region: str = "MY") -> Sender:
    """A numeric sender as its phone number (a short code that is none: a sender ID); anything else as a sender ID."""
    text = raw.strip()
    if _NUMERIC.fullmatch(text):
        try:
            return normalise_phone(text, region)
        except InvalidIdentifier:
            pass
    return normalise_sender_id(text)


def route_code(raw: str) -> str:
    """A route id: 1-32 letters, digits, '.', '_' or '-', upper-cased."""
    code = raw.strip().upper()
    if not _ROUTE_RE.fullmatch(code):
        raise InvalidIdentifier(f"route {raw[:40]!r} must be 1-32 letters, digits, '.', '_' or '-'")
    return code


def parse_sender_registry(lines: list[str], region: str = "MY") -> dict[str, frozenset[str]]:
    """The protected sender IDs: ``SENDER: route, route`` a line (``#`` starts a comment) → {sender key: routes}.

    Raises ``InvalidIdentifier`` naming the line of the first bad one or of a sender listed twice.
    """
    registry: dict[str, frozenset[str]] = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        name, sep, routes = text.partition(":")
        try:
            if not sep:
                raise InvalidIdentifier("expected SENDER: route[, route...] (the routes may be empty)")
            key = normalise_sender(name, region).key
            codes = frozenset(route_code(r) for r in routes.split(",") if r.strip())
        except InvalidIdentifier as exc:
            raise InvalidIdentifier(f"line {number}: {exc}") from None
        if key in registry:
            raise InvalidIdentifier(f"line {number}: {name.strip()!r} is listed twice")
        registry[key] = codes
    return registry


def registered_routes(registry: Mapping[str, frozenset[str]], sender: Sender) -> frozenset[str] | None:
    """The routes ``sender`` is registered on, or None when it is not a protected sender ID."""
    return registry.get(sender.key)
