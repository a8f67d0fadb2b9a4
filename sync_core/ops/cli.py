"""`python -m sync_core`: the operator's command line (replay, failures, subscriptions, backfill,
explain...). I/O side.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sync_core.errors import ConfigurationError, SyncError
from sync_core.ops import operations as ops
from sync_core.ops.cli_common import Command, duration, err, load_settings_file
from sync_core.ops.cli_poison import cmd_failures, cmd_replay
from sync_core.ops.cli_sync import cmd_backfill, cmd_explain, cmd_policy_check, cmd_status, cmd_subscriptions

__all__ = ["build_parser", "load_settings_file", "main"]


# -- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sync_core",
        description="Operate the M365 <-> CRM calendar sync. Settings are read from the environment.",
        epilog="Exit codes: 0 ok, 1 the operation failed or found problems, 2 usage or configuration error.",
    )
    parser.add_argument(
        "--settings", type=Path, metavar="FILE", help="load a local.settings.json's Values first"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--mailbox", metavar="M", help="only messages about this mailbox")
    filters.add_argument(
        "--error-class", metavar="C", help=f"e.g. NotFoundError, TransientError, {ops.UNRECORDED}"
    )
    filters.add_argument(
        "--older-than", type=duration, metavar="AGE", help="poisoned at least AGE ago: 90s, 30m, 2h"
    )
    filters.add_argument("--message-id", metavar="ID", help="one poison message")
    filters.add_argument("--limit", type=int, metavar="N", help="at most N messages")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of tables")

    p = sub.add_parser("replay", parents=[filters, as_json], help="move poison messages back to sync-changes")
    p.add_argument("--dry-run", action="store_true", help="list what would move; move nothing")
    p.set_defaults(run=cmd_replay)

    p = sub.add_parser("failures", parents=[filters, as_json], help="poison messages with their reasons")
    p.add_argument(
        "--ledger", action="store_true", help="the failures ledger instead (includes retries under way)"
    )
    p.set_defaults(run=cmd_failures)

    p = sub.add_parser("subscriptions", help="Graph subscriptions: list, renew now, re-create")
    p.add_argument("action", choices=("list", "renew", "recreate"), help="what to do")
    p.add_argument("--mailbox", metavar="M", help="one mailbox (default: every sync mailbox)")
    p.set_defaults(run=cmd_subscriptions)

    p = sub.add_parser("backfill", help="resync one mailbox over the whole policy window")
    p.add_argument("--mailbox", required=True, metavar="M", help="the mailbox to resync")
    p.add_argument("--inline", action="store_true", help="run the delta read here instead of in the worker")
    p.add_argument("--no-wait", action="store_true", help="enqueue and return")
    p.add_argument(
        "--wait-seconds", type=int, default=600, metavar="S", help="how long to wait (default 600)"
    )
    p.set_defaults(run=cmd_backfill)

    p = sub.add_parser("explain", parents=[as_json], help="every decision about a Graph event id or a CRM id")
    p.add_argument("id", metavar="ID", help="a Graph event id or a CRM appointment id")
    p.add_argument("--mailbox", metavar="M", help="the mailbox of a Graph event id (finds its mapping)")
    p.set_defaults(run=cmd_explain)

    p = sub.add_parser(
        "status", parents=[as_json], help="freshness and subscriptions per mailbox, queue depths"
    )
    p.add_argument("--stale-after", type=duration, default=ops.STALE_AFTER, metavar="AGE", help="default 2h")
    p.add_argument(
        "--expiry-margin", type=duration, default=ops.EXPIRY_MARGIN, metavar="AGE", help="default 1h"
    )
    p.set_defaults(run=cmd_status)

    p = sub.add_parser("policy", help="sync policy tools")
    policy_sub = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    check = policy_sub.add_parser(
        "check", help="validate a policy file and print the effective policy as JSON"
    )
    check.add_argument("file", metavar="FILE", help="a policy JSON file")
    check.set_defaults(run=cmd_policy_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (argparse exits with 2 on usage errors, 0 after --help)."""
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        if args.settings is not None:
            load_settings_file(args.settings)
        return run(args)
    except ConfigurationError as exc:
        err.print(f"configuration: {len(exc.problems)} problem(s)")
        for problem in exc.problems:
            err.print(f"  - {problem}", markup=False)
        return 2
    except SyncError as exc:
        err.print(f"error: {exc}", markup=False)
        return 1
