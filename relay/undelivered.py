"""The record the relay writes to ``SEKAT_TOPIC_UNDELIVERED`` when it gives a command up.

Keyed by the institution; it carries the command as it was on its topic (the exact bytes, base64, so it can
be replayed or sent by hand with the same signature input), where it was read, how many attempts were made
between ``first_attempt_at`` and ``given_up_at``, and the last error.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import orjson

from sekat.records import iso


def undelivered_record(*, command_id: str, institution: str, url: str, error: str, attempts: int,
                       first_attempt_at: float, given_up_at: float, topic: str, partition: int, offset: int,
                       timestamp_ms: int | None, value: bytes) -> bytes:
    return orjson.dumps({
        "command_id": command_id,
        "institution": institution,
        "url": url,
        "error": error[:1000],
        "attempts": attempts,
        "first_attempt_at": iso(datetime.fromtimestamp(first_attempt_at, timezone.utc)),
        "given_up_at": iso(datetime.fromtimestamp(given_up_at, timezone.utc)),
        "source": {"topic": topic, "partition": partition, "offset": offset, "timestamp_ms": timestamp_ms},
        "command_b64": base64.b64encode(value).decode("ascii"),
    })
