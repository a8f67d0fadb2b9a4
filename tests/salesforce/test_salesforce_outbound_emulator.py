"""The Salesforce emulator's outbound message (devstack/salesforce_emulator/outbound.py) against the door:
a notification per Event create or edit, the latest data at sending, retried until acknowledged, sent twice
on demand (and queued once), none for a deletion.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from azure.data.tables.aio import TableClient

from devstack.salesforce_emulator import ORG_ID, SalesforceEmulator
from sync_core.adapters.crm.salesforce_outbound import parse_message
from sync_core.adapters.storage.replays import ReplayGuard
from sync_core.domain.model import Appointment
from sync_core.ingress.salesforce import handle_salesforce_outbound
from tests.front_door import Loopback
from tests.salesforce.test_salesforce_outbound import Queue

T0 = datetime(2026, 6, 1, 10, tzinfo=UTC)


class Receiver(Loopback):
    """A loopback endpoint in front of the real door; `answers` (status, body) are returned first."""

    path = "/api/crm/salesforce/webhook"
    query = "?code=key"

    def __init__(self, table: TableClient) -> None:
        super().__init__()
        self.queue = Queue()
        self.table = table
        self.answers: list[tuple[int, str]] = []
        self.bodies: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        if self.answers:
            status, text = self.answers.pop(0)
            return web.Response(status=status, text=text)
        reply = await handle_salesforce_outbound(
            body,
            connector="salesforce",
            org_id=ORG_ID,
            enqueue=self.queue.enqueue,
            replays=ReplayGuard(self.table),
            now=datetime.now(UTC),
        )
        return web.Response(status=reply.status, text=reply.body, content_type="text/xml")


@pytest.fixture
async def receiver(backend: SalesforceEmulator, seen: TableClient) -> AsyncIterator[Receiver]:
    async with Receiver(seen) as r:
        backend.outbound.endpoint = r.url
        yield r
    backend.outbound.endpoint = None


async def settled(backend: SalesforceEmulator) -> None:
    assert await asyncio.to_thread(backend.outbound.wait_idle, 10.0)


def create(backend: SalesforceEmulator, subject: str = "Review") -> str:
    made = backend.user_create(Appointment(subject=subject, start=T0, end=T0 + timedelta(hours=1)))
    return str(made["Id"])


async def test_a_create_and_an_edit_are_two_notifications_with_the_latest_data_and_two_hints(
    backend: SalesforceEmulator, receiver: Receiver
) -> None:
    event = await asyncio.to_thread(create, backend)
    await settled(backend)
    await asyncio.to_thread(backend.user_update, event, subject="Moved")
    await settled(backend)
    assert receiver.queue.ids() == [event, event]
    [first], [second] = (parse_message(b).notifications for b in receiver.bodies)
    assert first.notification_id != second.notification_id
    assert (second.object_type, second.record_id) == ("Event", event)
    assert set(second.fields) == {"Id", "LastModifiedById", "SystemModstamp", "msync_Status__c"}
    assert second.fields["SystemModstamp"] == backend.events()[0]["SystemModstamp"]  # the latest data
    assert [(d.status, d.acked) for d in backend.outbound.deliveries] == [(200, True), (200, True)]


async def test_an_answer_without_ack_is_retried_with_the_same_notification_id_until_acknowledged(
    backend: SalesforceEmulator, receiver: Receiver
) -> None:
    receiver.answers = [(503, "busy"), (200, "<not-an-ack/>"), (500, "")]
    event = await asyncio.to_thread(create, backend)
    await settled(backend)
    tries = backend.outbound.deliveries
    assert [(d.attempt, d.status, d.acked) for d in tries] == [
        (1, 503, False),
        (2, 200, False),
        (3, 500, False),
        (4, 200, True),
    ]
    assert len({d.notification_id for d in tries}) == 1
    assert receiver.queue.ids() == [event]


async def test_a_message_sent_twice_is_acknowledged_twice_and_queued_once(
    backend: SalesforceEmulator, receiver: Receiver
) -> None:
    backend.outbound.duplicate = True
    event = await asyncio.to_thread(create, backend)
    await settled(backend)
    deliveries = backend.outbound.deliveries
    assert [(d.status, d.acked) for d in deliveries] == [(200, True), (200, True)]
    assert len({d.notification_id for d in deliveries}) == 1
    assert receiver.queue.ids() == [event]


async def test_a_deletion_sends_nothing_and_a_record_deleted_before_sending_is_sent_without_data(
    backend: SalesforceEmulator, receiver: Receiver
) -> None:
    receiver.answers = [(503, "busy")]  # the first try fails; the record is deleted before the retry
    backend.outbound.first_retry_s = 0.5
    try:
        event = await asyncio.to_thread(create, backend)
        await asyncio.to_thread(backend.user_delete, event)
        await settled(backend)
    finally:
        backend.outbound.first_retry_s = 0.05
    assert len(receiver.bodies) == 2  # the create's message twice: no message for the deletion
    [retried] = parse_message(receiver.bodies[1]).notifications
    assert (retried.record_id, dict(retried.fields)) == (None, {})
    assert receiver.queue.sent == []  # nothing to read: the change feed reports the deletion
