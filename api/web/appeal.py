"""The public appeal pages: a listed person (or their bank or telco) appeals, and follows the appeal, in
Bahasa Malaysia or English.

    GET/POST /appeal          the form; filing it answers the appeal id and its token (shown once) and the
                              dates by which it is acknowledged and decided
    GET/POST /appeal/status   the appeal id and token; the answer is the appeal's stage and dates

Both answer through the JSON routes' own functions (``api.appeals.file_appeal`` and ``appeal_status``): the
same rate limits, the same rule that only an identifier the public check answers ``listed`` for can be
appealed, the same refusal of a second open appeal. The page adds words, never facts: a refusal says why in
the page's language, the status says the stage and its dates, and no page shows who listed the identifier or
why. Everything a visitor types travels in a POST body only, and nothing here logs it.

    200   the form, the filed appeal, or the appeal's status
    404   (status) no appeal has this id, or the token does not match it
    409   nothing to appeal (not listed by an agency), an appeal already open, or a rejection too recent
    422   the form again, the field at fault marked and explained
    429   over a rate limit (``Retry-After``)
    503   Redis or Kafka unreachable (``Retry-After``)
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError

from sekat.api import appeals
from sekat.api.clients import ClientsDep
from sekat.api.web.banks import BANKS
from sekat.api.web.language import TEXT, choose
from sekat.api.web.pages import form, page, too_many, unavailable
from sekat.errors import BlocklistUnavailable

router = APIRouter(include_in_schema=False)
APPELLANTS = ("person", "bank", "telco")
# The form's fields, in the order a visitor meets them (the first at fault is the one marked).
FIELDS = ("kind", "phone", "bank", "account", "appellant", "name", "email", "contact_phone", "grounds", "evidence_ref")


def _view(lang: str, **context: object) -> dict[str, object]:
    return {"lang": lang, "t": TEXT[lang], "banks": BANKS, "here": "/appeal", "fields": {"kind": "phone",
            "appellant": "person"}, "error": None, "refused": None, "filed": None, "appeal": None, **context}


def _language(request: Request, fields: dict[str, str] | None = None) -> str:
    asked = fields.get("lang") if fields is not None else request.query_params.get("lang")
    return choose(asked, request.headers.get("accept-language"))


def _appeal_body(fields: dict[str, str]) -> appeals.AppealIn:
    """The JSON route's body from the form (pydantic's ValidationError if a field is not acceptable)."""
    kind = "account" if fields.get("kind") == "account" else "phone"
    appellant = fields.get("appellant", "person")
    return appeals.AppealIn(
        kind=kind, value=fields.get(kind, "").strip(), bank=(fields.get("bank") or None) if kind == "account" else None,
        appellant=appellant if appellant in APPELLANTS else "person",
        contact=appeals.ContactIn(name=fields.get("name", "").strip(), email=fields.get("email", "").strip(),
                                  phone=fields.get("contact_phone", "").strip()),
        grounds=fields.get("grounds", "").strip(), evidence_ref=fields.get("evidence_ref", "").strip())


def _invalid_field(exc: ValidationError, kind: str) -> str:
    """The form field the first error of ``exc`` is about."""
    names = {"value": kind, "bank": "bank", "name": "name", "email": "email", "phone": "contact_phone",
             "grounds": "grounds", "evidence_ref": "evidence_ref", "kind": "kind"}
    for error in exc.errors():
        for part in reversed(error.get("loc", ())):
            if part in names:
                return names[str(part)]
    return "grounds"


def _refusal(exc: appeals.FilingRefused) -> tuple[str, dict[str, str]]:
    """The sentence key in TEXT (and its values) that says why the JSON route refused the filing."""
    return f"refused_{exc.reason}", ({"date": exc.reappeal_after[:10]} if exc.reason == "rejected" else {})


@router.get("/appeal", response_class=HTMLResponse)
async def appeal_form(request: Request) -> HTMLResponse:
    return page("appeal.html", **_view(_language(request)))


@router.post("/appeal", response_class=HTMLResponse)
async def file_appeal(request: Request, clients: ClientsDep) -> HTMLResponse:
    fields = await form(request, longer={"grounds": appeals.GROUNDS_MAX + 1})
    lang = _language(request, fields)
    kept = {name: fields.get(name, "") for name in FIELDS}
    kept["kind"] = "account" if kept["kind"] == "account" else "phone"
    view = _view(lang, fields=kept)
    try:
        body = _appeal_body(fields)
    except ValidationError as exc:
        return page("appeal.html", 422, **{**view, "error": _invalid_field(exc, kept["kind"])})
    try:
        answer = await appeals.file_appeal(body, request, clients)
    except appeals.FilingRefused as exc:
        refused, values = _refusal(exc)
        return page("appeal.html", 409, **{**view, "refused": refused, "values": values})
    except HTTPException as exc:
        field = exc.detail.get("field") if isinstance(exc.detail, dict) else None
        error = {"contact": "contact", "phone": "phone", "account": "account", "bank": "bank"}.get(
            str(field), kept["kind"])
        return page("appeal.html", exc.status_code, **{**view, "error": error})
    except BlocklistUnavailable:
        return unavailable("appeal.html", view)
    if isinstance(answer, JSONResponse):  # over the appeals' rate limit: 429 with Retry-After
        return too_many("appeal.html", view, answer)
    return page("appeal.html", **{**view, "filed": answer, "fields": {}})


@router.get("/appeal/status", response_class=HTMLResponse)
async def status_form(request: Request) -> HTMLResponse:
    return page("appeal_status.html", **_view(_language(request), here="/appeal/status"))


@router.post("/appeal/status", response_class=HTMLResponse)
async def status(request: Request, clients: ClientsDep) -> HTMLResponse:
    fields = await form(request)
    lang = _language(request, fields)
    appeal_id, token = fields.get("appeal_id", "").strip(), fields.get("token", "").strip()
    view = _view(lang, here="/appeal/status", fields={"appeal_id": appeal_id})
    if not appeal_id or len(appeal_id) > 64 or not token or len(token) > 64:
        return page("appeal_status.html", 422, **{**view, "error": "appeal_id" if not appeal_id else "token"})
    try:
        answer = await appeals.appeal_status(appeal_id, request, clients, x_appeal_token=token)
    except HTTPException as exc:
        return page("appeal_status.html", exc.status_code, **{**view, "error": "not_found"})
    except BlocklistUnavailable:
        return unavailable("appeal_status.html", view)
    if isinstance(answer, JSONResponse):
        return too_many("appeal_status.html", view, answer)
    return page("appeal_status.html", **{**view, "appeal": answer})
