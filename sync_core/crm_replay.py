"""Refuses a replayed CRM webhook: the same signed timestamp and body accepted a second time.

The replay window (crm_webhook.verify_signature) refuses a captured request after five minutes; this
refuses it inside them too. One row per accepted request in Table Storage: `create_entity` is an atomic
"seen before?" shared by every instance. Rows are grouped by hour of their signed timestamp, so whole
hours past the window are purged by a range query, at most every ten minutes per process.

I/O side (Table Storage), translated by sync_core.storage.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime

from azure.data.tables.aio import TableClient

from sync_core.crm_webhook import DEFAULT_WINDOW_SECONDS
from sync_core.errors import ConcurrencyError, SyncError
from sync_core.storage import call, create_entity, query

log = logging.getLogger("sync_core.crm_replay")

PARTITION_PREFIX = "crm-webhook-seen-"
BUCKET_SECONDS = 3600
PURGE_EVERY_SECONDS = 600.0
MAX_PURGED_PER_RUN = 500

_last_purge: dict[str, float] = {}  # table name -> time.monotonic() of this process' last purge


def partition(signed_at: int) -> str:
    """The partition of requests signed in the hour of `signed_at`; zero-padded so keys sort by time."""
    return f"{PARTITION_PREFIX}{max(0, signed_at) // BUCKET_SECONDS:010d}"


def fingerprint(signed_at: int, body: bytes) -> str:
    """What the signature covers (`{timestamp}.{body}`), hashed: equal exactly for a replay.

    Not the signature header: a replay could reorder or pad its `v1=` list and still be authentic.
    """
    return hashlib.sha256(str(signed_at).encode("ascii") + b"." + body).hexdigest()


class ReplayGuard:
    """`first_time` records an accepted request; `forget` undoes it when the request could not be queued."""

    def __init__(self, table: TableClient, *, window_seconds: int = DEFAULT_WINDOW_SECONDS) -> None:
        self._table = table
        self._window = window_seconds

    async def first_time(self, signed_at: int, body: bytes, now: datetime) -> bool:
        """True the first time this signed content is seen; False for a replay."""
        entity = {
            "PartitionKey": partition(signed_at),
            "RowKey": fingerprint(signed_at, body),
            "SignedAt": signed_at,
        }
        try:
            await create_entity(self._table, entity)
        except ConcurrencyError:
            return False
        await self._maybe_purge(now)
        return True

    async def forget(self, signed_at: int, body: bytes) -> None:
        """Remove the record, so the sender's retry of a request we failed to queue is not a "replay"."""
        rk = fingerprint(signed_at, body)
        try:
            await self._delete(partition(signed_at), rk)
        except SyncError as exc:  # the retry is re-signed with a new timestamp anyway
            log.warning("could not forget CRM webhook %s: %s", rk, exc)

    async def _delete(self, pk: str, rk: str) -> None:
        await call(lambda: self._table.delete_entity(pk, rk), item_id=rk)

    async def purge(self, now: datetime) -> int:
        """Delete the records of hours wholly before the window; returns how many were deleted."""
        cutoff = partition(int(now.timestamp()) - self._window)
        deleted = 0
        flt = "PartitionKey ge @lo and PartitionKey lt @hi"
        async for row in query(self._table, flt, lo=PARTITION_PREFIX, hi=cutoff):
            await self._delete(str(row["PartitionKey"]), str(row["RowKey"]))
            deleted += 1
            if deleted >= MAX_PURGED_PER_RUN:
                break
        return deleted

    async def _maybe_purge(self, now: datetime) -> None:
        name = self._table.table_name
        last = _last_purge.get(name)
        if last is not None and time.monotonic() - last < PURGE_EVERY_SECONDS:
            return
        _last_purge[name] = time.monotonic()
        try:
            deleted = await self.purge(now)
        except SyncError as exc:  # best effort: the next purge catches up
            log.warning("purging seen CRM webhooks failed: %s", exc)
            return
        if deleted:
            log.info("purged %d seen CRM webhooks older than the replay window", deleted)
