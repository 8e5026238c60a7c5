"""The entry counts the replica keeps (sekat_blocklist_entries) equal a full count of the index at every step.

The full count reads every entry of the index as the leader's timer once did: each entry under its own status,
or ``expired`` when past its expiry and not revoked. Expiries here fall on whole seconds: the replica keeps
them in whole seconds, as its lookups use them.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest

from sekat.blocklist.replica import Replica
from sekat.blocklist.store import BlocklistStore
from sekat.records import Report, Status
from tests.support import Stack, unique

pytestmark = pytest.mark.integration
DAY = 86_400


async def full_count(store: BlocklistStore, now: float) -> dict[tuple[str, str], int]:
    """Every entry of the index read and counted (nonzero counts only)."""
    counts: dict[tuple[str, str], int] = {}
    async for batch in store.scan_entries():
        for entry in batch:
            status = entry.status.value
            if (entry.status is not Status.REVOKED and entry.expires_at
                    and datetime.fromisoformat(entry.expires_at).timestamp() <= now):
                status = "expired"
            kind = entry.key.partition(":")[0]
            counts[kind, status] = counts.get((kind, status), 0) + 1
    return counts


def nonzero(counts: dict[tuple[str, str], int] | None) -> dict[tuple[str, str], int]:
    assert counts is not None
    return {k: n for k, n in counts.items() if n}


def report(key: str, status: Status, at: float, ttl_days: int = 0, source: str = "PDRM") -> Report:
    kind, _, rest = key.partition(":")
    bank, value = rest.split(":", 1) if kind == "account" else ("", rest)
    return Report(report_id=unique("r-"), reported_at=datetime.fromtimestamp(at, timezone.utc), kind=kind,
                  value=value, status=status, source=source, bank=bank, reason="scam", ttl_days=ttl_days,
                  filed_by="test")


def key(kind: str, i: int) -> str:
    return f"phone:+6011{i:07d}" if kind == "phone" else f"account:CIBBMYKL:80012{i:05d}"


async def caught_up(store: BlocklistStore, replica: Replica, prefix: str) -> None:
    last = await store.client.xrevrange(f"{prefix}bl:changes", count=1)
    target = last[0][0].decode() if last else "0-0"
    deadline = time.monotonic() + 10
    while replica.change_id != target:
        assert time.monotonic() < deadline, "replica did not catch up"
        await asyncio.sleep(0.01)


async def test_replica_counts_equal_a_full_count_through_changes_expiries_merges_and_a_stored_start(
        stack: Stack) -> None:
    prefix = unique("cnt") + ":"
    store = BlocklistStore.from_url(stack.redis.url, prefix)
    t0 = float(int(time.time()))
    # Before the replica starts: both kinds, each status, expired, never expiring, expiring soon, revoked.
    first: list[Report] = []
    for kind in ("phone", "account"):
        for i in range(40):
            status = (Status.REPORTED, Status.CONFIRMED)[i % 2]
            at, ttl = [(t0 - 2 * DAY, 1), (t0, 0), (t0 - DAY + 100, 1), (t0, 30)][i % 4]
            first.append(report(key(kind, i), status, at, ttl))
    await store.apply(first)
    await store.apply([report(key(kind, i), Status.REVOKED, t0 + 1, source="NSRC")
                       for kind in ("phone", "account") for i in range(0, 40, 5)])
    await store.mark_built("b1")  # a built index: the first replica's read is stored for the next
    replica = Replica(stack.redis.url, prefix)
    await replica.start()
    follower = asyncio.create_task(replica.follow())
    try:
        for now in (t0 + 1, t0 + 50):
            assert nonzero(replica.entry_counts(now)) == await full_count(store, now)

        # Following: rewrites of entries the arrays hold, new keys (the overlay), new revoked keys, relistings.
        changes = [
            report(key("phone", 2), Status.CONFIRMED, t0 - DAY + 100, 1),  # same expiry, new status
            report(key("account", 6), Status.CONFIRMED, t0 + 2, 1),  # renewed: a later expiry
            report(key("phone", 0), Status.REPORTED, t0 + 2, 2),  # revoked, listed again
            report(key("account", 3), Status.REVOKED, t0 + 2, source="NSRC"),
            report(key("phone", 100), Status.REPORTED, t0 - DAY + 200, 1),
            report(key("account", 100), Status.CONFIRMED, t0 + 2),
            report(key("phone", 101), Status.REVOKED, t0 + 2, source="NSRC"),
            report(key("account", 102), Status.REPORTED, t0 + 2, 1),
        ]
        await store.apply(changes)
        await store.apply(changes[:3])  # re-delivered: announced again, nothing changes
        await store.apply([report(key("account", 102), Status.REVOKED, t0 + 3, source="NSRC")])
        await caught_up(store, replica, prefix)
        for now in (t0 + 60, t0 + 150, t0 + 250, t0 + 2 * DAY, t0 + 3 * DAY):
            assert nonzero(replica.entry_counts(now)) == await full_count(store, now), now

        # An overlay merge recounts from the arrays: still the same counts.
        await asyncio.to_thread(replica._merge_overlay)
        await store.apply([report(key("phone", 2), Status.REVOKED, t0 + 4, source="NSRC"),
                           report(key("phone", 103), Status.CONFIRMED, t0 + 4, 40)])
        await caught_up(store, replica, prefix)
        for now in (t0 + 3 * DAY, t0 + 35 * DAY, t0 + 50 * DAY):
            assert nonzero(replica.entry_counts(now)) == await full_count(store, now), now

        # A worker starting from the stored snapshot (and the changes since) counts the same.
        second = Replica(stack.redis.url, prefix)
        await second.start()
        try:
            assert second.stats.loaded_from == "stored snapshot"
            now = t0 + 50 * DAY
            assert nonzero(second.entry_counts(now)) == await full_count(store, now)
        finally:
            await second.close()
    finally:
        follower.cancel()
        await replica.close()
        await store.close()
