"""Subscriptions the app holds are the ones Graph holds: a subscription Graph forgot is re-created (S1), and
a subscription made by `ensure` is followed by a resync: the full backfill of a mailbox never subscribed
(I5), the gap of one that lapsed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sync_core.domain.messages import MailboxResync, decode
from tests.e2e.conftest import Stack, on_container, wait_for

pytestmark = pytest.mark.e2e


def _confirmed(mailbox: str) -> Any:
    return on_container(lambda c: c.mailbox_states.get(mailbox)).last_confirmed


def test_I5_the_stack_subscribes_each_sync_user_and_its_backfill_runs_through_the_queue(stack: Stack) -> None:
    for mailbox in ("adele@contoso.example", "bruno@contoso.example", "chen@contoso.example"):
        wait_for(lambda m=mailbox: _confirmed(m), timeout=30)  # a delta round ran: the backfill


def test_S1_ensure_recreates_a_subscription_graph_no_longer_has(stack: Stack) -> None:
    from sync_core.bootstrap import opened
    from sync_core.service.subscription_manager import BACKFILL_REASON, SubscriptionManager

    queued: list[MailboxResync] = []

    async def enqueue(text: str) -> None:
        message = decode(text)
        assert isinstance(message, MailboxResync)
        queued.append(message)

    async def run() -> dict[str, Any]:
        async with opened() as c:
            manager = SubscriptionManager(
                graph=c.graph, store=c.subscriptions, settings=c.settings, clock=c.clock.now, enqueue=enqueue
            )
            out: dict[str, Any] = {}
            first = await manager.ensure("adele@contoso.example")
            again = await manager.ensure("adele@contoso.example")
            out["live"] = list(queued)
            await c.graph.delete_subscription(first.subscription_id, "adele@contoso.example")
            replaced = await manager.ensure("adele@contoso.example")
            exists = await c.graph.subscription_exists(replaced.subscription_id, "adele@contoso.example")
            out["gap"], queued[:] = list(queued), []
            room = "harbour-room@contoso.example"  # a mailbox never subscribed before
            fresh = await manager.ensure(room)
            out["new"] = list(queued)
            await c.graph.delete_subscription(fresh.subscription_id, room)  # leave the stack as it was
            await c.subscriptions.save(fresh.retired("deleted", c.clock.now()))
            out["ids"] = (first.subscription_id, again.subscription_id, replaced.subscription_id, exists)
            return out

    out = asyncio.run(run())
    first, again, replaced, exists = out["ids"]
    assert again == first and out["live"] == []  # a live subscription is kept, nothing resynced
    assert replaced != first and exists  # a forgotten one is replaced by one Graph knows...
    assert [(m.mailbox, m.full) for m in out["gap"]] == [
        ("adele@contoso.example", False)
    ]  # ...and the gap read
    assert [(m.mailbox, m.full, m.reason) for m in out["new"]] == [
        ("harbour-room@contoso.example", True, BACKFILL_REASON)
    ]


def test_operator_renewal_waits_for_the_renewal_lease_and_recreate_keeps_the_old_row_as_history(
    stack: Stack,
) -> None:
    from sync_core.adapters.storage.core import SUBSCRIPTIONS_TABLE
    from sync_core.adapters.storage.subscriptions import RunLease
    from sync_core.ops import operations

    mailbox = "bruno@contoso.example"

    async def run(c: Any) -> dict[str, Any]:
        timer = RunLease(c.storage.table(SUBSCRIPTIONS_TABLE), "renewal")
        assert await timer.acquire(
            c.clock.now(), timedelta(minutes=5)
        )  # the timer's renewal run is under way
        try:
            blocked = await operations.renew_subscriptions(c, mailbox)
        finally:
            await timer.release()
        (before,) = [r for r in await c.subscriptions.for_mailbox(mailbox) if r.status == "active"]
        renewed = await operations.renew_subscriptions(c, mailbox)  # one mailbox's rows, claimed
        after = await c.subscriptions.get(before.subscription_id, fresh=True)
        fresh = await operations.recreate_subscription(c, mailbox)
        old = await c.subscriptions.get(before.subscription_id, fresh=True)
        return {
            "blocked": blocked,
            "renewed": renewed,
            "before": before,
            "after": after,
            "fresh": fresh,
            "old": old,
        }

    out = on_container(run)
    assert out["blocked"].overlapped and out["blocked"].renewed == 0  # never alongside the timer's run
    assert (out["renewed"].overlapped, out["renewed"].renewed, out["renewed"].failed) == (False, 1, 0)
    assert out["after"].last_renewal > out["before"].last_renewal
    assert out["fresh"].subscription_id != out["before"].subscription_id
    assert out["old"].status == "removed" and out["old"].ended_at is not None  # history, purged in time


def test_X1_the_renewal_timer_purges_delete_budgets_and_notice_claims_of_days_ago(stack: Stack) -> None:
    from sync_core.adapters.storage.core import MAILBOXES_TABLE, MAPPINGS_TABLE
    from sync_core.adapters.storage.deletes import TableDeleteBudget
    from sync_core.adapters.storage.notices import NoticeLedger
    from sync_core.domain.actions import NotifyOrganizer

    now = datetime.now(UTC)
    notice = NotifyOrganizer(rule="M5", reason="r", mailbox="chen@contoso.example", subject="s", text="t")

    async def seed(c: Any) -> None:
        budget = TableDeleteBudget(c.storage.table(MAILBOXES_TABLE))
        ledger = NoticeLedger(c.storage.table(MAPPINGS_TABLE))
        for at in (now - timedelta(days=5), now):
            await budget.spend("chen@contoso.example", at)
            assert await ledger.claim(f"purge-test-{at.timestamp()}", notice, at)

    async def left(c: Any) -> tuple[list[str], list[str]]:
        budgets = [
            e async for e in c.storage.table(MAILBOXES_TABLE).query_entities("PartitionKey eq 'deletes'")
        ]
        claims = [
            e
            async for e in c.storage.table(MAPPINGS_TABLE).list_entities()
            if e["RowKey"].startswith("notice-")
        ]
        return [e["RunStart"] for e in budgets], [e["ClaimedAt"] for e in claims]

    on_container(seed)
    assert len(on_container(left)[0]) == 2
    stack.host.invoke_timer("renew_subscriptions").result(timeout=60)
    assert on_container(left) == ([now.isoformat()], [now.isoformat()])
