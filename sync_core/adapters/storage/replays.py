"""Refuses a replayed CRM webhook: the same signed timestamp and body accepted a second time. I/O side."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.core import call, create_entity
from sync_core.adapters.storage.purge import delete_range
from sync_core.errors import ConcurrencyError, SyncError
from sync_core.ports.crm_webhook import DEFAULT_WINDOW_SECONDS

log = logging.getLogger("sync_core.crm_replay")

PARTITION_PREFIX = "crm-webhook-seen-"
BUCKET_SECONDS = 3600
SKEW_MARGIN_SECONDS = 300  # the sweep's clock may run ahead of a webhook instance's
# Per hourly run: 1,000 transactions of 100 rows, keeping up with ~27 accepted webhooks/s sustained; a
# bigger backlog is caught up by the next runs (rows past the window only cost storage).
MAX_PURGED_PER_RUN = 100_000


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
        """True the first time this signed content is seen; False for a replay. One Table write.

        `now` is part of crm_ingress.Replays; the purge that used it runs in the sweep now."""
        entity = {
            "PartitionKey": partition(signed_at),
            "RowKey": fingerprint(signed_at, body),
            "SignedAt": signed_at,
        }
        try:
            await create_entity(self._table, entity)
        except ConcurrencyError:
            return False
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

    async def purge(self, now: datetime, *, max_rows: int = MAX_PURGED_PER_RUN) -> int:
        """Delete the records of hours wholly before the window; returns how many were deleted.

        Called by the hourly sweep (under its lease), not by requests. Bounded by `max_rows` per call."""
        cutoff = partition(int(now.timestamp()) - self._window - SKEW_MARGIN_SECONDS)
        flt = "PartitionKey ge @lo and PartitionKey lt @hi"
        return await delete_range(self._table, flt, {"lo": PARTITION_PREFIX, "hi": cutoff}, max_rows=max_rows)
