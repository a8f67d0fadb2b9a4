"""X2: a deletion whose notification was lost is found even when no incremental delta round can report it.

A delta round started without a token (the first one, or the restart after 410 syncStateNotFound) lists only
what is live. When such a full round completes, every copy mapped in the mailbox that lies in the round's
window and that the round did not return is handed to the worker as a `deleted` hint. Real Graph emulator
(calendarView/delta, 410 on invalidated tokens), SyncMailboxes and SyncMappings on Azurite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.azurite import Azurite
from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import build_client
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.domain.actions import GraphCopy, Mapping
from sync_core.domain.messages import GraphChange, MailboxResync, decode
from sync_core.domain.model import Appointment, Recurrence, RecurrencePattern, RecurrenceRange
from sync_core.domain.policy import DEFAULT_EXTENDED_PROPERTY_ID, Policy
from sync_core.service.reconcile import MailboxStateStore, Reconciler
from sync_core.settings import Settings

DANA, ERIK = "dana@contoso.example", "erik@contoso.example"
T0 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
POLICY = Policy.default().model_copy(update={"past_days": 1, "future_days": 10})


@pytest.fixture(scope="module")
def emu() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emulator:
        emulator.add_mailbox("d1", DANA, "Dana")
        emulator.add_mailbox("e1", ERIK, "Erik")
        yield emulator


def _graph(emu: GraphEmulator, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    r = httpx.request(method, f"{emu.base_url}{path}", json=body, headers={"Authorization": "Bearer t"})
    r.raise_for_status()
    return r.json() if r.content else None


def _when(start: datetime) -> dict[str, Any]:
    return {
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
    }


@dataclass
class World:
    emu: GraphEmulator
    mappings: MappingStore
    states: MailboxStateStore
    reconciler: Reconciler
    queued: list[str]

    def create(self, mailbox: str, subject: str, start: datetime, **extra: Any) -> str:
        body = {"subject": subject, **_when(start), **extra}
        return str(_graph(self.emu, "POST", f"/users/{mailbox}/events", body)["id"])

    async def synced(
        self,
        mailbox: str,
        event_id: str,
        start: datetime,
        *,
        state: str = "active",
        recurrence: Recurrence | None = None,
    ) -> None:
        """The mapping the worker saves once it synced the event (the CRM id is never read here)."""
        snapshot = Appointment(subject=event_id[-8:], start=start, end=start + timedelta(hours=1))
        mapping = Mapping(
            meeting_key=f"key-{event_id[-12:]}",
            crm_id=f"crm-{event_id[-12:]}",
            organizer_mailbox=mailbox,
            graph_event_id=event_id,
            copies=(GraphCopy(mailbox=mailbox, event_id=event_id),),
            snapshot=snapshot.model_copy(update={"recurrence": recurrence}),
            state=state,  # type: ignore[arg-type]
        )
        await self.mappings.save(mapping)

    async def resync(self, mailbox: str, *, full: bool = False) -> dict[str, set[str]]:
        """One resync; the event ids enqueued by change type."""
        self.queued.clear()
        message = MailboxResync(
            correlation_id="r", received_at=T0, mailbox=mailbox, reason="sweep", full=full
        )
        await self.reconciler.resync_mailbox(message)
        out: dict[str, set[str]] = {"updated": set(), "deleted": set()}
        for m in map(decode, self.queued):
            if isinstance(m, GraphChange):
                out[m.change_type].add(m.event_id)
        return out


@pytest.fixture
async def world(emu: GraphEmulator, azurite: Azurite, unique_name: str) -> AsyncIterator[World]:
    from azure.data.tables.aio import TableServiceClient

    settings = Settings.model_validate({"GRAPH_BASE_URL": emu.base_url, "GRAPH_AUTH_MODE": "emulator"})
    graph = GraphAdapter(
        build_client(settings),
        extended_property_id=DEFAULT_EXTENDED_PROPERTY_ID,
        tag_secrets=settings.tag_secrets,
    )
    queued: list[str] = []

    async def enqueue(text: str) -> None:
        queued.append(text)

    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        mappings = MappingStore(await service.create_table(f"Mappings{unique_name}"))
        states = MailboxStateStore(await service.create_table(f"Mailboxes{unique_name}"))
        reconciler = Reconciler(
            graph=graph, states=states, policy=POLICY, enqueue=enqueue, clock=lambda: T0, mappings=mappings
        )
        yield World(emu, mappings, states, reconciler, queued)
    await graph.aclose()


async def test_X2_a_deletion_lost_before_a_410_is_found_by_the_full_round_that_follows(world: World) -> None:
    day = T0 + timedelta(days=2)
    kept = world.create(DANA, "Kept", day)
    lost = world.create(DANA, "Deleted, notification lost", day + timedelta(hours=2))
    until = (day + timedelta(days=2 * 365)).date()  # long after the window, derived from the test's day
    weekly = {
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [day.strftime("%A").lower()]},
        "range": {"type": "endDate", "startDate": day.date().isoformat(), "endDate": until.isoformat()},
    }
    series = world.create(DANA, "Weekly", day + timedelta(hours=4), recurrence=weekly)
    for event_id, start in ((kept, day), (lost, day + timedelta(hours=2))):
        await world.synced(DANA, event_id, start)
    pattern = Recurrence(
        pattern=RecurrencePattern(type="weekly", days_of_week=(day.strftime("%A").lower(),)),
        range=RecurrenceRange(type="endDate", start_date=day.date(), end_date=until),
    )
    await world.synced(DANA, series, day + timedelta(hours=4), recurrence=pattern)  # the series, by master id

    baseline = await world.resync(DANA, full=True)
    assert {kept, lost} <= baseline["updated"] and baseline["deleted"] == set()  # the series: by occurrences

    _graph(world.emu, "DELETE", f"/users/{DANA}/events/{lost}")  # no subscription here: nobody is told
    world.emu.invalidate_delta_tokens(DANA)  # the stored delta link now answers 410 syncStateNotFound

    after = await world.resync(DANA)  # the sweep: 410, then a full round from nothing
    assert lost not in after["updated"] and kept in after["updated"]
    assert after["deleted"] == {lost}  # the mapped event the full round did not return: checked
    state = await world.states.get(DANA)
    assert state.delta_link is not None and state.last_confirmed == T0

    assert await world.resync(DANA) == {"updated": set(), "deleted": set()}  # incremental: nothing twice


async def test_X2_a_first_round_checks_only_live_mappings_inside_its_window(world: World) -> None:
    """No baseline at all: the mailbox's first delta round. Outside the window, cancelled meetings and
    copies mapped in another mailbox are not this round's business."""
    day = T0 + timedelta(days=3)
    gone = world.create(ERIK, "Synced, then deleted", day)
    long_ago = world.create(ERIK, "Thirty days ago", T0 - timedelta(days=30))
    cancelled = world.create(ERIK, "Cancelled in the CRM", day + timedelta(hours=1))
    elsewhere = world.create(DANA, "Dana's, deleted", day)
    await world.synced(ERIK, gone, day)
    await world.synced(ERIK, long_ago, T0 - timedelta(days=30))
    await world.synced(ERIK, cancelled, day + timedelta(hours=1), state="cancelled")
    await world.synced(DANA, elsewhere, day)
    for mailbox, event_id in ((ERIK, gone), (ERIK, long_ago), (ERIK, cancelled), (DANA, elsewhere)):
        _graph(world.emu, "DELETE", f"/users/{mailbox}/events/{event_id}")

    first = await world.resync(ERIK)
    assert first["deleted"] == {gone}
    assert await world.mappings.copies_in(ERIK.upper()) != []  # one partition per mailbox, any case


