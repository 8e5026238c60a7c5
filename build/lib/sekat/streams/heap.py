"""Keeping Python's cyclic garbage collector off the hot path's latency.

The worker holds a large, long-lived heap (Faust, aiokafka, the identifier
caches). Left alone, the hot path allocates fast enough to trigger a full
(generation 2) collection every second or two, each walking that whole heap
again and collecting nothing: pauses of a hundred milliseconds and more, which
show as latency spikes (docs/performance.md has the figures).

The policy (``HeapKeeper.tick``, from a one-second timer in the worker):

- every ``freeze_every_s`` (1 s): collect the objects not yet frozen (cheap:
  only what survived since the last tick), then ``gc.freeze()`` them: the
  collector never walks them again, so the automatic collections stay short.
  A longer interval lets the automatic collections in between walk more
  survivors, and makes the freeze's own collection longer;
- every ``full_every_s`` (1 h): ``gc.unfreeze()`` and one full collection,
  so a cycle that was alive when frozen and died later is freed within the
  hour instead of never (one long pause an hour instead of one a second);
  then freeze again.

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
            gc.collect()  # walks only the objects not frozen yet
            self.frozen.inc(len(gc.get_objects(generation=2)))  # what the collection left is what is frozen
            gc.freeze()
            self._last_freeze = now

    def close(self) -> None:
        if self._observe in gc.callbacks:
            gc.callbacks.remove(self._observe)
