"""Development host: runs the HTTP, queue and timer functions of an `azure.functions.FunctionApp` on loopback.

I/O side. Stands in for Azure Functions Core Tools (which cannot be installed here), following the host's
documented behaviour: auth levels and keys, `extensions.queues` polling, poison queues, NCRONTAB timers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import contextvars
import functools
import hmac
import inspect
import json
import logging
import math
import os
import re
import secrets
import signal
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import azure.functions as func
from aiohttp import web
from azure.core.exceptions import ResourceExistsError
from azure.functions._abc import RetryContext, TraceContext
from azure.functions.queue import QueueMessage as FunctionQueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueMessage as StorageQueueMessage
from azure.storage.queue.aio import QueueClient
from multidict import CIMultiDict

from devstack import ncrontab
from devstack.azurite import development_storage_connection_string

log = logging.getLogger("devstack.host")

MAX_REQUEST_BYTES = 104_857_600  # the real host's 100 MB request limit
LEASE_SECONDS = 600  # the host receives messages for 10 minutes and renews while the function runs
MIN_POLL_SECONDS = 0.1  # the queue listener's minimum polling interval
DEFAULT_DRAIN_SECONDS = 30.0
_ADMIN_REASON = "This function was programmatically called via the host APIs."
_ROUTE_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
}
_ROUTE_PARAM = re.compile(
    r"\{(?P<catchall>\*{1,2})?(?P<name>\w+)(?::(?P<constraint>\w+)[^}=?]*)?(?P<optional>\?)?"
    r"(?:=(?P<default>[^}]*))?\}"
)


# ---------------------------------------------------------------------------------------------- host.json


def parse_timespan(value: object) -> float:
    """Seconds in a host.json TimeSpan: "hh:mm:ss[.fff]", "d.hh:mm:ss", or a number of milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000
    if not isinstance(value, str):
        raise ValueError(f"not a TimeSpan: {value!r}")
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", value.strip())
    if match is None:
        raise ValueError(f"not a TimeSpan (hh:mm:ss): {value!r}")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the defaults of the Storage Queues extension 5.x."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    # 1 minute in Azure; Core Tools runs in development mode, where the default is 2 seconds.
    max_polling_interval: float = 2.0
    base64: bool = True

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any]) -> QueueOptions:
        queues: Mapping[str, Any] = host_json.get("extensions", {}).get("queues", {})
        batch_size = int(queues.get("batchSize", 16))
        if not 1 <= batch_size <= 32:
            raise ValueError(f"extensions.queues.batchSize must be 1-32, got {batch_size}")
        encoding = str(queues.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ValueError(f"extensions.queues.messageEncoding must be base64 or none, got {encoding!r}")
        polling = parse_timespan(queues.get("maxPollingInterval", "00:00:02"))
        return cls(
            batch_size=batch_size,
            new_batch_threshold=int(queues.get("newBatchThreshold", batch_size // 2)),
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            visibility_timeout=parse_timespan(queues.get("visibilityTimeout", "00:00:00")),
            max_polling_interval=max(polling, MIN_POLL_SECONDS),
            base64=encoding == "base64",
        )

    def decode(self, text: str) -> bytes:
        """The function's view of a stored message; ValueError when base64 is expected but absent."""
        if not self.base64:
            return text.encode("utf-8")
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"message is not valid base64: {exc}") from None

    def encode(self, body: str | bytes) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        if self.base64:
            return base64.b64encode(data).decode("ascii")
        return data.decode("utf-8")


# ------------------------------------------------------------------------------------- function model


class _Out(func.Out[Any]):
    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _TraceContext(TraceContext):
    trace_state = ""
    trace_parent = ""
    attributes: dict[str, str] = {}


class _RetryContext(RetryContext):
    retry_count = 0
    max_retry_count = 0
    exception = None  # type: ignore[assignment]  # no retry policy runs here, so there is no exception


class _Context(func.Context):
    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id, self._name, self._directory = invocation_id, function_name, function_directory
        self._local = threading.local()
        self._local.invocation_id = invocation_id

    invocation_id = property(lambda self: self._invocation_id)
    function_name = property(lambda self: self._name)
    function_directory = property(lambda self: self._directory)
    thread_local_storage = property(lambda self: self._local)
    trace_context = property(lambda self: _TraceContext())
    retry_context = property(lambda self: _RetryContext())


def _queue_message(**fields: Any) -> FunctionQueueMessage:
    """The trigger value of a queue function (azure-functions leaves this constructor untyped)."""
    return FunctionQueueMessage(**fields)  # type: ignore[no-untyped-call]


def _plain(value: Any) -> Any:
    """Binding dicts hold enums (AuthLevel, HttpMethod, BindingDirection); the host reads their values."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass
class _Function:
    name: str
    trigger: dict[str, Any]
    queue_outputs: list[dict[str, Any]]
    user: Callable[..., Any]
    directory: str
    wants_context: bool

    @property
    def kind(self) -> str:
        return str(self.trigger["type"])

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user)


def _discover(app: func.FunctionApp) -> list[_Function]:
    supported = ("httpTrigger", "queueTrigger", "timerTrigger")
    functions = []
    # get_functions() records names to refuse duplicates, and so refuses a second call on the same app.
    # Clear that record before and after, so the app can be hosted again and others (tests, tools) can still
    # call get_functions(). Duplicate names are still refused.
    app.functions_bindings = None
    try:
        built = app.get_functions()
    finally:
        app.functions_bindings = None
    for fn in built:
        name = fn.get_function_name() or fn.get_user_function().__name__
        bindings = [{k: _plain(v) for k, v in b.get_dict_repr().items()} for b in fn.get_bindings()]
        trigger = next((b for b in bindings if str(b["type"]).endswith("Trigger")), None)
        if trigger is None or trigger["type"] not in supported:
            kind = trigger["type"] if trigger else "no trigger"
            raise ValueError(f"function {name!r}: {kind} is not supported by DevHost (only {supported})")
        outputs, params = [], {trigger["name"]}
        for binding in bindings:
            if binding is trigger or (binding["type"] == "http" and binding["name"] == "$return"):
                continue
            if binding["type"] != "queue" or binding["direction"] != 1:
                raise ValueError(
                    f"function {name!r}: {binding['type']} binding {binding['name']!r} is not supported by "
                    "DevHost (only queue output bindings besides the trigger)"
                )
            outputs.append(binding)
            params.add(binding["name"])
        user = fn.get_user_function()
        signature = inspect.signature(user)
        unbound = [
            p.name
            for p in signature.parameters.values()
            if p.name not in params | {"context"} and p.default is inspect.Parameter.empty
        ]
        if unbound:
            raise ValueError(f"function {name!r}: parameters {unbound} have no binding")
        script = getattr(fn, "function_script_file", "") or ""
        functions.append(
            _Function(
                name=name,
                trigger=trigger,
                queue_outputs=outputs,
                user=user,
                directory=str(Path(script).parent) if script else os.getcwd(),
                wants_context="context" in signature.parameters,
            )
        )
    return functions


@dataclass
class _Route:
    function: _Function
    pattern: re.Pattern[str]
    defaults: dict[str, str]
    methods: frozenset[str] | None
    auth_level: str


def _compile_route(template: str) -> tuple[re.Pattern[str], dict[str, str]]:
    """An ASP.NET-style route template (`items/{id}`, `{id:int}`, `{id?}`, `{*rest}`) as a regex."""
    parts, defaults = [], {}
    for index, segment in enumerate(template.strip("/").split("/")):
        slash = "/" if index else ""
        regex, position = "", 0
        for match in _ROUTE_PARAM.finditer(segment):
            name = match["name"]
            if match["catchall"]:
                value = r".*"
            else:
                value = _ROUTE_CONSTRAINTS.get((match["constraint"] or "").lower(), r"[^/]+?")
            regex += re.escape(segment[position : match.start()]) + f"(?P<{name}>{value})"
            position = match.end()
            if match["default"] is not None:
                defaults[name] = match["default"]
        regex += re.escape(segment[position:])
        whole = _ROUTE_PARAM.fullmatch(segment)
        optional = whole is not None and bool(whole["optional"] or whole["catchall"] or whole["default"])
        parts.append(f"(?:{slash}{regex})?" if optional else slash + regex)
    return re.compile("".join(parts), re.IGNORECASE), defaults


def _setting_expression(value: str, lookup: Callable[[str], str | None]) -> str:
    """Binding values may name app settings as `%Name%`, as in the real host."""

    def replace(match: re.Match[str]) -> str:
        resolved = lookup(match[1])
        if resolved is None:
            raise ValueError(f"app setting {match[1]!r} (used as %{match[1]}%) is not set")
        return resolved

    return re.sub(r"%([^%]+)%", replace, value)


# ------------------------------------------------------------------------------------------- listeners


@dataclass
class _Lease:
    message_id: str
    pop_receipt: str


@dataclass
class _QueueListener:
    host: DevHost
    function: _Function
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
        trigger = _queue_message(
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
class _TimerListener:
    host: DevHost
    function: _Function
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


# ------------------------------------------------------------------------------------------------ host


class DevHost:
    """Runs `app`'s functions in a daemon thread with its own event loop; see the module docstring."""

    def __init__(
        self,
        app: func.FunctionApp,
        settings: Mapping[str, str],
        host_json: Mapping[str, Any],
        port: int = 7071,
        bind: str = "127.0.0.1",
        drain_seconds: float = DEFAULT_DRAIN_SECONDS,
    ) -> None:
        self._settings = dict(settings)
        self._bind, self._port, self._drain = bind, port, drain_seconds
        self.functions = {fn.name: fn for fn in _discover(app)}
        self.queue_options = QueueOptions.from_host_json(host_json)
        http: Mapping[str, Any] = host_json.get("extensions", {}).get("http", {})
        self.route_prefix = str(http.get("routePrefix", "api")).strip("/")
        timeout = host_json.get("functionTimeout")
        self._function_timeout = None if timeout in (None, "-1", -1) else parse_timespan(timeout)
        self.function_key = self._key("DEVHOST_FUNCTION_KEY", "function")
        self.master_key = self._key("DEVHOST_MASTER_KEY", "master")
        self._routes: list[_Route] = []
        self._queue_specs: list[tuple[_Function, str, str]] = []
        self._timers: dict[str, _TimerListener] = {}
        for fn in self.functions.values():
            self._prepare(fn)
        threads = self.setting("PYTHON_THREADPOOL_THREAD_COUNT")
        self._threads = int(threads) if threads else min(32, (os.cpu_count() or 1) + 4)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._listeners: list[_QueueListener] = []
        self._loops: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._out_clients: dict[tuple[str, str], QueueClient] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._runner: web.AppRunner | None = None
        self._started = False

    # -- configuration

    def setting(self, name: str) -> str | None:
        """An app setting: the `settings` given to the host, else the environment (like Functions)."""
        return self._settings.get(name, os.environ.get(name))

    def _key(self, setting: str, kind: str) -> str:
        key = self.setting(setting)
        if not key:
            key = secrets.token_urlsafe(32)
            print(f"DevHost: {setting} is not set; generated {kind} key for this run: {key}", flush=True)
        return key

    def connection_string(self, name: str) -> str:
        """The storage connection a binding's `connection` names, resolved as the host does.

        `X` is read from setting `X`, else `AzureWebJobsX`; empty means AzureWebJobsStorage.
        `UseDevelopmentStorage=true` means Azurite on its default ports.
        """
        name = name or "AzureWebJobsStorage"
        value = self.setting(name) or self.setting(f"AzureWebJobs{name}")
        if not value:
            raise ValueError(f"connection setting {name!r} is not set (DevHost settings or environment)")
        if value.replace(" ", "").lower().rstrip(";") == "usedevelopmentstorage=true":
            return development_storage_connection_string()
        return value

    def _prepare(self, fn: _Function) -> None:
        trigger = fn.trigger
        if fn.kind == "httpTrigger":
            pattern, defaults = _compile_route(str(trigger.get("route") or fn.name))
            methods = trigger.get("methods")
            self._routes.append(
                _Route(
                    function=fn,
                    pattern=pattern,
                    defaults=defaults,
                    methods=frozenset(str(m).upper() for m in methods) if methods else None,
                    auth_level=str(trigger.get("authLevel") or "function").lower(),
                )
            )
        elif fn.kind == "queueTrigger":
            queue = _setting_expression(str(trigger["queueName"]), self.setting)
            self._queue_specs.append(
                (fn, queue, self.connection_string(str(trigger.get("connection") or "")))
            )
        else:
            schedule = _setting_expression(str(trigger["schedule"]), self.setting)
            ncrontab.parse(schedule)  # fail at construction on a bad expression
            # Listener objects are created here; their asyncio primitives bind to the host loop on first use.
            self._timers[fn.name] = _TimerListener(self, fn, schedule, bool(trigger.get("runOnStartup")))
        for output in fn.queue_outputs:
            self.connection_string(str(output.get("connection") or ""))

    # -- lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self._bind}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def stopping(self) -> bool:
        return self._stop_event is None or self._stop_event.is_set()

    def start(self, timeout: float = 30.0) -> None:
        """Start the host thread; returns once HTTP listens and every queue listener has its queues."""
        if self._started:
            raise RuntimeError("DevHost has already been started; create a new one to start again")
        self._started = True
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="devhost", daemon=True)
        self._thread.start()
        try:
            ready.result(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop polling and timers, stop accepting HTTP, wait (bounded) for in-flight invocations."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        thread.join(self._drain + 15)
        if thread.is_alive():
            log.error("DevHost thread did not stop within %.0f s", self._drain + 15)
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _thread_main(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())  # aiohttp's DNS lookups run there
        except BaseException as exc:
            log.exception("DevHost loop crashed")
            if not ready.done():
                ready.set_exception(exc)
        finally:
            loop.close()

    async def _main(self, ready: concurrent.futures.Future[None]) -> None:
        self._stop_event = asyncio.Event()
        try:
            await self._open()
        except BaseException as exc:
            self._stop_event.set()
            await self._close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        await self._stop_event.wait()
        await self._shutdown()

    async def _open(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(self._threads, thread_name_prefix="devhost-fn")
        for fn, queue, connection in self._queue_specs:
            listener = _QueueListener(self, fn, queue, connection, self.queue_options)
            self._listeners.append(listener)
            try:
                await listener.open()
            except Exception as exc:
                raise RuntimeError(f"queue trigger {fn.name!r}: cannot open queue {queue!r}: {exc}") from exc
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=self._drain)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._bind, self._port)
        await site.start()
        server = getattr(site, "_server", None)
        if self._port == 0 and server is not None and server.sockets:
            self._port = int(server.sockets[0].getsockname()[1])
        for listener in self._listeners:
            self._loops.append(asyncio.create_task(listener.run()))
        for timer in self._timers.values():
            self._loops.append(asyncio.create_task(timer.run()))
        for task in self._loops:
            task.add_done_callback(self._loop_done)
        log.info("DevHost listening on %s with %d functions", self.base_url, len(self.functions))

    @staticmethod
    def _loop_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("DevHost listener crashed", exc_info=task.exception())

    async def _shutdown(self) -> None:
        for listener in self._listeners:
            listener.room.set()
        await asyncio.gather(*self._loops, return_exceptions=True)
        http = asyncio.create_task(self._runner.cleanup()) if self._runner else None
        pending = set(self._background)
        if pending:
            _, late = await asyncio.wait(pending, timeout=self._drain)
            for task in late:
                task.cancel()
            if late:
                log.warning(
                    "DevHost stop: cancelled %d invocations still running after %.0f s",
                    len(late),
                    self._drain,
                )
                await asyncio.gather(*late, return_exceptions=True)
        if http is not None:
            await http
        self._runner = None
        await self._close()

    async def _close(self) -> None:
        for listener in self._listeners:
            await listener.close()
        for client in self._out_clients.values():
            await client.close()
        self._out_clients.clear()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run work the host must drain on stop (queue messages, timer runs, on-demand invocations)."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        # Failures are logged where they happen; retrieving them here keeps asyncio from logging them again.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def pause(self, seconds: float) -> None:
        """Sleep, waking early when the host stops."""
        assert self._stop_event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), max(seconds, 0))

    # -- invocation

    async def invoke_function(self, fn: _Function, trigger: Any, reason: str) -> Any:
        """Call one function with its trigger value, as the worker would; raises what the function raises."""
        invocation_id = str(uuid.uuid4())
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", fn.name, reason, invocation_id)
        started = time.monotonic()
        outs = {b["name"]: _Out() for b in fn.queue_outputs if b["name"] != "$return"}
        kwargs: dict[str, Any] = {fn.trigger["name"]: trigger, **outs}
        if fn.wants_context:
            kwargs["context"] = _Context(invocation_id, fn.name, fn.directory)
        outcome = "Failed"
        try:
            async with asyncio.timeout(self._function_timeout):
                if fn.is_async:
                    result = await fn.user(**kwargs)
                else:
                    call = functools.partial(contextvars.copy_context().run, fn.user, **kwargs)
                    result = await asyncio.get_running_loop().run_in_executor(self._executor, call)
                    if inspect.isawaitable(result):
                        result = await result
            await self._write_outputs(fn, outs, result)
            outcome = "Succeeded"
            return result
        except asyncio.CancelledError:
            outcome = "Cancelled"
            raise
        except Exception:
            log.exception("Function 'Functions.%s' failed (Id=%s)", fn.name, invocation_id)
            raise
        finally:
            took = round((time.monotonic() - started) * 1000)
            level = logging.INFO if outcome == "Succeeded" else logging.ERROR
            log.log(
                level,
                "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)",
                fn.name,
                outcome,
                invocation_id,
                took,
            )

    async def _write_outputs(self, fn: _Function, outs: dict[str, _Out], result: Any) -> None:
        for binding in fn.queue_outputs:
            name = binding["name"]
            value = result if name == "$return" else outs[name].get()
            if value is None:
                continue
            queue = _setting_expression(str(binding["queueName"]), self.setting)
            client = await self._output_client(str(binding.get("connection") or ""), queue)
            for item in value if isinstance(value, list) else [value]:
                body = item.get_body() if isinstance(item, func.QueueMessage) else item
                if not isinstance(body, str | bytes):
                    raise TypeError(
                        f"queue output {name!r} needs str, bytes or QueueMessage, got {type(body)}"
                    )
                await client.send_message(self.queue_options.encode(body))

    async def _output_client(self, connection: str, queue: str) -> QueueClient:
        key = (connection, queue)
        if key not in self._out_clients:
            client = QueueClient.from_connection_string(self.connection_string(connection), queue)
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()
            self._out_clients[key] = client
        return self._out_clients[key]

    def invoke(self, name: str, input: str | None = None) -> concurrent.futures.Future[Any]:
        """Fire a timer or queue function on demand from any thread; the future fails if the function does."""
        fn = self.functions.get(name)
        if fn is None:
            raise KeyError(f"no function named {name!r}")
        if fn.kind == "httpTrigger":
            raise ValueError(f"{name!r} is an HTTP function; call its route instead")
        loop = self._loop
        if loop is None or self.stopping:
            raise RuntimeError("DevHost is not running")
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def schedule() -> None:
            task = self.spawn(self._invoke_on_demand(fn, input))
            task.add_done_callback(lambda t: _copy_outcome(t, result))

        loop.call_soon_threadsafe(schedule)
        return result

    def invoke_timer(self, name: str) -> concurrent.futures.Future[Any]:
        """Fire timer `name` now (waiting for a run in progress first); `asyncio.wrap_future` to await it."""
        if name not in self._timers:
            raise KeyError(f"no timer function named {name!r}")
        return self.invoke(name)

    async def _invoke_on_demand(self, fn: _Function, input: str | None) -> Any:
        if fn.kind == "timerTrigger":
            await self._timers[fn.name].fire(datetime.now(UTC), past_due=False)
            return None
        message = _queue_message(
            id=str(uuid.uuid4()),
            body=(input or "").encode("utf-8"),
            dequeue_count=1,
            insertion_time=datetime.now(UTC),
        )
        return await self.invoke_function(fn, message, _ADMIN_REASON)

    # -- HTTP

    def _relative_path(self, path: str) -> str | None:
        path = path.strip("/")
        if not self.route_prefix:
            return path
        prefix = self.route_prefix.lower()
        lowered = path.lower()
        if lowered == prefix:
            return ""
        if lowered.startswith(prefix + "/"):
            return path[len(prefix) + 1 :]
        return None

    def _authorized(self, request: web.Request, level: str) -> bool:
        if level == "anonymous":
            return True
        given = request.headers.get("x-functions-key") or request.query.get("code") or ""
        keys = [self.function_key, self.master_key] if level == "function" else [self.master_key]
        return bool(given) and any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.lower().startswith("/admin/"):
            return await self._handle_admin(request)
        relative = self._relative_path(request.path)
        matches = (
            [] if relative is None else [(r, m) for r in self._routes if (m := r.pattern.fullmatch(relative))]
        )
        if not matches:
            return web.Response(status=404)
        allowed = [(r, m) for r, m in matches if r.methods is None or request.method in r.methods]
        if not allowed:
            methods = sorted({m for r, _ in matches for m in (r.methods or ())})
            return web.Response(status=405, headers={"Allow": ", ".join(methods)})
        # Like ASP.NET routing, prefer the most literal template: `items/special` over `items/{id}`.
        route, match = min(allowed, key=lambda candidate: candidate[0].pattern.groups)
        if not self._authorized(request, route.auth_level):
            return web.Response(status=401)
        params = {k: v for k, v in match.groupdict().items() if v is not None}
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers={k: ", ".join(request.headers.getall(k)) for k in request.headers},
            params={k: request.query[k] for k in request.query},
            route_params={**route.defaults, **params},
            body=await request.read(),  # aiohttp answers 413 past client_max_size
        )
        try:
            result = await self.invoke_function(route.function, http_request, _ADMIN_REASON)
        except Exception:
            return web.Response(status=500)  # invoke_function has logged the traceback
        try:
            return _web_response(result)
        except TypeError:
            log.exception("Function 'Functions.%s' returned an unusable response", route.function.name)
            return web.Response(status=500)

    async def _handle_admin(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request, "admin"):
            return web.Response(status=401)
        match = re.fullmatch(r"/admin/functions/([^/]+)/?", request.path, re.IGNORECASE)
        if match is None:
            return web.Response(status=404)
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        fn = self.functions.get(match[1])
        if fn is None:
            return web.Response(status=404)
        if fn.kind == "httpTrigger":
            return web.json_response({"error": "HTTP functions are called through their route"}, status=400)
        raw = await request.read()
        try:
            payload = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return web.json_response({"error": 'body must be JSON like {"input": "..."}'}, status=400)
        value = payload.get("input") if isinstance(payload, dict) else None
        self.spawn(self._invoke_on_demand(fn, None if value is None else str(value)))
        return web.Response(status=202)


