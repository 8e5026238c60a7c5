"""Decoding reports at the edge and filing them: a valid Report, or a reason naming the field."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sekat.blocklist.filing import file_report
from sekat.decode.fields import decode_object
from sekat.decode.reports import _decode_fast, _report, decode_report
from sekat.errors import ConfigError, InvalidIdentifier, InvalidReport
from sekat.identifiers import parse_protected
from sekat.records import Rejection, Report, Status
from sekat.settings import Settings
from tests.unit.test_decode_fast import assert_agree, banks, junk, near_valid, phones, accounts, stamps, texts

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)
GOOD = {"report_id": "r-1", "reported_at": "2026-11-28T10:00:00Z", "kind": "account", "bank": "CIBBMYKLXXX",
        "value": "800-123 4567", "status": "confirmed", "source": "pdrm", "case_ref": "KL/2026/123",
        "reason": "investment scam mule", "ttl_days": 180}


def decode(body: dict, key: bytes | None = None, **kw) -> Report | Rejection:
    return decode_report(orjson.dumps(body), key, **kw)


def test_the_contract_example_decodes() -> None:
    report = decode(GOOD, b"account:CIBBMYKL:8001234567")
    assert isinstance(report, Report)
    assert report.key == "account:CIBBMYKL:8001234567" and report.source == "PDRM"
    assert report.status is Status.CONFIRMED and report.ttl_days == 180


def test_a_round_trip_through_json_is_identity() -> None:
    report = decode(GOOD)
    assert isinstance(report, Report)
    assert decode(report.to_json()) == report


@pytest.mark.parametrize("change,reason,field", [
    ({"kind": "email"}, "invalid_value", "kind"),
    ({"bank": None}, "missing_field", "bank"),
    ({"bank": "nope"}, "invalid_bank", "bank"),
    ({"value": "12ab"}, "invalid_account", "value"),
    ({"status": "sure"}, "invalid_value", "status"),
    ({"ttl_days": True}, "wrong_type", "ttl_days"),
    ({"ttl_days": 99999}, "invalid_value", "ttl_days"),
    ({"reported_at": "0001-01-01T00:00:00Z"}, "invalid_timestamp", "reported_at"),
    ({"source": ""}, "invalid_value", "source"),
    ({"history": {}}, "wrong_type", "history"),
    ({"history": [{"report_id": "a", "reported_at": "x", "status": "reported", "source": "P"}]},
     "invalid_timestamp", "history[0].reported_at"),
])
def test_bad_reports_are_rejected_naming_the_field(change: dict, reason: str, field: str) -> None:
    result = decode({**GOOD, **change})
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (reason, field) and result.message.startswith(field)


def test_protected_identifiers_are_rejected() -> None:
    phone = decode({**GOOD, "kind": "phone", "value": "999"})
    assert isinstance(phone, Rejection) and phone.reason == "protected"
    listed = decode(GOOD, protected={"account:CIBBMYKL:8001234567"})
    assert isinstance(listed, Rejection) and listed.reason == "protected" and listed.field == "value"


def test_a_mis_keyed_record_is_rejected() -> None:
    result = decode(GOOD, b"account:CIBBMYKL:1")
    assert isinstance(result, Rejection) and result.reason == "invalid_key"


def test_filing_normalises_and_refuses_with_the_field() -> None:
    report = file_report("phone", "012-345 6789", "reported", " nsrc ", NOW, ttl_days=30, filed_by="cli")
    assert report.key == "phone:+60123456789" and report.source == "NSRC" and report.report_id.startswith("r-")
    with pytest.raises(InvalidReport) as exc:
        file_report("phone", "112", "reported", "NSRC", NOW)
    assert exc.value.field == "value" and exc.value.reason == "protected"
    with pytest.raises(InvalidReport) as exc:
        file_report("phone", "0123456789", "revoked", "NSRC", NOW)
    assert exc.value.field == "reason"
    with pytest.raises(InvalidReport) as exc:
        file_report("account", "123456", "reported", "NSRC", NOW)
    assert exc.value.field == "bank"


def test_protected_list_parses_phones_and_accounts_and_names_a_bad_line() -> None:
    keys = parse_protected(["# collection accounts", "BNMAMYKL:1234-5678", "account:MBBEMYKL:99990000",
                            "03-2698 8044  # a ministry hotline", ""])
    assert keys == {"account:BNMAMYKL:12345678", "account:MBBEMYKL:99990000", "phone:+60326988044"}
    with pytest.raises(InvalidIdentifier, match="line 2"):
        parse_protected(["+60326988044", "not a number"])


def test_a_bad_protected_file_stops_start_up_naming_the_setting(tmp_path) -> None:
    bad = tmp_path / "protected.txt"
    bad.write_text("BNMAMYKL:12x\n")
    with pytest.raises(ConfigError, match="SEKAT_PROTECTED_FILE"):
        Settings.from_environ({"SEKAT_PROTECTED_FILE": str(bad)})
    with pytest.raises(ConfigError, match="SEKAT_PROTECTED_FILE"):
        Settings.from_environ({"SEKAT_PROTECTED_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="SEKAT_STATUS_RATE_PER_MINUTE"):
        Settings.from_environ({"SEKAT_STATUS_RATE_PER_MINUTE": "0"})


def test_an_exported_row_can_be_imported_again() -> None:
    from sekat.blocklist.bulk import row_report

    exported = {"key": "account:CIBBMYKL:8001234567", "status": "confirmed", "source": "PDRM",
                "report_id": "r-7", "sources": ["PDRM"], "history": []}
    report = row_report(exported, NOW)
    assert (report.key, report.status, report.report_id, report.filed_by) == (
        "account:CIBBMYKL:8001234567", Status.CONFIRMED, "r-7", "import")
    with pytest.raises(InvalidReport) as exc:
        row_report({"kind": "phone", "value": "0123456789", "ttl_days": "soon"}, NOW, "PDRM")
    assert exc.value.field == "ttl_days"


# --- links, derived reports, renewals ------------------------------------------------------------------

LINKED = {**GOOD, "links": [{"kind": "phone", "value": "012-345 6789"},
                            {"kind": "account", "bank": "MBBEMYKL", "value": "5140 1234 5678"}]}


def test_links_decode_to_normalised_keys_and_round_trip() -> None:
    report = decode(LINKED)
    assert isinstance(report, Report)
    assert report.links == ("phone:+60123456789", "account:MBBEMYKL:514012345678")
    assert decode(report.to_json()) == report


@pytest.mark.parametrize("links,reason,field", [
    ({}, "wrong_type", "links"),
    (["phone:+60123456789"], "wrong_type", "links[0]"),
    ([{"kind": "email", "value": "x"}], "invalid_value", "links[0].kind"),
    ([{"kind": "phone", "value": "not a number"}], "invalid_phone", "links[0].value"),
    ([{"kind": "account", "value": "123456"}], "missing_field", "links[0].bank"),
    ([{"kind": "phone", "value": "999"}], "protected", "links[0].value"),
    ([{"kind": "phone", "value": f"+6012{i:07d}"} for i in range(21)], "invalid_value", "links"),
])
def test_bad_links_are_rejected_naming_the_item(links: object, reason: str, field: str) -> None:
    result = decode({**GOOD, "links": links})
    assert isinstance(result, Rejection)
    assert (result.reason, result.field) == (reason, field)


def test_a_revocation_names_no_links_and_a_derived_report_names_a_valid_origin() -> None:
    revoked = decode({**LINKED, "status": "revoked"})
    assert isinstance(revoked, Rejection) and revoked.field == "links"
    derived = decode({**GOOD, "origin": "r-0", "origin_key": "phone:+60123456789", "renewal": True})
    assert isinstance(derived, Report) and derived.origin_key == "phone:+60123456789" and derived.renewal
    bad = decode({**GOOD, "origin": "r-0", "origin_key": "email:x"})
    assert isinstance(bad, Rejection) and (bad.reason, bad.field) == ("invalid_key", "origin_key")


def test_filing_checks_links_and_applies_the_expiry_policy() -> None:
    from sekat.expiry import parse_expiry

    policy = parse_expiry("reported=30,confirmed=365,PDRM/confirmed=730")
    own = file_report("phone", "012-345 6789", "confirmed", "pdrm", NOW, ttl_days=None, expiry=policy,
                      links=[{"kind": "phone", "value": "+60123456789"},  # itself: dropped
                             {"kind": "account", "bank": "CIBBMYKL", "value": "800-1234567"}])
    assert own.links == ("account:CIBBMYKL:8001234567",) and own.ttl_days == 730
    assert file_report("phone", "0123456789", "reported", "MBBEMYKL", NOW, ttl_days=None, expiry=policy).ttl_days == 30
    assert file_report("phone", "0123456789", "reported", "MBBEMYKL", NOW, ttl_days=0, expiry=policy).ttl_days == 0
    with pytest.raises(InvalidReport) as exc:
        file_report("phone", "0123456789", "confirmed", "PDRM", NOW, links=[{"kind": "account", "value": "1234"}])
    assert exc.value.field == "links[0].bank"
    with pytest.raises(InvalidReport) as exc:
        file_report("phone", "0123456789", "revoked", "PDRM", NOW, reason="appeal",
                    links=[{"kind": "phone", "value": "0123456780"}])
    assert exc.value.field == "links"


@pytest.mark.parametrize("text,setting_message", [
    ("reported=30,nope=3", "got 'nope=3'"),
    ("reported=thirty", "reported: days must be a whole number"),
    ("reported=99999", "reported: days must be a whole number from 0 to 3650"),
    ("reported=1,reported=2", "reported is given twice"),
    ("/confirmed=3", "got '/confirmed=3'"),
])
def test_a_bad_expiry_policy_stops_start_up_naming_the_setting(text: str, setting_message: str) -> None:
    with pytest.raises(ConfigError, match="SEKAT_EXPIRY_DAYS") as exc:
        Settings.from_environ({"SEKAT_EXPIRY_DAYS": text})
    assert setting_message in str(exc.value)
    with pytest.raises(ConfigError, match="SEKAT_RENEWALS_MAX"):
        Settings.from_environ({"SEKAT_RENEWALS_MAX": "-1"})
    with pytest.raises(ConfigError, match="SEKAT_RELEASE_INTERVAL_S"):
        Settings.from_environ({"SEKAT_RELEASE_INTERVAL_S": "0"})


# -- the fast path (msgspec, reports as filed) and the precise one give one answer ----------------------------
REPORT_FIELDS: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("report_id",): texts, ("reported_at",): st.one_of(stamps, st.sampled_from(["1999-12-31T23:59:59Z",
                                                                                  "2101-01-01T00:00:00Z"])),
    ("kind",): st.sampled_from(["phone", "account", "wallet", "proxy", "sender", "url", "domain", "PHONE", "", "x"]),
    ("value",): st.one_of(phones, accounts, st.sampled_from(["TNG:0123456789", "MOBILE:" + "a" * 64, "999",
                                                             "https://scam.example/x", "x" * 65, "x" * 513])),
    ("bank",): banks, ("status",): st.sampled_from(["reported", "confirmed", "revoked", "Confirmed", " ", ""]),
    ("source",): st.one_of(texts, st.sampled_from([" pdrm ", "x" * 65])),
    ("case_ref",): st.one_of(texts, st.sampled_from([" KL/1 ", "x" * 129])),
    ("reason",): st.one_of(texts, st.sampled_from([" scam ", "x" * 513])),
    ("filed_by",): st.one_of(texts, st.sampled_from(["import", "x" * 65])),
    ("ttl_days",): st.one_of(st.integers(-2, 4000), st.sampled_from([0, 90, 3650, 3651, 5.0, "30", True])),
    ("renewal",): st.one_of(st.booleans(), st.sampled_from([0, 1, "true"])),
    ("links",): st.sampled_from([[], [{"kind": "phone", "value": "+60198765432"}], "x"]),
    ("origin",): st.sampled_from(["", "r-0", 5]), ("origin_key",): st.sampled_from(["phone:+60198765432", "x"]),
    ("history",): st.sampled_from([[], "x"]), ("summary",): st.sampled_from([{}, "x"]), ("unknown",): junk,
    ("unlinks",): st.sampled_from([[], [{"kind": "phone", "value": "+60198765432"}], [{"kind": "x"}], "x"]),
}
KEYED = {"account": b"account:CIBBMYKL:8001234567", "phone": b"phone:+60123456789"}


def precise_report(raw: bytes, key: bytes | None) -> Report | Rejection:
    return decode_object(raw, 1_048_576, lambda data: _report(data, key, "MY", PROTECTED))


PROTECTED = parse_protected(["+60300000000"])


@settings(max_examples=800, deadline=None)
@given(near_valid(GOOD, REPORT_FIELDS), st.sampled_from([None, *KEYED.values(), b"phone:+60300000000"]))
def test_the_fast_path_agrees_with_the_precise_one_on_nearly_valid_reports(raw: bytes, key: bytes | None) -> None:
    precise = precise_report(raw, key)
    assert_agree(precise, _decode_fast(raw, key, "MY", PROTECTED), Report)
    assert decode_report(raw, key, protected=PROTECTED) == precise


@settings(max_examples=300, deadline=None)
@given(near_valid({**GOOD, "kind": "phone", "value": "012-345 6789", "bank": None}, REPORT_FIELDS))
def test_the_fast_path_agrees_on_nearly_valid_phone_reports(raw: bytes) -> None:
    assert_agree(precise_report(raw, None), _decode_fast(raw, None, "MY", PROTECTED), Report)


def test_a_report_as_filed_takes_the_fast_path_and_a_consolidated_one_the_precise_path() -> None:
    raw = orjson.dumps(GOOD)
    fast = _decode_fast(raw, KEYED["account"], "MY", ())
    assert isinstance(fast, Report) and fast == precise_report(raw, KEYED["account"])
    consolidated = {**GOOD, "history": [{**GOOD, "report_id": "r-0"}]}
    assert _decode_fast(orjson.dumps(consolidated), None, "MY", ()) is None
    decoded = decode_report(orjson.dumps(consolidated))
    assert isinstance(decoded, Report) and [r.report_id for r in decoded.history] == ["r-0"]


def test_a_protected_number_is_refused_with_its_reason_whichever_path_looks_first() -> None:
    out = decode_report(orjson.dumps({**GOOD, "kind": "phone", "value": "+60300000000"}), protected=PROTECTED)
    assert isinstance(out, Rejection) and out.reason == "protected"
