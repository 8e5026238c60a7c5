"""The worker's garbage-collector policy: long-lived objects frozen out of the collector's walks."""

import gc
import weakref
from typing import Any

from prometheus_client import CollectorRegistry

from sekat.streams.heap import HeapKeeper


class Node:
    me: object = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ticks_freeze_survivors_and_an_hourly_full_collection_frees_cycles_that_died_frozen() -> None:
    registry, clock = CollectorRegistry(), Clock()
    keeper = HeapKeeper(registry, freeze_every_s=10, full_every_s=3600, clock=clock)
    try:
        gc.unfreeze()
        keeper.tick()  # the first tick freezes what is alive
        frozen = gc.get_freeze_count()
        assert frozen > 0 and registry.get_sample_value("sekat_gc_frozen_objects") == frozen

        cycle = Node()
        cycle.me = cycle  # alive at the next freeze, garbage after it
        dead = weakref.ref(cycle)
        clock.now += 10
        keeper.tick()
        assert gc.get_freeze_count() > frozen
        del cycle  # a frozen cycle: only the hourly full collection can free it
        clock.now += 5
        keeper.tick()  # not due yet
        gc.collect()
        assert dead() is not None  # frozen: the collector does not walk it
        clock.now += 3600
        keeper.tick()
        assert dead() is None  # unfrozen, collected, and the survivors frozen again

        gc.collect()  # observed through the callback
        assert registry.get_sample_value("sekat_gc_pause_seconds_count", {"generation": "2"}) >= 1
    finally:
        keeper.close()
        gc.unfreeze()


def test_a_tick_does_not_count_the_frozen_list_which_walks_all_of_it(monkeypatch: Any) -> None:
    registry, clock = CollectorRegistry(), Clock()
    keeper = HeapKeeper(registry, freeze_every_s=1, full_every_s=3600, clock=clock)
    counted = []
    real = gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", lambda: counted.append(1) or real())
    try:
        gc.unfreeze()
        keeper.tick()  # first freeze: counted exactly, once
        assert len(counted) == 1
        for _ in range(5):
            clock.now += 1
            keeper.tick()  # freezes every second, counting only what it froze
        assert len(counted) == 1
        assert registry.get_sample_value("sekat_gc_frozen_objects") >= real() * 0.9
        clock.now += 3600
        keeper.tick()  # the hourly full collection counts exactly again
        assert len(counted) == 2 and registry.get_sample_value("sekat_gc_frozen_objects") == real()
    finally:
        keeper.close()
        gc.unfreeze()


def test_a_tick_freezes_without_a_collection_so_a_cache_of_untrackable_keys_stays_frozen() -> None:
    """A collection untracks a dict whose contents it finds untrackable (an identifier cache's keys are tuples of
    strings); its next new key tracks it again in the youngest generation, and every collection walks it whole.
    A tick freezes it while tracked instead, and new keys no longer bring it back into the collector's walks."""
    registry, clock = CollectorRegistry(), Clock()
    keeper = HeapKeeper(registry, freeze_every_s=1, full_every_s=3600, clock=clock)
    started: list[int] = []

    def count_collections(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(info["generation"])

    try:
        gc.unfreeze()
        keeper.tick()  # the first tick: the full collection
        cache: dict[tuple[str, str], int] = {}
        for i in range(1000):
            cache[(f"+6012{i:07d}", "MY")] = i  # a new tuple is tracked, so is the dict holding it
        assert gc.is_tracked(cache)
        clock.now += 1
        gc.callbacks.append(count_collections)
        try:
            keeper.tick()
        finally:
            gc.callbacks.remove(count_collections)
        assert started == []  # the tick collected nothing: a freeze alone
        cache[("+60129999999", "MY")] = 1000  # a new key after the freeze
        gc.collect()
        assert gc.is_tracked(cache) and not any(o is cache for o in gc.get_objects())  # frozen, never walked
    finally:
        keeper.close()
        gc.unfreeze()
