"""Subscription writes under failures and races (S1, facts §1, §5): the real GraphAdapter against the Graph
emulator (its fault injection), rows on Azurite, a webhook endpoint in the test loop for the validation
handshake.

- A reauthorization Graph did not make (503) is made by the queue's retry, not skipped as "recent".
- A create whose answer is lost is not retried blindly: the untracked subscription is deleted, one is made.
- A response (sendResponse) whose answer is lost is not sent again inline.
- Two workers ensuring one mailbox make one subscription; a renewal never resurrects a row retired meanwhile.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web

from devstack.azurite import Azurite
from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import build_client
from sync_core.adapters.storage.subscriptions import RunLease, SubscriptionStore
from sync_core.domain.messages import SubscriptionLifecycle
from sync_core.domain.policy import DEFAULT_EXTENDED_PROPERTY_ID
from sync_core.domain.subscription import SubscriptionRow
from sync_core.errors import ThrottledError, TransientError
from sync_core.service.lifecycle import LifecycleHandler
from sync_core.service.subscription_manager import MAX_LIFETIME, SubscriptionManager
from sync_core.settings import Settings
from tests.clock import days_ahead, graph_time

ALICE, BOB = "alice@contoso.example", "bob@contoso.example"


@pytest.fixture(scope="module")
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(validation_timeout=2.0, notification_timeout=2.0) as emu:
        emu.add_mailbox("a1", ALICE, "Alice")
        emu.add_mailbox("b1", BOB, "Bob")
        yield emu


async def _webhook(request: web.Request) -> web.Response:
    """Our endpoints as Graph sees them: the validation handshake answered, notifications taken."""
    token = request.query.get("validationToken")
    if token is not None:
        return web.Response(text=token, content_type="text/plain")
    return web.Response(status=202)


@dataclass
class World:
    emu: GraphEmulator
    graph: GraphAdapter
    store: SubscriptionStore
    settings: Settings
    queued: list[str]

    def manager(self, **kw: Any) -> SubscriptionManager:
        async def enqueue(text: str) -> None:
            self.queued.append(text)

        kw.setdefault("clock", lambda: datetime.now(UTC))
        kw.setdefault("store", self.store)
        return SubscriptionManager(graph=self.graph, settings=self.settings, enqueue=enqueue, **kw)

    def writes(self) -> list[tuple[str, str, int]]:
        """Subscription requests Graph got: (method, path, status)."""
        return [
            (r["method"], r["path"], r["status"])
            for r in self.emu.requests
            if r["path"].startswith("/subscriptions")
        ]

    def graph_ids(self, mailbox: str) -> list[str]:
        return [s["id"] for s in self.emu.subscriptions if mailbox in s["resource"]]


@pytest.fixture
async def world(emulator: GraphEmulator, azurite: Azurite, unique_name: str) -> AsyncIterator[World]:
    from azure.data.tables.aio import TableServiceClient

    emulator.reset(keep_mailboxes=True)
    emulator.clear_faults()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", _webhook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    settings = Settings.model_validate(
        {
            "GRAPH_BASE_URL": emulator.base_url,
            "GRAPH_AUTH_MODE": "emulator",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "WEBHOOK_FUNCTION_KEY": "k",
        }
    )
    graph = GraphAdapter(
        build_client(settings),
        extended_property_id=DEFAULT_EXTENDED_PROPERTY_ID,
        tag_secrets=settings.tag_secrets,
    )
    try:
        async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
            store = SubscriptionStore(await service.create_table(f"Subs{unique_name}"))
            emulator.clear_requests()
            yield World(emulator, graph, store, settings, [])
    finally:
        await graph.aclose()
        await runner.cleanup()


async def test_S1_a_reauthorization_graph_answered_503_is_made_by_the_retry(world: World) -> None:
    manager = world.manager()
    row = await manager.ensure(ALICE)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    await world.store.save(replace(row, last_renewal=hour_ago))  # not renewed recently: reauthorize
    handler = LifecycleHandler(
        graph=world.graph, store=world.store, manager=manager, clock=lambda: datetime.now(UTC)
    )
    event = SubscriptionLifecycle(
        correlation_id="reauth-1",
        received_at=datetime.now(UTC),
        mailbox=ALICE,
        subscription_id=row.subscription_id,
        event="reauthorizationRequired",
    )
    world.emu.clear_requests()
    world.emu.set_faults(unavailable_count=1, retry_after=120)  # /subscriptions/* is not a mailbox path

    with pytest.raises(ThrottledError):  # dispatch re-enqueues it for Retry-After
        await handler.handle(event)
    kept = await world.store.get(row.subscription_id, fresh=True)
    assert kept is not None and kept.last_reauthorization is None  # the claim was given back

    assert await handler.handle(event) == "reauthorize"  # the retry makes it
    path = f"/subscriptions/{row.subscription_id}/reauthorize"
    assert [w for w in world.writes() if w[1] == path] == [("POST", path, 503), ("POST", path, 204)]
    after = await world.store.get(row.subscription_id, fresh=True)
    assert after is not None and after.last_reauthorization is not None
    assert await handler.handle(event) == "skipped: reauthorized or renewed within 10 minutes"


async def test_S1_a_create_whose_answer_is_lost_is_not_retried_blindly(world: World) -> None:
    world.emu.set_faults(lose_response_count=1)  # Graph makes the subscription, its answer is lost
    with pytest.raises(TransientError):
        await world.graph.create_subscription(
            ALICE,
            notification_url=world.settings.notification_url("graph/notifications"),
            lifecycle_url=world.settings.notification_url("graph/lifecycle"),
            client_state="s" * 40,
            expires_at=datetime.now(UTC) + timedelta(days=2),
        )
    assert world.writes() == [("POST", "/subscriptions", 500)]  # one POST: no inline retry
    assert len(world.graph_ids(ALICE)) == 1  # made, yet unknown to us


async def test_S1_ensure_after_a_lost_create_answer_tracks_the_only_subscription_graph_has(
    world: World,
) -> None:
    world.emu.set_faults(lose_response_count=1)
    row = await world.manager().ensure(ALICE)

    assert row.status == "active" and world.graph_ids(ALICE) == [row.subscription_id]
    writes = world.writes()
    assert [(m, s) for m, _, s in writes] == [("POST", 500), ("GET", 200), ("DELETE", 204), ("POST", 201)]
    lost = writes[2][1].removeprefix("/subscriptions/")
    assert lost != row.subscription_id  # the untracked one was deleted, ours made afresh
    rows = [r for r in await world.store.all() if r.mailbox == ALICE]
    assert [(r.subscription_id, r.status) for r in rows] == [(row.subscription_id, "active")]


async def test_a_response_whose_answer_is_lost_is_not_sent_twice(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.emu.base_url, headers={"Authorization": "Bearer t"}) as g:
        made = await g.post(
            f"/users/{ALICE}/events",
            json={
                "subject": "Respond once",
                "start": graph_time(days_ahead(3, 9)),
                "end": graph_time(days_ahead(3, 10)),
                "attendees": [{"emailAddress": {"address": BOB}, "type": "required"}],
            },
        )
        made.raise_for_status()
        listed = (await g.get(f"/users/{BOB}/events")).json()["value"]
    (copy,) = [e for e in listed if e["subject"] == "Respond once"]
    world.emu.clear_requests()
    world.emu.set_faults(mailbox=BOB, lose_response_count=1)  # accepted (and the organiser told); answer lost

    with pytest.raises(TransientError):
        await world.graph.respond(BOB, copy["id"], "accept")
    accepts = [r for r in world.emu.requests if r["path"].endswith("/accept")]
    assert [r["status"] for r in accepts] == [500]  # not sent again inline (the queue decides)


class BothRead:
    """The store, where the first read of each of two workers returns only once both have read: both
    see a mailbox with no subscription, as when two lifecycle messages are handled at once."""

    def __init__(self, inner: SubscriptionStore) -> None:
        self._inner = inner
        self._barrier = asyncio.Barrier(2)
        self._first_reads = 2

    async def all(self) -> list[SubscriptionRow]:
        rows = await self._inner.all()
        if self._first_reads > 0:
            self._first_reads -= 1
            await self._barrier.wait()
        return rows

    async def get(self, subscription_id: str, *, fresh: bool = False) -> SubscriptionRow | None:
        return await self._inner.get(subscription_id, fresh=fresh)

    async def save(self, row: SubscriptionRow) -> None:
        await self._inner.save(row)

    async def claim(self, row: SubscriptionRow) -> SubscriptionRow:
        return await self._inner.claim(row)

    async def delete(self, row: SubscriptionRow) -> None:
        await self._inner.delete(row)

    def mailbox_lease(self, mailbox: str) -> RunLease:
        return self._inner.mailbox_lease(mailbox)


async def test_S1_two_workers_ensuring_one_mailbox_make_one_subscription(world: World) -> None:
    store = BothRead(world.store)
    first, second = await asyncio.gather(
        world.manager(store=store).ensure(ALICE), world.manager(store=store).ensure(ALICE)
    )

    assert first.subscription_id == second.subscription_id
    assert [w for w in world.writes() if w[0] == "POST"] == [("POST", "/subscriptions", 201)]
    assert world.graph_ids(ALICE) == [first.subscription_id]
    rows = [r for r in await world.store.all() if r.mailbox == ALICE]
    assert [(r.subscription_id, r.status) for r in rows] == [(first.subscription_id, "active")]
    assert len(world.queued) == 1  # one backfill (I5), by the worker that subscribed


async def test_S1_a_renewal_never_resurrects_a_row_retired_meanwhile(world: World) -> None:
    now = datetime.now(UTC)
    row = await world.manager().ensure(ALICE)
    retired_at: list[datetime] = []

    async def lifecycle_meanwhile(seconds: float) -> None:
        """While the run waits for its slot, lifecycle work retires the row it read."""
        if not retired_at:
            current = await world.store.get(row.subscription_id, fresh=True)
            assert current is not None
            await world.store.save(current.retired("removed", now))
            retired_at.append(now)

    manager = world.manager(clock=lambda: now, sleep=lifecycle_meanwhile, rng=random.Random(1))
    report = await manager.renew_due(margin=MAX_LIFETIME)

    assert retired_at and report.renewed == 1 and report.failed == 0
    assert ("PATCH", f"/subscriptions/{row.subscription_id}", 200) in world.writes()
    after = await world.store.get(row.subscription_id, fresh=True)
    assert after is not None and after.status == "removed" and after.ended_at == now
