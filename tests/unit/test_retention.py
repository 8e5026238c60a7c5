"""When an ended blocklist entry is due for the purge (blocklist/retention.py), and the topics' retention."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sekat.blocklist.retention import EXPIRED, REVOKED, Retention, due, ending
from sekat.records import Entry, Status, iso
from sekat.settings import Settings
from sekat.streams.topics import DAY_MS, retention_topics, topic_specs

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
KEEP = Retention(revoked_days=90, expired_days=30, appeals_days=180)


def entry(status: Status, reported: timedelta, expires: timedelta | None = None) -> Entry:
    return Entry(key="phone:+60123456789", status=status, source="PDRM", reported_at=iso(NOW - reported),
                 expires_at=iso(NOW + expires) if expires is not None else "")


def test_a_revoked_entry_is_due_once_its_revocation_is_older_than_its_retention() -> None:
    assert ending(entry(Status.REVOKED, timedelta(days=1)))[0] == REVOKED
    assert due(entry(Status.REVOKED, timedelta(days=89)), NOW, KEEP) is None
    assert due(entry(Status.REVOKED, timedelta(days=90, seconds=1)), NOW, KEEP) == REVOKED


def test_an_expired_entry_is_due_by_its_own_retention_and_a_listed_one_never() -> None:
    assert due(entry(Status.CONFIRMED, timedelta(days=400), expires=timedelta(days=-29)), NOW, KEEP) is None
    assert due(entry(Status.CONFIRMED, timedelta(days=400), expires=timedelta(days=-31)), NOW, KEEP) == EXPIRED
    assert due(entry(Status.REPORTED, timedelta(days=400), expires=timedelta(days=1)), NOW, KEEP) is None
    assert ending(entry(Status.CONFIRMED, timedelta(days=400))) is None, "listed without expiry: never ends"
    assert due(entry(Status.CONFIRMED, timedelta(days=4000)), NOW, KEEP) is None


def test_topics_holding_personal_data_get_the_configured_retention() -> None:
    settings = Settings.from_environ({"SEKAT_RETENTION_DEADLETTER_DAYS": "3", "SEKAT_RETENTION_DECISIONS_DAYS": "60",
                                      "SEKAT_RETENTION_COMMANDS_DAYS": "14", "SEKAT_RETENTION_AUDIT_DAYS": "2557",
                                      "SEKAT_COMMAND_ROUTING": "per-institution", "SEKAT_ROUTE_BANKS": "MBBEMYKL"})
    days = {t.name: int(t.topic_configs["retention.ms"]) // DAY_MS for t in topic_specs(settings)
            if t.name in retention_topics(settings) and t.name != "sekat.reports"}
    assert days == {"sekat.deadletter": 3, "sekat.decisions": 60, "sekat.commands.freeze": 14,
                    "sekat.commands.block": 14, "sekat.commands.freeze.MBBEMYKL": 14,
                    "sekat.commands.undelivered": 14, "sekat.audit": 2557}
    reports = next(t for t in topic_specs(settings) if t.name == "sekat.reports")
    assert reports.topic_configs["cleanup.policy"] == "compact" and "retention.ms" not in reports.topic_configs
    assert int(reports.topic_configs["max.compaction.lag.ms"]) == 7 * DAY_MS, "a purged entry leaves within a week"
