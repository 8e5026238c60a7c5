"""How a subcommand is declared: what it does, the ``SEKAT_*`` settings it reads, the servers it checks.

``add_command`` gives a subcommand its line in ``sekat --help`` and, in its own ``--help``, a
description and the settings it reads. A command names what it reads as ``Settings`` fields or
``Settings`` methods; a method stands for the fields its source reads, so a setting added to, say,
``Settings.aiokafka_config`` shows in the help of every command that connects to Kafka.
``tests/unit/test_cli.py`` derives each command's list from the code it runs and compares.
"""

from __future__ import annotations

import argparse
import ast
import inspect
from collections.abc import Callable, Iterable
from dataclasses import fields
from functools import cache

from sekat.settings import Settings

Handler = Callable[[Settings, argparse.Namespace], int]

# ``main`` reads the log level for every command; ``sekat.preflight.check`` reads these for each server
# a command needs (``needs``), before the command runs.
EVERY_COMMAND = ("log_level",)
CHECKED = {"kafka": ("app_id", "aiokafka_config"), "redis": ("redis_url",), "api_redis": ("api_redis",)}
KAFKA_AND_REDIS = ("kafka", "redis")
FIELDS = frozenset(f.name for f in fields(Settings))


@cache
def member_reads() -> dict[str, tuple[str, ...]]:
    """For each method and property of ``Settings``: the fields its source reads, through other members too."""
    [cls] = ast.parse(inspect.getsource(Settings)).body
    assert isinstance(cls, ast.ClassDef)
    direct = {node.name: {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
                          and isinstance(n.value, ast.Name) and n.value.id == "self"}
              for node in cls.body if isinstance(node, ast.FunctionDef)}

    def expand(member: str, seen: frozenset[str]) -> set[str]:
        found: set[str] = set()
        for name in direct[member]:
            if name in FIELDS:
                found.add(name)
            elif name in direct and name not in seen:
                found |= expand(name, seen | {name})
        return found

    return {member: tuple(sorted(expand(member, frozenset({member})))) for member in direct}


def settings_read(reads: Iterable[str]) -> list[str]:
    """The ``SEKAT_*`` variables behind ``reads`` (fields or members of ``Settings``), in the order of Settings."""
    wanted: set[str] = set()
    for name in reads:
        if name in member_reads():
            wanted.update(member_reads()[name])
        elif name in FIELDS:
            wanted.add(name)
        else:
            raise ValueError(f"{name!r} is neither a field nor a member of Settings")
    return [f"SEKAT_{f.name.upper()}" for f in fields(Settings) if f.name in wanted]


def add_command(sub: argparse._SubParsersAction, name: str, func: Handler, summary: str, description: str, *,
                reads: Iterable[str] = (), needs: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """Subcommand ``name`` running ``func``: ``summary`` in its parent's list; ``description`` and the settings
    it reads (``reads``, the servers it ``needs`` checked, the log level) in its ``--help``."""
    read = settings_read([*EVERY_COMMAND, *reads, *(setting for server in needs for setting in CHECKED[server])])
    parser = sub.add_parser(name, help=summary, description=description,
                            epilog=f"Settings read: {', '.join(read)}. Every SEKAT_* setting is checked at start.")
    parser.set_defaults(func=func, needs=needs)
    return parser


def add_group(sub: argparse._SubParsersAction, name: str, summary: str, description: str) -> argparse._SubParsersAction:
    """Command ``name`` grouping subcommands (``sekat blocklist add``): its parser's subcommands, to add to."""
    group = sub.add_parser(name, help=summary, description=description,
                           epilog="Each subcommand's --help says what it does and lists the settings it reads.")
    return group.add_subparsers(dest="cmd", required=True)
