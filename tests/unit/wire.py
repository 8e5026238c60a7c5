"""The screening shell's services, stood in for in unit tests: the app's producer and output topics (what it
hands to Kafka's producer is kept, and acknowledged at once), the replica's look-ups and the rule-state store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson

from sekat.records import Entry
from sekat.rules.registry import Observations
from sekat.settings import Settings
from sekat.streams.output import OutputTopics

Sent = tuple[str, bytes, Any]  # topic, key, value (parsed JSON)


class Wire:
    """Stands in for the app's producer: keeps what is sent and acknowledges it at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes, *_: Any) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def maybe_start_producer(self) -> Wire:
        return self

    def records(self) -> list[Sent]:
        return [(topic, key, orjson.loads(value)) for topic, key, value in self.sent]


class Topic:
    def __init__(self, name: str, wire: Wire) -> None:
        self.name, self.app = name, wire

    def get_topic_name(self) -> str:
        return self.name


def outputs(wire: Wire, s: Settings) -> OutputTopics:
    """The worker's output topics, every one sending through ``wire``."""
    names = (s.topic_freeze, s.topic_block, s.topic_decisions, s.topic_deadletter, s.topic_reports)
    return OutputTopics(*(Topic(name, wire) for name in names))  # type: ignore[arg-type]


class Lookups:
    """The replica: ``entries`` are listed, nothing else."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = {e.key: e for e in entries}

    async def lookup_many(self, keys: list[str]) -> dict[str, Entry]:
        return {k: self.entries[k] for k in keys if k in self.entries}


async def no_state(*_: Any) -> Observations:
    """A rule-state read that finds nothing."""
    return Observations()


async def write_nothing(*_: Any) -> None:
    """A rule-state write that keeps nothing."""
    return None
