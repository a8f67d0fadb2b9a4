"""Keeps one Graph subscription alive per enabled sync mailbox (S1): create, renew before expiry, re-create.

I/O side. Lifetime for Outlook events is at most 10,080 minutes; we ask for a little less and renew
when within `renew_margin` of expiry, so a missed timer run or two still never lets one lapse.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sync_core.errors import NotFoundError, SyncError
from sync_core.graph import GraphAdapter
from sync_core.settings import Settings
from sync_core.subscriptions import SubscriptionRow, SubscriptionStore, new_client_state

log = logging.getLogger("sync_core.subscriptions")

MAX_LIFETIME = timedelta(minutes=10_080)
REQUESTED_LIFETIME = MAX_LIFETIME - timedelta(minutes=60)
RENEW_MARGIN = timedelta(days=3)


@dataclass
class RenewalReport:
    renewed: int = 0
    recreated: int = 0
    failed: int = 0


class SubscriptionManager:
    def __init__(
        self,
        *,
        graph: GraphAdapter,
        store: SubscriptionStore,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self._graph = graph
        self._store = store
        self._settings = settings
        self._clock = clock

    async def ensure(self, mailbox: str) -> SubscriptionRow:
        """The mailbox's live subscription, created if it has none that Graph still knows."""
        now = self._clock()
        for row in await self._store.for_mailbox(mailbox):
            if row.status != "active":
                continue
            if row.expires_at > now and await self._graph.subscription_exists(row.subscription_id, mailbox):
                return row
            await self._store.save(replace(row, status="removed"))
        return await self._create(mailbox)

    async def _create(self, mailbox: str) -> SubscriptionRow:
        now = self._clock()
        client_state = new_client_state()
        created = await self._graph.create_subscription(
            mailbox,
            notification_url=self._settings.notification_url("graph/notifications"),
            lifecycle_url=self._settings.notification_url("graph/lifecycle"),
            client_state=client_state,
            expires_at=now + REQUESTED_LIFETIME,
        )
        row = SubscriptionRow(
            subscription_id=created.subscription_id,
            mailbox=mailbox,
            client_state=client_state,
            expires_at=created.expires_at,
            last_renewal=now,
        )
        await self._store.save(row)
        log.info(
            "subscribed to %s (%s, expires %s)", mailbox, row.subscription_id, row.expires_at.isoformat()
        )
        return row

    async def renew_due(self, *, margin: timedelta = RENEW_MARGIN) -> RenewalReport:
        """Renew every active subscription expiring within `margin`; re-create those Graph no longer has."""
        report = RenewalReport()
        now = self._clock()
        due = [r for r in await self._store.all() if r.status == "active" and r.expires_at - now <= margin]
        random.shuffle(due)  # spread retries of a failing tenant across runs
        for row in due:
            try:
                if row.expires_at <= now:
                    raise NotFoundError("expired", side="graph", item_id=row.subscription_id)
                expires = await self._graph.renew_subscription(
                    row.subscription_id, row.mailbox, now + REQUESTED_LIFETIME
                )
                await self._store.save(replace(row, expires_at=expires, last_renewal=now))
                report.renewed += 1
            except NotFoundError:
                await self._store.save(replace(row, status="removed"))
                await self._create(row.mailbox)
                report.recreated += 1
            except SyncError as exc:
                log.error("renewal of %s for %s failed: %s", row.subscription_id, row.mailbox, exc)
                report.failed += 1
        return report
