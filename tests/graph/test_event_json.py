"""event_json (issue 20): the body of a create or PATCH, written as JSON directly, is byte for byte what
msgraph-sdk's `Event` model of the same write serializes to (kiota's JSON writer), for every golden event
(Graph's documented examples and our recordings, read and written back), each field alone, and generated
appointments."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from graph_support import golden_events
from hypothesis import given, settings
from hypothesis import strategies as st
from kiota_abstractions.store import BackingStoreSerializationWriterProxyFactory
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from kiota_serialization_json.json_serialization_writer_factory import JsonSerializationWriterFactory
from msgraph.generated.models.event import Event

from sync_core.adapters.graph.convert import appointment_to_event, event_to_graph_event
from sync_core.adapters.graph.event_json import event_json
from sync_core.domain.model import (
    GRAPH_WRITABLE_FIELDS,
    Appointment,
    Attendee,
    AttendeeType,
    Location,
    Recurrence,
    RecurrencePattern,
    RecurrenceRange,
    Sensitivity,
    ShowAs,
)

PROP = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name SyncTag"
TAG = (PROP, "ical:X#v1.abc")


def _appointment(data: dict[str, Any]) -> Appointment | None:
    raw = json.dumps(data).encode()
    event = JsonParseNodeFactory().get_root_parse_node("application/json", raw).get_object_value(Event)
    try:
        return event_to_graph_event(event, "linda@contoso.example", extended_property_id=PROP).appointment
    except ValueError:  # an example without a start or end: nothing to write back
        return None


def _golden() -> list[Any]:
    out = []
    for name, data in golden_events():
        appt = _appointment(data)
        if appt is not None:
            out.append(pytest.param(appt, id=name))
    return out


def _model_bytes(event: Event) -> bytes:
    """What a request builder sends: kiota's JSON writer behind the backing store's proxy, as msgraph-sdk's
    request adapter registers it (it writes the properties set to None as null)."""
    factory = BackingStoreSerializationWriterProxyFactory(JsonSerializationWriterFactory())
    writer = factory.get_serialization_writer("application/json")
    writer.write_object_value(None, event)
    return writer.get_serialized_content()


def _same_both_ways(appt: Appointment, **kwargs: Any) -> None:
    assert event_json(appt, **kwargs) == _model_bytes(appointment_to_event(appt, **kwargs))


WRITES: list[dict[str, Any]] = [
    {},  # a create without tag or transaction
    {"extended_property": TAG, "transaction_id": "t-1"},  # a create (create_event)
    {"fields": list(GRAPH_WRITABLE_FIELDS), "extended_property": TAG},  # a PATCH of everything
    *({"fields": [name], "extended_property": TAG} for name in GRAPH_WRITABLE_FIELDS),  # one field
    {"fields": ["organizer", "attachments", "subject"]},  # fields Graph cannot write are ignored
    {"fields": []},
]


@pytest.mark.parametrize("appt", _golden())
def test_W4_a_write_of_a_golden_event_serializes_as_its_msgraph_model(appt: Appointment) -> None:
    for kwargs in WRITES:
        _same_both_ways(appt, **kwargs)


def test_there_are_golden_events_to_write() -> None:
    assert len(_golden()) >= 8


START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
PATTERNS = [
    RecurrencePattern(type="daily", interval=2),
    RecurrencePattern(type="weekly", days_of_week=("monday", "friday"), first_day_of_week="monday"),
    RecurrencePattern(type="absoluteMonthly", day_of_month=15),
    RecurrencePattern(type="relativeMonthly", days_of_week=("friday",), index="last"),
    RecurrencePattern(type="absoluteYearly", day_of_month=1, month=7),
    RecurrencePattern(type="relativeYearly", days_of_week=("monday",), index="second", month=3),
]
RANGES = [
    RecurrenceRange(type="noEnd", start_date=date(2026, 3, 29), time_zone="Europe/Berlin"),
    RecurrenceRange(type="endDate", start_date=date(2026, 3, 29), end_date=date(2026, 12, 31)),
    RecurrenceRange(type="numbered", start_date=date(2026, 3, 29), number_of_occurrences=7),
]

appointments = st.builds(
    Appointment,
    subject=st.text(max_size=20),
    body=st.text(max_size=40),
    start=st.sampled_from(
        [START, START + timedelta(hours=1), START + timedelta(days=210, hours=0, minutes=30)]
    ),
    end=st.sampled_from([START, START + timedelta(hours=2), START + timedelta(days=211)]),
    time_zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Etc/GMT+5"]),
    is_all_day=st.booleans(),
    locations=st.lists(
        st.builds(
            Location,
            display_name=st.text(max_size=10),
            room_email=st.none() | st.sampled_from(["", "room@contoso.example"]),
        ),
        max_size=2,
    ).map(tuple),
    attendees=st.lists(
        st.builds(
            Attendee,
            email=st.sampled_from(["a@contoso.example", "Bé@fabrikam.example"]),
            name=st.text(max_size=8),
            type=st.sampled_from(list(AttendeeType)),
        ),
        max_size=3,
    ).map(tuple),
    sensitivity=st.sampled_from(list(Sensitivity)),
    show_as=st.sampled_from(list(ShowAs)),
    reminder_minutes=st.none() | st.integers(0, 10_000),
    categories=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    recurrence=st.none()
    | st.builds(Recurrence, pattern=st.sampled_from(PATTERNS), range=st.sampled_from(RANGES)),
)


@settings(max_examples=300, deadline=None)
@given(appointments, st.sampled_from(WRITES))
def test_W4_a_write_of_any_appointment_serializes_as_its_msgraph_model(
    appt: Appointment, kwargs: dict[str, Any]
) -> None:
    _same_both_ways(appt, **kwargs)
