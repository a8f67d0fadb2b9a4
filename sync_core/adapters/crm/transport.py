"""What every CRM connector makes of a request that got no answer (httpx's transport errors) or a non-2xx
answer, in the sync's error tree, and what a 2xx JSON answer must be; shared by the CRM connectors. I/O
side."""

from __future__ import annotations

import time
from typing import Any, Protocol

import httpx

from sync_core.errors import (
    PermanentError,
    SyncError,
    ThrottledError,
    TransientError,
    UnprocessableError,
    retry_after_seconds,
    status_class,
)


class Translate(Protocol):
    """A connector's one map from an httpx failure or a non-2xx answer to the sync's error tree."""

    def __call__(self, outcome: httpx.Response | httpx.HTTPError, *, item_id: str | None) -> SyncError: ...


async def send(
    client: httpx.AsyncClient, translate: Translate, method: str, url: str, *, item_id: str | None, **kw: Any
) -> httpx.Response:
    """One request and its answer, 2xx or not; a request that got no answer raises as `translate` maps it."""
    try:
        return await client.request(method, url, **kw)
    except httpx.HTTPError as exc:
        raise translate(exc, item_id=item_id) from exc


async def send_ok(
    client: httpx.AsyncClient, translate: Translate, method: str, url: str, *, item_id: str | None, **kw: Any
) -> httpx.Response:
    """`send`, and a non-2xx answer raised as `translate` maps it."""
    response = await send(client, translate, method, url, item_id=item_id, **kw)
    if not response.is_success:
        raise translate(response, item_id=item_id)
    return response


def transport_error(exc: httpx.HTTPError, vendor: str, *, side: str, item_id: str | None) -> SyncError:
    """A timeout or an unreachable CRM is transient; a request that cannot be sent at all is permanent."""
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"{vendor} request timed out ({name}): {exc}", side=side, item_id=item_id)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.TooManyRedirects):
        return PermanentError(f"{vendor} request cannot be sent ({name}): {exc}", side=side, item_id=item_id)
    return TransientError(f"{vendor} unreachable ({name}): {exc}", side=side, item_id=item_id)


def answer_error(
    response: httpx.Response,
    message: str,
    target: type[SyncError] | None,
    *,
    side: str,
    item_id: str | None,
    now: float | None,
    default_retry_after: float,
) -> SyncError:
    """The error for a non-2xx answer: `target` (the class a vendor's table gives its code or status), else,
    or when it is transient but the answer names a Retry-After, the status's own class; a throttle waits for
    Retry-After, or `default_retry_after` without a usable one."""
    ctx: dict[str, str | None] = {"side": side, "item_id": item_id}
    wait = retry_after_seconds(response.headers.get("Retry-After"), time.time() if now is None else now)
    if target is None or (target is TransientError and wait is not None):
        target = status_class(response.status_code, has_retry_after=wait is not None)
    if target is ThrottledError:
        return ThrottledError(message, retry_after=default_retry_after if wait is None else wait, **ctx)
    return target(message, **ctx)


def json_object(response: httpx.Response, vendor: str, *, side: str, item_id: str | None) -> dict[str, Any]:
    """A 2xx answer's body as a JSON object; anything else is the vendor's unprocessable answer."""
    try:
        data = response.json()
    except ValueError as exc:
        raise UnprocessableError(
            f"{vendor} sent a body that is not JSON: {exc}", side=side, item_id=item_id
        ) from exc
    if not isinstance(data, dict):
        raise UnprocessableError(f"{vendor} sent JSON that is not an object", side=side, item_id=item_id)
    return data
