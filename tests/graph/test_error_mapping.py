"""graph.translate leaves nothing unmapped: every HTTP status class, and every exception type the client
stack defines (enumerated from the installed packages, so an upgrade that adds one fails here)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import pkgutil

import httpx
import pytest
from kiota_abstractions.api_error import APIError
from msgraph.generated.models.o_data_errors.main_error import MainError
from msgraph.generated.models.o_data_errors.o_data_error import ODataError

from sync_core.adapters.graph.errors import classify, retry_after_seconds, translate
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

# Representative codes of every class, and the class each must land in.
EXPECTED: dict[int, type[SyncError]] = {
    100: TransientError,
    101: TransientError,
    200: TransientError,
    204: TransientError,
    301: PermanentError,
    304: PermanentError,
    307: PermanentError,
    400: UnprocessableError,
    401: PermissionError_,
    403: PermissionError_,
    404: NotFoundError,
    405: PermanentError,
    408: TransientError,
    409: ConflictError,
    410: NotFoundError,
    412: ConcurrencyError,
    413: UnprocessableError,
    422: UnprocessableError,
    423: TransientError,
    424: TransientError,
    429: ThrottledError,
    500: TransientError,
    501: PermanentError,
    502: TransientError,
    503: ThrottledError,
    504: TransientError,
    507: PermanentError,
    509: ThrottledError,
}

PACKAGES = (
    "httpx",
    "kiota_abstractions",
    "kiota_http",
    "kiota_serialization_json",
    "kiota_serialization_text",
    "kiota_serialization_form",
    "kiota_serialization_multipart",
    "kiota_authentication_azure",
    "msgraph_core",
    "msgraph.generated.models.o_data_errors",
    "azure.core.exceptions",
    "azure.identity",
)


def _exception_types() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for root in PACKAGES:
        try:
            module = importlib.import_module(root)
        except ImportError:
            continue
        modules = [module]
        if hasattr(module, "__path__"):
            for info in pkgutil.walk_packages(module.__path__, root + "."):
                try:
                    modules.append(importlib.import_module(info.name))
                except ImportError:
                    continue  # an optional extra not installed (msgraph_core batch needs `deprecated`)
        top = root.split(".")[0]
        for mod in modules:
            for obj in vars(mod).values():
                if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__.startswith(top):
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


CLIENT_STACK = _exception_types()
BUILTINS: list[type[BaseException]] = [
    asyncio.TimeoutError,
    TimeoutError,
    ConnectionResetError,
    ConnectionRefusedError,
    OSError,
    json.JSONDecodeError,
    UnicodeDecodeError,
    ValueError,
    TypeError,
]


def test_the_client_stack_was_enumerated() -> None:
    names = set(CLIENT_STACK)
    assert "kiota_abstractions.api_error.APIError" in names
    assert "msgraph.generated.models.o_data_errors.o_data_error.ODataError" in names
    assert "httpx.ReadTimeout" in names and "kiota_http._exceptions.DeserializationError" in names
    assert len(names) > 50


@pytest.mark.parametrize("name", sorted(CLIENT_STACK))
def test_every_client_stack_exception_type_is_mapped(name: str) -> None:
    assert classify(CLIENT_STACK[name]) is not None, f"{name} has no entry in graph_errors"


@pytest.mark.parametrize("exc_type", BUILTINS, ids=lambda t: t.__name__)
def test_builtin_failures_of_the_client_stack_are_mapped(exc_type: type[BaseException]) -> None:
    assert classify(exc_type) is not None


@pytest.mark.parametrize("status", sorted(EXPECTED))
def test_every_status_class_is_mapped_and_carries_mailbox_and_item(status: int) -> None:
    headers = {"Retry-After": "3"} if status in (429, 503, 509) else {}
    for exc in (
        APIError("boom", status, headers),
        ODataError(message="boom", response_status_code=status, response_headers=headers),
    ):
        err = translate(exc, mailbox="alice@contoso.com", item_id="AAMk-1")
        assert type(err) is EXPECTED[status], (status, type(exc).__name__, err)
        assert (err.mailbox, err.item_id, err.side) == ("alice@contoso.com", "AAMk-1", "graph")
        if isinstance(err, ThrottledError):
            assert err.retry_after == 3.0


def test_every_status_from_100_to_599_lands_somewhere_specific() -> None:
    for status in range(100, 600):
        err = translate(APIError("x", status, {}), mailbox="m", item_id="i")
        assert isinstance(err, TransientError | PermanentError)
        assert "unexpected" not in err.message


def test_503_without_retry_after_backs_off_and_429_without_is_still_throttled() -> None:
    assert type(translate(APIError("x", 503, {}))) is TransientError
    throttled = translate(APIError("x", 429, {}))
    assert isinstance(throttled, ThrottledError) and throttled.retry_after > 0


def test_graph_error_codes_win_over_the_status() -> None:
    def odata(status: int, code: str) -> ODataError:
        return ODataError(
            response_status_code=status, response_headers={}, error=MainError(code=code, message=code)
        )

    assert isinstance(translate(odata(400, "syncStateNotFound")), NotFoundError)
    assert isinstance(translate(odata(409, "ErrorIrresolvableConflict")), ConcurrencyError)
    assert isinstance(translate(odata(404, "ErrorItemNotFound")), NotFoundError)
    # A reused transactionId has been answered both ways; either is a conflict the create resolves.
    assert type(translate(odata(400, "ErrorDuplicateTransactionId"))) is ConflictError
    assert type(translate(odata(409, "ErrorDuplicateTransactionId"))) is ConflictError


def test_transport_and_status_errors_of_other_layers() -> None:
    request = httpx.Request("GET", "https://graph.microsoft.com/v1.0/users/x/events")
    response = httpx.Response(404, request=request)
    cases: list[tuple[BaseException, type[SyncError]]] = [
        (httpx.ReadTimeout("slow", request=request), TransientError),
        (httpx.ConnectError("refused", request=request), TransientError),
        (httpx.HTTPStatusError("gone", request=request, response=response), NotFoundError),
        (TimeoutError(), TransientError),
        (json.JSONDecodeError("bad", "{", 0), UnprocessableError),
    ]
    from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError

    cases += [
        (ClientAuthenticationError("bad secret"), PermissionError_),
        (ServiceRequestError("dns"), TransientError),
    ]
    for exc, expected in cases:
        err = translate(exc, mailbox="bob@contoso.com", item_id="ev-2")
        assert type(err) is expected, (exc, err)
        assert (err.mailbox, err.item_id) == ("bob@contoso.com", "ev-2")


def test_a_sync_error_passes_through_and_gains_context() -> None:
    original = TransientError("limiter", side="graph")
    assert translate(original, mailbox="m", item_id="i") is original
    assert (original.mailbox, original.item_id) == ("m", "i")


def test_retry_after_as_seconds_fraction_and_http_date() -> None:
    assert retry_after_seconds({"Retry-After": "2.128"}) == pytest.approx(2.128)
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_an_unknown_exception_type_is_reported_unmapped() -> None:
    """What makes the enumeration tests above able to fail."""
    novel = type("NovelClientError", (Exception,), {})
    assert classify(novel) is None
    assert "unexpected" in translate(novel("?"), mailbox="m").message
