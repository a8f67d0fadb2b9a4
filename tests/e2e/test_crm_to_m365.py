"""CRM -> Microsoft 365 end to end (issue 6, item 4), through the real stack: a change made "as a CRM user" in
the CRM emulator -> signed webhook -> ingress -> Azurite queue -> worker and engine -> Graph emulator, whose
Exchange behaviour makes the attendee and room copies. Each test names the rule it proves.

Demo policy (devstack/demo-policy.json): adele, bruno, chen are sync users; Harbour Room is Outlook-managed
(auto-accept), Summit Hall is CRM-managed (a moderated room in Exchange: nobody but us answers for it).
Each test books its own day so the rooms' calendars do not interfere. A test parametrized with a policy
override (`stack` below, indirect) gets a stack of its own with that policy, started after the demo one stops.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from azure.data.tables.aio import TableClient

from devstack.azurite import Azurite
from devstack.stack import LocalStack
from sync_core.adapters.storage.core import DECISIONS_TABLE, MAPPINGS_TABLE
from sync_core.adapters.storage.decisions import DecisionLog
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.domain.model import Appointment, Attendee, AttendeeType, Origin, Person, Status
from sync_core.ops.status import explain
from tests.e2e.conftest import Stack, started, wait_for
from tests.e2e.outlook import events

pytestmark = pytest.mark.e2e

ADELE = "adele@contoso.example"
BRUNO = "bruno@contoso.example"
CHEN = "chen@contoso.example"
MEGAN = "megan@fabrikam.example"
HARBOUR = "harbour-room@contoso.example"
HALL = "summit-hall@contoso.example"
BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=40)
WAIT = 20.0
# Policy overrides a test may ask for with @pytest.mark.parametrize("stack", [name], indirect=True).
POLICIES: dict[str, dict[str, Any]] = {"default_calendar": {"default_calendar": CHEN}}


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The demo stack, or (indirect parameter) one whose policy is the demo's with POLICIES[name] applied.
    pytest stops a module fixture before it starts it again with another parameter: one stack at a time."""
    name = getattr(request, "param", None)
    policy_file = LocalStack.policy_file
    if name is not None:
        policy_file = tmp_path_factory.mktemp("policy") / f"{name}.json"
        policy_file.write_text(json.dumps(json.loads(LocalStack.policy_file.read_text()) | POLICIES[name]))
    yield from started(LocalStack(azurite=azurite, policy_file=policy_file))


def _at(day: int, hour: float) -> datetime:
    return BASE + timedelta(days=day, hours=hour)


def _booking(
    subject: str,
    day: int,
    start: float,
    end: float,
    *,
    organizer: str = ADELE,
    rooms: tuple[str, ...] = (),
    people: tuple[str, ...] = (MEGAN,),
    status: Status = Status.CONFIRMED,
    origin: Origin = Origin.CRM,
    time_zone: str = "UTC",
) -> Appointment:
    return Appointment(
        subject=subject,
        start=_at(day, start),
        end=_at(day, end),
        time_zone=time_zone,
        organizer=Person(email=organizer),
        attendees=(
            *(Attendee(email=p) for p in people),
            *(Attendee(email=r, type=AttendeeType.RESOURCE) for r in rooms),
        ),
        status=status,
        origin=origin,
    )


def _outlook_event(
    subject: str, day: int, start: float, end: float, rooms: tuple[str, ...]
) -> dict[str, Any]:
    def when(h: float) -> dict[str, str]:
        return {"dateTime": _at(day, h).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}

    return {
        "subject": subject,
        "start": when(start),
        "end": when(end),
        "attendees": [
            {"emailAddress": {"address": MEGAN}, "type": "required"},
            *({"emailAddress": {"address": r}, "type": "resource"} for r in rooms),
        ],
    }


def _answered(stack: Stack, mailbox: str, subject: str, response: str) -> list[dict[str, Any]]:
    return [e for e in events(stack, mailbox, subject) if e["responseStatus"]["response"] == response]


def _mail(stack: Stack, sender: str, words: str) -> list[dict[str, Any]]:
    return [m for m in stack.graph.sent_mail if m["from"] == sender and words in m["message"]["subject"]]


