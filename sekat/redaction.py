"""Redaction of every log record, ours and the libraries': no secret and no bare phone/account number.

Sekat's own log lines mask identifiers where they are written
(``sekat.identifiers.mask``); this is the net under them, for lines written
by libraries at any level (aiokafka at debug prints each request, SASL
authentication bytes included). ``install`` wraps the log record factory, so it
holds whatever handlers Faust or uvicorn set up later:

- each configured secret (SASL password, Redis URL password) becomes ``***``;
- a run of 7 or more digits standing alone (an E.164 number, a bare account
  number) keeps its last four: ``+60123456789`` -> ``********6789``.

Library loggers that dump request bodies (aiokafka, kafka-python) are also kept
at INFO or above, since their debug lines carry whole events.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlparse

from sekat.identifiers import mask

_DIGIT_RUN = re.compile(r"(?<![\w.])\+?\d{7,}(?![\w.])")
# Loggers whose DEBUG lines carry request and message bodies.
_BODY_LOGGERS = ("aiokafka", "kafka")


def secrets_of(settings: Any) -> list[str]:
    """The secrets in ``settings`` worth scrubbing from text: the SASL password, the Redis URL's password."""
    found = [settings.kafka_sasl_password]
    password = urlparse(settings.redis_url).password
    if password:
        found += [password, unquote(password)]
    return [s for s in dict.fromkeys(found) if s and len(s) >= 3]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return _DIGIT_RUN.sub(lambda m: mask(m.group()), text)


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
