"""Scale: subscription renewals and delta sweeps for many mailboxes against the Graph emulator.

`sync_core.service.subscription_manager.SubscriptionManager` and `sync_core.service.reconcile.Reconciler`
run as they are, from this process, on the stack's Azurite; the development host runs in its own process
serving only the webhook functions (it answers Graph's validation handshakes; no worker). Counted from the
emulator's request log: requests, time, and the busiest 20 s window of subscription writes against Graph's
subscription-service limit (500 POST/PATCH/DELETE per 20 s per app per tenant; facts §10), and the
busiest 10 s of delta requests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import subprocess_host
from devstack.stack import LocalStack

SUBSCRIPTION_WRITE_LIMIT = 500  # per 20 s per app per tenant (Graph subscription service)
CONCURRENCY = 16  # the host's queue batch size: resyncs run at most this many at a time
SHIFT = timedelta(days=4, hours=12)  # inside RENEW_MARGIN (3 days) of the ~7-day expiry
SEED_EVERY = 20  # every 20th mailbox has one event for the full delta round to find


def _seconds(text: str) -> float:
    head, _, frac = str(text).rstrip("Z").partition(".")
    return datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp() + (float(f"0.{frac}") if frac else 0)


def _peak(times: list[float], window: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _subscription_writes(requests: list[dict[str, Any]]) -> list[float]:
    return [
        _seconds(r["time"])
        for r in requests
        if r["path"].startswith("/subscriptions") and r["method"] in ("POST", "PATCH", "DELETE")
    ]


async def _gather_bounded(items: list[str], work: Any) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: str) -> None:
        async with gate:
            await work(item)

    await asyncio.gather(*(one(i) for i in items))


class VirtualTime:
    """The manager's clock and sleep: sleeps return at once and move the clock on, so a paced run of
    thousands of writes takes seconds; `virtual(t)` maps a real request time onto that clock."""

    def __init__(self, start: datetime) -> None:
        self.start_real = time.time()
        self.start = start
        self.slept: list[tuple[float, float]] = []  # (real time of the call, seconds skipped)
        self.offset = 0.0

    def now(self) -> datetime:
        return self.start + timedelta(seconds=time.time() - self.start_real + self.offset)

    async def sleep(self, seconds: float) -> None:
        self.slept.append((time.time(), seconds))
        self.offset += seconds
        await asyncio.sleep(0)

    def shift(self, seconds: float) -> None:
        self.offset += seconds

    def virtual(self, real: float) -> float:
        return real + sum(d for t, d in self.slept if t <= real)


async def _phases(stack: LocalStack, mailboxes: list[str]) -> list[dict[str, Any]]:
    from sync_core.bootstrap import opened
    from sync_core.domain.messages import MailboxResync

    clock = VirtualTime(datetime.now(UTC))
    rows: list[dict[str, Any]] = []
    seeded = len(mailboxes[::SEED_EVERY])
    backfills: list[str] = []  # what the manager enqueues (I5 backfills); no worker runs them here

    async def enqueue(text: str) -> None:
        backfills.append(text)

    async with opened(clock=clock) as c:
        manager = c.subscription_manager(enqueue=enqueue, sleep=clock.sleep)

        async def runs(enabled: list[str] | None) -> str:
            done: list[str] = []
            backfills.clear()
            for _ in range(10):  # a run stops after its time budget; the next one continues
                report = await manager.run(enabled)
                done.append(
                    f"created {report.created}, renewed {report.renewed}, failed {report.failed}, "
                    f"deferred {report.deferred}"
                )
                if not report.deferred:
                    break
                clock.shift(60)
            return f"{len(done)} run(s); " + " | ".join(done) + f"; {len(backfills)} resyncs queued"

        g0, t0, v0 = len(stack.graph.requests), time.perf_counter(), clock.now()
        result = await runs(mailboxes)
        rows.append(_row("onboarding: run(enabled)", len(mailboxes), stack, g0, t0, clock, v0, result))
        # 4.5 days later every subscription is within the renewal margin.
        clock.shift(SHIFT.total_seconds())
        stack.graph.advance_clock(SHIFT.total_seconds())
        g0, t0, v0 = len(stack.graph.requests), time.perf_counter(), clock.now()
        result = await runs(None)
        rows.append(_row("renewal: renew_due()", len(mailboxes), stack, g0, t0, clock, v0, result))
        # Delta sweep: one resync per mailbox, CONCURRENCY at a time (as the queue worker runs them).
        for full, name in ((True, "delta sweep: full first round"), (False, "delta sweep: incremental")):
            g0, t0, v0 = len(stack.graph.requests), time.perf_counter(), clock.now()
            found = 0

            async def resync(m: str, full: bool = full) -> None:
                nonlocal found
                message = MailboxResync(
                    correlation_id=uuid.uuid4().hex,
                    received_at=clock.now(),
                    mailbox=m,
                    reason="bench",
                    full=full,
                )
                # Await first, then add: `found += await ...` reads `found` before the await, so
                # concurrent resyncs would overwrite each other's counts (the last to finish wins).
                enqueued = int(await c.reconciler.resync_mailbox(message) or 0)
                found += enqueued

            await _gather_bounded(mailboxes, resync)
            result = f"{found} items enqueued" + (f" ({seeded} events seeded)" if full else "")
            rows.append(_row(name, len(mailboxes), stack, g0, t0, clock, v0, result))
        return rows


def _row(
    name: str,
    mailboxes: int,
    stack: LocalStack,
    g0: int,
    t0: float,
    clock: VirtualTime,
    v0: datetime,
    result: str,
) -> dict[str, Any]:
    elapsed = time.perf_counter() - t0
    reqs = stack.graph.requests[g0:]
    # Request times on the manager's clock (the emulator's clock was moved by SHIFT as well).
    shift = SHIFT.total_seconds() if "renew" in name or "delta" in name else 0.0
    writes = [clock.virtual(t - shift) for t in _subscription_writes(reqs)]
    deltas = [_seconds(r["time"]) for r in reqs if "delta" in r["path"]]
    return {
        "operation": name,
        "mailboxes": mailboxes,
        "graph_requests": len(reqs),
        "wall_s": elapsed,
        "paced_s": (clock.now() - v0).total_seconds(),
        "peak_sub_writes/20s": _peak(writes, 20.0) if writes else 0,
        "limit/20s": SUBSCRIPTION_WRITE_LIMIT if writes else None,
        "peak_delta/10s": _peak(deltas, 10.0) if deltas else 0,
        "429s": sum(1 for r in reqs if r["status"] == 429),
        "result": result,
    }


def run(mailbox_count: int) -> list[dict[str, Any]]:
    stack = LocalStack().start()
    try:
        stack.host.stop()  # replaced by a webhook-only host in its own process, on the same port
        with subprocess_host("bench.host_process", stack.settings, stack.host.port, "--ingress-only"):
            mailboxes = [f"scale{i:05d}@contoso.example" for i in range(mailbox_count)]
            for i, m in enumerate(mailboxes):
                stack.graph.add_mailbox(str(uuid.uuid5(uuid.NAMESPACE_DNS, m)), m, f"Scale {i}")
            day = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
            with stack.graph_http() as g:
                for m in mailboxes[::SEED_EVERY]:
                    g.post(
                        f"/users/{m}/events",
                        json={
                            "subject": "scale",
                            "start": {"dateTime": f"{day}T10:00:00", "timeZone": "UTC"},
                            "end": {"dateTime": f"{day}T11:00:00", "timeZone": "UTC"},
                        },
                    ).raise_for_status()
            return asyncio.run(_phases(stack, mailboxes))
    finally:
        stack.stop()
