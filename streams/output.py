"""Output: commands, decisions and dead letters, sent as one acknowledged batch.

Every message of a batch is handed to the producer at once (``produce``); ``acked``
waits until Kafka has acknowledged all of them (acks=all). The screening
consumer commits the input batch only after ``acked`` returns, so an input
offset is never committed before its commands are durable (at-least-once).
Under Faust's aiokafka producer the messages go as record batches, one per topic and partition, in
the partition ``send`` would choose and in order within it; a batch Kafka refuses for good is handed
again one message at a time, so each of its records is judged alone as below.

Every record has a size bound. A dead letter carries at most ``deadletter_original_bytes`` of the refused
value (with the size and SHA-256 of the whole), so it always fits. A record Kafka refuses for good
(``permanent`` in streams/retry.py: too large, invalid, not authorised) does not hold the batch: a dead letter
is sent again without the original bytes, any other record but a command is dropped, counted
(``sekat_output_refused_total``) and logged, and the batch goes on. A command is never dropped
(``CommandRefused``: its batch is re-sent until the topic is fixed); commands are small by construction and
``command`` caps their reasons, so only a misconfigured topic refuses one.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import faust
import orjson
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition
from sekat.streams.retry import permanent

from sekat.errors import CommandRefused
from sekat.murmur import murmur2_many
from sekat.redaction import mask_identifiers, redact
from sekat.records import OUTCOME_NAMES, Command, Decision, Rejection, Report, Source, iso

log = logging.getLogger(__name__)

DEADLETTER_ORIGINAL_BYTES = 65536  # SEKAT_DEADLETTER_ORIGINAL_BYTES
DEADLETTER_KEY_BYTES = 1024  # of the refused record's key
DEADLETTER_TEXT = 1024  # characters of a rejection's message and field
COMMAND_MAX_BYTES = 16384  # a command's JSON; a real one is well under 2 KiB
COMMAND_REASON = 512  # characters of each reason of a command over COMMAND_MAX_BYTES
COMMAND_REASONS = 16  # reasons kept of a command over COMMAND_MAX_BYTES
# More than a record batch's header and a record's own overhead (aiokafka's estimate_size_in_bytes): a record
# this close to the producer's max_request_size goes alone through ``send``, which measures it exactly.
RECORD_OVERHEAD = 256


def _not_counted(kind: str, action: str) -> None:
    """``OutputTopics.on_refused`` where no metric is kept (the command-line tools)."""


@dataclass
class OutputTopics:
    freeze: faust.TopicT
    block: faust.TopicT
    decisions: faust.TopicT
    deadletter: faust.TopicT
    reports: faust.TopicT  # automatic ``reported`` entries filed by rules
    # Per-institution routing (SEKAT_COMMAND_ROUTING): (for_bank, institution) -> that institution's own topic.
    routes: Mapping[tuple[bool, str], faust.TopicT] = field(default_factory=dict)
    deadletter_original_bytes: int = DEADLETTER_ORIGINAL_BYTES
    # Counts a record Kafka refused for good: (kind of record, "stripped" | "dropped" | "retried").
    on_refused: Callable[[str, str], None] = _not_counted

    def for_command(self, command: Command) -> faust.TopicT:
        """The institution's own topic when it has one, else the shared freeze (banks) or block (telcos) topic."""
        for_bank = command.action.for_bank
        own = self.routes.get((for_bank, command.institution)) if self.routes else None
        return own if own is not None else (self.freeze if for_bank else self.block)


