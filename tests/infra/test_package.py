"""The deploy package is the app alone (issue 17, item 1): what runs in Azure, no caches, under 1 MB."""

from __future__ import annotations

import zipfile
from pathlib import Path

from devstack.package import ROOT, build, package_files

RUNS = {"function_app.py", "host.json", "requirements.txt", "triggers", "sync_core"}


def test_the_package_holds_what_runs_and_nothing_else(tmp_path: Path) -> None:
    # Caches a test run leaves behind must stay out, wherever they are.
    (ROOT / "sync_core" / "__pycache__").mkdir(exist_ok=True)
    files = build(tmp_path / "app.zip")
    assert {f.parts[0] for f in files} == RUNS
    assert not [f for f in files if "__pycache__" in f.parts or f.suffix == ".pyc"]
    with zipfile.ZipFile(tmp_path / "app.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f.as_posix() for f in files)
    size = sum((ROOT / f).stat().st_size for f in files)
    assert size < 1024 * 1024, f"{size} bytes"


def test_every_python_module_of_the_app_is_in_it() -> None:
    packaged = set(package_files())
    modules = {p.relative_to(ROOT) for top in ("sync_core", "triggers") for p in (ROOT / top).rglob("*.py")}
    assert modules <= packaged
