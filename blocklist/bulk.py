"""Bulk intake and export: ``sekat blocklist import FILE`` / ``export``, and the CLI's one-off reports.

Import reads CSV (header row) or JSONL (one object a line), turns each row
into a ``Report`` through ``blocklist.filing`` (the same checks as the API),
and produces them to ``sekat.reports`` in batches: every record is handed to
the producer at once (acks=all, lingering to fill batches) and the
acknowledgements are collected at the end, never one wait per row. A bad row
is reported with its line number and skipped; it does not stop the import.

Columns / keys: ``kind`` (phone|account), ``value``, ``bank`` (accounts),
``status`` (reported|confirmed|revoked, default reported), ``source``,
``case_ref``, ``reason``, ``ttl_days``, ``report_id`` (optional: re-importing
a file with report ids changes nothing).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from sekat.errors import BlocklistUnavailable, InvalidReport
from sekat.records import Entry, Report
from sekat.settings import Settings
from blocklist.filing import file_report

EXPORT_FIELDS = ("key", "status", "source", "reason", "case_ref", "report_id", "reported_at", "expires_at",
                 "report_count", "sources", "case_refs", "first_seen", "last_seen")


@dataclass
class ImportResult:
    read: int = 0
    sent: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


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
               region: str = "MY", protected: Collection[str] = ()) -> Report:
    def text(name: str) -> str:
        value = row.get(name, "")
        if not isinstance(value, str):
            raise InvalidReport(name, f"must be a string, got {type(value).__name__}", "wrong_type")
        return value

    ttl = row.get("ttl_days", 0)
    if isinstance(ttl, str):
        if not ttl.strip().isdigit():
            raise InvalidReport("ttl_days", "must be a whole number of days")
        ttl = int(ttl)
    return file_report(text("kind").strip().lower(), text("value"), text("status").strip().lower() or "reported",
                       text("source") or default_source, now, bank=text("bank") or None,
                       case_ref=text("case_ref"), reason=text("reason"), ttl_days=ttl, filed_by=filed_by,
                       report_id=text("report_id").strip() or None, region=region, protected=protected)


def producer(settings: Settings, bulk: bool = False) -> KafkaProducer:
    config: dict[str, Any] = dict(settings.kafka_client_config())
    try:
        if bulk:
            return KafkaProducer(**config, acks="all", linger_ms=50, batch_size=1 << 20,
                                 max_request_size=4 << 20, compression_type="lz4"
                                 if _has_lz4() else None)
        return KafkaProducer(**config, acks="all", linger_ms=0)
    except KafkaError as exc:
        raise BlocklistUnavailable(f"Kafka unavailable at {settings.kafka_bootstrap}: {type(exc).__name__}") from exc


def _has_lz4() -> bool:
    try:
        import lz4  # noqa: F401
    except ImportError:
        return False
    return True


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
                progress: Callable[[int], None] | None = None) -> ImportResult:
    """Validate rows and produce them as reports, acknowledgements collected at the end."""
    result = ImportResult()
    p = producer(settings, bulk=True)
    failed: list[str] = []
    try:
        for number, row in rows:
            result.read += 1
            if isinstance(row, str):
                result.errors.append((number, row))
                continue
            try:
                report = row_report(row, now, default_source, region=settings.phone_region, protected=protected)
            except InvalidReport as exc:
                result.errors.append((number, str(exc)))
                continue
            p.send(settings.topic_reports, orjson.dumps(report.to_json()),
                   key=report.key.encode()).add_errback(lambda exc: failed.append(type(exc).__name__))
            result.sent += 1
            if progress and result.sent % 100_000 == 0:
                progress(result.sent)
        p.flush(timeout=300)
    finally:
        p.close(timeout=30)
    if failed:
        raise BlocklistUnavailable(f"Kafka did not acknowledge {len(failed)} of {result.sent} reports "
                                   f"({failed[0]}); re-run the import (report ids make it idempotent)")
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

