"""Expiry policy: how long a report keeps an identifier listed, by status and source; renewals.

``SEKAT_EXPIRY_DAYS`` is a list of ``[SOURCE/]status=days``, e.g.
``reported=30,confirmed=365,PDRM/confirmed=730,SEKAT-RULE/reported=7``: the
most specific rule wins (source and status, then status alone); 0 means no
expiry. It applies when a report is filed (API, CLI, import) without its own
``ttl_days``: the days are stamped on the report, so the topic stays the
source of truth and a rebuild does not depend on the policy in force.

A renewal (``POST /v1/renewals``, an authority with the ``confirm`` scope)
adds a report of the entry's current status with the policy's days for the
renewing agency, extending the expiry from now; at most
``SEKAT_RENEWALS_MAX`` renewals between two revocations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sekat.errors import ConfigError

MAX_DAYS = 3650
STATUSES = ("reported", "confirmed")


@dataclass(frozen=True)
class ExpiryPolicy:
    by_status: Mapping[str, int] = field(default_factory=dict)
    by_source: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (SOURCE, status) -> days
    max_renewals: int = 3

    def days(self, status: str, source: str) -> int:
        """Days a report of ``status`` filed by ``source`` keeps its identifier listed (0: no expiry)."""
        found = self.by_source.get((source.strip().upper(), status))
        return found if found is not None else self.by_status.get(status, 0)


def parse_expiry(text: str, max_renewals: int = 3, setting: str = "SEKAT_EXPIRY_DAYS") -> ExpiryPolicy:
    """``[SOURCE/]status=days[,...]`` → ``ExpiryPolicy``; a bad item raises ``ConfigError`` naming ``setting``."""
    by_status: dict[str, int] = {}
    by_source: dict[tuple[str, str], int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, days = part.partition("=")
        source, slash, status = name.strip().rpartition("/")
        status = status.strip().lower()
        if not sep or status not in STATUSES or (slash and not source.strip()):
            raise ConfigError(setting, f"expected [SOURCE/]status=days with status reported or confirmed, got {part!r}")
        if not days.strip().isdigit() or int(days) > MAX_DAYS:
            raise ConfigError(setting, f"{name.strip()}: days must be a whole number from 0 to {MAX_DAYS}, got {days.strip()!r}")
        target: dict = by_source if slash else by_status
        rule = (source.strip().upper(), status) if slash else status
        if rule in target:
            raise ConfigError(setting, f"{name.strip()} is given twice")
        target[rule] = int(days)
    return ExpiryPolicy(by_status, by_source, max_renewals)
