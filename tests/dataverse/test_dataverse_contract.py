"""The shared CRM contract (tests/crm/test_crm_contract.py) run against DataverseConnector + the Dataverse
emulator, and what only Dataverse does: the expired delta token, throttling, the W4 no-op, a refused series
(the series themselves: test_dataverse_series.py).

Four contract tests are restated, not skipped: the directory ones seed GUID ids (Dataverse keys are GUIDs),
and a retried create after a CRM user deleted the record is answered the Dataverse way (the deterministic
activityid makes it again; see docs/connectors/dataverse.md, "Create once").
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from devstack.dataverse_emulator import DataverseEmulator
from sync_core.adapters.crm.dataverse import DataverseConnector
from sync_core.domain.model import Recurrence, RecurrencePattern, RecurrenceRange, Status
from sync_core.errors import NotFoundError, ThrottledError, UnprocessableError
from sync_core.ports.crm import CrmConnector
from tests.crm.test_crm_contract import CrmConnectorContract, make_appointment

C1 = "0b7f1c2e-1111-4c1a-9d55-0000000000c1"
U1 = "0b7f1c2e-1111-4c1a-9d55-0000000000a1"
U2 = "0b7f1c2e-1111-4c1a-9d55-0000000000a2"
S1 = "0b7f1c2e-1111-4c1a-9d55-0000000000e1"
S2 = "0b7f1c2e-1111-4c1a-9d55-0000000000e2"


class TestDataverseConnectorAgainstTheEmulator(CrmConnectorContract):
    async def test_I3_a_retried_create_of_a_record_deleted_since_is_refused(
        self, connector: CrmConnector, backend: Any
    ) -> None:
        """Restated: Dataverse keeps no trace of a deleted row, so the same key makes the same activityid
        again (no duplicate: one record, the id the mapping already names)."""
        first = await connector.create_appointment(
            make_appointment(), idempotency_key="k-5", external_ref="m"
        )
        backend.user_delete(first.crm_id)
        again = await connector.create_appointment(
            make_appointment(), idempotency_key="k-5", external_ref="m"
        )
        assert again.crm_id == first.crm_id
        page = await connector.list_changed(None)
        assert [r.crm_id for r in page.records] == [first.crm_id]

    @pytest.fixture
    def ids(self) -> dict[str, str]:
        return {"c1": C1, "u1": U1, "u2": U2, "s1": S1, "s2": S2}  # Dataverse keys are GUIDs


async def test_an_expired_delta_token_starts_again_from_a_full_read(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    a = await connector.create_appointment(make_appointment(), idempotency_key="a", external_ref="a")
    cursor = (await connector.list_changed(None)).cursor
    assert "$deltatoken=" in cursor
    backend.advance(timedelta(days=8))
    page = await connector.list_changed(cursor)
    assert [r.crm_id for r in page.records] == [a.crm_id] and not page.more
    assert any(r.status == 400 for r in backend.requests)  # the expired token was refused once


async def test_429_with_retry_after_is_throttling(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    backend.set_faults(throttle=1, retry_after_s=7)
    with pytest.raises(ThrottledError) as caught:
        await connector.list_changed(None)
    assert caught.value.retry_after == 7.0 and caught.value.side == "crm"
    await connector.list_changed(None)  # the next request is served


async def test_W4_an_unchanged_update_sends_no_write(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    created = await connector.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
    before = len(backend.requests)
    await connector.update_appointment(
        created.crm_id, created.appointment, fields=["subject", "attendees"], expected_version=created.version
    )
    assert [r.method for r in backend.requests[before:] if r.method != "GET"] == []


async def test_a_series_dataverse_cannot_hold_is_refused_with_the_reason_never_flattened(
    connector: DataverseConnector, backend: DataverseEmulator
) -> None:
    series = make_appointment(
        recurrence=Recurrence(
            pattern=RecurrencePattern(type="weekly", days_of_week=("monday",)),
            range=RecurrenceRange(
                type="numbered", start_date=make_appointment().start.date(), number_of_occurrences=1000
            ),
        )
    )
    with pytest.raises(UnprocessableError, match="1000 occurrences"):
        await connector.create_appointment(series, idempotency_key="s", external_ref="s")
    assert backend.appointments() == []  # nothing written, not even a single appointment


async def test_statuses_round_trip_and_a_cancelled_record_can_be_reopened(
    connector: DataverseConnector,
) -> None:
    made = {}
    for status in Status:
        made[status] = await connector.create_appointment(
            make_appointment(status=status), idempotency_key=f"st-{status}", external_ref=f"st-{status}"
        )
        assert made[status].appointment.status is status
    cancelled = made[Status.CANCELLED]
    reopened = await connector.update_appointment(
        cancelled.crm_id,
        make_appointment(status=Status.CONFIRMED, subject="back on"),
        fields=["status", "subject"],
        expected_version=cancelled.version,
    )
    assert reopened.appointment.status is Status.CONFIRMED and reopened.appointment.subject == "back on"
    edited = await connector.update_appointment(
        made[Status.CONFIRMED].crm_id,
        make_appointment(subject="x"),
        fields=["subject"],
        expected_version=None,
    )
    again = await connector.cancel_appointment(edited.crm_id)
    renamed = await connector.update_appointment(
        again.crm_id,
        make_appointment(subject="renamed while cancelled"),
        fields=["subject"],
        expected_version=None,
    )
    # A cancelled row is written only to un-cancel it (tests/dataverse/test_dataverse_cancel_race.py).
    assert renamed == again and renamed.appointment.status is Status.CANCELLED


async def test_a_key_that_is_no_guid_names_no_record(connector: DataverseConnector) -> None:
    assert await connector.get_appointment("../systemusers") is None
    with pytest.raises(NotFoundError):
        await connector.delete_appointment("no-such-id")
