"""Event resources: request-body validation and create/patch of stored records (their JSON: rendering.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from devstack.graph_emulator import ids, recurrence
from devstack.graph_emulator.errors import bad_request
from devstack.graph_emulator.state import EmulatorState, EventRecord, ExceptionData, Mailbox
from devstack.graph_emulator.timezones import (
    parse_date_time_time_zone,
    zone,
)

NULL_TIME = "0001-01-01T00:00:00Z"
WRITABLE = {
    "subject",
    "body",
    "start",
    "end",
    "location",
    "locations",
    "attendees",
    "categories",
    "sensitivity",
    "showAs",
    "importance",
    "isAllDay",
    "isReminderOn",
    "reminderMinutesBeforeStart",
    "responseRequested",
    "allowNewTimeProposals",
    "hideAttendees",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "recurrence",
    "isDraft",
    "singleValueExtendedProperties",
    "multiValueExtendedProperties",
    "transactionId",
}
# Read-only or navigation properties a client may echo back; accepted and ignored, as Graph does.
IGNORED = {
    "@odata.type",
    "@odata.etag",
    "@odata.context",
    "id",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "iCalUId",
    "type",
    "isOrganizer",
    "responseStatus",
    "seriesMasterId",
    "webLink",
    "hasAttachments",
    "bodyPreview",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "originalStart",
    "organizer",
    "isCancelled",
    "onlineMeetingUrl",
    "onlineMeeting",
    "cancelledOccurrences",
    "exceptionOccurrences",
    "attachments",
    "calendar",
    "extensions",
    "instances",
}
# Fields an attendee's copy takes from the organiser's event.
MEETING_FIELDS = (
    "subject",
    "body",
    "location",
    "locations",
    "attendees",
    "sensitivity",
    "importance",
    "isAllDay",
    "responseRequested",
    "allowNewTimeProposals",
    "hideAttendees",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "onlineMeeting",
    "recurrence",
)
# Fields an exception (a modified occurrence) may override.
EXCEPTION_FIELDS = WRITABLE - {
    "recurrence",
    "start",
    "end",
    "transactionId",
    "singleValueExtendedProperties",
    "multiValueExtendedProperties",
}
_ENUMS = {
    "sensitivity": ("normal", "personal", "private", "confidential"),
    "showAs": ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown"),
    "importance": ("low", "normal", "high"),
    "onlineMeetingProvider": ("unknown", "teamsForBusiness", "skypeForBusiness", "skypeForConsumer"),
}
# resources/location.md, locationType; Graph answers in this casing whatever the request used.
LOCATION_TYPES = (
    "default",
    "conferenceRoom",
    "homeAddress",
    "businessAddress",
    "geoCoordinates",
    "streetAddress",
    "hotel",
    "restaurant",
    "localBusiness",
    "postalAddress",
)


def default_fields() -> dict[str, Any]:
    return {
        "subject": "",
        "body": {"contentType": "text", "content": ""},
        "location": _location({}),
        "locations": [],
        "attendees": [],
        "categories": [],
        "sensitivity": "normal",
        "showAs": "busy",
        "importance": "normal",
        "isAllDay": False,
        "isReminderOn": True,
        "reminderMinutesBeforeStart": 15,
        "responseRequested": True,
        "allowNewTimeProposals": True,
        "hideAttendees": False,
        "isOnlineMeeting": False,
        "onlineMeetingProvider": "unknown",
        "onlineMeeting": None,
        "recurrence": None,
        "isDraft": False,
    }


def check_keys(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("Empty Payload. JSON content expected.", code="BadRequest")
    for key in body:
        if key not in WRITABLE and key not in IGNORED:
            raise bad_request(
                f"The property '{key}' does not exist on type 'microsoft.graph.event'. Make sure to "
                "only use property names that are defined by the type or mark the type as open type.",
                code="RequestBodyRead",
            )
    return body


def _location(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request("The property 'location' must be an object.")
    name = value.get("displayName") or ""
    kind = value.get("locationType") or "default"
    kind = next((t for t in LOCATION_TYPES if isinstance(kind, str) and t.lower() == kind.lower()), kind)
    loc: dict[str, Any] = {"displayName": name, "locationType": kind}
    for key in ("locationUri", "locationEmailAddress", "address", "coordinates"):
        if value.get(key) is not None:
            loc[key] = value[key]
    loc["uniqueId"] = value.get("uniqueId") or (name or None)
    loc["uniqueIdType"] = value.get("uniqueIdType") or ("private" if name else "unknown")
    if loc["uniqueId"] is None:
        del loc["uniqueId"]
    return loc


def _attendees(value: Any, previous: list[dict[str, Any]], state: EmulatorState) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise bad_request("The property 'attendees' must be a collection.")
    if len(value) > 500:
        raise bad_request("An event can have at most 500 attendees.")
    known = {a["emailAddress"]["address"].lower(): a["status"] for a in previous}
    result: list[dict[str, Any]] = []
    for item in value:
        email = (item or {}).get("emailAddress") or {}
        address = email.get("address")
        if not isinstance(address, str) or "@" not in address:
            raise bad_request("Each attendee needs emailAddress.address.", code="ErrorInvalidRecipients")
        mailbox = state.find_mailbox(address)
        kind = str(item.get("type") or "required").lower()
        if kind not in ("required", "optional", "resource"):
            raise bad_request(f"Invalid attendee type '{item.get('type')}'.")
        result.append(
            {
                "type": kind,
                "status": dict(known.get(address.lower()) or {"response": "none", "time": NULL_TIME}),
                "emailAddress": {
                    "name": email.get("name") or (mailbox.display_name if mailbox else address),
                    "address": address,
                },
            }
        )
    return result


def _enum(key: str, value: Any) -> str:
    for option in _ENUMS[key]:
        if isinstance(value, str) and option.lower() == value.lower():
            return option
    raise bad_request(f"Invalid value '{value}' for property '{key}'.")


def _listed_location(value: Any) -> dict[str, Any]:
    """One entry of `locations` as Graph returns it: a bare name gets no uniqueId (user-post-events.md)."""
    loc = _location(value)
    if value.get("uniqueId") is None and not (value.get("address") or value.get("coordinates")):
        loc.pop("uniqueId", None)
        loc["uniqueIdType"] = value.get("uniqueIdType") or "unknown"
    return loc


def _sync_locations(fields: dict[str, Any], body: dict[str, Any]) -> None:
    """location and locations always correspond (resources/event.md).

    `location` alone replaces the whole `locations` list with itself; `locations` sent, with or without
    `location`, is kept as sent (user-post-events.md, Request 2 sends both and gets both back), and
    without `location` the location names them all.
    """
    if body.get("locations") is not None:
        if not isinstance(body["locations"], list) or not all(isinstance(v, dict) for v in body["locations"]):
            raise bad_request("The property 'locations' must be a collection of locations.")
        fields["locations"] = [_listed_location(loc) for loc in body["locations"]]
        if body.get("location") is not None:
            fields["location"] = _location(body["location"])
        elif len(body["locations"]) == 1:
            fields["location"] = _location(body["locations"][0])
        else:
            fields["location"] = _location(
                {"displayName": "; ".join(loc["displayName"] for loc in fields["locations"])}
            )
    elif body.get("location") is not None:
        fields["location"] = _location(body["location"])
        named = fields["location"]["displayName"]
        fields["locations"] = [dict(fields["location"], uniqueIdType="unknown")] if named else []
        fields["locations"] = [
            {k: v for k, v in loc.items() if k != "uniqueId"} for loc in fields["locations"]
        ]


def apply_fields(
    fields: dict[str, Any], body: dict[str, Any], state: EmulatorState, allowed: set[str] | None = None
) -> None:
    """Copy the writable, non-time fields of `body` into `fields`, validated and normalised."""
    for key, value in body.items():
        if key in ("start", "end", "recurrence", "transactionId", "location", "locations") or key in IGNORED:
            continue
        if key in ("singleValueExtendedProperties", "multiValueExtendedProperties"):
            continue
        if allowed is not None and key not in allowed:
            raise bad_request(f"The property '{key}' can't be changed on an occurrence.")
        if key == "body":
            if not isinstance(value, dict):
                raise bad_request("The property 'body' must be an itemBody.")
            content_type = str(value.get("contentType") or "text").lower()
            if content_type not in ("text", "html"):
                raise bad_request(f"Invalid body contentType '{value.get('contentType')}'.")
            fields["body"] = {"contentType": content_type, "content": str(value.get("content") or "")}
        elif key == "attendees":
            fields["attendees"] = _attendees(value, fields.get("attendees") or [], state)
        elif key in _ENUMS:
            fields[key] = _enum(key, value)
        elif key == "categories":
            if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                raise bad_request("The property 'categories' must be a collection of strings.")
            fields["categories"] = list(value)
        elif key == "reminderMinutesBeforeStart":
            if not isinstance(value, int):
                raise bad_request("The property 'reminderMinutesBeforeStart' must be an integer.")
            fields[key] = value
        elif key == "subject":
            fields["subject"] = "" if value is None else str(value)
        else:
            if not isinstance(value, bool):
                raise bad_request(f"The property '{key}' must be a boolean.")
            fields[key] = value
    _sync_locations(fields, body)
    if fields.get("isOnlineMeeting"):
        if fields.get("onlineMeetingProvider") in (None, "unknown"):
            fields["onlineMeetingProvider"] = "teamsForBusiness"
        if not fields.get("onlineMeeting"):
            fields["onlineMeeting"] = {
                "joinUrl": f"https://teams.microsoft.com/l/meetup-join/emulator/{ids.opaque_token(12)}"
            }
    else:
        fields["onlineMeeting"] = None
    _room_location(fields, state)


def _room_location(fields: dict[str, Any], state: EmulatorState) -> None:
    """Like Exchange: inviting a room with no location set makes the room the location."""
    if fields["location"].get("displayName"):
        return
    for attendee in fields["attendees"]:
        mailbox = state.find_mailbox(attendee["emailAddress"]["address"])
        if mailbox is not None and mailbox.kind == "room":
            fields["location"] = {
                "displayName": mailbox.display_name,
                "locationType": "conferenceRoom",
                "locationEmailAddress": mailbox.mail,
                "uniqueId": mailbox.mail,
                "uniqueIdType": "directory",
            }
            fields["locations"] = [dict(fields["location"])]
            return


def _apply_ext(record: EventRecord, body: dict[str, Any]) -> None:
    for item in body.get("singleValueExtendedProperties") or []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise bad_request("Each singleValueExtendedProperty needs an id and a value.")
        record.single_ext[item["id"].lower()] = (
            item["id"],
            "" if item.get("value") is None else str(item["value"]),
        )
    for item in body.get("multiValueExtendedProperties") or []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise bad_request("Each multiValueExtendedProperty needs an id and a value.")
        values = item.get("value") or []
        record.multi_ext[item["id"].lower()] = (item["id"], [str(v) for v in values])


Times = tuple[datetime, str, datetime, str]


def _times(body: dict[str, Any], current: Times | None) -> Times:
    """(start, start zone, end, end zone) after applying the body's start/end to `current`."""
    if current is None:
        if "start" not in body or "end" not in body:
            raise bad_request("Your request can't be completed. Start and End are required for an event.")
        current = (
            *parse_date_time_time_zone(body["start"], "start"),
            *parse_date_time_time_zone(body["end"], "end"),
        )
    start, start_tz, end, end_tz = current
    if "start" in body:
        start, start_tz = parse_date_time_time_zone(body["start"], "start")
    if "end" in body:
        end, end_tz = parse_date_time_time_zone(body["end"], "end")
    if end < start:
        raise bad_request("The start time of the event must be before its end time.")
    return start, start_tz, end, end_tz


