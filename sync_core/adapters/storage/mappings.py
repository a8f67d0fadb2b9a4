"""Event-ID mappings in Table Storage: one row per meeting, plus index rows from each side's ids. I/O side."""

from __future__ import annotations

from typing import Any

from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.core import (
    create_entity,
    get_entity,
    get_json,
    key_of,
    put_json,
    query,
    replace_if_match,
    upsert,
)
from sync_core.domain.actions import Mapping

_MEETING_RK = "meeting"
_INDEX_RK = "index"


def graph_index_key(mailbox: str, event_id: str) -> str:
    return key_of("graph", mailbox.lower(), event_id)


def mailbox_copies_key(mailbox: str) -> str:
    """The partition listing every copy mapped in one mailbox (one row per event id)."""
    return key_of("copies", mailbox.lower())


def crm_index_key(crm_id: str) -> str:
    return key_of("crm", crm_id)


def ical_index_key(ical_uid: str) -> str:
    return key_of("ical", ical_uid)


class MappingStore:
    """Meeting mappings keyed by meeting key (I1), found from either side's id."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def get(self, meeting_key: str) -> Mapping | None:
        entity = await get_entity(self._table, key_of("meeting", meeting_key), _MEETING_RK)
        if entity is None:
            return None
        data = get_json(entity, "Data")
        return Mapping.model_validate(data | {"etag": entity["_etag"]})

    async def find_by_graph(self, mailbox: str, event_id: str) -> str | None:
        entity = await get_entity(self._table, graph_index_key(mailbox, event_id), _INDEX_RK)
        return None if entity is None else str(entity["MeetingKey"])

    async def find_by_crm(self, crm_id: str) -> str | None:
        entity = await get_entity(self._table, crm_index_key(crm_id), _INDEX_RK)
        return None if entity is None else str(entity["MeetingKey"])

    async def find_by_ical(self, ical_uid: str) -> str | None:
        """I1: the meeting whose copy carries this iCalUId (attendee and room copies of a meeting we wrote
        carry no tag of ours, only the organizer's iCalUId)."""
        if not ical_uid:
            return None
        entity = await get_entity(self._table, ical_index_key(ical_uid), _INDEX_RK)
        return None if entity is None else str(entity["MeetingKey"])

    async def copies_in(self, mailbox: str) -> list[tuple[str, str]]:
        """(event id, meeting key) of every copy ever mapped in this mailbox: one partition query. Hints
        only: the meeting row says whether the copy is still part of a live meeting."""
        pk = mailbox_copies_key(mailbox)
        return [
            (str(e["EventId"]), str(e["MeetingKey"]))
            async for e in query(self._table, "PartitionKey eq @pk", pk=pk)
        ]

    def _entity(self, mapping: Mapping) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": key_of("meeting", mapping.meeting_key),
            "RowKey": _MEETING_RK,
            "MeetingKey": mapping.meeting_key,
            "CrmId": mapping.crm_id or "",
            "State": mapping.state,
        }
        put_json(entity, "Data", mapping.model_dump(mode="json", exclude={"etag"}))
        return entity

    async def save(self, mapping: Mapping, *, previous: Mapping | None = None) -> Mapping:
        """Create (when `mapping.etag` is None) or replace if unchanged; ConcurrencyError on a lost race.

        Index rows are written first, and only those `previous` (the row as stored) lacks: a crash after
        them leaves hints pointing at a meeting the next attempt creates, never one that cannot be found.
        """
        await self._write_index(mapping, previous)
        entity = self._entity(mapping)
        if mapping.etag is None:
            etag = await create_entity(self._table, entity)
        else:
            etag = await replace_if_match(self._table, entity, mapping.etag)
        return mapping.model_copy(update={"etag": etag})

    async def _write_index(self, mapping: Mapping, previous: Mapping | None) -> None:
        for pk in _index_keys(mapping) - (_index_keys(previous) if previous else set()):
            await upsert(
                self._table, {"PartitionKey": pk, "RowKey": _INDEX_RK, "MeetingKey": mapping.meeting_key}
            )
        known = {(c.mailbox.lower(), c.event_id) for c in previous.copies} if previous else set()
        for c in mapping.copies:  # the mailbox's list of mapped copies (reconciliation, copies_in)
            if (c.mailbox.lower(), c.event_id) not in known:
                row = {"PartitionKey": mailbox_copies_key(c.mailbox), "RowKey": key_of(c.event_id)}
                await upsert(self._table, row | {"EventId": c.event_id, "MeetingKey": mapping.meeting_key})


def _index_keys(mapping: Mapping) -> set[str]:
    keys = {graph_index_key(c.mailbox, c.event_id) for c in mapping.copies}
    if mapping.crm_id:
        keys.add(crm_index_key(mapping.crm_id))
    if mapping.ical_uid:
        keys.add(ical_index_key(mapping.ical_uid))
    return keys
