"""What is in scope (rules S3-S6, R4, F3, F5, M1, L5) and how content is shaped before it crosses over.

Pure functions of an appointment, the policy, the facts the shell gathered and `now`.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sync_core.domain.model import (
    Appointment,
    Attendee,
    AttendeeType,
    CrmRecord,
    GraphEvent,
    Kind,
    Location,
    Response,
    Sensitivity,
)
from sync_core.domain.policy import Policy, SyncUser


def is_private(appt: Appointment) -> bool:
    """S3: private or confidential."""
    return appt.sensitivity in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL)


def people(appt: Appointment) -> set[str]:
    """Organizer and every non-resource attendee, by email."""
    out = {a.email for a in appt.attendees if a.type is not AttendeeType.RESOURCE}
    if appt.organizer is not None:
        out.add(appt.organizer.email)
    return out


def is_internal(appt: Appointment, policy: Policy) -> bool:
    """S4: every person on the meeting is in the organisation's own domains (rooms do not count)."""
    return bool(policy.own_domains) and all(policy.is_internal(e) for e in people(appt))


def is_matched(appt: Appointment, known_contacts: frozenset[str]) -> bool:
    """S5: some person on the meeting resolves to a CRM contact. The whole attendee list and the
    organizer count, so every copy of a meeting gets the same answer (SO-10)."""
    return bool(people(appt) & known_contacts)


def _series_bounds(appt: Appointment) -> tuple[datetime, datetime | None]:
    assert appt.recurrence is not None
    rng = appt.recurrence.range
    start = datetime.combine(rng.start_date, time(), UTC)
    if rng.type == "endDate" and rng.end_date is not None:
        return start, datetime.combine(rng.end_date, time(), UTC) + timedelta(days=1)
    return start, None  # noEnd, or numbered (bounded, but its end needs expansion: keep it, R2)


def last_end(appt: Appointment) -> datetime | None:
    """When the meeting (or its whole series) is over; None for a series without end (R2)."""
    if appt.recurrence is None:
        return appt.end
    _, end = _series_bounds(appt)
    return end


def in_window(appt: Appointment, policy: Policy, now: datetime) -> bool:
    """S6: overlaps [now - past_days, now + future_days]. A series counts by its whole range, so a
    series that started before the window but reaches into it is never lost as the window rolls."""
    lo = now - timedelta(days=policy.past_days)
    hi = now + timedelta(days=policy.future_days)
    if appt.recurrence is not None:
        first, end = _series_bounds(appt)
        return first <= hi and (end is None or end >= lo)
    return appt.start <= hi and appt.end >= lo


def activity_closed(appt: Appointment, policy: Policy, now: datetime) -> bool:
    """L5: ended more than `activity_sync_days` ago, so it no longer syncs."""
    end = last_end(appt)
    return end is not None and end < now - timedelta(days=policy.activity_sync_days)


def kind_at(appt: Appointment, now: datetime) -> Kind:
    """L5: a meeting that has ended is an activity; moved to the future it is a meeting again."""
    end = last_end(appt)
    return Kind.ACTIVITY if end is not None and end <= now else Kind.MEETING


def with_own_answers(g: GraphEvent, policy: Policy, known: Appointment | None = None) -> Appointment:
    """L6: the meeting as this copy shows it, with only the answers the copy really knows. An organizer's
    copy tracks every attendee's answer. An invitee's or room's copy tracks none of them (Exchange keeps no
    responses there) but its own: its owner's answer is the copy's `responseStatus`, and the others'
    untracked `none` never overwrites an answer known elsewhere (`known`: the CRM's record)."""
    appt = g.appointment
    if g.is_organizer:
        return appt
    user = policy.user_for_mailbox(g.mailbox)
    owner = {g.mailbox.lower()} | ({user.email.lower(), *user.all_mailboxes} if user else set())
    answers = {a.email.lower(): a.response for a in known.attendees} if known is not None else {}
    attendees: list[Attendee] = []
    for a in appt.attendees:
        email = a.email.lower()
        if email in owner:
            a = a.model_copy(update={"response": g.response})
        elif a.response is Response.NONE and answers.get(email, Response.NONE) is not Response.NONE:
            a = a.model_copy(update={"response": answers[email]})
        attendees.append(a)
    return appt.model_copy(update={"attendees": tuple(attendees)})


