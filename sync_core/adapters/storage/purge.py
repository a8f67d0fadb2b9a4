"""Bounded deletion of a key range: rows read by key only, deleted in entity-group transactions. I/O side."""

from __future__ import annotations

import asyncio
from typing import Any

from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.core import call, translate

BATCH = 100  # Table Storage's limit of operations per entity-group transaction
IN_FLIGHT = 4  # transactions sent at once


async def delete_range(table: TableClient, flt: str, params: dict[str, Any], *, max_rows: int) -> int:
    """Delete up to `max_rows` rows matching `flt` (a key filter); returns how many were deleted."""
    batches: list[list[tuple[str, dict[str, Any]]]] = []
    current: list[tuple[str, dict[str, Any]]] = []
    keys = 0
    try:
        async for e in table.query_entities(flt, parameters=params, select=["PartitionKey", "RowKey"]):
            pk, rk = str(e["PartitionKey"]), str(e["RowKey"])
            if current and (len(current) >= BATCH or current[0][1]["PartitionKey"] != pk):
                batches.append(current)
                current = []
            current.append(("delete", {"PartitionKey": pk, "RowKey": rk}))
            keys += 1
            if keys >= max_rows:
                break
    except Exception as exc:
        raise translate(exc) from exc
    if current:
        batches.append(current)
    deleted = 0
    for start in range(0, len(batches), IN_FLIGHT):
        group = batches[start : start + IN_FLIGHT]
        await asyncio.gather(*(_submit(table, ops) for ops in group))
        deleted += sum(len(ops) for ops in group)
    return deleted


async def _submit(table: TableClient, ops: list[tuple[str, dict[str, Any]]]) -> None:
    await call(lambda: table.submit_transaction(ops), item_id=ops[0][1]["PartitionKey"])
