"""Framework-free request/response types and the router."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict

from devstack.graph_emulator.errors import GraphError
from devstack.graph_emulator.query import parse_prefer

JSON_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)


@dataclass
class GraphRequest:
    """One Graph call."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: Any = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def prefer(self) -> dict[str, str]:
        return parse_prefer(self.headers.getall("Prefer", []))

    def param(self, name: str) -> str | None:
        return self.query.get(name.lower().lstrip("$"))


@dataclass
class GraphResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[GraphRequest, dict[str, str]], Awaitable[GraphResponse]]


def normalize_query(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Query keys lowercased, with the optional OData '$' dropped ('$top' and 'top' are one)."""
    return {key.lower().lstrip("$"): value for key, value in pairs}


@dataclass
class Route:
    method: str
    regex: re.Pattern[str]
    handler: Handler
    template: str


class Router:
    """Templates such as '/users/{user}/events/{event}'; literal segments match case-insensitively."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        pattern = "".join(
            f"(?P<{segment[1:-1]}>[^/]+)" if segment.startswith("{") else re.escape(segment)
            for segment in re.split(r"(\{[^}]+\})", template)
        )
        self._routes.append(Route(method, re.compile(f"^{pattern}/?$", re.IGNORECASE), handler, template))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self._routes:
            found = route.regex.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, {k: v for k, v in found.groupdict().items()}
            allowed = True
        if allowed:
            raise GraphError(
                405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed for '{path}'."
            )
        segment = path.rstrip("/").rsplit("/", 1)[-1]
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


def headers_from(mapping: Mapping[str, str] | None) -> CIMultiDict[str]:
    return CIMultiDict(mapping or {})
