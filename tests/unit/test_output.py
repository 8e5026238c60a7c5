"""A batch's output: after any failure, the next wait for acknowledgements hands every record over again;
a record Kafka refuses for good is stripped (a dead letter) or dropped, never retried forever, except a command.

The producer here stands in for the app's (``send`` returns a future the test settles); what is pinned is
the batch's bookkeeping between hand-over and acknowledgement, not Kafka.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import orjson
import pytest
from aiokafka.errors import (CorruptRecordException, KafkaConnectionError, MessageSizeTooLargeError,
                             NotLeaderForPartitionError, RecordListTooLargeError, RecordTooLargeError,
                             RequestTimedOutError, TopicAuthorizationFailedError)
from sekat.streams.output import COMMAND_MAX_BYTES, OutputBatch, OutputTopics, bounded_command
from sekat.streams.retry import permanent, retry

from sekat.errors import CommandRefused
from sekat.records import Rejection, Source


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
