"""In-memory models for the simulated-clock tests: Graph's subscription service and calendarView/delta, the
subscription rows, the mailbox rows and the run lease, all on one simulated clock.

They model what the product depends on, as documented (facts §1, §5, §7): a subscription is deleted the
moment it expires and can then only be re-created; renewing or deleting a missing one is a 404; a
duplicate create is a 409; an expiry more than 10,080 minutes out is a 400; under 45 minutes becomes 45.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sync_core.adapters.graph.adapter import DeltaPage
from sync_core.domain.actions import Mapping
from sync_core.domain.model import Appointment, GraphEvent
from sync_core.domain.subscription import CreatedSubscription, SubscriptionRow
from sync_core.engine.subscription_plan import MAX_LIFETIME
from sync_core.errors import (
    ConcurrencyError,
    ConflictError,
    NotFoundError,
    PermissionError_,
    UnprocessableError,
)
from sync_core.service.reconcile import MailboxState


class SimClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Sub:
    id: str
    mailbox: str
    expires: datetime


class GraphModel:
    """Graph's subscription service for one app in one tenant."""

    def __init__(self, clock: SimClock, refused: set[str] | None = None) -> None:
        self.clock = clock
        self.subs: dict[str, Sub] = {}
        self.writes: list[datetime] = []  # every create, PATCH, reauthorize and delete
        self.expired: list[Sub] = []  # deleted by Graph because nobody renewed them in time
        self.refused = refused or set()
        self._ids = itertools.count(1)
        self._by_expiry: list[tuple[datetime, str]] = []  # a heap; stale entries are skipped

    def _track(self, sub: Sub) -> None:
        heapq.heappush(self._by_expiry, (sub.expires, sub.id))

    def purge(self) -> None:
        """Delete every subscription whose expiry has passed, as Graph does."""
        now = self.clock()
        while self._by_expiry and self._by_expiry[0][0] <= now:
            expires, sub_id = heapq.heappop(self._by_expiry)
            sub = self.subs.get(sub_id)
            if sub is not None and sub.expires == expires:
                del self.subs[sub_id]
                self.expired.append(sub)

    def remove(self, sub_id: str) -> None:
        """Graph removes a subscription on its own (subscriptionRemoved)."""
        self.purge()
        self.subs.pop(sub_id, None)

    def live_for(self, mailbox: str) -> list[Sub]:
        self.purge()
        return [s for s in self.subs.values() if s.mailbox == mailbox]

    def _expiry(self, wanted: datetime) -> datetime:
        now = self.clock()
        if wanted > now + MAX_LIFETIME:
            raise UnprocessableError("Subscription expiration can only be 10080 minutes in the future.")
        return max(wanted, now + timedelta(minutes=45))

    async def create_subscription(
        self,
        mailbox: str,
        *,
        notification_url: str,
        lifecycle_url: str,
        client_state: str,
        expires_at: datetime,
    ) -> CreatedSubscription:
        self.purge()
        self.writes.append(self.clock())
        if mailbox in self.refused:
            raise PermissionError_("Graph refused access (403)", side="graph", mailbox=mailbox)
        if self.live_for(mailbox):
            raise ConflictError("A subscription with the same resource and changeType exists.", side="graph")
        assert lifecycle_url and len(client_state) <= 128
        sub = Sub(f"sub-{next(self._ids)}", mailbox, self._expiry(expires_at))
        self.subs[sub.id] = sub
        self._track(sub)
        return CreatedSubscription(sub.id, sub.expires)

    async def subscription_exists(self, subscription_id: str, mailbox: str) -> bool:
        self.purge()
        return subscription_id in self.subs

    async def renew_subscription(self, subscription_id: str, mailbox: str, expires_at: datetime) -> datetime:
        self.purge()
        self.writes.append(self.clock())
        sub = self.subs.get(subscription_id)
        if sub is None:
            raise NotFoundError("subscription not found (404)", side="graph", item_id=subscription_id)
        sub.expires = self._expiry(expires_at)
        self._track(sub)
        return sub.expires

    async def reauthorize_subscription(self, subscription_id: str, mailbox: str) -> None:
        self.purge()
        self.writes.append(self.clock())
        if subscription_id not in self.subs:
            raise NotFoundError("subscription not found (404)", side="graph", item_id=subscription_id)

    async def delete_subscription(self, subscription_id: str, mailbox: str) -> None:
        self.purge()
        self.writes.append(self.clock())
        self.subs.pop(subscription_id, None)

    async def list_subscriptions(self, mailbox: str, notification_url: str) -> list[str]:
        return [s.id for s in self.live_for(mailbox)]


