"""Small builders for engine tests: appointments, Graph copies, CRM records, changes, a fixed clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sync_core.domain.actions import Change, ChangeType, Mapping
from sync_core.domain.model import (
    Appointment,
    Attendee,
    AttendeeType,
    CrmRecord,
    GraphEvent,
    Origin,
    Person,
    Recurrence,
    RecurrencePattern,
    RecurrenceRange,
    Response,
    Side,
)
from sync_core.domain.policy import Policy
from sync_core.engine.decide import decide
from sync_core.engine.inputs import Decision, Facts

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
CLIENT = "bob@client.com"
POLICY = Policy.default()  # linda@, julie@contoso.com; boardroom@ (auto-accept), hall@ (crm_managed)
KNOWN = Facts(known_contacts=frozenset({CLIENT}))


def appt(**kw: Any) -> Appointment:
    start = kw.pop("start", NOW + timedelta(days=1))
    data: dict[str, Any] = {
        "subject": "Quarterly review",
        "start": start,
        "end": kw.pop("end", start + timedelta(hours=1)),
        "organizer": Person(email=kw.pop("organizer", "linda@contoso.com")),
        "attendees": (Attendee(email=CLIENT, name="Bob"),),
    }
    data.update(kw)
    return Appointment(**data)


def attendee(
    email: str, response: Response = Response.NONE, type: AttendeeType = AttendeeType.REQUIRED
) -> Attendee:
    return Attendee(email=email, response=response, type=type)


def gev(a: Appointment | None = None, **kw: Any) -> GraphEvent:
    data: dict[str, Any] = {
        "mailbox": "linda@contoso.com",
        "event_id": "e-linda",
        "change_key": "ck1",
        "ical_uid": "UID-1",
        "appointment": a or appt(),
    }
    data.update(kw)
    return GraphEvent(**data)


def rec(a: Appointment | None = None, **kw: Any) -> CrmRecord:
    data: dict[str, Any] = {"crm_id": "c1", "version": "v1", "appointment": a or appt(origin=Origin.CRM)}
    data.update(kw)
    return CrmRecord(**data)


def m365(
    item: str = "e-linda", mailbox: str = "linda@contoso.com", kind: ChangeType = ChangeType.UPDATED
) -> Change:
    return Change(source=Side.M365, change_type=kind, item_id=item, mailbox=mailbox)


def crm_change(item: str = "c1", kind: ChangeType = ChangeType.UPDATED) -> Change:
    return Change(source=Side.CRM, change_type=kind, item_id=item)


def synced(g: GraphEvent, crm_id: str = "c1", **kw: Any) -> tuple[Mapping, CrmRecord]:
    """A mapping and CRM record as they stand after `g` was synced to the CRM."""
    first = decide(
        m365(g.event_id, g.mailbox), None, g, None, kw.pop("policy", POLICY), NOW, kw.pop("facts", KNOWN)
    )
    assert first.mapping is not None, first.explain()
    create = first.actions[0]
    assert create.kind == "create_crm", first.explain()
    record = CrmRecord(
        crm_id=crm_id, version="v1", appointment=create.appointment, external_ref=first.meeting_key
    )
    return first.mapping.model_copy(update={"crm_id": crm_id}), record


def edited(g: GraphEvent, **fields: Any) -> GraphEvent:
    """`g` after an edit in Outlook: a new change key, the appointment's `fields` changed."""
    return g.model_copy(
        update={"change_key": g.change_key + "'", "appointment": g.appointment.model_copy(update=fields)}
    )


def crm_edited(r: CrmRecord, **fields: Any) -> CrmRecord:
    """`r` after an edit in the CRM: a new version, the appointment's `fields` changed."""
    return r.model_copy(
        update={"version": r.version + "'", "appointment": r.appointment.model_copy(update=fields)}
    )


def judge(
    change: Change,
    mapping: Mapping | None,
    graph: GraphEvent | None,
    crm: CrmRecord | None,
    *,
    policy: Policy = POLICY,
    now: datetime = NOW,
) -> Decision:
    """`decide` in the tests' world: POLICY and NOW unless a test says otherwise, CLIENT a known contact."""
    return decide(change, mapping, graph, crm, policy, now, KNOWN)


def kinds(d: Decision) -> list[str]:
    return [a.kind for a in d.actions]


def weekly(start: date, *, end: date | None = None, days: tuple[str, ...] = ("monday",)) -> Recurrence:
    """A weekly pattern; no end unless `end` is given (R2)."""
    return Recurrence(
        pattern=RecurrencePattern(type="weekly", days_of_week=days),
        range=RecurrenceRange(type="endDate" if end else "noEnd", start_date=start, end_date=end),
    )