def resolve_rooms(appt: Appointment, policy: Policy) -> Appointment:
    """M1: name each mapped room the same way on both sides: a location naming a room (by mailbox, or by
    its unique display name) carries the room mailbox, and every mapped room is a resource attendee."""
    locations: list[Location] = []
    for loc in appt.locations:
        room = policy.room(loc.room_email) if loc.room_email else policy.room_by_name(loc.display_name)
        if room is not None:
            loc = Location(display_name=room.display_name, room_email=room.mailbox)
        if loc not in locations:
            locations.append(loc)
    attendees = list(appt.attendees)
    present = {a.email for a in attendees}
    for a in appt.attendees:
        room = policy.room(a.email)
        if room is not None and not any(loc.room_email == room.mailbox for loc in locations):
            locations.append(Location(display_name=room.display_name, room_email=room.mailbox))
    for loc in locations:
        if loc.room_email and policy.room(loc.room_email) and loc.room_email not in present:
            attendees.append(
                Attendee(email=loc.room_email, name=loc.display_name, type=AttendeeType.RESOURCE)
            )
    return appt.model_copy(update={"locations": tuple(locations), "attendees": tuple(attendees)})


def cap_attendees(attendees: tuple[Attendee, ...], cap: int | None) -> tuple[Attendee, ...]:
    """F3: at most `cap` people, the first alphabetically by email (deterministic); rooms are kept."""
    if cap is None:
        return attendees
    rooms = [a for a in attendees if a.type is AttendeeType.RESOURCE]
    persons = sorted((a for a in attendees if a.type is not AttendeeType.RESOURCE), key=lambda a: a.email)
    keep = {a.email for a in persons[:cap]} | {a.email for a in rooms}
    return tuple(a for a in attendees if a.email in keep)


def shape(appt: Appointment, policy: Policy) -> Appointment:
    """The content that crosses over, under the policy: rooms resolved (M1), private events without
    details (S3), the attendee cap (F3), attachments per F5."""
    appt = resolve_rooms(appt, policy)
    update: dict[str, object] = {}
    if is_private(appt) and policy.private_events == "without_details":
        # Subject, time and free/busy only: no attendees, no body, nothing that names people or places.
        update |= {
            "body": "",
            "attendees": (),
            "locations": (),
            "categories": (),
            "online_meeting_url": None,
            "attachments": (),
        }
    else:
        update["attendees"] = cap_attendees(appt.attendees, policy.attendee_cap)
    if policy.attachments == "none":
        update["attachments"] = ()
    elif policy.attachments == "metadata" and any(a.content is not None for a in appt.attachments):
        update["attachments"] = tuple(a.model_copy(update={"content": None}) for a in appt.attachments)
    return appt.model_copy(update=update)


def may_send_as(policy: Policy, user: SyncUser, crm_user: str | None) -> bool:
    """The CRM organizer field means "send as": what we write into `user`'s mailbox as organizer, Exchange
    sends as them. CRM user `crm_user` may do that when they are that user or one of the delegates the
    policy lists for them; a CRM that does not say who (None) is taken at its word."""
    who = (crm_user or "").strip().lower()
    return not who or policy.user_for_email(who) == user or who in user.delegates


def write_target(policy: Policy, crm: CrmRecord) -> tuple[str | None, str, str]:
    """Where a CRM record is written in Microsoft 365, with the rule and why. W1: the organizer's own primary
    mailbox; W2: else the default calendar, else the room calendar. The gatherer looks there for our own
    earlier create after a crash (I3)."""
    appt = crm.appointment
    user = policy.user_for_email(appt.organizer.email if appt.organizer else None)
    if user is None and crm.mailbox_hint:
        user = policy.user_for_mailbox(crm.mailbox_hint)
    why = "organizer has no synced mailbox"
    if user is not None:
        if may_send_as(policy, user, crm.created_by):
            return (
                user.primary,
                "W1",
                f"written to the organizer's primary mailbox {user.primary}; Exchange invites",
            )
        why = f"created by {crm.created_by}, who may not send as {user.email} (not a delegate in the policy)"
    if policy.default_calendar:
        return (policy.default_calendar, "W2", f"{why}: written to the default calendar")
    for a in appt.rooms:
        room = policy.room(a.email)
        if room is not None:
            return (
                room.mailbox,
                "W2",
                f"{why}: booked on room {room.display_name} alone",
            )
    return None, "W2", f"{why}, and there is no default calendar or mapped room"
