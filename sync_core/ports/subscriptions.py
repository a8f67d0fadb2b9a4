"""What the subscription manager needs: Graph's subscription calls, its rows, run leases (Protocols)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from sync_core.domain.subscription import CreatedSubscription, SubscriptionRow


class SubscriptionGraph(Protocol):
    """The Graph calls the manager makes (GraphAdapter; an in-memory model in the simulation)."""

    async def create_subscription(
        self,
        mailbox: str,
        *,
        notification_url: str,
        lifecycle_url: str,
        client_state: str,
        expires_at: datetime,
    ) -> CreatedSubscription: ...
    async def subscription_exists(self, subscription_id: str, mailbox: str) -> bool: ...
    async def renew_subscription(
        self, subscription_id: str, mailbox: str, expires_at: datetime
    ) -> datetime: ...
    async def reauthorize_subscription(self, subscription_id: str, mailbox: str) -> None: ...
    async def delete_subscription(self, subscription_id: str, mailbox: str) -> None: ...
    async def list_subscriptions(self, mailbox: str, notification_url: str) -> list[str]: ...


class Lease(Protocol):
    """Keeps runs from overlapping (subscriptions.RunLease: an ETag-claimed row that lapses on its own)."""

    async def acquire(self, now: datetime, hold: timedelta) -> bool: ...
    async def release(self) -> None: ...


class SubscriptionRows(Protocol):
    async def all(self) -> list[SubscriptionRow]: ...
    async def get(self, subscription_id: str, *, fresh: bool = False) -> SubscriptionRow | None: ...
    async def save(self, row: SubscriptionRow) -> None: ...
    async def claim(self, row: SubscriptionRow) -> SubscriptionRow: ...  # ConcurrencyError if changed
    async def delete(self, row: SubscriptionRow) -> None: ...
    def mailbox_lease(self, mailbox: str) -> Lease: ...  # a claim on subscribing one mailbox


class MailboxStatuses(Protocol):
    async def set_status(self, mailbox: str, status: str, reason: str = "") -> None: ...
