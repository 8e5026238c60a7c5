"""The layers of docs/architecture.md, kept: every import of ours goes downhill or across, never up.

    top        sekat.cli, sekat.localstack, sekat.preflight            the command and the local stack
    api        sekat.api, sekat.brake.routes                           the agency HTTP API
    worker     sekat.streams, sekat.brake.guard, sekat.release.sweep   the Faust worker
               sekat.relay                                             the webhook relay
    storage    sekat.blocklist, sekat.decode, sekat.metrics,           Redis, decoding, metric objects
               sekat.brake.store/metrics, sekat.release.acted/metrics
    rules      sekat.rules                                             pure decisions, no I/O
    ground     sekat.records, identifiers, settings, errors, ...       the shared vocabulary

A module may import from its own layer or any layer below it. Within a layer there must be no cycle
between modules. The test reads the source (AST), so it sees imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sekat

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"sekat": "sekat", "rules": "sekat.rules", "decode": "sekat.decode", "blocklist": "sekat.blocklist",
           "metrics": "sekat.metrics", "brake": "sekat.brake", "release": "sekat.release",
           "streams": "sekat.streams", "relay": "sekat.relay", "api": "sekat.api"}
# (layer, module prefixes), bottom first; the longest matching prefix wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("sekat",)),
    ("rules", ("sekat.rules",)),
    ("storage", ("sekat.blocklist", "sekat.decode", "sekat.metrics", "sekat.brake.store", "sekat.brake.metrics",
                 "sekat.release.acted", "sekat.release.metrics")),
    ("worker", ("sekat.streams", "sekat.brake", "sekat.release", "sekat.relay")),
    ("api", ("sekat.api", "sekat.brake.routes")),
    ("top", ("sekat.cli", "sekat.localstack", "sekat.preflight")),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}


def layer_of(module: str) -> str:
    best, best_len = "", -1
    for name, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = name, len(prefix)
    return best


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that ``module`` imports (``from p import m`` counts as p.m when m is a module)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name in known and name != module}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_every_module_has_a_layer() -> None:
    assert not [name for name in modules() if not layer_of(name)]


def test_no_import_goes_uphill() -> None:
    uphill = [f"{name} ({layer_of(name)}) imports {target} ({layer_of(target)})"
              for name, targets in graph().items() for target in sorted(targets)
              if RANK[layer_of(target)] > RANK[layer_of(name)]]
    assert uphill == []


def test_no_cycle_between_modules() -> None:
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges[name]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]) if target in trail else target)
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_checker_sees_an_uphill_import(tmp_path: Path) -> None:
    """The check itself works: a ground module importing the worker is reported."""
    bad = tmp_path / "records.py"
    bad.write_text("from sekat.streams.app import create_app\n")
    known = {**modules(), "sekat.records": bad}
    [target] = imports_of("sekat.records", bad, known)
    assert RANK[layer_of(target)] > RANK[layer_of("sekat.records")]


def test_only_sekat_is_installed_at_the_top() -> None:
    """One import namespace: the installed package's folders all sit under ``sekat``."""
    assert Path(sekat.__file__).parent == ROOT / "sekat"
    import sekat.streams.app as app_module
    assert Path(app_module.__file__).parent == ROOT / "streams"