class OutputBatch:
    """The output of one input batch; re-sendable as a whole (command ids are deterministic)."""

    def __init__(self, topics: OutputTopics) -> None:
        self._topics = topics
        self.messages: list[tuple[faust.TopicT, bytes, bytes]] = []
        self.kinds: list[str] = []  # per message: command, decision, report, deadletter or record
        self._dropped: set[int] = set()  # refused for good and not to be sent again
        self._stripped: set[int] = set()  # dead letters already sent again without their original bytes
        self._producer: Any = None
        # The producer's futures of the last hand-over: a message's index, or a record batch's indices, and its future.
        self._pending: list[tuple[int | list[int], Awaitable[Any]]] | None = None

    def _add(self, kind: str, topic: faust.TopicT, key: bytes, value: bytes) -> None:
        self.messages.append((topic, key, value))
        self.kinds.append(kind)

    def command(self, command: Command) -> None:
        topic = self._topics.for_command(command)
        self._add("command", topic, command.institution.encode(), bounded_command(command.to_json()))

    def decision(self, decision: Decision, source: Source | Any) -> None:
        """A decision record; ``source`` is where the event came from: a ``Source`` or the Kafka record itself."""
        self._add("decision", self._topics.decisions, decision.event_id.encode(), decision_record(decision, source))

    def report(self, report: Report) -> None:
        """A rule's automatic report, keyed ``kind:value`` like every report on the compacted topic."""
        self._add("report", self._topics.reports, report.key.encode(), orjson.dumps(report.to_json()))

    def deadletter(self, source: Source, raw: bytes | None, rejection: Rejection, dead_at: str,
                   keep: int | None = None) -> None:
        """A dead letter for a refused input record: at most ``deadletter_original_bytes`` (or ``keep``) of it,
        whatever its size."""
        keep = self._topics.deadletter_original_bytes if keep is None else keep
        body = deadletter_body(source, raw or b"", rejection, dead_at, keep)
        self._add("deadletter", self._topics.deadletter, source.topic.encode(), orjson.dumps(body))

    def record(self, topic: faust.TopicT, key: bytes, value: bytes | None) -> None:
        """One record as it is; a None ``value`` is a tombstone (the purge's, on the compacted reports topic)."""
        self._add("record", topic, key, value)  # type: ignore[arg-type]

    async def produce(self) -> None:
        """Hand every message to the producer, in order within a partition; ``acked`` waits for Kafka's acks.

        Straight to the app's producer (acks=all), not through ``Topic.send``: Faust's per-message path
        (future message, sensors, a debug log line) cost more than the send itself on the hot path. Under
        Faust's aiokafka producer, as record batches (``_hand_batches``); under any other, one ``send`` a message.
        """
        self._pending = None  # set only once every record is handed: a partial hand-over is no hand-over
        pending: list[tuple[int | list[int], Awaitable[Any]]] = []
        if self.messages:
            self._producer = await self.messages[0][0].app.maybe_start_producer()
            kafka = self._batching()
            if kafka is not None:
                await self._hand_batches(kafka, pending)
            else:
                for i in range(len(self.messages)):
                    fut = await self._hand(i)
                    if fut is not None:
                        pending.append((i, fut))
        self._pending = pending

    async def acked(self) -> None:
        """Wait until Kafka acknowledged every record handed over; on a failure, the next call hands all again.

        A record refused for good is replaced or dropped here (``_refused``), so it never holds the batch; a
        record batch refused for good is handed again one message at a time, each record then judged alone.
        """
        if self._pending is None:  # never handed, or the last hand-over or wait failed: all again (same ids)
            await self.produce()
        pending, self._pending = self._pending, None  # None until every acknowledgement is in
        while pending:
            again: list[int] = []
            for i, fut in pending:
                try:
                    await fut
                except Exception as exc:  # noqa: BLE001 - transient ones are re-raised by _refused, or below
                    if type(i) is int:
                        self._refused(i, exc)
                        again.append(i)
                    elif permanent(exc):  # the error does not say which of the batch's records is at fault
                        again.extend(i)
                    else:
                        raise
            pending = []
            for i in again:
                fut = await self._hand(i)
                if fut is not None:
                    pending.append((i, fut))
        self._pending = []

    async def send(self) -> None:
        """Hand over and wait for every acknowledgement."""
        await self.produce()
        await self.acked()

    def _batching(self) -> Any:
        """The aiokafka producer under the app's, if it takes record batches as ``_hand_batches`` needs; else None.

        Faust's aiokafka driver gives it with ``_ensure_producer`` (as its own ``key_partition`` uses it). A
        producer with serializers is left to ``send``: the partition is chosen from the serialized key.
        """
        ensure = getattr(self._producer, "_ensure_producer", None)
        if ensure is None:
            return None
        try:
            kafka = ensure()
        except Exception:  # noqa: BLE001 - not started: ``send`` says so, as before
            return None
        if not all(hasattr(kafka, name) for name in
                   ("create_batch", "send_batch", "partitions_for", "_partition", "_max_request_size")):
            return None
        if getattr(kafka, "_key_serializer", None) is not None or getattr(kafka, "_value_serializer", None) is not None:
            return None
        return kafka

    async def _hand_batches(self, kafka: Any, pending: list[tuple[int | list[int], Awaitable[Any]]]) -> None:
        """Hand every message not dropped to aiokafka as record batches: one future per batch, not per message.

        Each record goes to the partition aiokafka's ``send`` would give it (``partitioner``), and the records of
        a partition keep the order they were added in, across its batches and any message handed alone. A batch
        holds what ``create_batch`` allows (the producer's max_batch_size); a record near max_request_size, or
        one a fresh batch does not take, goes alone through ``_hand``, as does every record of a batch
        ``send_batch`` refuses, and every record of a partition for which the producer holds a batch not yet
        sent when the hand-over reaches it (an earlier output's, while a request is in flight): ``send`` adds to
        that batch where ``send_batch`` would wait until it is sent. Faust's ``on_produce_message`` signal is
        not sent (Sekat connects nothing to it).
        """
        messages, dropped = self.messages, self._dropped
        names: dict[Any, str] = {}
        try:
            for topic, _, _ in messages:
                if topic not in names:
                    names[topic] = topic.get_topic_name()
            for name in set(names.values()):
                await kafka.partitions_for(name)  # metadata, as ``send`` waits for it
        except Exception:  # noqa: BLE001 - ``send`` meets the same error, and _refused judges it
            for i in range(len(messages)):
                fut = await self._hand(i)
                if fut is not None:
                    pending.append((i, fut))
            return
        partitioners = {name: partitioner(kafka, name) for name in set(names.values())}
        create, near = kafka.create_batch, kafka._max_request_size - RECORD_OVERHEAD
        filling: dict[tuple[str, int], tuple[Any, list[int]]] = {}  # (topic, partition) -> open batch, its indices
        plan: list[tuple[str, int, Any, list[int]] | int] = []  # in hand-over order: a batch, or a message alone

        def close(tp: tuple[str, int]) -> None:
            open_batch = filling.pop(tp, None)
            if open_batch is not None:
                plan.append((*tp, *open_batch))

        by_topic: dict[str, list[int]] = {}
        for i, (topic, _, _) in enumerate(messages):
            if i not in dropped:
                by_topic.setdefault(names[topic], []).append(i)
        chosen: dict[int, int] = {}  # message -> its partition
        for name, indices in by_topic.items():
            chosen.update(zip(indices, partitioners[name]([messages[i][1] for i in indices],
                                                          [messages[i][2] for i in indices])))
        for i, (topic, key, value) in enumerate(messages):
            if i in dropped:
                continue
            name = names[topic]
            tp = (name, chosen[i])
            if len(key) + len(value or b"") > near:
                close(tp)
                plan.append(i)
                continue
            open_batch = filling.get(tp)
            if open_batch is not None and open_batch[0].append(key=key, value=value, timestamp=None) is not None:
                open_batch[1].append(i)
                continue
            close(tp)  # full, or none yet
            batch = create()
            if batch.append(key=key, value=value, timestamp=None) is None:
                plan.append(i)
            else:
                filling[tp] = (batch, [i])
        plan.extend((*tp, *open_batch) for tp, open_batch in filling.items())

        held = getattr(getattr(kafka, "_message_accumulator", None), "_batches", None)  # the producer's, not sent
        alone: dict[tuple[str, int], bool] = {}  # by partition, once its first batch is reached
        for step in plan:
            if type(step) is int:
                fut = await self._hand(step)
                if fut is not None:
                    pending.append((step, fut))
                continue
            name, partition, batch, indices = step
            tp = (name, partition)
            if tp not in alone:
                alone[tp] = bool(held and held.get(TopicPartition(name, partition)))
            if not alone[tp]:
                try:
                    pending.append((indices, await kafka.send_batch(batch, name, partition=partition)))
                    continue
                except Exception as exc:  # noqa: BLE001 - each record is handed alone, and judged by _refused
                    log.debug("a record batch of %d for %s/%d was refused (%s: %s); handed one at a time",
                              len(indices), name, partition, type(exc).__name__, exc)
            for i in indices:
                fut = await self._hand(i)
                if fut is not None:
                    pending.append((i, fut))

    async def _hand(self, i: int) -> Awaitable[Any] | None:
        """Hand message ``i`` to the producer: its future, or None once it is dropped."""
        while i not in self._dropped:
            topic, key, value = self.messages[i]
            try:
                fut: Awaitable[Any] = await self._producer.send(topic.get_topic_name(), key, value, None, None, None)
                return fut
            except Exception as exc:  # noqa: BLE001 - the producer refuses an oversized record at once
                self._refused(i, exc)
        return None

    def _refused(self, i: int, exc: Exception) -> None:
        """Message ``i`` failed with ``exc``: re-raise a transient error; else strip, drop or keep it (see module)."""
        if not permanent(exc):
            raise exc
        kind, (topic, key, value) = self.kinds[i], self.messages[i]
        name, error = topic.get_topic_name(), type(exc).__name__
        if kind == "command":
            self._topics.on_refused(kind, "retried")
            log.error("Kafka refuses a command on %s for good (%s: %s); commands are never dropped: the batch is "
                      "re-sent until the topic's max.message.bytes or the worker's ACL is fixed", name, error, exc)
            raise CommandRefused(f"command refused by {name}: {error}") from exc
        if kind == "deadletter" and i not in self._stripped:
            self._stripped.add(i)
            self.messages[i] = (topic, key, stripped_deadletter(value, error))
            self._topics.on_refused(kind, "stripped")
            log.error("a %d-byte dead letter was refused by %s (%s: %s); sent again without the original bytes",
                      len(value), name, error, exc)
            return
        self._dropped.add(i)
        self._topics.on_refused(kind, "dropped")
        log.error("a %d-byte %s record was refused by %s for good (%s: %s); dropped, the stream goes on",
                  len(value), kind, name, error, exc)


