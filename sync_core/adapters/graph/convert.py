"""Microsoft Graph event <-> neutral Appointment (rules F1, F4, R1), on the msgraph-sdk models.
Pure translation: no I/O.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from typing import Literal

from msgraph.generated.models.attachment import Attachment as GraphAttachment
from msgraph.generated.models.attendee import Attendee as MsAttendee
from msgraph.generated.models.attendee_type import AttendeeType as MsAttendeeType
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.day_of_week import DayOfWeek
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.event import Event
from msgraph.generated.models.free_busy_status import FreeBusyStatus
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.location import Location as MsLocation
from msgraph.generated.models.patterned_recurrence import PatternedRecurrence
from msgraph.generated.models.recipient import Recipient
from msgraph.generated.models.recurrence_pattern import RecurrencePattern as MsPattern
from msgraph.generated.models.recurrence_pattern_type import RecurrencePatternType
from msgraph.generated.models.recurrence_range import RecurrenceRange as MsRange
from msgraph.generated.models.recurrence_range_type import RecurrenceRangeType
from msgraph.generated.models.sensitivity import Sensitivity as MsSensitivity
from msgraph.generated.models.single_value_legacy_extended_property import SingleValueLegacyExtendedProperty
from msgraph.generated.models.week_index import WeekIndex

from sync_core.domain import timezones
from sync_core.domain.model import (
    GRAPH_WRITABLE_FIELDS,
    Appointment,
    Attachment,
    Attendee,
    AttendeeType,
    GraphEvent,
    Location,
    Person,
    Recurrence,
    RecurrencePattern,
    RecurrenceRange,
    Response,
    Sensitivity,
    ShowAs,
    Status,
    utc,
)

log = logging.getLogger(__name__)

_TIME_FIELDS = frozenset({"start", "end", "time_zone", "is_all_day"})


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip += 1
        elif tag in ("br", "p", "div", "li", "tr"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(content: str) -> str:
    """Reduce an HTML body to its text: tags dropped, entities decoded, whitespace tidied."""
    parser = _Text()
    parser.feed(content)
    parser.close()
    text = html.unescape("".join(parser.parts)).replace("\xa0", " ")
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _enum_value(value: object, default: str) -> str:
    if value is None:
        return default
    return str(getattr(value, "value", value))


def _parse_local(value: str) -> datetime:
    # Graph writes seven fractional digits ("2017-04-15T11:00:00.0000000"); Python reads at most six.
    head, _, frac = value.partition(".")
    parsed = datetime.fromisoformat(head.rstrip("Z"))
    if frac:
        digits = re.sub(r"\D.*$", "", frac)[:6].ljust(6, "0")
        parsed = parsed.replace(microsecond=int(digits))
    return parsed


def _zone_name(name: str | None, *, what: str, item: str) -> str:
    """IANA name for a Graph zone name; unknown names are logged and read as UTC (never a crash)."""
    iana = timezones.to_iana(name)
    if iana is None:
        if name:
            log.warning("unknown time zone %r in %s of event %s; using UTC", name, what, item)
        return "UTC"
    return iana


def _read_time(value: DateTimeTimeZone | None, *, item: str) -> datetime:
    if value is None or not value.date_time:
        raise ValueError(f"event {item} has no start or end")
    local = _parse_local(value.date_time)
    if local.tzinfo is not None:
        return utc(local)
    zone = timezones.zone(_zone_name(value.time_zone or "UTC", what="start/end", item=item))
    return local.replace(tzinfo=zone).astimezone(UTC)


def _read_recurrence(rec: PatternedRecurrence | None, *, item: str) -> Recurrence | None:
    if rec is None or rec.pattern is None or rec.range is None:
        return None
    p, r = rec.pattern, rec.range
    if r.start_date is None:
        return None
    return Recurrence(
        pattern=RecurrencePattern(
            type=_enum_value(p.type, "daily"),
            interval=p.interval or 1,
            days_of_week=tuple(_enum_value(d, "") for d in p.days_of_week or ()),
            day_of_month=p.day_of_month or 0,
            month=p.month or 0,
            index=_enum_value(p.index, "first"),
            first_day_of_week=_enum_value(p.first_day_of_week, "sunday"),
        ),
        range=RecurrenceRange(
            type=_enum_value(r.type, "noEnd"),
            start_date=r.start_date,
            end_date=r.end_date if _enum_value(r.type, "") == "endDate" else None,
            number_of_occurrences=r.number_of_occurrences or 0,
            time_zone=_zone_name(r.recurrence_time_zone, what="recurrence", item=item)
            if r.recurrence_time_zone
            else "UTC",
        ),
    )


# Every event property event_to_graph_event reads (a $select must name them all: Graph returns only those).
EVENT_PROPERTIES: tuple[str, ...] = (
    "id",
    "changeKey",
    "iCalUId",
    "type",
    "seriesMasterId",
    "originalStart",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "subject",
    "body",
    "start",
    "end",
    "isAllDay",
    "location",
    "locations",
    "organizer",
    "attendees",
    "sensitivity",
    "showAs",
    "isReminderOn",
    "reminderMinutesBeforeStart",
    "categories",
    "onlineMeeting",
    "onlineMeetingUrl",
    "recurrence",
    "isOrganizer",
    "isDraft",
    "isCancelled",
    "responseStatus",
    "lastModifiedDateTime",
    "transactionId",
    "hasAttachments",
)


def _cancelled(values: Iterable[str], start: datetime, tz_name: str) -> tuple[datetime, ...]:
    """cancelledOccurrences ("OID.<masterId>.<yyyy-mm-dd>") as the UTC starts of the cancelled instances."""
    zone = timezones.zone(tz_name)
    local_start = start.astimezone(zone)
    out = []
    for value in values:
        match = re.search(r"(\d{4}-\d{2}-\d{2})$", value)
        if not match:
            continue
        day = date.fromisoformat(match.group(1))
        out.append(datetime.combine(day, local_start.timetz().replace(tzinfo=None), zone).astimezone(UTC))
    return tuple(out)


ATTACHMENT_KINDS: dict[str, Literal["file", "item", "reference"]] = {
    "#microsoft.graph.fileattachment": "file",
    "#microsoft.graph.itemattachment": "item",
    "#microsoft.graph.referenceattachment": "reference",
}
# What a list of an event's attachments selects (F5): every property we keep, never `contentBytes`.
ATTACHMENT_PROPERTIES = ("id", "name", "contentType", "size", "isInline", "lastModifiedDateTime")


def attachment_from_graph(item: GraphAttachment, content: bytes | None = None) -> Attachment:
    """F5: one Graph attachment (file, item or reference, by its @odata.type) as the model's metadata."""
    kind = ATTACHMENT_KINDS.get((item.odata_type or "").lower(), "file")
    return Attachment(
        name=item.name or "",
        size=item.size or 0,
        content_type=item.content_type or "application/octet-stream",
        kind=kind,
        id=item.id or "",
        last_modified=item.last_modified_date_time,
        content=content,
    )


