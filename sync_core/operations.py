"""Operating the sync: poison-queue listing and replay with reasons, explain, status and health.

I/O side, async, never prints: the CLI (`sync_core.cli`) and the admin triggers (`triggers/admin.py`)
present it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sync_core.bootstrap import Container
from sync_core.decision_log import DecisionLog
from sync_core.errors import NotFoundError, SyncError, UnprocessableError
from sync_core.failures import FailureLedger
from sync_core.mapping_store import MappingStore
from sync_core.messages import MailboxResync, decode, encode
from sync_core.policy import Policy
from sync_core.reconcile import MailboxStateStore
from sync_core.storage import CHANGES_QUEUE, DECISIONS_TABLE, POISON_QUEUE, Storage, call, get_json, query
from sync_core.subscription_manager import MAX_LIFETIME, RenewalReport, SubscriptionManager
from sync_core.subscriptions import SubscriptionRow, SubscriptionStore

log = logging.getLogger("sync_core.operations")

NO_REASON = "moved by the host after maxDequeueCount (no reason recorded)"
UNRECORDED = "Unrecorded"  # the error class shown (and filterable) for poison messages without a ledger row
MAX_SCAN = 5000  # poison messages looked at per call; the report says when there were more
PEEK_MAX = 32  # the service's limit for peek_messages
STALE_AFTER = timedelta(hours=2)
EXPIRY_MARGIN = timedelta(hours=1)
Progress = Callable[[int, int], None]  # (done, total)


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '2h', '7d' (or combined, '1h30m') as a timedelta; UnprocessableError otherwise."""
    compact = re.sub(r"\s", "", text.lower())
    if not re.fullmatch(r"(\d+[smhd])+", compact):
        raise UnprocessableError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 7d)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    return sum(
        (timedelta(**{unit[u]: int(n)}) for n, u in re.findall(r"(\d+)([smhd])", compact)), timedelta()
    )


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


# -- the poison queue ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoisonItem:
    """One poison message with the reason it failed (from the failures ledger, when one was recorded)."""

    message_id: str
    body: str
    poisoned_at: datetime | None
    kind: str  # graph_change | crm_change | mailbox_resync | unreadable
    mailbox: str
    item_id: str
    reason: str
    error_class: str
    step: str = ""
    permanent: bool | None = None
    dequeue_count: int | None = None
    attempts: int = 0
    first_failed_at: str | None = None
    last_failed_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"poisoned_at": _iso(self.poisoned_at)}


@dataclass(frozen=True)
class PoisonFilter:
    """Which poison messages an operation applies to; every given criterion must match."""

    mailbox: str | None = None
    error_class: str | None = None
    older_than: timedelta | None = None
    message_id: str | None = None

    def matches(self, item: PoisonItem, now: datetime) -> bool:
        if self.mailbox and item.mailbox.lower() != self.mailbox.lower():
            return False
        if self.error_class and item.error_class.lower() != self.error_class.lower():
            return False
        if self.message_id and item.message_id != self.message_id:
            return False
        if self.older_than is not None:
            return item.poisoned_at is not None and now - item.poisoned_at >= self.older_than
        return True


def _describe(body: str) -> tuple[str, str, str]:
    try:
        msg = decode(body)
    except UnprocessableError:
        return "unreadable", "", ""
    if msg.type == "graph_change":
        return msg.type, msg.mailbox, msg.event_id
    if msg.type == "crm_change":
        return msg.type, "", msg.crm_id
    return msg.type, msg.mailbox, ""


