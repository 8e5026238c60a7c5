"""A worker is killed (SIGKILL) mid-stream while a second worker of the same group runs.

Given two workers sharing the input partitions and calls arriving all the time
(every other one from a listed caller), when one worker is killed without any
chance to clean up, then after the group rebalances (the dead member's session
times out) the survivor owns every partition and re-decides what the dead one
had not committed: every call from the listed caller has a BLOCK_CALL command,
and a call decided twice carries the same ``command_id`` both times. The test
counts the commands and the duplicates and prints them.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from sekat.localstack.processes import free_port
from tests.support import (Collector, Stack, Traffic, WorkerProcess, call_traffic, isolated_env, list_phone, unique,
                           wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

LISTED = "+60199999999"
PARTITIONS = 4


def assigned(worker: WorkerProcess, topic: str) -> int:
    """How many partitions of ``topic`` this worker's screening consumer owns (its lag gauge has one per partition)."""
    status, page = worker.get("/metrics")
    if status != 200:
        return 0
    return len(set(re.findall(rf'^sekat_consumer_lag_messages\{{partition="(\d+)",topic="{re.escape(topic)}"\}}',
                              page.decode(), re.M)))


def test_a_killed_worker_loses_no_command_and_duplicates_keep_their_id(stack: Stack, logs_dir: Path) -> None:
    name = unique("kill")
    env = isolated_env(stack, name, SEKAT_TOPIC_PARTITIONS=str(PARTITIONS), SEKAT_METRICS_INTERVAL_S="1")
    victim = WorkerProcess(env, logs_dir / f"{name}-a.log").launch()
    survivor = WorkerProcess(dict(env, SEKAT_WEB_PORT=str(free_port())), logs_dir / f"{name}-b.log").launch()
    victim.wait_ready()
    survivor.wait_ready()
    s = victim.settings
    collector = Collector(s, [s.topic_block])
    listed_calls: list[str] = []

    make = call_traffic(LISTED, 2, listed_calls)

    traffic: Traffic | None = None
    try:
        wait_until("both workers own partitions",
                   lambda: (assigned(victim, s.topic_calls), assigned(survivor, s.topic_calls)),
                   lambda v: v[0] > 0 and v[1] > 0 and sum(v) == PARTITIONS, timeout=60)
        list_phone(s, LISTED, "KL/9")
        victim.wait_replica()
        survivor.wait_replica()
        traffic = Traffic(s, s.topic_calls, make, rate=200).start()
        wait_until("the victim deciding", lambda: victim.sample('sekat_commands_total'), lambda v: v >= 30)
        victim.stop(sig=signal.SIGKILL)
        killed_at = time.monotonic()
        time.sleep(3)
        sent = traffic.stop()
        traffic = None

        wait_until("the survivor owning every partition", lambda: assigned(survivor, s.topic_calls),
                   lambda v: v == PARTITIONS, timeout=60)
        rebalanced_in = time.monotonic() - killed_at
        expected = set(listed_calls) & set(sent)
        commands = collector.wait_for(lambda r: r.json.get("event_id") in expected, count=len(expected), timeout=60)
        deadline = time.monotonic() + 60
        while {r.json["event_id"] for r in commands} != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            commands = collector.matching(lambda r: r.json.get("event_id") in expected)
        time.sleep(1)  # late re-sends, if any, are counted too
        commands = collector.matching(lambda r: r.json.get("event_id") in expected)

        by_event: dict[str, list[str]] = {}
        for r in commands:
            assert r.json["action"] == "BLOCK_CALL"
            by_event.setdefault(r.json["event_id"], []).append(r.json["command_id"])
        missing = expected - set(by_event)
        assert not missing, f"{len(missing)} listed calls have no command after the rebalance"
        assert all(len(set(ids)) == 1 for ids in by_event.values()), "a re-decided call keeps its command_id"
        duplicates = sum(len(ids) - 1 for ids in by_event.values())
        print(f"\nworker killed: {len(sent)} calls sent, {len(expected)} had to be blocked, {len(commands)} "
              f"BLOCK_CALL commands received, {duplicates} duplicates (same command_id), survivor owned every "
              f"partition {rebalanced_in:.1f}s after the kill")
        assert survivor.alive()
    finally:
        if traffic is not None:
            traffic.stop()
        collector.close()
        victim.stop(sig=signal.SIGKILL)
        survivor.stop()
