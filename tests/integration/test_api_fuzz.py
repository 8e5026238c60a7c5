"""Hostile input against the running agency API: whatever is sent, the answer is never a 5xx.

Property-based (hypothesis) against a real ``sekat api`` on the session's
real Kafka and Redis: random JSON bodies shaped like reports (and not), raw
bytes, odd query strings and keys. Valid reports among them are really filed.

Schemathesis, from the API's own OpenAPI document, then calls every operation
with requests that fit the schema (and ones that do not), once with each kind
of credential: none, a made-up key, a disabled key, and a real key lacking the
operation's scope — none may change data (the reports topic, the blocklist's
source of truth, keeps its end offsets and the answers are 401/403/422) — and
once with a key holding every scope, where no answer may be a 5xx either.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, TopicPartition
from schemathesis import GenerationMode

from sekat.streams.topics import create_topics
from tests.support import ApiProcess, Stack, isolated_env, sekat, unique

pytestmark = pytest.mark.integration

FIELDS = ["kind", "value", "bank", "status", "case_ref", "reason", "ttl_days", "source", "report_id", "history",
          "links"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=80))
plausible = st.one_of(st.sampled_from(["phone", "account", "reported", "confirmed", "revoked", "+60123456789",
                                       "012-345 6789", "999", "CIBBMYKL", "CIBBMYKLXXX", "8001234567", "PDRM",
                                       "٠١٢٣٤٥٦٧٨٩", "0" * 40, "", " ", "\x00", "NaN"]), scalars,
                      st.lists(st.fixed_dictionaries({"kind": st.sampled_from(["phone", "account", "x"]),
                                                      "value": st.sampled_from(["+60123456789", "999", "8001234567",
                                                                                "", "abc"]),
                                                      "bank": st.sampled_from(["CIBBMYKL", "nope", ""])}),
                               max_size=3))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                                kids, max_size=4),
                           max_leaves=10)
bodies = st.one_of(st.dictionaries(st.sampled_from(FIELDS), plausible, max_size=len(FIELDS)),
                   st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6), json_values)
queries = st.dictionaries(st.sampled_from(["phone", "account", "bank", "x"]), st.text(max_size=70), max_size=3)


@pytest.fixture(scope="module")
def server(stack: Stack, logs_dir: Path) -> Iterator[ApiProcess]:
    name = unique("fuzz")
    env = isolated_env(stack, name, SEKAT_STATUS_RATE_PER_MINUTE="100000", SEKAT_STATUS_GLOBAL_RATE_PER_MINUTE="100000")
    proc = ApiProcess(env, logs_dir / f"{name}-api.log")
    create_topics(proc.settings)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def new_key(server: ApiProcess, scopes: str) -> str:
    return sekat(server.env, "apikey", "create", "--agency", "PDRM", "--scopes", scopes).stdout.strip()


@pytest.fixture(scope="module")
def api(server: ApiProcess) -> Iterator[tuple[httpx.Client, str]]:
    token = new_key(server, "report,confirm,revoke,read")
    with httpx.Client(base_url=server.url, timeout=20) as client:
        yield client, token


@pytest.fixture(scope="module")
def credentials(server: ApiProcess) -> dict[str, dict[str, str]]:
    """Headers for each kind of caller: none, made-up, disabled, lacking scopes (``read``), and every scope."""
    disabled = new_key(server, "report,confirm,revoke,read")
    key_id = disabled.split("_")[1]
    assert sekat(server.env, "apikey", "disable", key_id).returncode == 0
    return {
        "none": {},
        "made-up": {"X-API-Key": "sekat_0123456789ab_" + "A" * 43},
        "disabled": {"X-API-Key": disabled},
        "read-only": {"X-API-Key": new_key(server, "read")},
        "every-scope": {"X-API-Key": new_key(server, "report,confirm,revoke,read")},
    }


@pytest.fixture(scope="module")
def reports_end_offsets(server: ApiProcess) -> Iterator[Callable[[], dict[int, int]]]:
    """End offsets of the reports topic (the blocklist's source of truth): unchanged = nothing was filed."""
    settings = server.settings
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None,  # type: ignore[arg-type]
                             enable_auto_commit=False)
    tps = [TopicPartition(settings.topic_reports, p) for p in consumer.partitions_for_topic(
        settings.topic_reports) or ()]
    assert tps
    yield lambda: {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    consumer.close()


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.request.method, response.request.url, response.text[:300])
    if response.status_code in (400, 422):
        detail = response.json()["detail"]
        assert detail["field"] and detail["message"], "a bad request names the field at fault"


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                              HealthCheck.too_slow])


