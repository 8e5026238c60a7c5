"""The relay process: the relay (``consumer.Relay``) and a small web server for ``/metrics`` and ``/healthz``
on ``SEKAT_WEB_HOST``:``SEKAT_RELAY_WEB_PORT``. SIGTERM and SIGINT stop it after committing what is done.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sekat.relay.configured import Offsets, follow
from sekat.relay.consumer import Relay
from sekat.institutions import Institution
from sekat.relay.metrics import RelayMetrics

from sekat.settings import Settings

log = logging.getLogger(__name__)


def web_app(relay: Relay) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(relay.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        ready = relay.assigned.is_set()
        body = {"assigned": ready, "pending": relay.pending,
                "breakers_open": sorted(name for name, b in relay.breakers.items() if b.is_open)}
        return web.json_response(body, status=200 if ready else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


FOLLOW_AGAIN_S = 5.0  # after the institutions follower fails (Kafka away), when it starts again


async def keep_following(settings: Settings, start: Offsets, from_file: Mapping[str, Institution],
                         relay: Relay) -> None:
    """``configured.follow`` until cancelled, started again from ``start`` if it fails: applying the records
    since ``start`` again, in order, ends in the same institutions."""
    while True:
        try:
            await follow(settings, start, from_file, relay.configure, relay.remove)
        except Exception as exc:  # noqa: BLE001 - Kafka away: the institutions known so far are served meanwhile
            log.warning("relay: following %s failed (%s); again in %.0f s", settings.topic_institutions,
                        type(exc).__name__, FOLLOW_AGAIN_S)
        await asyncio.sleep(FOLLOW_AGAIN_S)


async def run_relay(settings: Settings, institutions: Mapping[str, Institution],
                    from_file: Mapping[str, Institution] | None = None, configured_at: Offsets | None = None) -> None:
    """Relay to ``institutions``; with ``configured_at`` (where the institutions topic was read up to), also to
    those the API configures from there on (``configured.follow``), ``from_file``'s left as the file has them."""
    relay = Relay(settings, institutions, RelayMetrics(institutions))
    runner = web.AppRunner(web_app(relay), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web_host, settings.relay_web_port).start()
    task = asyncio.create_task(relay.run())
    following = None
    if configured_at is not None:
        following = asyncio.create_task(keep_following(settings, configured_at, from_file or {}, relay))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    log.info("relay delivering to %s", ", ".join(sorted(institutions)) or "no institution yet")
    try:
        await task
    except asyncio.CancelledError:
        log.info("relay stopped")
    finally:
        if following is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        await runner.cleanup()
