"""The worker's Faust app as ``create_app`` builds it from settings, before anything connects."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from sekat.settings import Settings
from sekat.streams.app import create_app


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


def test_the_reports_agent_reads_the_configured_reports_topic() -> None:
    app = create_app(Settings(app_id="sekat-wiring", topic_reports="agency.reports"), CollectorRegistry())
    [agent] = app.agents.values()
    assert agent.name == "apply_reports"
    assert agent.channel.get_topic_name() == "agency.reports"
