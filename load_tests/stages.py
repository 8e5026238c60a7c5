"""Where a screened event's time goes: a per-stage cost table, from a profile and from micro-benchmarks.

    .venv/bin/python -m load_tests.stages --profile load_tests/results/profile-<stamp>.txt --cpu-us 19.6
    .venv/bin/python -m load_tests.stages --events 50000          # the micro-benchmarks alone

From a profile (``load_tests.bench --profile`` writes the collapsed stacks): each of the worker's working
samples is given to the stage of the innermost frame that names one (``STAGES``; frames of the event loop,
aiokafka's connection and Faust/mode name none and are looked through), and the stage's share of the samples
times the worker's CPU per event (``--cpu-us``: the run's ``worker_cpu_us_per_event``) is its µs per event.
Samples of a thread waiting (``WAITS``: the event loop's select, an idle thread-pool worker) are left out.

Micro-benchmarks, in this process, on the benchmark generator's events (load_tests/traffic.py: Zipf-skewed
customers, 40 % calls): decoding with cold identifier caches (every identifier new to the worker, as when
it starts) and warm ones, one identifier's normalisation when not cached, and the blocklist-only policy's
decision for an event whose identifiers are not listed (nearly every event): by the engine, and by the
screening shell's fast path, which leaves the engine out for such an event.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from load_tests.bench import WAITS, bench_policy, frame_name

# (stage, test on a frame as ``file:function``), innermost frame first; the first stage a frame names wins.
STAGES: list[tuple[str, Callable[[str], bool]]] = [
    ("gc (heap keeper)", lambda f: f.startswith("streams/heap.py")),
    ("metrics", lambda f: f.startswith(("prometheus_client/", "metrics/worker.py"))
     or f.endswith("PendingBatch.observe")),
    ("normalise", lambda f: f.startswith(("sekat/identifiers.py", "phonenumbers/"))),
    ("decode", lambda f: f.startswith("decode/") or f.endswith("Screen._sort")),
    ("look up", lambda f: f.startswith("blocklist/") or f.endswith(("Screen._lookup_all", "Screen._lookup"))
     or (f.startswith(("sekat/records.py", "sekat/urls.py")) and f.endswith((".keys", ".identifiers", ".domains")))
     or f.startswith("streams/screening.py:Screen.start.<locals>.<listcomp>")),
    ("decide", lambda f: f.startswith(("rules/", "release/sweep.py", "brake/"))
     or f.endswith("Screen._decide_all")),
    ("produce", lambda f: f.startswith("aiokafka/producer/")
     or f.endswith(("OutputBatch.produce", "OutputBatch.acked", "PendingBatch.acked"))),
    ("encode", lambda f: f.startswith("streams/output.py")),
    ("commit", lambda f: f.endswith(("ScreeningConsumer._commit", "Pipeline._commit_latest"))
     or f.startswith("aiokafka/consumer/group_coordinator.py")),
    ("fetch", lambda f: f.startswith(("aiokafka/consumer/", "aiokafka/record/"))
     or f.endswith("ScreeningConsumer._fetched")),
    ("rule state, who acted (Redis)", lambda f: f.startswith(("redis/", "state/", "release/acted.py"))),
]
ORDER = ["fetch", "decode", "normalise", "look up", "decide", "encode", "produce", "commit", "metrics",
         "gc (heap keeper)", "rule state, who acted (Redis)", "event loop, sockets, other"]


def stage_of(names: list[str]) -> str:
    for name in reversed(names):
        for stage, test in STAGES:
            if test(name):
                return stage
    return "event loop, sockets, other"


def profile_stages(stacks: Path) -> tuple[Counter[str], int]:
    """Working samples per stage, and the samples of blocking waits left out."""
    per: Counter[str] = Counter()
    waiting = 0
    for line in stacks.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        names = [frame_name(f) for f in stack.split(";")]
        if names[-1] in WAITS:
            waiting += int(count)
            continue
        per[stage_of(names)] += int(count)
    return per, waiting


def _timed(fn: Callable[[], Any], n: int) -> float:
    """µs of this thread's CPU per item (not wall time: on a shared machine the thread waits for a core)."""
    started = time.thread_time()
    fn()
    return (time.thread_time() - started) / n * 1e6


