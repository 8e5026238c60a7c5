"""Blocklist reports: decode the Report contract (docs/contract.md) from ``sekat.reports``.

The record key must be the report's normalised ``kind:value`` (compaction
keeps the last record per key, so a mis-keyed report would survive or vanish
under the wrong key). Emergency/short numbers and the configured protected
list are refused with reason ``protected``.

Two decoders, one answer, as for calls and transfers (decode/calls.py): ``_decode_fast``
(msgspec into a typed struct) takes a report as an agency files it (no ``history``, ``summary``,
``links``, ``origin`` or ``unlinks``: what a bulk import is made of); anything else, and anything it
does not like, falls through to the precise decoder, which reads consolidated, linked and unlink
reports and names the field at fault for the dead letter. tests/unit/test_reports_decode.py holds the two
to the same answer on generated reports.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Annotated, Any

import msgspec

from sekat.blocklist.filing import KIND_RULE, KINDS, MAX_SMS_VALUE, MAX_TTL_DAYS, SMS_KINDS, identifier, key_of
from sekat.blocklist.links import MAX_LINKS
from sekat.decode import fields
from sekat.decode.fields import Bad
from sekat.errors import InvalidIdentifier, InvalidReport
from sekat.identifiers import parse_key
from sekat.records import Link, Rejection, Report, SourceTally, Standing, Status, Summary, iso

MAX_HISTORY = 10_000
MAX_GROUP = MAX_LINKS + 1  # a derived report carries its origin's whole group
MAX_UNLINKS = 100  # identifiers one unlink removes


def _identifier(data: dict[str, Any], prefix: str, region: str, protected: Collection[str]) -> tuple[str, str, str]:
    """The identifier an object names by ``kind``, ``value`` and ``bank`` (accounts): (kind, bank, value)."""
    kind = fields.text(data, "kind", f"{prefix}kind", max_len=16)
    if kind not in KINDS:
        raise Bad("invalid_value", f"{prefix}kind", KIND_RULE)
    raw_value = fields.text(data, "value", f"{prefix}value", max_len=MAX_SMS_VALUE if kind in ("sender", "url", "domain") else 64)
    raw_bank = fields.text(data, "bank", f"{prefix}bank", required=False, max_len=16) if kind == "account" else None
    assert raw_value is not None
    try:
        bank, value = identifier(kind, raw_value, raw_bank, region, protected)
    except InvalidReport as exc:
        raise Bad(exc.reason, f"{prefix}{exc.field}", str(exc).split(": ", 1)[-1]) from None
    return kind, bank, value


def _links(data: dict[str, Any], path: str, region: str, protected: Collection[str],
           name: str = "links", most: int = MAX_GROUP) -> tuple[str, ...]:
    """``links`` (or ``unlinks``): identifiers as ``{kind, value, bank}`` objects → their keys."""
    raw = data.get(name)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise Bad("wrong_type", f"{path}{name}", f"must be a list, got {type(raw).__name__}")
    if len(raw) > most:
        raise Bad("invalid_value", f"{path}{name}", f"has more than {most} items")
    keys: list[str] = []
    for i, item in enumerate(raw):
        where = f"{path}{name}[{i}]"
        if not isinstance(item, dict):
            raise Bad("wrong_type", where, "must be an object with kind, value and bank (accounts)")
        kind, bank_code, number = _identifier(item, f"{where}.", region, protected)
        keys.append(key_of(kind, bank_code, number))
    return tuple(dict.fromkeys(keys))


def _origin(data: dict[str, Any], path: str, region: str) -> tuple[str, str]:
    """``origin`` and ``origin_key`` of a report derived for a link (both or neither)."""
    origin = fields.text(data, "origin", f"{path}origin", required=False, max_len=128) or ""
    if not origin:
        return "", ""
    if data.get("origin_key") == "":  # the origin's key was purged or erased (an unlink blanked it)
        return origin, ""
    origin_key = fields.text(data, "origin_key", f"{path}origin_key", max_len=520) or ""
    try:
        parsed = parse_key(origin_key, region)
    except InvalidIdentifier as exc:
        raise Bad("invalid_key", f"{path}origin_key", str(exc)) from None
    return origin, parsed.key


def _status(data: dict[str, Any], path: str) -> Status:
    raw = fields.text(data, "status", path, max_len=16)
    try:
        return Status(raw)
    except ValueError:
        raise Bad("invalid_value", path, "must be 'reported', 'confirmed' or 'revoked'") from None


def _ttl(data: dict[str, Any], path: str) -> int:
    value = data.get("ttl_days", 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise Bad("wrong_type", path, f"must be a whole number of days, got {type(value).__name__}")
    if not 0 <= value <= MAX_TTL_DAYS:
        raise Bad("invalid_value", path, f"must be between 0 and {MAX_TTL_DAYS}")
    return value


def _optional(data: dict[str, Any], name: str, path: str, max_len: int) -> str:
    """An optional text field: absent, null and "" all mean empty."""
    if data.get(name) == "":
        return ""
    return (fields.text(data, name, f"{path}{name}", required=False, max_len=max_len) or "").strip()


def _item(data: dict[str, Any], kind: str, value: str, bank: str, path: str, region: str = "MY",
          protected: Collection[str] = ()) -> Report:
    """One report's own fields (the top level, or one history item)."""
    report_id = fields.text(data, "report_id", f"{path}report_id", max_len=128)
    reported_at = fields.timestamp(data, "reported_at", f"{path}reported_at")
    source = fields.text(data, "source", f"{path}source", max_len=64)
    assert report_id is not None and source is not None
    if not 2000 <= reported_at.year <= 2100:
        raise Bad("invalid_timestamp", f"{path}reported_at", "must be between the years 2000 and 2100")
    status = _status(data, f"{path}status")
    links = _links(data, path, region, protected)
    if links and status is Status.REVOKED:
        raise Bad("invalid_value", f"{path}links", "a revocation names no links (it concerns one identifier)")
    origin, origin_key = _origin(data, path, region)
    if len(links) > MAX_LINKS and not origin:  # a derived report carries its origin's key too
        raise Bad("invalid_value", f"{path}links", f"has more than {MAX_LINKS} items")
    renewal = data.get("renewal", False)
    if not isinstance(renewal, bool):
        raise Bad("wrong_type", f"{path}renewal", f"must be true or false, got {type(renewal).__name__}")
    return Report(
        report_id=report_id, reported_at=reported_at, kind=kind, value=value, bank=bank,
        status=status, source=source.strip().upper(),
        case_ref=_optional(data, "case_ref", path, 128),
        reason=_optional(data, "reason", path, 512),
        ttl_days=_ttl(data, f"{path}ttl_days"),
        filed_by=_optional(data, "filed_by", path, 64),
        links=links, origin=origin, origin_key=origin_key, renewal=renewal,
    )


