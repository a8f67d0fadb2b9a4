"""Issue 19: Salesforce has no status field, so a cancel is the tenant's choice (SALESFORCE_CANCEL: the status
field's cancelled value, or the Event deleted) and the status map is the tenant's (SALESFORCE_STATUS_FIELD,
SALESFORCE_STATUS_MAP). Through SalesforceConnector against the Salesforce emulator: the shared CRM contract
with cancel by deletion, a row we deleted read as cancelled and one a user deleted as gone, a tenant's own
picklist; and the settings, every problem listed at start.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.graph_emulator import GraphEmulator
from devstack.salesforce_emulator import SalesforceEmulator, store
from sync_core.adapters.crm.salesforce import SalesforceConnector
from sync_core.adapters.crm.salesforce_wire import FieldProfile
from sync_core.bootstrap import crm_connector
from sync_core.domain.model import Status
from sync_core.errors import ConfigurationError, NotFoundError, UnprocessableError
from sync_core.settings import STATUSES, load_settings
from tests.core.conftest import ADELE, WorkerParts, crm_msg, graph_msg
from tests.crm.test_crm_contract import CrmConnectorContract, make_appointment
from tests.salesforce.conftest import connect

ROOT = Path(__file__).resolve().parents[2]
IDS = {
    "c1": "003000000000C01AAA",
    "u1": "005000000000U01AAA",
    "u2": "005000000000U02AAA",
    "s1": "a0S000000000S01AAA",
    "s2": "a0S000000000S02AAA",
}
DELETE = FieldProfile.of("standard", (), "msync_Key__c", cancel_by_delete=True)
STAGE = "Stage__c"  # a tenant's own picklist on Event
TENANT_MAP = {"tentative": "Pencilled", "confirmed": ["Booked", "Confirmed"], "cancelled": "Called off"}


@pytest.fixture
async def connector(backend: SalesforceEmulator) -> AsyncIterator[SalesforceConnector]:
    async with connect(backend, DELETE) as conn:
        yield conn


class TestSalesforceCancelByDeletion(CrmConnectorContract):
    """The whole CRM contract holds with SALESFORCE_CANCEL=delete."""

    @pytest.fixture
    def ids(self) -> dict[str, str]:
        return IDS


def _row(backend: SalesforceEmulator, crm_id: str) -> dict[str, Any]:
    return dict(backend.store.find("Event", crm_id, deleted=True) or {})


async def test_L4_with_cancel_by_deletion_a_cancel_deletes_the_event_and_reads_back_as_cancelled(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    made = await connector.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    cancelled = await connector.cancel_appointment(made.crm_id)
    assert cancelled.appointment.status is Status.CANCELLED
    row = _row(backend, made.crm_id)
    assert row["IsDeleted"] is True  # in the Recycle Bin, not a status
    assert row["msync_Status__c"] == "confirmed"  # the status field is not what said cancelled
    assert backend.events() == []
    again = await connector.get_appointment(made.crm_id)
    assert again is not None and again.appointment.status is Status.CANCELLED
    assert again.version == cancelled.version  # our own cancel read back: an echo (D4), not a change
    with pytest.raises(NotFoundError):  # a cancelled record is not edited
        await connector.update_appointment(
            made.crm_id, make_appointment(subject="x"), fields=["subject"], expected_version=None
        )


async def test_L3_an_event_a_salesforce_user_deletes_is_gone_not_cancelled_by_us(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    ours = await connector.create_appointment(make_appointment(), idempotency_key="a", external_ref="ma")
    theirs = await connector.create_appointment(make_appointment(), idempotency_key="b", external_ref="mb")
    first = await connector.list_changed(None)
    await connector.cancel_appointment(ours.crm_id)
    backend.user_delete(theirs.crm_id)  # the emulator deletes as the integration user: only our mark tells
    assert await connector.get_appointment(theirs.crm_id) is None
    with pytest.raises(NotFoundError):
        await connector.cancel_appointment(theirs.crm_id)
    page = await connector.list_changed(first.cursor)
    assert page.deleted_ids == (theirs.crm_id,)  # the engine's "deleted in the CRM" (L3)
    assert [(r.crm_id, r.appointment.status) for r in page.records] == [(ours.crm_id, Status.CANCELLED)]


async def test_L4_an_event_a_salesforce_user_made_is_cancelled_by_deletion_too(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    made = backend.user_create(make_appointment(attendees=()))  # no sidecar of ours
    cancelled = await connector.cancel_appointment(made["id"])
    assert cancelled.appointment.status is Status.CANCELLED and _row(backend, made["id"])["IsDeleted"]


async def test_L4_a_row_we_deleted_still_reads_as_cancelled_after_switching_back_to_the_status_field(
    connector: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    made = await connector.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    await connector.cancel_appointment(made.crm_id)
    async with connect(backend, FieldProfile()) as status_mode:
        record = await status_mode.get_appointment(made.crm_id)
    assert record is not None and record.appointment.status is Status.CANCELLED


# -- a tenant's own status picklist ------------------------------------------------------------------------


@pytest.fixture
def tenant_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulated org has a tenant's restricted picklist `Stage__c` on Event."""
    monkeypatch.setitem(store.WRITABLE["Event"], STAGE, None)
    monkeypatch.setitem(
        store.PICKLISTS, ("Event", STAGE), {"Pencilled", "Booked", "Confirmed", "Called off", "Invoiced"}
    )


