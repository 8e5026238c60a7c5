"""The blocklist lifecycle: how reports on one identifier merge into its entry.

Pure functions, no I/O. An entry is a function of the *set* of reports filed
on its key (its ``history``), never of the order they arrived in:

    merge(entry, report) = entry_from_history(history(entry) ∪ history(report) ∪ {report})

so re-delivered reports (same ``report_id``) change nothing, a report with an
older ``reported_at`` that arrives late cannot override newer state, and
replaying the topic (``sekat blocklist rebuild``) gives the same index.

Status is the fold of the reports in ``(reported_at, report_id)`` order:

    reported   lists an unlisted key; never downgrades ``confirmed`` and never
               re-lists a ``revoked`` key (an unverified claim does not undo an
               upheld appeal)
    confirmed  lists (or re-lists after a revocation) as confirmed
    revoked    appeal upheld: never acted on again unless a newer ``confirmed``
               filed on this identifier itself (one derived for a linked
               identifier does not undo an upheld appeal)

Links: ``links`` of the entry are those named by its reports (the first report
naming a key is where the link came from); ``renewals`` counts renewal reports
since the last revocation. Both are derived from the history, so compaction and
rebuild keep them.

Expiry: once listed, the entry expires when the last of the reports since the
last revocation expires (``reported_at + ttl_days``); one report without a ttl
(``ttl_days`` 0) keeps it listed without expiry. A revoked entry has none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from sekat.records import Entry, Link, Report, Status, iso

LEGACY_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _order(report: Report) -> tuple[str, str]:
    return (iso(report.reported_at), report.report_id)


def union(*histories: Iterable[Report]) -> tuple[Report, ...]:
    """Every distinct report (by ``report_id``; the first copy wins), in reported order."""
    seen: dict[str, Report] = {}
    for history in histories:
        for report in history:
            seen.setdefault(report.report_id, report.without_history())
    return tuple(sorted(seen.values(), key=_order))


def entry_from_history(key: str, history: tuple[Report, ...]) -> Entry:
    """The entry that ``history`` (sorted, distinct; see ``union``) gives for ``key``."""
    if not history:
        raise ValueError("an entry needs at least one report")
    status: Status | None = None
    decisive = history[0]  # the report that set the current status
    since_revoke: list[Report] = []
    for report in history:
        if report.status is Status.REVOKED:
            status, decisive, since_revoke = Status.REVOKED, report, []
        elif report.status is Status.CONFIRMED:
            if status is Status.REVOKED and report.origin:
                continue  # a linked member's confirmation does not overturn this identifier's appeal
            status, decisive = Status.CONFIRMED, report
            since_revoke.append(report)
        else:
            if status is None:
                status, decisive = Status.REPORTED, report
            since_revoke.append(report)
    assert status is not None
    expires_at = ""
    if status is not Status.REVOKED:
        if all(r.ttl_days > 0 for r in since_revoke):
            expires_at = iso(max(r.reported_at + timedelta(days=r.ttl_days) for r in since_revoke))
    links: dict[str, Link] = {}
    for report in history:
        for linked in report.links:
            if linked != key and linked not in links:
                links[linked] = Link(linked, report.report_id, report.source, iso(report.reported_at),
                                     report.origin_key)
    renewals = sum(1 for r in since_revoke if r.renewal)
    sources = tuple(dict.fromkeys(r.source for r in history if r.source))
    case_refs = tuple(dict.fromkeys(r.case_ref for r in history if r.case_ref))
    return Entry(
        key=key, status=status, source=decisive.source, reason=decisive.reason, case_ref=decisive.case_ref,
        report_id=decisive.report_id, reported_at=iso(decisive.reported_at), expires_at=expires_at,
        sources=sources, report_count=len(history), case_refs=case_refs,
        first_seen=iso(history[0].reported_at), last_seen=iso(history[-1].reported_at), history=history,
        links=tuple(links.values()), renewals=renewals,
    )


def known_reports(entry: Entry) -> tuple[Report, ...]:
    """The reports behind ``entry``; an entry without a history (a legacy entry) stands for one report.

    That synthesised report (``filed_by`` ``legacy``) then travels in the
    consolidated record, so the first new report on a legacy entry puts it on
    the topic too.
    """
    if entry.history:
        return entry.history
    kind, _, rest = entry.key.partition(":")
    bank, value = rest.split(":", 1) if kind == "account" else ("", rest)
    try:
        at = datetime.fromisoformat(entry.reported_at) if entry.reported_at else LEGACY_TIME
    except ValueError:
        at = LEGACY_TIME
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    ttl = 0
    if entry.expires_at:
        try:
            ttl = max(1, math.ceil((datetime.fromisoformat(entry.expires_at) - at) / timedelta(days=1)))
        except (ValueError, TypeError):
            ttl = 0
    return (Report(entry.report_id or f"legacy-{entry.key}", at, kind, value, entry.status, entry.source, bank,
                   entry.case_ref, entry.reason, ttl, "legacy"),)


def merge(entry: Entry | None, report: Report) -> Entry:
    """The entry after ``report`` (and any history it carries) is applied to ``entry``."""
    history = union(known_reports(entry) if entry else (), report.history, (report,))
    return entry_from_history(report.key, history)


def covers(report: Report, entry: Entry) -> bool:
    """Whether ``report`` alone (with its history) rebuilds ``entry``: if not, it needs consolidating."""
    ids = {report.report_id, *(r.report_id for r in report.history)}
    return all(r.report_id in ids for r in known_reports(entry))


def consolidated(report: Report, entry: Entry) -> Report:
    """``report`` carrying every report of ``entry``: the record that must survive compaction."""
    return replace(report, history=entry.history)