async def test_R3_an_occurrence_deleted_with_its_notification_lost_reaches_its_series_at_the_sweep(
    world: World,
) -> None:
    """SuperOffice scenario 6: delta names a deleted occurrence by its own id, which no mapping knows (the
    series is mapped by its master); it was dropped as "never synced". The series is now read again."""
    day = T0 + timedelta(days=2)
    until = (day + timedelta(days=70)).date()
    weekly = {
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [day.strftime("%A").lower()]},
        "range": {"type": "endDate", "startDate": day.date().isoformat(), "endDate": until.isoformat()},
    }
    series = world.create(DANA, "Weekly", day, recurrence=weekly)
    single = world.create(DANA, "Single", day + timedelta(hours=3))
    pattern = Recurrence(
        pattern=RecurrencePattern(type="weekly", days_of_week=(day.strftime("%A").lower(),)),
        range=RecurrenceRange(type="endDate", start_date=day.date(), end_date=until),
    )
    await world.synced(DANA, series, day, recurrence=pattern)
    await world.synced(DANA, single, day + timedelta(hours=3))
    await world.resync(DANA, full=True)  # the baseline

    week = day + timedelta(weeks=1)
    z = "%Y-%m-%dT%H:%M:%SZ"
    window = f"startDateTime={week.strftime(z)}&endDateTime={(week + timedelta(hours=1)).strftime(z)}"
    view = _graph(world.emu, "GET", f"/users/{DANA}/calendarView?{window}")["value"]
    [occurrence] = [e for e in view if e.get("seriesMasterId") == series]
    _graph(world.emu, "DELETE", f"/users/{DANA}/events/{occurrence['id']}")  # nobody is told

    after = await world.resync(DANA)
    assert occurrence["id"] in after["deleted"]
    assert series in after["updated"] and single not in after["updated"]  # the series is read again

    assert await world.resync(DANA) == {"updated": set(), "deleted": set()}  # nothing twice