def _check_all_day(
    fields: dict[str, Any], start: datetime, start_tz: str, end: datetime, end_tz: str
) -> None:
    if not fields.get("isAllDay"):
        return
    local_start, local_end = start.astimezone(zone(start_tz)), end.astimezone(zone(end_tz))
    if local_start.time() != datetime.min.time() or local_end.time() != datetime.min.time() or end <= start:
        raise bad_request(
            "Your request can't be completed. An all-day event must start and end at midnight.",
            code="ErrorPropertyValidationFailure",
        )


def build_event(state: EmulatorState, mailbox: Mailbox, body: dict[str, Any]) -> EventRecord:
    """A new organiser-side event from a POST body (not yet stored)."""
    check_keys(body)
    start, start_tz, end, end_tz = _times(body, None)
    fields = default_fields()
    apply_fields(fields, body, state)
    fields["recurrence"] = recurrence.normalize(
        body.get("recurrence"), start.astimezone(zone(start_tz)).date(), start_tz
    )
    _check_all_day(fields, start, start_tz, end, end_tz)
    now = state.clock.now()
    transaction_id = body.get("transactionId")
    if transaction_id is not None and not isinstance(transaction_id, str):
        raise bad_request("The property 'transactionId' must be a string.")
    record = EventRecord(
        id=ids.new_event_id(mailbox.id),
        mailbox_id=mailbox.id,
        fields=fields,
        start=start,
        end=end,
        start_tz=start_tz,
        end_tz=end_tz,
        created=now,
        last_modified=now,
        change_key=state.change_keys.next(),
        ical_uid=ids.new_ical_uid(now),
        is_organizer=True,
        organizer={"emailAddress": mailbox.email_address()},
        response_status={"response": "organizer", "time": NULL_TIME},
        transaction_id=transaction_id,
    )
    _apply_ext(record, body)
    return record


