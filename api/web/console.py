"""The analyst console: agency users look entries up and re-arm the safety brake in a browser.

    GET  /console                 sign-in form, or the home page: one panel per feature the key may use
    POST /console/login           sign in with an API key (``sekat apikey create``; needs the read scope)
    POST /console/logout          sign out
    POST /console/search          one entry, read with the purpose the analyst gives (``GET /v1/entries``: the
                                  read is audited): its state, history, sources, links, and
                                  the institutions sent a command about it (``release.acted``) and their feedback
    POST /console/brake/rearm     re-arm a target with a reason (``POST /v1/brake/rearm``)
    GET  /console/appeals/{id}    an appeal routed to the key's agency, whole (contact details included)
    POST /console/appeals/{id}/review    acknowledge it (``POST /v1/appeals/{id}/review``)
    POST /console/appeals/{id}/decision  uphold or reject it with a reason (``POST /v1/appeals/{id}/decision``)

Signing in checks the key as the API does (``api.auth.Caller``) and keeps it in the ``sekat_session``
cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Path=/console,
Secure when the API speaks HTTPS, and no Max-Age (it ends with the browser). Every later request checks the
key again, so a key disabled with ``sekat apikey disable`` signs its sessions out at once, and no session
state lives on the server. Each form carries a CSRF token: before sign-in a random value also set in a
cookie (double submit), after it an HMAC of the session's key, which only a page of this origin can know.

Every action calls the API's own route function with the signed-in key (``api.entries.entry``,
``brake.routes.rearm``, ``api.appeals.review`` and ``decide``), so its scope checks, validation, Kafka audit
record, brake log and an upheld appeal's revocation are exactly the API's; there is no second path.
Identifiers travel in POST bodies only; an appeal's page is addressed by its random id. An appellant's contact
details and grounds are shown on that page only, to the agencies the appeal is routed to.

A feature adds a panel in one place: a ``Panel`` in ``HOME_PANELS`` (a section of the home page, with the
scope it needs and a coroutine loading what its template shows) or an ``EntryPanel`` in ``ENTRY_PANELS``
(a section of an entry's page, left out when ``load`` answers None), plus its template under ``templates/console/`` and, if it acts, a route here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from sekat.api import appeals, entries
from sekat.api.auth import Caller
from sekat.api.clients import Clients, ClientsDep
from sekat.api.keys import ApiKey
from sekat.api.web.banks import BANKS
from sekat.api.web.pages import form, page
from sekat.brake import routes as brake
from sekat.errors import BlocklistUnavailable

router = APIRouter(include_in_schema=False)

SESSION = "sekat_session"
LOGIN_CSRF = "sekat_login_csrf"
PATH = "/console"
_CSRF_LABEL = b"sekat console csrf"


@dataclass(frozen=True)
class Panel:
    """A section of the console's home page, shown to keys holding ``scope``."""

    name: str
    title: str
    template: str  # under templates/console/
    scope: str
    load: Callable[[ApiKey, Clients], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class EntryPanel:
    """A section of an entry's page: ``load`` gets the entry as ``GET /v1/entries`` answers it, and answers
    None when the section has nothing to show."""

    name: str
    title: str
    template: str
    load: Callable[[dict[str, Any], ApiKey, Clients], Awaitable[dict[str, Any] | None]]


async def _search(key: ApiKey, clients: Clients) -> dict[str, Any]:
    return {"banks": BANKS}


BRAKE_PURPOSE = "analyst console: the safety brake's panel"  # the audited purpose of its reads


async def _brake(key: ApiKey, clients: Clients) -> dict[str, Any]:
    """The brake's panel: as ``GET /v1/brake`` answers it, each entry it names audited as read by the key."""
    state = await brake.brake_state(key, clients, BRAKE_PURPOSE)
    return {"tripped": state["tripped"], "log": state["log"][:20], "can_rearm": "rearm" in key.scopes}


async def _entry_itself(entry: dict[str, Any], key: ApiKey, clients: Clients) -> dict[str, Any]:
    return {}


# What an institution did, by the release it is owed (release/acted.py keeps ``ACTION|INSTITUTION``).
_ACTED = {"RELEASE_ACCOUNT": "bank: froze the account or held a payment",
          "UNBLOCK_NUMBER": "telco: blocked or labelled calls"}


async def _commands(entry: dict[str, Any], key: ApiKey, clients: Clients) -> dict[str, Any]:
    """The institutions Sekat sent a command about this entry, whose release is still to come."""
    members = (await clients.acted.members([entry["key"]]))[entry["key"]]
    acted = [(institution, _ACTED.get(action, action)) for action, _, institution in
             (member.partition("|") for member in members)]
    return {"acted": acted}


async def _open_appeals(key: ApiKey, clients: Clients) -> dict[str, Any]:
    """What ``GET /v1/appeals`` answers the key: its agency's open appeals, with the deadlines each has passed."""
    return await appeals.open_appeals(key, clients)


async def _entry_appeals(entry: dict[str, Any], key: ApiKey, clients: Clients) -> dict[str, Any] | None:
    """The latest appeal on the entry, by its stage and dates only; its id (a link to its page) only for the
    agencies it is routed to, with the appeal scope."""
    latest = await clients.appeals.latest_on(entry["key"])
    if latest is None:
        return None
    routed = "appeal" in key.scopes and key.agency in latest.agencies
    return {"status": latest.status, "filed_at": latest.filed_at, "decide_by": latest.decide_by,
            "decided_at": latest.decided_at, "appeal_id": latest.appeal_id if routed else ""}


async def _feedback(entry: dict[str, Any], key: ApiKey, clients: Clients) -> dict[str, Any] | None:
    """Institutions' feedback on the commands about this entry (``GET /v1/entries`` carries it), its flags."""
    history = entry.get("feedback_history") or []
    if not history and not entry.get("review") and not entry.get("victim_mule"):
        return None
    return {"history": history, "counts": sorted((entry.get("feedback_counts") or {}).items()),
            "review": entry.get("review"), "victim_mule": entry.get("victim_mule")}


HOME_PANELS: tuple[Panel, ...] = (
    Panel("search", "Look up an entry", "search.html", "read", _search),
    Panel("appeals", "Open appeals", "appeals.html", "appeal", _open_appeals),
    Panel("brake", "Safety brake", "brake.html", "read", _brake),
)
ENTRY_PANELS: tuple[EntryPanel, ...] = (
    EntryPanel("state", "State", "entry_state.html", _entry_itself),
    EntryPanel("history", "History", "entry_history.html", _entry_itself),
    EntryPanel("links", "Linked identifiers", "entry_links.html", _entry_itself),
    EntryPanel("commands", "Commands sent", "entry_commands.html", _commands),
    EntryPanel("feedback", "Feedback from institutions", "entry_feedback.html", _feedback),
    EntryPanel("appeal", "Appeal", "entry_appeal.html", _entry_appeals),
)


def csrf_of(token: str) -> str:
    """The CSRF token of the session holding API key ``token``."""
    return hmac.new(token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def _signed_in(request: Request, clients: Clients, scope: str = "read") -> tuple[ApiKey, str] | None:
    """The session's key (checked as the API checks ``X-API-Key``) and its token, or None."""
    token = request.cookies.get(SESSION, "")
    if not token:
        return None
    try:
        return await Caller(scope)(clients, token), token
    except HTTPException as exc:
        if exc.status_code == 401:
            return None
        raise


def _login(request: Request, status_code: int = 200, error: str = "") -> HTMLResponse:
    csrf = secrets.token_urlsafe(32)
    response = page("console/login.html", status_code, lang="en", csrf=csrf, error=error)
    response.set_cookie(LOGIN_CSRF, csrf, path=PATH, httponly=True, samesite="strict", secure=_secure(request))
    if request.cookies.get(SESSION):
        response.delete_cookie(SESSION, path=PATH, httponly=True, samesite="strict", secure=_secure(request))
    return response


async def _home(key: ApiKey, token: str, clients: Clients, status_code: int = 200,
                notice: str = "", problem: str = "") -> HTMLResponse:
    panels = [(panel, await panel.load(key, clients)) for panel in HOME_PANELS if panel.scope in key.scopes]
    return page("console/home.html", status_code, lang="en", key=key, csrf=csrf_of(token), panels=panels,
                notice=notice, problem=problem)


def _message(exc: HTTPException) -> str:
    detail = exc.detail
    return str(detail.get("message", "")) if isinstance(detail, dict) else str(detail)


def _unavailable(exc: BlocklistUnavailable) -> HTMLResponse:
    return page("console/problem.html", 503, {"Retry-After": "5"}, lang="en",
                message=f"Sekat cannot reach its store or Kafka ({exc}); try again shortly.")


@router.get("/console", response_class=HTMLResponse)
async def home(request: Request, clients: ClientsDep) -> Response:
    try:
        session = await _signed_in(request, clients)
        if session is None:
            return _login(request)
        return await _home(*session, clients)
    except HTTPException as exc:  # a key without the read scope
        return _login(request, exc.status_code, _message(exc))
    except BlocklistUnavailable as exc:
        return _unavailable(exc)


@router.post("/console/login", response_class=HTMLResponse)
async def login(request: Request, clients: ClientsDep) -> Response:
    fields = await form(request)
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not expected or not hmac.compare_digest(expected, fields.get("csrf", "")):
        return _login(request, 403, "The sign-in form expired; please sign in again.")
    token = fields.get("api_key", "").strip()
    try:
        await Caller("read")(clients, token)
    except HTTPException as exc:
        return _login(request, exc.status_code, _message(exc).replace("X-API-Key", "API key"))
    except BlocklistUnavailable as exc:
        return _unavailable(exc)
    response = RedirectResponse(PATH, status_code=303)
    response.set_cookie(SESSION, token, path=PATH, httponly=True, samesite="strict", secure=_secure(request))
    response.delete_cookie(LOGIN_CSRF, path=PATH, httponly=True, samesite="strict", secure=_secure(request))
    return response


async def _acting(request: Request, clients: Clients, scope: str = "read"
                  ) -> tuple[ApiKey, str, dict[str, str]] | Response:
    """The signed-in key, its token and the form of a console action, or the answer refusing it."""
    fields = await form(request)
    try:
        session = await _signed_in(request, clients, "read")
    except HTTPException as exc:
        return _login(request, exc.status_code, _message(exc))
    if session is None:
        return _login(request, 401, "Your session has ended; please sign in again.")
    key, token = session
    if not hmac.compare_digest(csrf_of(token), fields.get("csrf", "")):
        return page("console/problem.html", 403, lang="en", message="This form is not from this console; "
                    "open the console again and retry.")
    return key, token, fields


@router.post("/console/logout")
async def logout(request: Request, clients: ClientsDep) -> Response:
    acting = await _acting(request, clients)
    if isinstance(acting, Response):
        return acting
    response = RedirectResponse(PATH, status_code=303)
    response.delete_cookie(SESSION, path=PATH, httponly=True, samesite="strict", secure=_secure(request))
    return response


@router.post("/console/search", response_class=HTMLResponse)
async def search(request: Request, clients: ClientsDep) -> Response:
    try:
        acting = await _acting(request, clients)
        if isinstance(acting, Response):
            return acting
        key, token, fields = acting
        account = fields.get("kind") == "account"
        value = fields.get("account" if account else "phone", "").strip()[:64]
        try:
            purpose = fields.get("purpose", "").strip()[:200]
            found = await entries.entry(key, clients, phone=None if account else value,
                                        account=value if account else None,
                                        bank=fields.get("bank", "")[:16] if account else None, purpose=purpose)
        except HTTPException as exc:
            return await _home(key, token, clients, exc.status_code, problem=_message(exc))
        loaded = [(panel, await panel.load(found, key, clients)) for panel in ENTRY_PANELS]
        panels = [(panel, data) for panel, data in loaded if data is not None]
        return page("console/entry.html", lang="en", key=key, csrf=csrf_of(token), entry=found, panels=panels,
                    purpose=purpose)
    except BlocklistUnavailable as exc:
        return _unavailable(exc)


@router.post("/console/brake/rearm", response_class=HTMLResponse)
async def rearm(request: Request, clients: ClientsDep) -> Response:
    try:
        acting = await _acting(request, clients)
        if isinstance(acting, Response):
            return acting
        key, token, fields = acting
        try:
            body = brake.RearmIn(target=fields.get("target", ""), reason=fields.get("reason", "").strip())
            done = await brake.rearm(body, await Caller("rearm")(clients, token), clients)
        except ValidationError as exc:
            fields_at_fault = ", ".join(str(err["loc"][0]) for err in exc.errors())
            return await _home(key, token, clients, 422, problem=f"Give a {fields_at_fault} for the re-arm.")
        except HTTPException as exc:
            return await _home(key, token, clients, exc.status_code, problem=_message(exc))
        return await _home(key, token, clients, notice=f"Re-armed {done.target} as {done.rearmed_by}.")
    except BlocklistUnavailable as exc:
        return _unavailable(exc)


def _entry_form(identifier: str) -> dict[str, str]:
    """The search form's fields that open the entry ``identifier`` (``phone:+60...``, ``account:BIC:number``)."""
    kind, _, rest = identifier.partition(":")
    bank, _, value = rest.rpartition(":")
    return {"kind": kind, "value": value, "bank": bank}


async def _appeal(key: ApiKey, token: str, clients: Clients, appeal_id: str, status_code: int = 200,
                  notice: str = "", problem: str = "") -> HTMLResponse:
    """An appeal's page, as the agency it is routed to sees it (``GET /v1/appeals``' record of it, whole)."""
    try:
        found = await appeals.routed(clients.appeals, appeal_id, await Caller("appeal")(clients, token))
    except HTTPException as exc:
        return page("console/problem.html", exc.status_code, lang="en", key=key, csrf=csrf_of(token),
                    message=_message(exc))
    shown = {**found.for_agency(), "overdue": appeals.overdue(found, clients.clock())}
    return page("console/appeal.html", status_code, lang="en", key=key, csrf=csrf_of(token), appeal=shown,
                entry=_entry_form(found.identifier), can_review=found.status == "received",
                can_decide=found.status == "under_review" and key.agency not in found.decided_by(),
                notice=notice, problem=problem)


@router.get("/console/appeals/{appeal_id}", response_class=HTMLResponse)
async def appeal_page(appeal_id: str, request: Request, clients: ClientsDep) -> Response:
    try:
        session = await _signed_in(request, clients)
        if session is None:
            return _login(request, 401, "Your session has ended; please sign in again.")
        return await _appeal(*session, clients, appeal_id)
    except HTTPException as exc:
        return _login(request, exc.status_code, _message(exc))
    except BlocklistUnavailable as exc:
        return _unavailable(exc)


async def _appeal_step(appeal_id: str, request: Request, clients: Clients,
                       step: Callable[[ApiKey, dict[str, str]], Awaitable[str]]) -> Response:
    """Take one step of an appeal from the console: ``step`` is given the signed-in key (with the ``appeal``
    scope) and the form, and answers the notice to show; a refusal (HTTPException) is shown on the appeal's
    page with its status code."""
    try:
        acting = await _acting(request, clients)
        if isinstance(acting, Response):
            return acting
        key, token, fields = acting
        try:
            notice = await step(await Caller("appeal")(clients, token), fields)
        except HTTPException as exc:
            return await _appeal(key, token, clients, appeal_id, exc.status_code, problem=_message(exc))
        return await _appeal(key, token, clients, appeal_id, notice=notice)
    except BlocklistUnavailable as exc:
        return _unavailable(exc)


@router.post("/console/appeals/{appeal_id}/review", response_class=HTMLResponse)
async def review_appeal(appeal_id: str, request: Request, clients: ClientsDep) -> Response:
    async def step(key: ApiKey, fields: dict[str, str]) -> str:
        await appeals.review(appeal_id, key, clients)
        return f"Acknowledged as {key.agency}: the appeal is under review."
    return await _appeal_step(appeal_id, request, clients, step)


@router.post("/console/appeals/{appeal_id}/decision", response_class=HTMLResponse)
async def decide_appeal(appeal_id: str, request: Request, clients: ClientsDep) -> Response:
    async def step(key: ApiKey, fields: dict[str, str]) -> str:
        try:
            body = appeals.DecisionIn(outcome=fields.get("outcome", ""),  # type: ignore[arg-type]
                                      reason=fields.get("reason", "").strip())
        except ValidationError as exc:
            at_fault = " and ".join(str(err["loc"][0]) for err in exc.errors())
            raise HTTPException(422, f"Give the decision's {at_fault}: upheld or rejected, with a reason.") from None
        return _decided(await appeals.decide(appeal_id, body, key, clients))
    return await _appeal_step(appeal_id, request, clients, step)


def _decided(done: dict[str, Any]) -> str:
    """What a decision did, in words (its answer is ``POST /v1/appeals/{id}/decision``'s)."""
    if done["status"] == "upheld":
        return (f"Upheld: the entry is revoked by report {done['revocation_id']}; every bank and telco that acted "
                "on it gets its release command.")
    if done["status"] == "rejected":
        return f"Rejected: the entry stays listed; the appellant may appeal again from {done['reappeal_after']}."
    return (f"Your uphold is recorded; the entry stays listed until {', '.join(done['awaiting'])} "
            "decide for their reports.")
