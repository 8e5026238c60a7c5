"""Installing Sekat puts one package on the path, ``sekat``, holding every folder of the repository's code.

Builds the real wheel (``pip wheel``, as ``pip install .`` does) and reads what it would install.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"sekat": "sekat", "rules": "sekat/rules", "decode": "sekat/decode", "blocklist": "sekat/blocklist",
           "metrics": "sekat/metrics", "brake": "sekat/brake", "release": "sekat/release",
           "streams": "sekat/streams", "relay": "sekat/relay", "api": "sekat/api"}


def test_the_wheel_installs_only_sekat_with_every_module_and_the_policy(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md", *FOLDERS):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("sekat-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name.split("/")[0] for name in names} == {"sekat", wheel.name.split("-py")[0] + ".dist-info"}
    expected = {f"{FOLDERS[folder]}/{path.relative_to(ROOT / folder).as_posix()}"
                for folder in FOLDERS for path in (ROOT / folder).rglob("*.py")}
    assert expected - names == set()
    assert "sekat/rules/policy.yaml" in names
    # the pages' templates and static files (sekat api serves them from the installed package)
    web = ROOT / "api" / "web"
    shipped = {f"sekat/api/web/{path.relative_to(web).as_posix()}" for folder in ("templates", "static")
               for path in (web / folder).rglob("*") if path.is_file()}
    assert shipped and shipped - names == set()
