"""The emulator's composite resources: `/composite` (up to 25 subrequests through the API's own dispatch,
`@{referenceId.field}` references, `allOrNone` rollback, answered as `compositeResponse`) and sObject
Collections (`/composite/sobjects`, 200 records, `allOrNone` rollback).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from aiohttp import web
from multidict import CIMultiDict, MultiDict, MultiDictProxy

from devstack.salesforce_emulator.soql import SoqlError
from devstack.salesforce_emulator.store import PREFIXES, ApiError, Savepoint, Store

MAX_SUBREQUESTS = 25  # "up to 25 subrequests in a single call" (Composite, REST API Developer Guide)
MAX_QUERIES_AND_COLLECTIONS = (
    5  # "Up to 5 of these subrequests can be sObject Collections or query operations"
)
_REFERENCE_ID = re.compile(
    r"[A-Za-z0-9_]+"
)  # "letters, numbers, and underscores" (Composite Subrequest Result)
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])+)\}")
_RESERVED_HEADERS = {"accept", "authorization", "content-type"}  # inherited from the top-level request
# The body of a subrequest an all-or-none call did not keep. Not on a page read: the code and message public
# Salesforce clients match on.
HALTED = [
    {
        "errorCode": "PROCESSING_HALTED",
        "message": "The transaction was rolled back since another operation in the same transaction failed.",
    }
]

Dispatch = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Subrequest:
    """What the API's handlers read of a request (method, path parts, query, headers, body), for one
    subrequest run inside a composite call."""

    def __init__(self, method: str, url: str, body: Any, headers: Mapping[str, str]) -> None:
        parts = urlsplit(url)
        path = parts.path
        prefix = "/services/data/"
        if not path.startswith(prefix) or "/" not in path[len(prefix) :]:
            raise ApiError(400, "INVALID_URL", f"Invalid URL for a composite subrequest: {url}")
        version, _, rest = path[len(prefix) :].partition("/")
        self.method = method
        self.path = path
        self.match_info = {"version": version, "path": rest}
        query: MultiDict[str] = MultiDict()
        for pair in [p for p in parts.query.split("&") if p]:
            key, _, value = pair.partition("=")
            query.add(unquote_plus(key), unquote_plus(value))
        self.query = MultiDictProxy(query)
        self.headers = CIMultiDict(headers)
        self._text = "" if body is None else json.dumps(body)

    async def text(self) -> str:
        return self._text

    async def json(self) -> Any:
        return json.loads(self._text or "null")


def _validate(data: Any) -> tuple[bool, list[dict[str, Any]]]:
    if not isinstance(data, dict) or not isinstance(data.get("compositeRequest"), list):
        raise ApiError(400, "JSON_PARSER_ERROR", "'compositeRequest' is a required field.")
    subrequests = data["compositeRequest"]
    if not subrequests:
        raise ApiError(400, "INVALID_FIELD", "compositeRequest must contain at least one subrequest")
    if len(subrequests) > MAX_SUBREQUESTS:
        raise ApiError(400, "LIMIT_EXCEEDED", f"Exceeded max limit of subrequests allowed: {MAX_SUBREQUESTS}")
    seen: set[str] = set()
    heavy = 0
    for sub in subrequests:
        if not isinstance(sub, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "a subrequest must be a JSON object")
        for name in ("method", "url", "referenceId"):
            if not sub.get(name):
                raise ApiError(400, "JSON_PARSER_ERROR", f"'{name}' is a required field.")
        ref = str(sub["referenceId"])
        if not _REFERENCE_ID.fullmatch(ref) or ref in seen:
            raise ApiError(400, "INVALID_FIELD", f"Invalid or duplicate referenceId: {ref}")
        seen.add(ref)
        if sub["method"] not in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            raise ApiError(400, "INVALID_FIELD", f"Invalid method: {sub['method']}")
        if _RESERVED_HEADERS & {h.lower() for h in sub.get("httpHeaders") or {}}:
            raise ApiError(
                400, "INVALID_FIELD", "Accept, Authorization and Content-Type come from the composite request"
            )
        target = urlsplit(str(sub["url"])).path
        if "/query" in target or "/queryAll" in target or target.rstrip("/").endswith("/composite/sobjects"):
            heavy += 1
    if heavy > MAX_QUERIES_AND_COLLECTIONS:
        raise ApiError(
            400,
            "LIMIT_EXCEEDED",
            f"Exceeded max limit of {MAX_QUERIES_AND_COLLECTIONS} query and sObject Collections subrequests",
        )
    return bool(data.get("allOrNone", False)), subrequests


def _lookup(results: Mapping[str, Any], ref: str, path: str) -> Any:
    value = results[ref]
    for step in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        name, index = step
        value = value[int(index)] if index else value[name]
    return value


def _resolve(value: Any, results: Mapping[str, Any]) -> Any:
    """`@{ref.field}` and `@{ref.records[0].Id}` replaced by the value an earlier subrequest answered."""
    if isinstance(value, dict):
        return {k: _resolve(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, results) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        try:
            return str(_lookup(results, match.group(1), match.group(2)))
        except (KeyError, IndexError, TypeError) as exc:
            raise ApiError(
                400, "INVALID_FIELD", f"Invalid reference specified. No value for {match.group(0)} found"
            ) from exc

    return _REFERENCE.sub(one, value)


def _location(sub: _Subrequest, status: int, body: Any) -> dict[str, str]:
    parts = sub.match_info["path"].strip("/").split("/")
    if status == 201 and isinstance(body, dict) and body.get("id") and parts[:1] == ["sobjects"]:
        return {"Location": f"/services/data/{sub.match_info['version']}/sobjects/{parts[1]}/{body['id']}"}
    return {}


async def run(store: Store, dispatch: Dispatch, data: Any) -> dict[str, Any]:
    """The compositeResponse for a composite request body. Outbound notifications of its writes wait until
    the call commits; an all-or-none call that fails leaves the store as it was."""
    all_or_none, subrequests = _validate(data)
    savepoint = Savepoint(store)
    answers: list[dict[str, Any]] = []
    bodies: dict[str, Any] = {}
    failed = False
    try:
        for sub in subrequests:
            ref = str(sub["referenceId"])
            if failed and all_or_none:
                answers.append({"body": HALTED, "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref})
                continue
            status, body, headers = await _one(sub, bodies, dispatch)
            if all_or_none and _collection_failed(sub, body):
                status = 400  # the composite's allOrNone holds for its sObject Collections too (status ours)
            answers.append(
                {"body": body, "httpHeaders": headers, "httpStatusCode": status, "referenceId": ref}
            )
            if status >= 400:
                failed = True
            else:
                bodies[ref] = body
    except BaseException:
        savepoint.rollback()
        raise
    if failed and all_or_none:
        savepoint.rollback()
        answers = [
            a
            if a["httpStatusCode"] >= 400
            else {**a, "body": HALTED, "httpHeaders": {}, "httpStatusCode": 400}
            for a in answers
        ]
    else:
        savepoint.commit()
    return {"compositeResponse": answers}


def _collection_failed(sub: Mapping[str, Any], body: Any) -> bool:
    collection = urlsplit(str(sub["url"])).path.rstrip("/").endswith("/composite/sobjects")
    return collection and isinstance(body, list) and any(not r.get("success", True) for r in body)


async def _one(
    sub: Mapping[str, Any], bodies: Mapping[str, Any], dispatch: Dispatch
) -> tuple[int, Any, dict[str, str]]:
    try:
        url = str(_resolve(str(sub["url"]), bodies))
        request = _Subrequest(
            str(sub["method"]), url, _resolve(sub.get("body"), bodies), sub.get("httpHeaders") or {}
        )
        response = await dispatch(request)  # type: ignore[arg-type]  # what the handlers read of a request
    except ApiError as err:
        return err.status, err.body(), dict(err.headers)
    except SoqlError as err:
        return 400, [{"message": str(err), "errorCode": "MALFORMED_QUERY"}], {}
    assert isinstance(response, web.Response)
    body = json.loads(response.body) if response.body else None  # type: ignore[arg-type]
    headers = {
        k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")
    }
    return response.status, body, headers | _location(request, response.status, body)


# -- sObject Collections (`/composite/sobjects`) ------------------------------------------------------


async def collection(store: Store, request: web.Request, caller: str) -> web.StreamResponse:
    """Up to 200 records, each with its result; with `allOrNone` a refused record rolls every other back
    (their errors say so: "their errors fields indicate that they were rolled back", AllOrNoneHeader)."""
    results: list[dict[str, Any]] = []
    savepoint = Savepoint(store)
    if request.method == "DELETE":
        all_or_none = request.query.get("allOrNone") == "true"
        for record_id in [i for i in request.query.get("ids", "").split(",") if i]:
            obj = next((o for o, p in PREFIXES.items() if record_id.startswith(p)), "")
            try:
                store.delete(obj, record_id, caller=caller)
                results.append({"id": record_id, "success": True, "errors": []})
            except ApiError as err:
                results.append({"id": record_id, "success": False, "errors": [_collection_error(err)]})
    else:
        body = await request.json()
        all_or_none = bool(body.get("allOrNone"))
        records = body.get("records") or []
        if len(records) > 200:
            savepoint.rollback()
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        for record in records:
            obj = str((record.get("attributes") or {}).get("type") or "")
            try:
                if request.method == "POST":
                    row = store.create(obj, record, caller=caller)
                else:
                    fields = {k: v for k, v in record.items() if k != "Id"}
                    row = store.update(obj, str(record.get("Id") or ""), fields, caller=caller)
                    if obj == "EventRelation":
                        store.touch_event(str(row.get("EventId") or ""), caller)
                results.append({"id": row["Id"], "success": True, "errors": []})
            except ApiError as err:
                results.append({"success": False, "errors": [_collection_error(err)]})
    if all_or_none and any(not r["success"] for r in results):
        savepoint.rollback()
        rolled_back = {
            "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",  # code and message ours
            "message": "Record rolled back because not all records were valid and the request was using "
            "AllOrNone header",
            "fields": [],
        }
        undone = {"success": False, "errors": [rolled_back]}
        results = [r if not r["success"] else undone for r in results]
    else:
        savepoint.commit()
    return web.json_response(results, status=200)


def _collection_error(err: ApiError) -> dict[str, Any]:
    return {"statusCode": err.code, "message": err.message, "fields": err.fields or []}
