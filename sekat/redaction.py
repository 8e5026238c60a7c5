"""Redaction of every log record, ours and the libraries': no secret and no phone/account number in clear.

Sekat's own log lines mask identifiers where they are written
(``sekat.identifiers.mask``); this is the net under them, for lines written
by libraries at any level (aiokafka at debug prints each request, SASL
authentication bytes included). ``install`` wraps the log record factory, so it
holds whatever handlers Faust or uvicorn set up later. In each message and
traceback, docs/security.md ("logs") gives the rules with examples:

- each configured secret (``secrets_of``: the SASL password, the audit
  key, the Redis password of the URL's userinfo or query) becomes ``***``;
- secrets by their shape, configured or not: the password of a URL's
  userinfo, the value of a ``...password=``, ``...secret=`` or ``api_key=``
  pair (also ``'password': '...'``), the secret part of an agency API key
  (``sekat_<key id>_***``) and a webhook signing secret (``whsec_***``);
- a phone or account number, its digits written bare, with spaces, dashes or
  parentheses (``012-345 6789``, ``+60 12-345 6789``, ``5140 1234-5678``) or
  as an IBAN (``GB82 WEST 1234 5698 7654 32``), with 7 digits or more,
  becomes ``mask()`` of its characters without separators: the last four kept
  (``800-123-4567`` -> ``******4567``); digits ending a word of letters too,
  the word kept (``acct5140123456`` -> ``acct******3456``);
- an e-mail address (an appellant's contact details, docs/appeals.md)
  keeps only its domain: ``ali.bin.abu@example.my`` -> ``***@example.my``;
- kept readable: dates and times, numbers after ``offset``, ``timestamp``,
  ``lag`` or ``watermark``, port numbers after ``port(s)`` (``ports 9092
  9093``), numbers with a unit (``1234567 ms``), decimals, versions and
  addresses (``1.2.3456789``, ``192.168.100.200``), digits mixed with letters
  (hex ids, UUIDs), and any number of fewer than 7 digits.

It runs on every record, so each rule is an expression compiled once: one pass
for identifiers, and one for secret shapes only over text holding a hint of one
(``://``, ``pass``, ``secret``, ``api``, ``sekat_``, ``whsec_``). A match of 7 digits or more
costs a look-back for a counter's name and a ``mask``.

Library loggers that dump request bodies (aiokafka, kafka-python) are also kept
at INFO or above, since their debug lines carry whole events.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

from sekat.identifiers import mask

# A number starts where no digit is glued before it (a letter may be: see _glued_to_hex; '_' too: phone_6012...),
# not inside a decimal (1.2.3456789), a date (2026-11-29) or the last group of a UUID (...-446655440000), and has
# 7 digits or more.
_NUMBER_START = (r"(?=[+(\d])(?<!\d)(?<!\d\.)(?<![0-9a-fA-F]{4}-)(?=(?:[ ()+-]{0,3}\d){7})"
                 r"(?!(?:19|20)\d\d-[01]\d-[0-3]\d(?!\d))")
# Written with a space or a dash between groups, with a parenthesis around an area code: +60 12-345 6789, (03) 7654 3210.
_NUMBER_BODY = r"(?:\+|\(\+?)?\d+(?:(?:\)?[ -]\(?|\))\d{2,}){0,6}"
# It ends where no letter or digit is glued after it, and is not a decimal or a quantity (1234567 ms).
_NUMBER_END = r"(?![^\W_]|\.\d| ?(?:ns|us|µs|ms|s|sec|seconds|min|minutes|h|hours|B|bytes|KiB|MiB|GiB)\b)"
_IBAN = r"(?=[A-Z]{2}\d\d)(?<![^\W_])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![^\W_])"
_IDENTIFIER = re.compile(_IBAN + "|" + _NUMBER_START + _NUMBER_BODY + _NUMBER_END)
# Counters that grow past 7 digits and read as numbers, not identifiers: offset=12345678, 'lag': 2345678.
_COUNTER_BEFORE = re.compile(r"(?<![^\W_])(?i:offset|timestamp|lag|watermark)s?['\"]?(?::? ?|=)\Z")
# Port numbers listed with spaces (ports 9092 9093) read as one spaced number; kept when every group is port-sized.
_PORTS_BEFORE = re.compile(r"(?<![^\W_])(?i:port)s?['\"]?(?::? ?|=)\Z")
_PORT_SIZED = re.compile(r"\d{1,5}(?:\D+\d{1,5})*")
_UUID_GROUP_BEFORE = re.compile(r"[0-9a-fA-F]{4}-\Z")
_NOT_KEPT = re.compile(r"[^0-9A-Za-z+]")  # the separators dropped before masking

_SECRET_SHAPE = re.compile(
    r"(?P<userinfo>(?<=://)[^\s/:@]*:)[^\s/@]+(?=@)"  # scheme://user:PASSWORD@host
    # password=..., sasl_plain_password='...', 'password': '...', api_key=..., client_secret=...
    r"|(?P<pair>(?<!\w)(?i:\w*(?:password|passwd|secret|api[_-]?key))(?:=|['\"]: ?)(?P<quote>['\"])?)"
    r"(?(quote)[^'\"]*|[^\s'\"&,;)}\]]*)"
    r"|(?P<apikey>\bsekat_[0-9a-f]{12}_)[\w-]+"  # an agency API key: sekat_<key id>_<secret>
    r"|(?P<whsec>\bwhsec_)[A-Za-z0-9+/=]+"  # a webhook signing secret (SEKAT_INSTITUTIONS_FILE)
)
# An e-mail address's local part (a domain with a dot must follow: ``rule@1`` is a rule id, not an address).
_EMAIL_LOCAL = re.compile(r"(?<![\w.+-])[\w.+-]+@(?=[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# Text with none of these has no secret shape: the expression above is not worth running.
_SECRET_HINTS = ("://", "sekat_", "pass", "secret", "api", "whsec_")
# Loggers whose DEBUG lines carry request and message bodies.
_BODY_LOGGERS = ("aiokafka", "kafka")


def _glued_to_hex(match: re.Match[str]) -> bool:
    """Digits glued after a letter are an identifier when the word before them is all letters (acct5140123456,
    MSISDN60123456789); mixed with digits they are a hex id or a UUID's group (4bf92f3577b34da6, ...-b12345678901)."""
    text, start = match.string, match.start()
    if not start or not text[start - 1].isalpha():
        return False
    word = start - 1
    while word and text[word - 1].isalnum():
        word -= 1
    return not text[word:start].isalpha() or _UUID_GROUP_BEFORE.search(text, max(0, word - 5), word) is not None


