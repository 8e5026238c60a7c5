"""The replica's start-up reading: the copy-free status read agrees with the full parse, and stored snapshot
chunks come back as they went in (or are refused whole)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from blocklist import replica_snapshot as stored
from blocklist.replica import _STATUS_CODES, ABSENT, _code
from blocklist.store import status_and_expiry
from sekat.records import Entry, Report, Status


def full(raw: bytes) -> tuple[int, int]:
    """The answer by the full path alone (what the replica did before the fast read; an absent entry's expiry
    is never used)."""
    found = status_and_expiry(raw)
    if found is None or found[0] == "revoked":
        return ABSENT, 0
    status, expires = found
    return _STATUS_CODES[status], int(datetime.fromisoformat(expires).timestamp()) if expires else 0


def entry(status: Status, expires_at: str = "", history: tuple[Report, ...] = ()) -> bytes:
    return orjson.dumps(Entry(key="phone:+60111111111", status=status, source="PDRM", reason="scam",
                              expires_at=expires_at, history=history).to_json())


def test_entries_as_the_index_writes_them() -> None:
    report = Report(report_id="r1", reported_at=datetime.fromisoformat("2026-11-01T00:00:00+00:00"), kind="phone",
                    value="+60111111111", status=Status.REVOKED, source="NSRC")
    for status in Status:
        for expires in ("", "2027-01-01T00:00:00+00:00"):
            for history in ((), (report,)):
                raw = entry(status, expires, history)
                assert _code(raw) == full(raw), raw
    assert _code(entry(Status.CONFIRMED)) == (2, 0)
    assert _code(entry(Status.REPORTED, "2027-01-01T00:00:00+00:00"))[1] == 1798761600
    assert _code(entry(Status.REVOKED)) == (ABSENT, 0)


@pytest.mark.parametrize("raw", [
    b"garbage", b"", b'{"status":"', b'{"status":"confirmed', b'{"status":"confirmed"', b'{"status": "confirmed"}',
    b'{"status":"confirmedx"}', b'{"status":"confirmed","expires_at":"', b'{"key":"x","status":"reported",'
    b'"expires_at":"2027-01-01T00:00:00Z"}', b'[1,2]', b'{"status":"unknown","expires_at":""}',
])
def test_odd_values_get_the_full_paths_answer(raw: bytes) -> None:
    try:
        expected = full(raw)
    except ValueError:  # the full path refuses it (an unreadable expiry): so must the fast one
        with pytest.raises(ValueError):
            _code(raw)
        return
    assert _code(raw) == expected


@given(st.binary(max_size=80))
def test_any_bytes_get_the_full_paths_answer(raw: bytes) -> None:
    try:
        expected = full(raw)
    except (ValueError, KeyError):
        return
    assert _code(raw) == expected


def test_a_chunk_round_trips_to_this_process_hashes() -> None:
    keys = ["phone:+60111111111", "account:CIBBMYKL:8001234567", "phone:+60122222222"]
    codes = np.array([2, 1, 2], dtype=np.uint8)
    expiries = np.array([0, 1798761600, 4_000_000_000], dtype=np.uint32)
    hashes, c, e = stored.decode_chunk(stored.encode_chunk(keys, codes, expiries))
    assert hashes.tolist() == [hash(k) for k in keys]
    assert c.tolist() == codes.tolist() and e.tolist() == expiries.tolist()
    empty = stored.decode_chunk(stored.encode_chunk([], np.empty(0, np.uint8), np.empty(0, np.uint32)))
    assert [len(a) for a in empty] == [0, 0, 0]


def test_a_chunk_that_is_not_whole_is_refused() -> None:
    blob = stored.encode_chunk(["phone:+60111111111", "phone:+60122222222"], np.array([2, 1], np.uint8),
                               np.array([0, 0], np.uint32))
    for bad in (blob[:-5], blob[:7], b"XXXX" + blob[4:], blob + b"\nphone:+60133333333"):
        with pytest.raises(ValueError):
            stored.decode_chunk(bad)
    with pytest.raises(ValueError):  # a key with a newline would split in two: never stored
        stored.encode_chunk(["phone:+6011\n1"], np.array([2], np.uint8), np.array([0], np.uint32))
