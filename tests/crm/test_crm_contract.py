"""The CRM contract, written once (`CrmConnectorContract`) and run against every implementation.

RestCrmConnector against the CRM emulator, and tests.fakes.MemoryCrm (the state machine's CRM). Another
implementation joins by subclassing the contract and providing the `connector` and `backend` fixtures
(vdirsyncer's StorageTests pattern).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest

from devstack.crm_emulator import CrmEmulator
from sync_core.domain.model import Appointment, Attendee, Person, Status
from sync_core.errors import ConcurrencyError, ConflictError, NotFoundError
from sync_core.ports.crm import CrmConnector
from tests.fakes import MemoryCrm

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def make_appointment(**changes: Any) -> Appointment:
    data: dict[str, Any] = {
        "subject": "Quarterly review",
        "body": "Agenda: numbers.",
        "start": T0,
        "end": T0 + timedelta(hours=1),
        "time_zone": "W. Europe Standard Time",
        "organizer": Person(email="alice@contoso.example", name="Alice"),
        "attendees": (Attendee(email="bob@fabrikam.example", name="Bob"),),
        "categories": ("Customer",),
        "reminder_minutes": 15,
    }
    return Appointment.model_validate(data | changes)


class CrmBackend(Protocol):
    """What the contract needs to arrange the CRM's side: a directory, and edits made by CRM users."""

    def seed(self, *, users: Any = (), contacts: Any = (), spaces: Any = ()) -> None: ...

    def user_create(
        self, appointment: Any, *, created_by: str | None = None, external_ref: str | None = None
    ) -> dict[str, Any]: ...

    def user_update(self, crm_id: str, **fields: Any) -> dict[str, Any]: ...

    def user_delete(self, crm_id: str) -> None: ...


