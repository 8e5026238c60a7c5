"""Log redaction: secrets and phone/account numbers never reach a log line, from any logger.

Each scenario goes through a real logging pipeline (``install``, a handler, a formatter) and asserts on the
formatted line, both ways: what is masked, and what must stay readable for the logs to be of use.
"""

import io
import logging
from collections.abc import Callable, Iterator

import pytest

from sekat.redaction import install, redact, secrets_of
from sekat.settings import Settings

Emit = Callable[..., str]


@pytest.fixture
def emit() -> Iterator[Emit]:
    """Log through ``install`` (with the given secrets) to a formatter; the formatted text."""
    previous = logging.getLogRecordFactory()
    logger = logging.getLogger("some.library")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)

    def log(message: str, *args: object, secrets: tuple[str, ...] = ()) -> str:
        install(secrets, logging.DEBUG)
        stream.seek(0)
        stream.truncate()
        logger.warning(message, *args)
        return stream.getvalue().removeprefix("WARNING some.library: ").removesuffix("\n")

    yield log
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logging.setLogRecordFactory(previous)
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)
    logging.getLogger("kafka").setLevel(logging.NOTSET)


@pytest.mark.parametrize("text,expected", [
    ("caller +60123456789 blocked", "caller ********6789 blocked"),
    ("account 514012345678 at MBBEMYKL", "account ********5678 at MBBEMYKL"),
    ("key phone:60123456789", "key phone:*******6789"),
    ("freeze CIBBMYKL:8001234567", "freeze CIBBMYKL:******4567"),
    # written with separators: masked as the digits alone, last four kept
    ("caller 012-345 6789 blocked", "caller ******6789 blocked"),
    ("caller 800-123-4567", "caller ******4567"),
    ("caller +60 12-345 6789", "caller ********6789"),
    ("caller (03) 7654 3210", "caller ******3210"),
    ("caller +1 (800) 123-4567", "caller ********4567"),
    ("payer 5140 1234-5678 at MBBEMYKL", "payer ********5678 at MBBEMYKL"),
    # IBANs, compact or in groups of four
    ("payee MY12ABCD0123456789012345", "payee ********************2345"),
    ("payee GB82 WEST 1234 5698 7654 32 paid", "payee ******************5432 paid"),
    # glued to a word by an underscore, or ending a sentence
    ("seen phone_60123456789", "seen phone_*******6789"),
    ("seen 60123456789_x", "seen *******6789_x"),
    ("blocked 0123456789.", "blocked ******6789."),
    # glued after a word of letters, the digits alone to its end: the word stays
    ("refund to acct5140123456 held", "refund to acct******3456 held"),
    ("seen MSISDN60123456789, CIBBMYKL8001234567", "seen MSISDN*******6789, CIBBMYKL******4567"),
    # after "port(s)", a run that is not all port-sized groups is still a number
    ("ports 9092 60123456789", "ports ***********6789"),
    # an appellant's e-mail address keeps only its domain; a phone number in the same line its last four digits
    ("appeal contact ali.bin-abu+x@mail.example.my, 012-345 6789", "appeal contact ***@mail.example.my, ******6789"),
])
def test_phone_and_account_numbers_keep_only_their_last_four_digits(emit: Emit, text: str, expected: str) -> None:
    assert emit(text) == expected


@pytest.mark.parametrize("text", [
    "at 2026-11-28T10:15:00.123Z",
    "at 2026-11-29 07:15:54,782 then 2026-11-29",
    "received 2026-11-28T10:15:00+08:00",
    "took 1234.5678 ms, 12345678ms, 1234567 ms, 0.1234567s",
    "Fetch offset 12345678 is out of range for TopicPartition(topic='bank.transfers', partition=11)",
    "ConsumerRecord(topic='telco.calls', partition=3, offset=98765432, timestamp=1764324900123)",
    "{'committed_offset': 45678901, 'lag': 2345678, 'high_watermark': 99999999}",
    "connected to 127.0.0.1:9092 and [::1]:65535, from 192.168.100.200",
    "batch of 123456 events, 999999 bytes, 4 partitions 0 1 2 3",
    "listening on ports 9092 9093, port 9094 9095 9096; Ports: 19092 19093",
    "report r-09017054b1034fbc, event 550e8400-e29b-41d4-a716-446655440000",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736, sha deadbeef1234567abc, uuid 6ba7b810-9dad-11d1-80b4-b12345678901",
    "version 1.2.3456789, amount 1234567.89 MYR",
    "HOLD_TRANSFER to MBBEMYKL for DN-1 under rule mule-inflow@1",
])
def test_timestamps_durations_offsets_ports_and_short_numbers_stay_readable(emit: Emit, text: str) -> None:
    assert emit(text) == text


