"""A batch's output: after any failure, the next wait for acknowledgements hands every record over again.

The producer here stands in for the app's (``send`` returns a future the test settles); what is pinned is
the batch's bookkeeping between hand-over and acknowledgement, not Kafka.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sekat.streams.output import OutputBatch, OutputTopics


class FlakyProducer:
    def __init__(self, fail_send_at: set[int], fail_ack_at: set[int]) -> None:
        self.calls = 0
        self.fail_send_at, self.fail_ack_at = fail_send_at, fail_ack_at
        self.acked: list[bytes] = []

    async def send(self, topic: str, key: bytes, value: bytes, *_: Any) -> asyncio.Future[None]:
        self.calls += 1
        if self.calls in self.fail_send_at:
            raise ConnectionError("broker went away mid-hand-over")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.calls in self.fail_ack_at:
            fut.set_exception(ConnectionError("not acknowledged"))
        else:
            fut.set_result(None)
            self.acked.append(value)
        return fut


class App:
    def __init__(self, producer: FlakyProducer) -> None:
        self.producer = producer

    async def maybe_start_producer(self) -> FlakyProducer:
        return self.producer


class Topic:
    def __init__(self, app: App) -> None:
        self.app = app

    def get_topic_name(self) -> str:
        return "sekat.decisions"


def test_a_hand_over_that_failed_part_way_is_handed_over_whole_on_the_next_wait() -> None:
    async def scenario() -> FlakyProducer:
        # send 1, 2: handed; 1 is not acknowledged. The re-hand-over fails at send 3 (its first record).
        # The wait after that must hand over both records again (sends 4 and 5), not wait on nothing.
        producer = FlakyProducer(fail_send_at={3}, fail_ack_at={1})
        topic = Topic(App(producer))
        out = OutputBatch(OutputTopics(*(topic,) * 5))  # type: ignore[arg-type]
        out.record(topic, b"k", b"first")  # type: ignore[arg-type]
        out.record(topic, b"k", b"second")  # type: ignore[arg-type]
        await out.produce()
        with pytest.raises(ConnectionError, match="not acknowledged"):
            await out.acked()
        with pytest.raises(ConnectionError, match="mid-hand-over"):
            await out.acked()
        await out.acked()
        return producer

    producer = asyncio.run(scenario())
    assert producer.calls == 5
    assert producer.acked[-2:] == [b"first", b"second"]
