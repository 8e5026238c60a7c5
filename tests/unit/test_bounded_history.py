"""Bounded history: an entry keeps its recent reports in full and folds the older ones, and says the same.

The reference is the unbounded fold (``keep`` larger than any history); the
bounded entry must agree with it on everything the index, the worker, the
public check and the link propagation read, whatever the batches,
re-deliveries and consolidated records in between, and its consolidated
record must stay within a fixed size however many reports are filed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sekat.api.entries import publicly_listed
from sekat.blocklist.lifecycle import LINKS_KEPT, RECENT_KEPT, consolidated, covers, known, merge
from sekat.blocklist.links import propagate
from sekat.decode.reports import decode_report
from sekat.records import Entry, Report, Status

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)
VALUE = "+60123456789"
KEY = f"phone:{VALUE}"
UNBOUNDED = 10**9
SOURCES = ("PDRM", "MCMC", "BNM", "SEKAT-RULE")
LINKS = ("phone:+60123456780", "account:MBBEMYKL:5140123456", "phone:+60198765432")


def rep(i: int, status: Status, source: str, ttl: int, renewal: bool, origin: bool, linked: int) -> Report:
    return Report(f"r{i:05d}", T0 + timedelta(minutes=i), "phone", VALUE, status, source,
                  case_ref=f"case-{i % 40}", reason=f"reason {i}", ttl_days=ttl, filed_by="test",
                  links=LINKS[:linked] if status is not Status.REVOKED else (), renewal=renewal,
                  origin=f"o{i}" if origin else "", origin_key="phone:+60111111111" if origin else "")


reports = st.builds(
    lambda i, *rest: (i, *rest),
    st.integers(0, 10_000), st.sampled_from([Status.REPORTED] * 6 + [Status.CONFIRMED] * 3 + [Status.REVOKED]),
    st.sampled_from(SOURCES), st.sampled_from([0, 1, 7, 30, 3650]), st.booleans(), st.booleans(),
    st.integers(0, 3),
)


def the_same(bounded: Entry, full: Entry) -> None:
    assert bounded.to_json()["status"] == full.to_json()["status"]
    for name in ("key", "status", "source", "reason", "case_ref", "report_id", "reported_at", "expires_at",
                 "sources", "report_count", "first_seen", "last_seen", "links", "renewals"):
        assert getattr(bounded, name) == getattr(full, name), name
    assert set(bounded.case_refs) <= set(full.case_refs)
    for at in (T0, T0 + timedelta(days=2), T0 + timedelta(days=40), T0 + timedelta(days=4000)):
        assert bounded.active_at(at) == full.active_at(at)
        assert publicly_listed(bounded, at) == publicly_listed(full, at)


@settings(max_examples=150, deadline=None)
@given(st.lists(reports, min_size=1, max_size=60, unique_by=lambda r: r[0]),
       st.integers(1, 6), st.data())
def test_a_bounded_entry_says_what_the_whole_history_says(drawn: list[tuple], keep: int, data: st.DataObject) -> None:
    filed = sorted((rep(*r) for r in drawn), key=lambda r: r.reported_at)
    bounded: Entry | None = None
    full: Entry | None = None
    for report in filed:
        # each filing, then sometimes a re-delivery of an earlier one, or the consolidated record read back
        bounded, full = merge(bounded, report, keep), merge(full, report, UNBOUNDED)
        if data.draw(st.booleans()):
            again = data.draw(st.sampled_from(filed[:filed.index(report) + 1]))
            bounded, full = merge(bounded, again, keep), merge(full, again, UNBOUNDED)
        if data.draw(st.booleans()):
            record = consolidated(report, bounded)
            assert covers(record, bounded)
            decoded = decode_report(orjson.dumps(record.to_json()), KEY.encode())
            assert isinstance(decoded, Report), decoded
            assert merge(None, decoded, keep) == bounded, "the consolidated record alone rebuilds the entry"
            bounded = merge(bounded, decoded, keep)
        assert bounded is not None and full is not None
        assert len(bounded.history) <= keep
        the_same(bounded, full)


@settings(max_examples=60, deadline=None)
@given(st.lists(reports, min_size=2, max_size=40, unique_by=lambda r: r[0]), st.integers(1, 4))
def test_links_propagate_as_from_the_whole_history(drawn: list[tuple], keep: int) -> None:
    """New neighbours get a report with the entry's status; nothing already sent is sent again as new."""
    filed = sorted((rep(*r) for r in drawn), key=lambda r: r.reported_at)
    bounded: Entry | None = None
    for report in filed:
        before, bounded = bounded, merge(bounded, report, keep)
        derived = propagate(before, bounded)
        assert all(d.report_id.startswith("l-") for d in derived)
        new_links = {link.key for link in bounded.links} - ({link.key for link in before.links} if before else set())
        if bounded.status is not Status.REVOKED and new_links:
            for target in new_links:
                got = [d for d in derived if d.key == target]
                assert got, f"a new neighbour {target} learns of the listing"
                assert any(d.status is bounded.status for d in got) or bounded.status is Status.REPORTED


