"""Derived reports for linked identifiers survive a crash of the reports agent (real Redis).

Given a report that links identifiers, when the agent dies after applying it but before its derived
reports are on the topic, then the re-delivered report derives them again: they are published before the
index is written, so the index never says "applied" while the derived reports are lost.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from sekat.blocklist.links import derived_id
from sekat.blocklist.store import BlocklistStore
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


def test_a_linked_report_applied_only_by_a_rebuild_still_reaches_its_linked_identifiers(stack: Stack) -> None:
    """A report filed while Redis was empty is applied by the replay alone: the replay publishes its derived
    reports itself (the reports agent, applying the report after the replay, finds nothing new to derive)."""
    from sekat.settings import Settings
    from sekat.streams.rebuild import rebuild
    from sekat.streams.topics import create_topics
    from tests.support import Collector, Producer, isolated_env

    settings = Settings.from_environ(isolated_env(stack, unique("lnkrb")))
    create_topics(settings)
    report = Report("r-2", datetime.now(timezone.utc), "phone", "+60123456780", Status.CONFIRMED, "PDRM",
                    links=("account:CIBBMYKL:8001234560",))
    producer = Producer(settings)
    producer.send(settings.topic_reports, report.to_json(), key=report.key.encode())
    producer.close()
    want = derived_id("r-2", "account:CIBBMYKL:8001234560")

    async def replay() -> None:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        try:
            result = await rebuild(settings, store)
            assert result.entries == 1 and await store.get(report.key) is not None
        finally:
            await store.close()

    asyncio.run(replay())
    collector = Collector(settings, [settings.topic_reports])
    try:
        found = collector.wait_for(lambda r: r.json.get("report_id") == want, timeout=15)
        assert found[0].key == b"account:CIBBMYKL:8001234560"
    finally:
        collector.close()
