"""Who is calling: the ``X-API-Key`` header checked against the key store, and the scope a route needs.

A route that needs a key declares it as a dependency holding its scope::

    key: Annotated[ApiKey, Depends(Caller("report"))]

No key, or one that is unknown or disabled: 401 with ``WWW-Authenticate``.
A key without the scope: 403. Both name ``X-API-Key`` as the field. An
institution's key (``ApiKey.institution``) may speak only for what is
addressed to that institution: ``speaks_for`` is the check, 403 otherwise.
"""

# No `from __future__ import annotations`: FastAPI resolves the dependency's annotations at run time.

from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader

from sekat.api.clients import ClientsDep
from sekat.api.errors import field_error
from sekat.api.keys import ApiKey

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="per-agency key from `sekat apikey create`")
_CHALLENGE = {"WWW-Authenticate": "ApiKey"}


def require(key: ApiKey, scope: str) -> None:
    """403 unless ``key`` holds ``scope``."""
    if scope not in key.scopes:
        raise field_error(403, "X-API-Key", f"this key lacks the '{scope}' scope")


def speaks_for(key: ApiKey, institution: str, field: str) -> None:
    """403 naming ``field`` unless ``key`` is the key of ``institution``."""
    if not key.institution:
        raise field_error(403, "X-API-Key", "this key does not belong to an institution")
    if key.institution != institution:
        raise field_error(403, field, "addressed to another institution: this key speaks only for "
                                      f"{key.institution}")


class Caller:
    """Dependency: the request's enabled API key, holding ``scope``."""

    def __init__(self, scope: str) -> None:
        self.scope = scope

    async def __call__(self, clients: ClientsDep, token: Annotated[str | None, Depends(api_key_header)]) -> ApiKey:
        if not token:
            raise field_error(401, "X-API-Key", "header is required", _CHALLENGE)
        key = await clients.keys.verify(token)
        if key is None:
            raise field_error(401, "X-API-Key", "unknown or disabled key", _CHALLENGE)
        require(key, self.scope)
        return key
