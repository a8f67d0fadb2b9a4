"""Keeps one Graph subscription alive per enabled sync mailbox (S1): create, renew, re-create, delete,
or poll by delta where Graph refuses one (X3). I/O side.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sync_core.adapters.storage.subscriptions import new_client_state, polling_id
from sync_core.domain.messages import MailboxResync, encode
from sync_core.domain.subscription import SubscriptionRow, client_state_digest
from sync_core.engine.subscription_plan import (
    MAX_LIFETIME,
    RENEW_MARGIN,
    REQUESTED_LIFETIME,
    Limits,
    Step,
    plan,
    purgeable,
)
from sync_core.errors import (
    ConcurrencyError,
    ConflictError,
    NotFoundError,
    PermanentError,
    SyncError,
    ThrottledError,
    TransientError,
)
from sync_core.ports.subscriptions import Lease, MailboxStatuses, SubscriptionGraph, SubscriptionRows
from sync_core.settings import Settings

log = logging.getLogger("sync_core.subscriptions")

__all__ = ["MAX_LIFETIME", "RENEW_MARGIN", "REQUESTED_LIFETIME", "RenewalReport", "SubscriptionManager"]

LEASE_SLACK = timedelta(minutes=2)
RENEWAL_LEASE = "renewal"  # the RunLease name of renewal runs: the timer's and an operator's
BACKFILL_REASON = "backfill: mailbox enabled"
# A mailbox's subscribe claim: one create (two validation handshakes of up to 10 s each) with its clean-up.
CREATE_HOLD = timedelta(minutes=2)
CLAIM_POLL_SECONDS = 0.5


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
    housekeeping: int = 0  # other old rows purged in the run (X1 delete budgets, notice claims)
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
        housekeeping: Sequence[Callable[[datetime, int], Awaitable[int]]] = (),
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
        self._housekeeping = housekeeping  # purge(before, at_most) -> rows deleted, run by the timer's run

    async def _rows(self, mailbox: str) -> list[SubscriptionRow]:
        return [r for r in await self._store.all() if r.mailbox.lower() == mailbox.lower()]

    @contextlib.asynccontextmanager
    async def _claimed(self, mailbox: str, *, wait: bool) -> AsyncIterator[bool]:
        """Hold the mailbox's subscribe claim (True), so no other worker creates its subscription meanwhile.

        `wait`: poll until the holder releases it or its hold lapses (a crashed holder); otherwise yield
        False at once when another worker holds it."""
        lease = self._store.mailbox_lease(mailbox)
        give_up = self._clock() + CREATE_HOLD + LEASE_SLACK
        while not await lease.acquire(self._clock(), CREATE_HOLD):
            if not wait:
                yield False
                return
            if self._clock() >= give_up:
                raise TransientError(
                    "another worker holds the subscribe claim", side="storage", mailbox=mailbox
                )
            await self._sleep(CLAIM_POLL_SECONDS)
        try:
            yield True
        finally:
            await lease.release()

    async def _live(self, rows: Iterable[SubscriptionRow], now: datetime) -> SubscriptionRow | None:
        """The first active row Graph still has (one GET each, in order)."""
        for row in rows:
            live = row.status == "active" and row.expires_at > now
            if live and await self._graph.subscription_exists(row.subscription_id, row.mailbox):
                return row
        return None

    async def ensure(self, mailbox: str) -> SubscriptionRow:
        """The mailbox's live subscription, created if it has none Graph still knows (a polling placeholder
        if Graph refuses one, X3). A subscription made here is followed by a resync, as in the timer's run:
        the full backfill for a mailbox that never had one (I5), the gap since the lapse otherwise.

        Creating holds the mailbox's subscribe claim: a second worker (a duplicate subscriptionRemoved, a
        silent check) waits for it, then finds and returns the first one's subscription."""
        live = await self._live(await self._rows(mailbox), self._clock())
        if live is not None:
            return live
        async with self._claimed(mailbox, wait=True):
            now = self._clock()
            rows = await self._rows(mailbox)  # again: the claim's previous holder may have made one
            live = await self._live(rows, now)
            if live is not None:
                return live
            for row in rows:
                if row.status == "active":
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
        """Subscribe (under the mailbox's claim); `polling` is the mailbox's X3 placeholder, retired once
        Graph agrees.

        A create whose answer is unclear (timeout, 5xx: Graph may have made it) or refused as a duplicate
        (409: one of ours Graph made before its answer was lost) is settled, then tried once more: our
        subscriptions to the mailbox (this notification URL) that no active row tracks are deleted. They
        are not adopted: adopting needs the clientState that verifies their notifications, which Graph's
        GET/list cannot be relied on to return, and an untracked one may be an older leftover (a crash
        between create and save) whose clientState we never stored. One we cannot verify would have every
        notification rejected as a forgery while it counts against the mailbox's quota of 1,000. Under the
        claim, no create of ours for the mailbox is in flight.
        """
        now = self._clock()
        client_state = new_client_state()
        url = self._settings.notification_url("graph/notifications")
        create = functools.partial(
            self._graph.create_subscription,
            mailbox,
            notification_url=url,
            lifecycle_url=self._settings.notification_url("graph/lifecycle"),
            client_state=client_state,
            expires_at=min(expires_at, now + REQUESTED_LIFETIME),
        )
        try:
            try:
                created = await create()
            except ThrottledError:
                raise  # refused unread: the queue or the next run tries again
            except (TransientError, ConflictError) as exc:
                dropped = await self._drop_untracked(mailbox, url)
                log.warning(
                    "create for %s unclear (%s); deleted %d untracked, creating again", mailbox, exc, dropped
                )
                if isinstance(exc, ConflictError) and not dropped:
                    raise
                created = await create()
        except PermanentError as exc:
            return await self._fall_back_to_polling(mailbox, exc)
        row = SubscriptionRow(
            subscription_id=created.subscription_id,
            mailbox=mailbox,
            client_state_hash=client_state_digest(client_state),
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

    async def _drop_untracked(self, mailbox: str, notification_url: str) -> int:
        """Delete the mailbox's subscriptions Graph has for our URL that no active row of ours tracks."""
        tracked = {r.subscription_id for r in await self._rows(mailbox) if r.status == "active"}
        unknown = [
            s for s in await self._graph.list_subscriptions(mailbox, notification_url) if s not in tracked
        ]
        for subscription_id in unknown:
            await self._graph.delete_subscription(subscription_id, mailbox)
        return len(unknown)

    async def _fall_back_to_polling(self, mailbox: str, exc: SyncError) -> SubscriptionRow:
        """X3: Graph refuses this mailbox a subscription; the sweep polls it by delta, and status says so."""
        now = self._clock()
        placeholder = next((r for r in await self._rows(mailbox) if r.status == "polling"), None)
        row = SubscriptionRow(
            subscription_id=placeholder.subscription_id if placeholder else polling_id(),
            mailbox=mailbox,
            client_state_hash="",
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
        """Replace a subscription Graph no longer has, then resync the mailbox over the gap (facts §5).

        Under the mailbox's claim: when another worker has replaced it already, its subscription is returned
        (it resyncs the gap itself)."""
        await self._store.save(row.retired("removed", self._clock()))
        async with self._claimed(row.mailbox, wait=True):
            others = [r for r in await self._rows(row.mailbox) if r.subscription_id != row.subscription_id]
            live = await self._live(others, self._clock())
            if live is not None:
                return live
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
            the_plan = plan(rows, enabled, start, limits, rng=self._rng)
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
            if enabled is not None:  # the timer's run: purge what nothing needs any more
                for old in purgeable(rows, start, limits):
                    await self._store.delete(old)
                    report.purged += 1
                await self._purge_others(start - limits.purge_after, limits.purge_per_run, report)
        finally:
            if self._lease is not None:
                await self._lease.release()
        return report

    async def _purge_others(self, before: datetime, at_most: int, report: RenewalReport) -> None:
        """Rows other parts leave behind (X1 delete budgets, notice claims), each purge bounded per run."""
        for purge in self._housekeeping:
            try:
                report.housekeeping += await purge(before, at_most)
            except SyncError as exc:  # the next run tries again
                log.warning("purge of old rows failed: %s", exc)
                report.errors.append(f"purge: {exc}")

    async def _execute(self, step: Step, row: SubscriptionRow | None, report: RenewalReport) -> None:
        """One planned write, on the row as the plan read it (rows are saved as each write is made)."""
        try:
            if step.kind == "renew" and row is not None:
                await self._renew(row, step, report)
            elif step.kind == "create":
                async with self._claimed(step.mailbox, wait=False) as held:
                    now = self._clock()
                    current = [
                        r for r in await self._rows(step.mailbox) if r.subscription_id != step.subscription_id
                    ]
                    if not held or any(r.status == "active" and r.expires_at > now for r in current):
                        report.deferred += 1  # another worker is subscribing it, or has: nothing to do
                        return
                    if row is not None and row.status == "active":
                        await self._store.save(row.retired("removed", now))
                    polling = row if row is not None and row.status == "polling" else None
                    created = await self._create(step.mailbox, step.expires_at or now, polling)
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
        report.renewed += 1
        try:  # on the row as the plan read it: a row written since (lifecycle retired it) is re-read
            await self._store.claim(replace(row, expires_at=expires, last_renewal=now))
        except ConcurrencyError:
            current = await self._store.get(row.subscription_id, fresh=True)
            if current is None or current.status != "active":
                log.warning(
                    "renewed %s, which is %s meanwhile: left so",
                    row.subscription_id,
                    current and current.status,
                )
                return
            await self._store.claim(replace(current, expires_at=expires, last_renewal=now))
