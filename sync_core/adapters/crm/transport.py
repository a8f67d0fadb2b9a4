"""What every CRM connector makes of a request that got no answer: the one map from httpx's transport errors
to the sync's error tree, shared by the REST, Dataverse and Salesforce connectors. I/O side."""

from __future__ import annotations

import httpx

from sync_core.errors import PermanentError, SyncError, TransientError


def transport_error(exc: httpx.HTTPError, vendor: str, *, side: str, item_id: str | None) -> SyncError:
    """A timeout or an unreachable CRM is transient; a request that cannot be sent at all is permanent."""
    name = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return TransientError(f"{vendor} request timed out ({name}): {exc}", side=side, item_id=item_id)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.TooManyRedirects):
        return PermanentError(f"{vendor} request cannot be sent ({name}): {exc}", side=side, item_id=item_id)
    return TransientError(f"{vendor} unreachable ({name}): {exc}", side=side, item_id=item_id)
