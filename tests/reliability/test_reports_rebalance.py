"""Two writers apply reports on the same identifier at once: no filing is lost.

During a rebalance the reports partition of an identifier can be applied by two workers at once: the old
owner, frozen (a long GC pause, a stopped VM, ``SIGSTOP``) past its Kafka session with a batch read but not
yet written, and the new owner, which re-reads the partition from the last committed offset and goes on.
When the old owner wakes, its write must not replace the entry the new owner wrote since it read.

Given an identifier with filings from several agencies, when one writer reads the entry, a second writer
applies a newer filing and the first then writes (its ``publish`` hook, which ``BlocklistStore.apply`` awaits
between the read and the write, is where the second writer runs), then the entry holds every filing: the
first write is retried on the new entry. The process test does the same with real workers: worker A applies
a stream of filings on one identifier (with a long history) and others, worker B joins mid-stream (the group
rebalances), the owner of the reports partition is frozen with ``SIGSTOP`` just after Redis ran its read
(``MONITOR`` shows the WATCH and the MGET, and no EXEC follows), the other worker takes the partition over once
the frozen one's session expires and applies newer filings and everything after them, and only then is the
frozen one resumed (so nothing filed later could mend a stale write): the identifier's entry has every
filing's effect (history, sources, status) and the index equals ``sekat blocklist rebuild`` from the topic.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Self

import pytest

from sekat.blocklist.lifecycle import RECENT_KEPT
from sekat.blocklist.applied import reports_group
from sekat.blocklist.store import BlocklistStore
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisClusterServers
from sekat.records import Report, Status
from tests.support import (Producer, Stack, Traffic, WorkerProcess, committed_to_end, index_entries, isolated_env,
                           rebuilt_from_topic, report_body, report_key, unique, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PHONE = "+60123450019"


def filing(n: int, status: Status, source: str, at: datetime) -> Report:
    return Report(f"r-{n:04d}", at + timedelta(milliseconds=n), "phone", PHONE, status, source, case_ref=f"C/{n}",
                  reason="scam caller")


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A 3-master Redis Cluster on free loopback ports (as ``sekat up --redis-cluster`` starts)."""
    base = Path(tempfile.mkdtemp(prefix="sekat-race-"))
    servers = RedisClusterServers(base / "redis", [free_port() for _ in range(3)])
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("redis", ["one server", "cluster"])
def test_a_write_racing_another_on_the_same_entry_is_retried_not_lost(stack: Stack, redis: str,
                                                                      request: pytest.FixtureRequest) -> None:
    now = datetime.now(timezone.utc)
    url = stack.redis.url if redis == "one server" else request.getfixturevalue("redis_cluster").url

    async def scenario() -> None:
        prefix = unique("race") + ":"
        first = BlocklistStore.from_url(url, prefix, guarded=True)
        second = BlocklistStore.from_url(url, prefix, guarded=True)
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


class Commands:
    """Every command the Redis server runs, as ``MONITOR`` shows them, read in a background thread."""

    def __init__(self, url: str) -> None:
        import redis

        self.seen: list[tuple[str, str]] = []  # (client address, command)
        self._client = redis.Redis.from_url(url)
        self._monitor = self._client.monitor()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._monitor.__enter__()
        self._thread.start()
        return self

    def _run(self) -> None:
        for command in self._monitor.listen():  # the replicas' blocking reads end at least once a second
            self.seen.append((f"{command['client_address']}:{command['client_port']}", command["command"]))
            if self._stop.is_set():
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._monitor.__exit__(*exc)
        self._client.close()


def freeze_between_read_and_write(worker: WorkerProcess, commands: Commands, prefix: str) -> WorkerProcess | None:
    """SIGSTOP ``worker`` once its reports agent has WATCHed and read entries and before it writes them (EXEC).

    Returns the frozen worker, or None (resumed) when the write got out before the signal landed.
    """
    assert worker.proc is not None
    start, deadline = len(commands.seen), time.monotonic() + 20
    watching: set[str] = set()
    while time.monotonic() < deadline:
        for client, command in commands.seen[start:]:
            start += 1
            if command.startswith("WATCH") and f"{prefix}index:built" in command:
                watching.add(client)
            elif command.startswith("MGET") and client in watching:
                time.sleep(0.003)  # its reply read: the worker merging (a long history) or publishing
                worker.proc.send_signal(signal.SIGSTOP)
                time.sleep(0.5)  # what it sent before the signal landed is seen by now
                if any(c == client and cmd.startswith(("EXEC", "MULTI")) for c, cmd in commands.seen[start:]):
                    worker.proc.send_signal(signal.SIGCONT)
                    return None
                return worker
            elif command.startswith(("EXEC", "UNWATCH", "DISCARD")):
                watching.discard(client)
        time.sleep(0.001)
    return None


HOT = "+60123459919"
AGENCIES = ("PDRM", "NSRC", "BNM", "MCMC")


