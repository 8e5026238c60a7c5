"""Linked identifiers, release commands and renewals, end to end on the real broker, Redis, worker and API.

Given one scam's phone number and mule accounts linked in a report, when any of them is confirmed, then the
next transfer to a linked account is held and the account frozen, and the next call from a linked number is
blocked. When an entry is revoked or expires, exactly the institutions that acted on it get
RELEASE_ACCOUNT / UNBLOCK_NUMBER. Renewals by an authority are bounded and audited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from sekat.blocklist.store import BlocklistStore
from sekat.records import Entry, iso
from tests.support import (ApiProcess, Collector, Producer, Record, Stack, WorkerProcess, for_event, isolated_env,
                           sekat, unique)

pytestmark = pytest.mark.integration


class Scene:
    def __init__(self, worker: WorkerProcess, api: ApiProcess, collector: Collector, producer: Producer) -> None:
        self.worker, self.api, self.out, self.producer = worker, api, collector, producer
        self.settings = worker.settings
        self.http = httpx.Client(base_url=api.url, timeout=20)
        self.keys: dict[str, str] = {}

    def key(self, agency: str, scopes: str) -> str:
        name = f"{agency}:{scopes}"
        if name not in self.keys:
            result = sekat(self.worker.env, "apikey", "create", "--agency", agency, "--scopes", scopes)
            assert result.returncode == 0, result.stderr
            self.keys[name] = result.stdout.strip()
        return self.keys[name]

    def post(self, path: str, key: str, **body: Any) -> httpx.Response:
        return self.http.post(path, json=body, headers={"X-API-Key": key})

    def entry(self, ident: str) -> Entry | None:
        async def go() -> Entry | None:
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                return await store.get(ident)
            finally:
                await store.close()
        return asyncio.run(go())

    def index(self) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                return {e.key: e.to_json() async for batch in store.scan_entries() for e in batch}
            finally:
                await store.close()
        return asyncio.run(go())

    def wait_entry(self, ident: str, pred: Any, timeout: float = 20.0) -> Entry:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.entry(ident)
            if found is not None and pred(found):
                self.worker.wait_replica()
                return found
            time.sleep(0.05)
        raise AssertionError(f"{ident} did not reach the expected state: {self.entry(ident)}")

    def transfer(self, payee_account: str, payee_bank: str, payer_bank: str = "MBBEMYKL") -> str:
        event_id = unique("t-")
        payer = str(int(unique("")[:10], 16))[-10:].rjust(10, "1")
        body = {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "transfer_id": unique("DN"),
                "amount": "900.00", "currency": "MYR", "payer": {"bank": payer_bank, "account": payer},
                "payee": {"bank": payee_bank, "account": payee_account}}
        self.producer.send(self.settings.topic_transfers, body, key=payer.encode())
        return event_id

    def call(self, caller: str, operator: str = "CELCOM") -> str:
        event_id = unique("c-")
        body = {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "call_id": unique("call-"),
                "operator": operator, "caller": caller, "callee": "+60122220000"}
        self.producer.send(self.settings.topic_calls, body, key=caller.encode())
        return event_id

    def commands(self, event_id: str, count: int) -> list[Record]:
        topics = (self.settings.topic_freeze, self.settings.topic_block)
        return self.out.wait_for(lambda r: r.topic in topics and for_event(event_id)(r), count)

    def is_release(self, ident: str) -> Callable[[Record], bool]:
        """Matches the release commands (RELEASE_ACCOUNT, UNBLOCK_NUMBER) of ``ident``."""
        topics = (self.settings.topic_freeze, self.settings.topic_block)
        return lambda r: (r.topic in topics and r.json.get("action") in ("RELEASE_ACCOUNT", "UNBLOCK_NUMBER")
                          and r.json.get("identifier") == ident)

    def releases(self, ident: str) -> list[dict[str, Any]]:
        return [r.json for r in self.out.matching(self.is_release(ident))]

    def wait_releases(self, ident: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        return [r.json for r in self.out.wait_for(self.is_release(ident), count, timeout)]


@pytest.fixture(scope="module")
def scene(stack: Stack, logs_dir: Path) -> Iterator[Scene]:
    name = unique("lnk")
    env = isolated_env(stack, name, SEKAT_RELEASE_INTERVAL_S="1", SEKAT_RENEWALS_MAX="2")
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    api = ApiProcess(env, logs_dir / f"{name}-api.log").start()
    s = worker.settings
    collector = Collector(s, [s.topic_freeze, s.topic_block, s.topic_decisions])
    producer = Producer(s)
    scene = Scene(worker, api, collector, producer)
    try:
        yield scene
    finally:
        scene.http.close()
        producer.close()
        collector.close()
        api.stop()
        worker.stop()


def mobile() -> str:
    return "+6013" + str(int(unique("")[:8], 16))[-7:].rjust(7, "0")


def account() -> str:
    return str(int(unique("")[:10], 16))[-10:].rjust(10, "0")


def test_a_phone_report_freezes_the_linked_accounts_next_inbound_transfer(scene: Scene) -> None:
    police = scene.key("PDRM", "report,confirm,read")
    phone, mule = mobile(), account()
    r = scene.post("/v1/reports", police, kind="phone", value=phone, status="confirmed", case_ref="KL/2026/77",
                   reason="macau scam caller", links=[{"kind": "account", "bank": "CIBBMYKL", "value": mule}])
    assert r.status_code == 202, r.text
    linked = scene.wait_entry(f"account:CIBBMYKL:{mule}", lambda e: e.status.value == "confirmed")
    assert linked.source == "PDRM" and linked.history[0].origin == r.json()["report_id"]

    event = scene.transfer(mule, "CIBBMYKL", payer_bank="MBBEMYKL")
    commands = {(c.json["action"], c.key.decode()) for c in scene.commands(event, 2)}
    assert commands == {("HOLD_TRANSFER", "MBBEMYKL"), ("FREEZE_ACCOUNT", "CIBBMYKL")}

    # the links, and where each came from, are visible in the agency API
    shown = scene.http.get("/v1/entries", params={"account": mule, "bank": "CIBBMYKL", "purpose": "case NSRC/A/9"},
                           headers={"X-API-Key": police}).json()
    assert [(link["key"], link["source"], link["via"]) for link in shown["links"]] == [
        (f"phone:{phone}", "PDRM", f"phone:{phone}")]
    assert shown["links"][0]["report_id"] == linked.history[0].report_id
    assert [(g["key"], g["status"], g["active"]) for g in shown["group"]] == [(f"phone:{phone}", "confirmed", True)]


def test_an_account_confirmed_by_the_police_blocks_the_linked_numbers_next_call(scene: Scene) -> None:
    bank = scene.key("CIBBMYKL", "report")
    police = scene.key("PDRM", "report,confirm,read")
    phone, proxy, mule = mobile(), mobile(), account()
    r = scene.post("/v1/reports", bank, kind="account", bank="CIBBMYKL", value=mule, reason="mule inflow",
                   links=[{"kind": "phone", "value": phone}])
    assert r.status_code == 202, r.text
    scene.wait_entry(f"phone:{phone}", lambda e: e.status.value == "reported")
    # a telco links the DuitNow proxy to the number: the group grows through the number
    telco = scene.key("CELCOM", "report")
    assert scene.post("/v1/reports", telco, kind="phone", value=proxy, links=[{"kind": "phone", "value": phone}]
                      ).status_code == 202
    scene.wait_entry(f"phone:{phone}", lambda e: len(e.links) == 2)

    assert scene.post("/v1/reports", police, kind="account", bank="CIBBMYKL", value=mule, status="confirmed",
                      case_ref="KL/2026/78").status_code == 202
    scene.wait_entry(f"phone:{phone}", lambda e: e.status.value == "confirmed")
    scene.wait_entry(f"phone:{proxy}", lambda e: e.status.value == "confirmed")  # two hops away

    event = scene.call(phone)
    [command] = scene.commands(event, 1)
    assert command.json["action"] == "BLOCK_CALL" and command.key == b"CELCOM"
    group = scene.http.get("/v1/entries", params={"phone": proxy, "purpose": "case NSRC/A/9"}, headers={"X-API-Key": police}).json()["group"]
    assert {g["key"] for g in group} == {f"phone:{phone}", f"account:CIBBMYKL:{mule}"}


def test_revoke_sends_release_commands_to_exactly_the_institutions_that_acted(scene: Scene) -> None:
    police = scene.key("PDRM", "report,confirm,read")
    nsrc = scene.key("NSRC", "report,revoke")
    phone, mule = mobile(), account()
    mule_key, phone_key = f"account:CIBBMYKL:{mule}", f"phone:{phone}"
    assert scene.post("/v1/reports", police, kind="account", bank="CIBBMYKL", value=mule, status="confirmed",
                      reason="investment scam", links=[{"kind": "phone", "value": phone}]).status_code == 202
    scene.wait_entry(phone_key, lambda e: e.status.value == "confirmed")

    t1 = scene.transfer(mule, "CIBBMYKL", payer_bank="MBBEMYKL")
    t2 = scene.transfer(mule, "CIBBMYKL", payer_bank="RHBBMYKL")
    c1 = scene.call(phone, operator="MAXIS")
    scene.commands(t1, 2), scene.commands(t2, 2), scene.commands(c1, 1)
    time.sleep(2.5)  # two sweeps with both entries active: nothing is released
    assert scene.releases(mule_key) == [] and scene.releases(phone_key) == []

    r = scene.post("/v1/revocations", nsrc, kind="account", bank="CIBBMYKL", value=mule,
                   reason="appeal upheld: salary account", case_ref="NSRC/A/9")
    assert r.status_code == 202
    released = scene.wait_releases(mule_key, 3)
    time.sleep(2.5)  # later sweeps send nothing more
    released = scene.releases(mule_key)
    assert sorted((c["action"], c["bank"]) for c in released) == [
        ("RELEASE_ACCOUNT", "CIBBMYKL"), ("RELEASE_ACCOUNT", "MBBEMYKL"), ("RELEASE_ACCOUNT", "RHBBMYKL")]
    assert all(c["account"] == f"CIBBMYKL:{mule}" and c["released"] == "revoked" and c["rule"] == "entry-revoked"
               and c["report_id"] == r.json()["report_id"] and "NSRC/A/9" in c["reasons"][0] for c in released)
    assert len({c["command_id"] for c in released}) == 3
    [audit] = scene.out.wait_for(lambda rec: rec.topic == scene.settings.topic_decisions
                                 and rec.json.get("event_id") == f"release:{r.json()['report_id']}")
    assert audit.json["identifier"] == mule_key and set(audit.json["command_ids"]) == {c["command_id"] for c in released}
    # the number is still confirmed: MAXIS keeps blocking it
    assert scene.releases(phone_key) == []
    assert scene.entry(phone_key).status.value == "confirmed"

    r2 = scene.post("/v1/revocations", nsrc, kind="phone", value=phone, reason="number reassigned")
    assert r2.status_code == 202
    [unblock] = scene.wait_releases(phone_key, 1)
    assert (unblock["action"], unblock["operator"], unblock["caller"]) == ("UNBLOCK_NUMBER", "MAXIS", phone)


def test_expiry_releases_the_number_and_renewal_is_bounded_and_audited(scene: Scene) -> None:
    police = scene.key("PDRM", "report,confirm,read")
    phone = mobile()
    # listed a day ago with a one-day ttl: it expires in a few seconds
    almost = datetime.now(timezone.utc) - timedelta(days=1) + timedelta(seconds=6)
    scene.producer.send(scene.settings.topic_reports, {
        "report_id": unique("r-"), "reported_at": iso(almost), "kind": "phone", "value": phone,
        "status": "confirmed", "source": "PDRM", "reason": "scam caller", "ttl_days": 1}, key=f"phone:{phone}".encode())
    scene.wait_entry(f"phone:{phone}", lambda e: True)
    event = scene.call(phone, operator="DIGI")
    [command] = scene.commands(event, 1)
    assert command.json["action"] == "BLOCK_CALL"
    [unblock] = scene.wait_releases(f"phone:{phone}", 1, timeout=30)
    assert (unblock["action"], unblock["operator"], unblock["released"]) == ("UNBLOCK_NUMBER", "DIGI", "expired")

    # renewal: only an authority, only an active expiring entry, at most SEKAT_RENEWALS_MAX (2) times
    other = mobile()
    assert scene.post("/v1/reports", police, kind="phone", value=other, ttl_days=1).status_code == 202
    before = scene.wait_entry(f"phone:{other}", lambda e: True)
    bank = scene.key("MBBEMYKL", "report")
    assert scene.post("/v1/renewals", bank, kind="phone", value=other, reason="still active").status_code == 403
    first = scene.post("/v1/renewals", police, kind="phone", value=other, reason="victims still calling",
                       case_ref="KL/2026/80")
    assert first.status_code == 202, first.text
    renewed = scene.wait_entry(f"phone:{other}", lambda e: e.renewals == 1)
    assert renewed.expires_at > before.expires_at  # reported=30 days by the default policy, from now
    audit = renewed.history[-1]
    assert (audit.renewal, audit.source, audit.reason, audit.filed_by.startswith("api:")) == (
        True, "PDRM", "victims still calling", True)
    assert scene.post("/v1/renewals", police, kind="phone", value=other, reason="again", ttl_days=60
                      ).status_code == 202
    scene.wait_entry(f"phone:{other}", lambda e: e.renewals == 2)
    third = scene.post("/v1/renewals", police, kind="phone", value=other, reason="once more", ttl_days=90)
    assert third.status_code == 409 and third.json()["detail"]["field"] == "renewals"
    missing = scene.post("/v1/renewals", police, kind="phone", value=mobile(), reason="x")
    assert missing.status_code == 404


def test_rebuild_reproduces_links_and_derived_state(scene: Scene) -> None:
    before = scene.index()
    assert any(e["links"] for e in before.values())
    result = sekat(scene.worker.env, "blocklist", "rebuild")
    assert result.returncode == 0, result.stderr
    assert scene.index() == before
