"""The agency API's OpenAPI document types every answer: each route's success and each error it can give.

A typed answer is a named model (``$ref``), never a bare object; every error code a route lists is the
``ErrorOut`` body every 4xx and 503 has (api/errors.py). The response models keep what the routes answer
as it is: an entry with a long history, links and a folded summary, and the brake's state, survive
validation by their model unchanged. The pages (/check, /console, /docs) are not operations of the API.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sekat.api.app import create_api
from sekat.api.entries import EntryOut
from sekat.blocklist.lifecycle import merge
from sekat.brake.routes import BrakeState, Rearmed
from sekat.brake.store import Trip
from sekat.records import Report, Status
from sekat.settings import Settings


def document() -> dict[str, Any]:
    return create_api(Settings.from_environ({})).openapi()


def test_every_operation_answers_a_named_model_and_its_errors_as_error_out() -> None:
    paths = document()["paths"]
    assert set(paths) == {"/v1/reports", "/v1/revocations", "/v1/renewals", "/v1/entries", "/v1/status",
                          "/v1/brake", "/v1/brake/rearm", "/v1/appeals", "/v1/appeals/{appeal_id}/status",
                          "/v1/appeals/{appeal_id}/review", "/v1/appeals/{appeal_id}/decision",
                          "/v1/feedback", "/v1/institutions/{institution}"}
    for path, operations in paths.items():
        for method, operation in operations.items():
            answers = operation["responses"]
            [ok] = [code for code in answers if code.startswith("2")]
            assert "$ref" in answers[ok]["content"]["application/json"]["schema"], (method, path)
            errors = {code: answer for code, answer in answers.items() if not code.startswith("2")}
            assert errors and "503" in errors, (method, path)
            for code, answer in errors.items():
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, code)
                assert answer["description"], (method, path, code)


def test_an_entry_and_the_brake_pass_through_their_models_unchanged() -> None:
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    entry = None
    for i in range(30):  # more than the history keeps (20 here): a summary folds the oldest
        entry = merge(entry, Report(report_id=f"r-{i:02d}", reported_at=start + timedelta(hours=i), kind="phone",
                                    value="+60123456789", status=Status.CONFIRMED if i % 3 else Status.REPORTED,
                                    source=("PDRM", "MCMC", "BNM")[i % 3], case_ref=f"KL/{i}", reason="scam",
                                    ttl_days=30 * (i % 2), filed_by="api:k1",
                                    links=("phone:+60111111111",) if i == 29 else ()), keep=20)
    assert entry is not None and entry.summary is not None and entry.links
    body = {**entry.to_json(), "active": True,
            "group": [{"kind": "phone", "value": "+60111111111", "key": "phone:+60111111111", "status": "not listed",
                       "active": False}]}
    assert EntryOut.model_validate(body).model_dump(exclude_unset=True) == body

    trip = Trip("entry:phone:+60123456789", 240, 200, 60, "2026-12-05T03:00:00Z", "worker-1", "reported").to_json()
    state = {"tripped": [trip], "log": [{"event": "trip", **trip},
                                        {"event": "rearm", "target": "rule:mule_inflow", "by": "NSRC (api:k1)",
                                         "reason": "fixed", "at": "2026-12-05T03:01:00Z", "trip": trip}]}
    assert BrakeState.model_validate(state).model_dump(exclude_unset=True) == state
    rearmed = {"target": trip["target"], "rearmed_at": "2026-12-05T03:01:00Z", "rearmed_by": "NSRC (api:k1)",
               "trip": trip}
    assert Rearmed.model_validate(rearmed).model_dump(exclude_unset=True) == rearmed
