"""Log redaction: secrets and bare phone/account numbers never reach a log line, from any logger."""

import logging

import pytest

from sekat.redaction import install, redact, secrets_of
from sekat.settings import Settings


@pytest.mark.parametrize("text,expected", [
    ("caller +60123456789 blocked", "caller ********6789 blocked"),
    ("account 514012345678 at MBBEMYKL", "account ********5678 at MBBEMYKL"),
    ("key phone:60123456789", "key phone:*******6789"),
    ("report r-09017054b1034fbc on port 54199 offset 12", "report r-09017054b1034fbc on port 54199 offset 12"),
    ("at 2026-11-29 07:15:54.782", "at 2026-11-29 07:15:54.782"),
    ("version 1.2.3456789", "version 1.2.3456789"),
])
def test_bare_numbers_of_seven_digits_or_more_keep_their_last_four(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_secrets_from_settings_are_scrubbed_including_url_encoded_redis_passwords() -> None:
    s = Settings.from_environ({"SEKAT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SEKAT_KAFKA_SASL_USERNAME": "u",
                               "SEKAT_KAFKA_SASL_PASSWORD": "hunter2-kafka",
                               "SEKAT_REDIS_URL": "rediss://app:p%40ss-redis@host:6379/0"})
    secrets = secrets_of(s)
    assert {"hunter2-kafka", "p%40ss-redis", "p@ss-redis"} <= set(secrets)
    assert redact("SaslAuthenticateRequest(b'\\x00u\\x00hunter2-kafka') p@ss-redis", secrets) == \
        "SaslAuthenticateRequest(b'\\x00u\\x00***') ***"


def test_installed_redaction_covers_library_loggers_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    previous = logging.getLogRecordFactory()
    install(["s3cret-pw"], logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("some.library").warning("sending %s to %s", b"s3cret-pw", "+60123456789")
            try:
                raise ValueError("bad account 8001234567")
            except ValueError:
                logging.getLogger("faust.agent").exception("agent crashed")
        text = caplog.text
        assert "s3cret-pw" not in text and "+60123456789" not in text and "8001234567" not in text
        assert "********6789" in text and "******4567" in text and "***" in text
        assert logging.getLogger("aiokafka").level == logging.INFO  # its debug lines dump whole requests
    finally:
        logging.setLogRecordFactory(previous)
        logging.getLogger("aiokafka").setLevel(logging.NOTSET)
        logging.getLogger("kafka").setLevel(logging.NOTSET)
