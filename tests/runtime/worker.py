"""The Python worker library (azure-functions-runtime) driven in-process, as the 3.13+ worker drives it.

The worker process on Python 3.13+ is a thin proxy: it receives the host's gRPC messages and hands each to
the library as `WorkerRequest(name, request=<StreamingMessage>, properties)`, the init request with
`{"protos": <the protocol's message module>, "host": ...}`, and sends back the response the library
builds with those protos. This driver plays the host and the proxy: worker init (which indexes
function_app.py), functions metadata, one load per function, then invocation requests whose input data
and trigger metadata have the shapes the host gives HTTP, queue and timer triggers.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

# What the host tells the worker it can do (WorkerInitRequest.capabilities): none of the optional ones.
HOST_CAPABILITIES: dict[str, str] = {}


@dataclass
class WorkerRequest:
    """The proxy worker's envelope for the library: a name, the host's message, and properties."""

    name: str
    request: Any
    properties: dict[str, Any] | None = None


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


@dataclass
class Outcome:
    """An invocation's result as the host reads it: success or the exception, the $return value."""

    ok: bool
    error: str
    return_value: Any
    http: HttpReply | None = None
    outputs: dict[str, Any] = field(default_factory=dict)


def joined(values: Sequence[str]) -> str:
    """The host's `StringValues.ToString()`: one value as it is; several joined with ',', empties left out."""
    return ",".join(v for v in values if v) if len(values) > 1 else (values[0] if values else "")


def datetime_json(moment: datetime) -> str:
    """A DateTimeOffset in trigger metadata: the host serialises it as a JSON string."""
    return json.dumps(moment.isoformat())