def _person(recipient: Recipient | None) -> Person | None:
    if recipient is None or recipient.email_address is None or not recipient.email_address.address:
        return None
    return Person(email=recipient.email_address.address, name=recipient.email_address.name or "")


def event_to_graph_event(event: Event, mailbox: str, *, extended_property_id: str) -> GraphEvent:
    """Translate one msgraph `Event` read from `mailbox` into our GraphEvent (F1, F4, R1, D4)."""
    item = event.id or "?"
    is_all_day = bool(event.is_all_day)
    start = _read_time(event.start, item=item)
    end = _read_time(event.end, item=item)
    tz_name = _zone_name(
        event.original_start_time_zone or (event.start.time_zone if event.start else None),
        what="originalStartTimeZone",
        item=item,
    )
    if tz_name == "UTC" and timezones.to_iana(event.original_end_time_zone) not in (None, "UTC"):
        # A start written in UTC because its wall time was ambiguous (see _write_time): the zone is the end's.
        tz_name = _zone_name(event.original_end_time_zone, what="originalEndTimeZone", item=item)
    if is_all_day:
        # All-day events are floating dates: keep the wall date, at midnight UTC.
        start = (
            datetime.combine(_parse_local(event.start.date_time or "").date(), time(), UTC)
            if event.start
            else start
        )
        end = (
            datetime.combine(_parse_local(event.end.date_time or "").date(), time(), UTC)
            if event.end
            else end
        )

    attendees = []
    for a in event.attendees or ():
        if a.email_address is None or not a.email_address.address:
            continue
        attendees.append(
            Attendee(
                email=a.email_address.address,
                name=a.email_address.name or "",
                type=AttendeeType(_enum_value(a.type, "required")),
                response=Response(_enum_value(a.status.response if a.status else None, "none")),
            )
        )
    rooms = {a.email for a in attendees if a.type is AttendeeType.RESOURCE}
    locations = []
    raw_locations = event.locations or (
        [event.location] if event.location and event.location.display_name else []
    )
    for loc in raw_locations:
        if not loc.display_name and not loc.location_email_address:
            continue
        email = (loc.location_email_address or "").strip().lower() or None
        if email is None and loc.unique_id and "@" in loc.unique_id and loc.unique_id.lower() in rooms:
            email = loc.unique_id.lower()
        locations.append(Location(display_name=loc.display_name or email or "", room_email=email))

    body = ""
    if event.body is not None and event.body.content:
        is_html = _enum_value(event.body.content_type, "text") == "html"
        body = html_to_text(event.body.content) if is_html else event.body.content.strip()

    reminder = event.reminder_minutes_before_start if event.is_reminder_on is not False else None
    online = event.online_meeting.join_url if event.online_meeting and event.online_meeting.join_url else None
    recurrence = _read_recurrence(event.recurrence, item=item)
    cancelled = _cancelled(event.cancelled_occurrences or (), start, tz_name) if recurrence else ()
    attachments = tuple(attachment_from_graph(a) for a in event.attachments or ())
    appointment = Appointment(
        subject=event.subject or "",
        body=body,
        start=start,
        end=end,
        time_zone=tz_name,
        is_all_day=is_all_day,
        locations=tuple(locations),
        organizer=_person(event.organizer),
        attendees=tuple(attendees),
        sensitivity=Sensitivity(_enum_value(event.sensitivity, "normal")),
        show_as=ShowAs(_enum_value(event.show_as, "busy")),
        reminder_minutes=reminder,
        categories=tuple(event.categories or ()),
        online_meeting_url=online or event.online_meeting_url or None,
        attachments=attachments,
        status=Status.CANCELLED if event.is_cancelled else Status.CONFIRMED,
        recurrence=recurrence,
        cancelled_occurrences=cancelled,
        original_start=event.original_start,
    )
    written_by_us = None
    for prop in event.single_value_extended_properties or ():
        if (prop.id or "").casefold() == extended_property_id.casefold():
            written_by_us = prop.value
    return GraphEvent(
        mailbox=mailbox.lower(),
        event_id=event.id or "",
        change_key=event.change_key or "",
        ical_uid=event.i_cal_u_id or "",
        type=_enum_value(event.type, "singleInstance"),
        series_master_id=event.series_master_id,
        exception_ids=tuple(e.id for e in event.exception_occurrences or () if e.id),
        original_start=event.original_start,
        is_organizer=event.is_organizer if event.is_organizer is not None else True,
        is_draft=bool(event.is_draft),
        is_cancelled=bool(event.is_cancelled),
        response=Response(
            _enum_value(event.response_status.response if event.response_status else None, "none")
        ),
        written_by_us=written_by_us,
        last_modified=event.last_modified_date_time,
        has_attachments=bool(event.has_attachments),
        appointment=appointment,
    )


