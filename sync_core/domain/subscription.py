"""A Graph subscription as the app keeps it: one per sync mailbox, or a polling placeholder (X3). Pure."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field, replace
from datetime import datetime


def client_state_digest(client_state: str) -> str:
    """What we keep of a subscription's clientState: its SHA-256. The secret itself goes to Graph once, at
    create, and is never stored, so a reader of the subscriptions table cannot forge notifications. (It is
    48 random bytes: a plain hash is enough, there is nothing to guess.)"""
    return hashlib.sha256(client_state.encode()).hexdigest()


@dataclass(frozen=True)
class SubscriptionRow:
    subscription_id: str
    mailbox: str
    client_state_hash: str  # client_state_digest of the secret; "" for a polling placeholder (no secret)
    expires_at: datetime
    status: str = "active"  # active | removed | deleted | polling (X3: Graph refused; delta polls instead)
    last_renewal: datetime | None = None
    last_notification: datetime | None = None  # per mailbox, kept on the SyncMailboxes row (ingress)
    last_reauthorization: datetime | None = None
    next_attempt: datetime | None = None  # polling: when to ask Graph for a subscription again
    reason: str = ""  # polling: why Graph refused
    ended_at: datetime | None = None  # when it became history (removed, deleted): purged some days later
    etag: str | None = field(default=None, compare=False)

    def live(self, now: datetime) -> bool:
        """A subscription that may send notifications: active, unexpired, with a secret."""
        return self.status == "active" and bool(self.client_state_hash) and self.expires_at > now

    def admits(self, client_state: str | None, now: datetime) -> bool:
        """A notification carrying `client_state` is ours: this row is live and the secret matches
        (constant-time, over the digests)."""
        digest = client_state_digest(client_state or "")
        return self.live(now) and hmac.compare_digest(digest, self.client_state_hash)

    def retired(self, status: str, at: datetime, reason: str | None = None) -> SubscriptionRow:
        """This row as history: `removed` (Graph no longer has it) or `deleted` (we deleted or retired it)."""
        return replace(self, status=status, ended_at=at, reason=self.reason if reason is None else reason)


@dataclass(frozen=True)
class CreatedSubscription:
    """What Graph answered to a subscription create."""

    subscription_id: str
    expires_at: datetime
