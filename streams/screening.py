"""Screening one batch: decode → look up in one go → decide → send → (Faust acks).

Shared by the transfer and call agents; each passes its own decoder and rule.
Nothing here raises on input: a bad event becomes a dead letter, a rule that
fails becomes a dead letter with reason ``internal_error``, and a Redis or
Kafka failure is retried with backoff (the batch is not acked meanwhile, so
nothing is lost and nothing is silently allowed).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Generic, Protocol, TypeVar

from blocklist.store import BlocklistStore
from metrics.worker import WorkerMetrics
from sekat.records import Command, Decision, Entry, Rejection, Source, iso
from streams.emit import Batch, OutputTopics

log = logging.getLogger(__name__)

BACKOFF_START = 0.05
BACKOFF_MAX = 2.0


class Screened(Protocol):
    event_id: str

    def identifiers(self) -> Sequence[Any]: ...


R = TypeVar("R", bound=Screened)
Decoder = Callable[[bytes | None], "R | Rejection"]
Rule = Callable[[R, Mapping[str, Entry], datetime], Decision]
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def retry(what: str, attempt: Callable[[], Any], on_error: Callable[[], None]) -> Any:
    """Run ``attempt`` until it succeeds, with jittered exponential backoff."""
    delay = BACKOFF_START
    while True:
        try:
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - every failure here is retried, and counted
            on_error()
            log.warning("%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, BACKOFF_MAX)


class Screen(Generic[R]):
    def __init__(self, stream: str, decode: Decoder, rule: Rule, store: BlocklistStore, topics: OutputTopics,
                 metrics: WorkerMetrics, clock: Clock = utcnow) -> None:
        self.stream = stream
        self.decode = decode
        self.rule = rule
        self.store = store
        self.topics = topics
        self.metrics = metrics
        self.clock = clock

    async def run(self, events: Sequence[Any]) -> None:
        """Decide a batch of Faust events; returns once every output is acknowledged."""
        started = time.perf_counter()
        out = Batch(self.topics)
        counts: dict[str, int] = {}
        now = self.clock()
        decoded: list[tuple[Source, bytes | None, R]] = []
        issued: list[Command] = []
        for event in events:
            msg = event.message
            source = Source(msg.topic, msg.partition, msg.offset, int(msg.timestamp * 1000), msg.key)
            result = self.decode(msg.value)
            if isinstance(result, Rejection):
                out.deadletter(source, msg.value, result, iso(now))
                self.metrics.deadletters.labels(self.stream, result.reason).inc()
                counts["INVALID"] = counts.get("INVALID", 0) + 1
            else:
                decoded.append((source, msg.value, result))

        keys = [ident.key for _, _, record in decoded for ident in record.identifiers()]
        lookups: Mapping[str, Entry] = {}
        if keys:
            lookups = await retry("blocklist lookup", lambda: self._lookup(keys), self.metrics.lookup_errors.inc)

        for source, raw, record in decoded:
            try:
                decision = self.rule(record, lookups, now)
            except Exception as exc:  # noqa: BLE001 - a failing rule must not stop the stream
                log.exception("rule failed on event at %s/%d/%d", source.topic, source.partition, source.offset)
                out.deadletter(source, raw, Rejection("internal_error", f"rule failed: {type(exc).__name__}"),
                               iso(now))
                self.metrics.deadletters.labels(self.stream, "internal_error").inc()
                counts["INVALID"] = counts.get("INVALID", 0) + 1
                continue
            counts[decision.outcome] = counts.get(decision.outcome, 0) + 1
            if decision.commands:
                for command in decision.commands:
                    out.command(command)
                issued.extend(decision.commands)
            if decision.matches:
                out.decision(decision, source)

        await retry("sending output", out.send, self.metrics.send_errors.inc)

        done = time.time()
        latency = self.metrics.latency_by[self.stream]
        for event in events:
            latency.observe(max(0.0, done - event.message.timestamp))
        for outcome, n in counts.items():
            self.metrics.events_by[self.stream, outcome].inc(n)
        if issued:
            self.metrics.count_commands(issued)
        self.metrics.processing_by[self.stream].observe(time.perf_counter() - started)
        self.metrics.last_batch_by[self.stream].set(done)

    async def _lookup(self, keys: list[str]) -> Mapping[str, Entry]:
        found = await self.store.lookup_many(keys)
        self.metrics.freshness.mark()
        hits = len(found)
        self.metrics.lookups_by["hit"].inc(hits)
        self.metrics.lookups_by["miss"].inc(len(set(keys)) - hits)
        return found

