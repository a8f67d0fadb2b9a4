"""An event's properties in a request body: which a create or PATCH may set (and which are ignored), their
validation, their defaults, and how they are applied to a stored event's fields (attendees, locations, rooms).
"""

from __future__ import annotations

from typing import Any

from devstack.graph_emulator import ids
from devstack.graph_emulator.errors import bad_request
from devstack.graph_emulator.state import EmulatorState

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
