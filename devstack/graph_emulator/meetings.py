"""Exchange meeting behaviour: attendee copies, responses, room auto-accept, cancellation."""

from __future__ import annotations

import copy as copying
from datetime import datetime, timedelta

from devstack.graph_emulator import ids, recurrence
from devstack.graph_emulator.events import original_times
from devstack.graph_emulator.fields import MEETING_FIELDS, NULL_TIME, default_fields
from devstack.graph_emulator.state import EmulatorState, EventRecord, ExceptionData

SHOW_AS = {
    "accepted": "busy",
    "tentativelyAccepted": "tentative",
    "declined": "free",
    "notResponded": "tentative",
}
# How far ahead a room looks for clashes with a recurring booking.
CONFLICT_HORIZON = timedelta(days=366)


def _attendee_mailboxes(state: EmulatorState, organiser: EventRecord) -> dict[str, str]:
    """{mailbox id: address as written} for attendees who are mailboxes of this emulator."""
    found: dict[str, str] = {}
    for attendee in organiser.fields["attendees"]:
        address = attendee["emailAddress"]["address"]
        mailbox = state.find_mailbox(address)
        if mailbox is not None and mailbox.id != organiser.mailbox_id:
            found[mailbox.id] = address
    return found


def _copy_series(source: EventRecord, target: EventRecord, state: EmulatorState) -> None:
    target.exceptions = {
        key: ExceptionData(
            fields=copying.deepcopy(exc.fields),
            start=exc.start,
            end=exc.end,
            change_key=state.change_keys.next(),
            last_modified=state.clock.now(),
            response_status=(target.exceptions[key].response_status if key in target.exceptions else None),
        )
        for key, exc in source.exceptions.items()
    }
    target.cancelled = dict(source.cancelled)


def sync_copies(state: EmulatorState, organiser: EventRecord, reset_responses: bool) -> None:
    """Bring every attendee's copy of the organiser's meeting up to date (create, update, cancel)."""
    with state.lock:
        wanted = _attendee_mailboxes(state, organiser) if not organiser.is_cancelled else {}
        for mailbox_id, copy_id in list(organiser.copies.items()):
            if mailbox_id not in wanted:
                removed = state.events.get(mailbox_id, {}).get(copy_id)
                if removed is not None:
                    mark_cancelled(state, removed)
                del organiser.copies[mailbox_id]
        rooms_to_check: list[EventRecord] = []
        for mailbox_id in wanted:
            existing = state.events.get(mailbox_id, {}).get(organiser.copies.get(mailbox_id, ""))
            if existing is None:
                created = _new_copy(state, organiser, mailbox_id)
                organiser.copies[mailbox_id] = created.id
                state.store(created)
                state.touch(created, new_change_key=False)
                state.publish(mailbox_id, created.id, "created", created.etag)
                rooms_to_check.append(created)
            else:
                for key in MEETING_FIELDS:
                    existing.fields[key] = copying.deepcopy(organiser.fields[key])
                existing.start, existing.end = organiser.start, organiser.end
                existing.start_tz, existing.end_tz = organiser.start_tz, organiser.end_tz
                _copy_series(organiser, existing, state)
                if reset_responses:
                    existing.response_status = {"response": "notResponded", "time": NULL_TIME}
                    existing.fields["showAs"] = SHOW_AS["notResponded"]
                    rooms_to_check.append(existing)
                state.touch(existing)
                state.publish(mailbox_id, existing.id, "updated", existing.etag)
        if reset_responses:
            for attendee in organiser.fields["attendees"]:
                attendee["status"] = {"response": "none", "time": NULL_TIME}
        for room_copy in rooms_to_check:
            mailbox = state.mailboxes[room_copy.mailbox_id]
            if mailbox.kind == "room" and mailbox.room_mode == "auto_accept":
                verdict = "declined" if _room_conflicts(state, room_copy) else "accepted"
                respond(state, room_copy, verdict, send_response=True)


