"""A supervised task that dies is started again, with a backoff that grows while it keeps dying.

Given a task that raises on its first three runs and then runs until cancelled, each death is told to
``on_crash`` with its error and the task is started again after a delay that doubles (jittered between half
and all of it); a task that returns is a death too; cancelling the supervisor stops it and is no crash.
"""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise

import pytest

from sekat.streams import retry


def test_a_task_that_dies_is_restarted_with_growing_backoff_until_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "RESTART_START", 0.04)
    monkeypatch.setattr(retry, "RESTART_MAX_S", 0.16)
    starts: list[float] = []
    crashes: list[BaseException] = []

    async def run() -> None:
        starts.append(time.monotonic())
        if len(starts) == 1:
            return  # ended by itself: it is meant to run until cancelled
        if len(starts) <= 4:
            raise ValueError(f"bad batch {len(starts)}")
        await asyncio.Event().wait()

    async def scenario() -> None:
        supervisor = asyncio.ensure_future(retry.supervise("screening consumer", run, crashes.append))
        while len(starts) < 5:
            await asyncio.sleep(0.01)
        supervisor.cancel()
        with pytest.raises(asyncio.CancelledError):
            await supervisor

    asyncio.run(scenario())
    assert [type(e).__name__ for e in crashes] == ["RuntimeError", "ValueError", "ValueError", "ValueError"]
    assert str(crashes[1]) == "bad batch 2"
    gaps = [b - a for a, b in pairwise(starts)]
    for gap, delay in zip(gaps, (0.04, 0.08, 0.16, 0.16)):  # doubling, capped at RESTART_MAX_S
        assert delay * 0.5 - 0.005 <= gap <= delay + 0.05, (gaps, delay)
