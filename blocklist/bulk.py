"""Bulk intake and export: ``sekat blocklist import FILE`` / ``export``, and the CLI's one-off reports.

Import reads CSV (header row) or JSONL (one object a line), turns each row
into a ``Report`` through ``blocklist.filing`` (the same checks as the API),
and produces them to ``sekat.reports`` in batches: every record is handed to
the producer at once (acks=all, lingering to fill batches) and the
acknowledgements are awaited together, never one wait per row. A bad row
is reported with its line number and skipped; it does not stop the import.

Columns / keys: ``kind`` (phone|account), ``value``, ``bank`` (accounts),
``status`` (reported|confirmed|revoked, default reported), ``source``,
``case_ref``, ``reason``, ``ttl_days``, ``report_id`` (optional: re-importing
a file with report ids changes nothing). A row may give ``key`` (as
``export`` writes it) instead of ``kind``/``value``/``bank``, so an export
can be filed again, e.g. to put index entries that have no report on the topic
onto it.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from sekat.blocklist.filing import file_report
from sekat.errors import BlocklistUnavailable, InvalidReport
from sekat.expiry import ExpiryPolicy
from sekat.identifiers import ProxyHasher
from sekat.murmur import murmur2_many
from sekat.records import Entry, Report
from sekat.settings import Settings

CHUNK = 1024  # rows validated, then hashed to their partitions together (``murmur2_many``)
EXPORT_FIELDS = ("key", "status", "source", "reason", "case_ref", "report_id", "reported_at", "expires_at",
                 "report_count", "sources", "case_refs", "first_seen", "last_seen")


@dataclass
class ImportResult:
    read: int = 0
    sent: int = 0
    acknowledged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    # Where the import's records are on the reports topic, per partition: [first, ends) (for --wait-applied)
    first: dict[int, int] = field(default_factory=dict)
    ends: dict[int, int] = field(default_factory=dict)

    def landed(self, partition: int, base: int, count: int) -> None:
        """A batch of ``count`` records acknowledged at offsets ``base``..."""
        self.acknowledged += count
        self.first[partition] = min(self.first.get(partition, base), base)
        self.ends[partition] = max(self.ends.get(partition, 0), base + count)


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row) for each data row; a row that cannot be parsed is its error message instead."""
    is_csv = path.suffix.lower() == ".csv"
    with open(path, encoding="utf-8", errors="replace", newline="" if is_csv else None) as fh:
        if is_csv:
            reader = csv.DictReader(fh)
            for row in reader:
                if None in row:
                    yield reader.line_num, "more columns than the header"
                    continue
                yield reader.line_num, {k.strip(): v for k, v in row.items() if k and v not in (None, "")}
            return
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield number, f"not JSON ({str(exc)[:60]})"
                continue
            yield number, data if isinstance(data, dict) else "must be a JSON object"


def row_report(row: dict[str, Any], now: datetime, default_source: str = "", filed_by: str = "import",
               region: str = "MY", protected: Collection[str] = (), expiry: ExpiryPolicy | None = None,
               hasher: ProxyHasher | None = None) -> Report:
    """One row as a report. A proxy's value is ``TYPE:clear`` (hashed with ``hasher``); a row of ``export``
    (``key``, no ``kind``) names it by its hash already."""
    def text(name: str) -> str:
        value = row.get(name, "")
        if not isinstance(value, str):
            raise InvalidReport(name, f"must be a string, got {type(value).__name__}", "wrong_type")
        return value

    if "kind" not in row and isinstance(row.get("key"), str):  # a row of `export`: kind:value or kind:bank:value
        kind, _, rest = row["key"].partition(":")
        bank, _, number = rest.rpartition(":") if kind == "account" else ("", "", rest)
        row = {**row, "kind": kind, "value": number, "bank": bank}
        hasher = None
    ttl = row.get("ttl_days")
    if ttl == "":
        ttl = None  # an empty CSV cell: the expiry policy's days
    if isinstance(ttl, str):
        if not ttl.strip().isdigit():
            raise InvalidReport("ttl_days", "must be a whole number of days")
        ttl = int(ttl)
    return file_report(text("kind").strip().lower(), text("value"), text("status").strip().lower() or "reported",
                       text("source") or default_source, now, bank=text("bank") or None,
                       case_ref=text("case_ref"), reason=text("reason"), ttl_days=ttl, filed_by=filed_by,
                       report_id=text("report_id").strip() or None, region=region, protected=protected,
                       links=_links(row.get("links")), expiry=expiry, hasher=hasher)


def _links(raw: Any) -> list[dict[str, Any]]:
    """A JSONL row's ``links`` (a list of ``{kind, value, bank}``); CSV rows name none."""
    if raw is None or raw == "":
        return []
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise InvalidReport("links", "must be a list of objects with kind, value and bank (accounts)", "wrong_type")
    return raw


def producer(settings: Settings) -> KafkaProducer:
    try:
        return KafkaProducer(**settings.kafka_client_config(), acks="all", linger_ms=0)
    except KafkaError as exc:
        raise BlocklistUnavailable(f"Kafka unavailable at {settings.kafka_bootstrap}: {type(exc).__name__}") from exc


