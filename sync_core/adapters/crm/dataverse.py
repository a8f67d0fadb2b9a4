"""DataverseConnector: the CrmConnector port over the Dataverse Web API (/api/data/v9.2). I/O side (httpx,
azure-identity). The wire mapping and the error map live in dataverse_wire; nothing here reads a status code.

Requests carry the headers the Web API asks for (Accept, OData-MaxVersion/OData-Version 4.0) and a bearer
token for the scope `{org}/.default` (client credentials of an application user, or a static token for the
emulator). Create-once: a deterministic activityid from the idempotency key, `PATCH` with
`If-None-Match: *` (412: it exists, read it). Updates: `If-Match` with the `@odata.etag` (412:
ConcurrencyError), only the columns that differ (an unchanged record keeps its ETag, W4). The change feed is
`Prefer: odata.track-changes` with `odata.maxpagesize`: the cursor is the `@odata.nextLink` or the
`@odata.deltaLink`; an expired token (0x80044352) restarts from a full read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx
from azure.core.credentials_async import AsyncTokenCredential

from sync_core.adapters.crm.dataverse_series import Series
from sync_core.adapters.crm.dataverse_series_wire import feed_cursor, feed_links
from sync_core.adapters.crm.dataverse_wire import (
    API_PATH,
    APPOINTMENT_COLUMNS,
    CANCELED,
    CAPABILITIES,
    CLOSED_STATES,
    EXPIRED_VERSION_STAMP,
    EXTERNAL_REF,
    FORMATTED,
    FREE,
    LOOKUP_LOGICAL_NAME,
    OPEN,
    PARTY_COLUMNS,
    SIDE,
    SPACE_MODE,
    Directory,
    StatusMap,
    activity_id,
    as_guid,
    columns,
    odata_string,
    parties,
    party_key,
    record_from_row,
    refuse_unholdable,
    same_column,
    state_of,
    translate_error,
)
from sync_core.adapters.crm.transport import json_object
from sync_core.domain.model import Appointment, CrmRecord
from sync_core.errors import ConcurrencyError, ConfigurationError, NotFoundError, UnprocessableError
from sync_core.ports.crm import ChangedPage, Contact, CrmCapabilities, CrmUser, Space
from sync_core.settings import Settings

log = logging.getLogger(__name__)

EMULATOR_TOKEN = "dev-dataverse-token"
BATCH = 50  # emails or ids per `$filter` of `or`-ed equalities
DEFAULT_DIRECTORY_TTL_S = 300.0
_MAX_PAGES = 10_000
_APPOINTMENT_FIELDS = frozenset(Appointment.model_fields)
_ANNOTATIONS = f'odata.include-annotations="{FORMATTED},{LOOKUP_LOGICAL_NAME}"'
_SPACE_MODES = ("outlook_auto_accept", "outlook_moderated", "crm_managed")


class _Bearer(httpx.Auth):
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


def _credential(settings: Settings) -> AsyncTokenCredential:
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


class DataverseConnector:
    """CrmConnector over the Dataverse Web API, one per process. Directory answers (users, contacts) are
    cached for `directory_ttl_s`."""

    capabilities: CrmCapabilities = CAPABILITIES

    def __init__(
        self,
        org_url: str,
        *,
        token: str | None = None,
        credential: AsyncTokenCredential | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        directory_ttl_s: float = DEFAULT_DIRECTORY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        statuses: StatusMap | None = None,
    ) -> None:
        problems = []
        if not org_url.startswith(("https://", "http://")):
            problems.append(f"DATAVERSE_URL must be an absolute http(s) URL, got {org_url!r}")
        if (token is None) == (credential is None):
            problems.append("the Dataverse connector needs either a static token or a credential")
        if problems:
            raise ConfigurationError(problems)
        self.org_url = org_url.rstrip("/")
        self.api_url = self.org_url + API_PATH
        self._credential = credential
        self._client = httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"},
            timeout=timeout,
            transport=transport,
            auth=_Bearer(f"{self.org_url}/.default", token=token, credential=credential),
        )
        self._ttl, self._clock = directory_ttl_s, clock
        self._contacts: dict[str, tuple[Contact | None, float]] = {}
        self._users: dict[str, tuple[str | None, float]] = {}  # lower-case email -> systemuserid
        self._user_emails: dict[str, str | None] = {}  # systemuserid -> internalemailaddress
        self._me: str | None = None
        self._lock = asyncio.Lock()
        self._series = Series(self)  # recurringappointmentmasters and their instances
        self.statuses = statuses or StatusMap.of({})  # DATAVERSE_STATUS_MAP

    @classmethod
    def from_settings(cls, settings: Settings) -> DataverseConnector:
        """DATAVERSE_URL, with a token for `{DATAVERSE_URL}/.default` from the app registration's client
        credentials (GRAPH_AUTH_MODE's: secret, certificate or managed identity), or the emulator's static
        token with DATAVERSE_AUTH_MODE=emulator; DATAVERSE_STATUS_MAP, the tenant's status pairs."""
        url = (settings.dataverse_url or "").rstrip("/")
        statuses = StatusMap.of(settings.dataverse_statuses)
        if settings.dataverse_auth_mode.strip().lower() == "emulator":
            return cls(url, token=EMULATOR_TOKEN, statuses=statuses)
        return cls(url, credential=_credential(settings), statuses=statuses)

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
        try:
            response = await self._client.request(
                method,
                url,
                params=dict(params) if params else None,
                json=json_body,
                headers=dict(headers or {}),
            )
        except httpx.HTTPError as exc:
            raise translate_error(exc, item_id=item_id) from exc
        if not response.is_success:
            raise translate_error(response, item_id=item_id)
        return response

    @staticmethod
    def _json(response: httpx.Response, item_id: str | None) -> dict[str, Any]:
        return json_object(response, "Dataverse", side=SIDE, item_id=item_id)

    async def _get_json(
        self,
        url: str,
        *,
        item_id: str | None,
        params: Mapping[str, str] | None = None,
        prefer: str = _ANNOTATIONS,
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
                prefer=f"{_ANNOTATIONS},odata.maxpagesize=500",
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

    # -- directory --------------------------------------------------------------------------------------

    async def _whoami(self) -> str:
        if self._me is None:
            data = await self._get_json("WhoAmI", item_id=None, prefer="")
            self._me = str(data.get("UserId") or "").lower()
        return self._me

    async def _last_written_by_us(self, row: Mapping[str, Any]) -> bool:
        return str(row.get("_modifiedby_value") or "").lower() == await self._whoami()

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

    def _fresh(self, cache: Mapping[str, tuple[Any, float]], wanted: Iterable[str]) -> list[str]:
        now = self._clock()
        return [e for e in wanted if e not in cache or cache[e][1] <= now]

    async def find_contacts(self, emails: Iterable[str]) -> dict[str, Contact]:
        """Contacts by lower-case `emailaddress1`, 50 per query; hits and misses cached for the TTL."""
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        async with self._lock:
            missing = self._fresh(self._contacts, wanted)
            until = self._clock() + self._ttl
            rows = await self._lookup(
                "contacts", "emailaddress1", missing, "contactid,fullname,emailaddress1"
            )
            found: dict[str, Contact] = {}
            for row in rows:
                email = str(row.get("emailaddress1") or "").strip().lower()
                if email and row.get("contactid"):
                    found.setdefault(
                        email,
                        Contact(
                            crm_id=str(row["contactid"]), email=email, name=str(row.get("fullname") or "")
                        ),
                    )
            for email in missing:
                self._contacts[email] = (found.get(email), until)
            return {e: c for e in wanted if (c := self._contacts[e][0]) is not None}

    async def _user_ids(self, emails: list[str]) -> dict[str, str]:
        async with self._lock:
            missing = self._fresh(self._users, emails)
            until = self._clock() + self._ttl
            rows = await self._lookup(
                "systemusers", "internalemailaddress", missing, "systemuserid,internalemailaddress"
            )
            found = {
                str(r.get("internalemailaddress") or "").strip().lower(): str(r["systemuserid"])
                for r in rows
                if r.get("systemuserid")
            }
            for email in missing:
                self._users[email] = (found.get(email), until)
            return {e: uid for e in emails if (uid := self._users[e][0]) is not None}

    async def _directory(self, appointment: Appointment) -> Directory:
        emails = [a.email for a in appointment.attendees]
        if appointment.organizer is not None:
            emails.append(appointment.organizer.email)
        emails = list(dict.fromkeys(emails))
        users = await self._user_ids(emails)
        contacts = await self.find_contacts([e for e in emails if e not in users])
        return Directory(users, {e: c.crm_id for e, c in contacts.items()})

    async def _emails_of(self, user_ids: Iterable[str]) -> dict[str, str | None]:
        ids = [i for i in dict.fromkeys(user_ids) if i and i not in self._user_emails]
        if ids:
            valid = [g for i in ids if (g := as_guid(i))]
            rows = await self._lookup(
                "systemusers", "systemuserid", valid, "systemuserid,internalemailaddress", guids=True
            )
            for row in rows:
                email = str(row.get("internalemailaddress") or "").strip().lower()
                self._user_emails[str(row["systemuserid"]).lower()] = email or None
            for i in ids:
                self._user_emails.setdefault(i, None)
        return self._user_emails

    async def list_users(self) -> list[CrmUser]:
        """Enabled system users; the mailbox is `internalemailaddress` for users of the Entra tenant
        (`azureactivedirectoryobjectid` set), none for application users and users without one (S1)."""
        rows = await self._all(
            "systemusers",
            {
                "$select": "systemuserid,fullname,internalemailaddress,"
                "azureactivedirectoryobjectid,applicationid",
                "$filter": "isdisabled eq false",
            },
        )
        users = []
        for r in rows:
            if r.get("applicationid"):
                continue  # an application user (this app's own, among others): no mailbox, no meetings
            email = str(r.get("internalemailaddress") or "").strip().lower()
            mailbox = email if r.get("azureactivedirectoryobjectid") and email else None
            users.append(
                CrmUser(
                    crm_id=str(r["systemuserid"]),
                    email=email,
                    name=str(r.get("fullname") or ""),
                    mailbox=mailbox,
                )
            )
        return users

    async def list_spaces(self) -> list[Space]:
        """Facilities/equipment with their email address as the room mailbox; the management mode is our
        column `msync_managementmode` (outlook_auto_accept when empty)."""
        rows = await self._all("equipments", {"$select": f"equipmentid,name,emailaddress,{SPACE_MODE}"})
        spaces = []
        for r in rows:
            mode = str(r.get(SPACE_MODE) or "outlook_auto_accept")
            if mode not in _SPACE_MODES:
                raise UnprocessableError(
                    f"equipment {r.get('equipmentid')}: {SPACE_MODE} {mode!r} unknown", side=SIDE
                )
            spaces.append(
                Space(
                    crm_id=str(r["equipmentid"]),
                    name=str(r.get("name") or ""),
                    room_mailbox=(str(r["emailaddress"]).lower() if r.get("emailaddress") else None),
                    management_mode=mode,  # type: ignore[arg-type]
                )
            )
        return spaces

    # -- appointments -------------------------------------------------------------------------------------

    @staticmethod
    def _row_query() -> dict[str, str]:
        return {
            "$select": ",".join(APPOINTMENT_COLUMNS),
            "$expand": f"appointment_activity_parties($select={','.join(PARTY_COLUMNS)})",
        }

    async def _row(self, guid: str) -> dict[str, Any] | None:
        try:
            return await self._get_json(f"appointments({guid})", item_id=guid, params=self._row_query())
        except NotFoundError:
            return None

    async def _records(
        self,
        rows: list[dict[str, Any]],
        party_rows: Mapping[str, list[dict[str, Any]]] | None = None,
        unreadable: list[str] | None = None,
    ) -> list[CrmRecord]:
        """The rows as records; a row that cannot be read raises, or with `unreadable` is listed there."""
        me = await self._whoami()
        people = [
            str(r.get(k) or "").lower() for r in rows for k in ("_createdby_value", "_modifiedby_value")
        ]
        emails = await self._emails_of(p for p in people if p and p != me)
        out = []
        for row in rows:
            crm_id = str(row.get("activityid") or "")
            found = party_rows.get(crm_id.lower(), []) if party_rows is not None else None
            parties_of = found if found is not None else row.get("appointment_activity_parties") or []
            created, modified = (
                str(row.get(k) or "").lower() for k in ("_createdby_value", "_modifiedby_value")
            )
            try:
                out.append(
                    record_from_row(
                        row,
                        parties_of,
                        created_by=None if created == me else emails.get(created),
                        updated_by=None if modified == me else emails.get(modified),
                        statuses=self.statuses,
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                if unreadable is not None and crm_id:
                    log.warning("Dataverse appointment %s left to the worker: %s", crm_id, exc)
                    unreadable.append(crm_id)
                    continue
                raise UnprocessableError(
                    f"Dataverse appointment cannot be read: {exc}", side=SIDE, item_id=crm_id or None
                ) from exc
        return out

    async def _record(self, guid: str) -> CrmRecord | None:
        row = await self._row(guid)
        return None if row is None else (await self._records([row]))[0]

    @staticmethod
    def _guid(crm_id: str) -> str:
        guid = as_guid(crm_id)
        if guid is None:  # Dataverse keys are GUIDs: anything else names no record
            raise NotFoundError(
                f"not a Dataverse activityid: {crm_id[:100]!r}", side=SIDE, item_id=crm_id[:100]
            )
        return guid

    async def get_appointment(self, crm_id: str) -> CrmRecord | None:
        """The appointment; a series by its id; an instance of a series as its series or its exception."""
        guid = as_guid(crm_id)
        if guid is None:
            return None
        row = await self._row(guid)
        if row is None:
            return await self._series.get(guid)
        return await self._series.of_instance(row) or (await self._records([row]))[0]

    async def find_by_external_ref(self, external_ref: str) -> CrmRecord | None:
        """I5: the oldest appointment whose `msync_externalref` is exactly `external_ref` (Dataverse compares
        strings without case; the exact match is ours)."""
        query = self._row_query() | {
            "$filter": f"{EXTERNAL_REF} eq {odata_string(external_ref)}",
            "$orderby": "createdon asc,versionnumber asc",
        }
        data = await self._get_json("appointments", item_id=external_ref, params=query)
        rows = [
            r for r in data.get("value") or [] if isinstance(r, dict) and r.get(EXTERNAL_REF) == external_ref
        ]
        if not rows:
            return await self._series.find(external_ref)
        return await self._series.of_instance(rows[0]) or (await self._records(rows[:1]))[0]

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

    async def create_appointment(
        self, appointment: Appointment, *, idempotency_key: str, external_ref: str
    ) -> CrmRecord:
        """Create once: activityid = uuid5(idempotency key), `PATCH` with `If-None-Match: *`; a 412 means the
        first call made it, and the record as it is now is returned. A status other than open is a second
        request (statecode is not valid for create). A series is a recurringappointmentmaster; an exception
        of a series, its instance row (dataverse_series)."""
        if appointment.recurrence is not None:
            return await self._series.create(
                appointment, idempotency_key=idempotency_key, external_ref=external_ref
            )
        if appointment.series_ref and appointment.original_start is not None:
            return await self._series.create_exception(appointment, external_ref=external_ref)
        refuse_unholdable(appointment, item_id=external_ref)
        guid = activity_id(idempotency_key)
        body = columns(appointment, external_ref)
        body["appointment_activity_parties"] = parties(appointment, await self._directory(appointment))
        state, status = state_of(appointment.status, appointment.show_as, self.statuses)
        if state == OPEN:
            body["statuscode"] = status
        try:
            await self._patch(guid, body, if_none_match="*")
        except ConcurrencyError:
            row = await self._row(guid)
            if row is None:
                raise
            if not (state != OPEN and row.get("statecode") == OPEN and await self._last_written_by_us(row)):
                return (await self._records([row]))[0]
            # our first attempt stopped between its two requests, and nobody changed the row since: finish it
            await self._patch(guid, {"statecode": state, "statuscode": status}, if_match=row["@odata.etag"])
        else:
            if state != OPEN:
                await self._patch(guid, {"statecode": state, "statuscode": status}, if_match="*")
        record = await self._record(guid)
        if record is None:
            raise ConcurrencyError(
                "Dataverse appointment vanished right after its creation", side=SIDE, item_id=guid
            )
        return record

    async def update_appointment(
        self, crm_id: str, appointment: Appointment, *, fields: Iterable[str], expected_version: str | None
    ) -> CrmRecord:
        """Write only the columns that differ from the record as it is (W4); with `expected_version`,
        `If-Match` on it. A closed appointment is read-only in Dataverse: a completed one is reopened first
        and completed again after; a cancelled one is written only to un-cancel it, else returned as it is."""
        names = list(dict.fromkeys(fields))
        unknown = sorted(set(names) - _APPOINTMENT_FIELDS)
        if unknown:
            raise UnprocessableError(
                f"not appointment fields: {', '.join(unknown)}", side=SIDE, item_id=crm_id
            )
        guid = self._guid(crm_id)
        row = await self._row(guid)
        if row is None and (master := await self._series.master_row(guid)) is not None:
            return await self._series.update(guid, master, appointment, names, expected_version)
        if row is None:
            raise NotFoundError(f"appointment With Id = {guid} Does Not Exist", side=SIDE, item_id=crm_id)
        current = (await self._records([row]))[0]
        if expected_version is not None and current.version != expected_version:
            raise ConcurrencyError(
                "The version of the existing record doesn't match the RowVersion property provided.",
                side=SIDE,
                item_id=crm_id,
            )
        merged = current.appointment.model_copy(update={f: getattr(appointment, f) for f in names})
        refuse_unholdable(merged, item_id=crm_id)
        payload = {k: v for k, v in columns(merged, None).items() if not same_column(row.get(k), v, k)}
        if {"organizer", "attendees"} & set(names):
            wanted = parties(merged, await self._directory(merged))
            have = row.get("appointment_activity_parties") or []
            if sorted(map(party_key, wanted)) != sorted(map(party_key, have)):
                payload["appointment_activity_parties"] = wanted
        now_state = (int(row.get("statecode") or OPEN), int(row.get("statuscode") or FREE))
        want_state = (
            state_of(merged.status, merged.show_as, self.statuses)
            if {"status", "show_as"} & set(names)
            else now_state
        )
        steps: list[dict[str, Any]] = []
        if not payload and want_state == now_state:
            return current
        if now_state[0] == CANCELED and want_state[0] == CANCELED:
            # A cancelled row is not written unless the write un-cancels it. Reopen, write, cancel again
            # would end at a version our receipt calls ours, so a CRM user's cancel not yet synced would
            # be read back as our echo (D4) and the Outlook meeting left in place. Returned unwritten:
            # the receipt keeps only what we meant to write, and the cancel is read as the change it is.
            log.info("Dataverse appointment %s is cancelled: the write of %s is not applied", guid, names)
            return current
        state_body = {"statecode": want_state[0], "statuscode": want_state[1]}
        if now_state[0] in CLOSED_STATES and payload:
            reopen = want_state if want_state[0] not in CLOSED_STATES else (OPEN, FREE)
            steps += [{"statecode": reopen[0], "statuscode": reopen[1]}, payload]
            if want_state[0] in CLOSED_STATES:
                steps.append(state_body)
        elif want_state[0] in CLOSED_STATES and want_state != now_state:
            steps += ([payload] if payload else []) + [state_body]
        else:
            steps.append(payload | (state_body if want_state != now_state else {}))
        for i, step in enumerate(steps):
            first = i == 0
            await self._patch(guid, step, if_match=(expected_version or "*") if first else "*")
        record = await self._record(guid)
        if record is None:
            raise NotFoundError(f"appointment With Id = {guid} Does Not Exist", side=SIDE, item_id=crm_id)
        return record

    async def cancel_appointment(self, crm_id: str) -> CrmRecord:
        """statecode 2 (Canceled) with the map's cancelled statuscode (4 by default); a cancelled appointment
        is returned unchanged (L4)."""
        guid = self._guid(crm_id)
        current = await self._record(guid)
        if current is None and await self._series.master_row(guid) is not None:
            return await self._series.cancel(guid)
        if current is None:
            raise NotFoundError(f"appointment With Id = {guid} Does Not Exist", side=SIDE, item_id=crm_id)
        if current.appointment.status.value == "cancelled":
            return current
        state, code = self.statuses.cancelled
        await self._patch(guid, {"statecode": state, "statuscode": code}, if_match="*")
        record = await self._record(guid)
        if record is None:
            raise NotFoundError(f"appointment With Id = {guid} Does Not Exist", side=SIDE, item_id=crm_id)
        return record

    async def delete_appointment(self, crm_id: str) -> None:
        """The appointment, or the series with every instance (Dataverse deletes them with it)."""
        guid = self._guid(crm_id)
        try:
            await self._request("DELETE", f"appointments({guid})", item_id=crm_id)
        except NotFoundError:
            if await self._series.master_row(guid) is None:
                raise
            await self._series.delete(guid)

    # -- the change feed --------------------------------------------------------------------------------

    async def list_changed(self, cursor: str | None, *, limit: int = 100) -> ChangedPage:
        """One page of the appointments' change tracking: rows changed (with their parties, one more query
        per page) and `$deletedEntity` ids; once they are read up to now, a page of the series' (deleted
        series). The cursor holds both feeds' next or delta links; an expired delta token (7 days by default)
        starts that feed again with a full read."""
        if limit < 1:
            raise UnprocessableError(f"limit must be at least 1, got {limit}", side=SIDE)
        prefer = f"odata.track-changes,odata.maxpagesize={min(limit, 5000)},{_ANNOTATIONS}"
        link, series_link = feed_links(cursor)
        try:
            data = await self._changes(link, prefer)
        except NotFoundError as exc:
            if link is None or EXPIRED_VERSION_STAMP not in str(exc):
                raise
            log.warning("Dataverse change-tracking token expired; reading every appointment again")
            data = await self._changes(None, prefer)
        rows: list[dict[str, Any]] = []
        deleted: list[str] = []
        for item in data.get("value") or []:
            if not isinstance(item, dict):
                continue
            if str(item.get("@odata.context") or "").endswith("$deletedEntity"):
                deleted.append(str(item.get("id")))
            else:
                rows.append(item)
        party_rows = await self._parties_of([str(r.get("activityid")) for r in rows])
        unreadable: list[str] = []
        records = await self._series.records(rows, party_rows, unreadable)
        next_link = self._own_link(data.get("@odata.nextLink"))
        delta_link = self._own_link(data.get("@odata.deltaLink"))
        new_cursor = next_link or delta_link
        if new_cursor is None:
            raise UnprocessableError(
                "Dataverse change page has neither a next link nor a delta link", side=SIDE
            )
        more = bool(next_link)
        if not more:
            series, gone, series_next, series_delta = await self._series.changes(
                series_link, prefer, unreadable
            )
            known = {r.crm_id.lower() for r in records}
            records += [r for r in series if r.crm_id.lower() not in known]
            deleted += gone
            series_link, more = series_next or series_delta or series_link, bool(series_next)
        return ChangedPage(
            records=tuple(records),
            deleted_ids=tuple(deleted),
            unreadable_ids=tuple(dict.fromkeys(unreadable)),  # a series may come from both feeds
            cursor=feed_cursor(new_cursor, series_link),
            more=more,
        )

    async def _changes(self, cursor: str | None, prefer: str) -> dict[str, Any]:
        if cursor:
            return await self._get_json(self._own_link(cursor) or "", item_id=None, prefer=prefer)
        return await self._get_json(
            "appointments", item_id=None, params={"$select": ",".join(APPOINTMENT_COLUMNS)}, prefer=prefer
        )

    async def _parties_of(self, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {i.lower(): [] for i in ids}
        rows = await self._lookup(
            "activityparties",
            "_activityid_value",
            [g for i in ids if (g := as_guid(i))],
            ",".join(PARTY_COLUMNS),
            guids=True,
        )
        for row in rows:
            out.setdefault(str(row.get("_activityid_value") or "").lower(), []).append(row)
        return out
