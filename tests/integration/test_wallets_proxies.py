"""E-wallets and hashed DuitNow proxies end to end: a real API, worker, Kafka and Redis.

Given an e-wallet and an NRIC proxy listed through the agency API, when a transfer pays either, then it is held,
citing the listed identifier; the NRIC is found nowhere in clear (not in Redis, the worker's or the API's logs,
nor on any topic), and the public check, given the clear NRIC, hashes it and answers listed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from sekat.records import iso
from tests.support import (ApiProcess, Collector, Producer, Stack, WorkerProcess, for_event, isolated_env, sekat,
                           unique)

pytestmark = pytest.mark.integration

HASH_KEY = "7f" * 32
NRIC = "900101-14-5678"
NRIC_DIGITS = NRIC.replace("-", "")


class Desk:
    def __init__(self, worker: WorkerProcess, api: ApiProcess, out: Collector, producer: Producer) -> None:
        self.worker, self.api, self.out, self.producer, self.s = worker, api, out, producer, worker.settings
        self.redis = redis.Redis.from_url(self.s.redis_url)
        self.http = httpx.Client(base_url=api.url, timeout=20)
        made = sekat(worker.env, "apikey", "create", "--agency", "PDRM", "--scopes", "report,confirm,read")
        assert made.returncode == 0, made.stderr
        self.police = made.stdout.strip()

    def report(self, **body: Any) -> dict[str, Any]:
        r = self.http.post("/v1/reports", json={"status": "confirmed", "reason": "mule", **body},
                           headers={"X-API-Key": self.police})
        assert r.status_code == 202, r.text
        return r.json()

    def applied(self, key: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.redis.exists(f"{self.s.redis_prefix}bl:{key}"):
            assert time.monotonic() < deadline, f"{key} was never applied"
            time.sleep(0.05)
        self.worker.wait_replica()

    def transfer(self, payee: dict[str, Any]) -> str:
        event_id = unique("t-")
        payer = str(int(unique("")[:10], 16))[-10:].rjust(10, "1")
        body = {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "transfer_id": unique("DN"),
                "amount": "800.00", "currency": "MYR", "payer": {"bank": "MBBEMYKL", "account": payer},
                "payee": payee}
        self.producer.send(self.s.topic_transfers, body, key=payer.encode())
        return event_id

    def held(self, event_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        [decision] = self.out.wait_for(for_event(event_id, self.s.topic_decisions), timeout=30)
        [command] = self.out.wait_for(lambda r: r.topic == self.s.topic_freeze and for_event(event_id)(r),
                                      timeout=30)
        return decision.json, command.json


@pytest.fixture(scope="module")
def desk(stack: Stack, logs_dir: Path) -> Iterator[Desk]:
    name = unique("wal")
    env = isolated_env(stack, name, SEKAT_PROXY_HASH_KEY=HASH_KEY, SEKAT_LOG_LEVEL="debug")
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


def test_a_transfer_to_a_listed_e_wallet_is_held(desk: Desk) -> None:
    wallet = "0" + str(int(unique("")[:10], 16))[-10:]
    accepted = desk.report(kind="wallet", value=f"tng:{wallet[:3]}-{wallet[3:]}")
    assert accepted["key"] == f"wallet:TNG:{wallet}"
    desk.applied(f"wallet:TNG:{wallet}")
    decision, command = desk.held(desk.transfer({"bank": "TNGDMYNB", "wallet": {"provider": "TNG", "id": wallet}}))
    assert (command["action"], command["bank"], command["rule"]) == ("HOLD_TRANSFER", "MBBEMYKL",
                                                                    "payee-wallet-on-blocklist")
    assert decision["matches"][0]["identifier"] == f"wallet:TNG:{wallet}"
    r = desk.http.get("/v1/status", params={"wallet": f"TNG:{wallet}"})
    assert r.status_code == 200 and r.json() == {"listed": True}


def test_an_nric_proxy_is_listed_and_screened_by_its_keyed_hash_only(desk: Desk) -> None:
    accepted = desk.report(kind="proxy", value=f"NRIC:{NRIC}", case_ref="KL/2026/5")
    key = accepted["key"]
    assert key.startswith("proxy:NRIC:") and len(key) == len("proxy:NRIC:") + 32
    desk.applied(key)
    event_id = desk.transfer({"bank": "CIBBMYKL", "proxy": {"type": "NRIC", "value": NRIC_DIGITS}})
    decision, command = desk.held(event_id)
    assert (command["action"], command["rule"]) == ("HOLD_TRANSFER", "payee-proxy-on-blocklist")
    assert decision["matches"][0]["identifier"] == key
    r = desk.http.get("/v1/status", params={"proxy": f"nric:{NRIC}"})
    assert r.status_code == 200 and r.json() == {"listed": True}
    assert desk.http.get("/v1/status", params={"proxy": key.partition(":")[2]}).status_code == 422  # no hash probing

    # Nowhere in clear: Redis (every key and value under the prefix), the logs, any topic.
    clear = (NRIC_DIGITS, NRIC)
    for k in desk.redis.scan_iter(f"{desk.s.redis_prefix}*"):
        kind = desk.redis.type(k)
        raw = [k]
        if kind == b"string":
            raw.append(desk.redis.get(k) or b"")
        elif kind == b"hash":
            raw.extend(b"%s=%s" % kv for kv in desk.redis.hgetall(k).items())
        elif kind == b"set":
            raw.extend(desk.redis.smembers(k))
        elif kind == b"zset":
            raw.extend(desk.redis.zrange(k, 0, -1))
        elif kind == b"list":
            raw.extend(desk.redis.lrange(k, 0, -1))
        elif kind == b"stream":
            raw.extend(b"%s=%s" % kv for _, entry in desk.redis.xrange(k) for kv in entry.items())
        assert not any(c.encode() in b for c in clear for b in raw), k
    time.sleep(1.0)
    for log in (desk.worker.log_path, desk.api.log_path):
        text = log.read_text(errors="replace")
        assert not any(c in text for c in clear), log
    assert not any(c.encode() in r.value for c in clear for r in desk.out.matching(lambda r: True))
