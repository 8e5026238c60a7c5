"""The safety brake: an entry, rule or reporting source that suddenly drives a flood of commands goes to shadow.

A wrongly listed popular merchant account, or a rule with a bad parameter,
would otherwise freeze thousands of innocent payments a minute. After each
batch's output is acknowledged, the screening worker tallies, in process,
how many commands each *target* drove (``tally``: every enforce match of a
decision that sent commands counts its rule, its identifier and the
reporting source of its entry), then adds the tally to the shared counters in
Redis in one round trip (``sekat.brake.store.BrakeStore``), so every worker of
the group judges the same rate. A target over its limit
(``SEKAT_BRAKE_ENTRY_MAX`` / ``_RULE_MAX`` / ``_SOURCE_MAX`` commands per
``SEKAT_BRAKE_WINDOW_S``; 0 turns a dimension off) is tripped. The entry
dimension counts only entries that are not ``confirmed``: an authority's
confirmed scam number, autodialling several calls a second, is blocked on
every call (its rule and source still count it). A trip:

* every worker evaluates matches on it in shadow (``Context.braked``): the
  decision is still written, with the reason marked ``[safety brake: shadow]``,
  but no command, report or trail mark comes of it;
* ``sekat_brake_trips_total`` / ``sekat_brake_engaged`` move, and the alert
  ``SekatSafetyBrakeEngaged`` fires;
* an audit record (``"stream": "brake"``, ``"action": "trip"``) goes to
  ``sekat.decisions`` and to the brake's log in Redis, with the count, the
  limit and the worker;
* an authority re-arms it with ``POST /v1/brake/rearm`` (scope ``rearm``).

The trip takes effect from the next batch (this worker at once, the others
within a second, when they re-read the tripped set): the batch that crossed
the limit has already been sent. If Redis does not answer, the brake neither
counts nor trips (``sekat_brake_errors_total``; after a failure it pauses
counting for five seconds, so an outage does not add a timeout to every
batch) and screening goes on.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

from sekat.brake.metrics import BrakeMetrics
from sekat.brake.store import BrakeStore, Trip, dimension, masked_target
from sekat.errors import BlocklistUnavailable
from sekat.records import COMMAND_NAMESPACE, Decision, Status, iso
from sekat.rules.engine import brake_targets
from sekat.streams.output import OutputBatch, OutputTopics

log = logging.getLogger(__name__)
PAUSE_AFTER_ERROR_S = 5.0
# The brake guards against a *wrong* listing (a reported merchant, a bulk import) freezing innocent
# payments; an entry an authority confirmed is a judged scam, and its volume is the attack itself.
# A confirmed listing found wrong is revoked (revoked entries are never acted on), not braked.
UNCOUNTED_ENTRY_STATUSES = frozenset({Status.CONFIRMED.value})


@dataclass(frozen=True)
class Limits:
    window_s: int = 60
    entry: int = 300
    rule: int = 60_000
    source: int = 60_000

    def of(self, target: str) -> int:
        return {"entry": self.entry, "rule": self.rule, "source": self.source}.get(dimension(target), 0)


def tally(decisions: Iterable[Decision]) -> dict[str, int]:
    """Commands driven per target by a batch's decisions (each decision counts once per target).

    A match on an identifier whose entry an authority *confirmed* counts towards its rule and its source,
    not towards the entry (whichever rule matched it): a confirmed scam number's autodialer places several
    calls a second, and every one of them must be blocked (see ``UNCOUNTED_ENTRY_STATUSES``).
    """
    counts: dict[str, int] = {}
    for decision in decisions:
        if not decision.commands:
            continue
        # Any rule may match a confirmed identifier (mule_inflow on a listed payee): its entry is exempt for all.
        exempt = {f"entry:{m.identifier}" for m in decision.matches if m.status in UNCOUNTED_ENTRY_STATUSES}
        targets: set[str] = set()
        for m in decision.matches:
            if m.mode == "enforce":
                targets.update(t for t in brake_targets(m.rule, m.identifier, m.source) if t not in exempt)
        for t in targets:
            counts[t] = counts.get(t, 0) + len(decision.commands)
    return counts


def audit_record(event: str, target: str, at: datetime, detail: dict[str, object]) -> tuple[bytes, bytes]:
    """(key, value) of a brake audit record on ``sekat.decisions``."""
    event_id = "brake-" + str(uuid.uuid5(COMMAND_NAMESPACE, f"{event}|{target}|{iso(at)}"))
    body = {"event_id": event_id, "stream": "brake", "action": event, "target": target,
            "dimension": dimension(target), "at": iso(at), **detail}
    return event_id.encode(), orjson.dumps(body)


class Brake:
    def __init__(self, store: BrakeStore, limits: Limits, metrics: BrakeMetrics, topics: OutputTopics,
                 worker: str, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.limits = limits
        self.metrics = metrics
        self.topics = topics
        self.worker = worker
        self.clock = clock
        self.engaged: frozenset[str] = frozenset()
        self._pause_until = 0.0

    async def refresh(self) -> None:
        """Re-read the tripped targets (a trip by another worker, a re-arm through the API)."""
        try:
            self.engaged = frozenset(await self.store.tripped())
        except Exception as exc:  # noqa: BLE001 - a timer must not stop the worker; counted and logged
            self.metrics.errors.inc()
            log.warning("safety brake: could not read the tripped targets (%s: %s); keeping the last %d",
                        type(exc).__name__, exc, len(self.engaged))
            return
        self.metrics.set_engaged(sorted(self.engaged))

    async def count(self, decisions: Iterable[Decision]) -> None:
        """Add a sent batch's commands to the shared counters and trip any target over its limit."""
        if time.monotonic() < self._pause_until:
            return
        try:
            counts = {t: n for t, n in tally(decisions).items() if self.limits.of(t) > 0 and t not in self.engaged}
            if not counts:
                return
            now = self.clock()
            rates = await self.store.add(counts, now, self.limits.window_s)
            for target, rate in rates.items():
                if rate > self.limits.of(target):
                    await self._trip(target, rate, now)
        except BlocklistUnavailable as exc:
            self.metrics.errors.inc()
            # Not again for a few seconds: a Redis outage must not add a timeout to every batch.
            self._pause_until = time.monotonic() + PAUSE_AFTER_ERROR_S
            log.warning("safety brake: counting failed (%s); not counting for %.0f s", exc, PAUSE_AFTER_ERROR_S)
        except Exception:  # noqa: BLE001 - the brake must never stop screening; counted and logged
            self.metrics.errors.inc()
            log.exception("safety brake: counting failed")

    async def _trip(self, target: str, rate: float, now: float) -> None:
        at = datetime.fromtimestamp(now, timezone.utc)
        trip = Trip(target, int(rate), self.limits.of(target), self.limits.window_s, iso(at), self.worker)
        self.engaged = self.engaged | {target}
        if not await self.store.trip(trip):
            return  # another worker tripped it first and wrote the audit record
        self.metrics.trips.labels(dimension(target)).inc()
        self.metrics.set_engaged(sorted(self.engaged))
        log.warning("safety brake tripped: %s drove %d commands in %ds (limit %d); it is in shadow mode until "
                    "an authority re-arms it", masked_target(target), int(rate), trip.window_s, trip.limit)
        out = OutputBatch(self.topics)
        out.record(self.topics.decisions, *audit_record("trip", target, at, {
            "count": trip.count, "limit": trip.limit, "window_s": trip.window_s, "by": self.worker,
            "reason": f"{trip.count} commands in {trip.window_s}s over the limit of {trip.limit}: "
                      "switched to shadow mode (decisions recorded, no commands)"}))
        try:
            await out.send()
        except Exception as exc:  # noqa: BLE001 - the trip stands (and is in the Redis log); say the record is missing
            log.error("safety brake: the audit record of a trip could not be sent (%s)", type(exc).__name__)
