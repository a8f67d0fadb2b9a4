"""The Dataverse emulator once per module, reset for each test (`backend`), with DataverseConnector on it
(`connector`) or a plain Web API client (`client`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from devstack.dataverse_emulator import DataverseEmulator
from sync_core.adapters.crm.dataverse import DataverseConnector


@pytest.fixture(scope="module")
def dataverse_emulator() -> Iterator[DataverseEmulator]:
    with DataverseEmulator() as emulator:
        yield emulator


@pytest.fixture
def backend(dataverse_emulator: DataverseEmulator) -> DataverseEmulator:
    dataverse_emulator.reset()
    return dataverse_emulator


@pytest.fixture
async def connector(backend: DataverseEmulator) -> AsyncIterator[DataverseConnector]:
    async with DataverseConnector(backend.base_url, token=backend.token, timeout=5.0) as conn:
        yield conn


@pytest.fixture
def client(backend: DataverseEmulator) -> Iterator[httpx.Client]:
    """The emulator's Web API with the application user's token, as a documented request sends it."""
    headers = {"Authorization": f"Bearer {backend.token}", "Accept": "application/json"}
    with httpx.Client(base_url=backend.api_url, headers=headers, timeout=5.0) as c:
        yield c
