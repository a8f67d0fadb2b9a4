"""The worker against Azurite and both emulators (tests/core/test_worker_*.py): the emulators once per module,
seeded like `make run`; per test its own tables and a `WorkerParts` (settings, adapters, `worker()`).

A module changes the demo policy by overriding the `policy_overrides` fixture.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.data.tables.aio import TableClient

from devstack.crm_emulator import CrmEmulator
from devstack.graph_emulator import GraphEmulator
from devstack.run import seed_crm, seed_graph
from sync_core.adapters.crm.rest import RestCrmConnector
from sync_core.adapters.graph.adapter import GraphAdapter
from sync_core.adapters.graph.base import build_client
from sync_core.adapters.storage.decisions import DecisionLog
from sync_core.adapters.storage.deletes import TableDeleteBudget
from sync_core.adapters.storage.mappings import MappingStore
from sync_core.adapters.storage.notices import NoticeLedger
from sync_core.domain.messages import CrmChange, GraphChange
from sync_core.domain.policy import load_policy
from sync_core.service.worker import Worker
from sync_core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
ADELE = "adele@contoso.example"  # a seeded sync user (devstack.run)


class Crash(Exception):
    """The process died: nothing after this point ran."""


def crm_msg(crm_id: str, change: str = "created") -> CrmChange:
    """The queue message a CRM webhook for `crm_id` becomes."""
    return CrmChange(
        correlation_id=uuid.uuid4().hex, received_at=datetime.now(UTC), crm_id=crm_id, change_type=change
    )


def graph_msg(event_id: str, change: str = "updated") -> GraphChange:
    """The queue message a Graph notification about Adele's event `event_id` becomes."""
    return GraphChange(
        correlation_id=uuid.uuid4().hex,
        received_at=datetime.now(UTC),
        mailbox=ADELE,
        event_id=event_id,
        change_type=change,
    )


async def instances(g: httpx.AsyncClient, master_id: str, start: datetime, days: int) -> list[dict[str, Any]]:
    """The occurrences of Adele's series `master_id` from the day before `start` to `days` after it, as the
    Graph emulator (client `g`) lists them."""
    window = {
        "startDateTime": (start - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "endDateTime": (start + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    answer = await g.get(f"/users/{ADELE}/events/{master_id}/instances", params=window)
    return list(answer.raise_for_status().json()["value"])


class WorkerParts:
    """What a worker is built from, on the emulators and this test's tables; `worker()` is a new process."""

    def __init__(
        self,
        graph_emu: GraphEmulator,
        crm_emu: CrmEmulator,
        conn: str,
        tables: dict[str, TableClient],
        policy_overrides: dict[str, Any],
    ) -> None:
        raw = json.loads((ROOT / "devstack" / "demo-policy.json").read_text()) | policy_overrides
        self.policy = load_policy(raw)
        self.settings: Settings = load_settings(
            {
                "AzureWebJobsStorage": conn,
                "GRAPH_AUTH_MODE": "emulator",
                "GRAPH_BASE_URL": graph_emu.base_url,
                "PUBLIC_BASE_URL": "http://127.0.0.1:9",
                "CRM_BASE_URL": crm_emu.base_url,
                "CRM_API_TOKEN": crm_emu.token,
                "CRM_WEBHOOK_SECRETS": "s",
                "SYNC_POLICY": json.dumps(raw),
            }
        )
        self.tables = tables
        self.graph = GraphAdapter(
            build_client(self.settings),
            extended_property_id=self.policy.extended_property_id,
            tag_secrets=self.settings.tag_secrets,
        )
        self.crm = RestCrmConnector(crm_emu.base_url, token=crm_emu.token)
        self.decisions = DecisionLog(tables["Dec"])
        self.budget = TableDeleteBudget(tables["Mbx"])

    def worker(self, store: MappingStore | None = None, graph: GraphAdapter | None = None) -> Worker:
        return Worker(
            graph=graph or self.graph,
            crm=self.crm,
            mappings=store or MappingStore(self.tables["Map"]),
            decisions=self.decisions,
            policy=self.policy,
            clock=lambda: datetime.now(UTC),
            notices=NoticeLedger(self.tables["Map"]),
            deletes=self.budget,
        )


@pytest.fixture(scope="module")
def graph_emu() -> Iterator[GraphEmulator]:
    with GraphEmulator() as emu:
        seed_graph(emu)
        yield emu


@pytest.fixture(scope="module")
def crm_emu() -> Iterator[CrmEmulator]:
    with CrmEmulator() as emu:
        seed_crm(emu)
        yield emu


@pytest.fixture
async def worker_tables(
    storage_connection_string: str, unique_name: str
) -> AsyncIterator[dict[str, TableClient]]:
    """Mappings (and notices), decisions, mailbox delete budgets and failures: this test's own tables."""
    out = {}
    for name in ("Map", "Dec", "Mbx", "Fail"):
        client = TableClient.from_connection_string(storage_connection_string, table_name=name + unique_name)
        await client.create_table()
        out[name] = client
    yield out
    for client in out.values():
        await client.delete_table()
        await client.close()


@pytest.fixture
def policy_overrides() -> dict[str, Any]:
    """Changes to devstack/demo-policy.json for this module's workers: none."""
    return {}


@pytest.fixture
async def parts(
    graph_emu: GraphEmulator,
    crm_emu: CrmEmulator,
    storage_connection_string: str,
    worker_tables: dict[str, TableClient],
    policy_overrides: dict[str, Any],
) -> AsyncIterator[WorkerParts]:
    p = WorkerParts(graph_emu, crm_emu, storage_connection_string, worker_tables, policy_overrides)
    yield p
    await p.crm.aclose()
    await p.graph.aclose()
