"""Decisions for a change announced by Microsoft 365 (one mailbox copy of an event). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from sync_core.domain import identity
from sync_core.domain.actions import (
    Action,
    CancelGraphEvent,
    CreateCrmAppointment,
    GraphCopy,
    LinkCopy,
    Mapping,
    Skip,
    Unlink,
    UpdateCrmAppointment,
)
from sync_core.domain.model import (
    Appointment,
    AttendeeType,
    CrmRecord,
    GraphEvent,
    Origin,
    Response,
    Side,
    Status,
)
from sync_core.domain.policy import RoomMapping
from sync_core.engine import scope
from sync_core.engine.content_sync import (
    cancel_crm,
    cancel_graph,
    crm_content,
    is_echo,
    sync_content,
)
from sync_core.engine.mapping_update import add_copy
from sync_core.engine.rooms import crm_managed_room_actions, room_outcomes

if TYPE_CHECKING:
    from sync_core.engine.inputs import Inputs

Result = tuple[list[Action], str | None, Mapping | None]
Role = Literal["organizer", "attendee", "room"]
_ACCEPTED = (Response.ACCEPTED, Response.TENTATIVE)


def key_for_graph(graph: GraphEvent, inp: Inputs) -> str:
    """The meeting key of a copy: the key we tagged it with when we wrote it (D4, I3), else by I1."""
    if graph.written_by_us:
        return graph.written_by_us
    return identity.meeting_key(graph, inp.facts.series_key)


def _skip(rule: str, reason: str, key: str | None, mapping: Mapping | None) -> Result:
    return [Skip(rule=rule, reason=reason)], key, mapping


def m365_flow(inp: Inputs) -> Result:
    g = inp.graph
    mapping = inp.mapping
    if g is None:
        return _gone(inp)
    if g.is_draft:
        return _skip("S2", "draft event (isDraft): never synced until it is sent", None, mapping)
    room = inp.policy.room(g.mailbox)
    user = inp.policy.user_for_mailbox(g.mailbox)
    if room is None and user is None:
        return _skip(
            "S1", f"{g.mailbox} is not the mailbox of an enabled sync user or a mapped room", None, mapping
        )
    key = mapping.meeting_key if mapping else key_for_graph(g, inp)
    if mapping is not None and is_echo(
        mapping.graph_receipt,
        g.event_id,
        g.change_key,
        g.appointment,
        mapping.snapshot,
        lambda: scope.shape(scope.with_own_answers(g, inp.policy), inp.policy),
    ):
        return _skip("D4", "our own write read back (receipt matches): not a change", key, mapping)

    recurring = g.type in ("seriesMaster", "occurrence", "exception") or g.appointment.recurrence is not None
    if recurring and inp.policy.recurring == "skip":
        if mapping is not None:
            return (
                [Unlink(rule="X1", reason="recurring meetings are out of scope (recurring=skip): unlinked")],
                key,
                None,
            )
        return _skip("R4", "recurring meeting and policy recurring=skip", key, None)
    if g.type == "seriesMaster" and inp.policy.recurring == "expand":
        return _skip("R4", "recurring=expand: occurrences sync one by one, not the series", key, mapping)
    if g.type == "occurrence" and inp.policy.recurring == "series" and mapping is None:
        return _skip("R1", "an unmodified occurrence travels with its series master", key, mapping)

    if inp.policy.direction == "crm_to_m365":
        why = "edits made in M365 do not flow; the next CRM change overwrites them"
        return _skip("D1", f"direction crm_to_m365: {why}", key, mapping)

    role: Role = "room" if room is not None else ("organizer" if g.is_organizer else "attendee")
    organizer = g.appointment.organizer.email if g.appointment.organizer else None
    organizer_user = inp.policy.user_for_email(organizer)
    organizer_drives = role != "organizer" and organizer_user is not None and organizer not in (g.mailbox,)

    if organizer_drives:
        return _secondary_copy(inp, key, g, role, room)
    if mapping is not None and mapping.graph_event_id not in (None, g.event_id):
        return _secondary_copy(inp, key, g, role, room)

    if g.is_cancelled:
        if mapping is None:
            return _skip("L4", "cancelled before it was ever synced", key, None)
        actions, new = cancel_crm(inp, key, mapping, inp.crm, "cancelled in M365")
        return actions, key, new

    if mapping is None:
        return _create(inp, key, g, role, room)
    return _update(inp, key, mapping, g, role)


def _gone(inp: Inputs) -> Result:
    """The copy no longer exists (deleted, or not found on read)."""
    mapping = inp.mapping
    if mapping is None:
        return _skip("L4", "deleted in M365 and never synced: nothing to do", None, None)
    key = mapping.meeting_key
    item = inp.change.item_id
    if mapping.graph_event_id is not None and item != mapping.graph_event_id:
        copies = tuple(c for c in mapping.copies if c.event_id != item)
        new = mapping.model_copy(update={"copies": copies})
        return _skip("I2", "an invitee's or room's copy was removed; the meeting itself stays", key, new)
    if mapping.state == "cancelled":
        return _skip("L4", "already cancelled", key, mapping)
    if inp.policy.direction == "crm_to_m365":
        return _skip(
            "D1", "direction crm_to_m365: a delete in M365 does not flow; the CRM rewrites it", key, mapping
        )
    actions, gone = cancel_crm(inp, key, mapping, inp.crm, "deleted in M365")
    return actions, key, gone


def _room_gate(appt: Appointment, inp: Inputs, own: tuple[RoomMapping, Response] | None) -> Skip | None:
    """M2/M3: a meeting on an Outlook-managed room syncs once the room accepts; a decline creates nothing."""
    for a in appt.attendees:
        room = inp.policy.room(a.email)
        if a.type is not AttendeeType.RESOURCE or room is None or room.mode == "crm_managed":
            continue
        response = own[1] if own is not None and own[0].mailbox == room.mailbox else a.response
        rule = "M2" if room.mode == "outlook_auto_accept" else "M3"
        if response is Response.DECLINED:
            return Skip(rule=rule, reason=f"room {room.display_name} declined: nothing is created")
        if response is not Response.ACCEPTED:
            who = "the room" if rule == "M2" else "the room's moderator"
            return Skip(rule=rule, reason=f"waiting for {who} ({room.display_name}) to accept")
    return None


def _in_scope(appt: Appointment, inp: Inputs) -> Skip | None:
    policy = inp.policy
    if not scope.in_window(appt, policy, inp.now):
        return Skip(
            rule="S6", reason=f"outside the window (-{policy.past_days} / +{policy.future_days} days)"
        )
    if scope.is_private(appt) and policy.private_events == "skip":
        return Skip(rule="S3", reason="private event and policy private_events=skip")
    if policy.internal_events == "skip" and scope.is_internal(appt, policy):
        return Skip(rule="S4", reason="internal event (everyone in own domains) and internal_events=skip")
    if policy.unmatched_events == "skip" and not scope.is_matched(appt, inp.facts.known_contacts):
        return Skip(rule="S5", reason="no attendee resolves to a CRM contact and unmatched_events=skip")
    return None


def _create(inp: Inputs, key: str, g: GraphEvent, role: Role, room: RoomMapping | None) -> Result:
    """First sight of a meeting's authoritative copy: create the CRM record (or adopt one, I5)."""
    appt = scope.with_own_answers(g, inp.policy)
    if role == "attendee" and g.response not in _ACCEPTED:
        return _skip(
            "S8",
            f"invitation from an external organizer is {g.response.value}: synced once accepted",
            key,
            None,
        )
    out = _in_scope(appt, inp)
    if out is not None:
        return [out], key, None
    if room is not None and room.mode != "crm_managed":
        gate = _room_gate(appt, inp, (room, g.response))
    else:
        gate = _room_gate(appt, inp, None)
    if gate is not None:
        return [gate], key, None
    copy = GraphCopy(mailbox=g.mailbox, event_id=g.event_id, role=role)
    if inp.crm is not None:
        return _adopt(inp, key, g, inp.crm, copy)
    if g.written_by_us and identity.crm_id_from_key(g.written_by_us):
        # Our own write whose CRM record is gone and whose mapping was never saved (crash): an orphan.
        if g.is_organizer and inp.policy.delete_policy.crm_to_m365 == "propagate":
            return (
                [
                    CancelGraphEvent(
                        rule="I3",
                        reason=f"written by us for {g.written_by_us}, whose CRM record no longer exists",
                        mailbox=g.mailbox,
                        event_id=g.event_id,
                    )
                ],
                key,
                None,
            )
        return _skip("I3", f"written by us for {g.written_by_us}; its CRM record no longer exists", key, None)

    shaped = scope.shape(appt, inp.policy)
    crm_rooms = [inp.policy.room(a.email) for a in shaped.rooms]
    managed = [r for r in crm_rooms if r is not None and r.mode == "crm_managed"]
    status = inp.policy.crm_managed_status if managed else inp.policy.m365_status
    series_ref = inp.facts.series_mapping.meeting_key if inp.facts.series_mapping else inp.facts.series_key
    content = crm_content(shaped, inp, status).model_copy(
        update={
            "origin": Origin.M365,
            "series_ref": series_ref if g.type in ("occurrence", "exception") else None,
            "original_start": g.original_start if g.type in ("occurrence", "exception") else None,
        }
    )
    if managed:
        rule, why = (
            "M4",
            f"CRM-managed room {managed[0].display_name}: booked as {status.value}, invitation stays pending",
        )
    elif any(r is not None for r in crm_rooms):
        rule = "M2" if all(r is None or r.mode == "outlook_auto_accept" for r in crm_rooms) else "M3"
        why = "the room accepted: synced with the configured defaults as " + status.value
    elif g.type == "exception":
        rule, why = "R3", "an edited occurrence syncs as an exception of its series"
    elif appt.recurrence is not None:
        rule, why = "R1", "a recurring series syncs as one series with its pattern"
    elif role == "organizer":
        rule, why = "I2", "the organizer's copy creates the CRM record"
    else:
        rule, why = (
            "I2",
            "organizer is not a sync user: this copy creates a stub, organizer kept as external person",
        )
    action = CreateCrmAppointment(
        rule=rule,
        reason=why,
        appointment=content,
        idempotency_key=identity.idempotency_key(key, Side.CRM),
    )
    new = Mapping(
        meeting_key=key,
        organizer_mailbox=g.mailbox if role == "organizer" else None,
        graph_event_id=g.event_id,
        copies=(copy,),
        snapshot=content,
        ical_uid=g.ical_uid or None,
    )
    return [action], key, new


