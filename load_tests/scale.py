"""Scale-out benchmark: 1, 2 and 4 workers of one consumer group against a 3-broker cluster and a Redis Cluster.

    make bench-scale                  # starts its own 3-broker KRaft cluster and 3-master Redis Cluster
    python -m load_tests.scale --help
    python -m load_tests.scale --bootstrap 127.0.0.1:19092,... --redis-url redis+cluster://...   # e.g. make up-cluster

A thin driver over ``load_tests/bench.py``: the same generator, blocklist loader, metrics scraper and
ground-truth check, and the harness's command reader. Per worker count N, on topics of its own (replication factor 3,
``min.insync.replicas=2``) and its own consumer group:
  1. start     N ``sekat worker`` processes; wait until the group is stable (every input partition assigned to
               exactly one worker, read from the workers' ``sekat_consumer_end_offset`` series);
  2. backlog   --events events produced as fast as possible; throughput = events decided by the whole group
               per second from the end of production until the backlog is drained (so neither start-up nor
               the generator's own CPU share is in the figure); if the group kept up with the generator (under
               10 % left when production ended), the rate over the whole backlog, marked as a lower bound
               (``throughput_bound``: ``generator``);
  3. steady    --rate events/s for --steady-seconds: decision latency (input record -> command record) p50/p99;
  4. check     every listed event's commands arrived (recall) and no command was false; the safety brake's
               trips (``brake_trips``, from its store; the workers run the shipped limits, and each worker count
               starts with none) and the recall over the listed events whose entry it did not trip
               (``recall_unbraked``).
The last line printed is the result JSON; a PNG plot (throughput and p99 per worker count) is written beside it.

On a 2-core machine N workers, 3 brokers and 3 Redis masters share two cores: the figures show how the group
behaves, not how it would scale on N machines.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from load_tests.bench import Scraper, bench_policy, load_blocklist, policy_rules, traffic_arguments
from load_tests.generate import generate
from load_tests.harness import (RESULTS, ROOT, Commands, brake_figures, brake_tripped, check, figure, log, percentile,
                                remove_or_keep, reset_brake, spawn, stop_on_sigterm)
from load_tests.traffic import Population
from sekat.localstack.kafka_servers import KafkaCluster
from sekat.localstack.processes import free_port, stop_process
from sekat.localstack.redis_servers import RedisClusterServers
from sekat.settings import Settings
from sekat.streams.topics import create_topics

ASSIGNED = re.compile(rb'^sekat_consumer_end_offset\{([^}]*)\}', re.M)
LABEL = re.compile(rb'(\w+)="([^"]*)"')


class GroupScraper(Scraper):
    """Decided events summed over every worker of the group, sampled together."""

    def __init__(self, ports: Sequence[int]) -> None:
        super().__init__(ports[0])
        self.urls = [f"http://127.0.0.1:{p}/metrics" for p in ports]
        self.pages: list[bytes] = [b""] * len(ports)

    def run(self) -> None:
        while not self.stop.is_set():
            for i, url in enumerate(self.urls):
                try:
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        self.pages[i] = resp.read()
                except OSError:
                    pass
            self.samples.append((time.time(), sum(float(v) for page in self.pages
                                                  for v in self.pattern.findall(page))))
            self.deadletters = sum(float(v) for page in self.pages for v in self.dead.findall(page))
            self.stop.wait(0.2)

    def assignment(self, topics: Sequence[str]) -> list[set[tuple[str, int]]]:
        """Input partitions each worker reports as assigned (its lag series)."""
        out = []
        for page in self.pages:
            labels = [dict(LABEL.findall(series)) for series in ASSIGNED.findall(page)]
            out.append({(d[b"topic"].decode(), int(d[b"partition"])) for d in labels
                        if d.get(b"topic", b"").decode() in topics})
        return out


def wait_stable(scraper: GroupScraper, procs: Sequence[subprocess.Popen[bytes]], topics: Sequence[str],
                partitions: int, timeout: float, logs: Sequence[Path]) -> float:
    """Seconds until every input partition is assigned to exactly one worker (and every worker has some)."""
    started = time.time()
    want = {(t, p) for t in topics for p in range(partitions)}
    while time.time() - started < timeout:
        for proc, path in zip(procs, logs):
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{path.read_text()[-3000:]}")
        parts = scraper.assignment(topics)
        if all(parts) and sum(len(p) for p in parts) == len(want) and set().union(*parts) == want:
            return time.time() - started
        time.sleep(0.2)
    raise TimeoutError(f"consumer group not stable in {timeout}s: {scraper.assignment(topics)}")


def run_workers(n: int, *, bootstrap: str, redis_url: str, prefix: str, base: Path, args: argparse.Namespace,
                replication: int) -> dict[str, Any]:
    """One worker count: start the group, drain a backlog, offer a steady rate, check every command.

    The blocklist of ``Population(args.customers, args.listed)`` must already be loaded under ``prefix``.
    """
    name = f"scale-w{n}-{time.time_ns() % 10**8}"
    env = {"SEKAT_KAFKA_BOOTSTRAP": bootstrap, "SEKAT_REDIS_URL": redis_url, "SEKAT_REDIS_PREFIX": prefix,
           "SEKAT_APP_ID": name, "SEKAT_TOPIC_PARTITIONS": str(args.partitions),
           "SEKAT_TOPIC_REPLICATION": str(replication), "SEKAT_LOG_LEVEL": "warning",
           "SEKAT_METRICS_INTERVAL_S": "2", "SEKAT_POLICY_FILE": bench_policy(base, args.policy)}
    for topic in ("transfers", "calls", "sms", "reports", "freeze", "block", "decisions", "deadletter"):
        env[f"SEKAT_TOPIC_{topic.upper()}"] = f"{name}.{topic}"
    settings = Settings.from_environ(env)
    create_topics(settings)
    reset_brake(redis_url, prefix, settings.brake_window_s)  # each worker count starts with no trips
    topics = {"transfers": settings.topic_transfers, "calls": settings.topic_calls, "sms": settings.topic_sms}
    commands = Commands(bootstrap, [settings.topic_freeze, settings.topic_block])
    commands.start()
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []
    ports = [free_port() for _ in range(n)]
    scraper = GroupScraper(ports)
    try:
        for i, port in enumerate(ports):
            logs.append(base / f"{name}-{i}.log")
            procs.append(spawn(["worker"], env | {"SEKAT_WEB_PORT": str(port)}, logs[-1]))
        scraper.start()
        stable_s = wait_stable(scraper, procs, list(topics.values()), args.partitions, args.timeout, logs)
        log(f"{n} worker(s): group stable in {stable_s:.1f}s; producing {args.events:,} events")

        backlog = generate(bootstrap, topics, args.events, None, args.procs, args.listed_share, args.customers,
                           args.listed, run=f"b{n}")
        t_produced, at_produced = time.time(), scraper.count()
        scraper.wait_for(backlog.sent, args.timeout)
        t_drained = next(t for t, c in scraper.samples if c >= backlog.sent)
        left = backlog.sent - at_produced
        if left > 0.1 * backlog.sent:
            throughput, bound = left / max(1e-6, t_drained - t_produced), "workers"
        else:  # the group kept up with the generator: its rate over the whole backlog is a lower bound
            t_first = next(t for t, c in scraper.samples if c > 0)
            throughput, bound = backlog.sent / max(1e-6, t_drained - t_first), "generator"
        log(f"{n} worker(s): {throughput:,.0f} events/s ({bound}-bound; {left:,.0f} events after production ended)")

        steady = generate(bootstrap, topics, int(args.rate * args.steady_seconds), args.rate, 1,
                          args.steady_listed_share, args.customers, args.listed, run=f"s{n}")
        scraper.wait_for(backlog.sent + steady.sent, args.timeout)
        expected = dict(backlog.expected) | dict(steady.expected)
        deadline = time.time() + 30
        recall, false, _ = check(expected, commands.seen)
        while recall < 1.0 and time.time() < deadline:  # the last commands reach the reader (braked ones never do)
            time.sleep(0.5)
            recall, false, _ = check(expected, commands.seen)
        _, _, latencies = check(steady.expected, [c for c in commands.seen if c[0].startswith(f"s{n}")])
        brake = brake_figures(brake_tripped(redis_url, prefix), expected, commands.seen,
                              backlog.subjects | steady.subjects)
        log(f"{n} worker(s): recall {brake['recall']:.4f}, {brake['recall_unbraked']:.4f} without the "
            f"{brake['braked_events']:,} events of braked entries; {brake['brake_trips']} brake trip(s)")
        ids = [c[0] + "|" + c[1] for c in commands.seen]
        return {"workers": n, "throughput_eps": round(throughput), "per_worker_eps": round(throughput / n),
                "throughput_bound": bound,
                "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
                "steady_rate_eps": args.rate, "latency_samples": len(latencies),
                # recall over every listed event, and over those whose entry the brake did not trip (the
                # workers run the shipped brake limits: the Zipf-busiest listed entries may trip them)
                **brake, "false_commands": false, "expected_events": len(expected),
                "commands_seen": len(commands.seen), "duplicate_commands": len(ids) - len(set(ids)),
                "deadletters": int(scraper.deadletters), "group_stable_s": round(stable_s, 1),
                "backlog_events": backlog.sent, "decided_after_production": round(left)}
    finally:
        scraper.stop.set()
        commands.stop.set()
        for proc in procs:
            stop_process(proc)
        commands.join(10)


def plot(path: Path, runs: list[dict[str, Any]]) -> None:
    workers = [r["workers"] for r in runs]
    with figure(path, 1, 2, (10, 4)) as (fig, (ax1, ax2)):
        ax1.plot(workers, [r["throughput_eps"] for r in runs], marker="o", label="group")
        ax1.plot(workers, [r["per_worker_eps"] for r in runs], marker="s", ls="--", label="per worker")
        for r in runs:
            if r["throughput_bound"] == "generator":
                ax1.annotate("≥ (generator-bound)", (r["workers"], r["throughput_eps"]), fontsize=8)
        ax1.set_xlabel("workers (one consumer group)")
        ax1.set_ylabel("events decided / s")
        ax1.set_xticks(workers)
        ax1.legend()
        ax1.set_title("throughput (backlog drain)")
        ax2.plot(workers, [r["p99_ms"] or 0 for r in runs], marker="o", color="red", label="p99")
        ax2.plot(workers, [r["p50_ms"] or 0 for r in runs], marker="o", color="grey", label="p50")
        ax2.set_xlabel("workers")
        ax2.set_ylabel(f"ms at {runs[0]['steady_rate_eps']:,.0f} events/s offered")
        ax2.set_xticks(workers)
        ax2.legend()
        ax2.set_yscale("log")
        ax2.set_title("decision latency")
        fig.suptitle("Sekat on a 3-broker KRaft cluster + 3-master Redis Cluster (one 2-core machine)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="sekat-scale-"))
    kafka = redis = None
    try:
        bootstrap, redis_url = args.bootstrap, args.redis_url
        if not bootstrap:
            kafka = KafkaCluster(base / "kafka", [free_port() for _ in range(3)],
                                 controller_ports=[free_port() for _ in range(3)])
            log("starting a 3-broker KRaft cluster")
            kafka.start()
            bootstrap = kafka.bootstrap
        if not redis_url:
            redis = RedisClusterServers(base / "redis", [free_port() for _ in range(3)])
            log("starting a 3-master Redis Cluster")
            redis.start()
            redis_url = redis.url
        replication = min(3, len(bootstrap.split(",")))
        prefix = f"scale{time.time_ns() % 10**8}:"
        log(f"loading a {args.blocklist:,}-entry blocklist")
        load_blocklist(redis_url, prefix, Population(args.customers, args.listed), args.blocklist)
        runs = [run_workers(n, bootstrap=bootstrap, redis_url=redis_url, prefix=prefix, base=base, args=args,
                            replication=replication) for n in args.workers]
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        png = RESULTS / f"scale-{stamp}.png"
        plot(png, runs)
        result = {"runs": runs, "brokers": len(bootstrap.split(",")), "replication": replication,
                  "redis": "cluster" if redis_url.startswith(("redis+cluster", "rediss+cluster")) else "single",
                  "partitions": args.partitions, "policy": args.policy,
                  "policy_rules": policy_rules(bench_policy(base, args.policy)), "blocklist_entries": args.blocklist,
                  "plot": str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png)}
        (RESULTS / f"scale-{stamp}.json").write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return result
    finally:
        if kafka is not None:
            kafka.stop()
        if redis is not None:
            redis.stop()
        remove_or_keep(base, args.keep)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4],
                   help="worker counts, comma-separated (default 1,2,4); partitions: at least the most workers")
    p.add_argument("--bootstrap", default="", help="use this Kafka cluster (default: start 3 brokers)")
    p.add_argument("--redis-url", default="", help="use this Redis (default: start a 3-master Redis Cluster)")
    traffic_arguments(p, blocklist=100_000, events=300_000, rate=5_000, steady_seconds=20, partitions=8, timeout=300)
    return p


def main(argv: list[str] | None = None) -> None:
    stop_on_sigterm()
    result = run(parser().parse_args(argv))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