def test_configured_secrets_are_scrubbed_including_url_encoded_redis_passwords(emit: Emit) -> None:
    s = Settings.from_environ({"SEKAT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SEKAT_KAFKA_SASL_USERNAME": "u",
                               "SEKAT_KAFKA_SASL_PASSWORD": "hunter2-kafka",
                               "SEKAT_REDIS_URL": "rediss://app:p%40ss-redis@host:6379/0"})
    secrets = secrets_of(s)
    assert {"hunter2-kafka", "p%40ss-redis", "p@ss-redis"} <= set(secrets)
    line = emit("%s %s", b"SaslAuthenticateRequest(\x00u\x00hunter2-kafka)", "p@ss-redis", secrets=tuple(secrets))
    assert line == "b'SaslAuthenticateRequest(\\x00u\\x00***)' ***"


@pytest.mark.parametrize("url,password", [
    ("redis://host:6379/0?password=s3cret-q", "s3cret-q"),
    ("redis://host:6379/0?username=app&password=p%40ss-q", "p@ss-q"),
    ("rediss://host:6380/0?ssl_ca_certs=/ca.pem&password=a+b%2Bc", "a b+c"),
])
def test_redis_passwords_given_in_the_query_are_secrets_too(emit: Emit, url: str, password: str) -> None:
    secrets = secrets_of(Settings.from_environ({"SEKAT_REDIS_URL": url}))
    assert password in secrets  # as redis-py reads it
    line = emit("redis %s, auth with %r", url, password, secrets=tuple(secrets))
    assert password not in line and url.rpartition("=")[2] not in line


@pytest.mark.parametrize("text,expected", [
    ("connecting to redis://app:n0t-configured@host:6379/0",
     "connecting to redis://app:***@host:6379/0"),
    ("redis://host/0?username=app&password=n0t-configured&db=1",
     "redis://host/0?username=app&password=***&db=1"),
    ("KafkaClient(sasl_plain_username='u', sasl_plain_password='n0t configured')",
     "KafkaClient(sasl_plain_username='u', sasl_plain_password='***')"),
    ("retry with api_key=n0t-configured&client_secret=n0t-configured;",
     "retry with api_key=***&client_secret=***;"),
    ("{'ssl_password': \"n0t-configured\", 'password': 'x'}",
     "{'ssl_password': \"***\", 'password': '***'}"),
    ("refused X-API-Key sekat_0a1b2c3d4e5f_Zm9vYmFyYmF6cXV4LV9hYmNkZWZnaGlqa2xtbm9wcXJzdHV2",
     "refused X-API-Key sekat_0a1b2c3d4e5f_***"),
    ("headers [(b'x-api-key', b'sekat_0a1b2c3d4e5f_abc-DEF_ghi-JKL_mno-PQR')]",
     "headers [(b'x-api-key', b'sekat_0a1b2c3d4e5f_***')]"),
    ("SEKAT_KAFKA_SASL_PASSWORD: Kafka at 127.0.0.1:9094 refused SASL user 'sekat'",
     "SEKAT_KAFKA_SASL_PASSWORD: Kafka at 127.0.0.1:9094 refused SASL user 'sekat'"),
    ("institution MBBEMYKL: secrets ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'whsec_Zm9v+YmFy/YmF6=']",
     "institution MBBEMYKL: secrets ['whsec_***', 'whsec_***']"),
])
def test_passwords_and_api_keys_are_masked_by_their_shape_even_when_not_configured(
        emit: Emit, text: str, expected: str) -> None:
    assert emit(text) == expected


def test_installed_redaction_covers_arguments_and_tracebacks(emit: Emit) -> None:
    try:
        raise ValueError("bad account 800-123-4567 paid from GB82 WEST 1234 5698 7654 32")
    except ValueError:
        previous = logging.getLogRecordFactory()
        install(["s3cret-pw"], logging.DEBUG)
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        logger = logging.getLogger("faust.agent")
        logger.addHandler(handler)
        try:
            logger.exception("agent crashed sending %s to %s", b"s3cret-pw", "+60123456789")
        finally:
            logger.removeHandler(handler)
            logging.setLogRecordFactory(previous)
    text = stream.getvalue()
    for clear in ("s3cret-pw", "+60123456789", "123-4567", "5698 7654"):
        assert clear not in text
    assert "********6789" in text and "******4567" in text and "******************5432" in text and "***" in text
    assert logging.getLogger("aiokafka").level == logging.INFO  # its debug lines dump whole requests


def test_redact_is_the_same_rule_as_the_log_records() -> None:
    assert redact("caller 012-345 6789, secret hunter2", ["hunter2"]) == "caller ******6789, secret ***"


def test_a_dead_letters_bytes_keep_everything_but_the_numbers() -> None:
    from sekat.redaction import mask_identifiers

    raw = b'{"caller": "+60 12-345 6789", "note": "caf\xc3\xa9", "amount": "1234567.50", "bin": "\xff\xfe"}'
    masked = mask_identifiers(raw)
    assert b"123456789" not in masked.replace(b" ", b"").replace(b"-", b"")
    assert b"6789" in masked and b"caf\xc3\xa9" in masked and b"1234567.50" in masked and b"\xff\xfe" in masked
