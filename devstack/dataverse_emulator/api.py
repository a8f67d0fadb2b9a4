"""The Dataverse emulator's Web API: `/api/data/v9.2/` routes over the Store, in the documented wire format
(OData JSON, `@odata.etag`, `@odata.nextLink`/`@odata.deltaLink`, `Prefer` and `Preference-Applied`, the
`{"error": {"code", "message"}}` envelope, 412/404 on conditional writes, 429 with `Retry-After`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

from devstack.dataverse_emulator.store import (
    ENTITY_SETS,
    PARTY_NAV,
    ApiError,
    Store,
    read_skiptoken,
    select,
    skiptoken,
)

API = "/api/data/v9.2"
_KEYED = re.compile(r"^(\w+)\(([^)]*)\)$")
_COMPARISON = re.compile(
    r"\s*(\w+)\s+(eq|ne)\s+('(?:[^']|'')*'|true|false|null|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|-?\d+)\s*"
)
_CONNECTOR = re.compile(r"\s*(and|or)\s+")
_TRACKING_UNSUPPORTED = ("$filter", "$orderby", "$expand", "$top")


@dataclass
class Faults:
    """Answers the emulator gives instead of the real one: `throttle` requests get 429 with Retry-After."""

    throttle: int = 0
    retry_after_s: int = 5
    throttle_code: str = "0x80072322"


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0


def _query(params: dict[str, str]) -> str:
    """A link's query as Dataverse writes it: option names and `$select` commas as they are, values encoded
    (`$deltatoken=919042%2108%2f22%2f2017%2008%3a10%3a44`)."""
    return "&".join(f"{k}={quote(v, safe=',' if k == '$select' else '')}" for k, v in params.items())


def _literal(raw: str) -> Any:
    if raw.startswith("'"):
        return raw[1:-1].replace("''", "'")
    if raw in ("true", "false"):
        return raw == "true"
    if raw == "null":
        return None
    if "-" in raw[1:]:
        return raw.lower()  # a GUID
    return int(raw)


def parse_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """`col eq literal` comparisons joined by `and`/`or` (and binds tighter), no parentheses: the subset the
    connector sends. Strings compare without case, as Dataverse's collation does."""
    groups: list[list[tuple[str, str, Any]]] = [[]]
    pos = 0
    while True:
        match = _COMPARISON.match(text, pos)
        if match is None:
            raise ApiError(400, f"Syntax error at position {pos} in '{text}'.")
        groups[-1].append((match.group(1), match.group(2), _literal(match.group(3))))
        pos = match.end()
        if pos >= len(text):
            break
        joined = _CONNECTOR.match(text, pos)
        if joined is None:
            raise ApiError(400, f"Syntax error at position {pos} in '{text}'.")
        if joined.group(1) == "or":
            groups.append([])
        pos = joined.end()

    def norm(value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    def test(row: dict[str, Any]) -> bool:
        def one(col: str, op: str, value: Any) -> bool:
            equal = norm(row.get(col)) == norm(value)
            return equal if op == "eq" else not equal

        return any(all(one(*c) for c in group) for group in groups)

    return test


def _columns(query: dict[str, str], name: str = "$select") -> list[str] | None:
    raw = query.get(name)
    return [c.strip() for c in raw.split(",") if c.strip()] if raw else None


def _prefer(request: web.Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in ",".join(request.headers.getall("Prefer", [])).split(","):
        name, _, value = part.strip().partition("=")
        if name:
            out[name.strip()] = value.strip().strip('"')
    return out


class DataverseApi:
    def __init__(self, store: Store, *, token: str, base_url: Callable[[], str]) -> None:
        self.store = store
        self.token = token
        self.base_url = base_url
        self.faults = Faults()
        self.requests: list[Recorded] = []

    def app(self, extra: list[web.RouteDef]) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(extra)
        app.add_routes([web.route("*", API + "/{path:.*}", self._dispatch)])
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith(API):
            response: web.StreamResponse = await handler(request)
            return response
        record = Recorded(request.method, request.path, request.query_string, dict(request.headers))
        self.requests.append(record)
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return web.Response(status=401, headers={"WWW-Authenticate": "Bearer"})
            if self.faults.throttle > 0:
                self.faults.throttle -= 1
                raise ApiError(
                    429,
                    "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                    code=self.faults.throttle_code,
                    headers={"Retry-After": str(self.faults.retry_after_s)},
                )
            response = await handler(request)
        except ApiError as err:
            response = web.json_response(err.body(), status=err.status, headers=err.headers)
        response.headers.setdefault("OData-Version", "4.0")
        record.status = response.status
        return response

    def _caller(self) -> str:
        return self.store.app_user_id

    def _url(self, path: str) -> str:
        return f"{self.base_url()}{API}/{path}"

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        if path == "WhoAmI" and request.method == "GET":
            return web.json_response(
                {
                    "@odata.context": self._url("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"),
                    "BusinessUnitId": "00000000-0000-0000-0000-0000000000b1",
                    "UserId": self.store.app_user_id,
                    "OrganizationId": "00000000-0000-0000-0000-0000000000a1",
                }
            )
        keyed = _KEYED.match(path)
        entity_set, key = (keyed.group(1), keyed.group(2)) if keyed else (path, None)
        if entity_set not in ENTITY_SETS:
            raise ApiError(404, f"Resource not found for the segment '{entity_set}'.", code="0x80060888")
        if key is None:
            if request.method == "GET":
                return self._collection(request, entity_set)
            if request.method == "POST":
                return await self._create(request, entity_set)
            raise ApiError(405, "The requested operation is not supported on a collection.")
        if request.method == "GET":
            return self._retrieve(request, entity_set, key)
        if request.method == "PATCH":
            return await self._upsert(request, entity_set, key)
        if request.method == "DELETE":
            self.store.delete(entity_set, key, if_match=request.headers.get("If-Match"))
            return web.Response(status=204)
        raise ApiError(405, f"{request.method} is not supported on a record.")

    # -- reads ----------------------------------------------------------------------------------------

    def _shape(
        self, entity_set: str, row: dict[str, Any], query: dict[str, str], annotated: bool
    ) -> dict[str, Any]:
        primary = ENTITY_SETS[entity_set][1]
        out = select(row, _columns(query), primary)
        expand = query.get("$expand")
        if expand:
            nav = PARTY_NAV.get(entity_set, "appointment_activity_parties")
            match = re.fullmatch(nav + r"(?:\(\$select=([\w,]+)\))?", expand)
            if match is None:
                raise ApiError(400, f"Could not find a property named '{expand.split('(')[0]}'.")
            cols = match.group(1).split(",") if match.group(1) else None
            out[nav] = [
                self._annotate(select(p, cols, "activitypartyid"), annotated)
                for p in self.store.parties_of(row["activityid"])
            ]
        return self._annotate(out, annotated)

    @staticmethod
    def _annotate(row: dict[str, Any], annotated: bool) -> dict[str, Any]:
        return row if annotated else {k: v for k, v in row.items() if "@" not in k or k == "@odata.etag"}

    def _retrieve(self, request: web.Request, entity_set: str, key: str) -> web.StreamResponse:
        row = self.store.get(entity_set, key)
        annotated = "odata.include-annotations" in _prefer(request)
        # conditional retrieval (If-None-Match: the ETag): never with $expand or annotations
        unchanged = request.headers.get("If-None-Match") == row.get("@odata.etag")
        if unchanged and not annotated and "$expand" not in request.query:
            return web.Response(status=304)
        body = {"@odata.context": self._url(f"$metadata#{entity_set}/$entity")}
        return web.json_response(body | self._shape(entity_set, row, dict(request.query), annotated))

    def _collection(self, request: web.Request, entity_set: str) -> web.StreamResponse:
        query = dict(request.query)
        prefer = _prefer(request)
        annotated = "odata.include-annotations" in prefer
        tracking = "odata.track-changes" in prefer or "$deltatoken" in query
        page_size = int(prefer.get("odata.maxpagesize") or 5000)
        if tracking:
            return self._changes(request, entity_set, query, prefer, annotated, page_size)
        rows = list(self.store.tables[entity_set].values())
        if "$filter" in query:
            keep = parse_filter(query["$filter"])
            rows = [r for r in rows if keep(r)]
        for part in reversed((query.get("$orderby") or "").split(",")):
            if part.strip():
                col, _, direction = part.strip().partition(" ")
                rows.sort(key=lambda r: (r.get(col) is not None, r.get(col)), reverse=direction == "desc")
        if "$top" in query:
            rows = rows[: int(query["$top"])]
        start = int(read_skiptoken(query["$skiptoken"]).get("at", 0)) if "$skiptoken" in query else 0
        page = rows[start : start + page_size]
        body: dict[str, Any] = {
            "@odata.context": self._url(f"$metadata#{entity_set}"),
            "value": [self._shape(entity_set, r, query, annotated) for r in page],
        }
        if start + page_size < len(rows):
            later = {k: v for k, v in query.items() if k != "$skiptoken"} | {
                "$skiptoken": skiptoken({"at": start + page_size})
            }
            body["@odata.nextLink"] = self._url(f"{entity_set}?{_query(later)}")
        return web.json_response(body)

    def _changes(
        self,
        request: web.Request,
        entity_set: str,
        query: dict[str, str],
        prefer: dict[str, str],
        annotated: bool,
        page_size: int,
    ) -> web.StreamResponse:
        if entity_set not in self.store.tracked:
            raise ApiError(
                400, f"Change tracking is not enabled for the entity '{ENTITY_SETS[entity_set][0]}'."
            )
        for option in _TRACKING_UNSUPPORTED:
            if option in query:
                raise ApiError(
                    400,
                    f'The "{option.lstrip("$")}" query parameter isn\'t supported when Change Tracking '
                    "is enabled.",
                )
        since: int | None = None
        if "$skiptoken" in query:
            state = read_skiptoken(query["$skiptoken"])
            since, upto, at = state.get("since"), int(state["upto"]), int(state["at"])
        else:
            since = self.store.read_token(query["$deltatoken"]) if "$deltatoken" in query else None
            upto, at = self.store.version, 0
        changes = self.store.changes(since, upto, entity_set)
        page = changes[at : at + page_size]
        value: list[dict[str, Any]] = []
        for _, row_id, row in page:
            if row is None:
                value.append(
                    {
                        "@odata.context": self._url(f"$metadata#{entity_set}/$deletedEntity"),
                        "id": row_id,
                        "reason": "deleted",
                    }
                )
            else:
                value.append(
                    self._shape(
                        entity_set, row, {k: v for k, v in query.items() if k == "$select"}, annotated
                    )
                )
        select_part = {"$select": query["$select"]} if "$select" in query else {}
        delta = "/$delta" if since is not None else ""
        cols = f"({query['$select']})" if "$select" in query else ""
        body: dict[str, Any] = {"@odata.context": self._url(f"$metadata#{entity_set}{cols}{delta}")}
        if at + page_size < len(changes):
            state = {"since": since, "upto": upto, "at": at + page_size}
            link = select_part | {"$skiptoken": skiptoken(state)}
            body["@odata.nextLink"] = self._url(f"{entity_set}?{_query(link)}")
        else:
            link = select_part | {"$deltatoken": self.store.delta_token(upto)}
            body["@odata.deltaLink"] = self._url(f"{entity_set}?{_query(link)}")
        body["value"] = value
        applied = ["odata.track-changes"] + (
            [f"odata.maxpagesize={page_size}"] if "odata.maxpagesize" in prefer else []
        )
        return web.json_response(body, headers={"Preference-Applied": ",".join(applied)})

    # -- writes ---------------------------------------------------------------------------------------

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.text() or "{}")
        except ValueError as exc:
            raise ApiError(400, f"The request body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ApiError(400, "The request body must be a JSON object.")
        return data

    def _written(
        self, request: web.Request, entity_set: str, row: dict[str, Any], created: bool
    ) -> web.StreamResponse:
        primary = ENTITY_SETS[entity_set][1]
        entity_id = self._url(f"{entity_set}({row[primary]})")
        if "return" in _prefer(request) and _prefer(request)["return"] == "representation":
            body = {"@odata.context": self._url(f"$metadata#{entity_set}/$entity")}
            shaped = self._shape(
                entity_set, row, {k: v for k, v in request.query.items() if k == "$select"}, False
            )
            return web.json_response(
                body | shaped,
                status=201 if created else 200,
                headers={"OData-EntityId": entity_id, "Preference-Applied": "return=representation"},
            )
        return web.Response(status=204, headers={"OData-EntityId": entity_id})

    async def _create(self, request: web.Request, entity_set: str) -> web.StreamResponse:
        row = self.store.create(entity_set, await self._body(request), key=None, caller=self._caller())
        return self._written(request, entity_set, row, True)

    async def _upsert(self, request: web.Request, entity_set: str, key: str) -> web.StreamResponse:
        body = await self._body(request)
        if_match, if_none_match = request.headers.get("If-Match"), request.headers.get("If-None-Match")
        existing = self.store.find(entity_set, key)
        if existing is None:
            if if_match is not None:
                raise ApiError(404, f"{ENTITY_SETS[entity_set][0]} With Id = {key} Does Not Exist")
            row = self.store.create(entity_set, body, key=key, caller=self._caller())
            return self._written(request, entity_set, row, True)
        if if_none_match == "*":
            raise ApiError(412, "A record with matching key values already exists.", code="0x80040237")
        row = self.store.update(entity_set, key, body, if_match=if_match, caller=self._caller())
        return self._written(request, entity_set, row, False)
