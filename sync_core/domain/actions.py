"""What the engine decides: inputs (a change and the mapping) and outputs (actions naming their rule).

Pure data. Every action carries the rule ID that chose it and a one-line reason (rule E1).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from sync_core.domain.model import Appointment, Side


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChangeType(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class Change(_Frozen):
    """A hint that an item changed on one side. Never trusted as data: the worker reads current state."""

    source: Side
    change_type: ChangeType
    item_id: str  # Graph event id, or CRM appointment id
    mailbox: str | None = None  # Graph only


class Receipt(_Frozen):
    """What we last wrote to one side: recognising it on read suppresses echoes (D4)."""

    target_id: str
    version: str
    fingerprint: str
    at: datetime


class GraphCopy(_Frozen):
    mailbox: str
    event_id: str
    role: Literal["organizer", "attendee", "room"] = "organizer"


class Mapping(_Frozen):
    """One meeting known to both sides (I1): the CRM record and every mailbox copy, plus the sync memory."""

    meeting_key: str
    crm_id: str | None = None
    organizer_mailbox: str | None = None
    graph_event_id: str | None = None  # the authoritative copy (organizer's, else the first invitee's)
    copies: tuple[GraphCopy, ...] = ()
    snapshot: Appointment | None = None  # content as last synced, the base of three-way merges (D3)
    graph_receipt: Receipt | None = None
    crm_receipt: Receipt | None = None
    state: Literal["active", "cancelled", "unlinked"] = "active"
    ical_uid: str | None = None  # alias: invitee and room copies are found by iCalUId (I1)
    etag: str | None = None  # storage concurrency token of the row this came from


class _Action(_Frozen):
    rule: str
    reason: str


class Skip(_Action):
    kind: Literal["skip"] = "skip"
    needs_operator: bool = False  # X1: the run stopped and waits for an operator


class CreateCrmAppointment(_Action):
    kind: Literal["create_crm"] = "create_crm"
    appointment: Appointment
    idempotency_key: str


class UpdateCrmAppointment(_Action):
    kind: Literal["update_crm"] = "update_crm"
    crm_id: str
    appointment: Appointment
    changed_fields: tuple[str, ...]
    expected_version: str | None = None


class CancelCrmAppointment(_Action):
    kind: Literal["cancel_crm"] = "cancel_crm"
    crm_id: str


class CreateGraphEvent(_Action):
    kind: Literal["create_graph"] = "create_graph"
    mailbox: str
    appointment: Appointment
    transaction_id: str


class UpdateGraphEvent(_Action):
    kind: Literal["update_graph"] = "update_graph"
    mailbox: str
    event_id: str
    appointment: Appointment
    changed_fields: tuple[str, ...]  # only these are PATCHed (W4)


class CancelGraphEvent(_Action):
    kind: Literal["cancel_graph"] = "cancel_graph"
    mailbox: str
    event_id: str
    comment: str = ""


class CancelGraphOccurrence(_Action):
    """R3: delete one occurrence of a series (the adapter finds the instance by its original start)."""

    kind: Literal["cancel_graph_occurrence"] = "cancel_graph_occurrence"
    mailbox: str
    series_event_id: str
    original_start: datetime


class RespondGraphEvent(_Action):
    kind: Literal["respond_graph"] = "respond_graph"
    mailbox: str
    event_id: str
    response: Literal["accept", "tentativelyAccept", "decline"]
    comment: str = ""


class NotifyOrganizer(_Action):
    kind: Literal["notify_organizer"] = "notify_organizer"
    mailbox: str
    subject: str
    text: str


class LinkCopy(_Action):
    """Record another mailbox's copy of a meeting already mapped (I1, I2); no external write."""

    kind: Literal["link_copy"] = "link_copy"
    graph_copy: GraphCopy


class Unlink(_Action):
    """Forget the mapping without touching either side (X1: a logical removal never deletes)."""

    kind: Literal["unlink"] = "unlink"


Action = Annotated[
    Skip
    | CreateCrmAppointment
    | UpdateCrmAppointment
    | CancelCrmAppointment
    | CreateGraphEvent
    | UpdateGraphEvent
    | CancelGraphEvent
    | CancelGraphOccurrence
    | RespondGraphEvent
    | NotifyOrganizer
    | LinkCopy
    | Unlink,
    Field(discriminator="kind"),
]
