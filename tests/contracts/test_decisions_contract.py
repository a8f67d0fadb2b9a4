"""The Decisions contract (E1), run against DecisionLog on Azurite and MemoryDecisions: what is recorded is
read back per item, newest first, every field as the status page and `explain` show it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.decisions import DecisionLog
from sync_core.ports.stores import Decisions
from tests.fakes import MemoryDecisions

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
ITEM = "AAMk/odd+id=="


async def record(
    log: Decisions, *, at: datetime = NOW, side: str = "m365", item_id: str = ITEM, **kw: Any
) -> None:
    args: dict[str, Any] = {
        "meeting_key": "ical:ABC",
        "rule": "D3",
        "reason": "merged",
        "actions": [{"kind": "update_crm", "rule": "D3", "changed_fields": ["subject"]}],
        "correlation_id": "corr-1",
        "versions": {"graph_change_key": "ck1", "crm_version": "v1"},
        "outcome": "applied",
    }
    await log.record(side=side, item_id=item_id, at=at, **(args | kw))


class DecisionsContract:
    """Behaviour every decision log shows. Subclasses provide the `log` fixture."""

    async def test_an_item_without_decisions_has_none(self, log: Decisions) -> None:
        assert await log.for_item("m365", ITEM) == []

    async def test_E1_a_decision_reads_back_with_every_field(self, log: Decisions) -> None:
        paris = timezone(timedelta(hours=1))
        await record(log, at=NOW.astimezone(paris), meeting_key=None, outcome="no-op", rule="D4")
        (row,) = await log.for_item("m365", ITEM)
        assert row == {
            "at": NOW.isoformat(),  # in UTC, as ISO text
            "side": "m365",
            "item_id": ITEM,
            "meeting_key": "",  # none known: empty
            "rule": "D4",
            "reason": "merged",
            "correlation_id": "corr-1",
            "outcome": "no-op",
            "actions": [{"kind": "update_crm", "rule": "D3", "changed_fields": ["subject"]}],
            "versions": {"graph_change_key": "ck1", "crm_version": "v1"},
        }

    async def test_E1_decisions_are_listed_newest_first_up_to_the_limit(self, log: Decisions) -> None:
        for minute, rule in ((2, "B"), (1, "A"), (3, "C")):
            await record(log, at=NOW + timedelta(minutes=minute), rule=rule)
        assert [r["rule"] for r in await log.for_item("m365", ITEM)] == ["C", "B", "A"]
        assert [r["rule"] for r in await log.for_item("m365", ITEM, limit=2)] == ["C", "B"]

    async def test_decisions_are_kept_per_side_and_item(self, log: Decisions) -> None:
        await record(log, rule="M")
        await record(log, side="crm", rule="C")
        await record(log, item_id=ITEM.lower(), rule="L")
        assert [r["rule"] for r in await log.for_item("m365", ITEM)] == ["M"]
        assert [r["rule"] for r in await log.for_item("crm", ITEM)] == ["C"]
        assert [r["rule"] for r in await log.for_item("m365", ITEM.lower())] == ["L"]

    async def test_a_long_reason_is_cut_to_1000_characters(self, log: Decisions) -> None:
        await record(log, reason="x" * 5000)
        (row,) = await log.for_item("m365", ITEM)
        assert row["reason"] == "x" * 1000


class TestDecisionLogOnAzurite(DecisionsContract):
    @pytest.fixture
    def log(self, table: TableClient) -> Decisions:
        return DecisionLog(table)


class TestMemoryDecisions(DecisionsContract):
    @pytest.fixture
    def log(self) -> Decisions:
        return MemoryDecisions()
