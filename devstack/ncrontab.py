"""NCRONTAB schedules as the Functions timer trigger reads them, and their next occurrence in UTC.

Pure: no clock, no I/O. Six fields `{second} {minute} {hour} {day} {month} {day-of-week}`, or five without the
seconds (second 0). Like NCrontab, a day must match both the day-of-month and the day-of-week fields.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
# The Gregorian calendar repeats every 400 years (146,097 days): a schedule with no occurrence in that span
# never fires.
_SEARCH_DAYS = 146_097
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # full names, numbered from `low`; "Mon" and "Monday" both work

    def value(self, text: str) -> int:
        lowered = text.lower()
        for index, name in enumerate(self.names):
            if lowered in (name, name[:3]):
                return self.low + index
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"{self.name}: {text!r} is not a number or name") from None
        if not self.low <= number <= self.high:
            raise ValueError(f"{self.name}: {number} is outside {self.low}-{self.high}")
        return number


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 6, _WEEKDAYS),
)


def _parse_field(text: str, field: _Field) -> tuple[int, ...]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ValueError(f"{field.name}: empty list item in {text!r}")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{field.name}: bad step in {part!r}")
            step = int(step_text)
        if base == "*":
            start, end = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = field.value(first), field.value(last)
            if start > end:
                raise ValueError(f"{field.name}: range {base!r} runs backwards")
        else:
            start = field.value(base)
            # "5/15" means from 5 to the end of the field in steps of 15; a bare "5" is just 5.
            end = field.high if step_text else start
        values.update(range(start, end + 1, step))
    return tuple(sorted(values))


@dataclass(frozen=True)
class Schedule:
    """A parsed NCRONTAB expression; `next_after` gives the first occurrence strictly after a moment."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday, as in cron

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        if len(parts) != 6:
            raise ValueError(
                f"NCRONTAB {expression!r} needs 6 fields ({{second}} {{minute}} {{hour}} {{day}} {{month}} "
                "{day-of-week}) or 5 (without seconds)"
            )
        try:
            fields = [_parse_field(text, field) for text, field in zip(parts, _FIELDS, strict=True)]
        except ValueError as exc:
            raise ValueError(f"NCRONTAB {expression!r}: {exc}") from None
        days, months = fields[3], fields[4]
        if not any(day <= _DAYS_IN_MONTH[month - 1] for month in months for day in days):
            raise ValueError(f"NCRONTAB {expression!r} never fires: no month has any of days {days}")
        return cls(expression, *fields)

    def _day_matches(self, day: date) -> bool:
        weekday = (day.weekday() + 1) % 7  # Python: Monday = 0; cron: Sunday = 0
        return day.month in self.months and day.day in self.days and weekday in self.weekdays

    def _first_time_at_or_after(self, start: time) -> time | None:
        for hour in self.hours[bisect.bisect_left(self.hours, start.hour) :]:
            minute_floor = start.minute if hour == start.hour else 0
            for minute in self.minutes[bisect.bisect_left(self.minutes, minute_floor) :]:
                second_floor = start.second if (hour, minute) == (start.hour, start.minute) else 0
                index = bisect.bisect_left(self.seconds, second_floor)
                if index < len(self.seconds):
                    return time(hour, minute, self.seconds[index])
        return None

    def next_after(self, after: datetime) -> datetime:
        """The first occurrence strictly after `after` (naive means UTC), as an aware UTC datetime."""
        moment = after.replace(tzinfo=UTC) if after.tzinfo is None else after.astimezone(UTC)
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        day, floor = candidate.date(), candidate.time().replace(tzinfo=None)
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                found = self._first_time_at_or_after(floor)
                if found is not None:
                    return datetime.combine(day, found, tzinfo=UTC)
            day, floor = day + timedelta(days=1), time(0, 0, 0)
        raise ValueError(f"NCRONTAB {self.expression!r} never fires (no matching day)")


@functools.lru_cache(maxsize=128)
def parse(expression: str) -> Schedule:
    """Parse (and cache) an NCRONTAB expression; raises ValueError with the offending field."""
    return Schedule.parse(expression)


def next_occurrence(schedule: str, after: datetime) -> datetime:
    """The first time `schedule` fires strictly after `after`, in UTC."""
    return parse(schedule).next_after(after)
