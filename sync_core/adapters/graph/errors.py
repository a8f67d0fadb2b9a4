"""Graph failures -> the sync error tree, once, at the adapter edge: every status and client-stack
exception type has an entry. Pure: no I/O.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx
from kiota_abstractions.api_error import APIError

from sync_core import errors
from sync_core.adapters import telemetry
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

# Graph error codes that decide the class whatever the status (facts §7: a lost delta token is "a 40X-series
# error with error codes such as syncStateNotFound").
CODE_CLASSES: dict[str, type[SyncError]] = {
    "syncstatenotfound": NotFoundError,
    "resyncrequired": NotFoundError,
    "erroritemnotfound": NotFoundError,
    "itemnotfound": NotFoundError,
    "errorirresolvableconflict": ConcurrencyError,  # changeKey mismatch on a write
    # A create whose transactionId was already used (Graph has answered it 400 and 409 in the field): the
    # event exists; GraphAdapter.create_event finds it by our tag instead of failing.
    "errorduplicatetransactionid": ConflictError,
    "erroritemalreadyexists": ConflictError,
    "resourcemodified": ConcurrencyError,
    "erroraccessdenied": PermissionError_,
    "mailboxconcurrency": ThrottledError,
    "applicationthrottled": ThrottledError,
}

# Exact statuses first, then the class of the status (x // 100).
# Exception types of the client stack, most specific first (checked with isinstance in this order).
# Status-carrying types are handled before this table.
EXCEPTION_CLASSES: tuple[tuple[type[BaseException] | str, type[SyncError]], ...] = (
    # asyncio and the OS: the call did not complete
    (asyncio.TimeoutError, TransientError),
    (TimeoutError, TransientError),
    (ConnectionError, TransientError),
    # httpx: request-side mistakes are ours (permanent), transport failures are transient
    (httpx.UnsupportedProtocol, PermanentError),
    (httpx.LocalProtocolError, UnprocessableError),
    (httpx.TooManyRedirects, PermanentError),
    (httpx.InvalidURL, PermanentError),
    (httpx.CookieConflict, PermanentError),
    (httpx.StreamError, PermanentError),  # StreamConsumed/Closed, Request/ResponseNotRead: a client bug
    (httpx.DecodingError, TransientError),  # a truncated or garbled response body
    (httpx.TransportError, TransientError),  # timeouts, connect/read/write/close errors, protocol, proxy
    (httpx.RequestError, TransientError),
    (httpx.HTTPError, TransientError),
    # kiota-http
    ("kiota_http._exceptions.DeserializationError", UnprocessableError),
    ("kiota_http._exceptions.RequestError", UnprocessableError),  # request information incomplete
    ("kiota_http._exceptions.RedirectError", PermanentError),
    ("kiota_http._exceptions.BackingStoreError", PermanentError),
    ("kiota_http._exceptions.ResponseError", TransientError),  # "Unable to get response from request"
    ("kiota_http._exceptions.KiotaHTTPXError", TransientError),
    # kiota-authentication-azure: a non-https URL or a refused token request
    ("kiota_authentication_azure._exceptions.HTTPError", PermanentError),
    ("kiota_authentication_azure._exceptions.KiotaAuthenticationError", PermissionError_),
    # azure-identity / azure-core (token acquisition)
    ("azure.identity._exceptions.AuthenticationRequiredError", PermissionError_),
    ("azure.identity._exceptions.CredentialUnavailableError", TransientError),  # IMDS not answering yet
    ("azure.core.exceptions.ClientAuthenticationError", PermissionError_),
    ("azure.core.exceptions.IncompleteReadError", TransientError),
    ("azure.core.exceptions.DecodeError", TransientError),
    ("azure.core.exceptions.TooManyRedirectsError", PermanentError),
    ("azure.core.exceptions.ResourceNotFoundError", NotFoundError),
    ("azure.core.exceptions.ResourceExistsError", ConflictError),
    ("azure.core.exceptions.ResourceModifiedError", ConcurrencyError),
    ("azure.core.exceptions.ResourceNotModifiedError", PermanentError),
    ("azure.core.exceptions.ODataV4Error", PermanentError),  # status decides first when present
    ("azure.core.exceptions.HttpResponseError", TransientError),  # status decides first when present
    ("azure.core.exceptions.ServiceRequestError", TransientError),
    ("azure.core.exceptions.ServiceResponseError", TransientError),
    ("azure.core.exceptions.ResponseNotReadError", PermanentError),
    ("azure.core.exceptions.StreamConsumedError", PermanentError),
    ("azure.core.exceptions.StreamClosedError", PermanentError),
    ("azure.core.exceptions.DeserializationError", UnprocessableError),
    ("azure.core.exceptions.SerializationError", UnprocessableError),
    ("azure.core.exceptions.AzureError", TransientError),
    # the JSON parse nodes (kiota-serialization-json) and model constructors: a payload we cannot read
    (json.JSONDecodeError, UnprocessableError),
    (UnicodeDecodeError, UnprocessableError),
    (ValueError, UnprocessableError),
    (TypeError, UnprocessableError),
    (KeyError, UnprocessableError),
    (AttributeError, UnprocessableError),
    (OSError, TransientError),
)


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def classify(exc_type: type[BaseException]) -> type[SyncError] | None:
    """The error class for an exception type of the client stack; None if the table does not know it."""
    if issubclass(exc_type, SyncError):
        return exc_type
    names = {_type_name(cls) for cls in exc_type.__mro__}
    for key, target in EXCEPTION_CLASSES:
        if isinstance(key, str) and key in names:
            return target
        if isinstance(key, type) and issubclass(exc_type, key):
            return target
    if issubclass(exc_type, APIError):
        return PermanentError  # an APIError without a status
    return None


def status_class(status: int, code: str | None = None, *, has_retry_after: bool = False) -> type[SyncError]:
    """The error class for an HTTP status and the Graph error code, which wins when it is known."""
    known = CODE_CLASSES.get((code or "").lower())
    if known is not None and (known is not ThrottledError or has_retry_after):
        return known
    return errors.status_class(status, has_retry_after=has_retry_after)


def retry_after_seconds(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """`Retry-After` in seconds (delta-seconds, possibly fractional, or an HTTP-date); None when absent."""
    return errors.retry_after_seconds(
        errors.header(headers, "retry-after"), time.time() if now is None else now
    )


DEFAULT_THROTTLE_SECONDS = 1.0  # a 429 without Retry-After: the caller's backoff takes over from here


def from_status(
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    mailbox: str | None = None,
    item_id: str | None = None,
) -> SyncError:
    """One Graph answer (a whole response or a `$batch` item) as a sync error."""
    wait = retry_after_seconds(headers)
    if status in (429, 503, 509):
        telemetry.graph_throttled(status)  # seen, whether or not it is retried
    target = status_class(status, code, has_retry_after=wait is not None)
    kw: dict[str, Any] = {"side": "graph", "mailbox": mailbox, "item_id": item_id}
    text = f"Graph {status}{f' {code}' if code else ''}: {message}"
    if target is ThrottledError:
        return ThrottledError(text, retry_after=DEFAULT_THROTTLE_SECONDS if wait is None else wait, **kw)
    return target(text, **kw)


def _odata_code(exc: BaseException) -> str | None:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    return str(code) if code else None


def _status_of(exc: BaseException) -> tuple[int | None, Mapping[str, str] | None]:
    if isinstance(exc, APIError):
        return exc.response_status_code, exc.response_headers
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code, exc.response.headers
    status = getattr(exc, "status_code", None)  # azure-core HttpResponseError and its subclasses
    if isinstance(status, int):
        response = getattr(exc, "response", None)
        return status, getattr(response, "headers", None)
    return None, None


def translate(exc: BaseException, *, mailbox: str | None = None, item_id: str | None = None) -> SyncError:
    """Map a kiota/msgraph/httpx/azure exception to the sync error tree. The only place that knows them."""
    if isinstance(exc, SyncError):
        if exc.mailbox is None:
            exc.mailbox = mailbox
        if exc.item_id is None:
            exc.item_id = item_id
        return exc
    status, headers = _status_of(exc)
    if status is not None:
        message = (
            (exc.primary_message if isinstance(exc, APIError) else None) or str(exc) or type(exc).__name__
        )
        return from_status(
            status, message, code=_odata_code(exc), headers=headers, mailbox=mailbox, item_id=item_id
        )
    target = classify(type(exc))
    kw: dict[str, Any] = {"side": "graph", "mailbox": mailbox, "item_id": item_id}
    text = f"Graph call failed: {type(exc).__name__}: {exc}"
    if target is None:
        return TransientError(f"unexpected Graph failure: {exc!r}", **kw)
    if target is ThrottledError:
        return ThrottledError(text, retry_after=DEFAULT_THROTTLE_SECONDS, **kw)
    return target(text, **kw)


def server_retry_after(exc: BaseException) -> float | None:
    """Retry-After as Graph sent it on this failure, or None (then we back off on our own)."""
    _, headers = _status_of(exc)
    return retry_after_seconds(headers)
