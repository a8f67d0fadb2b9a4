"""Keeps one Graph subscription alive per enabled sync mailbox (S1): create, renew before expiry, re-create,
delete when a mailbox is disabled, and fall back to delta polling where Graph refuses one (X3).

I/O side. What to write and when is `subscription_plan.plan` (pure); this module carries the plan out,
one write at its planned time, under a run lease so runs never overlap. Each write is saved as soon as it
is made, so a run that crashes midway leaves rows the next run plans from; its lease lapses on its own.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from sync_core.errors import NotFoundError, PermanentError, SyncError
from sync_core.graph import CreatedSubscription
from sync_core.messages import MailboxResync, encode
from sync_core.settings import Settings
from sync_core.subscription_plan import (
    MAX_LIFETIME,
    RENEW_MARGIN,
    REQUESTED_LIFETIME,
    Limits,
    Step,
    plan,
    purgeable,
)
from sync_core.subscriptions import SubscriptionRow, new_client_state, polling_id

log = logging.getLogger("sync_core.subscriptions")

__all__ = ["MAX_LIFETIME", "RENEW_MARGIN", "REQUESTED_LIFETIME", "RenewalReport", "SubscriptionManager"]

LEASE_SLACK = timedelta(minutes=2)
BACKFILL_REASON = "backfill: mailbox enabled"


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


class SubscriptionRows(Protocol):
    async def all(self) -> list[SubscriptionRow]: ...
    async def save(self, row: SubscriptionRow) -> None: ...
    async def delete(self, row: SubscriptionRow) -> None: ...


class Lease(Protocol):
    """Keeps runs from overlapping (subscriptions.RunLease: an ETag-claimed row that lapses on its own)."""

    async def acquire(self, now: datetime, hold: timedelta) -> bool: ...
    async def release(self) -> None: ...


class MailboxStatuses(Protocol):
    async def set_status(self, mailbox: str, status: str, reason: str = "") -> None: ...


@dataclass
class RenewalReport:
    renewed: int = 0
    recreated: int = 0
    failed: int = 0
    created: int = 0
    deleted: int = 0
    polling: int = 0  # X3: mailboxes Graph refused a subscription, polled by delta instead
    deferred: int = 0
    purged: int = 0  # history rows (removed, deleted) long past their expiry, deleted from the table
    overlapped: bool = False  # another run held the lease: this one did nothing
    errors: list[str] = field(default_factory=list)


class SubscriptionManager:
    def __init__(
        self,
        *,
        graph: SubscriptionGraph,
        store: SubscriptionRows,
        settings: Settings,
        clock: Callable[[], datetime],
        limits: Limits | None = None,
        lease: Lease | None = None,
        enqueue: Callable[[str], Awaitable[None]],
        statuses: MailboxStatuses | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._graph = graph
        self._store = store
        self._settings = settings
        self._clock = clock
        self._limits = limits or Limits()
        self._lease = lease
        self._statuses = statuses
        self._enqueue = enqueue
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def _rows(self, mailbox: str) -> list[SubscriptionRow]:
        return [r for r in await self._store.all() if r.mailbox.lower() == mailbox.lower()]

    async def ensure(self, mailbox: str) -> SubscriptionRow:
        """The mailbox's live subscription, created if it has none Graph still knows (a polling placeholder
        if Graph refuses one, X3). A subscription made here is followed by a resync, as in the timer's run:
        the full backfill for a mailbox that never had one (I5), the gap since the lapse otherwise."""
        now = self._clock()
        rows = await self._rows(mailbox)
        for row in rows:
            if row.status != "active":
                continue
            if row.expires_at > now and await self._graph.subscription_exists(row.subscription_id, mailbox):
                return row
            await self._store.save(row.retired("removed", now))
        polling = next((r for r in rows if r.status == "polling"), None)
        created = await self._create(mailbox, now + self._limits.lifetime, polling)
        if created.status != "active":
            return created  # X3: polled by delta instead, on the polling schedule
        if not rows:
            await self.resync(mailbox, BACKFILL_REASON, full=True)  # I5: a mailbox never subscribed
        else:
            await self.resync(mailbox, f"no live subscription for {mailbox}; re-created")
        return created

    async def _create(
        self, mailbox: str, expires_at: datetime, polling: SubscriptionRow | None = None
    ) -> SubscriptionRow:
        """Subscribe; `polling` is the mailbox's X3 placeholder, retired once Graph agrees."""
        now = self._clock()
        client_state = new_client_state()
        try:
            created = await self._graph.create_subscription(
                mailbox,
                notification_url=self._settings.notification_url("graph/notifications"),
                lifecycle_url=self._settings.notification_url("graph/lifecycle"),
                client_state=client_state,
                expires_at=min(expires_at, now + REQUESTED_LIFETIME),
            )
        except PermanentError as exc:
            return await self._fall_back_to_polling(mailbox, exc)
        row = SubscriptionRow(
            subscription_id=created.subscription_id,
            mailbox=mailbox,
            client_state=client_state,
            expires_at=created.expires_at,
            last_renewal=now,
        )
        await self._store.save(row)
        if polling is not None:
            await self._store.save(polling.retired("deleted", now, "subscribed again"))
            if self._statuses is not None:
                await self._statuses.set_status(mailbox, "subscribed")
        log.info(
            "subscribed to %s (%s, expires %s)", mailbox, row.subscription_id, row.expires_at.isoformat()
        )
        return row

    async def _fall_back_to_polling(self, mailbox: str, exc: SyncError) -> SubscriptionRow:
        """X3: Graph refuses this mailbox a subscription; the sweep polls it by delta, and status says so."""
        now = self._clock()
        row = SubscriptionRow(
            subscription_id=polling_id(mailbox),
            mailbox=mailbox,
            client_state="",
            expires_at=now,
            status="polling",
            next_attempt=now + self._limits.retry_refused,
            reason=str(exc)[:1000],
        )
        await self._store.save(row)
        if self._statuses is not None:
            await self._statuses.set_status(mailbox, "polling", f"Graph refused a subscription: {exc}")
        log.warning("X3: Graph refused a subscription for %s (%s); polling it by delta instead", mailbox, exc)
        return row

    async def recreate(self, row: SubscriptionRow, reason: str) -> SubscriptionRow:
        """Replace a subscription Graph no longer has, then resync the mailbox over the gap (facts §5)."""
        await self._store.save(row.retired("removed", self._clock()))
        created = await self._create(row.mailbox, self._clock() + self._limits.lifetime)
        await self.resync(row.mailbox, reason)
        return created

    async def resync(self, mailbox: str, reason: str, *, full: bool = False) -> None:
        message = MailboxResync(
            correlation_id=f"sub-{uuid.uuid4().hex[:16]}",
            received_at=self._clock(),
            mailbox=mailbox,
            reason=reason[:200],
            full=full,
        )
        await self._enqueue(encode(message))

    # -- the timer's run -------------------------------------------------------------------------

    async def renew_due(self, *, margin: timedelta = RENEW_MARGIN) -> RenewalReport:
        """Renew every active subscription expiring within `margin`; re-create those Graph no longer has."""
        return await self.run(None, limits=replace(self._limits, margin=margin))

    async def run(self, enabled: Iterable[str] | None, *, limits: Limits | None = None) -> RenewalReport:
        """One timer run: plan, then make each write at its time; never overlaps another run (lease)."""
        limits = limits or self._limits
        report = RenewalReport()
        start = self._clock()
        if self._lease is not None and not await self._lease.acquire(start, limits.run_time + LEASE_SLACK):
            report.overlapped = True
            log.info("subscription run skipped: another run holds the lease")
            return report
        try:
            rows = await self._store.all()
            by_id = {r.subscription_id: r for r in rows}
            the_plan = plan(rows, enabled, start, limits, self._rng)
            report.deferred = the_plan.deferred
            deadline = start + limits.run_time
            for step in the_plan.steps:
                wait = (step.at - self._clock()).total_seconds()
                if wait > 0:
                    await self._sleep(wait)
                if self._clock() > deadline + limits.spacing:
                    report.deferred += 1
                    continue
                await self._execute(step, by_id.get(step.subscription_id or ""), report)
            for old in purgeable(rows, start, limits) if enabled is not None else []:  # the timer's run
                await self._store.delete(old)
                report.purged += 1
        finally:
            if self._lease is not None:
                await self._lease.release()
        return report

    async def _execute(self, step: Step, row: SubscriptionRow | None, report: RenewalReport) -> None:
        """One planned write, on the row as the plan read it (rows are saved as each write is made)."""
        try:
            if step.kind == "renew" and row is not None:
                await self._renew(row, step, report)
            elif step.kind == "create":
                if row is not None and row.status == "active":
                    await self._store.save(row.retired("removed", self._clock()))
                polling = row if row is not None and row.status == "polling" else None
                created = await self._create(step.mailbox, step.expires_at or self._clock(), polling)
                if created.status == "polling":
                    report.polling += 1
                elif row is not None:
                    report.recreated += 1
                    await self.resync(step.mailbox, f"subscription {row.subscription_id} lapsed; re-created")
                else:
                    report.created += 1
                    await self.resync(step.mailbox, BACKFILL_REASON, full=True)  # I5
            elif step.kind == "delete" and row is not None:
                await self._graph.delete_subscription(row.subscription_id, row.mailbox)
                await self._store.save(row.retired("deleted", self._clock()))
                report.deleted += 1
            elif step.kind == "forget" and row is not None:
                await self._store.save(row.retired("deleted", self._clock(), "mailbox disabled"))
        except SyncError as exc:
            log.error("%s of %s for %s failed: %s", step.kind, step.subscription_id, step.mailbox, exc)
            report.failed += 1
            report.errors.append(f"{step.kind} {step.mailbox}: {exc}")

    async def _renew(self, row: SubscriptionRow, step: Step, report: RenewalReport) -> None:
        now = self._clock()
        try:
            if row.expires_at <= now:
                raise NotFoundError("expired", side="graph", item_id=row.subscription_id)
            expires = await self._graph.renew_subscription(
                row.subscription_id, row.mailbox, step.expires_at or now + self._limits.lifetime
            )
        except NotFoundError:
            await self.recreate(row, f"subscription {row.subscription_id} was gone at renewal; re-created")
            report.recreated += 1
            return
        await self._store.save(replace(row, expires_at=expires, last_renewal=now))
        report.renewed += 1
