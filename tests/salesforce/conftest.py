"""The Salesforce emulator once per module, reset for each test (`backend`); `connect`: a SalesforceConnector
on it with a field profile; `sf_parts`: tests/core's worker parts, the module's `worker_crm` their CRM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import pytest
from azure.data.tables.aio import TableClient

from devstack.graph_emulator import GraphEmulator
from devstack.salesforce_emulator import SalesforceEmulator
from sync_core.adapters.crm.salesforce import SalesforceConnector
from sync_core.adapters.crm.salesforce_wire import FieldProfile
from tests.core.conftest import (  # graph_emu and worker_tables: fixtures
    WorkerParts,
    graph_emu,  # noqa: F401
    worker_tables,  # noqa: F401
)


@pytest.fixture(scope="module")
def salesforce_emulator() -> Iterator[SalesforceEmulator]:
    with SalesforceEmulator() as emulator:
        yield emulator


@pytest.fixture
def backend(salesforce_emulator: SalesforceEmulator) -> SalesforceEmulator:
    salesforce_emulator.reset()
    return salesforce_emulator


def connect(backend: SalesforceEmulator, profile: FieldProfile) -> SalesforceConnector:
    """A connector on the emulator as its integration user, writing with `profile`."""
    return SalesforceConnector(
        backend.base_url,
        client_id=backend.client_id,
        client_secret=backend.client_secret,
        profile=profile,
        timeout=5.0,
    )


@pytest.fixture
async def sf_parts(
    graph_emu: GraphEmulator,  # noqa: F811
    storage_connection_string: str,
    worker_tables: dict[str, TableClient],  # noqa: F811
    worker_crm: SalesforceConnector,
) -> AsyncIterator[WorkerParts]:
    """tests/core's worker parts with `worker_crm` (a module's fixture) as the CRM."""
    rest = SimpleNamespace(base_url="http://127.0.0.1:9", token="unused")  # the REST CRM's settings, unused
    parts = WorkerParts(graph_emu, rest, storage_connection_string, worker_tables, {})  # type: ignore[arg-type]
    await parts.crm.aclose()
    parts.crm = worker_crm  # type: ignore[assignment]
    yield parts
    await parts.crm.aclose()
    await parts.graph.aclose()
