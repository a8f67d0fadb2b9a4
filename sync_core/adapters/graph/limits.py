"""Per-mailbox request budget for Microsoft Graph, retry pacing, and the time limit of one invocation. I/O
side.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

from sync_core.errors import ConfigurationError, ThrottledError

# Outlook's limits per app and mailbox, for all of the app's processes together:
# https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits
MAX_CONCURRENT_PER_MAILBOX = 4
WINDOW_SECONDS = 600.0
BUDGET_PER_WINDOW = 9_000  # a margin under Outlook's 10,000 per app and mailbox
FUNCTION_TIMEOUT_SECONDS = 600.0  # host.json functionTimeout 00:10:00
DEADLINE_MARGIN_SECONDS = 30.0  # left for the trigger to record the outcome or re-enqueue the message
QUEUE_RETRY_SECONDS = 1.0  # Retry-After we report when our own limiter refuses before the deadline

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("graph_deadline", default=None)


@contextmanager
def time_limit(seconds: float, *, clock: Callable[[], float] = time.monotonic) -> Iterator[float]:
    """Bound every Graph wait in this block (one invocation) to `seconds` from now; the tighter one wins."""
    wanted = clock() + seconds
    current = _deadline.get()
    token = _deadline.set(wanted if current is None else min(current, wanted))
    try:
        yield wanted
    finally:
        _deadline.reset(token)


def deadline(*, clock: Callable[[], float] = time.monotonic) -> float:
    """The instant (on `clock`) after which no Graph call may still be waiting."""
    limit = clock() + FUNCTION_TIMEOUT_SECONDS - DEADLINE_MARGIN_SECONDS
    current = _deadline.get()
    return limit if current is None else min(current, limit)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, for failures that came without a Retry-After."""

    base: float = 0.25
    cap: float = 8.0
    attempts: int = 4  # tries in all, the first included
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int) -> float:
        """Pause before retry number `attempt` (1-based): uniform in [0, min(cap, base * 2**attempt)]."""
        return self.rng.uniform(0, min(self.cap, self.base * (2**attempt)))


@dataclass
class _Waiter:
    n: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = False


class MailboxLimiter:
    """Bounds in-flight requests and the request rate per mailbox; thread- and loop-safe.

    `slot(mailbox, n)` holds n of the mailbox's places (a `$batch` holds as many as it runs at once) and
    spends n requests of its budget. Waiting is first come, first served and ends at the deadline with a
    ThrottledError, so the queue message goes back with a visibility delay instead of holding the worker.
    """

    def __init__(
        self,
        *,
        concurrency: int = MAX_CONCURRENT_PER_MAILBOX,
        budget: int = BUDGET_PER_WINDOW,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.concurrency = concurrency
        self._budget = budget
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._waiters: dict[str, deque[_Waiter]] = {}
        self._sent: dict[str, deque[float]] = {}
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, mailbox: str, n: int = 1, *, until: float | None = None) -> AsyncIterator[None]:
        key = mailbox.lower()
        n = max(1, min(n, self.concurrency))
        self._spend(key, n)
        await self._acquire(key, n, until)
        try:
            yield
        finally:
            self._release(key, n)

    def _take(self, key: str, n: int) -> None:
        count = self.in_flight[key] = self.in_flight.get(key, 0) + n
        self.max_in_flight[key] = max(self.max_in_flight.get(key, 0), count)

    async def _acquire(self, key: str, n: int, until: float | None) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            queue = self._waiters.setdefault(key, deque())
            if not queue and self.in_flight.get(key, 0) + n <= self.concurrency:
                self._take(key, n)
                return
            waiter = _Waiter(n, loop, loop.create_future())
            queue.append(waiter)
        timeout = None if until is None else max(until - self._clock(), 0.0)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except BaseException as exc:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    queue.remove(waiter)
                    self._grant(key)  # a smaller request behind this one may fit now
            if granted:
                self._release(key, n)
            if isinstance(exc, TimeoutError):
                raise ThrottledError(
                    f"no Graph slot for {key} before the time limit",
                    retry_after=QUEUE_RETRY_SECONDS,
                    side="graph",
                    mailbox=key,
                ) from None
            raise

    def _grant(self, key: str) -> None:
        """Hand free places to waiters in order (caller holds the lock)."""
        queue = self._waiters.get(key)
        while queue and self.in_flight.get(key, 0) + queue[0].n <= self.concurrency:
            waiter = queue.popleft()
            waiter.granted = True
            self._take(key, waiter.n)
            waiter.loop.call_soon_threadsafe(_resolve, waiter.future)

    def _release(self, key: str, n: int) -> None:
        with self._lock:
            self.in_flight[key] -= n
            self._grant(key)

    def _spend(self, key: str, n: int) -> None:
        with self._lock:
            now = self._clock()
            sent = self._sent.setdefault(key, deque())
            while sent and sent[0] <= now - self._window:
                sent.popleft()
            if len(sent) + n > self._budget:
                wait = sent[0] + self._window - now if sent else self._window
                raise ThrottledError(
                    f"local Graph budget for {key} spent ({self._budget} per {int(self._window)} s)",
                    retry_after=max(wait, 1.0),
                    side="graph",
                    mailbox=key,
                )
            sent.extend([now] * n)

    def spent(self, mailbox: str) -> int:
        """Requests counted against `mailbox` in the current window."""
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._sent.get(mailbox.lower(), ()) if t > now - self._window)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_shared: MailboxLimiter | None = None
_shared_lock = threading.Lock()


# The places per mailbox this process may hold: its share of Outlook's 4 when several processes call Graph.
# Set by infra/modules/functionapp.bicep to max(1, 4 / maximumInstanceCount); docs/deploy.md, "Scale".
CONCURRENCY_SETTING = "GRAPH_MAILBOX_CONCURRENCY"


def process_share(environ: dict[str, str] | None = None) -> int:
    """This process's places per mailbox (GRAPH_MAILBOX_CONCURRENCY, 1 to 4; all 4 when unset)."""
    raw = (os.environ if environ is None else environ).get(CONCURRENCY_SETTING, "").strip()
    if not raw:
        return MAX_CONCURRENT_PER_MAILBOX
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_CONCURRENT_PER_MAILBOX:
        raise ConfigurationError(
            [f"{CONCURRENCY_SETTING}: a whole number from 1 to {MAX_CONCURRENT_PER_MAILBOX}, not {raw!r}"]
        )
    return int(raw)


def limiter_for_share(share: int) -> MailboxLimiter:
    """A limiter holding `share` of the 4 places and the same fraction of the request budget."""
    return MailboxLimiter(concurrency=share, budget=BUDGET_PER_WINDOW * share // MAX_CONCURRENT_PER_MAILBOX)


def shared_limiter() -> MailboxLimiter:
    """The process-wide limiter every GraphAdapter uses unless given its own (tests), sized by
    `process_share()`: N processes with a share of 4 // N each hold 4 places per mailbox at most together."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = limiter_for_share(process_share())
        return _shared
