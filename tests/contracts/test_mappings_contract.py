"""The Mappings contract, written once (`MappingsContract`) and run against MappingStore on Azurite and
MemoryMappings: everything the worker and the gatherer rely on (I1, I3, ETag conditions, index hints)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables.aio import TableClient

from sync_core.adapters.storage.mappings import MappingStore
from sync_core.domain.actions import GraphCopy, Mapping, Receipt
from sync_core.domain.model import Appointment, Attendee, Person
from sync_core.errors import ConcurrencyError, NotFoundError
from sync_core.ports.stores import DecisionRecord, Mappings
from tests.fakes import MemoryMappings

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
LINDA = "linda@contoso.example"
ROOM = "harbour-room@contoso.example"


def mapping(key: str = "ical:040000008200E00074C5B7101A82E008", **changes: object) -> Mapping:
    appt = Appointment(
        subject="Review",
        body="Agenda",
        start=NOW,
        end=NOW + timedelta(hours=1),
        time_zone="Europe/Paris",
        organizer=Person(email=LINDA),
        attendees=(Attendee(email="bob@fabrikam.example", name="Bob"),),
    )
    data: dict[str, object] = {
        "meeting_key": key,
        "organizer_mailbox": LINDA,
        "graph_event_id": "AAMk/odd+id==",
        "copies": (GraphCopy(mailbox=LINDA, event_id="AAMk/odd+id=="),),
        "snapshot": appt,
        "graph_receipt": Receipt(target_id="AAMk/odd+id==", version="ck1", fingerprint="f1", at=NOW),
        "ical_uid": "040000008200E00074C5B7101A82E008",
    }
    return Mapping.model_validate(data | changes)


class MappingsContract:
    """Behaviour every Mappings store shows. Subclasses provide the `store` fixture."""

    async def test_nothing_is_found_in_an_empty_store(self, store: Mappings) -> None:
        assert await store.get("ical:nothing") is None
        assert await store.find_by_graph(LINDA, "AAMk/odd+id==") is None
        assert await store.find_by_crm("c1") is None
        assert await store.find_by_ical("040000008200E00074C5B7101A82E008") is None
        assert await store.find_by_ical("") is None

    async def test_I3_a_save_without_etag_creates_the_row_and_get_reads_every_field_back(
        self, store: Mappings
    ) -> None:
        full = mapping(
            crm_id="crm/7#?",
            crm_receipt=Receipt(target_id="crm/7#?", version="v1", fingerprint="f2", at=NOW),
            copies=(
                GraphCopy(mailbox=LINDA, event_id="AAMk/odd+id=="),
                GraphCopy(mailbox=ROOM, event_id="R", role="room"),
            ),
            state="cancelled",
        )
        saved = await store.save(full)
        assert saved.etag and saved == full.model_copy(update={"etag": saved.etag})
        assert await store.get(full.meeting_key) == saved

    async def test_I3_a_second_claim_of_the_same_meeting_loses_and_changes_nothing(
        self, store: Mappings
    ) -> None:
        first = await store.save(mapping(crm_id="c1"))
        with pytest.raises(ConcurrencyError):
            await store.save(mapping(crm_id="c2"))
        assert await store.get(first.meeting_key) == first

    async def test_a_save_with_the_current_etag_replaces_the_row_with_a_new_etag(
        self, store: Mappings
    ) -> None:
        first = await store.save(mapping())
        second = await store.save(first.model_copy(update={"crm_id": "c1"}), previous=first)
        assert second.etag and second.etag != first.etag
        assert await store.get(first.meeting_key) == second

    async def test_a_save_with_a_stale_etag_is_refused_and_changes_nothing(self, store: Mappings) -> None:
        first = await store.save(mapping())
        newer = await store.save(first.model_copy(update={"crm_id": "c1"}), previous=first)
        with pytest.raises(ConcurrencyError):
            await store.save(first.model_copy(update={"crm_id": "c2"}), previous=first)
        assert await store.get(first.meeting_key) == newer

    async def test_a_save_with_an_etag_of_a_row_that_does_not_exist_is_not_found(
        self, store: Mappings
    ) -> None:
        first = await store.save(mapping())
        with pytest.raises(NotFoundError):
            await store.save(mapping("ical:other", etag=first.etag))
        assert await store.get("ical:other") is None

    async def test_I1_a_saved_meeting_is_found_by_each_copy_its_crm_id_and_its_ical_uid(
        self, store: Mappings
    ) -> None:
        m = mapping(crm_id="crm/7#?")
        await store.save(m)
        assert await store.find_by_graph(LINDA, "AAMk/odd+id==") == m.meeting_key
        assert await store.find_by_graph(LINDA.upper(), "AAMk/odd+id==") == m.meeting_key  # mailboxes fold
        assert await store.find_by_graph(LINDA, "aamk/odd+id==") is None  # event ids do not
        assert await store.find_by_graph("julie@contoso.example", "AAMk/odd+id==") is None
        assert await store.find_by_crm("crm/7#?") == m.meeting_key
        assert await store.find_by_ical("040000008200E00074C5B7101A82E008") == m.meeting_key

    async def test_index_rows_follow_copies_and_ids_added_later(self, store: Mappings) -> None:
        stored = await store.save(mapping())
        room = GraphCopy(mailbox=ROOM, event_id="ROOM/id", role="room")
        grown = stored.model_copy(update={"copies": (*stored.copies, room), "crm_id": "c9"})
        await store.save(grown, previous=stored)
        assert await store.find_by_graph(ROOM, "ROOM/id") == stored.meeting_key
        assert await store.find_by_crm("c9") == stored.meeting_key
        assert await store.find_by_graph(LINDA, "AAMk/odd+id==") == stored.meeting_key

    async def test_index_rows_of_a_removed_copy_stay_as_hints(self, store: Mappings) -> None:
        room = GraphCopy(mailbox=ROOM, event_id="ROOM/id", role="room")
        stored = await store.save(mapping(copies=(*mapping().copies, room)))
        shrunk = await store.save(stored.model_copy(update={"copies": stored.copies[:1]}), previous=stored)
        assert await store.find_by_graph(ROOM, "ROOM/id") == stored.meeting_key  # the row says it is gone
        assert await store.get(stored.meeting_key) == shrunk

    async def test_only_index_rows_that_previous_lacks_are_written(self, store: Mappings) -> None:
        stored = await store.save(mapping())
        claimed = stored.model_copy(update={"crm_id": "c9"})  # `previous` says c9 is indexed: it is not
        await store.save(stored.model_copy(update={"crm_id": "c9"}), previous=claimed)
        assert await store.find_by_crm("c9") is None

    async def test_index_rows_are_written_before_the_row_even_when_the_save_loses(
        self, store: Mappings
    ) -> None:
        first = await store.save(mapping())
        await store.save(first.model_copy(update={"crm_id": "c1"}), previous=first)
        with pytest.raises(ConcurrencyError):
            await store.save(first.model_copy(update={"crm_id": "c2"}), previous=first)
        assert await store.find_by_crm("c2") == first.meeting_key  # a hint to a meeting that does not say c2

    async def test_an_index_row_points_at_the_meeting_that_wrote_it_last(self, store: Mappings) -> None:
        await store.save(mapping("crm:c1", crm_id="c1", copies=(), ical_uid=None))
        await store.save(mapping(crm_id="c1"))
        assert await store.find_by_crm("c1") == mapping().meeting_key

    async def test_I1_a_crm_booking_is_found_by_its_ical_uid_beside_its_own_copy_until_another_joins(
        self, store: Mappings
    ) -> None:
        uid, julie = "040000008200E00074C5B7101A82E008", "julie@contoso.example"
        stored = await store.save(mapping("crm:c1", crm_id="c1"))  # keyed by its CRM id, its own copy only
        assert await store.lookup("ical:" + uid) == (None, None)  # no `ical:` alias row yet (issue 20)
        assert await store.lookup("ical:" + uid, homes=[julie]) == (None, None)
        assert await store.lookup("ical:" + uid, homes=[julie, LINDA.upper()]) == (None, "crm:c1")
        assert await store.find_by_ical(uid) is None
        assert await store.find_by_ical(uid, homes=[LINDA]) == "crm:c1"
        joined = (*stored.copies, GraphCopy(mailbox=julie, event_id="J", role="attendee"))
        await store.save(stored.model_copy(update={"copies": joined}), previous=stored)
        assert await store.lookup("ical:" + uid) == (None, "crm:c1"), "an invitee's copy joined: the alias"
        assert await store.find_by_ical(uid) == "crm:c1"
        assert await store.find_by_graph(julie, "J") == "crm:c1"

    async def test_E1_I3_a_claim_and_its_decision_are_written_together_or_not_at_all(
        self, store: Mappings
    ) -> None:
        key = mapping().meeting_key
        claimed = await store.save(mapping(), decision=decision(key, "S4", minutes=1))
        with pytest.raises(ConcurrencyError):  # the claim lost: its decision is not on record either
            await store.save(mapping(crm_id="c2"), decision=decision(key, "LOST", minutes=2))
        saved = await store.save(
            claimed.model_copy(update={"crm_id": "c1"}), previous=claimed, decision=decision(key, "D3", 3)
        )
        with pytest.raises(ConcurrencyError):  # a stale ETag: neither the row nor the decision
            await store.save(claimed, previous=claimed, decision=decision(key, "LOST", minutes=4))
        assert await store.get(key) == saved
        await store.record(decision(key, "D1", minutes=5))
        rows = await store.decisions(key)
        assert [r["rule"] for r in rows] == ["D1", "D3", "S4"], "newest first, the lost ones absent"
        assert rows[0]["versions"] == {"crm_version": "v5"} and rows[0]["actions"] == [{"kind": "update_crm"}]
        assert [r["rule"] for r in await store.decisions(key, limit=1)] == ["D1"]
        assert await store.decisions("ical:other") == []
        found, alias = await store.lookup(key)  # the mapping read does not carry the decisions along
        assert found == saved and alias is None


def decision(key: str, rule: str, minutes: int) -> DecisionRecord:
    return DecisionRecord(
        side="m365",
        item_id="AAMk/odd+id==",
        at=NOW + timedelta(minutes=minutes),
        meeting_key=key,
        rule=rule,
        reason=f"{rule} applied",
        actions=[{"kind": "update_crm"}],
        correlation_id=f"c{minutes}",
        versions={"crm_version": f"v{minutes}"},
        outcome="applied",
    )


class TestMappingStoreOnAzurite(MappingsContract):
    @pytest.fixture
    def store(self, table: TableClient) -> Mappings:
        return MappingStore(table)


class TestMemoryMappings(MappingsContract):
    @pytest.fixture
    def store(self) -> Mappings:
        return MemoryMappings()
