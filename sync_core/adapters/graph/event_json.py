"""The JSON body of an event create or PATCH, written directly: pure, no I/O.

msgraph-sdk would build an `Event` model (a backing store per object) and walk it with kiota's JSON writer:
about 3 ms of CPU per write under the profiler (issue 20). These bodies are the same bytes, key for key in
the writer's order (a property set to None as null first, as the backing store writes it, then the model's
`@odata.type`, the OutlookItem fields, then Event's in its serializer's order; a property left unset is
omitted), and still go out through the SDK's request adapter. `convert.appointment_to_event` keeps the
model of the same write; tests/graph/test_event_json.py compares both serializations for every golden
event, so a drift between them fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from msgraph.generated.models.attendee_type import AttendeeType
from msgraph.generated.models.day_of_week import DayOfWeek
from msgraph.generated.models.free_busy_status import FreeBusyStatus
from msgraph.generated.models.recurrence_pattern_type import RecurrencePatternType
from msgraph.generated.models.recurrence_range_type import RecurrenceRangeType
from msgraph.generated.models.sensitivity import Sensitivity
from msgraph.generated.models.week_index import WeekIndex

from sync_core.adapters.graph.convert import write_time
from sync_core.domain import timezones
from sync_core.domain.model import GRAPH_WRITABLE_FIELDS, Appointment, Recurrence

_TIME_FIELDS = frozenset({"start", "end", "time_zone", "is_all_day"})
_WRITABLE = frozenset(GRAPH_WRITABLE_FIELDS)


def _recurrence(rec: Recurrence, appt: Appointment) -> dict[str, Any]:
    """PatternedRecurrence as its serializer writes it; values checked by msgraph's enums, as the model is."""
    p, r = rec.pattern, rec.range
    pattern: dict[str, Any] = {}
    if p.day_of_month:
        pattern["dayOfMonth"] = p.day_of_month
    if p.days_of_week:
        pattern["daysOfWeek"] = [DayOfWeek(d).value for d in p.days_of_week]
    if p.type == "weekly":
        pattern["firstDayOfWeek"] = DayOfWeek(p.first_day_of_week).value
    if p.type in ("relativeMonthly", "relativeYearly"):
        pattern["index"] = WeekIndex(p.index).value
    pattern["interval"] = p.interval
    if p.month:
        pattern["month"] = p.month
    pattern["type"] = RecurrencePatternType(p.type).value
    zone_name = r.time_zone if r.time_zone != "UTC" else appt.time_zone
    rng: dict[str, Any] = {}
    if r.type == "endDate" and r.end_date is not None:
        rng["endDate"] = r.end_date.isoformat()
    if r.type == "numbered":
        rng["numberOfOccurrences"] = r.number_of_occurrences
    rng["recurrenceTimeZone"] = timezones.to_windows(zone_name) or zone_name
    rng["startDate"] = r.start_date.isoformat()
    rng["type"] = RecurrenceRangeType(r.type).value
    return {"pattern": pattern, "range": rng}


def _time(date_time: str, zone: str) -> dict[str, str]:
    return {"dateTime": date_time, "timeZone": zone}


def event_body(
    appt: Appointment,
    *,
    fields: Iterable[str] | None = None,
    extended_property: tuple[str, str] | None = None,
    transaction_id: str | None = None,
) -> dict[str, Any]:
    """The body of a create (all writable fields) or a PATCH (only `fields`, W4), as a JSON object.

    The same content as `convert.appointment_to_event` with the same arguments: the tag (D4, I3) and the
    transactionId (I3) included when given; fields Graph cannot write ignored (GRAPH_WRITABLE_FIELDS).
    """
    wanted = _WRITABLE if fields is None else _WRITABLE.intersection(fields)
    body: dict[str, Any] = {}
    if fields is not None and "recurrence" in wanted and appt.recurrence is None:
        # A PATCH that ends a series: the model's backing store writes a property set to None as null,
        # ahead of the rest (kiota's BackingStoreSerializationWriterProxyFactory).
        body["recurrence"] = None
    body["@odata.type"] = "#microsoft.graph.event"
    if "categories" in wanted:
        body["categories"] = list(appt.categories)
    if "attendees" in wanted:
        attendees = []
        for a in appt.attendees:
            address = {"address": a.email, "name": a.name} if a.name else {"address": a.email}
            attendees.append(
                {
                    "emailAddress": address,
                    "@odata.type": "#microsoft.graph.attendee",
                    "type": AttendeeType(a.type.value).value,
                }
            )
        body["attendees"] = attendees
    if "body" in wanted:
        body["body"] = {"content": appt.body, "contentType": "text"}
    times = bool(wanted & _TIME_FIELDS)
    if times:
        end = appt.end
        if appt.is_all_day and end <= appt.start:
            end = appt.start + timedelta(days=1)
        body["end"] = _time(*write_time(end, appt))
        body["isAllDay"] = appt.is_all_day
    if "reminder_minutes" in wanted:
        body["isReminderOn"] = appt.reminder_minutes is not None
    if "locations" in wanted:
        body["locations"] = [
            {"displayName": loc.display_name, "locationEmailAddress": loc.room_email}
            if loc.room_email is not None
            else {"displayName": loc.display_name}
            for loc in appt.locations
        ]
    if "recurrence" in wanted and appt.recurrence is not None:
        body["recurrence"] = _recurrence(appt.recurrence, appt)
    if "reminder_minutes" in wanted and appt.reminder_minutes is not None:
        body["reminderMinutesBeforeStart"] = appt.reminder_minutes
    if "sensitivity" in wanted:
        body["sensitivity"] = Sensitivity(appt.sensitivity.value).value
    if "show_as" in wanted:
        body["showAs"] = FreeBusyStatus(appt.show_as.value).value
    if extended_property is not None:
        body["singleValueExtendedProperties"] = [{"id": extended_property[0], "value": extended_property[1]}]
    if times:
        body["start"] = _time(*write_time(appt.start, appt, anchors_series=appt.recurrence is not None))
    if "subject" in wanted:
        body["subject"] = appt.subject
    if transaction_id is not None:
        body["transactionId"] = transaction_id
    return body


def event_json(
    appt: Appointment,
    *,
    fields: Iterable[str] | None = None,
    extended_property: tuple[str, str] | None = None,
    transaction_id: str | None = None,
) -> bytes:
    """`event_body` as the bytes kiota's JSON writer sends (json.dumps' defaults, UTF-8)."""
    body = event_body(appt, fields=fields, extended_property=extended_property, transaction_id=transaction_id)
    return json.dumps(body).encode("utf-8")
