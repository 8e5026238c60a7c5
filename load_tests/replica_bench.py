"""What a big blocklist costs a worker: time to load the local replica and the memory it takes.

    python -m load_tests.replica_bench [--entries 10000000] [--changes 10000] [--expiring 0.0]

Starts its own Redis on a free loopback port, writes ``--entries`` index entries (the worker's format, as
``load_tests.bench`` does), then starts a ``Replica`` the way a starting worker does (``Replica.start``),
each in a fresh process:

    first    no stored snapshot yet: reads the whole index (and stores the snapshot for the next ones)
    next     after ``--changes`` changes to the index, announced on the change stream: loads the stored
             snapshot and catches up from the stream

and reports each one's time to ready and the process's resident memory before, after and at its peak
(the worker's own baseline is about 110 MB). ``load_s``/``replica_mb`` are the first worker's (a read of
the index, the figures of earlier versions); ``next_load_s``/``next_replica_mb`` the next one's. Prints the
result JSON as the last line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from blocklist.connection import sync_client
from load_tests.bench import load_blocklist, log
from load_tests.traffic import Population
from sekat.localstack import RedisServer, free_port

PROBE = """
import asyncio, re, sys, time, json
from pathlib import Path
def rss(field="VmRSS"):
    return int(re.search(field + r":\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
import numpy, orjson, redis  # the worker has these loaded before the replica starts
from blocklist.replica import Replica
before = rss()
r = Replica(sys.argv[1], "sekat:")
async def start():
    await r.start()
    await r.close()
t = time.perf_counter()
asyncio.run(start())
took = time.perf_counter() - t
hits = r.candidates(["phone:+601000000001", "account:OCBCMYKL:000000000002", "phone:+601000000003"], time.time())
print(json.dumps({"load_s": round(took, 2), "rss_before_mb": round(before, 1), "rss_after_mb": round(rss(), 1),
                  "rss_peak_mb": round(rss("VmHWM"), 1), "entries": r.stats.entries, "probe_hits": len(hits),
                  "changes_applied": r.stats.changes_applied}))
"""


def probe(url: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, url], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["replica_mb"] = round(result["rss_after_mb"] - result["rss_before_mb"], 1)
    return result


def change(url: str, prefix: str, n: int) -> None:
    """``n`` changes as the index makes them: the entry written, then its key announced on the stream.

    Every fourth one revokes a filler entry the first worker loaded (phone:+601000000001 among them),
    the others list new numbers: the next worker must see both.
    """
    client = sync_client(url)
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        key = f"phone:+6010{2 * i + 1:08d}" if i % 4 == 0 else f"phone:+6017{i:08d}"
        status = "revoked" if i % 4 == 0 else "reported"
        pipe.set(f"{prefix}bl:{key}", orjson.dumps({"key": key, "status": status, "source": "BENCH",
                                                    "reason": "benchmark", "expires_at": ""}))
        pipe.xadd(f"{prefix}bl:changes", {"key": key})
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--changes", type=int, default=10_000, help="changes between the first and next worker")
    parser.add_argument("--expiring", type=float, default=0.0,
                        help="share of the entries with an expiry (the default expiry policy gives every one)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sekat-replica-"))
    server = RedisServer(base / "redis", free_port())
    try:
        server.start()
        log(f"writing {args.entries:,} entries")
        write_s = load_blocklist(server.url, "sekat:", Population(1000, 100), args.entries, args.expiring)
        sync_client(server.url).set("sekat:index:built", "bench")  # a built index, as a worker finds it
        log(f"written in {write_s:.0f}s; the first worker reads the index (fresh process)")
        result = probe(server.url)
        log(f"first worker ready in {result['load_s']}s; {args.changes:,} changes, then the next worker")
        change(server.url, "sekat:", args.changes)
        following = probe(server.url)
        result.update({f"next_{k}": v for k, v in following.items()})
        result.update(entries_written=args.entries, write_s=round(write_s, 1), changes=args.changes,
                      expiring=args.expiring)
        print(orjson.dumps(result).decode())
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
