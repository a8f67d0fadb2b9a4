"""Graph subscription state in Table Storage, and the clientState lookup the ingress needs. I/O side."""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.core import call, create_entity, get_entity, key_of, query, replace_if_match
from sync_core.domain.subscription import SubscriptionRow, client_state_digest
from sync_core.errors import ConcurrencyError, NotFoundError

_PK = "subscription"
CLIENT_STATE_BYTES = 48  # 64 url-safe characters: within Graph's 128-character limit


def new_client_state() -> str:
    return secrets.token_urlsafe(CLIENT_STATE_BYTES)


def to_entity(row: SubscriptionRow) -> dict[str, Any]:
    """The row as a Table entity of the subscriptions partition."""

    def iso(v: datetime | None) -> str:
        return v.astimezone(UTC).isoformat() if v else ""

    return {
        "PartitionKey": _PK,
        "RowKey": row.subscription_id,
        "Mailbox": row.mailbox,
        "ClientStateSha256": row.client_state_hash,
        "ClientState": "",  # rows written before the secret was kept hashed: erased on their next save
        "ExpiresAt": row.expires_at.astimezone(UTC).isoformat(),
        "Status": row.status,
        "LastRenewal": iso(row.last_renewal),
        "LastReauthorization": iso(row.last_reauthorization),
        "NextAttempt": iso(row.next_attempt),
        "Reason": row.reason[:1000],
        "EndedAt": iso(row.ended_at),
    }


def from_entity(e: dict[str, Any]) -> SubscriptionRow:
    """A row read from the table."""

    def dt(v: Any) -> datetime | None:
        return datetime.fromisoformat(v) if v else None

    expires = dt(e.get("ExpiresAt"))
    return SubscriptionRow(
        subscription_id=str(e["RowKey"]),
        mailbox=str(e["Mailbox"]),
        client_state_hash=str(e.get("ClientStateSha256") or "")
        or (client_state_digest(str(e["ClientState"])) if e.get("ClientState") else ""),
        expires_at=expires or datetime.min.replace(tzinfo=UTC),
        status=str(e.get("Status") or "active"),
        last_renewal=dt(e.get("LastRenewal")),
        last_notification=dt(e.get("LastNotification")),
        last_reauthorization=dt(e.get("LastReauthorization")),
        next_attempt=dt(e.get("NextAttempt")),
        reason=str(e.get("Reason") or ""),
        ended_at=dt(e.get("EndedAt")),
        etag=e.get("_etag"),
    )


def polling_id() -> str:
    """A new id for a mailbox's polling placeholder (X3): never a Graph subscription id, and not guessable
    (the ingress refuses it anyway: it accepts only active rows with a secret)."""
    return f"polling-{secrets.token_hex(16)}"


