"""Delivers change and lifecycle notifications to subscribers, asynchronously, with injected faults."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from devstack.graph_emulator import ids
from devstack.graph_emulator.clock import Clock
from devstack.graph_emulator.faults import Faults
from devstack.graph_emulator.state import Change, EmulatorState, Subscription
from devstack.graph_emulator.timezones import format_instant

LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Notifier:
    """Builds Graph-shaped notification payloads and POSTs them from the emulator's event loop."""

    def __init__(
        self,
        state: EmulatorState,
        faults: Faults,
        clock: Clock,
        tenant_id: str,
        timeout: float = 3.0,
        retries: int = 2,
        retry_backoff: float = 0.2,
    ) -> None:
        self.state = state
        self.faults = faults
        self.clock = clock
        self.tenant_id = tenant_id
        self.timeout = timeout
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.loop: asyncio.AbstractEventLoop | None = None
        self.session: aiohttp.ClientSession | None = None
        self.sent_lock = threading.Lock()
        self.sent: list[dict[str, Any]] = []
        self._buffers: dict[str, list[tuple[str, dict[str, Any], float, str, str]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
        self.loop, self.session = loop, session

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._buffers.clear()

    # -- building --------------------------------------------------------------------------------

    def purge_expired(self) -> None:
        """Graph deletes a subscription once its expirationDateTime passes."""
        now = self.clock.now()
        with self.state.lock:
            for sub_id, sub in list(self.state.subscriptions.items()):
                if sub.expiration <= now:
                    del self.state.subscriptions[sub_id]

    def on_change(self, change: Change) -> None:
        """State listener: queue one notification per matching subscription (never blocks)."""
        self.purge_expired()
        with self.state.lock:
            targets = [
                sub
                for sub in self.state.subscriptions.values()
                if sub.mailbox_id == change.mailbox_id and change.change_type in sub.change_types
            ]
        for sub in targets:
            resource = f"Users/{change.mailbox_id}/Events/{change.event_id}"
            item = {
                "id": ids.opaque_token(9),
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": format_instant(sub.expiration),
                "clientState": sub.client_state,
                "changeType": change.change_type,
                "resource": resource,
                "tenantId": self.tenant_id,
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Event",
                    "@odata.id": resource,
                    "@odata.etag": change.etag,
                    "id": change.event_id,
                },
            }
            copies, delay, window = self.faults.for_notification(change.mailbox_id)
            if copies == 0:
                self._record(
                    "change", sub.notification_url, {"value": [item]}, sub.id, None, "dropped by fault"
                )
                continue
            for _ in range(copies):
                self._schedule(
                    change.mailbox_id, sub.notification_url, {"value": [item]}, delay, window, sub.id
                )

    def lifecycle(self, sub: Subscription, event: str) -> bool:
        """Queue a lifecycle notification; False when the subscription has no lifecycleNotificationUrl."""
        if sub.lifecycle_url is None:
            return False
        payload = {
            "value": [
                {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": format_instant(sub.expiration),
                    "tenantId": self.tenant_id,
                    "clientState": sub.client_state,
                    "lifecycleEvent": event,
                }
            ]
        }
        self._schedule(sub.mailbox_id, sub.lifecycle_url, payload, 0.0, 0.0, sub.id, kind="lifecycle")
        return True

    # -- delivery --------------------------------------------------------------------------------

    def _schedule(
        self,
        mailbox_id: str,
        url: str,
        payload: dict[str, Any],
        delay: float,
        window: float,
        sub_id: str,
        kind: str = "change",
    ) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            self._record(kind, url, payload, sub_id, None, "emulator not running")
            return
        loop.call_soon_threadsafe(self._enqueue, mailbox_id, url, payload, delay, window, sub_id, kind)

    def _enqueue(
        self,
        mailbox_id: str,
        url: str,
        payload: dict[str, Any],
        delay: float,
        window: float,
        sub_id: str,
        kind: str,
    ) -> None:
        if window <= 0:
            self._spawn(url, payload, delay, sub_id, kind)
            return
        buffer = self._buffers.setdefault(mailbox_id, [])
        buffer.append((url, payload, delay, sub_id, kind))
        if len(buffer) == 1 and self.loop is not None:
            self.loop.call_later(window, self._flush, mailbox_id)

    def _flush(self, mailbox_id: str) -> None:
        # Newest first: the reorder fault delivers each buffered burst backwards.
        for url, payload, delay, sub_id, kind in reversed(self._buffers.pop(mailbox_id, [])):
            self._spawn(url, payload, delay, sub_id, kind)

    def _spawn(self, url: str, payload: dict[str, Any], delay: float, sub_id: str, kind: str) -> None:
        task = asyncio.ensure_future(self._deliver(url, payload, delay, sub_id, kind))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, payload: dict[str, Any], delay: float, sub_id: str, kind: str) -> None:
        if delay:
            await asyncio.sleep(delay)
        assert self.session is not None
        for attempt in range(self.retries + 1):
            status: int | None = None
            error: str | None = None
            try:
                async with self.session.post(
                    url,
                    json=payload,
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                ) as response:
                    status = response.status
                    await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            self._record(kind, url, payload, sub_id, status, error, attempt)
            if status is not None and 200 <= status < 300:
                return
            # Graph retries for hours with exponential backoff; the emulator compresses that.
            await asyncio.sleep(self.retry_backoff * 2**attempt)

    def _record(
        self,
        kind: str,
        url: str,
        payload: dict[str, Any],
        sub_id: str,
        status: int | None,
        error: str | None,
        attempt: int = 0,
    ) -> None:
        with self.sent_lock:
            self.sent.append(
                {
                    "kind": kind,
                    "url": url,
                    "subscription_id": sub_id,
                    "payload": payload,
                    "status": status,
                    "error": error,
                    "attempt": attempt,
                    "time": format_instant(self.clock.now()),
                }
            )
