"""Table requests per change (issue 20): the real Worker over the real Table stores (MappingStore,
DecisionLog, TableDeleteBudget, NoticeLedger), each on an in-memory table that counts every request the
stores send, with both sides in memory. Counts, not timings: deterministic, and what a request costs on
Azure Storage (a transaction each) does not depend on the machine.

Budgets: at most one Table request (the mapping read) for an echo, a duplicate notification or a no-op;
a synced create at most `CREATE_BUDGET` (CRM -> M365) or `M365_CREATE_BUDGET` (M365 -> CRM). The time
index of the decision log is batched (about 0.01 requests per decision), so it is flushed and counted apart
from the per-change numbers."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError

from sync_core.adapters.storage.decisions import DecisionLog
from sync_core.adapters.storage.deletes import TableDeleteBudget
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.adapters.storage.notices import NoticeLedger
from sync_core.domain.messages import CrmChange, GraphChange
from sync_core.domain.model import Appointment, Origin, Person
from sync_core.domain.policy import Policy
from sync_core.service.worker import Worker
from tests.engine.builders import CLIENT, NOW, attendee
from tests.fakes import MemoryCalendar, MemoryCrm

LINDA = "linda@contoso.com"
JULIE = "julie@contoso.com"
# Per synced create CRM -> M365: the mapping read; the claim with the decision beside it (one entity group
# transaction before the Graph write: I3 and E1); the new copy's row with its iCalUId row beside it (one
# transaction in the organizer's mailbox partition); the final save.
CREATE_BUDGET = 4
# M365 -> CRM needs one more: the copy row is in the mailbox's partition and the CRM id's alias row in the
# id's own (a deleted record's webhook names only the id), two partitions besides the meeting's; see
# docs/benchmarks.md, "Issue 20: before and after".
M365_CREATE_BUDGET = CREATE_BUDGET + 1


class _Entity(dict[str, Any]):
    def __init__(self, data: dict[str, Any], etag: str) -> None:
        super().__init__(data)
        self.metadata = {"etag": etag}


class CountingTable:
    """The subset of azure.data.tables.aio.TableClient the stores use, in memory, counting requests."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self.requests: Counter[str] = Counter()
        self._etags = itertools.count(1)

    def _put(self, entity: dict[str, Any]) -> dict[str, str]:
        etag = f'W/"{next(self._etags)}"'
        self.rows[(entity["PartitionKey"], entity["RowKey"])] = (etag, dict(entity))
        return {"etag": etag}

    async def get_entity(self, partition_key: str, row_key: str, **_: Any) -> _Entity:
        self.requests["get"] += 1
        found = self.rows.get((partition_key, row_key))
        if found is None:
            raise ResourceNotFoundError("not found")
        return _Entity(found[1], found[0])

    async def create_entity(self, entity: dict[str, Any], **_: Any) -> dict[str, str]:
        self.requests["create"] += 1
        if (entity["PartitionKey"], entity["RowKey"]) in self.rows:
            raise ResourceExistsError("exists")
        return self._put(entity)

    async def upsert_entity(self, entity: dict[str, Any], **_: Any) -> dict[str, str]:
        self.requests["upsert"] += 1
        return self._put(entity)

    async def update_entity(self, entity: dict[str, Any], *, etag: str, **_: Any) -> dict[str, str]:
        self.requests["update"] += 1
        found = self.rows.get((entity["PartitionKey"], entity["RowKey"]))
        if found is None:
            raise ResourceNotFoundError("not found")
        if found[0] != etag:
            raise ResourceModifiedError("modified")
        return self._put(entity)

    async def delete_entity(self, partition_key: str, row_key: str, **_: Any) -> None:
        self.requests["delete"] += 1
        self.rows.pop((partition_key, row_key), None)

    async def submit_transaction(self, operations: list[tuple[Any, ...]], **_: Any) -> list[dict[str, str]]:
        """An entity group transaction: one request, one partition, every operation or none."""
        self.requests["transaction"] += 1
        assert len({op[1]["PartitionKey"] for op in operations}) == 1 and len(operations) <= 100
        for op, entity, *options in operations:
            found = self.rows.get((entity["PartitionKey"], entity["RowKey"]))
            if op == "create" and found is not None:
                raise _transaction_error(409)
            if op == "update" and (found is None or found[0] != options[0]["etag"]):
                raise _transaction_error(412 if found else 404)
            assert op in ("create", "update", "upsert"), op
        return [self._put(entity) for _, entity, *_ in operations]

    def query_entities(self, query_filter: str, *, parameters: dict[str, Any], **_: Any) -> Any:
        self.requests["query"] += 1
        ranges = {
            "PartitionKey eq @pk": ("", "~~"),
            "PartitionKey eq @pk and RowKey lt @below": ("", parameters.get("below")),
            "PartitionKey eq @pk and RowKey ge @first": (parameters.get("first"), "~~"),
        }
        assert query_filter in ranges, f"only partition reads: {query_filter}"
        low, high = ranges[query_filter]

        async def rows() -> AsyncIterator[_Entity]:
            for (pk, rk), (etag, data) in sorted(self.rows.items()):
                if pk == parameters["pk"] and low <= rk < high:
                    yield _Entity(data, etag)

        return rows()

    def take(self) -> Counter[str]:
        out, self.requests = self.requests, Counter()
        return out


