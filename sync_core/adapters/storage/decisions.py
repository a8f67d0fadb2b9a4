"""The decision log (rule E1): the time index of every decision the worker took, and the record of those
about no mapped meeting, by item. I/O side.

The decisions about a mapped meeting are kept beside its row in SyncMappings (`mappings.MappingStore`,
issue 20), so the claim and its decision are one entity group transaction; their row format is the one
here (`decision_entity`). Item rows written before that layout stay readable (`for_item`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.core import create_entity, get_json, key_of, put_json, query, translate
from sync_core.adapters.storage.purge import delete_range
from sync_core.ports.stores import DecisionRecord

log = logging.getLogger("sync_core.decision_log")

_MAX_TICKS = 10**19
INDEX_PREFIX = "recent-"
INDEX_RETENTION = timedelta(days=7)  # the status page shows 24 h
INDEX_SKEW = timedelta(minutes=5)  # a worker's clock may run ahead of the reader's
MAX_INDEX_HOURS = 24 * 8  # how many hour partitions one `recent` call may read, at most
MAX_PURGED_PER_RUN = 100_000


def item_partition(side: str, item_id: str) -> str:
    return key_of("item", side, item_id)


def index_partition(at: datetime) -> str:
    """The time index's partition for decisions taken in the UTC hour of `at`; sorts by time."""
    return f"{INDEX_PREFIX}{at.astimezone(UTC):%Y%m%d%H}"


def _ticks(at: datetime) -> int:
    """Inverted microseconds: RowKeys sort ascending, so the newest decision comes first."""
    return _MAX_TICKS - int(at.timestamp() * 1_000_000)


def _hours(newest: datetime, oldest: datetime) -> list[str]:
    """Index partitions from the hour of `newest` back to the hour of `oldest`, newest first. Pure."""
    hour, last = (t.astimezone(UTC).replace(minute=0, second=0, microsecond=0) for t in (newest, oldest))
    out: list[str] = []
    while hour >= last and len(out) < MAX_INDEX_HOURS:
        out.append(index_partition(hour))
        hour -= timedelta(hours=1)
    return out


def decision_key(at: datetime) -> str:
    """A decision's RowKey: newest first, unique (a suffix of its own for decisions of the same instant)."""
    return f"{_ticks(at):020d}-{uuid.uuid4().hex[:8]}"


def decision_entity(decision: DecisionRecord, partition: str, row_key: str) -> dict[str, Any]:
    """The row of a decision (with its versions), in whichever partition keeps it."""
    entity: dict[str, Any] = {
        "PartitionKey": partition,
        "RowKey": row_key,
        "Side": decision.side,
        "ItemId": decision.item_id,
        "At": decision.at.astimezone(UTC).isoformat(),
        "MeetingKey": decision.meeting_key or "",
        "Rule": decision.rule,
        "Reason": decision.reason[:1000],
        "CorrelationId": decision.correlation_id,
        "Outcome": decision.outcome,
    }
    put_json(entity, "Actions", decision.actions)
    put_json(entity, "Versions", decision.versions)
    return entity


def decision_row(entity: dict[str, Any]) -> dict[str, Any]:
    """A stored decision as `explain` shows it."""
    return _row(entity) | {"versions": get_json(entity, "Versions")}


def _row(entity: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": entity["At"],
        "side": entity["Side"],
        "item_id": entity["ItemId"],
        "meeting_key": entity["MeetingKey"],
        "rule": entity["Rule"],
        "reason": entity["Reason"],
        "correlation_id": entity["CorrelationId"],
        "outcome": entity["Outcome"],
        "actions": get_json(entity, "Actions"),
    }


INDEX_FLUSH_SECONDS = 1.0  # a time-index row reaches the status page at most this late
INDEX_BATCH = 100  # rows per entity group transaction (the service's limit)
_INDEX_BATCH_CHARS = 1_000_000  # and well under its 4 MiB per request


