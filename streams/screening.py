"""Screening one batch: decode → look up in one go → decide → send; then, as a ``PendingBatch``: acknowledged →
write rule state → (the consumer commits).

Shared by the transfer and call streams of the screening consumer: each ``Screen`` has its own
``StreamSteps`` (decoder, rule-state read, decision function) and both share one ``ScreenServices``
(the replica, the output topics, metrics, the policy, the rule-state write, the clock, the brake).
The policy in force is taken once per batch, so a hot reload never splits a batch between two policies.
Nothing here raises on input: a bad event becomes a dead letter, a rule that fails becomes a dead letter
with reason ``internal_error``, and a Redis or Kafka failure is retried with backoff (the batch is not
acknowledged meanwhile, so nothing is lost and nothing is silently allowed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np
from sekat.metrics.worker import WorkerMetrics, observe_many
from sekat.rules.engine import Verdict, listed_only
from sekat.rules.policy import Policy
from sekat.rules.registry import Context, Observations, StateWrite
from sekat.streams.output import OutputBatch, OutputTopics
from sekat.streams.retry import retry

from sekat.clock import Clock, utcnow
from sekat.records import Command, Decision, Entry, PaymentStatus, Rejection, Skipped, Source, iso

if TYPE_CHECKING:
    from sekat.brake.guard import Brake
    from sekat.decode.processes import DecodeProcesses

log = logging.getLogger(__name__)

STATE_ATTEMPTS = 4  # ~0.4 s of retries before a batch is decided without rule state
_TIMESTAMP = attrgetter("timestamp")  # a Kafka record's, in ms


class Lookup(Protocol):
    async def lookup_many(self, keys: list[str]) -> Mapping[str, Entry]: ...


class Screened(Protocol):
    event_id: str

    def identifiers(self) -> Sequence[Any]: ...

    def keys(self) -> list[str]: ...  # the identifiers' keys


R = TypeVar("R", bound=Screened)
# A decoder returns one result, or a list of them when one message holds several events.
Decoder = Callable[[bytes | None], "R | Rejection | list[R | Rejection | Skipped]"]
Decide = Callable[[R, Context, Policy], Verdict]
ReadState = Callable[[Sequence[R], Policy, datetime], Awaitable[Observations]]
WriteState = Callable[[Sequence[StateWrite]], Awaitable[None]]


def source_of(msg: Any) -> Source:
    """Where a Kafka record came from, for a dead letter or a decision record."""
    return Source(msg.topic, msg.partition, msg.offset, msg.timestamp, msg.key)


@dataclass(frozen=True)
class StreamSteps(Generic[R]):
    """What one input stream does differently: how it decodes, reads rule state and decides."""

    decode: Decoder[R]
    decide: Decide[R]
    read_state: ReadState[R]
    # The decoder run in child processes (SEKAT_DECODE_PROCESSES), for an adapter that costs more than a hand-over.
    processes: DecodeProcesses | None = None
    # Bytes of a refused record its dead letter carries; None: SEKAT_DEADLETTER_ORIGINAL_BYTES.
    deadletter_bytes: int | None = None


@dataclass(frozen=True)
class ScreenServices:
    """What every screened stream of a worker shares."""

    store: Lookup
    topics: OutputTopics
    metrics: WorkerMetrics
    policy: Callable[[], Policy]
    write_state: WriteState
    clock: Clock = utcnow
    brake: Brake | None = None
    # State-write kinds no rule-state read ever sees (who acted): a later batch need not wait for them.
    unread_kinds: frozenset[str] = frozenset()
    # Shows a decided batch's rule-state writes to later reads until they are written (``RuleStateStore.stage``).
    stage_state: Callable[[Sequence[StateWrite]], None] | None = None
    # Records a batch's pacs.002 payment statuses as their holds' outcomes (``streams.status_reports``).
    record_statuses: Callable[[Sequence[PaymentStatus]], Awaitable[None]] | None = None


@dataclass
class Decided:
    """A batch's decisions as they add up: its output, state writes and what its metrics will count."""

    out: OutputBatch
    counts: dict[str, int] = field(default_factory=dict)
    writes: list[StateWrite] = field(default_factory=list)
    issued: list[Command] = field(default_factory=list)
    acted: list[Decision] = field(default_factory=list)  # decisions that issued commands, for the brake
    matched: dict[tuple[str, str], int] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)
    statuses: list[PaymentStatus] = field(default_factory=list)  # of the batch's pacs.002 status reports

    def count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

