"""A batch's output: after any failure, the next wait for acknowledgements hands every record over again;
a record Kafka refuses for good is stripped (a dead letter) or dropped, never retried forever, except a command.

The producer here stands in for the app's (``send`` returns a future the test settles); what is pinned is
the batch's bookkeeping between hand-over and acknowledgement, not Kafka. Under Faust's aiokafka producer the
output goes as record batches: a stand-in takes batches and single messages, and one test hands the output to
aiokafka's own producer, not started, with a stand-in for its sender.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import uuid
from collections import deque
from collections.abc import Awaitable
from datetime import timezone
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (CorruptRecordException, KafkaConnectionError, KafkaTimeoutError,
                             MessageSizeTooLargeError, NotLeaderForPartitionError, RecordListTooLargeError,
                             RecordTooLargeError, RequestTimedOutError, TopicAuthorizationFailedError)
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.protocol.metadata import MetadataResponse_v0
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.structs import TopicPartition
from sekat.streams.output import COMMAND_MAX_BYTES, OutputBatch, OutputTopics, bounded_command
from sekat.murmur import murmur2 as output_murmur2
from sekat.murmur import murmur2_many
from sekat.streams.output import decision_record
from sekat.streams.retry import permanent, retry

from sekat.errors import CommandRefused
from sekat.records import Action, Command, Decision, Match, Rejection, Source


class FlakyProducer:
    def __init__(self, fail_send_at: set[int], fail_ack_at: set[int]) -> None:
        self.calls = 0
        self.fail_send_at, self.fail_ack_at = fail_send_at, fail_ack_at
        self.acked: list[bytes] = []

    async def send(self, topic: str, key: bytes, value: bytes, *_: Any) -> asyncio.Future[None]:
        self.calls += 1
        if self.calls in self.fail_send_at:
            raise ConnectionError("broker went away mid-hand-over")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.calls in self.fail_ack_at:
            fut.set_exception(ConnectionError("not acknowledged"))
        else:
            fut.set_result(None)
            self.acked.append(value)
        return fut


class App:
    def __init__(self, producer: FlakyProducer) -> None:
        self.producer = producer

    async def maybe_start_producer(self) -> FlakyProducer:
        return self.producer


class Topic:
    def __init__(self, app: App) -> None:
        self.app = app

    def get_topic_name(self) -> str:
        return "sekat.decisions"


def test_a_hand_over_that_failed_part_way_is_handed_over_whole_on_the_next_wait() -> None:
    async def scenario() -> FlakyProducer:
        # send 1, 2: handed; 1 is not acknowledged. The re-hand-over fails at send 3 (its first record).
        # The wait after that must hand over both records again (sends 4 and 5), not wait on nothing.
        producer = FlakyProducer(fail_send_at={3}, fail_ack_at={1})
        topic = Topic(App(producer))
        out = OutputBatch(OutputTopics(*(topic,) * 5))  # type: ignore[arg-type]
        out.record(topic, b"k", b"first")  # type: ignore[arg-type]
        out.record(topic, b"k", b"second")  # type: ignore[arg-type]
        await out.produce()
        with pytest.raises(ConnectionError, match="not acknowledged"):
            await out.acked()
        with pytest.raises(ConnectionError, match="mid-hand-over"):
            await out.acked()
        await out.acked()
        return producer

    producer = asyncio.run(scenario())
    assert producer.calls == 5
    assert producer.acked[-2:] == [b"first", b"second"]


# -- records Kafka refuses for good ---------------------------------------------------------------------------
class RefusingProducer:
    """Refuses (as Kafka would, for good) every value larger than ``limit``: at hand-over, or in its future."""

    def __init__(self, limit: int, at_ack: bool = False, error: type[Exception] = MessageSizeTooLargeError) -> None:
        self.limit, self.at_ack, self.error = limit, at_ack, error
        self.calls = 0
        self.acked: list[tuple[str, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes, *_: Any) -> asyncio.Future[None]:
        self.calls += 1
        if len(value) > self.limit and not self.at_ack:
            raise self.error("larger than max_request_size")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if len(value) > self.limit:
            fut.set_exception(self.error("refused by the broker"))
        else:
            fut.set_result(None)
            self.acked.append((topic, value))
        return fut


class NamedTopic(Topic):
    def __init__(self, app: App, name: str) -> None:
        super().__init__(app)
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


def batch_for(producer: Any, refused: list[tuple[str, str]], keep: int = 1024) -> tuple[OutputBatch, NamedTopic]:
    app = App(producer)
    topics = OutputTopics(*(NamedTopic(app, n) for n in ("freeze", "block", "decisions", "deadletter", "reports")),
                          deadletter_original_bytes=keep,  # type: ignore[arg-type]
                          on_refused=lambda kind, action: refused.append((kind, action)))
    return OutputBatch(topics), topics.decisions  # type: ignore[return-value]


SOURCE = Source("telco.calls", 3, 41, 1795860900123, b"call-key")


def test_a_dead_letter_of_a_huge_record_carries_its_size_hash_and_a_bounded_prefix() -> None:
    raw = b'{"event_id": "c-1", "padding": "' + b"x" * 900_000 + b'"}'
    out = OutputBatch(OutputTopics(*(None,) * 5, deadletter_original_bytes=65536))  # type: ignore[arg-type]
    out.deadletter(SOURCE, raw, Rejection("too_large", "event is 900034 bytes, limit is 65536"), "2026-11-28T10:15:00Z")
    topic, key, value = out.messages[0]
    body = orjson.loads(value)
    assert key == b"telco.calls"
    assert len(value) < 100_000  # far below the producer's 1 MB
    assert base64.b64decode(body["original_b64"]) == raw[:65536]
    assert body["original_size"] == len(raw) and body["original_truncated"] is True
    assert body["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert body["source"] == {"topic": "telco.calls", "partition": 3, "offset": 41, "timestamp_ms": 1795860900123}
    assert base64.b64decode(body["original_key_b64"]) == b"call-key" and body["original_key_size"] == 8


def test_a_small_record_is_carried_whole_and_a_huge_key_is_cut() -> None:
    out = OutputBatch(OutputTopics(*(None,) * 5))  # type: ignore[arg-type]
    source = Source("bank.transfers", 0, 1, None, b"k" * 5000)
    out.deadletter(source, b"{}", Rejection("missing_field", "event_id: is required", "event_id"), "now")
    body = orjson.loads(out.messages[0][2])
    assert base64.b64decode(body["original_b64"]) == b"{}" and body["original_truncated"] is False
    assert len(base64.b64decode(body["original_key_b64"])) == 1024 and body["original_key_size"] == 5000


@pytest.mark.parametrize("exc, expected", [
    (MessageSizeTooLargeError(), True), (RecordTooLargeError(), True), (RecordListTooLargeError(), True),
    (TopicAuthorizationFailedError(), True), (CorruptRecordException(), True),
    (KafkaConnectionError(), False), (RequestTimedOutError(), False), (NotLeaderForPartitionError(), False),
    (ConnectionError(), False), (CommandRefused("x"), False),
])
def test_errors_are_classified_permanent_or_transient(exc: Exception, expected: bool) -> None:
    assert permanent(exc) is expected


def test_a_refusal_wrapped_by_fausts_producer_is_still_permanent() -> None:
    """Faust's ``Producer.send`` re-raises aiokafka's hand-over refusal (a record over ``max_request_size``) as a
    ``ProducerSendError`` from it: retried as transient, that record would hold its partition for good."""
    from faust.exceptions import ProducerSendError

    def wrapped(cause: Exception) -> ProducerSendError:
        try:
            raise ProducerSendError(f"Error while sending: {cause!r}") from cause
        except ProducerSendError as exc:
            return exc
    assert permanent(wrapped(MessageSizeTooLargeError()))
    assert not permanent(wrapped(KafkaConnectionError()))


def test_retry_gives_up_at_once_on_a_permanent_error_and_retries_a_transient_one() -> None:
    tries: list[str] = []

    async def too_large() -> None:
        tries.append("too large")
        raise MessageSizeTooLargeError("larger than max_request_size")

    async def flaky() -> str:
        tries.append("flaky")
        if tries.count("flaky") < 3:
            raise KafkaConnectionError("broker away")
        return "sent"

    errors: list[int] = []
    with pytest.raises(MessageSizeTooLargeError):
        asyncio.run(retry("sending", too_large, lambda: errors.append(1)))
    assert tries == ["too large"] and errors == [1]
    assert asyncio.run(retry("sending", flaky, lambda: errors.append(1))) == "sent"
    assert tries.count("flaky") == 3


@pytest.mark.parametrize("at_ack", [False, True], ids=["refused at hand-over", "refused by the broker"])
def test_a_refused_dead_letter_is_sent_without_its_bytes_and_a_refused_decision_dropped(at_ack: bool) -> None:
    producer = RefusingProducer(limit=600, at_ack=at_ack)
    refused: list[tuple[str, str]] = []
    out, decisions = batch_for(producer, refused, keep=4096)
    out.record(decisions, b"a", b"small before")
    out.deadletter(SOURCE, b"y" * 3000, Rejection("not_json", "value is not UTF-8 JSON"), "now")
    out._add("decision", decisions, b"d", b"z" * 5000)
    out.record(decisions, b"b", b"small after")
    asyncio.run(out.send())
    sent = [(topic, value) for topic, value in producer.acked]
    assert ("decisions", b"small before") in sent and ("decisions", b"small after") in sent
    (dead,) = [orjson.loads(value) for topic, value in sent if topic == "deadletter"]
    assert dead["original_b64"] == "" and dead["original_truncated"] is True and dead["original_size"] == 3000
    assert dead["original_sha256"] == hashlib.sha256(b"y" * 3000).hexdigest()
    assert "refused (MessageSizeTooLargeError)" in dead["message"]
    assert not any(value == b"z" * 5000 for _, value in sent)
    assert sorted(refused) == [("deadletter", "stripped"), ("decision", "dropped")]


def test_a_dead_letter_refused_even_without_its_bytes_is_dropped_and_the_batch_goes_on() -> None:
    producer = RefusingProducer(limit=10, at_ack=True, error=TopicAuthorizationFailedError)
    refused: list[tuple[str, str]] = []
    out, decisions = batch_for(producer, refused)
    out.record(decisions, b"a", b"ok")
    out.deadletter(SOURCE, b"bad", Rejection("not_json", "value is not UTF-8 JSON"), "now")
    asyncio.run(out.send())
    assert producer.acked == [("decisions", b"ok")]
    assert refused == [("deadletter", "stripped"), ("deadletter", "dropped")]


def test_a_command_refused_for_good_is_never_dropped_the_batch_is_re_sent() -> None:
    producer = RefusingProducer(limit=10)
    refused: list[tuple[str, str]] = []
    out, _ = batch_for(producer, refused)
    out._add("command", out._topics.block, b"CELCOM", b'{"action": "BLOCK_CALL"}')

    async def scenario() -> None:
        with pytest.raises(CommandRefused, match="block"):
            await retry("sending output", out.produce, lambda: None, attempts=3)

    asyncio.run(scenario())
    assert producer.calls == 3 and refused == [("command", "retried")] * 3


def test_a_command_is_bounded_by_cutting_its_reasons() -> None:
    body = {"command_id": "c", "action": "BLOCK_CALL", "reasons": ["r" * 2000] * 40}
    value = bounded_command(body)
    assert len(value) <= COMMAND_MAX_BYTES
    reasons = orjson.loads(value)["reasons"]
    assert len(reasons) == 17 and reasons[-1] == "... 24 more reason(s) left out"
    small = {"command_id": "c", "reasons": ["caller confirmed scam caller (PDRM KL/1)"]}
    assert bounded_command(small) == orjson.dumps(small)


# -- record batches under Faust's aiokafka producer -------------------------------------------------------------
class Partitions:
    """aiokafka's cluster metadata as ``AIOKafkaProducer._partition`` reads it: ``count`` partitions a topic."""

    def __init__(self, count: int) -> None:
        self.count = count

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.count))

    available_partitions_for_topic = partitions_for_topic


