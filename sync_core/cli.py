"""`python -m sync_core`: the operator's command line (replay, failures, subscriptions, backfill, explain...).

I/O side: reads settings like the app, calls `sync_core.operations`, prints with rich. Exit codes: 0 ok,
1 the operation failed or found problems, 2 usage or configuration errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from sync_core import operations as ops
from sync_core.bootstrap import Container, configuration, utcnow
from sync_core.errors import ConfigurationError, SyncError, UnprocessableError
from sync_core.messages import MailboxResync
from sync_core.policy import load_policy
from sync_core.reconcile import Reconciler
from sync_core.storage import CHANGES_QUEUE

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
Command = Callable[[argparse.Namespace], int]


def _duration(text: str) -> timedelta:
    try:
        return ops.parse_duration(text)
    except UnprocessableError as exc:
        raise argparse.ArgumentTypeError(exc.message) from exc


def _ago(delta: timedelta | None) -> str:
    if delta is None:
        return "never"
    seconds = int(delta.total_seconds())
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    text = f"{days}d {hours}h" if days else f"{hours}h {minutes}m" if hours else f"{minutes}m {seconds % 60}s"
    return sign + text


def _when(value: datetime | str | None) -> str:
    if not value:
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def load_settings_file(path: Path) -> None:
    """Put a local.settings.json's Values into the environment (they win over what is already set)."""
    try:
        values = json.loads(path.read_text(encoding="utf-8")).get("Values")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigurationError([f"--settings {path}: cannot read a local.settings.json ({exc})"]) from exc
    if not isinstance(values, dict):
        raise ConfigurationError([f'--settings {path}: no "Values" object'])
    os.environ.update({str(k): str(v) for k, v in values.items() if v is not None})
    configuration.cache_clear()  # the environment just changed under the cached settings


def _run(work: Callable[[Container], Awaitable[int]]) -> int:
    """Build the app's container from validated settings, run `work` on it, close it."""
    settings, policy = configuration()

    async def main() -> int:
        c = Container(settings, policy)
        try:
            return await work(c)
        finally:
            await c.aclose()

    return asyncio.run(main())


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "mailbox": args.mailbox,
        "error_class": args.error_class,
        "older_than": args.older_than,
        "message_id": args.message_id,
        "limit": args.limit,
    }


def _poison_table(items: Sequence[ops.PoisonItem], title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for column in (
        "message id",
        "poisoned",
        "kind",
        "mailbox",
        "item",
        "error class",
        "step",
        "tries",
        "reason",
    ):
        table.add_column(column, overflow="fold")
    for i in items:
        tries = str(i.dequeue_count) if i.dequeue_count is not None else "-"
        item = i.item_id if len(i.item_id) <= 24 else i.item_id[:21] + "..."
        table.add_row(
            i.message_id,
            _when(i.poisoned_at),
            i.kind,
            i.mailbox or "-",
            item or "-",
            i.error_class,
            i.step or "-",
            tries,
            i.reason,
        )
    return table


# -- commands --------------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    async def work(c: Container) -> int:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            task = progress.add_task("reading the poison queue", total=None)

            def step(done: int, total: int) -> None:
                progress.update(task, description="moving to sync-changes", completed=done, total=total)

            report = await ops.replay(
                c.storage, c.failures, dry_run=args.dry_run, on_progress=step, **_filters(args)
            )
        if args.json:
            _json(report.to_dict())
        else:
            verb = "would move" if args.dry_run else "chosen"
            out.print(_poison_table(report.chosen, f"{len(report.chosen)} poison message(s) {verb}"))
            if not args.dry_run:
                out.print(f"moved {len(report.moved)} to {CHANGES_QUEUE}, {len(report.failed)} failed")
            for message_id, reason in report.failed.items():
                err.print(f"[red]{message_id}[/red]: {reason}")
            if report.truncated:
                err.print(f"only the first {ops.MAX_SCAN} poison messages were looked at; run again for more")
        return 0 if report.ok else 1

    return _run(work)


def cmd_failures(args: argparse.Namespace) -> int:
    async def work(c: Container) -> int:
        if args.ledger:
            rows = await c.failures.all(limit=args.limit or 1000)
            if args.json:
                _json(rows)
                return 0
            table = Table(title=f"{len(rows)} failure ledger row(s): the latest failure of each message")
            for column in ("last failed", "attempts", "error class", "step", "mailbox", "permanent", "error"):
                table.add_column(column, overflow="fold")
            for r in sorted(rows, key=lambda r: str(r.get("LastFailedAt")), reverse=True):
                table.add_row(
                    _when(r.get("LastFailedAt")),
                    str(r.get("Attempts", "")),
                    str(r.get("ErrorClass", "")),
                    str(r.get("Step", "")),
                    str(r.get("Mailbox") or "-"),
                    str(r.get("Permanent", "")),
                    str(r.get("Error", "")),
                )
            out.print(table)
            return 0
        with err.status("reading the poison queue"):
            items = await ops.list_poison(c.storage, c.failures, **_filters(args))
        if args.json:
            _json([i.to_dict() for i in items])
        else:
            out.print(_poison_table(items, f"{len(items)} poison message(s)"))
        return 0

    return _run(work)


def cmd_subscriptions(args: argparse.Namespace) -> int:
    async def work(c: Container) -> int:
        if args.action == "list":
            return await _list_subscriptions(c, args.mailbox)
        if args.action == "renew":
            with err.status("renewing subscriptions"):
                report = await ops.renew_subscriptions(c, utcnow, args.mailbox)
            out.print(f"renewed {report.renewed}, re-created {report.recreated}, failed {report.failed}")
            return 1 if report.failed else 0
        mailboxes = [args.mailbox] if args.mailbox else [mb for mb, _ in ops.sync_mailboxes(c.policy)]
        failed = 0
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err
        ) as progress:
            task = progress.add_task("re-creating subscriptions", total=len(mailboxes))
            for mailbox in mailboxes:
                try:
                    row = await ops.recreate_subscription(c, utcnow, mailbox)
                    out.print(f"{mailbox}: {row.subscription_id} (expires {_when(row.expires_at)})")
                except SyncError as exc:
                    failed += 1
                    err.print(f"[red]{mailbox}[/red]: {exc}")
                progress.advance(task)
        return 1 if failed else 0

    return _run(work)