def _new_copy(state: EmulatorState, organiser: EventRecord, mailbox_id: str) -> EventRecord:
    fields = default_fields()
    for key in MEETING_FIELDS:
        fields[key] = copying.deepcopy(organiser.fields[key])
    fields["showAs"] = SHOW_AS["notResponded"]
    now = state.clock.now()
    record = EventRecord(
        id=ids.new_event_id(mailbox_id),
        mailbox_id=mailbox_id,
        fields=fields,
        start=organiser.start,
        end=organiser.end,
        start_tz=organiser.start_tz,
        end_tz=organiser.end_tz,
        created=now,
        last_modified=now,
        change_key=state.change_keys.next(),
        ical_uid=organiser.ical_uid,
        is_organizer=False,
        organizer=copying.deepcopy(organiser.organizer),
        response_status={"response": "notResponded", "time": NULL_TIME},
        organizer_ref=(organiser.mailbox_id, organiser.id),
    )
    _copy_series(organiser, record, state)
    return record


def mark_cancelled(state: EmulatorState, record: EventRecord) -> None:
    """What an attendee sees after the organiser cancels: the item stays, flagged and renamed."""
    with state.lock:
        if record.is_cancelled:
            return
        record.is_cancelled = True
        subject = record.fields.get("subject") or ""
        if not subject.startswith("Canceled: "):
            record.fields["subject"] = f"Canceled: {subject}"
        record.fields["showAs"] = "free"
        state.touch(record)
        state.publish(record.mailbox_id, record.id, "updated", record.etag)


def cancel_copies(state: EmulatorState, organiser: EventRecord) -> None:
    with state.lock:
        for mailbox_id, copy_id in list(organiser.copies.items()):
            found = state.events.get(mailbox_id, {}).get(copy_id)
            if found is not None:
                mark_cancelled(state, found)
        organiser.copies.clear()


def respond(
    state: EmulatorState,
    record: EventRecord,
    response: str,
    send_response: bool = True,
    occurrence_key: str | None = None,
) -> None:
    """accept / tentativelyAccept / decline on an attendee's copy (or one occurrence of it)."""
    with state.lock:
        now = state.clock.now()
        status = {"response": response, "time": now.strftime("%Y-%m-%dT%H:%M:%S") + "Z"}
        if occurrence_key is not None:
            exception = record.exceptions.get(occurrence_key)
            if exception is None:
                start, end = original_times(record, occurrence_key)
                exception = ExceptionData({}, start, end, state.change_keys.next(), now)
                record.exceptions[occurrence_key] = exception
            exception.response_status = status
            exception.fields["showAs"] = SHOW_AS[response]
            exception.change_key = state.change_keys.next()
            exception.last_modified = now
        else:
            record.response_status = status
            record.fields["showAs"] = SHOW_AS[response]
        state.touch(record)
        state.publish(record.mailbox_id, record.id, "updated", record.etag)
        if not send_response or record.organizer_ref is None or occurrence_key is not None:
            return
        organiser_mailbox, organiser_id = record.organizer_ref
        organiser = state.events.get(organiser_mailbox, {}).get(organiser_id)
        if organiser is None:
            return
        mail = state.mailboxes[record.mailbox_id].mail.lower()
        for attendee in organiser.fields["attendees"]:
            if attendee["emailAddress"]["address"].lower() == mail:
                attendee["status"] = dict(status)
        state.touch(organiser)
        state.publish(organiser.mailbox_id, organiser.id, "updated", organiser.etag)


def _intervals(record: EventRecord, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    if not record.is_series:
        return [(record.start, record.end)]
    return [(s, e) for _, s, e, _ in recurrence.instances(record.shape(), start, end)]


def _room_conflicts(state: EmulatorState, booking: EventRecord) -> bool:
    """Does `booking` overlap another booking the room has accepted (or organises)?"""
    window_start = booking.start
    window_end = booking.end + (CONFLICT_HORIZON if booking.is_series else timedelta(0))
    mine = _intervals(booking, window_start, window_end)
    for other in state.events.get(booking.mailbox_id, {}).values():
        if other is booking or other.is_cancelled:
            continue
        if other.response_status.get("response") not in ("accepted", "organizer"):
            continue
        for other_start, other_end in _intervals(other, window_start, window_end):
            if any(s < other_end and e > other_start for s, e in mine):
                return True
    return False
