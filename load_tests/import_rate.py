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
import time
from pathlib import Path

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
    args = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT):  # stop what we started, whoever interrupts us
        signal.signal(sig, lambda *_: sys.exit(130))

    import orjson

    from load_tests.harness import spawn, wait_http
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
        started = time.perf_counter()
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
