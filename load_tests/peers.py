"""Sekat's blocklist path beside its peers: the same job, the same backlog, the same broker, one process each.

    make bench-peers                      # 1,000,000 events, 1,000,000-entry blocklist, 3 rounds
    python -m load_tests.peers --help

The job (``load_tests/peer_apps/job.py``): read a transfer or call, normalise its identifiers, look them up in a
blocklist, produce the commands due for a listed one. The systems:

  lean           an aiokafka loop: getmany, orjson, dict lookup, produce, commit once acknowledged
  quix           a Quix Streams application (StreamingDataFrame apply/to_topic; librdkafka underneath)
  sekat          ``sekat worker`` with the shipped policy's blocklist_match alone (``--policy blocklist-only``
                 of ``load_tests.bench``): validation and dead letters, normalisation, policy, routing,
                 decision records, metrics, the live replica
  sekat-shipped  ``sekat worker`` with the shipped policy, every behaviour rule evaluated in shadow (``--policy
                 shadow`` of ``load_tests.bench``): the whole product's cost, beside the blocklist path's, on the
                 same backlog (shadow rules send no commands, so the job's correctness check still holds)
  faust-batched  a Faust agent over ``stream.take(1000)``, one MGET per batch
  faust-naive    a Faust agent awaiting one Redis GET and one send per event

lean and quix hold the blocklist in a dict loaded from a file before they start; sekat and the Faust agents read
the same entries from Redis (sekat through its replica). Quix Streams runs in a virtualenv of its own
(``.venv-peers``, which ``make bench-peers`` creates): it pins its own confluent-kafka and pydantic.

Every system drains the backlog under a consumer group of its own, writing its commands to a topic of its own.
Its progress is its group's committed offsets, read ten times a second; throughput is the events committed
between 10 % and 90 % of its target over the time between (what start-up and the commit interval do at the ends
is left out), and CPU per event is the process's (all its threads, and its children) over the same span. Quix
commits every ``--quix-commit-interval`` s (its default is 5). The Faust agents are measured over the first
``--faust-events`` events of the backlog and then stopped. Rounds alternate the order of the systems.

Correctness, for each system that drained the whole backlog: every listed event's commands exactly once
(``missing``, ``duplicates``) and nothing else (``false``), from its command topic read from the start.
The last line printed is the result JSON (medians over rounds, and every run); a PNG plot is written beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from load_tests.bench import bench_policy, blocklist_entries, children_cpu_s, cpu_s, load_blocklist, worker_env
from load_tests.generate import generate
from load_tests.harness import RESULTS, ROOT, figure, local_stack, log, spawn, stop_on_sigterm, wait_http
from load_tests.traffic import Population
from sekat.localstack.processes import free_port, stop_process
from sekat.settings import Settings
from sekat.streams.topics import create_topics

SYSTEMS = ("lean", "quix", "sekat", "sekat-shipped", "faust-batched", "faust-naive")
SEKAT_POLICIES = {"sekat": "blocklist-only", "sekat-shipped": "shadow"}
PEERS_VENV = ROOT / ".venv-peers"


class Run:
    """One system draining the backlog: its process, its consumer group, its command topics."""

    def __init__(self, system: str, proc: subprocess.Popen[bytes], group: str, outputs: list[str], target: int,
                 log_path: Path) -> None:
        self.system, self.proc, self.group, self.outputs, self.target = system, proc, group, outputs, target
        self.log_path = log_path

    def measure(self, bootstrap: str, topics: list[str], partitions: int, timeout: float) -> dict[str, Any]:
        """Sample committed offsets and CPU until ``target`` events are committed; the span from 10 % to 90 %."""
        from confluent_kafka import Consumer, TopicPartition

        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": self.group, "enable.auto.commit": False})
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        samples: list[tuple[float, int, float]] = []  # (time, committed, cpu s)
        deadline = time.time() + timeout
        try:
            while not samples or samples[-1][1] < self.target:
                if self.proc.poll() is not None:
                    tail = self.log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{self.system} exited with {self.proc.returncode}:\n{tail}")
                if time.time() > deadline:
                    raise TimeoutError(f"{self.system}: {samples[-1][1] if samples else 0:,} of {self.target:,} "
                                       f"events committed in {timeout:.0f}s")
                try:
                    done = sum(max(0, tp.offset) for tp in reader.committed(tps, timeout=2))
                except Exception:  # noqa: BLE001 - the group is not there yet
                    done = 0
                pid = self.proc.pid
                samples.append((time.time(), done, cpu_s(pid) + sum(children_cpu_s(pid).values())))
                time.sleep(0.1)
        finally:
            reader.close()
        low = next(s for s in samples if s[1] >= 0.1 * self.target)
        high = next(s for s in samples if s[1] >= 0.9 * self.target)
        events = high[1] - low[1]
        seconds = max(1e-6, high[0] - low[0])
        return {"events_per_s": round(events / seconds), "cpu_us_per_event": round((high[2] - low[2]) / events * 1e6, 1),
                "measured_events": events, "target_events": self.target}


def start(system: str, base: Path, conf: dict[str, Any], env: dict[str, str], round_: int) -> Run:
    """Start ``system`` on the backlog; its consumer group and command topics are its own in each round."""
    log_path = base / f"{system}-{round_}.log"
    group = f"peers-{system}-{round_}"
    if system in SEKAT_POLICIES:
        app_id = f"{system}-peers-{round_}"
        env = env | {"SEKAT_APP_ID": app_id, "SEKAT_TOPIC_FREEZE": f"peers.{system}.{round_}.freeze",
                     "SEKAT_TOPIC_BLOCK": f"peers.{system}.{round_}.block",
                     "SEKAT_POLICY_FILE": bench_policy(base, SEKAT_POLICIES[system])}
        settings = Settings.from_environ(env)
        create_topics(settings)
        proc = spawn(["worker"], env, log_path)
        wait_http(f"http://127.0.0.1:{env['SEKAT_WEB_PORT']}/healthz", proc,
                  lambda b: orjson.loads(b).get("replica_ready"), conf["timeout"], log_path)
        return Run(system, proc, f"{app_id}.screen", [settings.topic_freeze, settings.topic_block], conf["events"],
                   log_path)
    output = f"peers.{system}.{round_}.commands"
    create_output(conf["bootstrap"], output, conf["partitions"])
    mine = conf | {"group": group, "output": output}
    if system == "quix":
        python, module = str(PEERS_VENV / "bin" / "python"), "load_tests.peer_apps.quix_app"
    elif system == "lean":
        python, module = sys.executable, "load_tests.peer_apps.lean"
    else:
        python, module = sys.executable, "load_tests.peer_apps.faust_agents"
        mine |= {"mode": system.removeprefix("faust-")}
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([python, "-m", module, orjson.dumps(mine).decode()], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                env={k: v for k, v in os.environ.items() if not k.startswith("SEKAT_")}
                                | {"PYTHONPATH": str(ROOT)})
    target = conf["events"] if not system.startswith("faust") else min(conf["events"], conf["faust_events"])
    return Run(system, proc, group, [output], target, log_path)


def create_output(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)


def read_commands(bootstrap: str, topics: list[str], settle_s: float = 2.0) -> Counter[tuple[str, str]]:
    """(event id, action) -> how many times, from ``topics`` read from the start until ``settle_s`` pass quiet."""
    from confluent_kafka import Consumer

    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"peers-check-{time.time_ns()}",
                       "auto.offset.reset": "earliest", "enable.auto.commit": False})
    reader.subscribe(topics)
    seen: Counter[tuple[str, str]] = Counter()
    quiet_since = time.time()
    try:
        while time.time() - quiet_since < settle_s:
            records = reader.consume(10_000, 0.2)
            for record in records:
                if record.error():
                    continue
                body = orjson.loads(record.value())
                seen[body["event_id"], body["action"]] += 1
            if records:
                quiet_since = time.time()
    finally:
        reader.close()
    return seen


def correctness(expected: dict[str, tuple[tuple[str, ...], int]], seen: Counter[tuple[str, str]]) -> dict[str, int]:
    want = {(event_id, action) for event_id, (actions, _) in expected.items() for action in actions}
    return {"expected_commands": len(want), "missing": len(want - set(seen)),
            "duplicates": sum(n - 1 for pair, n in seen.items() if pair in want and n > 1),
            "false": sum(n for pair, n in seen.items() if pair not in want)}


def write_blocklist_file(path: Path, population: Population, size: int) -> None:
    with open(path, "w", encoding="ascii") as out:
        for key, status, _ in blocklist_entries(population.listed(), size):
            out.write(f"{key}\t{status}\n")


def run(args: argparse.Namespace) -> dict[str, Any]:
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"--systems: unknown {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    if "quix" in systems and not (PEERS_VENV / "bin" / "python").exists():
        raise SystemExit(f"quix needs {PEERS_VENV} (make bench-peers creates it)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with local_stack("sekat-peers-", args.keep, kafka_heap="1g") as (base, kafka, redis_server):
        web_port = free_port()
        env = worker_env(kafka.bootstrap, redis_server.url, "sekat-peers", web_port, args.partitions,
                         bench_policy(base, "blocklist-only"))
        settings = Settings.from_environ(env)
        create_topics(settings)
        topics = {"transfers": settings.topic_transfers, "calls": settings.topic_calls, "sms": settings.topic_sms}
        population = Population(args.customers, args.listed)
        log(f"a {args.blocklist:,}-entry blocklist in Redis and in a file")
        load_blocklist(redis_server.url, settings.redis_prefix, population, args.blocklist)
        write_blocklist_file(base / "blocklist.tsv", population, args.blocklist)
        log(f"producing a backlog of {args.events:,} events")
        backlog = generate(kafka.bootstrap, topics, args.events, None, args.procs, args.listed_share, args.customers,
                           args.listed, run="b")
        conf = {"bootstrap": kafka.bootstrap, "topics": topics, "blocklist": str(base / "blocklist.tsv"),
                "redis_url": redis_server.url, "redis_prefix": settings.redis_prefix, "partitions": args.partitions,
                "events": backlog.sent, "faust_events": args.faust_events, "timeout": args.timeout,
                "quix_commit_interval_s": args.quix_commit_interval,
                "faust_commit_interval_s": args.faust_commit_interval}
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
        for round_ in range(args.rounds):
            order = systems[round_ % len(systems):] + systems[:round_ % len(systems)]
            for system in order:
                log(f"round {round_ + 1}: {system}")
                started = start(system, base, conf, env, round_)
                try:
                    figures = started.measure(kafka.bootstrap, list(topics.values()), args.partitions, args.timeout)
                    if started.target == backlog.sent:
                        time.sleep(1.0)  # the last commands reach the topic
                        figures |= correctness(backlog.expected, read_commands(kafka.bootstrap, started.outputs))
                finally:
                    stop_process(started.proc)
                log(f"{system}: {figures}")
                runs[system].append(figures)
        result = summarise(runs, backlog.sent, args)
        RESULTS.mkdir(parents=True, exist_ok=True)
        png = RESULTS / f"peers-{stamp}.png"
        plot(png, result["median"])
        result["plot"] = str(png.relative_to(ROOT))
        (RESULTS / f"peers-{stamp}.json").write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return result


def summarise(runs: dict[str, list[dict[str, Any]]], events: int, args: argparse.Namespace) -> dict[str, Any]:
    median = {system: {"events_per_s": round(statistics.median(r["events_per_s"] for r in rs)),
                       "cpu_us_per_event": round(statistics.median(r["cpu_us_per_event"] for r in rs), 1),
                       "correct": all(r.get("missing") == 0 and r.get("duplicates") == 0 and r.get("false") == 0
                                      for r in rs) if all("missing" in r for r in rs) else None}
              for system, rs in runs.items() if rs}
    ratios = {}
    for mine in SEKAT_POLICIES:
        for peer in ("quix", "lean"):
            if mine in median and peer in median:
                ratios[f"{mine.replace('-', '_')}_to_{peer}"] = round(
                    median[mine]["events_per_s"] / median[peer]["events_per_s"], 3)
    return {"median": median, **ratios, "runs": runs, "events": events, "blocklist_entries": args.blocklist,
            "partitions": args.partitions, "rounds": args.rounds, "faust_events": args.faust_events,
            "quix_commit_interval_s": args.quix_commit_interval, "sekat_policies": SEKAT_POLICIES,
            "load_before": os.getloadavg()[0]}


def plot(path: Path, median: dict[str, dict[str, Any]]) -> None:
    names = list(median)
    with figure(path, 1, 2, size=(11, 4)) as (_, (left, right)):
        left.bar(names, [median[n]["events_per_s"] for n in names], color="tab:blue")
        left.set_ylabel("events/s (median)")
        left.set_yscale("log")
        right.bar(names, [median[n]["cpu_us_per_event"] for n in names], color="tab:orange")
        right.set_ylabel("CPU µs per event (median)")
        right.set_yscale("log")
        for ax in (left, right):
            ax.tick_params(axis="x", rotation=20)


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--events", type=int, default=1_000_000, help="backlog events")
    parser.add_argument("--blocklist", type=int, default=1_000_000, help="entries in the blocklist")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--faust-events", type=int, default=100_000,
                        help="the Faust agents are measured over this many events of the backlog, then stopped")
    parser.add_argument("--quix-commit-interval", type=float, default=0.25, help="seconds between Quix checkpoints")
    parser.add_argument("--faust-commit-interval", type=float, default=0.5,
                        help="seconds between the Faust agents' commits (broker_commit_interval)")
    parser.add_argument("--listed-share", type=float, default=0.01)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--listed", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--procs", type=int, default=2, help="generator processes")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    print(orjson.dumps(run(parser.parse_args())).decode())


if __name__ == "__main__":
    main()
