"""Whether each stream makes progress (the screening streams, and ``reports`` for the reports intake, each
consumer keeping its own ``Progress``): a stream that has records waiting and has finished no batch for
``SEKAT_STALL_AFTER_S`` seconds is stalled (``/healthz`` 503, ``sekat_stream_stalled``).

A stream has records waiting when a batch of it is taken and not yet finished (decided, acknowledged by
Kafka, rule state written: a send retried forever keeps its batch here), or when its assigned partitions
have lag (records not yet committed, which also covers a consumer that stops fetching). Its stall clock
starts at whichever came last: its last finished batch, the last time it was seen with nothing waiting,
or the batch that ended such a quiet spell.
So an idle stream is never stalled however long it waits, and a backlog that is being worked through is
not stalled however large.

A stream whose consumer task died (``crashed``) is stalled at once, whatever waits: nothing works on it
until the task is restarted and shows it works. It stays so until it finishes a batch, or the restarted
consumer has run ``SEKAT_STALL_AFTER_S`` and sees nothing waiting (an idle stream), so a task that dies
again each time it is restarted stays reported between its restarts.

Cheap on the hot path: ``taken`` and ``finished`` are a counter and a timestamp per batch; lag is read by
the worker's health timer (every ``SEKAT_METRICS_INTERVAL_S``), never per event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class Progress:
    """Per stream: batches in flight, lag seen at the last look, and when it last made progress."""

    def __init__(self, streams: Iterable[str], stall_after_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self._clock = clock
        now = clock()
        self._progress = dict.fromkeys(streams, now)  # start-up counts as progress
        self._in_flight = dict.fromkeys(self._progress, 0)
        self._lagging: set[str] = set()
        self._crashed: dict[str, float] = {}  # stream -> when its consumer task first died since it last worked
        self._running_since: float | None = now

    def restart(self) -> None:
        """Every stream's stall clock from now (the consumer starts)."""
        now = self._clock()
        self._running_since = now
        for stream in self._progress:
            self._progress[stream] = now

    def crashed(self, streams: Iterable[str]) -> None:
        """The consumer task serving ``streams`` died: they are stalled from now until they work again.

        Batches it had in flight will never finish: they are forgotten (the next owner of their offsets
        decides them again).
        """
        now = self._clock()
        self._running_since = None
        for stream in streams:
            self._crashed.setdefault(stream, now)
            self._in_flight[stream] = 0

    def taken(self, streams: Iterable[str]) -> None:
        """A batch holding records of ``streams`` is being decided.

        A stream that had nothing waiting starts waiting now: its stall clock starts with this batch.
        """
        now = self._clock()
        for stream in streams:
            if not self.waiting(stream):
                self._progress[stream] = now
            self._in_flight[stream] += 1

    def finished(self, streams: Iterable[str]) -> None:
        """A batch taken for ``streams`` is acknowledged and written: progress."""
        now = self._clock()
        for stream in streams:
            self._in_flight[stream] = max(0, self._in_flight[stream] - 1)
            self._progress[stream] = now
            self._crashed.pop(stream, None)

    def saw_lag(self, lagging: Iterable[str]) -> None:
        """The streams whose assigned partitions have uncommitted records, as just read from the broker.

        A stream with none waiting (no lag, no batch in flight) is caught up: its stall clock restarts.
        """
        self._lagging = set(lagging)
        now = self._clock()
        proven = self._running_since is not None and now - self._running_since >= self.stall_after_s
        for stream in self._progress:
            if not self.waiting(stream):
                self._progress[stream] = now
                if proven:
                    self._crashed.pop(stream, None)

    def waiting(self, stream: str) -> bool:
        return self._in_flight[stream] > 0 or stream in self._lagging

    def stalled_for(self, stream: str) -> float:
        """Seconds the stream has had records waiting with no batch finished, or since its consumer task died;
        0 when nothing waits."""
        if stream in self._crashed:
            return max(0.0, self._clock() - self._crashed[stream])
        if not self.waiting(stream):
            return 0.0
        return max(0.0, self._clock() - self._progress[stream])

    def is_stalled(self, stream: str) -> bool:
        if stream in self._crashed:
            return True
        return self.waiting(stream) and self.stalled_for(stream) >= self.stall_after_s

    def is_crashed(self, stream: str) -> bool:
        """Whether the stream's consumer task died and the stream has not worked since."""
        return stream in self._crashed

    def stalled(self) -> list[str]:
        """The streams stalled for at least ``stall_after_s`` seconds, in order."""
        return [stream for stream in self._progress if self.is_stalled(stream)]

    @property
    def streams(self) -> list[str]:
        return list(self._progress)
