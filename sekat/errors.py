"""Sekat's exception tree: the errors that cross a boundary, each transient or permanent.

A *transient* error says the same call may succeed later: the caller retries
with backoff (the worker keeps its batch, the API answers 503). A *permanent*
error says the input or the configuration is wrong and retrying cannot help:
the caller reports it, with a message naming the setting or field at fault.

    SekatError
    ├── ConfigError            permanent: a SEKAT_* setting is invalid (names it)
    ├── InvalidIdentifier      permanent: a phone number or account cannot be normalised
    ├── InvalidReport          permanent: a report field is invalid (names the field)
    ├── PolicyError            permanent: the rules policy file is invalid (names rule and field)
    ├── BlocklistUnavailable   transient: Redis or Kafka did not answer or acknowledge; retry with backoff
    │   ├── IndexNotBuilt      transient: the index is not marked built (a rebuild is replaying sekat.reports)
    │   ├── NotAsked           transient: Redis timed out a moment ago and was not asked (``connection.Unanswered``)
    │   └── RebuildBusy        transient: another process holds the rebuild lock (``sekat.streams.rebuild``)
    └── CommandRefused         retried: Kafka refuses a command for good (topic size limit or ACL); a command
                               is never dropped, so its batch is re-sent until an operator fixes the topic

The two input errors are also ``ValueError``s. Bad *events* are not
exceptions: decoding returns a ``Rejection`` (see ``sekat.records``) that goes
to the dead-letter topic.
"""

from __future__ import annotations


class SekatError(Exception):
    """The root of Sekat's own errors."""


class ConfigError(SekatError):
    """Permanent: the setting ``setting`` (a ``SEKAT_*`` name) is invalid."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class InvalidIdentifier(SekatError, ValueError):
    """Permanent: a phone number or account cannot be normalised."""


class InvalidReport(SekatError, ValueError):
    """Permanent: the report's ``field`` is invalid; ``reason`` is the stable rejection code."""

    def __init__(self, field: str, message: str, reason: str = "invalid_value") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason


class PolicyError(SekatError):
    """Permanent: the policy is invalid; ``rule`` and ``field`` name what is wrong (empty when not rule-specific)."""

    def __init__(self, rule: str, field: str, message: str) -> None:
        where = ".".join(part for part in (rule, field) if part)
        super().__init__(f"policy {where}: {message}" if where else f"policy: {message}")
        self.rule = rule
        self.field = field


class BlocklistUnavailable(SekatError):
    """Transient: Redis, or Kafka where a write must be acknowledged, did not answer; retry with backoff."""


class NotAsked(BlocklistUnavailable):
    """Transient: Redis timed out a moment ago, so it was not asked; asking again within the quiet period is
    answered the same way, so a caller with a way on without Redis takes it at once rather than retrying."""


class IndexNotBuilt(BlocklistUnavailable):
    """Transient: the index is not marked built (Redis came back empty, or a rebuild is replaying the topic)."""


class CommandRefused(SekatError):
    """Kafka refuses a command with a permanent error (the topic's size limit or an ACL): retried, never dropped.

    Dropping a command would let the scam through; the batch waits (and says why in the log) until an operator
    fixes the topic's ``max.message.bytes`` or the worker's ACL.
    """