class Worker:
    """One in-process worker: `await start(app_dir)`, then `invoke_*`; `functions` maps name to metadata."""

    def __init__(self, runtime: ModuleType, protos: ModuleType) -> None:
        self.runtime, self.protos = runtime, protos
        self.functions: dict[str, Any] = {}  # name -> RpcFunctionMetadata, as the library indexed them
        self.init_response: Any = None
        self.load_responses: dict[str, Any] = {}

    def _message(self, **content: Any) -> Any:
        return self.protos.StreamingMessage(request_id=str(uuid.uuid4()), **content)

    async def start(self, app_dir: Path, host: str = "127.0.0.1") -> None:
        p = self.protos
        self.runtime.start_threadpool_executor()
        init = self._message(
            worker_init_request=p.WorkerInitRequest(
                host_version="4.1040.0",
                capabilities=HOST_CAPABILITIES,
                worker_directory=str(Path(self.runtime.__file__).parent),
                function_app_directory=str(app_dir),
            )
        )
        self.init_response = await self.runtime.worker_init_request(
            WorkerRequest("WorkerInitRequest", init, {"protos": p, "host": host})
        )
        if self.init_response.result.status != p.StatusResult.Success:
            raise RuntimeError(f"worker init failed: {self.init_response.result.exception.message}")
        metadata = await self.runtime.functions_metadata_request(
            WorkerRequest(
                "WorkerMetadataRequest",
                self._message(
                    functions_metadata_request=p.FunctionsMetadataRequest(function_app_directory=str(app_dir))
                ),
            )
        )
        if metadata.result.status != p.StatusResult.Success:
            raise RuntimeError(f"functions metadata failed: {metadata.result.exception.message}")
        for fn in metadata.function_metadata_results:
            load = self._message(
                function_load_request=p.FunctionLoadRequest(function_id=fn.function_id, metadata=fn)
            )
            response = await self.runtime.function_load_request(WorkerRequest("FunctionLoadRequest", load))
            if response.result.status != p.StatusResult.Success:
                raise RuntimeError(f"load of {fn.name} failed: {response.result.exception.message}")
            self.functions[fn.name] = fn
            self.load_responses[fn.name] = response

    def stop(self) -> None:
        self.runtime.stop_threadpool_executor()

    def raw_bindings(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(b) for b in self.functions[name].raw_bindings]

    def trigger(self, name: str) -> dict[str, Any]:
        return next(b for b in self.raw_bindings(name) if str(b["type"]).endswith("Trigger"))

    async def invoke(
        self, name: str, value: Any, trigger_metadata: Mapping[str, Any] | None = None
    ) -> Outcome:
        """One InvocationRequest for `name`: the trigger parameter bound to `value` (a TypedData)."""
        p = self.protos
        fn = self.functions[name]
        request = self._message(
            invocation_request=p.InvocationRequest(
                invocation_id=str(uuid.uuid4()),
                function_id=fn.function_id,
                input_data=[p.ParameterBinding(name=self.trigger(name)["name"], data=value)],
                trigger_metadata=dict(trigger_metadata or {}),
                trace_context=p.RpcTraceContext(
                    trace_parent=f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01", trace_state=""
                ),
                retry_context=p.RetryContext(retry_count=0, max_retry_count=0),
            )
        )
        response = await self.runtime.invocation_request(WorkerRequest("FunctionInvocationRequest", request))
        ok = response.result.status == p.StatusResult.Success
        returned = response.return_value if response.HasField("return_value") else None
        http = None
        if returned is not None and returned.WhichOneof("data") == "http":
            rpc = returned.http
            body = rpc.body
            kind = body.WhichOneof("data")
            raw = (
                body.bytes
                if kind == "bytes"
                else (getattr(body, kind) or "").encode()
                if kind in ("string", "json")
                else b""
            )
            http = HttpReply(int(rpc.status_code or 200), {k.lower(): v for k, v in rpc.headers.items()}, raw)
        outputs = {b.name: b.data for b in response.output_data}
        return Outcome(ok, response.result.exception.message, returned, http, outputs)

    # -- the host's shapes for each trigger

    def http_data(
        self,
        name: str,
        *,
        method: str,
        url: str,
        query: Sequence[tuple[str, str]] = (),
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        route_params: Mapping[str, str] | None = None,
    ) -> Any:
        """RpcHttp as the host builds it without nullable maps (the Python worker asks for none): header
        names lowercased and repeats joined, query parameters joined and left out when empty, the raw body
        as bytes (RawHttpBodyBytes) and only when there is one, route parameters in `params`."""
        p = self.protos
        header_names = dict.fromkeys(k.lower() for k, _ in headers)
        query_names = dict.fromkeys(k for k, _ in query)
        rpc = p.RpcHttp(
            method=method,
            url=url + (f"?{urlencode(list(query))}" if query else ""),
            headers={k: joined([v for n, v in headers if n.lower() == k]) for k in header_names},
            query={k: v for k in query_names if (v := joined([v for n, v in query if n == k]))},
            params=dict(route_params or {}),
        )
        if body:
            rpc.body.CopyFrom(p.TypedData(bytes=body))
        return p.TypedData(http=rpc)

    async def invoke_http(self, name: str, **request: Any) -> Outcome:
        return await self.invoke(name, self.http_data(name, **request))

    async def invoke_queue(self, name: str, text: str, *, dequeue_count: int = 1) -> Outcome:
        """A queue message as the host hands it over: the decoded text as a string, its properties in the
        trigger metadata (strings as strings, the count and the times as JSON)."""
        p = self.protos
        now = datetime.now(UTC)
        metadata = {
            "Id": p.TypedData(string=str(uuid.uuid4())),
            "PopReceipt": p.TypedData(string=base64.b64encode(uuid.uuid4().bytes).decode()),
            "DequeueCount": p.TypedData(json=json.dumps(dequeue_count)),
            "InsertionTime": p.TypedData(json=datetime_json(now)),
            "ExpirationTime": p.TypedData(json=datetime_json(now + timedelta(days=7))),
            "NextVisibleTime": p.TypedData(json=datetime_json(now + timedelta(minutes=10))),
            "QueueTrigger": p.TypedData(string=text),
        }
        return await self.invoke(name, p.TypedData(string=text), metadata)

    async def invoke_timer(self, name: str, *, past_due: bool = False) -> Outcome:
        """A timer firing as the host serialises TimerInfo: Schedule, ScheduleStatus, IsPastDue."""
        now = datetime.now(UTC)
        info = {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {
                "Last": (now - timedelta(minutes=5)).isoformat(),
                "Next": (now + timedelta(minutes=5)).isoformat(),
                "LastUpdated": now.isoformat(),
            },
            "IsPastDue": past_due,
        }
        return await self.invoke(name, self.protos.TypedData(json=json.dumps(info)))