class Screen(Generic[R]):
    """One input stream's screening: ``start`` decides a batch and hands its output to the producer."""

    def __init__(self, stream: str, steps: StreamSteps[R], services: ScreenServices) -> None:
        self.stream = stream
        self.steps = steps
        self.services = services
        self.metrics = services.metrics

    @property
    def processes(self) -> DecodeProcesses | None:
        return self.steps.processes

    def prepare(self, events: Sequence[Any]) -> Awaitable[list[Any]] | None:
        """Start decoding a batch in the decode processes, if this stream has them; pass the result to ``start``."""
        if self.steps.processes is None:
            return None
        return self.steps.processes.submit([msg.value for msg in events])

    async def start(self, events: Sequence[Any], written: Awaitable[Any] | None = None,
                    prepared: Awaitable[list[Any]] | None = None) -> PendingBatch:
        """Decide a batch of Kafka records and hand its output to the producer; the ``PendingBatch`` does the rest.

        ``events`` are aiokafka ``ConsumerRecord``s: topic, partition, offset, timestamp (ms), key, value.
        ``written``: the earlier batches' rule-state writes, awaited before this batch reads rule state, so
        a window or a warning decided one batch earlier is seen here exactly as if the batches had run one
        after the other. ``prepared``: what ``prepare`` started for these events.
        """
        started = time.perf_counter()
        services = self.services
        results = await prepared if prepared is not None else map(self.steps.decode, [m.value for m in events])
        decided = Decided(OutputBatch(services.topics))
        now = services.clock()
        policy = services.policy()  # one policy for the whole batch, even if a reload lands meanwhile
        valid = self._sort(events, results, decided, now)
        keys = [record.keys() for _, record in valid]
        lookups, observations = await asyncio.gather(self._lookup_all(keys), self._observe(valid, policy, now,
                                                                                            written))
        ctx = Context(now, lookups, observations, services.brake.applying(lookups) if services.brake else frozenset())
        self._decide_all(self._judged(valid, keys, lookups, policy, decided), ctx, policy, decided, now)
        await retry("sending output", decided.out.produce, self.metrics.send_errors.inc)
        # The commands are on their way: count them against the safety brake's limits before the next batch is
        # decided, so a trip applies from the next batch on (and lift the trips a confirmation superseded).
        if services.brake is not None and (decided.acted or services.brake.lapsing):
            await services.brake.count(decided.acted)
        return PendingBatch(self, events, decided, started)

    def _reject(self, msg: Any, rejection: Rejection, decided: Decided, now: datetime) -> None:
        decided.out.deadletter(source_of(msg), msg.value, rejection, iso(now), self.steps.deadletter_bytes)
        self.metrics.deadletters.labels(self.stream, rejection.reason).inc()
        decided.count("INVALID")

    def _sort(self, events: Sequence[Any], results: Any, decided: Decided, now: datetime) -> list[tuple[Any, R]]:
        """(Kafka record, event) for each valid event; rejections become dead letters, skipped messages counts."""
        valid: list[tuple[Any, R]] = []  # a Source is built only where one is written
        keep = valid.append
        for msg, result in zip(events, results):
            kind = type(result)  # Rejection and Skipped have no subclasses: one type test per event
            if kind is not list and kind is not Rejection and kind is not Skipped:
                keep((msg, result))  # nearly every event
                continue
            # An adapter may yield several results from one message (a pacs.008 with N transactions).
            for item in (result if kind is list else (result,)):
                if isinstance(item, Rejection):
                    self._reject(msg, item, decided, now)
                elif isinstance(item, Skipped):
                    decided.count("SKIPPED")
                    decided.statuses.extend(item.statuses)
                else:
                    keep((msg, item))
        return valid

    async def _lookup_all(self, per_event: list[list[str]]) -> Mapping[str, Entry]:
        keys = list(chain.from_iterable(per_event))
        if not keys:
            return {}
        found: Mapping[str, Entry] = await retry("blocklist lookup", lambda: self._lookup(keys),
                                                 self.metrics.lookup_errors.inc)
        return found

    async def _observe(self, valid: list[tuple[Any, R]], policy: Policy, now: datetime,
                       written: Awaitable[Any] | None) -> Observations:
        if written is not None:
            await written
        records = [record for _, record in valid]
        # Rule state is an enrichment: if Redis stays down, the batch is decided without it (blocklist
        # rules still act, window rules see only the event itself) rather than stalling the stream.
        try:
            observed: Observations = await retry(
                "rule state read", lambda: self.steps.read_state(records, policy, now),
                self.metrics.rule_state_errors.inc, STATE_ATTEMPTS)
            return observed
        except Exception:  # noqa: BLE001 - counted above; logged here
            self.metrics.rule_state_degraded.inc()
            log.error("rule state unavailable: %s batch decided without windowed state", self.stream)
            return Observations()

    def _judged(self, valid: list[tuple[Any, R]], keys: list[list[str]], lookups: Mapping[str, Entry],
                policy: Policy, decided: Decided) -> list[tuple[Any, R]]:
        """The events the rules must judge: every one, or, when the policy in force finds nothing in an event with
        no listed identifier (``engine.listed_only``: the blocklist alone), those with one; the others are counted
        here as the ALLOW, with nothing to send or record, that the engine would have answered."""
        if not listed_only(policy, self.stream):
            return valid
        listed = lookups.keys()
        judged = [pair for pair, ids in zip(valid, keys) if not listed.isdisjoint(ids)] if listed else []
        if len(judged) < len(valid):
            decided.counts["ALLOW"] = decided.counts.get("ALLOW", 0) + len(valid) - len(judged)
        return judged

    def _decide_all(self, valid: list[tuple[Any, R]], ctx: Context, policy: Policy, decided: Decided,
                    now: datetime) -> None:
        """Decide each valid event and add its commands, reports and decision record to the batch's output.

        One loop for the whole batch, with what it uses held in locals: it runs once per event.
        """
        decide, out, metrics = self.steps.decide, decided.out, self.metrics
        counts, writes, matched = decided.counts, decided.writes, decided.matched
        for msg, record in valid:
            try:
                verdict = decide(record, ctx, policy)
            except Exception as exc:  # noqa: BLE001 - a failing rule must not stop the stream
                log.exception("rule failed on event at %s/%d/%d", msg.topic, msg.partition, msg.offset)
                self._reject(msg, Rejection("internal_error", f"rule failed: {type(exc).__name__}"), decided, now)
                continue
            decision = verdict.decision
            if verdict.writes:
                writes.extend(verdict.writes)
            counts[decision.outcome] = counts.get(decision.outcome, 0) + 1
            if not (decision.commands or decision.reports or decision.matches or decision.rule_errors):
                continue  # an ALLOW with nothing to tell: nearly every event
            for command in decision.commands:
                out.command(command)
            if decision.commands:
                decided.issued.extend(decision.commands)
                decided.acted.append(decision)
            for report in decision.reports:
                if report.key not in decided.reported:  # once per batch; the Redis marker covers later batches
                    decided.reported.add(report.key)
                    out.report(report)
            for match in decision.matches:
                matched[match.rule, match.mode] = matched.get((match.rule, match.mode), 0) + 1
            for rule_id in decision.rule_errors:
                metrics.rule_errors.labels(rule_id).inc()
            if decision.matches or decision.rule_errors:
                out.decision(decision, msg)  # the record itself: its topic, partition and offset

    async def _lookup(self, keys: list[str]) -> Mapping[str, Entry]:
        found = await self.services.store.lookup_many(keys)
        hits = len(found)
        self.metrics.lookups_by["hit"].inc(hits)
        self.metrics.lookups_by["miss"].inc(len(set(keys)) - hits)
        return found


