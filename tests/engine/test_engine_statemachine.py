"""Hypothesis state machine over two fake sides and the mapping store (rules D3, D4, I1, I3, R3, L3, L4, W4).

Random creates, edits, deletes, recurring edits and room responses on either side; notifications delivered
out of order, duplicated, and crashes between a write and the mapping save. After every full sync: the sides
converge, nothing is duplicated, a resync writes nothing (our writes are not echoed back as changes), and
no edit is lost unless the conflict policy decided it, in which case the decision says so.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from sync_core.domain import identity
from sync_core.domain.actions import Change, ChangeType
from sync_core.domain.model import (
    Appointment,
    AttendeeType,
    CrmRecord,
    GraphEvent,
    Origin,
    Person,
    Response,
    Side,
    Status,
)
from sync_core.domain.policy import Policy
from sync_core.engine import scope
from sync_core.engine.inputs import Facts
from sync_core.engine.merge import SYNC_FIELDS, crm_view
from tests.engine.builders import CLIENT, NOW, attendee, weekly
from tests.engine.fake_world import Crash, World

LINDA = "linda@contoso.com"
ROOM = "boardroom@contoso.com"
MAX_STEPS = 400
TEXT = st.sampled_from(["Review", "Kick-off", "Lunch", "Budget", "Plan"])
EDIT_FIELD = st.sampled_from(["subject", "body", "start", "reminder_minutes"])


def _edit_value(field: str, n: int, appt: Appointment) -> dict[str, object]:
    if field == "subject":
        return {"subject": f"subject {n}"}
    if field == "body":
        return {"body": f"notes {n}"}
    if field == "reminder_minutes":
        return {"reminder_minutes": n % 60}
    start = NOW + timedelta(days=1 + n % 5, hours=n % 7)
    return {"start": start, "end": start + (appt.end - appt.start)}


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World(policy=Policy.default(), now=NOW, facts=Facts(known_contacts=frozenset({CLIENT})))
        self.n = 0
        self.checked = 0  # decisions before this index were checked by an earlier full sync
        # (side, item id) -> field -> (seq, value) edits made by users since the last full sync
        self.edits: dict[tuple[str, str], dict[str, tuple[int, object]]] = {}

    def _seq(self) -> int:
        self.n += 1
        return self.n

    def _note(self, side: str, item: str, field: str, value: object) -> None:
        self.edits.setdefault((side, item), {})[field] = (self._seq(), value)

    # ---- M365 users ------------------------------------------------------------------------------
    @rule(
        subject=TEXT, room=st.sampled_from([None, Response.NONE, Response.ACCEPTED]), recurring=st.booleans()
    )
    def m365_create(self, subject: str, room: Response | None, recurring: bool) -> None:
        start = NOW + timedelta(days=1, hours=self._seq() % 8)
        people = [attendee(CLIENT)]
        if room is not None:
            people.append(attendee(ROOM, room, AttendeeType.RESOURCE))
        appt = Appointment(
            subject=subject,
            start=start,
            end=start + timedelta(hours=1),
            organizer=Person(email=LINDA),
            attendees=tuple(people),
            recurrence=weekly(start.date()) if recurring else None,
        )
        event_id = self.world.next_id("m")
        self.world.put_graph(
            GraphEvent(
                mailbox=LINDA,
                event_id=event_id,
                ical_uid="UID-" + event_id,
                type="seriesMaster" if recurring else "singleInstance",
                response=Response.ORGANIZER,
                appointment=appt,
            ),
            ChangeType.CREATED,
        )

    def _graph_events(self) -> list[GraphEvent]:
        return sorted((g for g in self.world.graph.values() if g.is_organizer), key=lambda g: g.event_id)

    @precondition(lambda self: self._graph_events())
    @rule(data=st.data(), field=EDIT_FIELD)
    def m365_edit(self, data: st.DataObject, field: str) -> None:
        g = data.draw(st.sampled_from(self._graph_events()))
        update = _edit_value(field, self._seq(), g.appointment)
        self.world.put_graph(
            g.model_copy(update={"appointment": g.appointment.model_copy(update=update)}), ChangeType.UPDATED
        )
        self._note("m365", g.event_id, field, update[field])

    @precondition(lambda self: self._graph_events())
    @rule(data=st.data())
    def m365_delete(self, data: st.DataObject) -> None:
        g = data.draw(st.sampled_from(self._graph_events()))
        self.world.delete_graph(g.mailbox, g.event_id)

    @precondition(lambda self: [g for g in self._graph_events() if g.appointment.recurrence])
    @rule(data=st.data(), what=st.sampled_from(["interval", "cancel_occurrence"]))
    def m365_recurring_edit(self, data: st.DataObject, what: str) -> None:
        g = data.draw(st.sampled_from([g for g in self._graph_events() if g.appointment.recurrence]))
        appt = g.appointment
        assert appt.recurrence is not None
        if what == "interval":
            pattern = appt.recurrence.pattern.model_copy(
                update={"interval": appt.recurrence.pattern.interval % 3 + 1}
            )
            appt = appt.model_copy(
                update={"recurrence": appt.recurrence.model_copy(update={"pattern": pattern})}
            )
        else:
            week = appt.start + timedelta(weeks=1 + self._seq() % 4)
            appt = appt.model_copy(update={"cancelled_occurrences": (*appt.cancelled_occurrences, week)})
        self.world.put_graph(g.model_copy(update={"appointment": appt}), ChangeType.UPDATED)

    @precondition(lambda self: [g for g in self._graph_events() if g.appointment.rooms])
    @rule(
        data=st.data(), response=st.sampled_from([Response.ACCEPTED, Response.DECLINED, Response.TENTATIVE])
    )
    def room_responds(self, data: st.DataObject, response: Response) -> None:
        # Exchange records the room's answer on the organizer's copy.
        g = data.draw(st.sampled_from([g for g in self._graph_events() if g.appointment.rooms]))
        people = tuple(
            a.model_copy(update={"response": response}) if a.email == ROOM else a
            for a in g.appointment.attendees
        )
        self.world.put_graph(
            g.model_copy(update={"appointment": g.appointment.model_copy(update={"attendees": people})}),
            ChangeType.UPDATED,
        )

    # ---- CRM users -------------------------------------------------------------------------------
    @rule(subject=TEXT, status=st.sampled_from([Status.CONFIRMED, Status.CONFIRMED, Status.TENTATIVE]))
    def crm_create(self, subject: str, status: Status) -> None:
        start = NOW + timedelta(days=2, hours=self._seq() % 8)
        appt = Appointment(
            subject=subject,
            start=start,
            end=start + timedelta(hours=1),
            organizer=Person(email=LINDA),
            attendees=(attendee(CLIENT),),
            status=status,
            origin=Origin.CRM,
        )
        crm_id = self.world.next_id("r")
        self.world.put_crm(CrmRecord(crm_id=crm_id, version="", appointment=appt), ChangeType.CREATED)

    def _records(self) -> list[CrmRecord]:
        return sorted(
            (r for r in self.world.crm.values() if r.appointment.status is not Status.CANCELLED),
            key=lambda r: r.crm_id,
        )

    @precondition(lambda self: self._records())
    @rule(data=st.data(), field=EDIT_FIELD)
    def crm_edit(self, data: st.DataObject, field: str) -> None:
        r = data.draw(st.sampled_from(self._records()))
        update = _edit_value(field, self._seq(), r.appointment)
        self.world.put_crm(
            r.model_copy(update={"appointment": r.appointment.model_copy(update=update)}), ChangeType.UPDATED
        )
        self._note("crm", r.crm_id, field, update[field])

    @precondition(lambda self: self._records())
    @rule(data=st.data(), status=st.sampled_from([Status.CONFIRMED, Status.CANCELLED]))
    def crm_status(self, data: st.DataObject, status: Status) -> None:
        r = data.draw(st.sampled_from(self._records()))
        appt = r.appointment.model_copy(update={"status": status})
        self.world.put_crm(r.model_copy(update={"appointment": appt}), ChangeType.UPDATED)

    @precondition(lambda self: self._records())
    @rule(data=st.data())
    def crm_delete(self, data: st.DataObject) -> None:
        r = data.draw(st.sampled_from(self._records()))
        del self.world.crm[r.crm_id]
        self.world.queue.append(Change(source=Side.CRM, change_type=ChangeType.DELETED, item_id=r.crm_id))

    # ---- delivery --------------------------------------------------------------------------------
    @precondition(lambda self: self.world.queue)
    @rule(data=st.data())
    def deliver_one_out_of_order(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.world.queue) - 1))
        change = self.world.queue.pop(i)
        with contextlib.suppress(Crash):
            self.world.process(change)

    @precondition(lambda self: self.world.queue)
    @rule(data=st.data())
    def duplicate_notification(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.world.queue) - 1))
        self.world.queue.insert(data.draw(st.integers(0, len(self.world.queue))), self.world.queue[i])

    @rule()
    def crash_after_next_write(self) -> None:
        self.world.crash_next = True

    @rule()
    def sync_everything(self) -> None:
        self._drain_and_check()

    def teardown(self) -> None:
        self._drain_and_check()

    # ---- checks ----------------------------------------------------------------------------------
    def _drain(self) -> None:
        steps = 0
        while self.world.queue:
            steps += 1
            assert steps < MAX_STEPS, "the sync does not settle: a write loop"
            change = self.world.queue.pop(0)
            with contextlib.suppress(Crash):
                self.world.process(change)

    def _drain_and_check(self) -> None:
        self.world.crash_next = False
        self._drain()
        drained = self.world.decisions[self.checked :]
        self._check_resync_writes_nothing()
        self._check_no_duplicates()
        self._check_converged(drained)
        self.edits.clear()
        self.checked = len(self.world.decisions)

    def _check_resync_writes_nothing(self) -> None:
        changes = [
            Change(source=Side.M365, change_type=ChangeType.UPDATED, item_id=e, mailbox=m)
            for m, e in self.world.graph
        ]
        changes += [
            Change(source=Side.CRM, change_type=ChangeType.UPDATED, item_id=c) for c in self.world.crm
        ]
        for change in changes:
            d = self.world.process(change)
            assert not d.writes, f"resync wrote: {d.explain()}"
        assert not self.world.queue

    def _check_no_duplicates(self) -> None:
        keys = [g.written_by_us or identity.meeting_key(g) for g in self.world.graph.values()]
        assert len(keys) == len(set(keys)), f"two M365 events for one meeting: {keys}"
        refs = [r.external_ref for r in self.world.crm.values() if r.external_ref]
        assert len(refs) == len(set(refs)), f"two CRM records for one M365 event: {refs}"
        created = [g for g in self.world.graph.values() if g.written_by_us and not g.event_id.startswith("e")]
        assert all(g.written_by_us == identity.meeting_key(g) for g in created), "a user's event re-keyed"
        crm_ids = [m.crm_id for m in self.world.mappings.values() if m.crm_id]
        assert len(crm_ids) == len(set(crm_ids)), "one CRM record in two mappings"

    def _eligible_graph(self, g: GraphEvent) -> bool:
        rooms = [a for a in g.appointment.attendees if a.type is AttendeeType.RESOURCE]
        return all(a.response is Response.ACCEPTED for a in rooms)

    def _check_converged(self, drained: list) -> None:  # type: ignore[type-arg]
        w = self.world
        for m in w.mappings.values():
            record = w.crm.get(m.crm_id) if m.crm_id else None
            g = w.graph.get((m.organizer_mailbox or "", m.graph_event_id or ""))
            if m.state == "cancelled":
                assert g is None or g.is_cancelled, f"{m.meeting_key} cancelled but still in M365"
                assert record is None or record.appointment.status is Status.CANCELLED
                continue
            assert record is not None and g is not None, f"{m.meeting_key}: active mapping missing a side"
            assert record.appointment.status is not Status.CANCELLED
            a, b = scope.shape(g.appointment, w.policy), scope.shape(record.appointment, w.policy)
            diff = [f for f in SYNC_FIELDS if crm_view(a, f) != crm_view(b, f)]
            assert not diff, f"{m.meeting_key} not converged in {diff}"
            self._check_edits_kept(m.meeting_key, g, record, drained)
        mapped_events = {(m.organizer_mailbox, m.graph_event_id) for m in w.mappings.values()}
        for key, g in w.graph.items():
            if self._eligible_graph(g) and not g.written_by_us:
                assert key in mapped_events, f"M365 event {key} never reached the CRM"
        mapped_records = {m.crm_id for m in w.mappings.values()}
        for r in w.crm.values():
            if r.appointment.origin is Origin.CRM and r.appointment.status is Status.CONFIRMED:
                assert r.crm_id in mapped_records, f"confirmed CRM record {r.crm_id} never reached M365"

    def _check_edits_kept(self, key: str, g: GraphEvent, record: CrmRecord, drained: list) -> None:  # type: ignore[type-arg]
        edits_m = self.edits.get(("m365", g.event_id), {})
        edits_c = self.edits.get(("crm", record.crm_id), {})
        for field in set(edits_m) | set(edits_c):
            last = max((e for e in (edits_m.get(field), edits_c.get(field)) if e), key=lambda e: e[0])
            final = getattr(g.appointment, field)
            if final == last[1]:
                continue
            reasons = [d.reason for d in drained if d.meeting_key == key] + [
                a.reason for d in drained if d.meeting_key == key for a in d.actions
            ]
            assert any("conflict on" in r and field in r for r in reasons), (
                f"{key}: edit of {field} to {last[1]!r} lost (now {final!r}) without a conflict decision"
            )


test_D4_I3_D3_sides_converge_without_duplicates_echoes_or_lost_edits = SyncMachine.TestCase
