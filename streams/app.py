"""The Faust application, built by a function from ``Settings``.

``create_app`` declares the topics, wires the blocklist replica, rule state and
metrics, and registers what reads as the data flow:

    bank.transfers ─┐ screening consumer          ┌─> sekat.commands.freeze
    telco.calls ────┴─> (streams/consumer.py) ─ rules ──┼─> sekat.commands.block
                          │            │              ├─> sekat.decisions
            local replica ┘  rule state (Redis)       ├─> sekat.deadletter
                                                      └─> sekat.reports (automatic ``reported`` entries)
    sekat.reports ─> apply_reports (Faust agent) ─> Redis index + change stream ─> every worker's replica
                                  └─> consolidated reports back to sekat.reports
    sekat.reports ─> IndexGuard (when Redis came back empty: one worker replays the topic) ─> Redis index

The policy (``rules/policy.yaml`` or ``SEKAT_POLICY_FILE``) is re-read by a
one-second timer when the file changes. Screening remembers which institutions
acted on which entry; the group leader's release sweep (``release/sweep.py``)
sends RELEASE_ACCOUNT / UNBLOCK_NUMBER when such an entry is revoked or expires.
"""

from __future__ import annotations

import logging
import socket
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

import sekat
from sekat.blocklist.replica import Replica
from sekat.blocklist.store import BlocklistStore
from sekat.brake.guard import Brake, Limits
from sekat.brake.metrics import BrakeMetrics
from sekat.brake.store import BrakeStore
from sekat.decode.fields import REASONS
from sekat.decode.formats import call_decoder, transfer_decoder
from sekat.decode.processes import DecodeProcesses, decoder_settings
from sekat.metrics.worker import WorkerMetrics
from sekat.release.acted import ActedStore
from sekat.release.metrics import ReleaseMetrics
from sekat.release.sweep import ACTED, Releaser, remembering, writing_acts
from sekat.rules.engine import decide_call, decide_transfer
from sekat.rules.policy import DEFAULT_POLICY_FILE
from sekat.settings import Settings
from sekat.streams.consumer import ScreeningConsumer
from sekat.streams.emit import OutputTopics
from sekat.streams.heap import HeapKeeper
from sekat.streams.intake import Intake
from sekat.streams.policy_watch import PolicyWatch
from sekat.streams.rebuild import IndexGuard
from sekat.streams.screening import Clock, Screen, retry, utcnow
from sekat.streams.state import RuleStateStore

