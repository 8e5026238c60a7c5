"""Two writers apply reports on the same identifier at once: no filing is lost.

During a rebalance the reports partition of an identifier can be applied by two workers at once: the old
owner, frozen (a long GC pause, a stopped VM, ``SIGSTOP``) past its Kafka session with a batch read but not
yet written, and the new owner, which re-reads the partition from the last committed offset and goes on.
When the old owner wakes, its write must not replace the entry the new owner wrote since it read.

Given an identifier with filings from several agencies, when one writer reads the entry, a second writer
applies a newer filing and the first then writes (its ``publish`` hook, which ``BlocklistStore.apply`` awaits
between the read and the write, is where the second writer runs), then the entry holds every filing: the
first write is retried on the new entry. The process test does the same with real workers: worker A applies
a stream of filings on one identifier (and others), worker B joins mid-stream, the owner of the reports
partition is frozen with ``SIGSTOP`` until the other owns it and applies newer filings, then resumed; once the
group has read the whole topic, the identifier's entry has every filing's effect and the index equals a
rebuild from the topic.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from sekat.blocklist.store import BlocklistStore
from sekat.records import Report, Status
from tests.support import Stack, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PHONE = "+60123450019"


def filing(n: int, status: Status, source: str, at: datetime) -> Report:
    return Report(f"r-{n:04d}", at + timedelta(milliseconds=n), "phone", PHONE, status, source, case_ref=f"C/{n}",
                  reason="scam caller")


def test_a_write_racing_another_on_the_same_entry_is_retried_not_lost(stack: Stack) -> None:
    now = datetime.now(timezone.utc)

    async def scenario() -> None:
        prefix = unique("race") + ":"
        first = BlocklistStore.from_url(stack.redis.url, prefix, guarded=True)
        second = BlocklistStore.from_url(stack.redis.url, prefix, guarded=True)
        raced: list[int] = []

        async def second_writer_meanwhile(reports: list[Report]) -> None:
            if not raced:  # once: the retried write then goes through
                raced.append(1)
                await second.apply([filing(3, Status.CONFIRMED, "NSRC", now)])

        try:
            await first.mark_built("b1")
            await first.apply([filing(1, Status.REPORTED, "MCMC", now)])
            # the first writer reads the entry, then the second writes a newer filing before the first writes
            await first.apply([filing(2, Status.CONFIRMED, "PDRM", now)], publish=second_writer_meanwhile)
            entry = await first.get(f"phone:{PHONE}")
            assert entry is not None
            assert [r.report_id for r in entry.history] == ["r-0001", "r-0002", "r-0003"], "a filing was lost"
            assert entry.sources == ("MCMC", "PDRM", "NSRC") and entry.status is Status.CONFIRMED
            assert entry.report_count == 3
        finally:
            await first.wipe()
            await first.close()
            await second.close()

    asyncio.run(scenario())
