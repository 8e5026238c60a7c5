"""Holds that end, on the real broker, Redis and worker: every hold carries ``hold_until``, and a lien placed by
follow_money is released, naming the liened account, when the listing that caused it is revoked or its hold ends.

One worker with the shipped policy except a one-minute lien (``holds.HOLD_AMOUNT: 1``) and a sweep every second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from sekat.blocklist.store import BlocklistStore
from sekat.records import Status, iso
from sekat.rules.policy import DEFAULT_POLICY_FILE
from tests.support import Collector, Producer, Record, Stack, WorkerProcess, file_report, for_event, isolated_env, unique

pytestmark = pytest.mark.integration


def digits(n: int) -> str:
    return str(int(unique("")[:12], 16))[-n:].rjust(n, "0")


class Bank:
    def __init__(self, worker: WorkerProcess, out: Collector, producer: Producer) -> None:
        self.worker, self.out, self.producer, self.s = worker, out, producer, worker.settings
        self.occurred: dict[str, datetime] = {}  # event id -> when its transfer happened

    def file(self, key: str, status: str) -> None:
        async def go() -> None:
            store = BlocklistStore.from_url(self.s.redis_url, self.s.redis_prefix)
            try:
                await file_report(store, key, Status(status), "PDRM", "scam", "KL/2026/10")
            finally:
                await store.close()
        asyncio.run(go())
        self.worker.wait_replica()

    def transfer(self, payer: tuple[str, str], payee: tuple[str, str]) -> str:
        event_id = unique("t-")
        self.occurred[event_id] = datetime.now(timezone.utc).replace(microsecond=0)
        body = {"event_id": event_id, "occurred_at": iso(self.occurred[event_id]), "transfer_id": unique("DN"),
                "amount": "2500.00", "currency": "MYR", "payer": {"bank": payer[0], "account": payer[1]},
                "payee": {"bank": payee[0], "account": payee[1]}}
        self.producer.send(self.s.topic_transfers, body, key=payer[1].encode())
        return event_id

    def commands(self, event_id: str, count: int) -> dict[str, dict[str, Any]]:
        found = self.out.wait_for(lambda r: r.topic == self.s.topic_freeze and for_event(event_id)(r), count,
                                  timeout=30)
        return {r.json["action"]: r.json for r in found}

    def releasing(self, account: str) -> Any:
        return lambda r: (r.topic == self.s.topic_freeze and r.json.get("action") == "RELEASE_ACCOUNT"
                          and r.json.get("account") == account)

    def releases(self, account: str, timeout: float) -> list[Record]:
        return self.out.wait_for(self.releasing(account), 1, timeout=timeout)


@pytest.fixture(scope="module")
def bank(stack: Stack, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bank]:
    name = unique("hold")
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    policy["holds"] = {"HOLD_TRANSFER": 1440, "HOLD_AMOUNT": 1}
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    env = isolated_env(stack, name, SEKAT_POLICY_FILE=str(path), SEKAT_RELEASE_INTERVAL_S="1")
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    s = worker.settings
    out = Collector(s, [s.topic_freeze, s.topic_decisions])
    producer = Producer(s)
    try:
        yield Bank(worker, out, producer)
    finally:
        producer.close()
        out.close()
        worker.stop()


def test_a_follow_the_money_lien_is_released_naming_the_liened_account_on_revocation_and_at_its_end(
        bank: Bank) -> None:
    revoked_mule, kept_mule = ("MBBEMYKL", digits(12)), ("MBBEMYKL", digits(12))
    first_payee, second_payee = ("CIBBMYKL", digits(10)), ("RHBBMYKL", digits(10))
    for mule in (revoked_mule, kept_mule):
        bank.file(f"account:{mule[0]}:{mule[1]}", "confirmed")

    first = bank.transfer(revoked_mule, first_payee)
    second = bank.transfer(kept_mule, second_payee)
    held = bank.commands(first, 3)  # the payer held and frozen (listed), its payee liened (follow_money)
    assert set(held) == {"HOLD_TRANSFER", "FREEZE_ACCOUNT", "HOLD_AMOUNT"}
    happened = bank.occurred[first]  # a hold counts from when the transfer happened
    assert datetime.fromisoformat(held["HOLD_TRANSFER"]["hold_until"]) - happened == timedelta(days=1)
    lien = held["HOLD_AMOUNT"]
    assert lien["account"] == f"CIBBMYKL:{first_payee[1]}"
    assert datetime.fromisoformat(lien["hold_until"]) - happened == timedelta(minutes=1)
    ends = datetime.fromisoformat(bank.commands(second, 3)["HOLD_AMOUNT"]["hold_until"])

    # The listing the first lien came from is revoked: the lien is released to the payee's bank, naming
    # the liened account (the revoked payer's own bank gets its release naming the payer, as before).
    bank.file(f"account:{revoked_mule[0]}:{revoked_mule[1]}", "revoked")
    [released] = [r.json for r in bank.releases(f"CIBBMYKL:{first_payee[1]}", timeout=20)]
    assert (released["bank"], released["released"], released["identifier"]) == (
        "CIBBMYKL", "revoked", f"account:{revoked_mule[0]}:{revoked_mule[1]}")
    assert not bank.out.matching(lambda r: r.topic == bank.s.topic_freeze and r.json.get("bank") == "CIBBMYKL"
                                 and r.json.get("action") == "RELEASE_ACCOUNT"
                                 and r.json.get("account") == f"{revoked_mule[0]}:{revoked_mule[1]}")

    # The second lien's listing stays: the lien is released when its hold ends, not before.
    assert bank.out.matching(bank.releasing(f"RHBBMYKL:{second_payee[1]}")) == [] \
        or datetime.now(timezone.utc) >= ends
    wait = (ends - datetime.now(timezone.utc)).total_seconds() + 30
    found = [r.json for r in bank.releases(f"RHBBMYKL:{second_payee[1]}", timeout=max(wait, 30))]
    assert len({r["command_id"] for r in found}) == 1  # remembered under two entries, released by one id
    ended = found[0]
    assert datetime.fromisoformat(ended["issued_at"]) >= ends
    assert (ended["bank"], ended["released"], ended["identifier"], ended["rule"]) == (
        "RHBBMYKL", "hold_ended", f"account:RHBBMYKL:{second_payee[1]}", "hold-ended")
    # one record, not one per entry it was remembered under (they would be in the same produce)
    assert len(bank.out.matching(bank.releasing(f"RHBBMYKL:{second_payee[1]}"))) == 1
