"""The Dataverse Web API's wire format for appointments: rows and activity parties to and from our neutral
`Appointment`, what Dataverse has no column for kept in `msync_syncdata` (docs/connectors/dataverse.md, "What
maps to what"; state: dataverse_status; failures: dataverse_errors). No I/O."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sync_core.adapters.crm import sidecar
from sync_core.adapters.crm.dataverse_status import (
    DEFAULT_STATUSES,
    FREE,
    OUT_OF_OFFICE,
    SCHEDULED,
    StatusMap,
)
from sync_core.domain.model import (
    Appointment,
    Attendee,
    AttendeeType,
    CrmRecord,
    Location,
    Person,
    Response,
    Sensitivity,
    ShowAs,
    Status,
)
from sync_core.errors import ConcurrencyError, UnprocessableError
from sync_core.ports.crm import CrmCapabilities

SIDE = "crm"
API_PATH = "/api/data/v9.2/"
DEFAULT_RETRY_AFTER_S = 5.0
EXTERNAL_REF = "msync_externalref"
SYNC_DATA = "msync_syncdata"
SPACE_MODE = "msync_managementmode"  # on equipment: outlook_auto_accept | outlook_moderated | crm_managed
SUBJECT_MAX = 200  # appointment.subject MaxLength
LOCATION_MAX = 200  # appointment.location MaxLength
EXTERNAL_REF_MAX = 400
# A deterministic activityid per idempotency key (create-once, I3): uuid5 in a namespace of our own.
ID_NAMESPACE = uuid.UUID("6f1f7a52-3c1e-5b7e-9a55-2d1c0e8f4b11")

ORGANIZER, REQUIRED, OPTIONAL = 7, 5, 6  # activityparty.participationtypemask

# The state and audit columns an appointment row and a series row both carry, with our two columns
STATE_COLUMNS = (
    "statecode",
    "statuscode",
    "createdon",
    "modifiedon",
    "_createdby_value",
    "_modifiedby_value",
    EXTERNAL_REF,
    SYNC_DATA,
)
APPOINTMENT_COLUMNS = (
    "activityid",
    "subject",
    "description",
    "scheduledstart",
    "scheduledend",
    "isalldayevent",
    "location",
    "ismapiprivate",
    *STATE_COLUMNS,
    "instancetypecode",  # 0 not recurring, 2 instance of a series, 3 exception (appointment.md)
    "seriesid",
    "originalstartdate",
)
PARTY_COLUMNS = (
    "activitypartyid",
    "_activityid_value",
    "_partyid_value",
    "participationtypemask",
    "addressused",
)
LOOKUP_LOGICAL_NAME = "Microsoft.Dynamics.CRM.lookuplogicalname"
FORMATTED = "OData.Community.Display.V1.FormattedValue"

CAPABILITIES = CrmCapabilities(
    connector="dataverse",
    recurrence="native",  # a recurringappointmentmaster (dataverse_series, dataverse_recurrence)
    exceptions="native",  # an edited occurrence is its instance row; a cancelled one, a cancelled instance
    attendee_responses="kept",
    rooms="text",
    change_feed="delta_link",
    deletes_in_feed=True,
    cursor_ttl_days=7,  # Organization.ExpireChangeTrackingInDays, by default
    create_once="client_id",
    field_limits=(("subject", SUBJECT_MAX), ("locations", LOCATION_MAX)),
)

# -- ids and literals ---------------------------------------------------------------------------------------


def activity_id(idempotency_key: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, idempotency_key))


def as_guid(value: str) -> str | None:
    """The canonical lower-case GUID, or None when `value` is not one (Dataverse keys are GUIDs)."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
    return str(parsed) if len(value.strip("{}")) == 36 else None