def write_time(value: datetime, appt: Appointment, *, anchors_series: bool = False) -> tuple[str, str]:
    """(dateTime, timeZone) of a start or end as we write it (F4): in the event's zone, see the module."""
    windows = timezones.to_windows(appt.time_zone)
    iana = timezones.to_iana(appt.time_zone)
    if appt.is_all_day:
        # Graph wants all-day events at midnight, start and end in the same zone.
        return f"{value.date().isoformat()}T00:00:00", windows or "UTC"
    if iana is None or iana == "UTC":
        return utc(value).strftime("%Y-%m-%dT%H:%M:%S"), "UTC"
    local = value.astimezone(timezones.zone(iana))
    if not timezones.is_exact_wall_time(local) and not anchors_series:
        # A wall time that happens twice in this zone (the hour a clock is set back) cannot say which of
        # the two instants it means; UTC can (F4). Graph keeps start and end zones apart, so only this end
        # loses the event's zone. Not a series' start: Exchange lays the occurrences out in the start's
        # zone, and a series in UTC would move an hour at every clock change.
        return utc(value).strftime("%Y-%m-%dT%H:%M:%S"), "UTC"
    return local.strftime("%Y-%m-%dT%H:%M:%S"), windows or iana


def _write_time(value: datetime, appt: Appointment, *, anchors_series: bool = False) -> DateTimeTimeZone:
    date_time, zone = write_time(value, appt, anchors_series=anchors_series)
    return DateTimeTimeZone(date_time=date_time, time_zone=zone)


