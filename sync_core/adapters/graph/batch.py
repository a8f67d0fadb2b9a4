"""JSON batching (`POST /$batch`, facts §9): up to 20 requests, per-request results, `dependsOn`.

I/O side, used through GraphAdapter.batch(). Each item's failure goes through the same mapping as a direct
call (graph_errors.from_status). The batch holds limiter places the way Outlook runs it: an unordered batch
runs up to 4 items of a mailbox at once, a `dependsOn` batch runs one at a time; every item counts against
the mailbox's request budget. Throttled or transient items are sent again (with the items that failed 424
because of them) while Retry-After is short and the time limit allows.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_abstractions.serialization import Parsable
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from sync_core.adapters.graph.errors import from_status, retry_after_seconds
from sync_core.adapters.graph.limits import MAX_CONCURRENT_PER_MAILBOX
from sync_core.errors import ConcurrencyError, SyncError, ThrottledError, TransientError, UnprocessableError

if TYPE_CHECKING:
    from sync_core.adapters.graph.adapter import GraphAdapter

MAX_BATCH = 20
P = TypeVar("P", bound=Parsable)
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "PATCH", "DELETE", "HEAD"})


@dataclass(frozen=True)
class BatchRequest:
    """One item of a batch. `url` is relative to the version root (`/users/{id}/events/{id}`)."""

    id: str
    method: str
    url: str
    mailbox: str
    item_id: str | None = None
    body: Any = None
    depends_on: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotent: bool | None = None  # None: by method (a POST with transactionId may say True)

    def retryable(self) -> bool:
        return self.idempotent if self.idempotent is not None else self.method.upper() in IDEMPOTENT_METHODS

    def to_json(self, depends_on: Sequence[str], prefer: Sequence[str] = ()) -> dict[str, Any]:
        """The item as Graph reads it; `prefer` is added when the item has no Prefer of its own."""
        item: dict[str, Any] = {"id": self.id, "method": self.method.upper(), "url": self.url}
        headers = dict(self.headers)
        if prefer and not any(k.lower() == "prefer" for k in headers):
            headers["Prefer"] = ", ".join(prefer)
        if self.body is not None:
            item["body"] = self.body
            if not any(k.lower() == "content-type" for k in headers):
                headers["Content-Type"] = "application/json"
        if headers:
            item["headers"] = headers
        if depends_on:
            item["dependsOn"] = list(depends_on)
        return item


@dataclass(frozen=True)
class BatchResult:
    """One item's answer; `error` is the translated failure, None on 2xx."""

    id: str
    status: int
    headers: dict[str, str]
    body: Any
    error: SyncError | None

    @property
    def ok(self) -> bool:
        return self.error is None

    def parse(self, model: type[P]) -> P | None:
        """The body as an msgraph model (Event, EventCollectionResponse, ...), as the SDK would parse it."""
        if not self.ok or self.body is None:
            return None
        node = JsonParseNodeFactory().get_root_parse_node("application/json", json.dumps(self.body).encode())
        return node.get_object_value(model)  # type: ignore[arg-type]


def from_request_information(
    info: RequestInformation,
    base_url: str,
    *,
    id: str,
    mailbox: str,
    item_id: str | None = None,
    depends_on: Sequence[str] = (),
    idempotent: bool | None = None,
) -> BatchRequest:
    """A batch item from what an msgraph request builder would send (`to_get_request_information(...)`)."""
    info.path_parameters.setdefault("baseurl", base_url)
    absolute = str(info.url)
    parts = urlsplit(absolute)
    root = urlsplit(base_url).path.rstrip("/")
    path = unquote(parts.path)
    relative = path[len(root) :] if root and path.startswith(root) else path
    url = relative + (f"?{parts.query}" if parts.query else "")
    headers = {k: ", ".join(sorted(v)) for k, v in info.headers.get_all().items() if k.lower() != "accept"}
    body = json.loads(info.content) if info.content else None
    return BatchRequest(
        id=id,
        method=info.http_method.value if info.http_method else "GET",
        url=url,
        mailbox=mailbox,
        item_id=item_id,
        body=body,
        depends_on=tuple(depends_on),
        headers=headers,
        idempotent=idempotent,
    )


def validate(requests: Sequence[BatchRequest]) -> None:
    """Graph's own rules (facts §9), checked before sending so a bad batch never costs a request."""
    if not requests:
        raise UnprocessableError("an empty batch", side="graph")
    if len(requests) > MAX_BATCH:
        raise UnprocessableError(
            f"{len(requests)} requests in one batch; Graph allows {MAX_BATCH}", side="graph"
        )
    ids = [r.id.lower() for r in requests]
    if len(set(ids)) != len(ids):
        raise UnprocessableError("batch request ids must be unique (case-insensitive)", side="graph")
    for r in requests:
        unknown = [d for d in r.depends_on if d.lower() not in ids]
        if unknown:
            raise UnprocessableError(f"batch request {r.id} depends on unknown {unknown}", side="graph")


