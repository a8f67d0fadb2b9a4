"""Every error the Salesforce REST API documents maps to one class of the sync's error tree, once, at the edge
(sync_core.adapters.crm.salesforce_errors.translate_error).

Statuses: Status Codes and Error Responses
(https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm); 403 with
REQUEST_LIMIT_EXCEEDED is the exhausted 24-hour API allocation (same page, and the API request limits in
salesforce-app-limits-cheatsheet); the Sforce-Limit-Info header: headers_api_usage.htm.
"""

from __future__ import annotations

import httpx
import pytest

from sync_core.adapters.crm.salesforce_errors import CODE_CLASSES, DOCUMENTED_STATUSES, translate_error
from sync_core.adapters.crm.salesforce_wire import api_usage, soql_string
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

DOCUMENTED = {  # status -> the class the sync needs (errorcodes.htm lists these and no others)
    300: PermanentError,  # an external ID in more than one record: an operator hold
    304: PermanentError,  # not modified: only for conditional GETs we never send
    400: UnprocessableError,  # the JSON or XML body contains an error
    401: PermissionError_,  # session ID or OAuth token expired or invalid (renewed once before this)
    403: PermissionError_,  # refused; REQUEST_LIMIT_EXCEEDED excepted
    404: NotFoundError,
    405: PermanentError,  # method not allowed for the resource
    409: ConflictError,  # conflict with the current state of the resource
    410: NotFoundError,  # retired or removed
    412: ConcurrencyError,  # a precondition (If-Unmodified-Since) failed
    414: UnprocessableError,  # URI longer than 16,384 bytes
    415: UnprocessableError,  # unsupported format
    420: TransientError,  # Salesforce Edge has no routing information yet
    428: UnprocessableError,  # the request wasn't conditional
    431: UnprocessableError,  # URI and headers longer than 16,384 bytes
    500: TransientError,
    502: TransientError,  # Salesforce Edge could not reach the instance
    503: TransientError,  # too many requests or maintenance, without Retry-After
}


def _answer(status: int, code: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("PATCH", "https://contoso.my.salesforce.com/services/data/v62.0/sobjects/Event/x")
    body = [{"message": "m", "errorCode": code}] if code else [{"message": "m", "errorCode": ""}]
    return httpx.Response(status, json=body, headers=headers or {}, request=request)


def test_every_documented_status_has_its_class_and_no_other() -> None:
    assert DOCUMENTED_STATUSES == DOCUMENTED
    for status, cls in DOCUMENTED.items():
        assert type(translate_error(_answer(status), item_id="x")) is cls, status


def test_request_limit_exceeded_is_throttling_not_a_credentials_error() -> None:
    err = translate_error(
        _answer(403, "REQUEST_LIMIT_EXCEEDED", {"Sforce-Limit-Info": "api-usage=100001/100000"}), item_id="x"
    )
    assert isinstance(err, ThrottledError) and err.retry_after > 0
    assert "100001/100000" in err.message
    assert (
        type(translate_error(_answer(403, "INSUFFICIENT_ACCESS_OR_READONLY"), item_id="x"))
        is PermissionError_
    )


@pytest.mark.parametrize(("code", "cls"), sorted(CODE_CLASSES.items()))
def test_every_mapped_error_code_decides_the_class_whatever_the_status(code: str, cls: type) -> None:
    err = translate_error(_answer(400, code), item_id="x", now=0)
    assert type(err) is cls and code in err.message


def test_300_names_the_operator_hold_and_transport_failures_are_transient() -> None:
    request = httpx.Request(
        "PATCH", "https://contoso.my.salesforce.com/services/data/v62.0/sobjects/Event/k/v"
    )
    answer = httpx.Response(
        300, json=["/services/data/v62.0/sobjects/Event/00U1", "/x/00U2"], request=request
    )
    assert "operator" in translate_error(answer, item_id=None).message
    assert type(translate_error(httpx.ConnectError("no", request=request), item_id=None)) is TransientError
    assert type(translate_error(httpx.ReadTimeout("slow", request=request), item_id=None)) is TransientError
    assert (
        type(translate_error(_answer(503, headers={"Retry-After": "3"}), item_id=None, now=0))
        is ThrottledError
    )


def test_the_limit_header_is_read() -> None:
    assert api_usage({"Sforce-Limit-Info": "api-usage=18/5000"}) == (18, 5000)
    assert api_usage({"Sforce-Limit-Info": "api-usage=10018/100000; api-bursts=1/750"}) == (10018, 100000)
    assert api_usage({}) is None


def test_soql_literals_escape_what_the_reference_lists() -> None:
    assert soql_string('O\'Brien \\ "x"\n') == "'O\\'Brien \\\\ \\\"x\\\"\\n'"
