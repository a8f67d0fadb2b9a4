"""GraphEmulator: the aiohttp server on its own thread and loop, plus thread-safe helpers for tests."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from devstack.graph_emulator.admin import admin_routes
from devstack.graph_emulator.attachments_api import AttachmentsApi, attach, new_attachment
from devstack.graph_emulator.clock import Clock
from devstack.graph_emulator.errors import error_body
from devstack.graph_emulator.events_api import EventsApi
from devstack.graph_emulator.faults import GLOBAL, Faults, FaultSpec
from devstack.graph_emulator.http import GraphRequest, normalize_query
from devstack.graph_emulator.mail import MailApi
from devstack.graph_emulator.notifier import Notifier
from devstack.graph_emulator.rendering import RenderContext, render_event
from devstack.graph_emulator.service import GraphService
from devstack.graph_emulator.state import ROOM_MODES, EmulatorState, Mailbox
from devstack.graph_emulator.subscriptions import SubscriptionsApi
from devstack.graph_emulator.views import CalendarViewApi

DEFAULT_TENANT_ID = "84bd8158-6d4d-4958-8b9f-9d6445542f95"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class GraphEmulator:
    """A loopback Microsoft Graph v1.0 look-alike for calendars. See README.md in this package.

    `start()` returns once the server listens; `base_url` is what msgraph-sdk's adapter needs.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        seed: int | None = None,
        validation_timeout: float = 10.0,
        notification_timeout: float = 3.0,
        notification_retries: int = 2,
        mailbox_concurrency_limit: int = 4,
        allow_remote_notification_urls: bool = False,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the Graph emulator binds loopback only, not {host!r}")
        self.host = host
        self.port = port
        self.tenant_id = tenant_id
        self.clock = Clock()
        self.state = EmulatorState(self.clock)
        self.faults = Faults(seed)
        self.service = GraphService(self.state, self.clock, self.faults, tenant_id, mailbox_concurrency_limit)
        self.notifier = Notifier(
            self.state, self.faults, self.clock, tenant_id, notification_timeout, notification_retries
        )
        self.state.listeners.append(self.notifier.on_change)
        EventsApi(self.service)
        AttachmentsApi(self.service)
        CalendarViewApi(self.service)
        self.subscriptions_api = SubscriptionsApi(
            self.service, self.notifier, validation_timeout, allow_remote_notification_urls
        )
        MailApi(self.service)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self._url_host}:{self.port}/v1.0"

    @property
    def admin_url(self) -> str:
        return f"http://{self._url_host}:{self.port}/_emulator"

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def start(self, timeout: float = 10.0) -> GraphEmulator:
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, name="graph-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the Graph emulator did not start in time")
        if self._startup_error is not None:
            self._thread = None
            raise RuntimeError("the Graph emulator failed to start") from self._startup_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> GraphEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # reported to start()'s caller
            self._startup_error = exc
            self._ready.set()
            loop.close()
            self._loop = None
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()
            self._loop = None

    async def _startup(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.add_routes(admin_routes(self))
        app.router.add_route("*", "/v1.0/{tail:.*}", self._graph_handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]
        self.service.base_url = self.base_url
        self._session = aiohttp.ClientSession()
        self.notifier.attach(asyncio.get_running_loop(), self._session)

    async def _shutdown(self) -> None:
        await self.notifier.close()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _graph_handler(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return web.json_response(
                    error_body("BadRequest", "Unable to read JSON request payload."), status=400
                )
        graph_request = GraphRequest(
            method=request.method,
            path="/" + request.match_info["tail"],
            query=normalize_query(list(request.query.items())),
            headers=request.headers.copy(),
            body=body,
        )
        response = await self.service.dispatch(graph_request)
        payload = None if response.body is None else json.dumps(response.body).encode()
        return web.Response(status=response.status, body=payload, headers=response.headers)

    # -- test helpers (thread-safe) ----------------------------------------------------------------

    def add_mailbox(
        self,
        id: str,
        mail: str,
        display_name: str,
        kind: str = "user",
        room_mode: str | None = None,
        time_zone: str = "UTC",
    ) -> dict[str, Any]:
        """Register a user or room mailbox; rooms default to room_mode='auto_accept'."""
        if kind not in ("user", "room"):
            raise ValueError("kind must be 'user' or 'room'")
        if kind == "room" and room_mode is None:
            room_mode = "auto_accept"
        if room_mode is not None and room_mode not in ROOM_MODES:
            raise ValueError(f"room_mode must be one of {ROOM_MODES} or None")
        mailbox = Mailbox(id, mail, display_name, kind, room_mode if kind == "room" else None, time_zone)
        return self.state.add_mailbox(mailbox).to_json()

    def add_attachment(self, mailbox: str, event_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Attach as Outlook would (F5): any attachment type, a referenceAttachment included, which the v1.0
        API cannot add. The same validation and the same `updated` change as `POST .../attachments`."""
        with self.state.lock:
            box = self.state.mailbox(mailbox)
            record = self.state.events[box.id].get(event_id)
            if record is None:
                raise KeyError(f"no event {event_id!r} in {mailbox!r}")
            return dict(attach(self.state, record, new_attachment(self.state, body, allow_reference=True)))

    @property
    def mailboxes(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [m.to_json() for m in self.state.mailboxes.values()]

    def reset(self, keep_mailboxes: bool = False) -> None:
        """Forget events, subscriptions, logs, faults and clock offset (and mailboxes, unless kept)."""
        self.state.clear(keep_mailboxes)
        self.service.reset_counters()
        self.faults.clear()
        self.clock.reset()
        with self.notifier.sent_lock:
            self.notifier.sent.clear()

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every Graph request received."""
        with self.service.log_lock:
            return copy.deepcopy(self.service.request_log)

    def clear_requests(self) -> None:
        with self.service.log_lock:
            self.service.request_log.clear()

    def reset_concurrency(self) -> None:
        """Start measuring peak in-flight requests per mailbox afresh (max_concurrency_seen)."""
        with self.service.log_lock:
            self.service.max_concurrency.clear()

    @property
    def notifications_sent(self) -> list[dict[str, Any]]:
        """Each notification POST attempt: kind, url, payload, status (None on error), error, attempt."""
        with self.notifier.sent_lock:
            return copy.deepcopy(self.notifier.sent)

    async def wait_for_notifications(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool] | int,
        within: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Poll (from any loop) until `predicate(notifications_sent)` holds or N were delivered."""
        check = (
            predicate
            if callable(predicate)
            else (lambda sent: sum(1 for s in sent if s["status"]) >= predicate)
        )
        deadline = time.monotonic() + within
        while True:
            sent = self.notifications_sent
            if check(sent):
                return sent
            if time.monotonic() > deadline:
                raise TimeoutError(f"notifications did not arrive in {within}s; sent so far: {len(sent)}")
            await asyncio.sleep(0.02)

    @property
    def max_concurrency_seen(self) -> dict[str, int]:
        """Peak in-flight Graph requests per mailbox, keyed by mailbox id and by mail."""
        with self.service.log_lock:
            peaks = dict(self.service.max_concurrency)
        with self.state.lock:
            for mailbox_id, value in list(peaks.items()):
                mailbox = self.state.mailboxes.get(mailbox_id)
                if mailbox is not None:
                    peaks[mailbox.mail] = value
        return peaks

    def set_faults(self, mailbox: str | None = None, seed: int | None = None, **settings: Any) -> None:
        """Replace the faults for one mailbox (id or mail) or, without `mailbox`, globally. See FaultSpec."""
        scope = GLOBAL if mailbox in (None, GLOBAL) else self.state.mailbox(str(mailbox)).id
        if seed is not None:
            self.faults.seed(int(seed))
        self.faults.set(scope, FaultSpec.from_json(settings))

    def clear_faults(self, mailbox: str | None = None) -> None:
        scope = None if mailbox is None else (GLOBAL if mailbox == GLOBAL else self.state.mailbox(mailbox).id)
        self.faults.clear(scope)

    def advance_clock(self, seconds: float) -> None:
        """Move emulator time forward; subscriptions that have expired by then are deleted."""
        self.clock.advance(seconds)
        self.notifier.purge_expired()

    @property
    def subscriptions(self) -> list[dict[str, Any]]:
        self.notifier.purge_expired()
        with self.state.lock:
            return [
                self.subscriptions_api.render(s, context=False) for s in self.state.subscriptions.values()
            ]

    def send_lifecycle_notification(self, subscription_id: str, event: str) -> bool:
        """Send a lifecycle notification; subscriptionRemoved also deletes the subscription."""
        self.notifier.purge_expired()
        with self.state.lock:
            sub = self.state.subscriptions[subscription_id]
            if event == "subscriptionRemoved":
                del self.state.subscriptions[subscription_id]
        return self.notifier.lifecycle(sub, event)

    def invalidate_delta_tokens(self, mailbox: str | None = None) -> None:
        """Make existing delta/skip tokens (of one mailbox, or all) answer 410 syncStateNotFound."""
        with self.state.lock:
            targets = [self.state.mailbox(mailbox).id] if mailbox else list(self.state.delta_epoch)
            for mailbox_id in targets:
                self.state.delta_epoch[mailbox_id] += 1

    @property
    def sent_mail(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(self.state.sent_mail)

    def dump_events(self, mailbox: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Stored events (singles and series masters) per mailbox id, rendered in UTC."""
        ctx = RenderContext(base_url=self.base_url)
        with self.state.lock:
            ids_ = [self.state.mailbox(mailbox).id] if mailbox else list(self.state.mailboxes)
            return {m: [render_event(r, ctx) for r in self.state.events[m].values()] for m in ids_}
