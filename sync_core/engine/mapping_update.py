"""How a mapping row changes when an action has been carried out: pure, shared by the worker and the tests."""

from __future__ import annotations

from datetime import datetime

from sync_core.domain.actions import GraphCopy, Mapping, Receipt
from sync_core.domain.model import Appointment, CrmRecord, GraphEvent
from sync_core.engine.content_sync import receipt_fingerprint
from sync_core.engine.merge import SYNC_FIELDS, crm_view


def add_copy(mapping: Mapping, copy: GraphCopy) -> Mapping:
    """The mapping with this copy among its copies (unchanged if it is there already)."""
    if any(c.mailbox == copy.mailbox and c.event_id == copy.event_id for c in mapping.copies):
        return mapping
    return mapping.model_copy(update={"copies": (*mapping.copies, copy)})


def set_copy(mapping: Mapping, copy: GraphCopy) -> Mapping:
    """Add (or replace) one mailbox's copy; the first organizer copy becomes the authoritative one."""
    copies = (*(c for c in mapping.copies if c.mailbox.lower() != copy.mailbox.lower()), copy)
    update: dict[str, object] = {"copies": copies}
    if copy.role != "room" and (
        mapping.graph_event_id is None
        or (copy.role == "organizer" and mapping.organizer_mailbox not in (None, copy.mailbox))
    ):
        update |= {"graph_event_id": copy.event_id, "organizer_mailbox": copy.mailbox}
    elif mapping.organizer_mailbox and mapping.organizer_mailbox.lower() == copy.mailbox.lower():
        update |= {"graph_event_id": copy.event_id}
    return mapping.model_copy(update=update)


def after_crm_write(
    mapping: Mapping, record: CrmRecord, now: datetime, written: Appointment | None = None
) -> Mapping:
    """The receipt of a CRM write (D4). `written`: the content we sent. The CRM answers with the record as
    it is after our write, which may already hold a change a CRM user made meanwhile (a write answered by
    its idempotency key, or a concurrent edit): then its version is not ours to recognise, and the receipt
    keeps only the fingerprint of what we wrote, so that change is read as a change, not as our echo."""
    fingerprint = receipt_fingerprint(record.appointment)
    ours = written is None or receipt_fingerprint(written) == fingerprint
    receipt = Receipt(
        target_id=record.crm_id,
        version=record.version if ours else "",
        fingerprint=fingerprint if written is None else receipt_fingerprint(written),
        at=now,
    )
    return mapping.model_copy(update={"crm_id": record.crm_id, "crm_receipt": receipt})


def behind_our_write(earlier: Appointment | None, written: Appointment, record: CrmRecord) -> tuple[str, ...]:
    """I3: the fields to write again when a create is answered by its idempotency key with what an earlier
    attempt of ours wrote (`earlier`, claimed before it), unchanged since, while the meeting moved on before
    the retry (`written`). Empty when the answer is what we write now, or when anyone else changed it."""
    if earlier is None:
        return ()
    answer = receipt_fingerprint(record.appointment)
    if answer != receipt_fingerprint(earlier) or answer == receipt_fingerprint(written):
        return ()
    fields = [f for f in SYNC_FIELDS if crm_view(written, f) != crm_view(record.appointment, f)]
    return (*fields, "status") if written.status != record.appointment.status else tuple(fields)


def after_graph_write(mapping: Mapping, event: GraphEvent, now: datetime) -> Mapping:
    receipt = Receipt(
        target_id=event.event_id,
        version=event.change_key,
        fingerprint=receipt_fingerprint(event.appointment),
        at=now,
    )
    copy = GraphCopy(
        mailbox=event.mailbox, event_id=event.event_id, role="organizer" if event.is_organizer else "attendee"
    )
    updated = set_copy(mapping, copy)
    update: dict[str, object] = {"graph_receipt": receipt}
    if event.ical_uid and event.type in ("singleInstance", "seriesMaster"):
        update["ical_uid"] = event.ical_uid
    return updated.model_copy(update=update)


def unlinked(mapping: Mapping) -> Mapping:
    return mapping.model_copy(update={"state": "unlinked"})
