"""Call detail records (CSV) → one ``Call`` per line.

A Kafka message holds one CDR line, or several separated by newlines (one ``Call`` or ``Rejection`` each).
Columns are picked by a mapping of Call field → 1-based column number (``SEKAT_CDR_COLUMNS``; see
``sekat.settings.DEFAULT_CDR_COLUMNS``); columns not mapped are ignored, so an export with 40 columns
needs no translator. Blank lines and lines starting with ``#`` are skipped; there is no header row.

Values:
- ``occurred_at``: ISO 8601 (``2026-11-28T10:14:02Z``), or the compact ``YYYYMMDDhhmmss`` of many switch
  exports; no zone means UTC.
- ``type``: ``voice`` (also ``v``, ``call``, ``moc``, ``mtc``) or ``sms`` (``s``, ``sms-mo``, ``sms-mt``,
  ``smsmo``, ``smsmt``, ``mo-sms``, ``mt-sms``); empty or unmapped means ``voice``.
- ``presentation`` (CLI): ``allowed`` (``a``, ``0``, ``allow``), ``restricted`` (``r``, ``1``, ``clir``,
  ``private``, ``withheld``) or ``unavailable`` (``u``, ``2``, ``not-available``); empty means unknown.
- ``caller_network``: free text up to 32 characters, lower-cased (e.g. ``international``, ``on-net``).
- ``attestation``: STIR/SHAKEN level ``A``, ``B`` or ``C`` (any case); empty means none.
- ``duration``: seconds (``2``, ``2.5``), talk time if answered, ring time if not; empty means not given.
- ``answered``: ``1``/``0``, ``y``/``n``, ``yes``/``no``, ``true``/``false``, ``answered``/``unanswered``,
  ``answer``/``no-answer`` (any case); empty means not given.
- ``event_id`` is the CDR's ``call_id``: a re-sent line yields the same command id.

A bad line becomes a ``Rejection`` whose ``field`` names the Call field and the column, e.g.
``caller (column 3, line 1)``. Reasons: those of ``sekat.decode.fields`` plus ``not_text`` (not UTF-8).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timezone

from sekat.decode import calls, fields
from sekat.decode.fields import Bad
from sekat.identifiers import PhoneNumber
from sekat.records import Call, Rejection

log = logging.getLogger(__name__)

CALL_TYPE_CODES = {
    "voice": "voice", "v": "voice", "call": "voice", "moc": "voice", "mtc": "voice",
    "sms": "sms", "s": "sms", "sms-mo": "sms", "sms-mt": "sms", "smsmo": "sms", "smsmt": "sms",
    "mo-sms": "sms", "mt-sms": "sms",
}
PRESENTATION_CODES = {
    "allowed": "allowed", "allow": "allowed", "a": "allowed", "0": "allowed",
    "restricted": "restricted", "r": "restricted", "1": "restricted", "clir": "restricted",
    "private": "restricted", "withheld": "restricted",
    "unavailable": "unavailable", "u": "unavailable", "2": "unavailable", "not-available": "unavailable",
}
ANSWERED_CODES = {
    "1": "1", "y": "1", "yes": "1", "true": "1", "answered": "1", "answer": "1",
    "0": "", "n": "", "no": "", "false": "", "unanswered": "", "no-answer": "", "noanswer": "",
}
_COMPACT_TS = re.compile(r"^\d{14}$")
_SECONDS = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,3})?$")


def _given(raw: str | None) -> str | None:
    """A cell's value without surrounding blanks; None when the cell is missing or blank."""
    if raw is None:
        return None
    return raw.strip() or None


def _required(raw: str | None, field: str) -> str:
    value = _given(raw)
    if value is None:
        raise Bad("missing_field", field, "is required")
    return value


def _code(raw: str | None, field: str, codes: Mapping[str, str], expected: str) -> str | None:
    """What ``codes`` maps the value to (any case); None when blank."""
    value = _given(raw)
    if value is None:
        return None
    found = codes.get(value.lower())
    if found is None:
        raise Bad("invalid_value", field, f"must be {expected}")
    return found


def call_type(raw: str | None, field: str) -> str:
    return _code(raw, field, CALL_TYPE_CODES, "voice or sms (or a CDR code such as MOC, SMS-MO)") or "voice"


