"""How a mapping row changes when an action has been carried out: pure, shared by the worker and the tests.

Receipts record what the side holds after our write (its version and content fingerprint), so the echo
that follows is recognised (D4); the snapshot is the content both sides now share, the base of D3 merges.
"""

from __future__ import annotations

from datetime import datetime

from sync_core.actions import GraphCopy, Mapping, Receipt
from sync_core.model import Appointment, CrmRecord, GraphEvent, fingerprint


def with_copy(mapping: Mapping, copy: GraphCopy) -> Mapping:
    """Add (or replace) one mailbox's copy; the first organizer copy becomes the authoritative one."""
    copies = (*(c for c in mapping.copies if c.mailbox.lower() != copy.mailbox.lower()), copy)
    update: dict[str, object] = {"copies": copies}
    if mapping.graph_event_id is None or (
        copy.role == "organizer" and mapping.organizer_mailbox not in (None, copy.mailbox)
    ):
        update |= {"graph_event_id": copy.event_id, "organizer_mailbox": copy.mailbox}
    elif mapping.organizer_mailbox and mapping.organizer_mailbox.lower() == copy.mailbox.lower():
        update |= {"graph_event_id": copy.event_id}
    return mapping.model_copy(update=update)


def after_crm_write(mapping: Mapping, record: CrmRecord, synced: Appointment, now: datetime) -> Mapping:
    receipt = Receipt(
        target_id=record.crm_id, version=record.version, fingerprint=fingerprint(record.appointment), at=now
    )
    return mapping.model_copy(
        update={"crm_id": record.crm_id, "crm_receipt": receipt, "snapshot": synced, "state": "active"}
    )


def after_graph_write(
    mapping: Mapping, event: GraphEvent, synced: Appointment, now: datetime, *, role: str = "organizer"
) -> Mapping:
    receipt = Receipt(
        target_id=event.event_id, version=event.change_key, fingerprint=fingerprint(event.appointment), at=now
    )
    copy = GraphCopy(
        mailbox=event.mailbox,
        event_id=event.event_id,
        role="organizer" if role == "organizer" else "attendee",
    )
    updated = with_copy(mapping, copy)
    return updated.model_copy(update={"graph_receipt": receipt, "snapshot": synced, "state": "active"})


def cancelled(mapping: Mapping) -> Mapping:
    return mapping.model_copy(update={"state": "cancelled"})


def unlinked(mapping: Mapping) -> Mapping:
    return mapping.model_copy(update={"state": "unlinked"})