def test_filing_thousands_of_reports_on_one_identifier_keeps_its_record_bounded() -> None:
    """1,500 filings with the API's longest reasons: the consolidated record stays well under the 1 MB limit
    and stops growing once the history is full."""
    entry: Entry | None = None
    sizes = []
    for i in range(1_500):
        report = Report(f"hotline-{i:05d}", T0 + timedelta(seconds=i), "phone", VALUE, Status.REPORTED,
                        ("NSRC", "PDRM", "MCMC")[i % 3], case_ref=f"997/{i}", reason="r" * 512, ttl_days=365,
                        filed_by="key-hotline")
        entry = merge(entry, report)
        sizes.append(len(orjson.dumps(consolidated(report, entry).to_json())))
    assert entry is not None
    assert entry.report_count == 1_500 and len(entry.history) == RECENT_KEPT
    assert entry.summary is not None and entry.summary.report_count == 1_500 - RECENT_KEPT
    assert [t.count for t in entry.summary.sources] == [467, 467, 466]
    assert max(sizes) < 200_000
    assert max(sizes[RECENT_KEPT + 50:]) - min(sizes[RECENT_KEPT + 50:]) < 2_000, "the record stops growing"


def test_filings_naming_thousands_of_links_keep_the_record_bounded_and_the_newest_links() -> None:
    """600 filings on one account, each naming 20 new identifiers of the same scam (a mule hub): the entry keeps
    the LINKS_KEPT most recently named links, and its consolidated record stays under Kafka's 1 MB and reads
    back as what was written."""
    entry: Entry | None = None
    sizes = []
    named: list[str] = []
    for i in range(600):
        links = tuple(f"account:MBBEMYKL:51{i:05d}{j:03d}" for j in range(20))
        named.extend(links)
        report = Report(f"hub-{i:05d}", T0 + timedelta(seconds=i), "account", "8001234567", Status.REPORTED,
                        "PDRM", bank="CIBBMYKL", case_ref=f"KL/{i}", reason="r" * 512, ttl_days=365, links=links)
        entry = merge(entry, report)
        record = consolidated(report, entry)
        sizes.append(len(orjson.dumps(record.to_json())))
    assert entry is not None
    assert [link.key for link in entry.links] == named[-LINKS_KEPT:]
    assert entry.summary is not None and len(entry.summary.links) <= LINKS_KEPT
    assert max(sizes) < 900_000
    raw = orjson.dumps(record.to_json())
    assert decode_report(raw, record.key.encode()) == record


def test_a_report_ordered_before_the_summary_is_taken_as_covered() -> None:
    """A re-delivery of a folded report changes nothing (the documented rule for reports that old)."""
    entry: Entry | None = None
    filed = [Report(f"r{i}", T0 + timedelta(minutes=i), "phone", VALUE, Status.REPORTED, "PDRM") for i in range(10)]
    for report in filed:
        entry = merge(entry, report, 3)
    assert entry is not None and entry.summary is not None
    assert merge(entry, filed[0], 3) == entry
    assert merge(entry, replace(filed[1], status=Status.CONFIRMED), 3) == entry


@settings(max_examples=80, deadline=None)
@given(st.lists(reports, min_size=1, max_size=30, unique_by=lambda r: r[0]), st.integers(1, 5), st.data())
def test_known_says_exactly_when_a_merge_would_change_nothing(drawn: list[tuple], keep: int,
                                                               data: st.DataObject) -> None:
    filed = sorted((rep(*r) for r in drawn), key=lambda r: r.reported_at)
    entry: Entry | None = None
    records: list[Report] = []
    for report in filed:
        entry = merge(entry, report, keep)
        records += [report, consolidated(report, entry)]
        assert entry is not None
        seen = data.draw(st.sampled_from(records))
        if known(seen, entry):
            assert merge(entry, seen, keep) == entry
    assert entry is not None and all(known(r, entry) for r in records[-2:])
