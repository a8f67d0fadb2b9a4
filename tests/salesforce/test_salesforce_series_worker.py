"""R3 through the real worker with CRM_CONNECTOR=salesforce: a series made in Outlook reaches Salesforce as
one event series (its occurrence rows made by the emulator), an occurrence edited in Outlook becomes that
occurrence row edited, and one deleted in Outlook becomes its occurrence row deleted. Graph emulator,
Salesforce emulator and Azurite (tests/core/conftest.py's worker parts, the CRM side swapped)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.graph_emulator import GraphEmulator
from devstack.salesforce_emulator import SalesforceEmulator
from sync_core.adapters.crm.salesforce import SalesforceConnector
from sync_core.adapters.storage.mappings import MappingStore
from tests.core.conftest import ADELE, WorkerParts, graph_msg, instances
from tests.e2e.outlook import MEGAN, series, weekly

START = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) + timedelta(days=20)


@pytest.fixture
def worker_crm(backend: SalesforceEmulator) -> SalesforceConnector:
    """The worker's CRM (`sf_parts`): the Salesforce connector, its profile and timeout the defaults."""
    return SalesforceConnector(
        backend.base_url, client_id=backend.client_id, client_secret=backend.client_secret
    )


def _series(salesforce: SalesforceEmulator) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows = salesforce.events()
    (head,) = [r for r in rows if r["GroupEventType"] == "3"]
    occurrences = [r for r in rows if r["ActivityRecurrence2Id"] == head["ActivityRecurrence2Id"]]
    return head, sorted((r for r in occurrences if r is not head), key=lambda r: str(r["StartDateTime"]))


async def test_R3_a_series_its_edited_and_its_deleted_occurrence_reach_salesforce(
    sf_parts: WorkerParts,
    graph_emu: GraphEmulator,
    backend: SalesforceEmulator,
) -> None:
    start = START + timedelta(days=3)
    body = series("Weekly Salesforce stand-up", start, timedelta(minutes=30), [MEGAN], weekly(start), 4)
    worker = sf_parts.worker()
    async with httpx.AsyncClient(base_url=graph_emu.base_url, headers={"Authorization": "Bearer t"}) as g:
        master = (await g.post(f"/users/{ADELE}/events", json=body)).raise_for_status().json()
        first = await worker.handle(graph_msg(master["id"]))
        assert first.decision.rule == "R1", first.decision.explain()
        head, occurrences = _series(backend)
        assert len(occurrences) == 4 and head["Recurrence2PatternText"].startswith("RRULE:FREQ=WEEKLY")
        in_outlook = await instances(g, master["id"], start, 40)
        await g.patch(f"/users/{ADELE}/events/{in_outlook[1]['id']}", json={"subject": "Stand-up (moved)"})
        edited = await worker.handle(graph_msg(in_outlook[1]["id"]))
        assert edited.decision.rule == "R3", edited.decision.explain()
        await g.delete(f"/users/{ADELE}/events/{in_outlook[2]['id']}")
        await worker.handle(graph_msg(master["id"]))  # Graph announces a deleted occurrence on its master
    head, occurrences = _series(backend)
    series_key = await MappingStore(sf_parts.tables["Map"]).find_by_graph(ADELE, master["id"])
    assert head["msync_ExternalRef__c"] == series_key
    assert [r["Subject"] for r in occurrences] == [
        "Weekly Salesforce stand-up",
        "Stand-up (moved)",
        "Weekly Salesforce stand-up",
    ]  # the third occurrence's row is deleted, the second is an exception
    assert occurrences[1]["IsRecurrence2Exception"] is True
    third = (start + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M")
    assert all(not str(r["StartDateTime"]).startswith(third) for r in occurrences)
