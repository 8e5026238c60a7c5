"""The retention purge: ended blocklist entries past their retention leave the index, the replicas and the topic.

    group leader, every SEKAT_PURGE_INTERVAL_S
        retention sets (revoked / expired, by when they ended) ─> the keys ended before now - retention
        ─> read those entries: still ended that long ago, and no release command still to send for them?
        ─> a tombstone (key, no value) on the compacted reports topic, acknowledged by Kafka
    reports agent (streams/intake.py), in the tombstone's place among the key's reports
        ─> the entry out of the Redis index (unless a report re-listed it), announced on the change stream
        ─> every worker's replica drops it; exports (which read the index) no longer have it
    broker's log cleaner ─> the key's older records, then (after delete.retention.ms) the tombstone, gone

The change stream keeps a purged key in its announcements, and the stored replica snapshot (and each
worker's disk copy of it) in its chunks: after removals, a run drops the change-stream records every
replica seen within ``REPLICAS_SEEN_S`` has passed (``blocklist.replica.positions``). That also leaves an
older stored snapshot unusable (trimmed past), so the running workers store a fresh one without the
purged keys, and the old chunks expire minutes later (blocklist/replica_snapshot.py).

A run reads the entries due and nothing else (``blocklist.retention``), at most ``PURGE_LIMIT`` of each
kind; a backlog drains over the next runs. An entry an institution acted on is purged only once its
release is sent (release/sweep.py): until then it is deferred (``sekat_purge_deferred_total``).
The runtime is ``sekat_periodic_task_seconds{task="sekat_purge"}``; tombstones sent are
``sekat_purge_tombstones_total`` and entries removed ``sekat_blocklist_entries_purged_total``.
"""

from __future__ import annotations

import logging
import time

from sekat.blocklist.replica import positions, positions_key
from sekat.blocklist.retention import DAY_S, EXPIRED, REVOKED, Retention, due
from sekat.blocklist.store import BlocklistStore
from sekat.metrics.worker import WorkerMetrics
from sekat.release.acted import ActedStore
from sekat.streams.output import OutputBatch, OutputTopics

from sekat.clock import Clock

log = logging.getLogger(__name__)

PURGE_LIMIT = 500  # entries of each kind one run reads at most
# A replica that reported its change-stream position within this long is following: the stream is trimmed only
# up to where every such replica is (one that reports again later re-reads the index if it was trimmed past).
REPLICAS_SEEN_S = 600


class Purger:
    """The purge; the worker runs it on the group leader every SEKAT_PURGE_INTERVAL_S."""

    def __init__(self, store: BlocklistStore, acted: ActedStore, topics: OutputTopics, metrics: WorkerMetrics,
                 retention: Retention, clock: Clock) -> None:
        self.store = store
        self.acted = acted
        self.topics = topics
        self.metrics = metrics
        self.retention = retention
        self.clock = clock
        self._unsettled = 0  # removals read at the last run, taken off the entry count at this one

    async def run_once(self) -> int:
        """One run; a failure is counted and logged, and the next run tries again."""
        try:
            return await self.purge()
        except Exception as exc:  # noqa: BLE001 - Redis or Kafka unavailable: nothing was removed half-way
            self.metrics.purge_errors.inc()
            log.warning("purge failed (%s: %s); retrying at the next run", type(exc).__name__, exc)
            return 0

    async def trim_changes(self) -> None:
        """Drop the change-stream records every replica seen lately has passed (nothing when none was seen)."""
        client = self.store.client
        raw = await client.hgetall(positions_key(self.store.prefix))
        seen = positions(raw, int(time.time() * 1000), REPLICAS_SEEN_S)
        if seen:
            ms, seq = min(seen.values())
            await self.store.trim_changes((ms, seq + 1))  # the record at a replica's position it has read

    async def purge(self) -> int:
        """Send a tombstone for each entry past its retention; how many were sent."""
        removed = self._unsettled
        self._unsettled = await self.store.settle_forgotten(self._unsettled)
        if removed or self._unsettled:
            await self.trim_changes()
        now = self.clock()
        marked: dict[str, str] = {}
        for ended in (REVOKED, EXPIRED):
            before = now.timestamp() - self.retention.days(ended) * DAY_S
            marked.update(dict.fromkeys(await self.store.retention_due(ended, before, PURGE_LIMIT), ended))
        if not marked:
            return 0
        entries = await self.store.lookup_many(marked)
        ready = {key: how for key, entry in entries.items() if (how := due(entry, now, self.retention))}
        for key in marked.keys() - entries.keys():  # a mark left behind an entry already gone
            await self.store.forget(key, now)
        await self.store.remark([e for k, e in entries.items() if k not in ready])  # moved since it was marked
        pending = await self.acted.members(list(ready))
        out = OutputBatch(self.topics)
        sent: dict[str, int] = {}
        for key, how in ready.items():
            if pending[key]:
                self.metrics.purge_deferred.inc()
                continue
            out.record(self.topics.reports, key.encode(), None)
            sent[how] = sent.get(how, 0) + 1
        await out.send()
        for how, n in sent.items():
            self.metrics.purge_tombstones.labels(how).inc(n)
        if sent:
            log.info("purge: tombstones for %d entries past their retention (%s)", sum(sent.values()),
                     ", ".join(f"{n} {how}" for how, n in sorted(sent.items())))
        return sum(sent.values())
