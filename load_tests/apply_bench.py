"""What applying a batch of reports to the index (``BlocklistStore.apply``) costs the reports intake, per report.

Starts its own Redis on a free loopback port, then applies ``--reports`` new reports (phone numbers and
accounts, confirmed with a 90-day expiry, as a bulk import files them) in batches of ``--batch``, as the
worker's intake does (one MGET under WATCH, the merge, one MULTI with the writes, the retention marks and one
change-stream record), and prints the process CPU and wall time per report, medians of ``--runs`` (each run on
a fresh prefix). Nothing else runs, so it measures the client side of the write; figures on a shared 2-core
machine are indicative.

    .venv/bin/python -m load_tests.apply_bench --reports 50000 --batch 1000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from sekat.blocklist.store import BlocklistStore
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.records import Report, Status


def reports(count: int, run: int) -> list[Report]:
    now = datetime.now(timezone.utc)
    made = []
    for i in range(count):
        kind, bank, value = ("phone", "", f"+6011{run:02d}{i:06d}") if i % 2 else (
            "account", "CIBBMYKL", f"80{run:02d}{i:08d}")
        made.append(Report(report_id=f"r-{run}-{i}", reported_at=now, kind=kind, value=value,
                           status=Status.CONFIRMED, source="PDRM", bank=bank, case_ref=f"KL/{i}", reason="mule",
                           ttl_days=90, filed_by="import:bench"))
    return made


async def measure(url: str, args: argparse.Namespace) -> dict[str, float]:
    cpu, wall = [], []
    for run in range(args.runs):
        store = BlocklistStore.from_url(url, f"apply{run}-{time.time_ns()}:")
        batch = reports(args.reports, run)
        try:
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            for i in range(0, len(batch), args.batch):
                await store.apply(batch[i:i + args.batch])
            cpu.append((time.process_time() - cpu_start) / len(batch) * 1e6)
            wall.append((time.perf_counter() - wall_start) / len(batch) * 1e6)
        finally:
            await store.close()
    return {"cpu_us_per_report": round(statistics.median(cpu), 1),
            "wall_us_per_report": round(statistics.median(wall), 1), "cpu_runs": [round(c, 1) for c in cpu]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=50_000, help="reports applied per run")
    parser.add_argument("--batch", type=int, default=1000, help="reports per apply (the intake's batch)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="sekat-apply-bench-")), free_port())
    try:
        server.start()
        result = asyncio.run(measure(server.url, args))
    finally:
        server.stop()
    print(json.dumps({"reports": args.reports, "batch": args.batch, "runs": args.runs, **result}))


if __name__ == "__main__":
    main()
