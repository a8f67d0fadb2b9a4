"""`python -m devstack.host`: local.settings.json Values become environment variables, host.json is read."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from devstack.host.devhost import DevHost

log = logging.getLogger("devstack.host")


def load_settings(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """`Values` and `Host` of a local.settings.json; a missing file means no settings."""
    if not path.exists():
        log.warning("%s not found; running with the environment only", path)
        return {}, {}
    data = json.loads(path.read_text(encoding="utf-8"))
    values = {str(k): str(v) for k, v in (data.get("Values") or {}).items()}
    return values, dict(data.get("Host") or {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.host", description=__doc__)
    parser.add_argument("--port", type=int, help="HTTP port (default: Host.LocalHttpPort or 7071)")
    parser.add_argument("--settings", type=Path, default=Path("local.settings.json"))
    parser.add_argument("--host-json", type=Path, default=Path("host.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The app quiets the client libraries itself (sync_core.adapters.telemetry), as it must under the real
    # worker, which sets the root logger to INFO; the host sets no level of its own.
    values, host_section = load_settings(args.settings)
    for name, value in values.items():
        # Like Core Tools: a variable already in the environment wins over local.settings.json.
        if name in os.environ:
            log.info("Skipping '%s' from %s: already set in the environment", name, args.settings)
        else:
            os.environ[name] = value
    host_json = json.loads(args.host_json.read_text(encoding="utf-8")) if args.host_json.exists() else {}
    sys.path.insert(0, os.getcwd())
    # Imported only now: like Core Tools, the app sees local.settings.json values as environment variables.
    from function_app import app

    port = args.port if args.port is not None else int(host_section.get("LocalHttpPort", 7071))
    host = DevHost(app, {k: os.environ[k] for k in values}, host_json, port=port)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    host.start()
    print("\nFunctions:\n")
    for route in host._routes:
        methods = ",".join(sorted(route.methods)) if route.methods else "ALL"
        template = str(route.function.trigger.get("route") or route.function.name)
        prefix = f"/{host.route_prefix}" if host.route_prefix else ""
        print(f"\t{route.function.name}: [{methods}] {host.base_url}{prefix}/{template}")
    for fn in host.functions.values():
        if fn.kind != "httpTrigger":
            print(f"\t{fn.name}: {fn.kind}")
    print(
        f"\nFire a timer or queue function: POST {host.base_url}/admin/functions/<name> (master key)\n",
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    log.info("Stopping DevHost")
    host.stop()
    return 0
