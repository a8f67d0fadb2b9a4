"""The queue worker: gather both sides and the mapping, ask the engine, apply its actions, remember.

I/O side (the imperative shell around `engine.decide`). Processing a message twice, or two messages in
either order, ends in the same state: reads are of current state, creates are claimed and idempotent,
and the mapping is saved with an ETag condition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sync_core import identity
from sync_core.actions import (
    CancelCrmAppointment,
    CancelGraphEvent,
    CancelGraphOccurrence,
    Change,
    ChangeType,
    CreateCrmAppointment,
    CreateGraphEvent,
    GraphCopy,
    LinkCopy,
    Mapping,
    NotifyOrganizer,
    RespondGraphEvent,
    Skip,
    Unlink,
    UpdateCrmAppointment,
    UpdateGraphEvent,
)
from sync_core.crm import CrmConnector
from sync_core.decision_log import DecisionLog
from sync_core.engine import Decision, Facts, decide
from sync_core.errors import ConcurrencyError
from sync_core.graph import GraphAdapter
from sync_core.mapping_store import MappingStore
from sync_core.mapping_update import after_crm_write, after_graph_write, cancelled, unlinked, with_copy
from sync_core.messages import CrmChange, GraphChange
from sync_core.model import CrmRecord, GraphEvent, Side
from sync_core.policy import Policy

log = logging.getLogger("sync_core.worker")

MAX_RACE_RETRIES = 3


@dataclass
class Outcome:
    """What one message led to: the decision and the writes carried out."""

    decision: Decision
    writes: list[str] = field(default_factory=list)


@dataclass
class Gathered:
    change: Change
    meeting_key: str | None
    mapping: Mapping | None
    graph: GraphEvent | None
    crm: CrmRecord | None
    facts: Facts


class Worker:
    def __init__(
        self,
        *,
        graph: GraphAdapter,
        crm: CrmConnector,
        mappings: MappingStore,
        decisions: DecisionLog,
        policy: Policy,
        clock: Callable[[], datetime],
    ) -> None:
        self.graph = graph
        self.crm = crm
        self.mappings = mappings
        self.decisions = decisions
        self.policy = policy
        self.clock = clock

    async def handle(self, message: GraphChange | CrmChange) -> Outcome:
        """Process one change message; a lost ETag race re-reads everything and decides again."""
        for attempt in range(MAX_RACE_RETRIES):
            try:
                gathered = await (
                    self._gather_graph(message)
                    if isinstance(message, GraphChange)
                    else self._gather_crm(message)
                )
                return await self._decide_and_apply(gathered, message.correlation_id)
            except ConcurrencyError:
                if attempt == MAX_RACE_RETRIES - 1:
                    raise
                log.info("mapping changed under us; deciding again (%s)", message.correlation_id)
        raise AssertionError("unreachable")

    # -- gather ---------------------------------------------------------------------------------------

    async def _gather_graph(self, msg: GraphChange) -> Gathered:
        change = Change(
            source=Side.M365,
            change_type=ChangeType(msg.change_type),
            item_id=msg.event_id,
            mailbox=msg.mailbox,
        )
        event = await self.graph.get_event(msg.mailbox, msg.event_id)
        key = await self._graph_meeting_key(msg.mailbox, msg.event_id, event)
        mapping = await self.mappings.get(key) if key else None
        crm = await self.crm.get_appointment(mapping.crm_id) if mapping and mapping.crm_id else None
        facts = await self._facts(event, mapping, key)
        return Gathered(change, key, mapping, event, crm, facts)

    async def _graph_meeting_key(self, mailbox: str, event_id: str, event: GraphEvent | None) -> str | None:
        known = await self.mappings.find_by_graph(mailbox, event_id)
        if known is not None:
            return known
        if event is None:
            return None
        if event.type in ("occurrence", "exception") and event.series_master_id:
            series_key = await self.mappings.find_by_graph(mailbox, event.series_master_id)
            if series_key is None:
                master = await self.graph.get_event(mailbox, event.series_master_id)
                series_key = identity.meeting_key(master) if master else None
            return identity.meeting_key(event, series_key)
        return identity.meeting_key(event)

    async def _gather_crm(self, msg: CrmChange) -> Gathered:
        change = Change(source=Side.CRM, change_type=_crm_change_type(msg.change_type), item_id=msg.crm_id)
        record = await self.crm.get_appointment(msg.crm_id)
        key = await self.mappings.find_by_crm(msg.crm_id)
        if key is None and record is not None:
            key = identity.crm_meeting_key(record)
        mapping = await self.mappings.get(key) if key else None
        event = None
        if mapping and mapping.graph_event_id and mapping.organizer_mailbox:
            event = await self.graph.get_event(mapping.organizer_mailbox, mapping.graph_event_id)
        facts = await self._facts(event, mapping, key)
        return Gathered(change, key, mapping, event, record, facts)

    async def _facts(self, event: GraphEvent | None, mapping: Mapping | None, key: str | None) -> Facts:
        emails = {a.email for a in event.appointment.attendees} if event else set()
        if event and event.appointment.organizer:
            emails.add(event.appointment.organizer.email)
        known = await self.crm.find_contacts(sorted(emails)) if emails and mapping is None else {}
        return Facts(known_contacts=frozenset(known))

    # -- decide and apply -----------------------------------------------------------------------------

    async def _decide_and_apply(self, g: Gathered, correlation_id: str) -> Outcome:
        now = self.clock()
        decision = decide(g.change, g.mapping, g.graph, g.crm, self.policy, now, g.facts)
        outcome = Outcome(decision)
        key = decision.meeting_key or g.meeting_key
        mapping = g.mapping
        if key is not None:
            mapping = await self._apply(decision, mapping or Mapping(meeting_key=key), g, outcome, now)
        await self.decisions.record(
            side=g.change.source.value,
            item_id=g.change.item_id,
            at=now,
            meeting_key=key,
            rule=decision.rule,
            reason=decision.reason,
            actions=[a.model_dump(mode="json", exclude={"appointment"}) for a in decision.actions],
            correlation_id=correlation_id,
            versions=_versions(g),
            outcome="applied" if outcome.writes else "no-op",
        )
        log.info(
            "decided %s for %s %s: %s (%s) writes=%s [%s]",
            decision.rule,
            g.change.source.value,
            g.change.item_id[:24],
            decision.reason,
            key,
            outcome.writes,
            correlation_id,
        )
        return outcome

    async def _apply(
        self, decision: Decision, mapping: Mapping, g: Gathered, out: Outcome, now: datetime
    ) -> Mapping:
        original = mapping
        stored = g.mapping  # the row as it stands in storage, so a save writes only new index rows
        for action in decision.actions:
            if isinstance(action, Skip):
                continue
            if isinstance(action, LinkCopy):
                mapping = with_copy(mapping, action.graph_copy)
            elif isinstance(action, Unlink):
                mapping = unlinked(mapping)
            elif isinstance(action, CreateCrmAppointment):
                if g.graph is not None:
                    mapping = with_copy(mapping, _copy_of(g.graph))
                if mapping.etag is None:  # claim the row before the external create (I3)
                    mapping = stored = await self.mappings.save(mapping)
                record = await self.crm.create_appointment(
                    action.appointment,
                    idempotency_key=action.idempotency_key,
                    external_ref=mapping.meeting_key,
                )
                mapping = after_crm_write(mapping, record, action.appointment, now)
            elif isinstance(action, UpdateCrmAppointment):
                record = await self.crm.update_appointment(
                    action.crm_id,
                    action.appointment,
                    fields=action.changed_fields,
                    expected_version=action.expected_version,
                )
                mapping = after_crm_write(mapping, record, action.appointment, now)
            elif isinstance(action, CancelCrmAppointment):
                record = await self.crm.cancel_appointment(action.crm_id)
                mapping = cancelled(after_crm_write(mapping, record, record.appointment, now))
            elif isinstance(action, CreateGraphEvent):
                if mapping.etag is None:  # claim the row before the external create (I3)
                    mapping = stored = await self.mappings.save(mapping)
                event = await self.graph.create_event(
                    action.mailbox,
                    action.appointment,
                    transaction_id=action.transaction_id,
                    tag=mapping.meeting_key,
                )
                mapping = after_graph_write(mapping, event, action.appointment, now)
                if g.crm is not None and mapping.crm_id is None:
                    mapping = mapping.model_copy(update={"crm_id": g.crm.crm_id})
            elif isinstance(action, UpdateGraphEvent):
                event = await self.graph.update_event(
                    action.mailbox,
                    action.event_id,
                    action.appointment,
                    fields=action.changed_fields,
                    tag=mapping.meeting_key,
                )
                mapping = after_graph_write(mapping, event, action.appointment, now)
            elif isinstance(action, CancelGraphEvent):
                await self.graph.cancel_event(action.mailbox, action.event_id, action.comment)
                mapping = cancelled(mapping)
            elif isinstance(action, CancelGraphOccurrence):
                await self.graph.cancel_occurrence(
                    action.mailbox, action.series_event_id, action.original_start
                )
            elif isinstance(action, RespondGraphEvent):
                await self.graph.respond(action.mailbox, action.event_id, action.response, action.comment)
            elif isinstance(action, NotifyOrganizer):
                await self.graph.send_mail(action.mailbox, action.subject, action.text)
            else:
                raise AssertionError(f"unhandled action {action!r}")
            out.writes.append(f"{action.kind}:{action.rule}")
        if mapping != original or (mapping.etag is None and out.writes):
            mapping = await self.mappings.save(mapping, previous=stored)
        return mapping


def _copy_of(event: GraphEvent) -> GraphCopy:
    return GraphCopy(
        mailbox=event.mailbox, event_id=event.event_id, role="organizer" if event.is_organizer else "attendee"
    )


def _crm_change_type(value: str) -> ChangeType:
    return {
        "created": ChangeType.CREATED,
        "updated": ChangeType.UPDATED,
        "cancelled": ChangeType.UPDATED,
        "deleted": ChangeType.DELETED,
    }[value]


def _versions(g: Gathered) -> dict[str, str]:
    out: dict[str, str] = {}
    if g.graph is not None:
        out["graph_event_id"] = g.graph.event_id
        out["graph_change_key"] = g.graph.change_key
    if g.crm is not None:
        out["crm_id"] = g.crm.crm_id
        out["crm_version"] = g.crm.version
    if g.mapping is not None and g.mapping.etag:
        out["mapping_etag"] = g.mapping.etag
    return out
