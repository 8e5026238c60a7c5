"""The agency API's /healthz, /metrics and HTTPS, against a real ``sekat api`` on real Kafka and Redis.

Given the API with Redis and Kafka up, when a load balancer asks ``/healthz`` (no key, as often as it likes),
then it gets 200 and a small body naming no identifier. When callers pass each rate limit and send a body over
the size limit, then ``/metrics`` counts each refusal by its limit, and every request by route template,
method and status code, on a page ``promtool check metrics`` passes. Given the API started with a certificate and its key, when a client that trusts the CA
asks ``/healthz`` over https, then it gets 200; a plain-http request gets no answer.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from sekat.localstack.secured import make_tls_files
from tests.support import Stack, own_api, sekat

pytestmark = pytest.mark.integration


def minute_with_room(seconds: float = 10.0) -> None:
    """Wait for the next minute if the rate limiter's one-minute window ends within ``seconds``."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.2)


def scraped(url: str, sample: str) -> float:
    """The value of ``sample`` (name and labels as /metrics prints them) in a fresh scrape; 0 if absent."""
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def status_check(url: str, source: str) -> int:
    with httpx.Client(base_url=url, timeout=10, transport=httpx.HTTPTransport(local_address=source)) as http:
        return http.get("/v1/status", params={"phone": "+60123456789"}).status_code


def test_healthz_is_200_without_a_key_and_never_rate_limited(stack: Stack, logs_dir: Path) -> None:
    with own_api(stack, logs_dir, "probes", SEKAT_STATUS_RATE_PER_MINUTE="1", SEKAT_STATUS_GLOBAL_RATE_PER_MINUTE="1") as api:
        answers = [httpx.get(api.url + "/healthz", timeout=10) for _ in range(5)]
        assert [r.status_code for r in answers] == [200] * 5
        assert answers[0].json() == {"status": "ok", "redis": "ok", "kafka": "ok"}
        assert scraped(api.url, 'sekat_api_requests_total{code="200",method="GET",route="/healthz"}') == 5
        assert scraped(api.url, 'sekat_api_rate_limited_total{limit="status_client"}') == 0


def test_metrics_count_each_rate_limit_and_each_request(stack: Stack, logs_dir: Path) -> None:
    with own_api(stack, logs_dir, "probes", SEKAT_STATUS_RATE_PER_MINUTE="3", SEKAT_STATUS_GLOBAL_RATE_PER_MINUTE="5",
                  SEKAT_FILING_RATE_PER_MINUTE="1") as api:
        key = sekat(api.env, "apikey", "create", "--agency", "PDRM", "--scopes", "report")
        assert key.returncode == 0, key.stderr
        minute_with_room()
        # One address: 3 allowed, the 4th refused by its own limit (not counted against all clients).
        assert [status_check(api.url, "127.0.0.2") for _ in range(4)] == [200, 200, 200, 429]
        # Another: the 4th and 5th checks in all are allowed, the 6th refused by the limit for all clients.
        assert [status_check(api.url, "127.0.0.3") for _ in range(3)] == [200, 200, 429]
        with httpx.Client(base_url=api.url, timeout=20, headers={"X-API-Key": key.stdout.strip()}) as http:
            report = {"kind": "phone", "value": "+60123456789", "reason": "macau scam caller"}
            assert http.post("/v1/reports", json=report).status_code == 202
            assert http.post("/v1/reports", json=report).status_code == 429
            big = b'{"kind": "phone", "padding": "' + b"x" * 70_000 + b'"}'
            assert http.post("/v1/reports", content=big, headers={"Content-Type": "application/json"}
                             ).status_code == 413
        assert scraped(api.url, 'sekat_api_rate_limited_total{limit="status_client"}') == 1
        assert scraped(api.url, 'sekat_api_rate_limited_total{limit="status_global"}') == 1
        assert scraped(api.url, 'sekat_api_rate_limited_total{limit="filing_key"}') == 1
        assert scraped(api.url, "sekat_api_body_too_large_total") == 1
        assert scraped(api.url, 'sekat_api_requests_total{code="200",method="GET",route="/v1/status"}') == 5
        assert scraped(api.url, 'sekat_api_requests_total{code="429",method="GET",route="/v1/status"}') == 2
        assert scraped(api.url, 'sekat_api_requests_total{code="202",method="POST",route="/v1/reports"}') == 1
        # Refused by its Content-Length before any route ran: no route template to name.
        assert scraped(api.url, 'sekat_api_requests_total{code="413",method="POST",route="unrouted"}') == 1
        assert scraped(api.url, 'sekat_api_request_duration_seconds_count{method="GET",route="/v1/status"}') == 7
        text = httpx.get(api.url + "/metrics", timeout=10).text
        assert "60123456789" not in text and "127.0.0." not in text and key.stdout.strip() not in text
        promtool = shutil.which("promtool")
        assert promtool
        checked = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), checked


def test_the_api_serves_https_with_its_certificate_and_refuses_plain_http(stack: Stack, logs_dir: Path,
                                                                          tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "tls")
    with own_api(stack, logs_dir, "probes", str(tls.ca), SEKAT_API_TLS_CERTFILE=str(tls.cert),
                  SEKAT_API_TLS_KEYFILE=str(tls.key)) as api:
        assert api.url.startswith("https://")
        r = httpx.get(api.url + "/healthz", verify=ssl.create_default_context(cafile=tls.ca), timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        with pytest.raises(httpx.HTTPError):
            httpx.get(api.url.replace("https://", "http://") + "/healthz", timeout=10)
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA
            httpx.get(api.url + "/healthz", timeout=10)
