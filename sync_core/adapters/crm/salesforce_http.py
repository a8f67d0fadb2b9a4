"""The Salesforce request layer: the client-credentials token (`INVALID_SESSION_ID` renews it once, the only
status read here), one request, SOQL paging and the API usage header. I/O side (httpx); errors through
salesforce_errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from sync_core.adapters.crm.salesforce_errors import error_body, translate_error
from sync_core.adapters.crm.salesforce_wire import SIDE, api_usage
from sync_core.adapters.crm.transport import send
from sync_core.errors import UnprocessableError

log = logging.getLogger(__name__)

USAGE_WARNING = 0.8
_MAX_PAGES = 10_000


class Session:
    """An access token from the client-credentials flow, renewed on demand (one renewal at a time)."""

    def __init__(self, client: httpx.AsyncClient, token_url: str, client_id: str, secret: str) -> None:
        self._client, self._url, self._id, self._secret = client, token_url, client_id, secret
        self.token: str | None = None
        self.user_id: str | None = None
        self.org_id: str | None = None
        self._lock = asyncio.Lock()

    async def current(self) -> str:
        if self.token is None:
            await self.renew(None)
        assert self.token is not None
        return self.token

    async def renew(self, stale: str | None) -> str:
        async with self._lock:
            if self.token is not None and self.token != stale:
                return self.token  # another request renewed it meanwhile
            form = {"grant_type": "client_credentials", "client_id": self._id, "client_secret": self._secret}
            try:
                response = await self._client.post(self._url, data=form)
            except httpx.HTTPError as exc:
                raise translate_error(exc, item_id=None) from exc
            if not response.is_success:
                raise translate_error(response, item_id=None)
            data = response.json()
            self.token = str(data["access_token"])
            # the identity URL: https://login.salesforce.com/id/<org id>/<user id>
            parts = str(data.get("id") or "").rstrip("/").split("/")
            if len(parts) >= 2:
                self.org_id, self.user_id = parts[-2], parts[-1]
            return self.token


class SalesforceHttp:
    """The request layer of SalesforceConnector (which sets these attributes)."""

    instance_url: str
    data_path: str
    _client: httpx.AsyncClient
    _session: Session
    api_usage: tuple[int, int] | None
    calls: int

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- transport ------------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        item_id: str | None,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (),
    ) -> httpx.Response:
        """One request with the bearer token; `INVALID_SESSION_ID` renews the token and sends it once more.
        Statuses in `ok` are returned to the caller instead of raised."""
        url = path if path.startswith("/services/") else f"{self.data_path}/{path.lstrip('/')}"
        token = await self._session.current()
        for attempt in (1, 2):
            self.calls += 1
            response = await send(
                self._client,
                translate_error,
                method,
                url,
                item_id=item_id,
                params=dict(params) if params else None,
                json=json_body,
                headers={**(headers or {}), "Authorization": f"Bearer {token}"},
            )
            self._note_usage(response)
            if (
                response.status_code == 401
                and attempt == 1
                and error_body(response)[0] == "INVALID_SESSION_ID"
            ):
                token = await self._session.renew(token)
                continue
            if response.is_success or response.status_code in ok:
                return response
            raise translate_error(response, item_id=item_id)
        raise AssertionError("unreachable")

    def _note_usage(self, response: httpx.Response) -> None:
        usage = api_usage(response.headers)
        if usage is None:
            return
        before, self.api_usage = self.api_usage, usage
        used, allocation = usage
        if (
            allocation
            and used >= USAGE_WARNING * allocation
            and (before is None or before[0] < before[1] * USAGE_WARNING)
        ):
            log.warning("Salesforce API usage %d of %d in the last 24 hours", used, allocation)

    @staticmethod
    def _json(response: httpx.Response, item_id: str | None) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise UnprocessableError(
                f"Salesforce sent a body that is not JSON: {exc}", side=SIDE, item_id=item_id
            ) from exc

    async def _query(
        self, soql: str, *, deleted: bool = False, item_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Every row of a SOQL query (`/queryAll` with `deleted`), following `nextRecordsUrl`."""
        rows: list[dict[str, Any]] = []
        response = await self._send(
            "GET", "queryAll/" if deleted else "query/", item_id=item_id, params={"q": soql}
        )
        for _ in range(_MAX_PAGES):
            data = self._json(response, item_id)
            if not isinstance(data, dict) or not isinstance(data.get("records"), list):
                raise UnprocessableError("Salesforce query answer has no `records` list", side=SIDE)
            rows += [r for r in data["records"] if isinstance(r, dict)]
            more = data.get("nextRecordsUrl")
            if data.get("done", True) or not more:
                return rows
            if not str(more).startswith(self.data_path + "/query"):
                raise UnprocessableError(f"Salesforce next records URL outside the API: {more!r}", side=SIDE)
            response = await self._send("GET", str(more), item_id=item_id)
        raise UnprocessableError(f"Salesforce query paging did not end after {_MAX_PAGES} pages", side=SIDE)

    async def _me(self) -> str | None:
        await self._session.current()
        return self._session.user_id
