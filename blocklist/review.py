"""What an institution's feedback on a command does: recorded, kept on the entries, and acted on past a threshold.

    feedback ─> SEKAT_TOPIC_FEEDBACK (acks=all, keyed by command_id: the latest word on a command is kept)
             ─> each entry behind the command keeps it in its feedback history (blocklist/feedback.py)
             ─> false_positive from SEKAT_FEEDBACK_FALSE_POSITIVE_INSTITUTIONS distinct institutions on one
                entry: the entry goes into review, i.e.
                  a notice to the listing agency on SEKAT_TOPIC_NOTICES ("notice": "review"),
                  the safety brake's shadow mode for the entry (a trip by "feedback", audited on
                  SEKAT_TOPIC_DECISIONS first, re-armed by an authority with POST /v1/brake/rearm),
                  the entry's ``review`` flag
             ─> customer_is_victim on a listed account: the account stays listed (and frozen: no release is
                sent), flagged for the victim-mule process: a notice ("notice": "victim_mule") and the entry's
                ``victim_mule`` flag

Each step is done once: a flag is set only after its notice and trip are on Kafka and in Redis, so a failure
part-way is retried by the next feedback, and a notice sent twice carries the same ``notice_id``. The agency
API (``POST /v1/feedback``) and the worker (a pacs.002 on a held payment) both apply feedback here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from sekat.blocklist.feedback import FeedbackStore, SentCommand, false_positive_institutions
from sekat.blocklist.store import BlocklistStore
from sekat.brake.store import BrakeStore, Trip, masked_target
from sekat.records import COMMAND_NAMESPACE, iso

log = logging.getLogger(__name__)

# topic, value, key, what a 503 says when Kafka does not acknowledge it
Send = Callable[[str, bytes, bytes, str], Awaitable[Any]]


@dataclass(frozen=True)
class Topics:
    feedback: str
    notices: str
    decisions: str


@dataclass(frozen=True)
class Applied:
    first: bool  # the first feedback on its command
    review: tuple[str, ...] = ()  # entries this feedback put into review
    victim: tuple[str, ...] = ()  # entries this feedback flagged for the victim-mule process


def feedback_record(sent: SentCommand, outcome: str, now: datetime, *, note: str = "", case_ref: str = "",
                    reason_code: str = "", via: str = "api", by: str = "") -> dict[str, Any]:
    """The Feedback record (docs/contract.md) of ``outcome`` on ``sent``."""
    return {"command_id": sent.command_id, "institution": sent.institution, "outcome": outcome, "note": note,
            "case_ref": case_ref, "reason_code": reason_code, "action": sent.action, "issued_at": sent.issued_at,
            "received_at": iso(now), "entries": list(sent.entries), "via": via, "by": by}


class FeedbackDesk:
    def __init__(self, feedback: FeedbackStore, index: BlocklistStore, brakes: BrakeStore, send: Send,
                 topics: Topics, false_positive_institutions: int) -> None:
        self.feedback = feedback
        self.index = index
        self.brakes = brakes
        self.send = send
        self.topics = topics
        self.threshold = false_positive_institutions

    async def apply(self, record: Mapping[str, Any], now: datetime) -> Applied:
        """Record ``record`` (a ``feedback_record``) and act on what it tips; raises ``BlocklistUnavailable``
        if Kafka or Redis does not take it."""
        await self.send(self.topics.feedback, orjson.dumps(dict(record)), record["command_id"].encode(),
                        "feedback not recorded: Kafka did not acknowledge it")
        entries = list(record["entries"])
        first = await self.feedback.add(record, entries)
        review, victim = [], []
        for key in entries:
            if record["outcome"] == "false_positive" and self.threshold > 0:
                if await self._review(key, now):
                    review.append(key)
            elif record["outcome"] == "customer_is_victim" and key.startswith("account:"):
                if await self._victim(key, record, now):
                    victim.append(key)
        return Applied(first, tuple(review), tuple(victim))

    async def _review(self, key: str, now: datetime) -> bool:
        history = await self.feedback.of_entry(key)
        institutions = false_positive_institutions(history)
        if len(institutions) < self.threshold or "review" in await self.feedback.flags(key):
            return False
        said = [f for f in history if f["outcome"] == "false_positive"]
        entry = await self.index.get(key)
        status = entry.status.value if entry is not None else "unlisted"
        reason = (f"false_positive feedback from {len(institutions)} institutions (threshold {self.threshold}): "
                  "in review, switched to shadow mode (decisions recorded, no commands) until re-armed")
        await self._notice("review", key, entry, now, said)
        target = f"entry:{key}"
        trip = Trip(target, len(institutions), self.threshold, 0, iso(now), "feedback", status)
        event_id = "brake-" + str(uuid.uuid5(COMMAND_NAMESPACE, f"trip|{target}|feedback"))
        audit = {"event_id": event_id, "stream": "brake", "action": "trip", "target": target, "dimension": "entry",
                 "at": iso(now), "by": "feedback", "reason": reason, "count": trip.count, "limit": trip.limit,
                 "window_s": 0, "status": status}
        await self.send(self.topics.decisions, orjson.dumps(audit), event_id.encode(),
                        "review not started: Kafka did not acknowledge the brake's audit record")
        await self.brakes.trip(trip)
        await self.feedback.flag("review", key, {"at": iso(now), "institutions": sorted(institutions),
                                                 "reason": reason})
        log.warning("%s in review: %s", masked_target(target), reason)
        return True

    async def _victim(self, key: str, record: Mapping[str, Any], now: datetime) -> bool:
        if "victim" in await self.feedback.flags(key):
            return False
        entry = await self.index.get(key)
        await self._notice("victim_mule", key, entry, now, [record])
        await self.feedback.flag("victim", key, {"at": iso(now), "institution": record["institution"],
                                                 "command_id": record["command_id"], "note": record["note"]})
        log.warning("%s flagged for the victim-mule process by %s", masked_target(f"entry:{key}"),
                    record["institution"])
        return True

    async def _notice(self, kind: str, key: str, entry: Any, now: datetime, said: list[Mapping[str, Any]]) -> None:
        notice_id = "notice-" + str(uuid.uuid5(COMMAND_NAMESPACE, f"{kind}|{key}"))
        body = {"notice_id": notice_id, "notice": kind, "identifier": key,
                "agency": entry.source if entry is not None else "", "case_ref": entry.case_ref if entry else "",
                "at": iso(now), "institutions": sorted({f["institution"] for f in said}),
                "command_ids": [f["command_id"] for f in said], "notes": [f["note"] for f in said if f["note"]]}
        await self.send(self.topics.notices, orjson.dumps(body), key.encode(),
                        f"{kind} notice not sent: Kafka did not acknowledge it")
