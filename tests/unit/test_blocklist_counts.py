"""What status a blocklist entry is counted under for sekat_blocklist_entries."""

from datetime import datetime, timezone

import orjson

from sekat.blocklist.store import _count_status

NOW = datetime(2026, 11, 29, 5, 0, tzinfo=timezone.utc)


def raw(**fields: str) -> bytes:
    return orjson.dumps({"key": "phone:+60376543210", "source": "PDRM", **fields})


def test_entries_count_under_their_status_or_expired() -> None:
    assert _count_status(raw(status="confirmed"), NOW) == "confirmed"
    assert _count_status(raw(status="reported", expires_at="2026-11-29T04:59:59.999Z"), NOW) == "expired"
    assert _count_status(raw(status="reported", expires_at="2026-11-29T05:00:00.001Z"), NOW) == "reported"
    assert _count_status(raw(status="confirmed", expires_at="2026-11-29T13:00:00+08:00"), NOW) == "expired"
    assert _count_status(raw(status="revoked", expires_at="2020-01-01T00:00:00Z"), NOW) == "revoked"


def test_keys_that_are_not_sekat_entries_are_not_counted() -> None:
    assert _count_status(None, NOW) == ""
    assert _count_status(b"not json", NOW) == ""
    assert _count_status(b'["a list"]', NOW) == ""
    assert _count_status(raw(status="deleted"), NOW) == ""
    assert _count_status(raw(status="confirmed", expires_at="someday"), NOW) == "confirmed"
