"""A Graph subscription as the app keeps it: one per sync mailbox, or a polling placeholder (X3). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime


@dataclass(frozen=True)
class SubscriptionRow:
    subscription_id: str
    mailbox: str
    client_state: str
    expires_at: datetime
    status: str = "active"  # active | removed | deleted | polling (X3: Graph refused; delta polls instead)
    last_renewal: datetime | None = None
    last_notification: datetime | None = None  # per mailbox, kept on the SyncMailboxes row (ingress)
    last_reauthorization: datetime | None = None
    next_attempt: datetime | None = None  # polling: when to ask Graph for a subscription again
    reason: str = ""  # polling: why Graph refused
    ended_at: datetime | None = None  # when it became history (removed, deleted): purged some days later
    etag: str | None = field(default=None, compare=False)

    def retired(self, status: str, at: datetime, reason: str | None = None) -> SubscriptionRow:
        """This row as history: `removed` (Graph no longer has it) or `deleted` (we deleted or retired it)."""
        return replace(self, status=status, ended_at=at, reason=self.reason if reason is None else reason)


@dataclass(frozen=True)
class CreatedSubscription:
    """What Graph answered to a subscription create."""

    subscription_id: str
    expires_at: datetime
