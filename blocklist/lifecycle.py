"""The blocklist lifecycle: how reports on one identifier merge into its entry.

Pure functions, no I/O. An entry is a function of the *set* of reports filed
on its key, never of the order they arrived in:

    merge(entry, report) = entry_from(reports(entry) ∪ reports(report) ∪ {report})

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
since the last revocation. Both are derived from the reports, so compaction and
rebuild keep them.

Unlinks: an identifier purged or erased leaves its neighbours' entries through
an unlink on each (``Report.unlinks``, written by the purge and the erasure):
``unlinked`` takes every link to it out of the entry, its recent reports (their
``links`` groups, an ``origin_key`` naming it) and its summary. An unlink is not
one of the entry's reports: nothing else of the entry changes, and the
consolidated record published after it (``BlocklistStore.apply``) no longer
names the identifier, so compaction leaves none of the entry's records naming it.

Expiry: once listed, the entry expires when the last of the reports since the
last revocation expires (``reported_at + ttl_days``); one report without a ttl
(``ttl_days`` 0) keeps it listed without expiry. A revoked entry has none.

Bounded history: an entry keeps its ``RECENT_KEPT`` most recent reports in
full (``history``); older ones are folded, in order, into its ``summary``
(``sekat.records.Summary``): the fold's state after them (status and the report
that set it, per source when its standing reports expire, renewals, links) and
counts per source with first and last seen. The summary covers every report
ordered at or before its ``through``; a report ordered there that is not in the
history is taken as covered (a re-delivery). Sekat stamps ``reported_at`` when
a report is filed, so only a report filed ``RECENT_KEPT`` reports late by
clock could be one it has not seen; such a report is kept on the topic but does
not change the entry. An entry, and the consolidated record that carries it
through compaction, therefore has a bounded size however many reports are
filed on its identifier, and filing N reports costs O(N).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from sekat.records import Entry, Link, Report, SourceTally, Standing, Status, Summary, iso

LEGACY_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
RECENT_KEPT = 100  # reports an entry keeps in full; ~80 KB at the API's longest reasons
CASE_REFS_KEPT = 32  # case references a summary keeps (the first ones)
# Links an entry and its summary keep: the most recently named (~200 bytes each in a record). A hub linked to
# more identifiers than this forgets the oldest links, so its consolidated record stays well under Kafka's 1 MB.
LINKS_KEPT = 1000


def _order(report: Report) -> tuple[str, str]:
    return (iso(report.reported_at), report.report_id)


def union(*histories: Iterable[Report]) -> tuple[Report, ...]:
    """Every distinct report (by ``report_id``; the first copy wins), in reported order."""
    seen: dict[str, Report] = {}
    for history in histories:
        for report in history:
            seen.setdefault(report.report_id, report.without_history())
    return tuple(sorted(seen.values(), key=_order))


class _Fold:
    """The status fold (module docstring) over reports in order, from a summary's state or from nothing."""

    def __init__(self, key: str, summary: Summary | None) -> None:
        self.key = key
        self.status: Status | None = summary.status if summary else None
        self.decisive: Report | None = summary.decisive if summary else None
        self.standing = {s.source: s.until for s in summary.standing} if summary else {}
        self.renewals = summary.renewals if summary else 0
        self.links = {link.key: link for link in summary.links} if summary else {}
        self.tallies = {t.source: [t.count, t.first_seen, t.last_seen] for t in summary.sources} if summary else {}
        self.case_refs = dict.fromkeys(summary.case_refs) if summary else {}
        self.count = summary.report_count if summary else 0
        self.first_seen = summary.first_seen if summary else ""
        self.last = summary.through if summary else ("", "")

    def step(self, report: Report) -> None:
        at = iso(report.reported_at)
        if report.status is Status.REVOKED:
            self.status, self.decisive, self.standing, self.renewals = Status.REVOKED, report, {}, 0
        elif report.status is Status.CONFIRMED and not (self.status is Status.REVOKED and report.origin):
            # (a linked member's confirmation does not overturn this identifier's appeal)
            self.status, self.decisive = Status.CONFIRMED, report
            self._stands(report)
        elif report.status is not Status.CONFIRMED:
            if self.status is None:
                self.status, self.decisive = Status.REPORTED, report
            self._stands(report)
        for linked in report.links:
            if linked != self.key and linked not in self.links:
                self.links[linked] = Link(linked, report.report_id, report.source, at, report.origin_key)
        if report.source:
            tally = self.tallies.setdefault(report.source, [0, at, at])
            tally[0] += 1
            tally[2] = at
        if report.case_ref:
            self.case_refs.setdefault(report.case_ref)
        self.count += 1
        self.first_seen = self.first_seen or at
        self.last = (at, report.report_id)

    def _stands(self, report: Report) -> None:
        """``report`` keeps the entry listed (since the last revocation) until it expires."""
        until = iso(report.reported_at + timedelta(days=report.ttl_days)) if report.ttl_days > 0 else ""
        held = self.standing.get(report.source)
        self.standing[report.source] = "" if held == "" or not until else max(held or "", until)
        self.renewals += report.renewal

    def kept_links(self) -> tuple[Link, ...]:
        """The ``LINKS_KEPT`` most recently named links."""
        return tuple(self.links.values())[-LINKS_KEPT:]

    def folded(self) -> Summary:
        assert self.status is not None and self.decisive is not None
        return Summary(
            through_at=self.last[0], through_id=self.last[1], report_count=self.count, first_seen=self.first_seen,
            sources=tuple(SourceTally(s, *t) for s, t in self.tallies.items()),
            case_refs=tuple(self.case_refs)[:CASE_REFS_KEPT], status=self.status,
            decisive=self.decisive.without_history(),
            standing=tuple(Standing(s, u) for s, u in self.standing.items()),
            renewals=self.renewals, links=self.kept_links())

    def entry(self, history: tuple[Report, ...], summary: Summary | None) -> Entry:
        status, decisive = self.status, self.decisive
        assert status is not None and decisive is not None
        expires_at = ""
        if status is not Status.REVOKED and "" not in self.standing.values():
            expires_at = max(self.standing.values())
        return Entry(
            key=self.key, status=status, source=decisive.source, reason=decisive.reason,
            case_ref=decisive.case_ref, report_id=decisive.report_id, reported_at=iso(decisive.reported_at),
            expires_at=expires_at, sources=tuple(self.tallies), report_count=self.count,
            case_refs=tuple(self.case_refs), first_seen=self.first_seen, last_seen=self.last[0], history=history,
            links=self.kept_links(), renewals=self.renewals, summary=summary,
        )


