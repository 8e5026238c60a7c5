"""The webhook relay's throughput to a local HTTP sink, and the latency it adds per command.

Starts its own Kafka broker on free loopback ports and an HTTP sink (aiohttp, in a thread of this process)
that plays ``--institutions`` institutions, each answering 204 at once. Per run, with a fresh consumer
group and topic:

* throughput: ``--commands`` commands are on the freeze topic before ``sekat relay`` starts; the time from
  the sink's first request to the last command's is the relay's rate (institutions receive their commands
  one at a time each, so the rate grows with the number of institutions, up to the relay's CPU);
* added latency: the relay caught up, commands are produced at ``--rate`` a second for ``--seconds``; a
  command's latency is its arrival at the sink less the moment it was produced (Kafka, relay, signing, HTTP).

Medians of ``--runs``; the relay's CPU time per command (from /proc) too, while it drains the backlog and
while it keeps up with the paced commands (where idle polling counts). Writes
load_tests/results/relay-<stamp>.json and .png, prints the JSON. Figures on a shared 2-core machine are
indicative: give ``uptime`` with them.

    .venv/bin/python -m load_tests.relay_bench --commands 20000 --institutions 8 --rate 500 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from load_tests.harness import figure
from sekat.localstack.kafka_servers import KafkaBroker
from sekat.localstack.processes import free_port, stop_process
from sekat.settings import Settings
from sekat.streams.topics import create_topics

RESULTS = Path(__file__).resolve().parent / "results"


class Sink:
    """Institutions' endpoints on one loopback port (/<institution>): each request's arrival time and body."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: list[tuple[float, bytes]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait(10)

    def _run(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            self.arrivals.append((time.time(), body))
            return web.Response(status=204)

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/{institution}", hook)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self.ready.set()

        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def count(self) -> int:
        return len(self.arrivals)


def commands(institutions: list[str], n: int, run: str) -> list[tuple[bytes, dict[str, Any]]]:
    out = []
    for i in range(n):
        bank = institutions[i % len(institutions)]
        out.append((bank.encode(), {
            "command_id": str(uuid.uuid4()), "issued_at": "2026-11-28T10:15:00.125Z", "action": "FREEZE_ACCOUNT",
            "bank": bank, "account": f"{bank}:8001{i:06d}", "transfer_id": f"DN{i:08d}", "event_id": f"{run}-{i}",
            "rule": "payee-on-blocklist", "reasons": ["payee account confirmed investment scam mule (PDRM KL/2026/123)"],
            "rules": ["blocklist_match@2"]}))
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(what: str, pred: Any, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what}: relay {'exited' if proc.poll() is not None else 'too slow'}:\n"
                               f"{log.read_text()[-3000:]}")
        time.sleep(0.01)


