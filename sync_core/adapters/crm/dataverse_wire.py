"""The Dataverse Web API's wire format for appointments: rows and activity parties to and from our neutral
`Appointment`, the statecode/statuscode table, and the one translation of a failure into sync_core.errors.
No I/O.

What Dataverse holds natively (the appointment entity reference, MicrosoftDocs/powerapps-docs
reference/entities/appointment.md): subject (200), description, scheduledstart/scheduledend (UTC on the
wire), isalldayevent, location (200, text), ismapiprivate, statecode/statuscode, and the activity parties
(organizer 7: system users only; required 5 and optional 6: users, contacts or unresolved addresses).
Everything else of the neutral model (the event's zone, reminder, categories, show-as beyond the status
code, attendee names, types and responses, room mailboxes, origin...) is kept in one column of ours,
`msync_syncdata`, like the extended property we keep on Graph events: CRM users do not see it, and the
native columns win whenever they disagree with it. A meeting key lives in `msync_externalref` (I5).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from sync_core.adapters.crm.transport import transport_error
from sync_core.domain.model import (
    Appointment,
    Attendee,
    AttendeeType,
    CrmRecord,
    Location,
    Origin,
    Person,
    Response,
    Sensitivity,
    ShowAs,
    Status,
)
from sync_core.errors import (
    ConcurrencyError,
    ConflictError,
    NotFoundError,
    PermanentError,
    PermissionError_,
    SyncError,
    ThrottledError,
    TransientError,
    UnprocessableError,
    retry_after_seconds,
    status_class,
)
from sync_core.ports.crm import CrmCapabilities
from sync_core.settings import DEFAULT_DATAVERSE_STATUS_MAP

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

APPOINTMENT_COLUMNS = (
    "activityid",
    "subject",
    "description",
    "scheduledstart",
    "scheduledend",
    "isalldayevent",
    "location",
    "ismapiprivate",
    "statecode",
    "statuscode",
    "createdon",
    "modifiedon",
    "_createdby_value",
    "_modifiedby_value",
    EXTERNAL_REF,
    SYNC_DATA,
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

# -- status: (statecode, statuscode) <-> our Status ------------------------------------------------------
# statecode 0 Open (statuscode 1 Free, 2 Tentative), 1 Completed (3), 2 Canceled (4), 3 Scheduled (5 Busy,
# 6 Out of Office). A new row is Open/Free (statecode is not valid for create); closed rows are read-only.
OPEN, COMPLETED, CANCELED, SCHEDULED = 0, 1, 2, 3
FREE, TENTATIVE, DONE, CANCELLED_CODE, BUSY, OUT_OF_OFFICE = 1, 2, 3, 4, 5, 6
CLOSED_STATES = frozenset({COMPLETED, CANCELED})
# What a pair no status lists means: the statecode's own sense (a tenant's statuscode not in the map)
BY_STATE = {
    OPEN: Status.TENTATIVE,
    COMPLETED: Status.CONFIRMED,
    CANCELED: Status.CANCELLED,
    SCHEDULED: Status.CONFIRMED,
}


@dataclass(frozen=True)
class StatusMap:
    """DATAVERSE_STATUS_MAP: each of our statuses and its (statecode, statuscode) pairs, validated at start
    (sync_core.settings). The first pair is written (an out-of-office appointment: the status's pair with
    statuscode 6, if it lists one); every pair is read. A pair several statuses list (prospect and hold are
    both Open/Free by default) is told apart by the status we kept in msync_syncdata, or else by its state;
    a pair none lists is read by its state (Open tentative, Scheduled and Completed confirmed, Canceled
    cancelled), or as the kept status when that one lists a pair of the same state."""

    pairs: tuple[tuple[Status, tuple[tuple[int, int], ...]], ...]

    @classmethod
    def of(cls, statuses: Mapping[str, Iterable[tuple[int, int]]]) -> StatusMap:
        merged = {**DEFAULT_DATAVERSE_STATUS_MAP, **statuses}
        return cls(tuple((s, tuple((int(p[0]), int(p[1])) for p in merged[s.value])) for s in Status))

    def _of(self, status: Status) -> tuple[tuple[int, int], ...]:
        return next(p for s, p in self.pairs if s is status)

    @property
    def cancelled(self) -> tuple[int, int]:
        """The pair a cancel writes (its statecode is always 2, Canceled)."""
        return self._of(Status.CANCELLED)[0]

    def state_of(self, status: Status, show_as: ShowAs) -> tuple[int, int]:
        """The (statecode, statuscode) `status` is written as."""
        pairs = self._of(status)
        if show_as is ShowAs.OOF:
            return next((p for p in pairs if p[1] == OUT_OF_OFFICE), pairs[0])
        return pairs[0]

    def status_of(self, statecode: int, statuscode: int, kept: Status | None) -> Status:
        """Our status from the native pair; `kept` (what we wrote) decides only what the pair leaves open."""
        listing = [s for s, pairs in self.pairs if (statecode, statuscode) in pairs]
        if len(listing) == 1:
            return listing[0]
        if kept is not None and kept in listing:
            return kept
        if not listing and kept is not None and any(p[0] == statecode for p in self._of(kept)):
            return kept
        return BY_STATE.get(statecode, Status.CONFIRMED)


DEFAULT_STATUSES = StatusMap.of({})


def state_of(status: Status, show_as: ShowAs, statuses: StatusMap = DEFAULT_STATUSES) -> tuple[int, int]:
    """The (statecode, statuscode) a neutral status is written as (`statuses`: the tenant's map)."""
    return statuses.state_of(status, show_as)


def status_of(
    statecode: int, statuscode: int, kept: Status | None, statuses: StatusMap = DEFAULT_STATUSES
) -> Status:
    """Our status from the native pair; `kept` (what we wrote) refines only what the pair leaves open."""
    return statuses.status_of(statecode, statuscode, kept)


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


def _sidecar(appt: Appointment) -> dict[str, Any]:
    dumped = appt.model_dump(mode="json")
    people = {
        a.email: {"name": a.name, "type": a.type.value, "response": a.response.value} for a in appt.attendees
    }
    return {
        "v": 1,
        "time_zone": appt.time_zone,
        "reminder_minutes": appt.reminder_minutes,
        "categories": list(appt.categories),
        "online_meeting_url": appt.online_meeting_url,
        "attachments": dumped["attachments"],
        "sensitivity": appt.sensitivity.value,
        "show_as": appt.show_as.value,
        "status": appt.status.value,
        "kind": appt.kind.value,
        "origin": appt.origin.value,
        "organizer": dumped["organizer"],
        "people": people,
        "order": [a.email for a in appt.attendees],
        "locations": dumped["locations"],
        "location_text": location_text(appt),
        "cancelled_occurrences": dumped["cancelled_occurrences"],
        "recurrence": dumped["recurrence"],
        "series_ref": appt.series_ref,
        "original_start": dumped["original_start"],
        "crm_fields": dumped["crm_fields"],
    }


def sync_data(appt: Appointment) -> str:
    return json.dumps(_sidecar(appt), sort_keys=True, separators=(",", ":"))


def _load_sidecar(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}  # a CRM user or an import broke it: the native columns alone then
    return data if isinstance(data, dict) and data.get("v") == 1 else {}


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
    kept = _load_sidecar(row.get(SYNC_DATA))
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
    sensitivity = Sensitivity(kept.get("sensitivity", Sensitivity.NORMAL.value))
    if bool(row.get("ismapiprivate")):
        sensitivity = Sensitivity.PRIVATE
    elif sensitivity is Sensitivity.PRIVATE:
        sensitivity = Sensitivity.NORMAL
    appointment = Appointment.model_validate(
        {
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
            "reminder_minutes": kept.get("reminder_minutes"),
            "categories": tuple(kept.get("categories") or ()),
            "online_meeting_url": kept.get("online_meeting_url"),
            "attachments": tuple(kept.get("attachments") or ()),
            "status": statuses.status_of(statecode, statuscode, kept_status),
            "kind": kept.get("kind", "meeting"),
            "origin": kept.get("origin", Origin.CRM.value),
            "cancelled_occurrences": tuple(kept.get("cancelled_occurrences") or ()),
            "series_ref": kept.get("series_ref"),
            "original_start": kept.get("original_start"),
            "crm_fields": tuple(tuple(x) for x in kept.get("crm_fields") or ()),
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


# -- errors -------------------------------------------------------------------------------------------------

EXPIRED_VERSION_STAMP = "0x80044352"  # "Version stamp associated with the client has expired": a delta token
# Hex codes of the Web API's error body that decide the class whatever the status (api-limits.md;
# web-service-error-codes). The status decides everything else (compose-http-requests-handle-errors.md).
CODE_CLASSES: dict[str, type[SyncError]] = {
    "0x80072322": ThrottledError,  # number of requests exceeded the limit of 6000 over 300 seconds
    "0x80072321": ThrottledError,  # combined execution time exceeded 1,200,000 ms over 300 seconds
    "0x80072326": ThrottledError,  # number of concurrent requests exceeded the limit of 52
    EXPIRED_VERSION_STAMP: NotFoundError,  # the change-tracking token expired: read everything again
}
# Every status the Web API documents (compose-http-requests-handle-errors.md, "Identify status codes") and
# the class it becomes; the test enumerates them. 405 (CannotDeleteDueToAssociation, InvalidOperation,
# NotSupported) is the CRM refusing the operation in its state: a ConflictError, never retried.
DOCUMENTED_STATUSES: dict[int, type[SyncError]] = {
    400: UnprocessableError,
    401: PermissionError_,
    403: PermissionError_,
    404: NotFoundError,
    405: ConflictError,
    412: ConcurrencyError,
    413: UnprocessableError,
    429: ThrottledError,
    501: PermanentError,
    503: TransientError,  # without Retry-After; with it, ThrottledError
}


def error_body(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of the Web API error envelope `{"error": {"code", "message"}}`, or ("", text)."""
    try:
        data = response.json()
    except ValueError:
        return "", response.text[:200]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        return str(err.get("code") or ""), str(err.get("message") or "")
    return "", response.text[:200]


def translate_error(
    outcome: httpx.Response | httpx.HTTPError, *, item_id: str | None, now: float | None = None
) -> SyncError:
    """The one map from an httpx exception or a non-2xx Web API answer to the sync's error tree."""
    ctx: dict[str, str | None] = {"side": SIDE, "item_id": item_id}
    if isinstance(outcome, httpx.HTTPStatusError):
        outcome = outcome.response
    if isinstance(outcome, httpx.HTTPError):
        return transport_error(outcome, "Dataverse", side=SIDE, item_id=item_id)
    status = outcome.status_code
    code, detail = error_body(outcome)
    message = f"Dataverse answered {status} to {outcome.request.method} {outcome.request.url.path}"
    if code or detail:
        message = f"{message}: {code + ': ' if code else ''}{detail}"
    wait = retry_after_seconds(outcome.headers.get("Retry-After"), time.time() if now is None else now)
    target = CODE_CLASSES.get(code.lower()) or DOCUMENTED_STATUSES.get(status)
    if target is None or (target is TransientError and wait is not None):
        target = status_class(status, has_retry_after=wait is not None)
    if target is ThrottledError:
        return ThrottledError(message, retry_after=DEFAULT_RETRY_AFTER_S if wait is None else wait, **ctx)
    return target(message, **ctx)
