"""Attack: a link to another host receives the app's bearer token (issue 15, item 4).

Reproduced before the defence with a stub credential: kiota's allowed hosts were empty, and
`@odata.nextLink`/`deltaLink` (including the delta link kept in the mailbox table) were followed verbatim,
so a link naming another host got `Authorization: Bearer ...`. Now the token provider is pinned to
GRAPH_BASE_URL's host, and the adapter refuses to follow a link outside Graph's API root, permanently.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import build_client
from sync_core.domain.policy import DEFAULT_EXTENDED_PROPERTY_ID
from sync_core.errors import PermanentError
from sync_core.settings import Settings

ALICE = "cd209b0b-3f83-4c35-82d2-d88a61820480"


@pytest.fixture
async def listener() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """An attacker's server on loopback that records every request's headers."""
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"value": []})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    finally:
        await runner.cleanup()


@pytest.fixture
async def adapter() -> AsyncIterator[GraphAdapter]:
    with GraphEmulator() as emu:
        emu.add_mailbox(ALICE, "alice@contoso.com", "Alice")
        settings = Settings.model_validate({"GRAPH_BASE_URL": emu.base_url, "GRAPH_AUTH_MODE": "emulator"})
        graph = GraphAdapter(
            build_client(settings),
            extended_property_id=DEFAULT_EXTENDED_PROPERTY_ID,
            tag_secrets=settings.tag_secrets,
        )
        try:
            yield graph
        finally:
            await graph.aclose()


@pytest.mark.parametrize("where", ["another host", "the same host outside the API root"])
async def test_a_delta_link_outside_graph_is_refused_and_receives_no_token(
    adapter: GraphAdapter, listener: tuple[str, list[dict[str, str]]], where: str
) -> None:
    base, seen = listener
    graph_base = adapter.client.request_adapter.base_url
    link = (
        f"{base}/v1.0/users/{ALICE}/calendarView/delta?$deltatoken=stolen"
        if where == "another host"
        else graph_base.rsplit("/", 1)[0] + f"/elsewhere/users/{ALICE}/calendarView/delta?$deltatoken=x"
    )
    with pytest.raises(PermanentError, match="refusing to follow a link outside"):
        await adapter.delta_page("alice@contoso.com", link=link)
    await asyncio.sleep(0.1)
    assert seen == []


async def test_the_token_provider_is_pinned_to_the_graph_host(
    adapter: GraphAdapter, listener: tuple[str, list[dict[str, str]]]
) -> None:
    """Even a request built by hand for another host carries no token. (kiota compares host names, not
    ports: the emulator and this listener share 127.0.0.1, so the listener is named `localhost` here.)"""
    base = listener[0].replace("127.0.0.1", "localhost")
    provider = adapter.client.request_adapter._authentication_provider  # kiota's own
    token_provider = provider.access_token_provider
    assert token_provider.get_allowed_hosts_validator().is_url_host_valid(
        adapter.client.request_adapter.base_url
    )
    assert not token_provider.get_allowed_hosts_validator().is_url_host_valid(base)
    assert await token_provider.get_authorization_token(f"{base}/v1.0/me") == ""
