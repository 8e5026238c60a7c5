"""The API's web face: pages people use, served by ``sekat api`` itself from files in this package.

    api/web/public.py    GET/POST /check         the public check, in Bahasa Malaysia and English
    api/web/appeal.py    GET/POST /appeal        a listed person's appeal, and its status (/appeal/status)
    api/web/console.py   /console/...            the analyst console for agency users (API key, session cookie)
    api/web/docs.py      GET /docs               Swagger UI over /openapi.json
                         GET /static/...         the pages' stylesheet and the Swagger UI files

Every page answers through the same functions as the JSON routes (the status check's rate limits, the key
store, the brake's audited re-arm), so a page can do nothing the API would not. None of them is in the
OpenAPI document. The shared page machinery (templates, headers, form bodies) is ``api/web/pages.py``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from sekat.api.web import appeal, console, docs, public
from sekat.api.web.pages import STATIC


def add_pages(app: FastAPI) -> None:
    """Serve the pages and their static files from ``app``."""
    for router in (public.router, appeal.router, console.router, docs.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
