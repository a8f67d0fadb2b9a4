"""The Salesforce emulator's REST API: `/services/oauth2/token` (client credentials) and
`/services/data/vXX.X/` routes over the Store, in the documented wire format: `{"id", "errors", "success"}`
on create, 204 on update and delete, `[{"message", "errorCode"}]` errors, `totalSize`/`done`/`records` with
`attributes` on queries, upsert by External ID (201 created, 200 updated, 300 several matches), the
`updated/` and `deleted/` windows (replication.py), sObject Collections, `/composite` (composite.py),
`Sforce-Limit-Info` on every answer, 403 `REQUEST_LIMIT_EXCEEDED` and 401 `INVALID_SESSION_ID`.
"""

from __future__ import annotations

import email.utils
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from devstack.salesforce_emulator import composite, replication
from devstack.salesforce_emulator.soql import Query, SoqlError, parse, parse_wire_time
from devstack.salesforce_emulator.store import (
    EXTERNAL_ID_FIELDS,
    ORG_ID,
    PREFIXES,
    WRITABLE,
    ApiError,
    Store,
)

BATCH_SIZE = 2000  # records per query answer
_SYSTEM = (
    "Id",
    "IsDeleted",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
)
_LOOKUPS = {
    "Owner": "OwnerId",
    "CreatedBy": "CreatedById",
    "LastModifiedBy": "LastModifiedById",
    "Relation": "RelationId",
}
_CHILDREN = {"EventRelations": ("EventRelation", "EventId")}


@dataclass
class Faults:
    """Answers the emulator gives instead of the real one: `limit_exceeded` requests get 403
    REQUEST_LIMIT_EXCEEDED (the 24-hour allocation used up)."""

    limit_exceeded: int = 0


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0