def _mask_identifier(match: re.Match[str]) -> str:
    if _glued_to_hex(match):
        return match.group()
    before = max(0, match.start() - 16), match.start()
    if _COUNTER_BEFORE.search(match.string, *before):
        return match.group()
    if _PORTS_BEFORE.search(match.string, *before) and _PORT_SIZED.fullmatch(match.group()):
        return match.group()
    return mask(_NOT_KEPT.sub("", match.group()))


def _mask_secret(match: re.Match[str]) -> str:
    return match.group(match.lastgroup or 0) + "***"


def secrets_of(settings: Any) -> list[str]:
    """The configured secrets worth scrubbing from text: the SASL password, the proxy hash key; the password of each Redis URL
    (``SEKAT_REDIS_URL``, ``SEKAT_API_REDIS_URL``), from its userinfo or its query (``?password=``, ``?ssl_password=``), as written and as redis-py reads it."""
    found = [settings.kafka_sasl_password, getattr(settings, "proxy_hash_key", ""), getattr(settings, "audit_key", "")]
    for url in (urlparse(u) for u in (settings.redis_url, getattr(settings, "api_redis_url", "")) if u):
        if url.password:
            found += [url.password, unquote(url.password)]
        for part in url.query.split("&"):
            name, _, raw = part.partition("=")
            if "password" in name.lower():
                found += [raw, unquote(raw)]
        # redis-py decodes the query twice: once as a form ('+' is a space), once more with unquote.
        found += [unquote(v) for k, v in parse_qsl(url.query) if "password" in k.lower()]
    return [s for s in dict.fromkeys(found) if s and len(s) >= 3]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    lowered = text.lower()
    if any(hint in lowered for hint in _SECRET_HINTS):
        text = _SECRET_SHAPE.sub(_mask_secret, text)
    if "@" in text:
        text = _EMAIL_LOCAL.sub("***@", text)
    return _IDENTIFIER.sub(_mask_identifier, text)


def mask_identifiers(raw: bytes) -> bytes:
    """``raw`` (any encoding) with every phone or account number masked as in a log line, other bytes kept:
    what a dead letter keeps of a refused record (docs/privacy.md)."""
    return _IDENTIFIER.sub(_mask_identifier, raw.decode("latin-1")).encode("latin-1")


# The factory ``install`` set and the one it wraps, so that installing again replaces ours, not stacks on it.
_installed: tuple[Callable[..., logging.LogRecord], Callable[..., logging.LogRecord]] | None = None


def install(secrets: Iterable[str], level: int) -> None:
    """Redact every log record from now on; keep body-dumping library loggers at INFO or above."""
    global _installed
    scrub = tuple(secrets)
    previous = logging.getLogRecordFactory()
    if _installed is not None and previous is _installed[0]:  # installed again: wrap what ours wrapped
        previous = _installed[1]

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string: let logging report it as usual
            return record
        record.msg, record.args = redact(message, scrub), ()  # a tuple: formatters such as mode's wrap None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), scrub)
        return record

    _installed = (factory, previous)
    logging.setLogRecordFactory(factory)
    for name in _BODY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, level))
