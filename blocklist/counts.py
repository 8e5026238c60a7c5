"""Blocklist entries by kind and status, kept by the local replica as it applies changes: the entry gauge.

``sekat_blocklist_entries{kind,status}`` counts each entry of the index under its own status (reported,
confirmed, revoked), or ``expired`` when it is past its expiry and not revoked. The replica holds every
entry's code (status and kind, ``blocklist.index_scan``) and expiry, so the counts cost nothing to read:

    install    counted from the arrays in one vectorised pass when the replica installs a copy of the index
               (start, a rebuild, an overlay merge: O(entries) then, as that install is anyway), with the
               entries that will expire later sorted by expiry
    change     each change the replica applies moves its key from its old bucket to its new one (O(1)); a
               change to an entry that will expire later also goes on a heap of expiries
    advance    at each tick, the entries whose expiry has passed since the last tick move to ``expired``:
               the next slice of the sorted expiries plus the heap's due items, each checked against the
               entry as it is now (a later change may have moved it), O(entries expired)

The counts are as of a ``watermark`` (whole epoch seconds): an entry counts as expired when its expiry
(whole seconds, as the replica keeps it) is at or before it, as the replica's own lookups treat it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

from sekat.blocklist.index_scan import ABSENT, CONFIRMED, KIND_CODES, REPORTED, REVOKED, STATUS_BITS, active

STATUSES = {"reported": REPORTED, "confirmed": CONFIRMED, "revoked": REVOKED}
_EXPIRED = 32  # buckets 0-31 are codes; 32 + (code >> 2) is the kind's expired entries
_BUCKETS = _EXPIRED + 8

State = tuple[int, int]  # an entry's code and expiry (epoch seconds, 0 = never); (ABSENT, 0): not in the index
Locate = Callable[[str], tuple[int, int, int]]  # key -> (its index in the arrays or -1, code, expiry)


def live(code: int) -> bool:
    """Whether an entry of this code is one a lookup finds (reported or confirmed)."""
    return (code & STATUS_BITS) in (REPORTED, CONFIRMED)


class EntryCounts:
    """Entries by kind and status of one installed copy of the index and the changes applied to it since."""

    def __init__(self, codes: np.ndarray, expiries: np.ndarray, locate: Locate, watermark: int = 0) -> None:
        self._codes, self._expiries, self._locate = codes, expiries, locate
        self.watermark = watermark
        live = active(codes)
        gone = live & (expiries > 0) & (expiries <= watermark)
        buckets = codes.astype(np.intp)
        buckets[gone] = _EXPIRED + (codes[gone] >> 2)
        self._n: list[int] = np.bincount(buckets, minlength=_BUCKETS).tolist()
        future = np.flatnonzero(live & (expiries > watermark))
        # rows as uint32 (4 bytes an entry, not 8): with the expiries, 8 bytes an entry that expires later
        self._order = future[np.argsort(expiries[future])].astype(np.uint32)  # ties in any order: one tick moves them
        self._due = expiries[self._order]
        self._next = 0
        self._heap: list[tuple[int, str]] = []

    @property
    def pending(self) -> int:
        """Expiries waiting on the heap (changes since the install that expire later)."""
        return len(self._heap)

    def _bucket(self, state: State) -> int:
        code, expiry = state
        return _EXPIRED + (code >> 2) if live(code) and 0 < expiry <= self.watermark else code

    def change(self, key: str, old: State, new: State) -> None:
        """``key`` went from ``old`` to ``new`` (each (ABSENT, 0) when not in the index)."""
        if old == new:
            return  # a re-announced key: nothing moved
        if old[0] != ABSENT:
            self._n[self._bucket(old)] -= 1
        if new[0] != ABSENT:
            self._n[self._bucket(new)] += 1
            if live(new[0]) and new[1] > self.watermark:
                heapq.heappush(self._heap, (new[1], key))

    def advance(self, now: float) -> dict[tuple[str, str], int]:
        """Move the entries expired by ``now`` (epoch seconds) to ``expired``; the counts by (kind, status)."""
        mark = max(self.watermark, int(now))
        # searched as uint32: a Python int would have numpy copy the whole array to int64 first
        end = int(np.searchsorted(self._due, np.uint32(min(mark, 2**32 - 1)), side="right"))
        rows, due = self._order[self._next:end], self._due[self._next:end]
        self._next = end
        codes = self._codes[rows]
        still = active(codes) & (self._expiries[rows] == due)  # not changed since (or changed back)
        moved = np.bincount(codes[still], minlength=_EXPIRED)
        for code in np.flatnonzero(moved).tolist():
            self._n[code] -= int(moved[code])
            self._n[_EXPIRED + (code >> 2)] += int(moved[code])
        if self._heap and self._heap[0][0] <= mark:
            seen: set[int | str] = set(rows[still].tolist())  # a key in both is moved once
            while self._heap and self._heap[0][0] <= mark:
                expiry, key = heapq.heappop(self._heap)
                row, code, now_expiry = self._locate(key)
                found: int | str = row if row >= 0 else key
                if not live(code) or now_expiry != expiry or found in seen:
                    continue
                seen.add(found)
                self._n[code] -= 1
                self._n[_EXPIRED + (code >> 2)] += 1
        self.watermark = mark
        return self.by_kind_status()

    def by_kind_status(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for kind, bit in KIND_CODES.items():
            for status, code in STATUSES.items():
                counts[kind, status] = self._n[code | bit]
            counts[kind, "expired"] = self._n[_EXPIRED + (bit >> 2)]
        return counts
