"""CLI commands on the sync itself: subscriptions, backfill, explain, status, policy check."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from sync_core.adapters.storage.core import CHANGES_QUEUE
from sync_core.bootstrap import Container
from sync_core.domain.messages import MailboxResync
from sync_core.domain.policy import load_policy
from sync_core.errors import ConfigurationError, SyncError
from sync_core.ops import operations as ops
from sync_core.ops.cli_common import ago, err, out, print_json, run_with, when
from sync_core.service.reconcile import Reconciler


def cmd_subscriptions(args: argparse.Namespace) -> int:
    async def work(c: Container) -> int:
        if args.action == "list":
            return await _list_subscriptions(c, args.mailbox)
        if args.action == "renew":
            with err.status("renewing subscriptions"):
                report = await ops.renew_subscriptions(c, args.mailbox)
            if report.overlapped:
                err.print(
                    "skipped: the renewal timer's run holds the lease; nothing renewed. Try again later."
                )
                return 1
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
                    row = await ops.recreate_subscription(c, mailbox)
                    out.print(f"{mailbox}: {row.subscription_id} (expires {when(row.expires_at)})")
                except SyncError as exc:
                    failed += 1
                    err.print(f"[red]{mailbox}[/red]: {exc}")
                progress.advance(task)
        return 1 if failed else 0

    return run_with(work)


async def _list_subscriptions(c: Container, mailbox: str | None) -> int:
    now = c.clock.now()
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
            when(r.expires_at),
            ago(r.expires_at - now),
            when(r.last_renewal),
            when(r.last_notification),
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
        message = await ops.backfill(c.storage, mailbox, c.clock.now())
        out.print(f"enqueued a full resync of {mailbox} ({message.correlation_id})")
        if args.no_wait:
            return 0
        deadline = asyncio.get_running_loop().time() + args.wait_seconds
        with err.status("waiting for the worker") as status:
            while asyncio.get_running_loop().time() < deadline:
                state = await c.mailbox_states.get(mailbox)
                depth = await c.storage.queue_depth(CHANGES_QUEUE)
                if state.last_confirmed and state.last_confirmed >= message.received_at:
                    out.print(f"{mailbox} resynced at {when(state.last_confirmed)}; {depth} change(s) queued")
                    return 0
                status.update(
                    f"waiting for the worker to run the resync ({depth} message(s) in {CHANGES_QUEUE})"
                )
                await asyncio.sleep(2)
        err.print(f"not confirmed within {args.wait_seconds} s; the resync stays queued")
        return 1

    return run_with(work)


async def _backfill_inline(c: Container, mailbox: str) -> int:
    found = 0
    with err.status(f"reading {mailbox} through delta") as status:

        async def enqueue(text: str) -> None:
            nonlocal found
            await c.storage.enqueue(text)
            found += 1
            status.update(f"reading {mailbox} through delta: {found} change(s) enqueued")

        reconciler = Reconciler(
            graph=c.graph,
            states=c.mailbox_states,
            policy=c.policy,
            enqueue=enqueue,
            clock=c.clock.now,
            mappings=c.mappings,
        )
        now = c.clock.now()
        message = MailboxResync(
            correlation_id=f"ops-inline-{int(now.timestamp())}",
            received_at=now,
            mailbox=mailbox,
            reason="backfill by an operator (inline)",
            full=True,
        )
        await reconciler.resync_mailbox(message)
    out.print(f"{mailbox}: {found} change(s) enqueued to {CHANGES_QUEUE}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    async def work(c: Container) -> int:
        mailboxes = [mb for mb, _ in ops.sync_mailboxes(c.policy)]
        rows = await ops.explain(c.decisions, c.mappings, args.id, mailbox=args.mailbox, mailboxes=mailboxes)
        if args.json:
            print_json(rows)
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
                when(d["at"]),
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

    return run_with(work)


def cmd_status(args: argparse.Namespace) -> int:
    async def work(c: Container) -> int:
        report = await ops.status(c.storage, c.subscriptions, c.mailbox_states, c.policy, c.clock.now())
        reasons = ops.problems(report, stale_after=args.stale_after, expiry_margin=args.expiry_margin)
        if args.json:
            print_json({"ok": not reasons, "reasons": reasons} | report.to_dict())
            return 1 if reasons else 0
        table = Table(title="sync mailboxes")
        for column in ("mailbox", "user", "last confirmed", "age", "subscription", "status", "expires in"):
            table.add_column(column, overflow="fold")
        for m in report.mailboxes:
            left = ago(m.expires_at - report.at) if m.expires_at else "-"
            sub = m.subscription_id or "none"
            table.add_row(
                m.mailbox,
                m.user,
                when(m.last_confirmed),
                ago(m.age),
                sub,
                m.subscription_status or "-",
                left,
            )
        out.print(table)
        out.print(
            f"{CHANGES_QUEUE}: {report.queue_depth} message(s); poison: {report.poison_depth} message(s)"
        )
        if (nearest := report.nearest_expiry) and nearest.expires_at:
            out.print(f"nearest expiry: {nearest.mailbox} in {ago(nearest.expires_at - report.at)}")
        if stalest := report.stalest:
            seen = f"last confirmed {ago(stalest.age)} ago" if stalest.age is not None else "never confirmed"
            out.print(f"stalest mailbox: {stalest.mailbox}, {seen}")
        for reason in reasons:
            err.print(f"[red]unhealthy[/red]: {reason}")
        return 1 if reasons else 0

    return run_with(work)


def cmd_policy_check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(Path(args.file))
    except ConfigurationError as exc:
        err.print(f"{args.file}: {len(exc.problems)} problem(s)")
        for problem in exc.problems:
            err.print(f"  - {problem}", markup=False)
        return 2
    print_json(policy.model_dump(mode="json"))
    return 0
