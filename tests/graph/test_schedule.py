"""Free/busy for room conflict checks (M4): getSchedule and the room's own calendarView."""

from __future__ import annotations

import pytest
from graph_support import ALICE_MAIL, BOB_MAIL, ROOM_MAIL, at, meeting

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.domain.model import Location
from sync_core.errors import UnprocessableError


def _with_room(subject: str, day: int) -> object:
    base = meeting(subject, at(day, 10), 60, attendees=(ROOM_MAIL,))
    return base.model_copy(
        update={"locations": (Location(display_name="Harbour Room", room_email=ROOM_MAIL),)}
    )


async def test_M4_get_schedule_shows_the_room_busy_where_it_is_booked(
    adapter: GraphAdapter, emu: GraphEmulator
) -> None:
    booked = await adapter.create_event(
        ALICE_MAIL, _with_room("Board prep", 7), transaction_id="tx-r1", tag="r1"
    )  # type: ignore[arg-type]
    assert booked.event_id
    schedules = await adapter.get_schedule(BOB_MAIL, [ROOM_MAIL, "ghost@contoso.com"], at(7, 8), at(7, 14))
    room, ghost = schedules
    assert room.address == ROOM_MAIL and ghost.error
    assert [(s.start, s.end, s.status) for s in room.busy] == [(at(7, 10), at(7, 11), "busy")]
    assert not room.is_free(
        at(
            7,
            10,
        ),
        at(7, 10).replace(minute=30),
    )
    assert room.is_free(at(7, 12), at(7, 13))
    assert room.availability_view == "000022000000"  # 30-minute slots from 08:00
    call = [r for r in emu.requests if r["path"].endswith("/calendar/getSchedule")][-1]
    assert {k.lower(): v for k, v in call["json"].items()}["starttime"]["timeZone"] == "UTC"


async def test_M4_room_conflicts_leave_our_own_meeting_out(adapter: GraphAdapter, emu: GraphEmulator) -> None:
    ours = await adapter.create_event(ALICE_MAIL, _with_room("Ours", 8), transaction_id="tx-r2", tag="r2")  # type: ignore[arg-type]
    clashes = await adapter.room_conflicts(ROOM_MAIL, at(8, 10), at(8, 11))
    assert [c.ical_uid for c in clashes] == [ours.ical_uid]
    assert await adapter.room_conflicts(ROOM_MAIL, at(8, 10), at(8, 11), ignore_ical_uid=ours.ical_uid) == []
    assert await adapter.room_conflicts(ROOM_MAIL, at(8, 11), at(8, 12)) == []


async def test_get_schedule_refuses_an_empty_list(adapter: GraphAdapter) -> None:
    with pytest.raises(UnprocessableError):
        await adapter.get_schedule(ALICE_MAIL, [], at(1), at(2))
