"""Report intake: a batch of ``sekat.reports`` records → the Redis serving index.

Decode each record (bad ones, protected identifiers included, go to the dead
letters), apply the valid ones through ``BlocklistStore.apply`` (one MGET,
one MULTI), publish the consolidated records that keep the compacted topic
self-sufficient and the reports derived for linked identifiers (before the
index write, so a crash re-derives them), and wait for Kafka's
acknowledgement before Faust acks the batch. A Redis or Kafka failure is retried with backoff, never skipped.

A tombstone (a record without a value, from the purge or an erasure,
``streams/purge.py``) removes its key's entry from the index, in its place
in the batch: the reports before it are applied first, those after it start
a new entry. An entry that is active again by then (a report re-listed it
before the tombstone) is kept, and published consolidated after the
tombstone so that compaction keeps it too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

import faust
import orjson
from sekat.blocklist.lifecycle import consolidated, known_reports
from sekat.blocklist.store import BlocklistStore
from sekat.decode.reports import decode_report
from sekat.metrics.worker import WorkerMetrics
from sekat.streams.output import OutputBatch, OutputTopics
from sekat.streams.retry import retry

from sekat.clock import Clock, utcnow
from sekat.records import Rejection, Report, Source, iso

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, store: BlocklistStore, topics: OutputTopics, reports: faust.TopicT, metrics: WorkerMetrics,
                 max_bytes: int, region: str, protected: Collection[str], clock: Clock = utcnow) -> None:
        self.store = store
        self.topics = topics
        self.reports = reports
        self.metrics = metrics
        self.decode: Callable[[bytes | None, bytes | None], Report | Rejection] = (
            lambda raw, key: decode_report(raw, key, max_bytes, region, protected))
        self.clock = clock

    async def publish(self, reports: list[Report]) -> None:
        """Consolidated and derived reports onto the topic, acknowledged before the index is written."""
        out = OutputBatch(self.topics)
        for report in reports:
            out.record(self.reports, report.key.encode(), orjson.dumps(report.to_json()))
        await retry("publishing consolidated and linked reports", out.send, self.metrics.send_errors.inc)

    async def run(self, events: Sequence[Any]) -> None:
        out = OutputBatch(self.topics)
        now = iso(self.clock())
        valid: list[Report] = []
        for event in events:
            msg = event.message
            if msg.value is None and msg.key:
                await self.apply(valid)
                valid = []
                await self.forget(msg.key.decode("utf-8", "replace"))
                continue
            result = self.decode(msg.value, msg.key)
            if isinstance(result, Rejection):
                source = Source(msg.topic, msg.partition, msg.offset, int(msg.timestamp * 1000), msg.key)
                out.deadletter(source, msg.value, result, now)
                self.metrics.deadletters.labels("reports", result.reason).inc()
            else:
                valid.append(result)
        await self.apply(valid)
        await retry("sending intake output", out.send, self.metrics.send_errors.inc)

    async def apply(self, valid: list[Report]) -> None:
        """Apply ``valid`` reports to the index (retried until it works)."""
        if not valid:
            return
        changed, pending = await retry("applying reports", lambda: self.store.apply(valid, publish=self.publish),
                                       self.metrics.apply_errors.inc)
        self.metrics.reports_applied.inc(len(valid))
        self.metrics.entries_changed.inc(len(changed))
        if changed:
            log.info("applied %d report(s): %d entr%s changed, %d consolidated", len(valid), len(changed),
                     "y" if len(changed) == 1 else "ies", len(pending))

    async def forget(self, key: str) -> None:
        """A tombstone of ``key``: its entry out of the index unless it is active again (then re-published)."""
        removed, kept = await retry("purging an entry", lambda: self.store.forget(key, self.clock()),
                                    self.metrics.apply_errors.inc)
        if removed:
            self.metrics.entries_purged.inc()
            log.info("purged 1 entry from the index (tombstone on the reports topic)")
        elif kept is not None:
            await self.publish([consolidated(known_reports(kept)[-1], kept)])
            log.warning("tombstone for an entry that is active again: kept, and published again after it")
