"""Reconciliation: find every change the notifications missed, through calendarView/delta (X2, I5, S6).

I/O side. Each item found goes through the same queue and worker as a notification would; the delta
link and the mailbox's "last confirmed in sync" time are kept in Table Storage.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables.aio import TableClient

from sync_core.errors import NotFoundError, PermanentError
from sync_core.graph import GraphAdapter
from sync_core.messages import GraphChange, MailboxResync, encode
from sync_core.policy import Policy
from sync_core.storage import get_entity, key_of, upsert

log = logging.getLogger("sync_core.reconcile")

_MAILBOX_PK = "mailbox"
MAX_PAGES = 10_000


@dataclass
class MailboxState:
    mailbox: str
    delta_link: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    last_confirmed: datetime | None = None
    etag: str | None = None


class MailboxStateStore:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def get(self, mailbox: str) -> MailboxState:
        e = await get_entity(self._table, _MAILBOX_PK, key_of(mailbox.lower()))
        if e is None:
            return MailboxState(mailbox=mailbox)

        def dt(name: str) -> datetime | None:
            v = e.get(name)
            return datetime.fromisoformat(v) if v else None

        return MailboxState(
            mailbox=str(e["Mailbox"]),
            delta_link=str(e.get("DeltaLink") or "") or None,
            window_start=dt("WindowStart"),
            window_end=dt("WindowEnd"),
            last_confirmed=dt("LastConfirmed"),
            etag=e["_etag"],
        )

    async def save(self, state: MailboxState) -> None:
        def iso(v: datetime | None) -> str:
            return v.astimezone(UTC).isoformat() if v else ""

        entity: dict[str, Any] = {
            "PartitionKey": _MAILBOX_PK,
            "RowKey": key_of(state.mailbox.lower()),
            "Mailbox": state.mailbox,
            "DeltaLink": state.delta_link or "",
            "WindowStart": iso(state.window_start),
            "WindowEnd": iso(state.window_end),
            "LastConfirmed": iso(state.last_confirmed),
        }
        await upsert(self._table, entity)


class Reconciler:
    """Runs delta for one mailbox and enqueues what it finds."""

    def __init__(
        self,
        *,
        graph: GraphAdapter,
        states: MailboxStateStore,
        policy: Policy,
        enqueue: Callable[[str], Awaitable[None]],
        clock: Callable[[], datetime],
    ) -> None:
        self._graph = graph
        self._states = states
        self._policy = policy
        self._enqueue = enqueue
        self._clock = clock

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return day - timedelta(days=self._policy.past_days), day + timedelta(
            days=self._policy.future_days + 1
        )

    async def resync_mailbox(self, message: MailboxResync) -> int:
        """One delta round (the first one over the policy window); returns how many items were enqueued."""
        now = self._clock()
        state = await self._states.get(message.mailbox)
        start, end = self.window(now)
        # A delta round is bound to its window: a moved window (S6) or a full resync starts a new round.
        fresh = (
            message.full or state.delta_link is None or state.window_start != start or state.window_end != end
        )
        link = None if fresh else state.delta_link
        try:
            found, delta_link = await self._round(message, link, start, end)
        except NotFoundError:
            log.warning("delta state for %s is gone (410/syncStateNotFound); full resync", message.mailbox)
            found, delta_link = await self._round(message, None, start, end)
        state.delta_link = delta_link
        state.window_start, state.window_end = start, end
        state.last_confirmed = now
        await self._states.save(state)
        log.info("resync of %s (%s): %d items enqueued", message.mailbox, message.reason, found)
        return found

    async def _round(
        self, message: MailboxResync, link: str | None, start: datetime, end: datetime
    ) -> tuple[int, str | None]:
        found = 0
        for _ in range(MAX_PAGES):
            page = await self._graph.delta_page(message.mailbox, link=link, start=start, end=end)
            for event in page.events:
                found += 1
                await self._enqueue(self._change(message, event.event_id, "updated"))
            for removed in page.removed_ids:
                found += 1
                await self._enqueue(self._change(message, removed, "deleted"))
            if page.next_link:
                link = page.next_link
                continue
            return found, page.delta_link
        # Not a lost delta token (NotFoundError would restart the round forever): give up with the reason.
        raise PermanentError(
            f"delta did not end within {MAX_PAGES} pages", side="graph", mailbox=message.mailbox
        )

    def _change(self, message: MailboxResync, event_id: str, change_type: str) -> str:
        return encode(
            GraphChange.model_validate(
                {
                    "correlation_id": f"{message.correlation_id[:40]}-{uuid.uuid4().hex[:8]}",
                    "received_at": self._clock(),
                    "mailbox": message.mailbox,
                    "event_id": event_id,
                    "change_type": change_type,
                }
            )
        )
