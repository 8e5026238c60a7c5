"""Retrying a Redis or Kafka call in the worker: jittered exponential backoff, every failure counted.

The worker never skips input because a server failed: it retries the same call (the batch is not
acknowledged meanwhile, so nothing is lost and nothing is silently allowed), and a counter says so.

Some Kafka errors are *permanent* for the record at hand: retrying the same record can never succeed
(``permanent`` names them, here and nowhere else). ``retry`` re-raises those at once instead of looping
on them; ``OutputBatch`` (streams/output.py) catches them per record and replaces or drops that record.
A bounded retry (``attempts``) also gives up at once on ``NotAsked``: Redis timed out a moment ago, and
retrying within its quiet period would only add backoff to a batch that has a way on without it.

``supervise`` is the same idea one level up: a long-running task (the screening consumer) that dies of an
error nobody caught is started again, after a backoff that grows while it keeps dying.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import errors as kafka_errors
from faust.exceptions import ProducerSendError

from sekat.errors import NotAsked

log = logging.getLogger(__name__)

BACKOFF_START = 0.05
BACKOFF_MAX = 2.0
# A supervised task is started again after 1 s, then 2, 4, ... up to 30 s while it keeps dying; a run that
# lasted RESTART_MAX_S or more starts the backoff from 1 s again.
RESTART_START = 1.0
RESTART_MAX_S = 30.0

# Errors that say the record, not the moment, is at fault: larger than the producer's max_request_size or the
# topic's max.message.bytes, refused as invalid or corrupt, or written to a topic this principal may not write.
# (The broker's INVALID_RECORD, code 87, reaches aiokafka as an UnknownError and is retried.)
PERMANENT: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.CorruptRecordException,
    kafka_errors.InvalidTimestampError,
    kafka_errors.InvalidTopicError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
)


def permanent(exc: BaseException) -> bool:
    """Whether sending the same record again can never succeed (see ``PERMANENT``), also when Faust's producer
    wraps aiokafka's refusal at hand-over in a ``ProducerSendError``."""
    if isinstance(exc, ProducerSendError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return isinstance(exc, PERMANENT)


async def retry(what: str, attempt: Callable[[], Any], on_error: Callable[[], None],
                attempts: int | None = None) -> Any:
    """Run ``attempt`` until it succeeds (or ``attempts`` failed: re-raise), with jittered exponential backoff.

    A ``permanent`` error is counted and re-raised at once: the same call would fail the same way forever.
    """
    delay = BACKOFF_START
    tries = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - every transient failure here is retried, and counted
            on_error()
            tries += 1
            if permanent(exc):
                log.error("%s failed permanently (%s: %s); not retried", what, type(exc).__name__, exc)
                raise
            if attempts is not None and (tries >= attempts or isinstance(exc, NotAsked)):
                raise
            log.warning("%s failed (%s: %s); retrying in %.2fs", what, type(exc).__name__, exc, delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, BACKOFF_MAX)


async def supervise(what: str, run: Callable[[], Awaitable[None]],
                    on_crash: Callable[[BaseException], None]) -> None:
    """Run ``run`` until it is cancelled; each time it raises, tell ``on_crash``, log the error with its
    traceback, and run it again after a jittered backoff (``RESTART_START`` doubling to ``RESTART_MAX_S``)."""
    delay = RESTART_START
    while True:
        started = time.monotonic()
        try:
            await run()
            raise RuntimeError(f"{what} ended by itself")  # it runs until cancelled: ending is dying too
        except Exception as exc:  # noqa: BLE001 - whatever killed it, screening must go on
            on_crash(exc)
            if time.monotonic() - started >= RESTART_MAX_S:
                delay = RESTART_START
            log.exception("%s crashed (%s); starting it again in %.1fs", what, type(exc).__name__, delay)
        await asyncio.sleep(delay * (0.5 + random.random() / 2))
        delay = min(delay * 2, RESTART_MAX_S)
