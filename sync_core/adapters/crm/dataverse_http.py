"""The Dataverse request layer: a bearer token for `{org}/.default`, one request with the Web API's OData
headers, paging and queries by value. I/O side (httpx, azure-identity); errors through
dataverse_errors.translate_error."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import httpx
from azure.core.credentials_async import AsyncTokenCredential

from sync_core.adapters.crm.dataverse_errors import translate_error
from sync_core.adapters.crm.dataverse_wire import FORMATTED, LOOKUP_LOGICAL_NAME, SIDE, odata_string
from sync_core.adapters.crm.transport import json_object, send_ok
from sync_core.errors import UnprocessableError
from sync_core.settings import Settings

BATCH = 50  # emails or ids per `$filter` of `or`-ed equalities
_MAX_PAGES = 10_000
ANNOTATIONS = f'odata.include-annotations="{FORMATTED},{LOOKUP_LOGICAL_NAME}"'


class Bearer(httpx.Auth):
    """A bearer token for `{org}/.default`: a static one (the emulator) or from an azure-identity credential
    (which caches and refreshes it)."""

    def __init__(self, scope: str, *, token: str | None, credential: AsyncTokenCredential | None) -> None:
        self._scope, self._token, self._credential = scope, token, credential

    async def async_auth_flow(self, request: httpx.Request) -> Any:
        token = self._token
        if self._credential is not None:
            token = (await self._credential.get_token(self._scope)).token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


def app_credential(settings: Settings) -> AsyncTokenCredential:
    """The app registration's client credentials, as GRAPH_AUTH_MODE names them (one app, one application
    user in Dataverse)."""
    from azure.identity.aio import CertificateCredential, ClientAssertionCredential, ClientSecretCredential

    tenant, client = settings.graph_tenant_id or "", settings.graph_client_id or ""
    if settings.graph_auth_mode == "client_secret":
        return ClientSecretCredential(tenant, client, settings.graph_client_secret or "")
    if settings.graph_auth_mode == "certificate":
        return CertificateCredential(tenant, client, certificate_path=settings.graph_certificate_path)
    from azure.identity import ManagedIdentityCredential as SyncManagedIdentityCredential

    mi = SyncManagedIdentityCredential(client_id=settings.graph_managed_identity_client_id)
    return ClientAssertionCredential(
        tenant, client, lambda: mi.get_token("api://AzureADTokenExchange/.default").token
    )


class DataverseHttp:
    """The request layer of DataverseConnector (which sets these attributes)."""

    org_url: str
    api_url: str
    _client: httpx.AsyncClient
    _credential: AsyncTokenCredential | None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._credential is not None:
            await self._credential.close()

    # -- transport ------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        url: str,
        *,
        item_id: str | None,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        return await send_ok(
            self._client,
            translate_error,
            method,
            url,
            item_id=item_id,
            params=dict(params) if params else None,
            json=json_body,
            headers=dict(headers or {}),
        )

    @staticmethod
    def _json(response: httpx.Response, item_id: str | None) -> dict[str, Any]:
        return json_object(response, "Dataverse", side=SIDE, item_id=item_id)

    async def _get_json(
        self,
        url: str,
        *,
        item_id: str | None,
        params: Mapping[str, str] | None = None,
        prefer: str = ANNOTATIONS,
    ) -> dict[str, Any]:
        response = await self._request("GET", url, item_id=item_id, params=params, headers={"Prefer": prefer})
        return self._json(response, item_id)

    async def _all(self, url: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every row of a query, following `@odata.nextLink`."""
        rows: list[dict[str, Any]] = []
        next_url: str | None = url
        first = True
        for _ in range(_MAX_PAGES):
            if next_url is None:
                return rows
            data = await self._get_json(
                next_url,
                item_id=None,
                params=params if first else None,
                prefer=f"{ANNOTATIONS},odata.maxpagesize=500",
            )
            first = False
            value = data.get("value")
            if not isinstance(value, list):
                raise UnprocessableError(f"Dataverse {url} answer has no `value` list", side=SIDE)
            rows += [r for r in value if isinstance(r, dict)]
            next_url = self._own_link(data.get("@odata.nextLink"))
        raise UnprocessableError(f"Dataverse {url} paging did not end after {_MAX_PAGES} pages", side=SIDE)

    def _own_link(self, link: Any) -> str | None:
        """A next or delta link, only when it points into this organization's Web API."""
        if link is None:
            return None
        if not isinstance(link, str) or not link.startswith(self.api_url):
            raise UnprocessableError(f"Dataverse link outside {self.api_url}: {str(link)[:200]}", side=SIDE)
        return link

    async def _lookup(
        self, entity_set: str, column: str, values: list[str], select: str, *, guids: bool = False
    ) -> list[dict[str, Any]]:
        """Rows whose `column` equals one of `values` (strings, or GUIDs written bare), 50 per query."""
        rows: list[dict[str, Any]] = []
        for start in range(0, len(values), BATCH):
            batch = values[start : start + BATCH]
            flt = " or ".join(f"{column} eq {v if guids else odata_string(v)}" for v in batch)
            rows += await self._all(entity_set, {"$select": select, "$filter": flt})
        return rows

    async def _patch(
        self,
        guid: str,
        body: Mapping[str, Any],
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> None:
        headers = {"If-Match": if_match} if if_match else {"If-None-Match": if_none_match or "*"}
        await self._request(
            "PATCH", f"appointments({guid})", item_id=guid, json_body=dict(body), headers=headers
        )
