"""Kafka goes away after the agency API's producer has started: /healthz says so, and says when it is back.

Given a ``sekat api`` on a broker of the test's own (the session's broker is never stopped), whose producer
has started and carried a report, when the broker stops, then ``/healthz`` answers 503 with ``"kafka":
"down"`` (Redis still ``"ok"``) within a few seconds and each probe answers within the 2 s bound; when the
broker starts again on the same ports and data, then ``/healthz`` is 200 again without a restart of the API,
and a report is accepted.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from sekat.localstack.kafka_servers import KafkaBroker
from tests.support import Stack, own_api, sekat, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

REPORT = {"kind": "phone", "value": "+60123456789", "reason": "macau scam caller"}


def healthz(url: str) -> tuple[int, dict[str, str], float]:
    started = time.monotonic()
    answer = httpx.get(url + "/healthz", timeout=10)
    return answer.status_code, answer.json(), time.monotonic() - started


def test_healthz_reports_a_kafka_lost_after_the_producer_started(stack: Stack, logs_dir: Path,
                                                                 own_broker: KafkaBroker) -> None:
    with own_api(Stack(own_broker, stack.redis), logs_dir, "kafkalost") as api:
        key = sekat(api.env, "apikey", "create", "--agency", "PDRM", "--scopes", "report")
        assert key.returncode == 0, key.stderr
        with httpx.Client(base_url=api.url, timeout=30, headers={"X-API-Key": key.stdout.strip()}) as http:
            assert http.post("/v1/reports", json=REPORT).status_code == 202  # the producer has started
            assert healthz(api.url)[:2] == (200, {"status": "ok", "redis": "ok", "kafka": "ok"})

            own_broker.stop()
            _, body, _ = wait_until("/healthz to see Kafka gone", lambda: healthz(api.url),
                                       lambda h: h[0] == 503, timeout=15)
            assert body == {"status": "degraded", "redis": "ok", "kafka": "down"}
            probes = [healthz(api.url) for _ in range(5)]
            assert all(p[0] == 503 for p in probes)
            assert max(p[2] for p in probes) < 3.0, probes  # bounded: a load balancer's probe does not time out

            own_broker.start()
            wait_until("/healthz to see Kafka back", lambda: healthz(api.url), lambda h: h[0] == 200, timeout=60)
            assert http.post("/v1/reports", json=REPORT).status_code == 202
