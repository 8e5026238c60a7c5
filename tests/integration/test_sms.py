"""The SMS channel end to end on a real broker and Redis: sender IDs, impersonations and links.

One real ``sekat worker`` and one real ``sekat api``, with per-institution routing for the operator MAXIS and a
registry of protected sender IDs. Given a sender, link or domain an agency listed (through the API, the bulk
import or the reports topic), when an SMS carrying it arrives on the SMS topic, then BLOCK_SMS reaches the
operator's own command topic; an impersonated sender ID is caught by its route; a malformed SMS is
dead-lettered with its reason and without its text; a clean one is allowed.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support import (ApiProcess, Collector, Producer, Stack, WorkerProcess, for_event, index_entries,
                           isolated_env, sekat, unique)
from sekat.records import iso

pytestmark = pytest.mark.integration
OPERATOR = "MAXIS"


class Firewall:
    """An operator's SMS firewall and an agency's desk: file, send SMS, read commands and dead letters."""

    def __init__(self, worker: WorkerProcess, api: ApiProcess, collector: Collector, producer: Producer) -> None:
        self.worker, self.api, self.out, self.producer = worker, api, collector, producer
        self.settings = worker.settings
        self.operator_topic = f"{self.settings.topic_block}.{OPERATOR}"
        self.http = httpx.Client(base_url=api.url, timeout=20)
        self.keys: dict[str, str] = {}

    def key(self, agency: str, scopes: str) -> str:
        if (agency, scopes) not in self.keys:
            result = sekat(self.worker.env, "apikey", "create", "--agency", agency, "--scopes", scopes)
            assert result.returncode == 0, result.stderr
            self.keys[agency, scopes] = result.stdout.strip()
        return self.keys[agency, scopes]

    def file(self, kind: str, value: str, status: str = "confirmed") -> httpx.Response:
        return self.http.post("/v1/reports", json={"kind": kind, "value": value, "status": status},
                              headers={"X-API-Key": self.key("NSRC", "report,confirm,revoke,read")})

    def listed(self, key: str, timeout: float = 20.0) -> None:
        """Wait until ``key`` is in the index and this worker's replica has it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if key in index_entries(self.settings):
                self.worker.wait_replica()
                return
            time.sleep(0.05)
        raise AssertionError(f"{key} was not listed in {timeout}s")

    def sms(self, sender: str, text: str | None = None, route: str | None = "MY-AGG-9", **extra: Any) -> str:
        event_id = unique("s-")
        body = {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "sms_id": unique("MXS-"),
                "operator": OPERATOR.lower(), "sender": sender, "recipient": "012-345 6789", "route": route,
                "text": text, **extra}
        # One key for every SMS of the test: one partition, so an SMS sent later is decided later.
        self.producer.send(self.settings.topic_sms, {k: v for k, v in body.items() if v is not None},
                           key=b"+60123456789")
        return event_id

    def command(self, event_id: str, timeout: float = 20.0) -> dict[str, Any]:
        [record] = self.out.wait_for(for_event(event_id, self.operator_topic), timeout=timeout)
        assert record.key == OPERATOR.encode()
        body: dict[str, Any] = record.json
        return body

    def commands_for(self, event_id: str) -> list[Any]:
        return self.out.matching(for_event(event_id))


@pytest.fixture(scope="module")
def firewall(stack: Stack, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firewall]:
    name = unique("sms")
    registry = tmp_path_factory.mktemp("senders") / "senders.txt"
    registry.write_text("# banks' own sender IDs and the aggregators they send through\nMAYBANK: MY-A2P-1\n")
    env = isolated_env(stack, name, SEKAT_SENDER_REGISTRY_FILE=str(registry), SEKAT_COMMAND_ROUTING="per-institution",
                       SEKAT_ROUTE_OPERATORS=OPERATOR, SEKAT_RELEASE_INTERVAL_S="1",
                       SEKAT_STATUS_RATE_PER_MINUTE="1000")
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    api = ApiProcess(env, logs_dir / f"{name}-api.log").start()
    s = worker.settings
    collector = Collector(s, [f"{s.topic_block}.{OPERATOR}", s.topic_block, s.topic_decisions, s.topic_deadletter])
    producer = Producer(s)
    fw = Firewall(worker, api, collector, producer)
    try:
        yield fw
    finally:
        fw.http.close()
        producer.close()
        collector.close()
        api.stop()
        worker.stop()


def test_an_sms_from_a_listed_sender_id_is_blocked_on_its_operators_topic(firewall: Firewall) -> None:
    name = "SCAM" + unique("")[:6].upper()
    assert firewall.file("sender", name.lower()).status_code == 202
    firewall.listed(f"sender:{name}")
    event_id = firewall.sms(f"{name[:4]}-{name[4:].lower()}", "Your account is locked")  # another spelling
    body = firewall.command(event_id)
    assert (body["action"], body["operator"], body["sender"], body["sender_kind"]) == ("BLOCK_SMS", OPERATOR, name,
                                                                                       "sender")
    assert body["rule"] == "sender-on-blocklist"


