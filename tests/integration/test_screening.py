"""End to end on a real broker and Redis: listed identifiers produce commands.

Given an identifier on the blocklist, when an event naming it arrives on the
input topic, then the right command reaches the right institution's key on the
command topic; clean, revoked, expired and emergency numbers produce nothing;
bad input goes to the dead letters and the worker keeps answering.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from sekat.blocklist.store import BlocklistStore
from sekat.records import Report, Status, iso
from sekat.redaction import mask_identifiers
from tests.support import (Collector, Producer, Stack, WorkerProcess, for_event, isolated_env, unique,
                           unique_letters)

pytestmark = pytest.mark.integration


class World:
    """The running system as a user sees it: list things, send events, read commands."""

    def __init__(self, worker: WorkerProcess, collector: Collector, producer: Producer) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.out = collector
        self.producer = producer

    def _store(self, fn):  # run one store call on a fresh connection
        async def go():
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                return await fn(store)
            finally:
                await store.close()
        return asyncio.run(go())

    def _apply(self, key: str, status: str, source: str, reason: str, case_ref: str = "",
               reported_at: datetime | None = None, ttl_days: int = 0) -> None:
        """Apply a report to the index the way the reports agent does (BlocklistStore.apply)."""
        kind, _, rest = key.partition(":")
        bank, value = rest.split(":", 1) if kind == "account" else ("", rest)
        report = Report(unique("r-"), reported_at or datetime.now(timezone.utc), kind, value, Status(status),
                        source, bank, case_ref, reason, ttl_days)
        self._store(lambda s: s.apply([report]))
        self.worker.wait_replica()

    def list(self, key: str, status: str = "confirmed", expired: bool = False) -> None:
        if expired:  # filed two days ago with a one-day ttl
            self._apply(key, status, "PDRM", "scam", "KL/2026/123",
                        datetime.now(timezone.utc) - timedelta(days=2), ttl_days=1)
        else:
            self._apply(key, status, "PDRM", "scam", "KL/2026/123")

    def revoke(self, key: str) -> None:
        self._apply(key, "revoked", "NSRC", "appeal upheld")

    def listed(self, key: str) -> bool:
        return self._store(lambda s: s.get(key)) is not None

    def call(self, caller: str, event_id: str | None = None, operator: str = "CELCOM", **extra) -> str:
        event_id = event_id or unique("c-")
        body = {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "call_id": unique("call-"),
                "operator": operator, "type": "voice", "caller": caller, "callee": "+60123456780", **extra}
        self.producer.send(self.settings.topic_calls, body, key=caller.encode())
        return event_id

    def transfer(self, payee_account: str | None = "8001234567", payee_bank: str = "CIBBMYKL",
                 payer_account: str = "5140 1234 5678", proxy: str | None = None, event_id: str | None = None) -> str:
        event_id = event_id or unique("t-")
        payee: dict = {"bank": payee_bank}
        if payee_account is not None:
            payee["account"] = payee_account
        if proxy is not None:
            payee["proxy"] = {"type": "MOBILE", "value": proxy}
        body = {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "transfer_id": unique("DN"),
                "channel": "DUITNOW", "amount": "1500.00", "currency": "MYR",
                "payer": {"bank": "MBBEMYKL", "account": payer_account, "phone": "+60123456789"}, "payee": payee}
        self.producer.send(self.settings.topic_transfers, body, key=payer_account.encode())
        return event_id

    def commands(self, event_id: str, count: int = 1, timeout: float = 20.0):
        topics = (self.settings.topic_freeze, self.settings.topic_block)
        return self.out.wait_for(lambda r: r.topic in topics and for_event(event_id)(r), count, timeout)

    def no_commands(self, event_id: str) -> bool:
        topics = (self.settings.topic_freeze, self.settings.topic_block)
        return not self.out.matching(lambda r: r.topic in topics and for_event(event_id)(r))


@pytest.fixture(scope="module")
def world(stack: Stack, logs_dir: Path) -> Iterator[World]:
    name = unique("scr")
    worker = WorkerProcess(isolated_env(stack, name), logs_dir / f"{name}.log").start()
    s = worker.settings
    collector = Collector(s, [s.topic_freeze, s.topic_block, s.topic_decisions, s.topic_deadletter])
    producer = Producer(s)
    try:
        yield World(worker, collector, producer)
    finally:
        producer.close()
        collector.close()
        worker.stop()


def random_mobile() -> tuple[str, str]:
    """A fresh Malaysian mobile number, as (national format with separators, E.164)."""
    digits = str(int(unique("")[:8], 16))[-7:].rjust(7, "0")
    return f"012-{digits[:3]} {digits[3:]}", f"+6012{digits}"


def random_account() -> tuple[str, str]:
    digits = str(int(unique("")[:10], 16))[-10:].rjust(10, "0")
    return f"{digits[:3]}-{digits[3:6]} {digits[6:]}", digits


def test_listed_caller_is_blocked_whatever_the_number_format(world: World) -> None:
    national, e164 = random_mobile()
    world.list(f"phone:{e164}")
    for written in (national, e164.replace("+", ""), "+60 " + e164[3:5] + " " + e164[5:]):
        event_id = world.call(written)
        [cmd] = world.commands(event_id)
        body = cmd.json
        assert cmd.topic == world.settings.topic_block
        assert cmd.key == b"CELCOM"
        assert body["action"] == "BLOCK_CALL"
        assert body["caller"] == e164
        assert body["rule"] == "caller-on-blocklist"
        assert "PDRM KL/2026/123" in body["reasons"][0]


def test_reported_caller_is_labelled_not_blocked(world: World) -> None:
    _, e164 = random_mobile()
    world.list(f"phone:{e164}", status="reported")
    [cmd] = world.commands(world.call(e164))
    assert cmd.json["action"] == "LABEL_CALL"


def test_mule_transfer_is_held_at_payer_bank_and_mule_frozen_at_its_bank(world: World) -> None:
    written, digits = random_account()
    world.list(f"account:CIBBMYKL:{digits}")
    event_id = world.transfer(payee_account=written, payee_bank="CIBBMYKLXXX")
    cmds = {c.json["action"]: c for c in world.commands(event_id, count=2)}
    hold, freeze = cmds["HOLD_TRANSFER"], cmds["FREEZE_ACCOUNT"]
    assert hold.topic == freeze.topic == world.settings.topic_freeze
    assert hold.key == b"MBBEMYKL" and hold.json["account"] == "MBBEMYKL:514012345678"
    assert freeze.key == b"CIBBMYKL" and freeze.json["account"] == f"CIBBMYKL:{digits}"
    assert hold.json["transfer_id"] == freeze.json["transfer_id"]
    decision = world.out.wait_for(for_event(event_id, world.settings.topic_decisions))[0].json
    assert decision["outcome"] == "BLOCK"
    assert sorted(decision["command_ids"]) == sorted(c.json["command_id"] for c in cmds.values())


def test_transfer_to_a_listed_mobile_proxy_is_held(world: World) -> None:
    national, e164 = random_mobile()
    world.list(f"phone:{e164}")
    event_id = world.transfer(payee_account=None, proxy=national)
    [cmd] = world.commands(event_id)
    assert cmd.json["action"] == "HOLD_TRANSFER" and cmd.key == b"MBBEMYKL"
    assert cmd.json["rule"] == "payee-proxy-on-blocklist"


def test_clean_revoked_expired_and_emergency_produce_nothing(world: World) -> None:
    _, revoked = random_mobile()
    world.list(f"phone:{revoked}")
    world.revoke(f"phone:{revoked}")
    _, expired = random_mobile()
    world.list(f"phone:{expired}", expired=True)
    _, clean = random_mobile()
    quiet = [world.call(revoked, operator="OP1"), world.call(expired, operator="OP1"),
             world.call(clean, operator="OP1"), world.call("999", operator="OP1"), world.call("15999", operator="OP1"),
             world.transfer(payee_account=random_account()[1])]
    # A listed caller sent after them on the same partitions: once its command is out, theirs would be too.
    _, listed = random_mobile()
    world.list(f"phone:{listed}")
    sentinels = [world.call(listed, operator="OP1") for _ in range(4)]
    for s in sentinels:
        world.commands(s)
    world.commands(world.transfer(payee_account=None, proxy=listed))
    assert all(world.no_commands(e) for e in quiet)
    assert not world.out.matching(lambda r: r.topic == world.settings.topic_deadletter
                                  and r.json["source"]["topic"] == world.settings.topic_calls
                                  and b"999" in r.value)


def test_an_event_delivered_twice_gets_the_same_command_id(world: World) -> None:
    _, e164 = random_mobile()
    world.list(f"phone:{e164}")
    event_id = unique("c-dup-")
    world.call(e164, event_id=event_id)
    world.call(e164, event_id=event_id)
    first, second = world.commands(event_id, count=2)
    assert first.json["command_id"] == second.json["command_id"]


@pytest.mark.parametrize("payload,reason", [
    (b"this is not json", "not_json"),
    (b"\x00\xff\xfe\x01binary garbage\x80", "not_json"),
    (b"[1, 2, 3]", "not_object"),
    (b'{"event_id": "x"}', "missing_field"),
    (b'{"event_id": 7, "occurred_at": "2026-11-28T10:14:02Z", "call_id": "c", "operator": "CELCOM",'
     b' "caller": "+60376543210", "callee": "+60123456789"}', "wrong_type"),
    (b'{"event_id": "x", "occurred_at": "yesterday", "call_id": "c", "operator": "CELCOM",'
     b' "caller": "+60376543210", "callee": "+60123456789"}', "invalid_timestamp"),
    (b'{"event_id": "x", "occurred_at": "2026-11-28T10:14:02Z", "call_id": "c", "operator": "CELCOM",'
     b' "caller": "not a number", "callee": "+60123456789"}', "invalid_phone"),
])
def test_bad_calls_go_to_the_dead_letters_and_the_worker_keeps_going(world: World, payload: bytes,
                                                                      reason: str) -> None:
    marker = unique("dl-").encode()
    world.producer.send(world.settings.topic_calls, payload, key=marker)
    [dead] = world.out.wait_for(lambda r: r.topic == world.settings.topic_deadletter
                                and r.json.get("original_key_b64") == base64.b64encode(marker).decode())
    body = dead.json
    assert dead.key == world.settings.topic_calls.encode()
    assert body["reason"] == reason
    assert body["message"]
    assert base64.b64decode(body["original_b64"]) == mask_identifiers(payload)  # no number in clear
    assert body["source"]["topic"] == world.settings.topic_calls
    assert isinstance(body["source"]["offset"], int) and isinstance(body["source"]["partition"], int)
    # Still answering: a listed caller right after is blocked, and /metrics is served.
    _, e164 = random_mobile()
    world.list(f"phone:{e164}")
    world.commands(world.call(e164))
    assert world.worker.alive()
    status, page = world.worker.get("/metrics")
    assert status == 200 and f'reason="{reason}"'.encode() in page


@pytest.mark.parametrize("mutate,reason", [
    (lambda t: t.pop("amount"), "missing_field"),
    (lambda t: t.update(amount="NaN"), "invalid_amount"),
    (lambda t: t.update(amount="-5.00"), "invalid_amount"),
    (lambda t: t["payer"].update(account="12ab34"), "invalid_account"),
    (lambda t: t["payee"].pop("account"), "missing_field"),
    (lambda t: t["payee"].update(bank="not a bic"), "invalid_bank"),
    (lambda t: t.update(payer="MBBEMYKL"), "wrong_type"),
])
def test_bad_transfers_go_to_the_dead_letters(world: World, mutate, reason: str) -> None:
    event_id = unique_letters("t-bad-")
    body = {"event_id": event_id, "occurred_at": "2026-11-28T10:15:00.123Z", "transfer_id": "DN1",
            "amount": "10.00", "payer": {"bank": "MBBEMYKL", "account": "5140"},
            "payee": {"bank": "CIBBMYKL", "account": "8001234567"}}
    mutate(body)
    world.producer.send(world.settings.topic_transfers, body)
    [dead] = world.out.wait_for(lambda r: r.topic == world.settings.topic_deadletter
                                and event_id.encode() in base64.b64decode(r.json["original_b64"]))
    assert dead.json["reason"] == reason


def test_cli_lists_a_number_and_refuses_an_emergency_number(world: World) -> None:
    national, e164 = random_mobile()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SEKAT_")}, **world.worker.env}
    add = subprocess.run([sys.executable, "-m", "sekat.cli", "blocklist", "add", "--phone", national,
                          "--status", "confirmed", "--source", "NSRC", "--reason", "phishing"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    deadline = time.monotonic() + 20  # the report goes through sekat.reports and the reports agent
    while not world.listed(f"phone:{e164}") and time.monotonic() < deadline:
        time.sleep(0.05)
    [cmd] = world.commands(world.call(e164))
    assert cmd.json["action"] == "BLOCK_CALL" and "NSRC" in cmd.json["reasons"][0]
    refused = subprocess.run([sys.executable, "-m", "sekat.cli", "blocklist", "add", "--phone", "999",
                              "--source", "NSRC"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "can never be blocked" in refused.stderr


def test_the_worker_keeps_a_stored_replica_snapshot_for_the_next_worker(world: World) -> None:
    """Gone (as after a replay into an empty Redis, once the rate limit has passed): the running worker stores
    a fresh replica snapshot in the background (it looks every 15 s), and a worker starting then loads it."""
    from sekat.blocklist import replica_snapshot as stored
    from sekat.blocklist.connection import sync_client
    from sekat.blocklist.replica import Replica

    _, e164 = random_mobile()
    world.list(f"phone:{e164}")
    s = world.settings
    client = sync_client(s.redis_url)
    try:
        client.delete(stored.meta_key(s.redis_prefix), stored.refreshed_key(s.redis_prefix))
        deadline = time.monotonic() + 45
        while client.get(stored.meta_key(s.redis_prefix)) is None:
            assert time.monotonic() < deadline, "the worker did not store a replica snapshot"
            time.sleep(0.25)
        assert client.get(stored.refreshed_key(s.redis_prefix)) is not None
    finally:
        client.close()

    async def start_another() -> tuple[str, set[str]]:
        replica = Replica(s.redis_url, s.redis_prefix)
        await replica.start()
        try:
            return replica.stats.loaded_from, set(replica.candidates([f"phone:{e164}"], time.time()))
        finally:
            await replica.close()
    assert asyncio.run(start_another()) == ("stored snapshot", {f"phone:{e164}"})
