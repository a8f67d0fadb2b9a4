"""Two in-memory sides, an in-memory mapping store and a small applier that does what the worker does:
gather both sides and the mapping, call `decide`, apply the actions, save the mapping with receipts.

Pure and synchronous; used by the state-machine test. Graph and CRM notifications are queued as Changes
that the test may deliver in any order, duplicate, or drop into a crash between a write and the save.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime

from sync_core.domain import identity
from sync_core.domain.actions import (
    Action,
    CancelCrmAppointment,
    CancelGraphEvent,
    CancelGraphOccurrence,
    Change,
    ChangeType,
    CreateCrmAppointment,
    CreateGraphEvent,
    Mapping,
    Receipt,
    RespondGraphEvent,
    Unlink,
    UpdateCrmAppointment,
    UpdateGraphEvent,
)
from sync_core.domain.model import (
    Appointment,
    CrmRecord,
    GraphEvent,
    Kind,
    Origin,
    Person,
    Response,
    Side,
    Status,
)
from sync_core.domain.policy import Policy
from sync_core.engine.content_sync import receipt_fingerprint
from sync_core.engine.decide import decide
from sync_core.engine.inputs import Decision, Facts

_TIME = ("start", "end", "time_zone", "is_all_day")


class Crash(Exception):
    """The worker died between a write and the mapping save."""


@dataclass
class World:
    policy: Policy
    now: datetime
    facts: Facts
    graph: dict[tuple[str, str], GraphEvent] = field(default_factory=dict)
    crm: dict[str, CrmRecord] = field(default_factory=dict)
    mappings: dict[str, Mapping] = field(default_factory=dict)
    queue: list[Change] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    crash_next: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _idem: dict[str, str] = field(default_factory=dict)  # CRM idempotency key -> crm id
    _txn: dict[str, tuple[str, str]] = field(default_factory=dict)  # Graph transactionId -> event

    # ---- the two sides, as users and Exchange change them -------------------------------------------
    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def put_graph(self, event: GraphEvent, change: ChangeType) -> GraphEvent:
        stored = event.model_copy(update={"change_key": self.next_id("ck")})
        self.graph[(stored.mailbox, stored.event_id)] = stored
        self.queue.append(
            Change(source=Side.M365, change_type=change, item_id=stored.event_id, mailbox=stored.mailbox)
        )
        return stored

    def delete_graph(self, mailbox: str, event_id: str) -> None:
        del self.graph[(mailbox, event_id)]
        self.queue.append(
            Change(source=Side.M365, change_type=ChangeType.DELETED, item_id=event_id, mailbox=mailbox)
        )

    def put_crm(self, record: CrmRecord, change: ChangeType) -> CrmRecord:
        stored = record.model_copy(update={"version": self.next_id("v")})
        self.crm[stored.crm_id] = stored
        self.queue.append(Change(source=Side.CRM, change_type=change, item_id=stored.crm_id))
        return stored

    # ---- the worker --------------------------------------------------------------------------------
    def _mapping_for_event(self, mailbox: str, event_id: str) -> Mapping | None:
        return next(
            (
                m
                for m in self.mappings.values()
                if any(c.mailbox == mailbox and c.event_id == event_id for c in m.copies)
            ),
            None,
        )

    def _crm_for_key(self, key: str) -> CrmRecord | None:
        crm_id = identity.crm_id_from_key(key)
        if crm_id is not None:
            return self.crm.get(crm_id)
        return next((r for r in self.crm.values() if r.external_ref == key), None)

    def _graph_for_key(self, key: str) -> GraphEvent | None:
        for g in self.graph.values():
            if g.is_organizer and (
                g.written_by_us == key or (not g.written_by_us and identity.meeting_key(g) == key)
            ):
                return g
        return None

    def gather(self, change: Change) -> tuple[Mapping | None, GraphEvent | None, CrmRecord | None]:
        if change.source is Side.M365:
            assert change.mailbox is not None
            g = self.graph.get((change.mailbox, change.item_id))
            mapping = self._mapping_for_event(change.mailbox, change.item_id)
            if mapping is None and g is not None:
                mapping = self.mappings.get(g.written_by_us or identity.meeting_key(g))
            crm: CrmRecord | None = None
            if mapping is not None and mapping.crm_id is not None:
                crm = self.crm.get(mapping.crm_id)
            elif g is not None:
                crm = self._crm_for_key(g.written_by_us or identity.meeting_key(g))
            return mapping, g, crm
        record = self.crm.get(change.item_id)
        mapping = next((m for m in self.mappings.values() if m.crm_id == change.item_id), None)
        if mapping is None and record is not None:
            mapping = self.mappings.get(identity.crm_meeting_key(record))
        graph: GraphEvent | None = None
        if (
            mapping is not None
            and mapping.graph_event_id is not None
            and mapping.organizer_mailbox is not None
        ):
            graph = self.graph.get((mapping.organizer_mailbox, mapping.graph_event_id))
        elif record is not None:
            graph = self._graph_for_key(identity.crm_meeting_key(record))
        return mapping, graph, record

    def process(self, change: Change) -> Decision:
        mapping, g, crm = self.gather(change)
        d = decide(change, mapping, g, crm, self.policy, self.now, self.facts)
        self.decisions.append(d)
        new = d.mapping
        wrote = False
        for action in d.actions:
            if wrote and self.crash_next:
                self.crash_next = False
                self.queue.append(change)  # the message is retried
                raise Crash
            new, did = self._apply(action, new, mapping)
            wrote = wrote or did
        if self.crash_next and wrote:
            self.crash_next = False
            self.queue.append(change)
            raise Crash
        if any(isinstance(a, Unlink) for a in d.actions):
            self.mappings.pop(mapping.meeting_key if mapping else (d.meeting_key or ""), None)
        elif new is not None:
            if mapping is not None and mapping.meeting_key != new.meeting_key:
                self.mappings.pop(mapping.meeting_key, None)
            self.mappings[new.meeting_key] = new
        return d

    def _receipt(self, target: str, version: str, appt: Appointment) -> Receipt:
        return Receipt(target_id=target, version=version, fingerprint=receipt_fingerprint(appt), at=self.now)

    def _apply(self, a: Action, new: Mapping | None, old: Mapping | None) -> tuple[Mapping | None, bool]:
        if isinstance(a, CreateCrmAppointment):
            assert new is not None
            crm_id = self._idem.get(a.idempotency_key)
            if crm_id is None or crm_id not in self.crm:
                crm_id = self.next_id("c")
                self._idem[a.idempotency_key] = crm_id
                record = self.put_crm(
                    CrmRecord(
                        crm_id=crm_id, version="", appointment=a.appointment, external_ref=new.meeting_key
                    ),
                    ChangeType.CREATED,
                )
            else:
                record = self.crm[crm_id]
            rc = self._receipt(record.crm_id, record.version, record.appointment)
            return new.model_copy(update={"crm_id": record.crm_id, "crm_receipt": rc}), True
        if isinstance(a, UpdateCrmAppointment):
            record = self.crm[a.crm_id]
            appt = record.appointment.model_copy(
                update={f: getattr(a.appointment, f) for f in a.changed_fields}
            )
            record = self.put_crm(record.model_copy(update={"appointment": appt}), ChangeType.UPDATED)
            rc = self._receipt(record.crm_id, record.version, record.appointment)
            return (new.model_copy(update={"crm_receipt": rc}) if new else new), True
        if isinstance(a, CancelCrmAppointment):
            record = self.crm[a.crm_id]
            appt = record.appointment.model_copy(update={"status": Status.CANCELLED})
            record = self.put_crm(record.model_copy(update={"appointment": appt}), ChangeType.UPDATED)
            rc = self._receipt(record.crm_id, record.version, record.appointment)
            return (new.model_copy(update={"crm_receipt": rc}) if new else new), True
        if isinstance(a, CreateGraphEvent):
            assert new is not None
            existing = self._txn.get(a.transaction_id)
            if existing is not None and existing in self.graph:
                event = self.graph[existing]
            else:
                event_id = self.next_id("e")
                content = a.appointment.model_copy(
                    update={
                        "organizer": Person(email=a.mailbox),
                        "status": Status.CONFIRMED,
                        "kind": Kind.MEETING,
                        "origin": Origin.M365,
                        "crm_fields": (),
                        "attachments": (),
                        "online_meeting_url": None,
                    }
                )
                event = self.put_graph(
                    GraphEvent(
                        mailbox=a.mailbox,
                        event_id=event_id,
                        ical_uid=self.next_id("UID"),
                        type="seriesMaster" if content.recurrence else "singleInstance",
                        response=Response.ORGANIZER,
                        written_by_us=new.meeting_key,
                        appointment=content,
                    ),
                    ChangeType.CREATED,
                )
                self._txn[a.transaction_id] = (event.mailbox, event.event_id)
            gr = self._receipt(event.event_id, event.change_key, event.appointment)
            from sync_core.domain.actions import GraphCopy

            copy = GraphCopy(mailbox=event.mailbox, event_id=event.event_id, role="organizer")
            return new.model_copy(
                update={"graph_event_id": event.event_id, "graph_receipt": gr, "copies": (*new.copies, copy)}
            ), True
        if isinstance(a, UpdateGraphEvent):
            event = self.graph[(a.mailbox, a.event_id)]
            fields = set(a.changed_fields)
            if fields & set(_TIME):
                fields |= set(_TIME)
            appt = event.appointment.model_copy(update={f: getattr(a.appointment, f) for f in fields})
            tag = new.meeting_key if new else event.written_by_us
            event = self.put_graph(
                event.model_copy(update={"appointment": appt, "written_by_us": tag}), ChangeType.UPDATED
            )
            gr = self._receipt(event.event_id, event.change_key, event.appointment)
            return (new.model_copy(update={"graph_receipt": gr}) if new else new), True
        if isinstance(a, CancelGraphEvent):
            if (a.mailbox, a.event_id) in self.graph:
                self.delete_graph(a.mailbox, a.event_id)
            return new, True
        if isinstance(a, CancelGraphOccurrence):
            event = self.graph[(a.mailbox, a.series_event_id)]
            cancelled = tuple(sorted({*event.appointment.cancelled_occurrences, a.original_start}))
            appt = event.appointment.model_copy(update={"cancelled_occurrences": cancelled})
            event = self.put_graph(event.model_copy(update={"appointment": appt}), ChangeType.UPDATED)
            gr = self._receipt(event.event_id, event.change_key, event.appointment)
            return (new.model_copy(update={"graph_receipt": gr}) if new else new), True
        if isinstance(a, RespondGraphEvent):
            event = self.graph[(a.mailbox, a.event_id)]
            response = {"accept": Response.ACCEPTED, "tentativelyAccept": Response.TENTATIVE}.get(
                a.response, Response.DECLINED
            )
            self.put_graph(event.model_copy(update={"response": response}), ChangeType.UPDATED)
            return new, True
        return new, False  # Skip, LinkCopy, NotifyOrganizer: nothing external