def _copy_outcome(task: asyncio.Task[Any], target: concurrent.futures.Future[Any]) -> None:
    if target.done():  # the caller cancelled its future; the invocation ran anyway
        return
    if task.cancelled():
        target.cancel()
    elif (error := task.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(task.result())


def _web_response(result: Any) -> web.Response:
    """The worker's conversion of a function's return value to the HTTP response."""
    if result is None:
        return web.Response(status=204)
    if isinstance(result, str | bytes):
        result = func.HttpResponse(result)
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"HTTP function returned {type(result).__name__}, expected func.HttpResponse")
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in result.headers.items():
        if name.lower() not in ("content-length", "transfer-encoding"):
            headers.add(name, value)
    if "Content-Type" not in headers:
        mimetype = result.mimetype
        headers["Content-Type"] = (
            f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype
        )
    return web.Response(status=result.status_code, headers=headers, body=result.get_body())


# ------------------------------------------------------------------------------------------------- CLI


def load_settings(path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """`Values` and `Host` of a local.settings.json; a missing file means no settings."""
    if not path.exists():
        log.warning("%s not found; running with the environment only", path)
        return {}, {}
    data = json.loads(path.read_text(encoding="utf-8"))
    values = {str(k): str(v) for k, v in (data.get("Values") or {}).items()}
    return values, dict(data.get("Host") or {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.host", description=__doc__)
    parser.add_argument("--port", type=int, help="HTTP port (default: Host.LocalHttpPort or 7071)")
    parser.add_argument("--settings", type=Path, default=Path("local.settings.json"))
    parser.add_argument("--host-json", type=Path, default=Path("host.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO
    values, host_section = load_settings(args.settings)
    for name, value in values.items():
        # Like Core Tools: a variable already in the environment wins over local.settings.json.
        if name in os.environ:
            log.info("Skipping '%s' from %s: already set in the environment", name, args.settings)
        else:
            os.environ[name] = value
    host_json = json.loads(args.host_json.read_text(encoding="utf-8")) if args.host_json.exists() else {}
    sys.path.insert(0, os.getcwd())
    # Imported only now: like Core Tools, the app sees local.settings.json values as environment variables.
    from function_app import app

    port = args.port if args.port is not None else int(host_section.get("LocalHttpPort", 7071))
    host = DevHost(app, {k: os.environ[k] for k in values}, host_json, port=port)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    host.start()
    print("\nFunctions:\n")
    for route in host._routes:
        methods = ",".join(sorted(route.methods)) if route.methods else "ALL"
        template = str(route.function.trigger.get("route") or route.function.name)
        prefix = f"/{host.route_prefix}" if host.route_prefix else ""
        print(f"\t{route.function.name}: [{methods}] {host.base_url}{prefix}/{template}")
    for fn in host.functions.values():
        if fn.kind != "httpTrigger":
            print(f"\t{fn.name}: {fn.kind}")
    print(
        f"\nFire a timer or queue function: POST {host.base_url}/admin/functions/<name> (master key)\n",
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    log.info("Stopping DevHost")
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
