"""Contract fixtures: a Table Storage table of its own per test, on the session's Azurite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from azure.data.tables.aio import TableClient


@pytest.fixture
async def table(storage_connection_string: str, unique_name: str) -> AsyncIterator[TableClient]:
    client = TableClient.from_connection_string(
        storage_connection_string, table_name=f"Contract{unique_name}"
    )
    await client.create_table()
    try:
        yield client
    finally:
        await client.delete_table()
        await client.close()
