"""Status, health and explain: per-mailbox freshness and subscriptions, queue depths, the decision log.

I/O side, async, never prints. `status` also hands its numbers to the telemetry gauges.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sync_core.adapters import telemetry
from sync_core.adapters.storage.core import CHANGES_QUEUE, DECISIONS_TABLE, POISON_QUEUE, Storage
from sync_core.adapters.storage.decisions import DecisionLog
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.adapters.storage.subscriptions import SubscriptionStore
from sync_core.domain.policy import Policy
from sync_core.domain.subscription import SubscriptionRow
from sync_core.errors import SyncError
from sync_core.service.reconcile import MailboxStateStore

STALE_AFTER = timedelta(hours=2)
EXPIRY_MARGIN = timedelta(hours=1)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


# -- explain ---------------------------------------------------------------------------------------


async def explain(
    decisions: DecisionLog,
    mappings: MappingStore,
    item_id: str,
    *,
    mailbox: str | None = None,
    mailboxes: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Every decision recorded about a Graph event id or a CRM id, and about the same meeting's other ids.

    Newest first. The decisions about a mapped meeting are kept beside its row (issue 20), so the item's
    meeting is found first: from the CRM id, from `mailbox` + event id (or, with no mailbox given, from each
    of `mailboxes`, the sync mailboxes), or from a decision's meeting key; then its row leads to the other
    side's ids. Decisions about no mapped meeting, and every decision of the earlier layout, are read by item.
    """
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    asked: set[tuple[str, str]] = set()

    def keep(rows: list[dict[str, Any]]) -> None:
        for d in rows:
            found[(d["side"], d["item_id"], d["at"], d["rule"], d["correlation_id"])] = d

    async def read(side: str, ident: str) -> None:
        if (side, ident) not in asked:
            asked.add((side, ident))
            keep(await decisions.for_item(side, ident))

    await read("m365", item_id)
    await read("crm", item_id)
    keys = {d["meeting_key"] for d in found.values() if d["meeting_key"]}
    keys.add(await mappings.find_by_crm(item_id) or "")
    for mb in [mailbox] if mailbox else mailboxes:
        if not mailbox and any(keys):
            break  # the item's meeting is known: no need to ask every sync mailbox (2 reads each)
        keys.add(await mappings.find_by_graph(mb, item_id) or "")
    for key in sorted(k for k in keys if k):
        keep(await mappings.decisions(key))
        mapping = await mappings.get(key)
        if mapping is None:
            continue
        if mapping.crm_id:
            await read("crm", mapping.crm_id)
        for copy in mapping.copies:
            await read("m365", copy.event_id)
    return sorted(found.values(), key=lambda d: str(d["at"]), reverse=True)


async def recent_decisions(
    storage: Storage, *, since: datetime, now: datetime, limit: int = 25
) -> list[dict[str, Any]]:
    """The newest `limit` decisions since `since`, across all items, newest first.

    A bounded read of the decision log's time index (DecisionLog.recent): key-only queries of the hour
    partitions from `now` back, stopping at `limit` rows; never a scan of the table."""
    log = DecisionLog(storage.table(DECISIONS_TABLE))
    return await log.recent(since=since, now=now, limit=limit)


# -- status and health -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MailboxStatus:
    mailbox: str
    user: str
    last_confirmed: datetime | None
    age: timedelta | None  # since last confirmed in sync; None: never
    subscription_id: str | None
    subscription_status: str | None
    expires_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mailbox": self.mailbox,
            "user": self.user,
            "last_confirmed": _iso(self.last_confirmed),
            "age_seconds": None if self.age is None else int(self.age.total_seconds()),
            "subscription_id": self.subscription_id,
            "subscription_status": self.subscription_status,
            "expires_at": _iso(self.expires_at),
        }


@dataclass(frozen=True)
class StatusReport:
    at: datetime
    mailboxes: list[MailboxStatus]
    queue_depth: int
    poison_depth: int

    @property
    def queue_depths(self) -> dict[str, int]:
        """Messages per queue, by queue name (the queue-depth gauge's labels)."""
        return {CHANGES_QUEUE: self.queue_depth, POISON_QUEUE: self.poison_depth}

    @property
    def nearest_expiry(self) -> MailboxStatus | None:
        live = [m for m in self.mailboxes if m.expires_at is not None and m.subscription_status == "active"]
        return min(live, key=lambda m: m.expires_at or self.at, default=None)

    @property
    def stalest(self) -> MailboxStatus | None:
        return max(self.mailboxes, key=lambda m: m.age if m.age is not None else timedelta.max, default=None)

    def to_dict(self) -> dict[str, Any]:
        nearest, stalest = self.nearest_expiry, self.stalest
        return {
            "at": _iso(self.at),
            "queue_depth": self.queue_depth,
            "poison_depth": self.poison_depth,
            "nearest_subscription_expiry": nearest.to_dict() if nearest else None,
            "stalest_mailbox": stalest.to_dict() if stalest else None,
            "mailboxes": [m.to_dict() for m in self.mailboxes],
        }


