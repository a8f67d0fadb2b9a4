"""json_view (issue 20): an event read as JSON converts exactly as the msgraph `Event` model of the same
JSON does, for every event in the golden fixtures (Graph's documented examples and our recordings), plus
one carrying every property the conversion reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from graph_support import golden_events
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.models.event import Event

from sync_core.adapters.graph.convert import event_to_graph_event
from sync_core.adapters.graph.json_view import JsonView, json_name, parse_datetime

PROP = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name SyncTag"

FULL: dict[str, Any] = {
    "id": "AAMk/odd+id==",
    "changeKey": "ck1",
    "iCalUId": "040000008200E00074C5B7101A82E008",
    "type": "seriesMaster",
    "subject": "Review",
    "body": {"contentType": "html", "content": "<p>Agenda<br>item</p>"},
    "start": {"dateTime": "2026-03-29T01:30:00.0000000", "timeZone": "W. Europe Standard Time"},
    "end": {"dateTime": "2026-03-29T03:30:00.0000000", "timeZone": "W. Europe Standard Time"},
    "originalStartTimeZone": "W. Europe Standard Time",
    "originalEndTimeZone": "W. Europe Standard Time",
    "originalStart": "2026-03-29T00:30:00Z",
    "isAllDay": False,
    "isCancelled": False,
    "isDraft": False,
    "isOrganizer": False,
    "isReminderOn": True,
    "reminderMinutesBeforeStart": 15,
    "sensitivity": "private",
    "showAs": "tentative",
    "categories": ["Blue", "Client"],
    "hasAttachments": True,
    "lastModifiedDateTime": "2026-03-20T10:11:12.1234567Z",
    "seriesMasterId": None,
    "onlineMeeting": {"joinUrl": "https://teams.example/join/1"},
    "onlineMeetingUrl": None,
    "responseStatus": {"response": "tentativelyAccepted", "time": "2026-03-20T10:00:00Z"},
    "organizer": {"emailAddress": {"name": "Linda", "address": "linda@contoso.example"}},
    "attendees": [
        {
            "type": "required",
            "status": {"response": "accepted", "time": "2026-03-20T10:00:00Z"},
            "emailAddress": {"name": "Bob", "address": "bob@fabrikam.example"},
        },
        {
            "type": "resource",
            "status": {"response": "none"},
            "emailAddress": {"name": "Harbour", "address": "harbour@contoso.example"},
        },
        {"type": "optional", "emailAddress": {"name": "No address"}},
    ],
    "location": {"displayName": "Harbour"},
    "locations": [
        {"displayName": "Harbour", "uniqueId": "harbour@contoso.example", "locationEmailAddress": None},
        {"displayName": "Lobby", "locationEmailAddress": "Lobby@Contoso.example"},
    ],
    "recurrence": {
        "pattern": {
            "type": "relativeMonthly",
            "interval": 2,
            "daysOfWeek": ["monday", "friday"],
            "dayOfMonth": 0,
            "month": 0,
            "index": "second",
            "firstDayOfWeek": "monday",
        },
        "range": {
            "type": "endDate",
            "startDate": "2026-03-29",
            "endDate": "2026-12-31",
            "numberOfOccurrences": 0,
            "recurrenceTimeZone": "W. Europe Standard Time",
        },
    },
    "cancelledOccurrences": ["OID.AAMk.2026-05-25", "OID.AAMk.2026-07-27"],
    "exceptionOccurrences": [{"id": "EX1"}, {"id": "EX2"}],
    "attachments": [
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "id": "A1",
            "name": "agenda.pdf",
            "contentType": "application/pdf",
            "size": 1234,
            "isInline": False,
            "lastModifiedDateTime": "2026-03-20T10:11:12Z",
        }
    ],
    "singleValueExtendedProperties": [{"id": PROP, "value": "ical:X#v1.abc"}],
}


def _examples() -> list[Any]:
    out = [pytest.param(FULL, id="every-property")]
    for name, event in golden_events():
        out.append(pytest.param(event, id=name))
    return out


def _as_model(data: dict[str, Any]) -> Event:
    node = JsonParseNodeFactory().get_root_parse_node("application/json", json.dumps(data).encode())
    return node.get_object_value(Event)


def _convert(event: Any) -> Any:
    try:
        return event_to_graph_event(event, "Linda@contoso.example", extended_property_id=PROP)
    except Exception as exc:  # the same refusal either way
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("data", _examples())
def test_an_event_read_as_json_converts_as_its_msgraph_model(data: dict[str, Any]) -> None:
    assert _convert(JsonView(data)) == _convert(_as_model(data))


def test_there_are_golden_events_to_compare() -> None:
    assert len(_examples()) >= 10


def test_names_and_times_read_as_the_models_read_them() -> None:
    assert json_name("i_cal_u_id") == "iCalUId" and json_name("odata_type") == "@odata.type"
    assert json_name("single_value_extended_properties") == "singleValueExtendedProperties"
    assert parse_datetime("2026-03-20T10:11:12.1234567Z").isoformat() == "2026-03-20T10:11:12.123456+00:00"
    assert JsonView({}).subject is None