@pytest.fixture
async def tenant(backend: SalesforceEmulator, tenant_field: None) -> AsyncIterator[SalesforceConnector]:
    profile = FieldProfile.of("standard", (), None, status_field=STAGE, statuses=TENANT_MAP)
    async with connect(backend, profile) as conn:
        yield conn


async def test_L1_the_tenants_picklist_values_are_written_and_read_as_our_statuses(
    tenant: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    made = await tenant.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    assert _row(backend, made.crm_id)[STAGE] == "Booked"  # the first value of confirmed is written
    assert _row(backend, made.crm_id)["msync_Status__c"] is None  # our package's field is left alone
    for value, status in (("Confirmed", Status.CONFIRMED), ("Pencilled", Status.TENTATIVE)):
        backend.user_update(made.crm_id, **{STAGE: value})
        record = await tenant.get_appointment(made.crm_id)
        assert record is not None and record.appointment.status is status, value
    moved = await tenant.update_appointment(
        made.crm_id, make_appointment(status=Status.CONFIRMED), fields=["status"], expected_version=None
    )
    assert moved.appointment.status is Status.CONFIRMED and _row(backend, made.crm_id)[STAGE] == "Booked"
    cancelled = await tenant.cancel_appointment(made.crm_id)
    assert cancelled.appointment.status is Status.CANCELLED
    assert _row(backend, made.crm_id)[STAGE] == "Called off" and not _row(backend, made.crm_id)["IsDeleted"]


async def test_a_status_the_tenants_picklist_has_no_value_for_is_refused_with_the_reason(
    tenant: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    with pytest.raises(UnprocessableError) as caught:
        await tenant.create_appointment(
            make_appointment(status=Status.HOLD), idempotency_key="k", external_ref="m"
        )
    assert "hold" in caught.value.message and "SALESFORCE_STATUS_MAP" in caught.value.message
    assert backend.events() == [] and tenant.calls == 0  # refused before any request
    made = await tenant.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    with pytest.raises(UnprocessableError) as caught:
        await tenant.update_appointment(
            made.crm_id, make_appointment(status=Status.HOLD), fields=["status"], expected_version=None
        )
    assert "hold" in caught.value.message
    assert _row(backend, made.crm_id)[STAGE] == "Booked"  # unchanged


async def test_a_picklist_value_the_map_does_not_name_is_refused_never_read_as_confirmed(
    tenant: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    made = await tenant.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    backend.user_update(made.crm_id, **{STAGE: "Invoiced"})
    with pytest.raises(UnprocessableError) as caught:
        await tenant.get_appointment(made.crm_id)
    assert "'Invoiced'" in caught.value.message and STAGE in caught.value.message


async def test_an_unreadable_event_in_the_change_feed_is_listed_apart_and_never_stalls_the_page(
    tenant: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    bad = await tenant.create_appointment(make_appointment(), idempotency_key="k1", external_ref="m1")
    good = await tenant.create_appointment(make_appointment(), idempotency_key="k2", external_ref="m2")
    backend.user_update(bad.crm_id, **{STAGE: "Invoiced"})  # a value the map does not name
    backend.user_update(good.crm_id, subject="still read")
    page = await tenant.list_changed(None)
    assert page.unreadable_ids == (bad.crm_id,)  # the sweep hands it to the worker, which poisons it
    assert [r.crm_id for r in page.records] == [good.crm_id]
    assert page.records[0].appointment.subject == "still read"


async def test_an_empty_status_field_is_confirmed(
    tenant: SalesforceConnector, backend: SalesforceEmulator
) -> None:
    made = backend.user_create(make_appointment(attendees=()))  # a Salesforce user's event: no stage
    record = await tenant.get_appointment(made["id"])
    assert record is not None and record.appointment.status is Status.CONFIRMED


# -- settings ------------------------------------------------------------------------------------------------


def _values(**changes: str) -> dict[str, str]:
    values: dict[str, str] = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    return (
        values
        | {
            "CRM_CONNECTOR": "salesforce",
            "SALESFORCE_INSTANCE_URL": "http://127.0.0.1:7083",
            "SALESFORCE_AUTH_MODE": "emulator",
        }
        | changes
    )


def _problems(**changes: str) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(_values(**changes))
    return caught.value.problems


def test_our_statuses_in_the_settings_are_the_models() -> None:
    assert tuple(s.value for s in Status) == STATUSES


def test_every_cancel_and_status_map_problem_is_listed_at_start_with_the_others() -> None:
    problems = _problems(
        PUBLIC_BASE_URL="",
        SALESFORCE_CANCEL="archive",
        SALESFORCE_STATUS_FIELD="Stage",
        SALESFORCE_STATUS_MAP=json.dumps(
            {"booked": "Booked", "confirmed": ["Booked", ""], "tentative": "Booked", "hold": "Booked"}
        ),
    )
    for start in (
        "PUBLIC_BASE_URL",
        "SALESFORCE_CANCEL: 'archive'",
        "SALESFORCE_STATUS_FIELD: 'Stage'",
        "SALESFORCE_STATUS_MAP: 'booked' is not one of our statuses",
        "SALESFORCE_STATUS_MAP: confirmed: a picklist value or a non-empty list",
        "SALESFORCE_STATUS_MAP: the picklist value 'Booked' is both tentative and hold",
    ):
        assert any(p.startswith(start) for p in problems), (start, problems)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"SALESFORCE_STATUS_MAP": "{confirmed: 1}"}, "SALESFORCE_STATUS_MAP: not JSON"),
        ({"SALESFORCE_STATUS_MAP": '["confirmed"]'}, "SALESFORCE_STATUS_MAP: a JSON object"),
        ({"SALESFORCE_STATUS_MAP": '{"confirmed": "Booked"}'}, "SALESFORCE_STATUS_MAP: no picklist value"),
        ({"SALESFORCE_STATUS_MAP": '{"cancelled": "Off"}'}, "SALESFORCE_STATUS_MAP: no picklist value"),
        ({"SALESFORCE_STATUS_MAP": json.dumps({"confirmed": "x" * 256})}, "SALESFORCE_STATUS_MAP: confirmed"),
        ({"SALESFORCE_STATUS_FIELD": "Stage__c; DELETE"}, "SALESFORCE_STATUS_FIELD"),
    ],
)
def test_a_wrong_status_setting_is_named(changes: dict[str, str], problem: str) -> None:
    problems = _problems(**changes)
    assert any(p.startswith(problem) for p in problems), problems


