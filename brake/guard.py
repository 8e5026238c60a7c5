"""The safety brake: an entry, rule or reporting source that suddenly drives a flood of commands goes to shadow.

A wrongly listed popular merchant account, or a rule with a bad parameter,
would otherwise freeze thousands of innocent payments a minute. After each
batch's output is acknowledged, the screening worker tallies, in process,
how many commands each *target* drove (``tally``: every enforce match of a
decision that sent commands counts its rule, its identifier and the
reporting source of its entry), then adds the tally to the shared counters in
Redis in one round trip (``sekat.brake.store.BrakeStore``), so every worker of
the group judges the same rate. A target over its limit per
``SEKAT_BRAKE_WINDOW_S`` is tripped (0 turns a limit off). An entry's limit
depends on its kind and status (``Limits.of``): ``SEKAT_BRAKE_PHONE_REPORTED_MAX``
/ ``_ACCOUNT_REPORTED_MAX`` for identifiers that are not confirmed (reported,
or unlisted and flagged by a rule), ``SEKAT_BRAKE_PHONE_CONFIRMED_MAX`` /
``_ACCOUNT_CONFIRMED_MAX`` (off by default) for confirmed ones: an
authority's confirmed scam number, autodialling several calls a second, is
blocked on every call. Rules and sources have one limit each
(``SEKAT_BRAKE_RULE_MAX`` / ``_SOURCE_MAX``). A trip:

* every worker evaluates matches on it in shadow (``Context.braked``): the
  decision is still written, with the reason marked ``[safety brake: shadow]``,
  but no command, report or trail mark comes of it;
* ``sekat_brake_trips_total`` / ``sekat_brake_engaged`` move, and the alert
  ``SekatSafetyBrakeEngaged`` fires;
* an audit record (``"stream": "brake"``, ``"action": "trip"``) goes to
  ``sekat.decisions`` and to the brake's log in Redis, with the count, the
  limit, the entry's status and the worker;
* an authority re-arms it with ``POST /v1/brake/rearm`` (scope ``rearm``).

An entry's trip holds for the status it tripped under. Once an authority
confirms an entry that tripped while reported (or unlisted), the trip lapses
(``applying``): every worker acts on the entry's matches again from the batch
that sees the confirmation, and the first worker to see one lifts the trip in
Redis, audit first (``"action": "lift"`` on ``sekat.decisions``, acknowledged
by Kafka before the state changes), and its counts start from zero under the
confirmed limit.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

from sekat.brake.metrics import BrakeMetrics
from sekat.brake.store import BrakeStore, Trip, dimension, masked_target
from sekat.errors import BlocklistUnavailable
from sekat.records import COMMAND_NAMESPACE, Decision, Entry, Status, iso
from sekat.rules.engine import brake_targets
from sekat.streams.output import OutputBatch, OutputTopics

log = logging.getLogger(__name__)
TELCO_ENTRIES = ("entry:phone:", "entry:sender:", "entry:url:", "entry:domain:")
PAUSE_AFTER_ERROR_S = 5.0
# The status an entry target is counted and tripped under: the highest any match of a decision gives its
# identifier (a rule's finding on a listed payee may carry no entry; the listing decides).
_RANK = {"": 0, Status.REPORTED.value: 1, Status.CONFIRMED.value: 2}
UNLISTED = "unlisted"


@dataclass(frozen=True)
class Limits:
    """Commands per window each target may drive (0: not counted, never tripped); defaults as the settings'.

    Entries by kind and status: a reported (or unlisted) number or account may be a wrong listing, and the
    brake stops it flooding innocent people; a confirmed one is a judged scam whose volume is the attack
    itself (an autodialer places several calls a second), so by default it is never braked: a confirmed
    listing found wrong is revoked, which stops every action at once.
    """

    window_s: int = 60
    phone_reported: int = 1_800
    phone_confirmed: int = 0
    account_reported: int = 120
    account_confirmed: int = 0
    rule: int = 60_000
    source: int = 60_000

    def of(self, target: str, status: str = "") -> int:
        """The limit of ``target``; for an entry, of its kind (phone, account) at ``status`` ("" if unlisted). An
        e-wallet or a hashed proxy names where money goes, as an account does: the account limits apply. Sender IDs,
        links and domains have the phone limits: like a number, they make telcos block messages."""
        kind = dimension(target)
        if kind == "rule":
            return self.rule
        if kind == "source":
            return self.source
        if kind != "entry":
            return 0
        confirmed = status == Status.CONFIRMED.value
        if target.startswith(TELCO_ENTRIES):  # a number, and the SMS channel's sender IDs, links and domains
            return self.phone_confirmed if confirmed else self.phone_reported
        if target.startswith(("entry:account:", "entry:wallet:", "entry:proxy:")):
            return self.account_confirmed if confirmed else self.account_reported
        return 0


def entry_statuses(decisions: Iterable[Decision]) -> dict[str, str]:
    """Entry target -> the highest status a match of these decisions gives its identifier ("" if unlisted)."""
    out: dict[str, str] = {}
    for decision in decisions:
        for m in decision.matches:
            if m.identifier:
                target = f"entry:{m.identifier}"
                if _RANK.get(m.status, 0) >= _RANK.get(out.get(target, ""), 0):
                    out[target] = m.status if m.status in _RANK else ""
    return out


def tally(decisions: Iterable[Decision], limits: Limits = Limits()) -> dict[str, int]:
    """Commands driven per target by a batch's decisions (each decision counts once per target).

    Only targets with a limit count: with the default limits, a match on an identifier whose entry an
    authority *confirmed* counts towards its rule and its source, not towards the entry (whichever rule
    matched it): a confirmed scam number's autodialer places several calls a second, and every one of them
    must be blocked.
    """
    counts: dict[str, int] = {}
    for decision in decisions:
        if not decision.commands:
            continue
        # Any rule may match a confirmed identifier (mule_inflow on a listed payee): its status holds for all.
        statuses = entry_statuses([decision])
        targets: set[str] = set()
        for m in decision.matches:
            if m.mode == "enforce":
                targets.update(t for t in brake_targets(m.rule, m.identifier, m.source)
                               if limits.of(t, statuses.get(t, "")) > 0)
        for t in targets:
            counts[t] = counts.get(t, 0) + len(decision.commands)
    return counts


def audit_record(event: str, target: str, at: datetime, detail: dict[str, object],
                 once: str = "") -> tuple[bytes, bytes]:
    """(key, value) of a brake audit record on ``sekat.decisions``; its id derives from ``once`` if given
    (workers that both record one lift of one trip write one id), else from the time."""
    event_id = "brake-" + str(uuid.uuid5(COMMAND_NAMESPACE, f"{event}|{target}|{once or iso(at)}"))
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
        self.trips: dict[str, dict[str, object]] = {}  # entry target -> its trip, as the store keeps it
        self.lapsing: dict[str, Entry] = {}  # entry trips a confirmation superseded -> the entry now, to lift
        self._pause_until = 0.0

    async def refresh(self) -> None:
        """Re-read the tripped targets (a trip by another worker, a re-arm through the API)."""
        try:
            trips = await self.store.tripped()
        except Exception as exc:  # noqa: BLE001 - a timer must not stop the worker; counted and logged
            self.metrics.errors.inc()
            log.warning("safety brake: could not read the tripped targets (%s: %s); keeping the last %d",
                        type(exc).__name__, exc, len(self.engaged))
            return
        self.engaged = frozenset(trips)
        self.trips = {t: trip for t, trip in trips.items() if dimension(t) == "entry"}
        self.metrics.set_engaged(sorted(self.engaged))

    def applying(self, lookups: Mapping[str, Entry]) -> frozenset[str]:
        """The targets in shadow for a batch with these blocklist lookups.

        An entry's trip holds for the status it tripped under: an entry that tripped while reported (or
        unlisted) and is confirmed now is acted on, and its trip is lifted after the batch (``count``).
        A trip without a status is taken as one under the reported limit.
        """
        if not self.trips:
            return self.engaged
        lapsed = {}
        for target, trip in self.trips.items():
            entry = lookups.get(target[len("entry:"):])
            if entry is not None and entry.status is Status.CONFIRMED and trip.get("status") != Status.CONFIRMED.value:
                lapsed[target] = entry
        if not lapsed:
            return self.engaged
        self.lapsing.update(lapsed)
        return self.engaged - lapsed.keys()

    async def count(self, decisions: Iterable[Decision]) -> None:
        """Lift the trips a confirmation superseded, add a sent batch's commands to the shared counters and
        trip any target over its limit."""
        if time.monotonic() < self._pause_until:
            return
        try:
            if self.lapsing:
                await self._lift_lapsed()
            decisions = list(decisions)
            statuses = entry_statuses(decisions)
            counts = {t: n for t, n in tally(decisions, self.limits).items() if t not in self.engaged}
            if not counts:
                return
            now = self.clock()
            rates = await self.store.add(counts, now, self.limits.window_s)
            for target, rate in rates.items():
                if rate > self.limits.of(target, statuses.get(target, "")):
                    await self._trip(target, rate, now, statuses.get(target, ""))
        except BlocklistUnavailable as exc:
            self.metrics.errors.inc()
            # Not again for a few seconds: a Redis outage must not add a timeout to every batch.
            self._pause_until = time.monotonic() + PAUSE_AFTER_ERROR_S
            log.warning("safety brake: counting failed (%s); not counting for %.0f s", exc, PAUSE_AFTER_ERROR_S)
        except Exception:  # noqa: BLE001 - the brake must never stop screening; counted and logged
            self.metrics.errors.inc()
            log.exception("safety brake: counting failed")

    async def _trip(self, target: str, rate: float, now: float, status: str) -> None:
        at = datetime.fromtimestamp(now, timezone.utc)
        entry_status = (status or UNLISTED) if dimension(target) == "entry" else ""
        trip = Trip(target, int(rate), self.limits.of(target, status), self.limits.window_s, iso(at), self.worker,
                    entry_status)
        self.engaged = self.engaged | {target}
        if entry_status:
            self.trips[target] = trip.to_json()
        if not await self.store.trip(trip):
            return  # another worker tripped it first and wrote the audit record
        self.metrics.trips.labels(dimension(target)).inc()
        self.metrics.set_engaged(sorted(self.engaged))
        log.warning("safety brake tripped: %s drove %d commands in %ds (limit %d); it is in shadow mode until "
                    "an authority re-arms it", masked_target(target), int(rate), trip.window_s, trip.limit)
        out = OutputBatch(self.topics)
        out.record(self.topics.decisions, *audit_record("trip", target, at, {
            "count": trip.count, "limit": trip.limit, "window_s": trip.window_s, "by": self.worker,
            **({"status": entry_status} if entry_status else {}),
            "reason": f"{trip.count} commands in {trip.window_s}s over the limit of {trip.limit}"
                      f"{f' for a {entry_status} entry' if entry_status else ''}: "
                      "switched to shadow mode (decisions recorded, no commands)"}))
        try:
            await out.send()
        except Exception as exc:  # noqa: BLE001 - the trip stands (and is in the Redis log); say the record is missing
            log.error("safety brake: the audit record of a trip could not be sent (%s)", type(exc).__name__)

    async def _lift_lapsed(self) -> None:
        """Lift the trips of entries confirmed since they tripped: audit first, then the state in Redis.

        If Kafka does not take the record the trip stays in Redis (matches on the confirmed entry are acted
        on all the same, ``applying``) and the next batch that sees the entry tries again.
        """
        lapsing, self.lapsing = self.lapsing, {}
        for target, entry in lapsing.items():
            trip = self.trips.get(target)
            if trip is None:
                continue
            now = self.clock()
            at = datetime.fromtimestamp(now, timezone.utc)
            was = str(trip.get("status") or Status.REPORTED.value)
            reason = (f"confirmed by {entry.source or 'an authority'} since it tripped as a {was} entry: the "
                      f"limit it tripped under no longer applies; counting starts afresh under the confirmed limit")
            out = OutputBatch(self.topics)
            out.record(self.topics.decisions, *audit_record("lift", target, at, {
                "by": self.worker, "reason": reason, "trip": trip}, once=str(trip.get("tripped_at", ""))))
            try:
                await out.send()  # audit first: a lift Kafka has no record of must not take effect
            except Exception as exc:  # noqa: BLE001 - the trip stays in Redis; the next batch retries
                log.error("safety brake: the audit record of lifting %s could not be sent (%s); not lifted yet",
                          masked_target(target), type(exc).__name__)
                continue
            event = {"event": "lift", "target": target, "dimension": "entry", "at": iso(at), "by": self.worker,
                     "reason": reason}
            lifted = await self.store.rearm(target, now, self.limits.window_s, event,
                                            tripped_at=str(trip.get("tripped_at", "")))
            self.trips.pop(target, None)
            self.engaged = self.engaged - {target}
            self.metrics.set_engaged(sorted(self.engaged))
            if lifted is not None:
                log.warning("safety brake lifted on %s: confirmed by %s since it tripped as a %s entry",
                            masked_target(target), entry.source or "an authority", was)
