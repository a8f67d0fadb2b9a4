"""CRM-managed rooms (rule M4): the CRM's status decides the room's answer to its invitations. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sync_core.domain.actions import Action, Mapping, NotifyOrganizer, RespondGraphEvent
from sync_core.domain.model import Appointment, CrmRecord, Origin, Response, Status
from sync_core.domain.policy import Policy, RoomMapping

if TYPE_CHECKING:
    from sync_core.engine.inputs import Inputs


# An invitation the room has not answered yet: only these are declined when another booking is confirmed;
# a booking the room already accepted was decided by the events team and is never overridden.
_PENDING = (Response.NONE, Response.NOT_RESPONDED, Response.TENTATIVE)


def _overlaps(a: Appointment, start: datetime, end: datetime) -> bool:
    return a.start < end and start < a.end


def room_declines(room: RoomMapping, event_id: str, reason: str) -> RespondGraphEvent:
    """M4: a CRM-managed room declines one invitation in its own calendar."""
    return RespondGraphEvent(
        rule="M4", reason=reason, mailbox=room.mailbox, event_id=event_id, response="decline"
    )


def crm_managed_room_actions(
    inp: Inputs, mapping: Mapping, crm: CrmRecord, room: RoomMapping, room_event_id: str, current: Response
) -> list[Action]:
    """M4: confirmed -> the room accepts and declines every other pending invitation for an overlapping
    slot; cancelled -> the room declines; prospect/tentative/hold -> the invitation stays pending."""
    status = crm.appointment.status
    appt = crm.appointment
    out: list[Action] = []
    if status is Status.CONFIRMED and current is not Response.ACCEPTED:
        out.append(
            RespondGraphEvent(
                rule="M4",
                reason=f"confirmed in the CRM: room {room.display_name} accepts",
                mailbox=room.mailbox,
                event_id=room_event_id,
                response="accept",
            )
        )
        for other in inp.facts.room_overlaps:
            if (
                other.mailbox == room.mailbox
                and other.event_id != room_event_id
                and other.response in _PENDING
                and not other.is_cancelled
                and _overlaps(other.appointment, appt.start, appt.end)
            ):
                out.append(
                    room_declines(
                        room,
                        other.event_id,
                        f"room {room.display_name} was confirmed for another meeting in this slot",
                    )
                )
    elif status is Status.CANCELLED and current is not Response.DECLINED:
        out.append(
            room_declines(room, room_event_id, f"cancelled in the CRM: room {room.display_name} declines")
        )
    return out


def hold_notices(inp: Inputs, mapping: Mapping, crm: CrmRecord) -> list[Action]:
    """M4: tentative or hold on a CRM-managed room: the organiser is told; the invitation stays pending."""
    before = mapping.snapshot.status if mapping.snapshot is not None else None
    appt = crm.appointment
    if appt.status not in (Status.TENTATIVE, Status.HOLD) or before is appt.status:
        return []
    rooms = [inp.policy.room(a.email) for a in appt.rooms]
    managed = [r for r in rooms if r is not None and r.mode == "crm_managed"]
    told = notice_mailbox(inp.policy, mapping, appt.organizer.email if appt.organizer else None)
    if not managed or told is None:
        return []
    names = ", ".join(r.display_name for r in managed)
    return [
        NotifyOrganizer(
            rule="M4",
            reason=f"the events team set {appt.status.value} (was {before.value if before else 'none'}): "
            "the room invitation stays pending",
            mailbox=told,
            subject=f"{appt.subject}: {appt.status.value} for {names}",
            text=f"Your booking of {names} is on {appt.status.value}; the room has not accepted yet.",
        )
    ]


def notice_mailbox(policy: Policy, mapping: Mapping, organizer: str | None) -> str | None:
    """Who is told (M4, M5): the organiser's own mailbox; for an organiser without one (W2), the default
    calendar the booking was written to; None when there is nobody to tell (a booking on a room's calendar
    alone). A notice is a mail from a mailbox to itself, so it must be a synced user's mailbox."""
    user = policy.user_for_mailbox(organizer)
    if user is not None:
        return user.primary
    if mapping.organizer_mailbox and policy.user_for_mailbox(mapping.organizer_mailbox) is not None:
        return mapping.organizer_mailbox
    return None


def room_copies(inp: Inputs, mapping: Mapping) -> list[tuple[RoomMapping, str]]:
    """The CRM-managed rooms whose copies are linked to the mapping, with the copy's event id."""
    out = []
    for copy in mapping.copies:
        room = inp.policy.room(copy.mailbox)
        if copy.role == "room" and room is not None and room.mode == "crm_managed":
            out.append((room, copy.event_id))
    return out


def room_outcomes(inp: Inputs, mapping: Mapping, merged: Appointment) -> list[Action]:
    """M5: a CRM booking of an Outlook-managed room: tell the CRM creator how the room answered, whichever
    side notices the answer first (the organizer's event changing, or the worker's look after its create)."""
    snap = mapping.snapshot
    if snap is None or snap.origin is not Origin.CRM or merged.status is Status.CANCELLED:
        return []
    told = notice_mailbox(inp.policy, mapping, snap.organizer.email if snap.organizer else None)
    if told is None:
        return []
    before = {a.email: a.response for a in snap.attendees}
    out: list[Action] = []
    for a in merged.rooms:
        room = inp.policy.room(a.email)
        if room is None or room.mode == "crm_managed" or before.get(a.email) is a.response:
            continue
        if a.response in (Response.ACCEPTED, Response.DECLINED):
            verb = "accepted" if a.response is Response.ACCEPTED else "declined: choose another space"
            out.append(
                NotifyOrganizer(
                    rule="M5",
                    # The answer before is named: the same outcome again after another is news (notices).
                    reason=f"room {room.display_name} {verb} (was {_was(before.get(a.email))})",
                    mailbox=told,
                    subject=f"{merged.subject}: room {room.display_name} {a.response.value}",
                    text=f"The room {room.display_name} {verb} for '{merged.subject}' "
                    f"at {merged.start.isoformat()}.",
                )
            )
    return out


def _was(response: Response | None) -> str:
    if response is None or response in (Response.NONE, Response.NOT_RESPONDED):
        return "not answered"
    return response.value
