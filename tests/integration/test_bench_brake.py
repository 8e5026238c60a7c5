"""The benchmarks' view of the safety brake on the real Redis: the trips a run left, and a clean slate before the next."""

from __future__ import annotations

import asyncio
import time

import pytest

from load_tests.harness import brake_tripped, reset_brake
from sekat.brake.store import BrakeStore, Trip
from tests.support import Stack, unique

pytestmark = pytest.mark.integration


def test_a_run_reads_the_trips_its_workers_left_and_the_next_run_starts_without_them(stack: Stack) -> None:
    prefix = unique("bb") + ":"
    url = stack.redis.url
    target = "entry:phone:+60123456789"

    async def trip() -> dict[str, float]:
        store = BrakeStore.from_url(url, prefix)
        try:
            await store.trip(Trip(target, 2_000, 1_800, 60, "2026-11-28T10:15:01.000Z", "w1", "reported"))
            return await store.add({target: 5}, time.time(), 60)
        finally:
            await store.close()

    assert asyncio.run(trip()) == {target: 5.0}
    tripped = brake_tripped(url, prefix)
    assert list(tripped) == [target] and tripped[target]["status"] == "reported"
    reset_brake(url, prefix)
    assert brake_tripped(url, prefix) == {}
    assert asyncio.run(trip()) == {target: 5.0}  # the window's counts were forgotten too
