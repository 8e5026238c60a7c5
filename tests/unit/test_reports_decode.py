"""Decoding reports at the edge and filing them: a valid Report, or a reason naming the field."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from blocklist.filing import file_report
from blocklist.identifiers import parse_protected
from sekat.errors import ConfigError, InvalidIdentifier, InvalidReport
from sekat.records import Rejection, Report, Status
from sekat.settings import Settings
from streams.reports import decode_report

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
    from blocklist.bulk import row_report

    exported = {"key": "account:CIBBMYKL:8001234567", "status": "confirmed", "source": "PDRM",
                "report_id": "r-7", "sources": ["PDRM"], "history": []}
    report = row_report(exported, NOW)
    assert (report.key, report.status, report.report_id, report.filed_by) == (
        "account:CIBBMYKL:8001234567", Status.CONFIRMED, "r-7", "import")
    with pytest.raises(InvalidReport) as exc:
        row_report({"kind": "phone", "value": "0123456789", "ttl_days": "soon"}, NOW, "PDRM")
    assert exc.value.field == "ttl_days"
