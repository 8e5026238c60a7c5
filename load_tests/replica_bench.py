"""What a big blocklist costs a worker: time to load the local replica and the memory it takes.

    python -m load_tests.replica_bench [--entries 10000000]

Starts its own Redis on a free loopback port, writes ``--entries`` index entries (the worker's format, as
``load_tests.bench`` does), then, in a fresh process, loads a ``Replica`` the way a starting worker does and
reports the load time and the process's resident memory before and after (the worker's own baseline is
about 110 MB). Prints the result JSON as the last line.
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

from load_tests.bench import load_blocklist, log
from load_tests.traffic import Population
from sekat.localstack import RedisServer, free_port

PROBE = """
import re, sys, time, json
from pathlib import Path
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
import numpy, orjson, redis  # the worker has these loaded before the replica starts
from blocklist.replica import Replica
before = rss()
r = Replica(sys.argv[1], "sekat:")
t = time.perf_counter()
r.load_snapshot()
took = time.perf_counter() - t
hits = r.candidates(["phone:+601000000001", "account:OCBCMYKL:000000000002"], time.time())
print(json.dumps({"load_s": round(took, 2), "rss_before_mb": round(before, 1), "rss_after_mb": round(rss(), 1),
                  "entries": r.stats.entries, "probe_hits": len(hits)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000_000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sekat-replica-"))
    server = RedisServer(base / "redis", free_port())
    try:
        server.start()
        log(f"writing {args.entries:,} entries")
        write_s = load_blocklist(server.url, "sekat:", Population(1000, 100), args.entries)
        log(f"written in {write_s:.0f}s; loading a replica in a fresh process")
        out = subprocess.run([sys.executable, "-c", PROBE, server.url], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result.update(entries_written=args.entries, write_s=round(write_s, 1),
                      replica_mb=round(result["rss_after_mb"] - result["rss_before_mb"], 1))
        print(orjson.dumps(result).decode())
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
