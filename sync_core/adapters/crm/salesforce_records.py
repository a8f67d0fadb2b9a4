"""Event reads for SalesforceConnector: the SOQL select (an event with its invitees and their emails in one
query) and rows assembled into records. I/O side, through the request layer."""

from __future__ import annotations

import logging
from typing import Any

from sync_core.adapters.crm import salesforce_series as series
from sync_core.adapters.crm.salesforce_http import SalesforceHttp
from sync_core.adapters.crm.salesforce_wire import (
    EVENT_FIELDS,
    EXTERNAL_REF,
    SIDE,
    FieldProfile,
    cancelled_by_us,
    is_id,
    soql_string,
)
from sync_core.adapters.crm.salesforce_wire_read import record_from_row
from sync_core.domain.model import CrmRecord
from sync_core.errors import UnprocessableError

log = logging.getLogger(__name__)

_RELATION_SUBQUERY = (
    "(SELECT Id, RelationId, Relation.Email, Status, Response, IsInvitee FROM EventRelations)"
)
_PEOPLE = ("Owner.Email", "CreatedBy.Email", "LastModifiedBy.Email")


class SalesforceRecords(SalesforceHttp):
    """Event reads of SalesforceConnector (which sets `profile`)."""

    profile: FieldProfile

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


def _email(related: Any) -> str | None:
    if isinstance(related, dict) and related.get("Email"):
        return str(related["Email"]).strip().lower()
    return None
