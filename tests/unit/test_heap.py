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