def _transaction_error(status: int) -> TableTransactionError:
    error = TableTransactionError(message=f"0:{status}")
    error.status_code = status
    return error


def _mappings(world: World) -> list[str]:
    return [row["MeetingKey"] for (_, rk), (_, row) in world.mappings_table.rows.items() if rk == "meeting"]


class World:
    def __init__(self) -> None:
        self.calendar = MemoryCalendar(clock=lambda: NOW)
        self.crm = MemoryCrm(clock=lambda: NOW)
        self.crm.seed(contacts=[{"email": CLIENT}])
        self.mappings_table = CountingTable("SyncMappings")
        self.decisions_table = CountingTable("SyncDecisions")
        self.tables = (self.mappings_table, self.decisions_table)
        self.decisions = DecisionLog(self.decisions_table, flush_seconds=3600)  # type: ignore[arg-type]
        self.worker = Worker(
            graph=self.calendar,
            crm=self.crm,
            mappings=MappingStore(self.mappings_table),  # type: ignore[arg-type]
            decisions=self.decisions,
            notices=NoticeLedger(self.mappings_table),  # type: ignore[arg-type]
            deletes=TableDeleteBudget(self.mappings_table),  # type: ignore[arg-type]
            policy=Policy.default(),
            clock=lambda: NOW,
        )

    def appointment(self, subject: str = "Review") -> Appointment:
        start = NOW + timedelta(days=1)
        return Appointment(
            subject=subject,
            start=start,
            end=start + timedelta(hours=1),
            organizer=Person(email=LINDA),
            attendees=(attendee(CLIENT),),
        )

    def take(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for table in self.tables:
            total.update(table.take())
        return total

    async def handle(self, message: GraphChange | CrmChange) -> tuple[int, list[str]]:
        self.take()
        outcome = await self.worker.handle(message)
        return sum(self.take().values()), outcome.all_writes

    def graph_messages(self) -> list[GraphChange]:
        out = [m for m in self.calendar.outbox if isinstance(m, GraphChange)]
        self.calendar.outbox.clear()
        return out

    def crm_messages(self) -> list[CrmChange]:
        out = [m for m in self.crm.outbox if isinstance(m, CrmChange)]
        self.crm.outbox.clear()
        return out


async def test_D4_W4_an_m365_create_costs_its_budget_and_its_echo_duplicate_and_noop_one_read() -> None:
    world = World()
    world.calendar.user_create(LINDA, world.appointment())
    (created,) = world.graph_messages()

    requests, writes = await world.handle(created)
    assert writes == ["create_crm:S4"] or writes[0].startswith("create_crm"), writes
    assert requests <= M365_CREATE_BUDGET, f"synced create M365 -> CRM: {requests} Table requests"

    (echo,) = world.crm_messages()  # our own CRM write, announced by the CRM
    assert await world.handle(echo) == (1, []), "the echo of our write: the mapping read only"
    assert await world.handle(created) == (1, []), "the same notification again: the mapping read only"

    (event,) = world.calendar.events()
    world.calendar.user_edit(LINDA, event.event_id, subject="Review")  # a change that changes nothing
    (noop,) = world.graph_messages()
    assert await world.handle(noop) == (1, []), "a no-op: the mapping read only"

    await world.decisions.flush()
    assert world.take() == Counter(transaction=1), "the decision's time-index row, batched"


async def test_E1_a_decision_with_writes_is_on_record_and_the_time_index_is_batched() -> None:
    world = World()
    for n in range(5):
        world.calendar.user_create(LINDA, world.appointment(f"Review {n}"))
    for message in world.graph_messages():
        await world.worker.handle(message)
    beside = [rk for (_, rk) in world.mappings_table.rows if rk.startswith("~decision-")]
    assert len(beside) == 5, "one decision row per create, beside its mapping (written with the claim)"
    assert world.decisions_table.take() == Counter(), "nothing in the decision log until the index flush"
    for mapping in _mappings(world):
        (row,) = await world.worker.mappings.decisions(mapping)
        assert row["outcome"] == "applied" and "create_crm" in str(row["actions"]), row
    await world.decisions.flush()
    assert world.decisions_table.take() == Counter(transaction=1), "five index rows in one transaction"
    assert len(await world.decisions.recent(since=NOW - timedelta(hours=1), now=NOW)) == 5


async def test_I1_a_crm_create_costs_at_most_its_budget_and_its_echo_one_read() -> None:
    world = World()
    world.crm.user_create(world.appointment().model_copy(update={"origin": Origin.CRM}))
    (created,) = world.crm_messages()
    requests, writes = await world.handle(created)
    assert any(w.startswith("create_graph") for w in writes), writes
    assert requests <= CREATE_BUDGET, f"synced create CRM -> M365: {requests} Table requests"
    (echo,) = world.graph_messages()  # Outlook announces the event we wrote
    assert await world.handle(echo) == (1, []), "the echo of our Graph write: the mapping read only"
    assert await world.handle(created) == (1, []), "the CRM's webhook again: the mapping read only"
    assert await world.handle(created) == (1, []), "and again"


async def test_I1_an_invitees_copy_of_a_crm_booking_finds_it_by_the_organizers_copy_then_by_alias() -> None:
    world = World()
    booking = world.appointment().model_copy(
        update={"origin": Origin.CRM, "attendees": (attendee(CLIENT), attendee(JULIE))}
    )
    world.crm.user_create(booking)
    for message in world.crm_messages():
        await world.worker.handle(message)
    (ours,) = world.calendar.events(LINDA)
    (key,) = _mappings(world)
    world.graph_messages()
    invitation = ours.model_copy(update={"mailbox": JULIE, "event_id": "julie-copy", "is_organizer": False})
    world.calendar.deliver(invitation)  # Exchange's copy in Julie's mailbox: her iCalUId, no tag of ours
    for message in world.graph_messages():
        outcome = await world.worker.handle(message)
        assert outcome.decision.meeting_key == key, outcome.decision.explain()
    assert len(world.crm.records) == 1 and _mappings(world) == [key], "joined, not a second meeting"
    mapping = await world.worker.mappings.get(key)
    assert mapping is not None and any(c.event_id == "julie-copy" for c in mapping.copies)
    found, alias = await world.worker.mappings.lookup("ical:" + (ours.ical_uid or ""))
    assert found is None and alias == key, "once joined, the iCalUId's own alias row"


@pytest.mark.parametrize("deletes", [0, 3])
async def test_X1_the_delete_budget_is_read_only_for_a_decision_that_deletes(deletes: int) -> None:
    world = World()
    world.calendar.user_create(LINDA, world.appointment())
    for message in world.graph_messages():
        await world.worker.handle(message)
    for _ in range(deletes):
        await world.worker.deletes.spend(LINDA, NOW)  # type: ignore[union-attr]
    (event,) = world.calendar.events()
    world.calendar.user_delete(LINDA, event.event_id)
    world.take()
    for message in world.graph_messages():
        outcome = await world.worker.handle(message)
        assert any(w.startswith("cancel_crm") for w in outcome.all_writes), outcome.decision.explain()
    rows = [r for (pk, _), (_, r) in world.mappings_table.rows.items() if pk == "deletes"]
    assert [r["Count"] for r in rows] == [deletes + 1]
