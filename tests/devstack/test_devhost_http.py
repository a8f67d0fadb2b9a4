"""DevHost HTTP triggers: auth levels and keys, routing (404, route params, prefix), round-trips, 500s."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable

import aiohttp
import azure.functions as func
import pytest

from devstack.host import DevHost

StartHost = Callable[..., DevHost]

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.route(route="open", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def open_route(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("open")


@app.route(route="keyed", methods=["GET"])
def keyed_route(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("keyed")


@app.route(route="keyed-other", methods=["GET"])
def keyed_other(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("keyed-other")


@app.route(route="ops-only", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def admin_route(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin")


@app.route(route="items/{kind}/{id:int}", methods=["POST", "PUT"], auth_level=func.AuthLevel.ANONYMOUS)
def echo(req: func.HttpRequest) -> func.HttpResponse:
    payload = {
        "method": req.method,
        "route_params": dict(req.route_params),
        "params": dict(req.params),
        "header": req.headers.get("x-test"),
        "header_names_lowercase": all(k == k.lower() for k in req.headers),
        "body": req.get_body().decode(),
        "url": req.url,
    }
    return func.HttpResponse(
        json.dumps(payload),
        status_code=201,
        mimetype="application/json",
        headers={"x-echo": "yes", "Location": f"/api/items/{req.route_params['id']}"},
    )


@app.route(route="things/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def thing(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return func.HttpResponse(
        f"{req.route_params['name']} via {context.function_name} {context.invocation_id}"
    )


@app.route(route="things/special", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def special_thing(req: func.HttpRequest) -> str:
    return "special"


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
async def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom in the function")


OWN_KEYS = {"keyed_route": "key-of-keyed-alone", "keyed_other": "key-of-keyed-other-alone"}


@pytest.fixture
def host(start_host: StartHost) -> DevHost:
    return start_host(app, settings={f"DEVHOST_FUNCTION_KEY__{n}": k for n, k in OWN_KEYS.items()})


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def status(http: aiohttp.ClientSession, method: str, url: str, **kwargs: object) -> int:
    async with http.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
        return response.status


async def test_anonymous_route_needs_no_key(host: DevHost, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{host.base_url}/api/open") as response:
        assert response.status == 200
        assert await response.text() == "open"
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


def key_args(how: str, key: str | None) -> dict[str, object]:
    if key is None:
        return {}
    return {"params": {"code": key}} if how == "code" else {"headers": {"x-functions-key": key}}


@pytest.mark.parametrize("how", ["code", "header"])
@pytest.mark.parametrize(
    ("kind", "expected"), [(None, 401), ("wrong", 401), ("function", 200), ("master", 200)]
)
async def test_function_level_accepts_the_function_or_master_key(
    host: DevHost,
    http: aiohttp.ClientSession,
    keys: dict[str, str],
    how: str,
    kind: str | None,
    expected: int,
) -> None:
    args = key_args(how, keys[kind] if kind else None)
    assert await status(http, "GET", f"{host.base_url}/api/keyed", **args) == expected


@pytest.mark.parametrize("how", ["code", "header"])
@pytest.mark.parametrize(
    ("kind", "expected"), [(None, 401), ("wrong", 401), ("function", 401), ("master", 200)]
)
async def test_admin_level_accepts_only_the_master_key(
    host: DevHost,
    http: aiohttp.ClientSession,
    keys: dict[str, str],
    how: str,
    kind: str | None,
    expected: int,
) -> None:
    args = key_args(how, keys[kind] if kind else None)
    assert await status(http, "GET", f"{host.base_url}/api/ops-only", **args) == expected


@pytest.mark.parametrize("how", ["code", "header"])
async def test_a_function_key_opens_its_own_function_only(
    host: DevHost, http: aiohttp.ClientSession, keys: dict[str, str], how: str
) -> None:
    base = f"{host.base_url}/api"
    own, other = OWN_KEYS["keyed_route"], OWN_KEYS["keyed_other"]
    assert await status(http, "GET", f"{base}/keyed", **key_args(how, own)) == 200
    assert await status(http, "GET", f"{base}/keyed-other", **key_args(how, own)) == 401
    assert await status(http, "GET", f"{base}/keyed-other", **key_args(how, other)) == 200
    assert await status(http, "GET", f"{base}/keyed", **key_args(how, other)) == 401
    assert await status(http, "GET", f"{base}/ops-only", **key_args(how, own)) == 401  # never admin
    # The host-level function key still opens every FUNCTION-level route.
    for route in ("keyed", "keyed-other"):
        assert await status(http, "GET", f"{base}/{route}", **key_args(how, keys["function"])) == 200


async def test_unknown_routes_and_wrong_methods_are_404_as_the_functions_host_answers(
    host: DevHost, http: aiohttp.ClientSession
) -> None:
    base = host.base_url
    assert await status(http, "GET", f"{base}/api/nope") == 404
    assert await status(http, "GET", f"{base}/open") == 404  # outside the route prefix
    assert await status(http, "POST", f"{base}/api/items/a/notanint") == 404  # {id:int} constraint
    assert await status(http, "DELETE", f"{base}/api/items/a/1") == 404  # the host has no 405
    assert await status(http, "POST", f"{base}/api/open") == 404


async def test_empty_query_values_are_absent_and_header_names_lowercased_as_the_host_passes_them(
    host: DevHost, http: aiohttp.ClientSession
) -> None:
    # A raw request: aiohttp's client would merge the repeated header before sending it.
    reader, writer = await asyncio.open_connection("127.0.0.1", host.port)
    writer.write(
        b"POST /api/items/events/7?x=&y=two&validationToken=&z=1&z=&z=2 HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nX-Test: one\r\nX-Test: \r\nx-test: two\r\n"
        b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    echoed = json.loads(response.split(b"\r\n\r\n", 1)[1])
    # `?validationToken=` is no handshake: it is not there. Repeats are joined as ASP.NET Core's
    # StringValues joins them: "," with no space, empty values left out.
    assert echoed["params"] == {"y": "two", "z": "1,2"}
    assert echoed["header"] == "one,two" and echoed["header_names_lowercase"]


async def test_route_params_query_body_and_headers_round_trip(
    host: DevHost, http: aiohttp.ClientSession
) -> None:
    body = "é ü — raw body \x00 bytes".encode()
    async with http.put(
        f"{host.base_url}/api/Items/events/42?x=1&y=two", data=body, headers={"X-Test": "header value"}
    ) as response:
        assert response.status == 201
        assert response.headers["x-echo"] == "yes"
        assert response.headers["Location"] == "/api/items/42"
        assert response.headers["Content-Type"] == "application/json"
        echoed = await response.json()
    assert echoed["method"] == "PUT"
    assert echoed["route_params"] == {"kind": "events", "id": "42"}
    assert echoed["params"] == {"x": "1", "y": "two"}
    assert echoed["header"] == "header value"
    assert echoed["body"] == body.decode()
    assert echoed["url"] == f"{host.base_url}/api/Items/events/42?x=1&y=two"


async def test_literal_routes_win_over_parameters_and_context_is_passed(
    host: DevHost, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{host.base_url}/api/things/special") as response:
        assert await response.text() == "special"
    async with http.get(f"{host.base_url}/api/things/other") as response:
        name, via, function_name, invocation_id = (await response.text()).split(" ")
    assert (name, via, function_name) == ("other", "via", "thing")
    assert len(invocation_id) == 36


async def test_an_exception_in_the_function_is_a_500_with_the_traceback_logged(
    host: DevHost, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devstack.host"):
        assert await status(http, "GET", f"{host.base_url}/api/boom") == 500
    failures = [r for r in caplog.records if r.exc_info and "boom" in r.getMessage()]
    assert failures, caplog.text
    assert "kaboom in the function" in caplog.text
    assert "Executing 'Functions.boom'" in caplog.text
    assert "Executed 'Functions.boom' (Failed" in caplog.text


async def test_route_prefix_comes_from_host_json(start_host: StartHost, http: aiohttp.ClientSession) -> None:
    host = start_host(app, host_json={"extensions": {"http": {"routePrefix": "v1"}}})
    assert await status(http, "GET", f"{host.base_url}/v1/open") == 200
    assert await status(http, "GET", f"{host.base_url}/api/open") == 404
    bare = start_host(app, host_json={"extensions": {"http": {"routePrefix": ""}}})
    assert await status(http, "GET", f"{bare.base_url}/open") == 200


async def test_request_bodies_over_100_mb_are_rejected(host: DevHost, http: aiohttp.ClientSession) -> None:
    too_big = b"x" * (104_857_600 + 1)
    assert await status(http, "POST", f"{host.base_url}/api/items/a/1", data=too_big) == 413
