"""A Salesforce REST API emulator (the subset SalesforceConnector speaks), for the tests and the dev stack."""

from devstack.salesforce_emulator.api import Faults, Recorded
from devstack.salesforce_emulator.emulator import (
    API_VERSION,
    CLIENT_ID,
    CLIENT_SECRET,
    INTEGRATION_USER_ID,
    SalesforceEmulator,
)
from devstack.salesforce_emulator.store import ORG_ID, ApiError

__all__ = [
    "API_VERSION",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "INTEGRATION_USER_ID",
    "ORG_ID",
    "ApiError",
    "Faults",
    "Recorded",
    "SalesforceEmulator",
]
