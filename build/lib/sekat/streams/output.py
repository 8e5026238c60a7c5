"""Output: commands, decisions and dead letters, sent as one acknowledged batch.

Every message of a batch is handed to the producer at once (``produce``); ``acked``
waits until Kafka has acknowledged all of them (acks=all). The screening
consumer commits the input batch only after ``acked`` returns, so an input
offset is never committed before its commands are durable (at-least-once).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson

from sekat.records import Command, Decision, Rejection, Report, Source


@dataclass
class OutputTopics:
    freeze: faust.TopicT
    block: faust.TopicT
    decisions: faust.TopicT
    deadletter: faust.TopicT
    reports: faust.TopicT  # automatic ``reported`` entries filed by rules
    # Per-institution routing (SEKAT_COMMAND_ROUTING): (for_bank, institution) -> that institution's own topic.
    routes: Mapping[tuple[bool, str], faust.TopicT] = field(default_factory=dict)

    def for_command(self, command: Command) -> faust.TopicT:
        """The institution's own topic when it has one, else the shared freeze (banks) or block (telcos) topic."""
        for_bank = command.action.for_bank
        own = self.routes.get((for_bank, command.institution)) if self.routes else None
        return own if own is not None else (self.freeze if for_bank else self.block)


class OutputBatch:
    """The output of one input batch; re-sendable as a whole (command ids are deterministic)."""

    def __init__(self, topics: OutputTopics) -> None:
        self._topics = topics
        self.messages: list[tuple[faust.TopicT, bytes, bytes]] = []
        self._pending: list[Awaitable[Any]] | None = None  # the producer's futures of the last hand-over

    def command(self, command: Command) -> None:
        topic = self._topics.for_command(command)
        self.messages.append((topic, command.institution.encode(), orjson.dumps(command.to_json())))

    def decision(self, decision: Decision, source: Source) -> None:
        body = decision.to_json()
        body["source"] = {"topic": source.topic, "partition": source.partition, "offset": source.offset}
        self.messages.append((self._topics.decisions, decision.event_id.encode(), orjson.dumps(body)))

    def report(self, report: Report) -> None:
        """A rule's automatic report, keyed ``kind:value`` like every report on the compacted topic."""
        self.messages.append((self._topics.reports, report.key.encode(), orjson.dumps(report.to_json())))

    def deadletter(self, source: Source, raw: bytes | None, rejection: Rejection, dead_at: str) -> None:
        raw = raw or b""
        body: dict[str, Any] = {
            "reason": rejection.reason,
            "message": rejection.message,
            "field": rejection.field,
            "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset,
                       "timestamp_ms": source.timestamp_ms},
            "dead_at": dead_at,
            "original_b64": base64.b64encode(raw).decode("ascii"),
            "original_key_b64": base64.b64encode(source.key).decode("ascii") if source.key else None,
        }
        self.messages.append((self._topics.deadletter, source.topic.encode(), orjson.dumps(body)))

    def record(self, topic: faust.TopicT, key: bytes, value: bytes) -> None:
        self.messages.append((topic, key, value))

    async def produce(self) -> None:
        """Hand every message to the producer (in order); ``acked`` then waits for Kafka's acknowledgements.

        Straight to the app's producer (acks=all), not through ``Topic.send``: Faust's per-message path
        (future message, sensors, a debug log line) cost more than the send itself on the hot path.
        """
        self._pending = None  # set only once every record is handed: a partial hand-over is no hand-over
        pending: list[Awaitable[Any]] = []
        if self.messages:
            producer = await self.messages[0][0].app.maybe_start_producer()
            for topic, key, value in self.messages:
                pending.append(await producer.send(topic.get_topic_name(), key, value, None, None, None))
        self._pending = pending

    async def acked(self) -> None:
        """Wait until Kafka acknowledged every record handed over; on a failure, the next call hands all again."""
        if self._pending is None:  # never handed, or the last hand-over or wait failed: all again (same ids)
            await self.produce()
        pending, self._pending = self._pending, None  # None until every acknowledgement is in
        for fut in pending or ():
            await fut
        self._pending = []

    async def send(self) -> None:
        """Hand over and wait for every acknowledgement."""
        await self.produce()
        await self.acked()