def patch_event(state: EmulatorState, record: EventRecord, body: dict[str, Any]) -> set[str]:
    """Apply a PATCH body to a stored event; returns the names of the properties it set."""
    check_keys(body)
    if "transactionId" in body and record.transaction_id not in (None, body["transactionId"]):
        raise bad_request("The transactionId of an event can't be changed once it is set.")
    start, start_tz, end, end_tz = _times(body, (record.start, record.start_tz, record.end, record.end_tz))
    fields = dict(record.fields)
    apply_fields(fields, body, state)
    if "recurrence" in body:
        fields["recurrence"] = recurrence.normalize(
            body["recurrence"], start.astimezone(zone(start_tz)).date(), start_tz
        )
    _check_all_day(fields, start, start_tz, end, end_tz)
    record.fields = fields
    record.start, record.start_tz, record.end, record.end_tz = start, start_tz, end, end_tz
    if record.transaction_id is None and isinstance(body.get("transactionId"), str):
        record.transaction_id = body["transactionId"]
    if fields["recurrence"] is None:
        record.exceptions.clear()
        record.cancelled.clear()
    _apply_ext(record, body)
    return {key for key in body if key in WRITABLE}


def patch_occurrence(
    state: EmulatorState, master: EventRecord, key: str, body: dict[str, Any]
) -> ExceptionData:
    """PATCH on an occurrence: it becomes (or stays) an exception of the series."""
    check_keys(body)
    if "recurrence" in body:
        raise bad_request("The recurrence of an occurrence can't be changed; patch the series master.")
    existing = master.exceptions.get(key)
    base_start, base_end = (existing.start, existing.end) if existing else original_times(master, key)
    start, _, end, _ = _times(body, (base_start, master.start_tz, base_end, master.end_tz))
    _check_crossing(master, key, start)
    merged = {**master.fields, **(existing.fields if existing else {})}
    apply_fields(merged, body, state, allowed=EXCEPTION_FIELDS)
    overrides = {k: v for k, v in merged.items() if master.fields.get(k) != v and k != "recurrence"}
    exception = ExceptionData(
        fields=overrides,
        start=start,
        end=end,
        change_key=state.change_keys.next(),
        last_modified=state.clock.now(),
        response_status=existing.response_status if existing else None,
    )
    master.exceptions[key] = exception
    return exception