async def _item(message: QueueMessage, failures: FailureLedger) -> PoisonItem:
    body = str(message.content or "")
    kind, mailbox, item_id = _describe(body)
    inserted = message.inserted_on
    poisoned_at = inserted.replace(tzinfo=UTC) if inserted and inserted.tzinfo is None else inserted
    base = PoisonItem(str(message.id), body, poisoned_at, kind, mailbox, item_id, NO_REASON, UNRECORDED)
    row = await failures.for_body(body)
    if row is None:
        return base
    return replace(
        base,
        mailbox=mailbox or str(row.get("Mailbox") or ""),
        item_id=item_id or str(row.get("ItemId") or ""),
        reason=str(row.get("Error") or NO_REASON),
        error_class=str(row.get("ErrorClass") or UNRECORDED),
        step=str(row.get("Step") or ""),
        permanent=bool(row["Permanent"]) if "Permanent" in row else None,
        dequeue_count=int(row["DequeueCount"]) if row.get("DequeueCount") is not None else None,
        attempts=int(row.get("Attempts") or 0),
        first_failed_at=row.get("FirstFailedAt") or None,
        last_failed_at=row.get("LastFailedAt") or None,
    )


@dataclass
class _Scan:
    held: list[tuple[QueueMessage, PoisonItem]] = field(default_factory=list)
    chosen: list[tuple[QueueMessage, PoisonItem]] = field(default_factory=list)
    truncated: bool = False


async def _scan(
    client: QueueClient,
    failures: FailureLedger,
    flt: PoisonFilter,
    limit: int | None,
    now: datetime,
    hold: int,
) -> _Scan:
    """Receive poison messages page by page, invisible for `hold` seconds, until the queue or `limit` ends.

    peek_messages stops at 32, so a complete listing has to receive; the caller makes the rest visible again.
    """
    scan = _Scan()
    seen: set[str] = set()
    while limit is None or len(scan.chosen) < limit:
        if len(seen) >= MAX_SCAN:
            scan.truncated = True
            break
        pager = client.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=hold)
        page = await call(lambda p=pager: _collect(p), item_id=POISON_QUEUE)  # type: ignore[misc]
        fresh = [m for m in page if m.id not in seen]
        if not fresh:  # empty, or the hold lapsed and the same messages came round again
            break
        seen.update(str(m.id) for m in fresh)
        items = await asyncio.gather(*(_item(m, failures) for m in fresh))
        for message, item in zip(fresh, items, strict=True):
            if flt.matches(item, now) and (limit is None or len(scan.chosen) < limit):
                scan.chosen.append((message, item))
            else:
                scan.held.append((message, item))
    return scan


async def _collect(pager: Any) -> list[QueueMessage]:
    return [m async for m in pager]


async def _release(client: QueueClient, messages: Iterable[QueueMessage]) -> None:
    """Make received messages visible again now (else they come back by themselves when the hold lapses)."""
    for message in messages:
        try:
            await call(lambda m=message: client.update_message(m, visibility_timeout=0))  # type: ignore[misc]
        except SyncError as exc:
            log.warning("poison message %s stays hidden until its hold lapses: %s", message.id, exc)


async def list_poison(
    storage: Storage,
    failures: FailureLedger,
    *,
    mailbox: str | None = None,
    error_class: str | None = None,
    older_than: timedelta | None = None,
    message_id: str | None = None,
    limit: int | None = None,
    now: datetime | None = None,
    peek: bool = False,
) -> list[PoisonItem]:
    """Poison messages with their reasons, oldest first.

    `peek=True` has no side effect but sees at most the first 32 messages (the service's limit); otherwise
    messages are received, hidden for 30 s while read, and made visible again, so every one is seen.
    """
    now = now or datetime.now(UTC)
    flt = PoisonFilter(mailbox, error_class, older_than, message_id)
    client = storage.queue(POISON_QUEUE)
    if peek:
        page = await call(lambda: client.peek_messages(max_messages=PEEK_MAX), item_id=POISON_QUEUE)
        items = [i for i in await asyncio.gather(*(_item(m, failures) for m in page)) if flt.matches(i, now)]
        return items[:limit] if limit is not None else items
    scan = await _scan(client, failures, flt, limit, now, hold=30)
    await _release(client, [m for m, _ in scan.held + scan.chosen])
    return sorted((i for _, i in scan.chosen), key=lambda i: i.poisoned_at or now)


@dataclass
class ReplayReport:
    dry_run: bool
    scanned: int = 0
    chosen: list[PoisonItem] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "scanned": self.scanned,
            "chosen": [i.to_dict() for i in self.chosen],
            "moved": self.moved,
            "failed": self.failed,
            "truncated": self.truncated,
        }


