"""Fixtures for fault tests: a Kafka broker of the test's own, which it may stop (the session's never is)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sekat.localstack.kafka_servers import KafkaBroker
from sekat.localstack.processes import free_port


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path / "kafka", free_port(), free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
