"""What monitoring asks the agency API: ``GET /healthz`` and ``GET /metrics``.

Neither needs a key, neither is rate limited (so a load balancer's probes and
Prometheus's scrapes never use up a client's budget), and neither is in the
OpenAPI document: they are for operators, not agencies.

``/healthz`` is 200 ``{"status": "ok", "redis": "ok", "kafka": "ok"}`` while
Redis answers a PING and a Kafka broker the producer's metadata request, each
within 2 s (``Clients.health``; Kafka's answer is kept 2 s); otherwise 503 with
``"status": "degraded"`` and ``"down"`` against the one that is not. It names
no identifier, key or address. ``/metrics`` is the app's own registry
(api/metrics.py) in the Prometheus text format, its appeal gauges counted from
Redis first.
"""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sekat.api.appeals import refresh_gauges
from sekat.api.clients import ClientsDep

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz(clients: ClientsDep) -> JSONResponse:
    health = await clients.health()
    healthy = all(state == "ok" for state in health.values())
    return JSONResponse(status_code=200 if healthy else 503,
                        content={"status": "ok" if healthy else "degraded", **health})


@router.get("/metrics")
async def metrics(clients: ClientsDep) -> Response:
    await refresh_gauges(clients)
    return Response(generate_latest(clients.metrics.registry), media_type=CONTENT_TYPE_LATEST)
