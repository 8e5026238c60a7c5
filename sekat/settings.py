"""Settings: one object built from ``SEKAT_*`` environment variables at start-up.

``Settings.from_environ(mapping)`` validates every variable and raises
``ConfigError`` naming the variable at fault; nothing else in Sekat reads
``os.environ``. The table in docs/configuration.md lists every variable;
``SETTINGS_DOC`` below gives each a one-line description (tests hold both to the fields).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sekat.errors import ConfigError, InvalidIdentifier
from sekat.expiry import ExpiryPolicy, parse_expiry
from sekat.redis_url import validate_url

if TYPE_CHECKING:
    from sekat.identifiers import ProxyHasher

MIN_PROXY_KEY_CHARS = 32  # SEKAT_PROXY_HASH_KEY: at least 128 bits of a random hex key
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Who filed or erased something from the command line: a person's or a system's name, no spaces (docs/privacy.md).
_OPERATOR_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
TRANSFER_FORMATS = ("json", "pacs008")
CALL_FORMATS = ("json", "cdr-csv", "call-attempt")
CDR_FIELDS = ("call_id", "occurred_at", "caller", "callee", "operator", "type", "caller_network", "presentation",
              "attestation", "duration", "answered")
CDR_REQUIRED = ("call_id", "occurred_at", "caller", "callee", "operator")
APPEAL_RULES = ("own-report", "any-agency")  # docs/appeals.md
DEFAULT_CDR_COLUMNS = ("call_id=1,occurred_at=2,caller=3,callee=4,type=5,operator=6,caller_network=7,"
                       "presentation=8")


# Variables replaced by others, still read: each sets the variables that replaced it, unless one of those is set
# too (then start-up stops, naming it, rather than guess which the operator meant).
RENAMED: dict[str, tuple[str, ...]] = {
    # the one entry limit, for every identifier that is not confirmed, became a limit per kind and status
    "SEKAT_BRAKE_ENTRY_MAX": ("SEKAT_BRAKE_PHONE_REPORTED_MAX", "SEKAT_BRAKE_ACCOUNT_REPORTED_MAX"),
}


def _renamed(env: Mapping[str, str]) -> Mapping[str, str]:
    """``env`` with each replaced variable given as the variables that replaced it (``RENAMED``)."""
    present = [old for old in RENAMED if old in env]
    if not present:
        return env
    out = dict(env)
    for old in present:
        new = RENAMED[old]
        if any(n in env for n in new):
            raise ConfigError(old, f"is replaced by {' and '.join(new)}; set those, not both")
        raw = out.pop(old).strip()
        if not raw.isdigit() or int(raw) > 10**9:
            raise ConfigError(old, f"must be a whole number between 0 and {10**9}, got {raw!r} "
                                   f"(it sets {' and '.join(new)})")
        out.update(dict.fromkeys(new, raw))
    return out


@dataclass(frozen=True)
class Settings:
    app_id: str = "sekat"
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = ""
    kafka_ssl_cafile: str = ""
    kafka_offset_reset: str = "earliest"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "sekat:"
    redis_timeout_ms: int = 500
    api_redis_url: str = ""
    topic_transfers: str = "bank.transfers"
    topic_calls: str = "telco.calls"
    topic_sms: str = "telco.sms"
    topic_reports: str = "sekat.reports"
    topic_freeze: str = "sekat.commands.freeze"
    topic_block: str = "sekat.commands.block"
    topic_decisions: str = "sekat.decisions"
    topic_deadletter: str = "sekat.deadletter"
    topic_undelivered: str = "sekat.commands.undelivered"
    topic_appeals: str = "sekat.appeals"
    topic_feedback: str = "sekat.feedback"
    topic_notices: str = "sekat.notices"
    topic_institutions: str = "sekat.institutions"
    topic_audit: str = "sekat.audit"
    topic_partitions: int = 4
    command_routing: str = "shared"
    route_banks: str = ""
    route_operators: str = ""
    topic_replication: int = 1
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_max: int = 1000
    batch_within_ms: int = 5
    max_event_bytes: int = 65536
    deadletter_original_bytes: int = 65536
    phone_region: str = "MY"
    transfers_format: str = "json"
    calls_format: str = "json"
    decode_processes: int = 2
    cdr_columns: str = DEFAULT_CDR_COLUMNS
    cdr_delimiter: str = ","
    log_level: str = "info"
    stack_dir: str = ".stack"
    policy_file: str = ""
    target_attempts: int = 4_700_000_000
    target_period_days: int = 1095
    metrics_interval_s: int = 5
    latency_objective_ms: int = 250
    latency_goal_ms: int = 10
    stall_after_s: int = 60
    blocklist_count_interval_s: int = 15
    replica_snapshot_max_behind: int = 200_000
    replica_disk_dir: str | None = None  # None (unset): the worker's data directory; "": no disk copy
    replica_disk_max_age_s: int = 86_400
    protected_file: str = ""
    sender_registry_file: str = ""
    member_directory: str = ""
    proxy_hash_key: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_max_body_bytes: int = 65536
    api_trusted_proxies: str = ""
    api_tls_certfile: str = ""
    api_tls_keyfile: str = ""
    status_rate_per_minute: int = 30
    status_global_rate_per_minute: int = 3000
    filing_rate_per_minute: int = 600
    appeal_rate_per_minute: int = 5
    appeal_acknowledge_s: int = 86_400
    appeal_decide_s: int = 14 * 86_400
    appeal_reappeal_days: int = 30
    appeal_rule: str = "own-report"
    brake_window_s: int = 60
    brake_phone_reported_max: int = 1_800
    brake_phone_confirmed_max: int = 0
    brake_account_reported_max: int = 120
    brake_account_confirmed_max: int = 0
    brake_rule_max: int = 60_000
    brake_source_max: int = 60_000
    expiry_days: str = "reported=30,confirmed=365"
    renewals_max: int = 3
    release_interval_s: int = 5
    retention_revoked_days: int = 90
    retention_expired_days: int = 90
    retention_deadletter_days: int = 7
    retention_decisions_days: int = 7
    retention_commands_days: int = 7
    retention_audit_days: int = 2557
    retention_appeals_days: int = 180
    purge_interval_s: int = 3600
    audit_key: str = ""
    operator: str = ""
    institutions_file: str = ""
    relay_loopback_http: int = 0
    relay_web_port: int = 6067
    relay_timeout_ms: int = 10_000
    relay_retry_base_ms: int = 500
    relay_retry_max_ms: int = 60_000
    relay_give_up_s: int = 86_400
    relay_breaker_failures: int = 5
    relay_breaker_open_s: int = 30
    feedback_window_days: int = 30
    feedback_false_positive_institutions: int = 3

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = _renamed(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        for f in fields(cls):
            name = "SEKAT_" + f.name.upper()
            if name not in env:
                continue
            raw = env[name].strip()
            if f.type == "int":
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
            else:
                values[f.name] = raw
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.app_id or not _TOPIC_RE.match(self.app_id):
            raise ConfigError("SEKAT_APP_ID", "must be 1-249 characters of letters, digits, '.', '_' or '-'")
        for part in self.kafka_bootstrap.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError("SEKAT_KAFKA_BOOTSTRAP", f"expected host:port[,host:port], got {self.kafka_bootstrap!r}")
        if self.kafka_security_protocol not in _SECURITY_PROTOCOLS:
            raise ConfigError("SEKAT_KAFKA_SECURITY_PROTOCOL", f"must be one of {', '.join(_SECURITY_PROTOCOLS)}")
        if self.kafka_security_protocol.startswith("SASL"):
            if self.kafka_sasl_mechanism not in _SASL_MECHANISMS:
                raise ConfigError("SEKAT_KAFKA_SASL_MECHANISM", f"must be one of {', '.join(_SASL_MECHANISMS)}")
            if not self.kafka_sasl_username or not self.kafka_sasl_password:
                raise ConfigError("SEKAT_KAFKA_SASL_USERNAME", "SASL needs SEKAT_KAFKA_SASL_USERNAME and SEKAT_KAFKA_SASL_PASSWORD")
        if self.kafka_ssl_cafile and not os.path.isfile(self.kafka_ssl_cafile):
            raise ConfigError("SEKAT_KAFKA_SSL_CAFILE", f"no such file: {self.kafka_ssl_cafile}")
        if self.kafka_offset_reset not in ("earliest", "latest"):
            raise ConfigError("SEKAT_KAFKA_OFFSET_RESET", "must be 'earliest' or 'latest'")
        try:
            validate_url(self.redis_url)
        except ValueError as exc:
            raise ConfigError("SEKAT_REDIS_URL", str(exc)) from None
        if self.api_redis_url:
            try:
                validate_url(self.api_redis_url)
            except ValueError as exc:
                raise ConfigError("SEKAT_API_REDIS_URL", str(exc)) from None
        for f in fields(self):
            if f.name.startswith("topic_") and f.name not in ("topic_partitions", "topic_replication"):
                value = getattr(self, f.name)
                if not _TOPIC_RE.match(value):
                    raise ConfigError("SEKAT_" + f.name.upper(), f"{value!r} is not a valid Kafka topic name")
        self.command_topics()
        topics = self.topic_names()
        if len(set(topics.values())) != len(topics):
            raise ConfigError("SEKAT_TOPIC_*", "each topic needs its own name")
        checks = (
            ("topic_partitions", 1, 10_000),
            ("topic_replication", 1, 16),
            ("web_port", 1, 65_535),
            ("batch_max", 1, 100_000),
            ("batch_within_ms", 1, 10_000),
            ("max_event_bytes", 256, 1_048_576),
            ("deadletter_original_bytes", 0, 524_288),
            ("target_attempts", 1, 10**15),
            ("target_period_days", 1, 36_500),
            ("metrics_interval_s", 1, 3_600),
            ("latency_objective_ms", 1, 60_000),
            ("latency_goal_ms", 1, 60_000),
            ("stall_after_s", 1, 3_600),
            ("blocklist_count_interval_s", 1, 86_400),
            ("replica_snapshot_max_behind", 0, 1_000_000),
            ("replica_disk_max_age_s", 60, 30 * 86_400),
            ("redis_timeout_ms", 50, 60_000),
            ("decode_processes", 0, 64),
            ("api_port", 1, 65_535),
            ("api_max_body_bytes", 1024, 16_777_216),
            ("status_rate_per_minute", 1, 1_000_000),
            ("status_global_rate_per_minute", 1, 100_000_000),
            ("filing_rate_per_minute", 1, 1_000_000),
            ("appeal_rate_per_minute", 1, 1_000_000),
            ("appeal_acknowledge_s", 1, 365 * 86_400),
            ("appeal_decide_s", 1, 365 * 86_400),
            ("appeal_reappeal_days", 0, 3_650),
            ("brake_window_s", 1, 86_400),
            ("brake_phone_reported_max", 0, 10**9),
            ("brake_phone_confirmed_max", 0, 10**9),
            ("brake_account_reported_max", 0, 10**9),
            ("brake_account_confirmed_max", 0, 10**9),
            ("brake_rule_max", 0, 10**9),
            ("brake_source_max", 0, 10**9),
            ("renewals_max", 0, 100),
            ("release_interval_s", 1, 3_600),
            ("retention_revoked_days", 1, 36_500),
            ("retention_expired_days", 1, 36_500),
            ("retention_deadletter_days", 1, 365),
            ("retention_decisions_days", 1, 36_500),
            ("retention_commands_days", 1, 36_500),
            ("retention_audit_days", 1, 36_500),
            ("retention_appeals_days", 1, 36_500),
            ("purge_interval_s", 1, 86_400),
            ("relay_loopback_http", 0, 1),
            ("relay_web_port", 1, 65_535),
            ("relay_timeout_ms", 100, 300_000),
            ("relay_retry_base_ms", 10, 3_600_000),
            ("relay_retry_max_ms", 10, 86_400_000),
            ("relay_give_up_s", 1, 30 * 86_400),
            ("relay_breaker_failures", 1, 1_000),
            ("relay_breaker_open_s", 1, 86_400),
            ("feedback_window_days", 1, 366),
            ("feedback_false_positive_institutions", 0, 1_000),
        )
        for name, low, high in checks:
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError("SEKAT_" + name.upper(), f"must be between {low} and {high}, got {value}")
        if self.feedback_window_days > min(self.retention_revoked_days, self.retention_expired_days):
            # What was sent to whom names the entries; it must expire before the purge removes them.
            raise ConfigError("SEKAT_FEEDBACK_WINDOW_DAYS", "must not exceed SEKAT_RETENTION_REVOKED_DAYS and "
                                                            "SEKAT_RETENTION_EXPIRED_DAYS "
                                                            f"({min(self.retention_revoked_days, self.retention_expired_days)})"
                                                            f", got {self.feedback_window_days}")
        if self.latency_goal_ms > self.latency_objective_ms:
            raise ConfigError("SEKAT_LATENCY_GOAL_MS", f"must not exceed SEKAT_LATENCY_OBJECTIVE_MS "
                                                       f"({self.latency_objective_ms}), got {self.latency_goal_ms}")
        if self.appeal_acknowledge_s > self.appeal_decide_s:
            raise ConfigError("SEKAT_APPEAL_ACKNOWLEDGE_S", f"must not exceed SEKAT_APPEAL_DECIDE_S "
                                                            f"({self.appeal_decide_s}), got {self.appeal_acknowledge_s}")
        if self.retention_appeals_days < self.appeal_reappeal_days:
            # A rejected appeal is what refuses an earlier new one: it is kept at least until then.
            raise ConfigError("SEKAT_RETENTION_APPEALS_DAYS", f"must not be less than SEKAT_APPEAL_REAPPEAL_DAYS "
                                                              f"({self.appeal_reappeal_days}), got "
                                                              f"{self.retention_appeals_days}")
        if self.appeal_rule not in APPEAL_RULES:
            raise ConfigError("SEKAT_APPEAL_RULE", f"must be one of {', '.join(APPEAL_RULES)}, got {self.appeal_rule!r}")
        if not re.fullmatch(r"[A-Z]{2}", self.phone_region):
            raise ConfigError("SEKAT_PHONE_REGION", "must be a two-letter region code such as MY")
        if self.transfers_format not in TRANSFER_FORMATS:
            raise ConfigError("SEKAT_TRANSFERS_FORMAT", f"must be one of {', '.join(TRANSFER_FORMATS)}, "
                                                        f"got {self.transfers_format!r}")
        if self.calls_format not in CALL_FORMATS:
            raise ConfigError("SEKAT_CALLS_FORMAT", f"must be one of {', '.join(CALL_FORMATS)}, got {self.calls_format!r}")
        self.cdr_column_map()
        if len(self.cdr_separator) != 1 or self.cdr_separator in "\"\r\n":
            raise ConfigError("SEKAT_CDR_DELIMITER", "must be one character other than a quote or newline, or 'tab'")
        if self.replica_disk_dir:
            if not os.path.isabs(self.replica_disk_dir):
                raise ConfigError("SEKAT_REPLICA_DISK_DIR", f"must be an absolute path, got {self.replica_disk_dir!r}")
            if os.path.exists(self.replica_disk_dir) and not os.path.isdir(self.replica_disk_dir):
                raise ConfigError("SEKAT_REPLICA_DISK_DIR", f"not a directory: {self.replica_disk_dir}")
        if self.relay_retry_max_ms < self.relay_retry_base_ms:
            raise ConfigError("SEKAT_RELAY_RETRY_MAX_MS", f"must be at least SEKAT_RELAY_RETRY_BASE_MS "
                                                          f"({self.relay_retry_base_ms}), got {self.relay_retry_max_ms}")
        if self.institutions_file and not os.path.isfile(self.institutions_file):
            raise ConfigError("SEKAT_INSTITUTIONS_FILE", f"no such file: {self.institutions_file}")
        self.institutions()
        if self.policy_file and not os.path.isfile(self.policy_file):
            raise ConfigError("SEKAT_POLICY_FILE", f"no such file: {self.policy_file}")
        self.protected_keys()
        self.sender_registry()
        self.member_directory_map()
        self.expiry_policy()
        self.trusted_proxies()
        self.api_tls()
        if self.audit_key and len(self.audit_key) < 16:
            raise ConfigError("SEKAT_AUDIT_KEY", "must be at least 16 characters (a random secret)")
        if self.operator and not _OPERATOR_RE.match(self.operator):
            raise ConfigError("SEKAT_OPERATOR", "must be 1-64 letters, digits, '.', '_', '@' or '-', "
                                                f"got {self.operator[:64]!r}")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError("SEKAT_LOG_LEVEL", "must be debug, info, warning or error")
        if self.proxy_hash_key and len(self.proxy_hash_key) < MIN_PROXY_KEY_CHARS:
            raise ConfigError("SEKAT_PROXY_HASH_KEY", f"must be at least {MIN_PROXY_KEY_CHARS} characters (e.g. "
                                                      "64 hex digits from a secret store), or empty")

    def proxy_hasher(self) -> "ProxyHasher":
        """The keyed hash of NRIC, passport and business-registration proxies (``SEKAT_PROXY_HASH_KEY``)."""
        from sekat.identifiers import ProxyHasher  # here: phonenumbers loads only when a setting needs it
        return ProxyHasher(self.proxy_hash_key)

    @property
    def data_dir(self) -> Path:
        """The worker's data directory (Faust's, streams/app.py): ``{system temporary directory}/{app id}-data``."""
        return Path(tempfile.gettempdir()) / f"{self.app_id}-data"

    def replica_disk_path(self) -> Path | None:
        """Where the worker keeps its replica's disk copy; None when ``SEKAT_REPLICA_DISK_DIR`` is set empty."""
        if self.replica_disk_dir is None:
            return self.data_dir / "replica"
        return Path(self.replica_disk_dir) if self.replica_disk_dir else None

    def cdr_column_map(self) -> dict[str, int]:
        """``SEKAT_CDR_COLUMNS`` ("field=column,..."; 1-based columns) as a mapping; raises ConfigError."""
        columns: dict[str, int] = {}
        for part in self.cdr_columns.split(","):
            name, sep, col = part.strip().partition("=")
            name = name.strip()
            if not sep or name not in CDR_FIELDS or not col.strip().isdigit() or int(col) < 1:
                raise ConfigError("SEKAT_CDR_COLUMNS", f"expected field=column[,field=column] with fields from "
                                                       f"{', '.join(CDR_FIELDS)} and columns from 1, got {part.strip()!r}")
            if name in columns:
                raise ConfigError("SEKAT_CDR_COLUMNS", f"{name} is mapped twice")
            columns[name] = int(col)
        missing = [f for f in CDR_REQUIRED if f not in columns]
        if missing:
            raise ConfigError("SEKAT_CDR_COLUMNS", f"must map {', '.join(missing)}")
        return columns

    @property
    def cdr_separator(self) -> str:
        return "\t" if self.cdr_delimiter.lower() == "tab" else self.cdr_delimiter

    def protected_keys(self) -> frozenset[str]:
        """Keys (``kind:value``) of the configured protected list; empty without SEKAT_PROTECTED_FILE."""
        from sekat.identifiers import parse_protected  # here: phonenumbers loads only when a setting needs it

        senders = frozenset(self.sender_registry())  # a bank's own sender ID is never listed either
        if not self.protected_file:
            return senders
        try:
            with open(self.protected_file, encoding="utf-8") as fh:
                return parse_protected(fh.readlines(), self.phone_region) | senders
        except OSError as exc:
            raise ConfigError("SEKAT_PROTECTED_FILE", f"cannot read {self.protected_file}: {exc.strerror}") from None
        except (InvalidIdentifier, UnicodeDecodeError) as exc:
            raise ConfigError("SEKAT_PROTECTED_FILE", f"{self.protected_file}: {exc}") from None

    def sender_registry(self) -> dict[str, frozenset[str]]:
        """``SEKAT_SENDER_REGISTRY_FILE`` read: {sender key: the routes it is registered on}; empty when unset."""
        from sekat.senders import parse_sender_registry

        if not self.sender_registry_file:
            return {}
        try:
            with open(self.sender_registry_file, encoding="utf-8") as fh:
                return parse_sender_registry(fh.readlines(), self.phone_region)
        except OSError as exc:
            raise ConfigError("SEKAT_SENDER_REGISTRY_FILE",
                              f"cannot read {self.sender_registry_file}: {exc.strerror}") from None
        except (InvalidIdentifier, UnicodeDecodeError) as exc:
            raise ConfigError("SEKAT_SENDER_REGISTRY_FILE", f"{self.sender_registry_file}: {exc}") from None

    def institutions(self) -> dict[str, Any]:
        """The institutions of ``SEKAT_INSTITUTIONS_FILE`` (``sekat.institutions.Institution`` by id), checked with
        ``SEKAT_RELAY_LOOPBACK_HTTP``; empty without the file. Raises ConfigError naming the entry at fault."""
        from sekat.institutions import load_institutions  # here: read only when the setting names a file

        if not self.institutions_file:
            return {}
        return load_institutions(self.institutions_file, bool(self.relay_loopback_http))

    def member_directory_map(self) -> dict[tuple[str, str, str], str]:
        """``SEKAT_MEMBER_DIRECTORY`` read: {(kind, scheme, member id): BIC8}; empty when unset."""
        from sekat.identifiers import parse_member_directory

        if not self.member_directory:
            return {}
        try:
            with open(self.member_directory, encoding="utf-8") as fh:
                return parse_member_directory(fh.readlines())
        except OSError as exc:
            raise ConfigError("SEKAT_MEMBER_DIRECTORY", f"cannot read {self.member_directory}: {exc.strerror}") from None
        except (InvalidIdentifier, UnicodeDecodeError) as exc:
            raise ConfigError("SEKAT_MEMBER_DIRECTORY", f"{self.member_directory}: {exc}") from None

    def command_topics(self) -> dict[tuple[bool, str], str]:
        """Per-institution command topics, ``(for_bank, institution) -> topic``; empty under shared routing.

        With ``SEKAT_COMMAND_ROUTING=per-institution`` a bank listed in ``SEKAT_ROUTE_BANKS`` gets its
        commands on ``{SEKAT_TOPIC_FREEZE}.{BIC8}`` and an operator listed in ``SEKAT_ROUTE_OPERATORS`` on
        ``{SEKAT_TOPIC_BLOCK}.{OPERATOR}``, so Kafka ACLs can let each read only its own. Institutions not
        listed stay on the shared topic: input cannot make Sekat create or write arbitrary topics.
        """
        if self.command_routing not in ("shared", "per-institution"):
            raise ConfigError("SEKAT_COMMAND_ROUTING", f"must be 'shared' or 'per-institution', "
                                                       f"got {self.command_routing!r}")
        if self.command_routing == "shared":
            return {}
        from sekat.identifiers import normalise_bank

        routes: dict[tuple[bool, str], str] = {}
        for bank in filter(None, (b.strip() for b in self.route_banks.split(","))):
            try:
                routes[True, normalise_bank(bank)] = f"{self.topic_freeze}.{normalise_bank(bank)}"
            except InvalidIdentifier as exc:
                raise ConfigError("SEKAT_ROUTE_BANKS", str(exc)) from None
        for operator in filter(None, (o.strip().upper() for o in self.route_operators.split(","))):
            if not re.fullmatch(r"[A-Z0-9._-]{1,32}", operator):
                raise ConfigError("SEKAT_ROUTE_OPERATORS", f"{operator[:40]!r} is not an operator code "
                                                           "(1-32 letters, digits, '.', '_' or '-')")
            routes[False, operator] = f"{self.topic_block}.{operator}"
        if not routes:
            raise ConfigError("SEKAT_ROUTE_BANKS", "per-institution routing needs SEKAT_ROUTE_BANKS or "
                                                   "SEKAT_ROUTE_OPERATORS (the institutions with their own topic)")
        for name in routes.values():
            if not _TOPIC_RE.match(name):
                raise ConfigError("SEKAT_COMMAND_ROUTING", f"{name!r} would not be a valid Kafka topic name")
        return routes

    def trusted_proxies(self) -> list[str]:
        """``SEKAT_API_TRUSTED_PROXIES`` as addresses and networks; raises ConfigError naming a bad one."""
        import ipaddress

        proxies = [p.strip() for p in self.api_trusted_proxies.split(",") if p.strip()]
        for proxy in proxies:
            try:
                ipaddress.ip_network(proxy)
            except ValueError:
                raise ConfigError("SEKAT_API_TRUSTED_PROXIES", f"{proxy[:60]!r} is not an IP address or network "
                                                               "(such as 10.0.0.5 or 10.0.0.0/24)") from None
        return proxies

    def api_tls(self) -> tuple[str, str] | None:
        """``SEKAT_API_TLS_CERTFILE`` and ``SEKAT_API_TLS_KEYFILE`` (both or neither), once they load as a
        certificate chain and its key; raises ConfigError naming the setting at fault."""
        import ssl

        if not self.api_tls_certfile and not self.api_tls_keyfile:
            return None
        for name, value, other in (("SEKAT_API_TLS_CERTFILE", self.api_tls_certfile, "SEKAT_API_TLS_KEYFILE"),
                                   ("SEKAT_API_TLS_KEYFILE", self.api_tls_keyfile, "SEKAT_API_TLS_CERTFILE")):
            if not value:
                raise ConfigError(name, f"must be set with {other}: HTTPS needs both the certificate and its key")
            if not os.path.isfile(value):
                raise ConfigError(name, f"no such file: {value}")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.api_tls_certfile,
                                                                                 self.api_tls_keyfile)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError("SEKAT_API_TLS_CERTFILE", f"{self.api_tls_certfile} with SEKAT_API_TLS_KEYFILE "
                                                        f"{self.api_tls_keyfile} is not a certificate and its "
                                                        f"key: {exc}") from None
        return self.api_tls_certfile, self.api_tls_keyfile

    def api_redis(self) -> tuple[str, str]:
        """The agency API's Redis URL and the setting it comes from: ``SEKAT_API_REDIS_URL`` (the API's own ACL
        user, docs/security.md), or ``SEKAT_REDIS_URL`` when that is empty."""
        if self.api_redis_url:
            return self.api_redis_url, "SEKAT_API_REDIS_URL"
        return self.redis_url, "SEKAT_REDIS_URL"

    def expiry_policy(self) -> ExpiryPolicy:
        """``SEKAT_EXPIRY_DAYS`` and ``SEKAT_RENEWALS_MAX`` as a policy; raises ConfigError naming the setting."""
        return parse_expiry(self.expiry_days, self.renewals_max)

    def topic_names(self) -> dict[str, str]:
        return {f.name[len("topic_"):]: getattr(self, f.name)
                for f in fields(self) if f.name.startswith("topic_") and f.name not in ("topic_partitions",
                                                                                         "topic_replication")}

    @property
    def kafka_url(self) -> str:
        return ",".join(f"kafka://{p.strip()}" for p in self.kafka_bootstrap.split(","))

    def kafka_client_config(self) -> dict[str, object]:
        """Connection settings for kafka-python clients (admin, CLI, tests)."""
        config: dict[str, object] = {"bootstrap_servers": [p.strip() for p in self.kafka_bootstrap.split(",")],
                                     "security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL"):
            config.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_sasl_username,
                          sasl_plain_password=self.kafka_sasl_password)
        if self.kafka_ssl_cafile:
            config["ssl_cafile"] = self.kafka_ssl_cafile
        return config

    def aiokafka_config(self) -> dict[str, Any]:
        """Connection settings for every aiokafka client (screening consumer, API producer, bulk import)."""
        import ssl

        config: dict[str, Any] = {"bootstrap_servers": self.kafka_bootstrap,
                                  "security_protocol": self.kafka_security_protocol}
        if "SSL" in self.kafka_security_protocol:
            config["ssl_context"] = ssl.create_default_context(cafile=self.kafka_ssl_cafile or None)
        if self.kafka_security_protocol.startswith("SASL"):
            config.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_sasl_username,
                          sasl_plain_password=self.kafka_sasl_password)
        return config

    def redacted(self) -> dict[str, object]:
        """The settings for a log line: the SASL password is ``***``; in the Redis URL, the userinfo and the
        value of every query parameter naming a password (``?password=``, ``?ssl_password=``)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("kafka_sasl_password", "proxy_hash_key", "audit_key") and value:
                value = "***"
            if f.name in ("redis_url", "api_redis_url"):
                value = re.sub(r"//[^@/]*@", "//***@", str(value))
                value = re.sub(r"([?&][^=&#]*(?i:password)[^=&#]*=)[^&#]*", r"\1***", value)
            out[f.name] = value
        return out


SETTINGS_DOC: dict[str, str] = {
    "app_id": "Faust application id; also the Kafka consumer group.",
    "kafka_bootstrap": "Kafka bootstrap servers, host:port[,host:port].",
    "kafka_security_protocol": "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    "kafka_sasl_mechanism": "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL only).",
    "kafka_sasl_username": "SASL user name (SASL only).",
    "kafka_sasl_password": "SASL password (SASL only); never logged.",
    "proxy_hash_key": "Secret key of the keyed hash (HMAC-SHA256) under which NRIC, passport and business-"
                      "registration DuitNow proxies are stored, logged and screened; the same in the API, workers "
                      "and imports; at least 32 characters; never logged. Empty: such proxies are not screened "
                      "and cannot be filed.",
    "kafka_ssl_cafile": "CA bundle for SSL/SASL_SSL; system CAs when empty.",
    "kafka_offset_reset": "Where a new consumer group starts: earliest (default, loses nothing) or latest.",
    "redis_url": "Blocklist index: redis://, rediss:// (TLS) or unix://; user:password@ for ACL users. "
                 "Redis Cluster: redis+cluster://host:port[,host:port] (rediss+cluster:// with TLS).",
    "api_redis_url": "The agency API's Redis, as SEKAT_REDIS_URL, for its own ACL user (reads entries and API keys, "
                     "counts rate limits, re-arms the brake; docs/security.md). Empty: SEKAT_REDIS_URL.",
    "redis_prefix": "Prefix for every Redis key Sekat writes.",
    "redis_timeout_ms": "How long the screening path waits for Redis (blocklist evidence, rule state) before it "
                        "decides from the worker's replica and without rule state; a Redis that hangs costs a "
                        "batch about this long, then is not asked again for 2 s.",
    "topic_transfers": "Input: bank transfer events.",
    "topic_calls": "Input: telco call events (and SMS as `type: sms` call records).",
    "topic_sms": "Input: telco SMS events (sender, recipient, route, links; docs/contract.md \"SMS\").",
    "topic_reports": "Input: blocklist reports (compacted).",
    "topic_freeze": "Output: bank commands, keyed by bank BIC.",
    "topic_block": "Output: telco commands, keyed by operator.",
    "topic_decisions": "Output: every non-allow decision with evidence.",
    "topic_deadletter": "Output: invalid input with the reason.",
    "topic_undelivered": "Output of `sekat relay`: commands it gave up delivering to an institution, with the last error.",
    "topic_appeals": "Appeals against listings (compacted, keyed by appeal id; docs/appeals.md).",
    "topic_feedback": "Institutions' feedback on commands (compacted, keyed by command_id): POST /v1/feedback and "
                      "pacs.002 status reports for held payments (docs/webhooks.md).",
    "topic_notices": "Notices to the listing agency about an entry, keyed by the entry: put into review by "
                     "false_positive feedback, or flagged for the victim-mule process.",
    "topic_institutions": "Institutions configured through the agency API (PUT /v1/institutions/{id}) for `sekat "
                          "relay`, with their signing secrets (compacted, keyed by id; readable by the relay alone).",
    "topic_audit": "Output: audit records of entry reads through the agency API and of erasures (keyed hashes, "
                   "no identifiers; own retention, SEKAT_RETENTION_AUDIT_DAYS).",
    "topic_partitions": "Partitions for topics that `sekat topics` creates.",
    "command_routing": "shared (every bank reads SEKAT_TOPIC_FREEZE, every telco SEKAT_TOPIC_BLOCK) or "
                       "per-institution (each listed institution gets its own topic; see docs/security.md).",
    "route_banks": "per-institution routing: BICs whose commands go to SEKAT_TOPIC_FREEZE.<BIC8> (comma-separated).",
    "route_operators": "per-institution routing: operators whose commands go to SEKAT_TOPIC_BLOCK.<OPERATOR> "
                       "(comma-separated).",
    "topic_replication": "Replication factor for topics that `sekat topics` and the worker create (3 on a "
                         "3+-broker cluster: then min.insync.replicas=2).",
    "web_host": "Address of the worker's web server (/metrics).",
    "web_port": "Port of the worker's web server (/metrics).",
    "batch_max": "Most events decided in one batch.",
    "batch_within_ms": "Longest wait to fill a batch, in milliseconds.",
    "max_event_bytes": "Larger events are dead-lettered as too_large.",
    "deadletter_original_bytes": "Most bytes of a refused record's value a dead letter carries (the start of it; the size and SHA-256 of the whole are always there).",
    "phone_region": "Default region for phone numbers without a country code.",
    "decode_processes": "Child processes that parse and read an adapter's messages beside the worker's thread "
                        "(pacs008 only; the contract JSON is always decoded in the worker). 0 decodes in the "
                        "worker's thread.",
    "transfers_format": "Input format of the transfers topic: json (the Transfer contract) or pacs008 "
                        "(ISO 20022 pacs.008.001.08+ in XML or its JSON rendering, detected per message).",
    "calls_format": "Input format of the calls topic: json (the Call contract), cdr-csv (call detail "
                    "records, see SEKAT_CDR_COLUMNS) or call-attempt (call-attempt JSON events).",
    "cdr_columns": "CDR CSV column mapping, field=column with 1-based columns; fields call_id, occurred_at, "
                   "caller, callee, operator (required), type, caller_network, presentation, attestation.",
    "cdr_delimiter": "CDR CSV delimiter: one character, or 'tab'.",
    "log_level": "debug, info, warning or error.",
    "stack_dir": "Where `sekat up` keeps the local Kafka and Redis data, logs and pid files.",
    "policy_file": "Rules policy (YAML); empty: the shipped `rules/policy.yaml`. Re-read when it changes.",
    "target_attempts": "National target: scam attempts to screen over the target period (exposed as sekat_target_attempts).",
    "target_period_days": "The target's period in days (default three years; sekat_target_period_seconds).",
    "metrics_interval_s": "How often a worker refreshes consumer lag and pings Redis for the staleness gauge.",
    "latency_objective_ms": "Decision-latency objective (p99, ms): SekatDecisionLatencyHigh pages when the p99 stays "
                            "over it for 10 minutes (exposed as sekat_decision_latency_objective_seconds).",
    "latency_goal_ms": "Decision-latency goal (p99, ms): SekatDecisionLatencyOverGoal opens a ticket when the p99 stays "
                       "over it for 30 minutes (sekat_decision_latency_goal_seconds). At most the objective.",
    "stall_after_s": "A screening stream, or the reports intake, with records waiting and no batch finished for this "
                     "many seconds is stalled: /healthz answers 503 naming it, and sekat_stream_stalled is 1.",
    "blocklist_count_interval_s": "How often the group leader publishes the blocklist entry counts by kind and status (kept by its replica as changes arrive; a tick costs the entries expired since the last).",
    "replica_snapshot_max_behind": "A starting worker loads the replica snapshot another worker stored in Redis and catches up "
                                   "from the change stream when at most this many changes were made since; past that it reads "
                                   "the whole index (and stores a fresh snapshot). Running workers store a fresh one in the "
                                   "background once it is more than half this many behind (at most once per 5 minutes). "
                                   "0: never store or load one.",
    "replica_disk_dir": "Directory of the worker's disk copy of its replica (the stored snapshot's chunks, mode "
                        "0600), screened from when the worker starts while Redis does not answer. Unset: "
                        "<system temp dir>/<app id>-data/replica; empty: no disk copy.",
    "replica_disk_max_age_s": "A disk copy taken longer ago than this is not screened from (the worker waits for "
                              "Redis instead); running workers refresh the stored snapshot once it is half this old.",
    "protected_file": "File of identifiers that can never be listed (one phone number or BIC:account a line).",
    "sender_registry_file": "File of protected SMS sender IDs and the routes each is registered on "
                            "(`SENDER: route, route` a line): such a sender over another route is an "
                            "impersonation, and it can never be listed.",
    "member_directory": "pacs008: file mapping banks identified by clearing-system member id or other participant "
                        "id to their BIC (scheme,member_id,BIC a line); commands for them go to that BIC.",
    "api_host": "Address the agency API (`sekat api`) binds to.",
    "api_port": "Port of the agency API.",
    "api_max_body_bytes": "Largest request body the agency API reads; a larger one is answered 413 before it is "
                          "read. Bulk loads go through `sekat blocklist import`.",
    "api_trusted_proxies": "Reverse proxies (IP addresses or networks, comma-separated) whose X-Forwarded-For and "
                           "X-Forwarded-Proto the agency API believes; empty: none, the peer address is the client.",
    "api_tls_certfile": "PEM certificate (chain) the agency API serves HTTPS with; set with "
                        "SEKAT_API_TLS_KEYFILE. Empty: plain HTTP (behind a TLS-terminating proxy).",
    "api_tls_keyfile": "PEM private key of SEKAT_API_TLS_CERTFILE (unencrypted); both or neither.",
    "status_rate_per_minute": "Public status checks allowed per client address (per /64 for IPv6) per minute "
                              "(then 429).",
    "status_global_rate_per_minute": "Public status checks allowed per minute from all clients together (then "
                                     "429): bounds scraping from many addresses.",
    "filing_rate_per_minute": "Reports and revocations one API key may file per minute (then 429): bounds what a "
                              "stolen key can do; bulk loads go through `sekat blocklist import`.",
    "appeal_rate_per_minute": "Appeals one client address (per /64 for IPv6) may file per minute (then 429).",
    "appeal_acknowledge_s": "Appeals: how long an agency has to acknowledge (move to under_review) an appeal "
                            "after it is filed; past it, the appeal counts as overdue.",
    "appeal_decide_s": "Appeals: how long the agencies have to decide an appeal after it is filed; past it, the "
                       "appeal counts as overdue (SekatAppealsOverdue).",
    "appeal_reappeal_days": "Appeals: days after a rejection before the same identifier may be appealed again "
                            "(0: at once).",
    "appeal_rule": "Appeals on an entry several agencies listed: own-report (each decides for its own report; "
                   "the entry is revoked once no confirmed report of an agency that has not upheld stands) or "
                   "any-agency (the first decision of any reporting agency decides).",
    "brake_window_s": "Safety brake: the window, in seconds, its command limits count over.",
    "brake_phone_reported_max": "Safety brake: most commands one phone number that is not confirmed (a reported "
                                "entry, an unlisted number a rule flags) may drive per window before it goes to "
                                "shadow mode; 0: off. SEKAT_BRAKE_ENTRY_MAX, if set, sets this and the account one.",
    "brake_phone_confirmed_max": "Safety brake: the same for a confirmed phone number; 0 (the default): never braked.",
    "brake_account_reported_max": "Safety brake: most commands one account that is not confirmed (a reported entry, "
                                  "an unlisted payee a rule flags) may drive per window before it goes to shadow "
                                  "mode; 0: off.",
    "brake_account_confirmed_max": "Safety brake: the same for a confirmed account; 0 (the default): never braked.",
    "brake_rule_max": "Safety brake: most commands one rule may drive per window (all workers together); 0: off.",
    "brake_source_max": "Safety brake: most commands the entries of one reporting source may drive per window; "
                        "0: off.",
    "expiry_days": "Expiry policy for reports filed without ttl_days: [SOURCE/]status=days[,...] (most specific "
                   "wins; 0 = no expiry), e.g. reported=30,confirmed=365,PDRM/confirmed=730.",
    "renewals_max": "Renewals of one entry an authority may file (POST /v1/renewals) between two revocations.",
    "release_interval_s": "How often the group leader sweeps for revoked or expired entries that institutions "
                          "acted on, and sends RELEASE_ACCOUNT / UNBLOCK_NUMBER.",
    "retention_revoked_days": "Days a revoked entry is kept after its revocation; then the purge removes it from "
                              "the index, every replica and exports and tombstones it on SEKAT_TOPIC_REPORTS.",
    "retention_expired_days": "Days an expired entry is kept after it expired; then it is purged as a revoked one.",
    "retention_deadletter_days": "retention.ms of SEKAT_TOPIC_DEADLETTER (applied by `sekat topics`); dead letters "
                                 "hold their record with every identifier masked.",
    "retention_decisions_days": "retention.ms of SEKAT_TOPIC_DECISIONS (applied by `sekat topics`).",
    "retention_commands_days": "retention.ms of the command topics (SEKAT_TOPIC_FREEZE, SEKAT_TOPIC_BLOCK, the "
                               "per-institution ones, SEKAT_TOPIC_UNDELIVERED; applied by `sekat topics`).",
    "retention_audit_days": "retention.ms of SEKAT_TOPIC_AUDIT (applied by `sekat topics`): how long audit "
                            "records are kept.",
    "retention_appeals_days": "Days a decided appeal (its contact details, grounds, every step) is kept after its "
                              "decision; then the purge removes it from Redis and tombstones it on "
                              "SEKAT_TOPIC_APPEALS. A rejected appeal is kept at least until its identifier may be "
                              "appealed again (SEKAT_APPEAL_REAPPEAL_DAYS). An entry's appeals also go when the "
                              "entry is purged.",
    "purge_interval_s": "How often the group leader purges the entries past their retention (those due only: the "
                        "index keeps them by when they ended, nothing is scanned).",
    "audit_key": "Secret (16+ characters) of the keyed hash (HMAC-SHA256) that stands for an identifier in audit "
                 "records; `sekat api` and `sekat privacy` refuse to start without it. Never logged.",
    "operator": "Who files with `sekat blocklist add/revoke/import` or erases with `sekat privacy erase` when "
                "--operator is not given (a person's or a system's name); they refuse without one.",
    "institutions_file": "`sekat relay`: YAML or JSON file of the institutions it delivers commands to by webhook "
                         "(id, https URL, one or two whsec_ signing secrets; docs/webhooks.md). Checked at start-up.",
    "relay_loopback_http": "`sekat relay`: 1 also accepts http://127.0.0.1 URLs in SEKAT_INSTITUTIONS_FILE (tests "
                           "and local runs); 0 (the default): https only.",
    "relay_web_port": "Port of the relay's web server (/metrics, /healthz), on SEKAT_WEB_HOST.",
    "relay_timeout_ms": "`sekat relay`: how long one webhook attempt may take (connect to full answer) before it "
                        "counts as failed.",
    "relay_retry_base_ms": "`sekat relay`: pause after the first failed attempt; each further failure doubles it "
                           "(up to SEKAT_RELAY_RETRY_MAX_MS), less a random part of up to half.",
    "relay_retry_max_ms": "`sekat relay`: the longest pause between two attempts of one command.",
    "relay_give_up_s": "`sekat relay`: a command still not accepted this many seconds after its first attempt is "
                       "given up and written to SEKAT_TOPIC_UNDELIVERED with the last error.",
    "relay_breaker_failures": "`sekat relay`: consecutive failed attempts to one institution that open its circuit "
                              "breaker (no attempts for SEKAT_RELAY_BREAKER_OPEN_S, then one probe).",
    "relay_breaker_open_s": "`sekat relay`: how long an institution's open breaker holds attempts back before a "
                            "probe.",
    "feedback_window_days": "How long after a command was issued its institution may still send feedback on it "
                            "(the worker keeps each command's addressee and entries this long).",
    "feedback_false_positive_institutions": "false_positive feedback on one entry from this many distinct "
                                            "institutions puts it into review (safety brake shadow mode, a "
                                            "notice on SEKAT_TOPIC_NOTICES); 0: never.",
}
