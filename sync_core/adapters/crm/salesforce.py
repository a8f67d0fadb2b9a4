"""SalesforceConnector: the CrmConnector port over the Salesforce REST API. I/O side (httpx). The wire mapping
and the error map live in salesforce_wire; nothing here reads a status code but the 401 that refreshes the
token once.

Auth: OAuth 2.0 client credentials of an External Client App whose run-as user is an API-only integration
user (`POST {instance}/services/oauth2/token`); `INVALID_SESSION_ID` gets a new token once, then fails.

Economy: the 24-hour API allocation is the scarce resource, so an event is read with its invitees and the
emails of the people they name in one SOQL query (relationship fields and the `EventRelations` subquery),
invitees are written in one sObject Collections request, a write, its invitees and the read back go in one
composite call, all or none (salesforce_composite), and an unchanged field is never sent (W4).

Create-once: the key (a hash of our idempotency key) is looked up with `/queryAll`, so a record a CRM user
deleted since is refused rather than made twice; then created by upsert on the configured External ID field
(`PATCH /sobjects/Event/{field}/{key}`: concurrent creates converge on one record, and several matches
answer 300, an operator hold) or, without one, by `POST` under our mapping claim (I3).

Concurrency: Salesforce has no ETag on Event (only Account has one), so an update is read-compare-write: the
record is read, its SystemModstamp compared with the expected version, and the write carries
`If-Unmodified-Since` (weak validation, whole seconds) so that an edit landing after that second is still
refused with 412. An edit landing in the same second as the version we hold is not detected.

Change feed: a keyset over (SystemModstamp, Id) through `/queryAll`, so deleted rows (IsDeleted = true, in
the Recycle Bin for 15 days) arrive in the same pages as changed ones. A cursor older than that may have
lost deletions: the feed starts again from a full read.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from sync_core.adapters.crm import salesforce_composite as composite
from sync_core.adapters.crm import salesforce_series as series
from sync_core.adapters.crm.salesforce_composite import Sub
from sync_core.adapters.crm.salesforce_wire import (
    CAPABILITIES,
    EVENT_FIELDS,
    EXTERNAL_REF,
    OPERATOR_HOLD,
    SIDE,
    SYNC_DATA,
    FieldProfile,
    api_usage,
    cancelled_by_us,
    error_body,
    event_fields,
    is_id,
    mark_cancelled,
    mark_unresolved,
    parse_time,
    record_from_row,
    refuse_unholdable,
    relations,
    same_value,
    soql_string,
    soql_time,
    translate_error,
)
from sync_core.domain.model import Appointment, CrmRecord, Status
from sync_core.errors import (
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PermanentError,
    UnprocessableError,
)
from sync_core.ports.crm import ChangedPage, Contact, CrmCapabilities, CrmUser, Space
from sync_core.settings import Settings

log = logging.getLogger(__name__)

EMULATOR_CLIENT_ID = "dev-salesforce-client"
EMULATOR_CLIENT_SECRET = "dev-salesforce-secret"
BATCH = 100  # literals per `IN (...)`
COLLECTION_MAX = 200  # records per sObject Collections request
DEFAULT_DIRECTORY_TTL_S = 300.0
DELETED_VISIBLE = timedelta(days=15)  # Recycle Bin / getDeleted window
USAGE_WARNING = 0.8
_MAX_PAGES = 10_000
_APPOINTMENT_FIELDS = frozenset(Appointment.model_fields)
_SPACE_MODES = ("outlook_auto_accept", "outlook_moderated", "crm_managed")
_RELATION_SUBQUERY = (
    "(SELECT Id, RelationId, Relation.Email, Status, Response, IsInvitee FROM EventRelations)"
)
_PEOPLE = ("Owner.Email", "CreatedBy.Email", "LastModifiedBy.Email")


def create_key(idempotency_key: str) -> str:
    """What the create key field holds: a digest of our key (URL-safe, at most 255 characters)."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()


def _http_date_after(moment: datetime) -> str:
    """`If-Unmodified-Since` for a record last modified at `moment`: the next whole second (HTTP-dates have
    no fractions, and the record must not count as modified after its own version)."""
    seconds = math.floor(moment.timestamp()) + (1 if moment.microsecond else 0)
    return email.utils.formatdate(seconds, usegmt=True)


