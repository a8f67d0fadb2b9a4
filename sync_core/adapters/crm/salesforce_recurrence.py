"""Graph's patternedRecurrence (our `Recurrence`) to and from Salesforce's Recurrence2 fields (an RFC 5545
RRULE, the first occurrence, the zone), exactly; what the RRULE subset written cannot say is refused with the
reason. Pure. Sources and the subset: docs/connectors/salesforce.md, "Event series (Recurrence2)"."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sync_core.domain import timezones
from sync_core.domain.model import Appointment, Recurrence, RecurrencePattern, RecurrenceRange
from sync_core.errors import UnprocessableError

SIDE = "crm"
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")  # in the order of DAYS (date.weekday())
INDEX_TO_N = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
N_TO_INDEX = {n: i for i, n in INDEX_TO_N.items()}
FREQ = {
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "absoluteMonthly": "MONTHLY",
    "relativeMonthly": "MONTHLY",
    "absoluteYearly": "YEARLY",
    "relativeYearly": "YEARLY",
}
UTC_ZONE = "GMT"  # Salesforce's TimeZoneSidKey for UTC
_END_OF_DAY = time(23, 59, 59)
_PARTS = ("FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYMONTH", "WKST", "COUNT", "UNTIL")
_FIRST_WITHIN_DAYS = 800  # every supported pattern meets a date within two years of any start


@dataclass(frozen=True)
class Recurrence2:
    """The Recurrence2 fields of a series' Event row."""

    text: str  # Recurrence2PatternText
    start: datetime  # Recurrence2PatternStartDate: the first occurrence's start, aware UTC
    time_zone: str  # Recurrence2PatternTimeZone: an IANA name (a TimeZoneSidKey), GMT for UTC


def _refuse(reason: str, item_id: str | None) -> UnprocessableError:
    return UnprocessableError(f"Salesforce event series: {reason}", side=SIDE, item_id=item_id)


def _leap_length(month: int) -> int:
    return calendar.monthrange(2000, month)[1]  # 2000 is a leap year: February has 29 days


def _fits(pattern: RecurrencePattern, day: date) -> bool:
    """Whether `day` is one of the pattern's dates, the interval aside (Graph's semantics)."""
    kind = pattern.type
    if kind == "daily":
        return True
    if kind == "weekly":
        return DAYS[day.weekday()] in pattern.days_of_week
    if kind in ("absoluteYearly", "relativeYearly") and day.month != pattern.month:
        return False
    length = calendar.monthrange(day.year, day.month)[1]
    if kind in ("absoluteMonthly", "absoluteYearly"):  # past a shorter month's end: its last day
        return day.day == min(pattern.day_of_month, length)
    if DAYS[day.weekday()] != pattern.days_of_week[0]:
        return False
    n = INDEX_TO_N[pattern.index]
    return day.day + 7 > length if n == -1 else (day.day - 1) // 7 + 1 == n


def first_date(rec: Recurrence) -> date:
    """The series' first occurrence: the first date on or after the range's start the pattern fits."""
    day = rec.range.start_date
    for _ in range(_FIRST_WITHIN_DAYS):
        if _fits(rec.pattern, day):
            return day
        day += timedelta(days=1)
    raise _refuse(f"the pattern {rec.pattern.type} meets no date", None)


