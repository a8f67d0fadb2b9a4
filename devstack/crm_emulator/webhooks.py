"""Signed webhook delivery for the CRM emulator: one POST per change, retried with backoff.

I/O side: aiohttp client tasks on the emulator's loop; never awaited by an API handler.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from devstack.crm_emulator.store import ChangeEvent
from devstack.webhook_sender import RetryingSender
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


class WebhookSender(RetryingSender[Delivery]):
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
        super().__init__(timeout_s=timeout_s)
        self.url = url
        self.secrets: tuple[str, ...] = tuple(secrets)
        self.attempts = attempts
        self.backoff_s = backoff_s

    def submit(
        self, events: Sequence[ChangeEvent], *, duplicate_rate: float = 0.0, rng: random.Random
    ) -> None:
        """Queue one delivery per event (two when the duplicate fault fires). Any thread."""
        url, loop = self.url, self._loop
        if url is None or loop is None or loop.is_closed() or not events:
            return
        jobs = [e for e in events for _ in range(2 if rng.random() < duplicate_rate else 1)]
        generation = self._reserve(len(jobs))
        for event in jobs:
            loop.call_soon_threadsafe(self._start, event, url, generation)

    def _start(self, event: ChangeEvent, url: str, generation: int) -> None:
        body = json.dumps({"events": [event.to_json()]}, separators=(",", ":")).encode()

        def next_delay(attempt: int, delivery: Delivery) -> float | None:
            if delivery.ok:
                log.info("webhook %s %s delivered (attempt %d)", event.id, event.type, attempt)
                return None
            if attempt < self.attempts:
                return self.backoff_s * 2.0 ** (attempt - 1)
            log.warning("webhook %s %s given up after %d attempts", event.id, event.type, self.attempts)
            return None

        self._spawn(self._retry(generation, lambda n: self._attempt(event, url, body, n), next_delay))

    async def _attempt(self, event: ChangeEvent, url: str, body: bytes, attempt: int) -> Delivery:
        headers = {"Content-Type": "application/json", **sign(body, self.secrets, int(time.time()))}
        status, _, error = await self._post(url, body, headers)
        return Delivery(event.id, event.type, url, attempt, status, error)
