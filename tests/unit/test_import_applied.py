"""What ``sekat blocklist import --wait-applied`` counts: imported reports the reports group has committed past,
and the replicas that reported their change-stream position lately."""

from __future__ import annotations

from sekat.blocklist.applied import applied_count
from sekat.blocklist.replica import POSITION_FRESH_S, positions, stream_id


def test_applied_counts_only_the_imported_records_below_each_committed_offset() -> None:
    first, ends = {0: 100, 1: 0, 2: 50}, {0: 200, 1: 10, 2: 60}
    assert applied_count(first, ends, {}) == 0
    assert applied_count(first, ends, {0: 150, 1: 10, 2: 40}) == 50 + 10  # partition 2 not yet reached
    assert applied_count(first, ends, {0: 900, 1: 12, 2: 60}) == 120  # offsets past the import count once


def test_a_replica_position_is_waited_for_only_while_it_is_fresh() -> None:
    now_ms = 1_800_000_000_000
    stale_ms = now_ms - int(POSITION_FRESH_S * 1000) - 1
    raw = {b"host-a:1": f"1700000000000-5 {now_ms - 500}".encode(), b"host-b:2": f"1700000000001-0 {stale_ms}".encode(),
           b"host-c:3": b"garbage"}
    assert positions(raw, now_ms) == {"host-a:1": (1700000000000, 5)}


def test_stream_ids_order_as_the_stream_does() -> None:
    assert stream_id("1700000000000-10") > stream_id("1700000000000-9") > stream_id("999-99")
    assert stream_id("0-0") == (0, 0)
