"""Subscriptions the app holds are the ones Graph holds: a subscription Graph forgot is re-created (S1), and
a subscription made by `ensure` is followed by a resync: the full backfill of a mailbox never subscribed
(I5), the gap of one that lapsed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sync_core.messages import MailboxResync, decode
from tests.e2e.conftest import Stack, wait_for

pytestmark = pytest.mark.e2e


def _confirmed(mailbox: str) -> Any:
    from sync_core.bootstrap import Container, configuration

    async def run() -> Any:
        c = Container(*configuration())
        try:
            return (await c.mailbox_states.get(mailbox)).last_confirmed
        finally:
            await c.aclose()

    return asyncio.run(run())


def test_I5_the_stack_subscribes_each_sync_user_and_its_backfill_runs_through_the_queue(stack: Stack) -> None:
    for mailbox in ("adele@contoso.example", "bruno@contoso.example", "chen@contoso.example"):
        wait_for(lambda m=mailbox: _confirmed(m), timeout=30)  # a delta round ran: the backfill


def test_S1_ensure_recreates_a_subscription_graph_no_longer_has(stack: Stack) -> None:
    from sync_core.bootstrap import Container, configuration, utcnow
    from sync_core.subscription_manager import BACKFILL_REASON, SubscriptionManager

    queued: list[MailboxResync] = []

    async def enqueue(text: str) -> None:
        message = decode(text)
        assert isinstance(message, MailboxResync)
        queued.append(message)

    async def run() -> dict[str, Any]:
        c = Container(*configuration())
        try:
            manager = SubscriptionManager(
                graph=c.graph, store=c.subscriptions, settings=c.settings, clock=utcnow, enqueue=enqueue
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
            await c.subscriptions.save(fresh.retired("deleted", utcnow()))
            out["ids"] = (first.subscription_id, again.subscription_id, replaced.subscription_id, exists)
            return out
        finally:
            await c.aclose()

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
