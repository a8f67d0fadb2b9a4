"""Event-ID mappings in Table Storage: one row per meeting, plus index rows from each side's ids. I/O side.

Layout (issue 20: one Table request to find a mapped meeting from the item a change names):

- the meeting row: partition `key_of("meeting", K)`, RowKey `meeting`;
- an alias row for the meeting's iCalUId and CRM id, in the partition the meeting would have if it were keyed
  by them (`key_of("meeting", "ical:<uid>")`, `key_of("meeting", "crm:<id>")`), RowKey `alias`, written only
  when that key is not K itself (the iCalUId's once a copy other than the meeting's own joined it). The
  key a change's item suggests (our tag, `ical:<uid>`, the CRM record's `external_ref` or `crm:<id>`) is
  then read with one partition query that returns the meeting row or the alias to it (`lookup`);
- one row per mapped copy in its mailbox's partition (`copies_in`, and `find_by_graph` for a deleted event);
  for a meeting not keyed by its iCalUId (booked from the CRM), a row beside its own copy's row from that
  iCalUId to the meeting (`home_ical_row`, written in the same transaction as the copy row), which is what
  the other copies find it by (`lookup(..., homes=)`) until one joins and the `ical:<uid>` alias is written;
- the decisions about the meeting (E1), in its partition after its row (RowKey `~decision-<inverted time>`):
  the claim and the decision taken before the first external write are one entity group transaction, and
  a decision whose only write is the mapping goes with that save. `lookup` reads the partition below them.

Rows of the earlier layout (an index partition per Graph copy, CRM id and iCalUId) are no longer written;
`find_by_graph`, `find_by_crm` and `find_by_ical` still read them when the new rows do not answer, so
meetings mapped before keep being found on the paths that need those hints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping as Entity
from collections.abc import Sequence
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.core import (
    call,
    create_entity,
    get_entity,
    get_json,
    key_of,
    put_json,
    query,
    replace_if_match,
    upsert,
)
from sync_core.adapters.storage.decisions import decision_entity, decision_key, decision_row
from sync_core.domain.actions import Mapping
from sync_core.ports.stores import DecisionRecord

_MEETING_RK = "meeting"
_ALIAS_RK = "alias"
_INDEX_RK = "index"  # rows of the earlier layout, read as a fallback only
_DECISION_PREFIX = "~decision-"  # sorts after every other row of a meeting's partition
_ICAL_PREFIX = "ical-"  # a row of a mailbox's copy partition naming the meeting of an iCalUId
_ROWS_BELOW = "~"  # the meeting and alias rows: what `lookup` reads, never the decisions


def graph_index_key(mailbox: str, event_id: str) -> str:
    return key_of("graph", mailbox.lower(), event_id)


def mailbox_copies_key(mailbox: str) -> str:
    """The partition listing every copy mapped in one mailbox (one row per event id)."""
    return key_of("copies", mailbox.lower())


def crm_index_key(crm_id: str) -> str:
    return key_of("crm", crm_id)


def ical_index_key(ical_uid: str) -> str:
    return key_of("ical", ical_uid)


def meeting_partition(meeting_key: str) -> str:
    return key_of("meeting", meeting_key)


def alias_keys(mapping: Mapping) -> set[str]:
    """The keys other than its own under which a meeting is looked up in a partition of their own: `crm:<id>`,
    and `ical:<uid>` once a copy other than the meeting's own has joined it (an attendee's or a room's, which
    carry no tag of ours). Until then only the meeting's own calendar holds a copy with that iCalUId, and the
    row beside that copy's row answers (`home_ical_row`): one partition, one transaction with the copy row."""
    keys = set()
    if mapping.ical_uid and any(c.role != "organizer" for c in mapping.copies):
        keys.add("ical:" + mapping.ical_uid)
    if mapping.crm_id:
        keys.add("crm:" + mapping.crm_id)
    keys.discard(mapping.meeting_key)
    return keys


def home_ical_row(mapping: Mapping) -> dict[str, Any] | None:
    """For a meeting not keyed by its iCalUId (one booked from the CRM), a row in its own calendar's copy
    partition from that iCalUId to the meeting: how a copy of it that carries no tag of ours (an attendee's,
    or its own copy read without a verified tag) finds it before an `ical:<uid>` alias row exists."""
    if not mapping.ical_uid or "ical:" + mapping.ical_uid == mapping.meeting_key:
        return None
    home = next((c for c in mapping.copies if c.event_id == mapping.graph_event_id), None) or next(
        (c for c in mapping.copies if c.role == "organizer"), None
    )
    if home is None:
        return None
    return {
        "PartitionKey": mailbox_copies_key(home.mailbox),
        "RowKey": _ICAL_PREFIX + key_of(mapping.ical_uid),
        "MeetingKey": mapping.meeting_key,
        "ICalUid": mapping.ical_uid,
        "EventId": home.event_id,  # so a build before this row reads it as its copy's row again
    }


