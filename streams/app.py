"""The worker: a Faust application and the collaborators it runs, built by functions from ``Settings``.

``create_app`` builds the Faust app (``faust_app``), the worker's collaborators (``build_worker``) and
registers the ``Worker``'s named tasks, timers and health page; together they read as the data flow:

    bank.transfers ─┐ screening consumer                     ┌─> sekat.commands.freeze
    telco.calls ────┤                                        │
    telco.sms ──────┴─> (streams/consumer.py) ─ rules ───────┼─> sekat.commands.block
                          │            │                     ├─> sekat.decisions
            local replica ┘  rule state (Redis)              ├─> sekat.deadletter
                                                             └─> sekat.reports (automatic ``reported`` entries)
    sekat.reports ─> reports intake (streams/intake.py) ─> Redis index + change stream ─> every worker's replica
                                  └─> consolidated reports back to sekat.reports
    sekat.reports ─> IndexGuard (when Redis came back empty: one worker replays the topic) ─> Redis index

The policy (``rules/policy.yaml`` or ``SEKAT_POLICY_FILE``) is re-read by a one-second timer when the
file changes. Screening remembers which institutions acted on which entry; the group leader's release
sweep (release/sweep.py) sends RELEASE_ACCOUNT / UNBLOCK_NUMBER when such an entry is revoked or expires;
its purge (streams/purge.py) tombstones the entries past their retention (SEKAT_RETENTION_*_DAYS).
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from sekat.blocklist.feedback import FeedbackStore
from sekat.blocklist.replica import Replica
from sekat.blocklist.replica_disk import DiskCopy
from sekat.blocklist.review import FeedbackDesk, Send, Topics
from sekat.blocklist.retention import Retention
from sekat.blocklist.store import BlocklistStore
from sekat.brake.guard import Brake, Limits
from sekat.brake.metrics import BrakeMetrics
from sekat.brake.store import BrakeStore
from sekat.decode.fields import REASONS
from sekat.decode.formats import call_decoder, sms_decoder, transfer_decoder
from sekat.decode.processes import DecodeProcesses, decoder_settings
from sekat.metrics.worker import WorkerMetrics
from sekat.release.acted import ActedStore
from sekat.release.metrics import ReleaseMetrics
from sekat.release.sweep import ACTED, Releaser, recording_who_acted, writing_who_acted
from sekat.rules.engine import decide_call, decide_sms, decide_transfer
from sekat.rules.policy import DEFAULT_POLICY_FILE
from sekat.streams.consumer import ScreeningConsumer
from sekat.streams.heap import HeapKeeper
from sekat.streams.intake import Intake, ReportsConsumer
from sekat.streams.output import OutputBatch, OutputTopics
from sekat.streams.policy_watch import PolicyWatch
from sekat.streams.purge import Purger, RelatedTopics
from sekat.streams.rebuild import IndexGuard
from sekat.streams.retry import supervise
from sekat.streams.sent import SENT, recording_sent, writing_sent
from sekat.streams.screening import Screen, ScreenServices, StreamSteps
from sekat.streams.state import RuleStateStore
from sekat.streams.status_reports import StatusReports

import sekat
from sekat.clock import Clock, utcnow
from sekat.settings import Settings

log = logging.getLogger(__name__)
# How long a stopping worker waits for the thread of Faust's own consumer (group leadership) to stop.
# mode's default is 60 s: with the broker unreachable, aiokafka's stop retries until then, past
# Kubernetes' 30 s grace. What this cuts short is only that consumer's leave-group, which an unreachable
# broker refuses anyway.
FAUST_CONSUMER_STOP_S = 10.0
# The session of the group consumers (the reports intake's and Faust's own): a dead worker's reports partitions
# move to another once it expires, and no filing on them takes effect meanwhile. 10 s is what the screening
# consumer has (aiokafka's default), against Faust's default of a minute.
REPORTS_SESSION_TIMEOUT_S = 10.0
# The longest the reports intake's fetch waits for more records to fill a batch: adds at most this to a
# report's way into the index (the promise is 100 ms to every worker).
REPORTS_WITHIN_MS = 10
# A record batch per output partition: Kafka's default of 16 KiB holds ~20 decision records, which would split a
# batch's output into dozens of produce requests; well under any topic's max.message.bytes (1 MiB by default).
PRODUCER_BATCH_BYTES = 256 * 1024


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


def faust_app(settings: Settings) -> faust.App:
    """The Faust application: broker, web server, producer and Faust's own consumer settings."""
    AIOKafkaConsumerThread.shutdown_timeout = FAUST_CONSUMER_STOP_S
    return faust.App(
        settings.app_id,
        broker=settings.kafka_url,
        broker_credentials=broker_credentials(settings),
        store="memory://",
        # Tables are in memory: Faust only creates its (empty) data directory, under the system's temporary
        # directory rather than as ``{app id}-data`` in whatever directory the worker was started from.
        datadir=str(settings.data_dir),
        autodiscover=False,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        producer_acks=-1,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        consumer_auto_offset_reset=settings.kafka_offset_reset,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,  # Faust's own topics survive a lost broker too
        broker_commit_interval=0.5,
        broker_session_timeout=REPORTS_SESSION_TIMEOUT_S,
        stream_buffer_maxsize=max(4096, settings.batch_max * 2),
    )


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic the worker writes, as raw bytes (the worker encodes its own JSON)."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def output_topics(app: faust.App, settings: Settings) -> OutputTopics:
    """The topics the worker writes, as raw bytes (the worker encodes its own JSON)."""
    def raw(name: str) -> faust.TopicT:
        return raw_topic(app, name)

    return OutputTopics(
        freeze=raw(settings.topic_freeze),
        block=raw(settings.topic_block),
        decisions=raw(settings.topic_decisions),
        deadletter=raw(settings.topic_deadletter),
        reports=raw(settings.topic_reports),
        routes={route: raw(name) for route, name in settings.command_topics().items()},
        deadletter_original_bytes=settings.deadletter_original_bytes,
    )


