"""Appeals end to end on the real broker, Redis, worker and API.

Given an account an agency confirmed and a bank froze, when its holder appeals and the agency upholds the
appeal, then the entry is revoked with the appeal as the reason and the bank gets RELEASE_ACCOUNT. A rejected
appeal tells the appellant when they may appeal again; an agency that did not report the entry cannot see or
decide its appeal; with two agencies behind the entry, one uphold does not revoke it; an appeal left past its
deadline is counted by the API's overdue gauge.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.integration.test_links_release import Scene, account
from tests.support import (ApiProcess, Collector, Producer, Stack, WorkerProcess, isolated_env, own_api, sekat,
                           unique)

pytestmark = pytest.mark.integration
ACKNOWLEDGE_S, DECIDE_S = 3, 5
EMAIL = "meiling.tan@mail.example.my"


@pytest.fixture(scope="module")
def scene(stack: Stack, logs_dir: Path) -> Iterator[Scene]:
    name = unique("apl")
    env = isolated_env(stack, name, SEKAT_RELEASE_INTERVAL_S="1", SEKAT_APPEAL_ACKNOWLEDGE_S=str(ACKNOWLEDGE_S),
                       SEKAT_APPEAL_DECIDE_S=str(DECIDE_S), SEKAT_APPEAL_REAPPEAL_DAYS="30",
                       SEKAT_APPEAL_RATE_PER_MINUTE="100")
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    api = ApiProcess(env, logs_dir / f"{name}-api.log").start()
    s = worker.settings
    collector = Collector(s, [s.topic_freeze, s.topic_block, s.topic_decisions, s.topic_appeals])
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


def listed(scene: Scene, agency: str, mule: str) -> str:
    """``mule`` at CIMB, confirmed by ``agency``; returns its entry key once the index has it."""
    police = scene.key(agency, "report,confirm")
    assert scene.post("/v1/reports", police, kind="account", bank="CIBBMYKL", value=mule, status="confirmed",
                      reason="investment scam mule").status_code == 202
    key = f"account:CIBBMYKL:{mule}"
    scene.wait_entry(key, lambda e: e.status.value == "confirmed" and agency in e.sources)
    return key


def appeal(scene: Scene, mule: str) -> httpx.Response:
    return scene.http.post("/v1/appeals", json={
        "kind": "account", "bank": "CIBBMYKL", "value": mule, "appellant": "person",
        "contact": {"name": "Tan Mei Ling", "email": EMAIL, "phone": "+60123456789"},
        "grounds": "my salary account", "evidence_ref": "CIMB letter 2026/11/4471"})


def status(scene: Scene, appeal_id: str, token: str) -> httpx.Response:
    return scene.http.get(f"/v1/appeals/{appeal_id}/status", headers={"X-Appeal-Token": token})


def gauges(scene: Scene) -> dict[str, float]:
    text = scene.http.get("/metrics").text
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'^(sekat_appeals(?:_overdue)?\{[^}]*\}) (\S+)$', text, re.M)}


def records_of(scene: Scene, appeal_id: str) -> list[dict[str, Any]]:
    topic = scene.settings.topic_appeals
    return [r.json for r in scene.out.matching(lambda r: r.topic == topic and r.key == appeal_id.encode())]


def test_an_upheld_appeal_revokes_the_entry_and_releases_what_the_bank_froze(scene: Scene) -> None:
    mule = account()
    key = listed(scene, "PDRM", mule)
    t1 = scene.transfer(mule, "CIBBMYKL", payer_bank="MBBEMYKL")
    scene.commands(t1, 2)  # held and frozen: CIMB and Maybank acted on the entry

    filed = appeal(scene, mule)
    assert filed.status_code == 202, filed.text
    appeal_id, token = filed.json()["appeal_id"], filed.json()["token"]
    assert status(scene, appeal_id, token).json()["status"] == "received"
    assert status(scene, appeal_id, token + "x").status_code == 404
    assert appeal(scene, mule).status_code == 409  # one open appeal per identifier

    pdrm = scene.key("PDRM", "appeal")
    [shown] = [a for a in scene.http.get("/v1/appeals", headers={"X-API-Key": pdrm}).json()["appeals"]
               if a["appeal_id"] == appeal_id]
    assert shown["agencies"] == ["PDRM"] and shown["contact"]["email"] == EMAIL and "token_sha256" not in shown

    # An agency that did not report the entry neither sees nor decides its appeal; a key without the scope is refused.
    mcmc = scene.key("MCMC", "appeal")
    assert all(a["appeal_id"] != appeal_id for a in
               scene.http.get("/v1/appeals", headers={"X-API-Key": mcmc}).json()["appeals"])
    assert scene.post(f"/v1/appeals/{appeal_id}/review", mcmc).status_code == 404
    assert scene.post(f"/v1/appeals/{appeal_id}/decision", mcmc, outcome="upheld", reason="x").status_code == 404
    assert scene.post(f"/v1/appeals/{appeal_id}/review", scene.key("PDRM", "read")).status_code == 403

    assert scene.post(f"/v1/appeals/{appeal_id}/decision", pdrm, outcome="upheld",
                      reason="x").status_code == 409  # not acknowledged yet
    assert scene.post(f"/v1/appeals/{appeal_id}/review", pdrm).json()["status"] == "under_review"
    assert status(scene, appeal_id, token).json()["status"] == "under_review"
    decided = scene.post(f"/v1/appeals/{appeal_id}/decision", pdrm, outcome="upheld",
                         reason="payroll account, funds traced to the employer")
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "upheld"
    revocation_id = decided.json()["revocation_id"]

    released = scene.wait_releases(key, 2)
    assert sorted(c["bank"] for c in released) == ["CIBBMYKL", "MBBEMYKL"]
    assert all(c["report_id"] == revocation_id and appeal_id in c["reasons"][0] for c in released)
    entry = scene.wait_entry(key, lambda e: e.status.value == "revoked")
    assert entry.reason.startswith(f"appeal {appeal_id} upheld:") and entry.case_ref == appeal_id
    assert status(scene, appeal_id, token).json()["status"] == "upheld"

    # Every step is on the compacted appeals topic, the last one whole with its audit trail.
    steps = scene.out.wait_for(lambda r: r.topic == scene.settings.topic_appeals and r.key == appeal_id.encode(), 3)
    last = steps[-1].json
    assert [r.json["status"] for r in steps] == ["received", "under_review", "upheld"]
    assert [(e["action"], e["by"]) for e in last["events"]] == [("filed", "person"), ("review", "PDRM"),
                                                                 ("upheld", "PDRM")]
    assert last["revocation_id"] == revocation_id
    # The contact details and the account number never reach the API's log.
    log = scene.api.log_path.read_text(errors="replace")
    assert appeal_id in log and EMAIL not in log and "meiling" not in log and mule not in log


def test_a_rejected_appeal_shows_when_it_may_be_appealed_again(scene: Scene) -> None:
    mule = account()
    listed(scene, "PDRM", mule)
    filed = appeal(scene, mule).json()
    pdrm = scene.key("PDRM", "appeal")
    scene.post(f"/v1/appeals/{filed['appeal_id']}/review", pdrm)
    decided = scene.post(f"/v1/appeals/{filed['appeal_id']}/decision", pdrm, outcome="rejected",
                         reason="the account received the proceeds of 14 reported scams")
    assert decided.json()["status"] == "rejected"

    shown = status(scene, filed["appeal_id"], filed["token"]).json()
    assert shown["status"] == "rejected" and set(shown) == {"appeal_id", "status", "filed_at", "decide_by",
                                                            "decided_at", "reappeal_after"}
    again = datetime.fromisoformat(shown["reappeal_after"])
    assert abs(again - (datetime.now(timezone.utc) + timedelta(days=30))) < timedelta(minutes=5)
    refused = appeal(scene, mule)
    assert refused.status_code == 409 and shown["reappeal_after"] in refused.json()["detail"]["message"]
    assert scene.entry(f"account:CIBBMYKL:{mule}").status.value == "confirmed"


def test_with_two_agencies_behind_the_entry_each_upholds_for_its_own_report(scene: Scene) -> None:
    mule = account()
    listed(scene, "PDRM", mule)
    key = listed(scene, "NSRC", mule)
    appeal_id = appeal(scene, mule).json()["appeal_id"]
    pdrm, nsrc = scene.key("PDRM", "appeal"), scene.key("NSRC", "appeal")
    scene.post(f"/v1/appeals/{appeal_id}/review", nsrc)
    first = scene.post(f"/v1/appeals/{appeal_id}/decision", pdrm, outcome="upheld", reason="payroll account")
    assert first.json() == {"appeal_id": appeal_id, "status": "under_review", "awaiting": ["NSRC"]}
    time.sleep(1)
    assert scene.entry(key).status.value == "confirmed"  # NSRC's confirmed report stands
    second = scene.post(f"/v1/appeals/{appeal_id}/decision", nsrc, outcome="upheld", reason="agreed")
    assert second.json()["status"] == "upheld"
    scene.wait_entry(key, lambda e: e.status.value == "revoked")


def test_the_overdue_gauge_counts_an_appeal_left_past_its_deadlines(scene: Scene) -> None:
    before = gauges(scene)
    mule = account()
    listed(scene, "PDRM", mule)
    appeal_id = appeal(scene, mule).json()["appeal_id"]
    now = gauges(scene)
    assert now['sekat_appeals{stage="received"}'] == before.get('sekat_appeals{stage="received"}', 0) + 1
    time.sleep(ACKNOWLEDGE_S + 0.5)
    late = gauges(scene)
    assert late['sekat_appeals_overdue{deadline="acknowledge"}'] == \
        before.get('sekat_appeals_overdue{deadline="acknowledge"}', 0) + 1
    pdrm = scene.key("PDRM", "appeal")
    [shown] = [a for a in scene.http.get("/v1/appeals", headers={"X-API-Key": pdrm}).json()["appeals"]
               if a["appeal_id"] == appeal_id]
    assert shown["overdue"] == ["acknowledge"]
    scene.post(f"/v1/appeals/{appeal_id}/review", pdrm)
    time.sleep(DECIDE_S - ACKNOWLEDGE_S + 0.5)
    late = gauges(scene)
    assert late['sekat_appeals_overdue{deadline="acknowledge"}'] == \
        before.get('sekat_appeals_overdue{deadline="acknowledge"}', 0)
    assert late['sekat_appeals_overdue{deadline="decide"}'] >= 1 and late['sekat_appeals{stage="under_review"}'] >= 1


def test_filing_is_rate_limited_per_client_address(stack: Stack, logs_dir: Path) -> None:
    with own_api(stack, logs_dir, "aplrl", SEKAT_APPEAL_RATE_PER_MINUTE="2") as api, \
            httpx.Client(base_url=api.url, timeout=20) as http:
        body = {"kind": "phone", "value": "+60123456789", "contact": {"name": "A", "phone": "+60123456789"},
                "grounds": "not mine"}
        answers = [http.post("/v1/appeals", json=body) for _ in range(3)]
        assert [a.status_code for a in answers[:2]] == [409, 409]  # not listed here, but counted
        assert answers[2].status_code == 429 and int(answers[2].headers["Retry-After"]) <= 60
        assert 'sekat_api_rate_limited_total{limit="appeal_client"} 1.0' in http.get("/metrics").text


def test_restore_puts_the_appeals_back_after_redis_lost_them(scene: Scene) -> None:
    mule = account()
    listed(scene, "PDRM", mule)
    filed = appeal(scene, mule).json()
    pdrm = scene.key("PDRM", "appeal")
    scene.post(f"/v1/appeals/{filed['appeal_id']}/review", pdrm)
    scene.out.wait_for(lambda r: r.topic == scene.settings.topic_appeals and r.key == filed["appeal_id"].encode()
                       and r.json["status"] == "under_review")
    lost = redis.Redis.from_url(scene.settings.redis_url)
    try:
        lost.delete(*lost.keys(f"{scene.settings.redis_prefix}{{appeals}}:*"))
    finally:
        lost.close()
    assert status(scene, filed["appeal_id"], filed["token"]).status_code == 404

    done = sekat(scene.worker.env, "appeals", "restore")
    assert done.returncode == 0, done.stderr
    assert status(scene, filed["appeal_id"], filed["token"]).json()["status"] == "under_review"
    assert filed["appeal_id"] in [a["appeal_id"] for a in
                                  scene.http.get("/v1/appeals", headers={"X-API-Key": pdrm}).json()["appeals"]]
    again = sekat(scene.worker.env, "appeals", "restore")  # nothing older is written over what Redis holds
    assert again.returncode == 0 and "0 restored" in again.stderr

