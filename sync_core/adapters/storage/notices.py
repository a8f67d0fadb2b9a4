"""Notices to organisers (M4 hold, M5 room outcome) sent once, however often a decision is made again. I/O
side.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.core import call, create_entity, get_entity, key_of, replace_if_match
from sync_core.domain.actions import NotifyOrganizer
from sync_core.errors import ConcurrencyError, NotFoundError, SyncError

log = logging.getLogger("sync_core.notices")

NOTICE_WINDOW = timedelta(days=1)
_PARTITION = "notices"
_RK_PREFIX = "notice-"


def notice_keys(meeting_key: str, notice: NotifyOrganizer) -> tuple[str, str]:
    """(PartitionKey, RowKey) of a notice's claim: the notices partition; the meeting and the notice."""
    fingerprint = key_of(
        meeting_key, notice.rule, notice.mailbox.lower(), notice.subject, notice.text, notice.reason
    )
    return _PARTITION, _RK_PREFIX + fingerprint


class NoticeLedger:
    """Claims on notices: `claim` before sending, `release` when the send failed."""

    def __init__(self, table: TableClient, *, window: timedelta = NOTICE_WINDOW) -> None:
        self._table = table
        self._window = window

    async def claim(self, meeting_key: str, notice: NotifyOrganizer, now: datetime) -> bool:
        """True when this caller may send the notice; False when it was sent (or is being sent) already."""
        pk, rk = notice_keys(meeting_key, notice)
        entity = {
            "PartitionKey": pk,
            "RowKey": rk,
            "MeetingKey": meeting_key,
            "Rule": notice.rule,
            "Mailbox": notice.mailbox.lower(),
            "ClaimedAt": now.astimezone(UTC).isoformat(),
        }
        try:
            await create_entity(self._table, entity)
            return True
        except ConcurrencyError:
            pass
        existing = await get_entity(self._table, pk, rk)
        if existing is None:  # released between our insert and our read: try once more
            try:
                await create_entity(self._table, entity)
                return True
            except ConcurrencyError:
                return False
        claimed_at = datetime.fromisoformat(str(existing.get("ClaimedAt") or now.isoformat()))
        if now - claimed_at < self._window:
            return False
        try:  # an old claim: this notice is news again; whoever replaces the row first sends it
            await replace_if_match(self._table, entity, str(existing["_etag"]))
        except ConcurrencyError:
            return False
        return True

    async def release(self, meeting_key: str, notice: NotifyOrganizer) -> None:
        """Undo a claim whose send failed, so the retry sends the notice. Best effort: if the release fails
        too, the notice waits for the window."""
        pk, rk = notice_keys(meeting_key, notice)
        try:
            await call(lambda: self._table.delete_entity(pk, rk), item_id=rk)
        except NotFoundError:
            pass
        except SyncError as exc:
            log.warning("could not release the claim on notice %s of %s: %s", rk, meeting_key, exc)

    async def purge(self, before: datetime, at_most: int) -> int:
        """Delete up to `at_most` claims made before `before` (give it a time past the window: such a claim
        no longer stops a send); returns how many. One partition query."""
        from sync_core.adapters.storage.purge import delete_range

        flt = "PartitionKey eq @pk and ClaimedAt lt @before"
        params = {"pk": _PARTITION, "before": before.astimezone(UTC).isoformat()}
        return await delete_range(self._table, flt, params, max_rows=at_most)
