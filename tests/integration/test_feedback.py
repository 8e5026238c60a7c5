"""End to end: institutions' feedback closes the loop, on the real broker and Redis with a real worker and API.

Given a listed mule account and a worker reading ISO 20022 transfers, when a bank's pacs.008 pays the account,
then the payer's bank gets a HOLD_TRANSFER and the account's bank a FREEZE_ACCOUNT; each bank reports on its own
command with its own key (another bank's key is refused with 403), the entry's history shows what they said, a
pacs.002 status report on the held payment becomes the hold's outcome, and false_positive feedback from two
banks (SEKAT_FEEDBACK_FALSE_POSITIVE_INSTITUTIONS=2) puts the entry into review: a notice to the listing agency,
and the safety brake's shadow mode for the entry.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sekat.blocklist.store import BlocklistStore
from sekat.records import Status
from tests.support import (ApiProcess, Collector, Producer, Stack, WorkerProcess, file_report, for_event, isolated_env,
                           sekat, unique, wait_until)

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MSG_ID = "MBBEMYKL20261128000123"  # GrpHdr/MsgId of pacs008_v08_multi.xml
MULE = "account:CIBBMYKL:8001234567"


@dataclass
class Loop:
    worker: WorkerProcess
    api: ApiProcess
    out: Collector
    producer: Producer
    keys: dict[str, str]

    def call(self, method: str, path: str, key: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.api.url + path, method=method, headers={
            "X-API-Key": self.keys[key], "content-type": "application/json"},
            data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(request, timeout=15) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def feedback(self, key: str, command_id: str, outcome: str, **extra: str) -> tuple[int, Any]:
        return self.call("POST", "/v1/feedback", key, {"command_id": command_id, "outcome": outcome, **extra})

    def entry(self) -> dict[str, Any]:
        status, body = self.call("GET", "/v1/entries?account=8001234567&bank=CIBBMYKL&purpose=feedback-check", "agency")
        assert status == 200, body
        return body


@pytest.fixture(scope="module")
def loop(stack: Stack, logs_dir: Path) -> Iterator[Loop]:
    name = unique("fb")
    env = isolated_env(stack, name, SEKAT_TRANSFERS_FORMAT="pacs008", SEKAT_FEEDBACK_FALSE_POSITIVE_INSTITUTIONS="2",
                       SEKAT_MEMBER_DIRECTORY=str(FIXTURES / "member_directory.csv"))
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    s = worker.settings

    async def listing() -> None:
        store = BlocklistStore.from_url(s.redis_url, s.redis_prefix)
        try:
            await file_report(store, MULE, Status.CONFIRMED, "PDRM", "mule", "KL/2026/9")
        finally:
            await store.close()

    asyncio.run(listing())
    worker.wait_replica()
    keys = {}
    for who, args in (("MBBEMYKL", ("--institution", "MBBEMYKL", "--scopes", "feedback")),
                      ("CIBBMYKL", ("--institution", "CIBBMYKL", "--scopes", "feedback")),
                      ("agency", ("--agency", "PDRM", "--scopes", "read"))):
        made = sekat(env, "apikey", "create", *args)
        assert made.returncode == 0, made.stderr
        keys[who] = made.stdout.strip()
    api = ApiProcess(env, logs_dir / f"{name}-api.log").start()
    out = Collector(s, [s.topic_freeze, s.topic_feedback, s.topic_notices, s.topic_decisions])
    producer = Producer(s)
    try:
        yield Loop(worker, api, out, producer, keys)
    finally:
        producer.close()
        out.close()
        api.stop()
        worker.stop()


def test_feedback_pacs002_and_false_positives_close_the_loop(loop: Loop) -> None:
    s = loop.worker.settings
    loop.producer.send(s.topic_transfers, (FIXTURES / "pacs008_v08_multi.xml").read_bytes(), key=b"MBBEMYKL")
    commands = {c.json["action"]: c.json for c in loop.out.wait_for(for_event(f"{MSG_ID}/1", s.topic_freeze), count=2)}
    hold, freeze = commands["HOLD_TRANSFER"], commands["FREEZE_ACCOUNT"]
    assert (hold["bank"], freeze["bank"]) == ("MBBEMYKL", "CIBBMYKL")

    # The account's bank carried the freeze out; the entry's history shows it. The worker records what it sent
    # once Kafka acknowledged it: the first feedback may arrive a moment before that.
    status, body = wait_until("the freeze known to the API", lambda: loop.feedback(
        "CIBBMYKL", freeze["command_id"], "executed", note="frozen at 10:16", case_ref="CIMB/FR/1"),
        lambda answer: answer[0] != 404)
    assert status == 202, body
    [said] = loop.entry()["feedback_history"]
    assert (said["command_id"], said["institution"], said["outcome"], said["note"], said["case_ref"], said["via"]) == (
        freeze["command_id"], "CIBBMYKL", "executed", "frozen at 10:16", "CIMB/FR/1", "api")
    assert loop.entry()["feedback_counts"] == {"executed": 1}
    stored = loop.out.wait_for(lambda r: r.topic == s.topic_feedback and r.key == freeze["command_id"].encode())
    assert stored[0].json["outcome"] == "executed"

    # Another bank's key may not speak for it; an agency's key may not send feedback at all.
    status, body = loop.feedback("MBBEMYKL", freeze["command_id"], "false_positive")
    assert status == 403 and body["detail"]["field"] == "command_id", body
    status, body = loop.feedback("agency", freeze["command_id"], "executed")
    assert status == 403 and body["detail"]["field"] == "X-API-Key", body
    status, body = loop.feedback("MBBEMYKL", "6f1d2c8e-5b7a-5e1c-9a43-000000000000", "executed")
    assert status == 404 and body["detail"]["field"] == "command_id", body

    # The payer's bank rejects the held payment in a pacs.002: it becomes the hold's outcome.
    report = (FIXTURES / "pacs002_v10.xml").read_bytes().replace(
        b"<TxSts>ACSC</TxSts>", b"<TxSts>RJCT</TxSts><StsRsnInf><Rsn><Cd>FRAD</Cd></Rsn></StsRsnInf>")
    loop.producer.send(s.topic_transfers, report, key=b"MBBEMYKL")
    by_pacs002 = wait_until("the pacs.002 in the entry's history", lambda: [
        f for f in loop.entry()["feedback_history"] if f["via"] == "pacs.002"], bool)
    assert [(f["command_id"], f["institution"], f["outcome"], f["reason_code"], f["by"]) for f in by_pacs002] == [
        (hold["command_id"], "MBBEMYKL", "rejected", "FRAD", "pacs.002:CIBB-STS-0001")]

    # Two banks say false positive: the entry goes into review, the agency is told, the brake holds it in shadow.
    status, body = loop.feedback("CIBBMYKL", freeze["command_id"], "false_positive", note="payroll account")
    assert status == 202 and body["review"] == [], body
    status, body = loop.feedback("MBBEMYKL", hold["command_id"], "false_positive", note="customer known 10 years")
    assert status == 202 and body["review"] == [MULE], body
    [notice] = loop.out.wait_for(lambda r: r.topic == s.topic_notices)
    assert notice.key == MULE.encode()
    assert (notice.json["notice"], notice.json["agency"], sorted(notice.json["institutions"])) == (
        "review", "PDRM", ["CIBBMYKL", "MBBEMYKL"])
    assert sorted(notice.json["notes"]) == ["customer known 10 years", "payroll account"]
    entry = loop.entry()
    assert entry["review"]["institutions"] == ["CIBBMYKL", "MBBEMYKL"]
    assert entry["feedback_counts"] == {"false_positive": 2}
    status, brake = loop.call("GET", "/v1/brake?purpose=review%20check", "agency")
    assert [t["target"] for t in brake["tripped"]] == [f"entry:{MULE}"]
    [trip] = loop.out.wait_for(lambda r: r.topic == s.topic_decisions and r.json.get("stream") == "brake")
    assert (trip.json["by"], trip.json["count"], trip.json["limit"]) == ("feedback", 2, 2)

    # A third false positive does not notify again.
    status, body = loop.feedback("MBBEMYKL", hold["command_id"], "false_positive", note="again")
    assert status == 202 and body["review"] == []
    assert len(loop.out.matching(lambda r: r.topic == s.topic_notices)) == 1


def test_the_api_counts_feedback_and_the_time_to_act(loop: Loop) -> None:
    with urllib.request.urlopen(loop.api.url + "/metrics", timeout=10) as answer:
        page = answer.read().decode()
    assert 'sekat_feedback_total{institution="CIBBMYKL",outcome="executed"} 1.0' in page
    assert 'sekat_command_time_to_act_seconds_count{action="FREEZE_ACCOUNT",institution="CIBBMYKL"} 1.0' in page
    assert 'sekat_command_first_feedback_seconds_count{institution="CIBBMYKL"} 1.0' in page


def test_the_readme_example_verifies_a_relayed_command_and_sends_its_feedback(loop: Loop) -> None:
    """README's institution example, run as written: a webhook signed as the relay signs it is verified, the
    command acted on, and its feedback reaches the real API and the entry's history; a forgery is refused."""
    import re
    from datetime import datetime, timezone

    from standardwebhooks import WebhookVerificationError

    from sekat.institutions import parse_institutions
    from sekat.relay.signing import webhook_headers

    s = loop.worker.settings
    [freeze] = [c for c in loop.out.matching(for_event(f"{MSG_ID}/1", s.topic_freeze))
                if c.json["action"] == "FREEZE_ACCOUNT"][:1]
    code = re.search(r"```python\n(.*?)```", (Path(__file__).resolve().parents[2] / "README.md").read_text(),
                     re.S).group(1)  # type: ignore[union-attr]
    acted: list[dict[str, Any]] = []
    namespace: dict[str, Any] = {"act_on": lambda command: acted.append(command) or "already_closed",
                                 "SEKAT": loop.api.url, "API_KEY": loop.keys["CIBBMYKL"]}
    exec(code, namespace)  # noqa: S102 - the README's own example
    secret = re.search(r'Webhook\("(whsec_[^"]+)"\)', code).group(1)  # type: ignore[union-attr]
    [bank] = parse_institutions({"institutions": [{"id": "CIBBMYKL", "url": "https://hooks.example/",
                                                   "secrets": [secret]}]}, False).values()
    headers = webhook_headers(freeze.json["command_id"], int(datetime.now(timezone.utc).timestamp()), freeze.value,
                              bank.keys)
    assert namespace["receive"](freeze.value, headers) == 204
    assert acted == [freeze.json]
    said = [f for f in loop.entry()["feedback_history"] if f["command_id"] == freeze.json["command_id"]]
    assert [(f["outcome"], f["institution"]) for f in said] == [("already_closed", "CIBBMYKL")]
    with pytest.raises(WebhookVerificationError):
        namespace["receive"](freeze.value.replace(b"FREEZE", b"UNFREEZE"), headers)
    assert len(acted) == 1


