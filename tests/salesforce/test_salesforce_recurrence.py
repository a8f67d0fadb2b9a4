"""The Recurrence2 codec (sync_core/adapters/crm/salesforce_recurrence.py): Graph's patternedRecurrence to an
RRULE and back exactly, and the RRULE, expanded by python-dateutil, names the same occurrences as the Graph
pattern expanded by the Graph emulator's own expander (Graph's documented semantics, not the codec's)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sync_core.adapters.crm.salesforce_recurrence import (
    DAYS,
    Recurrence2,
    canonical,
    from_recurrence2,
    to_recurrence2,
)
from sync_core.domain.model import Recurrence, RecurrencePattern, RecurrenceRange
from sync_core.errors import UnprocessableError
from tests.graph_recurrence import graph_series

ZONES = ("UTC", "Europe/Paris", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Australia/Sydney")
COMPARED = 40  # occurrences compared per pattern (a series with no end goes on)
HORIZON = datetime(2200, 1, 1, tzinfo=UTC)


@st.composite
def recurrences(draw: st.DrawFn) -> tuple[Recurrence, time]:
    kind = draw(
        st.sampled_from(
            ("daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly")
        )
    )
    month = draw(st.integers(1, 12)) if kind.endswith("Yearly") else 0
    if kind == "absoluteMonthly":
        day = draw(st.one_of(st.integers(1, 28), st.just(31)))
    elif kind == "absoluteYearly":
        day = draw(st.integers(1, 29 if month == 2 else 31 if month in (1, 3, 5, 7, 8, 10, 12) else 30))
    else:
        day = 0
    if kind == "weekly":
        days = tuple(draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True)))
    elif kind.startswith("relative"):
        days = (draw(st.sampled_from(DAYS)),)
    else:
        days = ()
    pattern = RecurrencePattern(
        type=kind,
        interval=draw(st.integers(1, 4)),
        days_of_week=days,
        day_of_month=day,
        month=month,
        index=draw(st.sampled_from(("first", "second", "third", "fourth", "last")))
        if kind.startswith("relative")
        else "first",
        first_day_of_week=draw(st.sampled_from(DAYS)),
    )
    start = draw(st.dates(date(2020, 1, 1), date(2034, 12, 31)))
    range_type = draw(st.sampled_from(("endDate", "noEnd", "numbered")))
    rng = RecurrenceRange(
        type=range_type,
        start_date=start,
        end_date=start + timedelta(days=draw(st.integers(400, 1500))) if range_type == "endDate" else None,
        number_of_occurrences=draw(st.integers(1, 60)) if range_type == "numbered" else 0,
        time_zone=draw(st.sampled_from(ZONES)),
    )
    wall = time(draw(st.integers(0, 23)), draw(st.sampled_from((0, 15, 30, 45))))
    zone = ZoneInfo("Etc/UTC" if rng.time_zone == "UTC" else rng.time_zone)
    master = datetime.combine(start, wall, tzinfo=zone)
    assume(master.astimezone(UTC).astimezone(zone).time() == wall)  # the series' start is a real wall time
    return Recurrence(pattern=pattern, range=rng), wall


def graph_occurrences(rec: Recurrence, wall: time) -> list[datetime]:
    zone = ZoneInfo("Etc/UTC" if rec.range.time_zone == "UTC" else rec.range.time_zone)
    start = datetime.combine(rec.range.start_date, wall, tzinfo=zone).astimezone(UTC)
    return [s for s, _ in graph_series(rec, start, start + timedelta(hours=1), COMPARED, HORIZON)]


def rrule_occurrences(fields: Recurrence2) -> list[datetime]:
    zone = ZoneInfo("Etc/UTC" if fields.time_zone == "GMT" else fields.time_zone)
    rule = rrulestr(fields.text, dtstart=fields.start.astimezone(zone))
    moments = (m.astimezone(UTC) for m in rule)
    return [m for m in islice(moments, COMPARED) if m < HORIZON]


def gap(rec: Recurrence, wall: time, expected: list[datetime]) -> bool:
    """The emulator's first occurrence has no exact wall time (a clock set forward): refused, not compared."""
    zone = ZoneInfo("Etc/UTC" if rec.range.time_zone == "UTC" else rec.range.time_zone)
    return bool(expected) and expected[0].astimezone(zone).time() != wall


