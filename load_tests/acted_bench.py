"""What the release bookkeeping (``sekat.release.acted``) costs on one server and on a Redis Cluster.

Starts its own Redis and a 3-master Redis Cluster on free loopback ports, then per topology times
``ActedStore.record`` (a batch's "who acted": ``--acts`` actions on as many entries) and ``ActedStore.due``
(the release sweep's read, 500 at a time, with ``--entries`` entries due), medians of ``--runs``, and stops
every server by PID. Figures on a shared 2-core machine are indicative.

    .venv/bin/python -m load_tests.acted_bench --batches 1000 --acts 3 --entries 5000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisClusterServers, RedisServer
from sekat.release.acted import ActedStore


async def measure(url: str, args: argparse.Namespace) -> dict[str, float]:
    store = ActedStore.from_url(url, f"ab{time.time_ns()}:")
    batches = [[(f"account:CIBBMYKL:80{(i * args.acts + j) % args.entries:08d}", f"RELEASE_ACCOUNT|B{j % 3}")
                for j in range(args.acts)] for i in range(args.batches)]
    record: list[float] = []
    due: list[float] = []
    try:
        for run in range(args.runs):
            started = time.perf_counter()
            for batch in batches:
                await store.record(batch, 100.0 + run)
            record.append((time.perf_counter() - started) / len(batches) * 1e6)
            started = time.perf_counter()
            for _ in range(50):
                await store.due(1e9, 500)
            due.append((time.perf_counter() - started) / 50 * 1e6)
    finally:
        await store.close()
    return {"record_us": statistics.median(record), "due_500_us": statistics.median(due)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=1000, help="record calls per run")
    parser.add_argument("--acts", type=int, default=3, help="actions (entries) per record call")
    parser.add_argument("--entries", type=int, default=5000, help="distinct entries acted on (all due)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sekat-acted-bench-"))
    one = RedisServer(base / "one", free_port())
    cluster = RedisClusterServers(base / "cluster", [free_port() for _ in range(3)])
    try:
        one.start()
        cluster.start()
        for name, url in (("one server", one.url), ("3-master cluster", cluster.url)):
            result = asyncio.run(measure(url, args))
            print(f"{name:17s} record ({args.acts} acts) {result['record_us']:8.0f} µs   "
                  f"due (500 of {args.entries}) {result['due_500_us']:8.0f} µs")
    finally:
        one.stop()
        cluster.stop()


if __name__ == "__main__":
    main()
