"""DevHost: the HTTP server, the listeners and the invocation of functions in one event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import hmac
import inspect
import json
import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import azure.functions as func
from aiohttp import web
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue.aio import QueueClient

from devstack import ncrontab
from devstack.azurite import development_storage_connection_string
from devstack.host.functions import (
    ADMIN_REASON,
    HostedFunction,
    InvocationContext,
    OutBinding,
    discover,
    queue_message,
)
from devstack.host.listeners import QueueListener, TimerListener
from devstack.host.options import DEFAULT_DRAIN_SECONDS, MAX_REQUEST_BYTES, QueueOptions, parse_timespan
from devstack.host.routing import Route, compile_route, setting_expression, web_response

log = logging.getLogger("devstack.host")

FUNCTION_KEY_SETTING_PREFIX = "DEVHOST_FUNCTION_KEY__"  # + a function's name: that function's own key
RESERVED_ROUTE_PREFIXES = ("admin", "runtime")


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
        on_stop: Sequence[Callable[[], Awaitable[object]]] = (),
        listen: bool = True,
    ) -> None:
        """`on_stop`: coroutine functions awaited in the host's event loop once invocations have drained,
        before the loop ends: the place to close async clients the app made in that loop (sync_core's
        is `bootstrap.close_container`). The Functions host has no such hook; its loop lives as long as
        the worker process. `listen=False`: HTTP and on-demand invocations only, no queue polling and no
        timers (a test that must see what lands on a queue, or drive the queue functions itself)."""
        self._listen = listen
        self._settings = dict(settings)
        self._on_stop = tuple(on_stop)
        self._bind, self._port, self._drain = bind, port, drain_seconds
        self.functions = {fn.name: fn for fn in discover(app)}
        self.queue_options = QueueOptions.from_host_json(host_json)
        http: Mapping[str, Any] = host_json.get("extensions", {}).get("http", {})
        self.route_prefix = str(http.get("routePrefix", "api")).strip("/")
        timeout = host_json.get("functionTimeout")
        self._function_timeout = None if timeout in (None, "-1", -1) else parse_timespan(timeout)
        self.function_key = self._key("DEVHOST_FUNCTION_KEY", "function")
        self.master_key = self._key("DEVHOST_MASTER_KEY", "master")
        # Per-function keys, as the host keeps them beside the host keys: each opens its function only.
        self.function_keys = {
            name: key
            for name in self.functions
            if (key := self.setting(f"{FUNCTION_KEY_SETTING_PREFIX}{name}"))
        }
        self._routes: list[Route] = []
        self._queue_specs: list[tuple[HostedFunction, str, str]] = []
        self._timers: dict[str, TimerListener] = {}
        for fn in self.functions.values():
            self._prepare(fn)
        threads = self.setting("PYTHON_THREADPOOL_THREAD_COUNT")
        self._threads = int(threads) if threads else min(32, (os.cpu_count() or 1) + 4)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._listeners: list[QueueListener] = []
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

    def _prepare(self, fn: HostedFunction) -> None:
        trigger = fn.trigger
        if fn.kind == "httpTrigger":
            template = str(trigger.get("route") or fn.name)
            pattern, defaults = compile_route(template)
            methods = trigger.get("methods")
            route = Route(
                function=fn,
                pattern=pattern,
                defaults=defaults,
                methods=frozenset(str(m).upper() for m in methods) if methods else None,
                auth_level=str(trigger.get("authLevel") or "function").lower(),
                template=template,
            )
            check_route(route, self._routes)
            self._routes.append(route)
        elif fn.kind == "queueTrigger":
            queue = setting_expression(str(trigger["queueName"]), self.setting)
            self._queue_specs.append(
                (fn, queue, self.connection_string(str(trigger.get("connection") or "")))
            )
        else:
            schedule = setting_expression(str(trigger["schedule"]), self.setting)
            ncrontab.parse(schedule)  # fail at construction on a bad expression
            # Listener objects are created here; their asyncio primitives bind to the host loop on first use.
            self._timers[fn.name] = TimerListener(self, fn, schedule, bool(trigger.get("runOnStartup")))
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
            listener = QueueListener(self, fn, queue, connection, self.queue_options)
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
        for listener in self._listeners if self._listen else []:
            self._loops.append(asyncio.create_task(listener.run()))
        for timer in self._timers.values() if self._listen else []:
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
        for hook in self._on_stop:
            try:
                await hook()
            except Exception:
                log.exception("DevHost stop: on_stop hook %r failed", hook)
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

    async def invoke_function(self, fn: HostedFunction, trigger: Any, reason: str) -> Any:
        """Call one function with its trigger value, as the worker would; raises what the function raises."""
        invocation_id = str(uuid.uuid4())
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", fn.name, reason, invocation_id)
        started = time.monotonic()
        outs = {b["name"]: OutBinding() for b in fn.queue_outputs if b["name"] != "$return"}
        kwargs: dict[str, Any] = {fn.trigger["name"]: trigger, **outs}
        if fn.wants_context:
            kwargs["context"] = InvocationContext(invocation_id, fn.name, fn.directory)
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
            if result is not None and not fn.has_return:
                # The worker's words: the invocation fails, and a queue message is retried.
                raise RuntimeError(
                    f"function {fn.name!r} without a $return binding returned a non-None value"
                )
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

    async def _write_outputs(self, fn: HostedFunction, outs: dict[str, OutBinding], result: Any) -> None:
        for binding in fn.queue_outputs:
            name = binding["name"]
            value = result if name == "$return" else outs[name].get()
            if value is None:
                continue
            queue = setting_expression(str(binding["queueName"]), self.setting)
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

    async def _invoke_on_demand(self, fn: HostedFunction, input: str | None) -> Any:
        if fn.kind == "timerTrigger":
            await self._timers[fn.name].fire(datetime.now(UTC), past_due=False)
            return None
        message = queue_message(
            id=str(uuid.uuid4()),
            body=(input or "").encode("utf-8"),
            dequeue_count=1,
            insertion_time=datetime.now(UTC),
        )
        return await self.invoke_function(fn, message, ADMIN_REASON)

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

    def _authorized(self, request: web.Request, level: str, function: str | None = None) -> bool:
        """The host's key check: ADMIN wants the master key; FUNCTION also takes a host function key or
        one of this function's own keys (never another function's)."""
        if level == "anonymous":
            return True
        given = request.headers.get("x-functions-key") or request.query.get("code") or ""
        keys = [self.master_key]
        if level == "function":
            keys.append(self.function_key)
            if function is not None and function in self.function_keys:
                keys.append(self.function_keys[function])
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
        if not allowed:  # the Functions host answers a method a route does not take as an unknown route
            return web.Response(status=404)
        # Like ASP.NET routing, prefer the most literal template: `items/special` over `items/{id}`.
        route, match = min(allowed, key=lambda candidate: candidate[0].pattern.groups)
        if not self._authorized(request, route.auth_level, route.function.name):
            return web.Response(status=401)
        params = {k: v for k, v in match.groupdict().items() if v is not None}
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            # As the host hands them to the worker (RpcHttp): header names lowercased, repeats joined with
            # "," (ASP.NET's StringValues, which skips empty values); a query parameter whose value is empty
            # is absent.
            headers={k.lower(): joined(request.headers.getall(k)) for k in request.headers},
            params={k: v for k in request.query if (v := joined(request.query.getall(k)))},
            route_params={**route.defaults, **params},
            body=await request.read(),  # aiohttp answers 413 past client_max_size
        )
        try:
            result = await self.invoke_function(route.function, http_request, ADMIN_REASON)
        except Exception:
            return web.Response(status=500)  # invoke_function has logged the traceback
        try:
            return web_response(result)
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


def joined(values: Sequence[str]) -> str:
    """Several values of one header or query parameter as the host passes them: ASP.NET Core's
    `StringValues.ToString()`, which joins with "," and leaves out empty values."""
    return ",".join(v for v in values if v) if len(values) > 1 else (values[0] if values else "")


def check_route(route: Route, earlier: Sequence[Route]) -> None:
    """Refuse at start what the host refuses: a route in its own space (`admin...`, `runtime...`, whatever
    the route prefix), and the same route as another function with a method in common (none = all)."""
    template = route.template.strip("/").lower()
    if template.startswith(RESERVED_ROUTE_PREFIXES):
        raise ValueError(
            f"function {route.function.name!r}: route {route.template!r}: The specified route conflicts with "
            "one or more built in routes."
        )
    for other in earlier:
        if other.template.strip("/").lower() != template:
            continue
        if route.methods is None or other.methods is None or route.methods & other.methods:
            raise ValueError(
                f"function {route.function.name!r}: The route specified conflicts with the route defined by "
                f"function '{other.function.name}'."
            )


def _copy_outcome(task: asyncio.Task[Any], target: concurrent.futures.Future[Any]) -> None:
    if target.done():  # the caller cancelled its future; the invocation ran anyway
        return
    if task.cancelled():
        target.cancel()
    elif (error := task.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(task.result())
