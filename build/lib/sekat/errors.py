"""Sekat's exception tree. Each error says whether retrying can help.

    SekatError
    ├── ConfigError            permanent: a SEKAT_* setting is invalid (names it)
    ├── InvalidIdentifier      permanent: a phone number or account cannot be normalised
    ├── ProtectedIdentifier    permanent: emergency/short numbers can never be listed
    ├── InvalidReport          permanent: a report field is invalid (names the field)
    ├── BlocklistUnavailable   transient: Redis did not answer; retry with backoff
    │   └── IndexNotBuilt      transient: the index is being rebuilt from sekat.reports; retry
    └── PolicyError            permanent: the rules policy file is invalid (names rule and field)

Bad *events* are not exceptions: decoding returns a ``Rejection`` (see
``sekat.records``) that goes to the dead-letter topic.
"""

from __future__ import annotations


class SekatError(Exception):
    transient = False


class ConfigError(SekatError):
    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


class InvalidIdentifier(SekatError, ValueError):
    pass


class ProtectedIdentifier(SekatError, ValueError):
    pass


class InvalidReport(SekatError, ValueError):
    def __init__(self, field: str, message: str, reason: str = "invalid_value") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason


class BlocklistUnavailable(SekatError):
    transient = True


class IndexNotBuilt(BlocklistUnavailable):
    """The index is not marked built (Redis came back empty, or a rebuild is replaying the topic)."""


class PolicyError(SekatError):
    """The policy file is invalid; ``rule`` and ``field`` name what is wrong (empty when not rule-specific)."""

    def __init__(self, rule: str, field: str, message: str) -> None:
        where = ".".join(part for part in (rule, field) if part)
        super().__init__(f"policy {where}: {message}" if where else f"policy: {message}")
        self.rule = rule
        self.field = field