def _adoption_refused(inp: Inputs, key: str, g: GraphEvent, crm: CrmRecord) -> str | None:
    """Why this M365 event may not take over `crm` (I3, I5), or None. A key from our own tag verified for
    this mailbox proves we wrote the event for that record; any other route needs the record to be linked
    to nothing else and to belong to the same sync user as the mailbox."""
    if inp.facts.crm_mapped_under and inp.facts.crm_mapped_under != key:
        return f"CRM record {crm.crm_id} is already linked to meeting {inp.facts.crm_mapped_under}"
    if crm.external_ref and crm.external_ref != key:
        return f"CRM record {crm.crm_id} names another meeting ({crm.external_ref})"
    if g.written_by_us == key:
        return None
    mailbox_user = inp.policy.user_for_mailbox(g.mailbox)
    organizer = crm.appointment.organizer.email if crm.appointment.organizer else None
    owners = {
        u.email
        for u in (inp.policy.user_for_email(organizer), inp.policy.user_for_mailbox(crm.mailbox_hint))
        if u
    }
    if mailbox_user is None or mailbox_user.email not in owners:
        owner = organizer or crm.mailbox_hint or "nobody we sync"
        return f"CRM record {crm.crm_id} belongs to {owner}, not to {g.mailbox}"
    return None


