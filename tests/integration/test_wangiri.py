"""One-ring (wangiri) calls end to end: a real worker, Kafka and Redis, the shipped policy with small thresholds.

Given calls that carry duration and answered, when one caller's unanswered one-ring calls reach the threshold
of distinct callees, the call that reaches it is labelled (blocked for a premium-rate prefix, at its lower
threshold) and the caller reported; answered or long-ringing calls do not count.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from sekat.records import iso
from sekat.rules.policy import DEFAULT_POLICY_FILE
from tests.support import Collector, Producer, Record, Stack, WorkerProcess, for_event, isolated_env, unique

pytestmark = pytest.mark.integration

GRACE = 1.0
WIDTH_MS = 600_000


def digits(n: int) -> str:
    return str(int(unique("")[:12], 16))[-n:].rjust(n, "0")


def mobile() -> str:
    return "+6012" + digits(7)


class Telco:
    def __init__(self, worker: WorkerProcess, out: Collector, producer: Producer) -> None:
        self.worker, self.out, self.producer, self.s = worker, out, producer, worker.settings
        self.redis = redis.Redis.from_url(self.s.redis_url)

    def call(self, caller: str, callee: str, duration: float, answered: bool) -> str:
        event_id = unique("c-")
        body = {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "call_id": unique("x"),
                "operator": "CELCOM", "caller": caller, "callee": callee, "duration": duration,
                "answered": answered}
        self.producer.send(self.s.topic_calls, body, key=caller.encode())
        return event_id

    def commands(self, event_id: str) -> list[Record]:
        return self.out.wait_for(lambda r: r.topic == self.s.topic_block and for_event(event_id)(r), 1, 30)

    def no_commands(self, *event_ids: str) -> bool:
        return not self.out.matching(lambda r: r.topic == self.s.topic_block and r.json.get("event_id") in event_ids)

    def settled(self, key: str, parties: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len({m.split(b"|")[0] for m in self.redis.zrange(f"{self.s.redis_prefix}rs:{key}", 0, -1)}) < parties:
            assert time.monotonic() < deadline, f"{key} never reached {parties} parties"
            time.sleep(0.05)
        time.sleep(GRACE)


@pytest.fixture(scope="module")
def telco(stack: Stack, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Telco]:
    name = unique("wng")
    policy: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    policy["rules"]["wangiri"]["params"].update(min_callees=4, premium_min_callees=2)
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    worker = WorkerProcess(isolated_env(stack, name, SEKAT_POLICY_FILE=str(path)), logs_dir / f"{name}.log").start()
    s = worker.settings
    out = Collector(s, [s.topic_block, s.topic_decisions, s.topic_reports])
    producer = Producer(s)
    t = Telco(worker, out, producer)
    try:
        yield t
    finally:
        producer.close()
        out.close()
        t.redis.close()
        worker.stop()


def test_a_burst_of_one_ring_calls_is_labelled_and_the_caller_reported(telco: Telco) -> None:
    caller = mobile()
    below = [telco.call(caller, mobile(), 1.0, False) for _ in range(3)]
    talked = telco.call(caller, mobile(), 95.0, True)  # a conversation: not one ring, not counted
    rang = telco.call(caller, mobile(), 25.0, False)  # rang 25 s: someone waited for an answer
    telco.settled(f"onering:{WIDTH_MS}:phone:{caller}", 3)
    assert telco.no_commands(*below, talked, rang)
    fourth = telco.call(caller, mobile(), 2.0, False)
    [label] = telco.commands(fourth)
    assert (label.json["action"], label.json["rule"], label.json["caller"]) == ("LABEL_CALL", "one-ring", caller)
    assert "4 distinct callees" in label.json["reasons"][0]
    [report] = telco.out.wait_for(lambda r: r.topic == telco.s.topic_reports and r.key == f"phone:{caller}".encode())
    assert (report.json["status"], report.json["source"]) == ("reported", "sekat-rule")


def test_one_ring_calls_from_a_premium_rate_prefix_are_blocked_at_the_lower_threshold(telco: Telco) -> None:
    caller = "+979" + digits(9)
    first = telco.call(caller, mobile(), 1.0, False)
    telco.settled(f"onering_premium:{WIDTH_MS}:phone:{caller}", 1)
    assert telco.no_commands(first)
    second = telco.call(caller, mobile(), 0.5, False)
    [block] = telco.commands(second)
    assert (block.json["action"], block.json["rule"]) == ("BLOCK_CALL", "one-ring")
    assert "+979" in block.json["reasons"][0]
