"""A partition leader of the 3-broker KRaft cluster is killed (SIGKILL) under traffic.

Given a worker on a 3-broker cluster (replication factor 3, ``min.insync.replicas=2``) and calls and transfers
arriving all the time (every second call from a listed number, every third transfer to a listed mule), when
the broker leading a partition of the calls topic is killed without a clean shutdown (no leadership handed
over: the controller fences it once its heartbeats stop, then elects new leaders from the in-sync replicas),
then the traffic producers ride through it, the worker keeps deciding, and every listed call and transfer
acknowledged before, during and after the kill gets its commands (duplicates keep their ``command_id``). The
test measures the longest time without a decision around the kill and prints it.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from sekat.localstack.kafka_servers import KafkaCluster
from sekat.localstack.processes import free_port
from tests.support import (Collector, Record, Stack, Traffic, WorkerProcess, call_traffic, committed_to_end,
                           isolated_env, list_account, list_phone, transfer_traffic, unique, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(300)]

LISTED = "+60199999919"
MULE_BANK, MULE = "CIBBMYKL", "8001239919"


@pytest.fixture(scope="module")
def kafka_cluster(stack: Stack) -> Iterator[Stack]:
    """3 KRaft brokers (RF 3, min.insync.replicas=2) on free loopback ports, with the session's Redis."""
    base = Path(tempfile.mkdtemp(prefix="sekat-leader-"))
    kafka = KafkaCluster(base / "kafka", [free_port() for _ in range(3)],
                         controller_ports=[free_port() for _ in range(3)])
    try:
        kafka.start()
        yield Stack(kafka, stack.redis)  # type: ignore[arg-type]  # same face: .bootstrap
    finally:
        kafka.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_partition_leader_killed_under_traffic_loses_no_command(kafka_cluster: Stack, logs_dir: Path) -> None:
    name = unique("lkill")
    env = isolated_env(kafka_cluster, name, SEKAT_TOPIC_REPLICATION="3", SEKAT_METRICS_INTERVAL_S="1")
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start(90)
    s = worker.settings
    collector = Collector(s, [s.topic_block, s.topic_freeze, s.topic_decisions])
    listed_calls: list[str] = []
    to_mule: list[str] = []
    list_phone(s, LISTED, "KL/919")
    list_account(s, MULE_BANK, MULE)
    worker.wait_replica()
    calls = Traffic(s, s.topic_calls, call_traffic(LISTED, 2, listed_calls), rate=40).start()
    transfers = Traffic(s, s.topic_transfers, transfer_traffic(MULE_BANK, MULE, 3, to_mule), rate=20).start()
    try:
        wait_until("the worker deciding", lambda: worker.sample("sekat_commands_total"), lambda v: v >= 40)
        admin = KafkaAdminClient(**s.kafka_client_config())  # type: ignore[arg-type]
        try:
            leader = admin.describe_topics([s.topic_calls])[0]["partitions"][0]["leader_id"]
        finally:
            admin.close()
        victim = kafka_cluster.kafka.brokers[leader - 1]  # type: ignore[attr-defined]
        before = len(calls.sent), len(transfers.sent)
        os.kill(int(victim.pid_file.read_text()), signal.SIGKILL)
        killed_at = time.time()
        time.sleep(1)
        assert not victim.running()
        wait_until("traffic acknowledged after the kill", lambda: (len(calls.sent), len(transfers.sent)),
                   lambda v: v[0] >= before[0] + 600 and v[1] >= before[1] + 300, timeout=120)
        sent_calls, sent_transfers = calls.stop(), transfers.stop()

        wanted = {(e, "BLOCK_CALL") for e in set(listed_calls) & set(sent_calls)} | {
            (e, a) for e in set(to_mule) & set(sent_transfers) for a in ("HOLD_TRANSFER", "FREEZE_ACCOUNT")}

        def commands() -> list[Record]:
            return collector.matching(lambda r: r.topic != s.topic_decisions and "command_id" in r.json)
        wait_until("every command", lambda: wanted - {(r.json["event_id"], r.json["action"]) for r in commands()},
                   lambda missing: not missing, timeout=90, every=0.5)
        for topic in (s.topic_calls, s.topic_transfers):
            wait_until(f"{topic} decided to its end", lambda topic=topic: committed_to_end(s, f"{s.app_id}.screen", topic),
                       bool, timeout=60)
        time.sleep(1)  # late re-sends, if any, are counted too

        ids: dict[tuple[str, str], set[str]] = {}
        for r in commands():
            ids.setdefault((r.json["event_id"], r.json["action"]), set()).add(r.json["command_id"])
        assert set(ids) == wanted, "a command for an unlisted event, or one missing"
        assert all(len(v) == 1 for v in ids.values()), "a re-sent command keeps its command_id"
        duplicates = len(commands()) - len(ids)
        stamps = sorted(r.timestamp_ms / 1000 for r in collector.matching(lambda r: r.topic == s.topic_decisions))
        around = [t for t in stamps if t >= killed_at - 5]
        gap, gap_at = max((b - a, a) for a, b in pairwise(around))
        print(f"\nleader killed (broker {leader}): {len(sent_calls)} calls and {len(sent_transfers)} transfers "
              f"acknowledged ({before[0]}/{before[1]} before the kill; {calls.retries}+{transfers.retries} producer "
              f"retries); {len(wanted)} commands owed, all received, {duplicates} duplicates (same command_id); "
              f"longest time without a decision {gap:.1f}s, from {gap_at - killed_at:+.1f}s after the kill")
        assert worker.alive()
    finally:
        calls.stop()
        transfers.stop()
        collector.close()
        worker.stop()