class RecordBatch:
    """aiokafka's ``BatchBuilder`` as a hand-over fills it: ``append`` gives None once ``room`` records are in."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[tuple[bytes, bytes]] = []

    def append(self, *, timestamp: int | None, key: bytes, value: bytes, headers: Any = None) -> object | None:
        if len(self.records) >= self.room:
            return None
        self.records.append((key, value))
        return object()


class BatchingKafka:
    """The aiokafka producer under Faust's: record batches (``create_batch``/``send_batch``) and single messages
    (``send``), each record logged in the order it reached the producer, with its partition.

    As a broker would, it refuses (with ``error``, in the future) a batch or a message holding a value larger
    than ``limit``; ``send`` refuses one larger than ``_max_request_size`` at once; the first ``timeouts`` batches
    are not acknowledged (a transient error) and the first ``refused_sends`` ``send_batch`` calls raise.
    """

    _partition = AIOKafkaProducer._partition  # aiokafka's own choice of partition, over ``_metadata``

    def __init__(self, partitions: int = 4, room: int = 3, limit: int = 1 << 20,
                 error: type[Exception] = MessageSizeTooLargeError, timeouts: int = 0, refused_sends: int = 0) -> None:
        self._metadata = Partitions(partitions)
        self._partitioner = DefaultPartitioner()
        self._max_request_size = 1 << 20
        self._key_serializer = self._value_serializer = None
        self.room, self.limit, self.error = room, limit, error
        self.timeouts, self.refused_sends = timeouts, refused_sends
        self.batches: list[tuple[str, int, list[tuple[bytes, bytes]]]] = []
        self.singles: list[tuple[str, bytes]] = []
        self.handed: list[tuple[str, int, bytes]] = []  # (topic, partition, value) in the order they reached it
        self.acked: list[tuple[str, bytes]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return self._metadata.partitions_for_topic(topic)

    def create_batch(self) -> RecordBatch:
        return RecordBatch(self.room)

    async def send_batch(self, batch: RecordBatch, topic: str, *, partition: int) -> asyncio.Future[None]:
        if self.refused_sends:
            self.refused_sends -= 1
            raise KafkaTimeoutError("no room in the accumulator")
        self.batches.append((topic, partition, batch.records))
        self.handed += [(topic, partition, value) for _, value in batch.records]
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.timeouts:
            self.timeouts -= 1
            fut.set_exception(RequestTimedOutError("not acknowledged"))
        elif any(len(value) > self.limit for _, value in batch.records):
            fut.set_exception(self.error("a record of the batch is larger than max.message.bytes"))
        else:
            fut.set_result(None)
            self.acked += [(topic, value) for _, value in batch.records]
        return fut

    async def send(self, topic: str, value: bytes, key: bytes, *_: Any, **__: Any) -> asyncio.Future[None]:
        if len(value) > self._max_request_size:
            raise MessageSizeTooLargeError("larger than max_request_size")
        self.singles.append((topic, value))
        self.handed.append((topic, self._partition(topic, None, None, None, key, value), value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if len(value) > self.limit:
            fut.set_exception(self.error("larger than max.message.bytes"))
        else:
            fut.set_result(None)
            self.acked.append((topic, value))
        return fut


class FaustProducer:
    """Faust's aiokafka driver as the batch sees it: ``send`` one message, and the aiokafka producer under it."""

    def __init__(self, kafka: Any) -> None:
        self.kafka = kafka
        self.sends = 0

    def _ensure_producer(self) -> Any:
        return self.kafka

    async def send(self, topic: str, key: bytes, value: bytes, *_: Any) -> Awaitable[None]:
        self.sends += 1
        fut: Awaitable[None] = await self.kafka.send(topic, value, key=key)
        return fut


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key``: murmur2, made positive, modulo the count."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_the_output_goes_as_record_batches_each_in_the_partition_send_would_choose_and_in_order() -> None:
    kafka = BatchingKafka(partitions=4, room=3)
    refused: list[tuple[str, str]] = []
    out, decisions = batch_for(FaustProducer(kafka), refused)
    for n in range(20):
        out.record(decisions, f"e-{n}".encode(), f"decision {n}".encode())
        if n % 5 == 0:
            out._add("command", out._topics.block, b"CELCOM", f"command {n}".encode())
    asyncio.run(out.send())

    assert kafka.singles == [] and refused == []
    assert sorted(kafka.acked) == sorted((topic.get_topic_name(), value) for topic, _, value in out.messages)
    keys = {value: key for _, key, value in out.messages}
    for topic, partition, records in kafka.batches:
        assert 1 <= len(records) <= 3
        assert all(partition == kafka_partition(key, 4) == kafka._partition(topic, None, None, None, key, None)
                   for key, _ in records)
        assert all(keys[value] == key for key, value in records)
    by_partition: dict[tuple[str, int], list[bytes]] = {}
    for topic, key, value in out.messages:
        by_partition.setdefault((topic.get_topic_name(), kafka_partition(key, 4)), []).append(value)
    for (topic, partition), values in by_partition.items():
        assert [v for t, p, v in kafka.handed if (t, p) == (topic, partition)] == values
        assert sum(1 for t, p, _ in kafka.batches if (t, p) == (topic, partition)) == -(-len(values) // 3)
    # Kafka's own (Java) partitioner puts "foobar" (murmur2 -790332482) on partition 2 of 4.
    assert kafka_partition(b"foobar", 4) == 2


def test_a_batch_refused_for_good_is_handed_one_message_at_a_time_and_a_refused_command_still_raises() -> None:
    kafka = BatchingKafka(partitions=1, room=10, limit=600)
    refused: list[tuple[str, str]] = []
    out, decisions = batch_for(FaustProducer(kafka), refused, keep=4096)
    out.record(decisions, b"a", b"small before")
    out.deadletter(SOURCE, b"y" * 3000, Rejection("not_json", "value is not UTF-8 JSON"), "now")
    out._add("decision", decisions, b"d", b"z" * 5000)
    out.record(decisions, b"b", b"small after")
    asyncio.run(out.send())
    assert [topic for topic, _, _ in kafka.batches] == ["decisions", "deadletter"]
    assert ("decisions", b"small before") in kafka.acked and ("decisions", b"small after") in kafka.acked
    (dead,) = [orjson.loads(value) for topic, value in kafka.acked if topic == "deadletter"]
    assert dead["original_b64"] == "" and dead["original_size"] == 3000
    assert not any(value == b"z" * 5000 for _, value in kafka.acked)
    assert sorted(refused) == [("deadletter", "stripped"), ("decision", "dropped")]

    kafka = BatchingKafka(partitions=1, room=10, limit=10)
    refused = []
    out, decisions = batch_for(FaustProducer(kafka), refused)
    out.record(decisions, b"a", b"ok")
    out._add("command", out._topics.block, b"CELCOM", b'{"action": "BLOCK_CALL"}')

    async def scenario() -> None:
        await out.produce()
        with pytest.raises(CommandRefused, match="block"):
            await retry("sending output", out.acked, lambda: None, attempts=3)

    asyncio.run(scenario())
    assert refused == [("command", "retried")] * 3
    assert len([b for b in kafka.batches if b[0] == "block"]) == 3  # each attempt hands the whole output again
    assert kafka.singles.count(("block", b'{"action": "BLOCK_CALL"}')) == 3
    assert kafka.acked.count(("decisions", b"ok")) == 3


def test_a_batch_not_acknowledged_fails_the_wait_and_the_next_wait_hands_all_again_as_batches() -> None:
    kafka = BatchingKafka(partitions=2, room=10, timeouts=1)
    out, decisions = batch_for(FaustProducer(kafka), [])
    for n in range(6):
        out.record(decisions, f"e-{n}".encode(), f"decision {n}".encode())

    async def scenario() -> None:
        await out.produce()
        with pytest.raises(RequestTimedOutError):
            await out.acked()
        await out.acked()

    asyncio.run(scenario())
    assert kafka.singles == [] and len(kafka.batches) == 4
    assert sorted(kafka.acked[-6:]) == sorted(("decisions", f"decision {n}".encode()) for n in range(6))


def test_a_batch_send_batch_refuses_is_handed_one_message_at_a_time_in_its_place() -> None:
    kafka = BatchingKafka(partitions=1, room=2, refused_sends=1)
    out, decisions = batch_for(FaustProducer(kafka), [])
    values = [f"decision {n}".encode() for n in range(5)]
    for n, value in enumerate(values):
        out.record(decisions, f"e-{n}".encode(), value)
    asyncio.run(out.send())
    assert kafka.singles == [("decisions", values[0]), ("decisions", values[1])]
    assert [v for _, _, v in kafka.handed] == values and [v for _, v in kafka.acked] == values


def test_a_record_near_max_request_size_goes_alone_and_keeps_its_place_in_its_partition() -> None:
    kafka = BatchingKafka(partitions=1, room=10)
    kafka._max_request_size = 1000
    refused: list[tuple[str, str]] = []
    out, decisions = batch_for(FaustProducer(kafka), refused)
    values = [b"first", b"x" * 900, b"second", b"y" * 2000, b"third"]
    for n, value in enumerate(values):
        out.record(decisions, f"e-{n}".encode(), value)
    asyncio.run(out.send())
    assert [records for _, _, records in kafka.batches] == [[(b"e-0", b"first")], [(b"e-2", b"second")],
                                                            [(b"e-4", b"third")]]
    assert [v for _, _, v in kafka.handed] == [b"first", b"x" * 900, b"second", b"third"]
    assert refused == [("record", "dropped")]  # over max_request_size: refused by ``send``, as before


def test_a_partition_the_producer_holds_a_batch_for_goes_one_message_at_a_time() -> None:
    kafka = BatchingKafka(partitions=4, room=2)
    held = kafka_partition(b"e-0", 4)
    kafka._message_accumulator = SimpleNamespace(_batches={TopicPartition("decisions", held): deque([object()])})
    out, decisions = batch_for(FaustProducer(kafka), [])
    for n in range(24):
        out.record(decisions, f"e-{n}".encode(), f"decision {n}".encode())
    asyncio.run(out.send())
    alone = [value for _, key, value in out.messages if kafka_partition(key, 4) == held]
    assert len(alone) > kafka.room and [value for _, value in kafka.singles] == alone
    assert all(partition != held for _, partition, _ in kafka.batches) and kafka.batches


@pytest.mark.parametrize("kafka", [SimpleNamespace(send=None), BatchingKafka(partitions=2)],
                         ids=["no batch API", "a key serializer"])
def test_a_producer_the_batch_path_does_not_apply_to_takes_one_send_a_message(kafka: Any) -> None:
    if isinstance(kafka, BatchingKafka):
        kafka._key_serializer = bytes
        producer: Any = FaustProducer(kafka)
    else:
        producer = RefusingProducer(limit=1 << 20)
        producer._ensure_producer = lambda: kafka
    out, decisions = batch_for(producer, [])
    out.record(decisions, b"a", b"one")
    out.record(decisions, b"b", b"two")
    asyncio.run(out.send())
    acked = kafka.acked if isinstance(kafka, BatchingKafka) else producer.acked
    assert acked == [("decisions", b"one"), ("decisions", b"two")]
    assert not getattr(kafka, "batches", None)


class Broker:
    """aiokafka's sender and Kafka behind it, for a producer that is not started: takes every batch the producer
    holds, logs its records as (topic, partition, key, value) and acknowledges it."""

    def __init__(self, kafka: AIOKafkaProducer) -> None:
        self.accumulator = kafka._message_accumulator
        self.log: list[tuple[str, int, bytes, bytes]] = []
        self.batches: list[tuple[str, int]] = []

    async def run(self) -> None:
        while True:
            await self.accumulator.waiter()
            nodes, _ = self.accumulator.drain_by_nodes(ignore_nodes=set())
            for batches in nodes.values():
                for tp, batch in batches.items():
                    self.batches.append((tp.topic, tp.partition))
                    self.log += [(tp.topic, tp.partition, r.key, r.value)
                                 for r in DefaultRecordBatch(batch.get_data_buffer())]
                    batch.done(base_offset=0)
            await asyncio.sleep(0)


def test_aiokafkas_own_producer_gets_the_batches_in_sends_partitions_and_order_and_adds_to_a_batch_it_holds() -> None:
    async def scenario() -> tuple[Broker, list[tuple[str, int, bytes, bytes]], list[int]]:
        kafka = AIOKafkaProducer(bootstrap_servers="localhost:1", max_batch_size=400)
        kafka.client.cluster.update_metadata(MetadataResponse_v0([(0, "localhost", 1)], [
            (0, name, [(0, p, 0, [0], [0]) for p in range(4)]) for name in ("decisions", "block")]))
        producer, broker, runner = FaustProducer(kafka), Broker(kafka), None
        expected: list[tuple[str, int, bytes, bytes]] = []
        try:
            # Nothing is sent yet: the first output's batch stays with the producer, and the second output's
            # record for that partition goes into it (``send``) instead of waiting for it to be sent.
            first, decisions = batch_for(producer, [])
            first.record(decisions, b"e-0", b"held")
            await first.produce()
            second, decisions = batch_for(producer, [])
            for n in range(1, 17):
                second.record(decisions, f"e-{n}".encode(), f"second {n}".encode())
            await asyncio.wait_for(second.produce(), 5)
            held = TopicPartition("decisions", kafka._partition("decisions", None, None, None, b"e-0", None))
            sends = [producer.sends, len(kafka._message_accumulator._batches[held])]
            runner = asyncio.ensure_future(broker.run())
            await first.acked()
            await second.acked()
            # Many records a partition: several batches each, one after the other.
            third, decisions = batch_for(producer, [])
            for n in range(60):
                third.record(decisions, f"t-{n}".encode(), f"third {n} ".encode() * 4)
                if n % 20 == 0:
                    third._add("command", third._topics.block, b"CELCOM", f"command {n}".encode())
            producer.sends, taken = 0, len(broker.batches)
            await asyncio.wait_for(third.send(), 5)
            sends += [producer.sends, max(broker.batches[taken:].count(tp) for tp in broker.batches[taken:])]
            for out in (first, second, third):
                expected += [(topic.get_topic_name(), kafka._partition(topic.get_topic_name(), None, None, None, key,
                                                                       None), key, value)
                             for topic, key, value in out.messages]
        finally:
            if runner is not None:
                runner.cancel()
            await kafka.stop()
        return broker, expected, sends

    broker, expected, sends = asyncio.run(scenario())
    held_sends, held_batches, third_sends, third_batches = sends
    assert held_sends == 3 and held_batches == 1  # the held partition's three records of the second output
    assert third_sends == 0 and third_batches > 2
    assert sorted(broker.log) == sorted(expected)
    for tp in {(topic, partition) for topic, partition, _, _ in expected}:
        assert [r for r in broker.log if r[:2] == tp] == [r for r in expected if r[:2] == tp]
    assert [kafka_partition(key, 4) for _, _, key, _ in expected] == [partition for _, partition, _, _ in expected]


def test_murmur2_is_kafkas_and_aiokafkas() -> None:
    # Kafka's own (Java) test vectors, as signed 32-bit ints; then aiokafka's murmur2 on keys of every length.
    java = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
            b"a-little-bit-longer-string": -1486304829, b"abc": 479470107,
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}
    assert {key: output_murmur2(key) - (1 << 32) * (output_murmur2(key) >> 31) for key in java} == java
    rnd = random.Random(7)
    keys = [b"", b"\xff" * 7, bytearray(b"CELCOM"), *(rnd.randbytes(rnd.randrange(0, 130)) for _ in range(20_000))]
    assert [output_murmur2(key) for key in keys] == [murmur2(key) for key in keys]