class DecisionLog:
    """The item rows (decisions about no mapped meeting) are written one per decision, at once (they are the
    record); the time-index rows of every decision are kept back for up to `INDEX_FLUSH_SECONDS` and sent as
    entity group transactions of up to 100 rows (one hour partition each), so the status page's index costs
    about 0.01 Table requests per decision instead of one. Rows still held when a process dies are lost, as
    an index row whose write failed always was: the index only feeds the status page; `explain` reads the
    records (item rows, and the rows beside each mapping)."""

    def __init__(self, table: TableClient, *, flush_seconds: float = INDEX_FLUSH_SECONDS) -> None:
        self._table = table
        self._flush_seconds = flush_seconds
        self._pending: list[dict[str, Any]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()

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
        """Record a decision in its item's partition (a decision about no mapped meeting), and index it."""
        decision = DecisionRecord(
            side, item_id, at, meeting_key, rule, reason, actions, correlation_id, versions, outcome
        )
        entity = decision_entity(decision, item_partition(side, item_id), decision_key(at))
        # The item row is the record (E1) and its failure fails the change; the index row only feeds the
        # status page, so it is batched with others and losing it is logged, not retried.
        await create_entity(self._table, entity)
        self._hold(entity)

    def index(self, decision: DecisionRecord) -> None:
        """Add a decision recorded beside its mapping to the time index (batched: no request of its own)."""
        self._hold(decision_entity(decision, "", decision_key(decision.at)))

    def _hold(self, entity: dict[str, Any]) -> None:
        index = {k: v for k, v in entity.items() if not k.startswith("Versions")}
        self._pending.append(index | {"PartitionKey": index_partition(datetime.fromisoformat(entity["At"]))})
        if len(self._pending) >= INDEX_BATCH:
            self._spawn_flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_seconds, self._spawn_flush)

    def _spawn_flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._send_pending())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush(self) -> None:
        """Send the time-index rows held back, and wait for sends under way (before a read or a close)."""
        await self._send_pending()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    async def _send_pending(self) -> None:
        """One transaction per hour partition and 100 rows."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows, self._pending = self._pending, []
        batches: list[list[dict[str, Any]]] = []
        by_partition: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_partition.setdefault(row["PartitionKey"], []).append(row)
        for group in by_partition.values():
            batch: list[dict[str, Any]] = []
            size = 0
            for row in group:
                chars = sum(len(v) for v in row.values() if isinstance(v, str))
                if batch and (len(batch) >= INDEX_BATCH or size + chars > _INDEX_BATCH_CHARS):
                    batches.append(batch)
                    batch, size = [], 0
                batch.append(row)
                size += chars
            if batch:
                batches.append(batch)
        for batch in batches:
            try:
                await self._table.submit_transaction([("create", row) for row in batch])
            except Exception as exc:
                log.warning("%d decisions not added to the time index: %s", len(batch), translate(exc))

    async def for_item(self, side: str, item_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async for entity in query(self._table, "PartitionKey eq @pk", pk=item_partition(side, item_id)):
            out.append(decision_row(entity))
            if len(out) >= limit:
                break
        return out

    async def recent(self, *, since: datetime, now: datetime, limit: int = 25) -> list[dict[str, Any]]:
        """The newest `limit` decisions taken at or after `since`, newest first, across all items.

        Key-only reads of the time index: hour partitions from `now` back to `since`, each read from its
        newest row, stopping once `limit` rows are found (usually one request)."""
        await self.flush()  # this process's own latest decisions included
        out: list[dict[str, Any]] = []
        below = f"{_ticks(since) + 1:020d}"  # every RowKey of a decision at or after `since` sorts below
        for pk in _hours(now + INDEX_SKEW, since):
            flt = "PartitionKey eq @pk and RowKey lt @below"
            try:
                pages = self._table.query_entities(
                    flt, parameters={"pk": pk, "below": below}, results_per_page=min(limit, 1000)
                )
                async for entity in pages:
                    out.append(_row(entity))
                    if len(out) >= limit:
                        return out
            except Exception as exc:
                raise translate(exc) from exc
        return out

    async def purge_index(self, now: datetime, *, max_rows: int = MAX_PURGED_PER_RUN) -> int:
        """Delete time-index rows of hours wholly before `INDEX_RETENTION` (the item rows stay)."""
        await self.flush()
        flt = "PartitionKey ge @lo and PartitionKey lt @hi"
        hi = index_partition(now - INDEX_RETENTION)
        return await delete_range(self._table, flt, {"lo": INDEX_PREFIX, "hi": hi}, max_rows=max_rows)
