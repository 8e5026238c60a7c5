"""Institutions configured through the agency API, read by a relay from ``SEKAT_TOPIC_INSTITUTIONS``.

The topic is compacted and keyed by the institution's id; a record with no value removed it. A starting relay
reads it from the beginning to the end offsets it finds (no consumer group), keeps each id's last record, and
checks each as an entry of ``SEKAT_INSTITUTIONS_FILE`` is checked (``sekat.institutions``); then it follows the
topic from there (``follow``), so an institution the API adds, changes (a new URL, a rotated secret) or removes
is served so within about a second, without a restart. A record that does not pass is left out and logged by
its id and the reason, never a secret (while following: the institution's last good configuration is kept).
An institution in the file too is the file's: the file is what operators deploy, the topic what the API adds
to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from sekat.errors import ConfigError
from sekat.institutions import Institution, parse_institutions
from sekat.settings import Settings

log = logging.getLogger(__name__)
READ_TIMEOUT_MS = 1000
METADATA_EVERY_S = 10.0  # while following a topic that does not exist yet: how often to look for it
Offsets = dict[TopicPartition, int]


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    # The whole cluster's metadata (``topics()`` gives names only): the topic may not exist yet.
    cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - aiokafka has no public call for it
    return [TopicPartition(topic, n) for n in sorted(cluster.partitions_for_topic(topic) or set())]


async def _records(consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                   until: Offsets | None = None) -> AsyncIterator[tuple[str, bytes | None]]:
    """Each record's institution id and value from the consumer's positions on ``tps``: up to the offsets
    ``until`` when given, else until cancelled."""
    while until is None or [tp for tp in tps if await consumer.position(tp) < until[tp]]:
        batches = await consumer.getmany(*tps, timeout_ms=READ_TIMEOUT_MS)
        for records in batches.values():
            for record in records:
                yield (record.key or b"").decode("utf-8", "replace"), record.value


async def read_configured(settings: Settings) -> tuple[dict[str, Institution], Offsets]:
    """The institutions the API configured, by id, as the topic holds them now, and the offsets read up to
    (where ``follow`` goes on from)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.aiokafka_config())
    try:
        await consumer.start()
        tps = await _partitions(consumer, settings.topic_institutions)
        if not tps:
            return {}, {}
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        latest: dict[str, bytes | None] = {}
        async for ident, value in _records(consumer, tps, ends):
            latest[ident] = value
    finally:
        await consumer.stop()
    found = checked({k: v for k, v in latest.items() if v is not None}, bool(settings.relay_loopback_http))
    return found, dict(ends)


async def follow(settings: Settings, start: Offsets, from_file: Mapping[str, Institution],
                 configure: Callable[[Institution], None], remove: Callable[[str], None]) -> None:
    """Apply each record written to the institutions topic after ``start`` (a partition not in it: from its
    beginning) until cancelled: ``configure`` a new or changed institution, ``remove`` a removed one. An id in
    ``from_file`` is the file's and is left alone."""
    loopback = bool(settings.relay_loopback_http)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.aiokafka_config())
    await consumer.start()
    try:
        tps: list[TopicPartition] = []
        while not tps:
            tps = await _partitions(consumer, settings.topic_institutions)
            if not tps:
                await asyncio.sleep(METADATA_EVERY_S)
        consumer.assign(tps)
        for tp in tps:
            if tp in start:
                consumer.seek(tp, start[tp])
            else:
                await consumer.seek_to_beginning(tp)
        async for ident, value in _records(consumer, tps):
            if ident in from_file:
                log.warning("institution %s changed through the API is in SEKAT_INSTITUTIONS_FILE: the file's "
                            "entry is used", ident[:40])
            elif value is None:
                remove(ident)
                log.info("institution %s removed through the API: no longer delivered to", ident[:40])
            else:
                for institution in checked({ident: value}, loopback).values():
                    configure(institution)
                    log.info("institution %s configured through the API: delivering to it", ident[:40])
    finally:
        await consumer.stop()


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
