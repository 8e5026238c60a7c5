"""The worker is killed (SIGKILL) while its reports agent applies a stream of filings to the index.

Given one worker and agencies filing reports all the time (distinct numbers, and some numbers filed again by
other agencies: their batches publish a consolidated record before the index write), when the worker is
killed mid-stream without any chance to clean up and another worker of the same group starts, then the new
worker re-applies what the dead one had not committed: every filing is in the index (each number confirmed,
with every filing in its history), every listed number is blocked when it calls, and the index equals
``sekat blocklist rebuild`` from the topic. The test prints how long after the kill the filings were applied
again.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from sekat.localstack.processes import free_port
from sekat.records import iso
from tests.support import (Collector, Producer, Stack, Traffic, WorkerProcess, index_entries, isolated_env,
                           rebuilt_from_topic, report_body, report_key, unique, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

AGAIN = ("NSRC", "BNM")  # agencies filing a number again after PDRM


def test_a_worker_killed_while_applying_reports_loses_no_filing(stack: Stack, logs_dir: Path) -> None:
    name = unique("rkill")
    env = isolated_env(stack, name, SEKAT_METRICS_INTERVAL_S="1")
    worker = WorkerProcess(env, logs_dir / f"{name}-a.log").start()
    s = worker.settings
    filed: dict[str, list[str]] = {}  # number -> report ids filed on it

    def make(i: int) -> dict[str, object]:
        number, source = f"+60123{i:06d}", "PDRM"
        if i % 5 == 0:  # every fifth filing: a number filed by PDRM, then by each of AGAIN
            number, source = f"+60124{i // 5 // 3:06d}", ("PDRM", *AGAIN)[i // 5 % 3]
        report = report_body("phone", number, "confirmed", source, case_ref=f"{source}/{i}")
        filed.setdefault(number, []).append(str(report["report_id"]))
        return report

    applied = lambda w: w.sample("sekat_reports_applied_total")  # noqa: E731
    traffic = Traffic(s, s.topic_reports, make, rate=150, key=report_key, id_field="report_id").start()
    successor: WorkerProcess | None = None
    collector: Collector | None = None
    try:
        wait_until("the worker applying filings", lambda: applied(worker), lambda v: v >= 150, timeout=60)
        worker.stop(sig=signal.SIGKILL)
        killed_at = time.monotonic()
        time.sleep(2)  # filings go on while no worker runs
        sent = set(traffic.stop())
        successor = WorkerProcess(dict(env, SEKAT_WEB_PORT=str(free_port())), logs_dir / f"{name}-b.log").start()
        numbers = {n for n, ids in filed.items() if set(ids) & sent}

        def complete() -> int:
            index = index_entries(s)
            return sum(1 for n in numbers if f"phone:{n}" in index
                       and {r["report_id"] for r in index[f"phone:{n}"]["history"]} >= set(filed[n]) & sent)
        wait_until("every filing in the index", complete, lambda v: v == len(numbers), timeout=120, every=1)
        back_in = time.monotonic() - killed_at
        # The dead member's session in the reports agent's consumer group must expire before its partitions
        # move: within REPORTS_SESSION_TIMEOUT_S (10 s), not Faust's default minute.
        assert back_in < 35, f"filings applied again only {back_in:.1f}s after the kill"

        index = index_entries(s)
        for number in numbers:
            entry = index[f"phone:{number}"]
            assert entry["status"] == "confirmed"
            assert {r["report_id"] for r in entry["history"]} == set(filed[number]) & sent, number
        assert index == rebuilt_from_topic(env), "the index differs from a rebuild from the topic"

        # every listed number is blocked when it calls
        collector = Collector(s, [s.topic_block])
        calls = Producer(s)
        event_ids: dict[str, str] = {}
        try:
            for i, number in enumerate(sorted(numbers)):
                event_id = unique("c-")
                event_ids[event_id] = number
                calls.send(s.topic_calls, {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)),
                                           "call_id": f"k{i}", "operator": "CELCOM", "caller": number,
                                           "callee": "+60123456780"}, key=number.encode())
        finally:
            calls.close()
        blocked = collector.wait_for(lambda r: r.json.get("event_id") in event_ids, count=len(event_ids), timeout=60)
        assert {r.json["event_id"] for r in blocked} == set(event_ids)
        assert all(r.json["action"] == "BLOCK_CALL" for r in blocked)
        again = sum(len(set(ids) & sent) > 1 for n, ids in filed.items() if n in numbers)
        print(f"\nreports worker killed: {len(sent)} filings on {len(numbers)} numbers ({again} filed by several "
              f"agencies) acknowledged, {applied(successor):.0f} applied by the new worker; every filing in the "
              f"index {back_in:.1f}s after the kill (new worker started 2 s after it, when the filings stopped); index == rebuild; "
              f"{len(event_ids)} calls from them all blocked")
        assert successor.alive()
    finally:
        traffic.stop()
        if collector is not None:
            collector.close()
        worker.stop(sig=signal.SIGKILL)
        if successor is not None:
            successor.stop()
