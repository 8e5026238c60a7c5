"""Hostile input against the running agency API: whatever is sent, the answer is never a 5xx.

Property-based (hypothesis) against a real ``sekat api`` on the session's
real Kafka and Redis: random JSON bodies shaped like reports (and not), raw
bytes, odd query strings and keys. Valid reports among them are really filed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.support import ApiProcess, Stack, isolated_env, sekat, unique
from streams.topics import create_topics

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
def api(stack: Stack, logs_dir: Path) -> Iterator[tuple[httpx.Client, str]]:
    name = unique("fuzz")
    env = isolated_env(stack, name, SEKAT_STATUS_RATE_PER_MINUTE="100000")
    proc = ApiProcess(env, logs_dir / f"{name}-api.log")
    create_topics(proc.settings)
    proc.start()
    token = sekat(env, "apikey", "create", "--agency", "PDRM", "--scopes", "report,confirm,revoke,read").stdout.strip()
    try:
        with httpx.Client(base_url=proc.url, timeout=20) as client:
            yield client, token
    finally:
        proc.stop()


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
