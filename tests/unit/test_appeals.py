"""Appeals (sekat.blocklist.appeals): the stages, the rule for several agencies, the re-appeal date, and what
the appellant's status shows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from sekat.blocklist import lifecycle
from sekat.blocklist.appeals import (Appeal, AppealConflict, Contact, acknowledged, confirmed_by, decided, filed,
                                     may_file_again, new_token, token_matches)
from sekat.errors import ConfigError
from sekat.records import Report, Status
from sekat.settings import Settings

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
MULE = "account:CIBBMYKL:8001234567"


def report(rid: str, status: Status, source: str, days_ago: float, ttl_days: int = 0) -> Report:
    return Report(rid, NOW - timedelta(days=days_ago), "account", "8001234567", status, source, "CIBBMYKL",
                  ttl_days=ttl_days)


def appeal(rule: str = "own-report", agencies: tuple[str, ...] = ("NSRC", "PDRM")) -> Appeal:
    _, digest = new_token()
    contact = Contact(name="Tan Mei Ling", email="meiling.tan@mail.example.my", phone="+60123456789")
    received = filed("ap-0123456789abcdef", MULE, agencies, "person", contact, "my salary account", "",
                     digest, rule, NOW, 86_400, 14 * 86_400)
    return acknowledged(received, agencies[0], "k1", NOW + timedelta(hours=2))


def test_an_appeal_is_received_with_its_deadlines_then_under_review_once_acknowledged() -> None:
    _, digest = new_token()
    received = filed("ap-0123456789abcdef", MULE, ("PDRM",), "bank", Contact(name="CIMB desk"), "x", "", digest,
                     "own-report", NOW, 3_600, 86_400)
    assert (received.status, received.acknowledge_by, received.decide_by) == (
        "received", "2026-12-01T09:00:00.000Z", "2026-12-02T08:00:00.000Z")
    reviewed = acknowledged(received, "PDRM", "k1", NOW)
    assert reviewed.status == "under_review" and [e.action for e in reviewed.events] == ["filed", "review"]
    with pytest.raises(AppealConflict):
        acknowledged(reviewed, "PDRM", "k1", NOW)


def test_own_report_an_uphold_waits_for_every_other_agency_whose_confirmed_report_stands() -> None:
    first = decided(appeal(), "PDRM", "k1", "upheld", "payroll account", {"PDRM", "NSRC"}, NOW, 30)
    assert first.status == "under_review" and first.upheld_by() == {"PDRM"} and not first.decided_at
    with pytest.raises(AppealConflict, match="already decided"):
        decided(first, "PDRM", "k1", "upheld", "again", {"PDRM", "NSRC"}, NOW, 30)
    second = decided(first, "NSRC", "k2", "upheld", "agreed", {"PDRM", "NSRC"}, NOW, 30)
    assert second.status == "upheld" and second.decided_at == "2026-12-01T08:00:00.000Z"


def test_own_report_an_agency_with_only_an_unconfirmed_report_does_not_hold_the_entry() -> None:
    assert decided(appeal(), "PDRM", "k1", "upheld", "payroll", {"PDRM"}, NOW, 30).status == "upheld"


def test_own_report_a_rejection_rejects_with_the_date_it_may_be_appealed_again() -> None:
    first = decided(appeal(), "PDRM", "k1", "upheld", "payroll", {"PDRM", "NSRC"}, NOW, 30)
    rejected = decided(first, "NSRC", "k2", "rejected", "mule account", {"PDRM", "NSRC"}, NOW, 30)
    assert (rejected.status, rejected.reappeal_after) == ("rejected", "2026-12-31T08:00:00.000Z")
    with pytest.raises(AppealConflict, match="2026-12-31T08:00:00.000Z") as too_soon:
        may_file_again(rejected, NOW + timedelta(days=29))
    assert (too_soon.value.reason, too_soon.value.reappeal_after) == ("rejected", "2026-12-31T08:00:00.000Z")
    may_file_again(rejected, NOW + timedelta(days=30, seconds=1))
    with pytest.raises(AppealConflict, match="open appeal") as still_open:
        may_file_again(first, NOW)
    assert still_open.value.reason == "open"


def test_every_reason_a_filing_is_refused_for_has_a_sentence_on_the_appeal_page_in_both_languages() -> None:
    from sekat.api.web.language import TEXT
    for reason in ("not_listed", "busy", "open", "rejected"):
        for lang in TEXT:
            assert TEXT[lang][f"refused_{reason}"], (lang, reason)


def test_any_agency_the_first_uphold_decides() -> None:
    assert decided(appeal("any-agency"), "PDRM", "k1", "upheld", "payroll", {"PDRM", "NSRC"}, NOW,
                   30).status == "upheld"


def test_an_appeal_is_decided_only_once_acknowledged() -> None:
    _, digest = new_token()
    received = filed("ap-0123456789abcdef", MULE, ("PDRM",), "person", Contact(name="x"), "x", "", digest,
                     "own-report", NOW, 3_600, 86_400)
    with pytest.raises(AppealConflict, match="acknowledge it"):
        decided(received, "PDRM", "k1", "upheld", "x", {"PDRM"}, NOW, 30)


def test_confirmed_by_counts_confirmed_reports_since_the_last_revocation_that_have_not_expired() -> None:
    entry = None
    for r in (report("r1", Status.CONFIRMED, "MCMC", 40),  # before the revocation
              report("r2", Status.REVOKED, "NSRC", 30),
              report("r3", Status.CONFIRMED, "PDRM", 10),  # no expiry
              report("r4", Status.CONFIRMED, "BNM", 10, ttl_days=5),  # expired 5 days ago
              report("r5", Status.REPORTED, "NSRC", 1, ttl_days=30)):  # not confirmed
        entry = lifecycle.merge(entry, r)
    assert entry is not None and confirmed_by(entry, NOW) == {"PDRM"}


def test_the_appellants_status_holds_no_personal_data_and_needs_the_token() -> None:
    token, digest = new_token()
    received = filed("ap-0123456789abcdef", MULE, ("PDRM",), "person",
                     Contact(name="Tan Mei Ling", email="meiling.tan@mail.example.my"), "grounds", "ev-1", digest,
                     "own-report", NOW, 3_600, 86_400)
    shown = received.for_appellant()
    assert set(shown) == {"appeal_id", "status", "filed_at", "decide_by"}
    assert "Tan" not in str(shown) and "8001234567" not in str(shown)
    assert token_matches(received, token) and not token_matches(received, token + "x")
    assert "token_sha256" not in received.for_agency()


@pytest.mark.parametrize("env,setting", [
    ({"SEKAT_APPEAL_RULE": "majority"}, "SEKAT_APPEAL_RULE"),
    ({"SEKAT_APPEAL_ACKNOWLEDGE_S": "90000", "SEKAT_APPEAL_DECIDE_S": "86400"}, "SEKAT_APPEAL_ACKNOWLEDGE_S"),
    ({"SEKAT_APPEAL_DECIDE_S": "0"}, "SEKAT_APPEAL_DECIDE_S"),
    ({"SEKAT_APPEAL_REAPPEAL_DAYS": "-1"}, "SEKAT_APPEAL_REAPPEAL_DAYS"),
])
def test_appeal_settings_are_checked_at_start_up_naming_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_environ(env)
    assert err.value.setting == setting