def partitioner(kafka: Any, topic: str) -> Callable[[Sequence[bytes | None], Sequence[bytes]], list[int]]:
    """The partitions aiokafka's ``send`` gives records (keys, values) on ``topic``, as of the producer's metadata now.

    Under aiokafka's default partitioner (Kafka's: murmur2 of the key, made positive, modulo the number of
    partitions, indexing the list of them ``_partition`` makes), with ``murmur2_many`` here; under any other, or
    for a record without a key, the producer's own ``_partition``.
    """
    partition = kafka._partition
    if type(getattr(kafka, "_partitioner", None)) is not DefaultPartitioner or not hasattr(kafka, "_metadata"):
        return lambda keys, values: [partition(topic, None, None, None, key, value)
                                     for key, value in zip(keys, values)]
    everyone = list(kafka._metadata.partitions_for_topic(topic))  # as ``_partition`` lists them
    count = len(everyone)

    def choose(keys: Sequence[bytes | None], values: Sequence[bytes]) -> list[int]:
        hashes = murmur2_many([key for key in keys if key is not None])
        chosen = [everyone[(h & 0x7FFFFFFF) % count] for h in hashes]
        if len(chosen) == len(keys):
            return chosen
        keyed = iter(chosen)
        return [next(keyed) if key is not None else partition(topic, None, None, None, key, value)
                for key, value in zip(keys, values)]
    return choose


