"""Per-mailbox request budget for Microsoft Graph: 4 in flight and under 10,000 per 10 minutes (facts §10).

Shared by everything in one process that talks to Graph. Async, no I/O of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sync_core.errors import ThrottledError

MAX_CONCURRENT_PER_MAILBOX = 4
WINDOW_SECONDS = 600.0
BUDGET_PER_WINDOW = 9_000  # a margin under Outlook's 10,000 per app and mailbox


class MailboxLimiter:
    """Bounds concurrency and request rate per mailbox; refuses (ThrottledError) instead of waiting long."""

    def __init__(
        self,
        *,
        concurrency: int = MAX_CONCURRENT_PER_MAILBOX,
        budget: int = BUDGET_PER_WINDOW,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._concurrency = concurrency
        self._budget = budget
        self._window = window
        self._clock = clock
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._sent: dict[str, deque[float]] = {}
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, mailbox: str) -> AsyncIterator[None]:
        key = mailbox.lower()
        self._spend(key)
        sem = self._semaphores.setdefault(key, asyncio.Semaphore(self._concurrency))
        async with sem:
            n = self.in_flight[key] = self.in_flight.get(key, 0) + 1
            self.max_in_flight[key] = max(self.max_in_flight.get(key, 0), n)
            try:
                yield
            finally:
                self.in_flight[key] -= 1

    def _spend(self, key: str) -> None:
        now = self._clock()
        sent = self._sent.setdefault(key, deque())
        while sent and sent[0] <= now - self._window:
            sent.popleft()
        if len(sent) >= self._budget:
            wait = sent[0] + self._window - now
            raise ThrottledError(
                f"local Graph budget for {key} spent ({self._budget} per {int(self._window)} s)",
                retry_after=max(wait, 1.0),
                side="graph",
                mailbox=key,
            )
        sent.append(now)
