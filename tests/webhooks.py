"""Real HTTP servers on loopback that receive the relay's webhooks as an institution would.

Each ``Institution`` endpoint is a ``ThreadingHTTPServer`` in a thread that verifies every request with the
Standard Webhooks library (``standardwebhooks``, what an institution installs) and records it. Its
behaviour makes it a hard endpoint: ``delay_s`` answers slowly, ``fail_ratio`` answers 503 to that share of
requests (seeded, so a run is repeatable), ``down_for_s`` refuses connections for that long from ``start``
(the port is not listened on), ``always_fail`` answers 500 to everything.
"""

from __future__ import annotations

import base64
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from sekat.localstack.processes import free_port


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass
class Delivery:
    """One request the endpoint received: its webhook headers, body, whether it verified, what it answered."""

    webhook_id: str
    body: dict[str, Any]
    verified: bool
    status: int
    at: float


@dataclass
class Institution:
    id: str
    delay_s: float = 0.0
    fail_ratio: float = 0.0
    down_for_s: float = 0.0
    always_fail: bool = False
    secrets: list[str] = field(default_factory=lambda: [new_secret()])
    port: int = field(default_factory=free_port)
    received: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.random = random.Random(self.id)
        self.server: ThreadingHTTPServer | None = None
        self.threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sekat/commands"

    def entry(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "secrets": self.secrets}

    def start(self) -> "Institution":
        if self.down_for_s:
            timer = threading.Timer(self.down_for_s, self._listen)
            timer.daemon = True
            timer.start()
        else:
            self._listen()
        return self

    def _listen(self) -> None:
        institution = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k: v for k, v in self.headers.items()}
                verified = True
                try:
                    body = Webhook(institution.secrets[0]).verify(raw, headers)
                except Exception:  # noqa: BLE001 - recorded: the test asserts every request verified
                    verified, body = False, json.loads(raw or b"{}")
                if institution.delay_s:
                    time.sleep(institution.delay_s)
                with institution.lock:
                    fail = institution.always_fail or institution.random.random() < institution.fail_ratio
                    status = 401 if not verified else 500 if institution.always_fail else 503 if fail else 204
                    institution.received.append(Delivery(self.headers.get("webhook-id", ""), body, verified,
                                                         status, time.monotonic()))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def deliveries(self) -> list[Delivery]:
        with self.lock:
            return list(self.received)

    def accepted_ids(self) -> set[str]:
        return {d.webhook_id for d in self.deliveries() if d.status < 300}


def institutions_file(path: Any, institutions: list[Institution]) -> str:
    path.write_text(json.dumps({"institutions": [i.entry() for i in institutions]}))
    return str(path)


def command(institution: str, seq: int, run: str) -> tuple[bytes, bytes]:
    """A bank command as the worker writes it (key, value); ``event_id`` carries its place in the sequence."""
    import uuid

    event_id = f"{run}-{seq:05d}"
    account = f"{institution}:8001{seq:06d}"
    command_id = str(uuid.uuid5(uuid.UUID("6f1d2c8e-5b7a-5e1c-9a43-5e4b41540001"),
                                f"{event_id}|FREEZE_ACCOUNT|{account}"))
    body = {"command_id": command_id, "issued_at": "2026-11-28T10:15:00.125Z", "action": "FREEZE_ACCOUNT",
            "bank": institution, "account": account, "transfer_id": f"DN{seq:08d}", "event_id": event_id,
            "rule": "payee-on-blocklist", "reasons": ["payee account confirmed mule"], "rules": ["blocklist_match@2"]}
    return institution.encode(), json.dumps(body).encode()


def seq_of(delivery: Delivery) -> int:
    return int(delivery.body["event_id"].rsplit("-", 1)[1])


def check_deliveries(institution: Institution, sent: int) -> None:
    """Every command arrived and was accepted, every request verified and named its command, and no command
    was sent before every earlier one (same key) had been accepted."""
    deliveries = institution.deliveries()
    assert all(d.verified for d in deliveries), f"{institution.id}: a request did not verify"
    assert all(d.webhook_id == d.body["command_id"] for d in deliveries), f"{institution.id}: webhook-id"
    accepted: set[int] = set()
    for d in deliveries:
        seq = seq_of(d)
        missing = [s for s in range(seq) if s not in accepted]
        assert not missing, f"{institution.id}: command {seq} sent before {missing[:5]} were accepted"
        if d.status < 300:
            accepted.add(seq)
    assert accepted == set(range(sent)), f"{institution.id}: not accepted {sorted(set(range(sent)) - accepted)[:10]}"