class _Session:
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


class SalesforceConnector:
    """CrmConnector over the Salesforce REST API, one per process. Directory answers (users, contacts) are
    cached for `directory_ttl_s`."""

    capabilities: CrmCapabilities = CAPABILITIES

    def __init__(
        self,
        instance_url: str,
        *,
        client_id: str,
        client_secret: str,
        api_version: str = "v62.0",
        profile: FieldProfile | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        directory_ttl_s: float = DEFAULT_DIRECTORY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        problems = []
        if not instance_url.startswith(("https://", "http://")):
            problems.append(f"SALESFORCE_INSTANCE_URL must be an absolute http(s) URL, got {instance_url!r}")
        if not client_id or not client_secret:
            problems.append("the Salesforce connector needs a client id and a client secret")
        if problems:
            raise ConfigurationError(problems)
        self.instance_url = instance_url.rstrip("/")
        self.data_path = f"/services/data/{api_version}"
        self.profile = profile or FieldProfile()
        self._client = httpx.AsyncClient(
            base_url=self.instance_url,
            headers={"Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )
        self._session = _Session(
            self._client, f"{self.instance_url}/services/oauth2/token", client_id, client_secret
        )
        self._ttl, self._clock, self._now = directory_ttl_s, clock, wall_clock or _system_now
        self._people: dict[str, tuple[str | None, float]] = {}  # lower-case email -> User/Contact/Lead id
        self._lock = asyncio.Lock()
        self.api_usage: tuple[int, int] | None = None  # the last Sforce-Limit-Info: (used, allocation)
        self.calls = 0  # requests sent, for `bench economy`

    @classmethod
    def from_settings(
        cls, settings: Settings, wall_clock: Callable[[], datetime] | None = None
    ) -> SalesforceConnector:
        """SALESFORCE_INSTANCE_URL with the External Client App's client credentials, or the emulator's with
        SALESFORCE_AUTH_MODE=emulator; `wall_clock` dates the change-feed cursor (the container's clock)."""
        emulator = settings.salesforce_auth_mode.strip().lower() == "emulator"
        profile = FieldProfile.of(
            settings.salesforce_field_profile.strip().lower(),
            settings.salesforce_email_fields,
            (settings.salesforce_external_id_field or "").strip() or None,
            status_field=settings.salesforce_status_field.strip(),
            statuses=settings.salesforce_statuses,
            cancel_by_delete=settings.salesforce_cancel.strip().lower() == "delete",
        )
        return cls(
            (settings.salesforce_instance_url or "").strip(),
            client_id=EMULATOR_CLIENT_ID if emulator else settings.salesforce_client_id or "",
            client_secret=EMULATOR_CLIENT_SECRET if emulator else settings.salesforce_client_secret or "",
            api_version=settings.salesforce_api_version.strip(),
            profile=profile,
            wall_clock=wall_clock or _system_now,
        )

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
            try:
                self.calls += 1
                response = await self._client.request(
                    method,
                    url,
                    params=dict(params) if params else None,
                    json=json_body,
                    headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                )
            except httpx.HTTPError as exc:
                raise translate_error(exc, item_id=item_id) from exc
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

    # -- directory --------------------------------------------------------------------------------------

    @staticmethod
    def _in(values: list[str]) -> str:
        return "(" + ", ".join(soql_string(v) for v in values) + ")"

    def _fresh(self, wanted: Iterable[str]) -> list[str]:
        now = self._clock()
        return [e for e in wanted if e not in self._people or self._people[e][1] <= now]

    async def _contact_rows(self, emails: list[str]) -> list[dict[str, Any]]:
        fields = self.profile.contact_email_fields
        rows: list[dict[str, Any]] = []
        for start in range(0, len(emails), BATCH):
            batch = self._in(emails[start : start + BATCH])
            where = " OR ".join(f"{f} IN {batch}" for f in fields)
            rows += await self._query(f"SELECT Id, Name, {', '.join(fields)} FROM Contact WHERE {where}")
        return rows

    async def _directory(self, appointment: Appointment) -> dict[str, str]:
        """RelationIds by lower-case email: active users first, then contacts (on the profile's email fields),
        then unconverted leads; hits and misses cached for the TTL."""
        emails = list(dict.fromkeys(a.email for a in appointment.attendees))
        if appointment.organizer is not None:
            emails.append(appointment.organizer.email)
        async with self._lock:
            missing = self._fresh(dict.fromkeys(emails))
            until = self._clock() + self._ttl
            found: dict[str, str] = {}
            for start in range(0, len(missing), BATCH):
                batch = self._in(missing[start : start + BATCH])
                for r in await self._query(
                    f"SELECT Id, Email FROM User WHERE IsActive = true AND Email IN {batch}"
                ):
                    found.setdefault(str(r.get("Email") or "").lower(), str(r["Id"]))
            rest = [e for e in missing if e not in found]
            for row in await self._contact_rows(rest) if rest else []:
                for field in self.profile.contact_email_fields:
                    found.setdefault(str(row.get(field) or "").lower(), str(row["Id"]))
            rest = [e for e in rest if e not in found]
            for start in range(0, len(rest), BATCH):
                batch = self._in(rest[start : start + BATCH])
                soql = f"SELECT Id, Email FROM Lead WHERE IsConverted = false AND Email IN {batch}"
                for r in await self._query(soql):
                    found.setdefault(str(r.get("Email") or "").lower(), str(r["Id"]))
            for email in missing:
                self._people[email] = (found.get(email), until)
            return {e: rid for e in emails if (rid := self._people[e][0]) is not None}

    async def find_contacts(self, emails: Iterable[str]) -> dict[str, Contact]:
        """Contacts whose Email (or, with the Practifi profile, a configured alternate email field) is one
        of `emails`, by lower-case email."""
        wanted = list(dict.fromkeys(e.strip().lower() for e in emails if e and e.strip()))
        out: dict[str, Contact] = {}
        for row in await self._contact_rows(wanted) if wanted else []:
            for field in self.profile.contact_email_fields:
                email = str(row.get(field) or "").strip().lower()
                if email in wanted and email not in out:
                    out[email] = Contact(crm_id=str(row["Id"]), email=email, name=str(row.get("Name") or ""))
        return {e: out[e] for e in wanted if e in out}

    async def list_users(self) -> list[CrmUser]:
        """Active users but the integration user; the mailbox is the Email of users who sign in through
        Entra single sign-on (FederationIdentifier set), none for the others (S1)."""
        me = await self._me()
        rows = await self._query(
            "SELECT Id, Name, Email, FederationIdentifier FROM User WHERE IsActive = true"
        )
        users = []
        for r in rows:
            if r.get("Id") == me:
                continue
            email = str(r.get("Email") or "").strip().lower()
            mailbox = email if r.get("FederationIdentifier") and email else None
            users.append(
                CrmUser(crm_id=str(r["Id"]), email=email, name=str(r.get("Name") or ""), mailbox=mailbox)
            )
        return users

    async def list_spaces(self) -> list[Space]:
        """Our custom object `msync_Space__c`: a room's name, mailbox and management mode (Salesforce's own
        resource calendars carry no mailbox)."""
        rows = await self._query(
            "SELECT Id, Name, msync_RoomMailbox__c, msync_ManagementMode__c FROM msync_Space__c"
        )
        spaces = []
        for r in rows:
            mode = str(r.get("msync_ManagementMode__c") or "outlook_auto_accept")
            if mode not in _SPACE_MODES:
                raise UnprocessableError(
                    f"msync_Space__c {r.get('Id')}: management mode {mode!r} unknown", side=SIDE
                )
            mailbox = r.get("msync_RoomMailbox__c")
            spaces.append(
                Space(
                    crm_id=str(r["Id"]),
                    name=str(r.get("Name") or ""),
                    room_mailbox=str(mailbox).lower() if mailbox else None,
                    management_mode=mode,  # type: ignore[arg-type]
                )
            )
        return spaces

    # -- events -----------------------------------------------------------------------------------------

    def _select(self) -> str:
        fields = (*EVENT_FIELDS, self.profile.status_field, *_PEOPLE)
        return f"SELECT {', '.join(fields)}, {_RELATION_SUBQUERY} FROM Event"

    async def _records(
        self, rows: list[dict[str, Any]], unreadable: list[str] | None = None
    ) -> list[CrmRecord]:
        """The rows as records; a row that cannot be read raises, or with `unreadable` is listed there."""
        me = await self._me()
        out = []
        for row in rows:
            relation_rows = ((row.get("EventRelations") or {}).get("records")) or []
            emails: dict[str, str | None] = {}
            for key, rel in (
                ("OwnerId", "Owner"),
                ("CreatedById", "CreatedBy"),
                ("LastModifiedById", "LastModifiedBy"),
            ):
                emails[str(row.get(key) or "")] = _email(row.get(rel))
            for rel in relation_rows:
                emails[str(rel.get("RelationId") or "")] = _email(rel.get("Relation"))
            cancelled = await series.cancelled(self, row) if series.is_series_row(row) else None
            try:
                try:
                    record = record_from_row(
                        row, relation_rows, emails, me=me, cancelled=cancelled, profile=self.profile
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise UnprocessableError(
                        f"Salesforce event cannot be read: {exc}",
                        side=SIDE,
                        item_id=str(row.get("Id") or "") or None,
                    ) from exc
            except UnprocessableError as exc:
                if unreadable is None or not row.get("Id"):
                    raise
                log.warning("Salesforce event %s left to the worker: %s", row["Id"], exc.message)
                unreadable.append(str(row["Id"]))
                continue
            out.append(record)
        return out

    async def _row(self, crm_id: str, *, cancelled: bool = False) -> dict[str, Any] | None:
        """The live row; with `cancelled`, also a row we deleted to cancel it (through `/queryAll`)."""
        soql = f"{self._select()} WHERE Id = {soql_string(crm_id)}"
        rows = await self._query(soql, deleted=cancelled, item_id=crm_id)
        rows = [r for r in rows if not r.get("IsDeleted") or cancelled_by_us(r)]
        return rows[0] if rows else None

    async def _record(self, crm_id: str, *, cancelled: bool = False) -> CrmRecord | None:
        row = await self._row(crm_id, cancelled=cancelled)
        return None if row is None else (await self._records([row]))[0]

    async def get_appointment(self, crm_id: str) -> CrmRecord | None:
        """The record; one we deleted to cancel it (SALESFORCE_CANCEL=delete) reads as cancelled, one a
        Salesforce user deleted as None."""
        return await self._record(crm_id, cancelled=True) if is_id(crm_id) else None

    async def find_by_external_ref(self, external_ref: str) -> CrmRecord | None:
        """I5: the oldest event whose msync_ExternalRef__c is exactly `external_ref` (SOQL compares without
        case; the exact match is ours)."""
        soql = (
            f"{self._select()} WHERE {EXTERNAL_REF} = {soql_string(external_ref)} "
            "ORDER BY CreatedDate ASC, Id ASC"
        )
        rows = [
            r
            for r in await self._query(soql, item_id=external_ref)
            if r.get(EXTERNAL_REF) == external_ref and not series.is_plain_occurrence(r)
        ]
        return (await self._records(rows[:1]))[0] if rows else None

    async def create_appointment(
        self, appointment: Appointment, *, idempotency_key: str, external_ref: str
    ) -> CrmRecord:
        """Create once under a key derived from `idempotency_key`: found (alive) → the record as it is now;
        found deleted → ConflictError; several → an operator hold (PermanentError); else created, by upsert on
        the External ID field when one is configured."""
        refuse_unholdable(appointment, item_id=external_ref)
        self.profile.status_value(appointment.status, item_id=external_ref)  # a status the org cannot hold
        field, key = self.profile.create_key_field, create_key(idempotency_key)
        existing = await self._query(
            f"SELECT Id, IsDeleted, ActivityRecurrence2Id, IsRecurrence2, GroupEventType, {SYNC_DATA} "
            f"FROM Event WHERE {field} = {soql_string(key)} ORDER BY CreatedDate ASC",
            deleted=True,
            item_id=external_ref,
        )
        existing = [r for r in existing if not series.is_plain_occurrence(r)]  # copies of a series' fields
        alive = [r for r in existing if not r.get("IsDeleted")]
        if len(alive) > 1:
            raise PermanentError(f"{OPERATOR_HOLD} ({field} = {key})", side=SIDE, item_id=external_ref)
        if alive:
            record = await self._record(str(alive[0]["Id"]))
            if record is not None:
                return record
        if existing:
            raise ConflictError(
                "the Salesforce event this create made was deleted since; it is not made again",
                side=SIDE,
                item_id=str(existing[0]["Id"]),
            )
        if appointment.series_ref is not None and appointment.original_start is not None:
            occurrence = (appointment.series_ref, appointment.original_start)
            keys = {EXTERNAL_REF: external_ref, field: key}
            return await self._exception(appointment, occurrence, keys=keys)
        directory = await self._directory(appointment)
        organizer = appointment.organizer.email if appointment.organizer is not None else None
        owner = directory.get(organizer or "")
        body = event_fields(
            appointment,
            owner_id=owner if owner and owner.startswith("005") else None,
            profile=self.profile,
        )
        wanted = relations(appointment, directory)
        body[SYNC_DATA] = mark_unresolved(body[SYNC_DATA], self._unresolved(appointment, directory))
        body[EXTERNAL_REF] = external_ref
        upsert = f"sobjects/Event/{field}/{quote(key, safe='')}"
        if self.profile.external_id and not wanted:  # the upsert and its read back: one call
            record = await self._commit(
                [Sub("PATCH", upsert, "event", body)], "@{event.id}", item_id=external_ref
            )
        elif self.profile.external_id:
            # Alone: a concurrent create that made the record first (`created` false) adds the invitees, so
            # ours are sent only when this upsert created it; then the invitees and the read back, one call.
            response = await self._send("PATCH", upsert, item_id=external_ref, json_body=body, ok=(300,))
            if response.status_code == 300:
                raise translate_error(response, item_id=external_ref)
            created = self._json(response, external_ref)
            crm_id = str(created["id"])
            adding = list(wanted.values()) if created.get("created", True) else []
            record = await self._commit(self._relation_subs(crm_id, add=adding), crm_id, item_id=external_ref)
        else:  # under our mapping claim: the create, its invitees and the read back, all or none, one call
            body[field] = key
            create = Sub("POST", "sobjects/Event/", "event", body)
            invitees = self._relation_subs("@{event.id}", add=list(wanted.values()))
            if len(invitees) < composite.MAX_QUERIES_AND_COLLECTIONS:
                record = await self._commit([create, *invitees], "@{event.id}", item_id=external_ref)
            else:  # above 800 invitees: the create alone, then its invitees and the read back
                made = await self._send("POST", create.url, item_id=external_ref, json_body=body)
                crm_id = str(self._json(made, external_ref)["id"])
                invitees = self._relation_subs(crm_id, add=list(wanted.values()))
                record = await self._commit(invitees, crm_id, item_id=external_ref)
        if record is None:
            raise ConcurrencyError(
                "Salesforce event vanished right after its creation", side=SIDE, item_id=external_ref
            )
        return record

    async def _exception(
        self, appointment: Appointment, occurrence: tuple[str, datetime], *, keys: dict[str, str]
    ) -> CrmRecord:
        """An exception is its occurrence row (series meeting key, original start), edited: our keys first (a
        retry finds the row by them, or as the occurrence it still is), then what differs, as an update."""
        crm_id = await series.occurrence_for(self, *occurrence, item_id=keys[EXTERNAL_REF])
        await self._send("PATCH", f"sobjects/Event/{crm_id}", item_id=crm_id, json_body=keys)
        row = await self._row(crm_id)
        writes = await self._changes(crm_id, row, appointment, people=True, guard=False) if row else []
        record = await self._commit(writes, crm_id, item_id=crm_id)
        if record is None:
            raise ConcurrencyError(
                "Salesforce occurrence vanished while it was made an exception", side=SIDE, item_id=crm_id
            )
        return record

    @staticmethod
    def _unresolved(appointment: Appointment, directory: Mapping[str, str]) -> list[str]:
        return [a.email for a in appointment.attendees if a.email not in directory]

    @staticmethod
    def _relation_subs(
        event_id: str,
        *,
        add: Sequence[dict[str, Any]] = (),
        change: Sequence[dict[str, Any]] = (),
        remove: Sequence[str] = (),
    ) -> list[Sub]:
        """Invitees in sObject Collections requests (200 a request): one subrequest for many EventRelation
        rows; `event_id` may be a reference (`@{event.id}`) to an Event made in the same composite call."""
        subs = []
        for n, start in enumerate(range(0, len(add), COLLECTION_MAX)):
            records = [
                {"attributes": {"type": "EventRelation"}, "EventId": event_id} | r
                for r in add[start : start + COLLECTION_MAX]
            ]
            body = {"allOrNone": True, "records": records}
            subs.append(Sub("POST", "composite/sobjects", f"add{n}", body))
        for n, start in enumerate(range(0, len(change), COLLECTION_MAX)):
            records = [
                {"attributes": {"type": "EventRelation"}} | r for r in change[start : start + COLLECTION_MAX]
            ]
            body = {"allOrNone": True, "records": records}
            subs.append(Sub("PATCH", "composite/sobjects", f"change{n}", body))
        for n, start in enumerate(range(0, len(remove), COLLECTION_MAX)):
            ids = ",".join(remove[start : start + COLLECTION_MAX])
            subs.append(Sub("DELETE", f"composite/sobjects?ids={ids}&allOrNone=true", f"remove{n}"))
        return subs

    async def _commit(
        self, subs: Sequence[Sub], crm_id: str, *, item_id: str, cancelled: bool = False, read: bool = True
    ) -> CrmRecord | None:
        """The writes, then the record read back (unless not `read`): in one composite call, all or none, when
        they fit in one (at most 4 invitee requests beside the read back); else one request each, in order."""
        if read and not subs:
            return await self._record(crm_id, cancelled=cancelled)
        where = f"{self._select()} WHERE Id = {soql_string(crm_id)}"
        back = [composite.query(where, ref="record", deleted=cancelled)] if read else []
        if len(subs) + len(back) > 1 and composite.fits([*subs, *back]):
            answers = await composite.send(self, [*subs, *back], item_id=item_id)
            if not read:
                return None
            page = answers["record"]
            rows = (
                [r for r in (page.get("records") or []) if isinstance(r, dict)]
                if isinstance(page, dict)
                else []
            )
            rows = [r for r in rows if not r.get("IsDeleted") or cancelled_by_us(r)]
            return (await self._records(rows[:1]))[0] if rows else None
        if "@{" in crm_id:
            raise AssertionError("a reference needs the composite call")  # creates that fit use references
        for sub in subs:
            response = await self._send(
                sub.method, sub.url, item_id=item_id, json_body=sub.body, headers=sub.headers
            )
            if sub.url.startswith("composite/sobjects"):
                self._collection_ok(response, crm_id)
        return await self._record(crm_id, cancelled=cancelled) if read else None

    def _collection_ok(self, response: httpx.Response, event_id: str) -> None:
        results = self._json(response, event_id)
        failed = (
            [r for r in results if isinstance(r, dict) and not r.get("success")]
            if isinstance(results, list)
            else []
        )
        if failed:
            errors = failed[0].get("errors") or [{}]
            code, message = str(errors[0].get("statusCode") or ""), str(errors[0].get("message") or "")
            raise UnprocessableError(
                f"Salesforce refused an invitee of the event: {code}: {message}", side=SIDE, item_id=event_id
            )

    async def update_appointment(
        self, crm_id: str, appointment: Appointment, *, fields: Iterable[str], expected_version: str | None
    ) -> CrmRecord:
        """Read-compare-write (Event has no ETag): the record's SystemModstamp must be `expected_version`, and
        the write carries If-Unmodified-Since. Only the fields that differ are sent (W4)."""
        names = list(dict.fromkeys(fields))
        unknown = sorted(set(names) - _APPOINTMENT_FIELDS)
        if unknown:
            raise UnprocessableError(
                f"not appointment fields: {', '.join(unknown)}", side=SIDE, item_id=crm_id
            )
        row = await self._row(crm_id) if is_id(crm_id) else None
        if row is None:
            raise NotFoundError("The requested resource does not exist", side=SIDE, item_id=crm_id)
        current = (await self._records([row]))[0]
        if expected_version is not None and current.version != expected_version:
            raise ConcurrencyError(
                f"the Salesforce event changed since version {expected_version} (now {current.version})",
                side=SIDE,
                item_id=crm_id,
            )
        merged = current.appointment.model_copy(update={f: getattr(appointment, f) for f in names})
        refuse_unholdable(merged, item_id=crm_id)
        self.profile.status_value(merged.status, item_id=crm_id)
        if (current.appointment.recurrence is None) != (merged.recurrence is None):
            raise UnprocessableError(
                "Salesforce connector: an event becomes a series, or a series a single event, only by a new "
                "record (Salesforce recreates every occurrence row)",
                side=SIDE,
                item_id=crm_id,
            )
        writes = await self._changes(
            crm_id,
            row,
            merged,
            people="attendees" in names or "organizer" in names,
            guard=expected_version is not None,
        )
        if series.is_series_row(row):  # after the guarded write: the series' sidecar keeps them first
            await self._commit(writes, crm_id, item_id=crm_id, read=False)
            await series.cancel(
                self, row, set(merged.cancelled_occurrences) - set(current.appointment.cancelled_occurrences)
            )
            record = await self._record(crm_id)
        else:  # the write, its invitees and the read back: one call
            record = await self._commit(writes, crm_id, item_id=crm_id)
        if record is None:
            raise NotFoundError("The requested resource does not exist", side=SIDE, item_id=crm_id)
        return record

    async def _changes(
        self, crm_id: str, row: Mapping[str, Any], merged: Appointment, *, people: bool, guard: bool
    ) -> list[Sub]:
        """The requests that make the row `merged`: the fields that differ (W4), guarded by
        If-Unmodified-Since, and the invitees added, changed and removed."""
        writes: list[Sub] = []
        directory = await self._directory(merged) if people else {}
        wanted = event_fields(merged, owner_id=None, profile=self.profile)
        have_rel = {
            str(r.get("RelationId")): r
            for r in ((row.get("EventRelations") or {}).get("records") or [])
            if r.get("IsInvitee") is not False
        }
        if people:
            wanted[SYNC_DATA] = mark_unresolved(wanted[SYNC_DATA], self._unresolved(merged, directory))
        else:  # the invitees stay as they are: keep their unresolved flags
            wanted[SYNC_DATA] = mark_unresolved(
                wanted[SYNC_DATA],
                [
                    e
                    for e, p in (json.loads(row.get(SYNC_DATA) or "{}").get("people") or {}).items()
                    if p.get("unresolved")
                ],
            )
        payload = {k: v for k, v in wanted.items() if not same_value(row.get(k), v, k)}
        if payload:
            headers = {}
            modified = parse_time(row.get("LastModifiedDate"))
            if guard and modified is not None:
                headers["If-Unmodified-Since"] = _http_date_after(modified)
            writes.append(Sub("PATCH", f"sobjects/Event/{crm_id}", "event", payload, headers))
        if people:
            want_rel = relations(merged, directory)
            add = [r for rid, r in want_rel.items() if rid not in have_rel]
            change = [
                {"Id": have_rel[rid]["Id"], "Status": r["Status"]}
                for rid, r in want_rel.items()
                if rid in have_rel and have_rel[rid].get("Status") != r["Status"]
            ]
            remove = [str(r["Id"]) for rid, r in have_rel.items() if rid not in want_rel]
            writes += self._relation_subs(crm_id, add=add, change=change, remove=remove)
        return writes

    async def cancel_appointment(self, crm_id: str) -> CrmRecord:
        """Salesforce has no status, so cancel (L4) is the policy's: the status field's cancelled value, or
        (SALESFORCE_CANCEL=delete) our mark in the sidecar, then the Event deleted to the Recycle Bin, where
        it still reads as cancelled. A cancelled event is returned unchanged."""
        row = await self._row(crm_id, cancelled=True) if is_id(crm_id) else None
        if row is None:
            raise NotFoundError("The requested resource does not exist", side=SIDE, item_id=crm_id)
        current = (await self._records([row]))[0]
        if current.appointment.status is Status.CANCELLED:
            return current
        url = f"sobjects/Event/{crm_id}"
        if self.profile.cancel_by_delete:  # the mark, the deletion and the read back: one call
            mark = {SYNC_DATA: mark_cancelled(row.get(SYNC_DATA))}
            writes = [Sub("PATCH", url, "mark", mark), Sub("DELETE", url, "event")]
        else:
            value = self.profile.status_value(Status.CANCELLED, item_id=crm_id)
            writes = [Sub("PATCH", url, "event", {self.profile.status_field: value})]
        record = await self._commit(writes, crm_id, item_id=crm_id, cancelled=True)
        if record is None:
            raise NotFoundError("The requested resource does not exist", side=SIDE, item_id=crm_id)
        return record

    async def delete_appointment(self, crm_id: str) -> None:
        if not is_id(crm_id):
            raise NotFoundError(
                f"not a Salesforce record id: {crm_id[:100]!r}", side=SIDE, item_id=crm_id[:100]
            )
        await self._send("DELETE", f"sobjects/Event/{crm_id}", item_id=crm_id)

    # -- the change feed --------------------------------------------------------------------------------

    async def list_changed(self, cursor: str | None, *, limit: int = 100) -> ChangedPage:
        """One page of events changed or deleted after the cursor, oldest SystemModstamp first, through
        `/queryAll` (deleted rows carry IsDeleted = true). The cursor is the last (SystemModstamp, Id) read
        and when it was made; a cursor older than the 15 days deleted rows stay visible starts a full read."""
        if limit < 1:
            raise UnprocessableError(f"limit must be at least 1, got {limit}", side=SIDE)
        position = _read_cursor(cursor)
        now = self._now()
        if position is not None and now - position[2] > DELETED_VISIBLE:
            log.warning("Salesforce change cursor older than %s: reading every event again", DELETED_VISIBLE)
            position = None
        where = ""
        if position is not None:
            stamp, last_id = soql_time(position[0]), soql_string(position[1])
            where = f" WHERE (SystemModstamp > {stamp} OR (SystemModstamp = {stamp} AND Id > {last_id}))"
        soql = f"{self._select()}{where} ORDER BY SystemModstamp ASC, Id ASC LIMIT {min(limit, 2000) + 1}"
        rows = await self._query(soql, deleted=True)
        more = len(rows) > limit
        rows = rows[:limit]
        # An occurrence row changed or deleted is news of its series (a cancelled occurrence), read whole
        plain = [r for r in rows if series.is_plain_occurrence(r)]
        own = [r for r in rows if not series.is_plain_occurrence(r)]
        live = [r for r in own if not r.get("IsDeleted") or cancelled_by_us(r)]  # ours read as cancelled
        keys = {str(r["ActivityRecurrence2Id"]) for r in plain} - {
            str(r.get("ActivityRecurrence2Id")) for r in live if series.is_series_row(r)
        }
        for key in sorted(keys):
            where = f"ActivityRecurrence2Id = {soql_string(key)} AND GroupEventType = '3'"
            live += await self._query(f"{self._select()} WHERE {where}")
        deleted = tuple(
            str(r["Id"])
            for r in own
            if r.get("IsDeleted") and not cancelled_by_us(r) and position is not None
        )
        unreadable: list[str] = []
        records = await self._records(live, unreadable)
        if rows:
            last = rows[-1]
            stamp_at = parse_time(last.get("SystemModstamp")) or now
            new_cursor = _write_cursor(stamp_at, str(last["Id"]), now)
        elif position is not None:
            new_cursor = _write_cursor(position[0], position[1], now)
        else:
            new_cursor = _write_cursor(datetime(1970, 1, 1, tzinfo=UTC), "", now)
        return ChangedPage(
            records=tuple(records),
            deleted_ids=deleted,
            unreadable_ids=tuple(unreadable),
            cursor=new_cursor,
            more=more,
        )


def _system_now() -> datetime:
    return datetime.now(UTC)


def _email(related: Any) -> str | None:
    if isinstance(related, dict) and related.get("Email"):
        return str(related["Email"]).strip().lower()
    return None


def _write_cursor(stamp: datetime, last_id: str, made: datetime) -> str:
    data = {"v": 1, "t": soql_time(stamp), "id": last_id, "at": soql_time(made)}
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def _read_cursor(cursor: str | None) -> tuple[datetime, str, datetime] | None:
    if not cursor:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        stamp, made = parse_time(data["t"]), parse_time(data["at"])
        if data.get("v") != 1 or stamp is None or made is None:
            raise ValueError("unknown cursor version")
        return stamp, str(data["id"]), made
    except (ValueError, KeyError, TypeError) as exc:
        raise UnprocessableError(f"not a Salesforce change cursor: {cursor[:80]!r}", side=SIDE) from exc
