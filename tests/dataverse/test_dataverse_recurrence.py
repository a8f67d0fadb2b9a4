"""R1: the Dataverse recurrence codec round-trips every pattern a recurringappointmentmaster can hold, and the
occurrences its columns describe (expanded by the Dataverse emulator) are the Graph pattern's (expanded by the
Graph emulator); what Dataverse cannot hold is refused with the reason."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devstack.dataverse_emulator.series import occurrences as dataverse_occurrences
from sync_core.adapters.crm.dataverse_recurrence import DAYS, ZONE_CODES, from_columns, to_columns
from sync_core.domain import timezones
from sync_core.domain.model import Recurrence, RecurrencePattern, RecurrenceRange
from sync_core.errors import UnprocessableError
from tests.graph_recurrence import graph_series

ZONES = sorted(timezones.to_iana(name) or "UTC" for name in ZONE_CODES)
INDEXES = ("first", "second", "third", "fourth", "last")
TYPES = ("daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly")
COMPARED = 25  # occurrences compared per series


@st.composite
def patterns(draw: st.DrawFn, *, interval_max: int = 1000) -> RecurrencePattern:
    kind = draw(st.sampled_from(TYPES))
    days: tuple[str, ...] = ()
    if kind in ("weekly", "relativeMonthly", "relativeYearly"):
        chosen = draw(st.sets(st.sampled_from(DAYS), min_size=1))
        days = tuple(d for d in DAYS if d in chosen)  # Graph's order, Sunday first
    return RecurrencePattern(
        type=kind,
        interval=draw(st.integers(1, interval_max)),
        days_of_week=days,
        day_of_month=draw(st.integers(1, 31)) if kind in ("absoluteMonthly", "absoluteYearly") else 0,
        month=draw(st.integers(1, 12)) if kind in ("absoluteYearly", "relativeYearly") else 0,
        index=draw(st.sampled_from(INDEXES)) if kind in ("relativeMonthly", "relativeYearly") else "first",
        first_day_of_week=draw(st.sampled_from(DAYS)),
    )


@st.composite
def recurrences(draw: st.DrawFn, *, interval_max: int = 1000) -> Recurrence:
    start = draw(st.dates(date(2020, 1, 1), date(2031, 12, 31)))
    kind = draw(st.sampled_from(("noEnd", "numbered", "endDate")))
    rng = RecurrenceRange(
        type=kind,
        start_date=start,
        end_date=start + timedelta(days=draw(st.integers(0, 3000))) if kind == "endDate" else None,
        number_of_occurrences=draw(st.integers(1, 999)) if kind == "numbered" else 0,
        time_zone=draw(st.sampled_from(ZONES)),
    )
    return Recurrence(pattern=draw(patterns(interval_max=interval_max)), range=rng)


@settings(max_examples=300, deadline=None)
@given(recurrences())
def test_R1_every_pattern_dataverse_can_hold_round_trips_exactly(rec: Recurrence) -> None:
    assert from_columns(to_columns(rec)) == rec


@settings(max_examples=100, deadline=None)
@given(
    recurrences(),
    st.sampled_from(("Europe/Amsterdam", "W. Europe Standard Time", "Europe/Rome")),
    st.randoms(),
)
def test_R1_the_zone_name_and_the_day_order_we_wrote_come_back_when_the_columns_are_unchanged(
    rec: Recurrence, zone: str, rnd: Any
) -> None:
    days = list(rec.pattern.days_of_week)
    rnd.shuffle(days)
    ours = rec.model_copy(
        update={
            "pattern": rec.pattern.model_copy(update={"days_of_week": tuple(days)}),
            "range": rec.range.model_copy(update={"time_zone": zone}),
        }
    )
    row = to_columns(ours)
    assert from_columns(row, kept=ours) == ours
    changed = row | {"interval": rec.pattern.interval % 1000 + 1}
    assert from_columns(changed, kept=ours).range.time_zone == "Europe/Berlin"  # the columns win


@settings(max_examples=200, deadline=None)
@given(recurrences(interval_max=12), st.times(), st.integers(0, 600))
def test_R1_the_columns_describe_the_occurrences_of_the_graph_pattern(
    rec: Recurrence, wall: time, minutes: int
) -> None:
    zone = ZoneInfo(timezones.to_iana(rec.range.time_zone) or "UTC")
    start = datetime.combine(rec.range.start_date, wall.replace(microsecond=0), tzinfo=zone).astimezone(UTC)
    end = start + timedelta(minutes=minutes)
    graph = graph_series(rec, start, end, COMPARED)
    row = to_columns(rec) | {
        "starttime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "endtime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert dataverse_occurrences(row, COMPARED) == graph


def _rec(pattern: dict[str, Any] | None = None, **rng: Any) -> Recurrence:
    base = {"type": "weekly", "days_of_week": ("monday",)}
    return Recurrence(
        pattern=RecurrencePattern.model_validate(base | (pattern or {})),
        range=RecurrenceRange.model_validate({"type": "noEnd", "start_date": date(2026, 3, 2)} | rng),
    )


@pytest.mark.parametrize(
    ("rec", "reason"),
    [
        (_rec(type="numbered", number_of_occurrences=1000), "1000 occurrences"),
        (_rec({"interval": 1001}), "interval 1001"),
        (_rec(time_zone="Asia/Kathmandu"), "no Dataverse time zone code"),
        (_rec({"type": "daily"}), "a daily pattern with daysOfWeek"),
        (_rec({"days_of_week": ()}), "needs daysOfWeek"),
        (_rec({"index": "second"}), "a weekly pattern with index"),
        (_rec({"type": "absoluteMonthly", "days_of_week": (), "day_of_month": 0}), "dayOfMonth 0"),
        (_rec({"type": "hourly"}), "unknown pattern type"),
        (_rec(type="endDate", end_date=date(2026, 3, 1)), "not on or after startDate"),
    ],
)
def test_R1_what_dataverse_cannot_hold_is_refused_with_the_reason(rec: Recurrence, reason: str) -> None:
    with pytest.raises(UnprocessableError, match=reason):
        to_columns(rec)


def test_R1_a_dataverse_users_every_weekday_series_reads_as_weekly_monday_to_friday() -> None:
    row = to_columns(_rec()) | {"isweekdaypattern": True, "daysofweekmask": 62, "interval": 1}
    read = from_columns(row)
    assert read.pattern.type == "weekly" and read.pattern.days_of_week == DAYS[1:6]


@st.composite
def dataverse_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A recurringappointmentmaster's pattern columns as a Dataverse user's series may hold them."""
    kind = draw(st.integers(0, 3))
    nth = draw(st.booleans())
    start = draw(st.dates(date(2020, 1, 1), date(2031, 12, 31)))
    end_type = draw(st.integers(1, 3))
    return {
        "recurrencepatterntype": kind,
        "interval": draw(st.integers(1, 12)),
        "daysofweekmask": draw(st.integers(1, 127)) if kind == 1 or (kind in (2, 3) and nth) else None,
        "dayofmonth": draw(st.integers(1, 31)) if kind in (2, 3) and not nth else None,
        "monthofyear": draw(st.integers(1, 12)) if kind == 3 else None,
        "instance": draw(st.integers(1, 5)) if kind in (2, 3) and nth else None,
        "isnthmonthly": kind == 2 and nth,
        "isnthyearly": kind == 3 and nth,
        "isweekdaypattern": kind == 1 and draw(st.booleans()),
        "firstdayofweek": draw(st.integers(0, 6)),
        "patternstartdate": f"{start.isoformat()}T00:00:00Z",
        "patternendtype": end_type,
        "occurrences": draw(st.integers(1, 999)) if end_type == 2 else None,
        "patternenddate": f"{(start + timedelta(days=draw(st.integers(0, 3000)))).isoformat()}T00:00:00Z"
        if end_type == 3
        else None,
        "utcconversiontimezonecode": draw(st.sampled_from(sorted(ZONE_CODES.values()))),
    }


@settings(max_examples=200, deadline=None)
@given(dataverse_rows(), st.times())
def test_R1_what_a_dataverse_users_series_is_read_as_has_the_same_occurrences(
    row: dict[str, Any], wall: time
) -> None:
    rec = from_columns(row)
    zone = ZoneInfo(timezones.to_iana(rec.range.time_zone) or "UTC")
    start = datetime.combine(rec.range.start_date, wall.replace(microsecond=0), tzinfo=zone).astimezone(UTC)
    stamp = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    graph = graph_series(rec, start, start, COMPARED)
    assert dataverse_occurrences(row | {"starttime": stamp, "endtime": stamp}, COMPARED) == graph