async def replay(
    storage: Storage,
    failures: FailureLedger,
    *,
    mailbox: str | None = None,
    error_class: str | None = None,
    older_than: timedelta | None = None,
    message_id: str | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    now: datetime | None = None,
    hold_seconds: int = 300,
    on_progress: Progress | None = None,
) -> ReplayReport:
    """Move the chosen poison messages back to `sync-changes`: send first, then delete.

    A crash between the two leaves the message in both queues (the poison copy reappears when its hold
    lapses), never in neither; processing is idempotent, so the duplicate is harmless.
    """
    now = now or datetime.now(UTC)
    flt = PoisonFilter(mailbox, error_class, older_than, message_id)
    client = storage.queue(POISON_QUEUE)
    scan = await _scan(client, failures, flt, limit, now, hold=hold_seconds)
    report = ReplayReport(
        dry_run, len(scan.held) + len(scan.chosen), [i for _, i in scan.chosen], [], {}, scan.truncated
    )
    await _release(client, [m for m, _ in scan.held + (scan.chosen if dry_run else [])])
    if dry_run:
        return report
    for done, (message, item) in enumerate(scan.chosen, start=1):
        try:
            await storage.enqueue(item.body, queue=CHANGES_QUEUE)
        except SyncError as exc:
            report.failed[item.message_id] = f"not sent to {CHANGES_QUEUE}, left in poison: {exc}"
            await _release(client, [message])
        else:
            try:
                await call(lambda m=message: client.delete_message(m), item_id=item.message_id)  # type: ignore[misc]
                report.moved.append(item.message_id)
            except SyncError as exc:
                report.failed[item.message_id] = f"sent, but still in poison (a harmless duplicate): {exc}"
        if on_progress:
            on_progress(done, len(scan.chosen))
    log.info("replayed %d poison messages (%d failed)", len(report.moved), len(report.failed))
    return report


# -- explain ---------------------------------------------------------------------------------------


async def explain(
    decisions: DecisionLog, mappings: MappingStore, item_id: str, *, mailbox: str | None = None
) -> list[dict[str, Any]]:
    """Every decision recorded about a Graph event id or a CRM id, and about the same meeting's other ids.

    Newest first. Both sides are tried for `item_id`; the mapping (found from the CRM id, from a decision's
    meeting key, or from `mailbox` + event id) leads to the other side's ids.
    """
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    asked: set[tuple[str, str]] = set()

    async def read(side: str, ident: str) -> None:
        if (side, ident) in asked:
            return
        asked.add((side, ident))
        for d in await decisions.for_item(side, ident):
            found[(d["side"], d["item_id"], d["at"], d["rule"], d["correlation_id"])] = d

    await read("m365", item_id)
    await read("crm", item_id)
    keys = {d["meeting_key"] for d in found.values() if d["meeting_key"]}
    keys.add(await mappings.find_by_crm(item_id) or "")
    if mailbox:
        keys.add(await mappings.find_by_graph(mailbox, item_id) or "")
    for key in sorted(k for k in keys if k):
        mapping = await mappings.get(key)
        if mapping is None:
            continue
        if mapping.crm_id:
            await read("crm", mapping.crm_id)
        for copy in mapping.copies:
            await read("m365", copy.event_id)
    return sorted(found.values(), key=lambda d: str(d["at"]), reverse=True)


