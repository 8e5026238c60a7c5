"""End-to-end benchmark: one Sekat worker against a real broker and Redis on this machine.

    make bench            # defaults: 1,000,000-entry blocklist, 600,000-event backlog, 30 s at 20,000 events/s
    python -m load_tests.bench --help

Phases, in one run on one machine:
  1. set-up    a private KRaft broker and Redis on free loopback ports; the blocklist (listed identifiers of
               the traffic plus filler up to --blocklist entries) written to the index, marked built; the
               policy (--policy): by default the shipped one, every behaviour rule evaluated in shadow;
  2. backlog   --events contract events produced as fast as possible (several processes, librdkafka), BEFORE
               any consumer runs, so the generator never competes with what it measures;
  3. ceiling   a raw aiokafka consumer reads the same backlog and does nothing else: the most any Python
               consumer on this machine could do;
  3b. baseline --rate events/s for --steady-seconds on two other topics, read by a raw aiokafka consumer that
               does nothing: the latency this machine gives any consumer (generator, broker, Python, 2 cores);
  4. sekat     the worker starts (time to ready = replica loaded and partitions assigned) and drains the
               backlog: sustained throughput, and latencies under saturation; with --profile, py-spy samples
               the worker by PID meanwhile (load_tests/results/profile-<stamp>.txt, collapsed stacks, and
               profile-<stamp>-top.txt, the functions with the largest inclusive and self shares);
  5. steady    --rate events/s offered for --steady-seconds while the worker runs: decision latency
               (input record timestamp -> command record timestamp) p50/p99/p99.9 at that rate, leaving out
               the first --warmup-seconds (a new generator process, the broker's first paced requests: the
               baseline shows the same start-up), and p99_ratio_to_baseline.
Paced traffic is rendered before its clock starts, so the generator takes little CPU from the worker while it runs.
Every listed event's commands are checked (recall) and every command is checked against the ground truth
(false commands). The last line printed is the result JSON; a PNG plot is written beside it.

--hot-keys adds two adversarial keys to the backlog, the baseline's and the steady phase's traffic, in place of
ordinary events: a caller reaching 50,000 distinct callees in 10 minutes (1 event in 12: 50,000 of the default
600,000) and a payee receiving from 10,000 distinct payers in an hour (1 in 60: 10,000), each event dated at
random within that span before it is sent. Neither they nor their callees and payers are customers or listed,
so they are due no command (in shadow, their rules send none) and any command for one counts as false. Decision
latency is only ever measured on listed events' commands, that is on every other customer's events, which share
the hot keys' partitions, worker and Redis: what the hot keys do to them is in p50_ms/p99_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from load_tests.generate import generate
from load_tests.harness import (RESULTS, ROOT, Commands, brake_figures, brake_tripped, check, figure, local_stack, log,
                                percentile, spawn, stop_on_sigterm, wait_http)
from load_tests.traffic import (HOT_CALL_EVERY, HOT_CALLEES, HOT_CALLER_SPAN_MS, HOT_PAYEE_SPAN_MS, HOT_PAYERS,
                                HOT_TRANSFER_EVERY, Listed, Population)
from sekat.blocklist.connection import sync_client
from sekat.blocklist.store import built_key, entries_key
from sekat.localstack.kafka_servers import KafkaBroker
from sekat.localstack.processes import free_port, stop_process
from sekat.localstack.redis_servers import RedisServer
from sekat.settings import Settings
from sekat.streams.topics import create_topics

FILLER_BANKS = ("OCBCMYKL", "HSBCMYKL", "UOVBMYKL", "SCBLMYKX")


def bench_policy(base: Path, choice: str) -> str:
    """The policy file the worker runs: the shipped one with behaviour rules in shadow (``shadow``, the default),
    the shipped one with only ``blocklist_match`` (``blocklist-only``), or a file of one's own.

    Shadow rules are evaluated in full (their Redis state is read and written) but send no commands, so
    the cost is measured while the ground truth of the generator (blocklist hits) still judges every command.
    """
    import yaml

    from sekat.rules.policy import DEFAULT_POLICY_FILE

    if choice not in ("shadow", "blocklist-only"):
        return choice
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    for rule_id, rule in list(policy["rules"].items()):
        if rule_id != "blocklist_match":
            if choice == "shadow":
                rule["mode"] = "shadow"
            else:
                del policy["rules"][rule_id]
    path = base / f"policy-{choice}.yaml"
    path.write_text(yaml.safe_dump(policy))
    return str(path)


def policy_rules(path: str) -> dict[str, str]:
    """Rule id -> mode (enforce, shadow) of every rule a policy file enables: what the worker ran."""
    import yaml

    rules = yaml.safe_load(Path(path).read_text()).get("rules") or {}
    return {str(rule_id): str((conf or {}).get("mode", "enforce")) for rule_id, conf in rules.items()
            if (conf or {}).get("enabled", True)}


def blocklist_entries(listed: list[Listed], size: int) -> Iterator[tuple[str, str, int]]:
    """(identifier key, status, filler number or -1) of a ``size``-entry blocklist: the traffic's ``listed``
    identifiers, then confirmed filler phone numbers and accounts that no event names."""
    for item in listed:
        yield item.key, item.status, -1
    for i in range(max(0, size - len(listed))):
        yield (f"phone:+6010{i:08d}" if i % 2 else f"account:{FILLER_BANKS[i % 4]}:{i:012d}"), "confirmed", i


def load_blocklist(url: str, prefix: str, population: Population, size: int, expiring: float = 0.0) -> float:
    """Write the traffic's listed identifiers plus filler entries straight into the index (one server or a cluster).

    ``expiring``: the share of filler entries with an expiry (in 2027-2028, as ``sekat.records.iso`` writes
    it), as the default expiry policy gives every report; the others never expire.

    The index is marked built, as a worker finds one in production. Without the marker the worker could not
    store a replica snapshot of its first read (a snapshot names its build) and would refresh it in the
    background soon after start (``Replica.keep_stored_snapshot``): a paced read of the whole index during
    the measured phases.
    """
    started = time.perf_counter()
    client = sync_client(url)
    listed = population.listed()
    now = "2026-11-29T00:00:00.000Z"
    every = round(1 / expiring) if expiring > 0 else 0

    def body(key: str, status: str, i: int = -1) -> bytes:
        expires = (f"{2027 + i % 2}-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i // 60 % 60:02d}."
                   f"{i % 1000:03d}Z") if every and i >= 0 and i % every == 0 else ""
        return orjson.dumps({"key": key, "status": status, "source": "BENCH", "reason": "benchmark",
                             "case_ref": "B/1", "reported_at": now, "expires_at": expires, "sources": ["BENCH"],
                             "report_count": 1})

    pipe = client.pipeline(transaction=False)
    n = 0
    for n, (key, status, i) in enumerate(blocklist_entries(listed, size), 1):
        pipe.set(f"{prefix}bl:{key}", body(key, status, i))
        if n % 20_000 == 0:
            pipe.execute()
    pipe.execute()
    client.set(entries_key(prefix), n)  # as the writers count them: the replicas compare it with what they hold
    client.set(built_key(prefix), "bench")
    client.close()
    return time.perf_counter() - started


async def raw_ceiling(bootstrap: str, topics: list[str], expected: int) -> float:
    """A raw aiokafka consumer that only reads: events/s over the backlog."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=f"ceiling-{time.time_ns()}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    seen, first = 0, None
    try:
        while seen < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for msgs in batch.values():
                if first is None:
                    first = time.perf_counter()
                seen += len(msgs)
    finally:
        await consumer.stop()
    assert first is not None
    return seen / (time.perf_counter() - first)


