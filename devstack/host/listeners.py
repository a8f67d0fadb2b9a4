"""Queue and timer listeners: poll, lease, retry, poison; NCRONTAB schedules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceExistsError
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueMessage as StorageQueueMessage
from azure.storage.queue.aio import QueueClient

from devstack import ncrontab
from devstack.host.functions import HostedFunction, queue_message
from devstack.host.options import LEASE_SECONDS, MIN_POLL_SECONDS, QueueOptions

if TYPE_CHECKING:
    from devstack.host.devhost import DevHost

log = logging.getLogger("devstack.host")


@dataclass
class _Lease:
    message_id: str
    pop_receipt: str


@dataclass
class QueueListener:
    host: DevHost
    function: HostedFunction
    queue_name: str
    connection_string: str
    options: QueueOptions
    client: QueueClient | None = None
    poison: QueueClient | None = None
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    room: asyncio.Event = field(default_factory=asyncio.Event)

    async def open(self) -> None:
        self.client = QueueClient.from_connection_string(self.connection_string, self.queue_name)
        self.poison = QueueClient.from_connection_string(self.connection_string, f"{self.queue_name}-poison")
        for client in (self.client, self.poison):
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()

    async def close(self) -> None:
        for client in (self.client, self.poison):
            if client is not None:
                await client.close()

    async def run(self) -> None:
        assert self.client is not None
        delay = MIN_POLL_SECONDS
        while not self.host.stopping:
            # Fetch a new batch only once the in-flight count falls to newBatchThreshold.
            while len(self.in_flight) > self.options.new_batch_threshold and not self.host.stopping:
                self.room.clear()
                await self.room.wait()
            if self.host.stopping:
                return
            try:
                messages = await self._receive()
            except Exception:
                log.warning("Queue '%s': receive failed; retrying", self.queue_name, exc_info=True)
                messages = []
            for message in messages:
                task = self.host.spawn(self._process(message))
                self.in_flight.add(task)
                task.add_done_callback(self._done)
            if messages:
                delay = MIN_POLL_SECONDS
                continue
            await self.host.pause(delay)
            delay = min(delay * 2, self.options.max_polling_interval)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.room.set()

    async def _receive(self) -> list[StorageQueueMessage]:
        assert self.client is not None
        pages = self.client.receive_messages(
            messages_per_page=self.options.batch_size,
            max_messages=self.options.batch_size,
            visibility_timeout=LEASE_SECONDS,
        ).by_page()
        async for page in pages:  # one Get Messages call: the first page only
            return [message async for message in page]
        return []

    async def _process(self, message: StorageQueueMessage) -> None:
        assert self.client is not None
        text = str(message.content or "")
        count = int(message.dequeue_count or 0)
        if count > self.options.max_dequeue_count:  # e.g. left over from a crashed host
            await self._to_poison(message, text, "its dequeue count exceeds maxDequeueCount")
            return
        try:
            body = self.options.decode(text)
        except ValueError as exc:
            await self._to_poison(message, text, str(exc))
            return
        lease = _Lease(str(message.id), str(message.pop_receipt))
        keeper = asyncio.create_task(self._keep_lease(lease))
        trigger = queue_message(
            id=message.id,
            body=body,
            dequeue_count=count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            await self.host.invoke_function(
                self.function, trigger, f"New queue message detected on '{self.queue_name}'."
            )
        except asyncio.CancelledError:
            await self._stop_keeping(keeper)
            # Shutting down mid-invocation: make the message visible again rather than wait out the lease.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.client.update_message(lease.message_id, lease.pop_receipt))
            raise
        except Exception:
            await self._stop_keeping(keeper)
            log.error(
                "Function '%s' failed for message %s on '%s' (dequeue count %d of %d)",
                self.function.name,
                message.id,
                self.queue_name,
                count,
                self.options.max_dequeue_count,
            )
            if count >= self.options.max_dequeue_count:
                await self._to_poison(message, text, f"it failed {count} times", lease)
            else:
                await self._storage_call(
                    "release",
                    self.client.update_message(
                        lease.message_id,
                        lease.pop_receipt,
                        visibility_timeout=math.ceil(self.options.visibility_timeout),
                    ),
                )
        else:
            await self._stop_keeping(keeper)
            await self._storage_call(
                "delete", self.client.delete_message(lease.message_id, lease.pop_receipt)
            )

    async def _keep_lease(self, lease: _Lease) -> None:
        assert self.client is not None
        while True:
            await asyncio.sleep(LEASE_SECONDS / 2)
            updated = await self.client.update_message(
                lease.message_id, lease.pop_receipt, visibility_timeout=LEASE_SECONDS
            )
            lease.pop_receipt = str(updated.pop_receipt)

    @staticmethod
    async def _stop_keeping(keeper: asyncio.Task[None]) -> None:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await keeper

    async def _to_poison(
        self, message: StorageQueueMessage, text: str, why: str, lease: _Lease | None = None
    ) -> None:
        assert self.client is not None and self.poison is not None
        log.error("Moving message %s to queue '%s-poison': %s", message.id, self.queue_name, why)
        receipt = lease.pop_receipt if lease else str(message.pop_receipt)
        # The original stored text, still encoded, as the real host copies it.
        if await self._storage_call("poison", self.poison.send_message(text)):
            await self._storage_call("delete", self.client.delete_message(str(message.id), receipt))

    async def _storage_call(self, what: str, call: Awaitable[Any]) -> bool:
        try:
            await call
            return True
        except Exception:
            log.exception(
                "Queue '%s': %s failed; the message reappears after its lease", self.queue_name, what
            )
            return False


@dataclass
class TimerListener:
    host: DevHost
    function: HostedFunction
    schedule: str
    run_on_startup: bool
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    running: int = 0
    last: datetime | None = None

    async def run(self) -> None:
        if self.run_on_startup:
            self._start(datetime.now(UTC), past_due=False)
        while not self.host.stopping:
            due = ncrontab.next_occurrence(self.schedule, datetime.now(UTC))
            # Loop timers may wake a little early; never fire before the due second.
            while (remaining := (due - datetime.now(UTC)).total_seconds()) > 0 and not self.host.stopping:
                await self.host.pause(remaining)
            if self.host.stopping:
                return
            if self.running:
                log.warning(
                    "Timer '%s': skipping %s, the previous run is still going", self.function.name, due
                )
                continue
            self._start(due, past_due=(datetime.now(UTC) - due).total_seconds() > 1)

    def _start(self, due: datetime, past_due: bool) -> None:
        self.host.spawn(self.fire(due, past_due))

    async def fire(self, due: datetime, past_due: bool) -> None:
        """Run once, never overlapping another run of this timer."""
        self.running += 1
        try:
            async with self.lock:
                now = datetime.now(UTC)
                status = {
                    "Last": (self.last or now).isoformat(),
                    "Next": ncrontab.next_occurrence(self.schedule, now).isoformat(),
                    "LastUpdated": now.isoformat(),
                }
                self.last = now
                request = TimerRequest(past_due=past_due, schedule_status=status, schedule={})
                await self.host.invoke_function(self.function, request, f"Timer fired at {due.isoformat()}")
        finally:
            self.running -= 1
