"""The emulator's recurring series: recurringappointmentmaster validation, its expansion into instance rows
(create-recurring-appointment-series-instance-exception.md, recurring-appointment-partial-expansion-model.md,
update-recurring-appointment.md), and the Store that keeps series and instances together.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule

from devstack.dataverse_emulator.store import CLOSED, ApiError, Store, wire_time

# The organization's timezonedefinition rows the emulator knows: timezonecode -> its zone. Dataverse answers
# any other code too; a series in another zone is out of the emulator's reach (400, never a guess).
TIME_ZONES = {
    4: "America/Los_Angeles",
    10: "America/Denver",
    20: "America/Chicago",
    35: "America/New_York",
    85: "Europe/London",
    92: "Etc/UTC",
    95: "Europe/Budapest",
    100: "Europe/Warsaw",
    105: "Europe/Paris",
    110: "Europe/Berlin",
    190: "Asia/Kolkata",  # known to Dataverse, not to the connector's table: its refusal is tested
    235: "Asia/Tokyo",
    255: "Australia/Sydney",
}
# Organization.RecurrenceExpansionSynchCreateMax: instances made when the series is written. The rest comes
# from the asynchronous expansion job in Dataverse, which the emulator does not run.
SYNC_CREATE_MAX = 100
MASTER_COLUMNS: dict[str, int | None] = {  # writable columns (recurringappointmentmaster.md) -> max length
    "subject": 200,
    "description": 1048576,
    "location": 200,
    "isalldayevent": None,
    "ismapiprivate": None,
    "statecode": None,
    "statuscode": None,
    "category": 250,
    "starttime": None,
    "endtime": None,
    "duration": None,
    "recurrencepatterntype": None,
    "interval": None,
    "daysofweekmask": None,
    "dayofmonth": None,
    "monthofyear": None,
    "instance": None,
    "isnthmonthly": None,
    "isnthyearly": None,
    "isweekdaypattern": None,
    "firstdayofweek": None,
    "patternstartdate": None,
    "patternendtype": None,
    "patternenddate": None,
    "occurrences": None,
    "utcconversiontimezonecode": None,
    "msync_externalref": 400,
    "msync_syncdata": 1048576,
}
PATTERN = (
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
    "starttime",
    "endtime",
    "duration",
)
# What an instance takes from its series; an update of these on the series reaches every instance that is
# not an exception (update-recurring-appointment.md, "Update basic information").
BASIC = ("subject", "description", "location", "isalldayevent", "ismapiprivate", "statecode", "statuscode")
# Integer columns and their documented ranges (MinValue/MaxValue, or the choices of a picklist)
RANGES = {
    "recurrencepatterntype": (0, 3),
    "interval": (1, 1000),
    "daysofweekmask": (1, 127),
    "dayofmonth": (1, 31),
    "monthofyear": (0, 12),
    "instance": (1, 5),
    "firstdayofweek": (0, 6),
    "patternendtype": (1, 3),
    "occurrences": (1, 999),
    "duration": (0, 2147483647),
}
_WEEKDAYS = (rrule.SU, rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR, rrule.SA)  # daysofweekmask bit order
_MAX_STEPS = 100_000


def master_date(value: Any, column: str) -> str:
    """A DateOnly column (patternstartdate, patternenddate) as stored: midnight UTC of the date."""
    if not isinstance(value, str):
        raise ApiError(
            400, f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
        )
    try:
        return date.fromisoformat(value[:10]).isoformat() + "T00:00:00Z"
    except ValueError as exc:
        raise ApiError(
            400, f"Cannot convert the literal '{value}' to the expected type 'Edm.DateTimeOffset'."
        ) from exc


def validate(row: Mapping[str, Any]) -> None:
    """400 for a series the entity reference does not allow (the ranges above, a pattern missing parts)."""
    for column, (low, high) in RANGES.items():
        value = row.get(column)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ApiError(
                400,
                f"A validation error occurred. The value {value} of '{column}' on record of type "
                f"'recurringappointmentmaster' is outside the valid range. Accepted Values: {low} to {high}",
                code="0x80044330",
            )
    for column in ("recurrencepatterntype", "patternstartdate", "starttime", "endtime", "patternendtype"):
        if row.get(column) is None:
            raise ApiError(400, f"Attribute '{column}' cannot be NULL for a recurring appointment.")
    kind, end_type = row["recurrencepatterntype"], row["patternendtype"]
    if kind == 1 and not row.get("daysofweekmask"):
        raise ApiError(400, "A weekly recurrence pattern needs daysofweekmask.")
    nth = row.get("isnthmonthly") if kind == 2 else row.get("isnthyearly") if kind == 3 else False
    if kind in (2, 3) and nth and not (row.get("daysofweekmask") and row.get("instance")):
        raise ApiError(400, "An Nth monthly or yearly pattern needs daysofweekmask and instance.")
    if kind in (2, 3) and not nth and not row.get("dayofmonth"):
        raise ApiError(400, "A monthly or yearly pattern needs dayofmonth.")
    if kind == 3 and not row.get("monthofyear"):
        raise ApiError(400, "A yearly pattern needs monthofyear.")
    if end_type == 2 and row.get("occurrences") is None:
        raise ApiError(400, "patternendtype Occurrences needs occurrences (1 to 999).")
    if end_type == 3 and (
        row.get("patternenddate") is None or row["patternenddate"] < row["patternstartdate"]
    ):
        raise ApiError(
            400, "patternendtype Pattern End Date needs a patternenddate on or after patternstartdate."
        )
    if row.get("utcconversiontimezonecode") not in (None, *TIME_ZONES):
        raise ApiError(
            400, f"Time zone code {row['utcconversiontimezonecode']} is not known to this emulator."
        )
    if row["endtime"] < row["starttime"]:
        raise ApiError(400, "The recurring appointment's endtime is before its starttime.")


def _rule(row: Mapping[str, Any]) -> dict[str, Any]:
    kind, mask = row["recurrencepatterntype"], int(row.get("daysofweekmask") or 0)
    days = [_WEEKDAYS[i] for i in range(7) if mask & (1 << i)]
    if kind == 0:
        return {"freq": rrule.DAILY}
    if kind == 1:
        if row.get("isweekdaypattern"):
            days = list(_WEEKDAYS[1:6])
        return {
            "freq": rrule.WEEKLY,
            "byweekday": days,
            "wkst": _WEEKDAYS[int(row.get("firstdayofweek") or 0)],
        }
    args: dict[str, Any]
    if (kind == 2 and row.get("isnthmonthly")) or (kind == 3 and row.get("isnthyearly")):
        # the Nth (instance 5: last) day of the month that is any of the mask's days
        args = {"byweekday": days, "bysetpos": -1 if row["instance"] == 5 else int(row["instance"])}
    else:
        day = int(row["dayofmonth"])  # past a shorter month's end: its last day, as Outlook lays it out
        args = {"bymonthday": list(range(min(day, 28), day + 1)), "bysetpos": -1}
    if kind == 2:
        return {"freq": rrule.MONTHLY, **args}
    return {"freq": rrule.YEARLY, "bymonth": int(row["monthofyear"]), **args}


def _dates(row: Mapping[str, Any]) -> Iterator[date]:
    """Dates of the pattern from the first one on or after patternstartdate; the interval counts from it."""
    rule = _rule(row)
    start = datetime.combine(date.fromisoformat(row["patternstartdate"][:10]), time())
    first = next(iter(rrule.rrule(dtstart=start, count=1, **rule)), None)
    if first is None:
        return
    interval = 1 if row.get("isweekdaypattern") else int(row.get("interval") or 1)
    for moment in rrule.rrule(dtstart=first, interval=interval, **rule):
        yield moment.date()


def occurrences(row: Mapping[str, Any], limit: int) -> list[tuple[datetime, datetime]]:
    """(start, end) in UTC of the series' first `limit` occurrences, laid out in its time zone."""
    tz = ZoneInfo(TIME_ZONES[int(row.get("utcconversiontimezonecode") or 92)])
    first = datetime.fromisoformat(row["starttime"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(row["endtime"].replace("Z", "+00:00"))
    duration = end - first
    wall = first.astimezone(tz).time()
    end_type = row["patternendtype"]
    last = date.fromisoformat(row["patternenddate"][:10]) if end_type == 3 else None
    count = int(row["occurrences"]) if end_type == 2 else None
    out: list[tuple[datetime, datetime]] = []
    for steps, day in enumerate(_dates(row)):
        if len(out) >= limit or steps > _MAX_STEPS or (last is not None and day > last):
            break
        if count is not None and len(out) >= count:
            break
        start = datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)
        out.append((start, start + duration))
    return out


def wire(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def instance_rows(master: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The instance appointment rows (instancetypecode 2) the series' synchronous expansion creates."""
    rows = []
    for start, end in occurrences(master, SYNC_CREATE_MAX):
        row = {k: master.get(k) for k in BASIC}
        row |= {
            "scheduledstart": wire(start),
            "scheduledend": wire(end),
            "instancetypecode": 2,
            "seriesid": master["activityid"],
            "originalstartdate": wire(start),
        }
        rows.append(row)
    return rows


def first_and_last(master: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """scheduledstart/scheduledend of the series (read-only): its first occurrence's start, its last one's end
    among those expanded."""
    found = occurrences(master, SYNC_CREATE_MAX)
    if not found:
        return None, None
    return wire(found[0][0]), wire(found[-1][1])


def pattern_changed(values: Mapping[str, Any]) -> bool:
    return any(c in values for c in PATTERN)


MASTERS, APPOINTMENTS = "recurringappointmentmasters", "appointments"


class SeriesStore(Store):
    """The Store with recurring appointment series: a series written expands into instance rows
    (instancetypecode 2, seriesid, originalstartdate); an instance updated becomes an exception (3); an
    instance deleted is listed in the series' deletedexceptionslist (in a format of ours: Dataverse does not
    document it); a new pattern deletes every instance and expands again; basic columns reach the instances
    that are not exceptions; deleting the series deletes its instances."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writable[MASTERS] = MASTER_COLUMNS

    def _values(self, entity_set: str, body: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        out = super()._values(entity_set, body, creating=creating)
        if entity_set == MASTERS:
            for column in ("starttime", "endtime"):
                if out.get(column) is not None:
                    out[column] = wire_time(out[column], column)
            for column in ("patternstartdate", "patternenddate"):
                if out.get(column) is not None:
                    out[column] = master_date(out[column], column)
        return out

    def instances(self, series_id: str) -> list[dict[str, Any]]:
        rows = self.tables[APPOINTMENTS].values()
        return sorted(
            (r for r in rows if r.get("seriesid") == series_id), key=lambda r: r["originalstartdate"]
        )

    def _expand(self, master: dict[str, Any], caller: str) -> None:
        parties = [
            {k: v for k, v in p.items() if k in ("participationtypemask", "addressused")}
            | (
                {f"partyid_{p[self._LOGICAL]}@odata.bind": f"/{p[self._LOGICAL]}s({p['_partyid_value']})"}
                if p.get("_partyid_value")
                else {}
            )
            for p in self.parties_of(master["activityid"])
        ]
        for row in instance_rows(master):
            system = {k: row.pop(k) for k in ("instancetypecode", "seriesid", "originalstartdate")}
            system |= {k: row.pop(k) for k in ("statecode", "statuscode")}
            body = row | {"appointment_activity_parties": parties}
            self.create(APPOINTMENTS, body, key=None, caller=caller, system=system)
        first, last = first_and_last(master)
        master |= {"scheduledstart": first, "scheduledend": last, "expansionstatecode": 2 if first else 0}

    _LOGICAL = "_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"

    def create(
        self,
        entity_set: str,
        body: Mapping[str, Any],
        *,
        key: str | None,
        caller: str,
        system: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        if entity_set != MASTERS:
            return super().create(entity_set, body, key=key, caller=caller, system=system)
        probe = {c: None for c in MASTER_COLUMNS} | self._values(MASTERS, body, creating=True)
        validate(probe)
        defaults: dict[str, Any] = {
            "isalldayevent": False,
            "ismapiprivate": False,
            "isnthmonthly": False,
            "isnthyearly": False,
        }
        defaults |= {"isweekdaypattern": False, "statecode": 0, "statuscode": 1, "instancetypecode": 1}
        defaults |= {"deletedexceptionslist": None, "seriesstatus": True}
        row = super().create(MASTERS, body, key=key, caller=caller, system=None)
        for column, value in ({c: None for c in MASTER_COLUMNS} | defaults).items():
            row.setdefault(column, value)
        self._expand(row, caller)
        return row

    def update(
        self, entity_set: str, key: str, body: Mapping[str, Any], *, if_match: str | None, caller: str
    ) -> dict[str, Any]:
        if entity_set == APPOINTMENTS:
            row = self.get(entity_set, key)
            before = row.get("instancetypecode")
            if before == 2:
                row["instancetypecode"] = 3  # an updated instance is an exception of its series
            try:
                return super().update(entity_set, key, body, if_match=if_match, caller=caller)
            except ApiError:
                row["instancetypecode"] = before
                raise
        if entity_set != MASTERS:
            return super().update(entity_set, key, body, if_match=if_match, caller=caller)
        current = self.get(MASTERS, key)
        if pattern_changed(body):
            validate(current | self._values(MASTERS, body, creating=False))
        row = super().update(MASTERS, key, body, if_match=if_match, caller=caller)
        if pattern_changed(body):
            for instance in self.instances(row["activityid"]):
                self.delete(APPOINTMENTS, instance["activityid"], if_match=None, caller=caller, listed=False)
            self._expand(row, caller)
            return row
        basic = {c: row[c] for c in BASIC if c in body or (c == "statuscode" and "statecode" in body)}
        nav = "recurringappointmentmaster_activity_parties"
        for instance in self.instances(row["activityid"]):
            if instance.get("instancetypecode") != 2:
                continue
            if instance.get("statecode") in CLOSED and basic.get("statecode") not in (None, *CLOSED):
                super().update(
                    APPOINTMENTS,
                    instance["activityid"],
                    {"statecode": basic["statecode"]},
                    if_match=None,
                    caller=caller,
                )
            changes = dict(basic) | ({"appointment_activity_parties": body[nav]} if nav in body else {})
            if changes:
                super().update(APPOINTMENTS, instance["activityid"], changes, if_match=None, caller=caller)
        return row

    def delete(
        self,
        entity_set: str,
        key: str,
        *,
        if_match: str | None,
        caller: str | None = None,
        listed: bool = True,
    ) -> None:
        row = self.get(entity_set, key)
        if entity_set == MASTERS:
            super().delete(MASTERS, key, if_match=if_match, caller=caller)
            for instance in self.instances(row["activityid"]):
                super().delete(APPOINTMENTS, instance["activityid"], if_match=None, caller=caller)
            return
        super().delete(entity_set, key, if_match=if_match, caller=caller)
        series = self.tables[MASTERS].get(str(row.get("seriesid")))
        if entity_set == APPOINTMENTS and series is not None and listed:
            kept = series.get("deletedexceptionslist")
            series["deletedexceptionslist"] = ",".join(filter(None, [kept, row["originalstartdate"]]))