def acked_send(app: faust.App, outputs: OutputTopics) -> Send:
    """Send one record by topic name and wait for Kafka's acknowledgement (acks=all): feedback and notices."""
    topics: dict[str, faust.TopicT] = {}

    async def send(topic: str, value: bytes, key: bytes, _unacknowledged: str) -> None:
        if topic not in topics:
            topics[topic] = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                                      value_serializer="raw")
        out = OutputBatch(outputs)
        out.record(topics[topic], key, value)
        await out.send()
    return send


@dataclass
class Worker:
    """One worker process's collaborators; its methods are the app's tasks, timers, agent and health page."""

    app: faust.App
    settings: Settings
    metrics: WorkerMetrics
    store: BlocklistStore
    replica: Replica
    policy: PolicyWatch
    outputs: OutputTopics
    brake: Brake
    screening: ScreeningConsumer
    intake: ReportsConsumer
    guard: IndexGuard
    releaser: Releaser
    purger: Purger
    heap: HeapKeeper

    def register(self) -> None:
        app, settings = self.app, self.settings
        app.task(self.screen)
        app.task(self.apply_reports)
        app.task(self.keep_replica_fresh)
        app.task(self.keep_replica_snapshot)
        timers: list[tuple[float, str, Callable[[], Awaitable[None]]]] = [
            (1.0, "sekat_reload_policy", self.reload_policy),
            (1.0, "sekat_keep_index_built", self.keep_index_built),
            (1.0, "sekat_keep_heap_frozen", self.keep_heap_frozen),
            (1.0, "sekat_refresh_brake", self.refresh_brake),
            (settings.release_interval_s, "sekat_release_sweep", self.release_sweep),
            (settings.purge_interval_s, "sekat_purge", self.purge),
            (settings.metrics_interval_s, "sekat_observe_health", self.observe_health),
            (settings.blocklist_count_interval_s, "sekat_count_blocklist", self.count_blocklist),
        ]
        for interval, name, tick in timers:
            app.timer(interval=interval, name=name)(self.timed(name, tick))
        app.page("/healthz")(self.healthz)

    def timed(self, task: str, tick: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """``tick`` with its runtime observed in ``sekat_periodic_task_seconds{task}``."""
        observe = self.metrics.periodic_task.labels(task).observe

        async def timed_tick() -> None:
            started = time.perf_counter()
            try:
                await tick()
            finally:
                observe(time.perf_counter() - started)
        return timed_tick

    async def screen(self) -> None:
        """The screening consumer, once the replica is loaded; started again, with backoff, if it dies."""
        await self.replica.ready.wait()
        await supervise("screening consumer", self.screening.run, self.screening.crashed)

    async def keep_replica_fresh(self) -> None:
        await self.replica.start()
        await self.replica.follow()

    async def keep_replica_snapshot(self) -> None:
        """Keep the stored snapshot usable for the next worker to start (blocklist/replica_snapshot.py)."""
        await self.replica.keep_stored_snapshot(self.metrics.periodic_task.labels("sekat_replica_snapshot").observe)

    async def reload_policy(self) -> None:
        self.policy.check()

    async def keep_index_built(self) -> None:
        try:
            await self.guard.ensure()
        except Exception as exc:  # noqa: BLE001 - Redis or Kafka down: staleness says so; next tick retries
            log.debug("blocklist index check failed: %s", exc)

    async def keep_heap_frozen(self) -> None:
        """Long-lived objects out of the collector's walks (streams/heap.py)."""
        self.heap.tick()

    async def refresh_brake(self) -> None:
        """Trips by other workers and re-arms through the API."""
        await self.brake.refresh()

    async def release_sweep(self) -> None:
        if self.app.is_leader():  # one sweeper per group; a new leader re-sends the same command ids at worst
            await self.releaser.run_once()

    async def purge(self) -> None:
        if self.app.is_leader():  # one purger per group; a new leader's first run sends a tombstone again at worst
            await self.purger.run_once()

    async def apply_reports(self) -> None:
        """The reports intake (streams/intake.py); started again, with backoff, if it dies."""
        await supervise("reports intake", self.intake.run, self.intake.crashed)

    async def healthz(self, request: Any) -> Any:
        """200 when Redis answers, the replica is loaded and no stream is stalled; 503 with the same body
        otherwise (``stalled`` names the streams, screening ones and ``reports``, with records waiting and no
        progress for SEKAT_STALL_AFTER_S, or whose consumer task died and has not worked since; ``screening``
        is ``restarting`` when it is the screening consumer's, streams/progress.py). A worker screening from its
        replica's disk copy while Redis does not answer is degraded (503, ``replica_from_disk``), as any worker
        whose Redis is down: it screens, on a copy ``replica_staleness_seconds`` old. A worker whose replica is
        loading screens from the built index itself meanwhile (``replica_loading``): ready, exact, slower."""
        replica = self.replica
        redis_ok = await self.store.ping()
        ready = replica.ready.is_set() and not replica.awaiting_rebuild
        progress = self.screening.progress
        stalled = progress.stalled() + self.intake.progress.stalled()
        crashed = any(progress.is_crashed(stream) for stream in progress.stalled())
        healthy = redis_ok and ready and not stalled
        body = {"status": "ok" if healthy else "degraded", "redis": redis_ok, "replica_ready": ready,
                "replica_entries": replica.stats.entries, "replica_staleness_seconds": round(replica.staleness(), 3),
                "replica_change_id": replica.change_id, "replica_loaded_from": replica.stats.loaded_from,
                "replica_from_disk": replica.from_disk, "replica_loading": replica.loading,
                "index_rebuilding": replica.awaiting_rebuild,
                "index_rebuilds": self.guard.rebuilds, "stalled": stalled,
                "screening": "restarting" if crashed else "running"}
        return self.app.web.json(body, status=200 if healthy else 503)

    async def observe_health(self) -> None:
        # Freshness comes from the replica alone (its change-stream read answers at least once a second): a
        # ping says Redis is up, not that this worker's copy has caught up with it. Reading the offsets also
        # tells the screening consumer's and the reports intake's progress which streams have lag.
        self.metrics.set_consumer_offsets({**await self.screening.offsets(), **await self.reports_offsets()})

    async def reports_offsets(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(end offset asked of the broker, committed offset) per ``sekat.reports`` partition this worker's reports
        intake holds: its lag, in the same gauge as the screening inputs'."""
        return await self.intake.offsets()

    async def count_blocklist(self) -> None:
        """The blocklist-size gauges, published by the group leader every SEKAT_BLOCKLIST_COUNT_INTERVAL_S.

        The counts are kept by the replica as it applies changes (blocklist/counts.py): a tick moves the
        entries expired since the last one, nothing reads the index. Every worker's replica holds the same
        counts, so only the leader publishes them; the others drop their series so that a former leader's
        counts do not linger.
        """
        if not self.app.is_leader():
            self.metrics.clear_blocklist_counts()
            return
        counts = self.replica.entry_counts(time.time())
        if counts is not None:
            self.metrics.set_blocklist_counts(counts)


def disk_copy(settings: Settings) -> DiskCopy | None:
    """The replica's disk copy (blocklist/replica_disk.py), unless SEKAT_REPLICA_DISK_DIR is set empty."""
    directory = settings.replica_disk_path()
    if directory is None:
        return None
    return DiskCopy(directory, settings.redis_prefix, settings.replica_disk_max_age_s)


def build_worker(app: faust.App, settings: Settings, registry: CollectorRegistry, clock: Clock) -> Worker:
    """Every collaborator of a worker, each built once from ``settings``; nothing connects until the app starts."""
    metrics = WorkerMetrics(registry, deadletter_reasons=REASONS, target_attempts=settings.target_attempts,
                            target_period_days=settings.target_period_days, app_id=settings.app_id,
                            version=sekat.__version__, latency_objective_s=settings.latency_objective_ms / 1000,
                            latency_goal_s=settings.latency_goal_ms / 1000)
    url, prefix = settings.redis_url, settings.redis_prefix
    # Guarded: reports are applied only to a built index (never racing a rebuild's replay).
    store = BlocklistStore.from_url(url, prefix, guarded=True)
    guard = IndexGuard(settings, store, settings.protected_keys(),
                       on_replay=lambda cause: metrics.index_replays.labels(cause).inc())
    replica = Replica(url, prefix, on_fresh=metrics.freshness.mark,
                      stored_snapshot=settings.replica_snapshot_max_behind > 0,
                      snapshot_max_behind=settings.replica_snapshot_max_behind, timeout_ms=settings.redis_timeout_ms,
                      on_lost=guard.lost, disk=disk_copy(settings))
    metrics.replica_entries.set_function(lambda: replica.stats.entries)
    state = RuleStateStore.from_url(url, prefix, settings.redis_timeout_ms)
    policy = PolicyWatch(settings.policy_file or DEFAULT_POLICY_FILE, metrics)  # PolicyError stops start-up
    outputs = output_topics(app, settings)
    outputs.on_refused = lambda kind, action: metrics.output_refused.labels(kind, action).inc()
    brake = Brake(BrakeStore.from_url(url, prefix, settings.redis_timeout_ms),
                  Limits(window_s=settings.brake_window_s,
                         phone_reported=settings.brake_phone_reported_max,
                         phone_confirmed=settings.brake_phone_confirmed_max,
                         account_reported=settings.brake_account_reported_max,
                         account_confirmed=settings.brake_account_confirmed_max,
                         rule=settings.brake_rule_max, source=settings.brake_source_max),
                  BrakeMetrics(registry), outputs, f"{settings.app_id}@{socket.gethostname()}:{settings.web_port}")
    acted = ActedStore.from_url(url, prefix, settings.redis_timeout_ms)
    sent = FeedbackStore.from_url(url, prefix, settings.redis_timeout_ms)
    desk = FeedbackDesk(sent, store, brake.store, acked_send(app, outputs),
                        Topics(settings.topic_feedback, settings.topic_notices, settings.topic_decisions),
                        settings.feedback_false_positive_institutions)
    services = ScreenServices(
        store=replica, topics=outputs, metrics=metrics, policy=policy,
        # rule state + who acted + what was sent to whom, after the output is acked
        write_state=writing_sent(writing_who_acted(state.write, acted, clock), sent,
                                 settings.feedback_window_days * 86_400),
        clock=clock, brake=brake,
        # who acted is read by the release sweep, what was sent by feedback: never by a rule-state read
        unread_kinds=frozenset({ACTED, SENT}),
        stage_state=state.stage,
        record_statuses=StatusReports(sent, desk, clock, registry).record,  # pacs.002 on a held payment: feedback
    )
    # The input format of each topic (contract JSON, ISO 20022 pacs.008, CDR CSV, ...) is a setting.
    decode_transfer = transfer_decoder(settings)
    # An adapter's parse runs in child processes; the contract JSON's would cost more to hand over than to do.
    processes = (DecodeProcesses("transfers", decoder_settings("transfers", settings), settings.decode_processes,
                                 decode_transfer, metrics.decode_fallbacks.labels("transfers").inc)
                 if settings.decode_processes > 0 and settings.transfers_format != "json" else None)
    transfers = Screen("transfers", StreamSteps(decode_transfer, recording_sent(recording_who_acted(decide_transfer)),
                                                state.read_transfers, processes), services)
    calls = Screen("calls", StreamSteps(call_decoder(settings), recording_sent(recording_who_acted(decide_call)),
                                        state.read_calls), services)
    # SMS dead letters carry no bytes of the original (its size and digest only): the message text stays out.
    sms = Screen("sms", StreamSteps(sms_decoder(settings), recording_sent(recording_who_acted(decide_sms)),
                                    state.read_sms, deadletter_bytes=0), services)
    screening = ScreeningConsumer(settings, {settings.topic_transfers: transfers, settings.topic_calls: calls,
                                             settings.topic_sms: sms}, metrics)
    intake = ReportsConsumer(settings,
                             Intake(store, outputs, outputs.reports, metrics, max(settings.max_event_bytes, 1_048_576),
                                    settings.phone_region, settings.protected_keys(), clock),
                             guard.ensure, metrics, REPORTS_SESSION_TIMEOUT_S,
                             max(settings.batch_within_ms, REPORTS_WITHIN_MS), busy=lambda: screening.behind)
    for progress in (screening.progress, intake.progress):
        metrics.follow_stalls(progress.streams, progress.stalled_for, progress.is_stalled)
    return Worker(
        app=app, settings=settings, metrics=metrics, store=store, replica=replica, policy=policy, outputs=outputs,
        brake=brake, screening=screening, intake=intake, guard=guard,
        releaser=Releaser(acted, store, outputs, metrics, ReleaseMetrics(registry), clock, sent,
                          settings.feedback_window_days * 86_400),
        purger=Purger(store, acted, outputs, metrics,
                      Retention(settings.retention_revoked_days, settings.retention_expired_days,
                                settings.retention_appeals_days), clock,
                      RelatedTopics(raw_topic(app, settings.topic_appeals), raw_topic(app, settings.topic_feedback))),
        heap=HeapKeeper(registry),
    )


def create_app(settings: Settings, registry: CollectorRegistry | None = None, clock: Clock = utcnow) -> faust.App:
    """The worker's Faust app, with every collaborator built and every task registered; ``app.main()`` runs it."""
    registry = registry if registry is not None else CollectorRegistry()
    app = faust_app(settings)
    setup_prometheus_sensors(app, registry=registry, name_prefix="sekat_faust")
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    build_worker(app, settings, registry, clock).register()
    return app
