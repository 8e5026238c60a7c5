"""Behavioural rules end to end: a real worker, real Kafka, real Redis, and a policy file under test control.

Given a policy with small thresholds, when events arrive just below and just above each threshold (in order,
out of order, across two workers of one group), then the right commands, decisions and automatic reports
appear; a policy change under the running worker changes its behaviour, an invalid one is refused, and a
shadow rule writes decisions but sends nothing.
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import yaml

from sekat.blocklist.store import BlocklistStore
from sekat.records import Status, iso
from sekat.rules.policy import DEFAULT_POLICY_FILE
from tests.support import (Collector, Producer, Record, Stack, WorkerProcess, file_report, for_event, isolated_env,
                           unique)

pytestmark = pytest.mark.integration

GRACE = 1.0  # after an event's state is in Redis, time for its batch's output to reach Kafka


def policy_under_test() -> dict[str, Any]:
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    policy["version"] = "it-1"
    policy["rules"]["mule_inflow"]["params"].update(min_payers=3, window_minutes=10)
    policy["rules"]["call_burst"]["params"].update(min_callees=3, window_seconds=60)
    policy["rules"]["cross_channel"]["params"].update(lookback_minutes=30, min_amount="5000.00")
    return policy


def digits(n: int) -> str:
    return str(int(unique("")[:12], 16))[-n:].rjust(n, "0")


def mobile() -> str:
    return "+6012" + digits(7)


class World:
    def __init__(self, worker: WorkerProcess, collector: Collector, producer: Producer, policy_path: Path) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.out = collector
        self.producer = producer
        self.policy_path = policy_path
        self.redis = redis.Redis.from_url(self.settings.redis_url)
        self.rs = f"{self.settings.redis_prefix}rs:"

    def list(self, key: str, status: str = "confirmed") -> None:
        async def go() -> None:
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                await file_report(store, key, Status(status), "PDRM", "scam", "KL/2026/9")
            finally:
                await store.close()
        asyncio.run(go())
        self.worker.wait_replica()

    def transfer(self, payer: str, payee: str, at: datetime | None = None, amount: str = "1500.00",
                 phone: str | None = None, partition: int | None = None) -> str:
        event_id = unique("t-")
        body = {"event_id": event_id, "occurred_at": iso(at or datetime.now(timezone.utc)),
                "transfer_id": unique("DN"), "amount": amount,
                "payer": {"bank": "MBBEMYKL", "account": payer, **({"phone": phone} if phone else {})},
                "payee": {"bank": "CIBBMYKL", "account": payee}}
        self.producer._p.send(self.settings.topic_transfers, orjson.dumps(body), key=payer.encode(),
                              partition=partition).get(timeout=15)
        return event_id

    def call(self, caller: str, callee: str, network: str | None = None) -> str:
        event_id = unique("c-")
        body = {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "call_id": unique("x"),
                "operator": "CELCOM", "caller": caller, "callee": callee,
                **({"caller_network": network} if network else {})}
        self.producer.send(self.settings.topic_calls, body, key=caller.encode())
        return event_id

    def commands(self, event_id: str, count: int = 1, timeout: float = 30.0) -> list[Record]:
        topics = (self.settings.topic_freeze, self.settings.topic_block)
        return self.out.wait_for(lambda r: r.topic in topics and for_event(event_id)(r), count, timeout)

    def no_commands(self, *event_ids: str) -> bool:
        topics = (self.settings.topic_freeze, self.settings.topic_block)
        return not self.out.matching(lambda r: r.topic in topics and r.json.get("event_id") in event_ids)

    def decision(self, event_id: str) -> dict[str, Any]:
        return self.out.wait_for(for_event(event_id, self.settings.topic_decisions), timeout=30)[0].json

    def reports(self, key: str) -> list[Record]:
        return self.out.matching(lambda r: r.topic == self.settings.topic_reports and r.key == key.encode())

    def settled(self, key: str, parties: int, timeout: float = 30.0) -> None:
        """Wait until the worker has recorded ``parties`` distinct parties in the window ``key``
        ("{family}:{width ms}:{identifier}", members "{party}|{slot}l|h"), then for its output."""
        deadline = time.monotonic() + timeout
        while len({m.split(b"|")[0] for m in self.redis.zrange(self.rs + key, 0, -1)}) < parties:
            assert time.monotonic() < deadline, f"{key} never reached {parties} parties"
            time.sleep(0.05)
        time.sleep(GRACE)

    def reload_count(self, result: str) -> float:
        _, page = self.worker.get("/metrics")
        found = re.search(rf'sekat_policy_reloads_total{{result="{result}"}} ([0-9.]+)', page.decode())
        return float(found.group(1)) if found else 0.0

    def write_policy(self, policy: dict[str, Any] | str, expect: str) -> None:
        before = self.reload_count(expect)
        self.policy_path.write_text(policy if isinstance(policy, str) else yaml.safe_dump(policy))
        deadline = time.monotonic() + 15
        while self.reload_count(expect) <= before:
            assert time.monotonic() < deadline, f"worker never counted a policy reload as {expect}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def world(stack: Stack, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    name = unique("rul")
    policy_path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy_path.write_text(yaml.safe_dump(policy_under_test()))
    worker = WorkerProcess(isolated_env(stack, name, SEKAT_POLICY_FILE=str(policy_path)),
                           logs_dir / f"{name}.log").start()
    s = worker.settings
    collector = Collector(s, [s.topic_freeze, s.topic_block, s.topic_decisions, s.topic_deadletter, s.topic_reports])
    producer = Producer(s)
    w = World(worker, collector, producer, policy_path)
    try:
        yield w
    finally:
        producer.close()
        collector.close()
        w.redis.close()
        worker.stop()


def test_mule_inflow_holds_at_the_third_distinct_payer_and_reports_the_payee(world: World) -> None:
    payee = digits(10)
    key = f"account:CIBBMYKL:{payee}"
    below = [world.transfer(digits(12), payee), world.transfer(digits(12), payee)]
    world.settled(f"inflow:600000:{key}", 2)
    assert world.no_commands(*below)
    event_id = world.transfer(digits(12), payee)
    [hold] = world.commands(event_id)
    assert hold.json["action"] == "HOLD_TRANSFER" and hold.json["rule"] == "mule-inflow"
    assert hold.json["rules"] == ["mule_inflow@1"] and "3 distinct payers" in hold.json["reasons"][0]
    decision = world.decision(event_id)
    assert decision["outcome"] == "HOLD" and decision["policy_version"] == "it-1"
    [match] = decision["matches"]
    assert (match["rule"], match["version"], match["mode"]) == ("mule_inflow", 1, "enforce")
    [report] = world.out.wait_for(lambda r: r.topic == world.settings.topic_reports and r.key == key.encode())
    body = report.json
    assert (body["kind"], body["bank"], body["value"], body["status"], body["source"]) == \
        ("account", "CIBBMYKL", payee, "reported", "sekat-rule")
    assert body["report_id"] in decision["report_ids"]
    # A fourth payer is held too, but the payee is not reported a second time.
    world.commands(world.transfer(digits(12), payee))
    time.sleep(GRACE)
    assert len(world.reports(key)) == 1


def test_mule_inflow_on_event_time_a_late_transfer_counts_in_its_own_window(world: World) -> None:
    now = datetime.now(timezone.utc)
    inside, outside = digits(10), digits(10)
    for payee in (inside, outside):
        world.transfer(digits(12), payee, at=now)
        world.transfer(digits(12), payee, at=now + timedelta(seconds=1))
    world.settled(f"inflow:600000:account:CIBBMYKL:{inside}", 2)
    world.settled(f"inflow:600000:account:CIBBMYKL:{outside}", 2)
    late_inside = world.transfer(digits(12), inside, at=now - timedelta(minutes=9))  # arrives last, occurred first
    late_outside = world.transfer(digits(12), outside, at=now - timedelta(minutes=11))
    [hold] = world.commands(late_inside)
    assert hold.json["rule"] == "mule-inflow"
    world.settled(f"inflow:600000:account:CIBBMYKL:{outside}", 3)
    assert world.no_commands(late_outside)


def test_cross_channel_holds_a_new_payee_after_a_call_from_a_listed_number(world: World) -> None:
    customer, scammer = mobile(), mobile()
    world.list(f"phone:{scammer}", status="reported")
    call_id = world.call(scammer, customer)
    assert world.commands(call_id)[0].json["action"] == "LABEL_CALL"
    deadline = time.monotonic() + 15
    while not world.redis.exists(f"{world.rs}warn:phone:{customer}"):
        assert time.monotonic() < deadline, "the warning call was never recorded"
        time.sleep(0.05)
    payer, new = digits(12), digits(10)
    # No call to this other customer: paying someone new is fine.
    quiet = world.transfer(digits(12), new, phone=mobile())
    first = world.transfer(payer, new, phone=customer)
    [hold] = world.commands(first)
    assert hold.json["rule"] == "cross-channel-cooling-off"
    assert call_id in hold.json["reasons"][0] and first in hold.json["reasons"][0]
    assert scammer not in hold.json["reasons"][0]
    # The same payee again is no longer new: just below the amount passes, at the amount is held.
    known = new
    deadline = time.monotonic() + 15
    while not world.redis.exists(f"{world.rs}paid:account:MBBEMYKL:{payer}|account:CIBBMYKL:{known}"):
        assert time.monotonic() < deadline, "the payment was never remembered"
        time.sleep(0.05)
    below = world.transfer(payer, known, amount="4999.99", phone=customer)
    above = world.transfer(payer, known, amount="5000.00", phone=customer)
    assert "5000.00" in world.commands(above)[0].json["reasons"][0]
    time.sleep(GRACE)
    assert world.no_commands(quiet, below)


def test_spoofed_domestic_caller_id_over_an_international_route_is_blocked(world: World) -> None:
    spoofed = world.call(mobile(), mobile(), network="international")
    local = world.call(mobile(), mobile(), network="domestic")
    [block] = world.commands(spoofed)
    assert block.json["action"] == "BLOCK_CALL" and block.json["rule"] == "spoofed-caller-id"
    time.sleep(GRACE)
    assert world.no_commands(local)


def test_call_burst_labels_the_third_distinct_callee_and_reports_the_caller(world: World) -> None:
    caller = mobile()
    below = [world.call(caller, mobile()), world.call(caller, mobile())]
    world.settled(f"outbound:60000:phone:{caller}", 2)
    assert world.no_commands(*below)
    third = world.call(caller, mobile())
    [label] = world.commands(third)
    assert label.json["action"] == "LABEL_CALL" and label.json["rule"] == "call-burst"
    [report] = world.out.wait_for(lambda r: r.topic == world.settings.topic_reports
                                  and r.key == f"phone:{caller}".encode())
    assert report.json["status"] == "reported" and report.json["source"] == "sekat-rule"


def test_policy_hot_reload_shadow_mode_and_refusal_of_an_invalid_policy(world: World) -> None:
    policy = policy_under_test()
    shadow = copy.deepcopy(policy)
    shadow["version"] = "it-2"
    shadow["rules"]["spoofed_caller"]["mode"] = "shadow"
    try:
        world.write_policy(shadow, "applied")
        event_id = world.call(mobile(), mobile(), network="international")
        decision = world.decision(event_id)
        assert decision["outcome"] == "ALLOW" and decision["shadow_outcome"] == "BLOCK"
        assert decision["policy_version"] == "it-2" and decision["command_ids"] == []
        assert decision["matches"][0]["mode"] == "shadow" and decision["shadow_reasons"]
        time.sleep(GRACE)
        assert world.no_commands(event_id)
        _, page = world.worker.get("/metrics")
        assert b'sekat_rule_matches_total{mode="shadow",rule="spoofed_caller"}' in page

        broken = copy.deepcopy(shadow)
        broken["rules"]["spoofed_caller"]["params"]["country_code"] = "sixty"
        world.write_policy(broken, "refused")
        assert "spoofed_caller.params.country_code" in world.worker.log_tail(20000)
        still = world.call(mobile(), mobile(), network="international")
        assert world.decision(still)["policy_version"] == "it-2"  # the previous policy stays in force
    finally:
        world.write_policy(policy, "applied")
    assert world.commands(world.call(mobile(), mobile(), network="international"))[0].json["action"] == "BLOCK_CALL"


def test_an_invalid_policy_stops_the_worker_at_start_up_naming_rule_and_field(world: World, tmp_path: Path) -> None:
    bad = policy_under_test()
    bad["rules"]["mule_inflow"]["params"]["min_payers"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEKAT_")}, **world.worker.env,
           "SEKAT_POLICY_FILE": str(path)}
    run = subprocess.run([sys.executable, "-m", "sekat.cli", "worker"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1
    assert "mule_inflow.params.min_payers" in run.stderr


def test_two_workers_in_one_group_share_the_window_and_it_survives_a_worker_leaving(
        world: World, logs_dir: Path) -> None:
    env = {**world.worker.env, "SEKAT_WEB_PORT": str(_free_port())}
    second = WorkerProcess(env, logs_dir / f"{env['SEKAT_APP_ID']}-2.log").start()
    try:
        payee = digits(10)
        key = f"account:CIBBMYKL:{payee}"
        # one payer on each partition: with two workers, each is decided by a different one
        world.transfer(digits(12), payee, partition=0)
        world.transfer(digits(12), payee, partition=1)
        world.settled(f"inflow:600000:{key}", 2, timeout=60)
        second.stop()  # its partition moves to the first worker; the window is in Redis, not in it
        # whichever partition the second worker had, one of these is now decided by the worker that took it over
        for partition in (0, 1):
            [hold] = world.commands(world.transfer(digits(12), payee, partition=partition), timeout=60)
            # The first hold's automatic report may already be applied (the payee is then listed as reported
            # too): the window must still be full on whichever worker decides.
            assert any(ref.startswith("mule_inflow@") for ref in hold.json["rules"]), hold.json
    finally:
        second.stop()


def _free_port() -> int:
    from sekat.localstack.processes import free_port
    return free_port()