def entry_from_history(key: str, history: tuple[Report, ...], summary: Summary | None = None) -> Entry:
    """The entry that ``summary`` and then ``history`` (sorted, distinct, after the summary; see ``union``)
    give for ``key``."""
    if not history and summary is None:
        raise ValueError("an entry needs at least one report")
    fold = _Fold(key, summary)
    for report in history:
        fold.step(report)
    return fold.entry(history, summary)


def bounded(key: str, reports: tuple[Report, ...], summary: Summary | None,
            keep: int = RECENT_KEPT) -> Entry:
    """The entry of ``summary`` and ``reports`` (sorted, distinct, after it), keeping at most ``keep`` in full."""
    if len(reports) > keep:
        fold = _Fold(key, summary)
        for report in reports[:len(reports) - keep]:
            fold.step(report)
        summary, reports = fold.folded(), reports[len(reports) - keep:]
    return entry_from_history(key, reports, summary)


def latest(*summaries: Summary | None) -> Summary | None:
    """The summary that covers the most (of one identifier's, each covers what an earlier one did)."""
    return max((s for s in summaries if s is not None), key=lambda s: s.through, default=None)


def uncovered(summary: Summary | None, reports: tuple[Report, ...]) -> tuple[Report, ...]:
    """``reports`` that ``summary`` does not cover."""
    if summary is None:
        return reports
    through = summary.through
    return tuple(r for r in reports if _order(r) > through)


def known_reports(entry: Entry) -> tuple[Report, ...]:
    """The reports ``entry`` keeps in full; an entry without any (a legacy entry) stands for one report.

    That synthesised report (``filed_by`` ``legacy``) then travels in the
    consolidated record, so the first new report on a legacy entry puts it on
    the topic too.
    """
    if entry.history or entry.summary is not None:
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