class PendingBatch:
    """What is left of a started batch: Kafka's acknowledgements, the rule-state writes, the metrics."""

    def __init__(self, screen: Screen[Any], events: Sequence[Any], decided: Decided, started: float) -> None:
        self.screen = screen
        self.events = events
        self.decided = decided
        self.started = started
        # A later batch's rule-state read sees these writes staged, or (with no stage) waits for them.
        services = screen.services
        read = [w for w in decided.writes if w.kind not in services.unread_kinds]
        if read and services.stage_state is not None:
            services.stage_state(read)
        self.read_back = bool(read) and services.stage_state is None

    async def acked(self) -> None:
        """Returns once Kafka acknowledged every output of the batch (re-sending all of it on a failure)."""
        await retry("sending output", self.decided.out.acked, self.screen.metrics.send_errors.inc)

    async def write(self) -> None:
        """Write the batch's rule state back, and record its payment statuses; call only after ``acked``.

        State goes back only once the output is durable: a crash in between replays the batch, which yields
        the same command ids, rather than losing a hold the state says was already decided.
        """
        await self._record_statuses()
        writes = self.decided.writes
        if not writes:
            return
        screen = self.screen
        try:
            await retry("rule state write", lambda: screen.services.write_state(writes),
                        screen.metrics.rule_state_errors.inc, STATE_ATTEMPTS)
        except Exception:  # noqa: BLE001 - counted above; the output is already durable
            screen.metrics.rule_state_degraded.inc()
            log.error("rule state unavailable: %d updates of a %s batch dropped", len(writes), screen.stream)

    async def _record_statuses(self) -> None:
        """Status reports are feedback, not screening: a failure is logged and the stream goes on."""
        record = self.screen.services.record_statuses
        if not self.decided.statuses or record is None:
            return
        try:
            await record(self.decided.statuses)
        except Exception as exc:  # noqa: BLE001 - counted by the recorder; a status report never stops screening
            log.error("%d payment statuses of a %s batch not recorded as feedback: %s", len(self.decided.statuses),
                      self.screen.stream, type(exc).__name__)

    def observe(self) -> None:
        """The batch's metrics, once it is acknowledged and written."""
        metrics, stream, events = self.screen.metrics, self.screen.stream, self.events
        done = time.time()
        stamps = np.fromiter(map(_TIMESTAMP, events), dtype=np.float64, count=len(events))
        observe_many(metrics.latency_by[stream], np.maximum(0.0, done - stamps / 1000))
        decided = self.decided
        for outcome, n in decided.counts.items():
            metrics.events_by[stream, outcome].inc(n)
        if decided.issued:  # counted once Kafka has them: the metric means "sent"
            metrics.count_commands(decided.issued)
        metrics.processing_by[stream].observe(time.perf_counter() - self.started)
        metrics.last_batch_by[stream].set(done)
        for (rule_id, mode), n in decided.matched.items():
            metrics.rule_matches.labels(rule_id, mode).inc(n)
