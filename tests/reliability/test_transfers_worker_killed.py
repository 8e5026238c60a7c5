"""The worker is killed (SIGKILL) while it decides transfers under a steady stream, then started again.

Given one worker and transfers arriving all the time (every third to a listed mule account), when the worker
is killed mid-batch without any chance to clean up and started again (the only member of its group), then
the new process re-decides every batch the dead one had not committed: every transfer to the mule has its
HOLD_TRANSFER and its FREEZE_ACCOUNT command and its decision record, a transfer decided twice keeps its
``command_id``s, and every record on the input topic is decided (the group's committed offsets reach the end
of the topic). The test counts the duplicates and prints them with the time without decisions.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from sekat.localstack.processes import free_port
from tests.support import (Collector, Stack, Traffic, WorkerProcess, committed_to_end, isolated_env, list_account,
                           transfer_traffic, unique, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MULE_BANK, MULE = "CIBBMYKL", "8001234567"


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
    traffic = Traffic(s, s.topic_transfers, transfer_traffic(MULE_BANK, MULE, 3, to_mule), rate=150).start()
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
                   lambda: committed_to_end(s, f"{s.app_id}.screen", s.topic_transfers), bool, timeout=30)
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
        gap = max(b - a for a, b in pairwise(stamps)) / 1000
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