class SubscriptionStore:
    """Subscription rows, with a read-through cache for the ingress's clientState checks."""

    def __init__(
        self, table: TableClient, *, ttl_seconds: float = 300.0, negative_ttl_seconds: float = 10.0
    ) -> None:
        self._table = table
        self._ttl = ttl_seconds
        self._negative_ttl = negative_ttl_seconds
        self._cache: dict[str, tuple[float, SubscriptionRow | None]] = {}

    async def get(self, subscription_id: str, *, fresh: bool = False) -> SubscriptionRow | None:
        """The row (cached for the ingress); `fresh` reads the table, for decisions that need its ETag."""
        now = time.monotonic()
        hit = self._cache.get(subscription_id)
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]
        entity = await get_entity(self._table, _PK, subscription_id) if _key_safe(subscription_id) else None
        row = from_entity(entity) if entity else None
        self._cache[subscription_id] = (now + (self._ttl if row else self._negative_ttl), row)
        if len(self._cache) > 10_000:
            self._cache.clear()
        return row

    async def save(self, row: SubscriptionRow) -> None:
        entity = to_entity(row)
        await call(
            lambda: self._table.upsert_entity(entity, mode=UpdateMode.MERGE), item_id=row.subscription_id
        )
        self._cache[row.subscription_id] = (time.monotonic() + self._ttl, row)

    async def claim(self, row: SubscriptionRow) -> SubscriptionRow:
        """Save only if the row is unchanged since it was read (its ETag): ConcurrencyError otherwise.

        Two workers handling copies of one lifecycle event both read the row; one claim wins, so Graph
        sees one reauthorize or one PATCH, never both within 10 minutes (facts §5)."""
        if row.etag is None:
            raise ConcurrencyError("claim needs a row read with its ETag", side="storage")
        entity, etag = to_entity(row), row.etag
        meta = await call(
            lambda: self._table.update_entity(
                entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
            ),
            item_id=row.subscription_id,
        )
        claimed = replace(row, etag=str(meta.get("etag")))
        self._cache[row.subscription_id] = (time.monotonic() + self._ttl, claimed)
        return claimed

    async def delete(self, row: SubscriptionRow) -> None:
        """Delete the row as it was read (its ETag): a row written since is kept; one already gone is fine."""
        kw: dict[str, Any] = {}
        if row.etag is not None:
            kw = {"etag": row.etag, "match_condition": MatchConditions.IfNotModified}
        with contextlib.suppress(ConcurrencyError, NotFoundError):
            await call(
                lambda: self._table.delete_entity(_PK, row.subscription_id, **kw), item_id=row.subscription_id
            )
        self._cache.pop(row.subscription_id, None)

    async def all(self) -> list[SubscriptionRow]:
        return [from_entity(e) async for e in query(self._table, "PartitionKey eq @pk", pk=_PK)]

    async def for_mailbox(self, mailbox: str) -> list[SubscriptionRow]:
        return [r for r in await self.all() if r.mailbox.lower() == mailbox.lower()]

    def mailbox_lease(self, mailbox: str) -> RunLease:
        """A claim on subscribing one mailbox, so two workers never both create its subscription (S1)."""
        return RunLease(self._table, f"ensure-{key_of(mailbox.lower())}")

    def resync_lease(self, mailbox: str) -> RunLease:
        """A claim on reading one mailbox's changes, so its delta rounds run one at a time."""
        return RunLease(self._table, f"resync-{key_of(mailbox.lower())}")


class RunLease:
    """A row claimed with its ETag so a timer run never overlaps another; a crashed run's claim lapses.

    Timers are singletons only per schedule occurrence; a run that outlasts its period, a manual run and
    a scale-out can still overlap. The claim holds until `until`, which outlives the run's own deadline."""

    def __init__(self, table: TableClient, name: str) -> None:
        self._table = table
        self._name = name
        self._etag: str | None = None
        self._owner = secrets.token_hex(8)

    async def acquire(self, now: datetime, hold: timedelta) -> bool:
        entity = {
            "PartitionKey": "lease",
            "RowKey": self._name,
            "Owner": self._owner,
            "Until": (now + hold).astimezone(UTC).isoformat(),
        }
        current = await get_entity(self._table, "lease", self._name)
        try:
            if current is None:
                self._etag = await create_entity(self._table, entity)
                return True
            until = datetime.fromisoformat(str(current.get("Until") or "1970-01-01T00:00:00+00:00"))
            if until > now and current.get("Owner") != self._owner:
                return False
            self._etag = await replace_if_match(self._table, entity, str(current["_etag"]))
            return True
        except ConcurrencyError:
            return False  # another run claimed it between our read and write

    async def release(self) -> None:
        if self._etag is None:
            return
        entity = {"PartitionKey": "lease", "RowKey": self._name, "Owner": "", "Until": ""}
        with contextlib.suppress(ConcurrencyError, NotFoundError):  # lapsed and taken: theirs now
            await replace_if_match(self._table, entity, self._etag)
        self._etag = None


def _key_safe(value: str) -> bool:
    """Table keys may not hold / \\ # ? or control characters; such an id cannot be one of ours."""
    return 0 < len(value) <= 255 and not any(c in value for c in "/\\#?") and value.isprintable()


class MailboxScope:
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
