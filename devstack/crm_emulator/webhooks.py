"""Signed webhook delivery for the CRM emulator: one POST per change, retried with backoff.

I/O side: aiohttp client tasks on the emulator's loop; never awaited by an API handler.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from devstack.crm_emulator.store import ChangeEvent
from sync_core.ports.crm_webhook import sign

log = logging.getLogger("devstack.crm_emulator")


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt: `status` is None when the request itself failed (`error`)."""

    event_id: str
    event_type: str
    url: str
    attempt: int
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    """Delivers change events to `url`, signed with every secret in `secrets` (two during a rotation).

    `submit` is thread-safe and returns at once. Retries carry a fresh timestamp and signature and
    the same event id, so a receiver de-duplicates by event id.
    """

    def __init__(
        self,
        secrets: Sequence[str],
        *,
        url: str | None = None,
        attempts: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.secrets: tuple[str, ...] = tuple(secrets)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cond = threading.Condition()
        self._generation = 0  # bumped by clear(): older deliveries stop and are not logged
        self._pending = 0
        self._deliveries: list[Delivery] = []

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        with self._cond:
            self._pending = 0
            self._cond.notify_all()

    @property
    def deliveries(self) -> list[Delivery]:
        with self._cond:
            return list(self._deliveries)

    def clear(self) -> None:
        """Forget the delivery log and abandon deliveries still retrying (emulator reset)."""
        with self._cond:
            self._generation += 1
            self._deliveries.clear()

    def submit(
        self, events: Sequence[ChangeEvent], *, duplicate_rate: float = 0.0, rng: random.Random
    ) -> None:
        """Queue one delivery per event (two when the duplicate fault fires). Any thread."""
        url, loop = self.url, self._loop
        if url is None or loop is None or loop.is_closed() or not events:
            return
        jobs = [e for e in events for _ in range(2 if rng.random() < duplicate_rate else 1)]
        with self._cond:
            self._pending += len(jobs)
            generation = self._generation
        for event in jobs:
            loop.call_soon_threadsafe(self._start, event, url, generation)

    def _start(self, event: ChangeEvent, url: str, generation: int) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(event, url, generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted event was delivered or gave up; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    async def _deliver(self, event: ChangeEvent, url: str, generation: int) -> None:
        body = json.dumps({"events": [event.to_json()]}, separators=(",", ":")).encode()
        try:
            for attempt in range(1, self.attempts + 1):
                if generation != self._generation:
                    return
                if await self._post(event, url, body, attempt, generation):
                    log.info("webhook %s %s delivered (attempt %d)", event.id, event.type, attempt)
                    return
                if attempt < self.attempts:
                    await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            log.warning("webhook %s %s given up after %d attempts", event.id, event.type, self.attempts)
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    async def _post(self, event: ChangeEvent, url: str, body: bytes, attempt: int, generation: int) -> bool:
        assert self._session is not None
        headers = {"Content-Type": "application/json", **sign(body, self.secrets, int(time.time()))}
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery = Delivery(event.id, event.type, url, attempt, status, error)
        with self._cond:
            if generation == self._generation:
                self._deliveries.append(delivery)
        return delivery.ok
