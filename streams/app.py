"""The Faust application, built by a function from ``Settings``.

``create_app`` declares the topics, wires the blocklist store and metrics,
and registers two agents that read as the data flow:

    bank.transfers ─> screen_transfers ─┐          ┌─> sekat.commands.freeze
                                        ├─ rules ──┼─> sekat.commands.block
    telco.calls ───> screen_calls ──────┘          ├─> sekat.decisions
                                                   └─> sekat.deadletter
"""

from __future__ import annotations

import logging
import ssl
import time
from functools import partial
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

import sekat
from blocklist.store import BlocklistStore
from metrics.worker import WorkerMetrics
from rules.blocklist_match import decide_call, decide_transfer
from sekat.settings import Settings
from streams.calls import decode_call
from streams.decode import REASONS
from streams.emit import OutputTopics
from streams.screening import Clock, Screen, utcnow
from streams.transfers import decode_transfer

log = logging.getLogger(__name__)


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials for SASL/SSL, or None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None) if "SSL" in protocol else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
        mechanism=settings.kafka_sasl_mechanism, ssl_context=context,
    )


def create_app(settings: Settings, registry: CollectorRegistry | None = None, clock: Clock = utcnow) -> faust.App:
    registry = registry if registry is not None else CollectorRegistry()
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_url,
        broker_credentials=broker_credentials(settings),
        store="memory://",
        autodiscover=False,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        producer_acks=-1,
        consumer_auto_offset_reset=settings.kafka_offset_reset,
        topic_partitions=settings.topic_partitions,
        broker_commit_interval=0.5,
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
    )
    setup_prometheus_sensors(app, registry=registry, name_prefix="sekat_faust")
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    metrics = WorkerMetrics(registry, deadletter_reasons=REASONS, target_attempts=settings.target_attempts,
                            target_period_days=settings.target_period_days, app_id=settings.app_id,
                            version=sekat.__version__)
    store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    outputs = OutputTopics(
        freeze=raw_topic(settings.topic_freeze),
        block=raw_topic(settings.topic_block),
        decisions=raw_topic(settings.topic_decisions),
        deadletter=raw_topic(settings.topic_deadletter),
    )
    decoder_args = {"max_bytes": settings.max_event_bytes, "region": settings.phone_region}
    transfers = Screen("transfers", partial(decode_transfer, **decoder_args), decide_transfer, store, outputs,
                       metrics, clock)
    calls = Screen("calls", partial(decode_call, **decoder_args), decide_call, store, outputs, metrics, clock)
    within = settings.batch_within_ms / 1000

    @app.agent(raw_topic(settings.topic_transfers), name="screen_transfers")
    async def screen_transfers(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max, within=within):
            await transfers.run(batch)

    @app.agent(raw_topic(settings.topic_calls), name="screen_calls")
    async def screen_calls(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max, within=within):
            await calls.run(batch)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        redis_ok = await store.ping()
        return web.json({"status": "ok" if redis_ok else "degraded", "redis": redis_ok},
                        status=200 if redis_ok else 503)

    @app.timer(interval=settings.metrics_interval_s, name="sekat_observe_health")
    async def observe_health() -> None:
        await observe_consumer_offsets(app, metrics)
        if await store.ping():
            metrics.freshness.mark()

    last_count = [float("-inf")]

    @app.timer(interval=settings.metrics_interval_s, name="sekat_count_blocklist")
    async def count_blocklist() -> None:
        # Every worker sees the same index: only the group leader pays for the SCAN, first as soon as it
        # leads, then every SEKAT_BLOCKLIST_COUNT_INTERVAL_S; the others drop their series so that a former
        # leader's counts do not linger.
        if not app.is_leader():
            metrics.clear_blocklist_counts()
            last_count[0] = float("-inf")
            return
        if time.monotonic() - last_count[0] < settings.blocklist_count_interval_s:
            return
        last_count[0] = time.monotonic()
        try:
            metrics.set_blocklist_counts(await store.counts())
        except Exception as exc:  # noqa: BLE001 - a failed count keeps the last one; staleness and /healthz tell
            log.warning("counting blocklist entries failed: %s", exc)

    app.sekat_store = store  # type: ignore[attr-defined]
    app.sekat_metrics = metrics  # type: ignore[attr-defined]
    return app


async def observe_consumer_offsets(app: faust.App, metrics: WorkerMetrics) -> None:
    """Lag per assigned input partition: end offset (asked of the broker) minus the committed offset.

    Faust's sensor only tracks end offsets when records are fetched, so a worker
    that has stopped fetching would report stale lag; asking the broker does not.
    Before the first commit of a partition its fetch position stands in.
    """
    try:
        consumer = app.consumer
        # Faust's own assignor topic is not input; leave it out of the lag.
        assigned = sorted(tp for tp in consumer.assignment() if "__assignor" not in tp.topic)
        if not assigned:
            metrics.set_consumer_offsets({})
            return
        ends = await consumer.highwaters(*assigned)
        committed = app.monitor.tp_committed_offsets or {}
        offsets = {}
        for tp in assigned:
            end = ends.get(tp)
            if end is None:
                continue
            done = committed.get(tp)
            if done is None:
                done = await consumer.position(tp)
            offsets[tp.topic, tp.partition] = (int(end), int(done if done is not None else end))
        metrics.set_consumer_offsets(offsets)
    except Exception as exc:  # noqa: BLE001 - not started / rebalancing: try again next interval
        log.debug("consumer offsets not available: %s", exc)
