"""The Salesforce emulator once per module, reset for each test (`backend`), and `connect`: a
SalesforceConnector on it with a field profile."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.salesforce_emulator import SalesforceEmulator
from sync_core.adapters.crm.salesforce import SalesforceConnector
from sync_core.adapters.crm.salesforce_wire import FieldProfile


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