def test_murmur2_of_a_batch_of_keys_is_each_keys_murmur2() -> None:
    # Keys of every length 0-40, many of some lengths (hashed together) and few of others (one at a time), mixed.
    rnd = random.Random(11)
    keys = [rnd.randbytes(rnd.choice([0, 1, 2, 3, 5, 36, 36, 36, 17, 40, rnd.randrange(0, 41)])) for _ in range(5_000)]
    keys += [str(uuid.UUID(int=rnd.getrandbits(128))).encode() for _ in range(1_000)] + [b"\xff" * 36] * 20
    rnd.shuffle(keys)
    assert murmur2_many(keys) == [murmur2(key) for key in keys]
    assert murmur2_many([]) == [] and murmur2_many([b"foobar"]) == [murmur2(b"foobar")]


def test_a_producer_with_another_partitioner_places_each_record_with_it() -> None:
    kafka = BatchingKafka(partitions=4, room=3)
    kafka._partitioner = lambda key, everyone, available: everyone[len(key) % len(everyone)]
    out, decisions = batch_for(FaustProducer(kafka), [])
    for n in (1, 22, 333, 4444, 55555):
        out.record(decisions, str(n).encode(), b"v")
    asyncio.run(out.send())
    assert sorted((partition, [key for key, _ in records]) for _, partition, records in kafka.batches) == [
        (0, [b"4444"]), (1, [b"1", b"55555"]), (2, [b"22"]), (3, [b"333"])]


