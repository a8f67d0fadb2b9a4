"""I3 without an External ID field: two workers creating the same meeting at once (the second took the first's
claim, without a CRM id yet, for a create a crash cut short) end with one Event, not two."""

from __future__ import annotations

import asyncio

from devstack.salesforce_emulator import SalesforceEmulator
from sync_core.adapters.crm.salesforce_wire import FieldProfile
from tests.crm.test_crm_contract import make_appointment
from tests.salesforce.conftest import connect


async def test_I3_two_creates_under_one_key_at_once_leave_one_event(backend: SalesforceEmulator) -> None:
    async with connect(backend, FieldProfile()) as first, connect(backend, FieldProfile()) as second:
        made = await asyncio.gather(
            *(
                conn.create_appointment(make_appointment(), idempotency_key="k", external_ref="m")
                for conn in (first, second)
            )
        )
    alive = [e for e in backend.events() if not e.get("IsDeleted")]
    assert len(alive) == 1, alive
    assert made[0].crm_id == made[1].crm_id == alive[0]["Id"]
