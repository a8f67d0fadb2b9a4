"""Chaos: changes on both sides while the emulators misbehave and the worker is killed mid-message.

Small inside `make test` (--chaos-size=small, the default), large with `make chaos`. The CRM is the REST
contract's emulator unless --chaos-connector=dataverse (`CONNECTOR=dataverse make chaos`): then Dataverse's
emulator, throttling runs of requests (429, Retry-After) and delivering every webhook twice. `make test` runs
the REST case only: the small Dataverse run takes about as long again. After the storm the
faults stop, a reconciliation sweep runs (sync_core.service.sweeps.run_sweep: a delta resync per mailbox
through sync_core.service.reconcile, and the CRM by its cursor), the poison queue is read (every item with a
reason) and replayed (sync_core.ops.operations.replay); then both sides must agree: one live copy per
meeting, none duplicated, no change lost. The counts are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.world import CancelCounter, ChaosStack, Killer, Workload, compare, mailbox_names

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

UNPROCESSABLE = ["not json at all", '{"v": 1, "type": "graph_change"}', '{"type": "nonsense", "v": 9}']


@dataclass(frozen=True)
class Size:
    mailboxes: int
    changes: int
    storm_seconds: float
    kill_every: float
    settle_timeout: float


SIZES = {
    "small": Size(mailboxes=3, changes=24, storm_seconds=8.0, kill_every=2.5, settle_timeout=90.0),
    "large": Size(mailboxes=8, changes=400, storm_seconds=90.0, kill_every=4.0, settle_timeout=300.0),
}
GRAPH_FAULTS: dict[str, Any] = {
    "throttle_rate": 0.05,
    "unavailable_rate": 0.05,
    "retry_after": 0.5,
    "latency_ms": 15,
    "notify_drop_rate": 0.1,
    "notify_duplicate_rate": 0.2,
    "notify_reorder_window_ms": 150,
}


@pytest.fixture
def size(request: pytest.FixtureRequest) -> Size:
    return SIZES[str(request.config.getoption("--chaos-size"))]


@pytest.fixture
def connector(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--chaos-connector"))


@pytest.fixture
def stack(size: Size, connector: str, tmp_path: Path) -> Iterator[ChaosStack]:
    running = ChaosStack(connector=connector)
    running.throttling = threading.Event()
    running.mailboxes = mailbox_names(size.mailboxes)
    running.policy_file = tmp_path / "policy.json"
    running.start()
    try:
        running.host.stop()
        running.host = running.fresh_host()  # no drain time: a stop cancels what is in flight
        yield running
    finally:
        running.throttling.set()
        running.stop()


def _run(coro_factory: Any) -> Any:
    """Run app code on a loop of our own, with a container built for it and closed after."""
    from sync_core.bootstrap import opened

    async def main() -> Any:
        async with opened() as c:
            return await coro_factory(c)

    return asyncio.run(main())


def _settle(stack: ChaosStack, timeout: float) -> bool:
    """Until no webhook is pending, no retry is still waiting out its delay, and no message is visible in
    the change queue five polls in a row.

    Visible, not counted: a host killed between receiving a batch and starting on it leaves those messages
    leased (invisible) for the host's 10-minute lease, as the real host does; the sweep covers them. A
    retry is invisible too, but only until its delay ends: the failure ledger says when that is at the
    latest (`_retries_due_by`), and the queue is not called settled before.
    """
    from sync_core.adapters.storage.core import BULK_QUEUE, CHANGES_QUEUE

    async def visible(c: Any) -> int:
        return sum(
            [len(await c.storage.queue(q).peek_messages(max_messages=1)) for q in (CHANGES_QUEUE, BULK_QUEUE)]
        )

    deadline, quiet = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        stack.side.wait_for_webhooks(1.0)
        quiet = quiet + 1 if _run(visible) == 0 else 0
        if quiet >= 5 and _run(_retries_due_by) <= datetime.now(UTC):
            return True
        time.sleep(0.4)
    return False


async def _retries_due_by(c: Any) -> datetime:
    """The latest instant a message re-queued after a failure is visible again (sync_core.service.retry): its
    last failure plus the longest delay that attempt can get (throttled: the emulators' Retry-After, 1 s)."""
    from sync_core.service import retry as dispatch

    latest = datetime.min.replace(tzinfo=UTC)
    for row in await c.failures.all(limit=5000):
        if row.get("Permanent"):
            continue
        if row.get("ErrorClass") == "ThrottledError":
            delay = max(1.0, math.ceil(float(GRAPH_FAULTS["retry_after"])))  # the CRM emulators send 1
        else:
            attempt = max(1, int(row.get("RetryAttempts") or 1))
            delay = dispatch.backoff_ceiling(attempt)
        due = datetime.fromisoformat(str(row["LastFailedAt"])) + timedelta(seconds=delay + 2)
        latest = max(latest, due)
    return latest


@pytest.mark.timeout(3600)
def test_chaos_nothing_lost_nothing_duplicated(stack: ChaosStack, size: Size) -> None:
    from sync_core.adapters.storage.core import BULK_QUEUE, CHANGES_QUEUE
    from sync_core.ops.operations import NO_REASON, UNRECORDED, list_poison, replay
    from sync_core.service.sweeps import run_sweep

    rng = random.Random(9)
    mailboxes = mailbox_names(size.mailboxes)
    cancels = CancelCounter()
    logging.getLogger("devstack.host").addHandler(cancels)
    work = Workload(stack, mailboxes)
    # Onboarding's backfill: a first delta round per mailbox, so the sweep after the storm has a baseline
    # to report deletions against (a first round lists what exists, never what was removed).
    _run(lambda c: run_sweep(c, random.Random(1)))
    assert _settle(stack, size.settle_timeout)
    stack.graph.set_faults(seed=9, **GRAPH_FAULTS)
    stack.side.faults_on(seed=9)
    killer = Killer(stack, size.kill_every)
    killer.start()
    try:
        started = time.monotonic()
        for i in range(size.changes):
            work.create(i)
            if (wait := started + (i + 1) * size.storm_seconds / (2 * size.changes) - time.monotonic()) > 0:
                time.sleep(wait)
        for item in rng.sample(work.items, len(work.items) // 3):
            work.edit(item)
        for item in rng.sample(work.items, len(work.items) // 6):
            work.remove(item)
        for body in UNPROCESSABLE:
            _run(lambda c, b=body: c.storage.enqueue(b))
        time.sleep(max(0.0, started + size.storm_seconds - time.monotonic()))
    finally:
        killer.finish()
        logging.getLogger("devstack.host").removeHandler(cancels)
    graph_log, crm_errors = stack.graph.requests, stack.side.errors_answered()
    stack.graph.clear_faults()
    stack.side.faults_off()
    settled = _settle(stack, size.settle_timeout)

    sweep = _run(lambda c: run_sweep(c, random.Random(1)))
    settled = _settle(stack, size.settle_timeout) and settled
    poisoned = _run(lambda c: list_poison(c.storage, c.failures, now=c.clock.now()))
    unexplained = [p for p in poisoned if p.reason == NO_REASON or p.error_class == UNRECORDED]
    report = _run(lambda c: replay(c.storage, c.failures, now=c.clock.now()))
    settled = _settle(stack, size.settle_timeout) and settled
    still_poisoned = _run(lambda c: list_poison(c.storage, c.failures, now=c.clock.now()))
    failures = _run(lambda c: c.failures.all())
    verdict = compare(stack, work)
    hidden = sum(_run(lambda c, q=q: c.storage.queue_depth(q)) for q in (CHANGES_QUEUE, BULK_QUEUE))

    counts = {
        "changes": size.changes + len(work.items) // 3 + len(work.items) // 6,
        "mailboxes": size.mailboxes,
        "graph 429 answered": sum(1 for r in graph_log if r["status"] == 429),
        "graph 503 answered": sum(1 for r in graph_log if r["status"] == 503),
        "connector": stack.connector,
        "crm errors answered (5xx, 412, 429)": crm_errors,
        "notifications sent (dup/reorder/drop on)": len(stack.graph.notifications_sent),
        "webhook deliveries": stack.side.webhook_deliveries,
        "host kills": killer.kills,
        "invocations killed mid-message": cancels.cancelled,
        "test's own retries": work.own_retries,
        "retries (failures recorded)": sum(int(f.get("Attempts") or 1) for f in failures),
        "sweep": f"{sweep.mailboxes} mailboxes, {sweep.crm_changes} CRM changes",
        "poisoned": len(poisoned),
        "replayed": len(report.moved),
        "poisoned after replay": len(still_poisoned),
        "still leased by a killed host": hidden,
        "duplicates": len(verdict.duplicates),
        "lost": len(verdict.lost),
        "disagree": len(verdict.disagree),
    }
    print("\nchaos run (" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + ")")
    for line in verdict.duplicates + verdict.lost + verdict.disagree:
        print("  ", line)

    assert settled, "the queue did not drain after the faults stopped"
    assert len(poisoned) >= len(UNPROCESSABLE), "the unprocessable messages reached the poison queue"
    assert unexplained == [], f"poison items without a recorded reason: {unexplained}"
    assert report.ok and len(report.moved) == len(poisoned)
    # What stays poisoned after replay is exactly the input that can never be processed. A host killed after
    # poisoning a message but before completing it poisons the redelivered copy too: at least once, harmless.
    assert sorted({p.body for p in still_poisoned}) == sorted(UNPROCESSABLE)
    assert verdict.duplicates == []
    assert verdict.lost == []
    assert verdict.disagree == []
