"""``sekat top`` renders a frame from two real exposition-format scrapes of worker metrics."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from prometheus_client import CollectorRegistry, generate_latest

from sekat.brake.metrics import BrakeMetrics
from sekat.metrics.top import Scrape, parse, quantile, render
from sekat.metrics.worker import WorkerMetrics
from sekat.records import Action, Command

NOW = datetime(2026, 11, 29, 5, 0, tzinfo=timezone.utc)


def command(action: Action, institution: str) -> Command:
    return Command(action, institution, "x", "e-1", "rule", ("why",), NOW)


def snapshot(url: str, at: float, registry: CollectorRegistry) -> Scrape:
    return Scrape(url, at, parse(generate_latest(registry).decode()))


def test_a_frame_shows_rates_latency_commands_dead_letters_lag_and_down_workers() -> None:
    registries = [CollectorRegistry(), CollectorRegistry()]
    workers = [WorkerMetrics(r, deadletter_reasons=("not_json",)) for r in registries]
    # before: each worker has decided some events already
    for w in workers:
        w.events_by["calls", "ALLOW"].inc(500)
    before = [snapshot(f"http://w{i}/metrics", 100.0, r) for i, r in enumerate(registries)]
    # over the next 2 s: worker 0 decides 160 transfers + 50 calls, worker 1 decides 100 calls
    workers[0].events_by["transfers", "ALLOW"].inc(160)
    workers[0].events_by["calls", "ALLOW"].inc(50)
    workers[1].events_by["calls", "ALLOW"].inc(96)
    workers[1].events_by["calls", "BLOCK"].inc(4)
    for _ in range(99):
        workers[0].latency_by["calls"].observe(0.0015)
    workers[0].latency_by["calls"].observe(0.040)
    workers[1].count_commands([command(Action.BLOCK_CALL, "CELCOM")] * 4)
    workers[1].count_commands([command(Action.HOLD_TRANSFER, "MBBEMYKL")] * 2)
    workers[1].deadletters_by["calls", "not_json"].inc(6)
    workers[0].lookups_by["hit"].inc(5)
    workers[0].lookups_by["miss"].inc(495)
    workers[0].set_consumer_offsets({("telco.calls", 0): (1000, 880), ("telco.calls", 1): (50, 30)})
    workers[1].set_consumer_offsets({("sekat.reports", 0): (70, 40), ("telco.calls", 2): (10, 10)})
    after = [snapshot(f"http://w{i}/metrics", 102.0, r) for i, r in enumerate(registries)]
    after.append(Scrape("http://w9/metrics", 102.0, None, "URLError: connection refused"))

    frame = render(before, after, now=NOW)

    assert "workers 2/3 up" in frame and "over 2.0 s" in frame
    assert "events/s            155.0   transfers 80.0   calls 75.0" in frame
    assert "49.7/s required   headroom 3.12x" in frame
    # p50 inside the (1 ms, 2 ms] bucket, p99 the 99th of 100 observations: still in it
    assert "p50 1.5 ms" in frame and "p99 2.0 ms" in frame
    assert "commands/s            3.0   BLOCK_CALL 2.0   HOLD_TRANSFER 1.0   (since start 6)" in frame
    assert "dead letters/s        3.0   not_json 3.0   (since start 6)" in frame
    # the reports intake's lag beside the screening inputs'
    assert "consumer lag          170 records   telco.calls 140.0   sekat.reports 30.0   largest telco.calls/0 120" in frame
    assert "hit rate 1.00 %" in frame
    assert "DOWN           http://w9/metrics   URLError: connection refused" in frame


def test_a_brake_trip_and_what_it_holds_in_shadow_are_shown() -> None:
    registries = [CollectorRegistry(), CollectorRegistry()]
    for r in registries:
        WorkerMetrics(r)
    brakes = [BrakeMetrics(r) for r in registries]
    before = [snapshot(f"w{i}", 0.0, r) for i, r in enumerate(registries)]
    assert "safety brake   none engaged   trips 0 (since start 0)" in render(before, before, now=NOW)
    brakes[1].trips.labels("entry").inc()  # worker 1 tripped an entry; both workers read the tripped set
    for b in brakes:
        b.set_engaged(["entry:phone:+60376543210", "rule:call_burst"])
    brakes[0].errors.inc(2)
    frame = render(before, [snapshot(f"w{i}", 2.0, r) for i, r in enumerate(registries)], now=NOW)
    assert "safety brake   ENGAGED   entry 1   rule 1   trips 1 (since start 1)   errors/s 1.0" in frame


def test_p99_is_shown_against_the_workers_objective_and_goal() -> None:
    def frame(latency: float, **settings: float) -> str:
        registry = CollectorRegistry()
        w = WorkerMetrics(registry, **settings)
        before = [snapshot("u", 0.0, registry)]
        for _ in range(10):
            w.latency_by["transfers"].observe(latency)
        return render(before, [snapshot("u", 1.0, registry)], now=NOW + timedelta(seconds=1))

    assert "p99 4.0 ms   (goal 10 ms, objective 250 ms)" in frame(0.004)
    assert "over goal (goal 10 ms, objective 250 ms)" in frame(0.05)
    assert "OVER OBJECTIVE (goal 10 ms, objective 250 ms)" in frame(0.5)
    assert "OVER OBJECTIVE (goal 5 ms, objective 20 ms)" in frame(0.05, latency_objective_s=0.02, latency_goal_s=0.005)


def test_a_restarted_worker_counts_from_zero_not_negative() -> None:
    registry = CollectorRegistry()
    w = WorkerMetrics(registry)
    w.events_by["calls", "ALLOW"].inc(1000)
    before = [snapshot("u", 0.0, registry)]
    restarted = CollectorRegistry()
    WorkerMetrics(restarted).events_by["calls", "ALLOW"].inc(10)
    frame = render(before, [snapshot("u", 1.0, restarted)], now=NOW)
    assert "events/s             10.0" in frame


def test_quantile_interpolates_like_prometheus() -> None:
    assert quantile(0.5, {0.001: 0.0, 0.002: 100.0, float("inf"): 100.0}) == 0.0015
    assert quantile(0.99, {0.01: 50.0, float("inf"): 100.0}) == 0.01  # in +Inf: the highest finite bound
    assert quantile(0.99, {0.01: 0.0, float("inf"): 0.0}) is None


def test_live_mode_redraws_each_interval_until_interrupted() -> None:
    from prometheus_client import start_http_server

    from sekat.metrics.top import CLEAR, run

    registry = CollectorRegistry()
    worker = WorkerMetrics(registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    frames: list[str] = []
    ticks = [0]

    def sleep(_: float) -> None:  # each "interval", the worker decides 10 more calls; the 4th tick is Ctrl-C
        ticks[0] += 1
        if ticks[0] == 4:
            raise KeyboardInterrupt
        worker.events_by["calls", "ALLOW"].inc(10)
        time.sleep(0.05)

    try:
        assert run([url], 0.05, once=False, write=frames.append, sleep=sleep) == 0
    finally:
        server.shutdown()
        thread.join(5)
    assert len(frames) == 3
    assert all(f.startswith(CLEAR) and "workers 1/1 up" in f and "calls" in f for f in frames)


def test_the_time_to_act_is_shown_per_institution_and_action_from_the_apis_metrics() -> None:
    from sekat.api.metrics import ApiMetrics

    worker, api = CollectorRegistry(), ApiMetrics(CollectorRegistry())
    WorkerMetrics(worker)
    for seconds in (20, 40, 50, 3000):
        api.time_to_act.labels("CIBBMYKL", "FREEZE_ACCOUNT").observe(seconds)
    api.time_to_act.labels("MBBEMYKL", "HOLD_TRANSFER").observe(400)
    scrapes = [snapshot("http://w/metrics", 100.0, worker), snapshot("http://api/metrics", 100.0, api.registry)]
    frame = render(scrapes, [replace_at(s, 102.0) for s in scrapes], now=NOW)
    # the 2nd of 4 is the 1st of the 2 in (30 s, 60 s]: 45 s, as histogram_quantile interpolates; 400 s: 450 s
    assert "time to act    CIBBMYKL FREEZE_ACCOUNT p50 45.0 s (4)   MBBEMYKL HOLD_TRANSFER p50 7.5 min (1)" in frame
    assert "time to act" not in render(scrapes[:1], [replace_at(scrapes[0], 102.0)], now=NOW)


def replace_at(scrape: Scrape, at: float) -> Scrape:
    return Scrape(scrape.url, at, scrape.samples)
