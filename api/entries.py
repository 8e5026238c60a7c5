"""Look-up routes of the agency API: one entry for an agency, listed or not for the public.

An identifier is asked about by ``phone``, by ``account`` with ``bank``, or by
``sender`` (an SMS sender ID), ``url`` or ``domain``. The public check of a
``url`` answers for the link and for its host and parent domains: someone
asking about a link they were sent wants to know whether the site is listed.
A protected identifier (a bank's own hotline, say) is never listed, so both
routes answer as for an identifier that is not on the blocklist.

The public check answers ``listed`` only for an entry an agency stands behind:
one of the reports keeping it listed (since its last revocation, not yet
expired) was filed by an agency. A rule's automatic ``reported`` entry
(source ``SEKAT-RULE`` or ``SEKAT-FOLLOW``, ``api.keys.RULE_SOURCES``) is a
suspicion the banks act on, not a public finding: answering it would tell a
scammer which of their accounts Sekat has noticed (docs/threat-model.md).
"""

# No `from __future__ import annotations`: FastAPI resolves the endpoints' annotations at run time.

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from sekat.api.auth import Caller
from sekat.api.clients import ClientsDep
from sekat.api.errors import field_error
from sekat.api.keys import RULE_SOURCES, ApiKey
from sekat.api.limits import client_bucket
from sekat.blocklist.filing import identifier
from sekat.blocklist.lifecycle import standing
from sekat.blocklist.store import BlocklistStore
from sekat.errors import InvalidReport
from sekat.identifiers import parse_key
from sekat.records import Entry, key_object

router = APIRouter()

MAX_GROUP = 200  # members shown for one linked group

Phone = Annotated[str | None, Query(max_length=64, description="phone number in any common format")]
Account = Annotated[str | None, Query(max_length=64, description="account number; needs bank")]
Bank = Annotated[str | None, Query(max_length=16, description="BIC of the account's bank")]
Sender = Annotated[str | None, Query(max_length=32, description="SMS sender ID (or use phone for a number)")]
Url = Annotated[str | None, Query(max_length=512, description="a link, as received")]
Domain = Annotated[str | None, Query(max_length=269, description="a domain name")]


class StatusOut(BaseModel):
    listed: bool


def lookup_key(phone: str | None, account: str | None, bank: str | None, region: str,
               web: dict[str, str | None] | None = None) -> str | None:
    """The index key asked about, or None for a protected identifier; 422 naming the field at fault.

    ``web``: the ``sender``, ``url`` and ``domain`` parameters."""
    given = {kind: value for kind, value in (web or {}).items() if value is not None}
    if (phone is not None) + (account is not None) + len(given) != 1:
        raise field_error(422, "phone", "give exactly one of phone, account (with bank), sender, url or domain")
    try:
        if given:
            [(kind, value)] = given.items()
            try:
                _, number = identifier(kind, value, None, region)
            except InvalidReport as exc:
                if exc.reason == "protected":
                    return None
                raise field_error(422, kind, str(exc).split(": ", 1)[-1]) from None
            return f"{kind}:{number}"
        if phone is not None:
            _, number = identifier("phone", phone, None, region)
            return f"phone:{number}"
        bank_code, number = identifier("account", account or "", bank, region)
        return f"account:{bank_code}:{number}"
    except InvalidReport as exc:
        if exc.reason == "protected":
            return None
        field = "account" if exc.field == "value" and account is not None else \
            "phone" if exc.field == "value" else exc.field
        raise field_error(422, field, str(exc).split(": ", 1)[-1]) from None


def publicly_listed(entry: Entry, now: datetime) -> bool:
    """Whether the public check may say ``entry`` is listed: it is active, and a report keeping it listed (since
    the last revocation, not expired) was filed by an agency rather than by a rule."""
    if not entry.active_at(now):
        return False
    return any(source.upper() not in RULE_SOURCES and (not until or datetime.fromisoformat(until) > now)
               for source, until in standing(entry).items())


async def linked_group(store: BlocklistStore, start: Entry, now: datetime) -> list[dict[str, Any]]:
    """Every identifier linked to ``start``, directly or through others (one MGET per hop)."""
    seen: dict[str, Entry | None] = {start.key: start}
    frontier = [link.key for link in start.links]
    while frontier and len(seen) < MAX_GROUP:
        wanted = [k for k in dict.fromkeys(frontier) if k not in seen][:MAX_GROUP - len(seen)]
        found = await store.lookup_many(wanted)
        frontier = []
        for key in wanted:
            entry = found.get(key)
            seen[key] = entry
            if entry is not None:
                frontier.extend(link.key for link in entry.links)
    return [{**key_object(k), "key": k, "status": e.status.value if e else "not listed",
             "active": bool(e and e.active_at(now))} for k, e in seen.items() if k != start.key]


@router.get("/v1/entries", tags=["agencies"], responses={401: {}, 403: {}, 404: {}, 422: {}, 503: {}})
async def entry(key: Annotated[ApiKey, Depends(Caller("read"))], clients: ClientsDep, phone: Phone = None,
                account: Account = None, bank: Bank = None, sender: Sender = None, url: Url = None,
                domain: Domain = None) -> dict[str, Any]:
    """One entry with its full history (who filed what, when and why)."""
    web = {"sender": sender, "url": url, "domain": domain}
    ident = lookup_key(phone, account, bank, clients.settings.phone_region, web)
    found = await clients.store.get(ident) if ident is not None else None
    if found is None:
        asked = next((k for k, v in web.items() if v is not None), "phone" if phone is not None else "account")
        raise field_error(404, asked, "not on the blocklist")
    body = found.to_json()
    body["active"] = found.active_at(clients.clock())
    body["group"] = await linked_group(clients.store, found, clients.clock())
    return body


@router.get("/v1/status", response_model=StatusOut, tags=["public"], responses={422: {}, 429: {}, 503: {}})
async def status(request: Request, clients: ClientsDep, phone: Phone = None, account: Account = None,
                 bank: Bank = None, sender: Sender = None, url: Url = None,
                 domain: Domain = None) -> StatusOut | JSONResponse:
    """Public check: has an agency listed this one number, account, sender ID, link or domain (a link: or its
    site)? Reveals nothing else."""
    settings = clients.settings
    client = client_bucket(request.client.host if request.client else "unknown")
    allowed, reset = await clients.allow_status_check(client, settings.status_rate_per_minute)
    if not allowed:
        return too_many(f"at most {settings.status_rate_per_minute} status checks a minute from one address", reset)
    allowed, reset = await clients.allow_any_status_check(settings.status_global_rate_per_minute)
    if not allowed:
        return too_many(f"at most {settings.status_global_rate_per_minute} status checks a minute from all "
                        "addresses together", reset)
    ident = lookup_key(phone, account, bank, settings.phone_region, {"sender": sender, "url": url, "domain": domain})
    if ident is None:
        return StatusOut(listed=False)
    keys = [ident]
    if ident.startswith("url:"):  # the link's site too: its host and parent domains
        keys += [d.key for d in parse_key(ident).domains()]
    found = await clients.store.lookup_many(keys)
    now = clients.clock()
    return StatusOut(listed=any(publicly_listed(e, now) for e in found.values()))


def too_many(limit: str, reset: int) -> JSONResponse:
    """429 for a status check over ``limit``, with ``Retry-After``."""
    return JSONResponse(status_code=429, headers={"Retry-After": str(reset)},
                        content={"detail": {"message": f"{limit}; retry later"}})
