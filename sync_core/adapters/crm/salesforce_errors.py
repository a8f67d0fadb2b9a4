"""The one translation of a Salesforce REST API failure (an httpx exception or a non-2xx answer) into
sync_core.errors: every documented status and the error codes that decide the class. No I/O."""

from __future__ import annotations

import httpx

from sync_core.adapters.crm.salesforce_wire import DEFAULT_RETRY_AFTER_S, SIDE, api_usage
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

# Every status the REST API documents (Status Codes and Error Responses, errorcodes.htm) and its class; the
# test enumerates them. 300 is an External ID matched by several records: an operator must resolve it.
DOCUMENTED_STATUSES: dict[int, type[SyncError]] = {
    300: PermanentError,
    304: PermanentError,  # only answers a conditional GET we never send
    400: UnprocessableError,
    401: PermissionError_,
    403: PermissionError_,  # REQUEST_LIMIT_EXCEEDED excepted (below)
    404: NotFoundError,
    405: PermanentError,
    409: ConflictError,
    410: NotFoundError,
    412: ConcurrencyError,
    414: UnprocessableError,
    415: UnprocessableError,
    420: TransientError,  # Salesforce Edge has no routing information for the host yet
    428: UnprocessableError,
    431: UnprocessableError,
    500: TransientError,
    502: TransientError,
    503: TransientError,
}
# Error codes (the `errorCode` of `[{"message", "errorCode", "fields"}]`, API fault codes and StatusCode
# values) that decide the class whatever the status.
CODE_CLASSES: dict[str, type[SyncError]] = {
    "REQUEST_LIMIT_EXCEEDED": ThrottledError,  # 403: the 24-hour API allocation is used up
    "CONCURRENT_REQUEST_LIMIT_EXCEEDED": ThrottledError,  # 25 long-running requests at once
    "SERVER_UNAVAILABLE": TransientError,
    "UNABLE_TO_LOCK_ROW": TransientError,
    "REQUEST_RUNNING_TOO_LONG": TransientError,
    "QUERY_TIMEOUT": TransientError,
    "INVALID_SESSION_ID": PermissionError_,  # refreshed once by the connector before it gets here
    "ENTITY_IS_DELETED": NotFoundError,
    "NOT_FOUND": NotFoundError,
    "INVALID_QUERY_LOCATOR": NotFoundError,  # a query cursor expired: start the read again
    "DUPLICATE_VALUE": ConflictError,
    "DUPLICATE_EXTERNAL_ID": PermanentError,  # several records hold one key: an operator hold
    "INSUFFICIENT_ACCESS_OR_READONLY": PermissionError_,
    "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY": PermissionError_,
    "API_DISABLED_FOR_ORG": PermissionError_,
    "API_CURRENTLY_DISABLED": PermissionError_,
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": UnprocessableError,
    "REQUIRED_FIELD_MISSING": UnprocessableError,
    "STRING_TOO_LONG": UnprocessableError,
    "INVALID_FIELD": UnprocessableError,
    "MALFORMED_QUERY": UnprocessableError,
    "INVALID_CROSS_REFERENCE_KEY": UnprocessableError,
    # the token endpoint's OAuth errors (400 `{"error", "error_description"}`): wrong or revoked credentials
    "invalid_client": PermissionError_,
    "invalid_client_id": PermissionError_,
    "invalid_grant": PermissionError_,
    "unauthorized_client": PermissionError_,
    "unsupported_grant_type": PermissionError_,
}
OPERATOR_HOLD = "several Salesforce records hold this create key (HTTP 300): an operator must keep one"


def error_body(response: httpx.Response) -> tuple[str, str]:
    """(errorCode, message) of the first error of `[{"message", "errorCode"}]` (or the OAuth
    `{"error", "error_description"}`), or ("", text)."""
    try:
        data = response.json()
    except ValueError:
        return "", response.text[:200]
    if isinstance(data, list) and data and isinstance(data[0], dict) and "errorCode" in data[0]:
        return str(data[0].get("errorCode") or ""), str(data[0].get("message") or "")
    if isinstance(data, dict) and "error" in data:
        return str(data.get("error") or ""), str(data.get("error_description") or "")
    return "", response.text[:200]


def translate_error(
    outcome: httpx.Response | httpx.HTTPError, *, item_id: str | None, now: float | None = None
) -> SyncError:
    """The one map from an httpx exception or a non-2xx REST API answer to the sync's error tree."""
    if isinstance(outcome, httpx.HTTPStatusError):
        outcome = outcome.response
    if isinstance(outcome, httpx.HTTPError):
        return transport_error(outcome, "Salesforce", side=SIDE, item_id=item_id)
    status = outcome.status_code
    code, detail = error_body(outcome)
    message = f"Salesforce answered {status} to {outcome.request.method} {outcome.request.url.path}"
    if status == 300:
        message = f"{message}: {OPERATOR_HOLD}"
    elif code or detail:
        message = f"{message}: {code + ': ' if code else ''}{detail}"
    usage = api_usage(outcome.headers)
    if usage is not None:
        message = f"{message} (API usage {usage[0]}/{usage[1]} in 24 h)"
    target = CODE_CLASSES.get(code) or DOCUMENTED_STATUSES.get(status)
    return answer_error(
        outcome,
        message,
        target,
        side=SIDE,
        item_id=item_id,
        now=now,
        default_retry_after=DEFAULT_RETRY_AFTER_S,
    )
