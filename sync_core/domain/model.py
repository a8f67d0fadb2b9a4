"""The neutral appointment model both sides are translated into (rule F1), and the side snapshots.

Pure data: pydantic models, no I/O. Times are timezone-aware UTC (F4); the event's own zone is kept by name.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Side(StrEnum):
    M365 = "m365"
    CRM = "crm"


class Origin(StrEnum):
    M365 = "m365"
    CRM = "crm"
    IMPORT = "import"


class Status(StrEnum):
    PROSPECT = "prospect"
    TENTATIVE = "tentative"
    HOLD = "hold"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class Kind(StrEnum):
    MEETING = "meeting"
    ACTIVITY = "activity"


class Sensitivity(StrEnum):
    NORMAL = "normal"
    PERSONAL = "personal"
    PRIVATE = "private"
    CONFIDENTIAL = "confidential"


class ShowAs(StrEnum):
    FREE = "free"
    TENTATIVE = "tentative"
    BUSY = "busy"
    OOF = "oof"
    WORKING_ELSEWHERE = "workingElsewhere"
    UNKNOWN = "unknown"


class AttendeeType(StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"
    RESOURCE = "resource"


class Response(StrEnum):
    NONE = "none"
    ORGANIZER = "organizer"
    ACCEPTED = "accepted"
    TENTATIVE = "tentativelyAccepted"
    DECLINED = "declined"
    NOT_RESPONDED = "notResponded"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def utc(value: datetime) -> datetime:
    """Normalise a datetime to aware UTC; naive values are taken as UTC (Graph with outlook.timezone=UTC).

    A value with no UTC equivalent (0001-01-01T00:00+01:00, 9999-12-31T23:00-05:00) raises ValueError,
    which pydantic reports as a validation error of the field (Python raises OverflowError)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"{value.isoformat()} cannot be expressed in UTC (out of range)") from exc


class Person(_Frozen):
    email: str
    name: str = ""

    @field_validator("email")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.strip().lower()


class Attendee(Person):
    type: AttendeeType = AttendeeType.REQUIRED
    response: Response = Response.NONE


class Location(_Frozen):
    display_name: str
    room_email: str | None = None


class Attachment(_Frozen):
    """F5: one attachment of a meeting, as Graph lists it. `id` and `last_modified` name one version of it
    (a file replaced in Outlook gets a new pair), so a copy that already has this version is not sent again.

    `content` (a file's bytes, within the policy's size) travels only from the Graph read to the CRM write:
    it is never serialised (mapping snapshots, decisions and fingerprints hold the metadata alone) and never
    compared (two attachments are equal when their metadata is)."""

    name: str
    size: int = 0
    content_type: str = "application/octet-stream"
    kind: Literal["file", "item", "reference"] = "file"
    id: str = ""
    last_modified: datetime | None = None
    content: bytes | None = Field(default=None, exclude=True, repr=False)

    @field_validator("last_modified")
    @classmethod
    def _utc_opt(cls, v: datetime | None) -> datetime | None:
        return None if v is None else utc(v)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Attachment):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(self.version_key)

    @property
    def version_key(self) -> tuple[str, str, int]:
        """(id, lastModifiedDateTime, size): the same key means the same file, already sent (F5, W4)."""
        when = self.last_modified.isoformat() if self.last_modified else ""
        return (self.id, when, self.size)


class RecurrencePattern(_Frozen):
    type: str  # daily | weekly | absoluteMonthly | relativeMonthly | absoluteYearly | relativeYearly
    interval: int = 1
    days_of_week: tuple[str, ...] = ()
    day_of_month: int = 0
    month: int = 0
    index: str = "first"
    first_day_of_week: str = "sunday"


class RecurrenceRange(_Frozen):
    type: str  # endDate | noEnd | numbered
    start_date: date
    end_date: date | None = None
    number_of_occurrences: int = 0
    time_zone: str = "UTC"


class Recurrence(_Frozen):
    pattern: RecurrencePattern
    range: RecurrenceRange


