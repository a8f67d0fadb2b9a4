"""Graph's patternedRecurrence (our `Recurrence`) to and from the pattern columns of Dataverse's
recurringappointmentmaster, exactly or refused with the reason (UnprocessableError). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from sync_core.domain import timezones
from sync_core.domain.model import Recurrence, RecurrencePattern, RecurrenceRange
from sync_core.errors import UnprocessableError

# Columns and ranges: the recurringappointmentmaster entity reference (MicrosoftDocs/powerapps-docs@
# 05cfff5341d4db7cec326318fdd63b9618e9c206:powerapps-docs/developer/data-platform/reference/entities/
# recurringappointmentmaster.md): recurrencepatterntype 0 Daily, 1 Weekly, 2 Monthly, 3 Yearly; interval
# 1-1000; daysofweekmask 1-127 (Sunday 0x01 ... Saturday 0x40, as microsoft/PowerApps-Samples'
# CRUDRecurringAppointment sample defines it); dayofmonth 1-31; monthofyear 1-12; instance 1 First ...
# 4 Fourth, 5 Last; isnthmonthly/isnthyearly (the relative patterns); isweekdaypattern (weekly "every
# weekday"); firstdayofweek 0-6; patternstartdate/patternenddate (dates); patternendtype 1 No End Date,
# 2 Occurrences, 3 Pattern End Date; occurrences 1-999; the zone is utcconversiontimezonecode (below).
SIDE = "crm"
DAILY, WEEKLY, MONTHLY, YEARLY = 0, 1, 2, 3
NO_END, OCCURRENCES, END_DATE = 1, 2, 3
MAX_OCCURRENCES = 999  # recurringappointmentmaster.occurrences MaxValue
MAX_INTERVAL = 1000  # recurringappointmentmaster.interval MaxValue
DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")  # bit i = 1 << i
WEEKDAYS_MASK = 0b0111110  # Monday to Friday: isweekdaypattern's days
INDEXES = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": 5}  # recurringappointmentmaster.instance
_RANGE_TYPES = {"noEnd": NO_END, "numbered": OCCURRENCES, "endDate": END_DATE}
# Microsoft time zone index values (https://learn.microsoft.com/en-us/previous-versions/windows/embedded/
# ms912391(v=winembedded.11)), which timezonedefinition.timezonecode uses; UTC (92) is Dataverse's
# "(GMT) Coordinated Universal Time", later than that table. A zone not listed is refused, never guessed.
ZONE_CODES: dict[str, int] = {
    "Pacific Standard Time": 4,
    "Mountain Standard Time": 10,
    "Central Standard Time": 20,
    "Eastern Standard Time": 35,
    "GMT Standard Time": 85,
    "UTC": 92,
    "Central Europe Standard Time": 95,
    "Central European Standard Time": 100,
    "Romance Standard Time": 105,
    "W. Europe Standard Time": 110,
    "Tokyo Standard Time": 235,
    "AUS Eastern Standard Time": 255,
}
_CODE_ZONES = {code: name for name, code in ZONE_CODES.items()}
PATTERN_COLUMNS = (
    "recurrencepatterntype",
    "interval",
    "daysofweekmask",
    "dayofmonth",
    "monthofyear",
    "instance",
    "isnthmonthly",
    "isnthyearly",
    "isweekdaypattern",
    "firstdayofweek",
    "patternstartdate",
    "patternendtype",
    "patternenddate",
    "occurrences",
    "utcconversiontimezonecode",
)


def _refuse(reason: str, item_id: str | None) -> UnprocessableError:
    return UnprocessableError(f"Dataverse cannot hold this recurrence: {reason}", side=SIDE, item_id=item_id)


def zone_code(name: str, *, item_id: str | None = None) -> int:
    """The time zone code of an IANA or Windows zone name; refused when no code is known for it."""
    windows = timezones.to_windows(name)
    if windows is None or windows not in ZONE_CODES:
        raise _refuse(f"no Dataverse time zone code is known for {name!r}", item_id)
    return ZONE_CODES[windows]


def zone_name(code: int) -> str:
    """The IANA name of a time zone code (UTC for UTC); ValueError when the code is not one we know."""
    if code not in _CODE_ZONES:
        raise ValueError(f"unknown Dataverse time zone code {code}")
    return timezones.to_iana(_CODE_ZONES[code]) or "UTC"


def days_mask(days: tuple[str, ...]) -> int:
    return sum(1 << DAYS.index(d) for d in set(days))


def mask_days(mask: int) -> tuple[str, ...]:
    """The days of a mask in Graph's order (Sunday first)."""
    return tuple(d for i, d in enumerate(DAYS) if mask & (1 << i))


