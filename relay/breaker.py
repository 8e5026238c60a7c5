"""When the relay tries an institution again: exponential backoff with jitter, and a circuit breaker.

``backoff(attempt)`` is the pause after failed attempt ``attempt`` (1, 2, ...): ``base * 2**(attempt-1)``
capped at ``cap``, of which a random half is taken off ("equal jitter"), so that lanes failing together
do not retry together.

``Breaker`` is one per institution, shared by every partition's lane to it. Closed, every lane may try.
After ``failures`` consecutive failed attempts it opens: no lane tries for ``open_s`` seconds. Then it is
half-open: one lane's attempt is the probe, the others wait; the probe's success closes it, its failure
opens it again. Time comes from an injected clock (``time.monotonic`` in the relay).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable


def backoff(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    step = min(cap, base * 2 ** min(attempt - 1, 30))
    return step / 2 + step / 2 * rand()


class Breaker:
    def __init__(self, failures: int, open_s: float, clock: Callable[[], float]) -> None:
        self.failures_to_open = failures
        self.open_s = open_s
        self.clock = clock
        self.failures = 0
        self.open_until: float | None = None  # None: closed
        self.probing = False
        self.last_error = ""

    @property
    def is_open(self) -> bool:
        return self.open_until is not None

    def may_try(self) -> bool:
        """Whether an attempt may start now; in half-open, True once (the probe) until it is recorded."""
        if self.open_until is None:
            return True
        if self.clock() >= self.open_until and not self.probing:
            self.probing = True
            return True
        return False

    def record(self, ok: bool, error: str | None = None) -> None:
        if error:
            self.last_error = error
        if ok:
            self.failures, self.open_until, self.probing = 0, None, False
            return
        self.failures += 1
        if self.probing or self.failures >= self.failures_to_open:
            self.open_until, self.probing = self.clock() + self.open_s, False

    async def wait_turn(self, deadline: float, poll_s: float = 0.05) -> bool:
        """Wait until an attempt may start (True) or ``deadline`` passes first (False)."""
        while not self.may_try():
            now = self.clock()
            if now >= deadline:
                return False
            wake = self.open_until if self.open_until is not None and now < self.open_until else now + poll_s
            await asyncio.sleep(max(0.0, min(wake, deadline) - now))
        return True