def _check_crossing(master: EventRecord, key: str, start: datetime) -> None:
    """400 ErrorOccurrenceCrossingBoundary (api/event-update.md): "an occurrence cannot be moved to or before
    the day of the previous occurrence, and cannot be moved to or after the day of the following occurrence".

    Days are those of the series' time zone; a neighbour that is itself an exception counts where it now is.
    """
    shape = master.shape()
    tz = zone(shape.tz_name)

    def day_of(neighbour: str) -> date:
        moved = shape.exceptions.get(neighbour)
        return moved[0].astimezone(tz).date() if moved else date.fromisoformat(neighbour)

    previous, following = recurrence.neighbours(shape, key)
    day = start.astimezone(tz).date()
    if (previous is not None and day <= day_of(previous)) or (
        following is not None and day >= day_of(following)
    ):
        raise bad_request(
            "Modified occurrence is crossing or overlapping adjacent occurrence.",
            code="ErrorOccurrenceCrossingBoundary",
        )


def original_times(master: EventRecord, key: str) -> tuple[datetime, datetime]:
    """Where occurrence `key` of the series sits before any exception moved it."""
    shape = master.shape()
    tz = zone(shape.tz_name)
    local = master.start.astimezone(tz)
    start = datetime.combine(
        date.fromisoformat(key), local.timetz().replace(tzinfo=None), tzinfo=tz
    ).astimezone(UTC)
    return start, start + (master.end - master.start)
