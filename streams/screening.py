"""Screening one batch: decode → look up in one go → decide → send; then, in its ``Tail``: acknowledged →
write rule state → (the consumer commits).

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

from sekat.metrics.worker import WorkerMetrics, observe_many
from sekat.records import Command, Decision, Entry, Rejection, Skipped, Source, iso
from sekat.rules.engine import Verdict
from sekat.rules.policy import Policy
from sekat.rules.registry import Context, Observations, StateWrite
from sekat.streams.emit import Batch, OutputTopics

if TYPE_CHECKING:
    from sekat.brake.guard import Brake
    from sekat.decode.processes import DecodeProcesses

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
                 brake: Brake | None = None, unread_kinds: frozenset[str] = frozenset(),
                 offload: DecodeProcesses | None = None) -> None:
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
        # State-write kinds no rule-state read ever sees (who acted): a later batch need not wait for them.
        self.unread_kinds = unread_kinds
        # The decoder run in child processes (SEKAT_DECODE_PROCESSES), for an adapter that costs more than a hand-over.
        self.offload = offload

    def prepare(self, events: Sequence[Any]) -> Awaitable[list[Any]] | None:
        """Start decoding a batch in the decode processes, if this stream has them; pass the result to ``start``."""
        if self.offload is None:
            return None
        return self.offload.submit([msg.value for msg in events])

    async def start(self, events: Sequence[Any], written: Awaitable[Any] | None = None,
                    prepared: Awaitable[list[Any]] | None = None) -> Tail:
        """Decide a batch of Kafka records and hand its output to the producer; the ``Tail`` does the rest.

        ``events`` are aiokafka ``ConsumerRecord``s: topic, partition, offset, timestamp (ms), key, value.
        ``written``: the earlier batches' rule-state writes, awaited before this batch reads rule state, so
        a window or a warning decided one batch earlier is seen here exactly as if the batches had run one
        after the other. ``prepared``: what ``prepare`` started for these events.
        """
        started = time.perf_counter()
        if prepared is not None:
            results = iter(await prepared)
        else:
            results = map(self.decode, [msg.value for msg in events])
        out = Batch(self.topics)
        counts: dict[str, int] = {}
        now = self.clock()
        policy = self.policy()  # one policy for the whole batch, even if a reload lands meanwhile
        decoded: list[tuple[Any, R]] = []  # (Kafka record, event); a Source is built only where one is written

        def reject(msg: Any, rejection: Rejection) -> None:
            out.deadletter(source_of(msg), msg.value, rejection, iso(now))
            self.metrics.deadletters.labels(self.stream, rejection.reason).inc()
            counts["INVALID"] = counts.get("INVALID", 0) + 1

        for msg, result in zip(events, results):
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
            if written is not None:
                await written
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

        await retry("sending output", out.hand, self.metrics.send_errors.inc)
        # The commands are on their way: count them against the safety brake's limits before the next batch is
        # decided, so a trip applies from the next batch on, as when each batch waited for its acknowledgements.
        if acted and self.brake is not None:
            await self.brake.count(acted)
        return Tail(self, events, out, writes, counts, issued, matched, started)

    async def _lookup(self, keys: list[str]) -> Mapping[str, Entry]:
        found = await self.store.lookup_many(keys)
        hits = len(found)
        self.metrics.lookups_by["hit"].inc(hits)
        self.metrics.lookups_by["miss"].inc(len(set(keys)) - hits)
        return found


class Tail:
    """What is left of a started batch: Kafka's acknowledgements, the rule-state writes, the metrics."""

    def __init__(self, screen: Screen[Any], events: Sequence[Any], out: Batch, writes: list[StateWrite],
                 counts: dict[str, int], issued: list[Command], matched: dict[tuple[str, str], int],
                 started: float) -> None:
        self.screen = screen
        self.events = events
        self.out = out
        self.writes = writes
        self.counts = counts
        self.issued = issued
        self.matched = matched
        self.started = started
        # True when a later batch's rule-state read must wait for this batch's writes.
        self.read_back = any(w.kind not in screen.unread_kinds for w in writes)

    async def acked(self) -> None:
        """Returns once Kafka acknowledged every output of the batch (re-sending all of it on a failure)."""
        await retry("sending output", self.out.acked, self.screen.metrics.send_errors.inc)

    async def write(self) -> None:
        """Write the batch's rule state back; call only after ``acked``.

        State goes back only once the output is durable: a crash in between replays the batch, which yields
        the same command ids, rather than losing a hold the state says was already decided.
        """
        if not self.writes:
            return
        screen = self.screen
        try:
            await retry("rule state write", lambda: screen.write_state(self.writes),
                        screen.metrics.rule_state_errors.inc, STATE_ATTEMPTS)
        except Exception:  # noqa: BLE001 - counted above; the output is already durable
            screen.metrics.rule_state_degraded.inc()
            log.error("rule state unavailable: %d updates of a %s batch dropped", len(self.writes), screen.stream)

    def observe(self) -> None:
        """The batch's metrics, once it is acknowledged and written."""
        metrics, stream, events = self.screen.metrics, self.screen.stream, self.events
        done = time.time()
        stamps = np.fromiter((msg.timestamp for msg in events), dtype=np.float64, count=len(events))
        observe_many(metrics.latency_by[stream], np.maximum(0.0, done - stamps / 1000))
        for outcome, n in self.counts.items():
            metrics.events_by[stream, outcome].inc(n)
        if self.issued:  # counted once Kafka has them: the metric means "sent"
            metrics.count_commands(self.issued)
        metrics.processing_by[stream].observe(time.perf_counter() - self.started)
        metrics.last_batch_by[stream].set(done)
        for (rule_id, mode), n in self.matched.items():
            metrics.rule_matches.labels(rule_id, mode).inc(n)
