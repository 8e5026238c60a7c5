"""When a screening stream counts as stalled: records waiting and no batch finished for SEKAT_STALL_AFTER_S.

Given a clock the test moves: a stream with lag and no finished batch is stalled once the setting's time
has passed, and not before; an idle stream is never stalled however long it waits; a backlog worked
through batch by batch is not stalled; a batch whose output Kafka never acknowledges (a send retried
forever) stalls its stream even before lag shows it, and the stall gauges say so until it goes through.
A stream whose consumer task died is stalled at once, and stays so through restarts that die again, until
it finishes a batch or the restarted consumer has run the setting's time and sees nothing waiting on it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sekat.metrics.worker import WorkerMetrics
from sekat.streams.consumer import FetchedBatch, Pipeline, ScreeningConsumer
from sekat.streams.progress import Progress

from sekat.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lag_with_no_progress_stalls_the_stream_after_the_configured_time() -> None:
    clock = Clock()
    progress = Progress(["transfers", "calls"], stall_after_s=60, clock=clock)
    progress.saw_lag(["calls"])
    clock.now += 59
    progress.saw_lag(["calls"])
    assert progress.stalled() == [] and progress.stalled_for("calls") == 59
    clock.now += 1
    assert progress.stalled() == ["calls"]
    assert progress.stalled_for("transfers") == 0  # nothing waits on transfers


def test_an_idle_stream_is_never_stalled() -> None:
    clock = Clock()
    progress = Progress(["transfers", "calls"], stall_after_s=60, clock=clock)
    for _ in range(24):
        clock.now += 3600
        progress.saw_lag([])
    assert progress.stalled() == []
    # Records arrive after a day of quiet: the stall clock runs from the last time nothing waited.
    clock.now += 5
    progress.saw_lag(["calls"])
    assert progress.stalled_for("calls") == 5 and progress.stalled() == []


def test_a_backlog_worked_through_batch_by_batch_is_not_stalled() -> None:
    clock = Clock()
    progress = Progress(["calls"], stall_after_s=60, clock=clock)
    for _ in range(100):
        progress.saw_lag(["calls"])
        progress.taken(["calls"])
        clock.now += 30
        progress.finished(["calls"])
    assert progress.stalled() == []


def test_a_batch_never_finished_stalls_its_stream_without_lag_and_finishing_it_clears_the_stall() -> None:
    clock = Clock()
    progress = Progress(["transfers", "calls"], stall_after_s=60, clock=clock)
    progress.saw_lag([])
    clock.now += 4  # quiet since the last lag reading: the clock starts with the batch that ends the quiet
    progress.taken(["calls"])
    clock.now += 59
    assert progress.stalled() == []
    clock.now += 2
    progress.saw_lag([])  # before a partition's first commit its fetched records do not show as lag
    assert progress.stalled() == ["calls"]
    progress.finished(["calls"])
    assert progress.stalled() == [] and progress.stalled_for("calls") == 0


def test_the_consumer_starting_restarts_the_clock() -> None:
    clock = Clock()
    progress = Progress(["calls"], stall_after_s=60, clock=clock)
    clock.now += 600  # loading the replica
    progress.restart()
    progress.saw_lag(["calls"])  # a backlog from while no worker ran
    assert progress.stalled() == []


class NeverAcked:
    """A batch's output that Kafka keeps refusing: its acknowledgement never comes (the retry goes on)."""

    def __init__(self, stream: str) -> None:
        self.screen = type("ScreenRef", (), {"stream": stream})()
        self.read_back = False
        self.gate = asyncio.Event()

    async def acked(self) -> None:
        await self.gate.wait()

    async def write(self) -> None:
        pass

    def observe(self) -> None:
        pass


class FakeScreen:
    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.processes = None
        self.pending: list[NeverAcked] = []

    async def start(self, records: Any, read_back: Any, prepared: Any) -> NeverAcked:
        pending = NeverAcked(self.stream)
        self.pending.append(pending)
        return pending


