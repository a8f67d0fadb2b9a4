"""The request pipeline every Graph call goes through: auth, routing, throttling, faults, logging."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from devstack.graph_emulator.clock import Clock
from devstack.graph_emulator.errors import GraphError, error_body
from devstack.graph_emulator.faults import Faults
from devstack.graph_emulator.http import JSON_CONTENT_TYPE, GraphRequest, GraphResponse, Router
from devstack.graph_emulator.query import parse_expansion
from devstack.graph_emulator.rendering import RenderContext
from devstack.graph_emulator.state import EmulatorState
from devstack.graph_emulator.timezones import format_instant, is_known_zone

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


class GraphService:
    """Shared by the Graph route modules: state, clock, faults, links, and the dispatch pipeline."""

    def __init__(
        self,
        state: EmulatorState,
        clock: Clock,
        faults: Faults,
        tenant_id: str,
        mailbox_concurrency_limit: int = 4,
    ) -> None:
        self.state = state
        self.clock = clock
        self.faults = faults
        self.tenant_id = tenant_id
        self.mailbox_concurrency_limit = mailbox_concurrency_limit
        self.router = Router()
        self.base_url = "http://127.0.0.1/v1.0"
        self.log_lock = threading.Lock()
        self.request_log: list[dict[str, Any]] = []
        self.in_flight: dict[str, int] = {}
        self.max_concurrency: dict[str, int] = {}

    # -- helpers for route modules ---------------------------------------------------------------

    def render_context(self, req: GraphRequest) -> tuple[RenderContext, dict[str, str]]:
        """Render settings from Prefer/$expand/$select, plus the Preference-Applied header to echo."""
        prefer = req.prefer
        applied: list[str] = []
        tz = "UTC"
        wanted = prefer.get("outlook.timezone")
        if wanted and is_known_zone(wanted):
            tz = wanted
            applied.append(f'outlook.timezone="{wanted}"')
        if "idtype" in prefer:
            applied.append(f'IdType="{prefer["idtype"]}"')
        # api/event-get.md: bodies are HTML unless `Prefer: outlook.body-content-type` asks for "text" (or
        # "html"); a Preference-Applied header confirms the preference.
        body_type = "html"
        wanted_body = (prefer.get("outlook.body-content-type") or "").lower()
        if wanted_body in ("text", "html"):
            body_type = wanted_body
            applied.append(f'outlook.body-content-type="{wanted_body}"')
        ctx = RenderContext(
            base_url=self.base_url,
            tz=tz,
            expansion=parse_expansion(req.param("$expand"), req.param("$select")),
            body_type=body_type,
        )
        return ctx, ({"Preference-Applied": ", ".join(applied)} if applied else {})

    def reset_counters(self) -> None:
        with self.log_lock:
            self.request_log.clear()
            self.max_concurrency.clear()

    # -- pipeline --------------------------------------------------------------------------------

    async def dispatch(self, req: GraphRequest) -> GraphResponse:
        mailbox_id: str | None = None
        try:
            if not req.headers.get("Authorization"):
                raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
            route, params = self.router.match(req.method, req.path)
            if "user" in params:
                mailbox_id = self.state.mailbox(params["user"]).id
            response = await self._guarded(req, params, route.handler, mailbox_id)
        except GraphError as exc:
            response = GraphResponse(
                exc.status,
                error_body(exc.code, exc.message, req.request_id, req.headers.get("client-request-id")),
                dict(exc.headers),
            )
        response.headers.setdefault("request-id", req.request_id)
        if req.headers.get("client-request-id"):
            response.headers.setdefault("client-request-id", req.headers["client-request-id"])
        if response.body is not None:
            response.headers.setdefault("Content-Type", JSON_CONTENT_TYPE)
        self._log(req, response, mailbox_id)
        return response

    async def _guarded(
        self, req: GraphRequest, params: dict[str, str], handler: Any, mailbox_id: str | None
    ) -> GraphResponse:
        key = mailbox_id or "*"
        with self.log_lock:
            self.in_flight[key] = self.in_flight.get(key, 0) + 1
            current = self.in_flight[key]
            if mailbox_id is not None:
                self.max_concurrency[mailbox_id] = max(self.max_concurrency.get(mailbox_id, 0), current)
        try:
            if mailbox_id is not None and 0 < self.mailbox_concurrency_limit < current:
                # Outlook allows four concurrent requests per app and mailbox.
                raise GraphError(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    {"Retry-After": "1"},
                )
            verdict = self.faults.for_request(mailbox_id)
            if verdict.latency_s:
                await asyncio.sleep(verdict.latency_s)
            if verdict.status == 429:
                raise GraphError(
                    429,
                    "TooManyRequests",
                    "Please retry again later.",
                    {"Retry-After": f"{verdict.retry_after:g}"},
                )
            if verdict.status == 503:
                raise GraphError(
                    503,
                    "ServiceNotAvailable",
                    "The service is temporarily unavailable. Please retry later.",
                    {"Retry-After": f"{verdict.retry_after:g}"},
                )
            response: GraphResponse = await handler(req, params)
            if (
                req.method in WRITE_METHODS
                and response.status < 400
                and self.faults.lose_response(mailbox_id)
            ):
                # The write is committed; its answer is lost on the way back.
                raise GraphError(
                    500, "InternalServerError", "The response was lost after the write committed."
                )
            return response
        finally:
            with self.log_lock:
                self.in_flight[key] -= 1

    def _log(self, req: GraphRequest, response: GraphResponse, mailbox_id: str | None) -> None:
        entry = {
            "method": req.method,
            "path": req.path,
            "query": dict(req.query),
            "headers": {k: v for k, v in req.headers.items()},
            "json": req.body,
            "time": format_instant(self.clock.now()),
            "status": response.status,
            "mailbox": mailbox_id,
        }
        with self.log_lock:
            self.request_log.append(entry)