def wire_date(value: date) -> str:
    """A DateOnly column as written: midnight UTC of the date."""
    return f"{value.isoformat()}T00:00:00Z"


def read_date(value: Any) -> date:
    if not isinstance(value, str) or len(value) < 10:
        raise ValueError(f"not a date: {value!r}")
    return date.fromisoformat(value[:10])


def _check_unused(p: RecurrencePattern, item_id: str | None) -> None:
    """Fields a pattern type does not use must hold Graph's defaults: Dataverse has nowhere to keep them."""
    relative = p.type in ("relativeMonthly", "relativeYearly")
    uses_days = p.type in ("weekly", "relativeMonthly", "relativeYearly")
    uses_day_of_month = p.type in ("absoluteMonthly", "absoluteYearly")
    uses_month = p.type in ("absoluteYearly", "relativeYearly")
    unused = []
    if not uses_days and p.days_of_week:
        unused.append(f"daysOfWeek {list(p.days_of_week)}")
    if not relative and p.index != "first":
        unused.append(f"index {p.index!r}")
    if not uses_day_of_month and p.day_of_month:
        unused.append(f"dayOfMonth {p.day_of_month}")
    if not uses_month and p.month:
        unused.append(f"month {p.month}")
    if unused:
        raise _refuse(f"a {p.type} pattern with {', '.join(unused)}", item_id)
    if uses_days and not p.days_of_week:
        raise _refuse(f"a {p.type} pattern needs daysOfWeek", item_id)
    if uses_day_of_month and not 1 <= p.day_of_month <= 31:
        raise _refuse(f"dayOfMonth {p.day_of_month} is outside 1-31", item_id)
    if uses_month and not 1 <= p.month <= 12:
        raise _refuse(f"month {p.month} is outside 1-12", item_id)


def to_columns(rec: Recurrence, *, item_id: str | None = None) -> dict[str, Any]:
    """The pattern and range columns of a recurringappointmentmaster for `rec`, or UnprocessableError."""
    p, r = rec.pattern, rec.range
    kinds = {"daily": DAILY, "weekly": WEEKLY, "absoluteMonthly": MONTHLY, "relativeMonthly": MONTHLY}
    kinds |= {"absoluteYearly": YEARLY, "relativeYearly": YEARLY}
    if p.type not in kinds:
        raise _refuse(f"unknown pattern type {p.type!r}", item_id)
    if not 1 <= p.interval <= MAX_INTERVAL:
        raise _refuse(f"interval {p.interval} is outside 1-{MAX_INTERVAL}", item_id)
    bad_days = [d for d in (*p.days_of_week, p.first_day_of_week) if d not in DAYS]
    if bad_days or p.index not in INDEXES:
        raise _refuse(f"unknown day or index {bad_days or p.index!r}", item_id)
    _check_unused(p, item_id)
    if r.type not in _RANGE_TYPES:
        raise _refuse(f"unknown range type {r.type!r}", item_id)
    relative = p.type in ("relativeMonthly", "relativeYearly")
    row: dict[str, Any] = {
        "recurrencepatterntype": kinds[p.type],
        "interval": p.interval,
        "daysofweekmask": days_mask(p.days_of_week) if p.days_of_week else None,
        "dayofmonth": p.day_of_month or None,
        "monthofyear": p.month or None,
        "instance": INDEXES[p.index] if relative else None,
        "isnthmonthly": p.type == "relativeMonthly",
        "isnthyearly": p.type == "relativeYearly",
        "isweekdaypattern": False,
        "firstdayofweek": DAYS.index(p.first_day_of_week),
        "patternstartdate": wire_date(r.start_date),
        "patternendtype": _RANGE_TYPES[r.type],
        "patternenddate": None,
        "occurrences": None,
        "utcconversiontimezonecode": zone_code(r.time_zone, item_id=item_id),
    }
    if r.type == "numbered":
        if not 1 <= r.number_of_occurrences <= MAX_OCCURRENCES:
            raise _refuse(
                f"{r.number_of_occurrences} occurrences (Dataverse holds 1 to {MAX_OCCURRENCES})", item_id
            )
        row["occurrences"] = r.number_of_occurrences
    elif r.number_of_occurrences:
        raise _refuse(f"numberOfOccurrences {r.number_of_occurrences} in a {r.type} range", item_id)
    if r.type == "endDate":
        if r.end_date is None or r.end_date < r.start_date:
            raise _refuse(f"endDate {r.end_date} is not on or after startDate {r.start_date}", item_id)
        row["patternenddate"] = wire_date(r.end_date)
    elif r.end_date is not None:
        raise _refuse(f"endDate {r.end_date} in a {r.type} range", item_id)
    return row