def test_a_send_that_keeps_failing_stalls_the_stream_and_its_gauges_until_it_goes_through() -> None:
    async def scenario() -> None:
        clock = Clock()
        registry = CollectorRegistry()
        calls, transfers = FakeScreen("calls"), FakeScreen("transfers")
        consumer = ScreeningConsumer(Settings(stall_after_s=3), {"telco.calls": calls, "bank.transfers": transfers},
                                     WorkerMetrics(registry))
        consumer.progress = progress = Progress(["transfers", "calls"], 3, clock)
        consumer.metrics.follow_stalls(progress.streams, progress.stalled_for, progress.is_stalled)
        commits: list[dict[Any, int]] = []

        async def commit(offsets: dict[Any, int]) -> None:
            commits.append(offsets)

        pipeline = Pipeline(commit, 4, consumer._finished)
        await consumer._decide(FetchedBatch({"telco.calls": [object()]}, {"p0": 1}, {}), pipeline)
        clock.now += 2.9
        assert progress.stalled() == []
        clock.now += 0.2
        assert progress.stalled() == ["calls"]
        assert registry.get_sample_value("sekat_stream_stalled", {"stream": "calls"}) == 1
        assert registry.get_sample_value("sekat_stream_stalled_seconds", {"stream": "calls"}) == pytest.approx(3.1)
        assert registry.get_sample_value("sekat_stream_stalled", {"stream": "transfers"}) == 0
        calls.pending[0].gate.set()  # Kafka accepts the output again
        assert await pipeline.drain(5)
        assert progress.stalled() == [] and commits == [{"p0": 1}]
        assert registry.get_sample_value("sekat_stream_stalled", {"stream": "calls"}) == 0

    asyncio.run(scenario())


def test_a_crashed_consumer_stalls_its_streams_at_once_until_they_work_again() -> None:
    clock = Clock()
    registry = CollectorRegistry()
    progress = Progress(["transfers", "calls"], stall_after_s=60, clock=clock)
    WorkerMetrics(registry).follow_stalls(progress.streams, progress.stalled_for, progress.is_stalled)
    clock.now += 3600  # long after any lag was read
    progress.taken(["calls"])  # its batch will never finish
    progress.crashed(progress.streams)
    assert progress.stalled() == ["transfers", "calls"]  # nothing waits on transfers: stalled all the same
    assert registry.get_sample_value("sekat_stream_stalled", {"stream": "transfers"}) == 1
    clock.now += 5
    assert registry.get_sample_value("sekat_stream_stalled_seconds", {"stream": "calls"}) == 5
    # Restarted, it dies again before it has proven anything: still stalled, still counting from the first crash.
    progress.restart()
    clock.now += 2
    progress.saw_lag(["calls"])
    progress.crashed(progress.streams)
    assert progress.stalled() == ["transfers", "calls"] and progress.stalled_for("calls") == 7
    # Restarted again, it works: calls finishes a batch; idle transfers is cleared once the consumer has run
    # the stall time and sees nothing waiting on it.
    progress.restart()
    progress.taken(["calls"])
    progress.finished(["calls"])
    assert progress.stalled() == ["transfers"] and progress.is_crashed("transfers")
    clock.now += 59
    progress.saw_lag([])
    assert progress.stalled() == ["transfers"]
    clock.now += 1
    progress.saw_lag([])
    assert progress.stalled() == [] and not progress.is_crashed("transfers")
    assert registry.get_sample_value("sekat_stream_stalled", {"stream": "transfers"}) == 0


def test_no_lag_read_while_the_consumer_is_down_clears_a_crash() -> None:
    clock = Clock()
    progress = Progress(["calls"], stall_after_s=60, clock=clock)
    clock.now += 3600  # ran for an hour, then died
    progress.crashed(["calls"])
    progress.saw_lag([])  # a lag reading that says nothing waits, while nothing runs
    assert progress.stalled() == ["calls"]
