"""The record we read from Salesforce: an `Event` row, its `EventRelation` rows and the emails of the ids they
name, with what our sidecar kept, as a neutral CrmRecord. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sync_core.adapters.crm import sidecar
from sync_core.adapters.crm.salesforce_recurrence import read_series
from sync_core.adapters.crm.salesforce_wire import (
    EXTERNAL_REF,
    RESPONSE_IN,
    SHOW_AS_IN,
    SIDE,
    SYNC_DATA,
    FieldProfile,
    cancelled_by_us,
    parse_time,
)
from sync_core.domain.model import (
    Appointment,
    Attendee,
    AttendeeType,
    CrmRecord,
    Location,
    Person,
    Recurrence,
    Response,
    ShowAs,
    Status,
)
from sync_core.errors import UnprocessableError


def record_from_row(
    row: Mapping[str, Any],
    relation_rows: Iterable[Mapping[str, Any]],
    emails: Mapping[str, str | None],
    *,
    me: str | None,
    cancelled: tuple[datetime, ...] | None = None,
    profile: FieldProfile | None = None,
) -> CrmRecord:
    """A CrmRecord from an Event row, its EventRelation rows and the emails of the ids they name; for a
    series, `cancelled` is what its occurrence rows show (salesforce_series.cancelled). A row we deleted to
    cancel it reads as cancelled."""
    profile = profile or FieldProfile()
    crm_id = str(row["Id"])
    kept = sidecar.load(row.get(SYNC_DATA))
    start, end = parse_time(row.get("StartDateTime")), parse_time(row.get("EndDateTime"))
    if start is None or end is None:
        raise UnprocessableError(
            "Salesforce event has no StartDateTime/EndDateTime", side=SIDE, item_id=crm_id
        )
    people: dict[str, Any] = kept.get("people") or {}
    order = list(kept.get("order") or [])
    by_email: dict[str, Attendee] = {}
    for rel in relation_rows:
        if rel.get("IsInvitee") is False:
            continue  # a Who/What relation (Shared Activities), not an invitee
        email = emails.get(str(rel.get("RelationId") or ""))
        if not email:
            continue
        known = people.get(email) or {}
        response = RESPONSE_IN.get(str(rel.get("Status") or ""))
        if response is None:  # New: no answer in Salesforce; what we kept refines it (notResponded, none)
            kept_response = known.get("response", Response.NONE.value)
            response = Response(kept_response) if kept_response not in RESPONSE_IN.values() else Response.NONE
        by_email[email] = Attendee(
            email=email,
            name=known.get("name", ""),
            type=AttendeeType(known.get("type", AttendeeType.REQUIRED.value)),
            response=response,
        )
    attendees: list[Attendee] = []
    for email in order:  # kept attendees Salesforce cannot point at (unresolved, rooms) stay
        if email in by_email:
            attendees.append(by_email.pop(email))
        elif email in people and _unrelatable(people[email]):
            p = people[email]
            attendees.append(
                Attendee(email=email, name=p.get("name", ""), type=p["type"], response=p["response"])
            )
    attendees += sorted(by_email.values(), key=lambda a: a.email)  # invited in Salesforce
    owner_email = emails.get(str(row.get("OwnerId") or ""))
    organizer: Person | None = None
    kept_org = kept.get("organizer")
    if kept_org and (owner_email is None or owner_email == kept_org.get("email") or row.get("OwnerId") == me):
        organizer = Person.model_validate(kept_org)
    elif owner_email:
        organizer = Person(email=owner_email)
    text = str(row.get("Location") or "")
    if kept and text == kept.get("location_text"):
        locations = tuple(Location.model_validate(x) for x in kept.get("locations") or [])
    else:
        locations = (Location(display_name=text),) if text else ()
    show_as = SHOW_AS_IN.get(str(row.get("ShowAs") or "Busy"), ShowAs.BUSY)
    kept_show = ShowAs(kept.get("show_as", show_as.value))
    if show_as is ShowAs.BUSY and kept_show not in (ShowAs.FREE, ShowAs.OOF):
        show_as = kept_show  # tentative, workingElsewhere, unknown: written as Busy, kept by us
    sensitivity = sidecar.sensitivity(kept, bool(row.get("IsPrivate")))
    if cancelled_by_us(row):
        status = Status.CANCELLED
    else:
        status = profile.status_of(row.get(profile.status_field), item_id=crm_id)
    recurrence: Recurrence | None = None
    pattern_start = parse_time(row.get("Recurrence2PatternStartDate"))
    if row.get("IsRecurrence2") and str(row.get("GroupEventType")) == "3" and pattern_start is not None:
        kept_rec = kept.get("recurrence")
        recurrence = read_series(
            str(row.get("Recurrence2PatternText") or ""),
            pattern_start,
            str(row.get("Recurrence2PatternTimeZone") or ""),
            Recurrence.model_validate(kept_rec) if kept_rec else None,
            item_id=crm_id,
        )
    appointment = Appointment.model_validate(
        sidecar.kept_fields(kept)
        | {
            "subject": row.get("Subject") or "",
            "body": row.get("Description") or "",
            "start": start,
            "end": end,
            "time_zone": kept.get("time_zone", recurrence.range.time_zone if recurrence else "UTC"),
            "is_all_day": bool(row.get("IsAllDayEvent")),
            "locations": locations,
            "organizer": organizer,
            "attendees": tuple(attendees),
            "sensitivity": sensitivity,
            "show_as": show_as,
            "status": status,
            "recurrence": recurrence,
            "cancelled_occurrences": cancelled if cancelled is not None and recurrence is not None else (),
        }
    )
    created_by, updated_by = (str(row.get(k) or "") for k in ("CreatedById", "LastModifiedById"))
    return CrmRecord(
        crm_id=crm_id,
        version=str(row.get("SystemModstamp") or ""),
        appointment=appointment,
        mailbox_hint=owner_email if row.get("OwnerId") != me else None,
        created_by=None if created_by == me else emails.get(created_by),
        updated_by=None if updated_by == me else emails.get(updated_by),
        external_ref=row.get(EXTERNAL_REF) or None,
        updated_at=parse_time(row.get("SystemModstamp")),
    )


def _unrelatable(person: Mapping[str, Any]) -> bool:
    """Kept attendees that were never EventRelation rows: rooms; the rest re-resolve as relations."""
    return person.get("type") == AttendeeType.RESOURCE.value or bool(person.get("unresolved"))
