"""How long an ended blocklist entry is kept: when it ended, and when it is due for the purge.

An entry ends when it is revoked (at its revoking report's ``reported_at``) or
when it expires (at ``expires_at``). The index keeps each ended or expiring
entry in one of two sorted sets by that time (``blocklist.store``), so the
purge (``streams.purge``) asks Redis for the entries ended before
``now - SEKAT_RETENTION_*_DAYS`` and reads those alone: its work is the
entries due, never the index.

An expiring entry is marked when it is written, with its future expiry: it
becomes due ``SEKAT_RETENTION_EXPIRED_DAYS`` after that, unless a renewal or
a newer report moves or removes the mark first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sekat.records import Entry, Status

REVOKED, EXPIRED = "revoked", "expired"
DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Retention:
    """Days an ended entry is kept, by how it ended (``SEKAT_RETENTION_REVOKED_DAYS`` / ``_EXPIRED_DAYS``), and
    a decided appeal after its decision (``SEKAT_RETENTION_APPEALS_DAYS``)."""

    revoked_days: int
    expired_days: int
    appeals_days: int

    def days(self, ended: str) -> int:
        return self.revoked_days if ended == REVOKED else self.expired_days


def ending(entry: Entry) -> tuple[str, float] | None:
    """How ``entry`` ends and when (epoch seconds): (``revoked``, when it was revoked), (``expired``, when it
    expires or expired), or None for an entry listed without an expiry."""
    if entry.status is Status.REVOKED:
        return REVOKED, datetime.fromisoformat(entry.reported_at).timestamp() if entry.reported_at else 0.0
    if entry.expires_at:
        return EXPIRED, datetime.fromisoformat(entry.expires_at).timestamp()
    return None


def due(entry: Entry, now: datetime, retention: Retention) -> str | None:
    """``revoked`` or ``expired`` when ``entry`` ended longer ago than its retention, else None."""
    ended = ending(entry)
    if ended is None or entry.active_at(now):
        return None
    how, at = ended
    return how if at + retention.days(how) * DAY_S <= now.timestamp() else None
