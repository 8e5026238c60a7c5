"""The agency API's limits, tried as a hostile caller would, against a real ``sekat api`` on real Kafka and Redis.

Given the API with its default body limit, when a caller sends a body over it (declared, or chunked without a
length), then it gets 413 naming ``body`` before the body is read; when a body names a field the route does
not know, 422 naming that field. Given the public status check's limits, when one caller varies
``X-Forwarded-For`` it still has one budget (unless it is a configured proxy), and many addresses together
stop at the limit for all clients.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ApiProcess, Stack, own_api, sekat

pytestmark = pytest.mark.integration

LIMIT = 65536  # SEKAT_API_MAX_BODY_BYTES' default


@pytest.fixture(scope="module")
def api(stack: Stack, logs_dir: Path) -> Iterator[ApiProcess]:
    with own_api(stack, logs_dir, "limits") as proc:
        yield proc


def minute_with_room(seconds: float = 6.0) -> None:
    """Wait for the next minute if the rate limiter's one-minute window ends within ``seconds``."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.2)


def status_codes(url: str, source: str, count: int, forwarded: list[str] | None = None) -> list[int]:
    """Public status checks from the local address ``source``, each with its ``X-Forwarded-For`` if given."""
    with httpx.Client(base_url=url, timeout=10, transport=httpx.HTTPTransport(local_address=source)) as http:
        return [http.get("/v1/status", params={"phone": "+60123456789"},
                         headers={"X-Forwarded-For": forwarded[i]} if forwarded else {}).status_code
                for i in range(count)]


# --- body size ------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_naming_body(api: ApiProcess) -> None:
    body = b'{"kind": "phone", "value": "+60123456789", "padding": "' + b"x" * (LIMIT + 1) + b'"}'
    r = httpx.post(api.url + "/v1/reports", content=body, headers={"Content-Type": "application/json"}, timeout=20)
    assert r.status_code == 413
    assert r.json()["detail"]["field"] == "body" and str(LIMIT) in r.json()["detail"]["message"]


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(api: ApiProcess) -> None:
    """The header alone is enough: 60 MB declared, not one byte of it sent, and the 413 comes at once."""
    port = api.settings.api_port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"POST /v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 60000000\r\n\r\n")
        answer = b""
        while chunk := conn.recv(4096):  # the API closes the connection after the 413
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"field":"body"' in answer


def test_a_chunked_body_over_the_limit_is_413_once_the_count_passes_it(api: ApiProcess) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"kind": "phone", "value": "+60123456789", "reason": "'
        for _ in range(4 * LIMIT // 1024):  # 4 times the limit, 1 KB a chunk, no Content-Length
            sent += 1024
            yield b"x" * 1024
        yield b'"}'

    r = httpx.post(api.url + "/v1/reports", content=chunks(), headers={"Content-Type": "application/json"},
                   timeout=20)
    assert r.request.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in r.request.headers
    assert r.status_code == 413 and r.json()["detail"]["field"] == "body"


def test_a_body_under_the_limit_is_still_read(api: ApiProcess) -> None:
    r = httpx.post(api.url + "/v1/reports", json={"kind": "phone", "value": "+60123456789", "reason": "x" * 400},
                   timeout=20)
    assert r.status_code == 401  # read and checked: it got as far as the key


# --- unknown fields -------------------------------------------------------------------------------------


def test_an_unknown_field_is_422_naming_it_and_nothing_is_filed(api: ApiProcess) -> None:
    key = sekat(api.env, "apikey", "create", "--agency", "PDRM", "--scopes", "report,confirm,revoke,rearm")
    assert key.returncode == 0, key.stderr
    headers = {"X-API-Key": key.stdout.strip()}
    with httpx.Client(base_url=api.url, timeout=20, headers=headers) as http:
        r = http.post("/v1/reports", json={"kind": "phone", "value": "+60123456789", "stauts": "confirmed"})
        assert r.status_code == 422, r.text
        assert r.json()["detail"]["field"] == "stauts" and r.json()["detail"]["message"].startswith("stauts: ")
        r = http.post("/v1/reports", json={"kind": "phone", "value": "+60123456789",
                                           "links": [{"kind": "phone", "value": "+60123456780", "bnak": "X"}]})
        assert r.status_code == 422 and r.json()["detail"]["field"] == "links.0.bnak"
        # An unlink is Sekat's own (the purge's, an erasure's): an agency cannot file one.
        r = http.post("/v1/reports", json={"kind": "phone", "value": "+60123456789",
                                           "unlinks": [{"kind": "phone", "value": "+60123456780"}]})
        assert r.status_code == 422 and r.json()["detail"]["field"] == "unlinks"
        r = http.post("/v1/revocations", json={"kind": "phone", "value": "+60123456789", "reason": "appeal",
                                               "status": "confirmed"})
        assert r.status_code == 422 and r.json()["detail"]["field"] == "status"
        r = http.post("/v1/brake/rearm", json={"target": "rule:mule_inflow", "reason": "fixed", "force": True})
        assert r.status_code == 422 and r.json()["detail"]["field"] == "force"
    schema = httpx.get(api.url + "/openapi.json").json()["components"]["schemas"]
    assert all(schema[name]["additionalProperties"] is False for name in ("ReportIn", "LinkIn", "RevocationIn",
                                                                          "RenewalIn", "RearmIn"))


# --- forwarded headers and the status check's limits ----------------------------------------------------


def test_varying_x_forwarded_for_does_not_buy_more_status_checks(stack: Stack, logs_dir: Path) -> None:
    with own_api(stack, logs_dir, "limits", SEKAT_STATUS_RATE_PER_MINUTE="5") as api:
        minute_with_room()
        forged = [f"203.0.113.{i}" for i in range(1, 9)]
        assert status_codes(api.url, "127.0.0.1", 8, forged) == [200] * 5 + [429] * 3
        # another peer address does get its own budget: the limit counts peers, not one shared bucket
        assert status_codes(api.url, "127.0.0.2", 1) == [200]


def test_a_configured_proxy_is_believed_and_no_one_else(stack: Stack, logs_dir: Path) -> None:
    with own_api(stack, logs_dir, "limits", SEKAT_STATUS_RATE_PER_MINUTE="2", SEKAT_API_TRUSTED_PROXIES="127.0.0.1") as api:
        minute_with_room()
        # through the proxy, each forwarded client has its own budget
        assert status_codes(api.url, "127.0.0.1", 4, ["203.0.113.1", "203.0.113.1", "203.0.113.2",
                                                      "203.0.113.2"]) == [200] * 4
        assert status_codes(api.url, "127.0.0.1", 1, ["203.0.113.1"]) == [429]
        # a peer that is not the proxy cannot name its own client address
        forged = [f"198.51.100.{i}" for i in range(1, 5)]
        assert status_codes(api.url, "127.0.0.3", 4, forged) == [200] * 2 + [429] * 2


def test_many_addresses_together_stop_at_the_global_limit(stack: Stack, logs_dir: Path) -> None:
    with own_api(stack, logs_dir, "limits", SEKAT_STATUS_GLOBAL_RATE_PER_MINUTE="5") as api:
        minute_with_room()
        codes = [status_codes(api.url, f"127.0.0.{i}", 1)[0] for i in range(2, 10)]
        assert codes == [200] * 5 + [429] * 3
        with httpx.Client(base_url=api.url, timeout=10) as http:
            r = http.get("/v1/status", params={"phone": "+60123456789"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert "all addresses" in r.json()["detail"]["message"]
