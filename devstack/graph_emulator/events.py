"""Event resources: create and patch of stored records, series occurrences among them (the properties a body
may set: fields.py; their JSON: rendering.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from devstack.graph_emulator import ids, recurrence
from devstack.graph_emulator.errors import bad_request
from devstack.graph_emulator.fields import (
    EXCEPTION_FIELDS,
    NULL_TIME,
    WRITABLE,
    apply_fields,
    check_keys,
    default_fields,
)
from devstack.graph_emulator.state import EmulatorState, EventRecord, ExceptionData, Mailbox
from devstack.graph_emulator.timezones import (
    parse_date_time_time_zone,
    zone,
)


def _apply_ext(record: EventRecord, body: dict[str, Any]) -> None:
    for item in body.get("singleValueExtendedProperties") or []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise bad_request("Each singleValueExtendedProperty needs an id and a value.")
        record.single_ext[item["id"].lower()] = (
            item["id"],
            "" if item.get("value") is None else str(item["value"]),
        )
    for item in body.get("multiValueExtendedProperties") or []:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise bad_request("Each multiValueExtendedProperty needs an id and a value.")
        values = item.get("value") or []
        record.multi_ext[item["id"].lower()] = (item["id"], [str(v) for v in values])


Times = tuple[datetime, str, datetime, str]


def _times(body: dict[str, Any], current: Times | None) -> Times:
    """(start, start zone, end, end zone) after applying the body's start/end to `current`."""
    if current is None:
        if "start" not in body or "end" not in body:
            raise bad_request("Your request can't be completed. Start and End are required for an event.")
        current = (
            *parse_date_time_time_zone(body["start"], "start"),
            *parse_date_time_time_zone(body["end"], "end"),
        )
    start, start_tz, end, end_tz = current
    if "start" in body:
        start, start_tz = parse_date_time_time_zone(body["start"], "start")
    if "end" in body:
        end, end_tz = parse_date_time_time_zone(body["end"], "end")
    if end < start:
        raise bad_request("The start time of the event must be before its end time.")
    return start, start_tz, end, end_tz


def _check_all_day(
    fields: dict[str, Any], start: datetime, start_tz: str, end: datetime, end_tz: str
) -> None:
    if not fields.get("isAllDay"):
        return
    local_start, local_end = start.astimezone(zone(start_tz)), end.astimezone(zone(end_tz))
    if local_start.time() != datetime.min.time() or local_end.time() != datetime.min.time() or end <= start:
        raise bad_request(
            "Your request can't be completed. An all-day event must start and end at midnight.",
            code="ErrorPropertyValidationFailure",
        )


def build_event(state: EmulatorState, mailbox: Mailbox, body: dict[str, Any]) -> EventRecord:
    """A new organiser-side event from a POST body (not yet stored)."""
    check_keys(body)
    start, start_tz, end, end_tz = _times(body, None)
    fields = default_fields()
    apply_fields(fields, body, state)
    fields["recurrence"] = recurrence.normalize(
        body.get("recurrence"), start.astimezone(zone(start_tz)).date(), start_tz
    )
    _check_all_day(fields, start, start_tz, end, end_tz)
    now = state.clock.now()
    transaction_id = body.get("transactionId")
    if transaction_id is not None and not isinstance(transaction_id, str):
        raise bad_request("The property 'transactionId' must be a string.")
    record = EventRecord(
        id=ids.new_event_id(mailbox.id),
        mailbox_id=mailbox.id,
        fields=fields,
        start=start,
        end=end,
        start_tz=start_tz,
        end_tz=end_tz,
        created=now,
        last_modified=now,
        change_key=state.change_keys.next(),
        ical_uid=ids.new_ical_uid(now),
        is_organizer=True,
        organizer={"emailAddress": mailbox.email_address()},
        response_status={"response": "organizer", "time": NULL_TIME},
        transaction_id=transaction_id,
    )
    _apply_ext(record, body)
    return record


def patch_event(state: EmulatorState, record: EventRecord, body: dict[str, Any]) -> set[str]:
    """Apply a PATCH body to a stored event; returns the names of the properties it set."""
    check_keys(body)
    if "transactionId" in body and record.transaction_id not in (None, body["transactionId"]):
        raise bad_request("The transactionId of an event can't be changed once it is set.")
    start, start_tz, end, end_tz = _times(body, (record.start, record.start_tz, record.end, record.end_tz))
    fields = dict(record.fields)
    apply_fields(fields, body, state)
    if "recurrence" in body:
        fields["recurrence"] = recurrence.normalize(
            body["recurrence"], start.astimezone(zone(start_tz)).date(), start_tz
        )
    _check_all_day(fields, start, start_tz, end, end_tz)
    record.fields = fields
    record.start, record.start_tz, record.end, record.end_tz = start, start_tz, end, end_tz
    if record.transaction_id is None and isinstance(body.get("transactionId"), str):
        record.transaction_id = body["transactionId"]
    if fields["recurrence"] is None:
        record.exceptions.clear()
        record.cancelled.clear()
    _apply_ext(record, body)
    return {key for key in body if key in WRITABLE}


def patch_occurrence(
    state: EmulatorState, master: EventRecord, key: str, body: dict[str, Any]
) -> ExceptionData:
    """PATCH on an occurrence: it becomes (or stays) an exception of the series."""
    check_keys(body)
    if "recurrence" in body:
        raise bad_request("The recurrence of an occurrence can't be changed; patch the series master.")
    existing = master.exceptions.get(key)
    base_start, base_end = (existing.start, existing.end) if existing else original_times(master, key)
    start, _, end, _ = _times(body, (base_start, master.start_tz, base_end, master.end_tz))
    _check_crossing(master, key, start)
    merged = {**master.fields, **(existing.fields if existing else {})}
    apply_fields(merged, body, state, allowed=EXCEPTION_FIELDS)
    overrides = {k: v for k, v in merged.items() if master.fields.get(k) != v and k != "recurrence"}
    exception = ExceptionData(
        fields=overrides,
        start=start,
        end=end,
        change_key=state.change_keys.next(),
        last_modified=state.clock.now(),
        response_status=existing.response_status if existing else None,
    )
    master.exceptions[key] = exception
    return exception


def _check_crossing(master: EventRecord, key: str, start: datetime) -> None:
    """400 ErrorOccurrenceCrossingBoundary (api/event-update.md): "an occurrence cannot be moved to or before
    the day of the previous occurrence, and cannot be moved to or after the day of the following occurrence".

    Days are those of the series' time zone; a neighbour that is itself an exception counts where it now is.
    """
    shape = master.shape()
    tz = zone(shape.tz_name)

    def day_of(neighbour: str) -> date:
        moved = shape.exceptions.get(neighbour)
        return moved[0].astimezone(tz).date() if moved else date.fromisoformat(neighbour)

    previous, following = recurrence.neighbours(shape, key)
    day = start.astimezone(tz).date()
    if (previous is not None and day <= day_of(previous)) or (
        following is not None and day >= day_of(following)
    ):
        raise bad_request(
            "Modified occurrence is crossing or overlapping adjacent occurrence.",
            code="ErrorOccurrenceCrossingBoundary",
        )


def original_times(master: EventRecord, key: str) -> tuple[datetime, datetime]:
    """Where occurrence `key` of the series sits before any exception moved it."""
    shape = master.shape()
    tz = zone(shape.tz_name)
    local = master.start.astimezone(tz)
    start = datetime.combine(
        date.fromisoformat(key), local.timetz().replace(tzinfo=None), tzinfo=tz
    ).astimezone(UTC)
    return start, start + (master.end - master.start)