class CrmConnectorContract:
    """Behaviour every CrmConnector shows. Subclasses provide `connector` and `backend` fixtures."""

    async def test_create_returns_the_record_and_get_reads_it_back(self, connector: CrmConnector) -> None:
        appt = make_appointment()
        created = await connector.create_appointment(appt, idempotency_key="k-1", external_ref="mtg-1")
        assert created.appointment == appt
        assert created.external_ref == "mtg-1"
        assert created.crm_id and created.version
        assert await connector.get_appointment(created.crm_id) == created

    async def test_a_record_made_by_a_crm_user_says_who_created_it(
        self, connector: CrmConnector, backend: CrmBackend
    ) -> None:
        made = backend.user_create(make_appointment(), created_by="carol@contoso.example")
        record = await connector.get_appointment(made["id"])
        assert record is not None and record.created_by == "carol@contoso.example"
        ours = await connector.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
        assert ours.created_by is None

    async def test_get_of_an_unknown_id_is_none(self, connector: CrmConnector) -> None:
        assert await connector.get_appointment("no-such-id") is None

    async def test_I5_find_by_external_ref_gives_the_record_linked_to_a_meeting_key(
        self, connector: CrmConnector, backend: CrmBackend
    ) -> None:
        key = "ical:040000008200E00074C5B7101A82E0080000000010ABCDEF"
        linked = backend.user_create(make_appointment(subject="Linked by a CRM user"), external_ref=key)
        backend.user_create(make_appointment(subject="Other"), external_ref=key + "-other")
        backend.user_create(make_appointment(subject="Unlinked"))
        found = await connector.find_by_external_ref(key)
        assert found is not None and found.crm_id == linked["id"]
        assert found.external_ref == key and found.appointment.subject == "Linked by a CRM user"
        assert found == await connector.get_appointment(linked["id"])
        assert await connector.find_by_external_ref("ical:040000008200E00074C5B7101A82E00800") is None
        assert await connector.find_by_external_ref(key.lower()) is None  # exact, not case-folded

    async def test_I5_find_by_external_ref_gives_the_oldest_of_several_and_never_a_deleted_one(
        self, connector: CrmConnector, backend: CrmBackend
    ) -> None:
        key = "ical:shared|with a bar & an ampersand"
        first = await connector.create_appointment(make_appointment(), idempotency_key="k1", external_ref=key)
        second = await connector.create_appointment(
            make_appointment(), idempotency_key="k2", external_ref=key
        )
        assert await connector.find_by_external_ref(key) == first
        backend.user_delete(first.crm_id)
        assert await connector.find_by_external_ref(key) == second
        backend.user_delete(second.crm_id)
        assert await connector.find_by_external_ref(key) is None

    async def test_I3_the_same_idempotency_key_returns_the_first_record_and_creates_no_second(
        self, connector: CrmConnector
    ) -> None:
        first = await connector.create_appointment(
            make_appointment(), idempotency_key="k-2", external_ref="m"
        )
        retry = await connector.create_appointment(
            make_appointment(subject="changed on retry"), idempotency_key="k-2", external_ref="m"
        )
        assert retry == first
        other = await connector.create_appointment(
            make_appointment(), idempotency_key="k-3", external_ref="m2"
        )
        assert other.crm_id != first.crm_id
        page = await connector.list_changed(None)
        assert sorted(r.crm_id for r in page.records) == sorted([first.crm_id, other.crm_id])

    async def test_I3_a_retried_create_returns_the_record_as_it_is_now(
        self, connector: CrmConnector, backend: CrmBackend
    ) -> None:
        first = await connector.create_appointment(
            make_appointment(), idempotency_key="k-4", external_ref="m"
        )
        backend.user_update(first.crm_id, subject="edited in the CRM since")
        retry = await connector.create_appointment(
            make_appointment(), idempotency_key="k-4", external_ref="m"
        )
        assert retry.crm_id == first.crm_id and retry.appointment.subject == "edited in the CRM since"
        assert retry == await connector.get_appointment(first.crm_id) and retry.version != first.version

    async def test_I3_a_retried_create_of_a_record_deleted_since_is_refused(
        self, connector: CrmConnector, backend: CrmBackend
    ) -> None:
        first = await connector.create_appointment(
            make_appointment(), idempotency_key="k-5", external_ref="m"
        )
        backend.user_delete(first.crm_id)
        with pytest.raises(ConflictError):
            await connector.create_appointment(make_appointment(), idempotency_key="k-5", external_ref="m")

    async def test_update_changes_only_the_given_fields(self, connector: CrmConnector) -> None:
        created = await connector.create_appointment(
            make_appointment(), idempotency_key="k", external_ref="m"
        )
        wanted = make_appointment(subject="New subject", body="ignored because not in fields")
        updated = await connector.update_appointment(
            created.crm_id, wanted, fields=["subject"], expected_version=None
        )
        assert updated.appointment.subject == "New subject"
        assert updated.appointment.body == created.appointment.body
        assert updated.version != created.version

    async def test_update_with_the_current_version_applies(self, connector: CrmConnector) -> None:
        created = await connector.create_appointment(
            make_appointment(), idempotency_key="k", external_ref="m"
        )
        moved = make_appointment(start=T0 + timedelta(days=1), end=T0 + timedelta(days=1, hours=1))
        updated = await connector.update_appointment(
            created.crm_id, moved, fields=["start", "end"], expected_version=created.version
        )
        assert (updated.appointment.start, updated.appointment.end) == (moved.start, moved.end)

    async def test_update_with_a_stale_version_raises_concurrency_error_and_changes_nothing(
        self, connector: CrmConnector, backend: CrmBackend
    ) -> None:
        created = await connector.create_appointment(
            make_appointment(), idempotency_key="k", external_ref="m"
        )
        backend.user_update(created.crm_id, body="edited in the CRM meanwhile")
        with pytest.raises(ConcurrencyError) as caught:
            await connector.update_appointment(
                created.crm_id,
                make_appointment(subject="mine"),
                fields=["subject"],
                expected_version=created.version,
            )
        assert caught.value.side == "crm" and caught.value.item_id == created.crm_id
        current = await connector.get_appointment(created.crm_id)
        assert current is not None and current.appointment.subject == created.appointment.subject

    async def test_update_without_version_applies_over_a_concurrent_edit(
        self, connector: CrmConnector, backend: CrmBackend
    ) -> None:
        created = await connector.create_appointment(
            make_appointment(), idempotency_key="k", external_ref="m"
        )
        backend.user_update(created.crm_id, body="edited in the CRM meanwhile")
        updated = await connector.update_appointment(
            created.crm_id, make_appointment(subject="mine"), fields=["subject"], expected_version=None
        )
        assert updated.appointment.subject == "mine"
        assert updated.appointment.body == "edited in the CRM meanwhile"

    async def test_W4_an_update_that_changes_nothing_keeps_the_version(self, connector: CrmConnector) -> None:
        created = await connector.create_appointment(
            make_appointment(), idempotency_key="k", external_ref="m"
        )
        same = await connector.update_appointment(
            created.crm_id, created.appointment, fields=["subject", "body"], expected_version=created.version
        )
        assert same.version == created.version

    async def test_update_of_an_unknown_id_raises_not_found(self, connector: CrmConnector) -> None:
        with pytest.raises(NotFoundError):
            await connector.update_appointment(
                "gone", make_appointment(), fields=["subject"], expected_version=None
            )

    async def test_L4_cancel_sets_status_cancelled_and_cancelling_again_changes_nothing(
        self, connector: CrmConnector
    ) -> None:
        created = await connector.create_appointment(
            make_appointment(), idempotency_key="k", external_ref="m"
        )
        cancelled = await connector.cancel_appointment(created.crm_id)
        assert cancelled.appointment.status is Status.CANCELLED
        assert cancelled.version != created.version
        again = await connector.cancel_appointment(created.crm_id)
        assert again.version == cancelled.version

    async def test_delete_removes_the_record_and_deleting_again_is_not_found(
        self, connector: CrmConnector
    ) -> None:
        created = await connector.create_appointment(
            make_appointment(), idempotency_key="k", external_ref="m"
        )
        await connector.delete_appointment(created.crm_id)
        assert await connector.get_appointment(created.crm_id) is None
        with pytest.raises(NotFoundError):
            await connector.delete_appointment(created.crm_id)

    async def test_list_changed_pages_through_every_record_with_cursors(
        self, connector: CrmConnector
    ) -> None:
        ids = [
            (
                await connector.create_appointment(
                    make_appointment(), idempotency_key=f"k{i}", external_ref=f"m{i}"
                )
            ).crm_id
            for i in range(7)
        ]
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await connector.list_changed(cursor, limit=3)
            pages += 1
            assert len(page.records) <= 3
            seen += [r.crm_id for r in page.records]
            cursor = page.cursor
            if not page.more:
                break
        assert seen == ids and pages == 3
        quiet = await connector.list_changed(cursor, limit=3)
        assert quiet.records == () and quiet.deleted_ids == () and not quiet.more

    async def test_list_changed_after_a_cursor_has_only_later_changes_and_deletions(
        self, connector: CrmConnector, backend: CrmBackend
    ) -> None:
        a = await connector.create_appointment(make_appointment(), idempotency_key="a", external_ref="a")
        b = await connector.create_appointment(make_appointment(), idempotency_key="b", external_ref="b")
        c = await connector.create_appointment(make_appointment(), idempotency_key="c", external_ref="c")
        cursor = (await connector.list_changed(None)).cursor
        backend.user_update(a.crm_id, subject="edited twice")
        backend.user_update(a.crm_id, subject="edited twice, last")
        backend.user_delete(b.crm_id)
        page = await connector.list_changed(cursor)
        assert [(r.crm_id, r.appointment.subject) for r in page.records] == [(a.crm_id, "edited twice, last")]
        assert page.deleted_ids == (b.crm_id,)
        assert c.crm_id not in {r.crm_id for r in page.records}

    @pytest.fixture
    def ids(self) -> dict[str, str]:
        """The directory ids the tests seed (a CRM with its own id shape overrides them)."""
        return {name: name for name in ("c1", "u1", "u2", "s1", "s2")}

    async def test_find_contacts_matches_emails_case_insensitively_and_omits_unknown_ones(
        self, connector: CrmConnector, backend: CrmBackend, ids: dict[str, str]
    ) -> None:
        backend.seed(contacts=[{"id": ids["c1"], "email": "Bob@Fabrikam.example", "name": "Bob"}])
        found = await connector.find_contacts(["BOB@fabrikam.example", "nobody@fabrikam.example"])
        assert list(found) == ["bob@fabrikam.example"]
        assert found["bob@fabrikam.example"].crm_id == ids["c1"]

    async def test_S1_list_users_gives_each_user_with_the_mailbox(
        self, connector: CrmConnector, backend: CrmBackend, ids: dict[str, str]
    ) -> None:
        backend.seed(
            users=[
                {
                    "id": ids["u1"],
                    "email": "alice@contoso.example",
                    "name": "Alice",
                    "mailbox": "alice@contoso.example",
                },
                {"id": ids["u2"], "email": "carol@contoso.example", "name": "Carol", "mailbox": None},
            ]
        )
        users = {u.crm_id: u for u in await connector.list_users()}
        assert users[ids["u1"]].mailbox == "alice@contoso.example"
        assert users[ids["u2"]].mailbox is None and users[ids["u2"]].name == "Carol"
        assert len(users) == 2  # only the CRM's users: not the account the connector acts as

    async def test_M1_list_spaces_gives_room_mailbox_and_management_mode(
        self, connector: CrmConnector, backend: CrmBackend, ids: dict[str, str]
    ) -> None:
        backend.seed(
            spaces=[
                {
                    "id": ids["s1"],
                    "name": "Hall A",
                    "room_mailbox": "hall-a@contoso.example",
                    "management_mode": "crm_managed",
                },
                {"id": ids["s2"], "name": "Room 2", "room_mailbox": "room2@contoso.example"},
            ]
        )
        spaces = {s.crm_id: s for s in await connector.list_spaces()}
        assert spaces[ids["s1"]].management_mode == "crm_managed"
        assert spaces[ids["s1"]].room_mailbox == "hall-a@contoso.example"
        assert spaces[ids["s2"]].management_mode == "outlook_auto_accept"


class TestRestCrmConnectorAgainstTheEmulator(CrmConnectorContract):
    @pytest.fixture
    def backend(self, crm: CrmEmulator) -> CrmBackend:
        return crm


class TestMemoryCrm(CrmConnectorContract):
    @pytest.fixture
    def backend(self) -> MemoryCrm:
        return MemoryCrm()

    @pytest.fixture
    def connector(self, backend: MemoryCrm) -> CrmConnector:
        return backend
