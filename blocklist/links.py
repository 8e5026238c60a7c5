"""Linked identifiers: one scam's mule accounts, phone numbers and DuitNow proxy act as one list.

Pure functions, no I/O. A report may name ``links`` (other identifiers of the
same scam). The reports agent turns what a report says about its own key into
*derived* reports on every linked key, published to ``sekat.reports`` under
that key like any other report, so:

- the owner of each key (the agent of its partition) stays its only writer,
  and the index, the change stream and every worker's replica see a linked
  identifier's new status through the normal writes: nothing new on the hot path;
- the last record of each key still rebuilds its entry (derived reports are
  part of its history and consolidated like the rest), and
  ``sekat blocklist rebuild`` replays them from the topic.

A derived report copies the status, source, case, reason and ttl of the report
it follows; its id is ``l-`` + uuid5(origin report id, target key), so a
report reaches each member once however many paths lead there, and a
re-delivery changes nothing. Its ``links`` are the origin's group (the origin
key and every key the origin named), so each member learns the others and
where the link came from (``origin``, ``origin_key``).

When an entry changes (``propagate``):

- every report new to it (reported/confirmed/renewal, never a revocation) goes
  to each neighbour that was not already sent it by the origin's own key (the
  members of the origin's group get it straight from there);
- a neighbour new to it gets the entry's active reports (since its last
  revocation), so a number linked to an already confirmed account is blocked too.

A member whose entry is revoked (appeal upheld) neither relays nor is re-listed
by a linked member's confirmation (``blocklist.lifecycle``): an upheld appeal
is about that identifier, and the rest of the group stays listed.

Links are symmetric: a member names each key of its group, and each of them
names it (up to ``LINKS_KEPT``, the most recently named). So when an identifier
is purged or erased, its own entry's ``links`` name the entries that name it:
``unlinks`` writes an unlink on each of them (``Report.unlinks``;
``blocklist.lifecycle.unlinked`` applies it), found without reading the index.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from sekat.blocklist.lifecycle import known_reports, uncovered
from sekat.records import Entry, Report, Status

LINK_NAMESPACE = uuid.UUID("6f1d2c8e-5b7a-5e1c-9a43-5e4b41540010")
MAX_LINKS = 20  # named by one report (filing); a derived report carries its origin's group: MAX_LINKS + 1
FILED_BY = "link"
UNLINK_SOURCE = "SEKAT"  # the source of an unlink: Sekat itself, for the purge or an erasure
UNLINKS_KEPT = 100  # identifiers one unlink names at most (decode/reports.py MAX_UNLINKS)
REASON_MAX = 512


def derived_id(origin: str, key: str) -> str:
    return "l-" + uuid.uuid5(LINK_NAMESPACE, f"{origin}|{key}").hex


def origin_of(report: Report) -> tuple[str, str]:
    """(report id, key) of the report an agency filed: the report itself unless it was derived."""
    return (report.origin, report.origin_key) if report.origin else (report.report_id, report.key)


def group_of(report: Report) -> tuple[str, ...]:
    """The keys the origin report binds together: its own key and every key it names."""
    if report.origin:
        return report.links
    return tuple(sorted({report.key, *report.links}))


def derive(report: Report, target: str) -> Report:
    """``report`` as it applies to the linked identifier ``target``."""
    origin, origin_key = origin_of(report)
    kind, _, rest = target.partition(":")
    bank, value = rest.split(":", 1) if kind == "account" else ("", rest)
    reason = report.reason if report.origin else ("linked: " + report.reason if report.reason else "linked")
    return Report(report_id=derived_id(origin, target), reported_at=report.reported_at, kind=kind, value=value,
                  status=report.status, source=report.source, bank=bank, case_ref=report.case_ref,
                  reason=reason[:REASON_MAX], ttl_days=report.ttl_days, filed_by=FILED_BY, links=group_of(report),
                  origin=origin, origin_key=origin_key, renewal=report.renewal)


def _active(entry: Entry) -> list[Report]:
    """The reports since the entry's last revocation (the ones that keep it listed); of the folded ones,
    the one that set the status they leave."""
    folded = entry.summary
    since: list[Report] = [folded.decisive] if folded is not None and folded.status is not Status.REVOKED else []
    for report in entry.history:
        since = [] if report.status is Status.REVOKED else since + [report]
    return since


def propagate(before: Entry | None, after: Entry) -> list[Report]:
    """Derived reports to publish because ``after`` replaced ``before`` (same key)."""
    if after.status is Status.REVOKED or not after.links:
        return []
    known = {r.report_id for r in known_reports(before)} if before is not None else set()
    neighbours = [link.key for link in after.links]
    new_neighbours = set(neighbours) - ({link.key for link in before.links} if before is not None else set())
    out: dict[str, Report] = {}
    active = _active(after)
    fresh = [r for r in uncovered(before.summary if before is not None else None, tuple(active))
             if r.report_id not in known]
    for report in fresh:
        _, origin_key = origin_of(report)
        group = set(group_of(report)) if report.origin else set()  # the origin's own key sends to its group
        for target in neighbours:
            if target != origin_key and target not in group:
                derived = derive(report, target)
                out.setdefault(derived.report_id, derived)
    for report in active:
        _, origin_key = origin_of(report)
        for target in new_neighbours:
            if target != origin_key:
                derived = derive(report, target)
                out.setdefault(derived.report_id, derived)
    return list(out.values())


def unlinks(gone: Mapping[str, Entry], at: datetime, filed_by: str, reason: str) -> list[Report]:
    """The unlinks that take the entries ``gone`` (key -> entry, purged or erased together) out of the entries
    their ``links`` name (none for a member of ``gone`` itself): one per linked entry, naming the keys of
    ``gone`` it is linked to."""
    named: dict[str, list[str]] = {}
    for key, entry in gone.items():
        for link in entry.links:
            if link.key not in gone:
                named.setdefault(link.key, []).append(key)
    out = []
    for target, keys in sorted(named.items()):
        kind, _, rest = target.partition(":")
        bank, value = rest.split(":", 1) if kind == "account" else ("", rest)
        for i in range(0, len(keys), UNLINKS_KEPT):
            chunk = tuple(sorted(keys)[i:i + UNLINKS_KEPT])
            out.append(Report(report_id="u-" + uuid.uuid5(LINK_NAMESPACE, "|".join((target, *chunk))).hex,
                              reported_at=at, kind=kind, value=value, status=Status.REPORTED, source=UNLINK_SOURCE,
                              bank=bank, reason=reason, filed_by=filed_by, unlinks=chunk))
    return out