log = logging.getLogger(__name__)
# How long a stopping worker waits for the thread of Faust's own consumer (the reports agent's) to stop.
# Faust leaves mode's default, 60 s: with the broker unreachable, aiokafka's stop retries until then, and a
# SIGTERM took 60-65 s (measured), past Kubernetes' 30 s grace. What this cuts short is only that
# consumer's last commit and leave-group, which an unreachable broker refuses anyway; its reports are
# re-applied idempotently by the next owner.
FAUST_CONSUMER_STOP_S = 10.0
REPORTS_WITHIN_MS = 10
COUNT_PAUSE_S = 0.01


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
    AIOKafkaConsumerThread.shutdown_timeout = FAUST_CONSUMER_STOP_S
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_url,
        broker_credentials=broker_credentials(settings),
        store="memory://",
        # Tables are in memory: Faust only creates its (empty) data directory, under the system's temporary
        # directory rather than as ``{app id}-data`` in whatever directory the worker was started from.
        datadir=str(Path(tempfile.gettempdir()) / "{conf.id}-data"),
        autodiscover=False,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        producer_acks=-1,
        consumer_auto_offset_reset=settings.kafka_offset_reset,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,  # Faust's own topics survive a lost broker too
        broker_commit_interval=0.5,
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
    )
    setup_prometheus_sensors(app, registry=registry, name_prefix="sekat_faust")
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    metrics = WorkerMetrics(registry, deadletter_reasons=REASONS, target_attempts=settings.target_attempts,
                            target_period_days=settings.target_period_days, app_id=settings.app_id,
                            version=sekat.__version__)
    # Guarded: reports are applied only to a built index (never racing a rebuild's replay).
    store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix, guarded=True)
    replica = Replica(settings.redis_url, settings.redis_prefix, on_fresh=metrics.freshness.mark,
                      stored_snapshot=settings.replica_snapshot_max_behind > 0,
                      snapshot_max_behind=settings.replica_snapshot_max_behind)
    metrics.replica_entries.set_function(lambda: replica.stats.entries)
    state = RuleStateStore.from_url(settings.redis_url, settings.redis_prefix)
    brakes = BrakeStore.from_url(settings.redis_url, settings.redis_prefix)
    policy = PolicyWatch(settings.policy_file or DEFAULT_POLICY_FILE, metrics)  # PolicyError stops start-up

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    outputs = OutputTopics(
        freeze=raw_topic(settings.topic_freeze),
        block=raw_topic(settings.topic_block),
        decisions=raw_topic(settings.topic_decisions),
        deadletter=raw_topic(settings.topic_deadletter),
        reports=raw_topic(settings.topic_reports),
        routes={route: raw_topic(name) for route, name in settings.command_topics().items()},
    )
    brake = Brake(brakes, Limits(settings.brake_window_s, settings.brake_entry_max, settings.brake_rule_max,
                                 settings.brake_source_max), BrakeMetrics(registry), outputs,
                  f"{settings.app_id}@{socket.gethostname()}:{settings.web_port}")
    # The input format of each topic (contract JSON, ISO 20022 pacs.008, CDR CSV, ...) is a setting.
    acted = ActedStore.from_url(settings.redis_url, settings.redis_prefix)
    write_state = writing_acts(state.write, acted, clock)  # rule state + who acted, after the output is acked
    unread = frozenset({ACTED})  # who acted is read by the release sweep, never by a rule-state read
    decode_transfer = transfer_decoder(settings)
    # An adapter's parse (pacs.008: ~20 µs a transfer) runs in child processes; the contract JSON's ~3 µs
    # would cost more to hand over than to do.
    offload = (DecodeProcesses("transfers", decoder_settings("transfers", settings), settings.decode_processes,
                               decode_transfer, metrics.decode_fallbacks.labels("transfers").inc)
               if settings.decode_processes > 0 and settings.transfers_format != "json" else None)
    transfers = Screen("transfers", decode_transfer, remembering(decide_transfer), replica, outputs,
                       metrics, policy, state.read_transfers, write_state, clock, brake, unread, offload)
    calls = Screen("calls", call_decoder(settings), remembering(decide_call), replica, outputs, metrics, policy,
                   state.read_calls, write_state, clock, brake, unread)
    releaser = Releaser(acted, store, outputs, metrics, ReleaseMetrics(registry), clock)
    screening = ScreeningConsumer(settings, {settings.topic_transfers: transfers, settings.topic_calls: calls},
                                  metrics)
    intake = Intake(store, outputs, outputs.reports, metrics, max(settings.max_event_bytes, 1_048_576),
                    settings.phone_region, settings.protected_keys(), clock)
    guard = IndexGuard(settings, store, settings.protected_keys())
    # The reports agent is idle nearly all the time, and Faust's take_events wakes every ``within`` to look,
    # creating tasks each time: at 5 ms that was ~3% of a busy worker (py-spy). 10 ms halves it and adds at
    # most 5 ms to a report's way into the index (the promise is 100 ms to every worker).
    within = max(settings.batch_within_ms, REPORTS_WITHIN_MS) / 1000

    @app.task
    async def screen() -> None:
        await replica.ready.wait()
        await screening.run()

    @app.task
    async def keep_replica_fresh() -> None:
        await replica.start()
        await replica.follow()

    @app.task
    async def keep_replica_snapshot() -> None:  # for the next worker to start (blocklist/replica_snapshot.py)
        await replica.keep_stored_snapshot()

    @app.timer(interval=1.0)
    async def reload_policy() -> None:
        policy.check()

    @app.timer(interval=1.0, name="sekat_keep_index_built")
    async def keep_index_built() -> None:
        try:
            await guard.ensure()
        except Exception as exc:  # noqa: BLE001 - Redis or Kafka down: staleness says so; next tick retries
            log.debug("blocklist index check failed: %s", exc)

    heap = HeapKeeper(registry)

    @app.timer(interval=1.0, name="sekat_keep_heap_frozen")
    async def keep_heap_frozen() -> None:  # long-lived objects out of the collector's walks (streams/heap.py)
        heap.tick()

    @app.timer(interval=1.0, name="sekat_refresh_brake")
    async def refresh_brake() -> None:  # trips by other workers and re-arms through the API
        await brake.refresh()

    @app.timer(interval=settings.release_interval_s, name="sekat_release_sweep")
    async def release_sweep() -> None:
        if app.is_leader():  # one sweeper per group; a new leader re-sends the same command ids at worst
            await releaser.run_once()

    @app.agent(outputs.reports, name="apply_reports")
    async def apply_reports(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max, within=within):
            await retry("waiting for the blocklist index to be built", guard.ensure, metrics.apply_errors.inc)
            await intake.run(batch)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        redis_ok = await store.ping()
        ready = replica.ready.is_set() and not replica.awaiting_rebuild
        body = {"status": "ok" if redis_ok and ready else "degraded", "redis": redis_ok, "replica_ready": ready,
                "replica_entries": replica.stats.entries, "replica_staleness_seconds": round(replica.staleness(), 3),
                "replica_change_id": replica.change_id, "index_rebuilding": replica.awaiting_rebuild,
                "index_rebuilds": guard.rebuilds}
        return web.json(body, status=200 if redis_ok and ready else 503)

    @app.timer(interval=settings.metrics_interval_s, name="sekat_observe_health")
    async def observe_health() -> None:
        metrics.set_consumer_offsets(await screening.offsets())
        # Freshness comes from the replica alone (its change-stream read answers at least once a second): a
        # ping says Redis is up, not that this worker's copy has caught up with it (after Redis came back
        # empty and was rebuilt, the replica may still be re-reading it).

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
            # ~10 ms of pause per 1,000 entries: a count of 1 M entries takes ~15 s instead of stalling screening
            # for ~2 s at once (measured at 20,000 events/s: the count was the start-up latency bump)
            metrics.set_blocklist_counts(await store.counts(pause_s=COUNT_PAUSE_S))
        except Exception as exc:  # noqa: BLE001 - a failed count keeps the last one; staleness and /healthz tell
            log.warning("counting blocklist entries failed: %s", exc)

    app.sekat_store = store  # type: ignore[attr-defined]
    app.sekat_guard = guard  # type: ignore[attr-defined]
    app.sekat_replica = replica  # type: ignore[attr-defined]
    app.sekat_screening = screening  # type: ignore[attr-defined]
    app.sekat_metrics = metrics  # type: ignore[attr-defined]
    app.sekat_policy = policy  # type: ignore[attr-defined]
    app.sekat_brake = brake  # type: ignore[attr-defined]

    app.sekat_releaser = releaser  # type: ignore[attr-defined]
    return app
