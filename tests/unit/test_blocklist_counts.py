"""The replica's entry counts equal a count of every entry it holds, whatever the order of changes, merges and ticks.

The replica here is given its copy directly (no Redis is read): each step applies a change, merges the overlay
or moves the clock, and the counts are compared with a count of the entries as they now stand.
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sekat.blocklist import replica_snapshot as stored
from sekat.blocklist.index_scan import STATUS_CODES, kind_bit
from sekat.blocklist.replica import Replica
from sekat.records import Entry, Status, iso

T0 = 1_800_000_000
KEYS = ([f"phone:+6011000000{i}" for i in range(6)] + [f"account:CIBBMYKL:800000000{i}" for i in range(6)]
        + [f"wallet:TNG:01200000{i}" for i in range(3)] + [f"proxy:NRIC:{i:032x}" for i in range(3)]
        + [f"sender:POSLAJU{i}" for i in range(3)] + [f"url:evil{i}.example.my/pay" for i in range(3)]
        + [f"domain:evil{i}.example.my" for i in range(3)])


def entry(key: str, status: Status, expires: int) -> Entry:
    """``expires``: seconds after T0 (0 = never), on whole seconds as the replica keeps them."""
    at = iso(datetime.fromtimestamp(T0 + expires, timezone.utc)) if expires else ""
    return Entry(key=key, status=status, source="PDRM", expires_at=at)


def full_count(model: dict[str, Entry], now: float) -> dict[tuple[str, str], int]:
    counts = {(kind, s): 0 for kind in ("phone", "account", "wallet", "proxy", "sender", "url", "domain")
              for s in ("reported", "confirmed", "revoked", "expired")}
    for e in model.values():
        status = e.status.value
        if (e.status is not Status.REVOKED and e.expires_at
                and datetime.fromisoformat(e.expires_at).timestamp() <= now):
            status = "expired"
        counts[e.key.partition(":")[0], status] += 1
    return counts


def loaded(model: dict[str, Entry]) -> Replica:
    """A replica holding ``model`` as if read from the index."""
    replica = Replica("redis://127.0.0.1:1", stored_snapshot=False)
    keys = list(model)
    codes = np.array([STATUS_CODES[model[k].status.value] | kind_bit(k) for k in keys], dtype=np.uint8)
    expiries = np.array([0 if model[k].status is Status.REVOKED or not model[k].expires_at
                         else int(datetime.fromisoformat(model[k].expires_at).timestamp()) for k in keys],
                        dtype=np.uint32)
    hashes = np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys))
    replica._install_snapshot(stored.Snapshot.of([(hashes, codes, expiries)], "0-0", "b1", 0.0))
    replica.ready.set()
    return replica


states = st.one_of(st.none(), st.tuples(st.sampled_from(list(Status)), st.sampled_from([0, 1, 2, 3, 5, 8, 13, 30])))
steps = st.lists(st.one_of(
    st.tuples(st.just("change"), st.sampled_from(KEYS), states),
    st.tuples(st.just("tick"), st.integers(0, 12)),
    st.tuples(st.just("merge"), st.none()),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), st.tuples(st.sampled_from(list(Status)), st.sampled_from([0, 5, 30]))),
       steps)
def test_counts_equal_a_full_count_after_any_changes(initial: dict, script: list) -> None:
    model = {k: entry(k, status, exp) for k, (status, exp) in initial.items()}
    replica = loaded(model)
    now = float(T0)
    assert replica.entry_counts(now) == full_count(model, now)
    for op, *args in script:
        if op == "change":
            key, state = args
            new = entry(key, *state) if state is not None else None
            if new is None:
                model.pop(key, None)
            else:
                model[key] = new
            replica.apply(key, new)
        elif op == "tick":
            now += args[0] + 0.5
            assert replica.entry_counts(now) == full_count(model, now)
        else:
            replica._merge_overlay()
    assert replica.entry_counts(now + 100) == full_count(model, now + 100)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), st.tuples(st.sampled_from(list(Status)), st.sampled_from([0, 5, 30]))),
       steps)
def test_lookups_find_the_active_entries_after_any_changes_and_merges(initial: dict, script: list) -> None:
    """A merge inserts the overlay's new keys into the sorted arrays: every answer stays, each key is held once."""
    model = {k: entry(k, status, exp) for k, (status, exp) in initial.items()}
    replica = loaded(model)
    now = float(T0)

    def expected() -> set[str]:
        return {k for k, e in model.items() if e.status is not Status.REVOKED
                and (not e.expires_at or datetime.fromisoformat(e.expires_at).timestamp() > now)}

    for op, *args in script:
        if op == "change":
            key, state = args
            new = entry(key, *state) if state is not None else None
            if new is None:
                model.pop(key, None)
            else:
                model[key] = new
            replica.apply(key, new)
        elif op == "tick":
            now += args[0] + 0.5
        else:
            replica._merge_overlay()
            assert replica._overlay == {} and replica._revoked == {}
            assert (replica._hashes[1:] > replica._hashes[:-1]).all()  # sorted, each key once
            assert len(replica._hashes) == len(model)  # deleted keys' rows dropped
        assert set(replica.candidates(KEYS, now)) == expected()
