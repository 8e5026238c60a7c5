"""What every page of the API's web face shares: the templates, the headers an HTML answer carries, form bodies.

Pages are rendered on the server from the Jinja2 templates in ``templates/`` (autoescaped: nothing a visitor
or an agency typed can become markup) and styled by ``static/site.css``; they need no script, and load
nothing from another origin. Every HTML answer carries:

    Content-Security-Policy   scripts, styles, images and form targets from this origin only; no framing
    Cache-Control: no-store   an answer about a number is not kept by the browser or a proxy
    Referrer-Policy           no-referrer: a page's address never travels to another site
    X-Content-Type-Options    nosniff

Forms are sent with POST as ``application/x-www-form-urlencoded``, so what a visitor checks is in the body,
never in an address, a proxy's log or the browser's history. ``form`` reads such a body (the API's
``BodyLimit`` has already refused an oversized one) without a multipart parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff"}
FIELD_MAX = 512  # characters kept of one form field (identifiers are at most 64: longer is refused as invalid)

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                        trim_blocks=True, lstrip_blocks=True)


def page(template: str, status_code: int = 200, headers: dict[str, str] | None = None,
         **context: Any) -> HTMLResponse:
    """``template`` rendered with ``context``, with the headers every page carries."""
    html = templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers={**HEADERS, **(headers or {})})


def too_many(template: str, view: dict[str, Any], answer: Response) -> HTMLResponse:
    """``template`` again for a request over a rate limit: the route's 429 and its ``Retry-After``, and the
    seconds to wait in the page (``error`` ``too_many``)."""
    seconds = answer.headers.get("Retry-After", "60")
    return page(template, answer.status_code, {"Retry-After": seconds}, **{**view, "error": "too_many",
                                                                          "seconds": seconds})


def unavailable(template: str, view: dict[str, Any]) -> HTMLResponse:
    """``template`` again while Redis or Kafka does not answer: 503, try again in 5 s (``error`` ``unavailable``)."""
    return page(template, 503, {"Retry-After": "5"}, **{**view, "error": "unavailable"})


async def form(request: Request, longer: Mapping[str, int] | None = None) -> dict[str, str]:
    """The fields of a url-encoded form body (the first of a repeated name), each cut to ``FIELD_MAX`` or to
    its own length in ``longer`` (a free-text field: one more than its maximum, so an over-long one is refused
    by its validation, not cut)."""
    cut = longer or {}
    body = (await request.body()).decode("utf-8", errors="replace")
    fields: dict[str, str] = {}
    try:
        pairs = parse_qsl(body, keep_blank_values=True, max_num_fields=64)
    except ValueError:  # more fields than any form of ours has: none is read
        pairs = []
    for name, value in pairs:
        fields.setdefault(name, value[:cut.get(name, FIELD_MAX)])
    return fields
