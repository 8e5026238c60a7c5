"""Reading ahead: what a worker reads from Redis to build its replica is fetched by threads while it is parsed.

Both ways a starting worker gets its copy of the index wait on Redis (one core) while the parsing and hashing
of what comes back run in this process (another): the SCAN pass over the index (``blocklist.index_scan``) and
the GETs of a stored snapshot's chunks (``blocklist.replica_snapshot``). Run back to back the two costs add
up; overlapped, the slower one sets the pace.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

_T = TypeVar("_T")


def prefetched(*sources: Iterator[_T], depth: int = 4) -> Iterator[_T]:
    """The items of ``sources``, each produced by a thread of its own up to ``depth`` items ahead of the
    consumer (several sources: their items interleaved as they come). An exception in a source is raised
    here; a consumer that stops early stops the threads."""
    out: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer has stopped

    def produce(source: Iterator[_T]) -> None:
        try:
            for item in source:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put((False, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # the consumer stopped early: the source's own threads stop now, not when collected

    producers = [threading.Thread(target=produce, args=(source,), name="replica-snapshot-read", daemon=True)
                 for source in sources]
    for producer in producers:
        producer.start()
    try:
        running = len(producers)
        while running:
            more, item = out.get()
            if not more:
                if item is not None:
                    raise item
                running -= 1
                continue
            yield item
    finally:
        stop.set()
        for producer in producers:
            producer.join()