def standing(entry: Entry) -> dict[str, str]:
    """Per source, when the last of its reports keeping ``entry`` listed (since the last revocation) expires
    ("" = never)."""
    fold = _Fold(entry.key, entry.summary)
    for report in known_reports(entry):
        fold.step(report)
    return fold.standing


def _scrubbed(report: Report, gone: frozenset[str]) -> Report:
    """``report`` without links to ``gone`` (an ``origin_key`` among them is blanked; ``origin`` stays)."""
    links = tuple(k for k in report.links if k not in gone)
    origin_key = "" if report.origin_key in gone else report.origin_key
    if links == report.links and origin_key == report.origin_key:
        return report
    return replace(report, links=links, origin_key=origin_key)


def unlinked(entry: Entry, gone: Iterable[str]) -> Entry:
    """``entry`` with no link to the keys ``gone`` left in it: not in its links, its reports' link groups and
    origins, nor its summary's links and decisive report. ``entry`` itself when it names none of them."""
    gone = frozenset(gone) - {entry.key}
    summary = entry.summary
    if not entry.history and summary is None:  # a legacy entry: no reports, so no links
        return entry
    if summary is not None:
        summary = replace(summary, decisive=_scrubbed(summary.decisive, gone), links=tuple(
            link if link.via not in gone else replace(link, via="")
            for link in summary.links if link.key not in gone))
    history = tuple(_scrubbed(r, gone) for r in entry.history)
    if summary == entry.summary and all(a is b for a, b in zip(history, entry.history)):
        return entry
    return entry_from_history(entry.key, history, summary)


def merge(entry: Entry | None, report: Report, keep: int = RECENT_KEPT) -> Entry:
    """The entry after ``report`` (and any history and summary it carries) is applied to ``entry``."""
    if (entry is None and keep > 0 and not report.history and report.summary is None and not report.links
            and not report.unlinks):
        return first(report)
    summary = latest(entry.summary if entry else None, report.summary)
    reports = union(known_reports(entry) if entry else (), report.history, (report,))
    return bounded(report.key, uncovered(summary, reports), summary, keep)


def first(report: Report) -> Entry:
    """The entry of a key that has none from one report carrying no history, summary, links or unlinks: what the fold
    (``bounded``) gives for that one report, built directly (a bulk import is mostly such reports)."""
    at = iso(report.reported_at)
    status, expires_at, renewals = report.status, "", 0
    if status is not Status.REVOKED:  # the report stands alone: the entry expires when it does
        if report.ttl_days > 0:
            expires_at = iso(report.reported_at + timedelta(days=report.ttl_days))
        renewals = int(report.renewal)
    return Entry(
        key=report.key, status=status, source=report.source, reason=report.reason, case_ref=report.case_ref,
        report_id=report.report_id, reported_at=at, expires_at=expires_at,
        sources=(report.source,) if report.source else (), report_count=1,
        case_refs=(report.case_ref,) if report.case_ref else (), first_seen=at, last_seen=at, history=(report,),
        renewals=renewals,
    )


def covers(report: Report, entry: Entry) -> bool:
    """Whether ``report`` alone (with its history and summary) rebuilds ``entry``: if not, it needs
    consolidating."""
    if entry.summary is not None and (report.summary is None or report.summary.through < entry.summary.through):
        return False
    ids = {report.report_id, *(r.report_id for r in report.history)}
    return not uncovered(report.summary, tuple(r for r in known_reports(entry) if r.report_id not in ids))


def known(report: Report, entry: Entry) -> bool:
    """Whether ``entry`` already holds every report ``report`` carries, so merging it changes nothing (a
    consolidated record read back, a re-delivery): cheaper to tell than to merge."""
    if report.summary is not None and (entry.summary is None or report.summary.through > entry.summary.through):
        return False
    ids = {r.report_id for r in known_reports(entry)}
    return not [r for r in uncovered(entry.summary, (report, *report.history)) if r.report_id not in ids]


def consolidated(report: Report, entry: Entry) -> Report:
    """``report`` carrying every report of ``entry`` (in full or folded): the record that must survive
    compaction. The entry's own copy of ``report`` when it keeps one: a re-delivered report that named an
    identifier unlinked since is written as the entry holds it, without it."""
    own = next((r for r in reversed(entry.history) if r.report_id == report.report_id), report)
    return replace(own, history=entry.history, summary=entry.summary)
