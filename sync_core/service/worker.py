"""The queue worker: gather both sides and the mapping, ask the engine, apply its actions, remember. I/O
side.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sync_core.domain.actions import (
    Action,
    CancelCrmAppointment,
    CancelGraphEvent,
    CancelGraphOccurrence,
    CreateCrmAppointment,
    CreateGraphEvent,
    LinkCopy,
    Mapping,
    NotifyOrganizer,
    RespondGraphEvent,
    Skip,
    Unlink,
    UpdateCrmAppointment,
    UpdateGraphEvent,
)
from sync_core.domain.messages import CrmChange, GraphChange
from sync_core.domain.policy import Policy
from sync_core.engine.decide import decide
from sync_core.engine.inputs import Decision
from sync_core.engine.mapping_update import after_crm_write, after_graph_write, behind_our_write, unlinked
from sync_core.errors import ConcurrencyError, PolicyError
from sync_core.ports.calendar import Calendar
from sync_core.ports.crm import CrmConnector
from sync_core.ports.stores import DecisionRecord, Decisions, DeleteBudget, Mappings, Notices
from sync_core.service.gather import Gathered, Gatherer

log = logging.getLogger("sync_core.worker")

MAX_RACE_RETRIES = 3
MAX_EXCEPTIONS = 50  # R3: changed occurrences decided after their series master's change, at most
_DELETES = (CancelCrmAppointment, CancelGraphEvent, CancelGraphOccurrence)
_INTERNAL = (Skip, LinkCopy, Unlink)  # actions the mapping says all: no external write


@dataclass
class _Step:
    """One decision being applied: the mapping as the writes so far left it, and the row as stored."""

    decision: Decision
    g: Gathered
    now: datetime
    mapping: Mapping | None
    stored: Mapping | None
    record: DecisionRecord | None = None  # the decision, until it is on record (E1)


@dataclass
class Outcome:
    """What one message led to: the decision and the writes carried out (and a second look, if any)."""

    decision: Decision
    writes: list[str] = field(default_factory=list)
    then: Outcome | None = None
    exceptions: tuple[str, ...] = ()  # the changed occurrences of the series master it read (R3)

    @property
    def actions(self) -> tuple[Action, ...]:
        return self.decision.actions

    @property
    def all_writes(self) -> list[str]:
        return self.writes + (self.then.all_writes if self.then else [])


class Worker:
    def __init__(
        self,
        *,
        graph: Calendar,
        crm: CrmConnector,
        mappings: Mappings,
        decisions: Decisions,
        policy: Policy,
        clock: Callable[[], datetime],
        notices: Notices,
        deletes: DeleteBudget | None = None,
    ) -> None:
        self.graph = graph
        self.crm = crm
        self.mappings = mappings
        self.decisions = decisions
        self.policy = policy
        self.clock = clock
        self.notices = notices
        self.deletes = deletes
        self.gatherer = Gatherer(
            graph=graph, crm=crm, mappings=mappings, policy=policy, budget=deletes, clock=clock
        )
        # Applying a decision: one effect per action type, in the order the engine listed the actions.
        self._effects: dict[type, Callable[[Any, _Step], Awaitable[bool]]] = {
            Skip: self._nothing,
            LinkCopy: self._nothing,
            Unlink: self._nothing,
            CreateCrmAppointment: self._create_crm,
            UpdateCrmAppointment: self._update_crm,
            CancelCrmAppointment: self._cancel_crm,
            CreateGraphEvent: self._create_graph,
            UpdateGraphEvent: self._update_graph,
            CancelGraphEvent: self._cancel_graph,
            CancelGraphOccurrence: self._cancel_occurrence,
            RespondGraphEvent: self._respond,
            NotifyOrganizer: self._notify_organizer,
        }

    async def handle(self, message: GraphChange | CrmChange) -> Outcome:
        """Process one change message. A CRM booking we just wrote to Outlook gets a second look, because
        Exchange has only now made the room copies M4 answers, and auto-accept rooms may already have answered
        (M5); a subscribed room mailbox, or the organizer's next notification, would tell us too."""
        outcome = await self._once(message)
        if isinstance(message, CrmChange) and self._rooms_booked(outcome.decision):
            outcome.then = await self._once(message)
        if isinstance(message, GraphChange) and outcome.exceptions:
            # R3: Graph announces a moved or edited occurrence on its series master; each changed occurrence
            # is decided on its own (one read each; unchanged ones are no-ops, W4).
            last = outcome
            for event_id in outcome.exceptions[:MAX_EXCEPTIONS]:
                last.then = await self._once(
                    message.model_copy(update={"event_id": event_id, "change_type": "updated"})
                )
                last = last.then
        return outcome

    def _rooms_booked(self, decision: Decision) -> bool:
        """A create that invited mapped rooms: M4 answers for CRM-managed ones, M5 reports the others'."""
        for action in decision.actions:
            if isinstance(action, CreateGraphEvent):
                return any(self.policy.room(a.email) is not None for a in action.appointment.rooms)
        return False

    async def _once(self, message: GraphChange | CrmChange) -> Outcome:
        """Gather, decide, apply; a lost ETag race re-reads everything and decides again."""
        for attempt in range(MAX_RACE_RETRIES):
            try:
                gathered = await (
                    self.gatherer.graph_change(message)
                    if isinstance(message, GraphChange)
                    else self.gatherer.crm_change(message)
                )
                return await self._decide_and_apply(gathered, message.correlation_id)
            except ConcurrencyError:
                if attempt == MAX_RACE_RETRIES - 1:
                    raise
                log.info("mapping changed under us; deciding again (%s)", message.correlation_id)
        raise AssertionError("unreachable")

    # -- decide and apply -----------------------------------------------------------------------------

    async def _decide_and_apply(self, g: Gathered, correlation_id: str) -> Outcome:
        now = self.clock()
        decision = decide(g.change, g.mapping, g.graph, g.crm, self.policy, now, g.facts)
        if any(isinstance(a, _DELETES) for a in decision.actions) and g.run_mailbox and self.deletes:
            # X1: the run's delete count is read only for a decision that deletes (one Table read less per
            # change); the count only ever turns a delete into a hold, so the decision is taken again with it.
            used = await self.deletes.used(g.run_mailbox, self.clock())
            if used:
                g = replace(g, facts=g.facts.model_copy(update={"deletes_this_run": used}))
                decision = decide(g.change, g.mapping, g.graph, g.crm, self.policy, now, g.facts)
        master = g.graph if g.graph is not None and g.graph.type == "seriesMaster" else None
        outcome = Outcome(decision, exceptions=master.exception_ids if master is not None else ())
        key = decision.meeting_key or g.meeting_key
        held = next((a for a in decision.actions if isinstance(a, Skip) and a.needs_operator), None)
        writes = bool(decision.writes) or any(isinstance(a, NotifyOrganizer) for a in decision.actions)
        if held is None and not writes and _unchanged(decision, g.stored):
            # An echo, a duplicate or a no-op of a mapped meeting: nothing to write, not even the decision
            # row (the Table request budget is the one mapping read). It is in the log and the rule metrics.
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "decided %s for %s %s: %s (%s), nothing to write [%s]",
                    decision.rule,
                    g.change.source.value,
                    g.change.item_id[:24],
                    decision.reason,
                    key,
                    correlation_id,
                )
            return outcome
        # E1: the decision is on record before its first write, so a worker that dies after a write leaves a
        # change its decision explains (a redelivery decides again and records that decision too).
        record = DecisionRecord(
            side=g.change.source.value,
            item_id=g.change.item_id,
            at=now,
            meeting_key=key,
            rule=decision.rule,
            reason=decision.reason,
            actions=[a.model_dump(mode="json", exclude={"appointment"}) for a in decision.actions],
            correlation_id=correlation_id,
            versions=_versions(g),
            outcome="needs-operator" if held else ("applied" if writes else "no-op"),
        )
        if held is None:
            await self._apply(decision, g, outcome, now, record)
        else:
            await self._record(record, mapped=_mapped(g.stored, key))
        if log.isEnabledFor(logging.INFO):
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
        if held is not None:
            # X1: the change waits for an operator in the poison queue, its reason in the failures ledger;
            # replaying it (python -m sync_core replay) decides again once the operator agrees.
            raise PolicyError(
                f"{held.rule}: {held.reason}",
                side=g.change.source.value,
                mailbox=g.run_mailbox,
                item_id=g.change.item_id,
            )
        return outcome

    async def _apply(
        self, decision: Decision, g: Gathered, out: Outcome, now: datetime, record: DecisionRecord
    ) -> None:
        """Carry the decision out. Its record (E1) is written beside the mapping row when one is written
        before the first external write (the I3 claim: one entity group transaction), else alone just before
        that write, else with the final save when the mapping is all it writes."""
        stored = g.stored  # the row as it stands in storage: its ETag, and which index rows exist
        if any(isinstance(a, Unlink) for a in decision.actions):
            step = await self._writes(decision, None, g, out, now, stored, record)
            if stored is not None:
                await self._save(unlinked(stored), stored, step)
            await self._settle(step)
            return
        mapping = decision.mapping
        if mapping is not None:
            same_row = stored is not None and stored.meeting_key == mapping.meeting_key
            mapping = mapping.model_copy(update={"etag": stored.etag if same_row and stored else None})
            stored = stored if same_row else None
        step = await self._writes(decision, mapping, g, out, now, stored, record)
        if step.mapping is not None and (out.writes or _content(step.mapping) != _content(step.stored)):
            await self._save(step.mapping, step.stored, step)
        await self._settle(step)

    async def _save(self, mapping: Mapping, previous: Mapping | None, step: _Step) -> Mapping:
        """Save the mapping, with the decision still to record when it belongs beside this row."""
        record = step.record if step.record and step.record.meeting_key == mapping.meeting_key else None
        saved = await self.mappings.save(mapping, previous=previous, decision=record)
        if record is not None:
            self.decisions.index(record)
            step.record = None
        return saved

    async def _settle(self, step: _Step) -> None:
        """The decision's record, if no save took it along (E1: every decision that writes is on record)."""
        if step.record is not None:
            record, step.record = step.record, None
            await self._record(record, mapped=_mapped(step.stored, record.meeting_key))

    async def _record(self, record: DecisionRecord, *, mapped: bool) -> None:
        """A decision alone: beside its meeting's row when one is stored, else in its item's partition."""
        if mapped:
            await self.mappings.record(record)
            self.decisions.index(record)
        else:
            await self.decisions.record(**vars(record))

    async def _writes(
        self,
        decision: Decision,
        mapping: Mapping | None,
        g: Gathered,
        out: Outcome,
        now: datetime,
        stored: Mapping | None,
        record: DecisionRecord,
    ) -> _Step:
        """Carry out the external writes in order; a create first claims the mapping row (I3), together with
        the decision's record (E1), in one request."""
        step = _Step(decision, g, now, mapping, stored, record)
        for action in decision.actions:
            effect = self._effects.get(type(action))
            if effect is None:
                raise AssertionError(f"no effect for {action!r}")
            if isinstance(action, CreateCrmAppointment | CreateGraphEvent):
                if step.mapping is None:
                    raise AssertionError(f"{action.kind} without a mapping to claim")
                if step.mapping.etag is None:  # claim the row before the external create (I3)
                    step.mapping = step.stored = await self._save(step.mapping, None, step)
            if not isinstance(action, _INTERNAL):
                await self._settle(step)  # E1: on record before the first external write
            if not await effect(action, step):
                continue
            if isinstance(action, _DELETES) and self.deletes is not None and g.run_mailbox:
                await self.deletes.spend(g.run_mailbox, now)
            out.writes.append(f"{action.kind}:{action.rule}")
        return step

    # -- the effect of each action: True when it wrote something ------------------------------------

    async def _nothing(self, action: Any, step: _Step) -> bool:
        return False  # Skip, LinkCopy, Unlink: the decision's mapping says it all

    async def _create_crm(self, action: CreateCrmAppointment, step: _Step) -> bool:
        assert step.mapping is not None
        record = await self.crm.create_appointment(
            action.appointment, idempotency_key=action.idempotency_key, external_ref=step.mapping.meeting_key
        )
        earlier = step.stored.snapshot if step.stored is not None else None  # what the claim was made for
        stale = behind_our_write(earlier, action.appointment, record)
        if stale:  # our cut-short first attempt, overtaken since: bring it up to date (a conflict raises)
            record = await self.crm.update_appointment(
                record.crm_id, action.appointment, fields=stale, expected_version=record.version
            )
        step.mapping = after_crm_write(step.mapping, record, step.now, action.appointment)
        return True

    async def _update_crm(self, action: UpdateCrmAppointment, step: _Step) -> bool:
        record = await self.crm.update_appointment(
            action.crm_id,
            action.appointment,
            fields=action.changed_fields,
            expected_version=action.expected_version,
        )
        written = action.appointment
        step.mapping = after_crm_write(step.mapping, record, step.now, written) if step.mapping else None
        return True

    async def _cancel_crm(self, action: CancelCrmAppointment, step: _Step) -> bool:
        record = await self.crm.cancel_appointment(action.crm_id)
        step.mapping = after_crm_write(step.mapping, record, step.now) if step.mapping else None
        return True

    async def _create_graph(self, action: CreateGraphEvent, step: _Step) -> bool:
        assert step.mapping is not None
        event = await self.graph.create_event(
            action.mailbox,
            action.appointment,
            transaction_id=action.transaction_id,
            tag=step.mapping.meeting_key,
        )
        step.mapping = after_graph_write(step.mapping, event, step.now)
        return True

    async def _update_graph(self, action: UpdateGraphEvent, step: _Step) -> bool:
        tag = step.mapping.meeting_key if step.mapping else (step.decision.meeting_key or "")
        event = await self.graph.update_event(
            action.mailbox, action.event_id, action.appointment, fields=action.changed_fields, tag=tag
        )
        step.mapping = after_graph_write(step.mapping, event, step.now) if step.mapping else None
        return True

    async def _cancel_graph(self, action: CancelGraphEvent, step: _Step) -> bool:
        await self.graph.cancel_event(action.mailbox, action.event_id, action.comment)
        return True

    async def _cancel_occurrence(self, action: CancelGraphOccurrence, step: _Step) -> bool:
        await self.graph.cancel_occurrence(action.mailbox, action.series_event_id, action.original_start)
        return True

    async def _respond(self, action: RespondGraphEvent, step: _Step) -> bool:
        await self.graph.respond(action.mailbox, action.event_id, action.response, action.comment)
        return True

    async def _notify_organizer(self, action: NotifyOrganizer, step: _Step) -> bool:
        key = step.mapping.meeting_key if step.mapping else (step.decision.meeting_key or step.g.meeting_key)
        return await self._notify(key or "", action, step.now)

    async def _notify(self, meeting_key: str, notice: NotifyOrganizer, now: datetime) -> bool:
        """Send a notice once (M4, M5): claimed first, released if the send fails; False if already sent."""
        if not await self.notices.claim(meeting_key, notice, now):
            log.info(
                "%s notice to %s for %s already sent: %s",
                notice.rule,
                notice.mailbox,
                meeting_key,
                notice.reason,
            )
            return False
        try:
            await self.graph.send_mail(notice.mailbox, notice.subject, notice.text)
        except BaseException:
            await self.notices.release(meeting_key, notice)
            raise
        return True


