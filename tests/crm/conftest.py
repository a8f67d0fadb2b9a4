"""CRM fixtures: one CRM emulator per module, reset before each test, and a RestCrmConnector to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from devstack.crm_emulator import DEFAULT_WEBHOOK_SECRET, CrmEmulator
from sync_core.adapters.crm.rest import RestCrmConnector


@pytest.fixture(scope="module")
def crm_emulator() -> Iterator[CrmEmulator]:
    """An emulator on a free loopback port; fast webhook retries keep the suite short."""
    with CrmEmulator(webhook_backoff_s=0.05) as emulator:
        yield emulator


@pytest.fixture
def crm(crm_emulator: CrmEmulator) -> CrmEmulator:
    """The module's emulator, emptied: no records, directory, faults, webhook URL or logs."""
    crm_emulator.reset()
    crm_emulator.set_webhook_url(None)
    crm_emulator.set_webhook_secrets(DEFAULT_WEBHOOK_SECRET)
    return crm_emulator


@pytest.fixture
async def connector(crm: CrmEmulator) -> AsyncIterator[RestCrmConnector]:
    async with RestCrmConnector(crm.base_url, token=crm.token, timeout=5.0) as conn:
        yield conn
