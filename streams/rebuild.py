"""Rebuild the Redis index from ``sekat.reports`` (``sekat blocklist rebuild``).

Wipes the index keys under the prefix (announcing each on the change stream),
then replays every partition of the topic from its first offset to the end
offsets taken at the start, through the same decoder and the same
``BlocklistStore.apply`` the reports agent uses. Because an entry is a function
of the set of reports on its key, and the agent keeps the last record of each
key complete (consolidation), the rebuilt index equals the one built live,
before or after compaction. Records the agent dead-lettered are skipped here
too. Consolidations are not re-published: the topic already holds them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from blocklist.store import BlocklistStore
from sekat.records import Rejection, Report
from sekat.settings import Settings
from streams.reports import decode_report

log = logging.getLogger(__name__)
BATCH = 2000


@dataclass
class RebuildResult:
    wiped: int = 0
    records: int = 0
    invalid: int = 0
    entries: int = 0


async def rebuild(settings: Settings, store: BlocklistStore, protected: Collection[str] = ()) -> RebuildResult:
    result = RebuildResult()
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None,  # type: ignore[arg-type]
                             enable_auto_commit=False, max_poll_records=BATCH)
    try:
        partitions = consumer.partitions_for_topic(settings.topic_reports) or set()
        tps = [TopicPartition(settings.topic_reports, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        result.wiped = await store.wipe()
        remaining = {tp for tp in tps if ends[tp] > consumer.position(tp)}
        keys: set[str] = set()
        while remaining:
            polled = consumer.poll(timeout_ms=1000, max_records=BATCH)
            batch: list[Report] = []
            for tp, messages in polled.items():
                for msg in messages:
                    if msg.offset >= ends[tp]:
                        continue
                    result.records += 1
                    decoded = decode_report(msg.value, msg.key, max(settings.max_event_bytes, 1_048_576),
                                            settings.phone_region, protected)
                    if isinstance(decoded, Rejection):
                        result.invalid += 1
                    else:
                        batch.append(decoded)
                        keys.add(decoded.key)
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            await store.apply(batch)
        result.entries = len(keys)
        return result
    finally:
        consumer.close()