class Appointment(_Frozen):
    """One meeting or activity, side-neutral. Field set of rule F1."""

    subject: str = ""
    body: str = ""
    start: datetime
    end: datetime
    time_zone: str = "UTC"
    is_all_day: bool = False
    locations: tuple[Location, ...] = ()
    organizer: Person | None = None
    attendees: tuple[Attendee, ...] = ()
    sensitivity: Sensitivity = Sensitivity.NORMAL
    show_as: ShowAs = ShowAs.BUSY
    reminder_minutes: int | None = None
    categories: tuple[str, ...] = ()
    online_meeting_url: str | None = None
    attachments: tuple[Attachment, ...] = ()
    status: Status = Status.CONFIRMED
    kind: Kind = Kind.MEETING
    origin: Origin = Origin.M365
    recurrence: Recurrence | None = None
    cancelled_occurrences: tuple[datetime, ...] = ()
    # Identity and bookkeeping, not content (outside CONTENT_FIELDS, so fingerprints ignore them):
    series_ref: str | None = None  # R3: meeting key of the series an exception belongs to
    original_start: datetime | None = None  # R3: the occurrence's start in the series pattern
    crm_fields: tuple[tuple[str, str], ...] = ()  # W3/M2: configured defaults for required CRM fields

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return utc(v)

    @field_validator("original_start")
    @classmethod
    def _utc_opt(cls, v: datetime | None) -> datetime | None:
        return None if v is None else utc(v)

    @field_validator("cancelled_occurrences")
    @classmethod
    def _utc_all(cls, v: tuple[datetime, ...]) -> tuple[datetime, ...]:
        return tuple(sorted(utc(x) for x in v))

    @property
    def rooms(self) -> tuple[Attendee, ...]:
        return tuple(a for a in self.attendees if a.type is AttendeeType.RESOURCE)


# Fields whose change is a real edit of the meeting (not bookkeeping such as origin).
CONTENT_FIELDS: tuple[str, ...] = (
    "subject",
    "body",
    "start",
    "end",
    "time_zone",
    "is_all_day",
    "locations",
    "organizer",
    "attendees",
    "sensitivity",
    "show_as",
    "reminder_minutes",
    "categories",
    "online_meeting_url",
    "attachments",
    "status",
    "kind",
    "recurrence",
    "cancelled_occurrences",
)


def content_of(appt: Appointment) -> dict[str, Any]:
    """The comparable content of an appointment as plain JSON-able data."""
    data = appt.model_dump(mode="json", include=set(CONTENT_FIELDS))
    return {k: data[k] for k in CONTENT_FIELDS}


def fingerprint(appt: Appointment, fields: tuple[str, ...] = CONTENT_FIELDS) -> str:
    """Stable content hash, used for write receipts (D4) and change detection (D3)."""
    data = content_of(appt)
    canon = json.dumps({k: data[k] for k in fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


class GraphEvent(_Frozen):
    """The current state of one event copy in one mailbox, as read from Microsoft Graph."""

    mailbox: str
    event_id: str
    change_key: str = ""
    ical_uid: str = ""
    type: str = "singleInstance"  # singleInstance | occurrence | exception | seriesMaster
    series_master_id: str | None = None
    original_start: datetime | None = None
    exception_ids: tuple[str, ...] = ()  # a series master's changed occurrences (R3), when read by id
    is_organizer: bool = True
    is_draft: bool = False
    is_cancelled: bool = False
    response: Response = Response.NONE
    written_by_us: str | None = None  # value of our single-value extended property, if present
    has_attachments: bool = False  # hasAttachments: the attachments are read with their own call (F5)
    last_modified: datetime | None = None  # lastModifiedDateTime, for conflict policy newest_wins (D3)
    appointment: Appointment


class CrmRecord(_Frozen):
    """The current state of one CRM appointment, as read through the CRM contract."""

    crm_id: str
    version: str
    appointment: Appointment
    mailbox_hint: str | None = None  # the organizer's primary mailbox, when the CRM knows it
    created_by: str | None = None  # email of the CRM user who created the record, when the CRM says
    updated_by: str | None = None  # email of the CRM user who made its last change, when the CRM says
    external_ref: str | None = None  # our meeting key, when the CRM stores it
    updated_at: datetime | None = None


# Fields of Appointment that a Graph create or PATCH can carry. The rest are read-only in Graph
# (organizer, onlineMeeting link, attachments: own endpoint; cancelled occurrences: delete the instance)
# or CRM-only (status, kind).
GRAPH_WRITABLE_FIELDS: tuple[str, ...] = (
    "subject",
    "body",
    "start",
    "end",
    "time_zone",
    "is_all_day",
    "locations",
    "attendees",
    "sensitivity",
    "show_as",
    "reminder_minutes",
    "categories",
    "recurrence",
)