def test_a_frozen_owner_waking_after_the_rebalance_loses_no_filing(stack: Stack, logs_dir: Path) -> None:
    name = unique("rbal")
    # One partition per topic: whichever worker owns the reports partition applies every filing.
    env = isolated_env(stack, name, SEKAT_TOPIC_PARTITIONS="1", SEKAT_METRICS_INTERVAL_S="1")
    first = WorkerProcess(env, logs_dir / f"{name}-a.log").start()
    s = first.settings
    second = WorkerProcess(dict(env, SEKAT_WEB_PORT=str(free_port())), logs_dir / f"{name}-b.log")
    hot: list[str] = []  # report ids filed on HOT

    def make(i: int) -> dict[str, object]:
        if i % 2:
            return report_body("phone", f"+60125{i:06d}", "confirmed", AGENCIES[i % 4])
        report = report_body("phone", HOT, ("reported", "confirmed")[i // 2 % 2], AGENCIES[i // 2 % 4],
                             case_ref=f"HOT/{i}")
        hot.append(str(report["report_id"]))
        return report

    # A long history on HOT: each batch that touches it spends its time between the read and the write.
    producer = Producer(s)
    try:
        for i in range(300):
            report = make(2 * i)
            producer.send(s.topic_reports, report, key=report_key(report))
    finally:
        producer.close()
    wait_until("the history applied", lambda: first.sample("sekat_reports_applied_total"), lambda v: v >= 300)
    applied = {id(first): 0.0, id(second): 0.0}

    def applying(workers: list[WorkerProcess], over: float = 1.5) -> list[WorkerProcess]:
        """The workers whose reports agent applied filings in the last ``over`` seconds."""
        was = {id(w): w.sample("sekat_reports_applied_total") for w in workers}
        time.sleep(over)
        now = {id(w): w.sample("sekat_reports_applied_total") for w in workers}
        applied.update(now)
        return [w for w in workers if now[id(w)] > was[id(w)]]

    traffic = Traffic(s, s.topic_reports, lambda i: make(600 + i), rate=60, key=report_key,
                      id_field="report_id").start()
    frozen: WorkerProcess | None = None
    try:
        time.sleep(2)
        second.start()  # mid-stream: the group rebalances and the partition may move
        owner = wait_until("one owner applying", lambda: applying([first, second]), lambda v: len(v) == 1,
                           timeout=60)[0]
        other = second if owner is first else first
        assert owner.proc is not None
        with Commands(s.redis_url) as commands:
            frozen, attempts = freeze_between_read_and_write(owner, commands, s.redis_prefix), 1
            while frozen is None and attempts < 20:
                frozen, attempts = freeze_between_read_and_write(owner, commands, s.redis_prefix), attempts + 1
        assert frozen is not None, "never froze the owner between its read and its write"
        frozen_at = time.monotonic()
        wait_until("the other worker owning the partition", lambda: applying([other]), lambda v: v == [other],
                   timeout=60)
        took_over = time.monotonic() - frozen_at
        time.sleep(2)  # the new owner applies newer filings on HOT
        sent = set(traffic.stop())
        through = lambda: committed_to_end(s, reports_group(s), s.topic_reports)  # noqa: E731
        # The new owner applies everything, its last consolidated records included, before the frozen one wakes:
        # nothing filed later on HOT could mend what a stale write would undo.
        wait_until("the new owner through the whole topic", through, bool, timeout=60)
        time.sleep(1)
        wait_until("the new owner through the whole topic", through, bool, timeout=60)
        owner.proc.send_signal(signal.SIGCONT)  # its batch's write goes on, against the entry as it read it
        frozen = None
        time.sleep(3)
        wait_until("the group through the whole topic", through, bool, timeout=60)
        log_text = owner.log_path.read_text(errors="replace")
        raced = log_text.count("changed by another writer")

        index = index_entries(s)
        entry = index[f"phone:{HOT}"]
        filed = set(hot) & (sent | set(hot[:300]))
        # the entry keeps its most recent filings in full and counts the older ones (blocklist/lifecycle.py)
        have = {r["report_id"] for r in entry["history"]}
        folded = entry["summary"]["report_count"] if entry.get("summary") else 0
        assert have <= filed and len(have) == min(len(filed), RECENT_KEPT)
        assert entry["report_count"] == len(have) + folded == len(filed), \
            f"{len(filed) - entry['report_count']} filings on {HOT} lost"
        assert set(entry["sources"]) == set(AGENCIES) and entry["status"] == "confirmed"
        assert index == rebuilt_from_topic(env), "the index differs from a rebuild from the topic"
        print(f"\nrebalance with a frozen owner: {len(filed)} filings on one number ({len(sent)} streamed in all); "
              f"the other worker applied them {took_over:.1f}s after the freeze; every filing counted in the entry, "
              f"index == rebuild; {applied[id(first)]:.0f} + {applied[id(second)]:.0f} applied by the two workers; the "
              f"woken worker's write met a newer entry {raced} time(s) and merged again; froze it between read and "
              f"write at attempt {attempts}")
        assert first.alive() and second.alive()
    finally:
        if frozen is not None and frozen.proc is not None:
            frozen.proc.send_signal(signal.SIGCONT)
        traffic.stop()
        first.stop()
        second.stop()
