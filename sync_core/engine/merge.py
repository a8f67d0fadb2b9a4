"""Three-way merge of one meeting's content (rules D1-D3, W4, L6): base snapshot, M365 copy, CRM record.
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sync_core.domain import timezones
from sync_core.domain.model import GRAPH_WRITABLE_FIELDS, Appointment, Attendee, Response

# Fields both sides hold and write (F1). Occurrence cancellations are written as their own action (R3).
BOTH_WAYS: tuple[str, ...] = (*GRAPH_WRITABLE_FIELDS, "cancelled_occurrences")
# Read from M365 only: Graph does not let us write them (organizer: the mailbox; join link: Teams;
# attachments: a separate endpoint, read by service/attachments.py; content only under `content`, F5).
M365_OWNED: tuple[str, ...] = ("organizer", "online_meeting_url", "attachments")
SYNC_FIELDS: tuple[str, ...] = (*BOTH_WAYS, *M365_OWNED)

Conflict = Literal["m365_wins", "crm_wins", "newest_wins"]
Direction = Literal["two_way", "m365_to_crm", "crm_to_m365"]


def _text(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip()


def norm(appt: Appointment, field: str) -> Any:
    """The comparable form of one field: what a side may rewrite without meaning an edit is ignored
    (whitespace, order of attendees and categories, attendee display names, zone name spelling)."""
    if field == "subject":
        return _text(appt.subject)
    if field == "body":
        return _text(appt.body)
    if field == "time_zone":
        return timezones.to_iana(appt.time_zone) or appt.time_zone
    if field == "locations":
        return tuple(
            sorted((_text(loc.display_name).casefold(), loc.room_email or "") for loc in appt.locations)
        )
    if field == "attendees":
        return tuple(sorted((a.email, a.type.value) for a in appt.attendees))
    if field == "categories":
        return tuple(sorted(set(appt.categories)))
    if field == "organizer":
        return appt.organizer.email if appt.organizer else None
    if field == "attachments":  # F5: metadata, each file's version (id, lastModifiedDateTime) included
        return tuple(
            sorted((a.name, a.size, a.content_type, a.kind, *a.version_key) for a in appt.attachments)
        )
    if field == "cancelled_occurrences":
        return tuple(sorted(set(appt.cancelled_occurrences)))
    if field == "recurrence":
        return appt.recurrence.model_dump(mode="json") if appt.recurrence else None
    return getattr(appt, field)


def responses(appt: Appointment) -> dict[str, Response]:
    """Each attendee's response, by email (L6)."""
    return {a.email: a.response for a in appt.attendees}


def crm_view(appt: Appointment, field: str) -> Any:
    """What the CRM must hold for a field: attendees include their responses (L6)."""
    if field == "attendees":
        return tuple(sorted((a.email, a.type.value, a.response.value) for a in appt.attendees))
    return norm(appt, field)


@dataclass(frozen=True)
class MergeResult:
    merged: Appointment
    to_crm: tuple[str, ...]  # fields whose CRM value differs from the merge
    to_graph: tuple[str, ...]  # writable fields whose M365 value differs from the merge
    conflicts: tuple[str, ...]  # fields changed differently on both sides (D3)
    winner: str  # "m365" or "crm": who won the conflicts
    crm_changed: tuple[str, ...]  # fields the CRM changed since the base
    m365_changed: tuple[str, ...]  # fields M365 changed since the base
    crm_responses: dict[str, Response]  # responses the CRM changed since the base (L6, CRM -> M365)


def _winner(conflict: Conflict, m_time: datetime | None, c_time: datetime | None) -> str:
    if conflict == "crm_wins":
        return "crm"
    if conflict == "newest_wins" and m_time is not None and c_time is not None and c_time > m_time:
        return "crm"
    return "m365"


def _merge_attendees(
    chosen: Appointment, m: Appointment, c: Appointment, base: Appointment | None
) -> tuple[tuple[Attendee, ...], dict[str, Response]]:
    """Roster from `chosen`; each response merged three-way, M365 (where responses live) winning ties."""
    rm, rc = responses(m), responses(c)
    rb = responses(base) if base is not None else {}
    crm_changed: dict[str, Response] = {}
    out = []
    for a in chosen.attendees:
        r_m, r_c = rm.get(a.email), rc.get(a.email)
        response = a.response
        if r_m is not None:
            response = r_m
            if r_c is not None and r_c != r_m and base is not None and rb.get(a.email) == r_m:
                crm_changed[a.email] = r_c  # only the CRM changed it: a candidate for L6 CRM -> M365
        elif r_c is not None:
            response = r_c
        out.append(a.model_copy(update={"response": response}))
    return tuple(out), crm_changed


def three_way(
    base: Appointment | None,
    m: Appointment,
    c: Appointment,
    *,
    conflict: Conflict = "m365_wins",
    direction: Direction = "two_way",
    m_time: datetime | None = None,
    c_time: datetime | None = None,
) -> MergeResult:
    """Merge `m` (the M365 copy) and `c` (the CRM record) against `base` (the last synced snapshot).

    No base (adoption, I5) makes every difference a conflict. One-way directions take every field from
    the source side (D1, D2).
    """
    winner = _winner(conflict, m_time, c_time)
    update: dict[str, Any] = {}
    conflicts: list[str] = []
    m_changed: list[str] = []
    c_changed: list[str] = []
    source_of: dict[str, Appointment] = {}
    for field in SYNC_FIELDS:
        vm, vc = norm(m, field), norm(c, field)
        vb = norm(base, field) if base is not None else None
        if base is not None:
            if vm != vb:
                m_changed.append(field)
            if vc != vb:
                c_changed.append(field)
        if direction == "m365_to_crm" or field in M365_OWNED:
            src = m
        elif direction == "crm_to_m365":
            src = c
        elif vm == vc:
            src = m
        elif base is not None and vm == vb:
            src = c
        elif base is not None and vc == vb:
            src = m
        else:
            conflicts.append(field)
            src = m if winner == "m365" else c
        source_of[field] = src
        update[field] = getattr(src, field)
    crm_responses: dict[str, Response] = {}
    if direction == "crm_to_m365":
        attendees = c.attendees
    else:
        attendees, crm_responses = _merge_attendees(source_of["attendees"], m, c, base)
    update["attendees"] = attendees
    merged = c.model_copy(update=update)
    to_crm: tuple[str, ...] = ()
    if direction != "crm_to_m365":
        to_crm = tuple(f for f in SYNC_FIELDS if crm_view(c, f) != crm_view(merged, f))
    to_graph: tuple[str, ...] = ()
    if direction != "m365_to_crm":
        to_graph = tuple(f for f in GRAPH_WRITABLE_FIELDS if norm(m, f) != norm(merged, f))
    return MergeResult(
        merged=merged,
        to_crm=to_crm,
        to_graph=to_graph,
        conflicts=tuple(conflicts),
        winner=winner,
        crm_changed=tuple(c_changed),
        m365_changed=tuple(m_changed),
        crm_responses=crm_responses,
    )
