"""The Calendar contract, run against GraphAdapter on the Graph emulator and MemoryCalendar: the reads and
writes of one change as the worker and the gatherer rely on them (I3 creates, D4 tags and change keys, W4
field-wise writes, L3 cancels, R3 occurrences). `user` makes the changes people make in Outlook."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import httpx
import pytest

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import build_client
from sync_core.adapters.graph.limits import MailboxLimiter
from sync_core.domain.model import (
    Appointment,
    Attendee,
    Person,
    Recurrence,
    RecurrencePattern,
    RecurrenceRange,
    Response,
)
from sync_core.domain.policy import DEFAULT_EXTENDED_PROPERTY_ID
from sync_core.errors import NotFoundError, UnprocessableError
from sync_core.ports.calendar import Calendar
from sync_core.settings import Settings
from tests.fakes import MemoryCalendar

ALICE_ID = "cd209b0b-3f83-4c35-82d2-d88a61820480"
ALICE = "alice@contoso.com"
GUEST = "bob@fabrikam.example"
MONDAY = datetime(2030, 1, 7, 9, tzinfo=UTC)


def meeting(subject: str = "Review", start: datetime = MONDAY, **changes: Any) -> Appointment:
    data: dict[str, Any] = {
        "subject": subject,
        "body": "Agenda: numbers.",
        "start": start,
        "end": start + timedelta(hours=1),
        "organizer": Person(email=ALICE),
        "attendees": (Attendee(email=GUEST),),
        "reminder_minutes": 10,
        "categories": ("Customer",),
    }
    return Appointment.model_validate(data | changes)


def weekly(start: date) -> Recurrence:
    return Recurrence(
        pattern=RecurrencePattern(type="weekly", days_of_week=("monday",)),
        range=RecurrenceRange(type="noEnd", start_date=start),
    )


class CalendarUser(Protocol):
    """Changes made by people in Outlook, not by us: no tag, no transaction id."""

    async def create(self, mailbox: str, subject: str, start: datetime) -> str: ...

    async def rename(self, mailbox: str, event_id: str, subject: str) -> None: ...


class CalendarContract:
    """Behaviour every Calendar shows. Subclasses provide the `calendar` and `user` fixtures."""

    async def test_I3_a_created_event_carries_our_tag_and_reads_back_as_created(
        self, calendar: Calendar
    ) -> None:
        wanted = meeting(body="  Agenda: numbers.\n")
        created = await calendar.create_event(ALICE.upper(), wanted, transaction_id="tx-1", tag="crm:c1")
        assert (created.mailbox, created.type) == (ALICE, "singleInstance")
        assert created.written_by_us is None  # Graph's answer to the POST does not expand our property
        assert created.is_organizer and created.response is Response.ORGANIZER
        assert created.event_id and created.change_key and created.ical_uid
        appt = created.appointment
        assert (appt.subject, appt.body, appt.start, appt.end) == (
            "Review",
            "Agenda: numbers.",
            wanted.start,
            wanted.end,
        )
        assert (appt.time_zone, appt.reminder_minutes, appt.categories) == ("UTC", 10, ("Customer",))
        assert appt.organizer is not None and appt.organizer.email == ALICE
        assert [(a.email, a.name, a.response) for a in appt.attendees] == [(GUEST, GUEST, Response.NONE)]
        read = await calendar.get_event(ALICE, created.event_id)
        assert read == created.model_copy(update={"written_by_us": "crm:c1"})

    async def test_a_zone_reads_back_by_its_iana_name(self, calendar: Calendar) -> None:
        wanted = meeting(time_zone="W. Europe Standard Time")
        created = await calendar.create_event(ALICE, wanted, transaction_id="tx-1", tag="k")
        assert created.appointment.time_zone == "Europe/Berlin"
        assert (created.appointment.start, created.appointment.end) == (wanted.start, wanted.end)

    async def test_I3_a_second_create_with_the_same_transaction_id_returns_the_first_event(
        self, calendar: Calendar
    ) -> None:
        first = await calendar.create_event(ALICE, meeting(), transaction_id="tx-1", tag="k")
        again = await calendar.create_event(
            ALICE, meeting("Changed on retry"), transaction_id="tx-1", tag="k"
        )
        assert again.event_id == first.event_id and again.appointment.subject == "Review"
        other = await calendar.create_event(ALICE, meeting(), transaction_id="tx-2", tag="k2")
        assert other.event_id != first.event_id
        view = await calendar.calendar_view(ALICE, MONDAY - timedelta(days=1), MONDAY + timedelta(days=1))
        assert sorted(e.event_id for e in view) == sorted([first.event_id, other.event_id])

    async def test_I3_find_created_finds_our_create_by_tag_and_transaction_id(
        self, calendar: Calendar
    ) -> None:
        created = await calendar.create_event(ALICE, meeting(), transaction_id="tx-1", tag="crm:c1")
        found = await calendar.find_created(ALICE, tag="crm:c1", transaction_id="tx-1")
        assert found is not None and found.event_id == created.event_id
        assert await calendar.find_created(ALICE, tag="crm:c2", transaction_id="tx-1") is None
        assert await calendar.find_created(ALICE, tag="crm:c1", transaction_id="tx-other") is None

    async def test_W4_an_update_writes_only_its_fields_and_tags_a_users_event(
        self, calendar: Calendar, user: CalendarUser
    ) -> None:
        event_id = await user.create(ALICE, "Lunch", MONDAY)
        before = await calendar.get_event(ALICE, event_id)
        assert before is not None and before.written_by_us is None
        wanted = meeting("Lunch with Bob", body="not written: not in fields")
        after = await calendar.update_event(ALICE, event_id, wanted, fields=["subject"], tag="ical:X")
        assert (
            after.appointment.subject == "Lunch with Bob"
            and after.appointment.body == before.appointment.body
        )
        assert after.change_key != before.change_key and after.written_by_us is None  # not in the answer
        assert await calendar.get_event(ALICE, event_id) == after.model_copy(
            update={"written_by_us": "ical:X"}
        )
        # Tagged now, with no transaction id: taken as ours when no exact create exists (I3).
        found = await calendar.find_created(ALICE, tag="ical:X", transaction_id="tx-any")
        assert found is not None and found.event_id == event_id

    async def test_W4_a_change_of_start_writes_the_whole_time_group(self, calendar: Calendar) -> None:
        created = await calendar.create_event(ALICE, meeting(), transaction_id="tx-1", tag="k")
        later = MONDAY + timedelta(days=1)
        wanted = meeting(start=later, end=later + timedelta(hours=2), subject="not written")
        moved = await calendar.update_event(ALICE, created.event_id, wanted, fields=["start"], tag="k")
        assert (moved.appointment.start, moved.appointment.end) == (later, later + timedelta(hours=2))
        assert moved.appointment.subject == "Review"

    async def test_D4_a_users_edit_changes_the_change_key_and_keeps_our_tag(
        self, calendar: Calendar, user: CalendarUser
    ) -> None:
        created = await calendar.create_event(ALICE, meeting(), transaction_id="tx-1", tag="crm:c1")
        await user.rename(ALICE, created.event_id, "Renamed in Outlook")
        now = await calendar.get_event(ALICE, created.event_id)
        assert now is not None and now.appointment.subject == "Renamed in Outlook"
        assert now.change_key != created.change_key and now.written_by_us == "crm:c1"

    async def test_L3_a_cancelled_event_is_gone_from_the_organizers_calendar(
        self, calendar: Calendar
    ) -> None:
        created = await calendar.create_event(ALICE, meeting(), transaction_id="tx-1", tag="k")
        await calendar.cancel_event(ALICE, created.event_id, "Called off")
        assert await calendar.get_event(ALICE, created.event_id) is None
        with pytest.raises(NotFoundError):
            await calendar.cancel_event(ALICE, created.event_id)
        with pytest.raises(NotFoundError):
            await calendar.update_event(ALICE, created.event_id, meeting(), fields=["subject"], tag="k")
        # A create retried after the cancel is a new event (the transaction id named a deleted one).
        again = await calendar.create_event(ALICE, meeting(), transaction_id="tx-1", tag="k")
        assert again.event_id != created.event_id

    async def test_an_unknown_event_reads_as_none(self, calendar: Calendar) -> None:
        created = await calendar.create_event(ALICE, meeting(), transaction_id="tx-1", tag="k")
        await calendar.cancel_event(ALICE, created.event_id)
        assert await calendar.get_event(ALICE, created.event_id) is None

    async def test_the_organizer_cannot_respond_to_their_own_meeting(self, calendar: Calendar) -> None:
        created = await calendar.create_event(ALICE, meeting(), transaction_id="tx-1", tag="k")
        with pytest.raises(UnprocessableError):
            await calendar.respond(ALICE, created.event_id, "accept")
        with pytest.raises(UnprocessableError):
            await calendar.respond(ALICE, created.event_id, "maybe")

    async def test_R3_cancelling_an_occurrence_changes_the_series_once(self, calendar: Calendar) -> None:
        series = meeting(recurrence=weekly(MONDAY.date()))
        created = await calendar.create_event(ALICE, series, transaction_id="tx-1", tag="k")
        assert created.type == "seriesMaster" and created.appointment.recurrence == series.recurrence
        await calendar.cancel_occurrence(ALICE, created.event_id, MONDAY + timedelta(weeks=1))
        after = await calendar.get_event(ALICE, created.event_id)
        assert after is not None and after.change_key != created.change_key
        await calendar.cancel_occurrence(ALICE, created.event_id, MONDAY + timedelta(weeks=1))
        again = await calendar.get_event(ALICE, created.event_id)
        assert again is not None and again.change_key == after.change_key

    async def test_R3_a_cancelled_occurrence_reads_back_on_the_series(self, calendar: Calendar) -> None:
        created = await calendar.create_event(
            ALICE, meeting(recurrence=weekly(MONDAY.date())), transaction_id="tx-1", tag="k"
        )
        await calendar.cancel_occurrence(ALICE, created.event_id, MONDAY + timedelta(weeks=1))
        after = await calendar.get_event(ALICE, created.event_id)
        assert after is not None and after.appointment.cancelled_occurrences == (MONDAY + timedelta(weeks=1),)

    async def test_calendar_view_lists_the_single_events_of_a_window(self, calendar: Calendar) -> None:
        inside = await calendar.create_event(ALICE, meeting(), transaction_id="tx-1", tag="k1")
        later = MONDAY + timedelta(days=3)
        await calendar.create_event(ALICE, meeting(start=later), transaction_id="tx-2", tag="k2")
        view = await calendar.calendar_view(ALICE, MONDAY, MONDAY + timedelta(days=1))
        assert [e.event_id for e in view] == [inside.event_id]
        assert view[0].written_by_us == "k1"

    async def test_a_notice_is_mailed(self, calendar: Calendar) -> None:
        await calendar.send_mail(ALICE, "Board Room declined", "Board Room declined your meeting.")


# -- GraphAdapter on the Graph emulator --------------------------------------------------------------------


class EmulatorUser:
    """Outlook, as far as the contract needs it: plain Graph requests with no tag and no transaction id."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def create(self, mailbox: str, subject: str, start: datetime) -> str:
        def at(t: datetime) -> dict[str, str]:
            return {"dateTime": t.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}

        body = {"subject": subject, "start": at(start), "end": at(start + timedelta(hours=1))}
        response = await self._client.post(f"users/{mailbox}/events", json=body)
        response.raise_for_status()
        return str(response.json()["id"])

    async def rename(self, mailbox: str, event_id: str, subject: str) -> None:
        response = await self._client.patch(f"users/{mailbox}/events/{event_id}", json={"subject": subject})
        response.raise_for_status()


