"""The CRM emulator announces every change with a signed webhook, which `verify_signature` accepts.

A tiny aiohttp receiver on loopback plays our /api/crm/webhook endpoint.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from devstack.crm_emulator import DEFAULT_WEBHOOK_SECRET, CrmEmulator
from sync_core.adapters.crm.rest import RestCrmConnector
from sync_core.domain.model import Appointment
from sync_core.ports.crm_webhook import CrmWebhookEvent, WebhookRejected, parse_events, verify_signature

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
APPT = Appointment(subject="Review", start=START, end=START + timedelta(hours=1))


@dataclass
class Receiver:
    """Verifies each POST like the real endpoint; `script` holds statuses to answer before 202.

    With `hold` set, each POST waits for that event before it is answered (10 s at most).
    """

    secrets: list[str] = field(default_factory=lambda: [DEFAULT_WEBHOOK_SECRET])
    script: list[int] = field(default_factory=list)
    hold: asyncio.Event | None = None
    events: list[CrmWebhookEvent] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    hits: int = 0
    url: str = ""
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._handle(request)
        finally:
            async with self.changed:
                self.changed.notify_all()

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        async with self.changed:
            self.changed.notify_all()  # a held POST is seen as soon as it arrives
        body = await request.read()
        if self.hold is not None:
            await asyncio.wait_for(self.hold.wait(), 10.0)
        if self.script:
            return web.Response(status=self.script.pop(0))
        assert request.query.get("code") == "function-key"
        try:
            verify_signature(request.headers, body, self.secrets, time.time())
        except WebhookRejected as exc:
            self.refusals.append(exc.reason)
            return web.json_response({"error": exc.reason}, status=exc.status)
        self.events += parse_events(body)
        return web.Response(status=202)

    async def wait_until(self, done: Callable[[], bool], within: float = 30.0) -> None:
        try:
            async with asyncio.timeout(within), self.changed:
                await self.changed.wait_for(done)
        except TimeoutError:
            raise AssertionError(
                f"waited {within} s; webhook events received: {self.events!r:.2000}"
            ) from None

    async def wait_for(self, count: int) -> list[CrmWebhookEvent]:
        await self.wait_until(lambda: len(self.events) >= count)
        return self.events


@pytest.fixture
async def receiver(crm: CrmEmulator) -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/api/crm/webhook", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    rec.url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/crm/webhook?code=function-key"
    crm.set_webhook_url(rec.url)
    yield rec
    crm.set_webhook_url(None)
    await runner.cleanup()


async def test_a_create_through_the_api_sends_one_signed_created_event(
    crm: CrmEmulator, receiver: Receiver, connector: RestCrmConnector
) -> None:
    created = await connector.create_appointment(APPT, idempotency_key="k", external_ref="m")
    [event] = await receiver.wait_for(1)
    assert (event.type, event.appointment_id, event.version) == (
        "appointment.created",
        created.crm_id,
        created.version,
    )
    await connector.create_appointment(
        APPT, idempotency_key="k", external_ref="m"
    )  # replay: no change, no event
    # Every webhook the replay caused is queued before its response: wait until all were delivered.
    assert await asyncio.to_thread(crm.wait_for_webhooks, 5.0)
    assert len(crm.webhook_deliveries) == 1
    assert len(receiver.events) == 1 and receiver.refusals == []


async def test_changes_by_a_crm_user_send_updated_cancelled_and_deleted_events(
    crm: CrmEmulator, receiver: Receiver
) -> None:
    record = crm.user_create(APPT, created_by="alice@contoso.example")
    updated = crm.user_update(record["id"], subject="Moved", start=START + timedelta(days=1))
    cancelled = crm.user_cancel(record["id"])
    crm.user_delete(record["id"])
    events = await receiver.wait_for(4)
    got = {(e.type, e.version) for e in events}
    assert got == {
        ("appointment.created", record["version"]),
        ("appointment.updated", updated["version"]),
        ("appointment.cancelled", cancelled["version"]),
        ("appointment.deleted", cancelled["version"]),
    }
    assert record["origin"] == "crm" and record["created_by"] == "alice@contoso.example"
    assert len({e.id for e in events}) == 4


async def test_a_failed_delivery_is_retried_with_the_same_event_id_and_a_fresh_signature(
    crm: CrmEmulator, receiver: Receiver
) -> None:
    receiver.script = [500, 503]
    record = crm.user_create(APPT)
    [event] = await receiver.wait_for(1)
    # The emulator logs the third attempt once the 202 is back: wait for it (off the loop, it blocks).
    assert await asyncio.to_thread(crm.wait_for_webhooks, 5.0)
    assert event.appointment_id == record["id"] and receiver.hits == 3
    attempts = [d for d in crm.webhook_deliveries if d.event_id == event.id]
    assert [(d.attempt, d.status) for d in attempts] == [(1, 500), (2, 503), (3, 202)]


async def test_webhook_delivery_never_delays_the_api_response(
    crm: CrmEmulator, receiver: Receiver, connector: RestCrmConnector
) -> None:
    receiver.hold = asyncio.Event()  # the receiver answers no webhook until the create has returned
    created = await connector.create_appointment(APPT, idempotency_key="k", external_ref="m")
    await receiver.wait_until(lambda: receiver.hits == 1)
    assert receiver.events == []  # the create returned while its webhook was still unanswered
    receiver.hold.set()
    [event] = await receiver.wait_for(1)
    assert event.appointment_id == created.crm_id
    assert await asyncio.to_thread(crm.wait_for_webhooks, 5.0)
    # The held attempt itself was answered (202): the create did not wait for it to time out.
    assert [(d.attempt, d.status) for d in crm.webhook_deliveries] == [(1, 202)]


async def test_rotation_a_receiver_holding_only_the_new_secret_accepts_a_sender_signing_with_both(
    crm: CrmEmulator, receiver: Receiver
) -> None:
    receiver.secrets = ["new-secret"]
    crm.set_webhook_secrets(DEFAULT_WEBHOOK_SECRET, "new-secret")
    crm.user_create(APPT)
    await receiver.wait_for(1)
    crm.set_webhook_secrets("another-secret")
    crm.user_create(APPT)
    await receiver.wait_until(lambda: bool(receiver.refusals))
    assert receiver.refusals[0] == "bad signature"


async def test_the_duplicate_fault_delivers_the_same_event_twice(
    crm: CrmEmulator, receiver: Receiver
) -> None:
    crm.set_faults(duplicate_webhooks=1.0)
    crm.user_create(APPT)
    first, second = await receiver.wait_for(2)
    assert first == second