@SETTINGS
@given(body=bodies, path=st.sampled_from(["/v1/reports", "/v1/revocations", "/v1/renewals"]))
def test_json_bodies_never_give_a_5xx(api: tuple[httpx.Client, str], body: Any, path: str) -> None:
    client, token = api
    # json.dumps, not httpx's encoder: NaN and Infinity literals are hostile input too.
    check(client.post(path, content=json.dumps(body).encode(),
                      headers={"X-API-Key": token, "Content-Type": "application/json"}))


@SETTINGS
@given(raw=st.binary(max_size=200), path=st.sampled_from(["/v1/reports", "/v1/revocations", "/v1/renewals"]),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
def test_raw_bodies_never_give_a_5xx(api: tuple[httpx.Client, str], raw: bytes, path: str, content_type: str) -> None:
    client, token = api
    check(client.post(path, content=raw, headers={"X-API-Key": token, "Content-Type": content_type}))


@SETTINGS
@given(params=queries, path=st.sampled_from(["/v1/status", "/v1/entries"]),
       key=st.one_of(st.none(), st.just("valid"), st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                                                           max_size=90)))
def test_queries_and_keys_never_give_a_5xx(api: tuple[httpx.Client, str], params: dict[str, str], path: str,
                                           key: str | None) -> None:
    client, token = api
    headers = {} if key is None else {"X-API-Key": token if key == "valid" else key}
    check(client.get(path, params=params, headers=headers))


CALLS: dict[str, int] = {}


def test_every_operation_with_every_kind_of_caller(server: ApiProcess, credentials: dict[str, dict[str, str]],
                                                   reports_end_offsets: Callable[[], dict[int, int]]) -> None:
    """Schemathesis cases for every operation (fitting the schema, and not): never a 5xx; without a valid key
    and scope, nothing is filed and the answer says why (401/403, or 422 for a body FastAPI refuses first)."""
    # schemathesis' own pytest plugin (``from_fixture``) does not run on pytest 9, so its strategies are
    # driven by hypothesis here, one operation at a time.
    api_schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/reports", "POST /v1/revocations", "GET /v1/entries", "GET /v1/status"}
    for operation in operations:
        cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

        @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=cases)
        def call_as_everyone(case: Any) -> None:
            before = reports_end_offsets()
            for who in ("none", "made-up", "disabled", "read-only"):
                response = case.call(headers=credentials[who], timeout=20)
                CALLS[who] = CALLS.get(who, 0) + 1
                assert response.status_code < 500, (who, case.method, case.path, response.text[:300])
                if case.method == "POST" or (case.path == "/v1/entries" and who != "read-only"):
                    # refused: no key (401), no scope (403), or a body refused before the key is looked at
                    assert 400 <= response.status_code < 500, (who, case.path, response.status_code,
                                                                response.text[:300])
            assert reports_end_offsets() == before, "a request without a valid key and scope " \
                                                                   "changed data"
            response = case.call(headers=credentials["every-scope"], timeout=20)
            CALLS["every-scope"] = CALLS.get("every-scope", 0) + 1
            assert response.status_code < 500, ("every-scope", case.method, case.path, response.text[:300])

        call_as_everyone()
    print(f"\nagency API under schemathesis: {len(operations)} operations, requests by caller {CALLS} "
          f"({sum(CALLS.values())} in all)")