def _adopt(inp: Inputs, key: str, g: GraphEvent, crm: CrmRecord, copy: GraphCopy) -> Result:
    """I5/I3: a CRM record already exists for this meeting: link it instead of creating a second one."""
    refused = _adoption_refused(inp, key, g, crm)
    if refused is not None:
        hold = Skip(rule="I5", reason=f"not adopted, held for an operator: {refused}", needs_operator=True)
        return [hold], key, None
    base = Mapping(
        meeting_key=key,
        crm_id=crm.crm_id,
        organizer_mailbox=g.mailbox if copy.role == "organizer" else None,
        graph_event_id=g.event_id,
        copies=(copy,),
        snapshot=None,  # no common base is known: differences follow the conflict policy (D3)
        ical_uid=g.ical_uid or None,
    )
    if crm.appointment.status is Status.CANCELLED and inp.policy.direction != "m365_to_crm":
        # Our create for a CRM record that was cancelled before its mapping was saved (I3, L3).
        actions, gone = cancel_graph(inp, key, base, g, "cancelled in the CRM")
        return actions, key, gone
    writes, merged = sync_content(inp, key, base, g, crm)
    link = LinkCopy(
        rule="I5", reason=f"adopted existing CRM record {crm.crm_id} instead of creating one", graph_copy=copy
    )
    return [link, *writes], key, base.model_copy(update={"snapshot": merged})


