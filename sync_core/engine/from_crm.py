"""Decisions for a change announced by the CRM (one appointment record). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sync_core.domain import identity
from sync_core.domain.actions import (
    Action,
    CreateGraphEvent,
    GraphCopy,
    LinkCopy,
    Mapping,
    Skip,
)
from sync_core.domain.model import Appointment, CrmRecord, GraphEvent, Status
from sync_core.engine import scope
from sync_core.engine.content_sync import cancel_crm, cancel_graph, is_echo, sync_content
from sync_core.engine.mapping_update import add_copy
from sync_core.engine.rooms import crm_managed_room_actions, hold_notices, room_copies, room_outcomes

if TYPE_CHECKING:
    from sync_core.engine.inputs import Inputs

Result = tuple[list[Action], str | None, Mapping | None]


def _skip(rule: str, reason: str, key: str | None, mapping: Mapping | None) -> Result:
    return [Skip(rule=rule, reason=reason)], key, mapping


def crm_flow(inp: Inputs) -> Result:
    crm, mapping = inp.crm, inp.mapping
    if crm is None:
        return _gone(inp)
    key = mapping.meeting_key if mapping else identity.crm_meeting_key(crm)
    if mapping is not None and is_echo(
        mapping.crm_receipt,
        crm.crm_id,
        crm.version,
        crm.appointment,
        mapping.snapshot,
        lambda: scope.shape(crm.appointment, inp.policy),
    ):
        return _skip("D4", "our own write read back (receipt matches): not a change", key, mapping)
    if inp.policy.direction == "m365_to_crm":
        return _skip(
            "D2",
            "direction m365_to_crm: CRM edits do not flow back; the next M365 change overwrites them",
            key,
            mapping,
        )
    if mapping is None:
        return _new(inp, key, crm)
    if mapping.state == "cancelled":
        return _skip("L3", "the meeting was cancelled; it stays cancelled", key, mapping)
    g = inp.graph
    if g is not None and mapping.graph_event_id is None and g.written_by_us == key:
        # I3: the row was claimed, our create reached M365, the save after it was lost (a crash).
        mapping = _linked(key, crm, g, mapping)
        link = LinkCopy(
            rule="I3",
            reason="our earlier create is already in M365 (found by its tag): linked, not created again",
            graph_copy=_copy(g),
        )
        actions, new_key, new = _mapped(inp, key, mapping, crm, g)
        return [link, *(a for a in actions if not isinstance(a, Skip) or a.needs_operator)], new_key, new
    return _mapped(inp, key, mapping, crm, g)


def _mapped(inp: Inputs, key: str, mapping: Mapping, crm: CrmRecord, g: GraphEvent | None) -> Result:
    if crm.appointment.status is Status.CANCELLED:
        actions, new = cancel_graph(inp, key, mapping, g, "cancelled in the CRM")
        return actions, key, new
    if g is None:
        if mapping.graph_event_id is None:
            return _new(inp, key, crm, mapping)
        if not inp.facts.graph_gone:
            return _skip(
                "L4",
                "the M365 side was not read (no copy of it is known): nothing cancelled, nothing recreated",
                key,
                mapping,
            )
        if inp.policy.direction == "crm_to_m365":
            return _new(inp, key, crm, mapping.model_copy(update={"graph_event_id": None, "copies": ()}))
        actions, new = cancel_crm(inp, key, mapping, crm, "deleted in M365")
        return actions, key, new
    if g.is_cancelled and inp.policy.direction == "two_way":
        actions, new = cancel_crm(inp, key, mapping, crm, "cancelled in M365")
        return actions, key, new
    return _update(inp, key, mapping, crm, g)


def _gone(inp: Inputs) -> Result:
    mapping = inp.mapping
    if mapping is None:
        return _skip("L3", "deleted in the CRM and never synced: nothing to do", None, None)
    key = mapping.meeting_key
    if mapping.state == "cancelled":
        return _skip("L3", "already cancelled", key, mapping)
    if inp.policy.direction == "m365_to_crm":
        return _skip(
            "D2", "direction m365_to_crm: a CRM delete does not flow; M365 recreates the record", key, mapping
        )
    actions, new = cancel_graph(inp, key, mapping, inp.graph, "deleted in the CRM")
    return actions, key, new


def _linked(key: str, crm: CrmRecord, g: GraphEvent, mapping: Mapping | None) -> Mapping:
    """The mapping of a CRM record and the M365 copy found for it (`mapping`: a row claimed earlier)."""
    copy = _copy(g)
    return (mapping or Mapping(meeting_key=key)).model_copy(
        update={
            "crm_id": crm.crm_id,
            "organizer_mailbox": g.mailbox if g.is_organizer else None,
            "graph_event_id": g.event_id,
            "copies": (*(c for c in (mapping.copies if mapping else ()) if c.event_id != g.event_id), copy),
            "ical_uid": g.ical_uid or None,
        }
    )


def _link(
    inp: Inputs, key: str, crm: CrmRecord, g: GraphEvent, base: Appointment | None, rule: str, why: str
) -> Result:
    mapping = _linked(key, crm, g, None).model_copy(update={"snapshot": base})
    copy = mapping.copies[-1]
    writes, merged = sync_content(inp, key, mapping, g, crm)
    return (
        [LinkCopy(rule=rule, reason=why, graph_copy=copy), *writes],
        key,
        mapping.model_copy(update={"snapshot": merged}),
    )


def _new(inp: Inputs, key: str, crm: CrmRecord, mapping: Mapping | None = None) -> Result:
    """A CRM record not yet in M365."""
    policy, appt, g = inp.policy, crm.appointment, inp.graph
    if mapping is None and crm.external_ref and identity.crm_id_from_key(key) is None and "|" not in key:
        if g is not None:
            return _link(
                inp,
                key,
                crm,
                g,
                None,
                "I5",
                f"CRM record {crm.crm_id} already names M365 meeting {key}: adopted",
            )
        return _skip("I3", f"created from M365 ({key}); the M365 side completes its mapping", key, None)
    if appt.series_ref and appt.original_start is not None and mapping is None:
        if g is None:
            return _skip("R3", "an exception edited in the CRM whose occurrence is not in M365", key, None)
        base = scope.shape(g.appointment, policy)  # the occurrence as the series made it: CRM edits win
        return _link(
            inp,
            key,
            crm,
            g,
            base,
            "R3",
            "an occurrence edited in the CRM syncs as an exception of the series",
        )
    if appt.origin.value == "import" and policy.skip_imported:
        return _skip(
            "S7", "created by a bulk import: never pushed, pushing would send invitations", key, mapping
        )
    if appt.status is Status.CANCELLED:
        if g is not None:  # our create reached M365 but its mapping was never saved (crash, I3)
            found = _linked(key, crm, g, mapping)
            actions, gone = cancel_graph(inp, key, found, g, "cancelled in the CRM")
            return actions, key, gone
        return _skip("L3", "cancelled before it was ever synced", key, mapping)
    if appt.status not in policy.push_statuses:
        pushed = ", ".join(s.value for s in policy.push_statuses)
        return _skip(
            "L1", f"status {appt.status.value} is not pushed to M365 (push_statuses: {pushed})", key, mapping
        )
    if appt.recurrence is not None and policy.recurring == "skip":
        return _skip("R4", "recurring meeting and policy recurring=skip", key, mapping)
    if not scope.in_window(appt, policy, inp.now):
        return _skip(
            "S6", f"outside the window (-{policy.past_days} / +{policy.future_days} days)", key, mapping
        )
    if scope.is_private(appt) and policy.private_events == "skip":
        return _skip("S3", "private event and policy private_events=skip", key, mapping)
    if g is not None:
        return _link(
            inp, key, crm, g, None, "I3", "our earlier create is already in M365: linked, not created again"
        )

    mailbox, rule, why = scope.write_target(inp.policy, crm)
    if mailbox is None:
        return _skip("W2", why, key, mapping)
    content = _with_defaults(scope.shape(appt, policy), inp)
    action = CreateGraphEvent(
        rule=rule,
        reason=why,
        mailbox=mailbox,
        appointment=content,
        transaction_id=identity.transaction_id(key),
    )
    new = (mapping or Mapping(meeting_key=key)).model_copy(
        update={"crm_id": crm.crm_id, "organizer_mailbox": mailbox, "snapshot": content}
    )
    return [action], key, new


def _with_defaults(appt: Appointment, inp: Inputs) -> Appointment:
    """W3: the configured defaults fill what the CRM left unset."""
    d = inp.policy.event_defaults
    update: dict[str, object] = {}
    if appt.reminder_minutes is None and d.reminder_minutes is not None:
        update["reminder_minutes"] = d.reminder_minutes
    if not appt.categories and d.categories:
        update["categories"] = d.categories
    if d.show_as is not None and appt.show_as.value == "busy":
        update["show_as"] = d.show_as
    return appt.model_copy(update=update)


def _update(inp: Inputs, key: str, mapping: Mapping, crm: CrmRecord, g: GraphEvent) -> Result:
    """A change of a mapped CRM record whose M365 event exists."""
    if scope.activity_closed(crm.appointment, inp.policy, inp.now) and scope.activity_closed(
        g.appointment, inp.policy, inp.now
    ):
        return _skip(
            "L5", f"ended more than {inp.policy.activity_sync_days} days ago: no longer synced", key, mapping
        )
    actions: list[Action] = []
    actions += hold_notices(inp, mapping, crm)
    attendee_responses = {a.email: a.response for a in g.appointment.attendees}
    for room, event_id in room_copies(inp, mapping):
        current = attendee_responses.get(room.mailbox)
        if current is None:
            continue
        actions += crm_managed_room_actions(inp, mapping, crm, room, event_id, current)
    writes, merged = sync_content(inp, key, add_copy(mapping, _copy(g)), g, crm)
    actions += room_outcomes(inp, mapping, merged)
    actions += writes
    new = add_copy(mapping, _copy(g)).model_copy(update={"snapshot": merged})
    before = mapping.snapshot.status if mapping.snapshot is not None else None
    if not actions:
        if before is Status.CONFIRMED and crm.appointment.status is not Status.CONFIRMED:
            return _skip(
                "L2", f"moved back to {crm.appointment.status.value}: the event stays in Outlook", key, new
            )
        return _skip("W4", "nothing differs between the CRM and M365: no write", key, new)
    return actions, key, new


def _copy(g: GraphEvent) -> GraphCopy:
    return GraphCopy(
        mailbox=g.mailbox, event_id=g.event_id, role="organizer" if g.is_organizer else "attendee"
    )
