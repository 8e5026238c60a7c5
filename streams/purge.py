"""The retention purge: ended blocklist entries past their retention leave the index, the replicas and the topic.

    group leader, every SEKAT_PURGE_INTERVAL_S
        retention sets (revoked / expired, by when they ended) ─> the keys ended before now - retention
        ─> read those entries: still ended that long ago, and no release command still to send for them?
        ─> their appeals and institutions' feedback naming them (blocklist/related.py, found through Redis's
           per-identifier indexes): tombstones on the appeals and feedback topics (a feedback record on a
           command that acted on other entries too is written again without the purged one), acknowledged by
           Kafka, then the appeals out of Redis and the other entries' feedback histories rewritten; the safety
           brake's trip of it removed, and its brake log events kept without it (brake/store.py)
        ─> an unlink (blocklist/links.py ``unlinks``) on each entry its ``links`` name that is still in the index,
           acknowledged by Kafka: the reports agent takes every link to the purged entry out of those entries
           and publishes them consolidated without it
        ─> a tombstone (key, no value) on the compacted reports topic, acknowledged by Kafka
    reports agent (streams/intake.py), in the tombstone's place among the key's reports
        ─> the entry out of the Redis index (unless a report re-listed it), announced on the change stream
        ─> every worker's replica drops it; exports (which read the index) no longer have it
    broker's log cleaner ─> the key's older records, then (after delete.retention.ms) the tombstone, gone

The change stream keeps a purged key in its announcements, and the stored replica snapshot (and each
worker's disk copy of it) in its chunks: after removals, each run drops the change-stream records every
replica seen within ``REPLICAS_SEEN_S`` has passed (``blocklist.replica.positions``), until the stream
starts past the newest record there was when the removals were counted (a replica slow to report its
position delays the trim, it does not cancel it). That also leaves an
older stored snapshot unusable (trimmed past), so the running workers store a fresh one without the
purged keys, and the old chunks expire minutes later (blocklist/replica_snapshot.py).

The same run purges the decided appeals past SEKAT_RETENTION_APPEALS_DAYS (``{appeals}:decided``, by when
they were decided; a rejected one not before its identifier may be appealed again): a tombstone on the
appeals topic, then the appeal out of Redis. Appeals decided before that index existed are not in it: a run
first files each decided appeal Redis holds there, once (``AppealStore.backfill_decided``, marked done in
Redis, so later runs and other leaders only read the mark). ``sekat_purge_appeals_total{why}`` counts the
appeals purged with their entry (``entry``) or past their own retention (``decided``),
``sekat_purge_feedback_records_total`` the feedback records tombstoned or rewritten.

A run reads the entries due and nothing else (``blocklist.retention``), at most ``PURGE_LIMIT`` of each
kind; a backlog drains over the next runs. An entry an institution acted on is purged only once its
release is sent (release/sweep.py): until then it is deferred (``sekat_purge_deferred_total``).
The runtime is ``sekat_periodic_task_seconds{task="sekat_purge"}``; tombstones sent are
``sekat_purge_tombstones_total`` and entries removed ``sekat_blocklist_entries_purged_total``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import faust

from sekat.blocklist.appeals import AppealStore, past_retention
from sekat.blocklist.related import forget, related
from sekat.blocklist.replica import positions, positions_key
from sekat.blocklist.retention import DAY_S, EXPIRED, REVOKED, Retention, due
from sekat.blocklist.store import BlocklistStore
from sekat.brake.store import BrakeStore
from sekat.records import Entry
from sekat.metrics.worker import WorkerMetrics
from sekat.release.acted import ActedStore
from sekat.streams.output import OutputBatch, OutputTopics

from sekat.clock import Clock

log = logging.getLogger(__name__)

PURGE_LIMIT = 500  # entries of each kind one run reads at most
# A replica that reported its change-stream position within this long is following: the stream is trimmed only
# up to where every such replica is (one that reports again later re-reads the index if it was trimmed past).
REPLICAS_SEEN_S = 600


@dataclass(frozen=True)
class RelatedTopics:
    """Where an entry's appeals and institutions' feedback on it are kept: SEKAT_TOPIC_APPEALS, _FEEDBACK."""

    appeals: faust.TopicT
    feedback: faust.TopicT


class Purger:
    """The purge; the worker runs it on the group leader every SEKAT_PURGE_INTERVAL_S."""

    def __init__(self, store: BlocklistStore, acted: ActedStore, topics: OutputTopics, metrics: WorkerMetrics,
                 retention: Retention, clock: Clock, related_topics: RelatedTopics) -> None:
        self.store = store
        self.appeals = AppealStore(store.client, store.prefix)  # type: ignore[arg-type]
        self.brakes = BrakeStore(store.client, store.prefix)  # type: ignore[arg-type]
        self.related_topics = related_topics
        self.acted = acted
        self.topics = topics
        self.metrics = metrics
        self.retention = retention
        self.clock = clock
        self._unsettled = 0  # removals read at the last run, taken off the entry count at this one
        # The change-stream id a trim must pass: the newest record when removals were last counted (their
        # announcements are at or before it); None once trimmed past.
        self._trim_past: tuple[int, int] | None = None

    async def run_once(self) -> int:
        """One run; a failure is counted and logged, and the next run tries again."""
        try:
            return await self.purge()
        except Exception as exc:  # noqa: BLE001 - Redis or Kafka unavailable: nothing was removed half-way
            self.metrics.purge_errors.inc()
            log.warning("purge failed (%s: %s); retrying at the next run", type(exc).__name__, exc)
            return 0

    async def trim_changes(self) -> tuple[int, int] | None:
        """Drop the change-stream records every replica seen lately has passed (nothing when none was seen); the
        id the stream now starts at, or None."""
        client = self.store.client
        raw = await client.hgetall(positions_key(self.store.prefix))
        seen = positions(raw, int(time.time() * 1000), REPLICAS_SEEN_S)
        if not seen:
            return None
        ms, seq = min(seen.values())
        await self.store.trim_changes((ms, seq + 1))  # the record at a replica's position it has read
        return ms, seq + 1

    async def purge(self) -> int:
        """Send a tombstone for each entry past its retention; how many were sent."""
        removed = self._unsettled
        self._unsettled = await self.store.settle_forgotten(self._unsettled)
        if removed or self._unsettled:  # removals announced up to the stream's newest record: trim past it
            newest = await self.store.last_change()
            if newest is not None:
                self._trim_past = max(self._trim_past or newest, newest)
        if self._trim_past is not None:  # every run until the replicas have all read past the removals
            starts = await self.trim_changes()
            if starts is not None and starts > self._trim_past:
                self._trim_past = None
        now = self.clock()
        marked: dict[str, str] = {}
        for ended in (REVOKED, EXPIRED):
            before = now.timestamp() - self.retention.days(ended) * DAY_S
            marked.update(dict.fromkeys(await self.store.retention_due(ended, before, PURGE_LIMIT), ended))
        backfilled = await self.appeals.backfill_decided(now)
        if backfilled is not None:
            log.info("purge: %d decided appeals Redis held were not yet filed by when they were decided; filed now",
                     backfilled)
        await self.purge_appeals(now)
        if not marked:
            return 0
        entries = await self.store.lookup_many(marked)
        ready = {key: how for key, entry in entries.items() if (how := due(entry, now, self.retention))}
        for key in marked.keys() - entries.keys():  # a mark left behind an entry already gone
            await self.store.forget(key, now)
        await self.store.remark([e for k, e in entries.items() if k not in ready])  # moved since it was marked
        pending = await self.acted.members(list(ready))
        doomed = [key for key in ready if not pending[key]]
        if len(doomed) < len(ready):
            self.metrics.purge_deferred.inc(len(ready) - len(doomed))
        await self.forget_related(doomed)
        await self.unlink({key: entries[key] for key in doomed}, now)
        out = OutputBatch(self.topics)
        sent: dict[str, int] = {}
        for key in doomed:
            how = ready[key]
            out.record(self.topics.reports, key.encode(), None)
            sent[how] = sent.get(how, 0) + 1
        await out.send()
        for how, n in sent.items():
            self.metrics.purge_tombstones.labels(how).inc(n)
        if sent:
            log.info("purge: tombstones for %d entries past their retention (%s)", sum(sent.values()),
                     ", ".join(f"{n} {how}" for how, n in sorted(sent.items())))
        return sum(sent.values())

    async def forget_related(self, keys: list[str]) -> None:
        """The appeals of the entries about to be purged, and the feedback records naming them, leave the topics
        and Redis (``blocklist.related``, as an erasure takes them) before the entries' tombstones are sent: a
        failure here sends no tombstone, and the next run finds them again."""
        client, prefix = self.store.client, self.store.prefix
        gone = [await related(client, prefix, key) for key in keys]
        out = OutputBatch(self.topics)
        for g in gone:
            for topic, key, value in g.records(self.related_topics.appeals, self.related_topics.feedback):
                out.record(topic, key, value)
        await out.send()
        for g in gone:
            await forget(client, prefix, g)
            await self.brakes.forget(g.key, "purged")
            if g.appeal_ids:
                self.metrics.purge_appeals.labels("entry").inc(len(g.appeal_ids))
            if g.feedback:
                self.metrics.purge_feedback.labels("tombstone").inc(len(g.feedback) - g.rewritten)
                self.metrics.purge_feedback.labels("rewritten").inc(g.rewritten)

    async def unlink(self, gone: dict[str, Entry], now: datetime) -> int:
        """An unlink on each entry in the index linked to one of ``gone`` (about to be purged), acknowledged by
        Kafka before their tombstones are sent (a failure sends no tombstone; the next run unlinks again, which
        changes nothing twice); how many."""
        records = await self.store.unlinks(gone, now, "purge", "retention purge")
        if not records:
            return 0
        out = OutputBatch(self.topics)
        for report in records:
            out.report(report)
        await out.send()
        log.info("purge: unlinks sent to %d entries linked to entries past their retention", len(records))
        return len(records)

    async def purge_appeals(self, now: datetime) -> int:
        """Tombstone and delete the decided appeals past SEKAT_RETENTION_APPEALS_DAYS; how many."""
        decided = await self.appeals.decided_before(now.timestamp() - self.retention.appeals_days * DAY_S,
                                                    PURGE_LIMIT)
        ripe = [a for a in decided if past_retention(a, now, self.retention.appeals_days)]
        if not ripe:
            return 0
        out = OutputBatch(self.topics)
        for appeal in ripe:
            out.record(self.related_topics.appeals, appeal.appeal_id.encode(), None)
        await out.send()
        dropped = 0
        for appeal in ripe:
            dropped += await self.appeals.drop(appeal)
        self.metrics.purge_appeals.labels("decided").inc(dropped)
        log.info("purge: %d decided appeals past their retention tombstoned", dropped)
        return dropped
