"""What the benchmarks share: private servers, ``sekat`` processes, the command reader, the ground-truth check,
the safety brake's figures, percentiles, plots.

A benchmark starts everything it measures against on free loopback ports and
stops it by PID when it ends, also when it is stopped by SIGTERM
(``stop_on_sigterm``). Results and plots go to ``load_tests/results/`` (not
committed).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from sekat.brake.store import BrakeStore, dimension
from sekat.localstack.kafka_servers import KafkaBroker
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "load_tests" / "results"
Stack = tuple[Path, KafkaBroker, RedisServer]  # working directory, broker, Redis


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def check(expected: dict[str, tuple[tuple[str, ...], int]], seen: list[tuple[str, str, int]]
          ) -> tuple[float, int, list[float]]:
    """Recall over expected events, false commands, and latencies (ms) of expected commands."""
    got: dict[str, set[str]] = {}
    latencies: list[float] = []
    false = 0
    for event_id, action, ts in seen:
        want = expected.get(event_id)
        if want is None or action not in want[0]:
            false += 1
            continue
        if action not in got.setdefault(event_id, set()):
            latencies.append(ts - want[1])
        got[event_id].add(action)
    hit = sum(1 for e, (actions, _) in expected.items() if set(actions) <= got.get(e, set()))
    return (hit / len(expected) if expected else 1.0), false, latencies


def brake_tripped(redis_url: str, prefix: str) -> dict[str, dict[str, Any]]:
    """The targets the safety brake holds in shadow, as its store in Redis has them after a run."""
    async def read() -> dict[str, dict[str, Any]]:
        store = BrakeStore.from_url(redis_url, prefix)
        try:
            return await store.tripped()
        finally:
            await store.close()

    return asyncio.run(read())


def reset_brake(redis_url: str, prefix: str, window_s: int = 60) -> None:
    """Forget the brake's trips and log, and the counts of the windows around now: the next run starts as a
    fresh deployment does (the scale benchmark's worker counts share one prefix and blocklist)."""
    from sekat.blocklist.connection import async_client

    async def clear() -> None:
        client = async_client(redis_url)
        try:
            index = int(time.time() // window_s)
            keys = [f"{prefix}brake:tripped", f"{prefix}brake:log",
                    *(f"{prefix}brake:n:{i}" for i in range(index - 2, index + 2))]
            pipe = client.pipeline(transaction=False)
            for key in keys:  # one key a command: each goes to its own node on a Redis Cluster
                pipe.delete(key)
            await pipe.execute()
        finally:
            await client.aclose()

    asyncio.run(clear())


def brake_figures(tripped: Mapping[str, Mapping[str, Any]], expected: dict[str, tuple[tuple[str, ...], int]],
                  seen: list[tuple[str, str, int]], subjects: Mapping[str, str]) -> dict[str, Any]:
    """What the safety brake did in a run, for its result JSON.

    ``brake_trips`` (and by dimension, and the targets) from the brake's store after the run; ``recall`` over
    every listed event and ``recall_unbraked`` over the listed events whose entry the brake did not trip
    (``subjects``: event id -> the listed identifier key its commands are due for), and how many were braked.
    A braked entry's events before its trip were acted on; they count as braked all the same.
    """
    by_dimension = {d: 0 for d in ("entry", "rule", "source")}
    for target in tripped:
        by_dimension[dimension(target)] = by_dimension.get(dimension(target), 0) + 1
    braked = {target[len("entry:"):] for target in tripped if dimension(target) == "entry"}
    unbraked = {e: want for e, want in expected.items() if subjects.get(e) not in braked}
    recall, _, _ = check(expected, seen)
    recall_unbraked, _, _ = check(unbraked, seen)
    return {"brake_trips": len(tripped), "brake_trips_by_dimension": by_dimension,
            "braked_targets": sorted(tripped)[:20],
            "recall": round(recall, 6), "recall_unbraked": round(recall_unbraked, 6),
            "braked_events": len(expected) - len(unbraked)}


def stop_on_sigterm() -> None:
    """Turn SIGTERM (e.g. from ``timeout``) into an exit that runs every ``finally``: what was started stops."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def remove_or_keep(base: Path, keep: bool) -> None:
    """Remove a benchmark's working directory (logs, data), or say where it is kept."""
    if keep:
        log(f"kept {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def local_stack(prefix: str, keep: bool = False, kafka_heap: str = "") -> Iterator[Stack]:
    """A private KRaft broker and Redis in a new working directory; both stopped by PID on the way out."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    kafka = KafkaBroker(base / "kafka", free_port(), free_port())
    if kafka_heap:
        kafka.heap = kafka_heap
    redis = RedisServer(base / "redis", free_port())
    try:
        redis.start()
        kafka.start()
        yield base, kafka, redis
    finally:
        kafka.stop()
        redis.stop()
        remove_or_keep(base, keep)


def spawn(args: Sequence[str], env: dict[str, str], log_path: Path,
          runner: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """``python [runner] -m sekat.cli <args>`` in a session of its own, output to ``log_path``.

    Its environment is this process's without any ``SEKAT_*`` variable, plus ``env``: a benchmark's
    settings are exactly the ones it names. ``runner`` puts e.g. a profiler in front of the module.
    """
    full = {k: v for k, v in os.environ.items() if not k.startswith("SEKAT_")} | env
    with open(log_path, "wb") as out:
        return subprocess.Popen([sys.executable, *runner, "-m", "sekat.cli", *args], env=full, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def wait_http(url: str, proc: subprocess.Popen[bytes], ok: Callable[[bytes], Any], timeout: float = 90,
              log_path: Path | None = None) -> None:
    """Poll ``url`` until ``ok(body)`` holds; fail at once (with the log's tail) if ``proc`` exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = f":\n{log_path.read_text(errors='replace')[-3000:]}" if log_path is not None else ""
            raise RuntimeError(f"{url}: process exited with {proc.returncode}{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if ok(resp.read()):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready in {timeout}s")


async def api_key(settings: Settings, agency: str = "NSRC", scopes: tuple[str, ...] = ("report", "confirm")) -> str:
    """A fresh agency API key (its token) in the settings' Redis."""
    from sekat.api.keys import ApiKeyStore
    from sekat.blocklist.store import BlocklistStore

    store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
    try:
        _, token = await ApiKeyStore(store.client, settings.redis_prefix).create(agency, scopes)
        return token
    finally:
        await store.close()


class Commands(threading.Thread):
    """Reads the command topics: (event_id, action, record timestamp ms) for every command."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time_ns()}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe(topics)
        self.seen: list[tuple[str, str, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for m in self.consumer.consume(10_000, 0.2):
                if m.error():
                    continue
                body = orjson.loads(m.value())
                self.seen.append((body["event_id"], body["action"], m.timestamp()[1]))
        self.consumer.close()


@contextmanager
def figure(path: Path, rows: int = 1, cols: int = 1, size: tuple[float, float] = (8, 4),
           **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """A matplotlib figure and its axes, drawn without a display and written to ``path`` (PNG) on the way out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=size, **subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
