"""Graph subscription state in Table Storage, and the clientState lookup the ingress needs.

I/O side. One row per subscription (secret, mailbox, expiry, status); an in-process cache keeps the
ingress to milliseconds, with a short negative cache so forged ids cannot hammer the table.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.data.tables.aio import TableClient

from sync_core.storage import get_entity, query, upsert

_PK = "subscription"
CLIENT_STATE_BYTES = 48  # 64 url-safe characters: within Graph's 128-character limit


def new_client_state() -> str:
    return secrets.token_urlsafe(CLIENT_STATE_BYTES)


@dataclass(frozen=True)
class SubscriptionRow:
    subscription_id: str
    mailbox: str
    client_state: str
    expires_at: datetime
    status: str = "active"  # active | removed | polling
    last_renewal: datetime | None = None
    last_notification: datetime | None = None

    def entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": _PK,
            "RowKey": self.subscription_id,
            "Mailbox": self.mailbox,
            "ClientState": self.client_state,
            "ExpiresAt": self.expires_at.astimezone(UTC).isoformat(),
            "Status": self.status,
            "LastRenewal": self.last_renewal.isoformat() if self.last_renewal else "",
            "LastNotification": self.last_notification.isoformat() if self.last_notification else "",
        }

    @classmethod
    def from_entity(cls, e: dict[str, Any]) -> SubscriptionRow:
        def dt(v: Any) -> datetime | None:
            return datetime.fromisoformat(v) if v else None

        expires = dt(e.get("ExpiresAt"))
        return cls(
            subscription_id=str(e["RowKey"]),
            mailbox=str(e["Mailbox"]),
            client_state=str(e["ClientState"]),
            expires_at=expires or datetime.min.replace(tzinfo=UTC),
            status=str(e.get("Status") or "active"),
            last_renewal=dt(e.get("LastRenewal")),
            last_notification=dt(e.get("LastNotification")),
        )


class SubscriptionStore:
    """Subscription rows, with a read-through cache for the ingress's clientState checks."""

    def __init__(
        self, table: TableClient, *, ttl_seconds: float = 300.0, negative_ttl_seconds: float = 10.0
    ) -> None:
        self._table = table
        self._ttl = ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._cache: dict[str, tuple[float, SubscriptionRow | None]] = {}

    async def get(self, subscription_id: str) -> SubscriptionRow | None:
        now = time.monotonic()
        hit = self._cache.get(subscription_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        entity = await get_entity(self._table, _PK, subscription_id) if _key_safe(subscription_id) else None
        row = SubscriptionRow.from_entity(entity) if entity else None
        self._cache[subscription_id] = (now + (self._ttl if row else self._negative_ttl), row)
        if len(self._cache) > 10_000:
            self._cache.clear()
        return row

    async def save(self, row: SubscriptionRow) -> None:
        await upsert(self._table, row.entity())
        self._cache[row.subscription_id] = (time.monotonic() + self._ttl, row)

    async def all(self) -> list[SubscriptionRow]:
        return [
            SubscriptionRow.from_entity(e) async for e in query(self._table, "PartitionKey eq @pk", pk=_PK)
        ]

    async def for_mailbox(self, mailbox: str) -> list[SubscriptionRow]:
        return [r for r in await self.all() if r.mailbox.lower() == mailbox.lower()]


def _key_safe(value: str) -> bool:
    """Table keys may not hold / \\ # ? or control characters; such an id cannot be one of ours."""
    return 0 < len(value) <= 255 and not any(c in value for c in "/\\#?") and value.isprintable()
