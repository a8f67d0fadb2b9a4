"""S6: as the policy window advances, the events entering it are read once more, changed or not, while the
delta round itself stays incremental. Real Graph emulator (calendarView/delta), SyncMailboxes on Azurite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devstack.azurite import Azurite
from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import build_client
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.domain.messages import GraphChange, MailboxResync, decode
from sync_core.domain.policy import DEFAULT_EXTENDED_PROPERTY_ID, Policy
from sync_core.service.reconcile import MailboxStateStore, Reconciler
from sync_core.settings import Settings
from tests.subscriptions.conftest import MAILBOX, create_event

T0 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)


async def test_S6_window_advance_picks_up_events_entering_the_window_without_a_full_round(
    emu: GraphEmulator, azurite: Azurite, unique_name: str
) -> None:
    from azure.data.tables.aio import TableServiceClient

    policy = Policy.default().model_copy(update={"past_days": 1, "future_days": 10})
    settings = Settings.model_validate({"GRAPH_BASE_URL": emu.base_url, "GRAPH_AUTH_MODE": "emulator"})
    graph = GraphAdapter(
        build_client(settings),
        extended_property_id=DEFAULT_EXTENDED_PROPERTY_ID,
        tag_secrets=settings.tag_secrets,
    )
    inside = create_event(emu, "Inside from the start", T0 + timedelta(days=3))
    entering = create_event(emu, "Enters on day 5", T0 + timedelta(days=14))
    beyond = create_event(emu, "Beyond every window", T0 + timedelta(days=60))
    now = [T0]
    queued: list[str] = []

    async def enqueue(text: str) -> None:
        queued.append(text)

    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        table = await service.create_table(f"Mailboxes{unique_name}")
        mappings = MappingStore(await service.create_table(f"Mappings{unique_name}"))
        reconciler = Reconciler(
            graph=graph,
            states=MailboxStateStore(table),
            policy=policy,
            enqueue=enqueue,
            clock=lambda: now[0],
            mappings=mappings,
        )

        async def sweep() -> set[str]:
            queued.clear()
            message = MailboxResync(correlation_id="s", received_at=now[0], mailbox=MAILBOX, reason="sweep")
            await reconciler.resync_mailbox(message)
            return {m.event_id for m in map(decode, queued) if isinstance(m, GraphChange)}

        first = await sweep()  # the initial backfill: the whole delta window (policy window + 30 days)
        assert {inside, entering} <= first and beyond not in first
        assert await sweep() == set()  # nothing changed, nothing entered
        now[0] = T0 + timedelta(days=5)  # the policy window's end passes day 14
        assert await sweep() == {entering}  # read again as it enters; the round stayed incremental
        state = await MailboxStateStore(table).get(MAILBOX)
        assert state.window_start == reconciler.window(T0)[0]  # same delta round, not a new one
        assert state.last_confirmed == now[0]


async def test_L5_a_sweep_hands_the_worker_each_mapped_meeting_that_ended_since_the_last_sweep(
    emu: GraphEmulator, azurite: Azurite, unique_name: str
) -> None:
    """InterAction: a meeting becomes an activity when it ends, with no edit. No notification comes when
    time passes; the hourly sweep finds the mapped meetings that ended since it last ran (one calendarView)
    and hands each to the worker, which decides its kind again (tests/engine: L5)."""
    from azure.data.tables.aio import TableServiceClient

    from sync_core.domain.actions import GraphCopy, Mapping
    from sync_core.domain.model import Appointment

    policy = Policy.default().model_copy(update={"past_days": 1, "future_days": 10})
    settings = Settings.model_validate({"GRAPH_BASE_URL": emu.base_url, "GRAPH_AUTH_MODE": "emulator"})
    graph = GraphAdapter(
        build_client(settings),
        extended_property_id=DEFAULT_EXTENDED_PROPERTY_ID,
        tag_secrets=settings.tag_secrets,
    )
    soon = T0 + timedelta(days=1)
    mapped = create_event(emu, "Mapped, ends at 11:00 tomorrow", soon + timedelta(hours=1))
    unmapped = create_event(emu, "Never synced, ends too", soon + timedelta(hours=1))
    later = create_event(emu, "Mapped, ends the day after", soon + timedelta(days=1))
    now = [soon]
    queued: list[str] = []

    async def enqueue(text: str) -> None:
        queued.append(text)

    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        mappings = MappingStore(await service.create_table(f"Mappings{unique_name}"))
        for event_id, start in ((mapped, soon + timedelta(hours=1)), (later, soon + timedelta(days=1))):
            await mappings.save(
                Mapping(
                    meeting_key=f"key-{event_id[-12:]}",
                    crm_id=f"crm-{event_id[-12:]}",
                    organizer_mailbox=MAILBOX,
                    graph_event_id=event_id,
                    copies=(GraphCopy(mailbox=MAILBOX, event_id=event_id),),
                    snapshot=Appointment(subject="s", start=start, end=start + timedelta(hours=1)),
                )
            )
        reconciler = Reconciler(
            graph=graph,
            states=MailboxStateStore(await service.create_table(f"Mailboxes{unique_name}")),
            policy=policy,
            enqueue=enqueue,
            clock=lambda: now[0],
            mappings=mappings,
        )

        async def sweep() -> set[str]:
            queued.clear()
            message = MailboxResync(correlation_id="s", received_at=now[0], mailbox=MAILBOX, reason="sweep")
            await reconciler.resync_mailbox(message)
            return {m.event_id for m in map(decode, queued) if isinstance(m, GraphChange)}

        await sweep()  # the first sweep: the backfill, before anything ended
        assert await sweep() == set()  # nothing changed, nothing ended
        now[0] = soon + timedelta(hours=3)  # 11:00 has passed
        assert await sweep() == {mapped}  # ended: to the worker; the unmapped one is nobody's business
        assert unmapped not in await sweep()
        now[0] = soon + timedelta(hours=4)
        assert await sweep() == set()  # handed over once, not every hour
