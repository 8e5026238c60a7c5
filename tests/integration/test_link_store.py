"""Derived reports for linked identifiers survive a crash of the reports agent (real Redis).

Given a report that links identifiers, when the agent dies after applying it but before its derived
reports are on the topic, then the re-delivered report derives them again: they are published before the
index is written, so the index never says "applied" while the derived reports are lost.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from blocklist.links import derived_id
from blocklist.store import BlocklistStore
from sekat.records import Report, Status
from tests.support import Stack, unique

pytestmark = pytest.mark.integration


class Crash(Exception):
    pass


def test_a_crash_before_the_derived_reports_are_published_leaves_the_index_unwritten(stack: Stack) -> None:
    report = Report("r-1", datetime.now(timezone.utc), "phone", "+60123456789", Status.CONFIRMED, "PDRM",
                    links=("account:CIBBMYKL:8001234567",))

    async def scenario() -> None:
        store = BlocklistStore.from_url(stack.redis.url, unique("lnk") + ":")
        published: list[Report] = []

        async def crash(reports: list[Report]) -> None:
            raise Crash()

        async def publish(reports: list[Report]) -> None:
            published.extend(reports)

        try:
            with pytest.raises(Crash):
                await store.apply([report], crash)
            assert await store.get(report.key) is None  # nothing written: the re-delivery is not a no-op
            changed, pending = await store.apply([report], publish)
            assert [e.key for e in changed] == [report.key]
            assert [r.report_id for r in published] == [derived_id("r-1", "account:CIBBMYKL:8001234567")]
            assert pending == published
            again, _ = await store.apply([report], publish)  # re-delivered after a successful write
            assert again == [] and len(published) == 1
        finally:
            await store.close()

    asyncio.run(scenario())
