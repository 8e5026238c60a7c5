"""Hot reload of the policy file: a running worker picks up a change without a restart.

A worker timer calls ``check`` every second; it stats the file and reloads it
when its modification time or size changed. A valid file replaces the policy
for the next batch; an invalid one is refused (logged with the rule and field
at fault, counted in ``sekat_policy_reloads_total{result="refused"}``) and the
previous policy stays in force. At start-up an invalid policy raises
``PolicyError`` and the worker does not start.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sekat.metrics.worker import WorkerMetrics
from sekat.rules.policy import Policy, load_policy

from sekat.errors import PolicyError

log = logging.getLogger(__name__)


class PolicyWatch:
    def __init__(self, path: str | Path, metrics: WorkerMetrics) -> None:
        self.path = Path(path)
        self.metrics = metrics
        self._stamp = self._stat()
        self.current: Policy = load_policy(self.path)
        log.info("policy %r from %s: %s", self.current.version, self.path, self.current.describe())

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def __call__(self) -> Policy:
        return self.current

    def check(self) -> bool:
        """Reload if the file changed; True when a new policy took effect."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            policy = load_policy(self.path)
        except PolicyError as exc:
            self.metrics.policy_reloads.labels("refused").inc()
            log.error("policy change refused, %r stays in force: %s", self.current.version, exc)
            return False
        self.current = policy
        self.metrics.policy_reloads.labels("applied").inc()
        log.info("policy %r applied from %s: %s", policy.version, self.path, policy.describe())
        return True
