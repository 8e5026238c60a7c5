"""How the agency API answers an error.

Every 4xx body is ``{"detail": {"field": ..., "message": "<field>: ..."}}``
naming the field at fault (a validation error also lists ``errors``); Kafka or
Redis being unreachable (``BlocklistUnavailable``) is a 503 with
``Retry-After``.
"""

import logging
from collections.abc import Mapping

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sekat.errors import BlocklistUnavailable

log = logging.getLogger("sekat.api")


def field_error(status: int, field: str, message: str, headers: Mapping[str, str] | None = None) -> HTTPException:
    """An error about ``field``: its message starts with the field's name."""
    return HTTPException(status, detail={"field": field, "message": f"{field}: {message}"},
                         headers=dict(headers) if headers else None)


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "header", "path")]
        message = "is not a field of this request" if err.get("type") == "extra_forbidden" else \
            str(err.get("msg", "invalid"))
        errors.append({"field": ".".join(loc) or "body", "message": message})
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    return JSONResponse(status_code=422, content={"detail": {
        "field": first["field"], "message": f"{first['field']}: {first['message']}", "errors": errors}})


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if not isinstance(detail, dict):  # FastAPI's own (e.g. an unparsable body): name the body
        detail = {"field": "body" if exc.status_code < 500 else "", "message": f"body: {detail}"}
    return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)


async def unavailable(request: Request, exc: BlocklistUnavailable) -> JSONResponse:
    log.warning("answering 503: %s", exc)
    return JSONResponse(status_code=503, content={"detail": {"message": str(exc)}}, headers={"Retry-After": "5"})


HANDLERS = {RequestValidationError: invalid_request, StarletteHTTPException: http_error,
            BlocklistUnavailable: unavailable}
