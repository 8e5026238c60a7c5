"""The Faust application, built by a function from ``Settings``.

``create_app`` declares the topics, wires the blocklist store and metrics,
and registers two agents that read as the data flow:

    bank.transfers ─> screen_transfers ─┐          ┌─> sekat.commands.freeze
                                        ├─ rules ──┼─> sekat.commands.block
    telco.calls ───> screen_calls ──────┘          ├─> sekat.decisions
                                                   └─> sekat.deadletter
    sekat.reports ─> apply_reports ─> Redis index (+ change stream)
                                  └─> consolidated reports back to sekat.reports
"""

from __future__ import annotations

import ssl
from functools import partial
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from prometheus_client import CollectorRegistry

from blocklist.store import BlocklistStore
from metrics.worker import WorkerMetrics
from rules.blocklist_match import decide_call, decide_transfer
from sekat.settings import Settings
from streams.calls import decode_call
from streams.emit import OutputTopics
from streams.intake import Intake
from streams.screening import Clock, Screen, utcnow
from streams.transfers import decode_transfer


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
    metrics = WorkerMetrics(registry)
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
    reports_topic = raw_topic(settings.topic_reports)
    intake = Intake(store, outputs, reports_topic, metrics, max(settings.max_event_bytes, 1_048_576),
                    settings.phone_region, settings.protected_keys(), clock)
    within = settings.batch_within_ms / 1000

    @app.agent(raw_topic(settings.topic_transfers), name="screen_transfers")
    async def screen_transfers(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max, within=within):
            await transfers.run(batch)

    @app.agent(raw_topic(settings.topic_calls), name="screen_calls")
    async def screen_calls(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max, within=within):
            await calls.run(batch)

    @app.agent(reports_topic, name="apply_reports")
    async def apply_reports(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max, within=within):
            await intake.run(batch)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        redis_ok = await store.ping()
        return web.json({"status": "ok" if redis_ok else "degraded", "redis": redis_ok},
                        status=200 if redis_ok else 503)

    app.sekat_store = store  # type: ignore[attr-defined]
    app.sekat_metrics = metrics  # type: ignore[attr-defined]
    return app
