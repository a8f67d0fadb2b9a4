"""The CRM emulator's HTTP surface: the contract of docs/crm-contract.openapi.yaml plus `/_emulator/*`.

I/O side: aiohttp.web handlers over a CrmStore, with fault injection and a request log.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from aiohttp import web

from devstack.crm_emulator.contract import check_body
from devstack.crm_emulator.errors import ApiError
from devstack.crm_emulator.store import MAX_PAGE, ChangeEvent, CrmStore

MAX_BODY_BYTES = 64 * 1024 * 1024

ADMIN_PREFIX = "/_emulator"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


MAX_REQUEST_LINE = 256 * 1024  # 50 emails x 320 characters x 12 bytes (4-byte UTF-8, percent-encoded)


@dataclass(frozen=True)
class Faults:
    """Fault injection for contract routes (never `/_emulator/*`). Rates are probabilities in [0, 1]."""

    error_rate: float = 0.0  # answer `status` before doing anything
    status: int = 500
    latency_ms: int = 0  # added to every contract request
    duplicate_webhooks: float = 0.0  # deliver a webhook twice (same event id)
    version_conflict_rate: float = 0.0  # a conditional write meets a concurrent CRM-side write: 412
    error_after_write_rate: float = 0.0  # do the write, then answer `status`: the response is "lost"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ApiError(422, "unknown_fault", f"unknown faults: {', '.join(sorted(unknown))}")
        try:
            faults = replace(cls(), **{k: type(getattr(cls(), k))(v) for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise ApiError(422, "invalid_fault", str(exc)) from exc
        if not 400 <= faults.status <= 599:
            raise ApiError(422, "invalid_fault", "status must be 400..599")
        return faults


@dataclass(frozen=True)
class RecordedRequest:
    """One contract request as the emulator saw it."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str]
    body: Any
    status: int


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


async def json_object(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.read() or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", str(exc)) from exc
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return data


def _limit(request: web.Request, default: int = 100) -> int:
    raw = request.query.get("limit", str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise ApiError(400, "invalid_limit", f"limit must be an integer in 1..{MAX_PAGE}")
    return int(raw)


class CrmApi:
    """Handlers and middleware; `emit` receives the change events of every write."""

    def __init__(
        self,
        store: CrmStore,
        *,
        token: str,
        emit: Callable[[Sequence[ChangeEvent]], None],
        api_key_header: str = "X-Api-Key",
    ) -> None:
        self.store = store
        self.token = token
        self.api_key_header = api_key_header
        self.emit = emit
        self.faults = Faults()
        self.rng = random.Random()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def app(self, admin_routes: list[web.RouteDef]) -> web.Application:
        # The contract allows 50 `email` parameters of up to 320 characters each: a URL far past aiohttp's
        # default 8 KB request line, which it would refuse in plain text before the contract's JSON 400.
        # F5: an appointment may carry files of a few MB as base64, past aiohttp's default 1 MB body.
        app = web.Application(
            middlewares=[self._middleware],
            handler_args={"max_line_size": MAX_REQUEST_LINE},
            client_max_size=MAX_BODY_BYTES,
        )
        app.add_routes(
            [
                web.get("/appointments", self.list_changed),
                web.post("/appointments", self.create),
                web.get("/appointments/{id}", self.get),
                web.patch("/appointments/{id}", self.update),
                web.post("/appointments/{id}/cancel", self.cancel),
                web.delete("/appointments/{id}", self.delete),
                web.get("/contacts", self.contacts),
                web.get("/users", self.users),
                web.get("/spaces", self.spaces),
                *admin_routes,
            ]
        )
        return app

    def _authorised(self, request: web.Request) -> bool:
        bearer = request.headers.get("Authorization", "").encode()
        api_key = request.headers.get(self.api_key_header, "").encode()
        token = self.token.encode()
        return hmac.compare_digest(bearer, b"Bearer " + token) or hmac.compare_digest(api_key, token)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        admin = request.path.startswith(ADMIN_PREFIX)
        response = await self._answer(request, handler, admin)
        if not admin:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                body = raw.decode("utf-8", "replace")
            entry = RecordedRequest(
                method=request.method,
                path=request.path,
                query=tuple(request.query.items()),
                headers=dict(request.headers),
                body=body,
                status=response.status,
            )
            with self._lock:
                self._requests.append(entry)
        return response

    async def _answer(self, request: web.Request, handler: Handler, admin: bool) -> web.StreamResponse:
        faults = self.faults
        try:
            if not admin:
                if not self._authorised(request):
                    return _error(
                        401, "unauthorized", f"send Authorization: Bearer <token> or {self.api_key_header}"
                    )
                if faults.latency_ms:
                    await asyncio.sleep(faults.latency_ms / 1000)
                if self.rng.random() < faults.error_rate:
                    return self._fault_response(faults)
            response = await handler(request)
            write = request.method in ("POST", "PATCH", "DELETE")
            if not admin and write and self.rng.random() < faults.error_after_write_rate:
                return self._fault_response(faults)
            return response
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)
        except web.HTTPException as exc:  # 404/405 from routing; keep its headers (405 needs Allow)
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason, allow)

    @staticmethod
    def _fault_response(faults: Faults) -> web.Response:
        headers = {"Retry-After": "1"} if faults.status in (429, 503) else None
        return _error(faults.status, "injected_fault", "fault injected by the CRM emulator", headers)

    def _maybe_conflict(self, request: web.Request) -> None:
        if "If-Match" in request.headers and self.rng.random() < self.faults.version_conflict_rate:
            self.emit(self.store.touch(request.match_info["id"]))

    # -- contract -----------------------------------------------------------------------------

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.get(request.match_info["id"]))

    async def create(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key or len(key) > 255:
            raise ApiError(400, "idempotency_key_required", "send an Idempotency-Key header (1-255 chars)")
        body = await json_object(request)
        check_body("AppointmentCreate", body)
        record, created, events = self.store.create(body, idempotency_key=key)
        self.emit(events)
        return web.json_response(record, status=201 if created else 200)

    async def update(self, request: web.Request) -> web.Response:
        patch = await json_object(request)
        check_body("AppointmentPatch", patch)
        self._maybe_conflict(request)
        record, events = self.store.update(
            request.match_info["id"], patch, if_match=request.headers.get("If-Match")
        )
        self.emit(events)
        return web.json_response(record)

    async def cancel(self, request: web.Request) -> web.Response:
        self._maybe_conflict(request)
        record, events = self.store.cancel(request.match_info["id"], if_match=request.headers.get("If-Match"))
        self.emit(events)
        return web.json_response(record)

    async def delete(self, request: web.Request) -> web.Response:
        self._maybe_conflict(request)
        self.emit(self.store.delete(request.match_info["id"], if_match=request.headers.get("If-Match")))
        return web.Response(status=204)

    async def list_changed(self, request: web.Request) -> web.Response:
        limit = _limit(request)
        if "external_ref" in request.query:  # the I5 lookup; changed_since is then ignored
            ref = request.query["external_ref"]
            if not ref:
                raise ApiError(400, "invalid_external_ref", "external_ref must not be empty")
            return web.json_response(self.store.by_external_ref(ref))
        return web.json_response(self.store.changed(request.query.get("changed_since"), limit))

    async def contacts(self, request: web.Request) -> web.Response:
        return web.json_response({"contacts": self.store.find_contacts(request.query.getall("email", []))})

    async def users(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.page("users", request.query.get("cursor"), _limit(request)))

    async def spaces(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.page("spaces", request.query.get("cursor"), _limit(request)))

    def faults_json(self) -> dict[str, Any]:
        return asdict(self.faults)