async def recent_decisions(storage: Storage, *, since: datetime, limit: int = 25) -> list[dict[str, Any]]:
    """The newest decisions since `since`, across all items (a bounded scan: at most 500 rows are read)."""
    rows: list[dict[str, Any]] = []
    table = storage.table(DECISIONS_TABLE)
    async for e in query(table, "At ge @since", since=since.astimezone(UTC).isoformat()):
        rows.append(
            {
                "at": e.get("At"),
                "side": e.get("Side"),
                "item_id": e.get("ItemId"),
                "meeting_key": e.get("MeetingKey"),
                "rule": e.get("Rule"),
                "reason": e.get("Reason"),
                "outcome": e.get("Outcome"),
                "actions": get_json(e, "Actions"),
            }
        )
        if len(rows) >= 500:
            break
    return sorted(rows, key=lambda d: str(d["at"]), reverse=True)[:limit]


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
    """Per sync mailbox: last confirmed in sync and its subscription; the queue and poison depths."""
    mailboxes = sync_mailboxes(policy)
    rows = await subscriptions.all()
    states = await asyncio.gather(*(mailbox_states.get(mb) for mb, _ in mailboxes))
    out = []
    for (mb, user), state in zip(mailboxes, states, strict=True):
        sub = _best([r for r in rows if r.mailbox.lower() == mb.lower()])
        confirmed = state.last_confirmed
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
    depth, poison = await asyncio.gather(
        storage.queue_depth(CHANGES_QUEUE), storage.queue_depth(POISON_QUEUE)
    )
    return StatusReport(now, out, depth, poison)


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


# -- subscriptions and backfill (for the CLI) ------------------------------------------------------


class _MailboxScope(SubscriptionStore):
    """The subscription store seen through one mailbox, so the manager's renewal touches only it."""

    def __init__(self, inner: SubscriptionStore, mailbox: str | None) -> None:
        self._inner = inner
        self._mailbox = mailbox

    async def all(self) -> list[SubscriptionRow]:
        rows = await self._inner.all()
        return [r for r in rows if self._mailbox is None or r.mailbox.lower() == self._mailbox.lower()]

    async def save(self, row: SubscriptionRow) -> None:
        await self._inner.save(row)


async def renew_subscriptions(
    c: Container, clock: Callable[[], datetime], mailbox: str | None = None
) -> RenewalReport:
    """Renew every active subscription now (of one mailbox, or all); re-create those Graph lost."""
    store = _MailboxScope(c.subscriptions, mailbox)
    manager = SubscriptionManager(graph=c.graph, store=store, settings=c.settings, clock=clock)
    return await manager.renew_due(margin=MAX_LIFETIME)


async def recreate_subscription(c: Container, clock: Callable[[], datetime], mailbox: str) -> SubscriptionRow:
    """Delete the mailbox's subscriptions, create a fresh one, and resync the mailbox for the gap between."""
    for row in await c.subscriptions.for_mailbox(mailbox):
        if row.status != "active":
            continue
        with contextlib.suppress(NotFoundError):  # already gone on Graph's side
            await c.graph.delete_subscription(row.subscription_id, row.mailbox)
        await c.subscriptions.save(replace(row, status="removed"))
    manager = SubscriptionManager(graph=c.graph, store=c.subscriptions, settings=c.settings, clock=clock)
    created = await manager.ensure(mailbox)
    await backfill(c.storage, mailbox, clock(), full=False, reason="subscription re-created by an operator")
    return created


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


class ReplayRequest(BaseModel):
    """The JSON body of `POST /api/ops/replay`: the CLI's filters, `dry_run` and `limit`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mailbox: str | None = None
    error_class: str | None = None
    older_than: str | None = None
    message_id: str | None = None
    dry_run: bool = False
    limit: int | None = Field(default=None, ge=1)

    @classmethod
    def parse(cls, body: bytes) -> ReplayRequest:
        """Validate a request body (empty means no filter); UnprocessableError says what is wrong."""
        try:
            request = cls.model_validate_json(body or b"{}")
        except ValidationError as exc:
            errors = exc.errors()[:5]
            reason = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors)
            raise UnprocessableError(f"invalid replay request: {reason}") from exc
        if request.older_than is not None:
            parse_duration(request.older_than)
        return request

    def options(self) -> dict[str, Any]:
        """Keyword arguments for `replay`."""
        return {
            "mailbox": self.mailbox,
            "error_class": self.error_class,
            "older_than": parse_duration(self.older_than) if self.older_than else None,
            "message_id": self.message_id,
            "dry_run": self.dry_run,
            "limit": self.limit,
        }