def test_cancel_by_deletion_needs_no_cancelled_value() -> None:
    settings = load_settings(
        _values(SALESFORCE_CANCEL="delete", SALESFORCE_STATUS_MAP='{"confirmed": "Booked"}')
    )
    assert settings.salesforce_statuses == {"confirmed": ("Booked",)}


async def test_the_composition_root_builds_the_connector_with_the_tenants_cancel_and_statuses() -> None:
    connector, _ = crm_connector(
        load_settings(
            _values(
                SALESFORCE_CANCEL="Delete",
                SALESFORCE_STATUS_FIELD=STAGE,
                SALESFORCE_STATUS_MAP=json.dumps(TENANT_MAP),
            )
        )
    )
    assert isinstance(connector, SalesforceConnector)
    profile = connector.profile
    assert profile.cancel_by_delete and profile.status_field == STAGE
    assert profile.status_value(Status.CONFIRMED, item_id=None) == "Booked"
    assert profile.status_of("Confirmed", item_id=None) is Status.CONFIRMED
    await connector.aclose()
    default, _ = crm_connector(load_settings(_values()))
    assert isinstance(default, SalesforceConnector)
    assert not default.profile.cancel_by_delete and default.profile.status_field == "msync_Status__c"
    assert default.profile.status_value(Status.HOLD, item_id=None) == "hold"
    await default.aclose()


