"""Topic layout: every topic Sekat reads or writes, with its partitions and config.

``create_topics`` is idempotent; ``sekat topics`` and ``sekat up`` call it.
Inputs and command topics share one partition count so that scale-out is one
setting; ``sekat.reports`` is compacted (the blocklist's source of truth).

Replication is ``SEKAT_TOPIC_REPLICATION``: 1 on one broker; on a cluster of
three or more, 3 with ``min.insync.replicas=2``, so that with producers
sending ``acks=all`` (the worker, the API, the CLI) an acknowledged record is
on two brokers at least and one broker can be lost (or restarted for an
upgrade) without losing a record or stopping writes.
"""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError

from sekat.settings import Settings

log = logging.getLogger(__name__)

WEEK_MS = str(7 * 24 * 3600 * 1000)


def min_insync(replication: int) -> int:
    """2 of 3 (or more) replicas must acknowledge a write; with fewer replicas, one."""
    return 2 if replication >= 3 else 1


def topic_specs(settings: Settings, replication: int | None = None) -> list[NewTopic]:
    parts = settings.topic_partitions
    replication = replication or settings.topic_replication
    isr = {"min.insync.replicas": str(min_insync(replication))}
    delete = {"cleanup.policy": "delete", "retention.ms": WEEK_MS} | isr
    specs = {
        settings.topic_transfers: (parts, delete),
        settings.topic_calls: (parts, delete),
        settings.topic_sms: (parts, delete),
        settings.topic_reports: (parts, {"cleanup.policy": "compact"} | isr),
        settings.topic_freeze: (parts, delete),
        settings.topic_block: (parts, delete),
        settings.topic_decisions: (parts, delete),
        settings.topic_deadletter: (1, {"cleanup.policy": "delete", "retention.ms": str(30 * 24 * 3600 * 1000)} | isr),
        settings.topic_undelivered: (1, {"cleanup.policy": "delete", "retention.ms": str(30 * 24 * 3600 * 1000)} | isr),
    }
    # Per-institution routing: each listed bank's and operator's own command topic (docs/security.md).
    specs.update({name: (parts, delete) for name in settings.command_topics().values()})
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
