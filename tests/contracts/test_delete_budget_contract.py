"""The DeleteBudget contract (X1: cancels and deletes per mailbox and run, a clock hour), run against
TableDeleteBudget on Azurite and MemoryDeleteBudget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.deletes import TableDeleteBudget
from sync_core.ports.stores import DeleteBudget
from tests.fakes import MemoryDeleteBudget

HOUR = datetime(2026, 11, 20, 12, tzinfo=UTC)
LINDA = "linda@contoso.example"


class DeleteBudgetContract:
    """Behaviour every delete budget shows. Subclasses provide the `budget` fixture."""

    async def test_nothing_is_used_before_a_spend(self, budget: DeleteBudget) -> None:
        assert await budget.used(LINDA, HOUR) == 0

    async def test_X1_each_spend_counts_one_and_used_reads_the_count(self, budget: DeleteBudget) -> None:
        assert [await budget.spend(LINDA, HOUR + timedelta(minutes=m)) for m in (0, 10, 59)] == [1, 2, 3]
        assert await budget.used(LINDA, HOUR + timedelta(minutes=30)) == 3
        assert await budget.used(LINDA.upper(), HOUR) == 3  # mailboxes fold

    async def test_X1_each_clock_hour_is_a_run_of_its_own(self, budget: DeleteBudget) -> None:
        await budget.spend(LINDA, HOUR + timedelta(minutes=59, seconds=59))
        assert await budget.used(LINDA, HOUR + timedelta(hours=1)) == 0
        assert await budget.spend(LINDA, HOUR + timedelta(hours=1)) == 1
        assert await budget.used(LINDA, HOUR - timedelta(seconds=1)) == 0

    async def test_X1_each_mailbox_has_a_budget_of_its_own(self, budget: DeleteBudget) -> None:
        await budget.spend(LINDA, HOUR)
        assert await budget.used("julie@contoso.example", HOUR) == 0
        assert await budget.spend("julie@contoso.example", HOUR) == 1


class TestTableDeleteBudgetOnAzurite(DeleteBudgetContract):
    @pytest.fixture
    def budget(self, table: TableClient) -> DeleteBudget:
        return TableDeleteBudget(table)


class TestMemoryDeleteBudget(DeleteBudgetContract):
    @pytest.fixture
    def budget(self) -> DeleteBudget:
        return MemoryDeleteBudget()
