"""What the Functions host and the Python worker refuse, DevHost refuses too: reserved and clashing routes
and mismatched annotations at start, a value returned without a `$return` binding at invocation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest

from devstack.host import DevHost

StartHost = Callable[..., DevHost]
SETTINGS = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}  # never connected: nothing starts


def host_for(app: func.FunctionApp) -> DevHost:
    return DevHost(app, {**SETTINGS, "DEVHOST_FUNCTION_KEY": "k", "DEVHOST_MASTER_KEY": "m"}, {})


def http_app(*routes: tuple[str, list[str] | None]) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    for index, (route, methods) in enumerate(routes):

        def handler(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("ok")

        handler.__name__ = f"f{index}"
        app.route(route=route, methods=methods)(handler)
    return app


@pytest.mark.parametrize(
    "route", ["admin/x", "administration", "/Admin", "runtime/webhooks", "Runtimes/list", "runtime"]
)
def test_a_route_in_the_hosts_own_space_is_refused_at_start(route: str) -> None:
    with pytest.raises(ValueError, match="conflicts with one or more built in routes"):
        host_for(http_app((route, ["GET"])))


@pytest.mark.parametrize("route", ["ops/admin", "my-admin", "api-runtime", "ops/runtime"])
def test_admin_or_runtime_later_in_a_route_is_allowed(route: str) -> None:
    assert host_for(http_app((route, ["GET"]))).functions


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("items", ["GET", "POST"]), ("items", ["POST"])),
        (("items", None), ("items", ["DELETE"])),  # no methods: every method
        (("items/{id}", ["GET"]), ("/Items/{id}/", ["GET"])),  # compared trimmed, case-insensitive
    ],
)
def test_two_functions_with_the_same_route_and_a_common_method_are_refused_at_start(
    first: tuple[str, list[str] | None], second: tuple[str, list[str] | None]
) -> None:
    with pytest.raises(ValueError, match="conflicts with the route defined by function 'f0'"):
        host_for(http_app(first, second))


def test_the_same_route_with_other_methods_is_allowed() -> None:
    host = host_for(http_app(("items", ["GET"]), ("items", ["POST", "PUT"])))
    assert set(host.functions) == {"f0", "f1"}


def queue_app(annotation: Any, *, output: Any = None) -> func.FunctionApp:
    app = func.FunctionApp()

    if output is None:

        def work(msg):  # type: ignore[no-untyped-def]
            return None

        work.__annotations__ = {"msg": annotation}
    else:

        def work(msg, out):  # type: ignore[no-untyped-def]
            return None

        work.__annotations__ = {"msg": annotation, "out": output}
        work = app.queue_output(arg_name="out", queue_name="out", connection="AzureWebJobsStorage")(work)
    app.queue_trigger(arg_name="msg", queue_name="work", connection="AzureWebJobsStorage")(work)
    return app


@pytest.mark.parametrize(
    ("annotation", "output"),
    [
        (func.HttpRequest, None),  # a queue message is not an HTTP request
        (func.TimerRequest, None),
        (func.Out[str], None),  # the trigger is an input
        (int, None),
        (func.QueueMessage, str),  # an output binding needs func.Out[...]
        (func.QueueMessage, func.Out[int]),  # the queue output takes str, bytes or QueueMessage
    ],
)
def test_a_parameter_annotation_that_does_not_match_its_binding_is_refused_at_load(
    annotation: Any, output: Any
) -> None:
    with pytest.raises(ValueError, match=r"does not match|direction"):
        host_for(queue_app(annotation, output=output))


@pytest.mark.parametrize(
    ("annotation", "output"),
    [(func.QueueMessage, None), (str, None), (bytes, None), (func.QueueMessage, func.Out[str])],
)
def test_annotations_the_worker_accepts_load(annotation: Any, output: Any) -> None:
    assert host_for(queue_app(annotation, output=output)).functions["work"].kind == "queueTrigger"


def test_an_http_parameter_annotated_as_a_queue_message_is_refused_at_load() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="r")
    def r(req: func.QueueMessage) -> func.HttpResponse:
        return func.HttpResponse("no")

    with pytest.raises(ValueError, match="does not match its httpTrigger binding"):
        host_for(app)


returning = func.FunctionApp()


@returning.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
def timer_returns(timer: func.TimerRequest) -> str:
    return "a value nobody binds"


@returning.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer")
async def timer_returns_none(timer: func.TimerRequest) -> None:
    return None


@returning.queue_trigger(arg_name="msg", queue_name="%Q%", connection="AzureWebJobsStorage")
async def queue_returns(msg: func.QueueMessage) -> str:
    return msg.get_body().decode()


@returning.queue_trigger(arg_name="msg", queue_name="%Q2%", connection="AzureWebJobsStorage")
@returning.queue_output(arg_name="$return", queue_name="%Q3%", connection="AzureWebJobsStorage")
async def queue_returns_to_its_output(msg: func.QueueMessage) -> str:
    return msg.get_body().decode()


async def test_a_value_returned_without_a_return_binding_fails_the_invocation(
    start_host: StartHost, storage_connection_string: str, unique_name: str
) -> None:
    host = start_host(
        returning,
        settings={
            "AzureWebJobsStorage": storage_connection_string,
            "Q": f"q-{unique_name}",
            "Q2": f"q2-{unique_name}",
            "Q3": f"q3-{unique_name}",
        },
    )
    with pytest.raises(RuntimeError, match=r"without a \$return binding"):
        host.invoke_timer("timer_returns").result(timeout=30)
    with pytest.raises(RuntimeError, match=r"without a \$return binding"):
        host.invoke("queue_returns", "hello").result(timeout=30)
    assert host.invoke_timer("timer_returns_none").result(timeout=30) is None
    # With a `$return` output binding the value is the output, and the invocation succeeds.
    assert host.invoke("queue_returns_to_its_output", "hello").result(timeout=30) == "hello"
