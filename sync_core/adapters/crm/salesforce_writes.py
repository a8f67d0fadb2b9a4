"""The write paths of SalesforceConnector: create once under a key, update by read-compare-write (Event has no
ETag), cancel, delete, and the invitees in sObject Collections, in one composite call where they fit. I/O side
(the why: docs/connectors/salesforce.md, "Guarantees and how they are met")."""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from sync_core.adapters.crm import salesforce_composite as composite
from sync_core.adapters.crm import salesforce_series as series
from sync_core.adapters.crm.salesforce_composite import Sub
from sync_core.adapters.crm.salesforce_directory import SalesforceDirectory
from sync_core.adapters.crm.salesforce_errors import OPERATOR_HOLD, translate_error
from sync_core.adapters.crm.salesforce_records import SalesforceRecords
from sync_core.adapters.crm.salesforce_wire import (
    EXTERNAL_REF,
    SIDE,
    SYNC_DATA,
    cancelled_by_us,
    event_fields,
    is_id,
    mark_cancelled,
    mark_unresolved,
    parse_time,
    refuse_unholdable,
    relations,
    same_value,
    soql_string,
)
from sync_core.domain.model import Appointment, CrmRecord, Status
from sync_core.errors import (
    ConcurrencyError,
    ConflictError,
    NotFoundError,
    PermanentError,
    UnprocessableError,
)

COLLECTION_MAX = 200  # records per sObject Collections request
_APPOINTMENT_FIELDS = frozenset(Appointment.model_fields)


def create_key(idempotency_key: str) -> str:
    """What the create key field holds: a digest of our key (URL-safe, at most 255 characters)."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()


def _http_date_after(moment: datetime) -> str:
    """`If-Unmodified-Since` for a record last modified at `moment`: the next whole second (HTTP-dates have
    no fractions, and the record must not count as modified after its own version)."""
    seconds = math.floor(moment.timestamp()) + (1 if moment.microsecond else 0)
    return email.utils.formatdate(seconds, usegmt=True)


class SalesforceWrites(SalesforceRecords, SalesforceDirectory):
    """The write paths of SalesforceConnector."""

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
            if record is not None:
                record = await self._first_of_key(record, field, key, item_id=external_ref)
        if record is None:
            raise ConcurrencyError(
                "Salesforce event vanished right after its creation", side=SIDE, item_id=external_ref
            )
        return record

    async def _first_of_key(self, made: CrmRecord, field: str, key: str, *, item_id: str) -> CrmRecord | None:
        """Two creates under one key at once (another worker took our claim, not yet holding a CRM id, for a
        create a crash cut short) both find nothing and both create: the later one always sees the earlier
        and deletes itself, so both return the first Event by (CreatedDate, Id)."""
        rows = await self._query(
            f"SELECT Id, ActivityRecurrence2Id, IsRecurrence2, GroupEventType FROM Event "
            f"WHERE {field} = {soql_string(key)} ORDER BY CreatedDate ASC, Id ASC",
            item_id=item_id,
        )
        rows = [r for r in rows if not series.is_plain_occurrence(r)]  # a series' rows copy its key
        first = str(rows[0]["Id"]) if rows else made.crm_id
        if first == made.crm_id:
            return made
        await self._send("DELETE", f"sobjects/Event/{made.crm_id}", item_id=made.crm_id, ok=(404,))
        return await self._record(first)

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