# -- decision records --------------------------------------------------------------------------------------------
_ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_MATCH = st.builds(Match, rule=st.one_of(st.sampled_from(["mule_inflow", "call_burst"]), _ANY_TEXT),
                   outcome=st.integers(-1, 5), reason=_ANY_TEXT, identifier=_ANY_TEXT, status=_ANY_TEXT,
                   source=_ANY_TEXT, case_ref=_ANY_TEXT, version=st.integers(0, 2**40),
                   mode=st.one_of(st.sampled_from(["enforce", "shadow"]), _ANY_TEXT), code=_ANY_TEXT)
_AT = st.datetimes(timezones=st.just(timezone.utc))
_COMMAND = st.builds(Command, action=st.sampled_from(list(Action)), institution=_ANY_TEXT, target=_ANY_TEXT,
                     event_id=_ANY_TEXT, rule=_ANY_TEXT, reasons=st.tuples(_ANY_TEXT), issued_at=_AT)
_DECISION = st.builds(Decision, event_id=_ANY_TEXT, stream=_ANY_TEXT, outcome=_ANY_TEXT, decided_at=_AT,
                      matches=st.lists(_MATCH, max_size=3).map(tuple),
                      commands=st.one_of(st.just(()), st.lists(_COMMAND, max_size=2).map(tuple)),
                      shadow_outcome=_ANY_TEXT, policy_version=_ANY_TEXT,
                      rule_errors=st.one_of(st.just(()), st.lists(_ANY_TEXT, max_size=2).map(tuple)))


@settings(max_examples=500, deadline=None)
@given(decision=_DECISION, topic=_ANY_TEXT, partition=st.integers(0, 2**31 - 1), offset=st.integers(0, 2**63 - 1))
def test_a_decision_record_is_its_to_json_with_its_source_byte_for_byte(decision: Decision, topic: str,
                                                                        partition: int, offset: int) -> None:
    source = Source(topic, partition, offset, 0, None)
    body = decision.to_json()
    body["source"] = {"topic": topic, "partition": partition, "offset": offset}
    assert decision_record(decision, source) == orjson.dumps(body)
    assert decision_record(decision, source) == decision_record(decision, source)  # and again, from the cache