class SalesforceApi:
    def __init__(
        self,
        store: Store,
        *,
        client_id: str,
        client_secret: str,
        base_url: Callable[[], str],
        now: Callable[[], datetime],
        allocation: int = 100_000,
    ) -> None:
        self.store = store
        self.client_id, self.client_secret = client_id, client_secret
        self.base_url, self.now = base_url, now
        self.allocation = allocation
        self.used = 0
        self.tokens: set[str] = set()
        self.faults = Faults()
        self.requests: list[Recorded] = []
        self._locators: dict[str, list[dict[str, Any]]] = {}

    def app(self, extra: list[web.RouteDef]) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(extra)
        app.add_routes(
            [
                web.post("/services/oauth2/token", self._token),
                web.route("*", "/services/data/{version}/{path:.*}", self._dispatch),
            ]
        )
        return app

    def expire_sessions(self) -> None:
        """Every token issued so far is invalid (a session timeout, or an admin revoking it)."""
        self.tokens.clear()

    # -- plumbing ---------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/services/"):
            response: web.StreamResponse = await handler(request)
            return response
        record = Recorded(request.method, request.path, request.query_string, dict(request.headers))
        self.requests.append(record)
        try:
            if request.path.startswith("/services/data/"):
                auth = request.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
                    raise ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
                if self.faults.limit_exceeded > 0:
                    self.faults.limit_exceeded -= 1
                    raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                self.used += 1
            response = await handler(request)
        except ApiError as err:
            response = web.json_response(err.body(), status=err.status, headers=err.headers)
        except SoqlError as err:
            response = web.json_response([{"message": str(err), "errorCode": "MALFORMED_QUERY"}], status=400)
        if request.path.startswith("/services/data/"):
            response.headers["Sforce-Limit-Info"] = f"api-usage={self.used}/{self.allocation}"
        response.headers["Date"] = email.utils.format_datetime(self.now().astimezone(UTC), usegmt=True)
        record.status = response.status
        return response

    async def _token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "grant type not supported"},
                status=400,
            )
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return web.json_response(
                {"error": "invalid_client", "error_description": "invalid client credentials"}, status=400
            )
        token = f"{ORG_ID}!{secrets.token_urlsafe(24)}"
        self.tokens.add(token)
        issued = int(self.now().timestamp() * 1000)
        return web.json_response(
            {
                "access_token": token,
                "signature": secrets.token_urlsafe(16),
                "scope": "api",
                "instance_url": self.base_url(),
                "id": f"https://login.salesforce.com/id/{ORG_ID}/{self.store.integration_user}",
                "token_type": "Bearer",
                "issued_at": str(issued),
            }
        )

    def _url(self, version: str, obj: str, record_id: str) -> str:
        return f"/services/data/{version}/sobjects/{obj}/{record_id}"

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.text() or "{}")
        except ValueError as exc:
            raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from exc
        if not isinstance(data, dict):
            raise ApiError(
                400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from START_ARRAY"
            )
        return data

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        version = request.match_info["version"]
        parts = [p for p in request.match_info["path"].split("/") if p]
        method = request.method
        caller = self.store.integration_user
        if parts[:1] in (["query"], ["queryAll"]) and method == "GET":
            if len(parts) == 2:
                return self._more(version, parts[1])
            return self._query(version, request.query.get("q", ""), deleted=parts[0] == "queryAll")
        if parts == ["composite", "sobjects"]:
            return await composite.collection(self.store, request, caller)
        if parts == ["composite"] and method == "POST":
            answer = await composite.run(self.store, self._dispatch, await self._body(request))
            return web.json_response(answer)
        if not parts or parts[0] != "sobjects" or len(parts) < 2:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        obj = parts[1]
        if obj not in PREFIXES:
            raise ApiError(
                404,
                "NOT_FOUND",
                f"The requested resource does not exist: sObject type '{obj}' is not supported.",
            )
        if len(parts) == 2 and method == "POST":
            row = self.store.create(obj, await self._body(request), caller=caller)
            return web.json_response({"id": row["Id"], "errors": [], "success": True}, status=201)
        if len(parts) == 3 and parts[2] in ("updated", "deleted") and method == "GET":
            return replication.window(self.store, self.now(), request.query, obj, parts[2])
        if len(parts) == 3:
            return await self._row(request, version, obj, parts[2], caller)
        if len(parts) == 4:
            return await self._external(request, version, obj, parts[2], parts[3], caller)
        raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    # -- records ----------------------------------------------------------------------------------------

    def _shape(self, version: str, obj: str, row: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": obj, "url": self._url(version, obj, row["Id"])}}
        names = fields if fields is not None else [k for k in row if k != "attributes"]
        for name in names:
            if "." in name:
                lookup, sub = name.split(".", 1)
                target = self.store.owner_of(str(row.get(_LOOKUPS.get(lookup, lookup + "Id")) or ""))
                if target is None:
                    out[lookup] = None
                    continue
                kind = "Name" if lookup == "Relation" else "User"
                shaped = out.get(lookup) or {
                    "attributes": {"type": kind, "url": self._url(version, kind, target["Id"])}
                }
                shaped[sub] = target.get(sub)
                out[lookup] = shaped
            else:
                known = {f.lower(): f for f in (*WRITABLE.get(obj, ()), *_SYSTEM, *row)}
                if obj in WRITABLE and name.lower() not in known:
                    raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{obj}'.")
                canonical = known.get(
                    name.lower(), name
                )  # names are case-insensitive; answers use the API name
                out[canonical] = row.get(canonical)
        return out

    async def _row(
        self, request: web.Request, version: str, obj: str, record_id: str, caller: str
    ) -> web.StreamResponse:
        if request.method == "GET":
            row = self.store.get(obj, record_id)
            fields = request.query.get("fields")
            return web.json_response(self._shape(version, obj, row, fields.split(",") if fields else None))
        if request.method == "PATCH":
            row = self.store.get(obj, record_id)
            guard = request.headers.get("If-Unmodified-Since")
            if guard is not None:
                try:
                    since = email.utils.parsedate_to_datetime(guard)
                except (TypeError, ValueError) as exc:
                    raise ApiError(
                        400, "INVALID_HEADER_TYPE", f"Invalid If-Unmodified-Since: {guard}"
                    ) from exc
                if parse_wire_time(str(row["LastModifiedDate"])) > since:
                    raise ApiError(
                        412,
                        "PRECONDITION_FAILED",
                        "The record was modified since the If-Unmodified-Since date.",
                    )
            self.store.update(obj, record_id, await self._body(request), caller=caller)
            return web.Response(status=204)
        if request.method == "DELETE":
            self.store.delete(obj, record_id, caller=caller)
            return web.Response(status=204)
        raise ApiError(
            405,
            "METHOD_NOT_ALLOWED",
            f"HTTP Method '{request.method}' not allowed. Allowed are GET,PATCH,DELETE",
        )

    def _matches(self, obj: str, name: str, value: str) -> list[dict[str, Any]]:
        return [
            r for r in self.store.objects[obj].values() if not r.get("IsDeleted") and r.get(name) == value
        ]

    async def _external(
        self, request: web.Request, version: str, obj: str, name: str, value: str, caller: str
    ) -> web.StreamResponse:
        if name not in EXTERNAL_ID_FIELDS.get(obj, ()) and name != "Id":
            raise ApiError(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {name}"
            )
        found = self._matches(obj, name, value)
        if len(found) > 1:
            return web.json_response([self._url(version, obj, r["Id"]) for r in found], status=300)
        if request.method == "GET":
            if not found:
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            return web.json_response(self._shape(version, obj, found[0], None))
        if request.method != "PATCH":
            raise ApiError(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{request.method}' not allowed. Allowed are GET,PATCH",
            )
        body = await self._body(request)
        if name in body:
            raise ApiError(
                400, "INVALID_FIELD", f"The {name} field should not be specified in the sobject data."
            )
        if found:
            row = self.store.update(obj, found[0]["Id"], body, caller=caller)
            return web.json_response(
                {"id": row["Id"], "errors": [], "success": True, "created": False}, status=200
            )
        if request.query.get("updateOnly") == "true":
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        row = self.store.create(obj, {**body, name: value}, caller=caller)
        return web.json_response(
            {"id": row["Id"], "errors": [], "success": True, "created": True}, status=201
        )

    # -- queries ----------------------------------------------------------------------------------------

    def _run(self, version: str, q: Query, *, deleted: bool) -> list[dict[str, Any]]:
        if q.obj not in PREFIXES:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{q.obj}' is not supported.")
        rows = [r for r in self.store.objects[q.obj].values() if deleted or not r.get("IsDeleted")]
        if q.where is not None:
            rows = [r for r in rows if q.where(lambda name, row=r: row.get(name))]  # type: ignore[misc]
        for name, desc in reversed(q.order):
            rows.sort(key=lambda r: (r.get(name) is not None, r.get(name) or ""), reverse=desc)
        if q.limit is not None:
            rows = rows[: q.limit]
        out = []
        for row in rows:
            shaped = self._shape(version, q.obj, row, q.fields)
            if q.subquery is not None:
                child, key = _CHILDREN.get(q.subquery_name, (None, None))
                if child is None or q.obj != "Event":
                    raise ApiError(400, "INVALID_TYPE", f"Didn't understand relationship '{q.subquery_name}'")
                kids = [
                    self._shape(version, child, c, q.subquery.fields)
                    for c in self.store.objects[child].values()
                    if c.get(str(key)) == row["Id"] and (deleted or not c.get("IsDeleted"))
                ]
                shaped[q.subquery_name] = (
                    {"totalSize": len(kids), "done": True, "records": kids} if kids else None
                )
            out.append(shaped)
        return out

    def _query(self, version: str, soql: str, *, deleted: bool) -> web.StreamResponse:
        if not soql:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        rows = self._run(version, parse(soql), deleted=deleted)
        return self._page(version, rows, len(rows))

    def _page(self, version: str, rows: list[dict[str, Any]], total: int) -> web.StreamResponse:
        body: dict[str, Any] = {
            "totalSize": total,
            "done": len(rows) <= BATCH_SIZE,
            "records": rows[:BATCH_SIZE],
        }
        if len(rows) > BATCH_SIZE:
            locator = f"01g{secrets.token_hex(6)}-{BATCH_SIZE}"
            self._locators[locator] = rows[BATCH_SIZE:]
            body["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}"
        return web.json_response(body)

    def _more(self, version: str, locator: str) -> web.StreamResponse:
        rows = self._locators.pop(locator, None)
        if rows is None:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(version, rows, len(rows))
