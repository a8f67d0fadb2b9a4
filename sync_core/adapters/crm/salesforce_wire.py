"""The Salesforce REST API's wire format for events: our neutral `Appointment` to `Event` and `EventRelation`
rows, the field profile, SOQL literals, the `Sforce-Limit-Info` header (docs/connectors/salesforce.md, "What
maps to what"; rows read back: salesforce_wire_read; failures: salesforce_errors). No I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync_core.adapters.crm import sidecar
from sync_core.adapters.crm.salesforce_recurrence import series_fields
from sync_core.domain.model import (
    Appointment,
    AttendeeType,
    Response,
    Sensitivity,
    ShowAs,
    Status,
)
from sync_core.errors import UnprocessableError
from sync_core.ports.crm import CrmCapabilities

SIDE = "crm"
EXTERNAL_REF = "msync_ExternalRef__c"
CREATE_KEY = "msync_CreateKey__c"  # the create-once key when no External ID field is configured
STATUS = "msync_Status__c"  # the default status field
CANCELLED_MARK = "cancelled_by_sync"  # in the sidecar of an Event we deleted to cancel it
SYNC_DATA = "msync_SyncData__c"
SUBJECT_MAX = 255  # Event.Subject
LOCATION_MAX = 255  # Event.Location
DESCRIPTION_MAX = 32_000  # Event.Description
SYNC_DATA_MAX = 131_072  # a Long Text Area's largest length
INVITEES_MAX = 1_000  # EventRelation invitees per event
INVITEES_RECURRING_MAX = 100  # ... and per recurring event (EventAttendee in the Object Reference)
DEFAULT_RETRY_AFTER_S = (
    300.0  # REQUEST_LIMIT_EXCEEDED carries no Retry-After: the 24-h allocation refills slowly
)
USER_PREFIX, CONTACT_PREFIX, LEAD_PREFIX = "005", "003", "00Q"

EVENT_FIELDS = (
    "Id",
    "Subject",
    "Description",
    "StartDateTime",
    "EndDateTime",
    "IsAllDayEvent",
    "Location",
    "IsPrivate",
    "ShowAs",
    "OwnerId",
    "CreatedById",
    "LastModifiedById",
    "LastModifiedDate",
    "SystemModstamp",
    "IsDeleted",
    "IsRecurrence2",  # an event series (salesforce_recurrence, salesforce_series)
    "IsRecurrence2Exception",
    "Recurrence2PatternText",
    "Recurrence2PatternStartDate",
    "Recurrence2PatternTimeZone",
    "GroupEventType",
    "ActivityRecurrence2Id",
    EXTERNAL_REF,
    SYNC_DATA,
)  # and the profile's status field
RELATION_FIELDS = ("Id", "EventId", "RelationId", "Status", "Response", "IsInvitee")

CAPABILITIES = CrmCapabilities(
    connector="salesforce",
    recurrence="native",  # Recurrence2 RRULE (salesforce_recurrence); what it cannot say is refused, with why
    exceptions="native",  # an occurrence row made an exception; a deleted occurrence row is a cancelled one
    attendee_responses="native",  # EventRelation.Status for users, contacts and leads; others kept by us
    rooms="text",  # Location text; room mailboxes kept in msync_SyncData__c; spaces from msync_Space__c
    change_feed="cursor",  # SystemModstamp keyset over /queryAll (deleted rows carry IsDeleted = true)
    deletes_in_feed=True,
    cursor_ttl_days=15,  # deleted rows stay visible for 15 days (Recycle Bin, getDeleted's window)
    create_once="idempotency_key",
    field_limits=(("subject", SUBJECT_MAX), ("locations", LOCATION_MAX), ("body", DESCRIPTION_MAX)),
)

# -- SOQL and times ---------------------------------------------------------------------------------------

_SOQL_ESCAPES = {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b"}
_SOQL_ESCAPES["\f"] = "\\f"
_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


def soql_string(value: str) -> str:
    """A SOQL string literal: the escape sequences of the SOQL reference (Quoted String Escape Sequences)."""
    return "'" + "".join(_SOQL_ESCAPES.get(ch, ch) for ch in value) + "'"


def is_id(value: str) -> bool:
    """A Salesforce record id: 15 or 18 letters and digits."""
    return bool(_ID.fullmatch(value or ""))


def wire_time(value: datetime) -> str:
    """A dateTime as Salesforce writes it: `2026-03-02T09:30:00.000+0000`."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}+0000"


