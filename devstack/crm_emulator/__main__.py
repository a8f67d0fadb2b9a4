"""Run the CRM emulator alone: `python -m devstack.crm_emulator --port 7082 --webhook-url URL --secret S`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from pathlib import Path

from devstack.crm_emulator.emulator import DEFAULT_TOKEN, DEFAULT_WEBHOOK_SECRET, CrmEmulator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.crm_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    parser.add_argument("--port", type=int, default=7082)
    parser.add_argument("--webhook-url", default=None, help="where to POST signed change webhooks")
    parser.add_argument(
        "--secret",
        action="append",
        default=None,
        help="webhook signing secret; give it twice to sign with both during a rotation",
    )
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="bearer token / API key the API accepts")
    parser.add_argument(
        "--api-key-header", default="X-Api-Key", help="header that carries the token as an API key"
    )
    parser.add_argument(
        "--seed-file", type=Path, default=None, help="JSON file {users, contacts, spaces} loaded at start"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    secrets = args.secret or [DEFAULT_WEBHOOK_SECRET]
    emulator = CrmEmulator(
        args.host, args.port, args.webhook_url, secrets[0], args.token, api_key_header=args.api_key_header
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with emulator:
        emulator.set_webhook_secrets(*secrets)
        if args.seed_file is not None:
            data = json.loads(args.seed_file.read_text())
            emulator.seed(
                users=data.get("users", ()), contacts=data.get("contacts", ()), spaces=data.get("spaces", ())
            )
        print(
            f"CRM emulator on {emulator.base_url} (admin {emulator.admin_url}), webhooks: {args.webhook_url}",
            flush=True,
        )
        stop.wait()


if __name__ == "__main__":
    main()
