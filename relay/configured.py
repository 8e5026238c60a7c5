"""Institutions configured through the agency API, read by a starting relay from ``SEKAT_TOPIC_INSTITUTIONS``.

The topic is compacted and keyed by the institution's id; a record with no value removed it. A relay reads it
from the beginning to the end offsets it finds at start (no consumer group), keeps each id's last record, and
checks each as an entry of ``SEKAT_INSTITUTIONS_FILE`` is checked (``sekat.institutions``). A record that does
not pass is left out and logged by its id and the reason, never a secret. An institution in the file too is
the file's: the file is what operators deploy, the topic what the API adds to it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from sekat.errors import ConfigError
from sekat.institutions import Institution, parse_institutions
from sekat.settings import Settings

log = logging.getLogger(__name__)
READ_TIMEOUT_MS = 1000


async def read_configured(settings: Settings) -> dict[str, Institution]:
    """The institutions the API configured, by id, as the topic holds them now."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.aiokafka_config())
    try:
        await consumer.start()
        # The whole cluster's metadata (``topics()`` gives names only): the topic may not exist yet.
        cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - aiokafka has no public call for it
        numbers = cluster.partitions_for_topic(settings.topic_institutions) or set()
        tps = [TopicPartition(settings.topic_institutions, n) for n in sorted(numbers)]
        if not tps:
            return {}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        latest: dict[str, bytes | None] = {}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(*tps, timeout_ms=READ_TIMEOUT_MS)
            for records in batches.values():
                for record in records:
                    latest[(record.key or b"").decode("utf-8", "replace")] = record.value
    finally:
        await consumer.stop()
    return checked({k: v for k, v in latest.items() if v is not None}, bool(settings.relay_loopback_http))


def checked(records: Mapping[str, bytes], loopback_http: bool) -> dict[str, Institution]:
    found: dict[str, Institution] = {}
    for ident, value in records.items():
        try:
            body = orjson.loads(value)
            entry = {"id": ident, "url": body.get("url"), "secrets": body.get("secrets")}
            found.update(parse_institutions({"institutions": [entry]}, loopback_http))
        except (orjson.JSONDecodeError, AttributeError, ConfigError) as exc:
            reason = str(exc).split(": ", 2)[-1] if isinstance(exc, ConfigError) else "not a JSON object"
            log.warning("institution %s on the institutions topic left out: %s", ident[:40], reason)
    return found


def merged(from_file: Mapping[str, Institution], from_topic: Mapping[str, Institution]) -> dict[str, Institution]:
    both = sorted(set(from_file) & set(from_topic))
    if both:
        log.warning("institutions %s are in SEKAT_INSTITUTIONS_FILE and configured through the API: the file's "
                    "entries are used", ", ".join(both))
    return {**from_topic, **from_file}
