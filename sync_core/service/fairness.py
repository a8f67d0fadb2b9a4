"""Fairness and coalescing of queue work (issue 20). I/O side, in-process state only.

Three mechanisms, each working with Azure Storage queues and the Functions host as they are:

- **Bulk work on its own queue** (`sync-bulk`): the per-item changes a mailbox resync or backfill finds,
  and a mailbox's notifications past its burst (`ingress.graph.BurstGate`), are queued there, not on
  `sync-changes`. The host runs each queue trigger with its own batch, so a live change never waits behind
  a 2,000-event backfill or a 1,000-notification burst in queue order; `bulk_slot` keeps at most
  `BULK_CONCURRENCY` bulk messages in work per process, each started only when no live message is in work
  (or after `BULK_YIELD_SECONDS`), so the live queue keeps the CPU and the mailbox's Graph places.
- **Coalescing** (`Coalescer`): messages about the same item are handled one at a time per process, and a
  message that reached this process before a successful handling of the same item *began* is already
  served by that handling's reads (a queue message is a hint that something changed before it was sent),
  so it is acknowledged without a Graph read; an item handled in the last 2 s waits 150 ms before its next
  read, so a run of edits shares reads. Repeated notifications for one item within a short window cost one
  or a few reads, not N. Arrival and start are this process's monotonic clock: no clock of another
  instance is trusted. Across instances nothing is shared: each process coalesces what it receives.
- **Per-mailbox rate at the ingress** (`ingress.graph.BurstGate`): a token bucket per mailbox and process;
  a mailbox past its burst sends the rest of its notifications to the bulk queue, where they are still
  handled. At-least-once is unchanged: every message is either handled or acknowledged because a handling
  that began after it arrived succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sync_core.domain.messages import AnyMessage, CrmChange, GraphChange

BULK_CONCURRENCY = 2  # bulk messages in work per process at once...
BULK_YIELD_SECONDS = 2.0  # ...each starting only once no live message is in work, or after this wait
REMEMBERED_ITEMS = 20_000  # items whose last handling start is kept (about 2 MB)
HOT_SECONDS = 2.0  # an item handled this recently is "hot": its next handling first waits...
DEBOUNCE_SECONDS = 0.15  # ...this long, so the notifications of a run of edits share one read

COALESCED = "coalesced"


def item_key(message: AnyMessage) -> tuple[str, ...] | None:
    """What a message is about, for coalescing; None for messages that are not about one item."""
    if isinstance(message, GraphChange):
        return ("m365", message.mailbox.lower(), message.event_id, message.change_type)
    if isinstance(message, CrmChange):
        return ("crm", message.crm_id, message.change_type)
    return None


@dataclass
class Coalescer:
    """One per event loop (`for_loop`). `run` hands a message to `handler` unless a handling of the same
    item that began after the message arrived here has already succeeded."""

    clock: Callable[[], float] = time.monotonic
    started: OrderedDict[tuple[str, ...], float] = field(default_factory=OrderedDict)
    _locks: dict[tuple[str, ...], tuple[asyncio.Lock, int]] = field(default_factory=dict)
    coalesced: int = 0

    async def run(self, message: AnyMessage, handler: Callable[[AnyMessage], Awaitable[Any]]) -> Any:
        key = item_key(message)
        if key is None:
            return await handler(message)
        arrived = self.clock()
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                done = self.started.get(key)
                if done is not None and done > arrived:
                    self.coalesced += 1
                    return COALESCED
                # Let messages of the same batch reach the lock first: their arrival then precedes this
                # start, and this one handling covers them. An item handled moments ago is being edited in a
                # run: wait a little longer, so the run's next notifications are covered too.
                hot = done is not None and self.clock() - done < HOT_SECONDS
                await asyncio.sleep(DEBOUNCE_SECONDS if hot else 0)
                start = self.clock()
                result = await handler(message)
                self.started[key] = start
                self.started.move_to_end(key)
                while len(self.started) > REMEMBERED_ITEMS:
                    self.started.popitem(last=False)
                return result
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


@dataclass
class _Bulk:
    """Per event loop: live messages in work, and the places of bulk messages."""

    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(BULK_CONCURRENCY))
    live: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()


_coalescers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Coalescer] = weakref.WeakKeyDictionary()
_bulks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Bulk] = weakref.WeakKeyDictionary()


def coalescer() -> Coalescer:
    """The running event loop's coalescer."""
    loop = asyncio.get_running_loop()
    found = _coalescers.get(loop)
    if found is None:
        found = _coalescers[loop] = Coalescer()
    return found


def _bulk() -> _Bulk:
    loop = asyncio.get_running_loop()
    found = _bulks.get(loop)
    if found is None:
        found = _bulks[loop] = _Bulk()
    return found


@contextlib.asynccontextmanager
async def live_work() -> AsyncIterator[None]:
    """Around a live queue message: bulk messages wait while one is in work."""
    state = _bulk()
    state.live += 1
    state.idle.clear()
    try:
        yield
    finally:
        state.live -= 1
        if state.live == 0:
            state.idle.set()


@contextlib.asynccontextmanager
async def bulk_slot() -> AsyncIterator[None]:
    """Around a bulk queue message: one of BULK_CONCURRENCY places, taken when no live message is in work
    (or after BULK_YIELD_SECONDS, so bulk work never starves)."""
    state = _bulk()
    async with state.slots:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.idle.wait(), BULK_YIELD_SECONDS)
        yield
