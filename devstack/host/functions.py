"""The function model: discovering an app's functions and the values handed to them."""

from __future__ import annotations

import inspect
import logging
import os
import threading
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext
from azure.functions.queue import QueueMessage as FunctionQueueMessage

log = logging.getLogger("devstack.host")

ADMIN_REASON = "This function was programmatically called via the host APIs."


class OutBinding(func.Out[Any]):
    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class _TraceContext(TraceContext):
    trace_state = ""
    trace_parent = ""
    attributes: dict[str, str] = {}


class _RetryContext(RetryContext):
    retry_count = 0
    max_retry_count = 0
    exception = None  # type: ignore[assignment]  # no retry policy runs here, so there is no exception


class InvocationContext(func.Context):
    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id, self._name, self._directory = invocation_id, function_name, function_directory
        self._local = threading.local()
        self._local.invocation_id = invocation_id

    invocation_id = property(lambda self: self._invocation_id)
    function_name = property(lambda self: self._name)
    function_directory = property(lambda self: self._directory)
    thread_local_storage = property(lambda self: self._local)
    trace_context = property(lambda self: _TraceContext())
    retry_context = property(lambda self: _RetryContext())


def queue_message(**fields: Any) -> FunctionQueueMessage:
    """The trigger value of a queue function (azure-functions leaves this constructor untyped)."""
    return FunctionQueueMessage(**fields)  # type: ignore[no-untyped-call]


def _plain(value: Any) -> Any:
    """Binding dicts hold enums (AuthLevel, HttpMethod, BindingDirection); the host reads their values."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass
class HostedFunction:
    name: str
    trigger: dict[str, Any]
    queue_outputs: list[dict[str, Any]]
    user: Callable[..., Any]
    directory: str
    wants_context: bool
    has_return: bool = False  # a `$return` binding (HTTP's, or a queue output named `$return`)

    @property
    def kind(self) -> str:
        return str(self.trigger["type"])

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user)


def discover(app: func.FunctionApp) -> list[HostedFunction]:
    supported = ("httpTrigger", "queueTrigger", "timerTrigger")
    functions = []
    # get_functions() records names to refuse duplicates, and so refuses a second call on the same app.
    # Clear that record before and after, so the app can be hosted again and others (tests, tools) can still
    # call get_functions(). Duplicate names are still refused.
    app.functions_bindings = None
    try:
        built = app.get_functions()
    finally:
        app.functions_bindings = None
    for fn in built:
        name = fn.get_function_name() or fn.get_user_function().__name__
        bindings = [{k: _plain(v) for k, v in b.get_dict_repr().items()} for b in fn.get_bindings()]
        trigger = next((b for b in bindings if str(b["type"]).endswith("Trigger")), None)
        if trigger is None or trigger["type"] not in supported:
            kind = trigger["type"] if trigger else "no trigger"
            raise ValueError(f"function {name!r}: {kind} is not supported by DevHost (only {supported})")
        outputs, params = [], {trigger["name"]}
        has_return = any(b["name"] == "$return" for b in bindings)
        for binding in bindings:
            if binding is trigger or (binding["type"] == "http" and binding["name"] == "$return"):
                continue
            if binding["type"] != "queue" or binding["direction"] != 1:
                raise ValueError(
                    f"function {name!r}: {binding['type']} binding {binding['name']!r} is not supported by "
                    "DevHost (only queue output bindings besides the trigger)"
                )
            outputs.append(binding)
            params.add(binding["name"])
        user = fn.get_user_function()
        signature = inspect.signature(user)
        unbound = [
            p.name
            for p in signature.parameters.values()
            if p.name not in params | {"context"} and p.default is inspect.Parameter.empty
        ]
        if unbound:
            raise ValueError(f"function {name!r}: parameters {unbound} have no binding")
        check_annotations(name, user, [b for b in bindings if b["name"] != "$return"])
        script = getattr(fn, "function_script_file", "") or ""
        functions.append(
            HostedFunction(
                name=name,
                trigger=trigger,
                queue_outputs=outputs,
                user=user,
                directory=str(Path(script).parent) if script else os.getcwd(),
                wants_context="context" in signature.parameters,
                has_return=has_return,
            )
        )
    return functions


def check_annotations(name: str, user: Callable[..., Any], bindings: list[dict[str, Any]]) -> None:
    """Refuse a parameter whose annotation does not fit its binding, as the Python worker does at load.

    The worker asks the binding's converter in azure-functions (`check_input_type_annotation`, or
    `check_output_type_annotation` inside `func.Out[...]`); `str` and `bytes` bind to any input. An
    output binding needs `func.Out[...]` and an input binding must not have it. Unannotated parameters pass.
    """
    hints = typing.get_type_hints(user)
    registry = func.get_binding_registry()  # type: ignore[no-untyped-call]
    for binding in bindings:
        param = binding["name"]
        if param not in hints:
            continue
        annotation = hints[param]
        is_out = typing.get_origin(annotation) is func.Out or annotation is func.Out
        wants_out = binding["direction"] == 1  # BindingDirection.OUT
        if is_out != wants_out:
            direction = "out" if wants_out else "in"
            raise ValueError(
                f"function {name!r}: binding {param!r} has the {direction!r} direction but its annotation "
                f"{annotation!r} {'is not' if wants_out else 'is'} func.Out (the worker refuses it at load)"
            )
        converter = registry.get(binding["type"]) if registry is not None else None
        if is_out:
            args = typing.get_args(annotation)
            fits = len(args) == 1 and (converter is None or converter.check_output_type_annotation(args[0]))
        elif annotation in (str, bytes):
            fits = True
        else:
            fits = (
                isinstance(annotation, type)
                and converter is not None
                and converter.check_input_type_annotation(annotation)
            )
        if not fits:
            raise ValueError(
                f"function {name!r}: the annotation {annotation!r} of {param!r} does not match its "
                f"{binding['type']} binding (the worker refuses the function at load)"
            )
