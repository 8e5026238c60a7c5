"""Freshness benchmark: a report filed through the agency API is in effect on every worker within 100 ms.

    make bench-freshness          # or: python -m load_tests.freshness [--reports 200] [--workers 2]

One private broker and Redis, ``--workers`` screening workers in one group (each owns some partitions of
``telco.calls``), the reports agent inside them, and ``sekat api``. For each of ``--reports`` fresh numbers:

  1. file a ``confirmed`` report through ``POST /v1/reports`` (answered only once Kafka has it, acks=all);
  2. at once, and every ``--interval-ms`` after, send a call from that number to EVERY partition;
  3. per partition (so per worker), the first call that comes back blocked marks when the report took
     effect there; every call before it was decided without the report.

With ``--linked`` each report is filed on a mule account instead, naming the number in ``links``: the
number is then blocked through the derived report the reports agent publishes for it (one more trip
through ``sekat.reports``), which is what this measures.

With ``--hot N`` a hotline files N ``reported`` reports on one scam number (512-character reasons, the API's
longest) from two threads while the reports above are filed and probed: it measures whether a flood of
filings on one identifier holds up the others (each filing consolidates that identifier's record). The
result says how many hot filings were acknowledged while the probed reports were measured, and the hot
entry's ``report_count`` at the end.

Freshness of one report = the latest partition's effect time, measured from the API's 202 (and, separately,
from the moment the request was sent). The result JSON (last line) gives p50/p99/max over all reports, and
how many matching events were let through before the report took effect — the price of the delay.
A PNG histogram is written next to it in load_tests/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Producer

from load_tests.harness import (RESULTS, Commands, api_key, figure, local_stack, log, percentile, spawn,
                                 stop_on_sigterm, wait_http)
from sekat.localstack.kafka_servers import KafkaBroker
from sekat.localstack.processes import free_port, stop_process
from sekat.localstack.redis_servers import RedisServer
from sekat.settings import Settings
from sekat.streams.output import murmur2
from sekat.streams.topics import create_topics


def plot(path: Path, from_ack: list[float]) -> None:
    with figure(path) as (_, ax):
        ax.hist(from_ack, bins=40)
        ax.axvline(100, color="red", ls="--", label="100 ms target")
        ax.set_xlabel("ms from the API's 202 until the report is in effect on every worker")
        ax.set_ylabel("reports")
        ax.legend()


HOT_NUMBER = "+60111234567"


def reports_partition(key: str, partitions: int) -> int:
    """The partition of ``sekat.reports`` the API's producer writes ``key`` to (Kafka's default partitioner)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class Hotline:
    """Files ``total`` reports on one number through the API from two threads, as a busy hotline would."""

    def __init__(self, base_url: str, token: str, total: int) -> None:
        self.base_url, self.token, self.total = base_url, token, total
        self.acked = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.started = self.ended = 0.0
        self.threads = [threading.Thread(target=self._file, args=(i,), daemon=True) for i in range(2)]

    def start(self) -> None:
        self.started = time.time()
        for thread in self.threads:
            thread.start()

    def is_alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def _file(self, lane: int) -> None:
        with httpx.Client(base_url=self.base_url, headers={"X-API-Key": self.token}, timeout=30) as http:
            for n in range(lane, self.total, len(self.threads)):
                if self.stop.is_set():
                    return
                r = http.post("/v1/reports", json={"kind": "phone", "value": HOT_NUMBER, "status": "reported",
                                                   "case_ref": f"997/{n}", "reason": ("caller asked for a TAC " * 30)[:512]})
                if r.status_code != 202:
                    raise RuntimeError(f"hot filing {n} answered {r.status_code}: {r.text}")
                with self.lock:
                    self.acked += 1
                    self.ended = time.time()

    def rate(self) -> float:
        return round(self.acked / max(1e-9, self.ended - self.started), 1)

    def finish(self, http: httpx.Client, give_up_s: float = 600) -> int | None:
        """Waits for the filings, then until the index counts them all; the entry's ``report_count``."""
        for thread in self.threads:
            thread.join(give_up_s)
        deadline, count = time.time() + give_up_s, None
        while time.time() < deadline:
            r = http.get("/v1/entries", params={"phone": HOT_NUMBER, "purpose": "freshness probe"}, headers={"X-API-Key": self.token})
            count = r.json().get("report_count") if r.status_code == 200 else None
            if count == self.total:
                break
            time.sleep(0.5)
        log(f"hot number: {self.acked} filings acknowledged ({self.rate()}/s), entry counts {count}")
        return count


