"""The worker's Faust app as ``create_app`` builds it from settings, before anything connects."""

from __future__ import annotations

import asyncio
import inspect
import shutil
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from sekat.blocklist.applied import reports_group
from sekat.clock import utcnow
from sekat.settings import Settings
from sekat.streams.app import build_worker, create_app, faust_app


def test_the_worker_leaves_no_data_directory_where_it_was_started(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    app = create_app(Settings(app_id="sekat-dirs"), CollectorRegistry())
    app._create_directories()  # what the worker does first when it starts
    datadir = Path(app.conf.datadir)
    try:
        assert datadir.is_dir() and datadir.name == "sekat-dirs-data"
        assert list(tmp_path.iterdir()) == []  # not ./sekat-dirs-data in the directory it was started from
    finally:
        shutil.rmtree(datadir, ignore_errors=True)


def test_the_reports_intake_reads_the_configured_reports_topic_in_its_own_group() -> None:
    settings = Settings(app_id="sekat-wiring", topic_reports="agency.reports")
    app = faust_app(settings)
    worker = build_worker(app, settings, CollectorRegistry(), utcnow)
    worker.register()
    assert not app.agents  # no Faust agent: the intake is a consumer loop of its own, run as a task
    assert "apply_reports" in {getattr(getattr(t, "__wrapped__", t), "__name__", "") for t in app._app_tasks}
    assert worker.intake.settings.topic_reports == "agency.reports"
    assert reports_group(worker.intake.settings) == "sekat-wiring.reports"


def test_every_timer_observes_its_runtime_under_its_name() -> None:
    registry = CollectorRegistry()
    app = create_app(Settings(app_id="sekat-timers"), registry)
    # Faust wraps each timer's function (functools.wraps): the task, then the timer loop, then what it runs
    ticks = {inspect.getclosurevars(f).nonlocals["tick"].__name__: f
             for task in app._app_tasks if (f := getattr(task.__wrapped__, "__wrapped__", None)) is not None}
    assert set(ticks) == {"reload_policy", "keep_index_built", "keep_heap_frozen", "refresh_brake", "release_sweep",
                          "observe_health", "count_blocklist", "purge"}
    asyncio.run(ticks["reload_policy"]())  # the policy check: no Kafka, no Redis
    assert registry.get_sample_value("sekat_periodic_task_seconds_count", {"task": "sekat_reload_policy"}) == 1
