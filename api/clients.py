"""What the agency API works with, built once per app and kept on ``app.state``.

One Redis client, as the API's own ACL user (``Settings.api_redis``,
docs/security.md), serves the index, the API keys, the brake's state, the
rate limits and institutions' feedback; one Kafka producer (acks=all) carries
reports, audit records, feedback, notices and the relay's institutions.
The producer starts lazily: the API answers 503 while Kafka is away and
recovers by itself. Whether Kafka answers now, not only whether the producer
once started, is a metadata request bounded to 2 s, its answer kept for 2 s
(``kafka_reachable``), so that probes are cheap however often they come.
Rate-limit refusals are counted in ``metrics`` (api/metrics.py). Routes take
the clients with the ``ClientsDep`` dependency.
"""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata
from fastapi import Depends, Request

from sekat.blocklist.connection import PROBE_TIMEOUT_S, REDIS_DOWN
from sekat.api.keys import ApiKeyStore
from sekat.api.metrics import ApiMetrics
from sekat.blocklist.appeals import AppealStore
from sekat.blocklist.feedback import FeedbackStore
from sekat.blocklist.store import BlocklistStore
from sekat.brake.store import BrakeStore
from sekat.release.acted import ActedStore
from sekat.clock import Clock, utcnow
from sekat.errors import BlocklistUnavailable
from sekat.expiry import ExpiryPolicy
from sekat.identifiers import ProxyHasher
from sekat.settings import Settings

# How long a probe waits for Kafka's metadata answer (Redis's PING: the same), and how long its answer is kept.
KAFKA_ANSWER_KEPT_S = 2.0


@dataclass
class Clients:
    """The API's collaborators; building them connects nothing (Redis on first use, Kafka on ``producer()``)."""

    settings: Settings
    clock: Clock = utcnow
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    store: BlocklistStore = field(init=False)
    keys: ApiKeyStore = field(init=False)
    brakes: BrakeStore = field(init=False)
    appeals: AppealStore = field(init=False)
    acted: ActedStore = field(init=False)
    feedback: FeedbackStore = field(init=False)
    protected: frozenset[str] = field(init=False)
    expiry: ExpiryPolicy = field(init=False)
    proxy_hasher: ProxyHasher = field(init=False)
    _producer: AIOKafkaProducer | None = field(default=None, init=False)
    _kafka_answer: tuple[float, bool] = field(default=(float("-inf"), False), init=False)  # (monotonic time, up)
    _kafka_asking: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.store = BlocklistStore.from_url(settings.api_redis()[0], settings.redis_prefix)
        self.keys = ApiKeyStore(self.store.client, settings.redis_prefix)
        self.brakes = BrakeStore(self.store.client, settings.redis_prefix)
        self.appeals = AppealStore(self.store.client, settings.redis_prefix)
        self.acted = ActedStore(self.store.client, settings.redis_prefix)
        self.feedback = FeedbackStore(self.store.client, settings.redis_prefix)
        self.protected = settings.protected_keys()
        self.expiry = settings.expiry_policy()
        self.proxy_hasher = settings.proxy_hasher()

    async def producer(self) -> AIOKafkaProducer:
        """The started producer; raises ``BlocklistUnavailable`` while Kafka cannot be reached."""
        if self._producer is None:
            producer = AIOKafkaProducer(**self.settings.aiokafka_config(), acks="all", request_timeout_ms=10000,
                                        linger_ms=0)
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                await producer.stop()
                raise BlocklistUnavailable(f"Kafka unavailable: {type(exc).__name__}") from exc
            producer.client.add_topic(self.settings.topic_reports)  # metadata requests ask for it, not every topic
            self._producer = producer
        return self._producer

    async def kafka_reachable(self) -> bool:
        """Whether a broker answers the started producer's metadata request within ``PROBE_TIMEOUT_S``; the
        answer is kept ``KAFKA_ANSWER_KEPT_S``, and probes arriving meanwhile share one request."""
        async with self._kafka_asking:
            asked_at, up = self._kafka_answer
            if time.monotonic() - asked_at < KAFKA_ANSWER_KEPT_S:
                return up
            try:
                producer = await self.producer()
                up = bool(await asyncio.wait_for(producer.client.force_metadata_update(), PROBE_TIMEOUT_S))
            except (BlocklistUnavailable, KafkaError, OSError, TimeoutError):
                up = False
            self._kafka_answer = (time.monotonic(), up)
            return up

    async def send(self, topic: str, value: bytes, key: bytes, unacknowledged: str) -> RecordMetadata:
        """Send one record and wait for every in-sync replica; ``unacknowledged`` starts the 503's message."""
        producer = await self.producer()
        try:
            return await producer.send_and_wait(topic, value, key=key)
        except (KafkaError, OSError) as exc:
            raise BlocklistUnavailable(f"{unacknowledged}: {type(exc).__name__}") from exc

    async def allow_status_check(self, client: str, per_minute: int) -> tuple[bool, int]:
        """Whether this client (``api.limits.client_bucket``) may check a status now: (allowed, seconds until
        the window resets)."""
        return await self._allow("status", client, per_minute)

    async def allow_any_status_check(self, per_minute: int) -> tuple[bool, int]:
        """Whether one more status check fits the limit for all clients together: (allowed, seconds to reset)."""
        return await self._allow("status-all", "all", per_minute)

    async def allow_appeal(self, client: str, per_minute: int) -> tuple[bool, int]:
        """Whether this client (``api.limits.client_bucket``) may file an appeal now: (allowed, seconds to reset)."""
        return await self._allow("appeal", client, per_minute)

    async def allow_filing(self, key_id: str, per_minute: int) -> tuple[bool, int]:
        """Whether this API key may file now: (allowed, seconds until the window resets)."""
        return await self._allow("filing", key_id, per_minute)

    async def _allow(self, bucket: str, who: str, per_minute: int) -> tuple[bool, int]:
        """A fixed one-minute window per ``who`` in ``bucket``, counted in Redis so every API process shares it."""
        window = int(time.time() // 60)
        rkey = f"{self.settings.redis_prefix}rl:{bucket}:{who}:{window}"
        try:
            async with self.store.client.pipeline(transaction=True) as pipe:
                pipe.incr(rkey)
                pipe.expire(rkey, 120)
                count, _ = await pipe.execute()
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"rate limiter unavailable: {type(exc).__name__}") from exc
        allowed = int(count) <= per_minute
        if not allowed:
            self.metrics.refused(bucket)
        return allowed, 60 - int(time.time()) % 60

    async def health(self) -> dict[str, str]:
        """``ok`` or ``down`` for Redis (it answers PING within 2 s) and Kafka (``kafka_reachable``), asked at once."""
        redis, kafka = await asyncio.gather(self.store.ping(PROBE_TIMEOUT_S), self.kafka_reachable())
        return {"redis": "ok" if redis else "down", "kafka": "ok" if kafka else "down"}

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        await self.store.close()


def app_clients(request: Request) -> Clients:
    """The clients ``create_api`` keeps on ``app.state``."""
    clients: Clients = request.app.state.clients
    return clients


ClientsDep = Annotated[Clients, Depends(app_clients)]