def _unchanged(decision: Decision, stored: Mapping | None) -> bool:
    """Whether a decision without writes leaves a stored row as it is (so `_apply` would save nothing)."""
    if stored is None or decision.mapping is None or any(isinstance(a, Unlink) for a in decision.actions):
        return False
    return decision.mapping.meeting_key == stored.meeting_key and _content(decision.mapping) == _content(
        stored
    )


def _mapped(stored: Mapping | None, key: str | None) -> bool:
    """Whether the decision's meeting has a stored row to keep its record beside."""
    return stored is not None and key is not None and stored.meeting_key == key


def _content(mapping: Mapping | None) -> object:
    """What a save would change. A person's display name that is only their address (Graph names a nameless
    attendee so) is no name: saving it would change nothing the engine compares (`merge.norm`), and would
    cost a duplicate of a CRM booking's webhook a Table write (W4)."""
    if mapping is None:
        return None
    data = mapping.model_dump(exclude={"etag"})
    snapshot = data.get("snapshot")
    if snapshot:
        for person in [snapshot.get("organizer"), *snapshot.get("attendees", ())]:
            if person and person.get("name", "").strip().casefold() == person.get("email", "").casefold():
                person["name"] = ""
    return data


def _versions(g: Gathered) -> dict[str, str]:
    out: dict[str, str] = {}
    if g.graph is not None:
        out["graph_event_id"] = g.graph.event_id
        out["graph_change_key"] = g.graph.change_key
    if g.crm is not None:
        out["crm_id"] = g.crm.crm_id
        out["crm_version"] = g.crm.version
    if g.stored is not None and g.stored.etag:
        out["mapping_etag"] = g.stored.etag
    return out
