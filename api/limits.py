"""What one request or one client may take from the agency API: the body size, and the rate-limit bucket.

``BodyLimit`` answers a body over ``SEKAT_API_MAX_BODY_BYTES`` with 413 before
reading it: at once when ``Content-Length`` says so, and as soon as the bytes
counted pass the limit when the body comes chunked (no ``Content-Length``).
The route never sees such a body, so nothing is parsed; ``on_refusal`` is
called for each (the app counts them). Bulk loads go through
``sekat blocklist import``, not this API.

``client_bucket`` is who a per-client rate limit counts against: an IPv4
address, or the /64 an IPv6 address is in (one subscriber gets a whole /64,
so counting single IPv6 addresses would give one client 2^64 budgets).
"""

import ipaddress
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _BodyTooLarge(Exception):
    """Raised into the route when the chunked body it is reading passes the limit."""


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets a 413 naming ``body``; it is never read in full."""

    def __init__(self, app: ASGIApp, max_bytes: int, on_refusal: Callable[[], None] = lambda: None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self.refuse(send)
            return
        received, over, started = 0, False, False

        async def counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise _BodyTooLarge
            return message

        async def unless_over(message: Message) -> None:
            nonlocal started
            if over:  # the route's own answer to a body it could not read: the 413 replaces it
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, unless_over)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self.refuse(send)

    async def refuse(self, send: Send) -> None:
        """413 with the JSON every 4xx has (api/errors.py); the connection closes, the rest is never read."""
        self.on_refusal()
        body = (b'{"detail":{"field":"body","message":"body: larger than %d bytes; bulk loads go through '
                b'sekat blocklist import"}}' % self.max_bytes)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def client_bucket(host: str) -> str:
    """The per-client rate-limit bucket of ``host``: the IPv4 address (also when IPv4-mapped), or the IPv6 /64."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP address (a Unix socket's peer): its own bucket
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address), 64), strict=False))  # int: drops any %zone
    return str(address)