# -- through the real worker ------------------------------------------------------------------------------


@pytest.fixture
def worker_crm(backend: SalesforceEmulator) -> SalesforceConnector:
    """The worker's CRM (`sf_parts`): the Salesforce connector with SALESFORCE_CANCEL=delete."""
    return connect(backend, DELETE)


async def test_L4_L3_through_the_worker_our_deletion_is_an_echo_and_a_users_deletion_cancels_outlook(
    sf_parts: WorkerParts,
    graph_emu: GraphEmulator,
    backend: SalesforceEmulator,
) -> None:
    start = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=20)
    worker = sf_parts.worker()
    made: list[tuple[str, str]] = []
    async with httpx.AsyncClient(base_url=graph_emu.base_url, headers={"Authorization": "Bearer t"}) as g:
        for subject in ("Deleted in Outlook", "Deleted in Salesforce"):
            body = {
                "subject": subject,
                "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                "end": {
                    "dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC",
                },
                "attendees": [{"emailAddress": {"address": "megan@fabrikam.example"}, "type": "required"}],
            }
            event = (await g.post(f"/users/{ADELE}/events", json=body)).raise_for_status().json()
            await worker.handle(graph_msg(event["id"], "created"))
            (row,) = [r for r in backend.events() if r["Subject"] == subject]
            made.append((event["id"], row["Id"]))
        (ours_event, ours_row), (theirs_event, theirs_row) = made

        (await g.delete(f"/users/{ADELE}/events/{ours_event}")).raise_for_status()
        cancelled = await worker.handle(graph_msg(ours_event, "deleted"))
        assert cancelled.decision.rule == "L4", cancelled.decision.explain()
        assert _row(backend, ours_row)["IsDeleted"] is True  # cancel by deletion
        echo = await worker.handle(crm_msg(ours_row, "deleted"))  # what the feed then brings
        assert echo.decision.rule == "D4" and echo.writes == [], echo.decision.explain()  # read as ours

        backend.user_delete(theirs_row)
        gone = await worker.handle(crm_msg(theirs_row, "deleted"))
        assert gone.writes == ["cancel_graph:L3"], gone.decision.explain()
        assert "deleted in the CRM" in gone.decision.explain()
        after = await g.get(f"/users/{ADELE}/events/{theirs_event}")
    assert after.status_code == 404  # the organizer's event is cancelled: gone from the calendar
