"""``sekat tail TOPIC``: print a topic's record values as compact JSON lines, one per record.

The consumer joins no group: it assigns itself every partition of the topic and commits nothing,
so it never takes partitions from a worker and leaves nothing behind on the cluster. It starts at
the end of each partition (records from now on), or with ``--from-beginning`` at the start, and
stops after ``--count`` records or ``--timeout`` quiet seconds; Ctrl-C stops it too, with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from sekat.cli.command import add_command
from sekat.errors import SekatError
from sekat.settings import Settings

TOPICS = ("freeze", "block", "decisions", "deadletter", "reports", "transfers", "calls", "sms")


def topics_of(settings: Settings, name: str) -> list[str]:
    """The topics behind ``name``: for commands, the shared topic and each routed institution's own."""
    routes = settings.command_topics()
    return {
        "freeze": [settings.topic_freeze, *(t for (for_bank, _), t in routes.items() if for_bank)],
        "block": [settings.topic_block, *(t for (for_bank, _), t in routes.items() if not for_bank)],
        "decisions": [settings.topic_decisions],
        "deadletter": [settings.topic_deadletter],
        "reports": [settings.topic_reports],
        "transfers": [settings.topic_transfers],
        "calls": [settings.topic_calls],
        "sms": [settings.topic_sms],
    }[name]


def json_line(value: bytes | None) -> str:
    """A record value as one compact JSON line: JSON re-written without spaces, any other bytes as a JSON string."""
    if value is None:
        return "null"
    try:
        return orjson.dumps(orjson.loads(value)).decode()
    except orjson.JSONDecodeError:
        return orjson.dumps(value.decode("utf-8", errors="replace")).decode()


async def partitions_of(settings: Settings, topics: list[str]) -> list[Any]:
    """Every partition of ``topics``; a topic that does not exist is an error, never created by asking."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.aiokafka_config())
    try:
        await admin.start()
        described = {t["topic"]: t for t in await admin.describe_topics()}  # all topics: creates none
    finally:
        await admin.close()
    for topic in topics:
        if topic not in described:
            raise SekatError(f"no topic {topic} on Kafka (or this user may not describe it); "
                             "`sekat topics` creates Sekat's topics")
    return [TopicPartition(t, p["partition"]) for t in topics
            for p in sorted(described[t]["partitions"], key=lambda p: p["partition"])]


async def print_values(consumer: Any, count: int | None, timeout: float | None) -> None:
    """Print the values ``consumer`` reads until ``count`` are printed or none came for ``timeout`` seconds."""
    printed, last = 0, time.monotonic()
    while count is None or printed < count:
        wait = 1.0 if timeout is None else last + timeout - time.monotonic()
        if wait <= 0:
            return
        batch = await consumer.getmany(timeout_ms=int(wait * 1000),
                                       max_records=None if count is None else count - printed)
        for records in batch.values():  # at most max_records in all
            for record in records:
                print(json_line(record.value), flush=True)
                printed += 1
        if batch:
            last = time.monotonic()


async def tail(settings: Settings, name: str, from_beginning: bool, count: int | None, timeout: float | None) -> int:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    topics = topics_of(settings, name)
    try:
        partitions = await partitions_of(settings, topics)
        consumer = AIOKafkaConsumer(**settings.aiokafka_config(), group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        try:
            await consumer.start()
            consumer.assign(partitions)
            await (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*partitions)
            for tp in partitions:  # fix where each partition starts now: a record sent from here on is printed
                await consumer.position(tp)
            print(f"tail: {', '.join(topics)} ({len(partitions)} partitions) from the "
                  f"{'beginning' if from_beginning else 'end'}", file=sys.stderr, flush=True)
            await print_values(consumer, count, timeout)
        finally:
            await consumer.stop()
    except (KafkaError, OSError) as exc:
        raise SekatError(f"Kafka unavailable at {settings.kafka_bootstrap}: {type(exc).__name__}") from None
    return 0


def cmd_tail(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return asyncio.run(tail(settings, args.topic, args.from_beginning, args.count, args.timeout))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # the reader went away (`| head`): nothing more to print to
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _positive(cast: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = cast(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value
    return parse


def add_tail(sub: argparse._SubParsersAction) -> None:
    tail_ = add_command(
        sub, "tail", cmd_tail, "print a topic's records as JSON lines (commands, decisions, dead letters, inputs)",
        "Print the record values of one of Sekat's topics as compact JSON lines, without joining a consumer group "
        "(freeze and block include each routed institution's own topic). It starts at the end unless "
        "--from-beginning, and stops after --count records, after --timeout seconds without one, or at Ctrl-C, "
        "with exit status 0.",
        reads=("topic_freeze", "topic_block", "topic_decisions", "topic_deadletter", "topic_reports",
               "topic_transfers", "topic_calls", "topic_sms", "command_topics", "aiokafka_config"),
        needs=("kafka",))
    tail_.add_argument("topic", choices=TOPICS, help="the topic to print")
    tail_.add_argument("--from-beginning", action="store_true", help="start at the first record kept, not the end")
    tail_.add_argument("--count", type=_positive(int), metavar="N", help="stop after N records")
    tail_.add_argument("--timeout", type=_positive(float), metavar="SECONDS",
                       help="stop when no record arrived for SECONDS")
