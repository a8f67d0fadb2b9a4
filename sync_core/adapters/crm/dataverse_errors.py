"""The one translation of a Dataverse Web API failure (an httpx exception or a non-2xx answer) into
sync_core.errors: the documented statuses and the error codes that decide the class. No I/O."""

from __future__ import annotations

import httpx

from sync_core.adapters.crm.dataverse_wire import DEFAULT_RETRY_AFTER_S, SIDE
from sync_core.adapters.crm.transport import answer_error, transport_error
from sync_core.errors import (
    ConcurrencyError,
    ConflictError,
    NotFoundError,
    PermanentError,
    PermissionError_,
    SyncError,
    ThrottledError,
    TransientError,
    UnprocessableError,
)

EXPIRED_VERSION_STAMP = "0x80044352"  # "Version stamp associated with the client has expired": a delta token
# Hex codes of the Web API's error body that decide the class whatever the status (api-limits.md;
# web-service-error-codes). The status decides everything else (compose-http-requests-handle-errors.md).
CODE_CLASSES: dict[str, type[SyncError]] = {
    "0x80072322": ThrottledError,  # number of requests exceeded the limit of 6000 over 300 seconds
    "0x80072321": ThrottledError,  # combined execution time exceeded 1,200,000 ms over 300 seconds
    "0x80072326": ThrottledError,  # number of concurrent requests exceeded the limit of 52
    EXPIRED_VERSION_STAMP: NotFoundError,  # the change-tracking token expired: read everything again
}
# Every status the Web API documents (compose-http-requests-handle-errors.md, "Identify status codes") and
# the class it becomes; the test enumerates them. 405 (CannotDeleteDueToAssociation, InvalidOperation,
# NotSupported) is the CRM refusing the operation in its state: a ConflictError, never retried.
DOCUMENTED_STATUSES: dict[int, type[SyncError]] = {
    400: UnprocessableError,
    401: PermissionError_,
    403: PermissionError_,
    404: NotFoundError,
    405: ConflictError,
    412: ConcurrencyError,
    413: UnprocessableError,
    429: ThrottledError,
    501: PermanentError,
    503: TransientError,  # without Retry-After; with it, ThrottledError
}


def error_body(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of the Web API error envelope `{"error": {"code", "message"}}`, or ("", text)."""
    try:
        data = response.json()
    except ValueError:
        return "", response.text[:200]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        return str(err.get("code") or ""), str(err.get("message") or "")
    return "", response.text[:200]


def translate_error(
    outcome: httpx.Response | httpx.HTTPError, *, item_id: str | None, now: float | None = None
) -> SyncError:
    """The one map from an httpx exception or a non-2xx Web API answer to the sync's error tree."""
    if isinstance(outcome, httpx.HTTPStatusError):
        outcome = outcome.response
    if isinstance(outcome, httpx.HTTPError):
        return transport_error(outcome, "Dataverse", side=SIDE, item_id=item_id)
    status = outcome.status_code
    code, detail = error_body(outcome)
    message = f"Dataverse answered {status} to {outcome.request.method} {outcome.request.url.path}"
    if code or detail:
        message = f"{message}: {code + ': ' if code else ''}{detail}"
    target = CODE_CLASSES.get(code.lower()) or DOCUMENTED_STATUSES.get(status)
    return answer_error(
        outcome,
        message,
        target,
        side=SIDE,
        item_id=item_id,
        now=now,
        default_retry_after=DEFAULT_RETRY_AFTER_S,
    )
