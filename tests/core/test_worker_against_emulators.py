"""The worker against Azurite and both emulators (no host): a crash between the external write and the
mapping save is found again, never duplicated (I3); the X1 delete budget stops a run for an operator.

The crash is real in the sense that matters: the write reached the emulator, the mapping save raised and
the worker object is thrown away; the retry is a new worker reading only what storage and the sides hold.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.data.tables.aio import TableClient

from devstack.crm_emulator import CrmEmulator
from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.storage.core import POISON_QUEUE, Storage
from sync_core.adapters.storage.failures import FailureLedger
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.domain.actions import Mapping
from sync_core.domain.messages import encode
from sync_core.domain.model import Appointment, Attendee, Origin, Person, Status
from sync_core.errors import PolicyError
from sync_core.ops.status import explain
from sync_core.ports.stores import DecisionRecord
from sync_core.service.retry import process
from tests.core.conftest import ADELE, Crash, WorkerParts, crm_msg, graph_msg, instances
from tests.e2e.outlook import MEGAN, series, weekly

START = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=20)


class CrashAfterClaim(MappingStore):
    """A mapping store whose second save (the one after the external create) never happens."""

    def __init__(self, table: TableClient) -> None:
        super().__init__(table)
        self.saves = 0

    async def save(
        self, mapping: Mapping, *, previous: Mapping | None = None, decision: DecisionRecord | None = None
    ) -> Mapping:
        self.saves += 1
        if self.saves == 2:
            raise Crash("crashed between the external write and the mapping save")
        return await super().save(mapping, previous=previous, decision=decision)


@pytest.fixture
def policy_overrides() -> dict[str, Any]:
    """One delete per run and mailbox (X1), so that a second cancel waits for an operator."""
    return {"max_deletes_per_run": 1}


def _booking(subject: str, hours: int = 0, **kw: Any) -> Appointment:
    start = START + timedelta(hours=hours)
    return Appointment(
        subject=subject,
        start=start,
        end=start + timedelta(hours=1),
        organizer=Person(email=ADELE, name="Adele Vance"),
        attendees=(Attendee(email="megan@fabrikam.example", name="Megan Bowen"),),
        status=Status.CONFIRMED,
        origin=Origin.CRM,
        **kw,
    )


def _events(emu: GraphEmulator, mailbox: str, subject: str) -> list[dict[str, Any]]:
    return [e for events in emu.dump_events(mailbox).values() for e in events if e["subject"] == subject]


async def test_I3_crash_after_the_graph_create_is_found_again_by_its_tag_not_created_twice(
    parts: WorkerParts, graph_emu: GraphEmulator, crm_emu: CrmEmulator
) -> None:
    record = crm_emu.user_create(_booking("Crash after Graph create"), created_by=ADELE)
    crashing = CrashAfterClaim(parts.tables["Map"])
    with pytest.raises(Crash):
        await parts.worker(crashing).handle(crm_msg(record["id"]))
    assert len(_events(graph_emu, ADELE, "Crash after Graph create")) == 1  # the write got through

    outcome = await parts.worker().handle(crm_msg(record["id"], "updated"))  # the retry, a new process
    created = _events(graph_emu, ADELE, "Crash after Graph create")
    assert len(created) == 1, "the retry created a second event"
    assert outcome.decision.rule == "I3" and outcome.decision.actions[0].kind == "link_copy"
    assert not any(w.startswith("create_graph") for w in outcome.all_writes)
    mapping = await MappingStore(parts.tables["Map"]).get(f"crm:{record['id']}")
    assert mapping is not None and mapping.graph_event_id == created[0]["id"]


async def test_I3_L3_a_crm_cancel_after_such_a_crash_cancels_the_event_we_created(
    parts: WorkerParts, graph_emu: GraphEmulator, crm_emu: CrmEmulator
) -> None:
    record = crm_emu.user_create(_booking("Crash then cancel", hours=2), created_by=ADELE)
    with pytest.raises(Crash):
        await parts.worker(CrashAfterClaim(parts.tables["Map"])).handle(crm_msg(record["id"]))
    assert len(_events(graph_emu, ADELE, "Crash then cancel")) == 1
    crm_emu.user_cancel(record["id"])
    outcome = await parts.worker().handle(crm_msg(record["id"], "cancelled"))
    assert "cancel_graph:L3" in outcome.all_writes
    assert _events(graph_emu, ADELE, "Crash then cancel") == []


async def test_I3_crash_after_the_crm_create_adopts_the_record_instead_of_creating_a_second(
    parts: WorkerParts, graph_emu: GraphEmulator, crm_emu: CrmEmulator
) -> None:
    start = START + timedelta(hours=4)
    body = {
        "subject": "Crash after CRM create",
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
    }
    async with httpx.AsyncClient(base_url=graph_emu.base_url, headers={"Authorization": "Bearer t"}) as g:
        event = (await g.post(f"/users/{ADELE}/events", json=body)).raise_for_status().json()
    msg = graph_msg(event["id"], "created")
    with pytest.raises(Crash):
        await parts.worker(CrashAfterClaim(parts.tables["Map"])).handle(msg)

    def records() -> list[dict[str, Any]]:
        return [a for a in crm_emu.appointments() if a["subject"] == "Crash after CRM create"]

    assert len(records()) == 1
    await parts.worker().handle(msg)
    assert len(records()) == 1, "the retry created a second CRM record"
    key = await MappingStore(parts.tables["Map"]).find_by_graph(ADELE, event["id"])
    mapping = await MappingStore(parts.tables["Map"]).get(key or "")
    assert mapping is not None and mapping.crm_id == records()[0]["id"] and mapping.crm_receipt


async def test_X1_a_second_cancel_in_a_run_waits_for_an_operator_in_the_poison_queue_with_its_reason(
    parts: WorkerParts, graph_emu: GraphEmulator, crm_emu: CrmEmulator
) -> None:
    first = crm_emu.user_create(_booking("X1 first", hours=6), created_by=ADELE)
    second = crm_emu.user_create(_booking("X1 second", hours=8), created_by=ADELE)
    worker = parts.worker()
    for r in (first, second):
        await worker.handle(crm_msg(r["id"]))
    assert _events(graph_emu, ADELE, "X1 second")
    assert await parts.budget.used(ADELE, datetime.now(UTC)) == 0  # each test has its own budget table
    crm_emu.user_cancel(first["id"])
    crm_emu.user_cancel(second["id"])
    # max_deletes_per_run=1: the first cancel spends the run's budget.
    await worker.handle(crm_msg(first["id"], "cancelled"))
    assert _events(graph_emu, ADELE, "X1 first") == []
    assert await parts.budget.used(ADELE, datetime.now(UTC)) == 1

    with pytest.raises(PolicyError, match="max_deletes_per_run=1"):
        await worker.handle(crm_msg(second["id"], "cancelled"))
    assert _events(graph_emu, ADELE, "X1 second"), "the held cancel was carried out"
    logged = await explain(parts.decisions, MappingStore(parts.tables["Map"]), second["id"])
    assert logged[0]["rule"] == "X1" and logged[0]["outcome"] == "needs-operator"

    # Through the queue's failure map: poisoned at once, the reason in the failures ledger.
    storage = Storage(parts.settings)
    await storage.ensure()
    try:
        body = encode(crm_msg(second["id"], "cancelled"))
        ledger = FailureLedger(parts.tables["Fail"])
        ended = await process(
            body,
            message_id="m1",
            dequeue_count=1,
            handler=worker.handle,  # type: ignore[arg-type]
            storage=storage,
            failures=ledger,
            now=lambda: datetime.now(UTC),
        )
        assert ended == "poisoned"
        row = await ledger.for_body(body)
        assert row is not None and row["ErrorClass"] == "PolicyError" and "operator" in row["Error"]
        poison = storage.queue(POISON_QUEUE)
        async for m in poison.receive_messages():
            if m.content == body or body in str(m.content):
                await poison.delete_message(m)
    finally:
        await storage.aclose()


async def test_R3_I1_an_occurrence_edited_in_outlook_reaches_the_crm_as_an_exception_of_its_series(
    parts: WorkerParts, graph_emu: GraphEmulator, crm_emu: CrmEmulator
) -> None:
    start = START + timedelta(days=3)
    body = series("Weekly stand-up", start, timedelta(minutes=30), [MEGAN], weekly(start), 3)
    async with httpx.AsyncClient(base_url=graph_emu.base_url, headers={"Authorization": "Bearer t"}) as g:
        master = (await g.post(f"/users/{ADELE}/events", json=body)).raise_for_status().json()
        worker = parts.worker()
        await worker.handle(graph_msg(master["id"]))
        in_outlook = await instances(g, master["id"], start, 30)
        second = in_outlook[1]
        patch = {"subject": "Weekly stand-up (moved room)"}
        await g.patch(f"/users/{ADELE}/events/{second['id']}", json=patch)
    outcome = await worker.handle(graph_msg(second["id"]))
    assert outcome.decision.rule == "R3", outcome.decision.explain()
    store = MappingStore(parts.tables["Map"])
    series_key = await store.find_by_graph(ADELE, master["id"])
    records = {a["subject"]: a for a in crm_emu.appointments() if a["subject"].startswith("Weekly stand-up")}
    exception = records["Weekly stand-up (moved room)"]
    assert exception["series_ref"] == series_key
    assert datetime.fromisoformat(exception["original_start"]) == start + timedelta(days=7)
    assert records["Weekly stand-up"]["recurrence"] is not None  # the series itself is one record (R1)
