"""CLI: `python -m devstack.graph_emulator --port 7081 [--mailbox id,mail,Name[,room[,moderated]]]`."""

from __future__ import annotations

import argparse
import threading

from devstack.graph_emulator import GraphEmulator


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Microsoft Graph emulator on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7081)
    parser.add_argument(
        "--mailbox",
        action="append",
        default=[],
        metavar="ID,MAIL,NAME[,KIND[,ROOM_MODE]]",
        help="pre-register a mailbox; repeatable (KIND is user or room)",
    )
    args = parser.parse_args()
    emulator = GraphEmulator(host=args.host, port=args.port).start()
    for spec in args.mailbox:
        parts = [p.strip() for p in spec.split(",")]
        if len(parts) < 3:
            parser.error(f"--mailbox needs ID,MAIL,NAME: {spec!r}")
        kind = parts[3] if len(parts) > 3 else "user"
        emulator.add_mailbox(
            parts[0], parts[1], parts[2], kind=kind, room_mode=parts[4] if len(parts) > 4 else None
        )
    print(emulator.base_url, flush=True)
    print(f"admin: {emulator.admin_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
