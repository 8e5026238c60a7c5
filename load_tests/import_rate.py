"""Measure ``sekat blocklist import`` on a generated file (default 1,000,000 rows).

    .venv/bin/python -m load_tests.import_rate --rows 1000000 [--format csv|jsonl] [--apply]

Starts its own Kafka broker and Redis on free loopback ports (the same
``sekat.localstack`` the tests use), generates the file in /tmp, runs the
real ``sekat blocklist import`` command against a fresh reports topic and
prints its rate (reports acknowledged by Kafka per second). With ``--apply``
it then runs a ``sekat worker`` and reports how long the reports agent takes
to apply them all to the Redis index. Everything it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import os
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--apply", action="store_true", help="also time the reports agent applying them")
    args = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT):  # stop what we started, whoever interrupts us
        signal.signal(sig, lambda *_: sys.exit(130))

    from load_tests.harness import spawn
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
    worker = None
    try:
        redis.start()
        kafka.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEKAT_")}
        env.update(SEKAT_KAFKA_BOOTSTRAP=kafka.bootstrap, SEKAT_REDIS_URL=redis.url, SEKAT_APP_ID="sekat-import",
                   SEKAT_WEB_PORT=str(free_port()), SEKAT_LOG_LEVEL="warning")
        settings = Settings.from_environ(env)
        create_topics(settings)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "sekat.cli", "blocklist", "import", str(data)], env=env,
                                capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        print(result.stdout.strip())
        if result.returncode != 0:
            print(result.stderr[-2000:], file=sys.stderr)
            return 1
        print(f"import wall time {elapsed:.1f}s: {args.rows / elapsed:,.0f} rows/s end to end (process start included)")
        if args.apply:
            import redis as sync_redis

            worker = spawn(["worker"], env, base / "worker.log")
            client = sync_redis.Redis.from_url(redis.url)
            started = time.perf_counter()
            while True:
                n = client.dbsize() - 1  # the change stream
                if n >= args.rows:
                    break
                if worker.poll() is not None or time.perf_counter() - started > 1800:
                    print(f"worker stopped or timed out at {n} entries", file=sys.stderr)
                    return 1
                time.sleep(1)
            elapsed = time.perf_counter() - started
            print(f"reports agent applied {args.rows:,} reports to the index in {elapsed:.1f}s "
                  f"({args.rows / elapsed:,.0f}/s, worker start included)")
        return 0
    finally:
        stop_process(worker)
        kafka.stop()
        redis.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
