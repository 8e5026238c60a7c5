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


async def run_relay(settings: Settings, institutions: Mapping[str, Institution]) -> None:
    relay = Relay(settings, institutions, RelayMetrics(institutions))
    runner = web.AppRunner(web_app(relay), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.web_host, settings.relay_web_port).start()
    task = asyncio.create_task(relay.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    log.info("relay delivering to %s", ", ".join(sorted(institutions)))
    try:
        await task
    except asyncio.CancelledError:
        log.info("relay stopped")
    finally:
        await runner.cleanup()
