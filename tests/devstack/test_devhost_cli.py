"""`python -m devstack.host`: local.settings.json Values become environment variables, host.json is read,
function_app.app is served until SIGINT."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

FUNCTION_APP = """
import os

import azure.functions as func

SEEN_AT_IMPORT = os.environ.get("GREETING")
app = func.FunctionApp()


@app.route(route="hello", auth_level=func.AuthLevel.ANONYMOUS)
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"{SEEN_AT_IMPORT} / {os.environ.get('OVERRIDDEN')}")


@app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
def yearly(timer: func.TimerRequest) -> None:
    print("yearly ran", flush=True)
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "function_app.py").write_text(FUNCTION_APP)
    values = {
        "GREETING": "hi from local.settings.json",
        "OVERRIDDEN": "from file",
        "DEVHOST_MASTER_KEY": "mk",
    }
    (tmp_path / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    (tmp_path / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": "x"}}})
    )
    return tmp_path


def test_the_cli_serves_function_app_with_local_settings_until_interrupted(project: Path) -> None:
    # A clean environment: other tests (the e2e stack) export DEVHOST_* keys, which would win over the file.
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT), "OVERRIDDEN": "from environment"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.host", "--port", "0"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("admin/functions" in line for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        output = "".join(lines)
        match = re.search(r"hello: \[ALL\] (http://127\.0\.0\.1:\d+)/x/hello", output)
        assert match, output
        assert "yearly: timerTrigger" in output
        base_url = match[1]
        with urllib.request.urlopen(f"{base_url}/x/hello", timeout=10) as response:
            assert response.read().decode() == "hi from local.settings.json / from environment"
        admin = urllib.request.Request(f"{base_url}/admin/functions/yearly?code=mk", method="POST")
        with urllib.request.urlopen(admin, timeout=10) as response:
            assert response.status == 202
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, output + rest
        assert "yearly ran" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
