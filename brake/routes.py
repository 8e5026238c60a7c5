"""Agency API routes of the safety brake: see what it switched to shadow, and re-arm it.

    GET  /v1/brake          tripped targets and the brake's recent audit log (scope read; a purpose is
                            required, and each entry the answer names is audited as read, docs/privacy.md)
    POST /v1/brake/rearm    re-arm one target (scope rearm; reason required): the workers act on it again
                            within a second, its recent counts start from zero

A re-arm is audited before it takes effect: its record on ``sekat.decisions``
(``"stream": "brake"``, ``"action": "rearm"``, with the trip it lifts) must be
acknowledged by Kafka before the brake's state in Redis changes. If Kafka does
not take it, the API answers 503 and the target stays braked, so no re-arm is
ever missing from the audit trail. The state change then also goes to the
brake's log in Redis (who, when, why, the trip lifted), and a log line names
the target with the identifier masked (the free-text reason stays out of the
log). The record states the authority's decision: if Redis fails after it (503)
or another authority re-armed the target in between (404), the record is on the
topic and the brake's log in Redis says whether the re-arm took effect.
"""

# No `from __future__ import annotations`: FastAPI resolves the endpoints' annotations at run time.

import asyncio
import logging
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from sekat.api.auth import Caller
from sekat.api.clients import ClientsDep
from sekat.api.entries import audit_read, required_purpose
from sekat.api.errors import error_responses, field_error
from sekat.api.keys import ApiKey
from sekat.brake.store import dimension, masked_target, names_entry, valid_target
from sekat.records import COMMAND_NAMESPACE, iso

log = logging.getLogger("sekat.api")
router = APIRouter(tags=["authorities"])


class RearmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str = Field(min_length=3, max_length=220,
                        description="as GET /v1/brake lists it: entry:{identifier key}, rule:{rule id} or "
                                    "source:{agency}")
    reason: str = Field(min_length=1, max_length=512, description="why acting on it again is safe")


class TripOut(BaseModel):
    """A target the brake switched to shadow, and why."""
    model_config = ConfigDict(extra="allow")
    target: str
    dimension: str = Field(description="entry, rule or source")
    count: int = Field(description="commands it drove in the window")
    limit: int
    window_s: int
    tripped_at: str
    tripped_by: str = Field(description="the worker that tripped it")
    status: str | None = Field(None, description="an entry's status when it tripped")


class BrakeEvent(BaseModel):
    """One event of the brake's audit log: a trip, a re-arm or a lift."""
    model_config = ConfigDict(extra="allow")
    event: str = Field(description="trip, rearm or lift")
    target: str = Field(description="entry:{identifier key}, rule:{rule id} or source:{agency}; "
                                    "entry:{kind}:(removed) once the entry was purged or erased")
    removed: str | None = Field(None, description="purged or erased: the entry the event was about left Sekat")


class BrakeState(BaseModel):
    tripped: list[TripOut]
    log: list[BrakeEvent] = Field(description="the latest audit events, newest first")


class Rearmed(BaseModel):
    target: str
    rearmed_at: str
    rearmed_by: str
    trip: TripOut


BrakePurpose = Annotated[str | None, Query(max_length=200, description=(
    "why the brake's state is read, e.g. an incident reference (required; each entry it names is recorded in "
    "the audit trail)"))]


@router.get("/v1/brake", response_model=BrakeState, response_model_exclude_unset=True,
            responses=error_responses(401, 403, 422, 503))
async def brake_state(key: Annotated[ApiKey, Depends(Caller("read"))], clients: ClientsDep,
                      purpose: BrakePurpose = None) -> dict[str, Any]:
    """Targets the safety brake switched to shadow mode, and its latest audit events; each entry the answer
    names is audited as a read of it, with the purpose."""
    why = required_purpose(purpose, "the brake's state is read")
    tripped = await clients.brakes.tripped()
    body = {"tripped": [tripped[t] for t in sorted(tripped)], "log": await clients.brakes.history()}
    named = dict.fromkeys(str(item.get("target", ""))[len("entry:"):] for item in (*body["tripped"], *body["log"])
                          if names_entry(str(item.get("target", ""))))
    # Every read record acknowledged before the answer shows any of them (503 otherwise).
    await asyncio.gather(*(audit_read(clients, key, ident, why, True) for ident in named))
    return body


@router.post("/v1/brake/rearm", response_model=Rearmed, response_model_exclude_unset=True,
             responses=error_responses(401, 403, 404, 413, 422, 503))
async def rearm(body: RearmIn, key: Annotated[ApiKey, Depends(Caller("rearm"))], clients: ClientsDep) -> Rearmed:
    """Re-arm a target the brake switched to shadow: its matches send commands again."""
    target = body.target.strip()
    if not valid_target(target):
        raise field_error(422, "target", "must be entry:{identifier key}, rule:{rule id} or source:{agency}, "
                                         "as GET /v1/brake lists it")
    now = clients.clock()
    who = f"{key.agency} (api:{key.key_id})"
    trip = await clients.brakes.trip_of(target)
    if trip is None:
        raise field_error(404, "target", "the brake is not engaged on it")
    reason = body.reason.strip()
    event_id = "brake-" + str(uuid.uuid5(COMMAND_NAMESPACE, f"rearm|{target}|{iso(now)}"))
    record = {"event_id": event_id, "stream": "brake", "action": "rearm", "target": target,
              "dimension": dimension(target), "at": iso(now), "by": who, "reason": reason, "trip": trip}
    # Audit first: a re-arm Kafka has no record of must not take effect (503, the target stays braked).
    await clients.send(clients.settings.topic_decisions, orjson.dumps(record), event_id.encode(),
                       "not re-armed: Kafka did not acknowledge the audit record")
    event = {"event": "rearm", "target": target, "dimension": dimension(target), "at": iso(now),
             "by": who, "reason": reason}
    lifted = await clients.brakes.rearm(target, now.timestamp(), clients.settings.brake_window_s, event)
    if lifted is None:
        raise field_error(404, "target", "the brake is no longer engaged on it (re-armed meanwhile)")
    log.warning("safety brake re-armed on %s by %s", masked_target(target), who)  # the reason is in the audit
    return Rearmed(target=target, rearmed_at=iso(now), rearmed_by=who, trip=TripOut(**lifted))
