"""What the rules add to a batch: the pure engine per event, and the rule-state round trips per batch.

    .venv/bin/python -m load_tests.rules_bench [--batch 1000] [--batches 20] [--payees 200]

Starts its own redis-server on a free loopback port (stopped by PID at the
end), builds batches of realistic transfers and calls (a few payees receiving
from many payers, a few bursting callers, ~1 % suspicious calls), and reports
medians: engine µs/event with the shipped policy, and the milliseconds of
``read_transfers`` / ``read_calls`` (one pipeline) and ``write`` (one pipeline)
per batch. Figures on a shared 2-core machine are indicative only.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

from sekat.decode.calls import decode_call
from sekat.decode.transfers import decode_transfer
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.records import Call, Transfer, iso
from sekat.rules import engine
from sekat.rules.policy import DEFAULT_POLICY_FILE, load_policy
from sekat.rules.registry import Context
from sekat.streams.state import RuleStateStore


def make_transfers(n: int, payees: int, now: datetime, rng: random.Random) -> list[Transfer]:
    out = []
    for i in range(n):
        at = now - timedelta(seconds=rng.random() * 60)
        body = {"event_id": f"t-{rng.getrandbits(48):x}", "occurred_at": iso(at),
                "transfer_id": f"DN{i}", "amount": f"{rng.randint(1, 9000)}.00",
                "payer": {"bank": "MBBEMYKL", "account": str(rng.randint(10**11, 10**12 - 1)),
                          "phone": f"+6012{rng.randint(0, 9_999_999):07d}"},
                "payee": {"bank": "CIBBMYKL", "account": str(rng.randint(0, payees - 1)).rjust(10, "0")}}
        t = decode_transfer(orjson.dumps(body))
        assert isinstance(t, Transfer)
        out.append(t)
    return out


def make_calls(n: int, now: datetime, rng: random.Random) -> list[Call]:
    out = []
    for _ in range(n):
        burst = rng.random() < 0.2
        at = now - timedelta(seconds=rng.random() * 30)
        body = {"event_id": f"c-{rng.getrandbits(48):x}", "occurred_at": iso(at),
                "call_id": "x", "operator": "CELCOM",
                "caller": f"+6013{rng.randint(0, 20):07d}" if burst else f"+6013{rng.randint(0, 9_999_999):07d}",
                "callee": f"+6012{rng.randint(0, 9_999_999):07d}",
                "caller_network": "international" if rng.random() < 0.01 else "domestic"}
        c = decode_call(orjson.dumps(body))
        assert isinstance(c, Call)
        out.append(c)
    return out


async def run(args: argparse.Namespace, url: str) -> None:
    rng = random.Random(7)
    policy = load_policy(DEFAULT_POLICY_FILE)
    state = RuleStateStore.from_url(url, "bench:")
    timings: dict[str, list[float]] = {k: [] for k in ("engine_t", "engine_c", "read_t", "read_c", "write")}
    try:
        for _ in range(args.batches):
            now = datetime.now(timezone.utc)
            transfers = make_transfers(args.batch, args.payees, now, rng)
            calls = make_calls(args.batch, now, rng)
            t0 = time.perf_counter()
            obs_t = await state.read_transfers(transfers, policy, now)
            t1 = time.perf_counter()
            obs_c = await state.read_calls(calls, policy, now)
            t2 = time.perf_counter()
            writes = [w for t in transfers for w in engine.decide_transfer(t, Context(now, {}, obs_t), policy).writes]
            t3 = time.perf_counter()
            writes += [w for c in calls for w in engine.decide_call(c, Context(now, {}, obs_c), policy).writes]
            t4 = time.perf_counter()
            await state.write(writes)
            t5 = time.perf_counter()
            timings["read_t"].append((t1 - t0) * 1000)
            timings["read_c"].append((t2 - t1) * 1000)
            timings["engine_t"].append((t3 - t2) / args.batch * 1e6)
            timings["engine_c"].append((t4 - t3) / args.batch * 1e6)
            timings["write"].append((t5 - t4) * 1000)
        stats = await state._redis.info("commandstats")
    finally:
        await state.close()
    server_ms = {name[len("cmdstat_"):]: v["usec_per_call"] / 1000 for name, v in stats.items()
                 if name in ("cmdstat_evalsha", "cmdstat_mget", "cmdstat_set")}
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(f"batch={args.batch} batches={args.batches} payees={args.payees} (medians)")
    print(f"engine, transfers : {med['engine_t']:.1f} µs/event")
    print(f"engine, calls     : {med['engine_c']:.1f} µs/event")
    print(f"state read, transfers: {med['read_t']:.1f} ms/batch ({med['read_t'] * 1000 / args.batch:.1f} µs/event)")
    print(f"state read, calls    : {med['read_c']:.1f} ms/batch ({med['read_c'] * 1000 / args.batch:.1f} µs/event)")
    print(f"state write (both)   : {med['write']:.1f} ms/batch")
    print("inside Redis, ms per call (mean): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(server_ms.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--payees", type=int, default=200)
    args = parser.parse_args()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="sekat-bench-")), free_port())
    server.start()
    try:
        asyncio.run(run(args, server.url))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
