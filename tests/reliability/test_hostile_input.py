"""Hostile input on both input topics of a real worker: every bad one dead-lettered with a reason, every good one decided.

Hypothesis draws the cases of tests/hostile.py (random bytes, random JSON,
wrong types, huge strings, deeply nested objects, NaN and negative amounts,
invalid dates, look-alike digits; and valid events with hostile-but-valid
variations, each naming a listed identifier). All of them are produced to the
worker's transfer and call topics; then each bad case must have a dead letter
pointing at its own topic/partition/offset with a reason and a message, each
good case a decision pointing at its record, the INVALID counters must equal
the number of bad cases, and the worker must still be running. The test prints
how many inputs were tried.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from kafka import KafkaProducer

from sekat.blocklist.store import BlocklistStore
from sekat.decode.fields import REASONS
from sekat.records import Status
from tests.hostile import LISTED_ACCOUNT, LISTED_BANK, LISTED_PHONE, Case, hostile
from tests.support import Collector, Stack, WorkerProcess, file_report, isolated_env, unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

CASES = 600


def draw_cases(n: int) -> list[Case]:
    cases: list[Case] = []

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(case=hostile())
    def collect(case: Case) -> None:
        cases.append(case)

    collect()
    return cases


def test_hostile_input_is_dead_lettered_or_decided_and_the_worker_goes_on(stack: Stack, logs_dir: Path) -> None:
    name = unique("hostile")
    worker = WorkerProcess(isolated_env(stack, name), logs_dir / f"{name}.log").launch()
    cases = draw_cases(CASES)  # while the worker starts
    worker.wait_ready()
    s = worker.settings
    topic = {"transfers": s.topic_transfers, "calls": s.topic_calls}

    async def list_both() -> None:
        store = BlocklistStore.from_url(s.redis_url, s.redis_prefix)
        await file_report(store, f"phone:{LISTED_PHONE}", Status.CONFIRMED, "PDRM", "scam caller", "KL/3")
        await file_report(store, f"account:{LISTED_BANK}:{LISTED_ACCOUNT}", Status.CONFIRMED, "PDRM", "mule", "KL/4")
        await store.close()
    asyncio.run(list_both())
    worker.wait_replica()

    collector = Collector(s, [s.topic_decisions, s.topic_deadletter])
    producer = KafkaProducer(**s.kafka_client_config(), acks="all", linger_ms=5,  # type: ignore[arg-type]
                             max_request_size=2 * 1024 * 1024)
    try:
        futures = [producer.send(topic[c.stream], c.raw) for c in cases]
        producer.flush(30)
        where = {(m.topic, m.partition, m.offset): c for c, m in zip(cases, (f.get(10) for f in futures))}
        bad = sum(not c.good for c in cases)

        def outputs() -> dict[tuple[str, int, int], dict[str, object]]:
            out = {}
            # Records about an input carry its source; the safety brake's audit record (stream "brake": the
            # generated cases name the listed account often enough to trip it, ~1 run in 10) does not.
            for r in collector.matching(lambda r: "source" in r.json):
                src = r.json["source"]
                out[src["topic"], src["partition"], src["offset"]] = r.json | {"_topic": r.topic}
            return out
        seen = wait_until("an output for every input", outputs, lambda o: set(where) <= set(o), timeout=60)

        for at, case in where.items():
            out = seen[at]
            if case.good:
                assert out["_topic"] == s.topic_decisions and out["event_id"] == case.event_id, (case.what, out)
            else:
                assert out["_topic"] == s.topic_deadletter, (case.what, case.raw[:200], out)
                assert out["reason"] in REASONS and out["message"], out
        invalid = sum(worker.sample(rf'sekat_events_total\{{outcome="INVALID",stream="{st}"\}}')
                      for st in ("transfers", "calls"))
        assert invalid == bad
        assert worker.alive() and worker.get("/healthz")[0] == 200
        reasons = sorted({str(seen[at]["reason"]) for at, c in where.items() if not c.good})
        print(f"\nhostile input (real worker): {len(cases)} inputs tried on both topics, {bad} dead-lettered "
              f"with a reason ({', '.join(reasons)}), {len(cases) - bad} decided, worker still running")
    finally:
        producer.close()
        collector.close()
        worker.stop()