def soql_time(value: datetime) -> str:
    """A dateTime literal in SOQL (unquoted): `2026-03-02T09:30:00.000Z`."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text).astimezone(UTC)


# -- limits -----------------------------------------------------------------------------------------------

_API_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")


def api_usage(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """(used, allocation) of the org's rolling 24-hour API allocation, from `Sforce-Limit-Info`."""
    match = _API_USAGE.search(headers.get("Sforce-Limit-Info") or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


# -- the field profile --------------------------------------------------------------------------------------


DEFAULT_STATUSES: tuple[tuple[Status, tuple[str, ...]], ...] = tuple((s, (s.value,)) for s in Status)


@dataclass(frozen=True)
class FieldProfile:
    """Which fields carry what in an org. `standard`: our package's fields, contacts by Email. `practifi`:
    Practifi's org, contacts matched on Email and the configured alternate email fields (Practifi's own sync
    matches on Email, Alternate Email and other email fields). `status_field` and `statuses`: the picklist
    holding our status and which of its values mean each status (the first is written); `cancel_by_delete`:
    a cancel deletes the Event instead of writing the cancelled value."""

    name: str = "standard"
    contact_email_fields: tuple[str, ...] = ("Email",)
    create_key_field: str = CREATE_KEY
    external_id: bool = False  # the create key field is an External ID field: create by upsert
    status_field: str = STATUS
    statuses: tuple[tuple[Status, tuple[str, ...]], ...] = DEFAULT_STATUSES
    cancel_by_delete: bool = False

    @classmethod
    def of(
        cls,
        name: str,
        email_fields: Iterable[str],
        external_id_field: str | None,
        *,
        status_field: str = STATUS,
        statuses: Mapping[str, str | Iterable[str]] | None = None,
        cancel_by_delete: bool = False,
    ) -> FieldProfile:
        fields = ("Email", *(f for f in email_fields if f != "Email"))
        return cls(
            name=name,
            contact_email_fields=fields,
            create_key_field=external_id_field or CREATE_KEY,
            external_id=bool(external_id_field),
            status_field=status_field,
            statuses=DEFAULT_STATUSES
            if statuses is None
            else tuple((Status(k), (v,) if isinstance(v, str) else tuple(v)) for k, v in statuses.items()),
            cancel_by_delete=cancel_by_delete,
        )

    def status_value(self, status: Status, *, item_id: str | None) -> str:
        """The picklist value `status` is written as; refused (with the reason) when the map has none."""
        for mapped, values in self.statuses:
            if mapped is status and values:
                return values[0]
        raise UnprocessableError(
            f"Salesforce connector: status {status.value} has no value of {self.status_field} in "
            "SALESFORCE_STATUS_MAP",
            side=SIDE,
            item_id=item_id,
        )

    def status_of(self, value: Any, *, item_id: str | None) -> Status:
        """Our status from the field's value: empty is confirmed (an event a Salesforce user made); a value
        the map does not name is refused with the reason, never guessed."""
        if value is None or value == "":
            return Status.CONFIRMED
        for mapped, values in self.statuses:
            if value in values:
                return mapped
        raise UnprocessableError(
            f"Salesforce event's {self.status_field} is {str(value)[:80]!r}, which SALESFORCE_STATUS_MAP "
            "gives to none of our statuses",
            side=SIDE,
            item_id=item_id,
        )


def cancelled_by_us(row: Mapping[str, Any]) -> bool:
    """A row we deleted to cancel it (its sidecar carries our mark), as against one a user deleted."""
    return bool(row.get("IsDeleted")) and sidecar.load(row.get(SYNC_DATA)).get(CANCELLED_MARK) is True


def mark_cancelled(raw: Any) -> str:
    """The sidecar with our cancel mark, written just before the Event is deleted (an Event a Salesforce
    user made has none yet: the mark alone)."""
    data = sidecar.load(raw) or {"v": 1}
    return json.dumps(data | {CANCELLED_MARK: True}, sort_keys=True, separators=(",", ":"))


# -- status, show-as, responses ---------------------------------------------------------------------------

SHOW_AS_OUT = {ShowAs.FREE: "Free", ShowAs.OOF: "OutOfOffice"}  # everything else is Busy
SHOW_AS_IN = {"Free": ShowAs.FREE, "OutOfOffice": ShowAs.OOF, "Busy": ShowAs.BUSY}
RESPONSE_OUT = {
    Response.ACCEPTED: "Accepted",
    Response.DECLINED: "Declined",
    Response.TENTATIVE: "Maybe",
}  # everything else is New
RESPONSE_IN = {"Accepted": Response.ACCEPTED, "Declined": Response.DECLINED, "Maybe": Response.TENTATIVE}


# -- the sidecar --------------------------------------------------------------------------------------------


def location_text(appt: Appointment) -> str:
    return "; ".join(loc.display_name for loc in appt.locations if loc.display_name)


def sync_data(appt: Appointment) -> str:
    data = sidecar.written(appt, location_text(appt))
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


# -- the row we write ---------------------------------------------------------------------------------------


def refuse_unholdable(appt: Appointment, *, item_id: str | None) -> None:
    """UnprocessableError naming what Salesforce (as this connector speaks it) cannot hold; never cut."""

    def refuse(reason: str) -> UnprocessableError:
        return UnprocessableError(f"Salesforce connector: {reason}", side=SIDE, item_id=item_id)

    if appt.recurrence is not None:
        series_fields(appt, item_id=item_id)  # the pattern's reason, when Salesforce cannot hold it
        if len(appt.attendees) > INVITEES_RECURRING_MAX:
            limit, got = INVITEES_RECURRING_MAX, len(appt.attendees)
            raise refuse(f"a recurring event holds at most {limit} invitees, got {got}")
    for name, value, limit in (
        ("Subject", appt.subject, SUBJECT_MAX),
        ("Location", location_text(appt), LOCATION_MAX),
        ("Description", appt.body, DESCRIPTION_MAX),
    ):
        if len(value) > limit:
            raise refuse(f"Event.{name} holds at most {limit} characters, got {len(value)}")
    if len(appt.attendees) > INVITEES_MAX:
        raise refuse(f"an event holds at most {INVITEES_MAX} invitees, got {len(appt.attendees)}")
    if len(sync_data(appt)) > SYNC_DATA_MAX:
        raise refuse(f"what {SYNC_DATA} would keep exceeds {SYNC_DATA_MAX} characters")


def event_fields(
    appt: Appointment, *, owner_id: str | None, profile: FieldProfile | None = None
) -> dict[str, Any]:
    """Every Event field we write for `appt` (not the keys, not the relations)."""
    profile = profile or FieldProfile()
    row: dict[str, Any] = {
        "Subject": appt.subject,
        "Description": appt.body,
        "StartDateTime": wire_time(appt.start),
        "EndDateTime": wire_time(appt.end),
        "IsAllDayEvent": appt.is_all_day,
        "Location": location_text(appt),
        "IsPrivate": appt.sensitivity is Sensitivity.PRIVATE,
        "ShowAs": SHOW_AS_OUT.get(appt.show_as, "Busy"),
        profile.status_field: profile.status_value(appt.status, item_id=None),
        SYNC_DATA: sync_data(appt),
    }
    row |= series_fields(appt, item_id=None)
    if owner_id is not None:
        row["OwnerId"] = owner_id
    return row


def same_value(current: Any, wanted: Any, field: str) -> bool:
    """Whether a field already holds what we would write (W4: an unchanged field is not sent)."""
    if field == SYNC_DATA:
        try:
            return bool(current) and json.loads(current) == json.loads(wanted)
        except (TypeError, ValueError):
            return False
    if field in ("StartDateTime", "EndDateTime", "Recurrence2PatternStartDate"):
        return parse_time(current) == parse_time(wanted)
    if isinstance(wanted, bool):
        return bool(current) == wanted
    if isinstance(wanted, str):
        return (current or "") == wanted
    return bool(current == wanted)


def relations(appt: Appointment, directory: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The EventRelation rows `appt` needs, by RelationId: each attendee the directory resolves (a User,
    Contact or Lead id by lower-case email), with its Status. Unresolved addresses and rooms are kept in
    the sidecar only: an EventRelation needs a record to point at."""
    out: dict[str, dict[str, Any]] = {}
    for a in appt.attendees:
        relation_id = directory.get(a.email)
        if relation_id is None or a.type is AttendeeType.RESOURCE:
            continue
        out[relation_id] = {
            "RelationId": relation_id,
            "IsInvitee": True,
            "Status": RESPONSE_OUT.get(a.response, "New"),
        }
    return out


def mark_unresolved(raw: str, unresolved: Iterable[str]) -> str:
    """The sidecar with the attendees no EventRelation can hold flagged, so a read keeps them."""
    data = json.loads(raw)
    for email in unresolved:
        if email in data["people"]:
            data["people"][email]["unresolved"] = True
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
