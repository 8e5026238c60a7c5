"""Institutions route of the agency API: configure who ``sekat relay`` delivers commands to, beside its file.

    PUT    /v1/institutions/{id}   {"url", "secrets"}: add or replace an institution (scope institutions)
    DELETE /v1/institutions/{id}   remove it (scope institutions)

An institution is checked as ``SEKAT_INSTITUTIONS_FILE``'s entries are (``sekat.institutions``: the id, an
https URL without credentials, one or two ``whsec_`` secrets); a bad one is answered 422 naming the field,
never showing a secret. It is written to ``SEKAT_TOPIC_INSTITUTIONS`` (compacted, keyed by the id; a removal
is a record with no value) and answered 202 once Kafka has it with acks=all. The answer and the logs name
the id, the URL and how many secrets it has, never a secret. Relays read the topic when they start, so a
change takes effect at the next (rolling) restart of the relays, as a change of the file does.
"""

# No `from __future__ import annotations`: FastAPI resolves the endpoints' annotations at run time.

import logging
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from sekat.api.auth import Caller
from sekat.api.clients import ClientsDep
from sekat.api.errors import error_responses, field_error
from sekat.api.keys import ApiKey
from sekat.errors import ConfigError
from sekat.institutions import parse_institutions
from sekat.records import iso

log = logging.getLogger("sekat.api")
router = APIRouter(tags=["authorities"])

InstitutionId = Annotated[str, Path(min_length=1, max_length=32, description="BIC8 or operator code, as its "
                                                                             "commands are keyed")]


class InstitutionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048, description="its https endpoint")
    secrets: list[str] = Field(min_length=1, max_length=2, description="one or two whsec_ secrets (two while "
                                                                       "rotating: the new one first)")


class InstitutionOut(BaseModel):
    id: str
    url: str = ""
    secrets: int = Field(description="how many secrets it has (never the secrets)")
    updated_at: str
    updated_by: str
    removed: bool = False


@router.put("/v1/institutions/{institution}", status_code=202, response_model=InstitutionOut,
            responses=error_responses(401, 403, 413, 422, 503))
async def put_institution(institution: InstitutionId, body: InstitutionIn,
                          key: Annotated[ApiKey, Depends(Caller("institutions"))], clients: ClientsDep) -> InstitutionOut:
    """Add or replace an institution the relay delivers to by webhook."""
    try:
        [checked] = parse_institutions({"institutions": [{"id": institution, "url": body.url,
                                                          "secrets": body.secrets}]},
                                       bool(clients.settings.relay_loopback_http)).values()
    except ConfigError as exc:
        message = str(exc).split(": ", 2)[-1]  # past "SEKAT_INSTITUTIONS_FILE: entry 1 (ID): "
        field = "url" if "url" in message else "secrets" if "secret" in message else "institution"
        raise field_error(422, field, message) from None
    now, who = iso(clients.clock()), f"{key.agency} (api:{key.key_id})"
    record = {"id": checked.id, "url": checked.url, "secrets": body.secrets, "updated_at": now, "updated_by": who}
    await clients.send(clients.settings.topic_institutions, orjson.dumps(record), checked.id.encode(),
                       "institution not configured: Kafka did not acknowledge it")
    log.warning("institution %s configured for the relay (%s, %d secret(s)) by %s", checked.id, checked.url,
                len(checked.keys), who)
    return InstitutionOut(id=checked.id, url=checked.url, secrets=len(checked.keys), updated_at=now, updated_by=who)


@router.delete("/v1/institutions/{institution}", status_code=202, response_model=InstitutionOut,
               responses=error_responses(401, 403, 422, 503))
async def delete_institution(institution: InstitutionId, key: Annotated[ApiKey, Depends(Caller("institutions"))],
                             clients: ClientsDep) -> InstitutionOut:
    """Remove an institution configured through the API (one in SEKAT_INSTITUTIONS_FILE stays until the file
    changes)."""
    ident = institution.strip().upper()
    now, who = iso(clients.clock()), f"{key.agency} (api:{key.key_id})"
    await clients.send(clients.settings.topic_institutions, None, ident.encode(),  # type: ignore[arg-type]
                       "institution not removed: Kafka did not acknowledge it")
    log.warning("institution %s removed from the relay's configuration by %s", ident, who)
    return InstitutionOut(id=ident, secrets=0, updated_at=now, updated_by=who, removed=True)