def _int(row: Mapping[str, Any], column: str, default: int = 0) -> int:
    value = row.get(column)
    return default if value is None else int(value)


def from_columns(row: Mapping[str, Any], *, kept: Recurrence | None = None) -> Recurrence:
    """The recurrence a recurringappointmentmaster row describes. `kept` (what we wrote, from our sidecar)
    is returned as it is when its columns are the row's: the zone's own name and the days' order survive.
    ValueError for a row that names no pattern we know."""
    if kept is not None:
        try:
            if all(_same(row.get(c), v) for c, v in to_columns(kept).items()):
                return kept
        except UnprocessableError:
            pass
    kind = _int(row, "recurrencepatterntype", -1)
    mask = _int(row, "daysofweekmask")
    interval = _int(row, "interval", 1)
    first_day = DAYS[_int(row, "firstdayofweek") % 7]
    index = {v: k for k, v in INDEXES.items()}.get(_int(row, "instance", 1), "first")
    days, day_of_month, month, ptype = mask_days(mask), _int(row, "dayofmonth"), _int(row, "monthofyear"), ""
    if kind == DAILY:
        ptype, days = "daily", ()
    elif kind == WEEKLY:
        ptype = "weekly"
        if row.get("isweekdaypattern"):
            days, interval = mask_days(WEEKDAYS_MASK), 1
    elif kind == MONTHLY:
        ptype = "relativeMonthly" if row.get("isnthmonthly") else "absoluteMonthly"
    elif kind == YEARLY:
        ptype = "relativeYearly" if row.get("isnthyearly") else "absoluteYearly"
    else:
        raise ValueError(f"unknown recurrencepatterntype {row.get('recurrencepatterntype')!r}")
    relative = ptype in ("relativeMonthly", "relativeYearly")
    pattern = RecurrencePattern(
        type=ptype,
        interval=interval,
        days_of_week=days if ptype in ("weekly", "relativeMonthly", "relativeYearly") else (),
        day_of_month=day_of_month if ptype in ("absoluteMonthly", "absoluteYearly") else 0,
        month=month if ptype in ("absoluteYearly", "relativeYearly") else 0,
        index=index if relative else "first",
        first_day_of_week=first_day,
    )
    end_type = _int(row, "patternendtype", NO_END)
    rng = RecurrenceRange(
        type={v: k for k, v in _RANGE_TYPES.items()}.get(end_type, "noEnd"),
        start_date=read_date(row.get("patternstartdate")),
        end_date=read_date(row.get("patternenddate")) if end_type == END_DATE else None,
        number_of_occurrences=_int(row, "occurrences") if end_type == OCCURRENCES else 0,
        time_zone=zone_name(_int(row, "utcconversiontimezonecode", ZONE_CODES["UTC"])),
    )
    return Recurrence(pattern=pattern, range=rng)


def _same(have: Any, wanted: Any) -> bool:
    if isinstance(wanted, str) and isinstance(have, str):
        return have[:10] == wanted[:10] if wanted.endswith("T00:00:00Z") else have == wanted
    if isinstance(wanted, bool):
        return bool(have) == wanted
    return bool(have == wanted)
