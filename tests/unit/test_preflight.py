"""Start-up check: a server that does not answer is not a configuration error (the clients retry)."""

import logging
import time

import pytest

from sekat.localstack.processes import free_port
from sekat.preflight import check
from sekat.settings import Settings


def test_nothing_listening_warns_and_lets_start_up_go_on(caplog: pytest.LogCaptureFixture) -> None:
    kafka, redis = free_port(), free_port()
    settings = Settings.from_environ({"SEKAT_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka}",
                                      "SEKAT_REDIS_URL": f"redis://sekat:pw-unused@127.0.0.1:{redis}/0"})
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="sekat.preflight"):
        check(settings, timeout=2.0)
    assert time.monotonic() - started < 5
    assert f"Kafka did not answer at 127.0.0.1:{kafka}" in caplog.text and "Redis did not answer" in caplog.text
    assert "pw-unused" not in caplog.text
