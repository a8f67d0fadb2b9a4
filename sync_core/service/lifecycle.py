"""Lifecycle work from the queue: reauthorize or renew, re-create and resync, check a silent subscription.
I/O side.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from sync_core.adapters.storage.subscriptions import SubscriptionStore
from sync_core.domain.messages import SubscriptionLifecycle
from sync_core.engine.subscription_plan import REAUTHORIZE_GAP, Limits
from sync_core.errors import ConcurrencyError, NotFoundError, SyncError
from sync_core.ports.subscriptions import SubscriptionGraph
from sync_core.service.subscription_manager import SubscriptionManager

log = logging.getLogger("sync_core.lifecycle")


def reauthorization_action(
    last_renewal: datetime | None,
    last_reauthorization: datetime | None,
    expires_at: datetime,
    now: datetime,
    limits: Limits,
) -> str:
    """'skip' (a write of the last 10 minutes already reauthorized it), 'renew' (due soon: one PATCH does
    both) or 'reauthorize'. Pure."""
    recent = [t for t in (last_renewal, last_reauthorization) if t is not None and now - t < REAUTHORIZE_GAP]
    if recent:
        return "skip"
    return "renew" if expires_at - now <= limits.margin else "reauthorize"


class LifecycleHandler:
    def __init__(
        self,
        *,
        graph: SubscriptionGraph,
        store: SubscriptionStore,
        manager: SubscriptionManager,
        clock: Callable[[], datetime],
        limits: Limits | None = None,
    ) -> None:
        self._graph = graph
        self._store = store
        self._manager = manager
        self._clock = clock
        self._limits = limits or Limits()

    async def handle(self, message: SubscriptionLifecycle) -> str:
        """What was done, for logs and tests."""
        if message.event == "silent" or message.subscription_id is None:
            before = {r.subscription_id for r in await self._store.for_mailbox(message.mailbox)}
            checked = await self._manager.ensure(message.mailbox)  # re-created: ensure resyncs the gap
            if checked.subscription_id not in before and checked.status == "active":
                return f"re-created as {checked.subscription_id}"
            return f"checked: {checked.subscription_id} ({checked.status})"
        row = await self._store.get(message.subscription_id, fresh=True)
        if row is None or row.status != "active":
            # Already replaced (a duplicate event, or the timer got there first): make sure one is live.
            live = await self._manager.ensure(message.mailbox)
            return f"no active row; mailbox has {live.subscription_id}"
        now = self._clock()
        if message.event == "subscriptionRemoved":
            try:
                row = await self._store.claim(row.retired("removed", now))
            except ConcurrencyError:
                return "another worker is handling it"
            created = await self._manager.recreate(
                row, f"lifecycle:subscriptionRemoved:{row.subscription_id}"
            )
            return f"re-created as {created.subscription_id}"
        action = reauthorization_action(
            row.last_renewal, row.last_reauthorization, row.expires_at, now, self._limits
        )
        if action == "skip":
            return "skipped: reauthorized or renewed within 10 minutes"
        claimed = replace(
            row,
            last_renewal=now if action == "renew" else row.last_renewal,
            last_reauthorization=now if action == "reauthorize" else row.last_reauthorization,
        )
        try:
            claimed = await self._store.claim(claimed)
        except ConcurrencyError:
            return "another worker is handling it"
        try:
            if action == "renew":
                expires = await self._graph.renew_subscription(
                    row.subscription_id, row.mailbox, now + self._limits.lifetime
                )
            else:
                await self._graph.reauthorize_subscription(row.subscription_id, row.mailbox)
        except NotFoundError:
            created = await self._manager.recreate(claimed, f"lifecycle:{message.event}: subscription gone")
            return f"gone; re-created as {created.subscription_id}"
        except SyncError:
            # Not made: give the claim back (unless written since), or the retry would skip as "recent".
            restored = replace(
                claimed, last_renewal=row.last_renewal, last_reauthorization=row.last_reauthorization
            )
            with contextlib.suppress(ConcurrencyError):
                await self._store.claim(restored)
            raise
        if action == "renew":
            with contextlib.suppress(ConcurrencyError):  # written since our claim (retired): left so
                await self._store.claim(replace(claimed, expires_at=expires))
        # Delivery may have paused before we answered: catch up with delta (facts §5).
        await self._manager.resync(row.mailbox, f"lifecycle:reauthorizationRequired:{row.subscription_id}")
        return action