@settings(
    max_examples=1000,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(recurrences())
def test_a_graph_pattern_round_trips_exactly_and_its_rrule_names_the_same_occurrences(
    case: tuple[Recurrence, time],
) -> None:
    rec, wall = case
    expected = graph_occurrences(rec, wall)
    if not expected or gap(rec, wall, expected):
        with pytest.raises(UnprocessableError):
            to_recurrence2(rec, wall)
        return
    fields = to_recurrence2(rec, wall)
    assert fields.text.startswith("RRULE:FREQ=")
    assert fields.start == expected[0]  # Recurrence2PatternStartDate: the first occurrence
    zone = ZoneInfo("Etc/UTC" if rec.range.time_zone == "UTC" else rec.range.time_zone)
    first = rec.range.model_copy(update={"start_date": expected[0].astimezone(zone).date()})
    assert from_recurrence2(fields) == rec.model_copy(update={"range": first})  # exact from the first date
    assert canonical(rec) == rec.model_copy(update={"range": first})
    assert to_recurrence2(canonical(rec), wall) == fields  # the canonical form writes the same fields
    assert rrule_occurrences(fields) == expected


def _weekly(**pattern: Any) -> Recurrence:
    return Recurrence(
        pattern=RecurrencePattern(type="weekly", days_of_week=("monday",), **pattern),
        range=RecurrenceRange(type="numbered", start_date=date(2026, 3, 2), number_of_occurrences=13),
    )


def test_the_documented_example_reads_as_weekly_on_mondays_thirteen_times() -> None:
    # RRULE of the Change Data Capture guide's "Recurring Activities" example
    fields = Recurrence2(
        "RRULE:FREQ=WEEKLY;BYDAY=MO;WKST=SU;INTERVAL=1;COUNT=13",
        datetime(2024, 5, 6, 17, 0, tzinfo=UTC),
        "America/Los_Angeles",
    )
    rec = from_recurrence2(fields)
    assert rec.pattern == RecurrencePattern(type="weekly", days_of_week=("monday",))
    assert rec.range == RecurrenceRange(
        type="numbered",
        start_date=date(2024, 5, 6),
        number_of_occurrences=13,
        time_zone="America/Los_Angeles",
    )
    assert to_recurrence2(rec, time(10, 0)) == fields


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (RecurrencePattern(type="relativeMonthly", days_of_week=("monday", "friday")), "one weekday"),
        (RecurrencePattern(type="absoluteMonthly", day_of_month=30), "cannot say"),
        (RecurrencePattern(type="absoluteYearly", day_of_month=30, month=2), "does not exist"),
        (RecurrencePattern(type="hourly"), "not one Graph defines"),
    ],
)
def test_a_pattern_salesforce_cannot_hold_is_refused_with_the_reason(
    pattern: RecurrencePattern, reason: str
) -> None:
    rec = Recurrence(pattern=pattern, range=RecurrenceRange(type="noEnd", start_date=date(2026, 1, 1)))
    with pytest.raises(UnprocessableError, match=reason):
        to_recurrence2(rec, time(9, 0))


def test_an_unknown_time_zone_is_refused() -> None:
    rec = _weekly().model_copy(
        update={"range": _weekly().range.model_copy(update={"time_zone": "Mars/Olympus"})}
    )
    with pytest.raises(UnprocessableError, match="Mars/Olympus"):
        to_recurrence2(rec, time(9, 0))


@pytest.mark.parametrize(
    "text",
    [
        "RRULE:FREQ=MONTHLY;BYDAY=MO,FR;BYSETPOS=1",
        "RRULE:FREQ=HOURLY;INTERVAL=2",
        "RRULE:FREQ=MONTHLY;BYDAY=MO",
        "RRULE:FREQ=WEEKLY;BYDAY=MO\nEXDATE:20260309T090000Z",
        "RRULE:FREQ=MONTHLY;BYDAY=5MO",
    ],
)
def test_an_rrule_outside_the_subset_is_refused_not_reshaped(text: str) -> None:
    with pytest.raises(UnprocessableError):
        from_recurrence2(Recurrence2(text, datetime(2026, 3, 2, 9, tzinfo=UTC), "GMT"))


def test_every_weekday_written_as_a_daily_rule_reads_as_graphs_weekly_pattern() -> None:
    fields = Recurrence2(
        "RRULE:FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;UNTIL=20260331T235959Z",
        datetime(2026, 3, 2, 9, tzinfo=UTC),
        "GMT",
    )
    rec = from_recurrence2(fields)
    assert rec.pattern.type == "weekly" and len(rec.pattern.days_of_week) == 5
    assert rec.pattern.first_day_of_week == "monday"  # RFC 5545's WKST default
    assert rec.range.type == "endDate" and rec.range.end_date == date(2026, 3, 31)


def test_until_before_the_series_time_ends_the_day_before() -> None:
    fields = Recurrence2(
        "RRULE:FREQ=DAILY;UNTIL=20260310T080000Z", datetime(2026, 3, 2, 9, tzinfo=UTC), "GMT"
    )
    assert from_recurrence2(fields).range.end_date == date(2026, 3, 9)


def test_a_windows_zone_name_is_written_by_its_iana_name() -> None:
    rec = _weekly().model_copy(
        update={"range": _weekly().range.model_copy(update={"time_zone": "W. Europe Standard Time"})}
    )
    assert to_recurrence2(rec, time(9, 0)).time_zone == "Europe/Berlin"


def test_a_first_occurrence_in_a_clock_change_gap_is_refused() -> None:
    rec = Recurrence(
        pattern=RecurrencePattern(type="weekly", days_of_week=("sunday",)),
        range=RecurrenceRange(type="noEnd", start_date=date(2026, 3, 29), time_zone="Europe/Paris"),
    )
    with pytest.raises(UnprocessableError, match="clock change gap"):
        to_recurrence2(rec, time(2, 30))  # Paris goes from 02:00 to 03:00 on 29 March 2026