def test_feedback_on_a_release_is_matched_to_it(loop: Loop) -> None:
    """A revoked entry's RELEASE_ACCOUNT is remembered as sent, like the freeze it undoes: the bank that froze
    the account says it lifted the freeze, and the entry's history shows it; an outcome that is not about a
    release (false_positive) is refused with 422 naming ``outcome``."""
    s = loop.worker.settings
    mule = "account:RHBBMYKL:212000445566"  # the creditor of pacs008_v08_accepted.xml

    async def file(status: Status) -> None:
        store = BlocklistStore.from_url(s.redis_url, s.redis_prefix)
        try:
            await file_report(store, mule, status, "PDRM", "mule", "KL/2026/11")
        finally:
            await store.close()

    asyncio.run(file(Status.CONFIRMED))
    loop.worker.wait_replica()
    loop.producer.send(s.topic_transfers, (FIXTURES / "pacs008_v08_accepted.xml").read_bytes(), key=b"MBBEMYKL")
    [freeze] = [c.json for c in loop.out.wait_for(
        lambda r: r.topic == s.topic_freeze and r.json.get("action") == "FREEZE_ACCOUNT"
        and r.json.get("bank") == "RHBBMYKL")]
    made = sekat(loop.api.env, "apikey", "create", "--institution", "RHBBMYKL", "--scopes", "feedback")
    assert made.returncode == 0, made.stderr
    loop.keys["RHBBMYKL"] = made.stdout.strip()
    wait_until("the freeze known to the API", lambda: loop.feedback("RHBBMYKL", freeze["command_id"], "executed"),
               lambda answer: answer[0] == 202)

    asyncio.run(file(Status.REVOKED))
    [release] = [c.json for c in loop.out.wait_for(
        lambda r: r.topic == s.topic_freeze and r.json.get("action") == "RELEASE_ACCOUNT"
        and r.json.get("bank") == "RHBBMYKL", timeout=40)]
    status, body = wait_until("the release known to the API", lambda: loop.feedback(
        "RHBBMYKL", release["command_id"], "executed", note="freeze lifted"), lambda answer: answer[0] != 404)
    assert status == 202, body
    status, body = loop.feedback("RHBBMYKL", release["command_id"], "false_positive")
    assert status == 422 and body["detail"]["field"] == "outcome", body

    status, entry = loop.call("GET", "/v1/entries?account=212000445566&bank=RHBBMYKL&purpose=release-check", "agency")
    assert status == 200, entry
    said = {f["command_id"]: (f["action"], f["outcome"]) for f in entry["feedback_history"]}
    assert said == {freeze["command_id"]: ("FREEZE_ACCOUNT", "executed"),
                    release["command_id"]: ("RELEASE_ACCOUNT", "executed")}
