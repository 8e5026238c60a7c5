"""Who a public status check counts against, and which entries the public check may say are listed."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from sekat.api.entries import publicly_listed
from sekat.api.keys import RULE_SOURCES, ApiKeyStore
from sekat.api.limits import client_bucket
from sekat.blocklist.lifecycle import entry_from_history, union
from sekat.errors import SekatError
from sekat.records import Report, Status
from sekat.rules.follow_money import SOURCE as FOLLOW_SOURCE
from sekat.rules.registry import AutoReport

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)


def test_two_ipv6_addresses_of_one_64_share_a_bucket_and_another_64_does_not() -> None:
    assert client_bucket("2001:db8:1:2::1") == client_bucket("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert client_bucket("2001:db8:1:2::1") != client_bucket("2001:db8:1:3::1")


@pytest.mark.parametrize("host, bucket", [
    ("203.0.113.7", "203.0.113.7"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client on a dual-stack socket: its IPv4 budget
    ("2001:DB8:1:2:0:0:0:1", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("unknown", "unknown"),
])
def test_client_bucket(host: str, bucket: str) -> None:
    assert client_bucket(host) == bucket


def test_every_source_a_rule_files_under_is_a_rule_source() -> None:
    assert {AutoReport("why", 7).source.upper(), FOLLOW_SOURCE.upper()} <= RULE_SOURCES


@pytest.mark.parametrize("agency", ["sekat-rule", "SEKAT-FOLLOW"])
def test_no_agency_key_can_be_named_after_a_rule_source(agency: str) -> None:
    with pytest.raises(SekatError, match="automatic reports"):
        asyncio.run(ApiKeyStore(None).create(agency, ("report",)))  # type: ignore[arg-type]  # refused before Redis


def report(n: int, status: Status, source: str, days_ago: float = 1, ttl_days: int = 0) -> Report:
    return Report(f"r-{n}", NOW - timedelta(days=days_ago), "phone", "+60123456789", status, source,
                  reason="why", ttl_days=ttl_days, filed_by=source if source.upper() in RULE_SOURCES else "api:k1")


def listed(*reports: Report) -> bool:
    return publicly_listed(entry_from_history("phone:+60123456789", union(reports)), NOW)


def test_an_entry_only_a_rule_filed_is_not_publicly_listed() -> None:
    assert not listed(report(1, Status.REPORTED, "sekat-rule", ttl_days=7))  # as the engine files it
    assert not listed(report(1, Status.REPORTED, "SEKAT-RULE", ttl_days=7))  # as the reports agent stores it
    assert not listed(report(1, Status.REPORTED, "sekat-follow", ttl_days=7),
                      report(2, Status.REPORTED, "sekat-rule", ttl_days=7))


def test_an_entry_an_agency_reported_or_confirmed_is_publicly_listed() -> None:
    assert listed(report(1, Status.REPORTED, "MAYBANK", ttl_days=30))
    assert listed(report(1, Status.CONFIRMED, "PDRM"))
    assert listed(report(1, Status.REPORTED, "sekat-rule", ttl_days=7), report(2, Status.REPORTED, "MAYBANK",
                                                                              days_ago=0.5, ttl_days=30))


def test_an_agencys_report_no_longer_in_force_does_not_stand_behind_a_rules() -> None:
    # revoked, then suspected again by a rule
    assert not listed(report(1, Status.CONFIRMED, "PDRM", days_ago=5), report(2, Status.REVOKED, "PDRM", days_ago=4),
                      report(3, Status.REPORTED, "sekat-rule", ttl_days=7))
    # the agency's report expired; a rule's keeps the entry active
    assert not listed(report(1, Status.REPORTED, "MAYBANK", days_ago=40, ttl_days=30),
                      report(2, Status.REPORTED, "sekat-rule", ttl_days=7))


def test_an_inactive_entry_is_not_publicly_listed() -> None:
    assert not listed(report(1, Status.CONFIRMED, "PDRM", days_ago=2), report(2, Status.REVOKED, "PDRM"))
    assert not listed(report(1, Status.REPORTED, "MAYBANK", days_ago=40, ttl_days=30))
