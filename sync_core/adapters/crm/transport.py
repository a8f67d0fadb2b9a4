"""What every CRM connector makes of a request that got no answer: the one map from httpx's transport errors
to the sync's error tree, and what a 2xx JSON answer must be; shared by the CRM connectors. I/O side."""

from __future__ import annotations

from typing import Any

import httpx

from sync_core.errors import PermanentError, SyncError, TransientError, UnprocessableError


def transport_error(exc: httpx.HTTPError, vendor: str, *, side: str, item_id: str | None) -> SyncError:
    """A timeout or an unreachable CRM is transient; a request that cannot be sent at all is permanent."""
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"{vendor} request timed out ({name}): {exc}", side=side, item_id=item_id)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.TooManyRedirects):
        return PermanentError(f"{vendor} request cannot be sent ({name}): {exc}", side=side, item_id=item_id)
    return TransientError(f"{vendor} unreachable ({name}): {exc}", side=side, item_id=item_id)


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
