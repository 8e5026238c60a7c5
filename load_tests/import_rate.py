"""Measure ``sekat blocklist import`` on a generated file (default 1,000,000 rows).

    .venv/bin/python -m load_tests.import_rate --rows 1000000 [--format csv|jsonl] [--apply] [--json FILE]

Starts its own Kafka broker and Redis on free loopback ports (the same
``sekat.localstack`` the tests use), generates the file in /tmp, runs the
real ``sekat blocklist import`` command against a fresh reports topic and
prints how long Kafka took to acknowledge every report. With ``--apply`` a
``sekat worker`` (``--workers N``: N of them) is started (and ready) first and
the import runs with ``--wait-applied``: the figures are then also the seconds
from the command's start until the index held every report and until every
worker's replica had them, and the workers' CPU seconds meanwhile. ``--profile`` / ``--profile-import``
record py-spy stacks of the worker / the import. Everything it starts is
stopped by PID.

``--screening-rate R`` (with ``--apply``) also screens calls at R events/s from the workers' start to the
import's end, 1 in CALL_LISTED_EVERY from one of 1,000 numbers listed beforehand (by a small import): the
latency of their BLOCK_CALL commands (input record sent -> command record's timestamp) is screening's p99
over ``--quiet-s`` seconds before the import and while it runs (until in effect), and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BANKS = ("MBBEMYKL", "CIBBMYKL", "PHBMMYKL", "RHBBMYKL", "HLBBMYKL")
SOURCES = ("PDRM", "NSRC", "MBBEMYKL", "CIBBMYKL", "MCMC")


def generate(path: Path, rows: int, fmt: str, seed: int = 7) -> None:
    rnd = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        if fmt == "csv":
            out.write("kind,value,bank,status,source,case_ref,reason,ttl_days,report_id\n")
        for i in range(rows):
            # Every row a distinct identifier, so the index ends with exactly `rows` entries.
            if i % 2:
                kind, value, bank = "phone", f"+6011{rnd.randrange(10) * 10**7 + i // 2:08d}"[:13], ""
            else:
                kind, value, bank = "account", f"{rnd.randrange(1, 10)}{i // 2:011d}", BANKS[i % len(BANKS)]
            status = "confirmed" if i % 3 == 0 else "reported"
            source, case_ref, ttl = SOURCES[i % len(SOURCES)], f"BULK/{i // 1000}", (i % 4) * 90
            if fmt == "csv":
                out.write(f"{kind},{value},{bank},{status},{source},{case_ref},bulk load,{ttl},imp-{i}\n")
            else:
                bank_part = f'"bank":"{bank}",' if bank else ""
                out.write(f'{{"kind":"{kind}","value":"{value}",{bank_part}"status":"{status}","source":"{source}",'
                          f'"case_ref":"{case_ref}","reason":"bulk load","ttl_days":{ttl},"report_id":"imp-{i}"}}\n')


CALL_LISTED_EVERY = 20  # 1 call in 20 from a listed number: a command whose latency is measured
LISTED_CALLERS = [f"+6017{i:07d}" for i in range(1000)]


class CallTraffic(threading.Thread):
    """Calls at ``rate`` a second onto the calls topic (10 ms ticks), remembering when each listed one was sent."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        super().__init__(daemon=True)
        from confluent_kafka import Producer

        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "acks": "all"})
        self.topic, self.rate = topic, rate
        self.sent: dict[str, float] = {}  # event id of a listed call -> ms sent
        self.stop = threading.Event()
        self.count = 0

    def run(self) -> None:
        import orjson

        started = time.perf_counter()
        while not self.stop.is_set():
            due = int((time.perf_counter() - started) * self.rate)
            while self.count < due:
                n = self.count
                listed = n % CALL_LISTED_EVERY == 0
                caller = LISTED_CALLERS[n // CALL_LISTED_EVERY % len(LISTED_CALLERS)] if listed else \
                    f"+6012{n % 10_000_000:07d}"
                now = time.time()
                event_id = f"call-{n}"
                body = orjson.dumps({"event_id": event_id, "occurred_at": datetime.fromtimestamp(
                    now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "call_id": f"c{n}", "operator": "CELCOM", "caller": caller, "callee": "+60123456780"})
                self.producer.produce(self.topic, body, key=caller.encode(), timestamp=int(now * 1000))
                if listed:
                    self.sent[event_id] = now * 1000
                self.count += 1
            self.producer.poll(0)
            time.sleep(0.01)
        self.producer.flush(10)


def latencies(traffic: CallTraffic, commands: Any, since: float, until: float) -> list[float]:
    """Command latencies (ms) of the listed calls sent between ``since`` and ``until`` (epoch s)."""
    out = []
    for event_id, _action, at_ms in list(commands.seen):
        sent = traffic.sent.get(event_id)
        if sent is not None and since * 1000 <= sent <= until * 1000:
            out.append(at_ms - sent)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--apply", action="store_true", help="also time the reports agent applying them")
    parser.add_argument("--profile", help="with --apply: py-spy the worker's stacks (raw) into this file")
    parser.add_argument("--profile-import", help="py-spy the import command's stacks (raw) into this file")
    parser.add_argument("--json", help="write the figures to this file as JSON")
    parser.add_argument("--env", action="append", default=[], metavar="SEKAT_X=V", help="a setting for every process")
    parser.add_argument("--workers", type=int, default=1, help="with --apply: workers running during the import")
    parser.add_argument("--profile-s", type=int, default=30, help="seconds of the worker to profile")
    parser.add_argument("--screening-rate", type=float, default=0.0,
                        help="with --apply: calls a second screened before and during the import (p99 quiet vs during)")
    parser.add_argument("--quiet-s", type=float, default=20.0, help="seconds of screening measured before the import")
    args = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT):  # stop what we started, whoever interrupts us
        signal.signal(sig, lambda *_: sys.exit(130))

    import orjson

    from load_tests.harness import Commands, percentile, spawn, wait_http
    from sekat.localstack.kafka_servers import KafkaBroker
    from sekat.localstack.processes import free_port, stop_process
    from sekat.localstack.redis_servers import RedisServer
    from sekat.settings import Settings
    from sekat.streams.topics import create_topics

    base = Path(tempfile.mkdtemp(prefix="sekat-import-"))
    data = base / f"reports.{args.format}"
    started = time.perf_counter()
    generate(data, args.rows, args.format)
    print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f}s: {data} "
          f"({data.stat().st_size / 1e6:.0f} MB)", flush=True)
    kafka = KafkaBroker(base / "kafka", free_port(), free_port())
    redis = RedisServer(base / "redis", free_port())
    workers: list[subprocess.Popen[bytes]] = []
    try:
        redis.start()
        kafka.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEKAT_")}
        env.update(SEKAT_KAFKA_BOOTSTRAP=kafka.bootstrap, SEKAT_REDIS_URL=redis.url, SEKAT_APP_ID="sekat-import",
                   SEKAT_WEB_PORT=str(free_port()), SEKAT_LOG_LEVEL="warning", SEKAT_OPERATOR="import-rate")
        env.update(item.split("=", 1) for item in args.env)
        settings = Settings.from_environ(env)
        create_topics(settings)
        if args.apply:
            ports = [free_port() for _ in range(args.workers)]
            for i, port in enumerate(ports):
                workers.append(spawn(["worker"], env | {"SEKAT_WEB_PORT": str(port)}, base / f"worker{i}.log"))
            for i, port in enumerate(ports):
                wait_http(f"http://127.0.0.1:{port}/healthz", workers[i], lambda b: orjson.loads(b).get("replica_ready"),
                          timeout=120, log_path=base / f"worker{i}.log")
        traffic = commands = None
        if args.apply and args.screening_rate > 0:
            listed = base / "listed.csv"
            listed.write_text("kind,value,status,source\n" + "".join(f"phone,{n},confirmed,PDRM\n"
                                                                      for n in LISTED_CALLERS))
            subprocess.run([sys.executable, "-m", "sekat.cli", "blocklist", "import", str(listed), "--wait-applied"],
                           env=env, capture_output=True, check=True)
            commands = Commands(kafka.bootstrap, [settings.topic_block])
            commands.start()
            traffic = CallTraffic(kafka.bootstrap, settings.topic_calls, args.screening_rate)
            traffic.start()
            time.sleep(5)  # warm-up: the first paced requests, the worker's first batches
            quiet_from = time.time()
            time.sleep(args.quiet_s)
            quiet_to = time.time()
        spy = str(Path(sys.executable).parent / "py-spy")
        profiler = None
        if args.profile and workers:  # the worker's reports agent and replica while the import runs
            profiler = subprocess.Popen([spy, "record", "-o", args.profile, "-r", "50", "--nonblocking",
                                         "--format", "raw", "-d", str(args.profile_s), "-p", str(workers[0].pid)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        worker_cpu = sum(cpu_seconds(w.pid) for w in workers)
        command = [sys.executable, "-m", "sekat.cli", "blocklist", "import", str(data),
                   *(["--wait-applied", "--wait-timeout", "1800"] if args.apply else [])]
        if args.profile_import:
            command = [spy, "record", "-o", args.profile_import, "-r", "100", "--format", "raw", "--", *command]
        started, import_from = time.perf_counter(), time.time()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        print(result.stdout.strip())
        if result.returncode != 0:
            print(result.stderr[-2000:], file=sys.stderr)
            return 1
        figures = {"rows": args.rows, "format": args.format, "command_s": round(elapsed, 1),
                   "acknowledged_s": float(re.search(r"rows in ([\d.]+)s", result.stdout).group(1))}
        print(f"import command took {elapsed:.1f}s (process start included)")
        if profiler is not None:
            profiler.wait()
        if workers:
            applied = re.search(r"applied to the index ([\d.]+)s .* \((\d+) workers?\) ([\d.]+)s", result.stdout)
            figures.update(indexed_s=float(applied.group(1)), in_effect_s=float(applied.group(3)),
                           workers=len(workers),
                           worker_cpu_s=round(sum(cpu_seconds(w.pid) for w in workers) - worker_cpu, 1))
            print(f"workers' CPU {figures['worker_cpu_s']}s from the import's start")
        if traffic is not None and commands is not None:
            time.sleep(3)  # the last commands of the import's span
            traffic.stop.set()
            traffic.join()
            commands.stop.set()
            quiet = latencies(traffic, commands, quiet_from, quiet_to)
            during = latencies(traffic, commands, import_from, import_from + figures.get("in_effect_s", elapsed))
            q99, d99 = percentile(quiet, 0.99), percentile(during, 0.99)
            figures.update(screening_rate=args.screening_rate, quiet_samples=len(quiet), during_samples=len(during),
                           quiet_p50_ms=round(percentile(quiet, 0.5) or 0, 1), quiet_p99_ms=round(q99 or 0, 1),
                           during_p50_ms=round(percentile(during, 0.5) or 0, 1), during_p99_ms=round(d99 or 0, 1),
                           p99_ratio=round(d99 / q99, 2) if q99 and d99 else None,
                           calls_sent=traffic.count)
            print(f"screening at {args.screening_rate:,.0f}/s: p99 {figures['quiet_p99_ms']} ms quiet, "
                  f"{figures['during_p99_ms']} ms during the import ({figures['p99_ratio']}x)")
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(json.dumps(figures))
        return 0
    finally:
        for w in workers:
            stop_process(w)
        kafka.stop()
        redis.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
