"""Event series in the Salesforce emulator: an Event written with IsRecurrence2 becomes the series record and
one row per occurrence, expanded with python-dateutil (not the connector's codec). Pure, over the Store's
rows; what it follows and what it chooses: docs/connectors/salesforce.md, "The emulator"."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr

from devstack.salesforce_emulator.soql import parse_wire_time
from devstack.salesforce_emulator.store import ApiError, wire

if TYPE_CHECKING:
    from devstack.salesforce_emulator.store import Store

SERIES_FIELDS = ("Recurrence2PatternText", "Recurrence2PatternStartDate", "Recurrence2PatternTimeZone")
CRITICAL = (*SERIES_FIELDS, "StartDateTime", "EndDateTime", "IsRecurrence2")
READ_ONLY = ("IsRecurrence2Exception", "Recurrence2PatternVersion", "GroupEventType", "ActivityRecurrence2Id")
RULE_PARTS = {"FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYMONTH", "WKST", "COUNT", "UNTIL"}
MATERIALIZED = 100  # occurrence rows a series keeps at most (Salesforce's horizon: not in the sources read)
INVITEES_RECURRING = 100
_NOT_COPIED = {"Id", "IsDeleted", "CreatedDate", "CreatedById", "GroupEventType", *SERIES_FIELDS}


def defaults() -> dict[str, Any]:
    """The series fields of every Event row."""
    return {
        "IsRecurrence2": False,
        "IsRecurrence2Exception": False,
        "Recurrence2PatternText": None,
        "Recurrence2PatternStartDate": None,
        "Recurrence2PatternTimeZone": None,
        "Recurrence2PatternVersion": None,
        "GroupEventType": "0",
        "ActivityRecurrence2Id": None,
    }


def is_series(row: dict[str, Any]) -> bool:
    return bool(row.get("IsRecurrence2")) and row.get("GroupEventType") == "3"


def _invalid(message: str, field: str) -> ApiError:
    return ApiError(400, "FIELD_INTEGRITY_EXCEPTION", message, fields=[field])


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo("Etc/UTC" if name in ("GMT", "UTC") else name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise _invalid(
            f"Recurrence2PatternTimeZone: bad value: {name}", "Recurrence2PatternTimeZone"
        ) from exc


def check(body: dict[str, Any], current: dict[str, Any] | None) -> None:
    """Refuse what the API does not take: read-only series fields, a series without a valid RRULE."""
    for name in READ_ONLY:
        if name in body:
            raise ApiError(400, "INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: {name}.")
    merged = (current or {}) | body
    if current is not None and current.get("ActivityRecurrence2Id") and not is_series(current):
        if any(name in body for name in SERIES_FIELDS) or "IsRecurrence2" in body:
            raise _invalid("An occurrence's recurrence can't be changed; edit the series", "IsRecurrence2")
        return
    if not merged.get("IsRecurrence2"):
        if any(body.get(name) for name in SERIES_FIELDS):
            raise _invalid("A recurrence pattern needs IsRecurrence2 = true", "IsRecurrence2")
        if current is not None and is_series(current) and "IsRecurrence2" in body:
            raise _invalid("An event series can't become a single event", "IsRecurrence2")
        return
    text = str(merged.get("Recurrence2PatternText") or "")
    if not text.upper().startswith("RRULE:"):
        raise ApiError(
            400,
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Recurrence2PatternText]",
            fields=["Recurrence2PatternText"],
        )
    parts = {p.partition("=")[0].upper() for p in text[6:].split(";")}
    if not parts <= RULE_PARTS or "FREQ" not in parts or "\n" in text:
        raise _invalid(f"Recurrence2PatternText: unsupported rule: {text[:80]}", "Recurrence2PatternText")
    _zone(str(merged.get("Recurrence2PatternTimeZone") or "GMT"))
    try:
        rrulestr(text, dtstart=datetime(2026, 1, 1, tzinfo=UTC))
    except (ValueError, TypeError) as exc:
        raise _invalid(f"Recurrence2PatternText: {exc}", "Recurrence2PatternText") from exc


def starts(row: dict[str, Any]) -> list[datetime]:
    """The occurrence starts of a series row (dateutil over its RRULE, DTSTART in its zone)."""
    zone = _zone(str(row.get("Recurrence2PatternTimeZone") or "GMT"))
    first = parse_wire_time(str(row["Recurrence2PatternStartDate"])).astimezone(zone)
    rule = rrulestr(str(row["Recurrence2PatternText"]), dtstart=first)
    return [m.astimezone(UTC) for m in islice(iter(rule), MATERIALIZED)]


def occurrences(store: Store, series_key: str, *, deleted: bool = False) -> list[dict[str, Any]]:
    return [
        r
        for r in store.objects["Event"].values()
        if r.get("ActivityRecurrence2Id") == series_key
        and not is_series(r)
        and (deleted or not r["IsDeleted"])
    ]


def generate(store: Store, row: dict[str, Any], caller: str) -> None:
    """Make the series record of a row written with IsRecurrence2 and its occurrence rows."""
    row.setdefault("Recurrence2PatternStartDate", None)
    if not row.get("Recurrence2PatternStartDate"):
        row["Recurrence2PatternStartDate"] = row["StartDateTime"]
    row["Recurrence2PatternTimeZone"] = row.get("Recurrence2PatternTimeZone") or "GMT"
    row["Recurrence2PatternVersion"] = "1"
    row["GroupEventType"] = "3"
    if not row.get("ActivityRecurrence2Id"):
        row["ActivityRecurrence2Id"] = "828" + store.new_id("Event")[3:]  # an ActivityRecurrence2 id
    duration = parse_wire_time(str(row["EndDateTime"])) - parse_wire_time(str(row["StartDateTime"]))
    for start in starts(row):
        fresh = store.new_row("Event", caller)
        copied = {k: v for k, v in row.items() if k not in _NOT_COPIED}
        store.objects["Event"][fresh["Id"]] = (
            copied
            | fresh
            | {
                "GroupEventType": "0",
                "StartDateTime": wire(start),
                "EndDateTime": wire(start + duration),
                "IsRecurrence2Exception": False,
            }
        )


def after_update(store: Store, row: dict[str, Any], body: dict[str, Any], caller: str) -> None:
    """A series edit reaches its occurrences (a critical one recreates them); an occurrence edit makes it
    an exception of its series."""
    if is_series(row):
        if any(name in body for name in CRITICAL):
            for occurrence in occurrences(store, str(row["ActivityRecurrence2Id"])):
                store.delete("Event", occurrence["Id"], caller=caller)
            if "StartDateTime" in body and "Recurrence2PatternStartDate" not in body:
                row["Recurrence2PatternStartDate"] = row["StartDateTime"]  # the series moved, its start too
            generate(store, row, caller)
            return
        stamp = store.stamp()
        for occurrence in occurrences(store, str(row["ActivityRecurrence2Id"])):
            if not occurrence["IsRecurrence2Exception"]:
                occurrence |= body | {"LastModifiedById": caller, "SystemModstamp": stamp}
    elif row.get("ActivityRecurrence2Id") and row.get("IsRecurrence2"):
        row["IsRecurrence2Exception"] = True


def after_delete(store: Store, row: dict[str, Any], caller: str) -> None:
    """Deleting the series record deletes its occurrences."""
    if is_series(row):
        for occurrence in occurrences(store, str(row["ActivityRecurrence2Id"])):
            store.delete("Event", occurrence["Id"], caller=caller)


def check_invitee(store: Store, event: dict[str, Any]) -> None:
    """At most 100 invitees on a recurring event (EventAttendee in the Object Reference)."""
    if not event.get("IsRecurrence2"):
        return
    invited = [
        r
        for r in store.objects["EventRelation"].values()
        if r.get("EventId") == event["Id"] and not r.get("IsDeleted") and r.get("IsInvitee") is not False
    ]
    if len(invited) >= INVITEES_RECURRING:
        raise ApiError(
            400,
            "LIMIT_EXCEEDED",
            f"You can't invite more than {INVITEES_RECURRING} people to a recurring event.",
            fields=["RelationId"],
        )
