"""How the agency API answers an error.

Every 4xx body is ``{"detail": {"field": ..., "message": "<field>: ..."}}``
naming the field at fault (a validation error also lists ``errors``); Kafka or
Redis being unreachable (``BlocklistUnavailable``) is a 503 with
``Retry-After``. ``ErrorOut`` is that body as a model, and ``error_responses``
the OpenAPI ``responses=`` of a route naming each error it can answer.
"""

import logging
from collections.abc import Mapping

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from sekat.errors import BlocklistUnavailable

log = logging.getLogger("sekat.api")


class FieldProblem(BaseModel):
    field: str = Field(description="the field at fault: body, a body field, a query parameter or X-API-Key")
    message: str


class ErrorDetail(BaseModel):
    field: str = Field("", description="the field at fault (absent on a 429 of the status check and a 503)")
    message: str = Field(description="starts with the field's name when there is one")
    errors: list[FieldProblem] | None = Field(None, description="422 only: every field at fault")


class ErrorOut(BaseModel):
    """Every 4xx and 503 answer of the API."""
    detail: ErrorDetail


_MEANING = {
    401: "no X-API-Key, or an unknown or disabled key (with WWW-Authenticate)",
    403: "the key lacks the scope this needs, or names another agency",
    404: "not found: the body names what",
    409: "the entry's state does not allow it: the body says why",
    413: "the body is larger than SEKAT_API_MAX_BODY_BYTES",
    422: "a field is missing or invalid: the body names it",
    429: "over a rate limit; retry after Retry-After seconds",
    503: "Kafka or Redis is unreachable; retry after Retry-After seconds",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """The OpenAPI ``responses=`` for a route answering ``codes``, each an ``ErrorOut``."""
    return {code: {"model": ErrorOut, "description": _MEANING[code]} for code in codes}


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
