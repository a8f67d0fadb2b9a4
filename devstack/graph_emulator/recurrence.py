"""patternedRecurrence validation and expansion into occurrences (pure functions over SeriesShape)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from dateutil import rrule

from devstack.graph_emulator.errors import bad_request
from devstack.graph_emulator.state import SeriesShape
from devstack.graph_emulator.timezones import zone

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PATTERN_TYPES = ("daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly")
RANGE_TYPES = ("endDate", "noEnd", "numbered")
INDEXES = ("first", "second", "third", "fourth", "last")
_WEEKDAYS = (rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA, rrule.SU)  # in the order of DAYS
_SET_POSITION = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
# A guard against pathological series; Outlook itself caps expansions far below this.
_MAX_STEPS = 200_000


def _canonical(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if isinstance(value, str):
        for option in allowed:
            if option.lower() == value.lower():
                return option
    raise bad_request(f"Invalid {what} '{value}'.")


def _parse_date(value: Any, what: str) -> date:
    if not isinstance(value, str):
        raise bad_request(f"The recurrence range {what} must be a date string.")
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise bad_request(f"Invalid recurrence range {what} '{value}'.") from exc


def normalize(recurrence: Any, event_start_local: date, event_tz: str) -> dict[str, Any] | None:
    """Validate a patternedRecurrence and return it in canonical Graph form (None stays None).

    recurrenceTimeZone defaults to the event's start time zone: "If not specified, the time zone of the
    event is used" (concepts/outlook-schedule-recurring-events.md), and Graph returns it filled in
    (api/user-post-events.md, Response 3).
    """
    if recurrence is None:
        return None
    if not isinstance(recurrence, dict) or not isinstance(recurrence.get("pattern"), dict):
        raise bad_request("The recurrence must have a pattern and a range.")
    pattern_in: dict[str, Any] = recurrence["pattern"]
    range_in: dict[str, Any] = recurrence.get("range") or {}
    ptype = _canonical(pattern_in.get("type"), PATTERN_TYPES, "recurrence pattern type")
    interval = pattern_in.get("interval", 1)
    if not isinstance(interval, int) or interval < 1:
        raise bad_request("The recurrence pattern interval must be a positive integer.")
    days = [_canonical(d, DAYS, "day of week") for d in pattern_in.get("daysOfWeek") or []]
    pattern: dict[str, Any] = {
        "type": ptype,
        "interval": interval,
        "month": int(pattern_in.get("month") or 0),
        "dayOfMonth": int(pattern_in.get("dayOfMonth") or 0),
        "daysOfWeek": days,
        "firstDayOfWeek": _canonical(pattern_in.get("firstDayOfWeek") or "sunday", DAYS, "first day of week"),
        "index": _canonical(pattern_in.get("index") or "first", INDEXES, "week index"),
    }
    if ptype in ("weekly", "relativeMonthly", "relativeYearly") and not days:
        raise bad_request(f"A {ptype} recurrence pattern needs daysOfWeek.")
    if ptype in ("absoluteMonthly", "absoluteYearly") and not 1 <= pattern["dayOfMonth"] <= 31:
        raise bad_request(f"A {ptype} recurrence pattern needs dayOfMonth between 1 and 31.")
    if ptype in ("absoluteYearly", "relativeYearly") and not 1 <= pattern["month"] <= 12:
        raise bad_request(f"A {ptype} recurrence pattern needs month between 1 and 12.")
    rtype = _canonical(range_in.get("type") or "noEnd", RANGE_TYPES, "recurrence range type")
    start = _parse_date(range_in.get("startDate") or event_start_local.isoformat(), "startDate")
    rng: dict[str, Any] = {
        "type": rtype,
        "startDate": start.isoformat(),
        "endDate": "0001-01-01",
        "recurrenceTimeZone": range_in.get("recurrenceTimeZone") or event_tz,
        "numberOfOccurrences": 0,
    }
    if rtype == "endDate":
        end = _parse_date(range_in.get("endDate"), "endDate")
        if end < start:
            raise bad_request("The recurrence range endDate is before its startDate.")
        rng["endDate"] = end.isoformat()
    if rtype == "numbered":
        count = range_in.get("numberOfOccurrences")
        if not isinstance(count, int) or count < 1:
            raise bad_request("A numbered recurrence range needs numberOfOccurrences >= 1.")
        rng["numberOfOccurrences"] = count
    zone(rng["recurrenceTimeZone"])
    return {"pattern": pattern, "range": rng}


def _rule(pattern: dict[str, Any]) -> dict[str, Any]:
    """The pattern as python-dateutil `rrule` arguments (all but dtstart and interval)."""
    ptype = pattern["type"]
    days = [_WEEKDAYS[DAYS.index(d)] for d in pattern["daysOfWeek"]]
    if ptype == "daily":
        return {"freq": rrule.DAILY}
    if ptype == "weekly":
        # firstDayOfWeek decides which days form one week, so which weeks an interval > 1 skips.
        return {
            "freq": rrule.WEEKLY,
            "byweekday": days,
            "wkst": _WEEKDAYS[DAYS.index(pattern["firstDayOfWeek"])],
        }
    args: dict[str, Any]
    if ptype in ("relativeMonthly", "relativeYearly"):
        # "index" counts instances of any of the allowed days: the first Thursday or Friday is the first
        # day in the month that is either (recurrencepattern.md, daysOfWeek and index).
        args = {"byweekday": days, "bysetpos": _SET_POSITION[pattern["index"]]}
    else:
        # As Outlook does, a dayOfMonth past the end of a shorter month falls on that month's last day.
        day = pattern["dayOfMonth"]
        args = {"bymonthday": list(range(min(day, 28), day + 1)), "bysetpos": -1}
    if ptype in ("absoluteMonthly", "relativeMonthly"):
        return {"freq": rrule.MONTHLY, **args}
    return {"freq": rrule.YEARLY, "bymonth": pattern["month"], **args}


def _candidate_dates(pattern: dict[str, Any], start: date) -> Iterator[date]:
    """Dates the pattern produces on or after `start`, ascending, without any range limit.

    The series begins on the first date on or after `start` that fits the pattern, and the interval
    counts from there: "the first Thursday of every other month starting August 29, 2017" begins in
    September, not in October (concepts/outlook-schedule-recurring-events.md).
    """
    rule = _rule(pattern)
    first = next(iter(rrule.rrule(dtstart=datetime.combine(start, time()), count=1, **rule)), None)
    if first is None:
        return
    for moment in rrule.rrule(dtstart=first, interval=pattern["interval"], **rule):
        yield moment.date()


def series_dates(shape: SeriesShape, until: datetime) -> Iterator[tuple[str, datetime, datetime]]:
    """(occurrence key, start, end) for the regular occurrences starting before `until`.

    Keys are the original local dates ('YYYY-MM-DD'); cancelled and modified occurrences are
    still yielded here (callers apply exceptions and cancellations).
    """
    recurrence = shape.recurrence
    if recurrence is None:
        return
    tz = zone(shape.tz_name)
    local_start = shape.start.astimezone(tz)
    duration = shape.end - shape.start
    rng = recurrence["range"]
    range_start = date.fromisoformat(rng["startDate"])
    range_end = date.fromisoformat(rng["endDate"]) if rng["type"] == "endDate" else None
    remaining = rng["numberOfOccurrences"] if rng["type"] == "numbered" else None
    for steps, day in enumerate(_candidate_dates(recurrence["pattern"], range_start)):
        if steps > _MAX_STEPS or (range_end is not None and day > range_end):
            return
        if remaining is not None:
            if remaining <= 0:
                return
            remaining -= 1
        occ_start = datetime.combine(day, local_start.timetz().replace(tzinfo=None), tzinfo=tz).astimezone(
            UTC
        )
        if occ_start >= until:
            return
        yield day.isoformat(), occ_start, occ_start + duration


def neighbours(shape: SeriesShape, key: str) -> tuple[str | None, str | None]:
    """The keys of the live occurrences just before and just after occurrence `key` (None at an end)."""
    previous: str | None = None
    for occ_key, _, _ in series_dates(shape, datetime.max.replace(tzinfo=UTC)):
        if occ_key in shape.cancelled:
            continue
        if occ_key < key:
            previous = occ_key
        elif occ_key > key:
            return previous, occ_key
    return previous, None


def overlaps(start: datetime, end: datetime, window_start: datetime, window_end: datetime) -> bool:
    if start == end:
        return window_start <= start < window_end
    return start < window_end and end > window_start


def instances(
    shape: SeriesShape, window_start: datetime, window_end: datetime
) -> list[tuple[str, datetime, datetime, bool]]:
    """(key, start, end, is_exception) for the series' live instances overlapping the window."""
    found: list[tuple[str, datetime, datetime, bool]] = []
    for key, start, end in series_dates(shape, window_end + (shape.end - shape.start) + timedelta(days=1)):
        if key in shape.cancelled or key in shape.exceptions:
            continue
        if overlaps(start, end, window_start, window_end):
            found.append((key, start, end, False))
    for key, (start, end) in shape.exceptions.items():
        if key not in shape.cancelled and overlaps(start, end, window_start, window_end):
            found.append((key, start, end, True))
    found.sort(key=lambda item: (item[1], item[0]))
    return found


def has_occurrence(shape: SeriesShape, key: str) -> bool:
    """Whether the series produces an occurrence on the original date `key` (cancelled or not)."""
    if key in shape.exceptions:
        return True
    target = date.fromisoformat(key)
    horizon = datetime.combine(target + timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    return any(occ_key == key for occ_key, _, _ in series_dates(shape, horizon))
