"""Two delta rounds of one mailbox at once (a sweep, a poll, a lifecycle resync): the SyncMailboxes row is
saved with If-Match on the ETag the round read, so a round that read before another round saved leaves that
round's state alone (its delta link, its X2 silence flags); a row touched only by other writers (the
ingress's LastNotification) is merged again. Real Graph emulator (calendarView/delta), rows on Azurite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from devstack.azurite import Azurite
from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import DeltaPage, GraphAdapter
from sync_core.adapters.graph.base import build_client
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.domain.messages import MailboxResync
from sync_core.domain.model import GraphEvent
from sync_core.domain.policy import DEFAULT_EXTENDED_PROPERTY_ID, Policy
from sync_core.service.reconcile import MailboxStateStore, Reconciler
from sync_core.settings import Settings
from tests.subscriptions.conftest import MAILBOX, create_event

T0 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
POLICY = Policy.default().model_copy(update={"past_days": 1, "future_days": 10})


class Held:
    """The Graph adapter, where a round's first delta page waits until `go` is set (`waiting` says it is)."""

    def __init__(self, graph: GraphAdapter) -> None:
        self._graph = graph
        self.waiting, self.go = asyncio.Event(), asyncio.Event()

    async def delta_page(
        self, mailbox: str, *, link: str | None, start: datetime | None = None, end: datetime | None = None
    ) -> DeltaPage:
        self.waiting.set()
        await self.go.wait()
        return await self._graph.delta_page(mailbox, link=link, start=start, end=end)

    async def calendar_view(self, mailbox: str, start: datetime, end: datetime) -> list[GraphEvent]:
        return await self._graph.calendar_view(mailbox, start, end)


@dataclass
class World:
    graph: GraphAdapter
    states: MailboxStateStore
    mappings: MappingStore

    def reconciler(self, graph: GraphAdapter | Held, now: datetime) -> Reconciler:
        async def enqueue(text: str) -> None:
            return None

        return Reconciler(
            graph=graph,
            states=self.states,
            policy=POLICY,
            enqueue=enqueue,
            clock=lambda: now,
            mappings=self.mappings,
        )


@pytest.fixture
async def world(emu: GraphEmulator, azurite: Azurite, unique_name: str) -> AsyncIterator[World]:
    from azure.data.tables.aio import TableServiceClient

    settings = Settings.model_validate({"GRAPH_BASE_URL": emu.base_url, "GRAPH_AUTH_MODE": "emulator"})
    graph = GraphAdapter(
        build_client(settings),
        extended_property_id=DEFAULT_EXTENDED_PROPERTY_ID,
        tag_secrets=settings.tag_secrets,
    )
    try:
        async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
            states = MailboxStateStore(await service.create_table(f"Mailboxes{unique_name}"))
            mappings = MappingStore(await service.create_table(f"Mappings{unique_name}"))
            yield World(graph, states, mappings)
    finally:
        await graph.aclose()


def _resync(reason: str, now: datetime) -> MailboxResync:
    return MailboxResync(correlation_id=reason[:20], received_at=now, mailbox=MAILBOX, reason=reason)


async def test_X2_a_round_that_read_before_a_sweep_saved_keeps_the_sweeps_silence_flags(
    emu: GraphEmulator, world: World
) -> None:
    await world.reconciler(world.graph, T0).resync_mailbox(_resync("sweep", T0))  # the baseline round
    create_event(emu, "Changed, never announced", T0 + timedelta(days=2))  # no subscription: no notification

    held = Held(world.graph)
    later = T0 + timedelta(minutes=5)
    lifecycle = asyncio.create_task(
        world.reconciler(held, later).resync_mailbox(_resync("lifecycle:reauthorizationRequired:s1", later))
    )
    await held.waiting.wait()  # the lifecycle round has read the row, and waits on Graph
    swept = T0 + timedelta(hours=1)
    assert await world.reconciler(world.graph, swept).resync_mailbox(_resync("sweep", swept)) == 1
    flagged = await world.states.get(MAILBOX)
    assert flagged.silent_sweeps == 1 and flagged.last_sweep == swept  # X2: delta saw what nobody announced

    held.go.set()
    assert await lifecycle == 1  # it found the change too (queued), but saves nothing over the sweep's row
    after = await world.states.get(MAILBOX)
    assert (after.silent_sweeps, after.silent_since, after.last_sweep) == (1, T0, swept)
    assert (after.last_confirmed, after.delta_link, after.etag) == (swept, flagged.delta_link, flagged.etag)


