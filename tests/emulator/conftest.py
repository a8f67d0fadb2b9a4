"""Graph emulator suite fixtures: one emulator per module, msgraph-sdk pointed at it, webhook sinks."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
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

# Test modules import `emulator_support` by name; pytest's import mode does not add this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))


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
    from emulator_support import (
        ALICE,
        ALICE_MAIL,
        BOB,
        BOB_MAIL,
        MODERATED_ROOM,
        MODERATED_ROOM_MAIL,
        ROOM,
        ROOM_MAIL,
    )

    emulator.reset()
    emulator.add_mailbox(ALICE, ALICE_MAIL, "Alice Archer")
    emulator.add_mailbox(BOB, BOB_MAIL, "Bob Baker", time_zone="Pacific Standard Time")
    emulator.add_mailbox(ROOM, ROOM_MAIL, "Harbour Room", kind="room", room_mode="auto_accept")
    emulator.add_mailbox(
        MODERATED_ROOM, MODERATED_ROOM_MAIL, "Board Room", kind="room", room_mode="moderated"
    )
    return emulator


@pytest.fixture
def graph(emu: GraphEmulator) -> GraphServiceClient:
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(_Token()))
    adapter.base_url = emu.base_url
    return GraphServiceClient(request_adapter=adapter)


@pytest.fixture
async def http(emu: GraphEmulator) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP for shapes msgraph-sdk hides (headers, status codes, $batch)."""
    async with httpx.AsyncClient(
        base_url=emu.base_url, headers={"Authorization": "Bearer emulator-token"}, timeout=10
    ) as client:
        yield client


@dataclass
class Sink:
    """A webhook endpoint in the test loop: answers the validation handshake (or not), records posts."""

    mode: str = "good"
    validations: list[dict[str, Any]] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            self.validations.append(
                {
                    "token": token,
                    "content_type": request.headers.get("Content-Type"),
                    "query": dict(request.query),
                }
            )
            if self.mode == "wrong_body":
                return web.Response(text=token + "x", content_type="text/plain")
            if self.mode == "wrong_type":
                return web.Response(text=token, content_type="application/json")
            if self.mode == "error":
                return web.Response(status=500)
            return web.Response(text=token, content_type="text/plain")
        self.posts.append(await request.json())
        self.arrived.set()
        return web.Response(status=202)

    def notifications(self) -> list[dict[str, Any]]:
        return [item for post in self.posts for item in post["value"]]

    async def wait_for(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(within):
            while len(self.notifications()) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.notifications()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    endpoint = Sink()
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
