"""Session fixtures: a real Kafka broker and Redis server, started once, stopped by PID."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import STARTED_APPS, Stack, start_stack


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
def logs_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The workers' and servers' logs; kept when a test failed (for the post-mortem), removed otherwise."""
    path = Path(tempfile.mkdtemp(prefix="sekat-logs-"))
    yield path
    if request.session.testsfailed == 0:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _worker_data_dirs() -> Iterator[None]:
    """Faust's data directory of every worker the session started, removed at its end (they are empty)."""
    yield
    for app_id in STARTED_APPS:
        shutil.rmtree(Path(tempfile.gettempdir()) / f"{app_id}-data", ignore_errors=True)
