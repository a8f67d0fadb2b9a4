"""The scheduled runs: subscription renewal, the reconciliation sweep (both sides), polling of X3 mailboxes.
I/O side.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.core import (
    MAILBOXES_TABLE,
    SUBSCRIPTIONS_TABLE,
    Storage,
    get_entity,
    upsert,
)
from sync_core.adapters.storage.decisions import DecisionLog
from sync_core.adapters.storage.replays import ReplayGuard
from sync_core.adapters.storage.subscriptions import RunLease, SubscriptionStore
from sync_core.clock import Clock
from sync_core.domain.messages import CrmChange, MailboxResync, encode
from sync_core.domain.policy import Policy
from sync_core.engine.subscription_plan import Limits
from sync_core.errors import NotFoundError, SyncError
from sync_core.ports.crm import CrmConnector
from sync_core.service.reconcile import SWEEP_REASON
from sync_core.service.subscription_manager import RenewalReport, SubscriptionManager

log = logging.getLogger("sync_core.sweeps")

SWEEP_LEASE = timedelta(minutes=20)
MAX_SPREAD_SECONDS = 600  # a sweep's resyncs are spread over up to 10 minutes (0.1 s per mailbox)
CRM_PAGES_PER_RUN = 50
POLL_REASON = "poll: Graph refused a subscription (X3)"


def enabled_mailboxes(policy: Policy) -> list[str]:
    """Every mailbox of every enabled sync user (S1), each once."""
    seen: dict[str, str] = {}
    for user in policy.sync_users:
        if user.enabled:
            for mb in user.all_mailboxes:
                seen.setdefault(mb.lower(), mb)
    return list(seen.values())


def sweep_delays(mailboxes: Sequence[str], rng: random.Random) -> list[tuple[str, int]]:
    """(mailbox, seconds before its resync becomes visible): spread so a sweep never bursts. Pure."""
    spread = min(MAX_SPREAD_SECONDS, len(mailboxes) // 10)
    return [(mb, int(rng.random() * (spread + 1))) for mb in mailboxes]


class Runtime(Protocol):
    """What the scheduled runs need of the composition root (`bootstrap.Container` is one)."""

    @property
    def storage(self) -> Storage: ...
    @property
    def policy(self) -> Policy: ...
    @property
    def crm(self) -> CrmConnector: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def subscriptions(self) -> SubscriptionStore: ...
    @property
    def decisions(self) -> DecisionLog: ...
    @property
    def replays(self) -> ReplayGuard: ...
    def subscription_manager(self, *, lease: bool = False) -> SubscriptionManager: ...


# -- runs ---------------------------------------------------------------------------------------------


async def run_renewals(c: Runtime, limits: Limits | None = None) -> RenewalReport:
    """The renewal timer: subscriptions for enabled mailboxes, renewed within the rate budget."""
    m = c.subscription_manager(lease=True)
    return await m.run(enabled_mailboxes(c.policy), limits=limits)


@dataclass
class SweepReport:
    mailboxes: int = 0
    crm_changes: int = 0
    overlapped: bool = False
    purged: int = 0  # replay records and decision-index rows past their retention (purge_expired)


async def run_sweep(c: Runtime, rng: random.Random | None = None) -> SweepReport:
    """The reconciliation timer: a delta resync of every enabled mailbox, then the CRM by its cursor."""
    clock = c.clock.now
    report = SweepReport()
    lease = RunLease(c.storage.table(SUBSCRIPTIONS_TABLE), "sweep")
    if not await lease.acquire(clock(), SWEEP_LEASE):
        report.overlapped = True
        return report
    try:
        now = clock()
        for mailbox, delay in sweep_delays(enabled_mailboxes(c.policy), rng or random.Random()):
            await c.storage.enqueue(
                encode(_resync(mailbox, now, SWEEP_REASON)), visibility_timeout=delay or None
            )
            report.mailboxes += 1
        report.purged = await purge_expired(c, now)
        crm = CrmSweep(c.crm, c.storage.table(MAILBOXES_TABLE), c.storage.enqueue, clock)
        report.crm_changes = await crm.run()
    finally:
        await lease.release()
    log.info(
        "sweep: %d mailbox resyncs, %d CRM changes enqueued, %d expired rows purged",
        report.mailboxes,
        report.crm_changes,
        report.purged,
    )
    return report


async def purge_expired(c: Runtime, now: datetime) -> int:
    """Housekeeping under the sweep's lease, off every request path, bounded per run (batched deletes):
    the CRM webhooks' replay records past the window (crm_replay) and the decision log's time index past
    its retention. Best effort: a failure is logged and the next hourly run catches up."""
    purged = 0
    parts: list[tuple[str, Callable[[], Awaitable[int]]]] = [
        ("CRM replay records", lambda: c.replays.purge(now)),
        ("decision index rows", lambda: c.decisions.purge_index(now)),
    ]
    for what, purge in parts:
        try:
            n = await purge()
        except SyncError as exc:
            log.warning("sweep: purging %s failed: %s", what, exc)
            continue
        if n:
            log.info("sweep: purged %d %s", n, what)
        purged += n
    return purged


async def run_polls(c: Runtime) -> int:
    """X3: mailboxes Graph refused a subscription are polled by delta on this (shorter) schedule."""
    now = c.clock.now()
    enabled = {m.lower() for m in enabled_mailboxes(c.policy)}
    polling = {r.mailbox for r in await c.subscriptions.all() if r.status == "polling"}
    due = sorted(m for m in polling if m.lower() in enabled)
    for mailbox in due:
        await c.storage.enqueue(encode(_resync(mailbox, now, POLL_REASON)))
    return len(due)


def _resync(mailbox: str, now: datetime, reason: str) -> MailboxResync:
    return MailboxResync(
        correlation_id=f"{reason.split(':')[0]}-{uuid.uuid4().hex[:16]}",
        received_at=now,
        mailbox=mailbox,
        reason=reason,
    )


class CrmSweep:
    """The CRM side of reconciliation: records changed since the stored cursor become CrmChange messages."""

    def __init__(
        self,
        crm: CrmConnector,
        table: TableClient,
        enqueue: Callable[[str], Awaitable[None]],
        clock: Callable[[], datetime],
        *,
        pages_per_run: int = CRM_PAGES_PER_RUN,
    ) -> None:
        self._crm = crm
        self._table = table
        self._enqueue = enqueue
        self._clock = clock
        self._pages = pages_per_run

    async def cursor(self) -> str | None:
        e = await get_entity(self._table, "cursor", "crm")
        return str(e.get("Cursor") or "") or None if e else None

    async def _save(self, cursor: str | None) -> None:
        entity: dict[str, Any] = {
            "PartitionKey": "cursor",
            "RowKey": "crm",
            "Cursor": cursor or "",
            "At": self._clock().astimezone(UTC).isoformat(),
        }
        await upsert(self._table, entity)

    async def run(self) -> int:
        """Enqueue up to `pages_per_run` pages of changes; the cursor is saved after each page."""
        cursor = await self.cursor()
        found = 0
        for _ in range(self._pages):
            try:
                page = await self._crm.list_changed(cursor)
            except NotFoundError:  # 410: the CRM no longer knows the cursor; sweep from the beginning
                log.warning("CRM cursor %s expired; sweeping the CRM from the beginning", cursor)
                cursor = None
                page = await self._crm.list_changed(None)
            now = self._clock()
            for record in page.records:
                await self._enqueue(encode(_crm_change(record.crm_id, "updated", record.version, now)))
            for crm_id in page.unreadable_ids:
                await self._enqueue(encode(_crm_change(crm_id, "updated", None, now)))
            for crm_id in page.deleted_ids:
                await self._enqueue(encode(_crm_change(crm_id, "deleted", None, now)))
            found += len(page.records) + len(page.deleted_ids) + len(page.unreadable_ids)
            cursor = page.cursor or cursor
            await self._save(cursor)
            if not page.more:
                break
        return found


def _crm_change(crm_id: str, change_type: str, version: str | None, now: datetime) -> CrmChange:
    return CrmChange.model_validate(
        {
            "correlation_id": f"crm-sweep-{uuid.uuid4().hex[:16]}",
            "received_at": now,
            "crm_id": crm_id,
            "change_type": change_type,
            "version": version,
        }
    )