def decision_record(decision: Decision, source: Source | Any) -> bytes:
    """The JSON of a decision record: ``Decision.to_json`` with the event's ``source`` (topic, partition, offset),
    byte for byte as ``orjson`` writes that dict.

    A decision with one match and nothing else to list (commands, reports, rule errors) -- nearly every decision
    record, the behaviour rules matching far more often than an identifier is listed -- is written from the
    parts that its rule, entry, outcomes and policy version fix, encoded once (``_one_match_parts``), around the
    parts that change with each event. Any other goes through ``to_json``.
    """
    matches = decision.matches
    if len(matches) != 1 or decision.commands or decision.reports or decision.rule_errors:
        body = decision.to_json()
        body["source"] = {"topic": source.topic, "partition": source.partition, "offset": source.offset}
        return orjson.dumps(body)
    match = matches[0]
    parts = _one_match_parts(decision.stream, decision.outcome, decision.shadow_outcome, decision.policy_version,
                             match.rule, match.version, match.mode, match.code, match.outcome, match.status,
                             match.source, match.case_ref, source.topic)
    reason = orjson.dumps(match.reason)
    return b"".join((b'{"event_id":', orjson.dumps(decision.event_id), parts[0],
                     orjson.dumps(iso(decision.decided_at)), parts[1], reason, b',"identifier":',
                     orjson.dumps(match.identifier), parts[2], reason, parts[3],
                     str(source.partition).encode(), b',"offset":', str(source.offset).encode(), b"}}"))