def _decisions(stack: Stack, crm_id: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        assert stack.azurite is not None
        conn = stack.azurite.connection_string
        async with (
            TableClient.from_connection_string(conn, table_name=DECISIONS_TABLE) as table,
            TableClient.from_connection_string(conn, table_name=MAPPINGS_TABLE) as mappings,
        ):  # the decisions about a mapped meeting are kept beside its mapping: read as `explain` does
            return await explain(DecisionLog(table), MappingStore(mappings), crm_id)

    return asyncio.run(read())


def _decided(stack: Stack, crm_id: str, rule: str) -> list[dict[str, Any]]:
    return [d for d in _decisions(stack, crm_id) if d["rule"] == rule]


def test_W1_M4_a_confirmed_crm_booking_reaches_organizer_and_room_and_overlapping_requests_are_declined(
    stack: Stack,
) -> None:
    with stack.graph_http() as g:  # a pending request for the hall, made in Outlook, overlapping the booking
        g.post(
            f"/users/{BRUNO}/events", json=_outlook_event("Hall request", 1, 10, 12, (HALL,))
        ).raise_for_status()
    assert wait_for(lambda: _answered(stack, HALL, "Hall request", "notResponded"), timeout=WAIT)
    stack.graph.clear_requests()

    stack.crm.user_create(_booking("Gala dinner", 1, 11, 13, rooms=(HALL,)), created_by=ADELE)

    organizer = wait_for(lambda: events(stack, ADELE, "Gala dinner"), timeout=WAIT)
    assert organizer[0]["isOrganizer"] and organizer[0]["start"]["dateTime"].startswith(
        _at(1, 11).strftime("%Y-%m-%dT%H:%M")
    )
    assert wait_for(lambda: _answered(stack, HALL, "Gala dinner", "accepted"), timeout=WAIT)
    assert wait_for(lambda: _answered(stack, HALL, "Hall request", "declined"), timeout=WAIT)
    # W1: the one event written is the organizer's; Exchange made the room's copy.
    creates = [r for r in stack.graph.requests if r["method"] == "POST" and r["path"].endswith("/events")]
    assert len(creates) == 1 and ADELE in creates[0]["path"].lower()


def test_L1_a_prospect_is_not_pushed_until_it_is_confirmed(stack: Stack) -> None:
    record = stack.crm.user_create(_booking("Site visit", 2, 9, 10, status=Status.PROSPECT), created_by=ADELE)
    assert wait_for(lambda: _decided(stack, record["id"], "L1"), timeout=WAIT)
    assert events(stack, ADELE, "Site visit") == []
    stack.crm.user_update(record["id"], status="confirmed")
    assert wait_for(lambda: events(stack, ADELE, "Site visit"), timeout=WAIT)


def test_L2_a_confirmed_booking_moved_back_to_tentative_stays_in_outlook(stack: Stack) -> None:
    record = stack.crm.user_create(_booking("Board dinner", 3, 18, 20), created_by=ADELE)
    wait_for(lambda: events(stack, ADELE, "Board dinner"), timeout=WAIT)
    stack.crm.user_update(record["id"], status="tentative")
    assert wait_for(lambda: _decided(stack, record["id"], "L2"), timeout=WAIT)
    kept = events(stack, ADELE, "Board dinner")
    assert len(kept) == 1 and not kept[0]["isCancelled"]


def test_L3_cancelled_in_the_crm_is_cancelled_in_m365_and_the_attendees_are_told(stack: Stack) -> None:
    record = stack.crm.user_create(_booking("Tasting", 4, 12, 13, people=(MEGAN, BRUNO)), created_by=ADELE)
    wait_for(lambda: events(stack, ADELE, "Tasting"), timeout=WAIT)
    assert wait_for(lambda: events(stack, BRUNO, "Tasting"), timeout=WAIT)  # Exchange invited bruno
    stack.crm.user_cancel(record["id"])
    assert wait_for(lambda: events(stack, ADELE, "Tasting") == [], timeout=WAIT)
    told = wait_for(
        lambda: [e for e in events(stack, BRUNO, "Canceled: Tasting") if e["isCancelled"]], timeout=WAIT
    )
    assert len(told) == 1


def test_M4_hold_tells_the_organizer_the_invitation_stays_pending_and_confirm_accepts(stack: Stack) -> None:
    with stack.graph_http() as g:  # the MOM flow: booked in Outlook, decided by the events team in the CRM
        g.post(
            f"/users/{ADELE}/events", json=_outlook_event("Product launch", 5, 14, 16, (HALL,))
        ).raise_for_status()
    record = wait_for(
        lambda: [a for a in stack.crm_appointments() if a["subject"] == "Product launch"], timeout=WAIT
    )[0]
    assert record["status"] == "prospect"
    stack.crm.user_update(record["id"], status="hold")
    assert wait_for(lambda: _mail(stack, ADELE, "Product launch: hold"), timeout=WAIT)
    assert _answered(stack, HALL, "Product launch", "notResponded")
    stack.crm.user_update(record["id"], status="confirmed")
    assert wait_for(lambda: _answered(stack, HALL, "Product launch", "accepted"), timeout=WAIT)


def test_M5_a_crm_booking_on_an_outlook_managed_room_goes_through_its_acceptance_and_the_creator_is_told(
    stack: Stack,
) -> None:
    stack.crm.user_create(_booking("Workshop", 6, 9, 11, rooms=(HARBOUR,)), created_by=ADELE)
    assert wait_for(lambda: _answered(stack, HARBOUR, "Workshop", "accepted"), timeout=WAIT)
    assert wait_for(lambda: _mail(stack, ADELE, "Workshop: room Harbour Room accepted"), timeout=WAIT)
    stack.crm.user_create(_booking("Clashing workshop", 6, 10, 12, rooms=(HARBOUR,)), created_by=ADELE)
    assert wait_for(lambda: _answered(stack, HARBOUR, "Clashing workshop", "declined"), timeout=WAIT)
    assert wait_for(
        lambda: _mail(stack, ADELE, "Clashing workshop: room Harbour Room declined"), timeout=WAIT
    )


def test_S7_items_imported_in_bulk_are_never_pushed(stack: Stack) -> None:
    record = stack.crm.user_create(
        _booking("Imported call", 7, 9, 10, origin=Origin.IMPORT), created_by=ADELE
    )
    assert wait_for(lambda: _decided(stack, record["id"], "S7"), timeout=WAIT)
    assert events(stack, ADELE, "Imported call") == []


def test_W2_an_organizer_without_a_mailbox_is_booked_on_the_room_calendar_alone(stack: Stack) -> None:
    record = stack.crm.user_create(
        _booking("Partner briefing", 8, 9, 10, organizer="dana@fabrikam.example", rooms=(HARBOUR,))
    )
    booked = wait_for(lambda: events(stack, HARBOUR, "Partner briefing"), timeout=WAIT)
    assert booked[0]["isOrganizer"]
    assert wait_for(lambda: _decided(stack, record["id"], "W2"), timeout=WAIT)  # recorded after the write
    assert events(stack, ADELE, "Partner briefing") == []


@pytest.mark.parametrize("stack", ["default_calendar"], indirect=True)
def test_W2_an_organizer_without_a_mailbox_is_booked_on_the_default_calendar(stack: Stack) -> None:
    record = stack.crm.user_create(
        _booking("Supplier review", 10, 9, 10, organizer="dana@fabrikam.example", rooms=(HARBOUR,))
    )
    booked = wait_for(lambda: events(stack, CHEN, "Supplier review"), timeout=WAIT)
    assert len(booked) == 1 and booked[0]["isOrganizer"]
    assert {a["emailAddress"]["address"] for a in booked[0]["attendees"]} >= {MEGAN, HARBOUR}
    w2 = wait_for(lambda: _decided(stack, record["id"], "W2"), timeout=WAIT)  # recorded after the write
    assert "default calendar" in w2[0]["reason"]
    # The room is invited from the default calendar (Exchange's copy, answered), not booked on its own.
    room = wait_for(lambda: _answered(stack, HARBOUR, "Supplier review", "accepted"), timeout=WAIT)
    assert not room[0]["isOrganizer"]
    assert events(stack, ADELE, "Supplier review") == []
    # M5: the room's answer goes to the default calendar's mailbox (the organiser has none to mail from).
    assert wait_for(lambda: _mail(stack, CHEN, "Supplier review: room Harbour Room accepted"), timeout=WAIT)
    assert [m["from"] for m in stack.graph.sent_mail if "Supplier review" in m["message"]["subject"]] == [
        CHEN
    ]


def test_M6_several_rooms_in_different_time_zones_on_one_event(stack: Stack) -> None:
    booking = _booking("Two-site town hall", 9, 15, 16, rooms=(HARBOUR, HALL), time_zone="America/New_York")
    stack.crm.user_create(booking, created_by=ADELE)
    organizer = wait_for(lambda: events(stack, ADELE, "Two-site town hall"), timeout=WAIT)[0]
    assert {a["emailAddress"]["address"] for a in organizer["attendees"]} >= {HARBOUR, HALL}
    assert wait_for(lambda: _answered(stack, HARBOUR, "Two-site town hall", "accepted"), timeout=WAIT)
    assert wait_for(lambda: _answered(stack, HALL, "Two-site town hall", "accepted"), timeout=WAIT)
    # Each room reads the booking in its own zone; every reading is the same instant.
    with stack.graph_http() as g:
        for room, zone in ((HARBOUR, "Europe/London"), (HALL, "Asia/Tokyo"), (ADELE, "America/New_York")):
            copy = events(stack, room, "Two-site town hall")[0]
            seen = g.get(
                f"/users/{room}/events/{copy['id']}", headers={"Prefer": f'outlook.timezone="{zone}"'}
            )
            start = seen.raise_for_status().json()["start"]
            local = datetime.fromisoformat(start["dateTime"][:19]).replace(tzinfo=ZoneInfo(zone))
            assert local == booking.start, (room, start)
