"""What leaves with an identifier's entry besides the entry: its appeals and the institutions' feedback naming it.

Both the retention purge (streams/purge.py) and an erasure (``sekat privacy erase``) take them, in two steps:

    related(...)   read what names the identifier, through the indexes Redis keeps per identifier:
                   ``{appeals}:all:<identifier>`` (every appeal id on it) and ``fb:<identifier>`` (the latest
                   feedback record of each command that acted on it); an erasure adds what it read on the
                   topics themselves (so an appeal or feedback Redis lost is found too)
                   ─> the records to write: a tombstone on SEKAT_TOPIC_APPEALS for each appeal, and for each
                      feedback record on SEKAT_TOPIC_FEEDBACK a tombstone, or the record again without the
                      identifier when its command acted on other entries too
    forget(...)    once Kafka has acknowledged those records: the appeals out of Redis (with their stage,
                   agency and decided index entries), and the other entries' feedback histories
                   (``fb:<other>``) holding the record without the identifier

The entry's own ``fb:<identifier>`` hash and flags go with the entry (``BlocklistStore.forget``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import orjson

from sekat.blocklist.appeals import AppealStore
from sekat.blocklist.connection import AnyRedis
from sekat.blocklist.feedback import FeedbackStore

T = TypeVar("T")


@dataclass(frozen=True)
class Related:
    """An identifier's appeals, and the feedback records naming it as they are to be written (None: tombstone)."""

    key: str
    appeal_ids: frozenset[str] = frozenset()
    feedback: Mapping[bytes, bytes | None] = field(default_factory=dict)  # command id -> record without ``key``

    def records(self, appeals_topic: T, feedback_topic: T) -> list[tuple[T, bytes, bytes | None]]:
        """(topic, key, value) of every record to write, tombstones as None values."""
        return [*((appeals_topic, a.encode(), None) for a in sorted(self.appeal_ids)),
                *((feedback_topic, k, v) for k, v in sorted(self.feedback.items()))]

    @property
    def rewritten(self) -> int:
        """Feedback records written again without the identifier (the others are tombstoned)."""
        return sum(v is not None for v in self.feedback.values())


def without_entry(key: str, records: Mapping[bytes, bytes]) -> dict[bytes, bytes | None]:
    """The feedback ``records`` (command id -> latest record) that name entry ``key``, as they are to be written:
    without it, or None (a tombstone) when it was their only entry."""
    out: dict[bytes, bytes | None] = {}
    for command_id, value in records.items():
        body = orjson.loads(value)
        if key in body.get("entries", ()):
            others = [e for e in body["entries"] if e != key]
            out[command_id] = orjson.dumps(body | {"entries": others}) if others else None
    return out


async def related(client: AnyRedis, prefix: str, key: str, appeals_on_topic: set[str] | frozenset[str] = frozenset(),
                  feedback_on_topic: Mapping[bytes, bytes] | None = None) -> Related:
    """What names ``key``: Redis's per-identifier indexes, and what the caller read on the topics (the topic's
    latest record of a command wins over the one Redis holds)."""
    ids = await AppealStore(client, prefix).ids_on(key)  # type: ignore[arg-type]
    held = await FeedbackStore(client, prefix).held_on(key)
    return Related(key, frozenset(ids | set(appeals_on_topic)), without_entry(key, {**held, **(feedback_on_topic or {})}))


async def forget(client: AnyRedis, prefix: str, gone: Related) -> int:
    """After Kafka acknowledged ``gone.records``: its appeals out of Redis, the other entries' feedback histories
    rewritten; the number of appeals Redis held."""
    held = await AppealStore(client, prefix).forget(gone.key, set(gone.appeal_ids))  # type: ignore[arg-type]
    await FeedbackStore(client, prefix).rewrite(gone.feedback)
    return held
