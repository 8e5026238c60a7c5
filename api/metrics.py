"""The agency API's metric objects, in a registry of their own, and the middleware that counts requests.

``ApiMetrics`` holds what ``GET /metrics`` (api/probes.py) shows: requests by
route template, method and status code, their latency, rate-limit refusals by
limit (api/clients.py counts them where each limit is decided) and bodies
refused as too large (api/limits.py), and open appeals by stage and past their
deadlines (refreshed from Redis at each scrape, api/appeals.py).and institutions' feedback on commands
(api/feedback.py): by institution and outcome, the time from a command to its
first feedback, and to ``executed`` by institution and action. ``create_api`` builds one per app on a
fresh ``CollectorRegistry``, so two apps in one process (tests) never share
counts. Labels are bounded: a route template (``/v1/entries``, never a query
string or identifier; ``unrouted`` when no route ran: an unknown path, or a
body refused by its ``Content-Length`` before routing), a method from a fixed
list (else ``other``), a status code.
"""

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sekat.blocklist.feedback import ACT_BUCKETS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The ``limit`` label of sekat_api_rate_limited_total, by the rate limiter's bucket (api/clients.py).
LIMITS = {"status": "status_client", "status-all": "status_global", "filing": "filing_key",
          "appeal": "appeal_client"}
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNROUTED = "unrouted"


class ApiMetrics:
    """Every metric of one API process, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter("sekat_api_requests_total", "Requests answered, by route template, method and "
                                "status code", ("route", "method", "code"), registry=self.registry)
        self.duration = Histogram("sekat_api_request_duration_seconds", "Time from a request's arrival to the "
                                  "end of its answer, by route template and method", ("route", "method"),
                                  registry=self.registry,
                                  buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.rate_limited = Counter("sekat_api_rate_limited_total", "Requests refused with 429, by the limit "
                                    "they passed", ("limit",), registry=self.registry)
        self.body_too_large = Counter("sekat_api_body_too_large_total", "Requests refused with 413: a body over "
                                      "SEKAT_API_MAX_BODY_BYTES", registry=self.registry)
        self.appeals = Gauge("sekat_appeals", "Open appeals against listings, by stage (received, under_review), "
                             "as the appeal store holds them at the scrape", ("stage",), registry=self.registry)
        self.appeals_overdue = Gauge("sekat_appeals_overdue", "Open appeals past a deadline: acknowledge "
                                     "(SEKAT_APPEAL_ACKNOWLEDGE_S, still received) or decide "
                                     "(SEKAT_APPEAL_DECIDE_S, still open)", ("deadline",), registry=self.registry)
        # Institution label values: the institutions of API keys that sent feedback (one per key holder).
        self.feedback = Counter("sekat_feedback_total", "Feedback on commands, by institution and outcome",
                                ("institution", "outcome"), registry=self.registry)
        self.first_feedback = Histogram("sekat_command_first_feedback_seconds", "From a command's issue to the "
                                        "first feedback on it, by institution", ("institution",),
                                        registry=self.registry, buckets=ACT_BUCKETS)
        self.time_to_act = Histogram("sekat_command_time_to_act_seconds", "From a command's issue to its "
                                     "institution's executed feedback, by institution and action",
                                     ("institution", "action"), registry=self.registry, buckets=ACT_BUCKETS)
        for limit in LIMITS.values():  # shown at 0 from the start, so rate() works on the first refusal
            self.rate_limited.labels(limit)

    def refused(self, bucket: str) -> None:
        """Count one request refused by the rate limiter's ``bucket``."""
        self.rate_limited.labels(LIMITS.get(bucket, bucket)).inc()


def route_template(scope: Scope) -> str:
    """The path template of the route that served ``scope`` (the router notes it in the scope), or ``unrouted``."""
    route = scope.get("route")
    return str(getattr(route, "path", UNROUTED)) if route is not None else UNROUTED


class RequestMetrics:
    """ASGI middleware: counts and times every HTTP request, including those refused before a route runs."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in METHODS else "other"
        code = 500  # what the client gets if the app raises before it answers

        async def noting_status(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            route = route_template(scope)
            self.metrics.requests.labels(route, method, str(code)).inc()
            self.metrics.duration.labels(route, method).observe(time.perf_counter() - started)
