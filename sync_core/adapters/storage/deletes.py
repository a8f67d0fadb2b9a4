"""The X1 delete budget in Table Storage: one row per mailbox and run (a clock hour), shared by all workers.

I/O side; the port is `ports.stores.DeleteBudget`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.core import create_entity, get_entity, key_of, replace_if_match
from sync_core.adapters.storage.purge import delete_range
from sync_core.errors import ConcurrencyError

# X1: a queue worker has no "run"; a run is one fixed clock hour per mailbox (docs/sync-rules.md, X1).
DELETE_RUN = timedelta(hours=1)
_DELETES_PK = "deletes"


class TableDeleteBudget:
    """X1: cancels and deletes carried out per mailbox in the current run (one clock hour), in Table Storage
    so every worker instance shares it. Counting is exact under races (ETag-conditioned increments)."""

    def __init__(self, table: TableClient, *, run: timedelta = DELETE_RUN) -> None:
        self._table = table
        self._run = run

    def _row(self, mailbox: str, now: datetime) -> str:
        seconds = int(self._run.total_seconds())
        bucket = int(now.astimezone(UTC).timestamp()) // seconds * seconds
        return key_of(mailbox.lower(), str(bucket))

    async def used(self, mailbox: str, now: datetime) -> int:
        entity = await get_entity(self._table, _DELETES_PK, self._row(mailbox, now))
        return int(entity["Count"]) if entity else 0

    async def spend(self, mailbox: str, now: datetime) -> int:
        """Count one cancel or delete; returns the count so far in this run."""
        row = self._row(mailbox, now)
        for _ in range(10):
            entity = await get_entity(self._table, _DELETES_PK, row)
            count = (int(entity["Count"]) if entity else 0) + 1
            new: dict[str, Any] = {
                "PartitionKey": _DELETES_PK,
                "RowKey": row,
                "Mailbox": mailbox.lower(),
                "RunStart": now.astimezone(UTC).isoformat(),
                "Count": count,
            }
            try:
                if entity is None:
                    await create_entity(self._table, new)
                else:
                    await replace_if_match(self._table, new, entity["_etag"])
                return count
            except ConcurrencyError:
                continue
        raise ConcurrencyError("delete budget contended", mailbox=mailbox)

    async def purge(self, before: datetime, at_most: int) -> int:
        """Delete up to `at_most` budget rows last spent before `before` (past runs); returns how many."""
        flt = "PartitionKey eq @pk and RunStart lt @before"
        params = {"pk": _DELETES_PK, "before": before.astimezone(UTC).isoformat()}
        return await delete_range(self._table, flt, params, max_rows=at_most)