def micro(events: int) -> dict[str, float]:
    from load_tests.traffic import Population, Traffic
    from sekat import identifiers
    from sekat.decode.calls import decode_call
    from sekat.decode.transfers import decode_transfer
    from sekat.records import Call, Transfer
    from sekat.rules import engine
    from sekat.rules.policy import load_policy
    from sekat.rules.registry import Context, Observations
    from sekat.streams.screening import Screen

    traffic = Traffic(Population(200_000, 2_000), seed=7)
    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    rendered = [traffic.event(seq, stamp) for seq in range(events)]
    transfers = [value for value, _, kind, _, _ in rendered if kind == "transfers"]
    calls = [value for value, _, kind, _, _ in rendered if kind == "calls"]
    caches = (identifiers.normalise_bank, identifiers.normalise_account, identifiers.normalise_phone)

    def decode_all() -> list[Any]:
        return [decode_transfer(v) for v in transfers] + [decode_call(v) for v in calls]

    for cache in caches:
        cache.cache_clear()
    cold = _timed(decode_all, events)
    warm = _timed(decode_all, events)
    records = decode_all()
    # One identifier normalised when not cached: the calls' raw caller numbers, each once, caches cleared.
    raw_phones = list(dict.fromkeys(orjson.loads(v)["caller"] for v in calls))
    identifiers.normalise_phone.cache_clear()
    phone_miss = _timed(lambda: [identifiers.normalise_phone(p, "MY") for p in raw_phones], len(raw_phones))
    phone_hit = _timed(lambda: [identifiers.normalise_phone(p, "MY") for p in raw_phones], len(raw_phones))

    with tempfile.TemporaryDirectory() as base:
        policy = load_policy(Path(bench_policy(Path(base), "blocklist-only")))
    now = datetime.now(timezone.utc)
    ctx = Context(now, {}, Observations())
    valid = [r for r in records if isinstance(r, (Transfer, Call))]

    def decide_all() -> None:
        for r in valid:
            (engine.decide_transfer if isinstance(r, Transfer) else engine.decide_call)(r, ctx, policy)

    decide = _timed(decide_all, len(valid))
    # What the screening shell does instead under that policy (``Screen._judged``): finding the events with a
    # listed identifier among a batch's (here none of them; a batch of the benchmark's has a few), which leaves
    # every other one an ALLOW without the engine.
    listed = {"phone:+0": None}
    by_stream: dict[str, list[Any]] = {"transfers": [r for r in valid if isinstance(r, Transfer)],
                                       "calls": [r for r in valid if isinstance(r, Call)]}
    keyed = {stream: ([(None, r) for r in rs], [r.keys() for r in rs])
             for stream, rs in by_stream.items()}

    def judge_all() -> None:
        for stream, (pairs, keys) in keyed.items():
            Screen._judged(SimpleNamespace(stream=stream), pairs, keys, listed, policy,  # type: ignore[arg-type]
                           SimpleNamespace(counts={}))  # type: ignore[arg-type]

    judge = _timed(judge_all, len(valid))
    return {"decode, cold caches": cold, "decode, warm caches": warm, "normalise a phone, not cached": phone_miss,
            "normalise a phone, cached": phone_hit, "decide (blocklist-only, not listed)": decide,
            "decide in the shell (blocklist-only, not listed)": judge}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", type=Path, help="collapsed stacks from load_tests.bench --profile")
    parser.add_argument("--cpu-us", type=float, help="the same run's worker_cpu_us_per_event")
    parser.add_argument("--events", type=int, default=50_000, help="events for the micro-benchmarks (0: none)")
    args = parser.parse_args()
    if args.profile:
        per, waiting = profile_stages(args.profile)
        work = sum(per.values())
        print(f"{args.profile}: {work:,} working samples ({waiting:,} waiting left out)")
        for stage in ORDER:
            share = per.get(stage, 0) / max(1, work)
            cost = f"{share * args.cpu_us:6.2f} µs" if args.cpu_us else ""
            print(f"  {stage:32s} {share:6.1%}  {cost}")
    if args.events:
        for name, us in micro(args.events).items():
            print(f"  {name:40s} {us:6.2f} µs")


if __name__ == "__main__":
    main()