class MappingStore:
    """Meeting mappings keyed by meeting key (I1), found from either side's id."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    async def get(self, meeting_key: str) -> Mapping | None:
        entity = await get_entity(self._table, meeting_partition(meeting_key), _MEETING_RK)
        return None if entity is None else _mapping(entity)

    async def lookup(self, key: str, *, homes: Sequence[str] = ()) -> tuple[Mapping | None, str | None]:
        """The meeting key `key` is an alias of, else the meeting stored under `key`: one partition query.
        An alias wins over a row of the same partition, as an index row always did: it was written by the
        meeting that claimed this iCalUId or CRM id last. An `ical:<uid>` that finds neither is looked up
        in the copy partitions of `homes` (the calendars that may hold the meeting's own copy)."""
        row, alias = await self._partition(key)
        if alias is not None:
            return None, alias
        if row is None and key.startswith("ical:") and homes:
            return None, await self._home_ical(key.removeprefix("ical:"), homes)
        return (None if row is None else _mapping(row)), None

    async def _home_ical(self, ical_uid: str, homes: Sequence[str]) -> str | None:
        for mailbox in dict.fromkeys(h.lower() for h in homes):
            rk = _ICAL_PREFIX + key_of(ical_uid)
            entity = await get_entity(self._table, mailbox_copies_key(mailbox), rk)
            if entity is not None:
                return str(entity["MeetingKey"])
        return None

    async def _partition(self, key: str) -> tuple[dict[str, Any] | None, str | None]:
        row: dict[str, Any] | None = None
        alias: str | None = None
        flt = "PartitionKey eq @pk and RowKey lt @below"
        async for entity in query(self._table, flt, pk=meeting_partition(key), below=_ROWS_BELOW):
            if entity.get("RowKey") == _MEETING_RK:
                row = entity
            elif entity.get("RowKey") == _ALIAS_RK:
                alias = str(entity["MeetingKey"])
        return row, alias

    async def _key_of(self, key: str, legacy_pk: str) -> str | None:
        row, alias = await self._partition(key)
        if alias is not None:
            return alias
        if row is not None:
            return str(row["MeetingKey"])
        entity = await get_entity(self._table, legacy_pk, _INDEX_RK)
        return None if entity is None else str(entity["MeetingKey"])

    async def find_by_graph(self, mailbox: str, event_id: str) -> str | None:
        entity = await get_entity(self._table, mailbox_copies_key(mailbox), key_of(event_id))
        if entity is None:
            entity = await get_entity(self._table, graph_index_key(mailbox, event_id), _INDEX_RK)
        return None if entity is None else str(entity["MeetingKey"])

    async def find_by_crm(self, crm_id: str) -> str | None:
        return await self._key_of("crm:" + crm_id, crm_index_key(crm_id))

    async def find_by_ical(self, ical_uid: str, *, homes: Sequence[str] = ()) -> str | None:
        """I1: the meeting whose copy carries this iCalUId (attendee and room copies of a meeting we wrote
        carry no tag of ours, only the organizer's iCalUId); `homes` as for `lookup`."""
        if not ical_uid:
            return None
        row, alias = await self._partition("ical:" + ical_uid)
        if alias is not None:
            return alias
        if row is not None:
            return str(row["MeetingKey"])
        found = await self._home_ical(ical_uid, homes) if homes else None
        if found is not None:
            return found
        entity = await get_entity(self._table, ical_index_key(ical_uid), _INDEX_RK)
        return None if entity is None else str(entity["MeetingKey"])

    async def copies_in(self, mailbox: str) -> list[tuple[str, str]]:
        """(event id, meeting key) of every copy ever mapped in this mailbox: one partition query. Hints
        only: the meeting row says whether the copy is still part of a live meeting."""
        pk = mailbox_copies_key(mailbox)
        return [
            (str(e["EventId"]), str(e["MeetingKey"]))
            async for e in query(self._table, "PartitionKey eq @pk", pk=pk)
            if not str(e["RowKey"]).startswith(_ICAL_PREFIX)  # the iCalUId rows beside them (`home_ical_row`)
        ]

    def _entity(self, mapping: Mapping) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": meeting_partition(mapping.meeting_key),
            "RowKey": _MEETING_RK,
            "MeetingKey": mapping.meeting_key,
            "CrmId": mapping.crm_id or "",
            "State": mapping.state,
        }
        put_json(entity, "Data", mapping.model_dump(mode="json", exclude={"etag"}))
        return entity

    async def save(
        self, mapping: Mapping, *, previous: Mapping | None = None, decision: DecisionRecord | None = None
    ) -> Mapping:
        """Create (when `mapping.etag` is None) or replace if unchanged; ConcurrencyError on a lost race.

        Index rows are written first (together), and only those `previous` (the row as stored) lacks: a
        crash after them leaves hints pointing at a meeting the next attempt creates, never one that cannot
        be found. With `decision`, its row goes in the same entity group transaction as the meeting row:
        one request, and both are written or neither (E1 with the I3 claim).
        """
        await self._write_index(mapping, previous)
        entity = self._entity(mapping)
        if decision is None:
            if mapping.etag is None:
                etag = await create_entity(self._table, entity)
            else:
                etag = await replace_if_match(self._table, entity, mapping.etag)
            return mapping.model_copy(update={"etag": etag})
        if decision.meeting_key != mapping.meeting_key:
            raise ValueError(
                f"a decision about {decision.meeting_key} is not kept beside {mapping.meeting_key}"
            )
        row: tuple[Any, ...] = ("create", entity)
        if mapping.etag is not None:
            conditions = {"mode": UpdateMode.REPLACE, "etag": mapping.etag}
            row = ("update", entity, conditions | {"match_condition": MatchConditions.IfNotModified})
        operations = [row, ("create", self._decision(decision))]
        result = await self._transaction(operations, item_id=mapping.meeting_key)
        return mapping.model_copy(update={"etag": str(result[0]["etag"])})

    async def record(self, decision: DecisionRecord) -> None:
        """A decision alone, beside its meeting's row (before the first write of a mapped meeting, E1)."""
        await create_entity(self._table, self._decision(decision))

    async def decisions(self, meeting_key: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The decisions kept beside the meeting's row, newest first: one partition range read."""
        out: list[dict[str, Any]] = []
        flt = "PartitionKey eq @pk and RowKey ge @first"
        async for entity in query(
            self._table, flt, pk=meeting_partition(meeting_key), first=_DECISION_PREFIX
        ):
            out.append(decision_row(entity))
            if len(out) >= limit:
                break
        return out

    @staticmethod
    def _decision(decision: DecisionRecord) -> dict[str, Any]:
        if not decision.meeting_key:
            raise ValueError("a decision about no meeting is kept by item (DecisionLog.record)")
        rk = _DECISION_PREFIX + decision_key(decision.at)
        return decision_entity(decision, meeting_partition(decision.meeting_key), rk)

    async def _write_index(self, mapping: Mapping, previous: Mapping | None) -> None:
        """The index rows `previous` lacks; those of one partition in one entity group transaction (a copy
        row and its meeting's iCalUId row), the partitions at once."""
        rows: list[dict[str, Any]] = []
        for alias in sorted(alias_keys(mapping) - (alias_keys(previous) if previous else set())):
            rows.append(
                {
                    "PartitionKey": meeting_partition(alias),
                    "RowKey": _ALIAS_RK,
                    "MeetingKey": mapping.meeting_key,
                }
            )
        known = {(c.mailbox.lower(), c.event_id) for c in previous.copies} if previous else set()
        for c in mapping.copies:  # the mailbox's list of mapped copies (reconciliation, find_by_graph)
            if (c.mailbox.lower(), c.event_id) not in known:
                row = {"PartitionKey": mailbox_copies_key(c.mailbox), "RowKey": key_of(c.event_id)}
                rows.append(row | {"EventId": c.event_id, "MeetingKey": mapping.meeting_key})
        home = home_ical_row(mapping)
        if home is not None and home != (home_ical_row(previous) if previous else None):
            rows.append(home)
        by_partition: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_partition.setdefault(row["PartitionKey"], []).append(row)
        await asyncio.gather(*(self._upsert_all(group) for group in by_partition.values()))

    async def _upsert_all(self, rows: list[dict[str, Any]]) -> None:
        if len(rows) == 1:
            await upsert(self._table, rows[0])
            return
        for start in range(0, len(rows), 100):  # a transaction holds at most 100 operations
            operations = [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows[start : start + 100]]
            await self._transaction(operations, item_id=str(rows[0]["RowKey"]))

    async def _transaction(self, operations: list[Any], *, item_id: str) -> list[Entity[str, Any]]:
        """One entity group transaction (one partition, every operation or none); the ETags, in order."""
        return await call(lambda: self._table.submit_transaction(operations), item_id=item_id)


def _mapping(entity: dict[str, Any]) -> Mapping:
    return Mapping.model_validate(get_json(entity, "Data") | {"etag": entity["_etag"]})
