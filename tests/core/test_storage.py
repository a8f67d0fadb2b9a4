"""Mapping store, decision log and failures ledger against real Azurite: claims, ETags, chunking (I3)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from azure.data.tables.aio import TableServiceClient

from sync_core.adapters.storage.decisions import DecisionLog
from sync_core.adapters.storage.failures import FailureLedger
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.domain.actions import GraphCopy, Mapping
from sync_core.domain.model import Appointment
from sync_core.errors import ConcurrencyError, UnprocessableError

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.fixture
async def tables(storage_connection_string: str, unique_name: str) -> AsyncIterator[dict[str, object]]:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    names = {kind: f"{kind}{unique_name}" for kind in ("Mappings", "Decisions", "Failures")}
    clients = {}
    for kind, name in names.items():
        await service.create_table(name)
        clients[kind] = service.get_table_client(name)
    yield clients
    for c in clients.values():
        await c.close()  # type: ignore[attr-defined]
    await service.close()


def _mapping(key: str = "ical:ABC") -> Mapping:
    appt = Appointment(subject="Review", start=NOW, end=NOW.replace(hour=13))
    return Mapping(
        meeting_key=key,
        copies=(GraphCopy(mailbox="adele@contoso.example", event_id="AAMk/odd+id=="),),
        graph_event_id="AAMk/odd+id==",
        organizer_mailbox="adele@contoso.example",
        snapshot=appt,
    )


async def test_I3_the_first_save_claims_the_row_and_a_second_claim_loses(tables: dict[str, object]) -> None:
    store = MappingStore(tables["Mappings"])  # type: ignore[arg-type]
    saved = await store.save(_mapping())
    assert saved.etag
    with pytest.raises(ConcurrencyError):
        await store.save(_mapping())  # same key, no etag: a create that must lose


async def test_a_stale_etag_cannot_overwrite_a_newer_mapping(tables: dict[str, object]) -> None:
    store = MappingStore(tables["Mappings"])  # type: ignore[arg-type]
    first = await store.save(_mapping())
    newer = await store.save(first.model_copy(update={"crm_id": "crm-1"}))
    with pytest.raises(ConcurrencyError):
        await store.save(first.model_copy(update={"crm_id": "crm-2"}))
    assert (await store.get("ical:ABC")) == newer


async def test_mappings_are_found_from_either_side_and_survive_ids_with_key_forbidden_characters(
    tables: dict[str, object],
) -> None:
    store = MappingStore(tables["Mappings"])  # type: ignore[arg-type]
    saved = await store.save(_mapping().model_copy(update={"crm_id": "crm/7#?"}))
    assert await store.find_by_graph("ADELE@contoso.example", "AAMk/odd+id==") == "ical:ABC"
    assert await store.find_by_crm("crm/7#?") == "ical:ABC"
    assert (
        await store.find_by_graph("adele@contoso.example", "aamk/odd+id==") is None
    )  # ids are case-sensitive
    assert (await store.get("ical:ABC")) == saved


async def test_a_large_snapshot_is_split_over_several_properties(tables: dict[str, object]) -> None:
    store = MappingStore(tables["Mappings"])  # type: ignore[arg-type]
    big = _mapping()
    assert big.snapshot is not None
    big = big.model_copy(update={"snapshot": big.snapshot.model_copy(update={"body": "x" * 200_000})})
    await store.save(big)
    loaded = await store.get("ical:ABC")
    assert loaded is not None and loaded.snapshot is not None
    assert len(loaded.snapshot.body) == 200_000


async def test_E1_decisions_are_listed_newest_first_for_the_item(tables: dict[str, object]) -> None:
    log = DecisionLog(tables["Decisions"])  # type: ignore[arg-type]
    for minute, rule in ((1, "S2"), (2, "D4")):
        await log.record(
            side="m365",
            item_id="AAMk/odd+id==",
            at=NOW.replace(minute=minute),
            meeting_key="ical:ABC",
            rule=rule,
            reason=f"because {rule}",
            actions=[{"kind": "skip", "rule": rule}],
            correlation_id="c1",
            versions={"graph_change_key": "k"},
            outcome="no-op",
        )
    rows = await log.for_item("m365", "AAMk/odd+id==")
    assert [r["rule"] for r in rows] == ["D4", "S2"]
    assert rows[0]["actions"] == [{"kind": "skip", "rule": "D4"}]


async def test_the_failures_ledger_counts_attempts_per_message(tables: dict[str, object]) -> None:
    ledger = FailureLedger(tables["Failures"])  # type: ignore[arg-type]
    err = UnprocessableError("bad", side="graph", mailbox="m", item_id="i")
    for n in (1, 2):
        await ledger.record(
            body='{"x":1}', message_id="m1", dequeue_count=n, error=err, step="decode", permanent=True, at=NOW
        )
    row = await ledger.for_body('{"x":1}')
    assert row is not None
    assert (row["Attempts"], row["ErrorClass"], row["Mailbox"]) == (2, "UnprocessableError", "m")


async def test_a_save_with_the_stored_row_indexes_only_what_is_new_and_still_finds_it(
    tables: dict[str, object],
) -> None:
    store = MappingStore(tables["Mappings"])  # type: ignore[arg-type]
    stored = await store.save(_mapping())
    room = GraphCopy(mailbox="harbour-room@contoso.example", event_id="ROOM/id", role="room")
    grown = stored.model_copy(update={"copies": (*stored.copies, room), "crm_id": "crm-9"})
    await store.save(grown, previous=stored)
    assert await store.find_by_graph("harbour-room@contoso.example", "ROOM/id") == "ical:ABC"
    assert await store.find_by_crm("crm-9") == "ical:ABC"
    assert await store.find_by_graph("adele@contoso.example", "AAMk/odd+id==") == "ical:ABC"


async def test_I1_a_mailboxs_copy_list_holds_its_copies_only_not_the_ical_rows_beside_them(
    tables: dict[str, object],
) -> None:
    store = MappingStore(tables["Mappings"])  # type: ignore[arg-type]
    booked = _mapping("crm:c1").model_copy(update={"crm_id": "c1", "ical_uid": "UID-1"})
    await store.save(booked)  # its copy row and its iCalUId row: one transaction in adele's partition
    assert await store.find_by_ical("UID-1", homes=["adele@contoso.example"]) == "crm:c1"
    assert await store.copies_in("ADELE@contoso.example") == [("AAMk/odd+id==", "crm:c1")]
