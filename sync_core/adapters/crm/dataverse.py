"""DataverseConnector: the CrmConnector port over the Dataverse Web API (/api/data/v9.2), its settings, reads
and writes (create once by a deterministic activityid, updates with If-Match); requests in dataverse_http,
the directory and the change feed beside it. I/O side (docs/connectors/dataverse.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx
from azure.core.credentials_async import AsyncTokenCredential

from sync_core.adapters.crm.dataverse_changes import DataverseChanges
from sync_core.adapters.crm.dataverse_http import Bearer, app_credential
from sync_core.adapters.crm.dataverse_series import Series
from sync_core.adapters.crm.dataverse_status import CANCELED, CLOSED_STATES, FREE, OPEN, StatusMap, state_of
from sync_core.adapters.crm.dataverse_wire import (
    API_PATH,
    APPOINTMENT_COLUMNS,
    CAPABILITIES,
    EXTERNAL_REF,
    PARTY_COLUMNS,
    SIDE,
    activity_id,
    as_guid,
    columns,
    odata_string,
    parties,
    party_key,
    record_from_row,
    refuse_stale,
    refuse_unholdable,
    same_column,
)
from sync_core.domain.model import Appointment, CrmRecord
from sync_core.errors import ConcurrencyError, ConfigurationError, NotFoundError, UnprocessableError
from sync_core.ports.crm import Contact, CrmCapabilities
from sync_core.settings import Settings

log = logging.getLogger(__name__)

EMULATOR_TOKEN = "dev-dataverse-token"
DEFAULT_DIRECTORY_TTL_S = 300.0
_APPOINTMENT_FIELDS = frozenset(Appointment.model_fields)


class DataverseConnector(DataverseChanges):
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
            auth=Bearer(f"{self.org_url}/.default", token=token, credential=credential),
        )
        self._ttl, self._clock = directory_ttl_s, clock
        self._contacts: dict[str, tuple[Contact | None, float]] = {}
        self._users: dict[str, tuple[str | None, float]] = {}  # lower-case email -> systemuserid
        self._user_emails: dict[str, str | None] = {}  # systemuserid -> internalemailaddress
        self._me: str | None = None
        self._lock = asyncio.Lock()
        self._series = Series(self, self)  # recurringappointmentmasters and their instances
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
        return cls(url, credential=app_credential(settings), statuses=statuses)

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
        refuse_stale(current, expected_version, item_id=crm_id)
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
