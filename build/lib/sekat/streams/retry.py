"""Retrying a Redis or Kafka call in the worker: jittered exponential backoff, every failure counted.

The worker never skips input because a server failed: it retries the same call (the batch is not
acknowledged meanwhile, so nothing is lost and nothing is silently allowed), and a counter says so.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

BACKOFF_START = 0.05
BACKOFF_MAX = 2.0


async def retry(what: str, attempt: Callable[[], Any], on_error: Callable[[], None],
                attempts: int | None = None) -> Any:
    """Run ``attempt`` until it succeeds (or ``attempts`` failed: re-raise), with jittered exponential backoff."""
    delay = BACKOFF_START
    tries = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - every failure here is retried, and counted
            on_error()
            tries += 1
            if attempts is not None and tries >= attempts:
                raise
            log.warning("%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, BACKOFF_MAX)
