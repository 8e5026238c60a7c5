"""``sekat appeals restore``: put the appeals back into Redis from ``sekat.appeals``, after Redis lost them.

The topic is compacted and each record holds its whole appeal, so the latest record of each appeal id is the
appeal; read to the end offsets it had when the command started, each is written as the API writes it
(``AppealStore.put``: the appeal, its stage and agency indexes, the latest appeal per identifier). Running
it again, or while the API takes steps, writes nothing older than what Redis holds: an appeal Redis already
has with more steps is left as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from sekat.cli.command import add_command, add_group
from sekat.settings import Settings


def latest_appeals(settings: Settings) -> dict[bytes, bytes]:
    """The latest record value of each appeal id on ``SEKAT_TOPIC_APPEALS``, read up to its end offsets."""
    return latest_records(settings, settings.topic_appeals)


def latest_records(settings: Settings, topic: str,
                   keep: Callable[[bytes], bool] | None = None) -> dict[bytes, bytes]:
    """The latest record value of each key on the compacted ``topic``, read up to its end offsets; a key whose
    latest record is a tombstone, or a value ``keep`` refuses, is left out (so only those are held in memory)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None,  # type: ignore[arg-type]
                             enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        latest: dict[bytes, bytes] = {}
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.offset < ends[TopicPartition(record.topic, record.partition)] and record.key:
                        if record.value is None or (keep is not None and not keep(record.value)):
                            latest.pop(record.key, None)
                        else:
                            latest[record.key] = record.value
        return latest
    finally:
        consumer.close()


def cmd_appeals(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.blocklist.appeals import AppealStore, decode
    from sekat.blocklist.store import BlocklistStore

    found = latest_appeals(settings)

    async def go() -> tuple[int, int]:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        appeals = AppealStore(store.client, settings.redis_prefix)
        written = kept = 0
        try:
            # oldest first: the latest appeal on an identifier is the one its index points to at the end
            for appeal in sorted((decode(v) for v in found.values()), key=lambda a: a.filed_at):
                held = await appeals.get(appeal.appeal_id)
                if held is not None and len(held.events) >= len(appeal.events):
                    kept += 1
                    continue
                await appeals.put(appeal)
                written += 1
            return written, kept
        finally:
            await store.close()

    written, kept = asyncio.run(go())
    print(f"appeals: {written} restored from {settings.topic_appeals}, {kept} already in Redis", file=sys.stderr)
    return 0


def add_appeals(sub: argparse._SubParsersAction) -> None:
    appeals = add_group(sub, "appeals", "restore the appeals' state in Redis from their topic",
                        "Appeals against listings are filed and decided through the agency API; the API keeps "
                        "their state in Redis and every step on SEKAT_TOPIC_APPEALS.")
    add_command(appeals, "restore", cmd_appeals, "put the appeals back into Redis from SEKAT_TOPIC_APPEALS",
                "Read SEKAT_TOPIC_APPEALS to its end and write the latest record of each appeal into Redis, "
                "unless Redis already holds that appeal with as many steps (after Redis lost its data).",
                reads=("topic_appeals", "kafka_client_config", "redis_prefix"), needs=("kafka", "redis"))
