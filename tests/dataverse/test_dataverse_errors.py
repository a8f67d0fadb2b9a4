"""Every error the Dataverse Web API documents maps to one class of the sync's error tree, once, at the edge
(sync_core.adapters.crm.dataverse_errors.translate_error).

Statuses: compose-http-requests-handle-errors.md ("Identify status codes"); throttling codes: api-limits.md;
the expired version stamp: 0x80044352 (use-change-tracking-synchronize-data-external-systems.md and the
metadata-cache pages).
"""

from __future__ import annotations

import httpx
import pytest

from sync_core.adapters.crm.dataverse_errors import CODE_CLASSES, DOCUMENTED_STATUSES, translate_error
from sync_core.errors import (
    ConcurrencyError,
    ConflictError,
    NotFoundError,
    PermanentError,
    PermissionError_,
    ThrottledError,
    TransientError,
    UnprocessableError,
)

DOCUMENTED = {  # status -> the class the sync needs, with the documented error names of that status
    400: UnprocessableError,  # an argument is invalid
    401: PermissionError_,  # BadAuthTicket, ExpiredAuthTicket, InvalidUserAuth, ...
    403: PermissionError_,  # AccessDenied, PrivilegeDenied, PrincipalPrivilegeDenied, ...
    404: NotFoundError,  # the resource doesn't exist
    405: ConflictError,  # CannotDeleteDueToAssociation, InvalidOperation, NotSupported
    412: ConcurrencyError,  # ConcurrencyVersionMismatch, DuplicateRecord
    413: UnprocessableError,  # the request length is too large
    429: ThrottledError,  # API limits exceeded (Retry-After)
    501: PermanentError,  # not implemented
    503: TransientError,  # the service isn't available
}


def _answer(status: int, code: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("PATCH", "https://contoso.crm.dynamics.com/api/data/v9.2/appointments(x)")
    return httpx.Response(
        status, json={"error": {"code": code, "message": "m"}}, headers=headers or {}, request=request
    )


def test_every_documented_status_has_its_class_and_no_other() -> None:
    assert DOCUMENTED_STATUSES == DOCUMENTED
    for status, cls in DOCUMENTED.items():
        assert type(translate_error(_answer(status), item_id="x")) is cls, status


@pytest.mark.parametrize("code", ["0x80072322", "0x80072321", "0x80072326"])
def test_the_three_service_protection_codes_are_throttling_with_the_retry_after(code: str) -> None:
    err = translate_error(_answer(429, code, {"Retry-After": "12"}), item_id="x", now=0)
    assert isinstance(err, ThrottledError) and err.retry_after == 12.0 and code in err.message
    assert set(CODE_CLASSES) >= {"0x80072322", "0x80072321", "0x80072326"}


def test_an_expired_change_token_is_not_found_so_the_feed_starts_again() -> None:
    err = translate_error(_answer(400, "0x80044352"), item_id=None)
    assert isinstance(err, NotFoundError) and "0x80044352" in err.message


def test_503_with_retry_after_is_throttling_and_transport_failures_are_transient() -> None:
    assert isinstance(
        translate_error(_answer(503, headers={"Retry-After": "3"}), item_id=None, now=0), ThrottledError
    )
    request = httpx.Request("GET", "https://contoso.crm.dynamics.com/api/data/v9.2/WhoAmI")
    assert type(translate_error(httpx.ConnectError("no", request=request), item_id=None)) is TransientError
    assert type(translate_error(httpx.ReadTimeout("slow", request=request), item_id=None)) is TransientError
    assert (
        type(translate_error(httpx.UnsupportedProtocol("ftp", request=request), item_id=None))
        is PermanentError
    )


def test_a_body_that_is_no_error_envelope_still_maps_by_status() -> None:
    request = httpx.Request("GET", "https://contoso.crm.dynamics.com/api/data/v9.2/WhoAmI")
    err = translate_error(httpx.Response(502, text="<html>bad gateway</html>", request=request), item_id=None)
    assert type(err) is TransientError and "bad gateway" in err.message
