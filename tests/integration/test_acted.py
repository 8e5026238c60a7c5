"""Who acted on an entry (sekat.release.acted) on a real Redis: the races the release sweep must survive.

Given institutions that acted on an entry, when the sweep reads it, a revocation or a new action landing
between the sweep's read and its write is never lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sekat.blocklist.store import BlocklistStore
from sekat.records import Entry, Status
from sekat.release.acted import ActedStore
from tests.support import Stack, unique

pytestmark = pytest.mark.integration
MULE = "account:CIBBMYKL:8001234567"


def run(stack: Stack, scenario: Any) -> Any:
    async def go() -> Any:
        prefix = unique("act") + ":"
        acted = ActedStore.from_url(stack.redis.url, prefix)
        store = BlocklistStore.from_url(stack.redis.url, prefix)
        try:
            return await scenario(acted, store)
        finally:
            await acted.close()
            await store.close()
    return asyncio.run(go())


def test_a_revocation_marked_while_the_sweep_reschedules_is_not_overwritten(stack: Stack) -> None:
    async def scenario(acted: ActedStore, store: BlocklistStore) -> None:
        await acted.record([(MULE, "RELEASE_ACCOUNT|CIBBMYKL"), (MULE, "RELEASE_ACCOUNT|CIBBMYKL")], now=100.0)
        assert await acted.due(100.0) == [(MULE, 100.0)]
        # the sweep read score 100 and found the entry active; meanwhile the entry is revoked
        await store.put(Entry(MULE, Status.REVOKED, "NSRC", "appeal upheld", report_id="r-2"))
        assert await acted.reschedule([(MULE, 100.0, 9e9)]) == 0  # compare-and-set: the revocation wins
        assert await acted.due(100.0) == [(MULE, 0.0)]
        # a key nobody acted on is not added by a revocation
        await store.put(Entry("phone:+60123456789", Status.REVOKED, "NSRC", "x", report_id="r-3"))
        assert [k for k, _ in await acted.due(1e10)] == [MULE]
    run(stack, scenario)


def test_forget_keeps_an_action_recorded_after_the_sweep_read_the_members(stack: Stack) -> None:
    async def scenario(acted: ActedStore, store: BlocklistStore) -> None:
        await acted.record([(MULE, "RELEASE_ACCOUNT|CIBBMYKL")], now=100.0)
        seen = (await acted.members([MULE]))[MULE]
        await acted.record([(MULE, "RELEASE_ACCOUNT|RHBBMYKL")], now=200.0)  # a late hold on a stale replica
        assert await acted.forget(MULE, seen) is False
        assert (await acted.members([MULE]))[MULE] == ["RELEASE_ACCOUNT|RHBBMYKL"]
        assert await acted.due(150.0) == [(MULE, 100.0)]  # still due: released at the next sweep
        assert await acted.forget(MULE, ["RELEASE_ACCOUNT|RHBBMYKL"]) is True
        assert await acted.due(1e10) == [] and (await acted.members([MULE]))[MULE] == []
        await acted.record([(MULE, "RELEASE_ACCOUNT|CIBBMYKL")], now=300.0)
        await acted.reschedule([(MULE, 300.0, float("inf"))])  # never expires: only a revocation brings it back
        assert await acted.due(1e12) == []
    run(stack, scenario)
