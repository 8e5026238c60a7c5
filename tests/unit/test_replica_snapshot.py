"""The stored replica snapshot's chunks: they come back as they went in, as this process's hashes, or are
refused whole."""

from __future__ import annotations

import numpy as np
import pytest

from sekat.blocklist import replica_snapshot as stored


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
