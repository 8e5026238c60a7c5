"""The pure merge of reports into an entry: lifecycle, merge, expiry, order independence."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import orjson
from hypothesis import given
from hypothesis import strategies as st

from sekat.blocklist.lifecycle import bounded, consolidated, covers, entry_from_history, first, merge, union
from sekat.records import Entry, Report, Status

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=timezone.utc)
KEY = "phone:+60123456789"


def rep(rid: str, minutes: int, status: str = "reported", source: str = "PDRM", ttl: int = 0,
        case_ref: str = "", reason: str = "") -> Report:
    return Report(rid, T0 + timedelta(minutes=minutes), "phone", "+60123456789", Status(status), source,
                  case_ref=case_ref, reason=reason, ttl_days=ttl)


def fold(*reports: Report) -> Entry:
    entry = None
    for r in reports:
        entry = merge(entry, r)
    assert entry is not None
    return entry


def test_reports_from_several_agencies_merge() -> None:
    e = fold(rep("a", 0, source="PDRM", case_ref="KL/1"), rep("b", 5, source="MBBEMYKL", case_ref="BANK/9"),
             rep("c", 9, source="PDRM", case_ref="KL/1"))
    assert e.status is Status.REPORTED
    assert e.report_count == 3
    assert e.sources == ("PDRM", "MBBEMYKL")
    assert e.case_refs == ("KL/1", "BANK/9")
    assert e.first_seen == "2026-11-01T10:00:00.000Z" and e.last_seen == "2026-11-01T10:09:00.000Z"


def test_confirm_then_revoke_then_reported_stays_revoked_until_a_newer_confirm() -> None:
    e = fold(rep("a", 0), rep("b", 1, "confirmed", "NSRC"))
    assert e.status is Status.CONFIRMED and e.source == "NSRC"
    e = merge(e, rep("c", 2, "revoked", "NSRC", reason="appeal upheld"))
    assert e.status is Status.REVOKED and not e.active_at(T0 + timedelta(minutes=3))
    e = merge(e, rep("d", 3, "reported", "MBBEMYKL"))
    assert e.status is Status.REVOKED, "an unverified report does not undo an upheld appeal"
    e = merge(e, rep("e", 4, "confirmed", "PDRM"))
    assert e.status is Status.CONFIRMED and e.source == "PDRM" and e.active_at(T0 + timedelta(minutes=5))


def test_reported_never_downgrades_confirmed() -> None:
    assert fold(rep("a", 0, "confirmed"), rep("b", 1, "reported")).status is Status.CONFIRMED


def test_an_older_report_arriving_late_does_not_override_newer_state() -> None:
    revoke = rep("r", 10, "revoked", "NSRC", reason="appeal")
    late_confirm = rep("c", 5, "confirmed")
    assert fold(rep("a", 0), revoke, late_confirm).status is Status.REVOKED


def test_the_entry_is_the_same_whatever_the_arrival_order() -> None:
    reports = [rep("a", 0), rep("b", 1, "confirmed", "NSRC", ttl=30), rep("c", 2, "revoked", "NSRC", reason="x"),
               rep("d", 3, "confirmed", "PDRM", ttl=10), rep("e", 4, "reported", "MBB", ttl=90)]
    entries = {repr(fold(*perm).to_json()) for perm in itertools.permutations(reports)}
    assert len(entries) == 1


def test_redelivered_report_changes_nothing() -> None:
    a, b = rep("a", 0), rep("b", 1, "confirmed")
    assert fold(a, b, a, b).to_json() == fold(a, b).to_json()


def test_expiry_is_the_last_listing_report_to_expire_and_ttl_zero_means_never() -> None:
    e = fold(rep("a", 0, ttl=30), rep("b", 60, "confirmed", ttl=10))
    assert e.expires_at == "2026-12-01T10:00:00.000Z"
    assert e.active_at(T0 + timedelta(days=29)) and not e.active_at(T0 + timedelta(days=31))
    assert fold(rep("a", 0, ttl=30), rep("b", 1, ttl=0)).expires_at == ""
    # Reports before a revocation do not keep a re-confirmed entry alive.
    e = fold(rep("a", 0, ttl=0), rep("r", 1, "revoked", reason="x"), rep("c", 2, "confirmed", ttl=5))
    assert e.expires_at == "2026-11-06T10:02:00.000Z"
    assert fold(rep("a", 0, ttl=5), rep("r", 1, "revoked", reason="x")).expires_at == ""


def test_consolidation_makes_the_last_record_rebuild_the_whole_entry() -> None:
    a, b = rep("a", 0), rep("b", 1, "confirmed", "NSRC")
    entry = fold(a, b)
    assert not covers(b, entry)
    last = consolidated(b, entry)
    assert covers(last, entry)
    # After compaction only `last` is left: it alone gives the same entry.
    assert merge(None, last).to_json() == entry.to_json()
    assert covers(a, merge(None, a))


def test_entry_json_round_trip_keeps_history() -> None:
    entry = fold(rep("a", 0, ttl=3), rep("b", 1, "confirmed", "NSRC", case_ref="X"))
    again = Entry.from_json(entry.to_json())
    assert again.to_json() == entry.to_json()
    assert union(again.history) == entry.history
    assert entry_from_history(KEY, again.history) == entry


def test_from_json_tolerates_entries_without_the_new_fields() -> None:
    old = Entry.from_json({"key": KEY, "status": "confirmed", "source": "PDRM"})
    assert old.history == () and old.report_count == 1 and old.active_at(T0)


def test_a_legacy_entry_without_history_is_kept_as_one_report_and_travels_in_the_consolidation() -> None:
    legacy = Entry.from_json({"key": KEY, "status": "confirmed", "source": "PDRM", "case_ref": "KL/1",
                              "report_id": "", "reported_at": "2026-10-01T00:00:00.000Z",
                              "expires_at": "2026-10-31T00:00:00.000Z"})
    new = rep("a", 0, "reported", "MBBEMYKL")
    e = merge(legacy, new)
    assert e.status is Status.CONFIRMED and e.report_count == 2 and e.sources == ("PDRM", "MBBEMYKL")
    assert e.history[0].filed_by == "legacy" and e.history[0].ttl_days == 30
    assert not covers(new, e) and merge(None, consolidated(new, e)).to_json() == e.to_json()


_first_reports = st.builds(
    Report, report_id=st.text(min_size=1, max_size=8),
    reported_at=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(timezone.utc)),
    kind=st.just("phone"), value=st.sampled_from(["+60123456789", "+60198765432"]), status=st.sampled_from(Status),
    source=st.sampled_from(["", "PDRM", "NSRC", "MBBEMYKL"]), case_ref=st.sampled_from(["", "KL/1", "BULK/7"]),
    reason=st.sampled_from(["", "bulk load", "appeal upheld"]), ttl_days=st.integers(0, 3650),
    filed_by=st.sampled_from(["", "import", "cli"]), origin=st.sampled_from(["", "r-1"]),
    origin_key=st.sampled_from(["", "phone:+60111111111"]), renewal=st.booleans())


@given(_first_reports)
def test_a_first_report_on_a_key_gives_the_entry_the_fold_gives_byte_for_byte(report: Report) -> None:
    folded = bounded(report.key, union((report,)), None)
    fast = first(report)
    assert fast == folded
    assert orjson.dumps(fast.to_json()) == orjson.dumps(folded.to_json())
    assert merge(None, report) == folded


@given(_first_reports, st.booleans())
def test_a_first_report_with_links_or_history_still_takes_the_fold(report: Report, with_history: bool) -> None:
    earlier = replace(report, report_id=report.report_id + "-0", reported_at=report.reported_at - timedelta(days=1))
    carrying = replace(report, history=(earlier,)) if with_history else \
        replace(report, links=("phone:+60111111111",), status=Status.CONFIRMED)
    folded = bounded(carrying.key, union(carrying.history, (carrying,)), None)
    assert orjson.dumps(merge(None, carrying).to_json()) == orjson.dumps(folded.to_json())
