"""The decision log (rule E1): every decision the worker took, findable from either side's id.

I/O side. Rows are partitioned by the item the change was about, so `explain` reads one partition.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from azure.data.tables.aio import TableClient

from sync_core.storage import create_entity, get_json, key_of, put_json, query

_MAX_TICKS = 10**19


def item_partition(side: str, item_id: str) -> str:
    return key_of("item", side, item_id)


class DecisionLog:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def record(
        self,
        *,
        side: str,
        item_id: str,
        at: datetime,
        meeting_key: str | None,
        rule: str,
        reason: str,
        actions: list[dict[str, Any]],
        correlation_id: str,
        versions: dict[str, str],
        outcome: str,
    ) -> None:
        # Newest first: RowKey sorts ascending, so invert the timestamp.
        ticks = _MAX_TICKS - int(at.timestamp() * 1_000_000)
        entity: dict[str, Any] = {
            "PartitionKey": item_partition(side, item_id),
            "RowKey": f"{ticks:020d}-{uuid.uuid4().hex[:8]}",
            "Side": side,
            "ItemId": item_id,
            "At": at.astimezone(UTC).isoformat(),
            "MeetingKey": meeting_key or "",
            "Rule": rule,
            "Reason": reason[:1000],
            "CorrelationId": correlation_id,
            "Outcome": outcome,
        }
        put_json(entity, "Actions", actions)
        put_json(entity, "Versions", versions)
        await create_entity(self._table, entity)

    async def for_item(self, side: str, item_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async for entity in query(self._table, "PartitionKey eq @pk", pk=item_partition(side, item_id)):
            out.append(
                {
                    "at": entity["At"],
                    "side": entity["Side"],
                    "item_id": entity["ItemId"],
                    "meeting_key": entity["MeetingKey"],
                    "rule": entity["Rule"],
                    "reason": entity["Reason"],
                    "correlation_id": entity["CorrelationId"],
                    "outcome": entity["Outcome"],
                    "actions": get_json(entity, "Actions"),
                    "versions": get_json(entity, "Versions"),
                }
            )
            if len(out) >= limit:
                break
        return out
