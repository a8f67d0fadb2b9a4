"""Which subscription writes a renewal run makes, and when. Pure: a function of the rows, the
mailboxes, now and the limits.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sync_core.domain.subscription import SubscriptionRow

MAX_LIFETIME = timedelta(minutes=10_080)  # Outlook events, basic notifications (facts §1)
REQUESTED_LIFETIME = MAX_LIFETIME - timedelta(minutes=60)
RENEW_MARGIN = timedelta(days=3)
REAUTHORIZE_GAP = timedelta(minutes=10)  # never reauthorize and renew one subscription within this (facts §5)

StepKind = Literal["create", "renew", "delete", "forget"]


@dataclass(frozen=True)
class Limits:
    margin: timedelta = RENEW_MARGIN  # renew when expiry is this close
    lifetime: timedelta = REQUESTED_LIFETIME
    lifetime_jitter: timedelta = timedelta(hours=12)  # spread expiries so renewals never bunch again
    writes_per_window: int = 500  # Graph's subscription-service limit...
    window: timedelta = timedelta(seconds=20)  # ...per this window, per app per tenant
    share: float = 0.5  # of the limit a renewal run may use; the rest is for lifecycle work and creates
    run_time: timedelta = timedelta(minutes=5)  # a run issues no write after this (lease outlives it)
    retry_refused: timedelta = timedelta(hours=6)  # X3: how long a mailbox polls before we ask Graph again
    purge_after: timedelta = timedelta(days=3)  # history rows this long past their expiry are deleted...
    purge_per_run: int = 200  # ...at most this many per run (Table writes, not Graph's budget)

    @property
    def per_window(self) -> int:
        return max(1, math.floor(self.writes_per_window * self.share) - 1)

    @property
    def spacing(self) -> timedelta:
        return self.window / self.per_window

    @property
    def capacity(self) -> int:
        return max(1, math.floor(self.run_time / self.spacing))


@dataclass(frozen=True)
class Step:
    at: datetime
    kind: StepKind
    mailbox: str
    subscription_id: str | None = None  # renew / delete / forget: the row acted on; create: the row replaced
    expires_at: datetime | None = None  # renew / create: the expiry to ask Graph for


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    deferred: int = 0  # writes due that did not fit this run; the next run takes them first
    notes: list[str] = field(default_factory=list)


def enabled_key(mailbox: str) -> str:
    return mailbox.lower()


def plan(
    rows: Sequence[SubscriptionRow],
    enabled: Iterable[str] | None,
    now: datetime,
    limits: Limits = Limits(),
    *,
    rng: random.Random,
) -> Plan:
    """The writes of one run, most urgent first, spaced within the rate budget.

    `enabled`: the mailboxes that must have a subscription (None: only renew what exists, create nothing,
    delete nothing). A mailbox without a live subscription gets one; a subscription whose mailbox is no
    longer enabled is deleted; an active one expiring within `margin` is renewed, unless it was
    reauthorized within the last 10 minutes (it is then renewed by a later run); one already past its
    expiry is gone on Graph's side and is re-created. `rng` jitters the slots and expiries (the caller
    owns it: seeded in tests and simulations).
    """
    wanted = None if enabled is None else {enabled_key(m): m for m in enabled}
    active_by: dict[str, list[SubscriptionRow]] = {}
    polling_by: dict[str, list[SubscriptionRow]] = {}
    for r in rows:  # removed and deleted rows are history
        if r.status == "active":
            active_by.setdefault(r.mailbox.lower(), []).append(r)
        elif r.status == "polling":
            polling_by.setdefault(r.mailbox.lower(), []).append(r)
    # (urgency, kind, mailbox, subscription_id): a smaller urgency goes first.
    due: list[tuple[datetime, StepKind, str, str | None]] = []
    later = now + limits.margin
    for key, active in active_by.items():
        if wanted is not None and key not in wanted:
            due += [(later, "delete", r.mailbox, r.subscription_id) for r in active]
            continue
        if len(active) > 1:
            active.sort(key=lambda r: r.expires_at, reverse=True)
            # a duplicate (a crash between create and save, replayed): drop it
            due += [(later, "delete", r.mailbox, r.subscription_id) for r in active[1:]]
        best = active[0]
        if best.expires_at <= now:
            due.append((now, "create", best.mailbox, best.subscription_id))
        elif best.expires_at <= later and not _reauthorized_recently(best, now):
            due.append((best.expires_at, "renew", best.mailbox, best.subscription_id))
    for key, polling in polling_by.items():
        if wanted is not None and key not in wanted:
            due += [(now, "forget", r.mailbox, r.subscription_id) for r in polling]
        elif (
            wanted is not None and key not in active_by and min(r.next_attempt or now for r in polling) <= now
        ):
            due.append((now, "create", polling[0].mailbox, polling[0].subscription_id))
    if wanted is not None:
        for key, mailbox in wanted.items():
            if key not in active_by and key not in polling_by:
                due.append((now, "create", mailbox, None))
    due.sort(key=lambda d: (d[0], _ORDER[d[1]], d[2]))
    taken, deferred = due[: limits.capacity], len(due) - min(len(due), limits.capacity)
    steps: list[Step] = []
    slot = 0
    for _urgency, kind, mailbox, sub_id in taken:
        if kind == "forget":  # no Graph write: no slot
            steps.append(Step(now, kind, mailbox, sub_id))
            continue
        at = now + limits.spacing * slot + limits.spacing * rng.random()
        slot += 1
        expires = None
        if kind in ("create", "renew"):
            expires = at + limits.lifetime - limits.lifetime_jitter * rng.random()
        steps.append(Step(at, kind, mailbox, sub_id, expires))
    steps.sort(key=lambda s: s.at)
    notes = [f"{deferred} write(s) deferred to the next run"] if deferred else []
    return Plan(steps, deferred, notes)


_ORDER: dict[StepKind, int] = {"forget": 0, "create": 1, "renew": 2, "delete": 3}


def purgeable(
    rows: Sequence[SubscriptionRow], now: datetime, limits: Limits = Limits()
) -> list[SubscriptionRow]:
    """History rows (removed, deleted) that ended more than `purge_after` ago (a row from before `ended_at`
    was kept: its expiry), oldest first, at most `purge_per_run`. Late notifications and lifecycle events
    of a subscription that ended days ago need its row no more."""
    cutoff = now - limits.purge_after

    def ended(r: SubscriptionRow) -> datetime:
        return r.ended_at or r.expires_at

    old = sorted((r for r in rows if r.status in ("removed", "deleted") and ended(r) < cutoff), key=ended)
    return old[: limits.purge_per_run]


def _reauthorized_recently(row: SubscriptionRow, now: datetime) -> bool:
    """A reauthorize of the last 10 minutes forbids a PATCH (unless the subscription would lapse first)."""
    last = row.last_reauthorization
    return last is not None and now - last < REAUTHORIZE_GAP and row.expires_at - now > REAUTHORIZE_GAP * 2


def max_in_window(times: Sequence[datetime], window: timedelta) -> int:
    """The largest number of `times` inside any half-open window of this length (for tests and benchmarks)."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
