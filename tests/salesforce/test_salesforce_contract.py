"""The shared CRM contract (tests/crm/test_crm_contract.py) run against SalesforceConnector + the Salesforce
emulator, twice: creating by upsert on an External ID field, and by lookup-then-create without one. Then what
only Salesforce does: 403 REQUEST_LIMIT_EXCEEDED is throttling, INVALID_SESSION_ID renews the token once,
several records under one create key are an operator hold, If-Unmodified-Since closes the read-compare-write
window, invitees are EventRelation rows, Practifi's alternate email fields, a stale cursor.

Three directory tests are restated, not skipped: Salesforce ids are 18 characters (the seeded ones are too),
and the integration user the connector acts as is not listed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from devstack.salesforce_emulator import SalesforceEmulator
from sync_core.adapters.crm.salesforce import SalesforceConnector, create_key
from sync_core.adapters.crm.salesforce_wire import FieldProfile
from sync_core.domain.model import Attendee, Person, Recurrence, RecurrencePattern, RecurrenceRange, Response
from sync_core.errors import (
    ConcurrencyError,
    PermanentError,
    PermissionError_,
    ThrottledError,
    UnprocessableError,
)
from tests.crm.test_crm_contract import CrmConnectorContract, make_appointment
from tests.salesforce.conftest import connect

C1 = "003000000000C01AAA"
U1 = "005000000000U01AAA"
U2 = "005000000000U02AAA"
S1 = "a0S000000000S01AAA"
S2 = "a0S000000000S02AAA"


UPSERT = FieldProfile.of("standard", (), "msync_Key__c")


@pytest.fixture
async def connector(backend: SalesforceEmulator) -> AsyncIterator[SalesforceConnector]:
    async with connect(backend, UPSERT) as conn:
        yield conn


class _SalesforceIds:
    @pytest.fixture
    def ids(self) -> dict[str, str]:
        return {"c1": C1, "u1": U1, "u2": U2, "s1": S1, "s2": S2}  # Salesforce ids: 18 characters


class TestSalesforceUpsertOnAnExternalIdField(_SalesforceIds, CrmConnectorContract):
    pass


class TestSalesforceLookupThenCreate(_SalesforceIds, CrmConnectorContract):
    @pytest.fixture
    async def connector(self, backend: SalesforceEmulator) -> AsyncIterator[SalesforceConnector]:
        async with connect(backend, FieldProfile()) as conn:
            yield conn


async def test_403_request_limit_exceeded_is_throttling_not_credentials(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    await connector.list_changed(None)  # a session first
    backend.set_faults(limit_exceeded=1)
    with pytest.raises(ThrottledError) as caught:
        await connector.list_changed(None)
    assert "REQUEST_LIMIT_EXCEEDED" in caught.value.message and caught.value.retry_after > 0
    await connector.list_changed(None)  # the next request is served


async def test_an_expired_session_is_renewed_once(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    made = await connector.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    backend.expire_sessions()
    assert await connector.get_appointment(made.crm_id) == made
    tokens = [r for r in backend.requests if r.path == "/services/oauth2/token"]
    assert len(tokens) == 2  # the first session and one renewal


async def test_refused_credentials_are_a_permission_error(backend: SalesforceEmulator) -> None:
    async with SalesforceConnector(backend.base_url, client_id="x", client_secret="y") as conn:
        with pytest.raises(PermissionError_) as caught:  # 400 invalid_client from the token endpoint
            await conn.list_users()
    assert "invalid_client" in caught.value.message


async def test_several_records_under_one_create_key_are_an_operator_hold(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    first = await connector.create_appointment(make_appointment(), idempotency_key="dup", external_ref="m")
    other = backend.user_create(make_appointment())
    backend.user_update(other["id"], msync_Key__c=create_key("dup"))
    with pytest.raises(PermanentError) as caught:
        await connector.create_appointment(make_appointment(), idempotency_key="dup", external_ref="m")
    assert "operator" in caught.value.message and first.crm_id


async def test_the_write_is_refused_when_the_record_changed_after_the_read(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    created = await connector.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    backend.advance(timedelta(seconds=5))
    row = await connector._row(created.crm_id)  # what update_appointment reads first
    assert row is not None
    backend.user_update(created.crm_id, subject="edited between our read and our write")
    writes = await connector._changes(
        created.crm_id, row, make_appointment(subject="mine"), people=False, guard=True
    )
    assert [w.method for w in writes] == ["PATCH"] and "If-Unmodified-Since" in writes[0].headers
    with pytest.raises(ConcurrencyError):  # the guarded PATCH's 412, a subrequest of the composite call
        await connector._commit(writes, created.crm_id, item_id=created.crm_id)
    (event,) = backend.events()
    assert event["Subject"] == "edited between our read and our write"


async def test_invitees_are_event_relations_with_their_answers(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    backend.seed(
        users=[
            {"id": U1, "email": "alice@contoso.example", "name": "Alice", "mailbox": "alice@contoso.example"}
        ],
        contacts=[{"id": C1, "email": "bob@fabrikam.example", "name": "Bob"}],
        leads=[{"email": "lea@lead.example", "name": "Lea"}],
    )
    appt = make_appointment(
        organizer=Person(email="alice@contoso.example", name="Alice"),
        attendees=(
            Attendee(email="bob@fabrikam.example", name="Bob", response=Response.ACCEPTED),
            Attendee(email="lea@lead.example", name="Lea", response=Response.TENTATIVE),
            Attendee(email="nobody@elsewhere.example", name="Nobody"),
        ),
    )
    made = await connector.create_appointment(appt, idempotency_key="k", external_ref="m")
    assert made.appointment == appt and made.mailbox_hint == "alice@contoso.example"
    rows = {r["RelationId"]: r["Status"] for r in backend.relations(made.crm_id)}
    assert rows[C1] == "Accepted" and len(rows) == 2  # the unknown address is kept by us, not related
    assert backend.events()[0]["OwnerId"] == U1
    declined = appt.model_copy(
        update={
            "attendees": (Attendee(email="bob@fabrikam.example", name="Bob", response=Response.DECLINED),)
        }
    )
    updated = await connector.update_appointment(
        made.crm_id, declined, fields=["attendees"], expected_version=made.version
    )
    assert updated.appointment.attendees == declined.attendees
    assert {r["RelationId"]: r["Status"] for r in backend.relations(made.crm_id)} == {C1: "Declined"}


async def test_practifi_matches_contacts_on_the_alternate_email_fields(backend: SalesforceEmulator) -> None:
    backend.seed(
        contacts=[{"id": C1, "email": "bob@home.example", "name": "Bob", "Alt_Email__c": "bob@work.example"}]
    )
    profile = FieldProfile.of("practifi", ["Alt_Email__c"], None)
    async with connect(backend, profile) as conn:
        found = await conn.find_contacts(["bob@work.example"])
    assert found["bob@work.example"].crm_id == C1


async def test_a_pattern_salesforce_cannot_hold_and_an_overlong_subject_are_refused_with_the_reason(
    connector: SalesforceConnector,
) -> None:
    series = make_appointment(
        recurrence=Recurrence(
            pattern=RecurrencePattern(type="relativeMonthly", days_of_week=("monday", "friday")),
            range=RecurrenceRange(
                type="numbered", start_date=make_appointment().start.date(), number_of_occurrences=5
            ),
        )
    )
    with pytest.raises(UnprocessableError, match="one weekday"):
        await connector.create_appointment(series, idempotency_key="s", external_ref="s")
    with pytest.raises(UnprocessableError, match="Subject holds at most 255"):
        await connector.create_appointment(
            make_appointment(subject="x" * 256), idempotency_key="t", external_ref="t"
        )


async def test_a_cursor_older_than_the_recycle_bin_starts_a_full_read(
    connector: SalesforceConnector, backend: SalesforceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await connector.create_appointment(make_appointment(), idempotency_key="a", external_ref="a")
    cursor = (await connector.list_changed(None)).cursor
    import sync_core.adapters.crm.salesforce_changes as module

    monkeypatch.setattr(module, "DELETED_VISIBLE", timedelta(seconds=-1))
    page = await connector.list_changed(cursor)
    assert [r.crm_id for r in page.records] == [a.crm_id] and page.deleted_ids == ()


async def test_usage_is_read_from_sforce_limit_info(connector: SalesforceConnector) -> None:
    await connector.list_users()
    assert connector.api_usage is not None and connector.api_usage[1] == 100_000
    assert connector.calls >= 1
