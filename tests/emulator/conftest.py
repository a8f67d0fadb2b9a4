"""Graph emulator suite fixtures: one emulator per module, msgraph-sdk pointed at it, webhook sinks."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient

from devstack.graph_emulator import GraphEmulator
from sync_core.adapters.graph.base import close_client

# Test modules import `emulator_support` by name; pytest's import mode does not add this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))
support = importlib.import_module("emulator_support")


class _Token(AccessTokenProvider):
    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        return "emulator-token"

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator([])


@pytest.fixture(scope="module")
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(validation_timeout=2.0, notification_timeout=2.0) as emu:
        yield emu


@pytest.fixture
def emu(emulator: GraphEmulator) -> GraphEmulator:
    """The module's emulator, reset, with two users and two rooms."""
    emulator.reset()
    emulator.add_mailbox(support.ALICE, support.ALICE_MAIL, "Alice Archer")
    emulator.add_mailbox(support.BOB, support.BOB_MAIL, "Bob Baker", time_zone="Pacific Standard Time")
    emulator.add_mailbox(
        support.ROOM, support.ROOM_MAIL, "Harbour Room", kind="room", room_mode="auto_accept"
    )
    emulator.add_mailbox(
        support.MODERATED_ROOM, support.MODERATED_ROOM_MAIL, "Board Room", kind="room", room_mode="moderated"
    )
    return emulator


@pytest.fixture
async def graph(emu: GraphEmulator) -> AsyncIterator[GraphServiceClient]:
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(_Token()))
    adapter.base_url = emu.base_url
    client = GraphServiceClient(request_adapter=adapter)
    yield client
    await close_client(client)


@pytest.fixture
async def http(emu: GraphEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP for shapes msgraph-sdk hides (headers, status codes, $batch)."""
    async with httpx.AsyncClient(
        base_url=emu.base_url, headers={"Authorization": "Bearer emulator-token"}, timeout=10
    ) as client:
        yield client


@pytest.fixture
async def sink() -> AsyncIterator[Any]:
    endpoint = support.Sink()
    app = web.Application()
    app.router.add_post("/api/notify", endpoint.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    endpoint.url = f"http://127.0.0.1:{port}/api/notify?code=function-key"
    yield endpoint
    await runner.cleanup()
