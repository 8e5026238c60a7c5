"""Traffic generator: several processes producing contract events with confluent-kafka (librdkafka).

The generator must be faster than the worker it feeds, or the benchmark
measures the generator; one librdkafka producer per process sends several
hundred thousand small records a second. Each process returns what it sent
and which commands each listed event must produce.

    python -m load_tests.generate --bootstrap 127.0.0.1:9092 --events 100000 [--rate 20000] [--procs 2] [--hot-keys]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
from confluent_kafka import Producer

from load_tests.traffic import Population, Traffic, iso_ms

UNSTAMPED = "0000-00-00T00:00:00.000Z"  # same length as the time stamped in when the event is sent
UNSTAMPED_B = UNSTAMPED.encode()


@dataclass
class GenResult:
    sent: int = 0
    seconds: float = 0.0
    expected: dict[str, tuple[tuple[str, ...], int]] = field(default_factory=dict)  # event_id -> (actions, ts_ms)
    hot: dict[str, int] = field(default_factory=lambda: {"caller_events": 0, "payee_events": 0})  # hot keys' events
    subjects: dict[str, str] = field(default_factory=dict)  # event_id -> listed identifier key (Traffic.subjects)


def _produce(proc: int, bootstrap: str, topics: dict[str, str], events: int, rate: float | None,
             listed_share: float, customers: int, listed: int, run: str, transfer_format: str, hot_keys: bool,
             procs: int, out: "mp.Queue[GenResult]") -> None:
    # Paced (steady-phase) traffic is what latency is measured on: the generator's own batching delay must not
    # count against Sekat, and events arrive every few milliseconds as from many banks, not in bursts.
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1 if rate else 5, "batch.num.messages": 10000,
                         "queue.buffering.max.messages": 1_000_000, "acks": "all", "enable.idempotence": False})
    traffic = Traffic(Population(customers, listed), listed_share=listed_share, seed=1000 + proc,
                      run=f"{run}{proc}", transfer_format=transfer_format, hot_keys=hot_keys, lane=proc, lanes=procs,
                      **({} if "sms" in topics else {"sms_share": 0.0}))  # SMS only where there is an SMS topic
    result = GenResult()
    # Connected, with every topic's partition leaders known, before the clock starts.
    for topic in topics.values():
        producer.list_topics(topic, timeout=30)
    # Paced runs render every event before the clock starts and only stamp the time in while sending:
    # stamping costs a small fraction of rendering, so at the steady rate the generator leaves the CPU to
    # the worker, and the latency measured is Sekat's, not the generator's competition for the CPU.
    # A hot key's event is stamped with its own time, backdated (``Traffic.backdate_ms``).
    prepared = [traffic.event(seq, UNSTAMPED) for seq in range(events)] if rate else None
    backdate = [traffic.backdate_ms(seq) for seq in range(events)] if rate and hot_keys else None
    started = time.perf_counter()
    pace = max(1, min(1000, int(rate / 200))) if rate else 1000  # paced runs: a slice every ~5 ms
    stamp = b""
    for seq in range(events):
        if seq % pace == 0:
            if rate:
                ahead = seq / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
            now = datetime.now(timezone.utc)
            now_iso, now_ms = now.isoformat(timespec="milliseconds").replace("+00:00", "Z"), int(now.timestamp() * 1000)
            stamp = now_iso.encode()
            producer.poll(0)
        if prepared is not None:
            value, key, kind, expected, event_id = prepared[seq]
            ago = backdate[seq] if backdate is not None else 0
            value = value.replace(UNSTAMPED_B, iso_ms(now_ms - ago).encode() if ago else stamp)
        else:
            value, key, kind, expected, event_id = traffic.event(seq, now_iso)
        while True:
            try:
                producer.produce(topics[kind], value, key)
                break
            except BufferError:
                producer.poll(0.01)
        if expected:
            result.expected[event_id] = (expected, int(time.time() * 1000))
        elif hot_keys and traffic.hot_kind(seq):  # due no command: any command for it counts as false
            result.hot["caller_events" if kind == "calls" else "payee_events"] += 1
    producer.flush(60)
    result.subjects = {e: traffic.subjects[e] for e in result.expected}
    result.sent = events
    result.seconds = time.perf_counter() - started
    out.put(result)


def generate(bootstrap: str, topics: dict[str, str], events: int, rate: float | None = None, procs: int = 2,
             listed_share: float = 0.01, customers: int = 200_000, listed: int = 2_000,
             run: str = "r", transfer_format: str = "json", hot_keys: bool = False) -> GenResult:
    """Send ``events`` in total over ``procs`` processes, at ``rate`` events/s in total (None: as fast as possible).

    ``hot_keys``: with the two adversarial keys of ``load_tests.traffic`` in their shares of the events.
    """
    ctx = mp.get_context("spawn")
    queue: mp.Queue[GenResult] = ctx.Queue()
    share = [events // procs + (1 if i < events % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=_produce, args=(i, bootstrap, topics, share[i], rate / procs if rate else None,
                                                  listed_share, customers, listed, run, transfer_format, hot_keys,
                                                  procs, queue))
               for i in range(procs)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    total = GenResult()
    for _ in workers:
        part = queue.get()
        total.sent += part.sent
        total.expected.update(part.expected)
        total.subjects.update(part.subjects)
        for name, n in part.hot.items():
            total.hot[name] += n
    for w in workers:
        w.join()
    total.seconds = time.perf_counter() - started
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--transfers-topic", default="bank.transfers")
    parser.add_argument("--calls-topic", default="telco.calls")
    parser.add_argument("--sms-topic", default="telco.sms")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=None, help="events/s in total; default: as fast as possible")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--listed-share", type=float, default=0.01)
    parser.add_argument("--transfers-format", choices=("json", "pacs008"), default="json")
    parser.add_argument("--hot-keys", action="store_true",
                        help="with a hot caller and a hot payee (load_tests.traffic)")
    args = parser.parse_args()
    result = generate(args.bootstrap, {"transfers": args.transfers_topic, "calls": args.calls_topic,
                                       "sms": args.sms_topic}, args.events,
                      args.rate, args.procs, args.listed_share, transfer_format=args.transfers_format,
                      hot_keys=args.hot_keys)
    print(orjson.dumps({"sent": result.sent, "seconds": round(result.seconds, 2),
                        "events_per_s": round(result.sent / result.seconds), "listed_events": len(result.expected),
                        **({"hot_keys": result.hot} if args.hot_keys else {})}).decode())


if __name__ == "__main__":
    main()