def presentation(raw: str | None, field: str) -> str | None:
    return _code(raw, field, PRESENTATION_CODES, "allowed, restricted or unavailable (or 0, 1, 2)")


def network(raw: str | None, field: str) -> str | None:
    value = _given(raw)
    if value is not None and len(value) > 32:
        raise Bad("invalid_value", field, "is longer than 32 characters")
    return None if value is None else value.lower()


def duration(raw: str | None, field: str) -> float | None:
    value = _given(raw)
    if value is None:
        return None
    if not _SECONDS.match(value):
        raise Bad("invalid_value", field, "must be seconds, e.g. 2 or 2.5")
    return calls.duration(float(value), field)


def answered(raw: str | None, field: str) -> bool | None:
    code = _code(raw, field, ANSWERED_CODES, "answered or unanswered (1/0, y/n, true/false)")
    return None if code is None else code == "1"


def operator(raw: str | None, field: str) -> str:
    return calls.operator(_required(raw, field), field)


def timestamp(raw: str | None, field: str) -> datetime:
    value = _required(raw, field)
    try:
        if _COMPACT_TS.match(value):
            return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
        return fields.iso_time(value)
    except ValueError:
        raise Bad("invalid_timestamp", field, "must be ISO 8601 or YYYYMMDDhhmmss") from None


def phone(raw: str | None, field: str, region: str) -> PhoneNumber:
    return fields.as_phone(_required(raw, field), field, region)


def identifier(raw: str | None, field: str) -> str:
    value = _required(raw, field)
    if len(value) > 128:
        raise Bad("invalid_value", field, "is longer than 128 characters")
    return value


class CdrCsvDecoder:
    """Decoder for the calls stream when ``SEKAT_CALLS_FORMAT=cdr-csv``."""

    def __init__(self, columns: Mapping[str, int], delimiter: str = ",", max_bytes: int = 65536,
                 region: str = "MY") -> None:
        self.columns = dict(columns)
        self.delimiter = delimiter
        self.max_bytes = max_bytes
        self.region = region

    def __call__(self, raw: bytes | None) -> list[Call | Rejection]:
        try:
            text = fields.sized(raw, self.max_bytes).decode("utf-8-sig")
        except Bad as bad:
            return [bad.rejection]
        except UnicodeDecodeError:
            return [Rejection("not_text", "CDR line is not UTF-8 text")]
        lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1)
                 if line.strip() and not line.lstrip().startswith("#")]
        if not lines:
            return [Rejection("empty", "CDR message has no record line")]
        try:
            rows = list(csv.reader([line for _, line in lines], delimiter=self.delimiter, strict=True))
        except csv.Error as exc:
            return [Rejection("invalid_value", f"not a CSV line ({exc})")]
        return [self._safe_line(row, n) for (n, _), row in zip(lines, rows)]

    def _safe_line(self, row: list[str], line: int) -> Call | Rejection:
        try:
            return self._line(row, line)
        except Exception as exc:  # noqa: BLE001 - no input may stop the worker; a bug here is counted, kept
            log.exception("CDR adapter failed on line %d", line)
            return Rejection("internal_error", f"adapter failed: {type(exc).__name__}")

    def _line(self, row: list[str], line: int) -> Call | Rejection:
        def cell(name: str) -> tuple[str | None, str]:
            col = self.columns.get(name)
            if col is None:
                return None, name
            return (row[col - 1] if col <= len(row) else None), f"{name} (column {col}, line {line})"

        try:
            call_id = identifier(*cell("call_id"))
            return Call(
                event_id=call_id, occurred_at=timestamp(*cell("occurred_at")), call_id=call_id,
                operator=operator(*cell("operator")), caller=phone(*cell("caller"), self.region),
                callee=phone(*cell("callee"), self.region), type=call_type(*cell("type")),
                caller_network=network(*cell("caller_network")), presentation=presentation(*cell("presentation")),
                attestation=calls.attestation(*cell("attestation")), duration=duration(*cell("duration")),
                answered=answered(*cell("answered")),
            )
        except Bad as bad:
            return bad.rejection
