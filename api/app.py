"""The agency HTTP API (``sekat api``): file, revoke, look up; public status check.

    api/reports.py   POST /v1/reports       file a report (scope report; status confirmed also needs confirm)
                     POST /v1/revocations   revoke an identifier (scope revoke; reason required)
                     POST /v1/renewals      renew an entry before it expires (scope confirm; at most
                                            SEKAT_RENEWALS_MAX times)
    api/entries.py   GET  /v1/entries       one entry with its history, its links, its linked group and
                                            institutions' feedback on it (scope read; purpose required, audited
                                            on SEKAT_TOPIC_AUDIT)
                     GET  /v1/status        public: listed / not listed for entries an agency reported,
                                            rate-limited per client address and in all
    api/appeals.py   POST /v1/appeals       public: appeal a listing (rate-limited per client address); GET
                                            /v1/appeals/{id}/status with its token; scope appeal: GET
                                            /v1/appeals (the agency's open ones), POST .../review, .../decision
    api/feedback.py  POST /v1/feedback      an institution reports what became of a command addressed to it
                                            (scope feedback, an institution's key)
    api/institutions.py PUT, DELETE /v1/institutions/{id}   configure an institution `sekat relay` delivers to
                                            (scope institutions; secrets never returned nor logged)
    brake/routes.py  GET  /v1/brake         the safety brake: what it switched to shadow (scope read)
                     POST /v1/brake/rearm   re-arm one target (scope rearm)
    api/probes.py    GET  /healthz          200 while Redis and a Kafka broker answer (each within 2 s), else
                                            503 naming which is down (no key, not rate limited)
                     GET  /metrics          Prometheus metrics of this process (api/metrics.py)
    (FastAPI)        GET  /openapi.json     the OpenAPI document
    api/web/         GET  /docs             Swagger UI over it, from files shipped in the package
                     GET/POST /check        the public check page (Bahasa Malaysia and English)
                     /console/...           the analyst console for agency users

Keys go in the ``X-API-Key`` header (api/auth.py). A body over
SEKAT_API_MAX_BODY_BYTES is refused (413) before it is read (api/limits.py); a
body naming a field the route does not know, 422 naming it. The client address
is the peer's, or what a proxy in SEKAT_API_TRUSTED_PROXIES forwards: no one
else's ``X-Forwarded-For`` is believed. Reports are acknowledged
(202) only once Kafka has them with acks=all; the reports agent applies them
to the index. Bad requests get a 4xx whose body names the field; Kafka or
Redis being unreachable gives 503 (api/errors.py). Identifiers are masked in
logs, and the access log (which would show query strings) is off. With
SEKAT_API_TLS_CERTFILE and SEKAT_API_TLS_KEYFILE set, the API speaks HTTPS only.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from sekat.api import appeals, entries, feedback, institutions, probes, reports
from sekat.api.clients import Clients
from sekat.api.errors import HANDLERS
from sekat.api.limits import BodyLimit
from sekat.api.metrics import ApiMetrics, RequestMetrics
from sekat.api.web import add_pages
from sekat.brake import routes as brake
from sekat.clock import Clock, utcnow
from sekat.errors import BlocklistUnavailable, ConfigError
from sekat.settings import Settings

log = logging.getLogger("sekat.api")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Connect to Kafka on start, close every client on stop."""
    clients: Clients = app.state.clients
    try:
        await clients.producer()
    except BlocklistUnavailable as exc:  # start anyway; each report retries and answers 503 meanwhile
        log.warning("%s; reports will answer 503 until Kafka answers", exc)
    yield
    await clients.close()


def create_api(settings: Settings, clock: Clock = utcnow) -> FastAPI:
    app = FastAPI(title="Sekat agency API", version="1", lifespan=lifespan, exception_handlers=HANDLERS,
                  docs_url=None, redoc_url=None,  # /docs is api/web's, from shipped files
                  description="File, revoke and look up blocklist reports; public listed/not-listed check.")
    metrics = ApiMetrics(CollectorRegistry())
    app.state.clients = Clients(settings, clock, metrics)
    # The last added is the outermost: every request is counted, a 413 from BodyLimit too.
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes, on_refusal=metrics.body_too_large.inc)
    app.add_middleware(RequestMetrics, metrics=metrics)
    for router in (reports.router, entries.router, appeals.router, feedback.router, institutions.router, brake.router,
                   probes.router):
        app.include_router(router)
    add_pages(app)
    return app


def serve(settings: Settings) -> None:
    import uvicorn

    if not settings.audit_key:  # every entry read is audited under it (api/entries.py)
        raise ConfigError("SEKAT_AUDIT_KEY", "must be set (16+ random characters): entry reads are audited")

    proxies = settings.trusted_proxies()
    # Given explicitly: uvicorn would otherwise believe forwarded headers from loopback (or $FORWARDED_ALLOW_IPS).
    # Without both TLS files (Settings checks it is both or neither) uvicorn serves plain HTTP.
    uvicorn.run(create_api(settings), host=settings.api_host, port=settings.api_port,
                log_level=settings.log_level.lower(), access_log=False, proxy_headers=bool(proxies),
                forwarded_allow_ips=proxies, ssl_certfile=settings.api_tls_certfile or None,
                ssl_keyfile=settings.api_tls_keyfile or None)