@lru_cache(maxsize=4096)
def _one_match_parts(stream: str, outcome: str, shadow_outcome: str, policy_version: str, rule: str, version: int,
                     mode: str, code: str, match_outcome: int, status: str, source: str, case_ref: str,
                     topic: str) -> tuple[bytes, bytes, bytes, bytes]:
    """The fixed parts of a one-match decision record, in the order and spelling of ``Decision.to_json``."""
    dumps = orjson.dumps
    enforce = mode == "enforce"
    return (
        b',"stream":' + dumps(stream) + b',"outcome":' + dumps(outcome) + b',"shadow_outcome":'
        + dumps(shadow_outcome) + b',"decided_at":',
        b',"policy_version":' + dumps(policy_version) + b',"rules":' + dumps([f"{rule}@{version}:{mode}"])
        + b',"matches":[{"rule":' + dumps(rule) + b',"version":' + dumps(version) + b',"mode":' + dumps(mode)
        + b',"code":' + dumps(code) + b',"outcome":' + dumps(OUTCOME_NAMES.get(match_outcome, str(match_outcome)))
        + b',"reason":',
        b',"status":' + dumps(status) + b',"source":' + dumps(source) + b',"case_ref":' + dumps(case_ref)
        + (b'}],"reasons":[' if enforce else b'}],"reasons":[],"shadow_reasons":['),
        (b'],"shadow_reasons":[]' if enforce else b"]") + b',"command_ids":[],"report_ids":[],"rule_errors":[]'
        + b',"source":{"topic":' + dumps(topic) + b',"partition":',
    )


def deadletter_body(source: Source, raw: bytes, rejection: Rejection, dead_at: str, keep: int) -> dict[str, Any]:
    """The dead letter of ``raw``: the reason, where it came from, and the first ``keep`` bytes with the whole's
    size and SHA-256 (so a record of any size gives a dead letter that fits).

    No personal data is kept in clear: every phone or account number in the bytes kept, the key and the
    message is masked to its last four digits (``sekat.redaction.mask_identifiers``); the size and SHA-256
    are of the record as it was, so an operator holding the record can still match it."""
    key = mask_identifiers(source.key or b"")
    return {
        "reason": rejection.reason,
        "message": redact(rejection.message[:DEADLETTER_TEXT]),
        "field": rejection.field[:DEADLETTER_TEXT],
        "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset,
                   "timestamp_ms": source.timestamp_ms},
        "dead_at": dead_at,
        "original_b64": base64.b64encode(mask_identifiers(raw[:keep])).decode("ascii"),
        "original_size": len(raw),
        "original_sha256": hashlib.sha256(raw).hexdigest(),
        "original_truncated": len(raw) > keep,
        "original_key_b64": base64.b64encode(key[:DEADLETTER_KEY_BYTES]).decode("ascii") if source.key else None,
        "original_key_size": len(source.key or b""),
    }


def stripped_deadletter(value: bytes, error: str) -> bytes:
    """A refused dead letter without the original bytes (the size and hash stay), saying why."""
    body = orjson.loads(value)
    body["original_b64"] = ""
    body["original_key_b64"] = None
    body["original_truncated"] = True
    body["message"] = f"{body['message']} [original bytes left out: the dead letter was refused ({error})]"
    return orjson.dumps(body)


def bounded_command(body: dict[str, Any]) -> bytes:
    """A command's JSON, its reasons cut (each and in number) if it would be larger than ``COMMAND_MAX_BYTES``."""
    value = orjson.dumps(body)
    if len(value) <= COMMAND_MAX_BYTES:
        return value
    reasons = [str(r)[:COMMAND_REASON] for r in body.get("reasons", ())]
    kept = reasons[:COMMAND_REASONS]
    if len(reasons) > len(kept):
        kept.append(f"... {len(reasons) - len(kept)} more reason(s) left out")
    return orjson.dumps(body | {"reasons": kept})
