"""Fixtures for the operations tests: a private Azurite, settings pointing at it, and clean queues and tables.

Queue and table names are module constants, and the end-to-end stack keeps a worker polling `sync-changes`
on the shared session Azurite; these tests get their own emulator so no other consumer races them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest

from devstack.azurite import Azurite
from sync_core.adapters.storage.core import QUEUES, TABLES, Storage
from sync_core.settings import Settings, load_settings

MAILBOX_A = "adele@contoso.example"
MAILBOX_B = "bruno@contoso.example"
POLICY = {
    "own_domains": ["contoso.example"],
    "sync_users": [
        {"email": MAILBOX_A, "crm_user_id": "u-adele"},
        {"email": MAILBOX_B, "crm_user_id": "u-bruno"},
    ],
}


@pytest.fixture(scope="package")
def ops_azurite() -> Iterator[Azurite]:
    with Azurite() as emulator:
        yield emulator


@pytest.fixture
def storage_connection_string(ops_azurite: Azurite) -> str:
    """Overrides the shared fixture: this package's own Azurite."""
    return ops_azurite.connection_string


@pytest.fixture
def app_settings(storage_connection_string: str) -> dict[str, str]:
    """App settings as the Functions host would give them: Azurite storage, nothing reachable elsewhere."""
    return {
        "AzureWebJobsStorage": storage_connection_string,
        "GRAPH_AUTH_MODE": "emulator",
        "GRAPH_BASE_URL": "http://127.0.0.1:9/v1.0",
        "PUBLIC_BASE_URL": "http://127.0.0.1:9",
        "CRM_BASE_URL": "http://127.0.0.1:9",
        "CRM_API_TOKEN": "ops-token",
        "CRM_WEBHOOK_SECRETS": "ops-secret",
        "SYNC_POLICY": json.dumps(POLICY),
    }


@pytest.fixture
def settings(app_settings: dict[str, str]) -> Settings:
    return load_settings(app_settings)


@pytest.fixture
async def storage(settings: Settings) -> AsyncIterator[Storage]:
    """A Storage on the private Azurite with every queue and table of the app, emptied first."""
    store = Storage(settings)
    await store.ensure()
    await clean(store)
    try:
        yield store
    finally:
        await store.aclose()


async def clean(store: Storage) -> None:
    for name in QUEUES:
        await store.queue(name).clear_messages()
    for name in TABLES:
        table = store.table(name)
        async for entity in table.list_entities(select=["PartitionKey", "RowKey"]):
            await table.delete_entity(entity["PartitionKey"], entity["RowKey"])
