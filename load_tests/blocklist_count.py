"""How long ``BlocklistStore.counts()`` (the sekat_blocklist_entries gauge) takes for N entries.

Starts its own Redis on a free loopback port, fills it with N phone/account
entries written the way the store writes them (pipelined SETs, no change
stream), times ``counts()`` a few times, and stops Redis by PID.

    .venv/bin/python -m load_tests.blocklist_count --entries 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import redis

from sekat.blocklist.store import BlocklistStore
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.records import Entry, Status


def fill(url: str, entries: int, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    statuses = (Status.CONFIRMED, Status.REPORTED, Status.REVOKED)
    pipe = client.pipeline(transaction=False)
    for i in range(entries):
        key = f"phone:+6012{i:08d}" if i % 2 else f"account:MBBEMYKL:{i:012d}"
        entry = Entry(key=key, status=statuses[i % 3], source="PDRM", reason="bench")
        pipe.set(f"{prefix}bl:{key}", orjson.dumps(entry.to_json()))
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    client.close()


async def time_counts(url: str, prefix: str, runs: int) -> list[float]:
    store = BlocklistStore.from_url(url, prefix)
    times = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            counts = await store.counts()
            times.append(time.perf_counter() - started)
        print(f"counts: {dict(sorted(counts.items()))}")
    finally:
        await store.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sekat-bench-") as tmp:
        server = RedisServer(Path(tmp) / "redis", free_port())
        server.start()
        try:
            fill(server.url, args.entries, "bench:")
            times = asyncio.run(time_counts(server.url, "bench:", args.runs))
        finally:
            server.stop()
    median = statistics.median(times)
    print(f"{args.entries} entries: counts() median {median:.2f} s over {args.runs} runs "
          f"({median / args.entries * 1e6:.1f} us/entry)")


if __name__ == "__main__":
    main()
