"""The API's own documentation page, ``GET /docs``: Swagger UI from files shipped in the package.

Swagger UI (``static/swagger-ui/``, swagger-ui-dist as published on npm, version in its ``VERSION`` file)
renders ``/openapi.json``; its start-up is ``static/docs.js``, so the page runs no inline script and loads
nothing from another origin: it works offline and under the pages' Content-Security-Policy.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from sekat.api.web.pages import page

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
async def docs() -> HTMLResponse:
    return page("docs.html")
