"""What the emulators' change notifications share: one client task per notification on the emulator's loop,
tried again as long as the emulated service would, every attempt logged, `wait_idle` for the tests.

I/O side: aiohttp client tasks on the emulator's loop, never awaited by an API handler. Each emulator
(crm_emulator, dataverse_emulator, salesforce_emulator) says what it posts and when it tries again.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

import aiohttp

D = TypeVar("D")


class RetryingSender(Generic[D]):
    """The session, the tasks and the log of attempts (`D`, one per POST) of a notification sender.

    `clear` forgets the log and abandons the deliveries still being tried (an emulator reset); `wait_idle`
    blocks until every reserved delivery is done, from any thread.
    """

    def __init__(self, *, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cond = threading.Condition()  # its lock is re-entrant: subclasses may hold it around _reserve
        self._generation = 0  # bumped by clear(): older deliveries stop and are not logged
        self._pending = 0
        self._deliveries: list[D] = []

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        with self._cond:
            self._pending = 0
            self._cond.notify_all()

    @property
    def deliveries(self) -> list[D]:
        with self._cond:
            return list(self._deliveries)

    def clear(self) -> None:
        """Forget the delivery log and abandon deliveries still being tried (emulator reset)."""
        with self._cond:
            self._generation += 1
            self._deliveries.clear()

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted notification was delivered or given up; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def _reserve(self, copies: int) -> int:
        """Count `copies` deliveries as pending before they start; the generation they belong to."""
        with self._cond:
            self._pending += copies
            return self._generation

    def _spawn(self, delivery: Coroutine[Any, Any, None]) -> None:
        """On the emulator's loop: run one delivery (a `_retry`) as a task that `close` cancels."""
        task = asyncio.get_running_loop().create_task(delivery)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry(
        self,
        generation: int,
        attempt: Callable[[int], Awaitable[D]],
        next_delay: Callable[[int, D], float | None],
    ) -> None:
        """Make `attempt(1)`, `attempt(2)`, … until `next_delay(number, delivery)` answers None (delivered,
        or given up), waiting the seconds it answers in between; stop once `clear` has run."""
        try:
            for number in itertools.count(1):
                if generation != self._generation:
                    return
                delivery = await attempt(number)
                with self._cond:
                    if generation == self._generation:
                        self._deliveries.append(delivery)
                delay = next_delay(number, delivery)
                if delay is None:
                    return
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int | None, bytes, str | None]:
        """One POST: (status, answer, None), or (the status if one came, b"", the error) when the request
        itself failed."""
        assert self._session is not None
        status: int | None = None
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                status = response.status
                return status, await response.read(), None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return status, b"", f"{type(exc).__name__}: {exc}"