def one_run(broker: KafkaBroker, sink: Sink, base: Path, args: argparse.Namespace, n: int) -> dict[str, float]:
    from confluent_kafka import Producer

    run = f"rb{n}{uuid.uuid4().hex[:6]}"
    institutions = [f"BNK{i:03d}MY" for i in range(args.institutions)]
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    file = base / f"{run}.json"
    file.write_text(json.dumps({"institutions": [
        {"id": i, "url": f"http://127.0.0.1:{sink.port}/{i}", "secrets": [secret]} for i in institutions]}))
    env = {"SEKAT_KAFKA_BOOTSTRAP": broker.bootstrap, "SEKAT_APP_ID": run, "SEKAT_TOPIC_FREEZE": f"{run}.freeze",
           "SEKAT_TOPIC_BLOCK": f"{run}.block", "SEKAT_TOPIC_UNDELIVERED": f"{run}.undelivered",
           "SEKAT_TOPIC_PARTITIONS": str(args.partitions), "SEKAT_INSTITUTIONS_FILE": str(file),
           "SEKAT_RELAY_LOOPBACK_HTTP": "1", "SEKAT_RELAY_WEB_PORT": str(free_port()), "SEKAT_LOG_LEVEL": "warning"}
    settings = Settings.from_environ(env)
    create_topics(settings)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, "acks": "all"})
    for key, body in commands(institutions, args.commands, run):
        producer.produce(settings.topic_freeze, orjson.dumps(body), key)
        producer.poll(0)
    producer.flush(60)
    sink.arrivals.clear()
    log = base / f"{run}.log"
    child = {k: v for k, v in os.environ.items() if not k.startswith("SEKAT_")} | env
    proc = subprocess.Popen([sys.executable, "-m", "sekat.cli", "relay"], env=child, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for("first", lambda: sink.count() >= 1, 120, proc, log)
        cpu_start = cpu_seconds(proc.pid)
        wait_for("backlog", lambda: sink.count() >= args.commands, 600, proc, log)
        first, last = sink.arrivals[0][0], sink.arrivals[args.commands - 1][0]
        cpu_before = cpu_seconds(proc.pid)
        backlog_cpu = cpu_before - cpu_start
        # Caught up: paced commands, each stamped with the moment it is produced.
        paced = commands(institutions, int(args.rate * args.seconds), run + "p")
        start = time.time()
        for i, (key, body) in enumerate(paced):
            due = start + i / args.rate
            while (now := time.time()) < due:
                time.sleep(min(0.002, due - now))
            body["sent_at"] = time.time()
            producer.produce(settings.topic_freeze, orjson.dumps(body), key)
            producer.poll(0)
        producer.flush(60)
        wait_for("paced", lambda: sink.count() >= args.commands + len(paced), 120, proc, log)
        cpu = cpu_seconds(proc.pid) - cpu_before
        latencies = sorted((at - orjson.loads(body)["sent_at"]) * 1000 for at, body in sink.arrivals[args.commands:])
    finally:
        stop_process(proc, signal.SIGTERM, 20)
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"commands_per_s": round((args.commands - 1) / (last - first), 1),
            "latency_p50_ms": round(pick(0.5), 2), "latency_p99_ms": round(pick(0.99), 2),
            "cpu_us_per_command": round(backlog_cpu / (args.commands - 1) * 1e6, 1),
            "cpu_us_per_command_paced": round(cpu / len(paced) * 1e6, 1), "latencies_ms": latencies}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20000, help="backlog delivered for the throughput figure")
    parser.add_argument("--institutions", type=int, default=8, help="institutions (endpoints) the commands go to")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=float, default=500, help="commands per second for the latency figure")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="sekat-relay-bench-"))
    broker = KafkaBroker(base / "kafka", free_port(), free_port())
    broker.start()
    try:
        sink = Sink()
        runs = [one_run(broker, sink, base, args, n) for n in range(args.runs)]
    finally:
        broker.stop()
    keys = ("commands_per_s", "latency_p50_ms", "latency_p99_ms", "cpu_us_per_command", "cpu_us_per_command_paced")
    result = {"args": vars(args), "load_average": os.getloadavg(),
              "median": {k: statistics.median(r[k] for r in runs) for k in keys},
              "runs": [{k: r[k] for k in keys} for r in runs]}
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"relay-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    with figure(RESULTS / f"relay-{stamp}.png", 1, 2, size=(11, 4)) as (_, (left, right)):
        left.bar([str(n + 1) for n in range(len(runs))], [r["commands_per_s"] for r in runs])
        left.set(title=f"backlog of {args.commands} to {args.institutions} institutions", xlabel="run",
                 ylabel="commands/s")
        for n, r in enumerate(runs):
            lat = r["latencies_ms"]
            right.plot(lat, [i / len(lat) for i in range(len(lat))], label=f"run {n + 1}")
        right.set(title=f"added latency at {args.rate:g}/s (produce to sink)", xlabel="ms", ylabel="share",
                  xscale="log")
        right.legend()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
