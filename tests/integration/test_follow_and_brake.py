"""End to end on the real broker, Redis, worker and API: follow the money, the safety brake, attestation.

One worker for the module, with a small brake limit for reported entries (10 commands a minute) and the shipped
policy except that ``blocklist_match`` does not check payers: with it, any listed account's payments are held
whatever the trail says, which would hide whether the *trail* holds a transfer within its window and lets it
go beyond it (the shipped policy adds those holds on top; the unit tests cover that combination).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import yaml

from sekat.blocklist.store import BlocklistStore
from sekat.records import Status, iso
from sekat.rules.policy import DEFAULT_POLICY_FILE
from tests.support import (ApiProcess, Collector, Producer, Record, RefusedWrites, Stack, WorkerProcess,
                           file_report, for_event, isolated_env, sekat, unique, unique_letters)

pytestmark = pytest.mark.integration

GRACE = 1.5  # after a decision is on its topic, time for anything else of its batch to arrive
ENTRY_MAX = 10


def digits(n: int) -> str:
    return str(int(unique("")[:12], 16))[-n:].rjust(n, "0")


class Desk:
    def __init__(self, worker: WorkerProcess, api: ApiProcess, out: Collector, producer: Producer) -> None:
        self.worker, self.api, self.out, self.producer = worker, api, out, producer
        self.s = worker.settings
        self.redis = redis.Redis.from_url(self.s.redis_url)
        self.http = httpx.Client(base_url=api.url, timeout=20)

    def list(self, key: str, status: str = "confirmed", source: str = "PDRM") -> None:
        async def go() -> None:
            store = BlocklistStore.from_url(self.s.redis_url, self.s.redis_prefix)
            try:
                await file_report(store, key, Status(status), source, "scam", "KL/2026/10")
            finally:
                await store.close()
        asyncio.run(go())
        self.worker.wait_replica()

    def transfer(self, payer: tuple[str, str], payee: tuple[str, str], at: datetime, amount: str) -> str:
        event_id = unique("t-")
        body = {"event_id": event_id, "occurred_at": iso(at), "transfer_id": unique("DN"), "amount": amount,
                "currency": "MYR", "payer": {"bank": payer[0], "account": payer[1]},
                "payee": {"bank": payee[0], "account": payee[1]}}
        self.producer.send(self.s.topic_transfers, body, key=payer[1].encode())
        return event_id

    def call(self, caller: str, network: str, attestation: Any = None) -> str:
        event_id = unique_letters("c-")
        body = {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "call_id": unique("x"),
                "operator": "CELCOM", "caller": caller, "callee": "+6012" + digits(7), "caller_network": network}
        if attestation is not None:
            body["attestation"] = attestation
        self.producer.send(self.s.topic_calls, body, key=caller.encode())
        return event_id

    def decision(self, event_id: str) -> dict[str, Any]:
        return self.out.wait_for(for_event(event_id, self.s.topic_decisions), timeout=30)[0].json

    def commands(self, event_id: str) -> dict[str, dict[str, Any]]:
        """The commands of an event by action, once its decision is out (commands go in the same batch)."""
        self.decision(event_id)
        time.sleep(0.2)
        topics = (self.s.topic_freeze, self.s.topic_block)
        found = self.out.matching(lambda r: r.topic in topics and for_event(event_id)(r))
        return {r.json["action"]: r.json for r in found}

    def follow_report(self, key: str) -> Any:
        return lambda r: r.topic == self.s.topic_reports and r.key == key.encode() \
            and r.json.get("filed_by") == "sekat-follow"

    def reports(self, key: str) -> list[Record]:
        return self.out.matching(self.follow_report(key))

    def screened(self, payee: str, timeout: float = 30.0) -> None:
        """Wait until the worker screened a transfer to ``payee`` (its inflow window has it; ALLOW writes no
        decision)."""
        deadline = time.monotonic() + timeout
        while not self.redis.keys(f"{self.s.redis_prefix}rs:inflow:*:{payee}"):
            assert time.monotonic() < deadline, f"no transfer to {payee} was screened"
            time.sleep(0.05)

    def wait_trail(self, key: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while (raw := self.redis.get(f"{self.s.redis_prefix}rs:trail:{key}")) is None:
            assert time.monotonic() < deadline, f"the trail never reached {key}"
            time.sleep(0.05)
        return raw.decode()

    def metric(self, name: str, dimension: str) -> float:
        _, page = self.worker.get("/metrics")
        for line in page.decode().splitlines():
            if line.startswith(f'{name}{{dimension="{dimension}"}} '):
                return float(line.split()[-1])
        raise AssertionError(f"{name} not served")

    def key(self, agency: str, scopes: str) -> str:
        result = sekat(self.worker.env, "apikey", "create", "--agency", agency, "--scopes", scopes)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture(scope="module")
def desk(stack: Stack, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    name = unique("fol")
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    policy["rules"]["blocklist_match"]["params"]["roles"] = ["payee", "payee_proxy", "caller"]
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    env = isolated_env(stack, name, SEKAT_POLICY_FILE=str(path), SEKAT_BRAKE_ACCOUNT_REPORTED_MAX=str(ENTRY_MAX),
                       SEKAT_BRAKE_PHONE_REPORTED_MAX=str(ENTRY_MAX), SEKAT_BRAKE_RULE_MAX="1000",
                       SEKAT_BRAKE_SOURCE_MAX="1000", SEKAT_BRAKE_WINDOW_S="60")
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    api = ApiProcess(env, logs_dir / f"{name}-api.log").start()
    s = worker.settings
    out = Collector(s, [s.topic_freeze, s.topic_block, s.topic_decisions, s.topic_reports, s.topic_deadletter])
    producer = Producer(s)
    d = Desk(worker, api, out, producer)
    try:
        yield d
    finally:
        d.http.close()
        d.redis.close()
        producer.close()
        out.close()
        api.stop()
        worker.stop()


def test_a_two_hop_money_trail_is_held_within_the_window_and_not_beyond_it(desk: Desk) -> None:
    a, b, c, d, e = (("MBBEMYKL", digits(12)), ("CIBBMYKL", digits(10)), ("RHBBMYKL", digits(10)),
                     ("PBBEMYKL", digits(10)), ("HLBBMYKL", digits(10)))
    key = {name: f"account:{bank}:{number}" for name, (bank, number) in zip("abcde", (a, b, c, d, e))}
    desk.list(key["a"])  # a confirmed mule
    t0 = datetime.now(timezone.utc)

    # Hop 1: money leaves the listed account: held, the payee liened for the amount and reported.
    first = desk.transfer(a, b, t0, "5000.00")
    sent = desk.commands(first)
    assert set(sent) == {"HOLD_TRANSFER", "HOLD_AMOUNT"}
    assert sent["HOLD_TRANSFER"]["bank"] == "MBBEMYKL" and sent["HOLD_TRANSFER"]["rule"] == "follow-the-money"
    lien = sent["HOLD_AMOUNT"]
    assert (lien["bank"], lien["account"], lien["amount"], lien["currency"]) == \
        ("CIBBMYKL", f"CIBBMYKL:{b[1]}", "5000.00", "MYR")
    [report] = desk.out.wait_for(desk.follow_report(key["b"]))
    body = report.json
    assert (body["status"], body["source"], body["case_ref"]) == ("reported", "sekat-follow", f"follow/{first}")
    assert key["a"] in body["reason"] and "hop 1" in body["reason"] and first in body["reason"]
    assert body["report_id"] in desk.decision(first)["report_ids"]
    assert desk.wait_trail(key["b"]).startswith(f"1|{int(t0.timestamp() * 1000)}|5000.00|MYR|{key['a']}|")

    # Hop 2, two minutes later: held again, liened for what of the money moved on, reported citing b.
    second = desk.transfer(b, c, t0 + timedelta(minutes=2), "3000.00")
    sent = desk.commands(second)
    assert set(sent) == {"HOLD_TRANSFER", "HOLD_AMOUNT"}
    assert sent["HOLD_TRANSFER"]["bank"] == "CIBBMYKL" and sent["HOLD_AMOUNT"]["amount"] == "3000.00"
    [report] = desk.out.wait_for(desk.follow_report(key["c"]))
    assert "hop 2" in report.json["reason"] and key["b"] in report.json["reason"]
    assert desk.wait_trail(key["c"]).startswith("2|")

    # Hop 3 is past the depth (2): the money leaving c is held, but d is neither liened nor reported.
    third = desk.transfer(c, d, t0 + timedelta(minutes=4), "1000.00")
    assert set(desk.commands(third)) == {"HOLD_TRANSFER"}
    assert "trail ends at hop 2" in desk.decision(third)["reasons"][0]

    # Beyond the window: b moves money 11 minutes after it arrived (window 10): not followed, not held.
    late = desk.transfer(b, e, t0 + timedelta(minutes=11), "800.00")
    desk.screened(key["e"])
    time.sleep(GRACE)
    assert desk.out.matching(for_event(late)) == []  # allowed: no decision, no command
    assert desk.reports(key["d"]) == [] and desk.reports(key["e"]) == []
    assert desk.redis.get(f"{desk.s.redis_prefix}rs:trail:{key['e']}") is None


def test_an_entry_driving_a_flood_of_freezes_is_braked_to_shadow_then_re_armed(desk: Desk) -> None:
    merchant = ("CIBBMYKL", digits(10))
    other = ("CIBBMYKL", digits(10))
    target = f"entry:account:{merchant[0]}:{merchant[1]}"
    desk.list(f"account:{merchant[0]}:{merchant[1]}", "reported")  # a popular merchant, wrongly reported
    desk.list(f"account:{other[0]}:{other[1]}")
    now = datetime.now(timezone.utc)

    # Each payment to it is held: 1 command a decision, limit 10 a minute.
    flood = [desk.transfer(("MBBEMYKL", digits(12)), merchant, now, "25.00") for _ in range(13)]
    for event_id in flood:
        desk.decision(event_id)
    [trip] = desk.out.wait_for(lambda r: r.topic == desk.s.topic_decisions and r.json.get("stream") == "brake"
                               and r.json.get("target") == target and r.json.get("action") == "trip")
    assert trip.json["limit"] == ENTRY_MAX and trip.json["count"] > ENTRY_MAX and trip.json["window_s"] == 60
    assert desk.metric("sekat_brake_trips_total", "entry") == 1
    assert desk.metric("sekat_brake_engaged", "entry") == 1
    assert merchant[1] not in desk.worker.log_tail(20000)  # logged masked

    # Braked: decided and recorded in shadow, nothing sent; another listed account still acts.
    braked = desk.transfer(("MBBEMYKL", digits(12)), merchant, now, "25.00")
    decision = desk.decision(braked)
    assert decision["outcome"] == "ALLOW" and decision["shadow_outcome"] == "HOLD"
    assert decision["matches"][0]["mode"] == "shadow" and "safety brake" in decision["shadow_reasons"][0]
    assert set(desk.commands(desk.transfer(("MBBEMYKL", digits(12)), other, now, "25.00"))) == \
        {"HOLD_TRANSFER", "FREEZE_ACCOUNT"}
    time.sleep(GRACE)
    assert desk.commands(braked) == {}

    # Re-arm through the API: scope-checked, the target validated, audited.
    reader, authority = desk.key("BNM", "read"), desk.key("NSRC", "read,rearm")
    state = desk.http.get("/v1/brake", params={"purpose": "incident INC-42"}, headers={"X-API-Key": reader})
    assert state.status_code == 200 and target in [t["target"] for t in state.json()["tripped"]]
    why = {"target": target, "reason": "merchant listing under appeal"}
    refused = desk.http.post("/v1/brake/rearm", json=why, headers={"X-API-Key": reader})
    assert refused.status_code == 403 and "rearm" in refused.json()["detail"]["message"]
    bad = desk.http.post("/v1/brake/rearm", json={**why, "target": "merchant"}, headers={"X-API-Key": authority})
    assert bad.status_code == 422 and bad.json()["detail"]["field"] == "target"
    no_reason = desk.http.post("/v1/brake/rearm", json={"target": target}, headers={"X-API-Key": authority})
    assert no_reason.status_code == 422 and no_reason.json()["detail"]["field"] == "reason"
    done = desk.http.post("/v1/brake/rearm", json=why, headers={"X-API-Key": authority})
    assert done.status_code == 200, done.text
    assert done.json()["rearmed_by"].startswith("NSRC") and done.json()["trip"]["target"] == target
    again = desk.http.post("/v1/brake/rearm", json=why, headers={"X-API-Key": authority})
    assert again.status_code == 404
    [audit] = desk.out.wait_for(lambda r: r.topic == desk.s.topic_decisions and r.json.get("action") == "rearm"
                                and r.json.get("target") == target)
    assert audit.json["reason"] == "merchant listing under appeal" and audit.json["by"].startswith("NSRC")
    log = desk.http.get("/v1/brake", params={"purpose": "incident INC-42"},
                        headers={"X-API-Key": reader}).json()["log"]
    assert [e["event"] for e in log[:2]] == ["rearm", "trip"]

    # Re-armed: the workers act on it again within about a second.
    deadline = time.monotonic() + 10
    while desk.metric("sekat_brake_engaged", "entry") != 0:
        assert time.monotonic() < deadline, "the worker never saw the re-arm"
        time.sleep(0.1)
    assert set(desk.commands(desk.transfer(("MBBEMYKL", digits(12)), merchant, now, "25.00"))) == {"HOLD_TRANSFER"}


def test_an_entry_braked_while_reported_is_acted_on_once_confirmed_and_its_trip_lifted_with_a_record(
        desk: Desk) -> None:
    # Given a reported mule braked by the flood of holds it drew, when an authority confirms it, then the next
    # payment to it is held and the account frozen, and the worker lifts the trip, audit record first.
    mule = ("CIBBMYKL", digits(10))
    key = f"account:{mule[0]}:{mule[1]}"
    target = f"entry:{key}"
    desk.list(key, "reported")
    now = datetime.now(timezone.utc)
    for event_id in [desk.transfer(("MBBEMYKL", digits(12)), mule, now, "40.00") for _ in range(13)]:
        desk.decision(event_id)
    [trip] = desk.out.wait_for(lambda r: r.topic == desk.s.topic_decisions and r.json.get("action") == "trip"
                               and r.json.get("target") == target)
    assert trip.json["status"] == "reported" and trip.json["limit"] == ENTRY_MAX
    braked = desk.decision(desk.transfer(("MBBEMYKL", digits(12)), mule, now, "40.00"))
    assert braked["outcome"] == "ALLOW" and braked["shadow_outcome"] == "HOLD"

    desk.list(key, "confirmed")
    acted = desk.transfer(("MBBEMYKL", digits(12)), mule, now, "40.00")
    assert set(desk.commands(acted)) == {"HOLD_TRANSFER", "FREEZE_ACCOUNT"}
    assert desk.decision(acted)["matches"][0]["mode"] == "enforce"
    [lift] = desk.out.wait_for(lambda r: r.topic == desk.s.topic_decisions and r.json.get("action") == "lift"
                               and r.json.get("target") == target)
    assert lift.json["trip"]["tripped_at"] == trip.json["at"] and lift.json["trip"]["status"] == "reported"
    assert lift.json["by"] == trip.json["by"] and "confirmed by PDRM" in lift.json["reason"]
    deadline = time.monotonic() + 10
    while desk.redis.hget(f"{desk.s.redis_prefix}brake:tripped", target) is not None:
        assert time.monotonic() < deadline, "the trip was never lifted in Redis"
        time.sleep(0.05)
    reader = desk.key("BNM", "read")
    state = desk.http.get("/v1/brake", params={"purpose": "incident INC-42"}, headers={"X-API-Key": reader}).json()
    assert target not in [t["target"] for t in state["tripped"]]
    assert [e["event"] for e in state["log"] if e.get("target") == target][:2] == ["lift", "trip"]
    assert mule[1] not in desk.worker.log_tail(20000)  # logged masked

    # Confirmed, it is counted under the confirmed limit (off): the flood goes on being stopped, payment by payment.
    for i, event_id in enumerate([desk.transfer(("MBBEMYKL", digits(12)), mule, now, "40.00")
                                  for _ in range(2 * ENTRY_MAX)]):
        assert set(desk.commands(event_id)) == {"HOLD_TRANSFER", "FREEZE_ACCOUNT"}, i
    assert desk.redis.hget(f"{desk.s.redis_prefix}brake:tripped", target) is None


def test_a_confirmed_scam_account_is_never_braked_however_many_payments_it_draws(desk: Desk) -> None:
    mule = ("CIBBMYKL", digits(10))
    desk.list(f"account:{mule[0]}:{mule[1]}")  # confirmed by an authority: every payment to it is stopped
    now = datetime.now(timezone.utc)
    flood = [desk.transfer(("MBBEMYKL", digits(12)), mule, now, "25.00") for _ in range(3 * ENTRY_MAX)]
    for i, event_id in enumerate(flood):
        assert set(desk.commands(event_id)) == {"HOLD_TRANSFER", "FREEZE_ACCOUNT"}, i
    assert desk.redis.hget(f"{desk.s.redis_prefix}brake:tripped", f"entry:account:{mule[0]}:{mule[1]}") is None


def test_a_re_arm_kafka_does_not_record_does_not_happen(desk: Desk) -> None:
    # Given a braked target, when the decisions topic refuses the re-arm's audit record, then the API answers
    # 503 and the target stays braked; once the topic takes writes again, the re-arm is recorded and done.
    target = f"entry:account:CIBBMYKL:{digits(10)}"
    tripped = f"{desk.s.redis_prefix}brake:tripped"
    trip = orjson.dumps({"target": target, "dimension": "entry", "count": 40, "limit": ENTRY_MAX, "window_s": 60,
                         "tripped_at": iso(datetime.now(timezone.utc)), "tripped_by": "test"})
    desk.redis.hset(tripped, target, trip)
    authority = desk.key("NSRC", "read,rearm")
    why = {"target": target, "reason": "listing revoked on appeal"}
    audited = lambda r: r.topic == desk.s.topic_decisions and r.json.get("action") == "rearm" \
        and r.json.get("target") == target  # noqa: E731
    decisions = RefusedWrites(desk.s, desk.s.topic_decisions)
    try:
        decisions.refuse()
        refused = desk.http.post("/v1/brake/rearm", json=why, headers={"X-API-Key": authority})
        assert refused.status_code == 503, refused.text
        assert desk.redis.hget(tripped, target) == trip, "re-armed without an audit record"
        assert "not re-armed" in refused.text
        listed = desk.http.get("/v1/brake", params={"purpose": "incident INC-42"},
                               headers={"X-API-Key": authority}).json()
        assert target in [t["target"] for t in listed["tripped"]]
        assert all(e.get("target") != target for e in listed["log"])
    finally:
        decisions.close()
    time.sleep(GRACE)
    assert desk.out.matching(audited) == []
    deadline = time.monotonic() + 20  # until the broker applies the restored limit
    while (done := desk.http.post("/v1/brake/rearm", json=why, headers={"X-API-Key": authority})).status_code == 503:
        assert time.monotonic() < deadline, done.text
        assert desk.redis.hget(tripped, target) == trip
        time.sleep(0.5)
    assert done.status_code == 200, done.text
    assert desk.redis.hget(tripped, target) is None
    [audit] = desk.out.wait_for(audited)
    assert audit.json["trip"]["count"] == 40 and audit.json["reason"] == "listing revoked on appeal"


def test_caller_attestation_a_passes_b_labels_c_blocks_and_a_bad_level_is_dead_lettered(desk: Desk) -> None:
    caller = "+6012" + digits(7)
    trusted = desk.call(caller, "international", "A")
    partial = desk.call(caller, "international", "b")
    gateway = desk.call(caller, "international", "C")
    bad = desk.call(caller, "international", "Z")
    assert set(desk.commands(partial)) == {"LABEL_CALL"}
    assert set(desk.commands(gateway)) == {"BLOCK_CALL"}
    [dead] = desk.out.wait_for(lambda r: r.topic == desk.s.topic_deadletter
                               and orjson.loads(__import__("base64").b64decode(r.json["original_b64"]))
                               .get("event_id") == bad)
    assert (dead.json["reason"], dead.json["field"]) == ("invalid_value", "attestation")
    time.sleep(GRACE)
    assert desk.out.matching(for_event(trusted)) == []  # allowed: no decision, no command
