"""Scale: 5,000 mailboxes over 8 simulated days, on one simulated clock (issue 5, "Done when").

The real planner and the real SubscriptionManager run every 30 simulated minutes against an in-memory
model of Graph's subscription service that deletes a subscription the moment it expires; the real
Reconciler runs the hourly sweep against an in-memory calendarView/delta. Along the way: mailboxes are
disabled and enabled, Graph removes subscriptions on its own, one mailbox is refused a subscription (X3),
a renewal run crashes midway and another run tries to start while the crashed one still holds the lease.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sync_core.domain.messages import GraphChange, MailboxResync, SubscriptionLifecycle, decode
from sync_core.domain.policy import Policy
from sync_core.engine.subscription_plan import max_in_window, purgeable
from sync_core.service.reconcile import SWEEP_REASON, Reconciler
from sync_core.service.subscription_manager import SubscriptionManager
from sync_core.service.sweeps import sweep_delays
from sync_core.settings import Settings
from tests.subscriptions.sim_models import (
    Calendars,
    GraphModel,
    Lease,
    Mailboxes,
    NoMappings,
    Rows,
    SimClock,
)

T0 = datetime(2027, 1, 4, 0, 0, tzinfo=UTC)
N = 5_000
DAYS = 8
TICK = timedelta(minutes=30)
SETTINGS = Settings.model_validate(
    {"PUBLIC_BASE_URL": "https://sync.example", "WEBHOOK_FUNCTION_KEY": "k", "GRAPH_AUTH_MODE": "emulator"}
)


class Crash(Exception):
    """The process dies: no `finally` of ours gets to release anything."""


def _mailbox(i: int) -> str:
    return f"mb{i:05d}@contoso.example"


async def test_5000_mailboxes_8_days_no_subscription_lapses_no_burst_and_dropped_changes_reconciled() -> None:
    started = time.perf_counter()
    rng = random.Random(5)
    clock = SimClock(T0)
    refused = _mailbox(4_999)
    graph = GraphModel(clock, refused={refused})
    rows, lease, states = Rows(), Lease(), Mailboxes()
    queued: list[str] = []

    async def enqueue(text: str) -> None:
        queued.append(text)

    def manager(run_lease: object | None = None) -> SubscriptionManager:
        return SubscriptionManager(
            graph=graph,
            store=rows,
            settings=SETTINGS,
            clock=clock,
            lease=run_lease or lease.for_run(),  # type: ignore[arg-type]
            statuses=states,
            enqueue=enqueue,
            sleep=clock.sleep,
            rng=random.Random(rng.random()),
        )

    enabled = [_mailbox(i) for i in range(N)]
    dropped = enabled[1000:1030]  # Graph drops every notification for these (X2)
    heard = enabled[2000:2030]  # these get theirs
    calendars = Calendars(clock)
    policy = Policy.default()
    reconciler = Reconciler(
        graph=calendars, states=states, policy=policy, enqueue=enqueue, clock=clock, mappings=NoMappings()
    )
    pending: dict[str, set[str]] = {}  # mailbox -> event ids changed since its last sweep
    missed_by_a_sweep: list[str] = []
    x2_flagged: set[str] = set()
    overlapped = crashed = removed_by_graph = purged = 0
    last_run = T0
    disabled: set[str] = set()
    runs: list[str] = []

    tick = T0
    end = T0 + timedelta(days=DAYS)
    k = 0
    while tick < end:
        clock.now = max(clock.now, tick)
        # -- before the run: every enabled mailbox (bar the refused one) has a live subscription.
        if k >= 2:
            graph.purge()
            live = {s.mailbox for s in graph.subs.values()}
            missing = [m for m in enabled if m not in live and m != refused]
            assert not missing, (
                f"{len(missing)} mailbox(es) without a subscription at {clock()}: {missing[:3]}"
            )
        if k == 96:  # day 2: 100 mailboxes disabled, 100 new ones enabled
            disabled = set(enabled[:100])
            enabled = enabled[100:] + [_mailbox(N + i) for i in range(100)]
        if k == 170:  # a renewal run dies after 40 writes, holding the lease
            m = manager(dying := lease.for_run())
            m._sleep = _dies_after(40, clock, dying)
            try:
                await m.run(enabled)
            except Crash:
                crashed += 1
            clock.now += timedelta(minutes=1)
            again = await manager().run(enabled)  # the next attempt while the lease is still held
            assert again.overlapped
            overlapped += 1
        else:
            last_run = clock()
            report = await manager().run(enabled)
            purged += report.purged
            assert not report.overlapped
            runs.append(f"{k}:{report.renewed}/{report.created}/{report.recreated}/{report.deleted}")
        # -- between runs: Graph removes a few subscriptions; the lifecycle handler re-creates them.
        if k % 12 == 5:
            for sub in rng.sample(sorted(graph.subs.values(), key=lambda s: s.id), 5):
                graph.remove(sub.id)
                removed_by_graph += 1
                row = rows.rows[sub.id]
                await manager().recreate(row, "lifecycle:subscriptionRemoved")
        # -- calendar changes every tick; only the `heard` mailboxes' notifications arrive.
        for group, notified in ((dropped, False), (heard, True)):
            for mb in rng.sample(group, 4):
                eid = f"ev-{mb}-{k}"
                calendars.change(mb, eid, clock() + timedelta(days=rng.randint(0, 20)))
                pending.setdefault(mb, set()).add(eid)
                if notified:
                    await states.touch_notification(mb, clock())
        # -- the hourly sweep: every enabled mailbox is resynced; the changes of each are all found.
        if k % 2 == 1:
            swept = [mb for mb, _delay in sweep_delays(enabled, rng)]
            assert sorted(swept) == sorted(enabled)
            for mb in dropped + heard:
                before = len(queued)
                await reconciler.resync_mailbox(
                    MailboxResync(
                        correlation_id=f"s{k}", received_at=clock(), mailbox=mb, reason=SWEEP_REASON
                    )
                )
                found = [decode(t) for t in queued[before:]]
                ids = {m.event_id for m in found if isinstance(m, GraphChange)}
                missed_by_a_sweep += sorted(pending.pop(mb, set()) - ids)
                if any(isinstance(m, SubscriptionLifecycle) and m.event == "silent" for m in found):
                    x2_flagged.add(mb)
        queued.clear()
        tick += TICK
        k += 1

    assert graph.expired == [], f"{len(graph.expired)} subscription(s) expired, first {graph.expired[:1]}"
    burst = max_in_window(graph.writes, timedelta(seconds=20))
    assert burst <= 500
    assert missed_by_a_sweep == []
    assert x2_flagged == set(dropped)  # silence while delta shows changes: flagged, never for `heard`
    assert crashed == 1 and overlapped == 1 and removed_by_graph > 0
    # History rows are purged some days after they ended: the disabled mailboxes' (day 2) are gone.
    assert purged >= 100 and not purgeable(list(rows.rows.values()), last_run)
    assert not any(r.mailbox in disabled for r in rows.rows.values())
    live = {s.mailbox for s in graph.subs.values()}
    assert live == set(enabled) - {refused}  # disabled mailboxes lost theirs, new ones got one
    assert [r.status for r in rows.rows.values() if r.mailbox == refused and r.status == "polling"] == [
        "polling"
    ]
    assert states.states[refused].status == "polling"
    print(
        f"\nsimulated {DAYS} days x {N} mailboxes: {len(graph.writes)} subscription writes, "
        f"max {burst} per 20 s, {removed_by_graph} removed by Graph, "
        f"{time.perf_counter() - started:.1f} s wall"
    )


def _dies_after(writes: int, clock: SimClock, lease: object) -> Callable[[float], Awaitable[None]]:
    """A sleep that kills the run after `writes` writes; its lease is never released."""
    count = 0

    async def sleep(seconds: float) -> None:
        nonlocal count
        count += 1
        if count > writes:
            lease.release = _never  # type: ignore[attr-defined]
            raise Crash
        await clock.sleep(seconds)

    return sleep


async def _never() -> None:
    return None


def _key(mailbox: str) -> str:
    from sync_core.adapters.storage.core import key_of

    return key_of(mailbox.lower())
