"""Shared steps of the decision: echo recognition (D4), content sync of a mapped meeting (D1-D3, W4, L5,
L6, R3), and cancel propagation in both directions (L3, L4, X1). Pure.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sync_core.domain.actions import (
    Action,
    CancelCrmAppointment,
    CancelGraphEvent,
    CancelGraphOccurrence,
    Mapping,
    Receipt,
    RespondGraphEvent,
    Skip,
    Unlink,
    UpdateCrmAppointment,
    UpdateGraphEvent,
)
from sync_core.domain.model import (
    Appointment,
    Attendee,
    CrmRecord,
    GraphEvent,
    Kind,
    Origin,
    Response,
    Status,
)
from sync_core.engine import scope
from sync_core.engine.merge import SYNC_FIELDS, crm_view, norm, three_way
from sync_core.engine.rooms import room_declines

if TYPE_CHECKING:
    from sync_core.engine.inputs import Inputs

# What an attendee (not the organizer) may change on their own copy of a meeting.
ATTENDEE_LOCAL_FIELDS: tuple[str, ...] = ("sensitivity", "show_as", "reminder_minutes", "categories")
# What Exchange sends to the attendees as the organizer when the organizer's copy changes (W1).
SEND_AS_FIELDS: tuple[str, ...] = ("attendees", "body")
_RESPOND = {
    Response.ACCEPTED: "accept",
    Response.TENTATIVE: "tentativelyAccept",
    Response.DECLINED: "decline",
}


def receipt_fingerprint(appt: Appointment) -> str:
    """The fingerprint to record in a Receipt after a write (D4): the compared form of every synced
    field, so a side's harmless rewrites (whitespace, order, names) still read as our echo."""
    data: dict[str, object] = {f: crm_view(appt, f) for f in SYNC_FIELDS}
    data |= {"status": appt.status.value, "kind": appt.kind.value}  # a status change is never an echo
    canon = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


def is_echo(
    receipt: Receipt | None,
    target_id: str,
    version: str,
    appt: Appointment,
    last_synced: Appointment | None = None,
    shaped: Callable[[], Appointment] | None = None,
) -> bool:
    """D4: what we read is what we last wrote: same target and the same version, or the same content under
    a new version (the side's own rewrite of our write) while the meeting was synced to nothing else since:
    a person's edit away from what we wrote and back again (A, B, A) is a change. `shaped`: `appt` as the
    policy shapes it, compared with `last_synced` (the mapping's snapshot); made only when it is needed."""
    if receipt is None or receipt.target_id != target_id:
        return False
    if version and receipt.version == version:
        return True
    if receipt.fingerprint != receipt_fingerprint(appt):
        return False
    seen = shaped() if shaped is not None else appt
    return last_synced is None or all(crm_view(last_synced, f) == crm_view(seen, f) for f in SYNC_FIELDS)


def x1_limit(inp: Inputs, what: str) -> Skip | None:
    """X1: stop before the cancel or delete that would pass `max_deletes_per_run` for this mailbox."""
    if inp.facts.deletes_this_run >= inp.policy.max_deletes_per_run:
        return Skip(
            rule="X1",
            reason=f"{what} held: {inp.facts.deletes_this_run} deletes already this run "
            f"(max_deletes_per_run={inp.policy.max_deletes_per_run}); waiting for an operator",
            needs_operator=True,
        )
    return None


def crm_content(appt: Appointment, inp: Inputs, status: Status) -> Appointment:
    """A shaped M365 meeting as the CRM record to create: status, kind (L5), required defaults (W3)."""
    return appt.model_copy(
        update={
            "status": status,
            "kind": scope.kind_at(appt, inp.now),
            "crm_fields": tuple(sorted(inp.policy.crm_defaults.items())),
        }
    )


def _with_response(attendees: Sequence[Attendee], email: str, response: Response) -> tuple[Attendee, ...]:
    return tuple(a.model_copy(update={"response": response}) if a.email == email else a for a in attendees)


