"""The sekat command: a bad configuration stops start-up with a message naming the setting; every
subcommand's --help says what it does and lists the settings it reads, as its code reads them."""

import argparse
import ast
import importlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import fields
from functools import cache
from pathlib import Path

import pytest

import sekat
from sekat.cli import build_parser, main
from sekat.cli.command import member_reads
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
    for command in ("worker", "relay", "api", "apikey", "up", "down", "topics", "blocklist", "top", "acls", "redis-acls", "send",
                    "tail"):
        assert command in result.stdout


def test_the_configuration_doc_has_a_row_for_every_setting() -> None:
    table = (ROOT / "docs" / "configuration.md").read_text()
    for f in fields(Settings):
        assert f"| `SEKAT_{f.name.upper()}` |" in table, f"docs/configuration.md misses SEKAT_{f.name.upper()}"
    assert set(SETTINGS_DOC) == {f.name for f in fields(Settings)}


def test_a_bad_institutions_file_stops_the_relay_naming_the_entry_and_never_the_secret(tmp_path: Path) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    bad = tmp_path / "institutions.yaml"
    bad.write_text(f"institutions:\n  - id: MBBEMYKL\n    url: http://hooks.example/sekat\n    secrets: [{secret}]\n")
    result = run("relay", SEKAT_INSTITUTIONS_FILE=str(bad))
    assert result.returncode == 2
    assert "SEKAT_INSTITUTIONS_FILE" in result.stderr and "entry 1 (MBBEMYKL): url must be https" in result.stderr
    assert secret[6:] not in result.stderr + result.stdout
    result = run("relay")
    assert result.returncode == 2 and "SEKAT_INSTITUTIONS_FILE" in result.stderr


def test_unknown_input_format_stops_the_worker_naming_the_variable() -> None:
    result = run("worker", SEKAT_TRANSFERS_FORMAT="swift-mt103")
    assert result.returncode == 2
    assert "SEKAT_TRANSFERS_FORMAT" in result.stderr and "pacs008" in result.stderr


def test_the_worker_leaves_the_root_logger_at_the_configured_level() -> None:
    # Faust's spinner (shown at warning and above) would set the root logger to DEBUG: every library's
    # debug call, one per message sent, would then build (and redact) a record nobody keeps.
    import logging

    import faust

    from sekat.cli.processes import faust_worker

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


def test_version_prints_the_package_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout == f"sekat {sekat.__version__}\n"


def subcommands(parser: argparse.ArgumentParser,
                path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every subcommand that runs something (``blocklist add``, not ``blocklist``), with its parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from subcommands(child, (*path, name))
            return
    yield path, parser


FIELDS = {f.name for f in fields(Settings)}


@cache
def definitions(module: str) -> tuple[dict[str, ast.AST], dict[str, tuple[str, str]]]:
    """A module's functions and classes by name, and the names it imports from ``sekat`` (anywhere in it)."""
    tree = ast.parse(Path(importlib.import_module(module).__file__ or "").read_text())
    defs = {node.name: node for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    imported = {alias.asname or alias.name: (node.module, alias.name) for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("sekat.")
                for alias in node.names}
    return defs, imported


def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent is a module, not a package
        return False


def settings_read_by(module: str, name: str, seen: set[tuple[str, str]]) -> set[str]:
    """The Settings fields that function or class ``name`` of ``module`` reads (``settings.X``,
    ``self.settings.X``), directly or through the functions and classes of ours it names."""
    if (module, name) in seen or module == "sekat.settings":
        return set()
    seen.add((module, name))
    defs, imported = definitions(module)
    found: set[str] = set()
    for node in ast.walk(defs[name]) if name in defs else ():
        if isinstance(node, ast.Attribute) and (isinstance(node.value, ast.Name) and node.value.id == "settings"
                                                or isinstance(node.value, ast.Attribute)
                                                and node.value.attr == "settings"):
            found |= {node.attr} & FIELDS | set(member_reads().get(node.attr, ()))
        elif isinstance(node, ast.Name) and node.id in defs:
            found |= settings_read_by(module, node.id, seen)
        elif isinstance(node, ast.Name) and node.id in imported:
            source, imported_name = imported[node.id]
            submodule = f"{source}.{imported_name}"
            if is_module(submodule):  # a module (e.g. a router's): all that it defines
                for each in definitions(submodule)[0]:
                    found |= settings_read_by(submodule, each, seen)
            else:
                found |= settings_read_by(source, imported_name, seen)
    return found


@pytest.mark.parametrize("path, parser", [pytest.param(path, parser, id=" ".join(path))
                                          for path, parser in subcommands(build_parser())])
def test_help_says_what_the_subcommand_does_and_the_settings_its_code_reads(
        path: tuple[str, ...], parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    shown = capsys.readouterr().out
    assert done.value.code == 0
    description = " ".join((parser.description or "").split())
    assert description.endswith(".") and 1 <= description.count(". ") + 1 <= 2, description  # a sentence or two
    assert description in " ".join(shown.split())
    # What the code reads: the handler and what it calls, the start-up check of each server it needs,
    # and the log level (every command).
    handler = parser.get_default("func")
    read = settings_read_by(handler.__module__, handler.__name__, set()) | {"log_level"}
    for server in parser.get_default("needs"):
        read |= settings_read_by("sekat.preflight", f"check_{server}", set())
    listed = " ".join(shown.split()).split("Settings read: ", 1)[1].split(". ", 1)[0].split(", ")
    assert listed == [f"SEKAT_{f.name.upper()}" for f in fields(Settings) if f.name in read]


def test_the_commands_that_group_subcommands_say_what_they_hold() -> None:
    for name in ("blocklist", "apikey"):
        result = run(name, "--help")
        assert result.returncode == 0
        assert "Each subcommand's --help says what it does and lists the settings it reads." in " ".join(
            result.stdout.split())
