"""Session fixtures: a real Kafka broker and Redis server, started once, stopped by PID."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Stack, start_stack


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    base = Path(tempfile.mkdtemp(prefix="sekat-test-"))
    s = start_stack(base)
    try:
        yield s
    finally:
        s.kafka.stop()
        s.redis.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def logs_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sekat-logs-"))
    yield path
