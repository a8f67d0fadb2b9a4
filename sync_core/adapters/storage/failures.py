"""The failures ledger: why a queue message failed, kept beside the poison queue for replay. I/O side."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.core import get_entity, key_of, query, upsert
from sync_core.errors import SyncError

_RK = "failure"


def failure_key(body: str) -> str:
    return key_of("message", body)


class FailureLedger:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def record(
        self,
        *,
        body: str,
        message_id: str,
        dequeue_count: int,
        error: SyncError,
        step: str,
        permanent: bool,
        at: datetime,
        throttled: bool = False,
    ) -> int:
        """Record one failure; returns how many failures of its kind (throttled, or any other) the message has
        had since it was last replayed: its retry round."""
        previous = await get_entity(self._table, failure_key(body), _RK) or {}
        counter = "ThrottleRounds" if throttled else "RetryAttempts"
        round_ = int(previous.get(counter, 0)) + 1
        entity: dict[str, Any] = {
            "PartitionKey": failure_key(body),
            "RowKey": _RK,
            "MessageId": message_id,
            "Body": body[:30_000],
            "DequeueCount": dequeue_count,
            "ErrorClass": error.error_class,
            "Error": error.message[:2000],
            "Step": step,
            "Side": error.side or "",
            "Mailbox": error.mailbox or "",
            "ItemId": (error.item_id or "")[:1024],
            "Permanent": permanent,
            "FirstFailedAt": previous.get("FirstFailedAt") or at.astimezone(UTC).isoformat(),
            "LastFailedAt": at.astimezone(UTC).isoformat(),
            "Attempts": int(previous.get("Attempts", 0)) + 1,
            "RetryAttempts": int(previous.get("RetryAttempts", 0)),
            "ThrottleRounds": int(previous.get("ThrottleRounds", 0)),
            counter: round_,
        }
        await upsert(self._table, entity)
        return round_

    async def reset_retries(self, body: str) -> None:
        """A replayed message starts a new retry round; its history (Attempts, times, reason) stays."""
        row = await get_entity(self._table, failure_key(body), _RK)
        if row is not None and (row.get("RetryAttempts") or row.get("ThrottleRounds")):
            await upsert(self._table, {**row, "RetryAttempts": 0, "ThrottleRounds": 0})

    async def for_body(self, body: str) -> dict[str, Any] | None:
        return await get_entity(self._table, failure_key(body), _RK)

    async def all(self, limit: int = 1000) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async for e in query(self._table, "RowKey eq @rk", rk=_RK):
            out.append(e)
            if len(out) >= limit:
                break
        return out