def _check(rec: Recurrence, item_id: str | None) -> None:
    p, r = rec.pattern, rec.range
    if p.type not in FREQ:
        raise _refuse(f"pattern type {p.type!r} is not one Graph defines", item_id)
    if p.interval < 1:
        raise _refuse(f"interval {p.interval} is not a positive number", item_id)
    if p.first_day_of_week not in DAYS or any(d not in DAYS for d in p.days_of_week):
        raise _refuse(f"days {p.days_of_week} / {p.first_day_of_week!r} are not day names", item_id)
    if p.type == "weekly" and not p.days_of_week:
        raise _refuse("a weekly pattern names no day", item_id)
    if p.type.startswith("relative"):
        if len(set(p.days_of_week)) != 1:
            raise _refuse(
                f"{p.type} on {len(set(p.days_of_week))} weekdays (the nth of any of several days) needs "
                "BYSETPOS, outside the RRULE forms written; Salesforce's series take one weekday",
                item_id,
            )
        if p.index not in INDEX_TO_N:
            raise _refuse(f"week index {p.index!r} unknown", item_id)
    if p.type.endswith("Yearly") and not 1 <= p.month <= 12:
        raise _refuse(f"month {p.month} is not 1 to 12", item_id)
    if p.type == "absoluteMonthly" and not (1 <= p.day_of_month <= 28 or p.day_of_month == 31):
        raise _refuse(
            f"day {p.day_of_month} of every month: Graph moves it to the last day of shorter months, which "
            "an RRULE BYMONTHDAY cannot say (it skips those months); days 1-28 and 31 (the last day) can",
            item_id,
        )
    if p.type == "absoluteYearly" and not 1 <= p.day_of_month <= _leap_length(p.month):
        raise _refuse(f"day {p.day_of_month} of month {p.month} does not exist", item_id)
    if r.type not in ("endDate", "noEnd", "numbered"):
        raise _refuse(f"range type {r.type!r} is not one Graph defines", item_id)
    if r.type == "numbered" and r.number_of_occurrences < 1:
        raise _refuse("a numbered range needs at least one occurrence", item_id)
    if r.type == "endDate" and (r.end_date is None or r.end_date < r.start_date):
        raise _refuse(f"end date {r.end_date} is missing or before the start {r.start_date}", item_id)
    if timezones.to_iana(r.time_zone) is None:
        raise _refuse(f"time zone {r.time_zone!r} is neither an IANA nor a Windows zone", item_id)


def _iana(name: str) -> str:
    found = timezones.to_iana(name)
    return "UTC" if found in (None, "UTC", "GMT") else found


def to_recurrence2(rec: Recurrence, wall: time, *, item_id: str | None = None) -> Recurrence2:
    """The Recurrence2 fields for a series whose occurrences start at `wall` (local time in the range's
    zone), or UnprocessableError naming what Salesforce cannot hold."""
    _check(rec, item_id)
    p, r = rec.pattern, rec.range
    zone_name = _iana(r.time_zone)
    zone = timezones.zone(zone_name)
    first = first_date(rec)
    if r.type == "endDate" and r.end_date is not None and first > r.end_date:
        raise _refuse(f"no occurrence between {r.start_date} and {r.end_date}", item_id)
    local = datetime.combine(first, wall.replace(tzinfo=None), tzinfo=zone)
    start = local.astimezone(UTC)
    if start.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise _refuse(f"the first occurrence {local:%Y-%m-%d %H:%M} falls in a clock change gap", item_id)
    parts = [f"FREQ={FREQ[p.type]}"]
    if p.type.endswith("Yearly"):
        parts.append(f"BYMONTH={p.month}")
    if p.type.startswith("absolute"):
        last = 31 if p.type == "absoluteMonthly" else _leap_length(p.month)
        parts.append(f"BYMONTHDAY={-1 if p.day_of_month == last else p.day_of_month}")
    elif p.type.startswith("relative"):
        parts.append(f"BYDAY={INDEX_TO_N[p.index]}{CODES[DAYS.index(p.days_of_week[0])]}")
    elif p.type == "weekly":
        parts.append("BYDAY=" + ",".join(CODES[DAYS.index(d)] for d in p.days_of_week))
    parts += [f"WKST={CODES[DAYS.index(p.first_day_of_week)]}", f"INTERVAL={p.interval}"]
    if r.type == "numbered":
        parts.append(f"COUNT={r.number_of_occurrences}")
    elif r.type == "endDate" and r.end_date is not None:
        until = datetime.combine(r.end_date, _END_OF_DAY, tzinfo=zone).astimezone(UTC)
        parts.append(f"UNTIL={until:%Y%m%dT%H%M%SZ}")
    return Recurrence2("RRULE:" + ";".join(parts), start, UTC_ZONE if zone_name == "UTC" else zone_name)


