"""CLI commands on the poison queue: `failures` (with reasons, or the whole ledger) and `replay`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from sync_core.adapters.storage.core import CHANGES_QUEUE
from sync_core.bootstrap import Container
from sync_core.ops import operations as ops
from sync_core.ops.cli_common import err, filters, out, print_json, run_with, when


def poison_table(items: Sequence[ops.PoisonItem], title: str) -> Table:
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
            when(i.poisoned_at),
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
                c.storage,
                c.failures,
                dry_run=args.dry_run,
                on_progress=step,
                now=c.clock.now(),
                **filters(args),
            )
        if args.json:
            print_json(report.to_dict())
        else:
            verb = "would move" if args.dry_run else "chosen"
            out.print(poison_table(report.chosen, f"{len(report.chosen)} poison message(s) {verb}"))
            if not args.dry_run:
                out.print(f"moved {len(report.moved)} to {CHANGES_QUEUE}, {len(report.failed)} failed")
            for message_id, reason in report.failed.items():
                err.print(f"[red]{message_id}[/red]: {reason}")
            if report.truncated:
                err.print(f"only the first {ops.MAX_SCAN} poison messages were looked at; run again for more")
        return 0 if report.ok else 1

    return run_with(work)


def cmd_failures(args: argparse.Namespace) -> int:
    async def work(c: Container) -> int:
        if args.ledger:
            rows = await c.failures.all(limit=args.limit or 1000)
            if args.json:
                print_json(rows)
                return 0
            table = Table(title=f"{len(rows)} failure ledger row(s): the latest failure of each message")
            for column in ("last failed", "attempts", "error class", "step", "mailbox", "permanent", "error"):
                table.add_column(column, overflow="fold")
            for r in sorted(rows, key=lambda r: str(r.get("LastFailedAt")), reverse=True):
                table.add_row(
                    when(r.get("LastFailedAt")),
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
            items = await ops.list_poison(c.storage, c.failures, now=c.clock.now(), **filters(args))
        if args.json:
            print_json([i.to_dict() for i in items])
        else:
            out.print(poison_table(items, f"{len(items)} poison message(s)"))
        return 0

    return run_with(work)