def _write_recurrence(rec: Recurrence, appt: Appointment) -> PatternedRecurrence:
    p, r = rec.pattern, rec.range
    pattern = MsPattern(
        type=RecurrencePatternType(p.type),
        interval=p.interval,
        days_of_week=[DayOfWeek(d) for d in p.days_of_week] or None,
        day_of_month=p.day_of_month or None,
        month=p.month or None,
        index=WeekIndex(p.index) if p.type in ("relativeMonthly", "relativeYearly") else None,
        first_day_of_week=DayOfWeek(p.first_day_of_week) if p.type == "weekly" else None,
    )
    zone_name = r.time_zone if r.time_zone != "UTC" else appt.time_zone
    rng = MsRange(
        type=RecurrenceRangeType(r.type),
        start_date=r.start_date,
        end_date=r.end_date if r.type == "endDate" else None,
        number_of_occurrences=r.number_of_occurrences if r.type == "numbered" else None,
        recurrence_time_zone=timezones.to_windows(zone_name) or zone_name,
    )
    return PatternedRecurrence(pattern=pattern, range=rng)


def appointment_to_event(
    appt: Appointment,
    *,
    fields: Iterable[str] | None = None,
    extended_property: tuple[str, str] | None = None,
    transaction_id: str | None = None,
) -> Event:
    """An msgraph `Event` for a create (all writable fields) or a PATCH (only `fields`, rule W4).

    `extended_property` is (id, value) of the single-value property that tags our writes (D4, I3);
    `transaction_id` makes a create idempotent (I3). Fields Graph cannot write are ignored here: see
    GRAPH_WRITABLE_FIELDS.
    """
    wanted = set(GRAPH_WRITABLE_FIELDS if fields is None else fields) & set(GRAPH_WRITABLE_FIELDS)
    event = Event()
    if "subject" in wanted:
        event.subject = appt.subject
    if "body" in wanted:
        event.body = ItemBody(content_type=BodyType.Text, content=appt.body)
    if wanted & _TIME_FIELDS:
        end = appt.end
        if appt.is_all_day and end <= appt.start:
            end = appt.start + timedelta(days=1)
        event.start = _write_time(appt.start, appt, anchors_series=appt.recurrence is not None)
        event.end = _write_time(end, appt)
        event.is_all_day = appt.is_all_day
    if "locations" in wanted:
        event.locations = [
            MsLocation(display_name=loc.display_name, location_email_address=loc.room_email)
            for loc in appt.locations
        ]
    if "attendees" in wanted:
        event.attendees = [
            MsAttendee(
                email_address=EmailAddress(address=a.email, name=a.name or None),
                type=MsAttendeeType(a.type.value),
            )
            for a in appt.attendees
        ]
    if "sensitivity" in wanted:
        event.sensitivity = MsSensitivity(appt.sensitivity.value)
    if "show_as" in wanted:
        event.show_as = FreeBusyStatus(appt.show_as.value)
    if "reminder_minutes" in wanted:
        event.is_reminder_on = appt.reminder_minutes is not None
        if appt.reminder_minutes is not None:
            event.reminder_minutes_before_start = appt.reminder_minutes
    if "categories" in wanted:
        event.categories = list(appt.categories)
    if "recurrence" in wanted and (appt.recurrence is not None or fields is not None):
        event.recurrence = _write_recurrence(appt.recurrence, appt) if appt.recurrence else None
    if extended_property is not None:
        event.single_value_extended_properties = [
            SingleValueLegacyExtendedProperty(id=extended_property[0], value=extended_property[1])
        ]
    if transaction_id is not None:
        event.transaction_id = transaction_id
    return event
