"""Event-time sliding windows over observations, independent of arrival order.

``most_distinct`` answers: of all windows of ``width_ms`` that contain the
time ``at_ms``, how many distinct parties does the busiest one hold? Asking
"any window containing this event" rather than "the window ending now" makes
the answer the same whatever order the events arrive in: when the N-th
payer's transfer arrives, late or early, some window holding it holds N.

``points`` are ``(event time ms, party)`` sorted ascending (Redis returns a
sorted set's range in that order); the cost is O(log n + k) for k points near
``at_ms``, so a busy payee does not make every event pay for its whole history.
``distinct_with`` asks it for one event, that event's own party included.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

_TOP = "\U0010ffff"


def most_distinct(points: Sequence[tuple[int, str]], at_ms: int, width_ms: int,
                  own: tuple[int, str] | None = None) -> int:
    lo = bisect_left(points, (at_ms - width_ms,))
    hi = bisect_right(points, (at_ms + width_ms, _TOP))
    near = list(points[lo:hi])
    if own is not None:
        insort(near, own)
    best = 0
    inside: Counter[str] = Counter()
    right = 0
    for left, (start, who) in enumerate(near):
        if start > at_ms:
            break
        if start + width_ms < at_ms:  # the window [start, start + width] must also contain at_ms
            continue
        while right < len(near) and near[right][0] <= start + width_ms:
            inside[near[right][1]] += 1
            right += 1
        best = max(best, len(inside))
        inside[who] -= 1
        if not inside[who]:
            del inside[who]
    return best


def distinct_with(points: Sequence[tuple[int, str]], occurred_at: datetime, width_ms: int, party: str) -> int:
    """``most_distinct`` for an event at ``occurred_at`` with ``party``: the event itself counts too."""
    at = int(occurred_at.timestamp() * 1000)
    return most_distinct(points, at, width_ms, (at, party))
