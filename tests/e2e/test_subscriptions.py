"""Subscriptions the app holds are the ones Graph holds: a subscription Graph forgot is re-created (S1)."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def test_S1_ensure_recreates_a_subscription_graph_no_longer_has(stack: Stack) -> None:
    from sync_core.bootstrap import Container, configuration, utcnow
    from sync_core.subscription_manager import SubscriptionManager

    async def run() -> tuple[str, str, str, bool]:
        c = Container(*configuration())
        try:
            manager = SubscriptionManager(
                graph=c.graph, store=c.subscriptions, settings=c.settings, clock=utcnow
            )
            first = await manager.ensure("adele@contoso.example")
            again = await manager.ensure("adele@contoso.example")
            await c.graph.delete_subscription(first.subscription_id, "adele@contoso.example")
            replaced = await manager.ensure("adele@contoso.example")
            exists = await c.graph.subscription_exists(replaced.subscription_id, "adele@contoso.example")
            return first.subscription_id, again.subscription_id, replaced.subscription_id, exists
        finally:
            await c.aclose()

    first, again, replaced, exists = asyncio.run(run())
    assert again == first  # a live subscription is kept
    assert replaced != first and exists  # a forgotten one is replaced by one Graph knows