def _count(data: dict[str, Any], name: str, path: str, least: int = 0) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Bad("wrong_type", path, f"must be a whole number, got {type(value).__name__}")
    if value < least:
        raise Bad("invalid_value", path, f"must be at least {least}")
    return value


def _items(data: dict[str, Any], name: str, path: str, most: int) -> list[dict[str, Any]]:
    items = data.get(name, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise Bad("wrong_type", path, "must be a list of objects")
    if len(items) > most:
        raise Bad("invalid_value", path, f"has more than {most} items")
    return items


def _summary(data: dict[str, Any], kind: str, value: str, bank: str, region: str,
             protected: Collection[str]) -> Summary:
    """A consolidated record's folded reports (``blocklist.lifecycle``); written by Sekat, checked all the same."""
    through = fields.obj(data, "through", "summary.through")
    assert through is not None
    through_id = fields.text(through, "report_id", "summary.through.report_id", max_len=128)
    assert through_id is not None
    tallies = [SourceTally(fields.text(t, "source", f"summary.sources[{i}].source", max_len=64) or "",
                           _count(t, "count", f"summary.sources[{i}].count", 1),
                           iso(fields.timestamp(t, "first_seen", f"summary.sources[{i}].first_seen")),
                           iso(fields.timestamp(t, "last_seen", f"summary.sources[{i}].last_seen")))
               for i, t in enumerate(_items(data, "sources", "summary.sources", MAX_HISTORY))]
    standing = []
    for i, item in enumerate(_items(data, "standing", "summary.standing", MAX_HISTORY)):
        until = item.get("until")
        if until != "":
            until = iso(fields.timestamp(item, "until", f"summary.standing[{i}].until"))
        standing.append(Standing(fields.text(item, "source", f"summary.standing[{i}].source", max_len=64) or "",
                                 until))
    links = []
    for i, item in enumerate(_items(data, "links", "summary.links", MAX_HISTORY)):
        path = f"summary.links[{i}]."
        try:
            linked = parse_key(fields.text(item, "key", f"{path}key", max_len=100) or "", region).key
        except InvalidIdentifier as exc:
            raise Bad("invalid_key", f"{path}key", str(exc)) from None
        links.append(Link(linked, fields.text(item, "report_id", f"{path}report_id", max_len=128) or "",
                          _optional(item, "source", path, 64),
                          iso(fields.timestamp(item, "reported_at", f"{path}reported_at")),
                          _optional(item, "via", path, 100)))
    case_refs = data.get("case_refs", [])
    if not isinstance(case_refs, list) or not all(isinstance(c, str) and len(c) <= 128 for c in case_refs):
        raise Bad("wrong_type", "summary.case_refs", "must be a list of texts of at most 128 characters")
    decisive = fields.obj(data, "decisive", "summary.decisive")
    assert decisive is not None
    return Summary(
        through_at=iso(fields.timestamp(through, "reported_at", "summary.through.reported_at")),
        through_id=through_id, report_count=_count(data, "report_count", "summary.report_count", 1),
        first_seen=iso(fields.timestamp(data, "first_seen", "summary.first_seen")), sources=tuple(tallies),
        case_refs=tuple(case_refs), status=_status(data, "summary.status"),
        decisive=_item(decisive, kind, value, bank, "summary.decisive.", region, protected),
        standing=tuple(standing), renewals=_count(data, "renewals", "summary.renewals"), links=tuple(links))


def decode_report(raw: bytes | None, key: bytes | None = None, max_bytes: int = 1_048_576, region: str = "MY",
                  protected: Collection[str] = ()) -> Report | Rejection:
    """The fast path's answer when it takes the report, else the precise path's, which explains."""
    if raw and len(raw) <= max_bytes:
        found = _decode_fast(raw, key, region, protected)
        if found is not None:
            return found
    return fields.decode_object(raw, max_bytes, lambda data: _report(data, key, region, protected))


# -- the happy path: a report as filed --------------------------------------------------------------------
# Lengths as in the precise decoder (fields.text's max_len per field); blank strings are checked below.
_Text = Annotated[str, msgspec.Meta(max_length=MAX_SMS_VALUE)]


class _Filed(msgspec.Struct):
    report_id: fields.Id
    reported_at: Annotated[str, msgspec.Meta(max_length=64)]
    kind: Annotated[str, msgspec.Meta(max_length=16)]
    value: _Text
    status: Annotated[str, msgspec.Meta(max_length=16)]
    source: Annotated[str, msgspec.Meta(max_length=64)]
    bank: Annotated[str, msgspec.Meta(max_length=16)] | None = None
    case_ref: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    filed_by: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    ttl_days: int | None = 0
    renewal: bool = False
    # Present (and not null): a consolidated, linked, derived or unlink report, read by the precise decoder.
    history: msgspec.Raw = msgspec.Raw()
    summary: msgspec.Raw = msgspec.Raw()
    links: msgspec.Raw = msgspec.Raw()
    origin: msgspec.Raw = msgspec.Raw()
    unlinks: msgspec.Raw = msgspec.Raw()


_FILED = msgspec.json.Decoder(_Filed)
_ABSENT = (b"", b"null")
_STATUSES = {s.value: s for s in Status}


def _optional_fast(value: str | None) -> str | None:
    """``_optional``'s answer, or None where it refuses (a blank text)."""
    if not value:
        return ""
    return None if value.isspace() else value.strip()


def _decode_fast(raw: bytes, key: bytes | None, region: str, protected: Collection[str]) -> Report | None:
    """The Report of a valid report as filed, or None: then the precise decoder decides (and explains)."""
    try:
        w = _FILED.decode(raw)
    except msgspec.DecodeError:  # msgspec.ValidationError is one
        return None
    if any(bytes(raw) not in _ABSENT for raw in (w.history, w.summary, w.links, w.origin, w.unlinks)):
        return None
    kind, status = w.kind, _STATUSES.get(w.status)
    if (kind not in KINDS or status is None or (len(w.value) > 64 and kind not in SMS_KINDS)
            or fields.blank(w.value) or fields.blank(w.report_id) or fields.blank(w.source)
            or (kind == "account" and w.bank is not None and fields.blank(w.bank))
            or (w.ttl_days is not None and not 0 <= w.ttl_days <= MAX_TTL_DAYS)):
        return None
    case_ref, reason, filed_by = _optional_fast(w.case_ref), _optional_fast(w.reason), _optional_fast(w.filed_by)
    if case_ref is None or reason is None or filed_by is None:
        return None
    try:
        reported_at = fields.iso_time(w.reported_at)
        bank, value = identifier(kind, w.value, w.bank if kind == "account" else None, region, protected)
    except (ValueError, InvalidReport):
        return None
    if not 2000 <= reported_at.year <= 2100:
        return None
    report = Report(report_id=w.report_id, reported_at=reported_at, kind=kind, value=value, bank=bank,
                    status=status, source=w.source.strip().upper(), case_ref=case_ref, reason=reason,
                    ttl_days=w.ttl_days or 0, filed_by=filed_by, renewal=w.renewal)
    if key is not None and key != report.key.encode():
        return None
    return report


def _report(data: dict[str, Any], key: bytes | None, region: str, protected: Collection[str]) -> Report:
    kind, bank, value = _identifier(data, "", region, protected)
    report = _item(data, kind, value, bank, "", region, protected)
    history = data.get("history")
    if history is not None:
        if not isinstance(history, list):
            raise Bad("wrong_type", "history", f"must be a list, got {type(history).__name__}")
        if len(history) > MAX_HISTORY:
            raise Bad("invalid_value", "history", f"has more than {MAX_HISTORY} items")
        items = []
        for i, item in enumerate(history):
            if not isinstance(item, dict):
                raise Bad("wrong_type", f"history[{i}]", "must be an object")
            items.append(_item(item, kind, value, bank, f"history[{i}].", region, protected))
        report = replace(report, history=tuple(items))
    folded = fields.obj(data, "summary", required=False)
    if folded is not None:
        report = replace(report, summary=_summary(folded, kind, value, bank, region, protected))
    unlinks = _links(data, "", region, (), "unlinks", MAX_UNLINKS)
    if unlinks:
        if report.links or report.history or report.summary is not None:
            raise Bad("invalid_value", "unlinks", "an unlink names no links and carries no history")
        report = replace(report, unlinks=unlinks)
    if key is not None and key != report.key.encode():
        raise Bad("invalid_key", "key", f"record key must be the report's identifier key ({report.kind}:...)")
    return report