def publish_one(settings: Settings, report: Report, timeout: float = 15.0) -> Any:
    """Produce one report and wait for Kafka's acknowledgement (acks=all)."""
    p = producer(settings)
    try:
        return p.send(settings.topic_reports, orjson.dumps(report.to_json()),
                      key=report.key.encode()).get(timeout=timeout)
    except KafkaError as exc:
        raise BlocklistUnavailable(f"Kafka did not acknowledge the report: {type(exc).__name__}") from exc
    finally:
        p.close()


def import_rows(settings: Settings, rows: Iterable[tuple[int, dict[str, Any] | str]], now: datetime,
                default_source: str = "", protected: Collection[str] = (),
                progress: Callable[[ImportResult], None] | None = None, filed_by: str = "import") -> ImportResult:
    """Validate rows and produce them as reports (``filed_by`` who imports) in batches; returns once Kafka has
    acknowledged all.

    ``progress`` is called with the counts so far about once a second, and once at the end."""
    return asyncio.run(_import(settings, rows, now, default_source, protected, progress, filed_by))


async def _import(settings: Settings, rows: Iterable[tuple[int, dict[str, Any] | str]], now: datetime,
                  default_source: str, protected: Collection[str],
                  progress: Callable[[ImportResult], None] | None, filed_by: str) -> ImportResult:
    # aiokafka's batch API: records go straight into per-partition batches (partitioned by key with Kafka's
    # default murmur2 partitioner, as every other producer of the topic does, CHUNK keys hashed at once), each
    # batch is sent as soon as it is full, and the acknowledgements (acks=all) are awaited together.
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError as AIOKafkaError

    result = ImportResult()
    expiry, hasher = settings.expiry_policy(), settings.proxy_hasher()
    topic = settings.topic_reports
    producer = AIOKafkaProducer(**settings.aiokafka_config(), acks="all", linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=4 << 20, request_timeout_ms=60000)
    try:
        await producer.start()
        partitions = sorted(await producer.partitions_for(topic))
    except (AIOKafkaError, OSError) as exc:
        await producer.stop()
        raise BlocklistUnavailable(f"Kafka unavailable at {settings.kafka_bootstrap}: {type(exc).__name__}") from exc
    batches: dict[int, Any] = {}
    in_flight: list[asyncio.Future[Any]] = []

    async def ship(partition: int) -> None:
        batch = batches.pop(partition)
        count = batch.record_count()
        future = await producer.send_batch(batch, topic, partition=partition)
        future.add_done_callback(lambda f: f.cancelled() or f.exception() is not None
                                 or result.landed(partition, f.result().offset, count))
        in_flight.append(future)
        if len(in_flight) >= 32:
            await in_flight.pop(0)

    async def add(records: list[tuple[bytes, bytes]]) -> None:
        """Records into their partitions' batches (Kafka's default partitioner, the keys hashed together)."""
        hashes = murmur2_many([key for key, _ in records])
        for (key, value), h in zip(records, hashes):
            partition = partitions[(h & 0x7FFFFFFF) % len(partitions)]
            batch = batches.get(partition) or batches.setdefault(partition, producer.create_batch())
            if batch.append(key=key, value=value, timestamp=None) is None:
                await ship(partition)
                batches[partition] = producer.create_batch()
                batches[partition].append(key=key, value=value, timestamp=None)

    shown = time.monotonic()
    chunk: list[tuple[bytes, bytes]] = []

    try:
        for number, row in rows:
            result.read += 1
            if isinstance(row, str):
                result.errors.append((number, row))
                continue
            try:
                report = row_report(row, now, default_source, filed_by, region=settings.phone_region,
                                    protected=protected, expiry=expiry, hasher=hasher)
            except InvalidReport as exc:
                result.errors.append((number, str(exc)))
                continue
            chunk.append((report.key.encode(), orjson.dumps(report.to_json())))
            if len(chunk) == CHUNK:
                await add(chunk)
                result.sent += len(chunk)
                chunk = []
                if progress and time.monotonic() - shown >= 1:
                    shown = time.monotonic()
                    progress(result)
        await add(chunk)
        result.sent += len(chunk)
        for partition in list(batches):
            await ship(partition)
        await asyncio.gather(*in_flight)
        if progress:
            progress(result)
    except (AIOKafkaError, OSError) as exc:
        raise BlocklistUnavailable(f"Kafka did not acknowledge every report ({type(exc).__name__}); re-run the "
                                   "import (rows with a report_id are idempotent)") from exc
    finally:
        await producer.stop()
    return result


def write_export(entries: Iterable[Entry], out: IO[str], fmt: str, header: bool = True) -> int:
    """Write entries as JSONL (the full entry, history included) or CSV (summary columns)."""
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, extrasaction="ignore")
        if header:
            writer.writeheader()
        for entry in entries:
            body = entry.to_json()
            body["sources"] = " ".join(entry.sources)
            body["case_refs"] = " ".join(entry.case_refs)
            writer.writerow(body)
            count += 1
        return count
    for entry in entries:
        out.write(orjson.dumps(entry.to_json()).decode() + "\n")
        count += 1
    return count