def _secondary_copy(inp: Inputs, key: str, g: GraphEvent, role: Role, room: RoomMapping | None) -> Result:
    """I2: a copy that does not drive the meeting: link it, and carry only its own response (L6)."""
    mapping, crm = inp.mapping, inp.crm
    if mapping is None:
        return _skip(
            "I2", "the organizer is a sync user: the organizer's copy syncs, not this one", key, None
        )
    copy = GraphCopy(mailbox=g.mailbox, event_id=g.event_id, role=role)
    new = add_copy(mapping, copy)
    actions: list[Action] = []
    if new is not mapping:
        actions.append(
            LinkCopy(rule="I1", reason=f"{role} copy in {g.mailbox} joined to {key}", graph_copy=copy)
        )
    if crm is None:
        return actions or [Skip(rule="I2", reason="secondary copy; no CRM record yet")], key, new
    if room is not None and room.mode == "crm_managed":
        actions += crm_managed_room_actions(inp, new, crm, room, copy.event_id, g.response)
    email = room.mailbox if room is not None else _owner_email(inp, g.mailbox)
    attendees = crm.appointment.attendees
    current = next((a for a in attendees if a.email == email), None)
    if (
        current is not None
        and g.response not in (Response.NONE, Response.ORGANIZER)
        and current.response is not g.response
        and room is None
    ):
        updated = tuple(
            a.model_copy(update={"response": g.response}) if a.email == email else a for a in attendees
        )
        appt = crm.appointment.model_copy(update={"attendees": updated})
        actions.append(
            UpdateCrmAppointment(
                rule="L6",
                reason=f"{email} answered {g.response.value} on their own copy",
                crm_id=crm.crm_id,
                appointment=appt,
                changed_fields=("attendees",),
                expected_version=crm.version,
            )
        )
        if new.snapshot is not None:
            snap_att = tuple(
                a.model_copy(update={"response": g.response}) if a.email == email else a
                for a in new.snapshot.attendees
            )
            new = new.model_copy(update={"snapshot": new.snapshot.model_copy(update={"attendees": snap_att})})
    if not actions:
        actions.append(Skip(rule="I2", reason=f"{role} copy: nothing of its own changed"))
    return actions, key, new


def _owner_email(inp: Inputs, mailbox: str) -> str:
    user = inp.policy.user_for_mailbox(mailbox)
    return user.email if user is not None else mailbox


def _update(inp: Inputs, key: str, mapping: Mapping, g: GraphEvent, role: Role) -> Result:
    """A change of the authoritative copy of a mapped meeting."""
    if mapping.state == "cancelled":
        return _skip("L4", "the meeting was cancelled; later edits are not synced", key, mapping)
    crm = inp.crm
    if crm is None:
        if mapping.crm_id is None:
            mapping = mapping.model_copy(update={"snapshot": None})
            return _create(inp, key, g, role, inp.policy.room(g.mailbox))
        if inp.policy.direction == "m365_to_crm":
            # D2: the CRM side has no say; the record is created again from M365.
            result = _create(inp, key, g, role, inp.policy.room(g.mailbox))
            return (
                [
                    a.model_copy(
                        update={
                            "rule": "D2",
                            "reason": "one-way m365_to_crm: CRM record deleted, M365 recreates it",
                        }
                    )
                    if isinstance(a, CreateCrmAppointment)
                    else a
                    for a in result[0]
                ],
                key,
                result[2],
            )
        actions, new = cancel_graph(inp, key, mapping, g, "deleted in the CRM")
        return actions, key, new
    if crm.appointment.status is Status.CANCELLED and inp.policy.direction == "two_way":
        # The CRM cancellation may not have been processed yet: it wins over an edit (L3).
        actions, new = cancel_graph(inp, key, mapping, g, "cancelled in the CRM")
        return actions, key, new
    appt = g.appointment
    if scope.is_private(appt) and inp.policy.private_events == "skip":
        return (
            [Unlink(rule="X1", reason="became private and private_events=skip: unlinked, nothing deleted")],
            key,
            None,
        )
    if scope.activity_closed(appt, inp.policy, inp.now) and scope.activity_closed(
        crm.appointment, inp.policy, inp.now
    ):
        return _skip(
            "L5", f"ended more than {inp.policy.activity_sync_days} days ago: no longer synced", key, mapping
        )
    new = add_copy(mapping, GraphCopy(mailbox=g.mailbox, event_id=g.event_id, role=role))
    actions, merged = sync_content(inp, key, new, g, crm)
    actions = room_outcomes(inp, new, merged) + actions
    new = new.model_copy(update={"snapshot": merged})
    if not actions:
        return _skip("W4", "nothing differs between M365 and the CRM: no write", key, new)
    return actions, key, new
