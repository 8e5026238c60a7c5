"""Settings: working defaults; a bad value stops start-up naming the variable."""

import io
import logging
from dataclasses import fields
from pathlib import Path

import pytest

from sekat.errors import ConfigError
from sekat.redaction import install, secrets_of
from sekat.settings import SETTINGS_DOC, Settings


def test_defaults_work_for_the_local_stack() -> None:
    s = Settings.from_environ({})
    assert s.kafka_bootstrap == "127.0.0.1:9092" and s.redis_url.startswith("redis://127.0.0.1")
    assert s.topic_transfers == "bank.transfers" and s.topic_deadletter == "sekat.deadletter"


def test_environment_overrides() -> None:
    s = Settings.from_environ({"SEKAT_TOPIC_CALLS": "x.calls", "SEKAT_BATCH_MAX": "50"})
    assert s.topic_calls == "x.calls" and s.batch_max == 50


@pytest.mark.parametrize("env,setting", [
    ({"SEKAT_POLICY_FILE": "/nonexistent/policy.yaml"}, "SEKAT_POLICY_FILE"),
    ({"SEKAT_BATCH_MAX": "lots"}, "SEKAT_BATCH_MAX"),
    ({"SEKAT_BATCH_MAX": "0"}, "SEKAT_BATCH_MAX"),
    ({"SEKAT_KAFKA_BOOTSTRAP": "nohostport"}, "SEKAT_KAFKA_BOOTSTRAP"),
    ({"SEKAT_REDIS_URL": "http://x"}, "SEKAT_REDIS_URL"),
    ({"SEKAT_API_REDIS_URL": "http://x"}, "SEKAT_API_REDIS_URL"),
    ({"SEKAT_TOPIC_CALLS": "bad topic!"}, "SEKAT_TOPIC_CALLS"),
    ({"SEKAT_TOPIC_CALLS": "bank.transfers"}, "SEKAT_TOPIC_*"),
    ({"SEKAT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SEKAT_KAFKA_SASL_USERNAME"),
    ({"SEKAT_KAFKA_SECURITY_PROTOCOL": "TLS"}, "SEKAT_KAFKA_SECURITY_PROTOCOL"),
    ({"SEKAT_PHONE_REGION": "Malaysia"}, "SEKAT_PHONE_REGION"),
    ({"SEKAT_WEB_PORT": "70000"}, "SEKAT_WEB_PORT"),
    ({"SEKAT_REPLICA_DISK_DIR": "relative/dir"}, "SEKAT_REPLICA_DISK_DIR"),
    ({"SEKAT_REPLICA_DISK_DIR": "/etc/hostname"}, "SEKAT_REPLICA_DISK_DIR"),
    ({"SEKAT_REPLICA_DISK_MAX_AGE_S": "10"}, "SEKAT_REPLICA_DISK_MAX_AGE_S"),
    ({"SEKAT_LATENCY_OBJECTIVE_MS": "0"}, "SEKAT_LATENCY_OBJECTIVE_MS"),
    ({"SEKAT_LATENCY_OBJECTIVE_MS": "50", "SEKAT_LATENCY_GOAL_MS": "100"}, "SEKAT_LATENCY_GOAL_MS"),
    ({"SEKAT_RETENTION_REVOKED_DAYS": "0"}, "SEKAT_RETENTION_REVOKED_DAYS"),
    ({"SEKAT_RETENTION_EXPIRED_DAYS": "20"}, "SEKAT_FEEDBACK_WINDOW_DAYS"),
    ({"SEKAT_RETENTION_DEADLETTER_DAYS": "400"}, "SEKAT_RETENTION_DEADLETTER_DAYS"),
    ({"SEKAT_RETENTION_APPEALS_DAYS": "0"}, "SEKAT_RETENTION_APPEALS_DAYS"),
    ({"SEKAT_RETENTION_APPEALS_DAYS": "20", "SEKAT_APPEAL_REAPPEAL_DAYS": "30"}, "SEKAT_RETENTION_APPEALS_DAYS"),
    ({"SEKAT_PURGE_INTERVAL_S": "0"}, "SEKAT_PURGE_INTERVAL_S"),
    ({"SEKAT_AUDIT_KEY": "short"}, "SEKAT_AUDIT_KEY"),
    ({"SEKAT_OPERATOR": "two words"}, "SEKAT_OPERATOR"),
    ({"SEKAT_TOPIC_AUDIT": "sekat.decisions"}, "SEKAT_TOPIC_*"),
])
def test_bad_settings_name_the_variable(env: dict, setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_environ(env)
    assert err.value.setting == setting and setting in str(err.value)


def test_the_replica_disk_copy_is_in_the_data_directory_unless_set_or_turned_off(tmp_path) -> None:
    default = Settings.from_environ({"SEKAT_APP_ID": "sekat-a"})
    assert default.replica_disk_path() == default.data_dir / "replica"
    assert default.data_dir.name == "sekat-a-data" and default.replica_disk_max_age_s == 86_400
    assert Settings.from_environ({"SEKAT_REPLICA_DISK_DIR": str(tmp_path)}).replica_disk_path() == tmp_path
    assert Settings.from_environ({"SEKAT_REPLICA_DISK_DIR": ""}).replica_disk_path() is None


def test_secrets_are_redacted() -> None:
    s = Settings.from_environ({"SEKAT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SEKAT_KAFKA_SASL_USERNAME": "u",
                               "SEKAT_KAFKA_SASL_PASSWORD": "hunter2", "SEKAT_REDIS_URL": "redis://app:pw@host:6379/0"})
    shown = str(s.redacted())
    assert "hunter2" not in shown and ":pw@" not in shown
    keyed = Settings.from_environ({"SEKAT_AUDIT_KEY": "k3y-of-the-audit-hash"})
    assert "k3y-of-the-audit-hash" not in str(keyed.redacted())


def test_the_api_has_its_own_redis_url_or_else_the_workers() -> None:
    shared = Settings.from_environ({"SEKAT_REDIS_URL": "redis://sekat:w@host:6379/0"})
    assert shared.api_redis() == ("redis://sekat:w@host:6379/0", "SEKAT_REDIS_URL")
    own = Settings.from_environ({"SEKAT_REDIS_URL": "redis://sekat:w@host:6379/0",
                                 "SEKAT_API_REDIS_URL": "rediss://sekat-api:api-pw@host:6380/0"})
    assert own.api_redis() == ("rediss://sekat-api:api-pw@host:6380/0", "SEKAT_API_REDIS_URL")
    assert own.redacted()["api_redis_url"] == "rediss://***@host:6380/0"
    assert "api-pw" in secrets_of(own)  # scrubbed from every log line


def test_every_setting_is_documented() -> None:
    assert {f.name for f in fields(Settings)} == set(SETTINGS_DOC)


@pytest.mark.parametrize("env,setting", [
    ({"SEKAT_TRANSFERS_FORMAT": "iso"}, "SEKAT_TRANSFERS_FORMAT"),
    ({"SEKAT_CALLS_FORMAT": "csv"}, "SEKAT_CALLS_FORMAT"),
    ({"SEKAT_CDR_COLUMNS": "caller=3,callee=4"}, "SEKAT_CDR_COLUMNS"),
    ({"SEKAT_CDR_COLUMNS": "call_id=0,occurred_at=2,caller=3,callee=4,operator=5"}, "SEKAT_CDR_COLUMNS"),
    ({"SEKAT_CDR_COLUMNS": "call_id=1,call_id=2"}, "SEKAT_CDR_COLUMNS"),
    ({"SEKAT_CDR_COLUMNS": "colour=1"}, "SEKAT_CDR_COLUMNS"),
    ({"SEKAT_CDR_DELIMITER": ";;"}, "SEKAT_CDR_DELIMITER"),
    ({"SEKAT_CDR_DELIMITER": '"'}, "SEKAT_CDR_DELIMITER"),
])
def test_bad_adapter_settings_name_the_variable(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_environ(env)
    assert err.value.setting == setting and setting in str(err.value)


def test_adapter_defaults() -> None:
    s = Settings.from_environ({})
    assert (s.transfers_format, s.calls_format, s.cdr_separator) == ("json", "json", ",")
    assert s.cdr_column_map() == {"call_id": 1, "occurred_at": 2, "caller": 3, "callee": 4, "type": 5,
                                  "operator": 6, "caller_network": 7, "presentation": 8}


def test_target_and_metric_intervals_are_settings_with_named_errors() -> None:
    s = Settings.from_environ({"SEKAT_TARGET_ATTEMPTS": "1000000", "SEKAT_TARGET_PERIOD_DAYS": "30"})
    assert (s.target_attempts, s.target_period_days) == (1_000_000, 30)
    assert Settings().target_attempts == 4_700_000_000 and Settings().target_period_days == 1095
    assert (Settings().latency_objective_ms, Settings().latency_goal_ms) == (250, 10)
    for name, bad in (("SEKAT_TARGET_ATTEMPTS", "0"), ("SEKAT_TARGET_PERIOD_DAYS", "-1"),
                      ("SEKAT_METRICS_INTERVAL_S", "0"), ("SEKAT_BLOCKLIST_COUNT_INTERVAL_S", "soon")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_environ({name: bad})


@pytest.mark.parametrize("url,shown", [
    ("redis://app:pw-user1nfo@host:6379/0", "redis://***@host:6379/0"),
    ("redis://host:6379/0?password=s3cret", "redis://host:6379/0?password=***"),
    ("redis://host:6379/0?username=app&password=p%40ss&db=1", "redis://host:6379/0?username=app&password=***&db=1"),
    ("rediss://host:6380/0?ssl_ca_certs=/ca.pem&ssl_password=k3y-pw", "rediss://host:6380/0?ssl_ca_certs=/ca.pem&ssl_password=***"),
])
def test_the_start_up_log_line_shows_no_redis_password(url: str, shown: str) -> None:
    """The worker logs its settings at start-up: through the installed redaction, as a real handler formats it."""
    settings = Settings.from_environ({"SEKAT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SEKAT_KAFKA_SASL_USERNAME": "u",
                                      "SEKAT_KAFKA_SASL_PASSWORD": "hunter2-kafka", "SEKAT_REDIS_URL": url})
    assert settings.redacted()["redis_url"] == shown
    previous, stream = logging.getLogRecordFactory(), io.StringIO()
    handler, logger = logging.StreamHandler(stream), logging.getLogger("sekat")
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    install(secrets_of(settings), logging.INFO)
    try:
        logger.warning("starting worker with %s", settings.redacted())
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(previous)
        logging.getLogger("aiokafka").setLevel(logging.NOTSET)
        logging.getLogger("kafka").setLevel(logging.NOTSET)
    line = stream.getvalue()
    assert f"'redis_url': '{shown}'" in line and "'kafka_sasl_password': '***'" in line
    for secret in ("hunter2-kafka", "pw-user1nfo", "s3cret", "p%40ss", "p@ss", "k3y-pw"):
        assert secret not in line


@pytest.mark.parametrize("lines,says", [
    ("RPP,RHBB0218,RHBB\n", "line 1: bank 'RHBB' is not a BIC"),
    ("# members\nRPP,RHBB0218\n", "line 2: expected scheme,member_id,BIC"),
    ("RPP,RHBB0218,RHBBMYKL\nrpp,RHBB0218,MBBEMYKL\n", "line 2: member 'RHBB0218' of 'rpp' is already mapped"),
])
def test_a_bad_member_directory_stops_start_up_naming_the_file_and_line(tmp_path, lines: str, says: str) -> None:
    path = tmp_path / "members.csv"
    path.write_text(lines)
    with pytest.raises(ConfigError) as err:
        Settings.from_environ({"SEKAT_MEMBER_DIRECTORY": str(path)})
    assert err.value.setting == "SEKAT_MEMBER_DIRECTORY" and says in str(err.value) and str(path) in str(err.value)
    with pytest.raises(ConfigError, match="SEKAT_MEMBER_DIRECTORY"):
        Settings.from_environ({"SEKAT_MEMBER_DIRECTORY": str(tmp_path / "absent.csv")})


def test_member_directory_keys_keep_schemes_and_kinds_apart() -> None:
    directory = Path(__file__).resolve().parents[1] / "fixtures" / "member_directory.csv"
    members = Settings.from_environ({"SEKAT_MEMBER_DIRECTORY": str(directory)}).member_directory_map()
    assert members[("CLR", "USABA", "021000021")] == "CHASUS33"
    assert members[("CLR", "RPP", "021000021")] == "HLBBMYKL"
    assert members[("OTHR", "BANK", "P-00042")] == "PBBEMYKL" and ("CLR", "BANK", "P-00042") not in members
    assert members[("CLR", "", "fsp001")] == "FIRNZAJJ"
    assert Settings.from_environ({}).member_directory_map() == {}
