"""The poison queue: listing with the failures ledger's reasons, filters, and send-first replay.

I/O side, async, never prints: the CLI (`sync_core.ops.cli_poison`) and `triggers/admin.py` present it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sync_core.adapters.storage.core import CHANGES_QUEUE, POISON_QUEUE, Storage, call
from sync_core.adapters.storage.failures import FailureLedger
from sync_core.domain.messages import decode
from sync_core.errors import SyncError, UnprocessableError

log = logging.getLogger("sync_core.operations")

NO_REASON = "moved by the host after maxDequeueCount (no reason recorded)"
UNRECORDED = "Unrecorded"  # the error class shown (and filterable) for poison messages without a ledger row
MAX_SCAN = 5000  # poison messages looked at per call; the report says when there were more
PEEK_MAX = 32  # the service's limit for peek_messages
Progress = Callable[[int, int], None]  # (done, total)


def parse_duration(text: str) -> timedelta:
    """'90s', '30m', '2h', '7d' (or combined, '1h30m') as a timedelta; UnprocessableError otherwise."""
    compact = re.sub(r"\s", "", text.lower())
    if not re.fullmatch(r"(\d+[smhd])+", compact):
        raise UnprocessableError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 7d)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    try:
        return sum(
            (timedelta(**{unit[u]: int(n)}) for n, u in re.findall(r"(\d+)([smhd])", compact)), timedelta()
        )
    except (OverflowError, ValueError) as exc:  # beyond what a timedelta holds (about 2.7 million years)
        raise UnprocessableError(f"duration too large: {text!r}") from exc


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
    """(kind, mailbox, item id) of a queue message's text, whatever message type it is."""
    try:
        msg = decode(body)
    except UnprocessableError:
        return "unreadable", "", ""
    item = next(
        (str(getattr(msg, k)) for k in ("event_id", "crm_id", "subscription_id") if getattr(msg, k, None)), ""
    )
    return msg.type, str(getattr(msg, "mailbox", "") or ""), item


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
    flt: PoisonFilter | None = None,
    *,
    limit: int | None = None,
    now: datetime,
    peek: bool = False,
) -> list[PoisonItem]:
    """Poison messages with their reasons, oldest first.

    `peek=True` has no side effect but sees at most the first 32 messages (the service's limit); otherwise
    messages are received, hidden for 30 s while read, and made visible again, so every one is seen.
    """
    flt = flt or PoisonFilter()
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
    flt: PoisonFilter | None = None,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    now: datetime,
    hold_seconds: int = 300,
    on_progress: Progress | None = None,
) -> ReplayReport:
    """Move the chosen poison messages back to `sync-changes`: send first, then delete.

    A crash between the two leaves the message in both queues (the poison copy reappears when its hold
    lapses), never in neither; processing is idempotent, so the duplicate is harmless.
    """
    flt = flt or PoisonFilter()
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
            await failures.reset_retries(item.body)  # before the send, so the worker never sees the old round
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
        older_than = parse_duration(self.older_than) if self.older_than else None
        return {
            "flt": PoisonFilter(self.mailbox, self.error_class, older_than, self.message_id),
            "dry_run": self.dry_run,
            "limit": self.limit,
        }
