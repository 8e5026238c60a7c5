"""Topic layout: every topic Sekat reads or writes, with its partitions and config.

``create_topics`` is idempotent; ``sekat topics`` and ``sekat up`` call it.
Inputs and command topics share one partition count so that scale-out is one
setting; ``sekat.reports`` is compacted (the blocklist's source of truth), and so are ``sekat.appeals``
(each appeal's latest record holds all of it) and ``sekat.feedback`` (institutions' latest word on each command).
The retention of the decisions, command, dead-letter and audit topics are settings
(``SEKAT_RETENTION_*_DAYS``, docs/privacy.md).

Replication is ``SEKAT_TOPIC_REPLICATION``: 1 on one broker; on a cluster of
three or more, 3 with ``min.insync.replicas=2``, so that with producers
sending ``acks=all`` (the worker, the API, the CLI) an acknowledged record is
on two brokers at least and one broker can be lost (or restarted for an
upgrade) without losing a record or stopping writes.
"""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError

from sekat.settings import Settings

log = logging.getLogger(__name__)

WEEK_MS = str(7 * 24 * 3600 * 1000)
DAY_MS = 24 * 3600 * 1000


def retention(days: int) -> dict[str, str]:
    """The config of a topic whose records are deleted ``days`` after they were written."""
    return {"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)}


def min_insync(replication: int) -> int:
    """2 of 3 (or more) replicas must acknowledge a write; with fewer replicas, one."""
    return 2 if replication >= 3 else 1


def topic_specs(settings: Settings, replication: int | None = None) -> list[NewTopic]:
    parts = settings.topic_partitions
    replication = replication or settings.topic_replication
    isr = {"min.insync.replicas": str(min_insync(replication))}
    delete = {"cleanup.policy": "delete", "retention.ms": WEEK_MS} | isr
    # Retention of what holds personal data is a setting of its own (docs/privacy.md).
    commands = retention(settings.retention_commands_days) | isr
    specs = {
        settings.topic_transfers: (parts, delete),
        settings.topic_calls: (parts, delete),
        settings.topic_sms: (parts, delete),
        # Compacted within a week at the latest, so a purged entry's records (then its tombstone, a day
        # later) leave the topic in a bounded time however little else is written (docs/privacy.md).
        settings.topic_reports: (parts, {"cleanup.policy": "compact", "max.compaction.lag.ms": str(7 * DAY_MS),
                                         "delete.retention.ms": str(DAY_MS)} | isr),
        settings.topic_appeals: (parts, {"cleanup.policy": "compact"} | isr),  # each record holds its appeal whole
        settings.topic_freeze: (parts, commands),
        settings.topic_block: (parts, commands),
        settings.topic_decisions: (parts, retention(settings.retention_decisions_days) | isr),
        settings.topic_deadletter: (1, retention(settings.retention_deadletter_days) | isr),
        settings.topic_undelivered: (1, commands),
        settings.topic_audit: (1, retention(settings.retention_audit_days) | isr),
        settings.topic_feedback: (parts, {"cleanup.policy": "compact"} | isr),
        settings.topic_institutions: (1, {"cleanup.policy": "compact"} | isr),
        settings.topic_notices: (1, {"cleanup.policy": "delete", "retention.ms": str(90 * 24 * 3600 * 1000)} | isr),
    }
    # Per-institution routing: each listed bank's and operator's own command topic (docs/security.md).
    specs.update({name: (parts, commands) for name in settings.command_topics().values()})
    return [NewTopic(name, n, replication, topic_configs=conf) for name, (n, conf) in specs.items()]


def create_topics(settings: Settings, replication: int | None = None) -> list[str]:
    """Create whichever of Sekat's topics are missing; returns the names created.

    A topic the principal may not see looks missing; if it may not create it either (under the ACL plan a
    worker has no rights on the relay's undelivered topic), it is left to whoever runs ``sekat topics``.
    """
    admin = KafkaAdminClient(**settings.kafka_client_config(), request_timeout_ms=15000)  # type: ignore[arg-type]
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topic_specs(settings, replication) if t.name not in existing]
        created = []
        for topic in missing:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except (TopicAlreadyExistsError, TopicAuthorizationFailedError):
                pass
        return created
    finally:
        admin.close()


def retention_topics(settings: Settings) -> set[str]:
    """The topics whose retention is a ``SEKAT_RETENTION_*_DAYS`` setting, and the compacted reports topic
    (how soon a purged entry's records leave it)."""
    return {settings.topic_reports, settings.topic_freeze, settings.topic_block, settings.topic_decisions, settings.topic_deadletter,
            settings.topic_undelivered, settings.topic_audit, *settings.command_topics().values()}


def apply_retention(settings: Settings) -> list[str]:
    """Set the configured retention on those of ``retention_topics`` that exist; returns the names set.

    The whole config of each topic is given (``AlterConfigs`` replaces a topic's dynamic config), as
    ``topic_specs`` has it, so that min.insync.replicas stays what it was created with.
    """
    wanted = retention_topics(settings)
    admin = KafkaAdminClient(**settings.kafka_client_config(), request_timeout_ms=15000)  # type: ignore[arg-type]
    try:
        existing = set(admin.list_topics())
        specs = [t for t in topic_specs(settings) if t.name in wanted and t.name in existing]
        if specs:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t.name, configs=t.topic_configs)
                                 for t in specs])
        return [t.name for t in specs]
    finally:
        admin.close()
