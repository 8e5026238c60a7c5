"""The screening pipeline's ordering: batch N+1 is decided while N is in flight, and nothing durable moves ahead.

The pending batches here are the pipeline's side of ``sekat.streams.screening.PendingBatch`` (acked, write, observe, read_back); the
test decides when each batch's acknowledgements arrive, and records the order of writes and commits.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sekat.streams.consumer import Pipeline


class FakePendingBatch:
    def __init__(self, name: str, log: list[str], read_back: bool = False) -> None:
        self.name, self.log, self.read_back = name, log, read_back
        self.acks = asyncio.Event()
        self.write_gate = asyncio.Event()
        self.write_gate.set()
        self.fail: Exception | None = None

    async def acked(self) -> None:
        await self.acks.wait()
        if self.fail is not None:
            raise self.fail
        self.log.append(f"acked {self.name}")

    async def write(self) -> None:
        self.log.append(f"write {self.name}")
        await self.write_gate.wait()
        self.log.append(f"written {self.name}")

    def observe(self) -> None:
        self.log.append(f"observed {self.name}")


class Commits:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls: list[dict[Any, int]] = []

    async def __call__(self, offsets: dict[Any, int]) -> None:
        self.calls.append(dict(offsets))
        self.log.append(f"commit {sorted(offsets.items())}")
        await self.gate.wait()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_a_later_batch_acked_first_is_committed_only_after_the_one_before_it() -> None:
    async def scenario() -> list[str]:
        log: list[str] = []
        pipeline = Pipeline(Commits(log), depth=4)
        first, second = FakePendingBatch("1", log), FakePendingBatch("2", log)
        pipeline.add([first], {"p0": 10})
        pipeline.add([second], {"p0": 20})
        second.acks.set()
        await settle()
        assert not any(line.startswith(("commit", "write 2")) for line in log), log
        first.acks.set()
        assert await pipeline.drain(5)
        return log

    log = asyncio.run(scenario())
    assert log.index("written 1") < log.index("write 2")  # rule state in batch order
    assert all(not line.startswith("commit") for line in log[:log.index("written 1")])
    assert log[-1] == "commit [('p0', 20)]" and log.index("commit [('p0', 20)]") > log.index("written 2")


def test_the_next_read_waits_for_writes_it_can_see_and_not_for_the_others() -> None:
    async def scenario() -> None:
        log: list[str] = []
        pipeline = Pipeline(Commits(log), depth=4)
        unread = FakePendingBatch("who-acted", log, read_back=False)  # e.g. only ``acted`` writes
        pipeline.add([unread], {"p0": 1})
        assert pipeline.read_back is None  # the next batch reads at once, not after this one's round trips
        stateful = FakePendingBatch("windows", log, read_back=True)
        stateful.write_gate.clear()
        pipeline.add([stateful], {"p0": 2})
        barrier = pipeline.read_back
        assert barrier is not None
        unread.acks.set()
        stateful.acks.set()
        await settle()
        assert "write windows" in log and not barrier.done()  # writing, not yet written: the read waits
        stateful.write_gate.set()
        await settle()
        assert barrier.done()
        assert await pipeline.drain(5)

    asyncio.run(scenario())


def test_commits_are_one_at_a_time_of_the_newest_durable_offsets() -> None:
    async def scenario() -> Commits:
        log: list[str] = []
        commits = Commits(log)
        commits.gate.clear()  # the first commit's round trip is slow
        pipeline = Pipeline(commits, depth=8)
        batches = [FakePendingBatch(str(i), log) for i in range(5)]
        for i, batch in enumerate(batches):
            pipeline.add([batch], {"a": i + 1, f"q{i}": 100})
            batch.acks.set()
            await settle()
        assert len(commits.calls) == 1  # one in flight; the others wait and are merged
        commits.gate.set()
        assert await pipeline.drain(5)
        return commits

    commits = asyncio.run(scenario())
    assert len(commits.calls) == 2
    assert commits.calls == [{"a": 1, "q0": 100}, {"a": 5, "q1": 100, "q2": 100, "q3": 100, "q4": 100}]


def test_no_more_than_depth_batches_are_in_flight() -> None:
    async def scenario() -> None:
        log: list[str] = []
        pipeline = Pipeline(Commits(log), depth=2)
        first, second = FakePendingBatch("1", log), FakePendingBatch("2", log)
        pipeline.add([first], {"p0": 1})
        pipeline.add([second], {"p0": 2})
        waiting = asyncio.ensure_future(pipeline.wait_for_room())
        await settle()
        assert not waiting.done()
        first.acks.set()
        await settle()
        assert waiting.done()
        second.acks.set()
        assert await pipeline.drain(5)

    asyncio.run(scenario())


def test_a_failed_batch_stops_the_consumer_and_its_offsets_are_never_committed() -> None:
    async def scenario() -> list[dict[Any, int]]:
        log: list[str] = []
        commits = Commits(log)
        pipeline = Pipeline(commits, depth=4)
        bad, after = FakePendingBatch("1", log), FakePendingBatch("2", log)
        bad.fail = RuntimeError("broker gone for good")
        pipeline.add([bad], {"p0": 1})
        pipeline.add([after], {"p0": 2})
        bad.acks.set()
        after.acks.set()
        await settle()
        with pytest.raises(RuntimeError, match="broker gone"):
            pipeline.check()
        assert await pipeline.drain(1) is False
        return commits.calls

    assert asyncio.run(scenario()) == []


def test_drain_gives_up_after_its_timeout_when_acknowledgements_never_come() -> None:
    async def scenario() -> bool:
        log: list[str] = []
        pipeline = Pipeline(Commits(log), depth=4)
        pipeline.add([FakePendingBatch("stuck", log)], {"p0": 1})
        return await pipeline.drain(0.05)

    assert asyncio.run(scenario()) is False
