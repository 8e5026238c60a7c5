"""Keeping Python's cyclic garbage collector off the hot path's latency.

The worker holds a large, long-lived heap (Faust, aiokafka, the identifier
caches). Left alone, the hot path allocates fast enough to trigger a full
(generation 2) collection every second or two, each walking that whole heap
again and collecting nothing: pauses of a hundred milliseconds and more, which
show as latency spikes (docs/performance.md has the figures).

The policy (``HeapKeeper.tick``, from a one-second timer in the worker):

- every ``freeze_every_s`` (1 s): ``gc.freeze()`` what is tracked now, without
  a collection first. Freezing moves the collector's lists whole (O(1)); the
  collector never walks frozen objects again, so the automatic collections
  walk only what was allocated since. No collection before it, because a
  collection *untracks* a dict whose keys and values it finds untrackable
  (strings, tuples of strings, numbers), such as the identifier caches'
  (``functools.lru_cache``): the next new key tracks the dict again, in the
  youngest generation, so every collection after it walks the whole cache
  again (tens of thousands of entries, milliseconds each time), and a freeze
  after a collection never holds it. Frozen while tracked, a cache stays out
  of the walks whatever is added to it. Cycles that were garbage at the
  moment of a freeze (what died since the last automatic young collection)
  wait for the hourly collection below;
- every ``full_every_s`` (1 h): ``gc.unfreeze()`` and one full collection,
  so a cycle that was alive (or garbage) when frozen is freed within the hour
  instead of never (one long pause an hour instead of one a second); then
  freeze again.

Reference counting still frees every acyclic object at once, frozen or not.
Pauses are observed in ``sekat_gc_pause_seconds{generation}`` and the frozen
population in ``sekat_gc_frozen_objects`` (counted when frozen; exact at the
first and at each hourly full collection: counting the frozen list walks all
of it, so it is done only then).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

FREEZE_EVERY_S = 1.0
FULL_EVERY_S = 3600.0
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class HeapKeeper:
    def __init__(self, registry: CollectorRegistry, freeze_every_s: float = FREEZE_EVERY_S,
                 full_every_s: float = FULL_EVERY_S, clock: Any = time.monotonic) -> None:
        self.freeze_every_s = freeze_every_s
        self.full_every_s = full_every_s
        self.clock = clock
        self.pauses = Histogram("sekat_gc_pause_seconds", "Python garbage-collector pauses in the worker.",
                                ["generation"], buckets=_BUCKETS, registry=registry)
        self.frozen = Gauge("sekat_gc_frozen_objects", "Objects the worker froze out of the collector's walks.",
                            registry=registry)
        self._by_generation = [self.pauses.labels(str(g)) for g in range(3)]
        self._started = 0.0
        self._last_freeze = float("-inf")
        self._last_full = clock()
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self._by_generation[min(2, int(info.get("generation", 2)))].observe(time.perf_counter() - self._started)

    def tick(self) -> None:
        now = self.clock()
        if now - self._last_full >= self.full_every_s or self._last_freeze == float("-inf"):
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self._last_full = self._last_freeze = now
            # Exact, and O(frozen objects): CPython walks the whole frozen list to count it, a pause of
            # milliseconds on a worker's heap, so only here, once an hour.
            self.frozen.set(gc.get_freeze_count())
        elif now - self._last_freeze >= self.freeze_every_s:
            self.frozen.inc(len(gc.get_objects()))  # the objects not frozen yet: what the freeze takes
            gc.freeze()  # no collection first (see the module's docstring)
            self._last_freeze = now

    def close(self) -> None:
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)
