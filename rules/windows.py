"""Event-time sliding windows over observations, independent of arrival order.

``most_distinct`` answers: of all windows of ``width_ms`` that contain the
time ``at_ms``, how many distinct parties does the busiest one hold? Asking
"any window containing this event" rather than "the window ending now" makes
the answer the same whatever order the events arrive in: when the N-th
payer's transfer arrives, late or early, some window holding it holds N.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def most_distinct(points: Iterable[tuple[int, str]], at_ms: int, width_ms: int) -> int:
    near = sorted((t, who) for t, who in points if at_ms - width_ms <= t <= at_ms + width_ms)
    if not near:
        return 0
    best = 0
    inside: Counter[str] = Counter()
    right = 0
    for left, (start, _) in enumerate(near):
        if start > at_ms:
            break
        # the window [start, start + width] must also contain at_ms
        if start + width_ms < at_ms:
            continue
        while right < len(near) and near[right][0] <= start + width_ms:
            inside[near[right][1]] += 1
            right += 1
        best = max(best, len(inside))
        who = near[left][1]
        inside[who] -= 1
        if not inside[who]:
            del inside[who]
    return best