def run(args: argparse.Namespace) -> dict[str, Any]:
    with local_stack("sekat-fresh-", args.keep) as (base, kafka, redis_server):
        return measure(args, base, kafka, redis_server)


def measure(args: argparse.Namespace, base: Path, kafka: KafkaBroker, redis_server: RedisServer) -> dict[str, Any]:
    """File the reports and probe every partition; stops the workers, the API and the reader it started."""
    procs: list[subprocess.Popen[bytes]] = []
    commands: Commands | None = None
    hotline = Hotline("", "", 0)
    try:
        env = {"SEKAT_KAFKA_BOOTSTRAP": kafka.bootstrap, "SEKAT_REDIS_URL": redis_server.url,
               "SEKAT_APP_ID": "sekat-fresh", "SEKAT_TOPIC_PARTITIONS": str(args.partitions),
               "SEKAT_LOG_LEVEL": "warning", "SEKAT_API_PORT": str(free_port()),
               "SEKAT_AUDIT_KEY": secrets.token_hex(16)}
        if args.hot:  # the hotline's key files faster than an agency's default limit allows
            env["SEKAT_FILING_RATE_PER_MINUTE"] = "1000000"
        settings = Settings.from_environ(env)
        create_topics(settings)
        token = asyncio.run(api_key(settings))
        hot_token = asyncio.run(api_key(settings, agency="NSRC", scopes=("report", "read"))) if args.hot else ""
        ports = []
        for i in range(args.workers):
            port = free_port()
            ports.append(port)
            procs.append(spawn(["worker"], env | {"SEKAT_WEB_PORT": str(port)}, base / f"worker{i}.log"))
        api = spawn(["api"], env, base / "api.log")
        procs.append(api)
        for i, port in enumerate(ports):
            wait_http(f"http://127.0.0.1:{port}/healthz", procs[i], lambda b: orjson.loads(b).get("replica_ready"),
                      log_path=base / f"worker{i}.log")
        wait_http(f"http://127.0.0.1:{settings.api_port}/openapi.json", api, lambda b: True, log_path=base / "api.log")
        commands = Commands(kafka.bootstrap, [settings.topic_block])
        commands.start()
        producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 0, "acks": "all"})
        http = httpx.Client(base_url=f"http://127.0.0.1:{settings.api_port}", headers={"X-API-Key": token},
                            timeout=10)
        log(f"{args.workers} workers and the API are up; warming up the group")
        time.sleep(args.warmup)
        hotline = Hotline(f"http://127.0.0.1:{settings.api_port}", hot_token, args.hot)
        if args.hot:
            hotline.start()
            while hotline.acked < min(100, args.hot) and hotline.is_alive():  # the flood is under way
                time.sleep(0.05)

        sent: dict[str, tuple[str, int, float]] = {}  # event_id -> (number, partition, send time)
        filings: list[tuple[str, float, float]] = []  # number, request start, 202 time
        for n in range(args.reports):
            number = f"+6017{n:07d}"
            started = time.time()
            body: dict[str, Any] = {"kind": "phone", "value": number, "status": "confirmed",
                                    "reason": "freshness benchmark", "case_ref": f"F/{n}"}
            if args.linked:  # the number is only linked to the reported account
                body.update(kind="account", bank="CIBBMYKL", value=f"7{n:09d}",
                            links=[{"kind": "phone", "value": number}])
            r = http.post("/v1/reports", json=body)
            acked = time.time()
            if r.status_code != 202:
                raise RuntimeError(f"report {n} answered {r.status_code}: {r.text}")
            filings.append((number, started, acked))
            seq = 0
            deadline = acked + args.give_up_ms / 1000
            # Calls from the number to every partition until the deadline; the reader decides when each took.
            while time.time() < deadline:
                now = time.time()
                for p in range(args.partitions):
                    event_id = f"f{n}-{seq}-{p}"
                    body = orjson.dumps({"event_id": event_id, "occurred_at": "2026-11-29T00:00:00.000Z",
                                         "call_id": event_id, "operator": "CELCOM", "caller": number,
                                         "callee": "+60123456780"})
                    producer.produce(settings.topic_calls, body, number.encode(), partition=p)
                    sent[event_id] = (number, p, now)
                producer.poll(0)
                seq += 1
                blocked = {sent[e][1] for e, _, _ in commands.seen[-4 * args.partitions:] if e.startswith(f"f{n}-")}
                if len(blocked) == args.partitions:
                    break
                time.sleep(args.interval_ms / 1000)
            producer.flush(10)
        hot_during = hotline.acked
        # Every probe sent after a 202 should come back blocked: wait until they all have, or stop growing.
        last, still = -1, time.time()
        while time.time() - still < 5:
            done = len({e for e, _, _ in list(commands.seen) if e in sent})
            if done == len(sent):
                break
            if done != last:
                last, still = done, time.time()
            time.sleep(0.2)
        commands.stop.set()
        commands.join(10)
        hot_count = hotline.finish(http) if args.hot else None

        first_blocked: dict[tuple[str, int], float] = {}
        for event_id, _, _ in commands.seen:
            if event_id in sent:
                number, p, at = sent[event_id]
                key = (number, p)
                first_blocked[key] = min(first_blocked.get(key, at), at)
        from_ack, from_request, let_through, missing = [], [], 0, 0
        beside_hot: list[float] = []  # from_ack of reports on the hot number's partition of the reports topic
        hot_partition = reports_partition(f"phone:{HOT_NUMBER}", args.partitions)
        for number, started, acked in filings:
            effects = [first_blocked.get((number, p)) for p in range(args.partitions)]
            if any(e is None for e in effects):
                missing += 1
                probes = sum(1 for num, _, _ in sent.values() if num == number)
                log(f"report {number[-4:]}: in effect on partitions "
                    f"{[p for p in range(args.partitions) if effects[p] is not None]} after {probes} probes")
                continue
            effective = max(effects)  # type: ignore[type-var]
            from_ack.append(max(0.0, (effective - acked) * 1000))
            if args.hot and reports_partition(f"phone:{number}", args.partitions) == hot_partition:
                beside_hot.append(from_ack[-1])
            from_request.append((effective - started) * 1000)
            let_through += sum(1 for e, (num, p, at) in sent.items()
                               if num == number and at < first_blocked[(num, p)])
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        png = RESULTS / f"freshness-{stamp}.png"
        plot(png, from_ack)
        result = {
            "reports": args.reports,
            "linked": args.linked,
            "workers": args.workers,
            "partitions": args.partitions,
            "in_effect_everywhere": len(from_ack),
            "never_in_effect_within_give_up": missing,
            "p50_ms_from_ack": percentile(from_ack, 0.5),
            "p99_ms_from_ack": percentile(from_ack, 0.99),
            "max_ms_from_ack": max(from_ack) if from_ack else None,
            "p50_ms_from_request": percentile(from_request, 0.5),
            "p99_ms_from_request": percentile(from_request, 0.99),
            "probe_interval_ms": args.interval_ms,
            "matching_events_let_through": let_through,
            "probes": len(sent),
            "probes_blocked": len({e for e, _, _ in commands.seen if e in sent}),
            "hot_filings": args.hot,
            "hot_filings_acked_while_measuring": hot_during if args.hot else None,
            "hot_filings_per_s": hotline.rate() if args.hot else None,
            "hot_entry_report_count": hot_count,
            "beside_hot_reports": len(beside_hot) if args.hot else None,
            "beside_hot_p99_ms_from_ack": percentile(beside_hot, 0.99) if args.hot else None,
            "plot": str(png.relative_to(RESULTS.parent.parent)),
        }
        (RESULTS / f"freshness-{stamp}.json").write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return result
    finally:
        if commands is not None:
            commands.stop.set()
        hotline.stop.set()
        for proc in procs:
            stop_process(proc)


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--interval-ms", type=float, default=5.0, help="gap between probe calls")
    parser.add_argument("--give-up-ms", type=float, default=1000, help="stop probing one report after this")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--linked", action="store_true",
                        help="file each report on an account linking the number (measures the link hop)")
    parser.add_argument("--hot", type=int, default=0, metavar="N",
                        help="meanwhile a hotline files N reports on one number (e.g. 1200)")
    print(orjson.dumps(run(parser.parse_args())).decode())


if __name__ == "__main__":
    main()
