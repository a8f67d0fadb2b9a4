"""Free/busy for room conflict checks (M4): `calendar/getSchedule`, and calendarView of the room itself.

I/O side, used through GraphAdapter.get_schedule() and GraphAdapter.room_conflicts(). getSchedule answers
for any address from the organizer's mailbox but names no event, so it cannot leave our own booking out;
room_conflicts reads the room's calendarView (expanded occurrences) and can (by iCalUId).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.users.item.calendar.get_schedule.get_schedule_post_request_body import (
    GetSchedulePostRequestBody,
)

from sync_core.adapters.graph.base import config, graph_time
from sync_core.domain.model import GraphEvent, Response, ShowAs
from sync_core.errors import UnprocessableError

if TYPE_CHECKING:
    from sync_core.adapters.graph.adapter import GraphAdapter

MAX_SCHEDULES = 100  # getSchedule takes at most 100 addresses per request (Graph docs)


@dataclass(frozen=True)
class BusySlot:
    start: datetime
    end: datetime
    status: str  # free, tentative, busy, oof, workingElsewhere, unknown
    subject: str = ""


@dataclass(frozen=True)
class Schedule:
    """One address's free/busy in the window; `error` set when Graph could not answer for it."""

    address: str
    availability_view: str
    busy: tuple[BusySlot, ...]
    error: str | None = None

    def is_free(self, start: datetime, end: datetime) -> bool:
        return self.error is None and not any(
            s.start < end and s.end > start and s.status not in ("free", "unknown") for s in self.busy
        )


def _instant(value: DateTimeTimeZone | None) -> datetime:
    if value is None or not value.date_time:
        raise UnprocessableError("getSchedule returned an item without a time", side="graph")
    text = value.date_time.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    parsed = datetime.fromisoformat(text)
    if (value.time_zone or "UTC").upper() not in ("UTC", "ETC/UTC", "COORDINATED UNIVERSAL TIME"):
        raise UnprocessableError(f"getSchedule answered in {value.time_zone}, not UTC", side="graph")
    return parsed.replace(tzinfo=UTC)


async def get_schedule(
    adapter: GraphAdapter,
    mailbox: str,
    addresses: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    interval_minutes: int = 30,
) -> list[Schedule]:
    """`POST /users/{mailbox}/calendar/getSchedule` for `addresses` over [start, end), times in UTC."""
    if not addresses or len(addresses) > MAX_SCHEDULES:
        raise UnprocessableError(
            f"getSchedule takes 1 to {MAX_SCHEDULES} addresses", side="graph", mailbox=mailbox
        )
    body = GetSchedulePostRequestBody(
        schedules=list(addresses),
        start_time=DateTimeTimeZone(date_time=graph_time(start).rstrip("Z"), time_zone="UTC"),
        end_time=DateTimeTimeZone(date_time=graph_time(end).rstrip("Z"), time_zone="UTC"),
        availability_view_interval=interval_minutes,
    )
    builder = adapter.client.users.by_user_id(mailbox).calendar.get_schedule
    answer = await adapter._call(mailbox, None, lambda: builder.post(body, config()))
    out: list[Schedule] = []
    for info in answer.value if answer and answer.value else []:
        if info.error is not None:
            message = info.error.response_code or info.error.message or "unknown error"
            out.append(Schedule(info.schedule_id or "", "", (), error=message))
            continue
        busy = tuple(
            BusySlot(
                start=_instant(item.start),
                end=_instant(item.end),
                status=str(item.status.value) if item.status else "unknown",
                subject=item.subject or "",
            )
            for item in info.schedule_items or []
        )
        out.append(Schedule(info.schedule_id or "", info.availability_view or "", busy))
    return out


def _blocks(event: GraphEvent, start: datetime, end: datetime, ignore_ical_uid: str | None) -> bool:
    a = event.appointment
    if ignore_ical_uid and event.ical_uid == ignore_ical_uid:
        return False
    if event.is_cancelled or event.response == Response.DECLINED or a.show_as == ShowAs.FREE:
        return False
    return a.start < end and a.end > start


async def room_conflicts(
    adapter: GraphAdapter,
    room: str,
    start: datetime,
    end: datetime,
    *,
    ignore_ical_uid: str | None = None,
) -> list[GraphEvent]:
    """Bookings in the room's own calendar that overlap [start, end), our own meeting left out."""
    events = await adapter.calendar_view(room, start, end)
    return [e for e in events if _blocks(e, start, end, ignore_ical_uid)]