def sync_content(
    inp: Inputs, key: str, mapping: Mapping, graph: GraphEvent, crm: CrmRecord
) -> tuple[list[Action], Appointment]:
    """Merge a mapped meeting's two sides and write each only the fields that differ (D3, W4).

    Returns the writes (empty when nothing differs) and the merged content, the next snapshot.
    """
    policy = inp.policy
    m = scope.shape(scope.with_own_answers(graph, policy, crm.appointment), policy)
    c = scope.shape(crm.appointment, policy)
    r = three_way(
        mapping.snapshot,
        m,
        c,
        conflict=policy.conflict,
        direction=policy.direction,
        m_time=graph.last_modified,
        c_time=crm.updated_at,
    )
    merged = r.merged
    to_graph = list(r.to_graph)
    # Changes made in the CRM that are not ours to write to Outlook stay out of it and stay in the CRM as
    # made: the snapshot keeps Outlook's content for them, so they are neither written nor reverted.
    kept: tuple[str, ...] = ()
    if not graph.is_organizer:
        # Our copy is an invitee's (stub, I2): only its own settings are ours to change; the meeting itself
        # belongs to the external organizer. A CRM user's notes on the record are the CRM's own (SO-8).
        kept = tuple(f for f in to_graph if f not in ATTENDEE_LOCAL_FIELDS)
    held = _not_sendable(inp, graph, crm, to_graph)
    if held is not None:
        # W1: an attendee or body change Exchange would send as the organizer, made by a CRM user who may
        # not send as them.
        kept += held.fields
    merged = merged.model_copy(update={f: getattr(m, f) for f in kept})
    to_graph = [f for f in to_graph if f not in kept]
    actions: list[Action] = []

    # L6, CRM -> M365: a sync user's own response changed in the CRM is answered from their copy.
    if policy.direction == "two_way":
        for email, response in sorted(r.crm_responses.items()):
            user = policy.user_for_email(email)
            copy = next(
                (cp for cp in mapping.copies if user is not None and cp.mailbox in user.all_mailboxes),
                None,
            )
            if copy is None or response not in _RESPOND:
                continue
            actions.append(
                RespondGraphEvent(
                    rule="L6",
                    reason=f"{email} answered {response.value} in the CRM",
                    mailbox=copy.mailbox,
                    event_id=copy.event_id,
                    response=_RESPOND[response],  # type: ignore[arg-type]
                )
            )
            merged = merged.model_copy(
                update={"attendees": _with_response(merged.attendees, email, response)}
            )

    # R3: an occurrence cannot be un-cancelled in M365; one cancelled in the CRM is deleted there.
    m_cancelled = set(m.cancelled_occurrences)
    keep = sorted(set(merged.cancelled_occurrences) | m_cancelled)
    merged = merged.model_copy(update={"cancelled_occurrences": tuple(keep)})
    if policy.direction != "m365_to_crm" and graph.is_organizer:
        for start in keep:
            if start not in m_cancelled:
                actions.append(
                    CancelGraphOccurrence(
                        rule="R3",
                        reason=f"occurrence at {start.isoformat()} cancelled in the CRM",
                        mailbox=graph.mailbox,
                        series_event_id=graph.event_id,
                        original_start=start,
                    )
                )

    kind = scope.kind_at(merged, inp.now)
    merged = merged.model_copy(update={"kind": kind})
    to_crm: list[str] = []
    if policy.direction != "crm_to_m365":
        to_crm = [f for f in SYNC_FIELDS if crm_view(c, f) != crm_view(merged, f)]
        to_crm = [f for f in to_crm if f not in kept]
        if c.kind is not kind:
            to_crm.append("kind")
    conflict_note = f"; conflict on {', '.join(r.conflicts)}: {r.winner} wins (D3)" if r.conflicts else ""
    occurrence = "|" in key
    if to_crm:
        rule = _crm_rule(to_crm, c, merged, bool(r.conflicts), occurrence, kind)
        actions.append(
            UpdateCrmAppointment(
                rule=rule,
                reason=f"M365 differs in {', '.join(to_crm)}{conflict_note}",
                crm_id=crm.crm_id,
                appointment=merged,
                changed_fields=tuple(to_crm),
                expected_version=crm.version,
            )
        )
    if to_graph:
        rule = "D3" if r.conflicts else ("R3" if occurrence else "F1")
        actions.append(
            UpdateGraphEvent(
                rule=rule,
                reason=f"CRM differs in {', '.join(to_graph)}{conflict_note}",
                mailbox=graph.mailbox,
                event_id=graph.event_id,
                appointment=merged,
                changed_fields=tuple(to_graph),
            )
        )
    if held is not None:
        actions.append(held.skip)
    return actions, merged


@dataclass(frozen=True)
class _Held:
    fields: tuple[str, ...]
    skip: Skip


def _not_sendable(inp: Inputs, graph: GraphEvent, crm: CrmRecord, to_graph: list[str]) -> _Held | None:
    """W1 on updates: the send-as fields of `to_graph` when the CRM user who made the change (or, if the CRM
    does not say, who created the record) may not send as the sync user whose meeting it is."""
    fields = tuple(f for f in to_graph if f in SEND_AS_FIELDS)
    owner = inp.policy.user_for_mailbox(graph.mailbox) if graph.is_organizer and fields else None
    editor = crm.updated_by or crm.created_by
    if owner is None or scope.may_send_as(inp.policy, owner, editor):
        return None
    reason = (
        f"{editor} changed {', '.join(fields)}, which Exchange would send as {owner.email}; {editor} may not "
        f"send as them (not a delegate in the policy): not written to Outlook, left as is in the CRM"
    )
    return _Held(fields, Skip(rule="W1", reason=reason))


