"""The public check page: ``GET /check`` shows the form, ``POST /check`` answers it, in Bahasa Malaysia or English.

The answer is the public status check's (``api.entries.status``), called as the route is: the same per-address
and global rate limits, the same normalisation of any common format, the same rule that only an entry an
agency stands behind is listed. The page adds words, never facts: listed or not, what that means, what to do
(do not pay; call 997; how to appeal). Who listed it, why and when stay out, as they do from
``GET /v1/status``.

    200   the form, or the answer (listed / not listed)
    422   the form again, the field at fault marked and explained
    429   over the status check's rate limit (``Retry-After``)
    503   Redis or Kafka unreachable (``Retry-After``)

The identifier travels in the POST body only, and nothing here logs it.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from sekat.api import entries
from sekat.api.clients import ClientsDep
from sekat.api.web.banks import BANKS
from sekat.api.web.language import TEXT, choose
from sekat.api.web.pages import form, page, too_many, unavailable
from sekat.errors import BlocklistUnavailable

router = APIRouter(include_in_schema=False)
IDENTIFIER_MAX = 64  # as GET /v1/status takes


def _view(lang: str, **context: object) -> dict[str, object]:
    return {"lang": lang, "t": TEXT[lang], "banks": BANKS, "kind": "phone", "phone": "", "account": "", "bank": "",
            "error": None, "outcome": None, **context}


@router.get("/check", response_class=HTMLResponse)
async def check_form(request: Request) -> HTMLResponse:
    lang = choose(request.query_params.get("lang"), request.headers.get("accept-language"))
    return page("check.html", **_view(lang))


@router.post("/check", response_class=HTMLResponse)
async def check(request: Request, clients: ClientsDep) -> HTMLResponse:
    fields = await form(request)
    lang = choose(fields.get("lang"), request.headers.get("accept-language"))
    kind = "account" if fields.get("kind") == "account" else "phone"
    phone, account, bank = fields.get("phone", "").strip(), fields.get("account", "").strip(), fields.get("bank", "")
    view = _view(lang, kind=kind, phone=phone, account=account, bank=bank)
    asked = phone if kind == "phone" else account
    if len(asked) > IDENTIFIER_MAX or (kind == "account" and len(bank) > 16):
        return page("check.html", 422, **{**view, "error": kind})
    try:
        answer = await entries.status(request, clients, phone=asked if kind == "phone" else None,
                                      account=asked if kind == "account" else None,
                                      bank=bank if kind == "account" else None)
    except HTTPException as exc:
        field = exc.detail.get("field") if isinstance(exc.detail, dict) else None
        error = field if field in ("phone", "account", "bank") else kind
        return page("check.html", exc.status_code, **{**view, "error": error})
    except BlocklistUnavailable:
        return unavailable("check.html", view)
    if isinstance(answer, JSONResponse):  # over a rate limit: 429 with Retry-After
        return too_many("check.html", view, answer)
    return page("check.html", **{**view, "outcome": "listed" if answer.listed else "clean"})
