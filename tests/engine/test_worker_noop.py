"""A sync with nothing to do writes nothing (D4, W4): once a meeting has synced, the same notification again
and the echo of our own write reach the real Worker with every write of every port refused (`blow_up`),
the decision record included: a no-op of a mapped meeting is logged, not written (issue 20: its only Table
request is the mapping read, tests/core/test_table_budget.py counts them). And the converse: a person's
change is never taken for our echo."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sync_core.domain.actions import Mapping
from sync_core.domain.messages import CrmChange, GraphChange
from sync_core.domain.model import Appointment, Origin, Person
from sync_core.domain.policy import Policy
from sync_core.service.worker import Worker
from tests.engine.builders import CLIENT, NOW, attendee
from tests.fakes import (
    BlowUp,
    MemoryCalendar,
    MemoryCrm,
    MemoryDecisions,
    MemoryDeleteBudget,
    MemoryMappings,
    MemoryNotices,
    blow_up,
)

LINDA = "linda@contoso.com"
Message = GraphChange | CrmChange


class Synced:
    """Both sides and the stores, a meeting made by `origin`'s user, and every notification it led to."""

    def __init__(self, origin: str) -> None:
        self.calendar = MemoryCalendar(clock=lambda: NOW)
        self.crm = MemoryCrm(clock=lambda: NOW)
        self.crm.seed(contacts=[{"email": CLIENT}])
        self.mappings = MemoryMappings()
        self.decisions = MemoryDecisions()
        self.notices = MemoryNotices()
        self.budget = MemoryDeleteBudget()
        self.seen: list[Message] = []
        start = NOW + timedelta(days=1)
        appt = Appointment(
            subject="Review",
            start=start,
            end=start + timedelta(hours=1),
            organizer=Person(email=LINDA),
            attendees=(attendee(CLIENT),),
        )
        if origin == "m365":
            self.calendar.user_create(LINDA, appt)
        else:
            self.crm.user_create(appt.model_copy(update={"origin": Origin.CRM}))

    def worker(self, *, refuse_writes: bool = False) -> Worker:
        ports: dict[str, object] = {
            "graph": self.calendar,
            "crm": self.crm,
            "mappings": self.mappings,
            "decisions": self.decisions,
            "notices": self.notices,
            "deletes": self.budget,
        }
        if refuse_writes:
            ports = {k: blow_up(v) for k, v in ports.items()}
        return Worker(policy=Policy.default(), clock=lambda: NOW, **ports)  # type: ignore[arg-type]

    async def sync(self) -> None:
        worker = self.worker()
        for _ in range(50):
            queue: list[Message] = [*self.calendar.outbox, *self.crm.outbox]
            self.calendar.outbox.clear()
            self.crm.outbox.clear()
            if not queue:
                return
            for message in queue:
                self.seen.append(message)
                await worker.handle(message)
        raise AssertionError("the sync does not settle")

    def first(self, kind: type[Message]) -> Message:
        return next(m for m in self.seen if isinstance(m, kind))


@pytest.mark.parametrize("origin", ["m365", "crm"])
async def test_D4_W4_a_change_synced_already_and_the_echo_of_our_write_write_nothing(origin: str) -> None:
    world = Synced(origin)
    await world.sync()
    assert world.mappings.all() and world.calendar.events() and world.crm.records  # it did sync
    mappings_before, events_before = world.mappings.rows.copy(), world.calendar.events()
    records_before, rows_before = dict(world.crm.records), len(world.decisions.rows)
    beside_before = {k: list(v) for k, v in world.mappings.decision_rows.items()}
    worker = world.worker(refuse_writes=True)
    user_change, our_echo = (GraphChange, CrmChange) if origin == "m365" else (CrmChange, GraphChange)
    again = [world.first(user_change), world.first(our_echo)]  # the user's change again; our write's echo
    for message in again:
        outcome = await worker.handle(message)
        assert outcome.all_writes == [], outcome.decision.explain()
    assert world.mappings.rows == mappings_before
    assert world.calendar.events() == events_before and world.crm.records == records_before
    assert world.calendar.outbox == [] and world.crm.outbox == [] and world.calendar.sent == []
    assert _blown(worker.decisions).calls == []
    assert world.decisions.rows[rows_before:] == [], "no decision row for a no-op of a mapped meeting"
    assert world.mappings.decision_rows == beside_before, "nor one beside its mapping"


async def test_W4_after_that_one_save_a_crm_meeting_written_to_outlook_syncs_again_with_no_write() -> None:
    world = Synced("crm")
    await world.sync()
    again = [world.first(CrmChange), world.first(GraphChange)]
    for message in again:  # W4: Graph's names for nameless attendees are no change to save
        await world.worker().handle(message)
    worker = world.worker(refuse_writes=True)
    for message in again:
        assert (await worker.handle(message)).all_writes == []
    assert _blown(worker.decisions).calls == []


@pytest.mark.parametrize("side", ["m365", "crm"])
async def test_D4_a_persons_edit_back_to_what_we_last_wrote_is_not_our_echo(side: str) -> None:
    """A person's edit back to exactly what we last wrote there (A, then B, then A again) is a change: the
    content matches our last write, but the meeting was synced to B since."""
    world = Synced("crm" if side == "m365" else "m365")  # we created the meeting on `side`: "Review"
    await world.sync()
    for subject in ("Renamed", "Review"):  # away from what we wrote, then back to it
        if side == "m365":
            (event,) = world.calendar.events()
            world.calendar.user_edit(event.mailbox, event.event_id, subject=subject)
        else:
            (record,) = world.crm.records.values()
            world.crm.user_update(record.crm_id, subject=subject)
        await world.sync()
    (event,) = world.calendar.events()
    (record,) = world.crm.records.values()
    assert (event.appointment.subject, record.appointment.subject) == ("Review", "Review")


async def test_blow_up_passes_reads_and_names_the_write_it_refuses() -> None:
    mappings = blow_up(MemoryMappings())
    assert await mappings.get("ical:X") is None
    with pytest.raises(AssertionError, match=r"MemoryMappings\.save\(Mapping\(meeting_key='ical:X'"):
        await mappings.save(Mapping(meeting_key="ical:X"))


def _blown(port: object) -> BlowUp:
    assert isinstance(port, BlowUp)
    return port