class RawLatency(threading.Thread):
    """The latency baseline: a raw aiokafka consumer that only reads, under the steady phase's offered load.

    Latency here is the time ``getmany`` returned a record minus the record's timestamp (set when the
    generator produced it); Sekat's is its command's timestamp minus the same. What this consumer sees is
    what the machine (generator, broker, one Python consumer on two cores) gives any worker before it
    does any work.
    """

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topics = bootstrap, topics
        self.samples: list[tuple[float, float]] = []  # (record timestamp ms, latency ms)
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._read())

    async def _read(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(*self.topics, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                                    group_id=f"baseline-{time.time_ns()}", enable_auto_commit=False,
                                    fetch_max_wait_ms=5, max_poll_records=1000)
        await consumer.start()
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            self.ready.set()
            while not self.stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=1000)
                now = time.time() * 1000
                for msgs in batch.values():
                    self.samples.extend((msg.timestamp, now - msg.timestamp) for msg in msgs)
        finally:
            await consumer.stop()


class Scraper(threading.Thread):
    """Samples the worker's /metrics: decided events over time, dead letters."""

    pattern = re.compile(rb"^sekat_events_total\{[^}]*\} ([0-9.e+]+)$", re.M)
    dead = re.compile(rb"^sekat_deadletters_total\{[^}]*\} ([0-9.e+]+)$", re.M)

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.samples: list[tuple[float, float]] = []
        self.deadletters = 0.0
        self.page = b""  # the last /metrics page read
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    page = resp.read()
                self.samples.append((time.time(), sum(float(v) for v in self.pattern.findall(page))))
                self.deadletters = sum(float(v) for v in self.dead.findall(page))
            except OSError:
                pass
            self.stop.wait(0.25)

    def decided(self) -> float:
        """The events the worker has decided by now, from its /metrics (once; not a sample)."""
        with urllib.request.urlopen(self.url, timeout=5) as resp:
            return sum(float(v) for v in self.pattern.findall(resp.read()))

    def count(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0

    def wait_for(self, total: float, timeout: float) -> None:
        deadline = time.time() + timeout
        while self.count() < total:
            if time.time() > deadline:
                raise TimeoutError(f"worker decided {self.count():.0f} of {total:.0f} events in {timeout}s")
            time.sleep(0.1)


class Progress(Scraper):
    """Events the worker has finished, from its consumer group's committed offsets, four times a second.

    Asking the broker rather than the worker: scraping the worker's /metrics four times a second takes
    CPU from the worker, which a benchmark should not charge it. The screening consumer commits a batch
    once every output of it is acknowledged, so a committed offset means "decided and sent".
    Dead letters are read from /metrics once, at the end (``read_deadletters``).
    """

    def __init__(self, port: int, bootstrap: str, group: str, topics: list[str], partitions: int) -> None:
        super().__init__(port)
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
        self.partitions = [TopicPartition(t, p) for t in topics for p in range(partitions)]

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                done = self.consumer.committed(self.partitions, timeout=2)
                self.samples.append((time.time(), float(sum(max(0, tp.offset) for tp in done))))
            except Exception:  # noqa: BLE001 - the group is not there yet: no sample
                pass
            self.stop.wait(0.25)
        self.consumer.close()

    def read_deadletters(self) -> None:
        with urllib.request.urlopen(self.url, timeout=5) as resp:
            self.page = resp.read()
        self.deadletters = sum(float(v) for v in self.dead.findall(self.page))


PAUSES = {"gc": ("sekat_gc_pause_seconds", "generation"), "periodic": ("sekat_periodic_task_seconds", "task")}


def worker_pauses(page: bytes, over_s: float = 0.01) -> dict[str, dict[str, dict[str, float]]]:
    """The worker's own pauses from its /metrics: per collector generation and per periodic task, how many,
    their total seconds and how many took longer than ``over_s`` (a bucket bound of both histograms)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind, (metric, label) in PAUSES.items():
        found: dict[str, dict[str, float]] = {}
        for m in re.finditer(rb"^" + metric.encode() + rb"_(count|sum|bucket)\{([^}]*)\} ([0-9.e+-]+)$", page, re.M):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2).decode()))
            entry = found.setdefault(labels[label], {"count": 0.0, "seconds": 0.0, f"over_{over_s * 1000:g}ms": 0.0})
            value = float(m.group(3))
            if m.group(1) == b"count":
                entry["count"] = value
            elif m.group(1) == b"sum":
                entry["seconds"] = round(value, 3)
            elif float(labels["le"]) == over_s:
                entry[f"over_{over_s * 1000:g}ms"] = -value  # the count is added below
        for entry in found.values():
            entry[f"over_{over_s * 1000:g}ms"] += entry["count"]
        out[kind] = found
    return out


def after_warmup(samples: list[tuple[float, float]], warmup_s: float) -> list[float]:
    """Latencies (ms) of the (sent ms, latency ms) samples sent ``warmup_s`` or more after the phase's first."""
    if not samples:
        return []
    start = min(t for t, _ in samples) + warmup_s * 1000
    return [lat for t, lat in samples if t >= start]


def per_second_p99(points: list[tuple[float, float]]) -> list[tuple[int, int, float | None]]:
    """(second, samples, p99 ms) of (sent s, latency ms) points, by the second they were sent in."""
    buckets: dict[int, list[float]] = {}
    for t, ms in points:
        buckets.setdefault(int(t), []).append(ms)
    return [(k, len(buckets[k]), percentile(buckets[k], 0.99)) for k in sorted(buckets)]


def rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    return rss, hwm


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used so far (/proc/<pid>/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_stats(url: str) -> dict[str, Any]:
    """Redis' own CPU seconds so far and, per command, its calls and microseconds (INFO cpu, commandstats)."""
    client = sync_client(url)
    try:
        cpu = client.info("cpu")
        commands = client.info("commandstats")
    finally:
        client.close()
    return {"cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            "commands": {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
                         for name, v in commands.items()}}


def redis_figures(before: dict[str, Any], after: dict[str, Any], events: int) -> dict[str, Any]:
    """What Redis spent per event between two ``redis_stats``: CPU, and time inside each command that ran
    (Lua scripts are ``evalsha``; the commands they call count under their own names too)."""
    per_command = {}
    for name, (calls, usec) in after["commands"].items():
        calls0, usec0 = before["commands"].get(name, (0, 0))
        if calls > calls0:
            per_command[name] = {"calls": calls - calls0, "us_per_event": round((usec - usec0) / events, 2)}
    return {"redis_cpu_us_per_event": round((after["cpu_s"] - before["cpu_s"]) / events * 1e6, 1),
            "redis_commands": dict(sorted(per_command.items(), key=lambda kv: -kv[1]["us_per_event"]))}


def children_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds so far of each live child of ``pid`` (the worker's decode processes)."""
    out = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            out[int(child)] = cpu_s(int(child))
        except OSError:
            pass  # ended meanwhile
    return out


def py_spy() -> str | None:
    """py-spy beside this interpreter (the ``bench`` extra installs it there), else on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::\d+)?\)$")
# Blocking waits py-spy's idle filter (a heuristic) counts as busy: a thread parked in one of these is not working.
WAITS = frozenset({"selectors.py:EpollSelector.select", "selectors.py:PollSelector.select",
                   "selectors.py:SelectSelector.select", "concurrent/futures/thread.py:_worker",
                   "threading.py:Condition.wait", "threading.py:Event.wait", "queue.py:Queue.get"})


def frame_name(frame: str) -> str:
    """``function (file:line)``, as py-spy writes a frame, as ``file:function``."""
    m = FRAME.match(frame)
    return f"{m['file']}:{m['function']}" if m else frame


def top_functions(stacks: Path, out: Path, inclusive: int = 25, own: int = 15, note: str = "") -> int:
    """Write the functions with the largest inclusive and self shares of py-spy's collapsed ``stacks`` to ``out``.

    Each line of ``stacks`` is ``frame;frame;... count``, root first, every thread's. Samples that end in a
    blocking wait (``WAITS``) are counted apart; the shares are of the others, the work. Inclusive: samples with
    the function anywhere on the stack (once per sample, recursion or not); self: samples with it on top.
    Returns the samples, waits included.
    """
    total = waiting = 0
    incl: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    for line in stacks.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        names = [frame_name(f) for f in stack.split(";")]
        total += int(count)
        if names[-1] in WAITS:
            waiting += int(count)
            continue
        for name in set(names):
            incl[name] += int(count)
        leaf[names[-1]] += int(count)
    work = total - waiting
    lines = [f"{note}{total:,} samples of every thread; {waiting:,} ({waiting / max(1, total):.1%}) end in a "
             "blocking wait py-spy's idle filter let through (epoll select, a thread-pool worker waiting for work, "
             f"...) and are left out; the shares below are of the other {work:,}, the work",
             "", f"top {inclusive} by inclusive share (the function and everything it called)"]
    lines += [f"{n / max(1, work):7.1%} {n:>8,}  {name}" for name, n in incl.most_common(inclusive)]
    lines += ["", f"top {own} by self share (the function's own code)"]
    lines += [f"{n / max(1, work):7.1%} {n:>8,}  {name}" for name, n in leaf.most_common(own)]
    out.write_text("\n".join(lines) + "\n")
    return total


class Profile:
    """``py-spy record`` attached to a running worker by PID, 200 samples a second, until ``stop``.

    Without py-spy (``pip install 'py-spy>=0.3'``, in the ``bench`` extra), or if it cannot attach, the run goes
    on without a profile and ``stop`` says why.
    """

    def __init__(self, pid: int, stacks: Path, log_path: Path, seconds: float) -> None:
        self.stacks, self.log_path = stacks, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.error = ""
        self.result: dict[str, Any] | None = None
        exe = py_spy()
        if exe is None:
            self.error = "py-spy not found (pip install 'py-spy>=0.3', the bench extra): no profile"
            log(self.error)
            return
        stacks.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
                                          "--duration", str(int(seconds)), "--output", str(stacks)],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self) -> dict[str, Any]:
        """End the sampling (SIGINT: py-spy writes what it has) and summarise it: the JSON's ``profile``."""
        if self.result is not None:
            return self.result
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            if not self.stacks.exists() or not self.stacks.stat().st_size:
                said = self.log_path.read_text(errors="replace").strip().splitlines()
                said = [line for line in said if line.startswith("Error")][:1] or said[-1:]  # not its backtrace
                self.error = f"py-spy wrote no profile (exit {self.proc.returncode}: {' '.join(said)})"
                log(self.error)
            self.proc = None
        if self.error:
            self.result = {"error": self.error}
            return self.result
        top = self.stacks.with_name(self.stacks.stem + "-top.txt")
        samples = top_functions(self.stacks, top, note="py-spy record --rate 200, the worker draining the backlog: ")
        log(f"profile: {self.stacks} ({samples:,} samples), top functions in {top}")
        self.result = {"stacks": str(self.stacks.relative_to(ROOT)), "top": str(top.relative_to(ROOT)),
                       "samples": samples}
        return self.result


def plot(path: Path, samples: list[tuple[float, float]], steady: list[tuple[float, float]], t0: float,
         marks: dict[str, float]) -> None:
    xs, rates = [], []
    for (ta, ca), (tb, cb) in zip(samples, samples[1:]):
        if tb > ta:
            xs.append(tb - t0)
            rates.append((cb - ca) / (tb - ta))
    with figure(path, 2, 1, (10, 7), sharex=True) as (_, (ax1, ax2)):
        ax1.plot(xs, rates, lw=1)
        ax1.set_ylabel("events decided / s")
        ax1.set_title("Sekat worker: throughput and decision latency")
        for name, t in marks.items():
            for ax in (ax1, ax2):
                ax.axvline(t - t0, color="grey", ls=":", lw=1)
            ax1.text(t - t0, ax1.get_ylim()[1] * 0.95, name, fontsize=8)
        if steady:
            ax2.scatter([t - t0 for t, _ in steady], [ms for _, ms in steady], s=2, alpha=0.4,
                        label="command latency")
            by_second = per_second_p99(steady)
            ax2.plot([k + 0.5 - t0 for k, _, _ in by_second], [p99 for _, _, p99 in by_second], color="red",
                     label="p99 per second")
            ax2.set_yscale("log")
            ax2.legend(loc="upper right")
        ax2.set_ylabel("ms (input record -> command record)")
        ax2.set_xlabel("seconds since the worker started")


def worker_env(bootstrap: str, redis_url: str, app_id: str, web_port: int, partitions: int, policy_file: str,
               transfers_format: str = "json", decode_processes: int | None = None) -> dict[str, str]:
    """The settings a benchmarked worker runs with: the private stack, a policy file, the safety brake off."""
    return {"SEKAT_KAFKA_BOOTSTRAP": bootstrap, "SEKAT_REDIS_URL": redis_url,
            "SEKAT_APP_ID": app_id, "SEKAT_WEB_PORT": str(web_port),
            "SEKAT_TOPIC_PARTITIONS": str(partitions), "SEKAT_LOG_LEVEL": "warning",
            "SEKAT_POLICY_FILE": policy_file,
            "SEKAT_TRANSFERS_FORMAT": transfers_format,
            **({} if decode_processes is None else {"SEKAT_DECODE_PROCESSES": str(decode_processes)}),
            # The harness offers ~1000x the national rate and checks every command against its ground
            # truth: the safety brake's per-rule/per-source limits would (rightly) trip at that rate, and
            # its Zipf-busiest listed number and account draw more than a reported one may. Off; its trips
            # (none expected) are in the result all the same (brake_trips, from its store).
            **{f"SEKAT_BRAKE_{limit}_MAX": "0" for limit in ("PHONE_REPORTED", "PHONE_CONFIRMED",
                                                           "ACCOUNT_REPORTED", "ACCOUNT_CONFIRMED", "RULE",
                                                           "SOURCE")}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    log("starting Kafka and Redis")
    with local_stack("sekat-bench-", args.keep, kafka_heap="1g") as (base, kafka, redis_server):
        return measure(args, base, kafka, redis_server)


def measure(args: argparse.Namespace, base: Path, kafka: KafkaBroker, redis_server: RedisServer) -> dict[str, Any]:
    """Every phase after the set-up of the servers; stops the worker and the readers it started."""
    worker: subprocess.Popen[bytes] | None = None
    scraper: Scraper | None = None
    commands: Commands | None = None
    profile: Profile | None = None
    stamp = time.strftime("%Y%m%d-%H%M%S")  # of every file this run writes
    try:
        web_port = free_port()
        policy_file = bench_policy(base, args.policy)
        env = worker_env(kafka.bootstrap, redis_server.url, "sekat-bench", web_port, args.partitions, policy_file,
                         args.transfers_format, args.decode_processes)
        settings = Settings.from_environ(env)
        create_topics(settings)
        topics = {"transfers": settings.topic_transfers, "calls": settings.topic_calls, "sms": settings.topic_sms}

        population = Population(args.customers, args.listed)
        log(f"loading a {args.blocklist:,}-entry blocklist")
        load_s = load_blocklist(redis_server.url, settings.redis_prefix, population, args.blocklist)

        log(f"producing a backlog of {args.events:,} events")
        backlog = generate(kafka.bootstrap, topics, args.events, None, args.procs, args.listed_share,
                           args.customers, args.listed, run="b", transfer_format=args.transfers_format,
                           hot_keys=args.hot_keys)
        gen_eps = backlog.sent / backlog.seconds
        log(f"generator: {gen_eps:,.0f} events/s" + (f"; hot keys: {backlog.hot}" if args.hot_keys else ""))

        log("measuring the raw-consumer ceiling")
        ceiling = asyncio.run(raw_ceiling(kafka.bootstrap, list(topics.values()), backlog.sent))
        log(f"ceiling: {ceiling:,.0f} events/s")

        log(f"latency baseline: a raw consumer at {args.rate:,.0f} events/s for {args.steady_seconds}s")
        base_topics = {"transfers": "bench.baseline.transfers", "calls": "bench.baseline.calls",
                       "sms": "bench.baseline.sms"}
        create_topics(Settings.from_environ(env | {"SEKAT_TOPIC_TRANSFERS": base_topics["transfers"],
                                                   "SEKAT_TOPIC_CALLS": base_topics["calls"],
                                                   "SEKAT_TOPIC_SMS": base_topics["sms"]}))
        raw = RawLatency(kafka.bootstrap, list(base_topics.values()))
        raw.start()
        raw.ready.wait(60)
        generate(kafka.bootstrap, base_topics, int(args.rate * args.steady_seconds), args.rate, 1,
                 args.steady_listed_share, args.customers, args.listed, run="l", transfer_format=args.transfers_format,
                 hot_keys=args.hot_keys)
        time.sleep(1.0)
        raw.stop.set()
        raw.join(10)
        base_lat = after_warmup(raw.samples, args.warmup_seconds)
        base_p99 = percentile(base_lat, 0.99)
        log(f"baseline: p50 {percentile(base_lat, 0.5) or 0:.1f} ms, p99 {base_p99 or 0:.1f} ms over {len(base_lat):,} "
            "records")

        commands = Commands(kafka.bootstrap, [settings.topic_freeze, settings.topic_block])
        commands.start()
        started = time.time()
        worker = spawn(["worker"], env, base / "worker.log")
        scraper = Progress(web_port, kafka.bootstrap, f"{settings.app_id}.screen", list(topics.values()),
                           args.partitions)
        scraper.start()
        wait_http(f"http://127.0.0.1:{web_port}/healthz", worker, lambda b: orjson.loads(b).get("replica_ready"),
                  args.timeout, base / "worker.log")
        ready_s = time.time() - started
        # A worker is ready at once and screens from the index while its replica loads: the drain is measured
        # from the replica loaded, so that its figures are the hot path's, not the start-up read's.
        wait_http(f"http://127.0.0.1:{web_port}/healthz", worker,
                  lambda b: not orjson.loads(b).get("replica_loading"), args.timeout, base / "worker.log")
        loaded_s = time.time() - started
        before = int(scraper.decided())  # decided while the replica loaded; the CPU readings below follow at once
        measured = backlog.sent - before
        log(f"worker ready in {ready_s:.1f}s, its replica loaded in {loaded_s:.1f}s ({before:,.0f} events "
            "decided meanwhile); draining the backlog")
        if args.profile:
            profile = Profile(worker.pid, RESULTS / f"profile-{stamp}.txt", base / "py-spy.log", args.timeout + 60)
        cpu_ready, children_ready = cpu_s(worker.pid), children_cpu_s(worker.pid)
        redis_ready = redis_stats(redis_server.url)
        broker_pid = int(kafka.pid_file.read_text())
        broker_ready = cpu_s(broker_pid)
        scraper.wait_for(backlog.sent, args.timeout)
        cpu_drain = cpu_s(worker.pid) - cpu_ready
        broker_drain = cpu_s(broker_pid) - broker_ready
        redis_drain = redis_figures(redis_ready, redis_stats(redis_server.url), measured)
        children_drain = sum(c - children_ready.get(pid, 0.0) for pid, c in children_cpu_s(worker.pid).items())
        t_first = next(t for t, c in scraper.samples if c > before)
        t_last = next(t for t, c in scraper.samples if c >= backlog.sent)
        # The first sample with events counts from the previous sample, when the worker had none since loaded.
        prev = max((t for t, c in scraper.samples if t < t_first), default=t_first - 0.25)
        throughput = measured / max(1e-6, t_last - prev)
        log(f"sekat: {throughput:,.0f} events/s ({throughput / ceiling:.2f} of the ceiling)")
        rss_drain = rss_mb(worker.pid)
        profiled = profile.stop() if profile is not None else None

        log(f"steady phase: {args.rate:,.0f} events/s for {args.steady_seconds}s")
        t_steady = time.time()
        steady = generate(kafka.bootstrap, topics, int(args.rate * args.steady_seconds), args.rate, 1,
                          args.steady_listed_share, args.customers, args.listed, run="s",
                          transfer_format=args.transfers_format, hot_keys=args.hot_keys)
        scraper.wait_for(backlog.sent + steady.sent, args.timeout)
        time.sleep(1.0)  # last commands reach the reader
        rss_now, rss_peak = rss_mb(worker.pid)
        scraper.read_deadletters()
        commands.stop.set()
        commands.join(10)
        scraper.stop.set()

        expected = dict(backlog.expected) | dict(steady.expected)
        _, false, _ = check(expected, commands.seen)
        brake = brake_figures(brake_tripped(redis_server.url, settings.redis_prefix), expected, commands.seen,
                              backlog.subjects | steady.subjects)
        log(f"safety brake: {brake['brake_trips']} trip(s)")
        _, _, sat_lat = check(backlog.expected, [c for c in commands.seen if c[0].startswith("b")])
        _, _, st_all = check(steady.expected, [c for c in commands.seen if c[0].startswith("s")])
        steady_sent = [(steady.expected[e][1], ts - steady.expected[e][1])
                       for e, a, ts in commands.seen if e in steady.expected]
        st_lat = after_warmup(steady_sent, args.warmup_seconds)
        steady_points = [(steady.expected[e][1] / 1000, ts - steady.expected[e][1])
                         for e, a, ts in commands.seen if e in steady.expected]
        RESULTS.mkdir(parents=True, exist_ok=True)
        png = RESULTS / f"bench-{stamp}.png"
        plot(png, scraper.samples, steady_points, started,
             {"ready": started + ready_s, "loaded": started + loaded_s, "drained": t_last, "steady": t_steady})
        result: dict[str, Any] = {
            "throughput_eps": round(throughput),
            "ceiling_eps": round(ceiling),
            "ratio_to_ceiling": round(throughput / ceiling, 3),
            # CPU the worker spent per event while draining: steadier than events/s on a shared machine
            "worker_cpu_us_per_event": round(cpu_drain / measured * 1e6, 1),
            # ... and its decode processes (SEKAT_DECODE_PROCESSES, pacs.008), on top of the worker's own
            "decode_processes_cpu_us_per_event": round(children_drain / measured * 1e6, 1),
            # the broker and Redis while draining (they share the machine): CPU per event, and Redis' time inside
            # each command per event
            "broker_cpu_us_per_event": round(broker_drain / measured * 1e6, 1),
            **redis_drain,
            "p50_ms": percentile(st_lat, 0.5),
            "p99_ms": percentile(st_lat, 0.99),
            "p999_ms": percentile(st_lat, 0.999),
            "p99_ms_at_20k" if args.rate == 20_000 else f"p99_ms_at_{int(args.rate)}": percentile(st_lat, 0.99),
            "latency_samples": len(st_lat),
            # the percentiles above leave out the first --warmup-seconds of the phase; these do not
            "p99_ms_incl_warmup": percentile(st_all, 0.99),
            # [unix second the input record was sent, commands, p99 ms]: the latency plot's red line, to set
            # beside what the worker did at that second
            "p99_ms_by_second": per_second_p99(steady_points),
            "warmup_s": args.warmup_seconds,
            # the same offered load read by a raw consumer that does nothing (see RawLatency)
            "baseline_p50_ms": round(percentile(base_lat, 0.5) or 0, 1),
            "baseline_p99_ms": round(base_p99 or 0, 1),
            "baseline_p99_ms_incl_warmup": round(percentile([lat for _, lat in raw.samples], 0.99) or 0, 1),
            "p99_ratio_to_baseline": round(percentile(st_lat, 0.99) / base_p99, 2)
            if st_lat and base_p99 else None,
            "saturated_p50_ms": percentile(sat_lat, 0.5),
            "saturated_p99_ms": percentile(sat_lat, 0.99),
            "false_commands": false,
            "expected_events": len(expected),
            "commands_seen": len(commands.seen),
            # recall over every listed event; what the safety brake tripped (off here: see the worker's
            # environment above), and the recall over listed events whose entry it did not trip
            **brake,
            "deadletters": int(scraper.deadletters),
            # over the worker's whole run: garbage-collector pauses by generation, periodic tasks' runtimes
            "worker_pauses": worker_pauses(scraper.page),
            "worker_rss_mb": round(rss_now, 1),
            "worker_peak_rss_mb": round(rss_peak, 1),
            "worker_rss_after_drain_mb": round(rss_drain[0], 1),
            "worker_ready_s": round(ready_s, 2),
            # ... its replica loaded (until then it screens from the index), and the events it decided meanwhile,
            # which the drain's figures above leave out
            "worker_loaded_s": round(loaded_s, 2),
            "decided_while_loading": before,
            "blocklist_entries": args.blocklist,
            "blocklist_load_s": round(load_s, 1),
            "events": backlog.sent + steady.sent,
            "backlog_events": backlog.sent,
            "generator_eps": round(gen_eps),
            "steady_rate_eps": args.rate,
            "partitions": args.partitions,
            "policy": args.policy,
            "policy_rules": policy_rules(policy_file),
            "hot_keys": hot_keys(backlog.hot, steady.hot) if args.hot_keys else None,
            "transfers_format": args.transfers_format,
            "plot": str(png.relative_to(ROOT)),
            "profile": profiled,
        }
        (RESULTS / f"bench-{stamp}.json").write_text(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return result
    finally:
        if profile is not None:
            profile.stop()
        if scraper is not None:
            scraper.stop.set()
        if commands is not None:
            commands.stop.set()
        stop_process(worker)


def hot_keys(backlog: dict[str, int], steady: dict[str, int]) -> dict[str, Any]:
    """What the hot keys sent (``--hot-keys``), and their shares and spans.

    Both phases number the hot keys' callees and payers from the first, so together they reach as many
    distinct ones as the busier phase.
    """
    return {"caller_events": backlog["caller_events"] + steady["caller_events"],
            "payee_events": backlog["payee_events"] + steady["payee_events"],
            "backlog": backlog, "steady": steady,
            "caller_share": round(1 / HOT_CALL_EVERY, 4), "payee_share": round(1 / HOT_TRANSFER_EVERY, 4),
            "distinct_callees": min(HOT_CALLEES, max(backlog["caller_events"], steady["caller_events"])),
            "distinct_payers": min(HOT_PAYERS, max(backlog["payee_events"], steady["payee_events"])),
            "caller_span_s": HOT_CALLER_SPAN_MS // 1000, "payee_span_s": HOT_PAYEE_SPAN_MS // 1000}


def traffic_arguments(parser: argparse.ArgumentParser, *, blocklist: int, events: int, rate: float,
                      steady_seconds: int, partitions: int, timeout: float) -> None:
    """The options of this benchmark that the drivers over it (``load_tests.scale``) share, with their defaults."""
    parser.add_argument("--blocklist", type=int, default=blocklist, help="entries in the blocklist")
    parser.add_argument("--events", type=int, default=events, help="backlog events for the throughput phase")
    parser.add_argument("--rate", type=float, default=rate, help="offered events/s in the steady phase")
    parser.add_argument("--steady-seconds", type=int, default=steady_seconds)
    parser.add_argument("--listed-share", type=float, default=0.01, help="share of backlog events naming a listed id")
    parser.add_argument("--steady-listed-share", type=float, default=0.05,
                        help="share in the steady phase (higher, for enough latency samples)")
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--listed", type=int, default=2_000, help="listed identifiers that appear in traffic")
    parser.add_argument("--partitions", type=int, default=partitions, help="partitions per input topic")
    parser.add_argument("--procs", type=int, default=2, help="generator processes")
    parser.add_argument("--timeout", type=float, default=timeout,
                        help="seconds each wait may take: the worker ready, the backlog drained, the steady traffic "
                             "decided")
    parser.add_argument("--policy", default="shadow",
                        help="shadow (the default: the shipped policy, every behaviour rule evaluated in shadow, "
                             "so it costs what ships and sends only blocklist commands, which the generator's "
                             "ground truth judges), blocklist-only (the shipped policy's blocklist_match alone), "
                             "or a policy file (its commands are judged against blocklist truth); the result's "
                             "policy_rules names each rule run and its mode")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (broker and worker logs)")


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The shipped policy drains ~3,000-4,500 events/s on this machine (docs/performance.md), ~2,200 with --hot-keys:
    # 600,000 events take 2.5-4.5 minutes, more when the cores are shared.
    traffic_arguments(parser, blocklist=1_000_000, events=600_000, rate=20_000, steady_seconds=30, partitions=4,
                      timeout=600)
    parser.add_argument("--warmup-seconds", type=float, default=5,
                        help="first seconds of each paced phase left out of its latency percentiles (all plotted)")
    parser.add_argument("--transfers-format", choices=("json", "pacs008"), default="json",
                        help="transfers as contract JSON or as ISO 20022 pacs.008 XML (SEKAT_TRANSFERS_FORMAT)")
    parser.add_argument("--decode-processes", type=int, default=None,
                        help="SEKAT_DECODE_PROCESSES for the worker (default: the worker's own default)")
    parser.add_argument("--hot-keys", action="store_true",
                        help="add a caller reaching 50,000 distinct callees in 10 min (1 event in 12) and a payee "
                             "paid by 10,000 distinct payers in an hour (1 in 60), backdated out of order, to the "
                             "backlog and steady traffic; they are due no command (a policy file that enforces "
                             "behaviour rules makes their commands false ones), and latency stays measured on "
                             "listed events' commands only, i.e. on every other customer (see above)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the worker with py-spy (by PID, 200/s) while it drains the backlog: "
                             "load_tests/results/profile-<stamp>.txt (collapsed stacks) and -top.txt (top functions)")
    result = run(parser.parse_args())
    print(orjson.dumps(result).decode())

if __name__ == "__main__":
    main()
