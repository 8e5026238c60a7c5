"""Time, injected: what reads the clock takes a ``Clock``, so that tests move time instead of waiting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The current time in UTC: the ``Clock`` of a running worker or API."""
    return datetime.now(timezone.utc)
