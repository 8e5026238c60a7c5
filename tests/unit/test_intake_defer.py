"""The reports intake lets screening have the worker's thread first while screening is behind, and decodes a batch
without I/O (so the next batch is decoded while one is written)."""

from __future__ import annotations

import asyncio

import orjson
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from sekat.metrics.worker import WorkerMetrics
from sekat.streams.intake import Intake, defer_to
from sekat.streams.output import OutputTopics


def test_the_intake_waits_while_screening_is_behind_then_goes_on() -> None:
    answers = iter([True, True, True, False])
    waited = asyncio.run(defer_to(lambda: next(answers), step_s=0.001, max_s=1.0))
    assert waited == 3 * 0.001


def test_the_intake_does_not_wait_for_an_idle_screening_consumer() -> None:
    assert asyncio.run(defer_to(lambda: False, step_s=0.001, max_s=1.0)) == 0.0


def test_the_intake_goes_on_after_the_longest_wait_however_far_behind_screening_is() -> None:
    asks = []
    waited = asyncio.run(defer_to(lambda: asks.append(1) or True, step_s=0.01, max_s=0.05))
    assert abs(waited - 0.05) < 1e-9 and len(asks) == 5


def test_a_batch_is_decoded_without_io_into_runs_of_reports_between_its_tombstones() -> None:
    topics = OutputTopics(*"freeze block decisions deadletter reports".split())  # type: ignore[arg-type]  # nothing sent
    intake = Intake(None, topics, None, WorkerMetrics(CollectorRegistry()), 1_048_576, "MY",  # type: ignore[arg-type]
                    frozenset())
    report = {"report_id": "r-1", "reported_at": "2026-11-28T10:00:00Z", "kind": "phone", "value": "+60123456789",
              "status": "confirmed", "source": "PDRM"}

    def record(offset: int, value: bytes | None, key: bytes = b"phone:+60123456789") -> ConsumerRecord:
        return ConsumerRecord("sekat.reports", 0, offset, 0, 0, key, value, None, 0, len(value or b""), [])

    prepared = intake.prepare([record(0, orjson.dumps(report)), record(1, b"{not json"), record(2, None),
                               record(3, orjson.dumps({**report, "report_id": "r-2"}))])
    runs = prepared.steps
    assert [[r.report_id for r in runs[0]], runs[1], [r.report_id for r in runs[2]]] == \
        [["r-1"], "phone:+60123456789", ["r-2"]]
    assert prepared.out.kinds == ["deadletter"] and prepared.out.messages[0][0] == "deadletter"
