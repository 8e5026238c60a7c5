"""The worker is killed (SIGKILL) while it decides transfers under a steady stream, then started again.

Given one worker and transfers arriving all the time (every third to a listed mule account), when the worker
is killed mid-batch without any chance to clean up and started again (the only member of its group), then
the new process re-decides every batch the dead one had not committed: every transfer to the mule has its
HOLD_TRANSFER and its FREEZE_ACCOUNT command and its decision record, a transfer decided twice keeps its
``command_id``s, and every record on the input topic is decided (the group's committed offsets reach the end
of the topic). The test counts the duplicates and prints them with the time without decisions.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from sekat.blocklist.store import BlocklistStore
from sekat.localstack.processes import free_port
from sekat.records import Status, iso
from sekat.settings import Settings
from tests.support import Collector, Stack, Traffic, WorkerProcess, file_report, isolated_env, unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MULE_BANK, MULE = "CIBBMYKL", "8001234567"


def list_account(settings: Settings, bank: str, account: str) -> None:
    async def go() -> None:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        try:
            await file_report(store, f"account:{bank}:{account}", Status.CONFIRMED, "PDRM", "mule account", "KL/19")
        finally:
            await store.close()

    asyncio.run(go())


def transfer_traffic(every: int, listed_ids: list[str]) -> Callable[[int], dict[str, object]]:
    """Transfers for ``Traffic``: every ``every``-th to the mule (its event id kept in ``listed_ids``)."""
    def make(i: int) -> dict[str, object]:
        event_id = unique("t-")
        to_mule = i % every == 0
        if to_mule:
            listed_ids.append(event_id)
        payee = {"bank": MULE_BANK, "account": MULE} if to_mule else {"bank": "PBBEMYKL", "account": f"4{i:09d}"}
        return {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "transfer_id": f"DN{i}",
                "amount": "900.00", "currency": "MYR", "payer": {"bank": "MBBEMYKL", "account": f"7{i:09d}"},
                "payee": payee}
    return make


def committed_is_end(settings: Settings, group: str, topic: str) -> bool:
    admin = KafkaAdminClient(**settings.kafka_client_config())  # type: ignore[arg-type]
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None)  # type: ignore[arg-type]
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(tps)
        committed = {tp: meta.offset for tp, meta in admin.list_group_offsets(group).get(group, {}).items()}
        return bool(tps) and all(committed.get(tp, -1) == ends[tp] for tp in tps)
    finally:
        consumer.close()
        admin.close()


def test_a_worker_killed_while_deciding_transfers_decides_every_one_after_a_restart(stack: Stack,
                                                                                     logs_dir: Path) -> None:
    name = unique("tkill")
    env = isolated_env(stack, name, SEKAT_METRICS_INTERVAL_S="1")
    worker = WorkerProcess(env, logs_dir / f"{name}-a.log").start()
    s = worker.settings
    collector = Collector(s, [s.topic_freeze, s.topic_decisions])
    to_mule: list[str] = []
    list_account(s, MULE_BANK, MULE)
    worker.wait_replica()
    traffic = Traffic(s, s.topic_transfers, transfer_traffic(3, to_mule), rate=150).start()
    successor: WorkerProcess | None = None
    try:
        wait_until("the worker deciding", lambda: worker.sample("sekat_commands_total"), lambda v: v >= 60)
        worker.stop(sig=signal.SIGKILL)
        killed_at = time.monotonic()
        successor = WorkerProcess(dict(env, SEKAT_WEB_PORT=str(free_port())), logs_dir / f"{name}-b.log").start()
        ready_in = time.monotonic() - killed_at
        time.sleep(2)  # transfers go on while the new process decides
        sent = traffic.stop()
        expected = set(to_mule) & set(sent)

        def is_expected(r: object) -> bool:
            return r.json.get("event_id") in expected  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            commands = collector.matching(lambda r: r.topic == s.topic_freeze and is_expected(r))
            decisions = collector.matching(lambda r: r.topic == s.topic_decisions and is_expected(r))
            if {(r.json["event_id"], r.json["action"]) for r in commands} == {
                    (e, a) for e in expected for a in ("HOLD_TRANSFER", "FREEZE_ACCOUNT")} and \
                    {r.json["event_id"] for r in decisions} == expected:
                break
            time.sleep(0.2)
        wait_until("every transfer on the topic decided and committed",
                   lambda: committed_is_end(s, f"{s.app_id}.screen", s.topic_transfers), bool, timeout=30)
        time.sleep(1)  # late re-sends, if any, are counted too
        commands = collector.matching(lambda r: r.topic == s.topic_freeze and is_expected(r))
        decisions = collector.matching(lambda r: r.topic == s.topic_decisions and is_expected(r))

        by_pair: dict[tuple[str, str], set[str]] = {}
        for r in commands:
            by_pair.setdefault((r.json["event_id"], r.json["action"]), set()).add(r.json["command_id"])
        missing = {(e, a) for e in expected for a in ("HOLD_TRANSFER", "FREEZE_ACCOUNT")} - set(by_pair)
        assert not missing, f"{len(missing)} commands missing after the restart"
        assert all(len(ids) == 1 for ids in by_pair.values()), "a re-decided transfer keeps its command_ids"
        assert {r.json["event_id"] for r in decisions} == expected, "transfers without a decision record"
        duplicates = len(commands) - len(by_pair)
        redecided = sum(n > 1 for n in Counter(r.json["event_id"] for r in decisions).values())
        stamps = sorted(r.timestamp_ms for r in decisions)
        gap = max(b - a for a, b in zip(stamps, stamps[1:])) / 1000
        print(f"\ntransfers worker killed: {len(sent)} transfers sent, {len(expected)} to the mule, "
              f"{len(commands)} commands ({duplicates} duplicates, same command_id), {len(decisions)} decision "
              f"records ({redecided} transfers decided twice); longest time without a decision {gap:.1f}s "
              f"(the new process ready {ready_in:.1f}s after the kill)")
        assert successor.alive()
    finally:
        traffic.stop()
        collector.close()
        worker.stop(sig=signal.SIGKILL)
        if successor is not None:
            successor.stop()
