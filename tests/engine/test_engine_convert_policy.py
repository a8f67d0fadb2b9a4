"""Graph <-> model conversion (F1, F4, R1), Windows/IANA zones, and the policy (all problems at once)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from kiota_serialization_json.json_serialization_writer_factory import JsonSerializationWriterFactory
from msgraph.generated.models.event import Event

from sync_core.adapters.graph.convert import appointment_to_event, event_to_graph_event, html_to_text
from sync_core.domain import timezones
from sync_core.domain.model import (
    Appointment,
    Attendee,
    AttendeeType,
    Location,
    Person,
    Recurrence,
    RecurrencePattern,
    RecurrenceRange,
    Response,
    Sensitivity,
    ShowAs,
)
from sync_core.domain.policy import Policy, load_policy
from sync_core.errors import ConfigurationError

# The documented Graph GET /events/{id} response, committed under tests/fixtures (copied from the reference).
PAYLOAD = Path(__file__).resolve().parents[1] / "fixtures" / "graph" / "graph_event_get_response.json"
PROP = "String {5d0c3b8e-6f0a-4d1e-9b7a-3c2f1e0d9a8b} Name CrmSyncMeetingKey"
SAMPLE_EVENT = {
    "id": "AAMkAGI1AAAt9AHjAAA=",
    "changeKey": "ZlnW4RIAV06KYYwlrfNZvQAALfZeRQ==",
    "originalStartTimeZone": "Pacific Standard Time",
    "iCalUId": "040000008200E00074C5B7101A82E008",
    "reminderMinutesBeforeStart": 15,
    "isReminderOn": True,
    "subject": "Let's go brunch",
    "sensitivity": "normal",
    "isAllDay": False,
    "isCancelled": False,
    "isDraft": False,
    "isOrganizer": True,
    "showAs": "busy",
    "type": "singleInstance",
    "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
    "body": {
        "contentType": "html",
        "content": "<html><head></head><body>Does late morning work for you?</body></html>",
    },
    "start": {"dateTime": "2017-04-15T11:00:00.0000000", "timeZone": "Pacific Standard Time"},
    "end": {"dateTime": "2017-04-15T12:00:00.0000000", "timeZone": "Pacific Standard Time"},
    "locations": [{"displayName": "Harry's Bar", "locationType": "default", "uniqueIdType": "unknown"}],
    "attendees": [
        {
            "type": "required",
            "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
            "emailAddress": {"name": "Samantha Booth", "address": "samanthab@contoso.com"},
        }
    ],
    "organizer": {"emailAddress": {"name": "Dana Swope", "address": "danas@contoso.com"}},
}


def parse(data: bytes) -> Event:
    node = JsonParseNodeFactory().get_root_parse_node("application/json", data)
    event = node.get_object_value(Event)
    assert event is not None
    return event


def serialize(event: Event) -> dict[str, Any]:
    writer = JsonSerializationWriterFactory().get_serialization_writer("application/json")
    writer.write_object_value(None, event)
    return json.loads(writer.get_serialized_content())  # type: ignore[no-any-return]


def test_F4_graph_get_payload_converts_to_utc_with_the_original_zone_kept() -> None:
    g = event_to_graph_event(parse(PAYLOAD.read_bytes()), "DanaS@contoso.com", extended_property_id=PROP)
    a = g.appointment
    assert g.mailbox == "danas@contoso.com" and g.type == "singleInstance" and g.is_organizer
    assert a.start == datetime(2017, 4, 15, 18, 0, tzinfo=UTC)  # 11:00 PDT
    assert a.time_zone == "America/Los_Angeles"
    assert a.body == "Does late morning work for you?"
    assert a.attendees == (Attendee(email="samanthab@contoso.com", name="Samantha Booth"),)
    assert a.organizer == Person(email="danas@contoso.com", name="Dana Swope")
    assert a.locations == (Location(display_name="Harry's Bar"),) and a.reminder_minutes == 15
    assert g.written_by_us is None and g.response is Response.ORGANIZER


def _full() -> Appointment:
    return Appointment(
        subject="Board",
        body="Agenda\n\nItem 1",
        start=datetime(2025, 3, 10, 8, tzinfo=UTC),
        end=datetime(2025, 3, 10, 9, 30, tzinfo=UTC),
        time_zone="Europe/Berlin",
        locations=(Location(display_name="Board Room", room_email="boardroom@contoso.com"),),
        attendees=(
            Attendee(email="bob@client.com", name="Bob"),
            Attendee(email="ann@client.com", type=AttendeeType.OPTIONAL),
            Attendee(email="boardroom@contoso.com", type=AttendeeType.RESOURCE),
        ),
        sensitivity=Sensitivity.PERSONAL,
        show_as=ShowAs.TENTATIVE,
        reminder_minutes=20,
        categories=("Client", "Q1"),
        recurrence=Recurrence(
            pattern=RecurrencePattern(
                type="weekly", days_of_week=("monday", "thursday"), first_day_of_week="monday"
            ),
            range=RecurrenceRange(
                type="endDate",
                start_date=date(2025, 3, 10),
                end_date=date(2025, 6, 30),
                time_zone="Europe/Berlin",
            ),
        ),
    )


@pytest.mark.parametrize(
    "recurrence",
    [
        RecurrencePattern(type="daily", interval=2),
        RecurrencePattern(type="absoluteMonthly", day_of_month=15),
        RecurrencePattern(type="relativeMonthly", days_of_week=("friday",), index="last"),
        RecurrencePattern(type="absoluteYearly", day_of_month=1, month=7),
        RecurrencePattern(type="relativeYearly", days_of_week=("monday",), index="second", month=3),
    ],
)
def test_R1_patterned_recurrence_round_trips(recurrence: RecurrencePattern) -> None:
    a = _full().model_copy(
        update={
            "recurrence": Recurrence(
                pattern=recurrence,
                range=RecurrenceRange(type="noEnd", start_date=date(2025, 3, 10), time_zone="Europe/Berlin"),
            )
        }
    )
    back = _round_trip(a)
    assert back.recurrence == a.recurrence


def _round_trip(a: Appointment) -> Appointment:
    wire = serialize(appointment_to_event(a, extended_property=(PROP, "crm:1"), transaction_id="t"))
    wire |= {
        "id": "E1",
        "iCalUId": "U",
        "originalStartTimeZone": wire["start"]["timeZone"],
        "isOrganizer": True,
    }
    wire["singleValueExtendedProperties"] = [{"id": PROP, "value": "crm:1"}]
    return event_to_graph_event(
        parse(json.dumps(wire).encode()), "linda@contoso.com", extended_property_id=PROP
    ).appointment


def test_F1_appointment_round_trips_through_a_graph_event() -> None:
    a = _full()
    wire = serialize(appointment_to_event(a, extended_property=(PROP, "crm:1"), transaction_id="t-1"))
    assert wire["start"] == {"dateTime": "2025-03-10T09:00:00", "timeZone": "W. Europe Standard Time"}
    assert wire["transactionId"] == "t-1" and wire["body"] == {
        "content": "Agenda\n\nItem 1",
        "contentType": "text",
    }
    back = _round_trip(a)
    for field in (
        "subject",
        "body",
        "start",
        "end",
        "time_zone",
        "locations",
        "attendees",
        "sensitivity",
        "show_as",
        "reminder_minutes",
        "categories",
        "recurrence",
    ):
        assert getattr(back, field) == getattr(a, field), field


def test_W4_patch_body_carries_only_the_given_fields() -> None:
    wire = serialize(appointment_to_event(_full(), fields=["subject"]))
    assert set(wire) == {"@odata.type", "subject"}
    wire = serialize(appointment_to_event(_full(), fields=["end"]))
    assert set(wire) == {"@odata.type", "start", "end", "isAllDay"}


def test_D4_our_extended_property_is_read_as_written_by_us() -> None:
    wire = dict(SAMPLE_EVENT, singleValueExtendedProperties=[{"id": PROP.upper(), "value": "crm:42"}])
    g = event_to_graph_event(parse(json.dumps(wire).encode()), "x@contoso.com", extended_property_id=PROP)
    assert g.written_by_us == "crm:42"


def test_F4_all_day_events_keep_their_date_and_unknown_zones_do_not_crash() -> None:
    wire = dict(
        SAMPLE_EVENT,
        isAllDay=True,
        originalStartTimeZone="tzone://Microsoft/Custom",
        start={"dateTime": "2025-05-01T00:00:00.0000000", "timeZone": "UTC"},
        end={"dateTime": "2025-05-02T00:00:00.0000000", "timeZone": "UTC"},
    )
    g = event_to_graph_event(parse(json.dumps(wire).encode()), "x@contoso.com", extended_property_id=PROP)
    assert g.appointment.is_all_day and g.appointment.time_zone == "UTC"
    assert g.appointment.start == datetime(2025, 5, 1, tzinfo=UTC)
    out = serialize(appointment_to_event(g.appointment))
    assert out["start"] == {"dateTime": "2025-05-01T00:00:00", "timeZone": "UTC"}


def test_R3_cancelled_occurrences_are_read_as_utc_starts() -> None:
    wire = dict(
        SAMPLE_EVENT,
        type="seriesMaster",
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["saturday"]},
            "range": {
                "type": "noEnd",
                "startDate": "2017-04-15",
                "recurrenceTimeZone": "Pacific Standard Time",
            },
        },
        cancelledOccurrences=["OID.AAMkAGI1AAAt9AHjAAA=.2017-04-22"],
    )
    g = event_to_graph_event(parse(json.dumps(wire).encode()), "x@contoso.com", extended_property_id=PROP)
    assert g.appointment.cancelled_occurrences == (datetime(2017, 4, 22, 18, tzinfo=UTC),)
    assert (
        g.appointment.recurrence is not None
        and g.appointment.recurrence.range.time_zone == "America/Los_Angeles"
    )


def test_F4_windows_and_iana_names_map_both_ways() -> None:
    for windows, iana in timezones.WINDOWS_TO_IANA.items():
        assert timezones.is_iana(iana), iana
        assert timezones.to_iana(windows) in (iana, "UTC")
        back = timezones.to_windows(iana)
        assert back is not None and timezones.to_iana(back) in (iana, "UTC")
    assert timezones.to_iana("Tokyo Standard Time") == "Asia/Tokyo"
    assert timezones.to_windows("Europe/Amsterdam") == "W. Europe Standard Time"
    assert timezones.to_iana("Nowhere Standard Time") is None and timezones.to_windows("Mars/Olympus") is None
    assert timezones.to_iana("UTC") == "UTC"


def _through_graph(a: Appointment, windows: str | None = None) -> tuple[dict[str, Any], Appointment]:
    """Write `a` as Graph would store it (zones of start and end kept apart), read it back."""
    wire = serialize(appointment_to_event(a))
    start, end = wire["start"], wire["end"]
    wire |= {
        "id": "E",
        "originalStartTimeZone": windows if start["timeZone"] != "UTC" and windows else start["timeZone"],
        "originalEndTimeZone": windows if end["timeZone"] != "UTC" and windows else end["timeZone"],
    }
    back = event_to_graph_event(parse(json.dumps(wire).encode()), "x@y.com", extended_property_id=PROP)
    return wire, back.appointment


@given(
    st.sampled_from(sorted(timezones.WINDOWS_TO_IANA)),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)),
)
# Windhoek set its clock back at 2016-04-03 02:00 local: 23:00 and 00:00 UTC are both 01:00 local.
@example(windows="Namibia Standard Time", when=datetime(2016, 4, 2, 23, 0))
@example(windows="Namibia Standard Time", when=datetime(2016, 4, 2, 22, 30))
@example(windows="W. Europe Standard Time", when=datetime(2021, 10, 31, 0, 30))
@example(windows="Lord Howe Standard Time", when=datetime(2021, 4, 3, 14, 45))
def test_F4_any_known_zone_round_trips_an_instant(windows: str, when: datetime) -> None:
    start = when.replace(second=0, microsecond=0, tzinfo=UTC)
    a = Appointment(
        start=start, end=start + timedelta(hours=1), time_zone=timezones.to_iana(windows) or "UTC"
    )
    wire, back = _through_graph(a, windows)
    assert back.start == a.start and back.end == a.end
    written = {wire["start"]["timeZone"], wire["end"]["timeZone"]}
    if written != {"UTC"}:
        # At most one end was ambiguous and written in UTC: the event's zone comes back from the other.
        assert timezones.to_iana(back.time_zone) == timezones.to_iana(a.time_zone)


def test_F4_an_ambiguous_wall_time_is_written_in_utc_and_the_rest_in_the_events_zone() -> None:
    berlin = "Europe/Berlin"  # 2021-10-31 03:00 CEST -> 02:00 CET: 02:00-03:00 local happens twice
    before = Appointment(
        start=datetime(2021, 10, 30, 23, 0, tzinfo=UTC),
        end=datetime(2021, 10, 31, 0, 30, tzinfo=UTC),
        time_zone=berlin,
    )
    wire, back = _through_graph(before, "W. Europe Standard Time")
    assert wire["start"] == {"dateTime": "2021-10-31T01:00:00", "timeZone": "W. Europe Standard Time"}
    assert wire["end"] == {"dateTime": "2021-10-31T00:30:00", "timeZone": "UTC"}  # 02:30 local: which one?
    assert (back.start, back.end, back.time_zone) == (before.start, before.end, berlin)
    inside = before.model_copy(update={"start": before.end, "end": before.end + timedelta(hours=2)})
    wire, back = _through_graph(inside, "W. Europe Standard Time")
    assert wire["start"] == {"dateTime": "2021-10-31T00:30:00", "timeZone": "UTC"}
    assert wire["end"] == {"dateTime": "2021-10-31T03:30:00", "timeZone": "W. Europe Standard Time"}
    # The start's zone is UTC in Graph now: the event's own zone is read from the end (F4 keeps it).
    assert (back.start, back.end, back.time_zone) == (inside.start, inside.end, berlin)
    assert timezones.is_exact_wall_time(datetime(2021, 10, 31, 3, 30, tzinfo=timezones.zone(berlin)))
    assert not timezones.is_exact_wall_time(datetime(2021, 10, 31, 2, 30, tzinfo=timezones.zone(berlin)))
    assert not timezones.is_exact_wall_time(datetime(2021, 3, 28, 2, 30, tzinfo=timezones.zone(berlin)))


def test_F4_a_series_start_stays_a_wall_time_in_its_zone_even_when_ambiguous() -> None:
    # Exchange lays out occurrences in the start's zone: a series written in UTC would drift at each change.
    series = Appointment(
        start=datetime(2021, 10, 31, 0, 30, tzinfo=UTC),
        end=datetime(2021, 10, 31, 2, 0, tzinfo=UTC),
        time_zone="Europe/Berlin",
        recurrence=Recurrence(
            pattern=RecurrencePattern(type="weekly", days_of_week=("sunday",)),
            range=RecurrenceRange(type="noEnd", start_date=date(2021, 10, 31), time_zone="Europe/Berlin"),
        ),
    )
    wire = serialize(appointment_to_event(series))
    assert wire["start"] == {"dateTime": "2021-10-31T02:30:00", "timeZone": "W. Europe Standard Time"}
    assert wire["end"] == {"dateTime": "2021-10-31T03:00:00", "timeZone": "W. Europe Standard Time"}


def test_F1_html_bodies_are_reduced_to_text() -> None:
    assert (
        html_to_text("<p>Hello&nbsp;<b>you</b></p><p>Line&amp;2</p><style>x{}</style>") == "Hello you\nLine&2"
    )


# ---- policy ----------------------------------------------------------------------------------------


def test_M1_policy_errors_are_listed_all_at_once() -> None:
    bad = {
        "direction": "sideways",
        "past_days": -1,
        "attendee_cap": 0,
        "sync_users": [
            {"email": "linda@contoso.com", "crm_user_id": "u1"},
            {"email": "not-an-email", "crm_user_id": "u2"},
            {"email": "julie@contoso.com", "primary_mailbox": "linda@contoso.com", "crm_user_id": "u3"},
        ],
        "rooms": [
            {"mailbox": "a@contoso.com", "crm_space_id": "s1", "display_name": "Board Room"},
            {"mailbox": "b@contoso.com", "crm_space_id": "s2", "display_name": "board room"},
        ],
        "default_calendar": "nobody@contoso.com",
        "unknown_setting": 1,
    }
    with pytest.raises(ConfigurationError) as err:
        load_policy(bad)
    problems = err.value.problems
    for expected in (
        "direction:",
        "past_days:",
        "attendee_cap:",
        "sync_users.1.email:",
        "unknown_setting:",
        "ambiguous",
        "already linked",
        "default_calendar:",
    ):
        assert any(expected in p for p in problems), (expected, problems)


def test_S1_policy_loads_from_json_text_and_file_and_defaults_match_the_catalogue(tmp_path: Path) -> None:
    p = Policy()
    assert (p.direction, p.conflict, p.private_events, p.internal_events, p.unmatched_events) == (
        "two_way",
        "m365_wins",
        "without_details",
        "skip",
        "skip",
    )
    assert p.skip_imported and p.recurring == "series" and p.attendee_cap is None
    assert p.delete_policy.m365_to_crm == p.delete_policy.crm_to_m365 == "propagate"
    text = Policy.default().model_dump_json()
    assert load_policy(text) == Policy.default()
    path = tmp_path / "policy.json"
    path.write_text(text)
    assert load_policy(path) == Policy.default()
    assert load_policy(str(path)) == Policy.default()
    with pytest.raises(ConfigurationError):
        load_policy("{not json")
    with pytest.raises(ConfigurationError):
        load_policy(tmp_path / "missing.json")