async def _list_subscriptions(c: Container, mailbox: str | None) -> int:
    now = utcnow()
    rows = [r for r in await c.subscriptions.all() if not mailbox or r.mailbox.lower() == mailbox.lower()]
    table = Table(title="Graph subscriptions")
    for column in (
        "mailbox",
        "subscription id",
        "status",
        "expires",
        "expires in",
        "last renewal",
        "last notified",
    ):
        table.add_column(column, overflow="fold")
    for r in sorted(rows, key=lambda r: (r.mailbox, r.expires_at)):
        table.add_row(
            r.mailbox,
            r.subscription_id,
            r.status,
            _when(r.expires_at),
            _ago(r.expires_at - now),
            _when(r.last_renewal),
            _when(r.last_notification),
        )
    known = {r.mailbox.lower() for r in rows}
    for mb, _ in ops.sync_mailboxes(c.policy):
        if mb not in known and (not mailbox or mb == mailbox.lower()):
            table.add_row(mb, "[red]none[/red]", "-", "-", "-", "-", "-")
    out.print(table)
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    mailbox = args.mailbox.strip().lower()

    async def work(c: Container) -> int:
        if c.policy.user_for_mailbox(mailbox) is None and c.policy.room(mailbox) is None:
            err.print(f"{mailbox} is neither a sync user's mailbox nor a room in the policy")
            return 2
        if args.inline:
            return await _backfill_inline(c, mailbox)
        message = await ops.backfill(c.storage, mailbox, utcnow())
        out.print(f"enqueued a full resync of {mailbox} ({message.correlation_id})")
        if args.no_wait:
            return 0
        deadline = asyncio.get_running_loop().time() + args.wait_seconds
        with err.status("waiting for the worker") as status:
            while asyncio.get_running_loop().time() < deadline:
                state = await c.mailbox_states.get(mailbox)
                depth = await c.storage.queue_depth(CHANGES_QUEUE)
                if state.last_confirmed and state.last_confirmed >= message.received_at:
                    out.print(
                        f"{mailbox} resynced at {_when(state.last_confirmed)}; {depth} change(s) queued"
                    )
                    return 0
                status.update(
                    f"waiting for the worker to run the resync ({depth} message(s) in {CHANGES_QUEUE})"
                )
                await asyncio.sleep(2)
        err.print(f"not confirmed within {args.wait_seconds} s; the resync stays queued")
        return 1

    return _run(work)


