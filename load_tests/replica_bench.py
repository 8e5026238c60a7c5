"""What a big blocklist costs a worker: time to load the local replica and the memory it takes.

    python -m load_tests.replica_bench [--entries 10000000] [--changes 10000] [--expiring 0.0]
                                       [--big-changes 250000] [--stated 0]

Starts its own Redis on a free loopback port, writes ``--entries`` index entries (the worker's format, as
``load_tests.bench`` does), then starts a ``Replica`` the way a starting worker does (``Replica.start``),
each in a fresh process:

    first    no stored snapshot yet: reads the whole index (and stores the snapshot for the next ones)
    next     after ``--changes`` changes to the index, announced on the change stream: loads the stored
             snapshot and catches up from the stream
    after a big change
             a worker is running (loaded, following, keeping the stored snapshot fresh as ``sekat worker``
             does); ``--big-changes`` more changes are made (more than SEKAT_REPLICA_SNAPSHOT_MAX_BEHIND:
             a bulk import), so the stored snapshot no longer does for a starting worker until the running
             one refreshes it in the background; then one more worker starts

and reports each one's time to ready (``ready_s``: screening, from the index itself until the replica is
loaded; ``hits_when_ready``: what its first lookup then found), to loaded (``load_s``) and the process's
resident memory before, after and at its peak (the worker's own baseline is about 110 MB).
``load_s``/``replica_mb`` are the first worker's (a read of the index, the figures of earlier versions);
``next_load_s``/``next_replica_mb`` the next one's. Prints the
result JSON as the last line. The ``big_`` figures are the last case's: ``big_refreshed_after_s`` from the
end of the changes until the stored snapshot would do again, ``big_next_*`` the worker started then (without
the refresh it would read the whole index, as the first one did), ``big_running_*`` the running worker's
memory while it followed the changes, its refresh's time and its hot path while the refresh ran: the time
of ``candidates`` on 1,000 keys and of a Redis PING, sampled every 20 ms, during the refresh and while idle
(neither refreshing nor applying changes).
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

from load_tests.bench import load_blocklist
from load_tests.harness import log
from load_tests.traffic import Population
from sekat.blocklist import replica_snapshot as stored
from sekat.blocklist.connection import sync_client
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer

PROBE = """
import asyncio, re, sys, time, json
from pathlib import Path
def rss(field="VmRSS"):
    return int(re.search(field + r":\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
import numpy, orjson, redis  # the worker has these loaded before the replica starts
from sekat.blocklist.replica import Replica
before = rss()
r = Replica(sys.argv[1], "sekat:")
ready = {}
async def start():
    task = asyncio.create_task(r.start())
    await r.ready.wait()
    ready["s"] = time.perf_counter() - t
    found = await r.lookup_many(["phone:+601000000001", "account:OCBCMYKL:000000000002", "phone:+601000000003"])
    ready["hits"] = len(found)
    await task
    await r.close()
t = time.perf_counter()
asyncio.run(start())
took = time.perf_counter() - t
loaded_from = r.stats.loaded_from
hits = r.candidates(["phone:+601000000001", "account:OCBCMYKL:000000000002", "phone:+601000000003"], time.time())
print(json.dumps({"ready_s": round(ready["s"], 2), "hits_when_ready": ready["hits"], "load_s": round(took, 2), "rss_before_mb": round(before, 1), "rss_after_mb": round(rss(), 1),
                  "rss_peak_mb": round(rss("VmHWM"), 1), "entries": r.stats.entries, "probe_hits": len(hits),
                  "changes_applied": r.stats.changes_applied, "loaded_from": loaded_from}))
"""


RUNNER = """
import asyncio, re, sys, time, json
from pathlib import Path
import numpy
def rss(field="VmRSS"):
    return int(re.search(field + r":\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024
from sekat.blocklist.replica import Replica
from sekat.blocklist.connection import async_client
r = Replica(sys.argv[1], "sekat:")
spans = []
refresh = r.refresh_stored_snapshot
def timed_refresh():
    t = time.monotonic()
    done = refresh()
    if done:
        spans.append((t, time.monotonic()))
    return done
r.refresh_stored_snapshot = timed_refresh
keys = [f"phone:+6010{2 * i:08d}" for i in range(1000)]
samples = []
async def sample(client):
    while True:
        t = time.monotonic()
        t0 = time.perf_counter()
        r.candidates(keys, time.time())
        t1 = time.perf_counter()
        await client.ping()
        samples.append((t, t1 - t0, time.perf_counter() - t1, r.stats.changes_applied))
        await asyncio.sleep(0.02)
def stats(values):
    v = numpy.array(values) * 1000 if values else numpy.zeros(1)
    return {"n": len(values), "p50_ms": round(float(numpy.percentile(v, 50)), 3),
            "p99_ms": round(float(numpy.percentile(v, 99)), 3), "max_ms": round(float(v.max()), 3)}
async def main():
    await r.start()
    client = async_client(sys.argv[1])
    tasks = [asyncio.create_task(c) for c in (r.follow(), r.keep_stored_snapshot(), sample(client))]
    print(json.dumps({"ready": True, "rss_mb": round(rss(), 1)}), flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    inside = lambda t: any(a <= t <= b for a, b in spans)
    during = [s for s in samples if inside(s[0])]
    following = {i for i in range(1, len(samples)) if samples[i][3] != samples[i - 1][3]}
    outside = [s for i, s in enumerate(samples) if not inside(s[0]) and i not in following]
    print(json.dumps({
        "rss_mb": round(rss(), 1), "rss_peak_mb": round(rss("VmHWM"), 1), "entries": r.stats.entries,
        "changes_applied": r.stats.changes_applied, "refreshes": len(spans),
        "refresh_s": [round(b - a, 1) for a, b in spans],
        "candidates_during_refresh": stats([s[1] for s in during]),
        "candidates_idle": stats([s[1] for s in outside]),
        "ping_during_refresh": stats([s[2] for s in during]),
        "ping_idle": stats([s[2] for s in outside])}), flush=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.aclose()
    await r.close()
asyncio.run(main())
"""


def probe(url: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, url], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["replica_mb"] = round(result["rss_after_mb"] - result["rss_before_mb"], 1)
    return result


def change(url: str, prefix: str, n: int, start: int = 0, stated: int = 0) -> None:
    """``n`` changes as the index makes them: the entry written, then its key announced on the stream.

    Every fourth one revokes a filler entry the first worker loaded (phone:+601000000001 among them),
    the others list new numbers: the next worker must see both. ``start``: the first change's number
    (later changes list other numbers). ``stated``: announced as the reports agent announces a batch it
    applies, ``stated`` keys a record with their states (the replica applies them without reading the
    entries); 0: one key a record, without its state (each re-read by the replica).
    """
    client = sync_client(url)
    pipe = client.pipeline(transaction=False)
    keys: list[str] = []
    states: list[str] = []
    for i in range(start, start + n):
        key = f"phone:+6010{2 * i + 1:08d}" if i % 4 == 0 else f"phone:+6017{i:08d}"
        status = "revoked" if i % 4 == 0 else "reported"
        pipe.set(f"{prefix}bl:{key}", orjson.dumps({"key": key, "status": status, "source": "BENCH",
                                                    "reason": "benchmark", "expires_at": ""}))
        if not stated:
            pipe.xadd(f"{prefix}bl:changes", {"key": key})
        else:
            keys.append(key)
            states.append(f"{status} ")
            if len(keys) == stated:
                pipe.xadd(f"{prefix}bl:changes", {"keys": "\n".join(keys), "states": "\n".join(states)})
                keys, states = [], []
        if i % 10_000 == 9_999:
            pipe.execute()
    if keys:
        pipe.xadd(f"{prefix}bl:changes", {"keys": "\n".join(keys), "states": "\n".join(states)})
    pipe.execute()
    client.close()


def after_a_big_change(url: str, done: int, n: int, stated: int = 0, timeout_s: float = 900.0) -> dict:
    """A worker runs while ``n`` changes are made; how soon the stored snapshot does again, and the next worker."""
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert runner.stdin is not None and runner.stdout is not None
        started = json.loads(runner.stdout.readline())
        log(f"a worker is running ({started['rss_mb']} MB); {n:,} changes")
        t = time.perf_counter()
        change(url, "sekat:", n, start=done, stated=stated)
        changed_s = time.perf_counter() - t
        log(f"changes made in {changed_s:.0f}s; waiting for the stored snapshot to do again")
        client = sync_client(url)
        t = time.perf_counter()
        while stored.usable(client, "sekat:", "sekat:bl:changes", "bench", stored.MAX_BEHIND) is None:
            if time.perf_counter() - t > timeout_s:
                raise SystemExit(f"the stored snapshot was not refreshed within {timeout_s:.0f}s")
            time.sleep(0.5)
        refreshed_s = time.perf_counter() - t
        client.close()
        log(f"it does again {refreshed_s:.0f}s after the changes; the next worker starts")
        nxt = probe(url)
        runner.stdin.write("report\n")
        runner.stdin.flush()
        running = json.loads(runner.stdout.readline())
        runner.stdin.close()
        runner.wait(60)
        return {"big_changes_s": round(changed_s, 1), "big_refreshed_after_s": round(refreshed_s, 1),
                **{f"big_next_{k}": v for k, v in nxt.items()},
                **{f"big_running_{k}": v for k, v in running.items()}, "big_running_rss_start_mb": started["rss_mb"]}
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--changes", type=int, default=10_000, help="changes between the first and next worker")
    parser.add_argument("--big-changes", type=int, default=250_000,
                        help="changes made while a worker runs, for the 'after a big change' case (0: skip it)")
    parser.add_argument("--stated", type=int, default=0,
                        help="the big change announced as the reports agent does: this many keys a record with their "
                             "states (an import); 0: one key a record, each re-read by the replica")
    parser.add_argument("--expiring", type=float, default=0.0,
                        help="share of the entries with an expiry (the default expiry policy gives every one)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sekat-replica-"))
    server = RedisServer(base / "redis", free_port())
    try:
        server.start()
        log(f"writing {args.entries:,} entries")
        write_s = load_blocklist(server.url, "sekat:", Population(1000, 100), args.entries, args.expiring)
        log(f"written in {write_s:.0f}s; the first worker reads the index (fresh process)")
        result = probe(server.url)
        log(f"first worker ready in {result['load_s']}s; {args.changes:,} changes, then the next worker")
        change(server.url, "sekat:", args.changes)
        following = probe(server.url)
        result.update({f"next_{k}": v for k, v in following.items()})
        if args.big_changes:
            result.update(after_a_big_change(server.url, args.changes, args.big_changes, args.stated))
        result.update(entries_written=args.entries, write_s=round(write_s, 1), changes=args.changes,
                      big_changes=args.big_changes, stated=args.stated, expiring=args.expiring)
        print(orjson.dumps(result).decode())
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
