"""RestCrmConnector turns every transport error and HTTP status into the sync's error tree, once.

httpx.MockTransport fakes the socket, so the whole connector stack runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest
from pydantic import ValidationError

from sync_core.adapters.crm.rest import RestCrmConnector
from sync_core.adapters.crm.wire import DEFAULT_RETRY_AFTER_S, translate_error
from sync_core.domain.model import Appointment, utc
from sync_core.errors import (
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PermanentError,
    PermissionError_,
    SyncError,
    ThrottledError,
    TransientError,
    UnprocessableError,
)

BASE = "https://crm.test/api"
APPT = Appointment(start=datetime(2026, 1, 5, 9, tzinfo=UTC), end=datetime(2026, 1, 5, 10, tzinfo=UTC))

# The statuses with a meaning of their own (the same for Graph, the CRM and Storage: sync_core.errors);
# every other status falls back by its class. 503 and 509 without Retry-After are transient.
EXPECTED: dict[int, type[SyncError]] = {
    400: UnprocessableError,
    401: PermissionError_,
    403: PermissionError_,
    404: NotFoundError,
    408: TransientError,
    409: ConflictError,
    410: NotFoundError,
    412: ConcurrencyError,
    413: UnprocessableError,  # too large: sending it again cannot help
    415: UnprocessableError,
    422: UnprocessableError,
    423: TransientError,  # locked: comes back
    424: TransientError,  # a failed dependency
    429: ThrottledError,
    451: PermissionError_,
    501: PermanentError,  # not implemented, HTTP version, over quota: retrying cannot help
    505: PermanentError,
    507: PermanentError,
}
BY_CLASS: dict[int, type[SyncError]] = {3: PermanentError, 4: PermanentError, 5: TransientError}

Handler = Callable[[httpx.Request], httpx.Response]


def connector_with(handler: Handler) -> RestCrmConnector:
    return RestCrmConnector(BASE, token="t", transport=httpx.MockTransport(handler))


def answer(status: int, headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": f"code_{status}", "message": "from the mock"}}
        return httpx.Response(status, json=body, headers=headers)

    return handler


def expected_for(status: int) -> type[SyncError]:
    return EXPECTED.get(status) or BY_CLASS[status // 100]


async def test_every_status_from_300_to_599_maps_to_its_error_class() -> None:
    wrong: dict[int, str] = {}
    for status in range(300, 600):
        async with connector_with(answer(status)) as conn:
            try:
                await conn.cancel_appointment("apt-1")
            except SyncError as exc:
                if type(exc) is not expected_for(status):
                    wrong[status] = f"{type(exc).__name__}, expected {expected_for(status).__name__}"
                elif (exc.side, exc.item_id) != ("crm", "apt-1") or f"code_{status}" not in exc.message:
                    wrong[status] = f"context lost: {exc.context()}"
            else:
                wrong[status] = "no error raised"
    assert not wrong, f"unmapped or mis-mapped statuses: {wrong}"


def test_no_status_is_left_as_a_bare_sync_error() -> None:
    request = httpx.Request("GET", f"{BASE}/appointments/x")
    for status in range(100, 600):
        if 200 <= status < 300:
            continue
        err = translate_error(httpx.Response(status, request=request), item_id="x")
        assert isinstance(err, TransientError | PermanentError), status


@pytest.mark.parametrize(
    ("status", "retry_after", "expected", "seconds"),
    [
        (429, "7", ThrottledError, 7.0),
        (429, None, ThrottledError, DEFAULT_RETRY_AFTER_S),
        (429, "soon", ThrottledError, DEFAULT_RETRY_AFTER_S),
        (503, "2.5", ThrottledError, 2.5),
        (503, None, TransientError, None),
    ],
)
async def test_429_and_503_with_retry_after_are_throttling_with_the_wait(
    status: int, retry_after: str | None, expected: type[SyncError], seconds: float | None
) -> None:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    async with connector_with(answer(status, headers)) as conn:
        with pytest.raises(expected) as caught:
            await conn.list_users()
    assert type(caught.value) is expected
    if seconds is not None:
        assert isinstance(caught.value, ThrottledError) and caught.value.retry_after == seconds


def test_retry_after_as_an_http_date_is_seconds_from_now() -> None:
    now = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    request = httpx.Request("GET", f"{BASE}/users")
    response = httpx.Response(429, headers={"Retry-After": later}, request=request)
    err = translate_error(response, item_id=None, now=now.timestamp())
    assert isinstance(err, ThrottledError) and err.retry_after == 30.0


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectTimeout("connect timed out"), TransientError),
        (httpx.ReadTimeout("read timed out"), TransientError),
        (httpx.PoolTimeout("no connection free"), TransientError),
        (httpx.ConnectError("connection refused"), TransientError),
        (httpx.ReadError("connection reset"), TransientError),
        (httpx.RemoteProtocolError("server hung up"), TransientError),
        (httpx.UnsupportedProtocol("ftp"), PermanentError),
        (httpx.LocalProtocolError("bad header"), PermanentError),
    ],
)
async def test_transport_exceptions_become_sync_errors(
    exc: httpx.HTTPError, expected: type[SyncError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    async with connector_with(handler) as conn:
        with pytest.raises(expected) as caught:
            await conn.get_appointment("apt-9")
    assert type(caught.value) is expected
    assert (caught.value.side, caught.value.item_id) == ("crm", "apt-9")
    assert isinstance(caught.value.__cause__, httpx.HTTPError)


CALLS: dict[str, Callable[[RestCrmConnector], Awaitable[object]]] = {
    "get_appointment": lambda c: c.get_appointment("apt-1"),
    "find_by_external_ref": lambda c: c.find_by_external_ref("apt-1"),
    "create_appointment": lambda c: c.create_appointment(APPT, idempotency_key="k", external_ref="apt-1"),
    "update_appointment": lambda c: c.update_appointment(
        "apt-1", APPT, fields=["subject"], expected_version="v"
    ),
    "cancel_appointment": lambda c: c.cancel_appointment("apt-1"),
    "delete_appointment": lambda c: c.delete_appointment("apt-1"),
    "list_changed": lambda c: c.list_changed("cur"),
    "find_contacts": lambda c: c.find_contacts(["a@b.example"]),
    "list_users": lambda c: c.list_users(),
    "list_spaces": lambda c: c.list_spaces(),
}
ITEM_CALLS = {
    "get_appointment",
    "find_by_external_ref",
    "create_appointment",
    "update_appointment",
    "cancel_appointment",
    "delete_appointment",
}


@pytest.mark.parametrize("method", sorted(CALLS))
async def test_every_method_translates_errors_with_side_and_item(method: str) -> None:
    async with connector_with(answer(502)) as conn:
        with pytest.raises(TransientError) as caught:
            await CALLS[method](conn)
    assert caught.value.side == "crm"
    assert caught.value.item_id == ("apt-1" if method in ITEM_CALLS else None)


async def test_get_appointment_is_none_on_404_but_other_methods_raise_not_found() -> None:
    async with connector_with(answer(404)) as conn:
        assert await conn.get_appointment("apt-1") is None
        with pytest.raises(NotFoundError):
            await conn.cancel_appointment("apt-1")


# The last three: a start that cannot be expressed in UTC (before year 1) fails validation (model.utc).
OUT_OF_RANGE = (
    b'{"id": "x", "version": "1", "start": "0001-01-01T00:00:00+01:00", "end": "2000-01-01T00:00:00Z"}'
)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>proxy error</html>",
        b"[1, 2]",
        b'{"id": "x"}',
        b'{"records": "nope", "cursor": "c"}',
        OUT_OF_RANGE,
        b'{"records": [' + OUT_OF_RANGE + b'], "cursor": "c"}',
        b'{"records": [' + OUT_OF_RANGE.replace(b'"x"', b'"x", "external_ref": "k"', 1) + b"]}",
        b'{"records": {"k": 1}}',
    ],
)
async def test_a_2xx_body_that_breaks_the_contract_is_unprocessable(body: bytes) -> None:
    async with connector_with(lambda request: httpx.Response(200, content=body)) as conn:
        with pytest.raises(UnprocessableError) as caught:
            if b"records" not in body:
                await conn.get_appointment("x")
            elif b"cursor" in body:
                await conn.list_changed(None)
            else:
                await conn.find_by_external_ref("k")
    assert caught.value.side == "crm"


async def test_I5_a_crm_answering_its_change_feed_to_a_lookup_yields_no_wrong_record() -> None:
    def record(crm_id: str, ref: str | None) -> dict[str, object]:
        return {"id": crm_id, "version": "1", "external_ref": ref} | APPT.model_dump(mode="json")

    records = [record("a", None), record("b", "ical:other")]
    feed = {"records": records, "deleted_ids": [], "cursor": "c"}
    async with connector_with(lambda request: httpx.Response(200, json=feed)) as conn:
        assert await conn.find_by_external_ref("ical:mine") is None
        records.append(record("c", "ical:mine"))
        found = await conn.find_by_external_ref("ical:mine")
    assert found is not None and found.crm_id == "c"


@pytest.mark.parametrize(
    "changes",
    [
        {"start": "0001-01-01T00:00:00+01:00"},
        {"end": "9999-12-31T23:30:00-01:00"},
        {"original_start": "0001-01-01T00:30:00+01:00"},
        {"cancelled_occurrences": ["2026-01-05T09:00:00Z", "0001-01-01T00:00:00+00:01"]},
    ],
)
def test_a_date_time_with_no_utc_equivalent_is_a_validation_error_not_an_overflow(
    changes: dict[str, object],
) -> None:
    data = {"start": "2000-01-01T00:00:00Z", "end": "2000-01-01T01:00:00Z"} | changes
    with pytest.raises(ValidationError) as caught:
        Appointment.model_validate(data)
    assert isinstance(caught.value, ValueError)
    assert [e["loc"][0] for e in caught.value.errors()] == list(changes)
    assert "cannot be expressed in UTC" in str(caught.value)


def test_utc_itself_raises_value_error_and_keeps_every_representable_instant() -> None:
    with pytest.raises(ValueError, match="cannot be expressed in UTC"):
        utc(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    edge = datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert utc(edge) == datetime(1, 1, 1, tzinfo=UTC)
    assert utc(datetime(2026, 1, 5, 9)) == datetime(2026, 1, 5, 9, tzinfo=UTC)  # naive: taken as UTC


async def test_update_refuses_field_names_that_are_not_appointment_fields() -> None:
    async with connector_with(answer(200)) as conn:
        with pytest.raises(UnprocessableError, match="not appointment fields: nope"):
            await conn.update_appointment("apt-1", APPT, fields=["subject", "nope"], expected_version=None)


def test_the_connector_needs_an_absolute_url_and_credentials() -> None:
    with pytest.raises(ConfigurationError) as caught:
        RestCrmConnector("", token=None, api_key=None)
    assert len(caught.value.problems) == 2


def _concrete_transport_errors() -> list[type[httpx.HTTPError]]:
    """Every httpx.HTTPError subclass a transport can raise (HTTPStatusError comes from raise_for_status)."""
    found: list[type[httpx.HTTPError]] = []
    todo: list[type[httpx.HTTPError]] = [httpx.HTTPError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls is not httpx.HTTPStatusError and cls.__module__.startswith("httpx"):
            found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


@pytest.mark.parametrize("exc_type", _concrete_transport_errors(), ids=lambda c: c.__name__)
def test_every_httpx_exception_type_is_translated_to_transient_or_permanent(
    exc_type: type[httpx.HTTPError],
) -> None:
    err = translate_error(exc_type("boom"), item_id="apt-1")
    assert isinstance(err, TransientError | PermanentError)
    assert (err.side, err.item_id) == ("crm", "apt-1")
    # Only what can never succeed when sent again is permanent.
    permanent = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.TooManyRedirects)
    assert isinstance(err, PermanentError) == issubclass(exc_type, permanent), type(err).__name__


def test_an_http_status_error_is_translated_by_its_response() -> None:
    request = httpx.Request("PATCH", f"{BASE}/appointments/apt-1")
    response = httpx.Response(412, request=request)
    err = translate_error(httpx.HTTPStatusError("412", request=request, response=response), item_id="apt-1")
    assert type(err) is ConcurrencyError
