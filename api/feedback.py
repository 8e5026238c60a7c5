"""Feedback route of the agency API: an institution says what became of a command it received.

    POST /v1/feedback   {"command_id", "outcome", "note", "case_ref"} with an institution's key (scope feedback)

The key must belong to the institution the command was addressed to (the record key of the command, the
``bank`` or ``operator`` in it): another institution's key gets 403 naming ``command_id``. A command Sekat
did not issue, or issued more than SEKAT_FEEDBACK_WINDOW_DAYS ago, gets 404. A release command (RELEASE_ACCOUNT,
UNBLOCK_NUMBER, UNBLOCK_SMS) takes ``executed``, ``not_found`` or ``already_closed`` (else 422). Sending feedback again on one
command replaces the earlier word (the latest is kept). The answer is 202 once Kafka has the record on
SEKAT_TOPIC_FEEDBACK with acks=all and the entries behind the command show it (``blocklist.review``);
it says whether this feedback put an entry into review or flagged it for the victim-mule process.

An entry's feedback is shown by ``GET /v1/entries`` (``feedback_history``).
"""

# No `from __future__ import annotations`: FastAPI resolves the endpoints' annotations at run time.

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from sekat.api.auth import Caller, speaks_for
from sekat.api.clients import Clients, ClientsDep
from sekat.api.errors import error_responses, field_error
from sekat.api.keys import ApiKey
from sekat.blocklist.review import FeedbackDesk, Topics, feedback_record
from sekat.release.sweep import RELEASES

router = APIRouter(tags=["institutions"])
RELEASE_ACTIONS = frozenset(a.value for a in RELEASES)
# What became of a release: done, no such account or number, closed already. Whether the customer was a
# mule or a victim is feedback on the command that acted, not on its release.
RELEASE_OUTCOMES = ("executed", "not_found", "already_closed")

class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command_id: uuid.UUID = Field(description="the command's command_id (the webhook-id header)")
    outcome: Literal["executed", "not_found", "already_closed", "false_positive", "customer_is_victim"] = Field(
        description="executed: carried out; not_found: no such account or number; already_closed: the account "
                    "or number was closed already; false_positive: the customer is not what the entry says; "
                    "customer_is_victim: the account holder is a victim used as a mule")
    note: str = Field("", max_length=1000, description="free text for the listing agency")
    case_ref: str = Field("", max_length=128, description="the institution's own case reference")


class FeedbackOut(BaseModel):
    command_id: str
    outcome: str
    received_at: str
    review: list[str] = Field(description="entries this feedback put into review")
    victim_mule: list[str] = Field(description="entries this feedback flagged for the victim-mule process")


def desk(clients: Clients) -> FeedbackDesk:
    settings = clients.settings
    return FeedbackDesk(clients.feedback, clients.store, clients.brakes, clients.send,
                        Topics(settings.topic_feedback, settings.topic_notices, settings.topic_decisions),
                        settings.feedback_false_positive_institutions)


def observe(clients: Clients, record: dict[str, Any], first: bool, now: datetime) -> None:
    metrics, institution = clients.metrics, record["institution"]
    metrics.feedback.labels(institution, record["outcome"]).inc()
    took = max(0.0, (now - datetime.fromisoformat(record["issued_at"])).total_seconds())
    if first:
        metrics.first_feedback.labels(institution).observe(took)
    if record["outcome"] == "executed":
        metrics.time_to_act.labels(institution, record["action"]).observe(took)


@router.post("/v1/feedback", status_code=202, response_model=FeedbackOut,
             responses=error_responses(401, 403, 404, 413, 422, 503))
async def feedback(body: FeedbackIn, key: Annotated[ApiKey, Depends(Caller("feedback"))],
                   clients: ClientsDep) -> FeedbackOut:
    """Report the outcome of a command addressed to your institution."""
    command_id = str(body.command_id)
    sent = await clients.feedback.sent(command_id)
    if sent is None:
        raise field_error(404, "command_id", "no command with this id was issued in the last "
                                             f"{clients.settings.feedback_window_days} days")
    speaks_for(key, sent.institution, "command_id")
    if sent.action in RELEASE_ACTIONS and body.outcome not in RELEASE_OUTCOMES:
        raise field_error(422, "outcome", f"a {sent.action} command's outcome is one of "
                                          f"{', '.join(RELEASE_OUTCOMES)}")
    now = clients.clock()
    record = feedback_record(sent, body.outcome, now, note=body.note.strip(), case_ref=body.case_ref.strip(),
                             by=f"api:{key.key_id}")
    applied = await desk(clients).apply(record, now)
    observe(clients, record, applied.first, now)
    return FeedbackOut(command_id=command_id, outcome=body.outcome, received_at=record["received_at"],
                       review=list(applied.review), victim_mule=list(applied.victim))


async def entry_feedback(clients: Clients, key: str) -> dict[str, Any]:
    """What ``GET /v1/entries`` adds to an entry: its feedback history, the counts by outcome, its flags."""
    history = await clients.feedback.of_entry(key)
    flags = await clients.feedback.flags(key)
    counts: dict[str, int] = {}
    for item in history:
        counts[item["outcome"]] = counts.get(item["outcome"], 0) + 1
    return {"feedback_history": history, "feedback_counts": counts,
            "review": flags.get("review"), "victim_mule": flags.get("victim")}
