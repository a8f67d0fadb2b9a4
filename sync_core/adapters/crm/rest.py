"""RestCrmConnector: the CrmConnector port over the HTTP contract in docs/crm-contract.openapi.yaml. I/O
side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from sync_core.adapters.crm.transport import json_object, send_ok
from sync_core.adapters.crm.wire import (
    _W,
    APPOINTMENT_FIELDS,
    SIDE,
    _WireContact,
    _WireMatches,
    _WirePage,
    _WireSpace,
    _WireUser,
    appointment_to_wire,
    record_from_wire,
    translate_error,
)
from sync_core.domain import identity
from sync_core.domain.model import Appointment, CrmRecord
from sync_core.errors import (
    ConfigurationError,
    NotFoundError,
    UnprocessableError,
)
from sync_core.ports.crm import ChangedPage, Contact, CrmUser, Space
from sync_core.settings import Settings, is_header_name

CONTACT_BATCH_SIZE = 50  # the contract's maximum number of `email` parameters per request
# The container keeps one connector for the process: contact answers (hits and misses) are reused for
# this long, so a contact created in the CRM is found within five minutes without a lookup per message.
DEFAULT_CONTACT_TTL_S = 300.0
DEFAULT_API_KEY_HEADER = "X-Api-Key"  # the contract's apiKeyAuth scheme; CRM_API_KEY_HEADER changes it
_MAX_PAGES = 10_000  # guards list_users/list_spaces against a CRM that never ends its paging


class RestCrmConnector:
    """CrmConnector over HTTP, one per process; `find_contacts` answers are cached for `contact_ttl_s`.

    Credentials: `token` is sent as `Authorization: Bearer`, `api_key` in the `api_key_header` header
    (`Settings.crm_credentials()` picks one by CRM_AUTH_SCHEME)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        api_key_header: str = DEFAULT_API_KEY_HEADER,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        contact_ttl_s: float = DEFAULT_CONTACT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        problems = []
        if not base_url.startswith(("https://", "http://")):
            problems.append(f"CRM base URL must be an absolute http(s) URL, got {base_url!r}")
        if not token and not api_key:
            problems.append("the CRM connector needs a bearer token or an API key")
        if api_key and not is_header_name(api_key_header):
            problems.append(f"the CRM API key header {api_key_header!r} is not an HTTP header name")
        if problems:
            raise ConfigurationError(problems)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if api_key:
            headers[api_key_header] = api_key
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout, transport=transport
        )
        # lower-case email -> (contact, or None when known absent; clock() after which to ask again)
        self._contacts: dict[str, tuple[Contact | None, float]] = {}
        self._contact_ttl = contact_ttl_s
        self._clock = clock
        self._contacts_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RestCrmConnector:
        """CRM_BASE_URL, with CRM_API_TOKEN sent as CRM_AUTH_SCHEME says (bearer, or api_key in the header
        CRM_API_KEY_HEADER)."""
        base_url, secret = settings.crm_base_url or "", settings.crm_api_token
        if settings.crm_uses_api_key:
            return cls(base_url, api_key=secret, api_key_header=settings.crm_api_key_header.strip())
        return cls(base_url, token=secret)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        item_id: str | None,
        json: Any = None,
        params: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await send_ok(
            self._client,
            translate_error,
            method,
            path,
            item_id=item_id,
            json=json,
            params=tuple(params or ()),
            headers=headers,
        )

    @staticmethod
    def _body(response: httpx.Response, item_id: str | None) -> dict[str, Any]:
        return json_object(response, "CRM", side=SIDE, item_id=item_id)

    def _record(self, response: httpx.Response, item_id: str | None) -> CrmRecord:
        data = self._body(response, item_id)
        try:
            return record_from_wire(data)
        except ValidationError as exc:
            raise UnprocessableError(
                f"CRM appointment does not match the contract: {exc}", side=SIDE, item_id=item_id
            ) from exc

    @staticmethod
    def _path(crm_id: str, suffix: str = "") -> str:
        why = identity.unsafe_id(crm_id)
        if why is not None:  # `.` and `..` survive quoting and would be resolved away by httpx
            raise UnprocessableError(f"not a CRM id: {why}", side=SIDE, item_id=crm_id[:100])
        return f"appointments/{quote(crm_id, safe='')}{suffix}"

    async def get_appointment(self, crm_id: str) -> CrmRecord | None:
        """The current record, or None when the CRM answers 404."""
        try:
            response = await self._request("GET", self._path(crm_id), item_id=crm_id)
        except NotFoundError:
            return None
        return self._record(response, crm_id)

    async def find_by_external_ref(self, external_ref: str) -> CrmRecord | None:
        """I5: GET /appointments?external_ref=...; the first record carrying exactly that reference, or None.

        Only exact matches count: a CRM that ignores the parameter answers its change feed instead, and
        none of those records is taken for the meeting unless it names it."""
        response = await self._request(
            "GET", "appointments", item_id=external_ref, params=[("external_ref", external_ref)]
        )
        data = self._body(response, external_ref)
        try:
            page = _WireMatches.model_validate(data)
            records = [record_from_wire(r) for r in page.records]
        except ValidationError as exc:
            raise UnprocessableError(
                f"CRM appointments by external_ref do not match the contract: {exc}",
                side=SIDE,
                item_id=external_ref,
            ) from exc
        return next((r for r in records if r.external_ref == external_ref), None)

    async def create_appointment(
        self, appointment: Appointment, *, idempotency_key: str, external_ref: str
    ) -> CrmRecord:
        """POST with an Idempotency-Key: a retry gets the first call's record (200), never a second (I3)."""
        body = appointment_to_wire(appointment) | {"external_ref": external_ref}
        response = await self._request(
            "POST",
            "appointments",
            item_id=external_ref,
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )
        return self._record(response, external_ref)

    async def update_appointment(
        self, crm_id: str, appointment: Appointment, *, fields: Iterable[str], expected_version: str | None
    ) -> CrmRecord:
        """PATCH only `fields` (W4). With `expected_version`, If-Match: a lost race is a ConcurrencyError."""
        names = list(dict.fromkeys(fields))
        unknown = sorted(set(names) - APPOINTMENT_FIELDS)
        if unknown:
            raise UnprocessableError(
                f"not appointment fields: {', '.join(unknown)}", side=SIDE, item_id=crm_id
            )
        dumped = appointment_to_wire(appointment, set(names))
        headers = {"If-Match": expected_version} if expected_version is not None else None
        response = await self._request(
            "PATCH", self._path(crm_id), item_id=crm_id, json=dumped, headers=headers
        )
        return self._record(response, crm_id)

    async def cancel_appointment(self, crm_id: str) -> CrmRecord:
        """POST /appointments/{id}/cancel; cancelling a cancelled record changes nothing (L4)."""
        response = await self._request("POST", self._path(crm_id, "/cancel"), item_id=crm_id)
        return self._record(response, crm_id)

    async def delete_appointment(self, crm_id: str) -> None:
        """DELETE the record; NotFoundError when it is already gone."""
        await self._request("DELETE", self._path(crm_id), item_id=crm_id)

    async def list_changed(self, cursor: str | None, *, limit: int = 100) -> ChangedPage:
        """One page of records changed (and ids deleted) since `cursor`; None starts from the beginning."""
        if limit < 1:
            raise UnprocessableError(f"limit must be at least 1, got {limit}", side=SIDE)
        params = [("limit", str(limit))]
        if cursor:  # None (or an empty stored cursor): from the beginning
            params.append(("changed_since", cursor))
        response = await self._request("GET", "appointments", item_id=None, params=params)
        data = self._body(response, None)
        try:
            page = _WirePage.model_validate(data)
            records = tuple(record_from_wire(r) for r in page.records)
        except ValidationError as exc:
            raise UnprocessableError(
                f"CRM change page does not match the contract: {exc}", side=SIDE
            ) from exc
        return ChangedPage(
            records=records, deleted_ids=tuple(page.deleted_ids), cursor=page.cursor, more=page.more
        )

    async def find_contacts(self, emails: Iterable[str]) -> dict[str, Contact]:
        """Contacts by lower-case email. Up to 50 emails per request; hits and misses cached for the TTL."""
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        async with self._contacts_lock:
            now = self._clock()
            for email in [e for e, (_, until) in self._contacts.items() if until <= now]:
                del self._contacts[email]  # expired, and the cache does not grow without bound
            missing = [e for e in wanted if e not in self._contacts]
            until = now + self._contact_ttl
            for start in range(0, len(missing), CONTACT_BATCH_SIZE):
                batch = missing[start : start + CONTACT_BATCH_SIZE]
                items, _ = await self._collection("contacts", "contacts", [("email", e) for e in batch])
                found: dict[str, Contact] = {}
                for item in items:
                    wire = self._parse(_WireContact, item, "contact")
                    email = wire.email.strip().lower()
                    # One contact per email in the contract; should a CRM send duplicates, the first wins.
                    found.setdefault(email, Contact(crm_id=wire.id, email=email, name=wire.name))
                for email in batch:
                    self._contacts[email] = (found.get(email), until)
            return {e: c for e in wanted if (c := self._contacts[e][0]) is not None}

    async def list_users(self) -> list[CrmUser]:
        """Every CRM user with the mailbox used for events created from the CRM (S1)."""
        items = await self._paged("users", "users")
        users = [self._parse(_WireUser, i, "user") for i in items]
        return [
            CrmUser(crm_id=u.id, email=u.email.strip().lower(), name=u.name, mailbox=u.mailbox) for u in users
        ]

    async def list_spaces(self) -> list[Space]:
        """Every bookable space with its room mailbox and management mode (M1-M4)."""
        items = await self._paged("spaces", "spaces")
        spaces = [self._parse(_WireSpace, i, "space") for i in items]
        return [
            Space(crm_id=s.id, name=s.name, room_mailbox=s.room_mailbox, management_mode=s.management_mode)
            for s in spaces
        ]

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    @staticmethod
    def _parse(model: type[_W], item: Any, what: str) -> _W:
        try:
            return model.model_validate(item)
        except ValidationError as exc:
            raise UnprocessableError(f"CRM {what} does not match the contract: {exc}", side=SIDE) from exc

    async def _collection(
        self, path: str, key: str, params: list[tuple[str, str]]
    ) -> tuple[list[Any], str | None]:
        response = await self._request("GET", path, item_id=None, params=params)
        data = self._body(response, None)
        items = data.get(key)
        if not isinstance(items, list):
            raise UnprocessableError(f"CRM {path} response has no `{key}` list", side=SIDE)
        next_cursor = data.get("next_cursor")
        return items, str(next_cursor) if next_cursor else None

    async def _paged(self, path: str, key: str) -> list[Any]:
        out: list[Any] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(_MAX_PAGES):
            params = [("cursor", cursor)] if cursor else []
            items, cursor = await self._collection(path, key, params)
            out.extend(items)
            if cursor is None:
                return out
            if cursor in seen:
                raise UnprocessableError(f"CRM {path} paging repeats cursor {cursor!r}", side=SIDE)
            seen.add(cursor)
        raise UnprocessableError(f"CRM {path} paging did not end after {_MAX_PAGES} pages", side=SIDE)