def _rule(text: str, item_id: str | None) -> dict[str, str]:
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    if not body or "\n" in body or ":" in body:
        raise _refuse(f"{text[:80]!r} is not one RRULE", item_id)
    rule: dict[str, str] = {}
    for part in body.split(";"):
        name, _, value = part.partition("=")
        name = name.strip().upper()
        if name not in _PARTS or not value or name in rule:
            raise _refuse(f"RRULE part {part!r} is outside the subset read", item_id)
        rule[name] = value.strip().upper()
    return rule


def _day(code: str, item_id: str | None) -> tuple[int | None, str]:
    """(ordinal or None, day name) of one BYDAY item such as MO, 2TU, +1WE, -1FR."""
    if code[-2:] not in CODES:
        raise _refuse(f"BYDAY {code!r} names no weekday", item_id)
    ordinal = code[:-2]
    n = int(ordinal) if ordinal else None
    if n is not None and n not in N_TO_INDEX:
        raise _refuse(f"BYDAY ordinal {n} has no Graph week index (1-4 or -1)", item_id)
    return n, DAYS[CODES.index(code[-2:])]


def from_recurrence2(fields: Recurrence2, *, item_id: str | None = None) -> Recurrence:
    """Our Recurrence from a series' Recurrence2 fields, or UnprocessableError for an RRULE outside the
    subset (it is then not taken apart into something else)."""
    rule = _rule(fields.text, item_id)
    zone_name = _iana(fields.time_zone or UTC_ZONE)
    if timezones.to_iana(fields.time_zone or UTC_ZONE) is None:
        raise _refuse(f"time zone {fields.time_zone!r} unknown", item_id)
    local = fields.start.astimezone(timezones.zone(zone_name))
    try:
        interval = int(rule.get("INTERVAL", "1"))
        days = [_day(c, item_id) for c in rule["BYDAY"].split(",")] if "BYDAY" in rule else []
        month = int(rule["BYMONTH"]) if "BYMONTH" in rule else 0
        monthday = int(rule["BYMONTHDAY"]) if "BYMONTHDAY" in rule else None
        count = int(rule["COUNT"]) if "COUNT" in rule else 0
    except (ValueError, KeyError) as exc:
        raise _refuse(f"RRULE {fields.text[:80]!r} has a malformed number", item_id) from exc
    if interval < 1 or count < 0:
        raise _refuse(f"RRULE {fields.text[:80]!r} has a number out of range", item_id)
    freq = rule.get("FREQ", "")
    wkst = DAYS[CODES.index(rule["WKST"])] if rule.get("WKST") in CODES else "monday"  # RFC 5545 default
    ordinals = {n for n, _ in days}
    names = tuple(d for _, d in days)
    kind, index, day_of_month = "", "first", 0
    if freq in ("DAILY", "WEEKLY") and ordinals <= {None} and month == 0 and monthday is None:
        if freq == "DAILY" and not names:
            kind = "daily"
        elif freq == "DAILY" and interval != 1:
            raise _refuse("FREQ=DAILY with BYDAY and INTERVAL > 1 has no Graph pattern", item_id)
        else:  # FREQ=DAILY;BYDAY=MO,...,FR (every weekday) is Graph's weekly on those days
            kind, names = "weekly", names or (DAYS[local.weekday()],)
    elif (freq == "MONTHLY" and month == 0) or (freq == "YEARLY" and 0 <= month <= 12):
        yearly = freq == "YEARLY"
        month = (month or local.month) if yearly else 0
        if len(days) == 1 and days[0][0] is not None and monthday is None:
            kind = "relativeYearly" if yearly else "relativeMonthly"
            index = N_TO_INDEX[days[0][0]]
        elif not days:
            last = _leap_length(month) if yearly else 31
            day_of_month = local.day if monthday is None else last if monthday == -1 else monthday
            if not 1 <= day_of_month <= last:
                raise _refuse(f"BYMONTHDAY {monthday} has no Graph day of month", item_id)
            kind = "absoluteYearly" if yearly else "absoluteMonthly"
    if not kind:
        raise _refuse(f"RRULE {fields.text[:80]!r} is outside the subset read", item_id)
    end_date: date | None = None
    if "UNTIL" in rule:
        end_date = _until_date(rule["UNTIL"], local, item_id)
    if "COUNT" in rule and "UNTIL" in rule:
        raise _refuse("an RRULE has COUNT or UNTIL, not both", item_id)
    return Recurrence(
        pattern=RecurrencePattern(
            type=kind,
            interval=interval,
            days_of_week=names,
            day_of_month=day_of_month,
            month=month,
            index=index,
            first_day_of_week=wkst,
        ),
        range=RecurrenceRange(
            type="numbered" if count else "endDate" if end_date else "noEnd",
            start_date=local.date(),
            end_date=end_date,
            number_of_occurrences=count,
            time_zone=zone_name,
        ),
    )


