"""The agency API's probes and metrics in process, and its TLS settings checked at start-up.

Given an API whose Redis and Kafka addresses answer nothing (closed loopback ports: no server is faked), when a
probe asks ``/healthz``, then it gets 503 naming both as down. Given a request refused before a route reads it,
then ``/metrics`` counts it. Given one TLS file without the other, or files that are not a certificate and its
key, then the settings refuse to start naming the setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from sekat.api.app import create_api
from sekat.errors import ConfigError
from sekat.localstack.secured import TlsFiles, make_tls_files
from sekat.settings import Settings
from tests.support import free_port

NOWHERE = {"SEKAT_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "SEKAT_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}


@pytest.fixture()
def client() -> Iterator[TestClient]:
    with TestClient(create_api(Settings.from_environ(NOWHERE))) as http:
        yield http


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("api-tls"))


def sample(client: TestClient, line_start: str) -> float:
    """The value of the one ``/metrics`` sample whose line starts with ``line_start``."""
    [line] = [line for line in client.get("/metrics").text.splitlines() if line.startswith(line_start)]
    return float(line.rsplit(" ", 1)[1])


def test_healthz_is_503_degraded_naming_what_is_down(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json() == {"status": "degraded", "redis": "down", "kafka": "down"}


def test_probes_are_not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/healthz" not in paths and "/metrics" not in paths


def test_metrics_count_requests_by_route_template_and_a_body_too_large(client: TestClient) -> None:
    assert client.post("/v1/reports", content=b"x" * 70_000).status_code == 413
    assert client.get("/v1/entries", params={"phone": "+60123456789"}).status_code == 401
    assert client.get("/no/such/path").status_code == 404
    assert sample(client, "sekat_api_body_too_large_total ") == 1
    assert sample(client, 'sekat_api_requests_total{code="413",method="POST",route="unrouted"}') == 1
    assert sample(client, 'sekat_api_requests_total{code="401",method="GET",route="/v1/entries"}') == 1
    assert sample(client, 'sekat_api_requests_total{code="404",method="GET",route="unrouted"}') == 1
    assert sample(client, 'sekat_api_request_duration_seconds_count{method="GET",route="/v1/entries"}') == 1
    assert sample(client, 'sekat_api_rate_limited_total{limit="status_client"}') == 0
    text = client.get("/metrics").text
    assert "+60123456789" not in text and "60123456789" not in text


def test_each_app_has_its_own_registry_not_the_global_one() -> None:
    settings = Settings.from_environ(NOWHERE)
    first, second = create_api(settings), create_api(settings)
    assert first.state.clients.metrics.registry is not second.state.clients.metrics.registry
    assert REGISTRY.get_sample_value("sekat_api_body_too_large_total") is None


def test_tls_files_load_as_a_certificate_and_its_key(tls: TlsFiles) -> None:
    settings = Settings.from_environ({"SEKAT_API_TLS_CERTFILE": str(tls.cert), "SEKAT_API_TLS_KEYFILE": str(tls.key)})
    assert settings.api_tls() == (str(tls.cert), str(tls.key))
    assert Settings.from_environ({}).api_tls() is None


@pytest.mark.parametrize("given, named", [
    ({"SEKAT_API_TLS_CERTFILE": "cert"}, "SEKAT_API_TLS_KEYFILE"),
    ({"SEKAT_API_TLS_KEYFILE": "key"}, "SEKAT_API_TLS_CERTFILE"),
    ({"SEKAT_API_TLS_CERTFILE": "missing", "SEKAT_API_TLS_KEYFILE": "key"}, "SEKAT_API_TLS_CERTFILE"),
    ({"SEKAT_API_TLS_CERTFILE": "cert", "SEKAT_API_TLS_KEYFILE": "missing"}, "SEKAT_API_TLS_KEYFILE"),
    ({"SEKAT_API_TLS_CERTFILE": "ca", "SEKAT_API_TLS_KEYFILE": "key"}, "SEKAT_API_TLS_CERTFILE"),  # not its key
])
def test_tls_settings_are_both_or_neither_and_must_load(tls: TlsFiles, tmp_path: Path, given: dict[str, str],
                                                        named: str) -> None:
    files = {"cert": str(tls.cert), "key": str(tls.key), "ca": str(tls.ca), "missing": str(tmp_path / "none.pem")}
    with pytest.raises(ConfigError) as err:
        Settings.from_environ({name: files[value] for name, value in given.items()})
    assert named in str(err.value)
