"""Operating the sync: one import for the CLI and the admin triggers.

The poison queue and replay live in `sync_core.ops.replay`, status, health and explain in
`sync_core.ops.status`; this module re-exports them and holds the subscription and backfill operations.
I/O side, async, never prints.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime

from sync_core.adapters.storage.core import SUBSCRIPTIONS_TABLE, Storage
from sync_core.adapters.storage.subscriptions import RunLease, SubscriptionRow, SubscriptionStore
from sync_core.bootstrap import Container
from sync_core.domain.messages import MailboxResync, encode
from sync_core.errors import NotFoundError
from sync_core.ops.replay import (
    MAX_SCAN,
    NO_REASON,
    PEEK_MAX,
    UNRECORDED,
    PoisonFilter,
    PoisonItem,
    ReplayReport,
    ReplayRequest,
    list_poison,
    parse_duration,
    replay,
)
from sync_core.ops.status import (
    EXPIRY_MARGIN,
    STALE_AFTER,
    MailboxStatus,
    StatusReport,
    explain,
    health,
    problems,
    recent_decisions,
    status,
    sync_mailboxes,
)
from sync_core.service.subscription_manager import (
    MAX_LIFETIME,
    RENEWAL_LEASE,
    RenewalReport,
    SubscriptionManager,
)

__all__ = [
    "EXPIRY_MARGIN",
    "MAX_SCAN",
    "NO_REASON",
    "PEEK_MAX",
    "STALE_AFTER",
    "UNRECORDED",
    "MailboxStatus",
    "PoisonFilter",
    "PoisonItem",
    "ReplayReport",
    "ReplayRequest",
    "StatusReport",
    "backfill",
    "explain",
    "health",
    "list_poison",
    "parse_duration",
    "problems",
    "recent_decisions",
    "recreate_subscription",
    "renew_subscriptions",
    "replay",
    "status",
    "sync_mailboxes",
]


# -- subscriptions and backfill (for the CLI) ------------------------------------------------------


class _MailboxScope:
    """The subscription store seen through one mailbox, so the manager's renewal touches only it: `all`
    is filtered, every other call goes to the store itself."""

    def __init__(self, inner: SubscriptionStore, mailbox: str | None) -> None:
        self._inner = inner
        self._mailbox = mailbox

    async def all(self) -> list[SubscriptionRow]:
        rows = await self._inner.all()
        return [r for r in rows if self._mailbox is None or r.mailbox.lower() == self._mailbox.lower()]

    async def get(self, subscription_id: str, *, fresh: bool = False) -> SubscriptionRow | None:
        return await self._inner.get(subscription_id, fresh=fresh)

    async def save(self, row: SubscriptionRow) -> None:
        await self._inner.save(row)

    async def claim(self, row: SubscriptionRow) -> SubscriptionRow:
        return await self._inner.claim(row)

    async def delete(self, row: SubscriptionRow) -> None:
        await self._inner.delete(row)

    def mailbox_lease(self, mailbox: str) -> RunLease:
        return self._inner.mailbox_lease(mailbox)


async def renew_subscriptions(c: Container, mailbox: str | None = None) -> RenewalReport:
    """Renew every active subscription now (of one mailbox, or all); re-create those Graph lost.

    Under the renewal timer's lease: while a run (the timer's, or another operator's) holds it, nothing is
    done and the report says `overlapped`."""
    store = _MailboxScope(c.subscriptions, mailbox)
    manager = SubscriptionManager(
        graph=c.graph,
        store=store,
        settings=c.settings,
        clock=c.clock.now,
        enqueue=c.storage.enqueue,  # a re-created subscription is followed by a resync of the gap
        lease=RunLease(c.storage.table(SUBSCRIPTIONS_TABLE), RENEWAL_LEASE),
        statuses=c.mailbox_states,
    )
    return await manager.renew_due(margin=MAX_LIFETIME)


async def recreate_subscription(c: Container, mailbox: str) -> SubscriptionRow:
    """Delete the mailbox's subscriptions, create a fresh one, and resync the mailbox for the gap between."""
    for row in await c.subscriptions.for_mailbox(mailbox):
        if row.status != "active":
            continue
        with contextlib.suppress(NotFoundError):  # already gone on Graph's side
            await c.graph.delete_subscription(row.subscription_id, row.mailbox)
        await c.subscriptions.save(row.retired("removed", c.clock.now(), "re-created by an operator"))
    manager = SubscriptionManager(
        graph=c.graph,
        store=c.subscriptions,
        settings=c.settings,
        clock=c.clock.now,
        enqueue=c.storage.enqueue,
    )
    return await manager.ensure(mailbox)  # enqueues the resync: of the gap, or the backfill of a new mailbox


async def backfill(
    storage: Storage,
    mailbox: str,
    now: datetime,
    *,
    full: bool = True,
    reason: str = "backfill by an operator",
) -> MailboxResync:
    """Enqueue a resync of one mailbox (full: a fresh delta round over the whole policy window)."""
    message = MailboxResync(
        correlation_id=f"ops-{uuid.uuid4().hex[:16]}",
        received_at=now,
        mailbox=mailbox,
        reason=reason,
        full=full,
    )
    await storage.enqueue(encode(message))
    return message
