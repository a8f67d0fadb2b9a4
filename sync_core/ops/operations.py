"""Operating the sync: one import for the CLI and the admin triggers. I/O side."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime

from sync_core.adapters.storage.core import Storage
from sync_core.bootstrap import Container
from sync_core.domain.messages import MailboxResync, encode
from sync_core.domain.subscription import SubscriptionRow
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
    health_summary,
    problems,
    recent_decisions,
    status,
    sync_mailboxes,
)
from sync_core.service.subscription_manager import (
    MAX_LIFETIME,
    RenewalReport,
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
    "health_summary",
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


async def renew_subscriptions(c: Container, mailbox: str | None = None) -> RenewalReport:
    """Renew every active subscription now (of one mailbox, or all); re-create those Graph lost.

    Under the renewal timer's lease: while a run (the timer's, or another operator's) holds it, nothing is
    done and the report says `overlapped`."""
    manager = c.subscription_manager(lease=True, mailbox=mailbox)
    return await manager.renew_due(margin=MAX_LIFETIME)


async def recreate_subscription(c: Container, mailbox: str) -> SubscriptionRow:
    """Delete the mailbox's subscriptions, create a fresh one, and resync the mailbox for the gap between."""
    for row in await c.subscriptions.for_mailbox(mailbox):
        if row.status != "active":
            continue
        with contextlib.suppress(NotFoundError):  # already gone on Graph's side
            await c.graph.delete_subscription(row.subscription_id, row.mailbox)
        await c.subscriptions.save(row.retired("removed", c.clock.now(), "re-created by an operator"))
    return await c.subscription_manager().ensure(
        mailbox
    )  # enqueues the resync: of the gap, or the backfill of a new mailbox


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
