"""The Graph front door: handshake, validation, clientState, one message per notification, 202."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azure.storage.queue import TextBase64DecodePolicy
from azure.storage.queue.aio import QueueClient

from sync_core.adapters.storage.core import (
    CONNECTION_TIMEOUT_SECONDS,
    READ_TIMEOUT_SECONDS,
    Storage,
    proxy_configured,
    upsert,
)
from sync_core.domain.messages import GraphChange, MailboxResync, decode
from sync_core.domain.subscription import SubscriptionRow, client_state_digest
from sync_core.errors import PermanentError
from sync_core.ingress.graph import handle_notifications, validation_reply
from sync_core.settings import Settings, load_settings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "graph"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SECRET = "s3cret-client-state"


def _row(sub_id: str = "11111111-1111-4111-8111-111111111111") -> SubscriptionRow:
    return SubscriptionRow(
        sub_id, "adele@contoso.example", client_state_digest(SECRET), datetime(2026, 11, 25, tzinfo=UTC)
    )


class Fakes:
    def __init__(self, rows: dict[str, SubscriptionRow]) -> None:
        self.rows = rows
        self.sent: list[str] = []

    async def lookup(self, sub_id: str) -> SubscriptionRow | None:
        return self.rows.get(sub_id)

    async def enqueue(self, text: str) -> None:
        self.sent.append(text)


def _documented_notification(
    client_state: str = SECRET, sub_id: str = "11111111-1111-4111-8111-111111111111"
) -> bytes:
    """Microsoft's documented event notification, with our subscription's id and secret filled in."""
    payload = json.loads((FIXTURES / "graph_change_notification_event_created.json").read_text())
    payload["value"][0]["subscriptionId"] = sub_id
    payload["value"][0]["clientState"] = client_state
    return json.dumps(payload).encode()


async def test_validation_handshake_returns_the_decoded_token_as_plain_text() -> None:
    fakes = Fakes({})
    reply = validation_reply({"validationToken": "a token/with+chars"})
    assert reply is not None
    assert (reply.status, reply.body, reply.content_type) == (200, "a token/with+chars", "text/plain")
    assert fakes.sent == []


async def test_a_valid_notification_is_enqueued_once_and_acknowledged_with_202() -> None:
    fakes = Fakes({"11111111-1111-4111-8111-111111111111": _row()})
    reply = await handle_notifications(_documented_notification(), fakes.lookup, fakes.enqueue, NOW)
    assert reply.status == 202
    assert len(fakes.sent) == 1
    message = decode(fakes.sent[0])
    assert isinstance(message, GraphChange)
    assert (message.mailbox, message.event_id, message.change_type) == (
        "adele@contoso.example",
        "{long_id_string}",
        "created",
    )


async def test_a_wrong_client_state_is_discarded_but_still_answered_202() -> None:
    fakes = Fakes({"11111111-1111-4111-8111-111111111111": _row()})
    reply = await handle_notifications(_documented_notification("forged"), fakes.lookup, fakes.enqueue, NOW)
    assert reply.status == 202
    assert fakes.sent == []
    assert json.loads(reply.body) == {"accepted": 0, "discarded": 1}


async def test_an_unknown_subscription_is_discarded_but_still_answered_202() -> None:
    fakes = Fakes({"11111111-1111-4111-8111-111111111111": _row()})
    reply = await handle_notifications(
        _documented_notification(sub_id="33333333-3333-4333-8333-333333333333"),
        fakes.lookup,
        fakes.enqueue,
        NOW,
    )
    assert reply.status == 202
    assert fakes.sent == []


async def test_malformed_bodies_get_400_with_a_reason_and_enqueue_nothing() -> None:
    fakes = Fakes({"11111111-1111-4111-8111-111111111111": _row()})
    for body in (b"", b"not json", b"{}", b'{"value": []}', b'{"value": [{"clientState": "x"}]}'):
        reply = await handle_notifications(body, fakes.lookup, fakes.enqueue, NOW)
        assert reply.status == 400, body
        assert "malformed notification" in json.loads(reply.body)["error"]
    assert fakes.sent == []


async def test_a_batch_mixing_subscriptions_enqueues_only_the_authentic_ones() -> None:
    fakes = Fakes(
        {
            "11111111-1111-4111-8111-111111111111": _row("11111111-1111-4111-8111-111111111111"),
            "22222222-2222-4222-8222-222222222222": _row("22222222-2222-4222-8222-222222222222"),
        }
    )
    one = json.loads(_documented_notification(sub_id="11111111-1111-4111-8111-111111111111"))["value"][0]
    two = json.loads(_documented_notification(sub_id="22222222-2222-4222-8222-222222222222"))["value"][0]
    bad = json.loads(_documented_notification("nope", sub_id="22222222-2222-4222-8222-222222222222"))[
        "value"
    ][0]
    body = json.dumps({"value": [one, two, bad]}).encode()
    reply = await handle_notifications(body, fakes.lookup, fakes.enqueue, NOW)
    assert reply.status == 202
    assert len(fakes.sent) == 2


async def test_lifecycle_missed_becomes_a_full_mailbox_resync() -> None:
    payload = json.loads((FIXTURES / "graph_lifecycle_missed.json").read_text())
    payload["value"][0]["subscriptionId"] = "11111111-1111-4111-8111-111111111111"
    payload["value"][0]["clientState"] = SECRET
    fakes = Fakes({"11111111-1111-4111-8111-111111111111": _row()})
    reply = await handle_notifications(json.dumps(payload).encode(), fakes.lookup, fakes.enqueue, NOW)
    assert reply.status == 202
    message = decode(fakes.sent[0])
    assert isinstance(message, MailboxResync)
    assert message.full and message.mailbox == "adele@contoso.example"


# -- the enqueue's transport: proxy settings from the environment ------------------------------------------

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def _without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _settings(connection_string: str) -> Settings:
    return load_settings(
        {
            "AzureWebJobsStorage": connection_string,
            "GRAPH_AUTH_MODE": "emulator",
            "GRAPH_BASE_URL": "http://127.0.0.1:9/v1.0",
            "PUBLIC_BASE_URL": "http://127.0.0.1:9",
            "CRM_BASE_URL": "http://127.0.0.1:9",
            "CRM_API_TOKEN": "ingress-token",
            "CRM_WEBHOOK_SECRETS": "ingress-secret",
            "SYNC_POLICY": json.dumps({"own_domains": ["contoso.example"], "sync_users": []}),
        }
    )


def test_only_a_named_proxy_makes_the_queue_client_read_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_proxies(monkeypatch)
    assert not proxy_configured()
    monkeypatch.setenv("NO_PROXY", "localhost")
    assert not proxy_configured()  # a bypass list alone names no proxy
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.contoso.example:3128")
    assert proxy_configured()


async def test_without_a_proxy_the_enqueue_reaches_azurite(
    monkeypatch: pytest.MonkeyPatch, storage_connection_string: str, unique_name: str
) -> None:
    _without_proxies(monkeypatch)
    queue = f"ingress-{unique_name}"
    storage = Storage(_settings(storage_connection_string))
    try:
        await storage.queue(queue).create_queue()
        await storage.enqueue('{"hello":"azurite"}', queue=queue)
    finally:
        await storage.aclose()
    async with QueueClient.from_connection_string(
        storage_connection_string, queue, message_decode_policy=TextBase64DecodePolicy()
    ) as client:
        peeked = await client.peek_messages(max_messages=5)
        await client.delete_queue()
    assert [m.content for m in peeked] == ['{"hello":"azurite"}']


async def test_a_proxy_named_by_the_environment_still_carries_the_enqueue(
    monkeypatch: pytest.MonkeyPatch, storage_connection_string: str, unique_name: str
) -> None:
    """The queue client skips aiohttp's per-request environment lookups only when no proxy is named:
    with HTTP_PROXY set, the send goes to the proxy (here one that refuses it with 400)."""
    seen: list[tuple[str, str]] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append((request.method, str(request.url)))
        return web.Response(status=400, text="refused by the test proxy")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    _without_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    queue = f"ingress-{unique_name}"
    storage = Storage(_settings(storage_connection_string))
    try:
        with pytest.raises(PermanentError, match="400"):
            await storage.enqueue('{"hello":"proxy"}', queue=queue)
        with pytest.raises(PermanentError, match="400"):
            await upsert(storage.table("ProxyCheck"), {"PartitionKey": "p", "RowKey": "r"})
    finally:
        await storage.aclose()
        await runner.cleanup()
    assert len(seen) == 2, "the queue and the table client both went through the proxy"
    method, url = seen[0]
    assert method == "POST" and f"/{queue}/messages" in url
    method, url = seen[1]
    assert method in ("PUT", "MERGE", "PATCH") and "ProxyCheck" in url


async def test_every_storage_client_bounds_its_waits(storage_connection_string: str) -> None:
    """azure-core waits 300 s for a read by default; a stalled Azure Storage socket would hold the front
    door's answer (Graph wants one within 3 s) and a worker. Ours give up and retry after seconds."""
    storage = Storage(_settings(storage_connection_string))
    try:
        transports: list[Any] = [
            storage.queue("sync-changes")._pipeline._transport,
            storage.table("SyncMappings")._client._client._pipeline._transport,
        ]
        for transport in transports:
            while not hasattr(transport, "connection_config"):  # a client's wrapper of its service's
                transport = transport._transport
            config = transport.connection_config
            assert (config.timeout, config.read_timeout) == (
                CONNECTION_TIMEOUT_SECONDS,
                READ_TIMEOUT_SECONDS,
            )
        assert READ_TIMEOUT_SECONDS <= 10
    finally:
        await storage.aclose()
