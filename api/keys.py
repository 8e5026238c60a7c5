"""Per-agency API keys, stored hashed in Redis.

    {prefix}apikeys   hash: key id -> {"key_id", "agency", "scopes", "sha256", "created_at", "disabled",
                                         "institution" (an institution's key only)}

A key is ``sekat_<key id>_<secret>``; only the SHA-256 of the 256-bit random
secret is stored (a fast hash is enough for a secret that is not a
password: it cannot be guessed), and it is compared in constant time. The
full key is shown once, by ``sekat apikey create``.

Scopes: ``report`` (file reported), ``confirm`` (file confirmed), ``revoke``,
``read`` (look an entry up with its history; see the safety brake), ``rearm`` (re-arm a
target the safety brake switched to shadow), ``appeal`` (list, acknowledge and decide the appeals routed
to the key's agency; an upheld appeal revokes the entry, docs/appeals.md), ``feedback`` (report the outcome
of a command), ``institutions`` (configure the institutions ``sekat relay`` delivers to, with their secrets).

A key may belong to an institution (``sekat apikey create --institution MBBEMYKL``: a bank's
BIC8 or a telco's operator code, as its commands are keyed). Such a key holds the ``feedback``
scope only and speaks only for the commands addressed to that institution; ``feedback`` is
given to institutions' keys only, so no agency key can speak for an institution.

An agency cannot be named after a source the rules file their automatic
reports under (``RULE_SOURCES``): the public status check tells those apart
from an agency's reports by their source.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import redis.asyncio as aioredis

from sekat.blocklist.connection import REDIS_DOWN
from sekat.errors import BlocklistUnavailable, SekatError
from sekat.records import iso
from sekat.rules.follow_money import SOURCE as FOLLOW_SOURCE
from sekat.rules.registry import AutoReport

# The sources of the rules' automatic reports (rules/registry.py, rules/follow_money.py), as the reports agent
# stores every source: upper case.
RULE_SOURCES = frozenset(source.upper() for source in (AutoReport("", 1).source, FOLLOW_SOURCE))
SCOPES = ("report", "confirm", "revoke", "read", "rearm", "appeal", "feedback", "institutions")
INSTITUTION_SCOPES = ("feedback",)
_AGENCY_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
_INSTITUTION = re.compile(r"^[A-Z0-9._-]{1,32}$")  # as sekat.institutions checks an institution's id


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    agency: str
    scopes: tuple[str, ...]
    created_at: str
    disabled: bool = False
    disabled_at: str = ""  # when ``sekat apikey disable`` revoked it (audit)
    institution: str = ""  # the institution it speaks for (its BIC8 or operator code); empty: an agency's key

    def public(self) -> dict[str, object]:
        body: dict[str, object] = {"key_id": self.key_id, "agency": self.agency, "scopes": list(self.scopes),
                                   "created_at": self.created_at, "disabled": self.disabled}
        if self.institution:
            body["institution"] = self.institution
        if self.disabled_at:
            body["disabled_at"] = self.disabled_at
        return body


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(raw: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise SekatError(f"--scopes must be a comma-separated subset of {','.join(SCOPES)}")
    return scopes


class ApiKeyStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "sekat:") -> None:
        self._redis = client
        self._hash = f"{prefix}apikeys"

    async def create(self, agency: str, scopes: tuple[str, ...], institution: str = "") -> tuple[ApiKey, str]:
        """A new key for ``agency`` (or for ``institution``: then ``agency`` may be empty and is the
        institution); returns it with the full key string (shown once, never stored)."""
        institution = institution.strip().upper()
        if institution:
            if not _INSTITUTION.match(institution):
                raise SekatError("--institution must be a BIC8 or an operator code (1-32 letters, digits, '.', "
                                 "'_' or '-'), as its commands are keyed")
            if set(scopes) - set(INSTITUTION_SCOPES):
                raise SekatError(f"an institution's key holds only the {','.join(INSTITUTION_SCOPES)} scope")
            agency = agency or institution
        elif set(scopes) & set(INSTITUTION_SCOPES):
            raise SekatError("the feedback scope is for an institution's key: give --institution")
        agency = agency.strip().upper()
        if not agency or len(agency) > 64 or not set(agency) <= _AGENCY_CHARS:
            raise SekatError("--agency must be 1-64 letters, digits, '_', '-' or '.' (e.g. PDRM)")
        if agency in RULE_SOURCES:
            raise SekatError(f"--agency {agency} is the source of the rules' automatic reports; name the agency")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        key = ApiKey(key_id, agency, scopes, iso(datetime.now(timezone.utc)), institution=institution)
        record = {**key.public(), "sha256": _digest(secret)}
        await self._call(self._redis.hset(self._hash, key_id, orjson.dumps(record)))
        return key, f"sekat_{key_id}_{secret}"

    async def verify(self, token: str) -> ApiKey | None:
        """The enabled key ``token`` belongs to, or None."""
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "sekat" or len(token) > 128:
            return None
        raw = await self._call(self._redis.hget(self._hash, parts[1]))
        if raw is None:
            return None
        record = orjson.loads(raw)
        if record.get("disabled") or not hmac.compare_digest(record["sha256"], _digest(parts[2])):
            return None
        return self._key(record)

    async def all(self) -> list[ApiKey]:
        raw = await self._call(self._redis.hgetall(self._hash))
        return sorted((self._key(orjson.loads(v)) for v in raw.values()), key=lambda k: (k.agency, k.created_at))

    async def disable(self, key_id: str) -> bool:
        raw = await self._call(self._redis.hget(self._hash, key_id))
        if raw is None:
            return False
        record = orjson.loads(raw)
        if record.get("disabled"):
            return True
        record["disabled"], record["disabled_at"] = True, iso(datetime.now(timezone.utc))
        await self._call(self._redis.hset(self._hash, key_id, orjson.dumps(record)))
        return True

    @staticmethod
    def _key(record: dict[str, Any]) -> ApiKey:
        return ApiKey(str(record["key_id"]), str(record["agency"]), tuple(record["scopes"]),
                      str(record["created_at"]), bool(record.get("disabled", False)),
                      str(record.get("disabled_at", "")), str(record.get("institution", "")))

    @staticmethod
    async def _call(awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"API key store unavailable: {type(exc).__name__}") from exc