def test_a_protected_sender_id_from_an_unregistered_route_is_caught(firewall: Firewall) -> None:
    genuine = firewall.sms("Maybank", "Your TAC is 123456", route="my-a2p-1")
    forged = firewall.sms("MAY-BANK", "Akaun anda disekat, log masuk segera", route="INTL-GW-3")
    body = firewall.command(forged)
    assert (body["action"], body["sender"], body["route"], body["rule"]) == ("BLOCK_SMS", "MAYBANK", "INTL-GW-3",
                                                                             "sender-impersonation")
    assert firewall.commands_for(genuine) == []  # sent before the forged one, decided by then
    refused = firewall.file("sender", "May Bank")
    assert refused.status_code == 422 and "protected" in refused.text


@pytest.mark.parametrize("listed_as", ["PosLaju-Trak{}.com.my", "www.pös-trak{}.com.my"])
def test_an_sms_linking_to_a_listed_domain_in_any_spelling_is_blocked_and_released_when_revoked(
        firewall: Firewall, listed_as: str) -> None:
    tag = unique("")[:5]
    domain = listed_as.format(tag)
    assert firewall.file("domain", domain, status="reported").status_code == 202
    key = firewall.http.get("/v1/entries", params={"domain": domain, "purpose": "sms-test"},
                            headers={"X-API-Key": firewall.key("NSRC", "report,confirm,revoke,read")})
    host = key.json()["key"] if key.status_code == 200 else ""
    deadline = time.monotonic() + 20
    while not host and time.monotonic() < deadline:  # the report is applied by the worker's reports agent
        time.sleep(0.05)
        found = firewall.http.get("/v1/entries", params={"domain": domain, "purpose": "sms-test"},
                                  headers={"X-API-Key": firewall.key("NSRC", "report,confirm,revoke,read")})
        host = found.json()["key"] if found.status_code == 200 else ""
    assert host.startswith("domain:") and host == host.lower() and "www." not in host
    firewall.listed(host)
    ascii_host = host.removeprefix("domain:")
    spellings = [f"Bayar di HTTPS://WWW.{ascii_host.upper()}/Pay?id=1 segera",
                 f"klik http://login.{ascii_host}/a",
                 f"{domain.removeprefix('www.')}/x"]
    for text in spellings:
        body = firewall.command(firewall.sms("POSLAJU", text))
        assert (body["action"], body["rule"]) == ("BLOCK_SMS", "link-on-blocklist"), text
    assert firewall.http.get("/v1/status", params={"url": f"https://{ascii_host}/any"}).json() == {"listed": True}

    revoked = firewall.http.post("/v1/revocations", json={"kind": "domain", "value": domain, "reason": "appeal upheld"},
                                 headers={"X-API-Key": firewall.key("NSRC", "report,confirm,revoke,read")})
    assert revoked.status_code == 202, revoked.text
    [release] = firewall.out.wait_for(lambda r: r.topic == firewall.operator_topic
                                      and r.json.get("identifier") == host, timeout=30)
    assert (release.json["action"], release.json["value"]) == ("UNBLOCK_SMS", ascii_host)


def test_a_link_from_a_bulk_import_blocks_the_sms_carrying_it(firewall: Firewall, tmp_path: Path) -> None:
    page = f"evil-{unique('')[:6]}.example.com/Win"
    rows = tmp_path / "links.csv"
    rows.write_text(f"kind,value,status,source\nurl,HTTPS://www.{page},confirmed,NSRC\n")
    result = sekat(firewall.worker.env, "blocklist", "import", str(rows))
    assert result.returncode == 0, result.stderr
    firewall.listed(f"url:{page}")
    shown = sekat(firewall.worker.env, "blocklist", "show", "--url", f"http://WWW.{page}", "--purpose",
                  "case check")
    assert shown.returncode == 0 and orjson.loads(shown.stdout)["key"] == f"url:{page}", shown.stderr
    body = firewall.command(firewall.sms("+60 11-2345 6789", f"Menang! http://{page}"))
    assert (body["action"], body["sender_kind"], body["rule"]) == ("BLOCK_SMS", "phone", "link-on-blocklist")


def test_a_malformed_sms_is_dead_lettered_with_its_reason_and_without_its_text(firewall: Firewall) -> None:
    secret = unique("TAC-")
    firewall.sms("BANK <ALERT>", f"Your TAC {secret}")
    [record] = firewall.out.wait_for(lambda r: r.topic == firewall.settings.topic_deadletter
                                     and r.json["field"] == "sender"
                                     and r.json["source"]["topic"] == firewall.settings.topic_sms)
    dead = record.json
    assert dead["reason"] == "invalid_sender" and dead["original_b64"] == "" and dead["original_size"] > 0
    assert secret not in orjson.dumps(dead).decode() and secret.encode() not in base64.b64decode(dead["original_b64"])
    assert secret not in firewall.worker.log_path.read_text(errors="replace")


def test_a_clean_sms_is_allowed(firewall: Firewall) -> None:
    clean = firewall.sms("POSLAJU", "Your parcel arrives today: https://www.pos.com.my/track", route="MY-AGG-9")
    name = "LATER" + unique("")[:6].upper()
    assert firewall.file("sender", name).status_code == 202
    firewall.listed(f"sender:{name}")
    firewall.command(firewall.sms(name, "hello"))  # sent after the clean one: it has been decided by now
    assert firewall.commands_for(clean) == []
    assert firewall.worker.sample(r'sekat_events_total\{[^}]*outcome="ALLOW"[^}]*stream="sms"') >= 1 or \
        firewall.worker.sample(r'sekat_events_total\{[^}]*stream="sms"[^}]*outcome="ALLOW"') >= 1
