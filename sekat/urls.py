"""Web links as identifiers: the ``url`` and ``domain`` kinds, and the links found in an SMS text.

A link is screened under two kinds of key:

    url:<host><path>[?query]    one page: scheme, user info, default port and fragment dropped, the host in
                                lower case and punycode (IDNA), a leading ``www.`` dropped, an empty path "/"
    domain:<host>               a host and everything under it: ``domain:evil.example`` matches
                                ``https://login.evil.example/x`` too

The scheme is not part of a key: the same page over http and https is one scam. Path and query keep their
case (servers tell them apart). A ``domain`` report must name at least a registrable domain: a bare public
suffix (``com``, ``com.my``, ``blogspot.com``) would block every site under it and is refused. The public
suffix list is the snapshot shipped in ``tldextract`` (private suffixes included, so ``evil.blogspot.com``
is one site, not all of Blogspot); nothing is fetched at run time.

``extract_links`` finds links in a message text: written with a scheme (``https://...``), or bare
(``www.x.my``, ``bit.ly/abc``) when the host ends in a known public suffix, so ``e.g.`` or ``RM5.00`` are not
links. The text itself is never kept: only the links found in it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

from typing import Any

import idna

from sekat.errors import InvalidIdentifier

MAX_URL_CHARS = 2048
MAX_HOST_LEVELS = 5  # domain keys looked up per link: the host and its parents, down to its registrable domain
MAX_LINKS = 10  # links screened per message; more are not looked at (the first ones decide)
_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
# A link in free text: with a scheme, or a host of dotted labels (letters of any script, digits, '-'), then an
# optional port and path. Punctuation ending a sentence is trimmed after the match.
_LINK_RE = re.compile(r"(?i)(?:https?://(?:[^\s/@]{1,64}@)?)?(?:[^\W_](?:[\w-]{0,62})\.)+[^\W\d_][\w-]{1,62}\.?(?::\d{1,5})?(?:[/?#][^\s<>\"]*)?")
_TRAILING = ".,;:!?)]}'\u2019\u201d>"
# What every match of _LINK_RE holds: a dot and then a letter (its last label's first character). A text without
# one has no link, and is not searched (most messages: codes, amounts, sentences).
_MAY_LINK = re.compile(r"\.[^\W\d_]")


@dataclass(frozen=True, slots=True)
class Domain:
    name: str  # lower case, punycode, no leading www.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", "domain:" + self.name)

    def masked(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Url:
    value: str  # host + path (+ query), as in the key
    host: str
    registrable: str  # the registrable domain of ``host`` (the host itself for an IP address)
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", "url:" + self.value)

    def masked(self) -> str:
        """Host only: a path may carry a victim's token."""
        return self.host + "/..."

    def domains(self) -> tuple[Domain, ...]:
        """The host and its parent domains down to the registrable one, nearest first (at most MAX_HOST_LEVELS)."""
        return _domains(self.host, self.registrable)


@lru_cache(maxsize=1 << 14)
def _domains(host: str, registrable: str) -> tuple[Domain, ...]:
    """``Url.domains``, once per host: every link to a host has the same ones."""
    labels = host.split(".")
    floor = len(registrable.split("."))
    return tuple(Domain(".".join(labels[i:])) for i in range(max(0, len(labels) - floor) + 1))[:MAX_HOST_LEVELS]


@lru_cache(maxsize=1 << 14)
def _host(raw: str) -> str:
    """A host name in lower case and punycode, without a trailing dot or a leading ``www.``.

    Cached by the host as written: links differ in their paths far more often than in their hosts, and IDNA
    costs more than the rest of a link's normalisation."""
    host = raw.strip().rstrip(".").lower()
    if not host:
        raise InvalidIdentifier("link has no host")
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidIdentifier(f"host is not a valid domain name: {str(exc)[:80]}") from None
    if ascii_host.startswith("www.") and ascii_host.count(".") >= 2:
        ascii_host = ascii_host[4:]
    return ascii_host


@lru_cache(maxsize=1 << 14)
def registrable(host: str) -> str:
    """The registrable domain of ``host`` (punycode), or "" when it is a public suffix or has none known."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    return str(_extractor()(host).top_domain_under_public_suffix)


@lru_cache(maxsize=1)
def _extractor() -> Any:
    """The public suffix list: the snapshot shipped in tldextract only (no list fetched, nothing cached on disk).
    Built on first use: importing tldextract costs more than the rest of the records (every CLI command)."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


@lru_cache(maxsize=1 << 14)
def normalise_url(raw: str) -> Url:
    """A link as its ``Url``: http or https only (a bare host is taken as http), with a known registrable domain."""
    text = raw.strip()
    if not text or len(text) > MAX_URL_CHARS:
        raise InvalidIdentifier("link is empty or too long")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidIdentifier(f"not a link: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidIdentifier("link must be http or https")
    host = _host(parts.hostname or "")
    domain = registrable(host)
    if not domain:
        raise InvalidIdentifier("link's host has no registrable domain (unknown or bare public suffix)")
    netloc = host if port is None or str(port) == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    value = netloc + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Url(value, host, domain)


def normalise_domain(raw: str) -> Domain:
    """A domain as agencies report it (``Evil.Example``, ``www.evil.example``, ``https://evil.example/``, an
    internationalised name): at least a registrable domain."""
    text = raw.strip()
    if not text or len(text) > 253 + 16:
        raise InvalidIdentifier("domain is empty or too long")
    if "/" in text or ":" in text:
        try:
            text = urlsplit(text if "://" in text else "http://" + text).hostname or ""
        except ValueError as exc:
            raise InvalidIdentifier(f"not a domain: {exc}") from None
    host = _host(text)
    if not registrable(host):
        raise InvalidIdentifier("is a public suffix or has no known one: a domain must be registrable "
                                "(e.g. example.com.my)")
    return Domain(host)


def extract_links(text: str, limit: int = MAX_LINKS) -> tuple[Url, ...]:
    """The distinct links in a message text, in order, at most ``limit``; words that only look like hosts are
    skipped."""
    if _MAY_LINK.search(text) is None:
        return ()
    found: dict[str, Url] = {}
    for match in _LINK_RE.finditer(text):
        candidate = match.group(0).rstrip(_TRAILING)
        try:
            url = normalise_url(candidate)
        except InvalidIdentifier:
            continue
        found.setdefault(url.key, url)
        if len(found) >= limit:
            break
    return tuple(found.values())
