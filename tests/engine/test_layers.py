"""The pure line holds: the engine and the domain import without Azure, Graph or HTTP installed, and the
import-linter contracts of pyproject.toml (layers, purity, independent adapters, no cycles) are kept."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter where importing any of these packages fails, as it would where they are not
# installed; then imports every module of sync_core.engine and sync_core.domain.
_WITHOUT_IO = """
import importlib, pkgutil, sys
BLOCKED = ("azure", "msgraph", "kiota_abstractions", "kiota_http", "httpx", "aiohttp", "opentelemetry")
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, Refuse())
import sync_core.engine, sync_core.domain
names = []
for package in (sync_core.engine, sync_core.domain):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
        names.append(info.name)
from sync_core.engine.decide import decide
print(len(names))
"""


def test_the_engine_and_the_domain_import_without_azure_graph_or_http_packages() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_IO], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 10, "every engine and domain module was imported"


def test_the_import_contracts_are_kept_and_an_engine_module_importing_an_adapter_breaks_them(
    tmp_path: Path,
) -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    kept = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert kept.returncode == 0, kept.stdout + kept.stderr

    # The same contracts over a copy of sync_core in which one engine module imports the Graph adapter.
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "sync_core", copy / "sync_core", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    scope = copy / "sync_core" / "engine" / "scope.py"
    scope.write_text(scope.read_text() + "\nfrom sync_core.adapters.graph import adapter as _leak  # noqa\n")
    broken = subprocess.run(
        [str(lint)], cwd=copy, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(copy)}
    )
    assert broken.returncode != 0
    assert "sync_core.engine is not allowed to import sync_core.adapters" in broken.stdout