def _crm_rule(
    fields: list[str], c: Appointment, merged: Appointment, conflict: bool, occurrence: bool, kind: Kind
) -> str:
    if conflict:
        return "D3"
    if fields == ["kind"]:
        return "L5"
    if fields == ["attendees"] and norm(c, "attendees") == norm(merged, "attendees"):
        return "L6"
    if occurrence or "cancelled_occurrences" in fields:
        return "R3"
    if "recurrence" in fields:
        return "R1"
    return "F1"


def cancel_crm(
    inp: Inputs, key: str, mapping: Mapping, crm: CrmRecord | None, why: str
) -> tuple[list[Action], Mapping | None]:
    """L4: the meeting was cancelled or deleted in M365; cancel the CRM record per the delete policy."""
    rule = "R3" if "|" in key else "L4"
    if inp.facts.logical_removal:
        return [Unlink(rule="X1", reason=f"{why}, but only out of scope: unlinked, nothing deleted")], None
    if crm is None:
        return [Unlink(rule="L4", reason=f"{why}, and the CRM record is gone too")], None
    if crm.appointment.status is Status.CANCELLED:
        return [Skip(rule="L4", reason=f"{why}; the CRM record is already cancelled")], mapping.model_copy(
            update={"state": "cancelled"}
        )
    if inp.policy.delete_policy.m365_to_crm == "keep":
        return [
            Unlink(rule="L4", reason=f"{why}; delete policy m365_to_crm=keep: CRM record kept, unlinked")
        ], None
    held = x1_limit(inp, f"cancelling CRM record {crm.crm_id}")
    if held is not None:
        return [held], mapping
    return [
        CancelCrmAppointment(rule=rule, reason=f"{why}: the CRM record is cancelled", crm_id=crm.crm_id)
    ], mapping.model_copy(update={"state": "cancelled"})


def _booked_in_outlook(inp: Inputs, mapping: Mapping) -> bool:
    """The meeting was made in Outlook (the CRM record came from it), not booked in the CRM."""
    appt = inp.crm.appointment if inp.crm is not None else mapping.snapshot
    return appt is not None and appt.origin is Origin.M365


def cancel_graph(
    inp: Inputs, key: str, mapping: Mapping, graph: GraphEvent | None, why: str
) -> tuple[list[Action], Mapping | None]:
    """L3: the meeting was cancelled or deleted in the CRM; cancel the organizer's event (Exchange tells
    the attendees) or decline our invitee/room copy; every CRM-managed room copy declines (M4)."""
    if inp.facts.logical_removal:
        return [Unlink(rule="X1", reason=f"{why}, but only out of scope: unlinked, nothing deleted")], None
    if mapping.state == "cancelled":
        return [Skip(rule="L3", reason=f"{why}; already cancelled on both sides")], mapping
    if inp.policy.delete_policy.crm_to_m365 == "keep":
        return [
            Unlink(rule="L4", reason=f"{why}; delete policy crm_to_m365=keep: M365 event kept, unlinked")
        ], None
    if graph is None:
        return [Unlink(rule="L3", reason=f"{why}, and the M365 event is gone too")], None
    held = x1_limit(inp, f"cancelling M365 event {graph.event_id}")
    if held is not None:
        return [held], mapping
    actions: list[Action] = []
    rooms = [
        (room, copy.event_id)
        for copy in mapping.copies
        if copy.role == "room"
        and copy.event_id != graph.event_id
        and (room := inp.policy.room(copy.mailbox)) is not None
        and room.mode == "crm_managed"
    ]
    if rooms and graph.is_organizer and _booked_in_outlook(inp, mapping):
        # Momentus: the events team cancelling a booking made in Outlook declines the venue; the meeting,
        # its organizer and attendees are the organizer's, untouched (they get Exchange's usual decline).
        return [
            room_declines(room, event_id, f"{why}: a booking made in Outlook; {room.display_name} declines")
            for room, event_id in rooms
        ], mapping.model_copy(update={"state": "cancelled"})
    if graph.is_organizer:
        # Exchange cancels every attendee's and room's copy with the organizer's: nothing else to decline
        # (a decline after it is refused, "The meeting was canceled").
        rooms = []
        actions.append(
            CancelGraphEvent(
                rule="L3",
                reason=f"{why}: the organizer's event is cancelled, Exchange tells the attendees",
                mailbox=graph.mailbox,
                event_id=graph.event_id,
                comment="Cancelled in the CRM",
            )
        )
    elif graph.response is not Response.DECLINED:
        actions.append(
            RespondGraphEvent(
                rule="L3",
                reason=f"{why}: our copy belongs to an external organizer, so it is declined",
                mailbox=graph.mailbox,
                event_id=graph.event_id,
                response="decline",
                comment="Cancelled in the CRM",
            )
        )
    for room, event_id in rooms:
        actions.append(room_declines(room, event_id, f"{why}: CRM-managed room {room.display_name} declines"))
    if not actions:
        actions.append(Skip(rule="L3", reason=f"{why}; our copy is already declined"))
    return actions, mapping.model_copy(update={"state": "cancelled"})