def odata_string(value: str) -> str:
    """An OData string literal: single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def wire_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


# -- msync_syncdata: what Dataverse has no column for --------------------------------------------------


def sync_data(appt: Appointment) -> str:
    data = sidecar.written(appt, location_text(appt)) | {"status": appt.status.value}
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def location_text(appt: Appointment) -> str:
    return "; ".join(loc.display_name for loc in appt.locations if loc.display_name)[:LOCATION_MAX]


# -- the row we write ---------------------------------------------------------------------------------------


def refuse_unholdable(appt: Appointment, *, item_id: str | None, series: bool = False) -> None:
    """UnprocessableError naming what Dataverse (as this connector speaks it) cannot hold. An appointment row
    holds no pattern: a series is a recurringappointmentmaster (`series=True`), never flattened."""
    if appt.recurrence is not None and not series:
        raise UnprocessableError(
            "Dataverse connector: a single appointment does not become a series in place (AddRecurrence is "
            "not implemented); the series is not flattened to a single appointment",
            side=SIDE,
            item_id=item_id,
        )
    if len(appt.subject) > SUBJECT_MAX:
        raise UnprocessableError(
            f"Dataverse appointment.subject holds at most {SUBJECT_MAX} characters, got {len(appt.subject)}",
            side=SIDE,
            item_id=item_id,
        )


def refuse_stale(current: CrmRecord, expected_version: str | None, *, item_id: str) -> None:
    """ConcurrencyError, in the Web API's words, when the record is no longer at `expected_version` (None:
    any version)."""
    if expected_version is not None and current.version != expected_version:
        raise ConcurrencyError(
            "The version of the existing record doesn't match the RowVersion property provided.",
            side=SIDE,
            item_id=item_id,
        )


def columns(appt: Appointment, external_ref: str | None) -> dict[str, Any]:
    """Every native column and our two columns for `appt` (not the state, not the parties)."""
    row: dict[str, Any] = {
        "subject": appt.subject,
        "description": appt.body,
        "scheduledstart": wire_time(appt.start),
        "scheduledend": wire_time(appt.end),
        "isalldayevent": appt.is_all_day,
        "location": location_text(appt),
        "ismapiprivate": appt.sensitivity is Sensitivity.PRIVATE,
        SYNC_DATA: sync_data(appt),
    }
    if external_ref is not None:
        row[EXTERNAL_REF] = external_ref
    return row


def same_column(current: Any, wanted: Any, column: str) -> bool:
    """Whether a column read equals the value we would write (W4: only differing columns are sent)."""
    if column == SYNC_DATA:
        try:
            return bool(current) and json.loads(current) == json.loads(wanted)
        except (TypeError, ValueError):
            return False
    if isinstance(wanted, str):
        return (current or "") == wanted
    if isinstance(wanted, bool):
        return bool(current) == wanted
    return bool(current == wanted)


class Directory:
    """Who an email is in Dataverse: system users (by internalemailaddress) and contacts (emailaddress1)."""

    def __init__(self, users: Mapping[str, str], contacts: Mapping[str, str]) -> None:
        self.users = dict(users)  # lower-case email -> systemuserid
        self.contacts = dict(contacts)  # lower-case email -> contactid


def parties(appt: Appointment, directory: Directory) -> list[dict[str, Any]]:
    """The activity parties of `appt`: the organizer when a system user, each attendee as user, contact or
    unresolved address (required 5, optional 6; resources as required: the room is text in `location`)."""
    out: list[dict[str, Any]] = []
    if appt.organizer is not None and appt.organizer.email in directory.users:
        user = directory.users[appt.organizer.email]
        out.append(
            {"partyid_systemuser@odata.bind": f"/systemusers({user})", "participationtypemask": ORGANIZER}
        )
    for a in appt.attendees:
        mask = OPTIONAL if a.type is AttendeeType.OPTIONAL else REQUIRED
        party: dict[str, Any] = {"participationtypemask": mask}
        if a.email in directory.users:
            party["partyid_systemuser@odata.bind"] = f"/systemusers({directory.users[a.email]})"
        elif a.email in directory.contacts:
            party["partyid_contact@odata.bind"] = f"/contacts({directory.contacts[a.email]})"
        else:
            party["addressused"] = a.email
        out.append(party)
    return out


def party_key(party: Mapping[str, Any]) -> tuple[int, str]:
    """A comparable form of a party, written or read: (mask, target or address)."""
    mask = int(party.get("participationtypemask") or 0)
    for key, value in party.items():
        if key.endswith("@odata.bind"):
            return mask, str(value).rsplit("(", 1)[-1].rstrip(")").lower()
    if party.get("_partyid_value"):
        return mask, str(party["_partyid_value"]).lower()
    return mask, str(party.get("addressused") or "").lower()


# -- the record we read --------------------------------------------------------------------------------


def record_from_row(
    row: Mapping[str, Any],
    party_rows: Iterable[Mapping[str, Any]],
    *,
    created_by: str | None,
    updated_by: str | None,
    statuses: StatusMap = DEFAULT_STATUSES,
) -> CrmRecord:
    """A CrmRecord from an appointment row and its activity parties; native columns win over our sidecar."""
    crm_id = str(row["activityid"])
    kept = sidecar.load(row.get(SYNC_DATA))
    start, end = parse_time(row.get("scheduledstart")), parse_time(row.get("scheduledend"))
    if start is None or end is None:
        raise UnprocessableError(
            "Dataverse appointment has no scheduledstart/scheduledend", side=SIDE, item_id=crm_id
        )
    people: dict[str, Any] = kept.get("people") or {}
    organizer: Person | None = None
    organizer_is_user = False
    attendees: list[Attendee] = []
    for p in sorted(party_rows, key=lambda p: str(p.get("activitypartyid") or "")):
        mask = int(p.get("participationtypemask") or 0)
        email = str(p.get("addressused") or "").strip().lower()
        if not email:
            continue  # a party without an address (a queue, an account): nothing a mailbox can invite
        named = str(p.get(f"_partyid_value@{FORMATTED}") or "")
        known = people.get(email) or {}
        if mask == ORGANIZER:
            kept_org = kept.get("organizer") or {}
            name = kept_org.get("name", named) if kept_org.get("email") == email else named
            organizer, organizer_is_user = Person(email=email, name=name), True
        elif mask in (REQUIRED, OPTIONAL):
            native = AttendeeType.OPTIONAL if mask == OPTIONAL else AttendeeType.REQUIRED
            kept_type = known.get("type")
            # a room we wrote as a required party stays a resource; a type a CRM user changed wins
            if kept_type == AttendeeType.RESOURCE.value and native is AttendeeType.REQUIRED:
                native = AttendeeType.RESOURCE
            attendees.append(
                Attendee(
                    email=email,
                    name=known.get("name", named),
                    type=native,
                    response=Response(known.get("response", Response.NONE.value)),
                )
            )
    if organizer is None and kept.get("organizer"):
        organizer = Person.model_validate(kept["organizer"])  # not a system user: kept by us only
    order = {e: i for i, e in enumerate(kept.get("order") or [])}
    attendees.sort(key=lambda a: order.get(a.email, len(order)))
    text = str(row.get("location") or "")
    if kept and text == kept.get("location_text"):
        locations = tuple(Location.model_validate(x) for x in kept.get("locations") or [])
    else:
        locations = (Location(display_name=text),) if text else ()
    show_as = ShowAs(kept.get("show_as", ShowAs.BUSY.value))
    statecode, statuscode = int(row.get("statecode") or 0), int(row.get("statuscode") or FREE)
    if statecode == SCHEDULED:
        if statuscode == OUT_OF_OFFICE:
            show_as = ShowAs.OOF
        elif show_as is ShowAs.OOF:
            show_as = ShowAs.BUSY
    kept_status = Status(kept["status"]) if kept.get("status") else None
    sensitivity = sidecar.sensitivity(kept, bool(row.get("ismapiprivate")))
    appointment = Appointment.model_validate(
        sidecar.kept_fields(kept)
        | {
            "subject": row.get("subject") or "",
            "body": row.get("description") or "",
            "start": start,
            "end": end,
            "time_zone": kept.get("time_zone", "UTC"),
            "is_all_day": bool(row.get("isalldayevent")),
            "locations": locations,
            "organizer": organizer,
            "attendees": tuple(attendees),
            "sensitivity": sensitivity,
            "show_as": show_as,
            "status": statuses.status_of(statecode, statuscode, kept_status),
            "cancelled_occurrences": tuple(kept.get("cancelled_occurrences") or ()),
        }
    )
    return CrmRecord(
        crm_id=crm_id,
        version=str(row.get("@odata.etag") or ""),
        appointment=appointment,
        # the organizer party is a system user: their mailbox when the sync maps users to mailboxes (S1)
        mailbox_hint=organizer.email if organizer is not None and organizer_is_user else None,
        created_by=created_by,
        updated_by=updated_by,
        external_ref=row.get(EXTERNAL_REF) or None,
        updated_at=parse_time(row.get("modifiedon")),
    )
