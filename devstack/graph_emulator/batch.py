"""POST /$batch: up to 20 requests, dependsOn ordering, 424 on failed dependencies."""

from __future__ import annotations

import asyncio
from typing import Any

from devstack.graph_emulator.errors import GraphError, error_body
from devstack.graph_emulator.http import GraphRequest, GraphResponse, headers_from, split_relative_url
from devstack.graph_emulator.service import GraphService

MAX_REQUESTS = 20
# Outlook runs at most four requests of an unordered batch at a time (facts §9).
PARALLEL = 4


def _invalid(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


class BatchApi:
    def __init__(self, svc: GraphService) -> None:
        self.svc = svc
        svc.router.add("POST", "/$batch", self.batch)

    def _validate(self, body: Any) -> list[dict[str, Any]]:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise _invalid("Invalid batch payload format: 'requests' must be a non-empty array.")
        if len(requests) > MAX_REQUESTS:
            raise _invalid(f"Number of requests {len(requests)} exceeds the limit of {MAX_REQUESTS}.")
        seen: set[str] = set()
        for item in requests:
            if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("id", "method", "url")
            ):
                raise _invalid("Each batch request needs string id, method and url.")
            if item["id"].lower() in seen:
                raise _invalid(f"Batch request id '{item['id']}' is duplicated; ids must be unique.")
            seen.add(item["id"].lower())
            if item.get("body") is not None and not any(
                k.lower() == "content-type" for k in (item.get("headers") or {})
            ):
                raise _invalid(f"Batch request '{item['id']}' has a body but no Content-Type header.")
        for item in requests:
            for dep in item.get("dependsOn") or []:
                if str(dep).lower() not in seen:
                    raise _invalid(f"Batch request '{item['id']}' depends on unknown request '{dep}'.")
        return requests

    def _order(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_id = {item["id"].lower(): item for item in requests}
        ordered: list[dict[str, Any]] = []
        state: dict[str, int] = {}

        def visit(key: str) -> None:
            if state.get(key) == 2:
                return
            if state.get(key) == 1:
                raise _invalid("Batch dependsOn contains a cycle.")
            state[key] = 1
            for dep in by_id[key].get("dependsOn") or []:
                visit(str(dep).lower())
            state[key] = 2
            ordered.append(by_id[key])

        for item in requests:
            visit(item["id"].lower())
        return ordered

    async def _run_one(self, outer: GraphRequest, item: dict[str, Any]) -> dict[str, Any]:
        path, query = split_relative_url(item["url"])
        headers = headers_from({str(k): str(v) for k, v in (item.get("headers") or {}).items()})
        for name in ("Authorization", "Prefer"):
            if name not in headers and outer.headers.get(name):
                headers[name] = outer.headers[name]
        request = GraphRequest(
            method=item["method"].upper(),
            path=path,
            query=query,
            headers=headers,
            body=item.get("body"),
            in_batch=True,
        )
        response = await self.svc.dispatch(request)
        out: dict[str, Any] = {"id": item["id"], "status": response.status, "headers": dict(response.headers)}
        if response.body is not None:
            out["body"] = response.body
        return out

    async def batch(self, req: GraphRequest, params: dict[str, str]) -> GraphResponse:
        requests = self._validate(req.body)
        if any(item.get("dependsOn") for item in requests):
            results: dict[str, dict[str, Any]] = {}
            for item in self._order(requests):
                failed = [
                    dep for dep in item.get("dependsOn") or [] if results[str(dep).lower()]["status"] >= 400
                ]
                if failed:
                    results[item["id"].lower()] = {
                        "id": item["id"],
                        "status": 424,
                        "headers": {"Content-Type": "application/json"},
                        "body": error_body("FailedDependency", f"Dependent request(s) {failed} failed."),
                    }
                else:
                    results[item["id"].lower()] = await self._run_one(req, item)
            responses = [results[item["id"].lower()] for item in requests]
        else:
            limiter = asyncio.Semaphore(PARALLEL)

            async def limited(item: dict[str, Any]) -> dict[str, Any]:
                async with limiter:
                    return await self._run_one(req, item)

            responses = list(await asyncio.gather(*(limited(item) for item in requests)))
        return GraphResponse(200, {"responses": responses})