class Rows:
    """The SyncSubscriptions rows as the manager sees them: each write gives the row a new ETag, a claim
    (ETag-conditioned save) of a row written since its read fails, as on Table Storage."""

    def __init__(self) -> None:
        self.rows: dict[str, SubscriptionRow] = {}
        self.leases: dict[str, Lease] = {}
        self._etags = itertools.count(1)

    async def all(self) -> list[SubscriptionRow]:
        return list(self.rows.values())

    async def get(self, subscription_id: str, *, fresh: bool = False) -> SubscriptionRow | None:
        return self.rows.get(subscription_id)

    async def save(self, row: SubscriptionRow) -> None:
        self.rows[row.subscription_id] = replace(row, etag=str(next(self._etags)))

    async def claim(self, row: SubscriptionRow) -> SubscriptionRow:
        current = self.rows.get(row.subscription_id)
        if current is None or current.etag != row.etag:
            raise ConcurrencyError("the row changed since it was read", side="storage")
        await self.save(row)
        return self.rows[row.subscription_id]

    async def delete(self, row: SubscriptionRow) -> None:
        current = self.rows.get(row.subscription_id)
        if current is not None and (row.etag is None or current.etag == row.etag):
            del self.rows[row.subscription_id]

    def mailbox_lease(self, mailbox: str) -> _RunLease:
        return self.leases.setdefault(mailbox.lower(), Lease()).for_run()


class Lease:
    """The run lease's contract: one holder until it releases or its hold lapses."""

    def __init__(self) -> None:
        self.until: datetime | None = None
        self.held_by: object | None = None

    def for_run(self) -> _RunLease:
        return _RunLease(self)


@dataclass
class _RunLease:
    shared: Lease

    async def acquire(self, now: datetime, hold: timedelta) -> bool:
        s = self.shared
        if s.until is not None and s.until > now and s.held_by is not self:
            return False
        s.until, s.held_by = now + hold, self
        return True

    async def release(self) -> None:
        if self.shared.held_by is self:
            self.shared.until, self.shared.held_by = None, None


@dataclass
class Mailboxes:
    """The SyncMailboxes rows the reconciler and the manager write."""

    states: dict[str, MailboxState] = field(default_factory=dict)

    async def get(self, mailbox: str) -> MailboxState:
        found = self.states.get(mailbox)
        return replace(found) if found else MailboxState(mailbox=mailbox)

    async def save(self, state: MailboxState, *, if_unchanged: bool = False) -> None:
        old = self.states.get(state.mailbox)
        keep = {"status": old.status, "status_reason": old.status_reason} if old else {}
        keep |= {"last_notification": old.last_notification} if old else {}
        self.states[state.mailbox] = replace(state, **keep)

    async def set_status(self, mailbox: str, status: str, reason: str = "") -> None:
        state = self.states.get(mailbox) or MailboxState(mailbox=mailbox)
        self.states[mailbox] = replace(state, status=status, status_reason=reason)

    async def touch_notification(self, mailbox: str, at: datetime) -> None:
        state = self.states.get(mailbox) or MailboxState(mailbox=mailbox)
        self.states[mailbox] = replace(state, last_notification=at)


class NoMappings:
    """The mapping store of the simulation: no worker runs, so no event is ever mapped."""

    async def copies_in(self, mailbox: str) -> list[tuple[str, str]]:
        return []

    async def get(self, meeting_key: str) -> Mapping | None:
        return None


class Calendars:
    """calendarView/delta over in-memory events: a link carries the change sequence it was issued at."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.events: dict[str, dict[str, tuple[int, datetime]]] = {}  # mailbox -> id -> (seq, start)
        self._seq = itertools.count(1)
        self.seq = 0

    def change(self, mailbox: str, event_id: str, start: datetime) -> None:
        self.seq = next(self._seq)
        self.events.setdefault(mailbox, {})[event_id] = (self.seq, start)

    async def delta_page(
        self, mailbox: str, *, link: str | None, start: datetime | None = None, end: datetime | None = None
    ) -> DeltaPage:
        if link is None:
            assert start is not None and end is not None
            after, lo, hi = 0, start, end
        else:
            _, after_s, lo_s, hi_s = link.split("|")
            after, lo, hi = int(after_s), datetime.fromisoformat(lo_s), datetime.fromisoformat(hi_s)
        found = [
            _event(mailbox, eid, when)
            for eid, (seq, when) in sorted(self.events.get(mailbox, {}).items())
            if seq > after and lo <= when < hi
        ]
        return DeltaPage(found, [], None, f"{mailbox}|{self.seq}|{lo.isoformat()}|{hi.isoformat()}")

    async def calendar_view(self, mailbox: str, start: datetime, end: datetime) -> list[GraphEvent]:
        events = self.events.get(mailbox, {}).items()
        return [_event(mailbox, eid, when) for eid, (_, when) in sorted(events) if start < when < end]


def _event(mailbox: str, event_id: str, start: datetime) -> GraphEvent:
    return GraphEvent(
        mailbox=mailbox,
        event_id=event_id,
        appointment=Appointment(subject=event_id, start=start, end=start + timedelta(hours=1)),
    )
