"""What a link costs: time until a report's own entry, and its linked identifier's, are in the index.

    python -m load_tests.link_hop [--reports 100]

One private broker and Redis, one worker (its reports agent) and ``sekat api``. For each of ``--reports``
fresh accounts, a ``confirmed`` report is filed through ``POST /v1/reports`` naming one fresh phone number in
``links``; Redis is polled every millisecond until the account's entry and the number's entry exist. From the
202: the account (the report's own key: one pass of the reports agent) and the number (the derived report:
published by that pass, then a second pass). Also, from ``sekat.reports``: how long after the original record
the derived record was produced. The JSON result is the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from kafka import KafkaConsumer

from load_tests.harness import api_key, local_stack, log, percentile, spawn, stop_on_sigterm, wait_http
from sekat.localstack.kafka_servers import KafkaBroker
from sekat.localstack.processes import free_port, stop_process
from sekat.localstack.redis_servers import RedisServer
from sekat.settings import Settings
from sekat.streams.topics import create_topics


def _summary(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 0.5), "p90": percentile(values, 0.9), "p99": percentile(values, 0.99),
            "max": max(values) if values else None}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with local_stack("sekat-hop-") as (base, kafka, redis_server):
        return measure(args, base, kafka, redis_server)


def measure(args: argparse.Namespace, base: Path, kafka: KafkaBroker, redis_server: RedisServer) -> dict[str, Any]:
    """File the reports and poll the index; stops the worker and the API it started."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port = free_port()
        env = {"SEKAT_KAFKA_BOOTSTRAP": kafka.bootstrap, "SEKAT_REDIS_URL": redis_server.url,
               "SEKAT_APP_ID": "sekat-hop", "SEKAT_LOG_LEVEL": "warning", "SEKAT_API_PORT": str(free_port()),
               "SEKAT_WEB_PORT": str(port), "SEKAT_AUDIT_KEY": secrets.token_hex(16)}
        settings = Settings.from_environ(env)
        create_topics(settings)
        token = asyncio.run(api_key(settings))
        procs.append(spawn(["worker"], env, base / "worker.log"))
        procs.append(spawn(["api"], env, base / "api.log"))
        wait_http(f"http://127.0.0.1:{port}/healthz", procs[0], lambda b: orjson.loads(b).get("replica_ready"),
                  log_path=base / "worker.log")
        wait_http(f"http://127.0.0.1:{settings.api_port}/openapi.json", procs[1], lambda b: True,
                  log_path=base / "api.log")
        time.sleep(args.warmup)
        index = redis.Redis.from_url(redis_server.url)
        http = httpx.Client(base_url=f"http://127.0.0.1:{settings.api_port}", headers={"X-API-Key": token},
                            timeout=10)
        own: list[float] = []
        linked: list[float] = []
        missing = 0
        for n in range(args.reports):
            account, phone = f"7{n:09d}", f"+6017{n:07d}"
            r = http.post("/v1/reports", json={"kind": "account", "bank": "CIBBMYKL", "value": account,
                                               "status": "confirmed", "links": [{"kind": "phone", "value": phone}]})
            acked = time.time()
            if r.status_code != 202:
                raise RuntimeError(f"report {n} answered {r.status_code}: {r.text}")
            own_at = linked_at = None
            while time.time() - acked < args.give_up_s and linked_at is None:
                if own_at is None and index.exists(f"sekat:bl:account:CIBBMYKL:{account}"):
                    own_at = time.time()
                if index.exists(f"sekat:bl:phone:{phone}"):
                    linked_at = time.time()
                time.sleep(0.001)
            if own_at is None or linked_at is None:
                missing += 1
                continue
            own.append((own_at - acked) * 1000)
            linked.append((linked_at - acked) * 1000)
        consumer = KafkaConsumer(settings.topic_reports, bootstrap_servers=kafka.bootstrap, group_id=None,
                                 auto_offset_reset="earliest", consumer_timeout_ms=3000)
        produced: dict[str, dict[str, int]] = {}
        for msg in consumer:
            body = orjson.loads(msg.value)
            origin = body.get("origin") or body["report_id"]
            produced.setdefault(origin, {})["derived" if body.get("origin") else "original"] = msg.timestamp
        consumer.close()
        gaps = [float(t["derived"] - t["original"]) for t in produced.values() if len(t) == 2]
        return {"reports": args.reports, "not_in_index_within_give_up": missing,
                "own_entry_ms_after_202": _summary(own), "linked_entry_ms_after_202": _summary(linked),
                "derived_record_ms_after_original": _summary(gaps)}
    finally:
        for proc in procs:
            stop_process(proc)


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=100)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--give-up-s", type=float, default=5.0)
    result = run(parser.parse_args())
    log("done")
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
