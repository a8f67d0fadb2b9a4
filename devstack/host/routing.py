"""HTTP routes (ASP.NET-style templates), `%Setting%` expressions and the response conversion."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from aiohttp import web
from multidict import CIMultiDict

from devstack.host.functions import HostedFunction

log = logging.getLogger("devstack.host")

_ROUTE_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
}
_ROUTE_PARAM = re.compile(
    r"\{(?P<catchall>\*{1,2})?(?P<name>\w+)(?::(?P<constraint>\w+)[^}=?]*)?(?P<optional>\?)?"
    r"(?:=(?P<default>[^}]*))?\}"
)


@dataclass
class Route:
    function: HostedFunction
    pattern: re.Pattern[str]
    defaults: dict[str, str]
    methods: frozenset[str] | None
    auth_level: str
    template: str = ""


def compile_route(template: str) -> tuple[re.Pattern[str], dict[str, str]]:
    """An ASP.NET-style route template (`items/{id}`, `{id:int}`, `{id?}`, `{*rest}`) as a regex."""
    parts, defaults = [], {}
    for index, segment in enumerate(template.strip("/").split("/")):
        slash = "/" if index else ""
        regex, position = "", 0
        for match in _ROUTE_PARAM.finditer(segment):
            name = match["name"]
            if match["catchall"]:
                value = r".*"
            else:
                value = _ROUTE_CONSTRAINTS.get((match["constraint"] or "").lower(), r"[^/]+?")
            regex += re.escape(segment[position : match.start()]) + f"(?P<{name}>{value})"
            position = match.end()
            if match["default"] is not None:
                defaults[name] = match["default"]
        regex += re.escape(segment[position:])
        whole = _ROUTE_PARAM.fullmatch(segment)
        optional = whole is not None and bool(whole["optional"] or whole["catchall"] or whole["default"])
        parts.append(f"(?:{slash}{regex})?" if optional else slash + regex)
    return re.compile("".join(parts), re.IGNORECASE), defaults


def setting_expression(value: str, lookup: Callable[[str], str | None]) -> str:
    """Binding values may name app settings as `%Name%`, as in the real host."""

    def replace(match: re.Match[str]) -> str:
        resolved = lookup(match[1])
        if resolved is None:
            raise ValueError(f"app setting {match[1]!r} (used as %{match[1]}%) is not set")
        return resolved

    return re.sub(r"%([^%]+)%", replace, value)


def web_response(result: Any) -> web.Response:
    """The worker's conversion of a function's return value to the HTTP response."""
    if result is None:
        return web.Response(status=204)
    if isinstance(result, str | bytes):
        result = func.HttpResponse(result)
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"HTTP function returned {type(result).__name__}, expected func.HttpResponse")
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in result.headers.items():
        if name.lower() not in ("content-length", "transfer-encoding"):
            headers.add(name, value)
    if "Content-Type" not in headers:
        mimetype = result.mimetype
        headers["Content-Type"] = (
            f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype
        )
    return web.Response(status=result.status_code, headers=headers, body=result.get_body())
