"""Event-time sliding windows of distinct parties, independent of arrival order.

The question a window rule asks for one event at time ``t``: of all windows of
width ``w`` that contain ``t``, does the fullest hold at least ``N`` distinct
parties (the event's own included)? Asking "any window containing this event"
rather than "the window ending now" makes the answer the same whatever order
the events arrive in: when the N-th payer's transfer arrives, late or early,
some window holding it holds N.

``most_distinct`` is the plain definition, kept as the reference the
property tests hold the shell's implementation to (``sekat.streams.state``).
That implementation answers the same question at a cost bounded by ``N``,
whatever a key's history, from two facts:

* **Thinning is exact.** Cut time into slots of width ``w``. A window of
  width ``w`` holding any point of a party in slot ``j`` also holds that
  party's earliest or latest point in slot ``j`` (the window covers a prefix
  of the slot, a suffix, or all of it). So a key keeps at most two points per
  party and slot, and a caller who rings the same number 10,000 times keeps
  two points, not 10,000.
* **Stopping at the threshold is exact.** The sweep over the windows holding
  ``t`` stops as soon as one reaches ``N``. If none does, the points within
  ``w`` of ``t`` belong to fewer than ``2N`` parties (the windows
  ``[t-w, t]`` and ``[t, t+w]`` cover them), so at most ``12N`` points are
  read (three slots, two points per party and slot); when one does, the
  sweep has read at most as many.
* **A full window stays full.** Points are only added, and thinning keeps a
  party in every window that held one of its points, so a window that once
  held ``N`` parties holds them until its points are trimmed by age. The
  store notes the start of the latest full window it found on the key and,
  until that start is older than the trim's cutoff, answers any event that
  window holds from the note alone.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Sequence

_TOP = "\U0010ffff"


def most_distinct(points: Sequence[tuple[int, str]], at_ms: int, width_ms: int,
                  own: tuple[int, str] | None = None) -> int:
    """Distinct parties in the fullest window of ``width_ms`` containing ``at_ms``; ``points`` sorted (ms, party)."""
    lo = bisect_left(points, (at_ms - width_ms,))
    hi = bisect_right(points, (at_ms + width_ms, _TOP))
    near = list(points[lo:hi])
    if own is not None:
        insort(near, own)
    best = 0
    inside: Counter[str] = Counter()
    right = 0
    for start, who in near:
        if start > at_ms:
            break
        while right < len(near) and near[right][0] <= start + width_ms:
            inside[near[right][1]] += 1
            right += 1
        best = max(best, len(inside))
        inside[who] -= 1
        if not inside[who]:
            del inside[who]
    return best