def slots_for(requests: Sequence[BatchRequest]) -> dict[str, int]:
    """Limiter places per mailbox: one for a sequential (dependsOn) batch, else as many as Outlook runs."""
    per_mailbox = Counter(r.mailbox.lower() for r in requests)
    if any(r.depends_on for r in requests):
        return dict.fromkeys(per_mailbox, 1)
    return {m: min(n, MAX_CONCURRENT_PER_MAILBOX) for m, n in per_mailbox.items()}


def _result(request: BatchRequest, answer: Mapping[str, Any]) -> BatchResult:
    status = int(answer.get("status") or 0)
    headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
    body = answer.get("body")
    error = None
    if not 200 <= status < 300:
        inner = body.get("error") if isinstance(body, dict) else None
        code = str(inner.get("code")) if isinstance(inner, dict) and inner.get("code") else None
        message = str(inner.get("message")) if isinstance(inner, dict) else f"status {status}"
        error = from_status(
            status, message, code=code, headers=headers, mailbox=request.mailbox, item_id=request.item_id
        )
    return BatchResult(request.id, status, headers, body, error)


def _missing(request: BatchRequest) -> BatchResult:
    error = TransientError(
        "Graph's batch answer has no response for this request",
        side="graph",
        mailbox=request.mailbox,
        item_id=request.item_id,
    )
    return BatchResult(request.id, 0, {}, None, error)


async def _send(adapter: GraphAdapter, requests: Sequence[BatchRequest], prefer: Sequence[str]) -> Any:
    """One `POST /$batch` through kiota (auth, middleware); returns the parsed JSON body."""
    request_adapter = adapter.client.request_adapter
    info = RequestInformation(Method.POST, "{+baseurl}/$batch")
    info.path_parameters["baseurl"] = request_adapter.base_url
    ids = {r.id.lower() for r in requests}
    payload = {
        "requests": [r.to_json([d for d in r.depends_on if d.lower() in ids], prefer) for r in requests]
    }
    info.content = json.dumps(payload).encode()
    info.headers.try_add("Content-Type", "application/json")
    info.headers.try_add("Accept", "application/json")
    for value in prefer:
        info.headers.add("Prefer", value)
    errors: dict[str, Any] = {"4XX": ODataError, "5XX": ODataError}
    raw: bytes | None = await cast(Any, request_adapter).send_primitive_async(info, "bytes", errors)
    return json.loads(raw) if raw else {}


def _pause(result: BatchResult, request: BatchRequest, attempt: int, adapter: GraphAdapter) -> float | None:
    """Seconds before sending this item again inline, or None when its answer is final."""
    from sync_core.adapters.graph.base import INLINE_RETRY_MAX_SECONDS

    error = result.error
    if error is None or result.status == 424:
        return None  # a failed dependency is sent again only with the request it depends on
    if isinstance(error, ThrottledError):
        told = retry_after_seconds(result.headers)
        if told is None:
            return adapter.backoff.delay(attempt)
        return told if told <= INLINE_RETRY_MAX_SECONDS else None
    if isinstance(error, TransientError) and not isinstance(error, ConcurrencyError) and request.retryable():
        return adapter.backoff.delay(attempt)
    return None


async def run_batch(
    adapter: GraphAdapter,
    requests: Sequence[BatchRequest],
    *,
    prefer: Sequence[str],
    call: Callable[[dict[str, int], Callable[[], Awaitable[Any]]], Awaitable[Any]],
    sleep: Callable[[float], Awaitable[None]],
    time_left: Callable[[], float],
    attempts: int,
) -> dict[str, BatchResult]:
    """Send `requests` as one batch; send throttled/transient items again; results by request id."""
    validate(requests)
    results: dict[str, BatchResult] = {}
    pending = list(requests)
    for attempt in range(1, max(attempts, 1) + 1):
        batch = pending
        body = await call(slots_for(batch), functools.partial(_send, adapter, batch, prefer))
        answers = {
            str(a.get("id", "")).lower(): a for a in (body.get("responses") or []) if isinstance(a, dict)
        }
        pauses: dict[str, float] = {}
        for request in batch:
            answer = answers.get(request.id.lower())
            result = _result(request, answer) if answer is not None else _missing(request)
            results[request.id] = result
            pause = _pause(result, request, attempt, adapter)
            if pause is not None:
                pauses[request.id.lower()] = pause
        again = [r for r in batch if r.id.lower() in pauses]
        again += [
            r
            for r in batch
            if results[r.id].status == 424
            and r.id.lower() not in pauses
            and any(d.lower() in pauses for d in r.depends_on)
        ]
        wait = max(pauses.values(), default=0.0)
        if not again or attempt >= attempts or wait >= time_left():
            break
        await sleep(wait)
        order = {r.id: i for i, r in enumerate(requests)}
        pending = sorted(again, key=lambda r: order[r.id])
    return results