@pytest.fixture(scope="module")
def graph_emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emu:
        yield emu


class TestGraphAdapterOnTheEmulator(CalendarContract):
    @pytest.fixture
    def emu(self, graph_emulator: GraphEmulator) -> GraphEmulator:
        graph_emulator.reset()
        graph_emulator.add_mailbox(ALICE_ID, ALICE, "Alice Archer")
        return graph_emulator

    @pytest.fixture
    async def calendar(self, emu: GraphEmulator) -> AsyncIterator[Calendar]:
        settings = Settings.model_validate({"GRAPH_BASE_URL": emu.base_url, "GRAPH_AUTH_MODE": "emulator"})
        adapter = GraphAdapter(
            build_client(settings),
            extended_property_id=DEFAULT_EXTENDED_PROPERTY_ID,
            tag_secrets=settings.tag_secrets,
            limiter=MailboxLimiter(),
        )
        yield adapter
        await adapter.aclose()

    @pytest.fixture
    async def user(self, emu: GraphEmulator) -> AsyncIterator[CalendarUser]:
        headers = {"Authorization": "Bearer someone"}
        async with httpx.AsyncClient(base_url=emu.base_url + "/", headers=headers) as client:
            yield EmulatorUser(client)


# -- MemoryCalendar -----------------------------------------------------------------------------------------


class MemoryUser:
    def __init__(self, calendar: MemoryCalendar) -> None:
        self._calendar = calendar

    async def create(self, mailbox: str, subject: str, start: datetime) -> str:
        appt = Appointment(subject=subject, start=start, end=start + timedelta(hours=1))
        return self._calendar.user_create(mailbox, appt).event_id

    async def rename(self, mailbox: str, event_id: str, subject: str) -> None:
        self._calendar.user_edit(mailbox, event_id, subject=subject)


class TestMemoryCalendar(CalendarContract):
    @pytest.fixture
    def memory(self) -> MemoryCalendar:
        return MemoryCalendar()

    @pytest.fixture
    def calendar(self, memory: MemoryCalendar) -> Calendar:
        return memory

    @pytest.fixture
    def user(self, memory: MemoryCalendar) -> CalendarUser:
        return MemoryUser(memory)