def sync_mailboxes(policy: Policy) -> list[tuple[str, str]]:
    """(mailbox, user email) for every mailbox of every enabled sync user (S1)."""
    return [(mb, u.email) for u in policy.sync_users if u.enabled for mb in u.all_mailboxes]


def _best(rows: list[SubscriptionRow]) -> SubscriptionRow | None:
    order = {"active": 0, "polling": 1}
    return min(rows, key=lambda r: (order.get(r.status, 2), -r.expires_at.timestamp()), default=None)


async def status(
    storage: Storage,
    subscriptions: SubscriptionStore,
    mailbox_states: MailboxStateStore,
    policy: Policy,
    now: datetime,
) -> StatusReport:
    """Per sync mailbox: last confirmed in sync and its subscription; the queue and poison depths.

    Four Table/Queue requests at once, whatever the number of mailboxes: the subscriptions' and the
    mailboxes' partitions (one query each, paged by 1,000) and the two queue depths."""
    mailboxes = sync_mailboxes(policy)
    rows, confirmed_at, depth, poison = await asyncio.gather(
        subscriptions.all(),
        mailbox_states.last_confirmed_all(),
        storage.queue_depth(CHANGES_QUEUE),
        storage.queue_depth(POISON_QUEUE),
    )
    by_mailbox: dict[str, list[SubscriptionRow]] = {}
    for r in rows:
        by_mailbox.setdefault(r.mailbox.lower(), []).append(r)
    out = []
    for mb, user in mailboxes:
        sub = _best(by_mailbox.get(mb.lower(), []))
        confirmed = confirmed_at.get(mb.lower())
        out.append(
            MailboxStatus(
                mb,
                user,
                confirmed,
                now - confirmed if confirmed else None,
                sub.subscription_id if sub else None,
                sub.status if sub else None,
                sub.expires_at if sub else None,
            )
        )
    report = StatusReport(now, out, depth, poison)
    telemetry.publish_status(report)  # the freshness, expiry and queue-depth gauges
    return report


def problems(
    report: StatusReport, *, stale_after: timedelta = STALE_AFTER, expiry_margin: timedelta = EXPIRY_MARGIN
) -> list[str]:
    """Why the sync is unhealthy: subscriptions lapsed or about to, mailboxes not confirmed for too long."""
    out: list[str] = []
    for m in report.mailboxes:
        if m.subscription_status is None:
            out.append(f"{m.mailbox}: no subscription")
        elif m.subscription_status == "removed":
            out.append(f"{m.mailbox}: subscription {m.subscription_id} was removed and not re-created")
        elif m.subscription_status == "active" and m.expires_at is not None:
            left = m.expires_at - report.at
            if left <= timedelta(0):
                out.append(f"{m.mailbox}: subscription {m.subscription_id} expired at {_iso(m.expires_at)}")
            elif left <= expiry_margin:
                seconds = int(left.total_seconds())
                out.append(f"{m.mailbox}: subscription {m.subscription_id} expires in {seconds} s")
        if m.age is None:
            out.append(f"{m.mailbox}: never confirmed in sync")
        elif m.age > stale_after:
            out.append(f"{m.mailbox}: last confirmed in sync {int(m.age.total_seconds())} s ago")
    return out


async def health(
    storage: Storage,
    subscriptions: SubscriptionStore,
    mailbox_states: MailboxStateStore,
    policy: Policy,
    now: datetime,
    *,
    stale_after: timedelta = STALE_AFTER,
    expiry_margin: timedelta = EXPIRY_MARGIN,
    storage_timeout: float = 10.0,
) -> tuple[bool, dict[str, Any]]:
    """(ok, body): not ok when storage is unreachable, a subscription lapses within `expiry_margin`, or a
    mailbox has not been confirmed in sync for `stale_after`. The body says why."""
    try:
        async with asyncio.timeout(storage_timeout):
            report = await status(storage, subscriptions, mailbox_states, policy, now)
    except (SyncError, TimeoutError) as exc:
        reason = f"storage unreachable: {exc or f'no answer within {storage_timeout} s'}"
        return False, {"ok": False, "storage": "unreachable", "reasons": [reason], "at": _iso(now)}
    reasons = problems(report, stale_after=stale_after, expiry_margin=expiry_margin)
    body = {"ok": not reasons, "storage": "reachable", "reasons": reasons} | report.to_dict()
    return not reasons, body


def health_summary(body: dict[str, Any]) -> dict[str, Any]:
    """What `GET /api/health` tells a function-key caller: the verdict and counts, no mailbox, subscription
    id or reason text (those are for operators: `ops/status`, admin level, and the CLI)."""
    return {
        "ok": body["ok"],
        "storage": body["storage"],
        "at": body.get("at"),
        "mailboxes": len(body.get("mailboxes", [])),
        "problems": len(body.get("reasons", [])),
        "queue_depth": body.get("queue_depth"),
        "poison_depth": body.get("poison_depth"),
    }
