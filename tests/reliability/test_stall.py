"""A worker that cannot make progress says so within the configured time, and recovers by itself.

Given a worker with ``SEKAT_STALL_AFTER_S=3`` and a listed caller, idle streams stay healthy however long
they wait; when the block topic refuses the worker's ``BLOCK_CALL`` commands (its ``max.message.bytes``
lowered below a command's size) and calls from the listed caller arrive, the worker retries the batch
with nothing committed, and within the stall time (plus one lag reading) ``/healthz`` answers 503 with
``"stalled": ["calls"]`` and ``sekat_stream_stalled{stream="calls"}`` is 1, transfers untouched; when the
topic accepts writes again the batch goes through, the lag drains and ``/healthz`` is 200 again.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from sekat.records import iso
from tests.support import (
    Producer, RefusedWrites, Stack, WorkerProcess, isolated_env, list_phone, unique, wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LISTED = "+60199999998"
STALL_AFTER_S = 3


def call(i: int, caller: str) -> dict[str, object]:
    return {"event_id": unique("c-"), "occurred_at": iso(datetime.now(timezone.utc)), "call_id": f"s{i}",
            "operator": "CELCOM", "caller": caller, "callee": f"+60123{i:06d}"}


def test_a_worker_whose_output_is_refused_turns_unhealthy_naming_the_stream_and_recovers(
        stack: Stack, logs_dir: Path) -> None:
    name = unique("stall")
    env = isolated_env(stack, name, SEKAT_METRICS_INTERVAL_S="1", SEKAT_STALL_AFTER_S=str(STALL_AFTER_S))
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    s = worker.settings
    block = RefusedWrites(s, s.topic_block)
    producer = Producer(s)
    calls_escaped = re.escape(s.topic_calls)
    lag = lambda: worker.sample(rf'sekat_consumer_lag_messages\{{partition="\d+",topic="{calls_escaped}"\}}')  # noqa: E731

    def health() -> tuple[int, list[str]]:
        status, body = worker.get("/healthz")
        return status, orjson.loads(body)["stalled"]

    try:
        list_phone(s, LISTED, "KL/6")
        worker.wait_replica()
        for i in range(5):
            producer.send(s.topic_calls, call(i, f"+601234{i:05d}"))
        wait_until("warm-up calls decided", lambda: worker.sample(r'sekat_events_total\{outcome="ALLOW",stream="calls"\}'),
                   lambda v: v == 5)
        # Idle for longer than the stall time: transfers never had input, calls has caught up.
        time.sleep(STALL_AFTER_S + 2)
        assert health() == (200, [])

        block.refuse()
        for i in range(5):
            producer.send(s.topic_calls, call(i, LISTED))
        sent_at = time.monotonic()
        # The stall clock starts with the first batch taken after the quiet spell.
        assert wait_until("/healthz naming the stalled stream", health, lambda v: v == (503, ["calls"]),
                          timeout=STALL_AFTER_S + 5, every=0.1)
        noticed_in = time.monotonic() - sent_at
        assert noticed_in > STALL_AFTER_S - 1  # not before the stall time (the first call went out just before)
        assert worker.sample(r'sekat_stream_stalled\{stream="calls"\}') == 1
        assert worker.sample(r'sekat_stream_stalled\{stream="transfers"\}') == 0
        assert worker.sample("sekat_send_errors_total") > 0 and worker.alive()

        block.accept()
        accepted_at = time.monotonic()
        wait_until("/healthz after the topic accepts writes", health, lambda v: v == (200, []), timeout=60)
        recovered_in = time.monotonic() - accepted_at
        wait_until("lag after the topic accepts writes", lag, lambda v: v == 0, timeout=30)
        assert worker.sample(r'sekat_stream_stalled\{stream="calls"\}') == 0
        print(f"\nstall: /healthz named calls stalled {noticed_in:.1f}s after the refused calls arrived "
              f"(SEKAT_STALL_AFTER_S={STALL_AFTER_S}); healthy again {recovered_in:.1f}s after the topic reopened")
    finally:
        try:
            block.close()
        finally:
            producer.close()
            worker.stop()
