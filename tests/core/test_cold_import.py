"""A cold start's share that is ours: `import function_app` registers the functions and loads no client
stack (issue 20: under 300 ms). Counted in a fresh interpreter, never timed; the triggers import sync_core's
service on their first invocation (triggers/*.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import app_functions

ROOT = Path(__file__).resolve().parents[2]

# What the cold path does not need: the client stacks, the settings model, telemetry, the composition root.
HEAVY = (
    "msgraph",
    "kiota_abstractions",
    "azure.identity",
    "azure.core",
    "azure.data.tables",
    "azure.storage.queue",
    "opentelemetry",
    "httpx",
    "aiohttp",
    "pydantic",
    "pydantic_settings",
    "sync_core.bootstrap",
    "sync_core.settings",
)

SNIPPET = """
import json, sys
import function_app
heavy = json.loads(sys.argv[1])
loaded = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
print(json.dumps({"loaded": loaded, "functions": len(function_app.app.get_functions())}))
"""


def _fresh_import() -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET, json.dumps(HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_importing_function_app_loads_no_client_stack_settings_or_telemetry() -> None:
    assert _fresh_import()["loaded"] == []


def test_the_cold_import_still_registers_every_function() -> None:
    assert _fresh_import()["functions"] == len(app_functions()) > 0
