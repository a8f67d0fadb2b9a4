"""The queue the CRM front doors' tests hand a door (tests/crm/test_crm_ingress.py, the Salesforce outbound
message and Dataverse webhook tests): it records what the door enqueues; and a loopback endpoint in front of a
door, for an emulator to send to. Their replay table on Azurite is the `seen` fixture of tests/conftest.py."""

from __future__ import annotations

from typing import Self

from aiohttp import web

from sync_core.errors import TransientError


class Queue:
    """Records what the front door enqueues; `fail` makes the next sends raise like a storage outage."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail = False

    async def enqueue(self, text: str) -> None:
        if self.fail:
            raise TransientError("queue unavailable", side="storage")
        self.sent.append(text)


class Loopback:
    """An HTTP endpoint on 127.0.0.1 while entered: a POST to `path` is answered by `handle`; `url` (with
    `query`) is where to send it."""

    path = ""
    query = ""

    def __init__(self) -> None:
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post(self.path, self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{self.path}{self.query}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
