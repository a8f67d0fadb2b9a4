"""Front door for Microsoft Graph change notifications: validate, check clientState, enqueue, 202.
I/O side.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sync_core.adapters import telemetry
from sync_core.domain import identity
from sync_core.domain.messages import GraphChange, MailboxResync, SubscriptionLifecycle, encode
from sync_core.domain.subscription import SubscriptionRow

log = logging.getLogger("sync_core.ingress")

MAX_NOTIFICATION_BODY = 1024 * 1024  # Graph batches are small; anything larger is not Graph
NOTIFICATION_TOUCH_INTERVAL = timedelta(seconds=60)  # how often a mailbox's last notification is recorded


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ResourceData(_Lenient):
    odata_type: str | None = Field(None, alias="@odata.type")
    odata_id: str | None = Field(None, alias="@odata.id")
    odata_etag: str | None = Field(None, alias="@odata.etag")
    id: str = Field(min_length=1, max_length=1024)

    @field_validator("id")
    @classmethod
    def _usable(cls, value: str) -> str:
        why = identity.unsafe_id(value)
        if why is not None:
            raise ValueError(why)
        return value


class Notification(_Lenient):
    subscription_id: str = Field(alias="subscriptionId", min_length=1, max_length=255)
    client_state: str | None = Field(None, alias="clientState", max_length=255)
    change_type: Literal["created", "updated", "deleted"] | None = Field(None, alias="changeType")
    resource: str | None = Field(None, max_length=2048)
    resource_data: ResourceData | None = Field(None, alias="resourceData")
    lifecycle_event: Literal["reauthorizationRequired", "subscriptionRemoved", "missed"] | None = Field(
        None, alias="lifecycleEvent"
    )
    tenant_id: str | None = Field(None, alias="tenantId")
    subscription_expiration: datetime | None = Field(None, alias="subscriptionExpirationDateTime")


class NotificationCollection(_Lenient):
    value: list[Notification] = Field(min_length=1, max_length=1000)


@dataclass(frozen=True)
class Reply:
    status: int
    body: str = ""
    content_type: str = "application/json"


@dataclass(frozen=True)
class Accepted:
    """A notification that passed validation, with the subscription row it belongs to."""

    notification: Notification
    subscription: SubscriptionRow


LookupSubscription = Callable[[str], Awaitable[SubscriptionRow | None]]
Enqueue = Callable[[str], Awaitable[None]]
Touch = Callable[[str, datetime], Awaitable[None]]  # record a mailbox's last notification (X2)


def validation_reply(params: Mapping[str, str]) -> Reply | None:
    """Graph's handshake: 200, text/plain, the decoded token verbatim (facts §2)."""
    token = params.get("validationToken")
    if token is None:
        return None
    return Reply(200, token, "text/plain")


def parse(body: bytes) -> NotificationCollection | Reply:
    if len(body) > MAX_NOTIFICATION_BODY:
        return Reply(413, '{"error":"notification body too large"}')
    try:
        return NotificationCollection.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        reason = f"{where}: {first['msg']}"
        return Reply(400, _json_error(f"malformed notification: {reason}"))


# Graph names subscriptions by GUID; anything else is refused before any lookup.
_SUBSCRIPTION_ID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_LOGGED_SAMPLES = 3
# Graph sends a request only for subscriptions it holds for us; after this many ids that are not live
# subscriptions of ours, the rest of the request is refused without a Table read each.
MAX_UNKNOWN_LOOKUPS = 8


def _printable(value: object, limit: int = 80) -> str:
    """An untrusted value for a log line: control characters escaped, length bounded."""
    return repr(str(value)[:limit])


async def authenticate(
    collection: NotificationCollection,
    lookup: LookupSubscription,
    now: datetime,
    *,
    tenant_id: str | None = None,
) -> list[Accepted]:
    """Keep the notifications of a live subscription of ours (active, unexpired, with a secret) whose
    clientState matches that secret; each notification once per request. One log line sums up the rest."""
    out: list[Accepted] = []
    seen: set[tuple[object, ...]] = set()
    refused: dict[str, list[str]] = {}
    rows: dict[str, SubscriptionRow | None] = {}  # one lookup per subscription per request
    unknown = 0
    for n in collection.value:
        why = None
        once = (n.subscription_id, n.change_type, n.resource, n.lifecycle_event, n.client_state)
        if not _SUBSCRIPTION_ID.match(n.subscription_id):
            why = "not a subscription id"
        elif once in seen:
            why = "repeated in the request"
        elif tenant_id and n.tenant_id and n.tenant_id.lower() != tenant_id.lower():
            why = "another tenant"
        elif n.subscription_id not in rows and unknown >= MAX_UNKNOWN_LOOKUPS:
            why = "too many unknown subscriptions in one request"
        else:
            seen.add(once)
            if n.subscription_id not in rows:
                rows[n.subscription_id] = found = await lookup(n.subscription_id)
                unknown += found is None or not found.live(now)
            row = rows[n.subscription_id]
            if row is None or not row.live(now):
                why = "no live subscription of ours"
            elif not row.admits(n.client_state, now):
                why = "wrong clientState (possible forgery)"
            else:
                out.append(Accepted(n, row))
        if why is not None:
            refused.setdefault(why, []).append(n.subscription_id)
    if refused:
        log.warning(
            "discarded %d of %d notifications: %s",
            sum(len(ids) for ids in refused.values()),
            len(collection.value),
            "; ".join(
                f"{why}: {len(ids)} (e.g. {', '.join(_printable(i) for i in ids[:_LOGGED_SAMPLES])})"
                for why, ids in refused.items()
            ),
        )
    return out