async def test_a_row_touched_only_by_the_ingress_meanwhile_is_saved_over(
    emu: GraphEmulator, world: World
) -> None:
    held = Held(world.graph)
    round_ = asyncio.create_task(world.reconciler(held, T0).resync_mailbox(_resync("sweep", T0)))
    await held.waiting.wait()  # read: no row yet
    heard = T0 - timedelta(minutes=1)
    await world.states.touch_notification(MAILBOX, heard)  # the ingress writes its column meanwhile
    held.go.set()
    await round_
    state = await world.states.get(MAILBOX)
    assert state.last_confirmed == T0 and state.delta_link and state.last_notification == heard


async def test_a_sweep_that_read_before_a_backfill_saved_still_records_that_it_swept(
    emu: GraphEmulator, world: World
) -> None:
    held = Held(world.graph)
    sweep = asyncio.create_task(world.reconciler(held, T0).resync_mailbox(_resync("sweep", T0)))
    await held.waiting.wait()
    backfill = MailboxResync(
        correlation_id="b", received_at=T0, mailbox=MAILBOX, reason="backfill: mailbox enabled", full=True
    )
    filled_at = T0 + timedelta(seconds=30)
    await world.reconciler(world.graph, filled_at).resync_mailbox(backfill)
    saved = await world.states.get(MAILBOX)
    held.go.set()
    await sweep
    after = await world.states.get(MAILBOX)
    assert (after.last_confirmed, after.delta_link) == (filled_at, saved.delta_link)  # the backfill's round
    assert after.last_sweep == T0  # and the sweep is on record


class Counted:
    """The Graph adapter, counting the delta pages read."""

    def __init__(self, graph: GraphAdapter | Held) -> None:
        self._graph = graph
        self.pages = 0

    async def delta_page(
        self, mailbox: str, *, link: str | None, start: datetime | None = None, end: datetime | None = None
    ) -> DeltaPage:
        self.pages += 1
        return await self._graph.delta_page(mailbox, link=link, start=start, end=end)

    async def calendar_view(self, mailbox: str, start: datetime, end: datetime) -> list[GraphEvent]:
        return await self._graph.calendar_view(mailbox, start, end)


def _missed(received_at: datetime) -> MailboxResync:
    return MailboxResync(
        correlation_id="missed",
        received_at=received_at,
        mailbox=MAILBOX,
        reason="lifecycle:missed:11111111-1111-4111-8111-111111111111",
        full=True,
    )


async def test_X2_a_burst_of_missed_resyncs_is_one_full_round_not_one_per_message(
    emu: GraphEmulator, world: World
) -> None:
    """Issue 15 item 3: one 1 KB request of `missed` lifecycle events (forged or real) made one full resync
    per entry. A request answered by a round begun after it was received now costs no Graph call."""
    create_event(emu, "Board meeting", T0 + timedelta(days=2))
    graph = Counted(world.graph)
    burst = [_missed(T0) for _ in range(20)]
    found = [await world.reconciler(graph, T0 + timedelta(seconds=1)).resync_mailbox(m) for m in burst]
    assert found[0] >= 1 and found[1:] == [0] * 19
    pages = graph.pages

    # A request received after that round began is not covered by it: it reads again.
    later = T0 + timedelta(seconds=5)
    await world.reconciler(graph, later + timedelta(seconds=1)).resync_mailbox(_missed(later))
    assert graph.pages > pages


async def test_rounds_of_one_mailbox_run_one_at_a_time_and_a_waiting_one_is_not_lost(
    emu: GraphEmulator, world: World, azurite: Azurite, unique_name: str
) -> None:
    from azure.core.exceptions import ResourceExistsError
    from azure.data.tables.aio import TableServiceClient

    from sync_core.adapters.storage.subscriptions import SubscriptionStore
    from sync_core.errors import ThrottledError

    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        try:
            table = await service.create_table(f"Subs{unique_name}")
        except ResourceExistsError:
            table = service.get_table_client(f"Subs{unique_name}")
        leases = SubscriptionStore(table).resync_lease

        async def enqueue(text: str) -> None:
            return None

        def leased(graph: GraphAdapter | Held, now: datetime) -> Reconciler:
            return Reconciler(
                graph=graph,
                states=world.states,
                policy=POLICY,
                enqueue=enqueue,
                clock=lambda: now,
                mappings=world.mappings,
                lease=leases,
            )

        held = Held(world.graph)
        first = asyncio.create_task(leased(held, T0).resync_mailbox(_missed(T0 - timedelta(seconds=1))))
        await held.waiting.wait()  # the first round is reading Graph
        second = _missed(T0 + timedelta(seconds=1))  # received after the first round began
        with pytest.raises(ThrottledError):
            await leased(world.graph, T0 + timedelta(seconds=2)).resync_mailbox(second)
        held.go.set()
        await first

        graph = Counted(world.graph)
        await leased(graph, T0 + timedelta(seconds=40)).resync_mailbox(second)  # redelivered later
        assert graph.pages >= 1  # it ran: the first round may have read before its change
        assert (await world.states.get(MAILBOX)).last_full == T0 + timedelta(seconds=40)
