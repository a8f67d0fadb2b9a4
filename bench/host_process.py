"""The development host in its own process, for benchmarks that need its RSS or its own cores.

`python -m bench.host_process --port P [--ingress-only]`; settings come from the environment (as the
Functions host gives them to the app). `--ingress-only` serves the webhook blueprints alone, so no queue
worker drains what the ingress benchmark enqueues.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

import azure.functions as func

from devstack.host import DevHost
from devstack.stack import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.host_process")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ingress-only", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.ingress_only:
        from triggers import crm_webhooks, graph_webhooks

        app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
        app.register_functions(graph_webhooks.bp)
        app.register_functions(crm_webhooks.bp)
    else:
        from function_app import app
    host_json = json.loads((ROOT / "host.json").read_text())
    host_json["extensions"]["queues"]["maxPollingInterval"] = os.environ.get(
        "BENCH_POLLING_INTERVAL", "00:00:00.100"
    )
    host = DevHost(app, dict(os.environ), host_json, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    host.start()
    while not stop.wait(0.2):
        pass
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