def to_messages(accepted: list[Accepted], now: datetime) -> list[str]:
    """One queue message per change notification. Lifecycle events (facts §5): `missed` becomes a full
    mailbox resync; `reauthorizationRequired` and `subscriptionRemoved` become subscription work."""
    out: list[str] = []
    for a in accepted:
        n, row = a.notification, a.subscription
        correlation_id = telemetry.new_correlation_id()  # on this change's log records from here on
        if n.lifecycle_event == "missed":
            out.append(
                encode(
                    MailboxResync(
                        correlation_id=correlation_id,
                        received_at=now,
                        mailbox=row.mailbox,
                        reason=f"lifecycle:missed:{row.subscription_id}",
                        full=True,
                    )
                )
            )
            continue
        if n.lifecycle_event is not None:
            out.append(
                encode(
                    SubscriptionLifecycle(
                        correlation_id=correlation_id,
                        received_at=now,
                        mailbox=row.mailbox,
                        subscription_id=row.subscription_id,
                        event=n.lifecycle_event,
                    )
                )
            )
            continue
        if n.resource_data is None or n.change_type is None:
            log.warning(
                "discarded notification without resourceData/changeType (subscription %s)",
                row.subscription_id,
            )
            continue
        out.append(
            encode(
                GraphChange(
                    correlation_id=correlation_id,
                    received_at=now,
                    mailbox=row.mailbox,
                    event_id=n.resource_data.id,
                    change_type=n.change_type,
                    subscription_id=row.subscription_id,
                )
            )
        )
    return out


LIVE_RATE_PER_S = 2.0  # a mailbox's notifications per second that stay on the live queue...
LIVE_BURST = 10  # ...after a burst of this many (per process)
_REMEMBERED_MAILBOXES = 50_000


@dataclass
class BurstGate:
    """Per mailbox and process: True while its notifications stay within LIVE_BURST at LIVE_RATE_PER_S."""

    rate: float = LIVE_RATE_PER_S
    burst: int = LIVE_BURST
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def live(self, mailbox: str) -> bool:
        now = self.clock()
        key = mailbox.lower()
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        ok = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if ok else tokens, now)
        if len(self._buckets) > _REMEMBERED_MAILBOXES:  # mailboxes idle long enough are full again anyway
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < self.burst / self.rate}
        return ok


def _change_sources(accepted: list[Accepted]) -> list[str | None]:
    """For each message `to_messages` makes, in its order: the mailbox of a change, None for lifecycle
    work (the same filter as `to_messages`)."""
    out: list[str | None] = []
    for a in accepted:
        n = a.notification
        if n.lifecycle_event is not None:
            out.append(None)
        elif n.resource_data is not None and n.change_type is not None:
            out.append(a.subscription.mailbox)
    return out


_GATE = BurstGate()  # per process: each instance sends a bursting mailbox's excess to the bulk queue


class NotificationClock:
    """Records when each mailbox last heard from Graph (X2), at most once a minute per mailbox and process,
    so the front door stays fast. A failed write is logged, never fails the request: it only risks a
    needless X2 subscription check."""

    def __init__(self, touch: Touch, interval: timedelta = NOTIFICATION_TOUCH_INTERVAL) -> None:
        self._touch = touch
        self._interval = interval
        self._last: dict[str, datetime] = {}

    async def heard(self, accepted: list[Accepted], now: datetime) -> None:
        for mailbox in {a.subscription.mailbox for a in accepted if a.notification.lifecycle_event is None}:
            last = self._last.get(mailbox.lower())
            if last is not None and now - last < self._interval:
                continue
            self._last[mailbox.lower()] = now
            if len(self._last) > 100_000:
                self._last.clear()
            try:
                await self._touch(mailbox, now)
            except Exception as exc:  # never fail the 202 for a bookkeeping write
                log.warning("could not record the last notification of %s: %s", mailbox, exc)


async def handle_notifications(
    body: bytes,
    lookup: LookupSubscription,
    enqueue: Enqueue,
    now: datetime,
    *,
    heard: NotificationClock | None = None,
    tenant_id: str | None = None,
    bulk: Enqueue | None = None,
    gate: BurstGate | None = None,
) -> Reply:
    """A notification POST (the handshake, `validation_reply`, comes first and needs no settings): validate,
    authenticate, enqueue, then 202. With `bulk`, a mailbox's changes past its burst (`gate`, one per
    process by default) go to the bulk queue (service/fairness.py); lifecycle work stays live."""
    parsed = parse(body)
    if isinstance(parsed, Reply):
        return parsed
    accepted = await authenticate(parsed, lookup, now, tenant_id=tenant_id)
    messages = to_messages(accepted, now)
    sends: list[Awaitable[None]] = []
    if bulk is not None:
        gate = gate or _GATE
        for a, message in zip(_change_sources(accepted), messages, strict=True):
            live = a is None or gate.live(a)
            sends.append(enqueue(message) if live else bulk(message))
    else:
        sends = [enqueue(m) for m in messages]
    telemetry.notifications_received(
        "graph", accepted=len(messages), discarded=len(parsed.value) - len(messages)
    )
    bookkeeping = [heard.heard(accepted, now)] if heard is not None and accepted else []
    await asyncio.gather(*sends, *bookkeeping)
    return Reply(202, f'{{"accepted":{len(messages)},"discarded":{len(parsed.value) - len(accepted)}}}')


def _json_error(reason: str) -> str:
    return json.dumps({"error": reason})
