"""``sekat send transfers|calls|reports [FILE]``: JSON lines onto Sekat's input topics, one record a line.

Each line of FILE (or standard input) is one JSON object, produced to the topic the settings name and
keyed as DESIGN.md keys it: a transfer by its payer account and a call by its caller, as the event
writes them (the value goes as given); a report by its ``kind:value``, after the checks of
``sekat blocklist add`` and ``import`` (``blocklist.bulk.row_report``), so a report sent here is the
report filed there. Each record is acknowledged by the broker (acks=all) before the next line is read,
and printed with where it landed. A line that cannot be sent stops the command with exit status 2:
the lines before it are on the topic, none after it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import orjson

from sekat.cli.command import add_command
from sekat.errors import InvalidReport, SekatError
from sekat.records import Report
from sekat.settings import Settings

# Where a transfer's, a call's and an SMS's record key is in the event.
KEY_PATHS = {"transfers": ("payer", "account"), "calls": ("caller",), "sms": ("sender",)}


class BadLine(ValueError):
    """A line that cannot be sent: not a JSON object, or not a valid report."""


def event_key(event: dict[str, Any], path: tuple[str, ...]) -> str | None:
    """The text at ``path`` in ``event``, as a record key; None (Kafka picks a partition) where there is none."""
    value: Any = event
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None


def record_of(kind: str, line: bytes, to_report: Callable[[dict[str, Any]], Report]) -> tuple[str | None, bytes]:
    """The (key, value) to send for one line; raises ``BadLine`` saying why it cannot be sent."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadLine(f"not JSON ({str(exc)[:60]})") from None
    if not isinstance(data, dict):
        raise BadLine("not a JSON object")
    if kind != "reports":
        return event_key(data, KEY_PATHS[kind]), line.strip()
    try:
        report = to_report(data)
    except InvalidReport as exc:
        raise BadLine(f"not a valid report: {exc}") from None
    return report.key, orjson.dumps(report.to_json())


async def send(settings: Settings, kind: str, source: IO[bytes], name: str, filed_by: str = "cli") -> int:
    """Send every line of ``source`` (called ``name`` in messages); 0, or 2 at the first line that cannot be sent."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from sekat.blocklist.bulk import row_report

    protected, expiry, hasher = settings.protected_keys(), settings.expiry_policy(), settings.proxy_hasher()

    def to_report(row: dict[str, Any]) -> Report:
        return row_report(row, datetime.now(timezone.utc), filed_by=filed_by, region=settings.phone_region,
                          protected=protected, expiry=expiry, hasher=hasher)

    topic = {"transfers": settings.topic_transfers, "calls": settings.topic_calls, "sms": settings.topic_sms,
             "reports": settings.topic_reports}[kind]
    producer = AIOKafkaProducer(**settings.aiokafka_config(), acks="all")
    try:
        await producer.start()
    except (KafkaError, OSError) as exc:
        await producer.stop()
        raise SekatError(f"Kafka unavailable at {settings.kafka_bootstrap}: {type(exc).__name__}") from None
    sent, number = 0, 0
    try:
        # Read in a thread: a line typed at a terminal is sent as soon as it is complete.
        while line := await asyncio.to_thread(source.readline):
            number += 1
            if not line.strip():
                continue
            try:
                key, value = record_of(kind, line, to_report)
            except BadLine as exc:
                print(f"sekat: {name}, line {number}: {exc}; {sent} record(s) sent before it, none after it",
                      file=sys.stderr)
                return 2
            try:
                meta = await producer.send_and_wait(topic, value, key=None if key is None else key.encode())
            except KafkaError as exc:
                raise SekatError(f"{name}, line {number}: Kafka did not acknowledge it ({type(exc).__name__}); "
                                 f"{sent} record(s) sent before it") from None
            sent += 1
            print(f"{meta.topic} partition={meta.partition} offset={meta.offset} key={orjson.dumps(key).decode()}",
                  flush=True)
    finally:
        await producer.stop()
    return 0


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.cli.blocklist import operator

    filed_by = f"cli:{operator(settings, args)}" if args.kind == "reports" else "cli"  # a filing names who
    if args.file in (None, "-"):
        return asyncio.run(send(settings, args.kind, sys.stdin.buffer, "standard input", filed_by))
    path = Path(args.file)
    if not path.is_file():
        raise SekatError(f"no such file: {path}")
    with open(path, "rb") as source:
        return asyncio.run(send(settings, args.kind, source, path.name, filed_by))


def add_send(sub: argparse._SubParsersAction) -> None:
    send_ = add_command(
        sub, "send", cmd_send, "produce JSON lines (transfers, calls, sms or reports) to Sekat's input topics",
        "Produce each line of FILE (or standard input), a JSON object, to the transfers, calls, SMS or reports "
        "topic, and print its topic, partition, offset and key once Kafka acknowledged it. Transfers are keyed by "
        "payer.account, calls by caller, SMS by sender, reports (checked as `sekat blocklist add` checks them) by "
        "kind:value; a "
        "line that is not a JSON object stops the command with exit status 2, nothing after it sent.",
        reads=("topic_transfers", "topic_calls", "topic_sms", "topic_reports", "aiokafka_config", "phone_region",
               "protected_keys", "expiry_policy", "proxy_hasher", "operator"),
        needs=("kafka",))
    send_.add_argument("kind", choices=("transfers", "calls", "sms", "reports"), help="the topic to send to")
    send_.add_argument("--operator", help="reports: who files them, recorded as filed_by cli:<operator> "
                                          "(default: SEKAT_OPERATOR; required for reports)")
    send_.add_argument("file", nargs="?", metavar="FILE", help="JSON lines to send (default or '-': standard input)")
