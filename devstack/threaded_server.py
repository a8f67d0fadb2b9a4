"""An aiohttp app served on a daemon thread with its own event loop: the lifecycle the CRM, Dataverse and
Salesforce emulators share (bind first, so port 0 gets a free port; serve; stop and join)."""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Self

from aiohttp import web

START_TIMEOUT_S = 10.0


class ThreadedServer:
    """Subclasses set `host`, `port` and `label`, call `_init_server()`, and implement `_serve(sock)` (start a
    site on the bound socket, keeping its runner in `_runner`); `_shutdown()` runs on the loop at stop."""

    host: str
    port: int
    label: str  # for the thread's name and start errors, e.g. "CRM emulator"

    def _init_server(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    async def _serve(self, sock: socket.socket) -> None:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def start(self) -> None:
        """Bind, then serve on a daemon thread with its own loop; returns once the port accepts."""
        if self._thread is not None:
            raise RuntimeError(f"{self.label} is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(sock))
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._loop = loop
        name = f"{self.label.lower().replace(' ', '-')}-{self.port}"
        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S) or failure:
            self._thread = None
            raise RuntimeError(f"{self.label} did not start: {failure[0] if failure else 'timeout'}")

    def stop(self) -> None:
        """Stop serving, run `_shutdown` and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_S)
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
