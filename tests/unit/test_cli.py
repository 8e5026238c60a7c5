"""The sekat command: a bad configuration stops start-up with a message naming the setting."""

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from sekat.settings import SETTINGS_DOC, Settings

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SEKAT_")} | env
    return subprocess.run([sys.executable, "-m", "sekat.cli", *args], env=full, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_bad_setting_stops_the_worker_naming_the_variable() -> None:
    result = run("worker", SEKAT_BATCH_MAX="many")
    assert result.returncode == 2
    assert "SEKAT_BATCH_MAX" in result.stderr and "whole number" in result.stderr


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("worker", "api", "apikey", "up", "down", "topics", "blocklist", "top", "acls"):
        assert command in result.stdout


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for f in fields(Settings):
        assert f"SEKAT_{f.name.upper()}" in readme, f"README misses SEKAT_{f.name.upper()}"
    assert set(SETTINGS_DOC) == {f.name for f in fields(Settings)}


def test_unknown_input_format_stops_the_worker_naming_the_variable() -> None:
    result = run("worker", SEKAT_TRANSFERS_FORMAT="swift-mt103")
    assert result.returncode == 2
    assert "SEKAT_TRANSFERS_FORMAT" in result.stderr and "pacs008" in result.stderr


def test_the_worker_leaves_the_root_logger_at_the_configured_level() -> None:
    # Faust's spinner (shown at warning and above) would set the root logger to DEBUG: every library's
    # debug call, one per message sent, would then build (and redact) a record nobody keeps.
    import logging

    import faust

    from sekat.cli import faust_worker

    settings = Settings.from_environ({"SEKAT_LOG_LEVEL": "warning"})
    worker = faust_worker(faust.App("sekat-test-spinner", broker="kafka://127.0.0.1:1"), settings)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        root.addHandler(logging.NullHandler())
        worker.on_setup_root_logger(root, logging.WARNING)
        assert root.level == level
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