def _until_date(value: str, local_start: datetime, item_id: str | None) -> date:
    """Graph's inclusive end date for UNTIL: the last date whose occurrence (at the series' wall time)
    starts no later than UNTIL."""
    try:
        if "T" not in value:
            return datetime.strptime(value, "%Y%m%d").date()
        moment = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")
    except ValueError as exc:
        raise _refuse(f"UNTIL {value!r} is not a date-time", item_id) from exc
    until = moment.replace(tzinfo=UTC if value.endswith("Z") else local_start.tzinfo)
    until_local = until.astimezone(local_start.tzinfo)
    last = until_local.date()
    return last if until_local.time() >= local_start.time() else last - timedelta(days=1)


def canonical(rec: Recurrence) -> Recurrence:
    """What a series reads back as after a write: the fields the pattern type leaves unused at their
    defaults, the range starting on the first occurrence, the zone by its IANA name."""
    p = rec.pattern
    kind = p.type
    pattern = RecurrencePattern(
        type=kind,
        interval=p.interval,
        days_of_week=p.days_of_week if kind in ("weekly", "relativeMonthly", "relativeYearly") else (),
        day_of_month=p.day_of_month if kind.startswith("absolute") else 0,
        month=p.month if kind.endswith("Yearly") else 0,
        index=p.index if kind.startswith("relative") else "first",
        first_day_of_week=p.first_day_of_week,
    )
    r = rec.range
    trimmed = Recurrence(pattern=pattern, range=r)
    return Recurrence(
        pattern=pattern,
        range=RecurrenceRange(
            type=r.type,
            start_date=first_date(trimmed),
            end_date=r.end_date if r.type == "endDate" else None,
            number_of_occurrences=r.number_of_occurrences if r.type == "numbered" else 0,
            time_zone=_iana(r.time_zone),
        ),
    )


def series_fields(appt: Appointment, *, item_id: str | None) -> dict[str, Any]:
    """The Recurrence2 fields of the Event row a series is written to (none for a single event)."""
    rec = appt.recurrence
    if rec is None:
        return {}
    wall = appt.start.astimezone(timezones.zone(rec.range.time_zone)).time()
    fields = to_recurrence2(rec, wall, item_id=item_id)
    return {
        "IsRecurrence2": True,
        "Recurrence2PatternText": fields.text,
        "Recurrence2PatternStartDate": fields.start.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "Recurrence2PatternTimeZone": fields.time_zone,
    }


def read_series(
    text: str, start: datetime, time_zone: str, kept: Recurrence | None, *, item_id: str | None
) -> Recurrence:
    """The series' pattern from its row: what we wrote (`kept`, Graph's own form) while the native fields
    still say the same, else what they say."""
    native = from_recurrence2(Recurrence2(text, start, time_zone), item_id=item_id)
    if kept is not None:
        try:
            if canonical(kept) == native:
                return kept
        except UnprocessableError:
            pass
    return native
