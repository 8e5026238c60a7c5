"""Screening one batch: decode → look up in one go → decide → send → write rule state → (the consumer commits).

Shared by the transfer and call streams of the screening consumer; each passes its own decoder, its
rule-state read and its decision function. The policy in force is taken once
per batch, so a hot reload never splits a batch between two policies.
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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np

from metrics.worker import WorkerMetrics, observe_many
from rules.engine import Verdict
from rules.policy import Policy
from rules.registry import Context, Observations, StateWrite
from sekat.records import Command, Decision, Entry, Rejection, Skipped, Source, iso
from streams.emit import Batch, OutputTopics

if TYPE_CHECKING:
    from streams.brake import Brake

log = logging.getLogger(__name__)

BACKOFF_START = 0.05
BACKOFF_MAX = 2.0
STATE_ATTEMPTS = 4  # ~0.4 s of retries before a batch is decided without rule state


class Lookup(Protocol):
    async def lookup_many(self, keys: list[str]) -> Mapping[str, Entry]: ...


class Screened(Protocol):
    event_id: str

    def identifiers(self) -> Sequence[Any]: ...


R = TypeVar("R", bound=Screened)
# A decoder returns one result, or a list of them when one message holds several events.
Decoder = Callable[[bytes | None], "R | Rejection | list[R | Rejection | Skipped]"]
Decide = Callable[[R, Context, Policy], Verdict]
ReadState = Callable[[Sequence[R], Policy, datetime], Awaitable[Observations]]
WriteState = Callable[[Sequence[StateWrite]], Awaitable[None]]
Clock = Callable[[], datetime]


def source_of(msg: Any) -> Source:
    """Where a Kafka record came from, for a dead letter or a decision record."""
    return Source(msg.topic, msg.partition, msg.offset, msg.timestamp, msg.key)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def retry(what: str, attempt: Callable[[], Any], on_error: Callable[[], None],
                attempts: int | None = None) -> Any:
    """Run ``attempt`` until it succeeds (or ``attempts`` failed: re-raise), with jittered exponential backoff."""
    delay = BACKOFF_START
    tries = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - every failure here is retried, and counted
            on_error()
            tries += 1
            if attempts is not None and tries >= attempts:
                raise
            log.warning("%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, BACKOFF_MAX)


class Screen(Generic[R]):
    def __init__(self, stream: str, decode: Decoder[R], decide: Decide[R], store: Lookup,
                 topics: OutputTopics, metrics: WorkerMetrics, policy: Callable[[], Policy],
                 read_state: ReadState[R], write_state: WriteState, clock: Clock = utcnow,
                 brake: Brake | None = None) -> None:
        self.stream = stream
        self.decode = decode
        self.decide = decide
        self.store = store
        self.topics = topics
        self.metrics = metrics
        self.policy = policy
        self.read_state = read_state
        self.write_state = write_state
        self.clock = clock
        self.brake = brake

    async def run(self, events: Sequence[Any]) -> None:
        """Decide a batch of Kafka records; returns once every output is acknowledged by Kafka.

        ``events`` are aiokafka ``ConsumerRecord``s: topic, partition, offset, timestamp (ms), key, value.
        """
        started = time.perf_counter()
        out = Batch(self.topics)
        counts: dict[str, int] = {}
        now = self.clock()
        policy = self.policy()  # one policy for the whole batch, even if a reload lands meanwhile
        decoded: list[tuple[Any, R]] = []  # (Kafka record, event); a Source is built only where one is written

        def reject(msg: Any, rejection: Rejection) -> None:
            out.deadletter(source_of(msg), msg.value, rejection, iso(now))
            self.metrics.deadletters.labels(self.stream, rejection.reason).inc()
            counts["INVALID"] = counts.get("INVALID", 0) + 1

        decode = self.decode
        for msg in events:
            result = decode(msg.value)
            # An adapter may yield several results from one message (a pacs.008 with N transactions).
            for item in (result if type(result) is list else (result,)):
                if isinstance(item, Rejection):
                    reject(msg, item)
                elif isinstance(item, Skipped):
                    counts["SKIPPED"] = counts.get("SKIPPED", 0) + 1
                else:
                    decoded.append((msg, item))

        keys = [ident.key for _, record in decoded for ident in record.identifiers()]
        records = [record for _, record in decoded]

        async def lookup() -> Mapping[str, Entry]:
            if not keys:
                return {}
            found: Mapping[str, Entry] = await retry("blocklist lookup", lambda: self._lookup(keys),
                                                     self.metrics.lookup_errors.inc)
            return found

        async def observe() -> Observations:
            # Rule state is an enrichment: if Redis stays down, the batch is decided without it (blocklist
            # rules still act, window rules see only the event itself) rather than stalling the stream.
            try:
                observed: Observations = await retry("rule state read", lambda: self.read_state(records, policy, now),
                                                     self.metrics.rule_state_errors.inc, STATE_ATTEMPTS)
                return observed
            except Exception:  # noqa: BLE001 - counted above; logged here
                self.metrics.rule_state_degraded.inc()
                log.error("rule state unavailable: %s batch decided without windowed state", self.stream)
                return Observations()

        lookups, observations = await asyncio.gather(lookup(), observe())
        ctx = Context(now, lookups, observations, self.brake.engaged if self.brake else frozenset())
        writes: list[StateWrite] = []
        reported: set[str] = set()
        matched: dict[tuple[str, str], int] = {}
        issued: list[Command] = []
        acted: list[Decision] = []
        decide = self.decide
        for msg, record in decoded:
            try:
                verdict = decide(record, ctx, policy)
            except Exception as exc:  # noqa: BLE001 - a failing rule must not stop the stream
                log.exception("rule failed on event at %s/%d/%d", msg.topic, msg.partition, msg.offset)
                reject(msg, Rejection("internal_error", f"rule failed: {type(exc).__name__}"))
                continue
            decision = verdict.decision
            if verdict.writes:
                writes.extend(verdict.writes)
            counts[decision.outcome] = counts.get(decision.outcome, 0) + 1
            if not (decision.commands or decision.reports or decision.matches or decision.rule_errors):
                continue  # an ALLOW with nothing to tell: nearly every event
            for command in decision.commands:
                out.command(command)
            issued.extend(decision.commands)
            if decision.commands:
                acted.append(decision)
            for report in decision.reports:
                if report.key not in reported:  # once per batch; the Redis marker covers later batches
                    reported.add(report.key)
                    out.report(report)
            for match in decision.matches:
                matched[match.rule, match.mode] = matched.get((match.rule, match.mode), 0) + 1
            for rule_id in decision.rule_errors:
                self.metrics.rule_errors.labels(rule_id).inc()
            if decision.matches or decision.rule_errors:
                out.decision(decision, source_of(msg))

        await retry("sending output", out.send, self.metrics.send_errors.inc)
        # Commands are out: count them against the safety brake's limits, alongside the state write.
        braking = asyncio.ensure_future(self.brake.count(acted)) if acted and self.brake is not None else None
        # State goes back only once the output is durable: a crash in between replays the batch, which
        # yields the same command ids, rather than losing a hold the state says was already decided.
        if writes:
            try:
                await retry("rule state write", lambda: self.write_state(writes), self.metrics.rule_state_errors.inc,
                            STATE_ATTEMPTS)
            except Exception:  # noqa: BLE001 - counted above; the output is already durable
                self.metrics.rule_state_degraded.inc()
                log.error("rule state unavailable: %d updates of a %s batch dropped", len(writes), self.stream)
        if braking is not None:
            await braking

        done = time.time()
        stamps = np.fromiter((msg.timestamp for msg in events), dtype=np.float64, count=len(events))
        observe_many(self.metrics.latency_by[self.stream], np.maximum(0.0, done - stamps / 1000))
        for outcome, n in counts.items():
            self.metrics.events_by[self.stream, outcome].inc(n)
        if issued:  # counted once Kafka has them: the metric means "sent"
            self.metrics.count_commands(issued)
        self.metrics.processing_by[self.stream].observe(time.perf_counter() - started)
        self.metrics.last_batch_by[self.stream].set(done)
        for (rule_id, mode), n in matched.items():
            self.metrics.rule_matches.labels(rule_id, mode).inc(n)

    async def _lookup(self, keys: list[str]) -> Mapping[str, Entry]:
        found = await self.store.lookup_many(keys)
        hits = len(found)
        self.metrics.lookups_by["hit"].inc(hits)
        self.metrics.lookups_by["miss"].inc(len(set(keys)) - hits)
        return found