async def _backfill_inline(c: Container, mailbox: str) -> int:
    found = 0
    with err.status(f"reading {mailbox} through delta") as status:

        async def enqueue(text: str) -> None:
            nonlocal found
            await c.storage.enqueue(text)
            found += 1
            status.update(f"reading {mailbox} through delta: {found} change(s) enqueued")

        reconciler = Reconciler(
            graph=c.graph, states=c.mailbox_states, policy=c.policy, enqueue=enqueue, clock=utcnow
        )
        message = MailboxResync(
            correlation_id=f"ops-inline-{int(utcnow().timestamp())}",
            received_at=utcnow(),
            mailbox=mailbox,
            reason="backfill by an operator (inline)",
            full=True,
        )
        await reconciler.resync_mailbox(message)
    out.print(f"{mailbox}: {found} change(s) enqueued to {CHANGES_QUEUE}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    async def work(c: Container) -> int:
        rows = await ops.explain(c.decisions, c.mappings, args.id, mailbox=args.mailbox)
        if args.json:
            _json(rows)
            return 0 if rows else 1
        if not rows:
            err.print(f"no decision recorded for {args.id} (as a Graph event id or a CRM id)")
            return 1
        table = Table(title=f"decisions about {args.id}, newest first")
        for column in ("at", "side", "item", "rule", "outcome", "reason", "actions", "versions"):
            table.add_column(column, overflow="fold")
        for d in rows:
            actions = ", ".join(str(a.get("kind", a)) for a in d.get("actions") or [] if isinstance(a, dict))
            versions = ", ".join(f"{k}={v}" for k, v in (d.get("versions") or {}).items())
            table.add_row(
                _when(d["at"]),
                d["side"],
                d["item_id"],
                d["rule"],
                d["outcome"],
                d["reason"],
                actions or "-",
                versions or "-",
            )
        out.print(table)
        return 0

    return _run(work)


def cmd_status(args: argparse.Namespace) -> int:
    async def work(c: Container) -> int:
        report = await ops.status(c.storage, c.subscriptions, c.mailbox_states, c.policy, utcnow())
        reasons = ops.problems(report, stale_after=args.stale_after, expiry_margin=args.expiry_margin)
        if args.json:
            _json({"ok": not reasons, "reasons": reasons} | report.to_dict())
            return 1 if reasons else 0
        table = Table(title="sync mailboxes")
        for column in ("mailbox", "user", "last confirmed", "age", "subscription", "status", "expires in"):
            table.add_column(column, overflow="fold")
        for m in report.mailboxes:
            left = _ago(m.expires_at - report.at) if m.expires_at else "-"
            sub = m.subscription_id or "none"
            table.add_row(
                m.mailbox,
                m.user,
                _when(m.last_confirmed),
                _ago(m.age),
                sub,
                m.subscription_status or "-",
                left,
            )
        out.print(table)
        out.print(
            f"{CHANGES_QUEUE}: {report.queue_depth} message(s); poison: {report.poison_depth} message(s)"
        )
        if (nearest := report.nearest_expiry) and nearest.expires_at:
            out.print(f"nearest expiry: {nearest.mailbox} in {_ago(nearest.expires_at - report.at)}")
        if stalest := report.stalest:
            when = f"last confirmed {_ago(stalest.age)} ago" if stalest.age is not None else "never confirmed"
            out.print(f"stalest mailbox: {stalest.mailbox}, {when}")
        for reason in reasons:
            err.print(f"[red]unhealthy[/red]: {reason}")
        return 1 if reasons else 0

    return _run(work)


def cmd_policy_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(Path(args.file))
    except ConfigurationError as exc:
        err.print(f"{args.file}: {len(exc.problems)} problem(s)")
        for problem in exc.problems:
            err.print(f"  - {problem}", markup=False)
        return 2
    _json(policy.model_dump(mode="json"))
    return 0


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
        "--older-than", type=_duration, metavar="AGE", help="poisoned at least AGE ago: 90s, 30m, 2h"
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
    p.add_argument("--stale-after", type=_duration, default=ops.STALE_AFTER, metavar="AGE", help="default 2h")
    p.add_argument(
        "--expiry-margin", type=_duration, default=ops.EXPIRY_MARGIN, metavar="AGE", help="default 1h"
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
